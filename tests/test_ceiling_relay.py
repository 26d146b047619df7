"""bench.ceiling_relay as a real process on 127.0.0.1: a webinar host's packets reach every
attendee, re-protected with each attendee's downlink key (or unchanged with --no-crypto)."""

from __future__ import annotations

import array
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import _ceiling
from bench.ceiling_relay import session_keys
from relay.srtp import SUITES, Session
from relay.wire import MeetingOpened, ParticipantJoined, Snapshot, Stream, save_snapshot

ROOT = Path(__file__).resolve().parents[1]
HOST_SSRC = 0x1234
ATTENDEES = 3
PACKETS = 50
TIMEOUT = 10.0


@dataclass
class Webinar:
    table: Path
    suite: str
    host: socket.socket
    host_uplink: bytes
    attendees: list[socket.socket]
    downlinks: list[bytes]


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(TIMEOUT)
    return sock


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_webinar(tmp_path: Path, suite: str) -> Webinar:
    key_len, salt_len, _ = SUITES[suite]

    def material() -> bytes:
        return secrets.token_bytes(key_len + salt_len)

    host, attendees = udp_socket(), [udp_socket() for _ in range(ATTENDEES)]
    host_uplink, downlinks = material(), [material() for _ in attendees]
    participants = [
        ParticipantJoined(
            participant=1,
            meeting=7,
            role="host",
            suite=suite,
            uplink=host_uplink,
            downlink=material(),
            streams=(Stream(HOST_SSRC),),
            address=host.getsockname(),
        )
    ]
    for i, (sock, downlink) in enumerate(zip(attendees, downlinks, strict=True)):
        participants.append(
            ParticipantJoined(
                participant=2 + i,
                meeting=7,
                role="attendee",
                suite=suite,
                uplink=material(),
                downlink=downlink,
                address=sock.getsockname(),
            )
        )
    table = tmp_path / "table.json"
    save_snapshot(
        Snapshot(meetings=(MeetingOpened(7, "webinar"),), participants=tuple(participants)),
        table,
    )
    return Webinar(table, suite, host, host_uplink, attendees, downlinks)


@pytest.fixture
def webinar(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Webinar]:
    w = make_webinar(tmp_path, request.param)
    yield w
    for sock in (w.host, *w.attendees):
        sock.close()


def rtp(seq: int, ssrc: int = HOST_SSRC) -> bytes:
    payload = secrets.token_bytes(20 + (seq * 37) % 1000)
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + payload


class Relay:
    """The subprocess: started, waited for (ready file), always killed."""

    def __init__(self, tmp_path: Path, table: Path, *extra: str) -> None:
        self.port = free_port()
        ready = tmp_path / "ready"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.ceiling_relay", "--table", str(table)]
            + ["--port", str(self.port), "--ready-file", str(ready), "--duration", "60", *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + TIMEOUT
        while not (ready.exists() and ready.read_text() == str(self.proc.pid)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                _, err = self.proc.communicate(timeout=TIMEOUT)
                pytest.fail(f"ceiling relay did not get ready (rc {self.proc.returncode}): {err}")
            time.sleep(0.02)

    def stop(self) -> dict[str, object]:
        """SIGTERM, then the JSON line it prints."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        assert self.proc.returncode == 0, err
        result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Relay]]:
    started: list[Relay] = []

    def _start(table: Path, *extra: str) -> Relay:
        started.append(Relay(tmp_path, table, *extra))
        return started[-1]

    yield _start
    for r in started:
        r.kill()
        for pipe in (r.proc.stdout, r.proc.stderr):
            if pipe is not None:
                pipe.close()


def receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(4096) for _ in range(count)]


def assert_nothing_more(*socks: socket.socket) -> None:
    for sock in socks:
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(4096)


@pytest.mark.parametrize("webinar", ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"], indirect=True)
def test_crypto_relays_and_reprotects_for_each_attendee(
    webinar: Webinar, start: Callable[..., Relay]
) -> None:
    relay = start(webinar.table)
    to = ("127.0.0.1", relay.port)
    sender = Session(webinar.suite, webinar.host_uplink)
    sent = [rtp(seq) for seq in range(1, PACKETS + 1)]
    for packet in sent:
        webinar.host.sendto(sender.protect(packet), to)
    # Dropped: an SSRC the table does not declare, and a packet that fails authentication.
    webinar.host.sendto(Session(webinar.suite, webinar.host_uplink).protect(rtp(1, 0x9999)), to)
    forged = bytearray(sender.protect(rtp(PACKETS + 1)))
    forged[-1] ^= 1
    webinar.host.sendto(bytes(forged), to)

    for sock, downlink in zip(webinar.attendees, webinar.downlinks, strict=True):
        receiver = Session(webinar.suite, downlink)
        assert [receiver.unprotect(p) for p in receive(sock, PACKETS)] == sent
    assert_nothing_more(webinar.host, *webinar.attendees)
    counters = relay.stop()
    assert counters["packets_in"] == PACKETS + 2
    assert counters["packets_out"] == PACKETS * ATTENDEES
    assert counters["dropped"] == 2
    assert counters["send_errors"] == 0
    assert counters["mode"] == "ceiling"


@pytest.mark.parametrize("webinar", ["AES_CM_128_HMAC_SHA1_80"], indirect=True)
def test_no_crypto_forwards_bytes_unchanged(webinar: Webinar, start: Callable[..., Relay]) -> None:
    relay = start(webinar.table, "--no-crypto")
    sent = [rtp(seq) for seq in range(1, PACKETS + 1)]
    for packet in sent:
        webinar.host.sendto(packet, ("127.0.0.1", relay.port))
    for sock in webinar.attendees:
        assert receive(sock, PACKETS) == sent
    assert_nothing_more(webinar.host, *webinar.attendees)
    counters = relay.stop()
    assert counters["packets_in"] == PACKETS
    assert counters["packets_out"] == PACKETS * ATTENDEES
    assert counters["dropped"] == 0
    assert counters["mode"] == "io_ceiling"


def test_duration_ends_the_run(tmp_path: Path, start: Callable[..., Relay]) -> None:
    w = make_webinar(tmp_path, "AEAD_AES_128_GCM")
    try:
        relay = start(w.table, "--duration", "0.3")
        out, err = relay.proc.communicate(timeout=TIMEOUT)
        assert relay.proc.returncode == 0, err
        counters = json.loads(out)
        assert counters["packets_in"] == 0 and counters["receivers"] == 4
        assert counters["senders"] == 1
    finally:
        for sock in (w.host, *w.attendees):
            sock.close()


def test_sender_keys_match_relay_srtp() -> None:
    """The session keys handed to the C relay decrypt what relay.srtp protects."""
    for suite, (key_len, salt_len, _) in SUITES.items():
        material = os.urandom(key_len + salt_len)
        packet = rtp(5)
        protected = Session(suite, material).protect(packet)
        row = bytearray(2048)
        row[: len(protected)] = protected
        lengths = array.array("I", [len(protected)])
        ceiling = _ceiling.Ceiling(*session_keys(suite, material))
        assert ceiling.unprotect_batch(memoryview(row).cast("B", (1, 2048)), lengths) == 1
        assert bytes(row[: lengths[0]]) == packet
