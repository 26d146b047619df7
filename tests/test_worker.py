"""`relay worker` as a real process on real UDP sockets (127.0.0.1 only).

The worker loads a webinar from a Snapshot file (or receives it over ZeroMQ), forwards the
host's SRTP to attendees whose receive addresses are sockets bound here, and prints its
counters as one JSON line on stdout when it gets SIGTERM.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from relay import wire
from relay.srtp import Session
from tests.conftest import rtcp_sr, rtp

ROOT = Path(__file__).resolve().parents[1]
SUITE = "AES_CM_128_HMAC_SHA1_80"
MEETING = 7
HOST_PID = 1
HOST_SSRC = 0x5151AAAA
TIMEOUT = 5.0


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def free_port_pair() -> int:
    """A port P with P and P+1 both free on 127.0.0.1 (just now)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP port pair")


@dataclass
class Party:
    """A participant as a client: its keys and the socket it sends and receives on."""

    pid: int
    role: str
    uplink: bytes = field(default_factory=lambda: secrets.token_bytes(30))
    downlink: bytes = field(default_factory=lambda: secrets.token_bytes(30))
    sock: socket.socket = field(default_factory=udp_socket)

    def __post_init__(self) -> None:
        self.out = Session(SUITE, self.uplink)
        self.inp = Session(SUITE, self.downlink)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def joined(self, *, address: bool, ssrcs: tuple[int, ...] = ()) -> wire.ParticipantJoined:
        return wire.ParticipantJoined(
            participant=self.pid,
            meeting=MEETING,
            role=self.role,
            suite=SUITE,
            uplink=self.uplink,
            downlink=self.downlink,
            streams=tuple(wire.Stream(s) for s in ssrcs),
            address=self.address if address else None,
        )

    def drain(self, quiet: float = 0.2) -> list[bytes]:
        """Every datagram waiting, until none arrives for `quiet` seconds."""
        got = []
        self.sock.settimeout(quiet)
        try:
            while True:
                got.append(self.sock.recv(4096))
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(TIMEOUT)
        return got


@dataclass
class Webinar:
    host: Party
    attendees: list[Party]
    port: int
    tmp: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def snapshot(self, seq: int = 1) -> wire.Snapshot:
        participants = [self.host.joined(address=False, ssrcs=(HOST_SSRC,))]
        participants += [a.joined(address=True) for a in self.attendees]
        return wire.Snapshot(seq, (wire.MeetingOpened(MEETING, "webinar"),), tuple(participants))

    def start(self, *extra: str) -> subprocess.Popen[str]:
        """Start the worker; wait until it has bound its ports."""
        ready = self.tmp / f"ready-{len(self.processes)}"
        command = [sys.executable, "-m", "cli", "worker", "--media-port", str(self.port)]
        command += ["--ready-file", str(ready), "--duration", "60", *extra]
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        deadline = time.monotonic() + 15
        while not ready.exists() or not ready.read_text():
            if process.poll() is not None:
                pytest.fail(f"worker exited with {process.returncode}: {process.communicate()}")
            if time.monotonic() > deadline:
                pytest.fail("worker did not become ready")
            time.sleep(0.02)
        assert int(ready.read_text()) == process.pid
        return process

    def stop(self, process: subprocess.Popen[str]) -> dict[str, Any]:
        """SIGTERM the worker; the counters it prints."""
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        counters: dict[str, Any] = json.loads(lines[0])
        return counters

    def to_relay(self, party: Party, packet: bytes, *, rtcp_port: bool = False) -> None:
        party.sock.sendto(packet, ("127.0.0.1", self.port + (1 if rtcp_port else 0)))


@pytest.fixture
def webinar(tmp_path: Path) -> Iterator[Webinar]:
    w = Webinar(
        Party(HOST_PID, "host"),
        [Party(10 + i, "attendee") for i in range(3)],
        free_port_pair(),
        tmp_path,
    )
    try:
        yield w
    finally:
        for process in w.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=TIMEOUT)
        for party in (w.host, *w.attendees):
            party.sock.close()


def host_packet(host: Party, seq: int) -> tuple[bytes, bytes]:
    payload = struct.pack("!Hd", seq, time.monotonic()) + secrets.token_bytes(150)
    plain = rtp(seq, ssrc=HOST_SSRC, payload=payload, ts=seq * 960)
    return plain, host.out.protect(plain)


def test_webinar_from_a_table_file(webinar: Webinar) -> None:
    table = webinar.tmp / "table.json"
    wire.save_snapshot(webinar.snapshot(), table)
    process = webinar.start("--table", str(table))
    sent, sizes = [], []
    for seq in range(1000, 1200):
        plain, packet = host_packet(webinar.host, seq)
        sent.append(plain)
        sizes.append(len(packet))
        webinar.to_relay(webinar.host, packet)
        if seq % 50 == 0:
            time.sleep(0.005)  # keep receive buffers comfortable
    for attendee in webinar.attendees:
        got = [attendee.inp.unprotect(attendee.sock.recv(4096)) for _ in sent]
        assert got == sent
        assert attendee.drain(0.1) == []
    assert webinar.host.drain(0.1) == []
    counters = webinar.stop(process)
    assert counters["packets_in"] == 200
    assert counters["packets_out"] == 600
    assert counters["bytes_in"] == sum(sizes)
    assert counters["bytes_out"] == 3 * sum(sizes)
    assert counters["latched"] == 1
    assert set(counters["dropped"].values()) == {0}


def control_frames(seq: int, message: wire.Message) -> list[bytes]:
    """What the worker's SUB socket reads: [update number, wire version, JSON body]."""
    return [str(seq).encode(), *wire.encode(message)[1:]]


@pytest.fixture
def pub() -> Iterator[zmq.Socket[Any]]:
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        yield sock
    finally:
        sock.close(0)


def start_controlled(
    webinar: Webinar, pub: zmq.Socket[Any], snapshot_seq: int
) -> tuple[subprocess.Popen[str], int]:
    """Start a worker on `pub`'s updates and get the webinar's snapshot to it: PUB drops what
    it sends before the worker's SUB has connected, so repeat the snapshot until media flows.
    Returns the process and the host's next sequence number."""
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    process = webinar.start("--control", f"tcp://127.0.0.1:{port}")
    snapshot = webinar.snapshot(seq=snapshot_seq)
    seq = 100
    deadline = time.monotonic() + 10
    while True:
        pub.send_multipart(control_frames(snapshot_seq, snapshot))
        time.sleep(0.1)
        plain, packet = host_packet(webinar.host, seq)
        seq += 1
        webinar.to_relay(webinar.host, packet)
        got = [a.drain(0.2) for a in webinar.attendees]
        if all(got):
            for attendee, datagrams in zip(webinar.attendees, got, strict=True):
                assert [attendee.inp.unprotect(d) for d in datagrams] == [plain]
            return process, seq
        assert not any(got), "media reached only some attendees"
        assert time.monotonic() < deadline, "the worker never applied the snapshot"


def test_eject_over_zeromq_stops_media_within_100_ms(
    webinar: Webinar, pub: zmq.Socket[Any]
) -> None:
    process, seq = start_controlled(webinar, pub, 40)
    ejected, *kept = webinar.attendees
    pub.send_multipart(control_frames(41, wire.ParticipantEjected(ejected.pid)))
    ejected_at = time.monotonic()
    sent: list[tuple[float, bytes]] = []
    while time.monotonic() < ejected_at + 0.6:
        plain, packet = host_packet(webinar.host, seq)
        seq += 1
        sent.append((time.monotonic(), plain))
        webinar.to_relay(webinar.host, packet)
        time.sleep(0.005)
    # The others got everything; the ejected one nothing sent 100 ms after the eject.
    for attendee in kept:
        got = [attendee.inp.unprotect(d) for d in attendee.drain()]
        assert got == [plain for _, plain in sent]
    late = [plain for at, plain in sent if at >= ejected_at + 0.1]
    assert len(late) > 20
    leaked = [ejected.inp.unprotect(d) for d in ejected.drain()]
    leaked_late = set(leaked) & set(late)
    assert len(leaked_late) == 0, "media reached the ejected attendee after 100 ms"
    counters = webinar.stop(process)
    assert counters["dropped"]["ejected"] >= len(late)
    assert counters["dropped"]["ejected"] + len(leaked) == len(sent)


def test_an_update_for_an_unknown_participant_does_not_kill_the_worker(
    webinar: Webinar, pub: zmq.Socket[Any]
) -> None:
    process, seq = start_controlled(webinar, pub, 40)
    pub.send_multipart(control_frames(41, wire.ParticipantEjected(999)))
    time.sleep(0.3)
    plain, packet = host_packet(webinar.host, seq)
    webinar.to_relay(webinar.host, packet)
    for attendee in webinar.attendees:
        assert [attendee.inp.unprotect(d) for d in attendee.drain()] == [plain]
    assert process.poll() is None
    assert webinar.stop(process)["packets_in"] >= 2


def test_srtcp_to_the_rtcp_port_from_another_port(webinar: Webinar) -> None:
    table = webinar.tmp / "table.json"
    wire.save_snapshot(webinar.snapshot(), table)
    process = webinar.start("--table", str(table))
    # The host's media socket latches; its SRTCP comes from a second socket to port P+1.
    plain, packet = host_packet(webinar.host, 1)
    webinar.to_relay(webinar.host, packet)
    for attendee in webinar.attendees:
        assert attendee.inp.unprotect(attendee.sock.recv(4096)) == plain
    rtcp_sock = udp_socket()
    try:
        report = rtcp_sr(HOST_SSRC)
        rtcp_sock.sendto(webinar.host.out.protect_rtcp(report), ("127.0.0.1", webinar.port + 1))
        for attendee in webinar.attendees:
            assert attendee.inp.unprotect_rtcp(attendee.sock.recv(4096)) == report
        # Media still flows from the host's media socket, which kept its latched address.
        plain, packet = host_packet(webinar.host, 2)
        webinar.to_relay(webinar.host, packet)
        for attendee in webinar.attendees:
            assert attendee.inp.unprotect(attendee.sock.recv(4096)) == plain
        rtcp_sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            rtcp_sock.recv(4096)  # nothing goes back to where the SRTCP came from
    finally:
        rtcp_sock.close()
    counters = webinar.stop(process)
    assert counters["packets_in"] == 3
    assert counters["packets_out"] == 9
    assert counters["latched"] == 1  # the SRTCP did not move the host's address
    assert counters["rtcp_terminated"] == 0
    assert set(counters["dropped"].values()) == {0}


def cpu_seconds(pid: int) -> float:
    """The process's user and system CPU so far (proc(5): utime, stime, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.release_only  # tests/conftest.py: the loop is Python; the core is not exercised
@pytest.mark.parametrize("busy_poll_us", [0, 100_000])
def test_busy_poll_spins_after_media_and_sleeps_once_it_ends(
    webinar: Webinar, busy_poll_us: int
) -> None:
    """`--busy-poll US`: after a batch of media the worker polls without sleeping for US
    microseconds, then sleeps again; without it, it sleeps at once. Either way it forwards."""
    table = webinar.tmp / "table.json"
    wire.save_snapshot(webinar.snapshot(), table)
    process = webinar.start("--table", str(table), "--busy-poll", str(busy_poll_us))
    time.sleep(0.3)
    idle_before = cpu_seconds(process.pid)
    time.sleep(0.5)
    assert cpu_seconds(process.pid) - idle_before < 0.1  # asleep before any media
    spent = 0.0
    for seq in range(6):  # six packets, 0.4 s apart: each starts a spin
        plain, packet = host_packet(webinar.host, seq)
        before = cpu_seconds(process.pid)
        webinar.to_relay(webinar.host, packet)
        for attendee in webinar.attendees:
            assert attendee.inp.unprotect(attendee.sock.recv(4096)) == plain
        time.sleep(0.4)
        spent += cpu_seconds(process.pid) - before
    after = cpu_seconds(process.pid)
    time.sleep(0.5)
    assert cpu_seconds(process.pid) - after < 0.1  # asleep again once the spin ended
    if busy_poll_us:
        assert spent > 0.3  # six spins of 0.1 s: about 0.6 s of CPU
    else:
        assert spent < 0.2
    webinar.stop(process)


def test_a_reservation_ahead_of_need_is_written_beside_the_media(
    webinar: Webinar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream half way through its margin asks for its next index reservation; the worker
    writes and fdatasyncs it on the ledger's thread (relay/worker.py, `_reserve_ahead`) while
    the media goes on, and commits it once it is on disk. Here the disk is held up: copies
    keep flowing meanwhile, the file waits, and once the disk lets go the reservation is in
    the file and in force. (The worker runs in a thread of this process, to hold its disk.)"""
    from relay._core import INDEX_RESERVE
    from relay.worker import Worker, WorkerConfig

    table = webinar.tmp / "table.json"
    wire.save_snapshot(webinar.snapshot(), table)
    state = webinar.tmp / "worker.state"
    worker = Worker(
        WorkerConfig(media_port=webinar.port, table=table, state_file=state, duration=30)
    )
    assert worker.ledger is not None
    ledger_file = worker.ledger.path
    disk = threading.Event()
    append = worker.ledger.append

    def held_up(records: bytes) -> None:
        assert disk.wait(10), "the disk was never let go"
        append(records)

    def send(seqs: range) -> None:
        for seq in seqs:
            webinar.to_relay(webinar.host, host_packet(webinar.host, seq)[1])

    running = threading.Thread(target=worker.run)
    running.start()
    try:
        send(range(100, 105))  # a stream's first packets wait for its reservation: made now
        for attendee in webinar.attendees:
            assert len(attendee.drain()) == 5
        before = ledger_file.stat().st_size
        monkeypatch.setattr(worker.ledger, "append", held_up)
        half = 100 + INDEX_RESERVE // 2
        send(range(half, half + 50))  # these ask for the next reservation
        for attendee in webinar.attendees:
            assert len(attendee.drain()) == 50
        send(range(half + 50, half + 70))  # and these come while it is being written
        for attendee in webinar.attendees:
            assert len(attendee.drain()) == 20  # not one held up by the round in flight
        assert ledger_file.stat().st_size == before  # its records are not on disk yet
        disk.set()
        deadline = time.monotonic() + TIMEOUT
        while ledger_file.stat().st_size == before:
            assert time.monotonic() < deadline, "the round never reached the file"
            time.sleep(0.01)
    finally:
        disk.set()
        worker.stop()
        running.join(TIMEOUT)
        worker.close()
    assert not running.is_alive()
    record = struct.Struct("<c3xIIQIQ")  # ext/table.pxi, _RECORD

    def limits(data: bytes) -> dict[tuple[int, int], int]:
        """(participant, SSRC) -> the highest limit of its O records in `data`."""
        found: dict[tuple[int, int], int] = {}
        for off in range(0, len(data), record.size):
            kind, _meeting, pid, _fp, ssrc, value = record.unpack_from(data, off)
            if kind == b"O":
                found[pid, ssrc] = max(found.get((pid, ssrc), 0), value)
        return found

    written = limits(ledger_file.read_bytes()[8:])  # past the file's magic
    in_force = limits(worker.table.ledger_records())
    for attendee in webinar.attendees:
        # The round written beside the media, asked for by the batch that opened it, is on
        # disk and in force; what the packets after it asked for, the round after.
        assert half + INDEX_RESERVE <= written[attendee.pid, HOST_SSRC] < half + 70 + INDEX_RESERVE
        assert in_force[attendee.pid, HOST_SSRC] == written[attendee.pid, HOST_SSRC]
