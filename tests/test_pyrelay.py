"""The pure-Python baseline relay (bench/pyrelay.py) as a real process on real UDP sockets."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.srtp import Session
from relay.wire import MeetingOpened, ParticipantJoined, Snapshot, Stream, save_snapshot
from tests.conftest import rtcp_sr

ROOT = Path(__file__).resolve().parents[1]
SUITE = "AES_CM_128_HMAC_SHA1_80"
HOST_SSRC = 0x1234
ATTENDEE_SSRC = 0x5678
TIMEOUT = 5.0


def rtp(seq: int, ssrc: int = HOST_SSRC, payload: bytes = b"") -> bytes:
    payload = payload or bytes([seq & 0xFF]) * 160
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + payload


def rtcp_rr(ssrc: int) -> bytes:
    """An RTCP receiver report with no report blocks."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Party:
    """A participant as a client: its keys and the socket it sends and receives on."""

    uplink: bytes
    downlink: bytes
    sock: socket.socket

    def sender(self) -> Session:
        return Session(SUITE, self.uplink)

    def receiver(self) -> Session:
        return Session(SUITE, self.downlink)

    def recv(self) -> bytes:
        return self.sock.recv(2048)


@dataclass
class Webinar:
    host: Party  # sends ssrc 0x1234, address given
    receivers: list[Party]  # attendees with a receive address in the table
    latecomer: Party  # attendee with no address, declares ssrc 0x5678
    relay: tuple[str, int]
    process: subprocess.Popen[str]

    def send(self, party: Party, packet: bytes) -> None:
        party.sock.sendto(packet, self.relay)

    def stop(self) -> dict[str, Any]:
        """SIGTERM the relay and return the counters it prints."""
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=TIMEOUT)
        assert self.process.returncode == 0, err
        return dict(json.loads(out.strip().splitlines()[-1]))


def party() -> Party:
    return Party(secrets.token_bytes(30), secrets.token_bytes(30), udp_socket())


def write_table(path: Path, host: Party, receivers: list[Party], latecomer: Party) -> None:
    def joined(pid: int, role: str, who: Party, address: bool, *ssrcs: int) -> ParticipantJoined:
        return ParticipantJoined(
            participant=pid,
            meeting=1,
            role=role,
            suite=SUITE,
            uplink=who.uplink,
            downlink=who.downlink,
            streams=tuple(Stream(s) for s in ssrcs),
            address=who.sock.getsockname() if address else None,
        )

    participants = [joined(1, "host", host, True, HOST_SSRC)]
    participants += [joined(2 + i, "attendee", r, True) for i, r in enumerate(receivers)]
    participants.append(joined(9, "attendee", latecomer, False, ATTENDEE_SSRC))
    save_snapshot(Snapshot(1, (MeetingOpened(1, "webinar"),), tuple(participants)), path)


def wait_ready(process: subprocess.Popen[str], ready: Path) -> None:
    deadline = time.monotonic() + 15
    while not ready.exists():
        if process.poll() is not None:
            pytest.fail(f"relay exited with {process.returncode}: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            pytest.fail("relay did not become ready")
        time.sleep(0.02)
    assert int(ready.read_text()) == process.pid


@pytest.fixture
def webinar(tmp_path: Path) -> Iterator[Webinar]:
    host, receivers, latecomer = party(), [party(), party()], party()
    table, ready, port = tmp_path / "table.json", tmp_path / "ready", free_udp_port()
    write_table(table, host, receivers, latecomer)
    command = [sys.executable, "-m", "bench.pyrelay", "--table", str(table)]
    command += ["--port", str(port), "--ready-file", str(ready), "--duration", "60"]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_ready(process, ready)
        yield Webinar(host, receivers, latecomer, ("127.0.0.1", port), process)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)
        for p in (host, *receivers, latecomer):
            p.sock.close()


def test_host_media_reaches_every_addressed_attendee(webinar: Webinar) -> None:
    sender = webinar.host.sender()
    sent = [rtp(seq) for seq in range(1000, 1020)]
    for packet in sent:
        webinar.send(webinar.host, sender.protect(packet))
    for receiver in webinar.receivers:
        session = receiver.receiver()
        got = [session.unprotect(receiver.recv()) for _ in sent]
        assert got == sent
    counters = webinar.stop()
    assert counters["packets_in"] == 20
    assert counters["packets_out"] == 40
    assert counters["dropped"] == {}


def test_attendee_media_and_bad_packets_are_dropped(webinar: Webinar) -> None:
    host = webinar.host.sender()
    # An attendee may not send into a webinar; its packet authenticates, so it latches.
    webinar.send(webinar.latecomer, webinar.latecomer.sender().protect(rtp(1, ATTENDEE_SSRC)))
    forged = bytearray(host.protect(rtp(1)))
    forged[-1] ^= 1
    webinar.send(webinar.host, bytes(forged))
    genuine = host.protect(rtp(2))
    webinar.send(webinar.host, genuine)
    webinar.send(webinar.host, genuine)  # a replay
    webinar.send(webinar.host, host.protect(rtp(3, ssrc=0x9999)))  # undeclared SSRC
    sentinel = rtp(4)
    webinar.send(webinar.host, host.protect(sentinel))

    # Only the genuine packet and the sentinel come through, in order, to everyone addressed,
    # including the attendee whose address was latched from its dropped media.
    for receiver in (*webinar.receivers, webinar.latecomer):
        session = receiver.receiver()
        assert session.unprotect(receiver.recv()) == rtp(2)
        assert session.unprotect(receiver.recv()) == sentinel
    counters = webinar.stop()
    assert counters["dropped"] == {"not_allowed": 1, "auth": 1, "replay": 1, "unknown_source": 1}
    assert counters["packets_in"] == 6
    assert counters["packets_out"] == 6


def test_sender_report_reaches_attendees_and_receiver_reports_stop(webinar: Webinar) -> None:
    report = rtcp_sr(HOST_SSRC)
    webinar.send(webinar.host, webinar.host.sender().protect_rtcp(report))
    for receiver in webinar.receivers:
        assert receiver.receiver().unprotect_rtcp(receiver.recv()) == report
    # A receiver report (from an undeclared SSRC, found by its address) is consumed.
    first = webinar.receivers[0]
    webinar.send(first, first.sender().protect_rtcp(rtcp_rr(0xA1)))
    sentinel = rtp(7)
    webinar.send(webinar.host, webinar.host.sender().protect(sentinel))
    for receiver in webinar.receivers:
        assert receiver.receiver().unprotect(receiver.recv()) == sentinel
    counters = webinar.stop()
    assert counters["rtcp_terminated"] == 1
    assert counters["dropped"] == {}
    assert counters["packets_in"] == 3
    assert counters["packets_out"] == 4
