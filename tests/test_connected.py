"""Connected per-receiver sockets (ext/connected.pxi) in a real worker on real UDP sockets.

Each receiver's copies go out from a socket of its own, bound to the media port and connected
to the receiver; what the receiver sends back arrives on that socket and must still reach the
loop. Past the limit, and with --connected-sockets 0, copies go from the media socket.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import zmq

from relay import wire
from tests.conftest import rtp
from tests.test_worker import (
    HOST_SSRC,
    MEETING,
    ROOT,
    TIMEOUT,
    Party,
    Webinar,
    control_frames,
    host_packet,
    start_controlled,
    udp_socket,
)
from tests.test_worker import pub as pub  # noqa: F401 (a fixture)
from tests.test_worker import webinar as webinar  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def connected_sockets_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers these tests start connect receivers' sockets whatever the environment
    says (scripts/test's debug pass turns them off for every other test)."""
    monkeypatch.setenv("RELAY_CONNECTED_SOCKETS", "4096")


def receiver_report(party: Party, ssrc: int) -> bytes:
    """An SRTCP receiver report from `party` about the host's stream (RFC 3550 6.4.2)."""
    block = ssrc.to_bytes(4, "big") + bytes(20)
    plain = bytes([0x81, 201, 0, 7]) + (0x7000 + party.pid).to_bytes(4, "big") + block
    return party.out.protect_rtcp(plain)


def start_from_table(
    webinar: Webinar, *extra: str, snapshot: wire.Snapshot | None = None
) -> subprocess.Popen[str]:
    table = webinar.tmp / "table.json"
    wire.save_snapshot(snapshot or webinar.snapshot(), table)
    return webinar.start("--table", str(table), *extra)


def send_and_check(webinar: Webinar, seqs: range) -> None:
    """The host sends `seqs`; every attendee gets each once, from the media port. (Not
    checked here: the order. On loopback, what one socket sends can arrive out of order when
    the kernel defers a CPU's receive work while the sender moves to the other CPU; the order
    of a receiver's copies is tested in tests/test_bursts.py and tests/test_worker.py.)"""
    sent = []
    for k, seq in enumerate(seqs):
        plain, packet = host_packet(webinar.host, seq)
        sent.append(plain)
        webinar.to_relay(webinar.host, packet)
        if k % 10 == 9:
            time.sleep(0.002)  # bursts of ten, as a sender's would be
    for attendee in webinar.attendees:
        got = []
        for _ in sent:
            data, source = attendee.sock.recvfrom(4096)
            assert source == ("127.0.0.1", webinar.port)  # what ICE and latching expect
            got.append(attendee.inp.unprotect(data))
        assert sorted(got) == sorted(sent)
        assert len(set(got)) == len(sent)


@pytest.mark.parametrize("connected", [None, "0"])
def test_every_copy_arrives_from_the_media_port_and_reports_come_back(
    webinar: Webinar, connected: str | None
) -> None:
    extra = ("--connected-sockets", connected) if connected is not None else ()
    process = start_from_table(webinar, *extra)
    send_and_check(webinar, range(1, 51))
    # Each attendee's report goes to the media port, from the address its copies go to:
    # with connected sockets the kernel hands it to that attendee's own socket.
    for attendee in webinar.attendees:
        attendee.sock.sendto(receiver_report(attendee, HOST_SSRC), ("127.0.0.1", webinar.port))
    time.sleep(0.3)
    send_and_check(webinar, range(51, 61))
    counters = webinar.stop(process)
    assert counters["rtcp_terminated"] == 3
    assert counters["packets_out"] == 3 * 60
    assert set(counters["dropped"].values()) == {0}
    if connected is None:
        assert counters["connect"] == {"made": 3, "failed": 0, "over_limit": 0}
        assert counters["connected_sockets"] == 3
    else:
        assert counters["connect"]["made"] == 0
        assert counters["connected_sockets"] == 0


def test_past_the_limit_copies_go_from_the_media_socket(webinar: Webinar) -> None:
    process = start_from_table(webinar, "--connected-sockets", "1")
    send_and_check(webinar, range(1, 21))
    counters = webinar.stop(process)
    assert counters["connected_sockets"] == 1
    # One attempt per receiver and address, not one per packet.
    assert counters["connect"] == {"made": 1, "failed": 0, "over_limit": 2}
    assert counters["packets_out"] == 3 * 20


def test_a_receiver_that_moves_gets_a_socket_connected_to_its_new_address(
    webinar: Webinar,
) -> None:
    # The attendees declare an SSRC: a packet from an address the relay does not know is
    # found by it (as a listen-only client's is, tests/test_forward.py).
    participants = [webinar.host.joined(address=False, ssrcs=(HOST_SSRC,))]
    participants += [a.joined(address=True, ssrcs=(0x7000 + a.pid,)) for a in webinar.attendees]
    snapshot = wire.Snapshot(1, (wire.MeetingOpened(MEETING, "webinar"),), tuple(participants))
    process = start_from_table(webinar, snapshot=snapshot)
    send_and_check(webinar, range(1, 11))
    mover = webinar.attendees[0]
    old = mover.sock
    mover.sock = udp_socket()
    try:
        # An authenticated RTP packet from the new address moves it (ext/table.pxi,
        # table_latch): an attendee's media goes nowhere, but it shows where it is.
        media = mover.out.protect(rtp(1, ssrc=0x7000 + mover.pid))
        mover.sock.sendto(media, ("127.0.0.1", webinar.port))
        time.sleep(0.3)
        send_and_check(webinar, range(11, 21))
        old.settimeout(0.2)
        with pytest.raises(TimeoutError):
            old.recv(4096)  # nothing more to where it was
    finally:
        old.close()
    counters = webinar.stop(process)
    assert counters["latched"] == 2  # the host's first packet, the mover's
    assert counters["connect"]["made"] == 4
    assert counters["connected_sockets"] == 3  # the old one closed
    assert counters["dropped"]["not_allowed"] == 1


def test_a_receiver_that_leaves_has_its_socket_closed(
    webinar: Webinar,
    pub: zmq.Socket[Any],  # noqa: F811
) -> None:
    process, seq = start_controlled(webinar, pub, 40)
    leaver, *kept = webinar.attendees
    pub.send_multipart(control_frames(41, wire.ParticipantLeft(leaver.pid)))
    time.sleep(0.3)
    plain, packet = host_packet(webinar.host, seq)
    webinar.to_relay(webinar.host, packet)
    for attendee in kept:
        assert [attendee.inp.unprotect(d) for d in attendee.drain()] == [plain]
    assert leaver.drain(0.2) == []
    counters = webinar.stop(process)
    assert counters["connect"]["made"] == 3
    assert counters["connected_sockets"] == 2


def test_a_second_worker_cannot_share_the_media_port(webinar: Webinar) -> None:
    """SO_REUSEPORT, which the connected sockets need, must not let another relay in."""
    first = start_from_table(webinar)
    second = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--media-port", str(webinar.port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "Address already in use" in second.stderr
    send_and_check(webinar, range(1, 11))  # the first one still gets everything
    webinar.stop(first)


def test_a_low_descriptor_limit_leaves_fewer_connected_sockets(webinar: Webinar) -> None:
    """The worker raises its soft limit up to the hard one; past that, it says so and sends
    to the rest from the media socket."""
    table = webinar.tmp / "table.json"
    wire.save_snapshot(webinar.snapshot(), table)
    ready = webinar.tmp / "ready-limited"
    # The hard limit leaves room for 2 connected sockets beside the spare (DESCRIPTORS_SPARE).
    code = (
        "import resource, sys; from relay import worker; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, worker.DESCRIPTORS_SPARE + 2)); "
        "sys.exit(worker.command(sys.argv[1:]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--table", str(table), "--media-port", str(webinar.port)]
        + ["--ready-file", str(ready), "--duration", "30"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    webinar.processes.append(process)
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    send_and_check(webinar, range(1, 11))
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    counters = json.loads(out.strip().splitlines()[-1])
    assert counters["connected_sockets"] == 2
    assert counters["connect"]["over_limit"] == 1
    assert "2 receivers get connected sockets, not 4096" in err


def test_the_ports_are_free_once_the_worker_stops(webinar: Webinar) -> None:
    process = start_from_table(webinar)
    send_and_check(webinar, range(1, 6))
    webinar.stop(process)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", webinar.port))  # no connected socket outlived the worker
