"""rtpengine (userspace, its own SRTP code on OpenSSL: a third implementation besides libsrtp
and ffmpeg) as a peer of `relay serve`, driven by its ng protocol.

rtpengine bridges an SDES leg to a plain RTP leg. The relay's listener is its SDES leg: the
listener joins with `receive_at` = rtpengine's SRTP port, and the SDP answer given to
rtpengine carries the listener's downlink key, so rtpengine decrypts what the relay protected
and forwards it, plain, to this test's socket. For each suite rtpengine offers that the relay
speaks (AES-CM 80 and 32, GCM 128 and 256), every packet must arrive intact.

Skipped unless rtpengine is installed (Debian: rtpengine-daemon), or required with
RELAY_REQUIRE_RTPENGINE=1.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from relay.srtp import Session
from tests.conftest import rtp
from tests.test_serve import Serve, free_ports, start_serve, stop_serve

pytestmark = pytest.mark.interop

RTPENGINE = shutil.which("rtpengine")


def fresh_ssrc() -> int:
    """An SSRC no other test's meeting declared: the relay tries at most a few senders that
    share an SSRC when it latches a new one (relay._core MAX_CANDIDATES)."""
    return 0x10000 + secrets.randbelow(1 << 30)


OFFERED = [  # what rtpengine 10.5 offers, by SDES name
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
]


# --- bencode, as the ng protocol speaks it ---------------------------------------------------


def bencode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, str):
        return bencode(value.encode())
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(type(value))


def bdecode(data: bytes, at: int = 0) -> tuple[Any, int]:
    head = data[at : at + 1]
    if head == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if head in (b"l", b"d"):
        at += 1
        items = []
        while data[at : at + 1] != b"e":
            item, at = bdecode(data, at)
            items.append(item)
        if head == b"l":
            return items, at + 1
        return {items[i].decode(): items[i + 1] for i in range(0, len(items), 2)}, at + 1
    colon = data.index(b":", at)
    length = int(data[at:colon])
    return data[colon + 1 : colon + 1 + length], colon + 1 + length


class Rtpengine:
    def __init__(self, port_min: int) -> None:
        assert RTPENGINE is not None
        self.ng = ("127.0.0.1", free_ports(2) + 2)
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
        self.process = subprocess.Popen(
            [RTPENGINE, "--config-file=none", "--table=-1", "--interface=127.0.0.1"]
            + [f"--listen-ng={self.ng[0]}:{self.ng[1]}", "--foreground", "--log-stderr"]
            # One media thread: with two, each can take a packet off the same socket, and the
            # first packet of a stream (rtpengine learns its peer, logs it) can leave after the
            # next ones; these tests compare what arrives in order.
            + ["--log-level=6", "--num-threads=1"]
            + [f"--port-min={port_min}", f"--port-max={port_min + 99}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.call({"command": "ping"}).get("result") == b"pong":
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("rtpengine did not answer its ng port")

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        cookie = secrets.token_hex(4).encode()
        self.sock.sendto(cookie + b" " + bencode(command), self.ng)
        while True:
            data = self.sock.recv(65536)
            if data.startswith(cookie + b" "):
                reply, _ = bdecode(data, len(cookie) + 1)
                assert isinstance(reply, dict)
                return reply

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.sock.close()


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Serve, Rtpengine]]:
    if RTPENGINE is None:
        if os.environ.get("RELAY_REQUIRE_RTPENGINE") == "1":
            pytest.fail("rtpengine is required (RELAY_REQUIRE_RTPENGINE=1) but not installed")
        pytest.skip("rtpengine is not installed (Debian: rtpengine-daemon)")
    serve = start_serve(tmp_path_factory.mktemp("rtpengine") / "data", 1)
    engine = Rtpengine(free_ports(100) & ~1)
    try:
        yield serve, engine
    finally:
        engine.stop()
        stop_serve(serve)


def sdp(port: int, profile: str, crypto: str = "") -> str:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=test",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {port} {profile} 111",
        "a=rtpmap:111 opus/48000/2",
        "a=sendrecv",
    ]
    if crypto:
        lines.append(crypto)
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    "suite",
    ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"],
)
def test_rtpengine_decrypts_what_the_relay_sends(
    peers: tuple[Serve, Rtpengine], suite: str
) -> None:
    serve, engine = peers
    ssrc = fresh_ssrc()
    plain_in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # rtpengine's plain leg
    plain_in.bind(("127.0.0.1", 0))
    plain_in.settimeout(2)
    call_id = secrets.token_hex(8)
    offer = engine.call(
        {
            "command": "offer",
            "call-id": call_id,
            "from-tag": "plain",
            "sdp": sdp(plain_in.getsockname()[1], "RTP/AVP"),
            "transport-protocol": "RTP/SAVP",
            "ICE": "remove",
            "DTLS": "off",
        }
    )
    assert offer.get("result") == b"ok", offer
    offered = offer["sdp"].decode()
    srtp_port = int(re.search(r"m=audio (\d+) RTP/SAVP", offered)[1])  # type: ignore[index]
    tag = re.search(rf"a=crypto:(\d+) {suite} inline:", offered)
    assert tag is not None, f"rtpengine did not offer {suite}"
    with serve.api() as api:
        created = api.post(
            "/v1/meetings",
            json={"title": "rtpengine", "mode": "webinar", "password": "pw", "suite": suite},
        ).json()
        path = f"/v1/meetings/{created['id']}/join"
        presenter = api.post(
            path,
            json={"name": "p", "role": "host", "host_key": created["host_key"], "ssrcs": [ssrc]},
        ).json()
        listener = api.post(
            path,
            json={"name": "rtpengine", "password": "pw", "receive_at": f"127.0.0.1:{srtp_port}"},
        ).json()
    # The SDES answer: the key the relay's side sends with is the listener's downlink key,
    # as its join answer's SDP says (rtpengine omits base64 padding; we send it padded).
    crypto = f"a=crypto:{tag[1]} {suite} inline:{listener['srtp']['downlink']}"
    assert crypto.split(" inline:")[1] in listener["sdp"]
    answer = engine.call(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "plain",
            "to-tag": "relay",
            "sdp": sdp(presenter["relay"]["port"], "RTP/SAVP", crypto),
            "ICE": "remove",
        }
    )
    assert answer.get("result") == b"ok", answer
    sender = Session(suite, base64.b64decode(presenter["srtp"]["uplink"]))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay_at = (presenter["relay"]["host"], presenter["relay"]["port"])
    # Probes until one comes out of rtpengine: the joins reach the worker a moment after the
    # API answers them, and rtpengine learns the stream on its first packet.
    probes = 0
    while probes < 100:
        out.sendto(sender.protect(rtp(probes, ssrc, payload=b"probe")), relay_at)
        probes += 1
        try:
            plain_in.settimeout(0.02)
            if plain_in.recv(2048)[12:] == b"probe":
                break
        except TimeoutError:
            pass
    plain_in.settimeout(2)
    sent = [rtp(probes + n, ssrc, payload=b"via rtpengine %d" % n) for n in range(50)]
    for packet in sent:
        out.sendto(sender.protect(packet), relay_at)
        time.sleep(0.002)
    got: list[bytes] = []
    try:
        while len(got) < len(sent):
            arrived = plain_in.recv(2048)
            if arrived[12:] != b"probe":  # a late probe's answer
                got.append(arrived)
    except TimeoutError:
        pass
    stats = engine.call({"command": "query", "call-id": call_id})
    engine.call({"command": "delete", "call-id": call_id, "from-tag": "plain"})
    out.close()
    plain_in.close()
    assert [g[12:] for g in got] == [s[12:] for s in sent], stats


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"])
def test_rtpengine_as_an_sdes_participant_both_ways(
    peers: tuple[Serve, Rtpengine], suite: str
) -> None:
    """rtpengine offers SDES with its own sending key; the participant joins with that key as
    its uplink, and the join answer's SDP goes back to rtpengine unchanged as the SDES answer
    (relay address, downlink key). rtpengine then encrypts a plain RTP stream towards the
    relay, which decrypts it for a libsrtp listener; and decrypts what the relay sends it."""
    from tests.test_interop_ffmpeg import LibsrtpListener

    serve, engine = peers
    ssrc = fresh_ssrc()
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # rtpengine's plain leg
    plain.bind(("127.0.0.1", 0))
    plain.settimeout(2)
    call_id = secrets.token_hex(8)
    others = [s for s in OFFERED if s != suite]
    offer = engine.call(
        {
            "command": "offer",
            "call-id": call_id,
            "from-tag": "plain",
            "sdp": sdp(plain.getsockname()[1], "RTP/AVP"),
            "transport-protocol": "RTP/SAVP",
            "ICE": "remove",
            "DTLS": "off",
            "SDES": [f"no-{s}" for s in others],
        }
    )
    assert offer.get("result") == b"ok", offer
    offered = offer["sdp"].decode()
    found = re.search(rf"a=crypto:(\d+) {suite} inline:([A-Za-z0-9+/=]+)", offered)
    assert found is not None, offered
    with serve.api() as api:
        created = api.post(
            "/v1/meetings", json={"title": "sdes", "password": "pw", "suite": suite}
        ).json()
        path = f"/v1/meetings/{created['id']}/join"
        engine_side = api.post(
            path,
            json={"name": "rtpengine", "password": "pw", "ssrcs": [ssrc], "uplink": found[2]},
        ).json()
        assert engine_side["srtp"]["uplink"].rstrip("=") == found[2].rstrip("=")
        listener = LibsrtpListener()
        listener.start(
            api.post(
                path, json={"name": "l", "password": "pw", "receive_at": listener.address}
            ).json()
        )
        speaker = api.post(path, json={"name": "s", "password": "pw", "ssrcs": [ssrc + 1]}).json()
    answer_sdp = engine_side["sdp"]
    if found[1] != "1":  # the SDES answer names the offer's tag
        answer_sdp = answer_sdp.replace("a=crypto:1 ", f"a=crypto:{found[1]} ")
    answer = engine.call(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "plain",
            "to-tag": "relay",
            "sdp": answer_sdp,
            "ICE": "remove",
        }
    )
    assert answer.get("result") == b"ok", answer
    plain_port = int(re.search(r"m=audio (\d+) RTP/AVP", answer["sdp"].decode())[1])  # type: ignore[index]
    # rtpengine -> relay: plain RTP in, SRTP with rtpengine's key to the relay, to libsrtp.
    # The joins reach the worker a moment after the API answers them (longer for a worker on
    # the debug build, scripts/test): probes first, until one arrives, then what is compared.
    for n in range(100):
        plain.sendto(rtp(n, ssrc, payload=b"probe"), ("127.0.0.1", plain_port))
        time.sleep(0.02)
        if listener.rtp:
            break
    sent = [rtp(100 + n, ssrc, payload=b"from rtpengine %d" % n) for n in range(30)]
    for packet in sent:
        plain.sendto(packet, ("127.0.0.1", plain_port))
        time.sleep(0.003)
    time.sleep(0.3)
    listener.stop()
    assert listener.failures == []
    got = [p[12:] for p in listener.rtp if p[12:] != b"probe"]
    assert got == [p[12:] for p in sent]
    # relay -> rtpengine: the relay now knows rtpengine's address (latched from its packets).
    sender = Session(suite, base64.b64decode(speaker["srtp"]["uplink"]))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back = [rtp(n, ssrc + 1, payload=b"to rtpengine %d" % n) for n in range(30)]
    for packet in back:
        out.sendto(sender.protect(packet), (speaker["relay"]["host"], speaker["relay"]["port"]))
        time.sleep(0.003)
    got: list[bytes] = []
    try:
        while len(got) < len(back):
            got.append(plain.recv(2048))
    except TimeoutError:
        pass
    engine.call({"command": "delete", "call-id": call_id, "from-tag": "plain"})
    out.close()
    plain.close()
    assert [g[12:] for g in got] == [p[12:] for p in back]
