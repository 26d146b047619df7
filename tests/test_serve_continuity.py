"""End to end through `relay serve`: listeners that decrypt with libsrtp (pylibsrtp, an SRTP
implementation nobody here wrote), which refuses a replayed index and loses its ROC on a jump
of 2^15 or more, keep decrypting every packet across everything that used to make the relay
reuse keystream (ext/table.pxi, "Never the same index twice"):

1. the presenter is expelled and a newcomer declares its SSRC and sends the sequence numbers
   it sent (the review's reproduction: libsrtp refused them as replays);
2. the newcomer's sequence numbers wrap (ROC 1), then its role changes (the control plane
   makes it leave and join again);
3. its worker is killed with SIGKILL and started again by the supervisor;
4. `relay serve` itself is killed with SIGKILL and started again at once, on the same data
   directory and ports (what systemd or Kubernetes do): its children must be gone by then
   (relay/lifecycle.py), and the new workers resume from the ledger and stream state.

The gaps of 3 and 4 are printed (docs/RELIABILITY.md).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import struct
import time
from pathlib import Path

import httpx
import pytest

from node.serve import free_ports
from tests.test_serve import Serve, bound_socket, start_serve, stop_serve

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

pylibsrtp = pytest.importorskip("pylibsrtp")

SUITE = "AES_CM_128_HMAC_SHA1_80"
SSRC = 0x0DD0_0DD0


class Listener:
    """A receive-only client whose SRTP is libsrtp's."""

    def __init__(self, api: httpx.Client, meeting: str, name: str) -> None:
        self.sock = bound_socket()
        self.sock.setblocking(False)
        host, port = self.sock.getsockname()
        r = api.post(
            f"/v1/meetings/{meeting}/join",
            json={"name": name, "password": "pw", "receive_at": f"{host}:{port}"},
            headers={"Authorization": ""},  # a client of its own, at that address: consent
        )
        assert r.status_code == 201, r.text
        key = base64.b64decode(r.json()["srtp"]["downlink"])
        self.srtp = pylibsrtp.Session(
            pylibsrtp.Policy(
                key=key,
                ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
        self.payloads: list[bytes] = []
        self.seqs: list[int] = []

    def drain(self) -> int:
        got = 0
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return got
            if 200 <= data[1] <= 206:
                continue  # RTCP: not what is counted here
            plain = self.srtp.unprotect(data)  # raises on a replay or a tag that fails
            self.seqs.append(struct.unpack("!H", plain[2:4])[0])
            self.payloads.append(plain[12:])
            got += 1


class Presenter:
    def __init__(self, answer: dict[str, object], seq: int) -> None:
        from relay.srtp import Session

        srtp = answer["srtp"]
        relay = answer["relay"]
        assert isinstance(srtp, dict) and isinstance(relay, dict)
        self.session = Session(SUITE, base64.b64decode(srtp["uplink"]))
        self.to = (relay["host"], relay["port"])
        self.id = answer["participant_id"]
        self.seq = seq
        self.sock = bound_socket()

    def send(self, payload: bytes) -> None:
        header = struct.pack("!BBHII", 0x80, 111, self.seq & 0xFFFF, self.seq * 960, SSRC)
        self.seq += 1
        self.sock.sendto(self.session.protect(header + payload), self.to)


def exchange(p: Presenter, listeners: list[Listener], label: bytes, count: int) -> None:
    """Until every listener decrypted `count` more packets: one at a time, each waited for,
    and a new one after 0.3 s without (right after a change, the worker may not have its
    routing update yet when a packet arrives: that packet goes nowhere, which is allowed;
    a packet a listener cannot decrypt is not)."""
    want = [len(x.payloads) + count for x in listeners]
    deadline = time.monotonic() + 10
    n = 0
    while any(len(x.payloads) < w for x, w in zip(listeners, want, strict=True)):
        assert time.monotonic() < deadline, f"{label!r} did not reach every listener"
        p.send(b"%s %d" % (label, n))
        n += 1
        sent_at = time.monotonic()
        before = [len(x.payloads) for x in listeners]
        while time.monotonic() - sent_at < 0.3:
            for x in listeners:
                x.drain()
            if all(len(x.payloads) > b for x, b in zip(listeners, before, strict=True)):
                break
            time.sleep(0.001)


def gap(p: Presenter, listeners: list[Listener], label: bytes, limit: float = 15.0) -> float:
    """Send every 10 ms until each listener decrypted something again: the longest wait."""
    started = time.monotonic()
    heard: dict[int, float] = {}
    n = 0
    while len(heard) < len(listeners):
        assert time.monotonic() - started < limit, f"{label!r}: a listener got nothing"
        p.send(b"%s %d" % (label, n))
        n += 1
        time.sleep(0.01)
        for i, x in enumerate(listeners):
            if x.drain() and i not in heard:
                heard[i] = time.monotonic() - started
    return max(heard.values())


def test_libsrtp_listeners_decrypt_everything_across_expel_role_change_and_kills(
    tmp_path: Path,
) -> None:
    base = free_ports(4)
    data = tmp_path / "data"
    serve = start_serve(data, 2, base=base)
    restarted: Serve | None = None
    try:
        with serve.api() as api:
            r = api.post(
                "/v1/meetings",
                json={"title": "t", "mode": "webinar", "password": "pw", "panelist_password": "pp"},
            )
            meeting, host_key = r.json()["id"], r.json()["host_key"]
            listeners = [Listener(api, meeting, f"l{i}") for i in range(3)]

            def presenter(name: str, seq: int, **body: object) -> Presenter:
                answer = api.post(
                    f"/v1/meetings/{meeting}/join",
                    json={"name": name, "ssrcs": [SSRC], **body},
                    headers={"Authorization": ""},
                )
                assert answer.status_code == 201, answer.text
                return Presenter(answer.json(), seq)

            # 1. The presenter sends 65530..65534, is expelled; a newcomer sends them again.
            first = presenter("first", 65530, role="host", host_key=host_key)
            exchange(first, listeners, b"first", 5)
            r = api.patch(f"/v1/meetings/{meeting}/participants/{first.id}", json={"expel": True})
            assert r.status_code == 200
            second = presenter("second", 65530, role="panelist", password="pp")
            exchange(second, listeners, b"second", 5)
            for x in listeners:  # the listener's stream went on where it was
                assert x.seqs[:10] == [(65530 + k) & 0xFFFF for k in range(10)]

            # 2. The newcomer's sequence numbers wrap (ROC 1), then the host makes it host:
            # it leaves and joins again, keys kept.
            exchange(second, listeners, b"wrap", 20)
            assert second.seq > 65536
            r = api.patch(f"/v1/meetings/{meeting}/participants/{second.id}", json={"role": "host"})
            assert r.status_code == 200, r.text
            exchange(second, listeners, b"host now", 5)

            # 3. Its worker killed outright: the supervisor starts it again.
            time.sleep(1.2)  # the stream state is saved once a second
            os.kill(serve.worker_pids()[0], signal.SIGKILL)
            worker_gap = gap(second, listeners, b"after worker kill")
            exchange(second, listeners, b"steady", 5)

        # 4. relay serve itself killed outright, and started again at once on its ports.
        os.kill(serve.process.pid, signal.SIGKILL)
        serve.process.wait()
        killed_at = time.monotonic()
        restarted = start_serve(data, 2, base=base)
        up_after = time.monotonic() - killed_at
        serve_gap = up_after + gap(second, listeners, b"after serve kill")
        exchange(second, listeners, b"again", 5)
        print(
            f"\nworker kill -9: every listener decrypting again within {worker_gap * 1000:.0f} ms;"
            f" relay serve kill -9 and restart: up in {up_after:.2f} s, every listener "
            f"decrypting again within {serve_gap:.2f} s"
        )
        for x in listeners:
            assert b"first 4" in x.payloads and b"again 4" in x.payloads
    finally:
        if restarted is not None:
            stop_serve(restarted)
        elif serve.process.poll() is None:
            stop_serve(serve)


def test_nothing_of_a_killed_serve_holds_its_ports_when_it_starts_again(tmp_path: Path) -> None:
    """kill -9 and an immediate restart, several times: each start comes up (the predecessor's
    children end with it), and after the last stop every port is free."""
    base = free_ports(4)
    data = tmp_path / "data"
    for _ in range(3):
        serve = start_serve(data, 2, base=base)
        os.kill(serve.process.pid, signal.SIGKILL)
        serve.process.wait()
    last = start_serve(data, 2, base=base)
    assert stop_serve(last) == 143
    for port in range(base, base + 4):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))
