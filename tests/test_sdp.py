"""control.keys and control.sdp: SDES keys and the SDP of a join answer.

The exact-text tests pin what a client gets; the parse-back tests check every a=crypto line
against relay.srtp.parse_sdes_key; the ffmpeg tests (skipped without ffmpeg on PATH) check that
ffmpeg 5.1 accepts a listener SDP and decrypts SRTP sent with its key.
"""

from __future__ import annotations

import base64
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from control.keys import crypto_line, new_master_key, sdes_inline
from control.sdp import listener_sdp, sender_sdp
from relay.srtp import SUITES, Session, parse_sdes_key
from relay.wire import Stream

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

CM80 = "AES_CM_128_HMAC_SHA1_80"
K1 = bytes(range(1, 31))  # the interop notes' K1: 01..1e
K1_B64 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e"
OPUS = Stream(ssrc=0x11223344, kind="audio", pt=111, codec="opus/48000/2")
VP8 = Stream(ssrc=0x55667788, kind="video", pt=96, codec="VP8/90000")
H264 = Stream(ssrc=42, kind="video", pt=97, codec="H264/90000")
P = 40000


def lines(*text: str) -> str:
    return "".join(line + "\r\n" for line in text)


def material(suite: str, seed: int = 3) -> bytes:
    key_len, salt_len, _ = SUITES[suite]
    return bytes((seed * 29 + i) & 0xFF for i in range(key_len + salt_len))


# --- control.keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(SUITES))
def test_new_master_key_length_and_freshness(suite: str) -> None:
    key_len, salt_len, _ = SUITES[suite]
    keys = {new_master_key(suite) for _ in range(8)}
    assert len(keys) == 8
    assert all(isinstance(k, bytes) and len(k) == key_len + salt_len for k in keys)


def test_new_master_key_unknown_suite() -> None:
    with pytest.raises(ValueError, match="unknown SRTP suite"):
        new_master_key("AES_CM_256_NOPE")


def test_sdes_inline_is_padded_base64() -> None:
    assert sdes_inline(K1) == "inline:" + K1_B64
    gcm = bytes(28)  # AEAD_AES_128_GCM: 28 bytes -> 40 characters with padding
    assert sdes_inline(gcm) == "inline:" + base64.b64encode(gcm).decode()
    assert sdes_inline(gcm).endswith("=")
    for bad in (b"", "text"):
        with pytest.raises(ValueError):
            sdes_inline(bad)  # type: ignore[arg-type]


def test_crypto_line_text() -> None:
    assert crypto_line(1, CM80, K1) == f"a=crypto:1 {CM80} inline:{K1_B64}"


@pytest.mark.parametrize("suite", list(SUITES))
def test_crypto_line_round_trip(suite: str) -> None:
    key = new_master_key(suite)
    line = crypto_line(7, suite, key)
    tag, name, params = line.removeprefix("a=crypto:").split(" ")
    assert (tag, name) == ("7", suite)
    assert parse_sdes_key(name, params) == key


@pytest.mark.parametrize(
    ("tag", "suite", "key", "message"),
    [
        (0, CM80, K1, "tag"),
        (1_000_000_000, CM80, K1, "tag"),
        (True, CM80, K1, "tag"),
        (1, "NOPE", K1, "unknown SRTP suite"),
        (1, CM80, K1[:-1], "needs 30 bytes"),
        (1, "AEAD_AES_256_GCM", K1, "needs 44 bytes"),
    ],
)
def test_crypto_line_errors(tag: int, suite: str, key: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        crypto_line(tag, suite, key)


# --- control.sdp: exact text ----------------------------------------------------------------


def test_listener_audio_only() -> None:
    assert listener_sdp(("127.0.0.1", P), [OPUS], CM80, K1, 1234) == lines(
        "v=0",
        "o=- 1234 1 IN IP4 127.0.0.1",
        "s=relay",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {P} RTP/SAVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=recvonly",
        "a=ssrc:287454020 cname:relay",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
    )


def test_listener_audio_and_video_on_port_and_port_plus_2() -> None:
    assert listener_sdp(("192.0.2.7", P), [OPUS, VP8], CM80, K1, 9) == lines(
        "v=0",
        "o=- 9 1 IN IP4 192.0.2.7",
        "s=relay",
        "c=IN IP4 192.0.2.7",
        "t=0 0",
        f"m=audio {P} RTP/SAVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=recvonly",
        "a=ssrc:287454020 cname:relay",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
        f"m=video {P + 2} RTP/SAVP 96",
        "a=rtpmap:96 VP8/90000",
        "a=recvonly",
        "a=ssrc:1432778632 cname:relay",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
    )


@pytest.mark.parametrize("host", ["2001:db8::1", "[2001:db8::1]", "2001:DB8:0::1"])
def test_listener_ipv6(host: str) -> None:
    assert listener_sdp((host, P), [OPUS], CM80, K1, 5) == lines(
        "v=0",
        "o=- 5 1 IN IP6 2001:db8::1",
        "s=relay",
        "c=IN IP6 2001:db8::1",
        "t=0 0",
        f"m=audio {P} RTP/SAVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=recvonly",
        "a=ssrc:287454020 cname:relay",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
    )


def test_listener_without_streams_describes_one_opus_line() -> None:
    assert listener_sdp(("127.0.0.1", P), [], CM80, K1, 0) == lines(
        "v=0",
        "o=- 0 1 IN IP4 127.0.0.1",
        "s=relay",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {P} RTP/SAVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=recvonly",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
    )


def test_sender_with_streams() -> None:
    assert sender_sdp("203.0.113.5", 50000, [OPUS, VP8], CM80, K1, 77) == lines(
        "v=0",
        "o=- 77 1 IN IP4 203.0.113.5",
        "s=relay",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "m=audio 50000 RTP/SAVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-mux",
        "a=sendrecv",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
        "m=video 50000 RTP/SAVP 96",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-mux",
        "a=sendrecv",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
    )


def test_sender_without_streams() -> None:
    assert sender_sdp("::1", 50000, [], CM80, K1, 77) == lines(
        "v=0",
        "o=- 77 1 IN IP6 ::1",
        "s=relay",
        "c=IN IP6 ::1",
        "t=0 0",
        "m=audio 50000 RTP/SAVP 111",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-mux",
        "a=sendrecv",
        f"a=crypto:1 {CM80} inline:{K1_B64}",
    )


def test_h264_gets_packetization_mode_1() -> None:
    listener = listener_sdp(("127.0.0.1", P), [H264], CM80, K1, 1)
    assert "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\na=recvonly\r\n" in listener
    sender = sender_sdp("127.0.0.1", P, [H264], CM80, K1, 1)
    assert "a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\na=rtcp-mux\r\n" in sender
    for other in (listener_sdp(("127.0.0.1", P), [OPUS, VP8], CM80, K1, 1),):
        assert "a=fmtp" not in other


# --- control.sdp: errors --------------------------------------------------------------------


def stream(**changes: Any) -> Stream:
    base: dict[str, Any] = {"ssrc": 1, "kind": "audio", "pt": 111, "codec": "opus/48000/2"}
    return Stream(**{**base, **changes})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"receive_at": ("example.com", P)}, "not an IPv4 or IPv6 address"),
        ({"receive_at": ("127.0.0.1:40000", P)}, "not an IPv4 or IPv6 address"),
        ({"receive_at": ("0.0.0.0", P)}, "unspecified"),
        ({"receive_at": ("::", P)}, "unspecified"),
        ({"receive_at": ("239.1.2.3", P)}, "multicast"),
        ({"receive_at": ("fe80::1%eth0", P)}, "zone index"),
        ({"receive_at": (1, P)}, "IP address string"),
        ({"receive_at": "127.0.0.1:40000"}, r"\(host, port\) tuple"),
        ({"receive_at": ("127.0.0.1",)}, r"\(host, port\) tuple"),
        ({"receive_at": ("127.0.0.1", 0)}, "port must be an integer in 1..65535"),
        ({"receive_at": ("127.0.0.1", 65536)}, "port must be an integer in 1..65535"),
        ({"receive_at": ("127.0.0.1", "40000")}, "port must be an integer in 1..65535"),
        ({"receive_at": ("127.0.0.1", True)}, "port must be an integer in 1..65535"),
        ({"receive_at": ("127.0.0.1", 65535)}, "is too high: the SDP describes 1 stream"),
        (
            {"receive_at": ("127.0.0.1", 65533), "streams": [OPUS, VP8]},
            "is too high: the SDP describes 2 stream",
        ),
        ({"streams": [stream(pt=128)]}, "payload type must be an integer in 0..127"),
        ({"streams": [stream(pt=-1)]}, "payload type must be an integer in 0..127"),
        ({"streams": [stream(pt=True)]}, "payload type must be an integer in 0..127"),
        ({"streams": [stream(pt=64)]}, "RFC 5761"),
        ({"streams": [stream(pt=72)]}, "RFC 5761"),
        ({"streams": [stream(pt=95)]}, "RFC 5761"),
        ({"streams": [stream(kind="text")]}, "kind must be one of audio, video, application"),
        ({"streams": [stream(codec="opus")]}, "name/clock"),
        ({"streams": [stream(codec="opus/48000/2/1")]}, "name/clock"),
        ({"streams": [stream(codec="opus/0")]}, "name/clock"),
        ({"streams": [stream(codec="opus/48000/0")]}, "name/clock"),
        ({"streams": [stream(codec="/48000")]}, "name/clock"),
        ({"streams": [stream(codec="op us/48000")]}, "name/clock"),
        ({"streams": [stream(codec="opus/48000\r\na=x")]}, "name/clock"),
        ({"streams": [stream(codec="opus/9999999999")]}, "clock rate"),
        ({"streams": [stream(kind="video", codec="VP8/90000/2")]}, "only audio"),
        ({"streams": [stream(ssrc=-1)]}, "ssrc must be an integer"),
        ({"streams": [stream(ssrc=2**32)]}, "ssrc must be an integer"),
        ({"streams": [stream(ssrc=5), stream(ssrc=5, kind="video", codec="VP8/90000")]}, "twice"),
        ({"streams": [(1, "audio", 111, "opus/48000/2")]}, "relay.wire.Stream"),
        ({"streams": "opus"}, "list of relay.wire.Stream"),
        ({"suite": "AES_CM_128_NULL"}, "unknown SRTP suite"),
        ({"downlink": K1[:16]}, "needs 30 bytes"),
        ({"suite": "AEAD_AES_128_GCM"}, "needs 28 bytes"),
        ({"session_id": -1}, "session id"),
        ({"session_id": 2**63}, "session id"),
    ],
)
def test_listener_errors(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "receive_at": ("127.0.0.1", P),
        "streams": [OPUS],
        "suite": CM80,
        "downlink": K1,
        "session_id": 1,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        listener_sdp(**args)


def test_listener_port_room_boundary() -> None:
    # stream k uses port + 2k and port + 2k + 1: the last RTCP port may be 65535 itself
    assert "m=audio 65534 " in listener_sdp(("127.0.0.1", 65534), [OPUS], CM80, K1, 1)
    text = listener_sdp(("127.0.0.1", 65532), [OPUS, VP8], CM80, K1, 1)
    assert "m=video 65534 " in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"relay_host": "relay.example"}, "not an IPv4 or IPv6 address"),
        ({"relay_host": "0.0.0.0"}, "unspecified"),
        ({"relay_port": 0}, "port must be an integer in 1..65535"),
        ({"relay_port": 70000}, "port must be an integer in 1..65535"),
        ({"streams": [stream(pt=77)]}, "RFC 5761"),
        ({"streams": [stream(kind="data")]}, "kind must be one of"),
        ({"streams": [stream(codec="opus")]}, "name/clock"),
        ({"suite": "nope"}, "unknown SRTP suite"),
        ({"downlink": b""}, "needs 30 bytes"),
        ({"session_id": -5}, "session id"),
    ],
)
def test_sender_errors(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "relay_host": "127.0.0.1",
        "relay_port": 50000,
        "streams": [OPUS],
        "suite": CM80,
        "downlink": K1,
        "session_id": 1,
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        sender_sdp(**args)


def test_sender_port_65535_is_fine_with_rtcp_mux() -> None:
    assert "m=audio 65535 " in sender_sdp("127.0.0.1", 65535, [OPUS, VP8], CM80, K1, 1)


# --- parse the rendered SDP back ------------------------------------------------------------


@dataclass
class Media:
    kind: str
    port: int
    proto: str
    formats: list[str]
    attributes: list[str] = field(default_factory=list)


@dataclass
class Parsed:
    session: list[tuple[str, str]]
    media: list[Media]


def parse(sdp: str) -> Parsed:
    """A tiny SDP reader: session-level lines and, per m= line, its a= values."""
    assert sdp.endswith("\r\n")
    body = sdp[: -len("\r\n")].split("\r\n")
    assert all("\n" not in line and "\r" not in line for line in body)
    parsed = Parsed([], [])
    for line in body:
        letter, eq, value = line.partition("=")
        assert eq and len(letter) == 1, line
        if letter == "m":
            kind, port, proto, *formats = value.split(" ")
            parsed.media.append(Media(kind, int(port), proto, formats))
        elif parsed.media:
            assert letter == "a", line
            parsed.media[-1].attributes.append(value)
        else:
            parsed.session.append((letter, value))
    assert [letter for letter, _ in parsed.session] == ["v", "o", "s", "c", "t"]
    return parsed


def check_crypto(parsed: Parsed, suite: str, key: bytes) -> None:
    for media in parsed.media:
        cryptos = [a for a in media.attributes if a.startswith("crypto:")]
        assert len(cryptos) == 1, media
        tag, name, params = cryptos[0].removeprefix("crypto:").split(" ")
        assert (tag, name) == ("1", suite)
        assert parse_sdes_key(name, params) == key


@pytest.mark.parametrize("suite", list(SUITES))
def test_listener_parses_back(suite: str) -> None:
    key = material(suite)
    streams = [OPUS, VP8, H264]
    parsed = parse(listener_sdp(("10.1.2.3", 30000), streams, suite, key, 3))
    assert ("c", "IN IP4 10.1.2.3") in parsed.session
    assert [m.port for m in parsed.media] == [30000, 30002, 30004]
    for media, s in zip(parsed.media, streams, strict=True):
        assert (media.kind, media.proto, media.formats) == (s.kind, "RTP/SAVP", [str(s.pt)])
        assert f"rtpmap:{s.pt} {s.codec}" in media.attributes
        assert "recvonly" in media.attributes
        assert f"ssrc:{s.ssrc} cname:relay" in media.attributes
    check_crypto(parsed, suite, key)


@pytest.mark.parametrize("suite", list(SUITES))
def test_sender_parses_back(suite: str) -> None:
    key = new_master_key(suite)
    for streams in ([], [OPUS, VP8]):
        parsed = parse(sender_sdp("fd00::7", 50010, streams, suite, key, 3))
        assert ("c", "IN IP6 fd00::7") in parsed.session
        assert len(parsed.media) == max(1, len(streams))
        for media in parsed.media:
            assert media.port == 50010 and media.proto == "RTP/SAVP"
            assert {"rtcp-mux", "sendrecv"} <= set(media.attributes)
        check_crypto(parsed, suite, key)


# --- ffmpeg reads the listener SDP ------------------------------------------------------------

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not on PATH")


def free_port_pair() -> int:
    """An even UDP port P with P and P + 1 free (ffmpeg binds both, on 0.0.0.0)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("0.0.0.0", 0))
            port = int(probe.getsockname()[1]) & ~1
        if port < 1024 or port + 1 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
                a.bind(("0.0.0.0", port))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("0.0.0.0", port + 1))
        except OSError:
            continue
        return port
    pytest.skip("no free UDP port pair")


def ffmpeg_receive(sdp_file: Path, *output: str) -> subprocess.Popen[bytes]:
    assert FFMPEG is not None
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-nostdin", "-protocol_whitelist", "file,udp,rtp,srtp"]
        + ["-listen_timeout", "2", "-i", str(sdp_file), "-t", "1", *output],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_bound(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 5.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and proc.poll() is None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return  # ffmpeg holds the port
        time.sleep(0.02)
    raise AssertionError(f"ffmpeg did not bind UDP port {port}")


def assert_clean(stderr: str) -> None:
    lowered = stderr.lower()
    for bad in ("invalid data", "error parsing", "not supported", "hmac mismatch"):
        assert bad not in lowered, stderr
    assert "Stream #0:0: Audio: opus" in stderr, stderr


@needs_ffmpeg
def test_ffmpeg_accepts_listener_sdp(tmp_path: Path) -> None:
    port = free_port_pair()
    sdp = tmp_path / "join.sdp"
    sdp.write_text(listener_sdp(("127.0.0.1", port), [OPUS], CM80, K1, 1), newline="")
    proc = ffmpeg_receive(sdp, "-f", "null", "-")
    try:
        _, err = proc.communicate(timeout=9)  # no packets: about 2 x listen_timeout
    finally:
        proc.kill()
    assert_clean(err.decode(errors="replace"))


@needs_ffmpeg
def test_ffmpeg_decrypts_with_the_sdp_key(tmp_path: Path) -> None:
    """SRTP sent with the downlink key comes out of ffmpeg as the plaintext payload."""
    port = free_port_pair()
    sdp = tmp_path / "join.sdp"
    sdp.write_text(listener_sdp(("127.0.0.1", port), [OPUS], CM80, K1, 1), newline="")
    proc = ffmpeg_receive(sdp, "-c:a", "copy", "-f", "framecrc", "-")
    try:
        wait_bound(port, proc)
        sender = Session(CM80, K1)
        silence = b"\xf8\xff\xfe"  # one 20 ms Opus frame (CELT, fullband), 3 bytes
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for i in range(75):  # 1.5 s of audio; ffmpeg stops after 1 s (-t 1)
                header = struct.pack("!BBHII", 0x80, 0x80 | OPUS.pt, 1000 + i, i * 960, OPUS.ssrc)
                tx.sendto(sender.protect(header + silence), ("127.0.0.1", port))
                time.sleep(0.002)
        out, err = proc.communicate(timeout=9)
    finally:
        proc.kill()
    assert_clean(err.decode(errors="replace"))
    frames = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
    assert len(frames) >= 40, out.decode()
    # framecrc: stream, dts, pts, duration, size, crc. Size 3 is the decrypted payload; a key
    # that was ignored would leave the 13 bytes of ciphertext and tag.
    assert all(line.split(",")[4].strip() == "3" for line in frames), out.decode()
