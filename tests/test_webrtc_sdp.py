"""control.webrtc_sdp: reading WHIP and WHEP offers and writing the relay's answers.

Three kinds of evidence:

- aiortc, a WebRTC implementation nobody here wrote, makes the offers (as a publisher and as a
  viewer) and takes our answers with setRemoteDescription; what it negotiated (codec, payload
  type, direction, remote SSRCs, ICE and DTLS parameters) must be what we meant.
- Representative Chrome and Firefox offers, written by hand from those browsers' well-known SDP
  shape (see CHROME_PUBLISH and FIREFOX_PUBLISH), answered and checked line by line.
- Each refusal, with its reason, and property tests (Hypothesis) that nothing but OfferError
  comes out of parse_offer, whatever the text, and that the answers are always clean CRLF SDP.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.webrtc_sdp import (
    MAX_OFFER_CHARS,
    MAX_OFFER_LINES,
    Fingerprint,
    OfferError,
    Placement,
    answer_publisher,
    answer_viewer,
    parse_offer,
)
from relay.wire import Stream

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

HOST = "203.0.113.7"
PORT = 40000
UFRAG = "RelayUfrag1"
PWD = "RelayPassword0123456789ab"
RELAY_FP = "sha-256 " + ":".join(f"{i * 7 % 256:02X}" for i in range(32))
LOCAL: dict[str, Any] = {
    "ice_ufrag": UFRAG,
    "ice_pwd": PWD,
    "fingerprint": RELAY_FP,
    "host": HOST,
    "port": PORT,
    "session_id": 42,
}
CANDIDATE = f"a=candidate:1 1 udp 2130706431 {HOST} {PORT} typ host"
CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus-sdp"


def crlf(text: str) -> str:
    return "".join(line + "\r\n" for line in text.strip("\n").split("\n"))


def fingerprint(seed: int, length: int = 32) -> str:
    return ":".join(f"{(seed + 13 * i) % 256:02X}" for i in range(length))


def feedback(*pts: int) -> str:
    kinds = ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
    return "\n".join(f"a=rtcp-fb:{pt} {kind}" for pt in pts for kind in kinds)


# A representative Chrome offer (about M120) for WHIP, written by hand from Chrome's well-known
# SDP shape: addTransceiver("audio"/"video", {direction: "sendonly"}) plus a data channel;
# transport attributes in every m= section, a=ice-options:trickle, a=setup:actpass, a=extmap
# (transport-cc, abs-send-time, mid, rid), RTX per video codec tied by ssrc-group FID, RED and
# ULPFEC, H.264 in four variants, no simulcast. Identifiers and keys are made up.
CHROME_FP = fingerprint(1)
CHROME_TRANSPORT = f"""a=ice-ufrag:Xk3d
a=ice-pwd:Ql9t3mXvB2yKpR7sW1nC8fJh
a=ice-options:trickle
a=fingerprint:sha-256 {CHROME_FP}
a=setup:actpass"""
CHROME_PUBLISH = crlf(
    f"""
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=extmap-allow-mixed
a=msid-semantic: WMS 3f5a7d4e
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
{CHROME_TRANSPORT}
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendonly
a=msid:3f5a7d4e 9b2c1f7a
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1719183524 cname:Pq2lJ5yEwXnT0cVb
a=ssrc:1719183524 msid:3f5a7d4e 9b2c1f7a
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 39 40 98 99 100 101 116 117 118
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
{CHROME_TRANSPORT}
a=mid:1
a=extmap:14 urn:ietf:params:rtp-hdrext:toffset
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:13 urn:3gpp:video-orientation
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:3f5a7d4e 5d8e0a3b
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
{feedback(96)}
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
{feedback(102)}
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
{feedback(104)}
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=104
a=rtpmap:106 H264/90000
{feedback(106)}
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:108 H264/90000
{feedback(108)}
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:39 AV1/90000
{feedback(39)}
a=fmtp:39 level-idx=5;profile=0;tier=0
a=rtpmap:40 rtx/90000
a=fmtp:40 apt=39
a=rtpmap:98 VP9/90000
{feedback(98)}
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:100 VP9/90000
{feedback(100)}
a=fmtp:100 profile-id=2
a=rtpmap:101 rtx/90000
a=fmtp:101 apt=100
a=rtpmap:116 red/90000
a=rtpmap:117 rtx/90000
a=fmtp:117 apt=116
a=rtpmap:118 ulpfec/90000
a=ssrc-group:FID 3523718273 2087129922
a=ssrc:3523718273 cname:Pq2lJ5yEwXnT0cVb
a=ssrc:3523718273 msid:3f5a7d4e 5d8e0a3b
a=ssrc:2087129922 cname:Pq2lJ5yEwXnT0cVb
a=ssrc:2087129922 msid:3f5a7d4e 5d8e0a3b
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
{CHROME_TRANSPORT}
a=mid:2
a=sctp-port:5000
a=max-message-size:262144
"""
)
CHROME_AUDIO_SSRC = 1719183524
CHROME_VIDEO_SSRC = 3523718273

# A representative Firefox offer (about version 120) for WHIP, written by hand from Firefox's
# well-known SDP shape: the fingerprint at session level, a=ice-options:trickle at session
# level, attributes in alphabetical order, 8-hex-digit ufrag and 32-hex-digit pwd, VP8 first,
# RTX tied by FID, RED and ULPFEC, a=extmap with a direction, msid in braces.
FIREFOX_FP = fingerprint(2)
FIREFOX_MSID = "{7a3e1c52-5a4b-4d47-9d1e-0c2f3b4a5d6e}"
FIREFOX_PUBLISH = crlf(
    f"""
v=0
o=mozilla...THIS_IS_SDPARTA-99.0 5212336829412344516 0 IN IP4 0.0.0.0
s=-
t=0 0
a=fingerprint:sha-256 {FIREFOX_FP}
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:5f2b6c9d0e1a4b7c8d9e0f1a2b3c4d5e
a=ice-ufrag:8a1b2c3d
a=mid:0
a=msid:{FIREFOX_MSID} {{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}}
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=setup:actpass
a=ssrc:3405691582 cname:{{5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f}}
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=fmtp:119 apt=122
a=ice-pwd:5f2b6c9d0e1a4b7c8d9e0f1a2b3c4d5e
a=ice-ufrag:8a1b2c3d
a=mid:1
a=msid:{FIREFOX_MSID} {{1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e}}
{feedback(120, 121, 126, 97)}
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=rtpmap:123 ulpfec/90000
a=rtpmap:122 red/90000
a=rtpmap:119 rtx/90000
a=setup:actpass
a=ssrc:2271223334 cname:{{5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f}}
a=ssrc:3914112212 cname:{{5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f}}
a=ssrc-group:FID 2271223334 3914112212
"""
)
FIREFOX_AUDIO_SSRC = 3405691582
FIREFOX_VIDEO_SSRC = 2271223334


def as_viewer(offer: str, keep_ssrcs: bool) -> str:
    """A publisher offer turned into the same browser's WHEP offer: recvonly transceivers.
    Chrome then declares no SSRCs and no msid; Firefox keeps its a=ssrc (for RTCP)."""
    lines = []
    for line in offer.split("\r\n"):
        if not keep_ssrcs and line.startswith(("a=ssrc", "a=msid:")):
            continue
        lines.append("a=recvonly" if line == "a=sendonly" else line)
    return "\r\n".join(lines)


CHROME_VIEW = as_viewer(CHROME_PUBLISH, keep_ssrcs=False)
FIREFOX_VIEW = as_viewer(FIREFOX_PUBLISH, keep_ssrcs=True)
SAMPLES = {
    "chrome-publish": CHROME_PUBLISH,
    "chrome-view": CHROME_VIEW,
    "firefox-publish": FIREFOX_PUBLISH,
    "firefox-view": FIREFOX_VIEW,
}

OPUS = Stream(ssrc=0x11223344, kind="audio", pt=111, codec="opus/48000/2")
VP8 = Stream(ssrc=0x55667788, kind="video", pt=120, codec="VP8/90000")
H264 = Stream(ssrc=0x01020304, kind="video", pt=102, codec="H264/90000")
VP9 = Stream(ssrc=0x0A0B0C0D, kind="video", pt=98, codec="VP9/90000")


def edit(
    text: str, *, drop: str | tuple[str, ...] | None = None, swap: tuple[str, str] | None = None
) -> str:
    """The offer without lines starting with `drop`, and with one text replaced everywhere."""
    lines = text.split("\r\n")
    if drop is not None:
        lines = [line for line in lines if not line.startswith(drop)]
    out = "\r\n".join(lines)
    if swap is not None:
        assert swap[0] in out
        out = out.replace(*swap)
    return out


def in_section(text: str, index: int, old: str, new: str) -> str:
    """The offer with `old` replaced by `new` in its m= section `index` (from 0) only."""
    parts = text.split("\r\nm=")
    assert old in parts[index + 1]
    parts[index + 1] = parts[index + 1].replace(old, new)
    return "\r\nm=".join(parts)


def sections(sdp: str) -> list[list[str]]:
    """The answer's session part and m= sections, as lists of lines."""
    assert sdp.endswith("\r\n")
    parts: list[list[str]] = [[]]
    for line in sdp[:-2].split("\r\n"):
        if line.startswith("m="):
            parts.append([])
        parts[-1].append(line)
    return parts


def check_clean(sdp: str) -> None:
    """CRLF lines of printable ASCII, each <type>=<value>: nothing from an offer broke a line."""
    assert sdp.endswith("\r\n")
    for line in sdp[:-2].split("\r\n"):
        assert re.fullmatch(r"[a-z]=[\x20-\x7e]*", line), line


# --- the representative browser offers ------------------------------------------------------


def test_chrome_offer_is_read() -> None:
    offer = parse_offer(CHROME_PUBLISH)
    assert offer.bundle == ("0", "1", "2")
    assert offer.ice_ufrag == "Xk3d" and offer.ice_pwd == "Ql9t3mXvB2yKpR7sW1nC8fJh"
    assert offer.fingerprint == Fingerprint("sha-256", bytes.fromhex(CHROME_FP.replace(":", "")))
    assert offer.setup == "actpass" and offer.trickle
    audio, video, data = offer.media
    assert (audio.kind, audio.mid, audio.direction, audio.rejected) == (
        "audio",
        "0",
        "sendonly",
        None,
    )
    assert audio.rtcp_mux and audio.rtcp_rsize and audio.port == 9
    assert [c.pt for c in audio.codecs] == [111, 63, 9, 0, 8, 13, 110, 126]  # m= line order
    assert audio.codecs[0].rtpmap == "opus/48000/2"
    assert audio.codecs[0].parameters == {"minptime": "10", "useinbandfec": "1"}
    assert audio.codecs[0].rtcp_fb == ("transport-cc",)
    assert [e.id for e in audio.extmaps] == [1, 2, 3, 4]
    assert audio.primary_ssrcs == (CHROME_AUDIO_SSRC,)
    assert video.ssrcs == (CHROME_VIDEO_SSRC, 2087129922)
    assert video.primary_ssrcs == (CHROME_VIDEO_SSRC,)  # the FID group's RTX SSRC left out
    assert video.ssrc_groups[0].semantics == "FID"
    assert video.codecs[0].rtcp_fb == ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")
    assert video.extmaps[-1].uri == "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
    assert video.msids == ("3f5a7d4e 5d8e0a3b",)
    assert not video.simulcast
    assert data.kind == "application" and data.rejected == "the relay carries no data channels"


def test_chrome_publisher_answer_line_by_line() -> None:
    answer = answer_publisher(parse_offer(CHROME_PUBLISH), **LOCAL)
    transport = [
        f"a=ice-ufrag:{UFRAG}",
        f"a=ice-pwd:{PWD}",
        f"a=fingerprint:{RELAY_FP}",
        "a=setup:passive",
        "a=rtcp-mux",
        "a=rtcp-rsize",
    ]
    assert sections(answer.sdp) == [
        ["v=0", f"o=- 42 1 IN IP4 {HOST}", "s=-", "t=0 0", "a=ice-lite", "a=group:BUNDLE 0 1"],
        [
            f"m=audio {PORT} UDP/TLS/RTP/SAVPF 111",
            f"c=IN IP4 {HOST}",
            "a=mid:0",
            "a=recvonly",
            *transport,
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1",  # transport-cc left out
            CANDIDATE,
            "a=end-of-candidates",
        ],
        [
            f"m=video {PORT} UDP/TLS/RTP/SAVPF 96",
            f"c=IN IP4 {HOST}",
            "a=mid:1",
            "a=recvonly",
            *transport,
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 nack",  # retransmission from the relay's cache (ext/rtx.pxi)
            "a=rtcp-fb:96 nack pli",  # not goog-remb nor transport-cc
            "a=rtcp-fb:96 ccm fir",
            CANDIDATE,
            "a=end-of-candidates",
        ],
        ["m=application 0 UDP/DTLS/SCTP webrtc-datachannel", f"c=IN IP4 {HOST}", "a=mid:2"],
    ]
    assert "extmap" not in answer.sdp and "rtx" not in answer.sdp and "ssrc" not in answer.sdp
    assert answer.streams == (
        Stream(CHROME_AUDIO_SSRC, "audio", 111, "opus/48000/2"),
        Stream(CHROME_VIDEO_SSRC, "video", 96, "VP8/90000"),
    )
    assert answer.fmtp == {CHROME_AUDIO_SSRC: "minptime=10;useinbandfec=1", CHROME_VIDEO_SSRC: ""}
    assert answer.peer_ice_ufrag == "Xk3d" and answer.ice_username == f"{UFRAG}:Xk3d"
    assert str(answer.peer_fingerprint) == f"sha-256 {CHROME_FP}"
    assert answer.dtls_role == "server"
    assert answer.rejected == ((2, "the relay carries no data channels"),)
    assert "Ql9t3m" not in repr(answer)  # the peer's ICE password stays out of logs


def test_firefox_publisher_answer() -> None:
    offer = parse_offer(FIREFOX_PUBLISH)
    # The session-level fingerprint and ice-options apply to every m= section.
    assert offer.fingerprint.digest == bytes.fromhex(FIREFOX_FP.replace(":", ""))
    assert offer.trickle and offer.ice_ufrag == "8a1b2c3d"
    assert offer.media[0].extmaps[1].direction == "recvonly"
    answer = answer_publisher(offer, **LOCAL)
    session, audio, video = sections(answer.sdp)
    assert "a=group:BUNDLE 0 1" in session
    assert audio[0] == f"m=audio {PORT} UDP/TLS/RTP/SAVPF 109"
    assert "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1" in audio
    assert "a=rtcp-rsize" not in audio  # not offered for audio
    assert video[0] == f"m=video {PORT} UDP/TLS/RTP/SAVPF 120"
    assert [line for line in video if line.startswith(("a=rtpmap", "a=rtcp-fb", "a=fmtp"))] == [
        "a=rtpmap:120 VP8/90000",
        "a=rtcp-fb:120 nack",
        "a=rtcp-fb:120 nack pli",
        "a=rtcp-fb:120 ccm fir",
        "a=fmtp:120 max-fs=12288;max-fr=60",
    ]
    assert "a=rtcp-rsize" in video
    for forbidden in ("ulpfec", "red/", "rtx", "extmap", "goog-remb", "transport-cc", "ssrc"):
        assert forbidden not in answer.sdp
    assert answer.streams == (
        Stream(FIREFOX_AUDIO_SSRC, "audio", 109, "opus/48000/2"),
        Stream(FIREFOX_VIDEO_SSRC, "video", 120, "VP8/90000"),
    )
    assert answer.rejected == ()
    check_clean(answer.sdp)


def test_chrome_viewer_gets_firefox_presenter_at_its_own_payload_types() -> None:
    """RFC 3264 section 6.1: the relay sends each stream to the viewer with the payload type
    the viewer's offer gave the codec, whatever the presenter used."""
    presenter = answer_publisher(parse_offer(FIREFOX_PUBLISH), **LOCAL)
    answer = answer_viewer(
        parse_offer(CHROME_VIEW), **LOCAL, streams=presenter.streams, fmtp=presenter.fmtp
    )
    session, audio, video, data = sections(answer.sdp)
    assert session[-1] == "a=group:BUNDLE 0 1"
    assert audio[:4] == [
        f"m=audio {PORT} UDP/TLS/RTP/SAVPF 111",
        f"c=IN IP4 {HOST}",
        "a=mid:0",
        "a=sendonly",
    ]
    assert f"a=ssrc:{FIREFOX_AUDIO_SSRC} cname:relay" in audio
    assert f"a=msid:relay audio-{FIREFOX_AUDIO_SSRC}" in audio
    assert "a=fmtp:111 minptime=10;useinbandfec=1" in audio  # the viewer's fmtp, as it offered
    assert video[0] == f"m=video {PORT} UDP/TLS/RTP/SAVPF 96"
    assert [line for line in video if line.startswith("a=ssrc")] == [
        f"a=ssrc:{FIREFOX_VIDEO_SSRC} cname:relay"
    ]
    assert video[-2:] == [CANDIDATE, "a=end-of-candidates"]
    assert data == [
        "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
        f"c=IN IP4 {HOST}",
        "a=mid:2",
    ]
    assert answer.placed == (Placement(FIREFOX_AUDIO_SSRC, 111), Placement(FIREFOX_VIDEO_SSRC, 96))
    assert answer.unplaced == ()
    assert answer.dtls_role == "server" and answer.ice_username == f"{UFRAG}:Xk3d"
    for forbidden in ("extmap", "rtx", "red/", "ulpfec", "transport-cc", "goog-remb"):
        assert forbidden not in answer.sdp
    check_clean(answer.sdp)


def test_firefox_viewer_gets_chrome_presenter() -> None:
    presenter = answer_publisher(parse_offer(CHROME_PUBLISH), **LOCAL)
    answer = answer_viewer(parse_offer(FIREFOX_VIEW), **LOCAL, streams=presenter.streams)
    assert answer.placed == (Placement(CHROME_AUDIO_SSRC, 109), Placement(CHROME_VIDEO_SSRC, 120))
    _, audio, video = sections(answer.sdp)
    assert "a=sendonly" in audio and "a=sendonly" in video
    assert "a=rtpmap:120 VP8/90000" in video and "a=rtcp-rsize" in video


def test_viewer_h264_goes_to_the_payload_type_with_the_presenters_profile() -> None:
    # Chrome offers H.264 Baseline (42001f) at 102 and Constrained Baseline (42e01f) at 106,
    # each in packetization modes 1 and 0. A Constrained Baseline presenter goes to 106.
    view = parse_offer(CHROME_VIEW)
    streams = [H264]
    constrained = {H264.ssrc: "profile-level-id=42e01f;packetization-mode=1"}
    answer = answer_viewer(view, **LOCAL, streams=streams, fmtp=constrained)
    assert answer.placed == (Placement(H264.ssrc, 106),)
    video = sections(answer.sdp)[2]
    assert (
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f" in video
    )
    baseline = {H264.ssrc: "packetization-mode=1;profile-level-id=42001F"}
    assert answer_viewer(view, **LOCAL, streams=streams, fmtp=baseline).placed[0].pt == 102
    # Without the presenter's fmtp only packetization-mode=1 can be checked: the first one.
    assert answer_viewer(view, **LOCAL, streams=streams).placed[0].pt == 102
    high = {H264.ssrc: "profile-level-id=640c1f;packetization-mode=1"}
    with pytest.raises(
        OfferError, match=r"presenter sends H264/90000 \(profile 640c.*H264/90000 \(profile 4200"
    ):
        answer_viewer(view, **LOCAL, streams=streams, fmtp=high)


def test_viewer_vp9_profile() -> None:
    view = parse_offer(CHROME_VIEW)
    assert answer_viewer(view, **LOCAL, streams=[VP9]).placed == (Placement(VP9.ssrc, 98),)
    ten_bit = {VP9.ssrc: "profile-id=2"}
    assert answer_viewer(view, **LOCAL, streams=[VP9], fmtp=ten_bit).placed[0].pt == 100


def test_viewer_cannot_play_the_presenters_codec() -> None:
    firefox_h264_only = edit(
        FIREFOX_VIEW, swap=("120 124 121 125 126 127 97 98 123 122 119", "126")
    )
    with pytest.raises(OfferError) as refused:
        answer_viewer(parse_offer(firefox_h264_only), **LOCAL, streams=[OPUS, VP8])
    message = str(refused.value)
    assert "the presenter sends VP8/90000" in message
    assert (
        "m= section 2 (video) has only H264/90000 (profile 42e0, packetization-mode=1)" in message
    )


def test_viewer_sections_without_a_stream_are_inactive_and_extra_streams_unplaced() -> None:
    answer = answer_viewer(parse_offer(CHROME_VIEW), **LOCAL, streams=[VP8, H264])
    _, audio, video, _ = sections(answer.sdp)
    # The audio m= section stays bundled and usable: inactive, not rejected (port 0).
    assert audio[0] == f"m=audio {PORT} UDP/TLS/RTP/SAVPF 111" and "a=inactive" in audio
    assert not any(line.startswith(("a=ssrc", "a=msid")) for line in audio)
    assert "a=group:BUNDLE 0 1" in answer.sdp
    assert answer.placed == (Placement(VP8.ssrc, 96),)
    assert answer.unplaced == (H264,)
    nobody = answer_viewer(parse_offer(CHROME_VIEW), **LOCAL, streams=[])
    assert nobody.placed == () and nobody.sdp.count("a=inactive") == 2


def test_viewer_sendonly_section_is_not_given_a_stream() -> None:
    offer = parse_offer(
        edit(FIREFOX_VIEW, swap=("a=recvonly\r\na=extmap:3", "a=sendonly\r\na=extmap:3"))
    )
    answer = answer_viewer(offer, **LOCAL, streams=[VP8])
    assert answer.placed == () and answer.unplaced == (VP8,)
    assert "a=sendonly" not in answer.sdp


def test_publisher_recvonly_section_is_inactive() -> None:
    offer = parse_offer(
        edit(FIREFOX_PUBLISH, swap=("a=sendonly\r\na=extmap:3", "a=recvonly\r\na=extmap:3"))
    )
    answer = answer_publisher(offer, **LOCAL)
    assert [s.kind for s in answer.streams] == ["audio"]
    assert sections(answer.sdp)[2][3] == "a=inactive"


def test_publisher_without_vp8_takes_h264_mode_1_then_vp9() -> None:
    no_vp8 = edit(CHROME_PUBLISH, swap=("96 97 102 103", "102 103"))
    answer = answer_publisher(parse_offer(no_vp8), **LOCAL)
    assert answer.streams[1] == Stream(CHROME_VIDEO_SSRC, "video", 102, "H264/90000")
    assert "packetization-mode=1;profile-level-id=42001f" in answer.fmtp[CHROME_VIDEO_SSRC]
    vp9_only = edit(CHROME_PUBLISH, swap=("96 97 102 103 104 105 106 107 108 109 39 40 ", ""))
    assert answer_publisher(parse_offer(vp9_only), **LOCAL).streams[1].codec == "VP9/90000"
    mode_0_only = edit(
        CHROME_PUBLISH, swap=("96 97 102 103 104 105 106 107 108 109 39 40 98 99 100 101", "104")
    )
    answer = answer_publisher(parse_offer(mode_0_only), **LOCAL)
    assert [s.kind for s in answer.streams] == ["audio"]
    assert answer.rejected[0][0] == 1 and "codecs the relay takes" in answer.rejected[0][1]
    assert sections(answer.sdp)[2][0] == "m=video 0 UDP/TLS/RTP/SAVPF 104 116 117 118"
    assert "a=group:BUNDLE 0\r\n" in answer.sdp


def test_codec_names_are_matched_and_written_canonically() -> None:
    upper = edit(FIREFOX_PUBLISH, swap=("a=rtpmap:109 opus/48000/2", "a=rtpmap:109 OPUS/48000/2"))
    answer = answer_publisher(parse_offer(upper), **LOCAL)
    assert answer.streams[0].codec == "opus/48000/2"
    assert "a=rtpmap:109 OPUS/48000/2" in answer.sdp  # the answer repeats the offer's spelling


def test_opus_without_a_channel_count_is_opus() -> None:
    """GStreamer's webrtcbin (1.22) offers Opus as OPUS/48000, without RFC 7587's /2: taken
    from a publisher (the stream is then opus/48000/2, what SDES listeners are told) and from a
    viewer, which plays any Opus stream. Opus with one channel is not RFC 7587's Opus."""
    gstreamer = "a=rtpmap:109 OPUS/48000"
    publisher = answer_publisher(
        parse_offer(edit(FIREFOX_PUBLISH, swap=("a=rtpmap:109 opus/48000/2", gstreamer))), **LOCAL
    )
    assert publisher.streams[0].codec == "opus/48000/2"
    assert gstreamer + "\r\n" in publisher.sdp
    view = parse_offer(edit(FIREFOX_VIEW, swap=("a=rtpmap:109 opus/48000/2", gstreamer)))
    assert answer_viewer(view, **LOCAL, streams=[OPUS]).placed == (Placement(OPUS.ssrc, 109),)
    mono = edit(FIREFOX_VIEW, swap=("a=rtpmap:109 opus/48000/2", "a=rtpmap:109 opus/48000/1"))
    with pytest.raises(OfferError, match="the presenter sends opus/48000"):
        answer_viewer(parse_offer(mono), **LOCAL, streams=[OPUS])


def test_dtls_roles() -> None:
    """RFC 8842 section 5.3: actpass or active -> passive (relay is the DTLS server); passive
    -> active (client). No a=setup is active (RFC 4145 section 4.1)."""
    cases = {"a=setup:active": ("passive", "server"), "a=setup:passive": ("active", "client")}
    for setup, (answered, role) in cases.items():
        answer = answer_publisher(
            parse_offer(edit(FIREFOX_PUBLISH, swap=("a=setup:actpass", setup))), **LOCAL
        )
        assert answer.sdp.count(f"a=setup:{answered}") == 2 and answer.dtls_role == role
    answer = answer_publisher(parse_offer(edit(FIREFOX_PUBLISH, drop="a=setup")), **LOCAL)
    assert answer.dtls_role == "server"


def test_lf_line_endings_and_blank_lines_are_taken() -> None:
    lf = CHROME_PUBLISH.replace("\r\n", "\n") + "\n\n"
    assert parse_offer(lf) == parse_offer(CHROME_PUBLISH)


def test_ipv6_host() -> None:
    answer = answer_publisher(parse_offer(FIREFOX_PUBLISH), **{**LOCAL, "host": "[2001:db8::7]"})
    assert answer.sdp.startswith("v=0\r\no=- 42 1 IN IP6 2001:db8::7\r\n")
    assert "c=IN IP6 2001:db8::7\r\n" in answer.sdp
    assert f"a=candidate:1 1 udp 2130706431 2001:db8::7 {PORT} typ host" in answer.sdp


def test_fingerprint_choice_and_check() -> None:
    # Several hash functions: the strongest the relay knows (RFC 8122 section 5).
    der = b"\x30\x82certificate"
    sha256 = hashlib.sha256(der).digest().hex(":")
    sha512 = hashlib.sha512(der).digest().hex(":")
    extra = "\r\n".join(
        [
            f"a=fingerprint:sha-256 {sha256}",
            f"a=fingerprint:sha-512 {sha512}",
            "a=fingerprint:md5 00:11",
        ]
    )
    offer = parse_offer(edit(FIREFOX_PUBLISH, swap=(f"a=fingerprint:sha-256 {FIREFOX_FP}", extra)))
    assert offer.fingerprint.algorithm == "sha-512"
    assert offer.fingerprint.matches(der) and not offer.fingerprint.matches(der + b"x")
    assert Fingerprint.parse(f"SHA-256 {sha256}").matches(der)
    with pytest.raises(ValueError, match="not supported"):
        Fingerprint.parse("md5 00:11")
    with pytest.raises(ValueError, match="wrong length"):
        Fingerprint.parse("sha-256 00:11")


def test_bundle_only_sections_inherit_the_transport() -> None:
    # JSEP max-bundle: the second m= section has port 0, a=bundle-only and no transport
    # attributes (RFC 8843 section 7.2); it is answered like the others.
    text = edit(CHROME_PUBLISH, swap=("m=video 9 ", "m=video 0 "))
    video_start = text.index("m=video")
    head, tail = text[:video_start], text[video_start:]
    for line in CHROME_TRANSPORT.split("\n"):
        tail = tail.replace(line + "\r\n", "", 1)
    tail = tail.replace("a=rtcp-mux\r\n", "a=bundle-only\r\n", 1)
    offer = parse_offer(head + tail)
    assert offer.media[1].bundle_only and offer.media[1].rejected is None
    answer = answer_publisher(offer, **LOCAL)
    assert sections(answer.sdp)[2][0] == f"m=video {PORT} UDP/TLS/RTP/SAVPF 96"
    # Without the BUNDLE group a port 0 m= section is disabled.
    alone = edit(head + tail, swap=("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 2"))
    assert (
        parse_offer(alone).media[1].rejected
        == "the offer disables it (port 0, RFC 3264 section 8.2)"
    )


def test_single_section_without_bundle_is_answered_without_a_group() -> None:
    audio_only = CHROME_PUBLISH[: CHROME_PUBLISH.index("m=video")]
    text = edit(edit(audio_only, drop="a=group"), drop="a=mid")
    answer = answer_publisher(parse_offer(text), **LOCAL)
    assert "a=group" not in answer.sdp and "a=mid" not in answer.sdp
    assert len(answer.streams) == 1


def test_sections_outside_the_bundle_group_are_rejected() -> None:
    text = edit(CHROME_PUBLISH, swap=("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 1 2"))
    answer = answer_publisher(parse_offer(text), **LOCAL)
    assert sections(answer.sdp)[1][0].startswith("m=audio 0 UDP/TLS/RTP/SAVPF 111 63")
    assert "outside the BUNDLE group" in answer.rejected[0][1]
    assert "a=group:BUNDLE 1\r\n" in answer.sdp
    assert [s.kind for s in answer.streams] == ["video"]


# --- refusals ---------------------------------------------------------------------------------

AUDIO_ONLY = CHROME_PUBLISH[: CHROME_PUBLISH.index("m=video")].replace("BUNDLE 0 1 2", "BUNDLE 0")
REFUSALS: list[tuple[str, str, str]] = [
    (
        "no rtcp-mux",
        edit(CHROME_PUBLISH, drop="a=rtcp-mux"),
        r"m= section 1 \(audio\) has no a=rtcp-mux.*RFC 5761",
    ),
    (
        "wrong proto",
        edit(AUDIO_ONLY, swap=("UDP/TLS/RTP/SAVPF", "RTP/AVP")),
        r"no m= section of this offer can be answered: "
        r"m= section 1 \(audio\): its proto is not UDP/TLS/RTP/SAVPF",
    ),
    (
        "no ICE credentials",
        edit(CHROME_PUBLISH, drop="a=ice-"),
        r"has no ICE credentials.*RFC 8839",
    ),
    ("no ice-pwd", edit(FIREFOX_PUBLISH, drop="a=ice-pwd"), r"has no ICE credentials"),
    (
        "no fingerprint",
        edit(FIREFOX_PUBLISH, drop="a=fingerprint"),
        r"has no a=fingerprint.*sha-256",
    ),
    (
        "only an MD5 fingerprint",
        edit(
            FIREFOX_PUBLISH,
            swap=(f"a=fingerprint:sha-256 {FIREFOX_FP}", "a=fingerprint:md5 " + fingerprint(3, 16)),
        ),
        r"has no a=fingerprint with a hash function the relay supports",
    ),
    (
        "bad fingerprint",
        edit(FIREFOX_PUBLISH, swap=(FIREFOX_FP, FIREFOX_FP[:-3])),
        r"line 5: a=fingerprint is not",
    ),
    (
        "bundled sections with other ICE credentials",
        in_section(CHROME_PUBLISH, 1, "a=ice-ufrag:Xk3d", "a=ice-ufrag:Zz9y"),
        r"m= section 2 \(video\) has other ICE credentials than m= section 1 \(audio\)",
    ),
    (
        "bundled sections with other fingerprints",
        in_section(CHROME_PUBLISH, 1, CHROME_FP, fingerprint(9)),
        r"m= section 2 \(video\) has other fingerprints",
    ),
    (
        "bundled sections with other a=setup",
        CHROME_PUBLISH.replace("a=setup:actpass\r\na=mid:1", "a=setup:passive\r\na=mid:1"),
        r"has another a=setup",
    ),
    (
        "no a=ssrc on a sending section",
        edit(CHROME_PUBLISH, drop="a=ssrc:1719183524"),
        r"m= section 1 \(audio\) declares no SSRC: the relay needs the SSRC.*a=ssrc, RFC 5576",
    ),
    (
        "simulcast with rids and no SSRCs",
        edit(
            edit(CHROME_PUBLISH, drop=("a=ssrc-group", "a=ssrc:3523718273", "a=ssrc:2087129922")),
            swap=(
                "a=rtpmap:118 ulpfec/90000",
                "a=rtpmap:118 ulpfec/90000\r\na=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l",
            ),
        ),
        r"declares no SSRC.*offers simulcast",
    ),
    (
        "legacy simulcast (SIM group)",
        edit(
            CHROME_PUBLISH,
            swap=(
                "a=ssrc-group:FID 3523718273 2087129922",
                "a=ssrc-group:SIM 3523718273 2087129922",
            ),
        ),
        r"m= section 2 \(video\) declares 2 media SSRCs",
    ),
    (
        "one SSRC in two sections",
        CHROME_PUBLISH.replace("a=ssrc:3523718273", "a=ssrc:1719183524").replace(
            "FID 3523718273", "FID 1719183524"
        ),
        r"an SSRC another m= section has",
    ),
    (
        "a payload type in 64..95",
        edit(FIREFOX_PUBLISH, swap=("109", "77")),
        r"m= section 1 \(audio\): the codec the relay would use has a payload type in 64..95"
        r".*RFC 5761",
    ),
    ("nothing sends", FIREFOX_VIEW, r"no audio or video m= section of this offer sends media"),
    (
        "two sections and no BUNDLE",
        edit(FIREFOX_PUBLISH, drop="a=group"),
        r"2 audio and video m= sections and no a=group:BUNDLE",
    ),
    (
        "ICE-lite offerer",
        edit(FIREFOX_PUBLISH, swap=("t=0 0", "t=0 0\r\na=ice-lite")),
        r"ICE-lite, like the relay",
    ),
    ("setup holdconn", FIREFOX_PUBLISH.replace("a=setup:actpass", "a=setup:holdconn"), r"holdconn"),
    (
        "bad ice-ufrag",
        FIREFOX_PUBLISH.replace("a=ice-ufrag:8a1b2c3d", "a=ice-ufrag:8a:b"),
        r"a=ice-ufrag must be 4 to 256",
    ),
    (
        "bad ice-pwd",
        FIREFOX_PUBLISH.replace("a=ice-pwd:5f2b", "a=ice-pwd:5f-2b"),
        r"a=ice-pwd must be 22 to 256",
    ),
    (
        "duplicate mid",
        FIREFOX_PUBLISH.replace("a=mid:1", "a=mid:0"),
        r"two m= sections have the same a=mid",
    ),
    (
        "BUNDLE names an unknown mid",
        FIREFOX_PUBLISH.replace("BUNDLE 0 1", "BUNDLE 0 1 7"),
        r"names a mid no m= section has",
    ),
    (
        "bad m= line",
        FIREFOX_PUBLISH.replace("m=audio 9 UDP", "m=audio nine UDP"),
        r"line 9: m= is not",
    ),
    (
        "bad rtpmap",
        FIREFOX_PUBLISH.replace("a=rtpmap:109 opus/48000/2", "a=rtpmap:109 opus"),
        r"a=rtpmap is not",
    ),
    (
        "bad a=ssrc",
        FIREFOX_PUBLISH.replace("a=ssrc:3405691582", "a=ssrc:99999999999"),
        r"a=ssrc does not start with an SSRC",
    ),
    (
        "two directions",
        FIREFOX_PUBLISH.replace("a=sendonly", "a=sendonly\r\na=recvonly", 1),
        r"more than one direction",
    ),
    ("not SDP", "GET / HTTP/1.1\r\nHost: example\r\n", r"not <type>=<value>"),
    ("no v=0", FIREFOX_PUBLISH.replace("v=0", "v=1"), r"does not start with v=0"),
    ("empty", "\r\n\r\n", r"the offer is empty"),
    ("no media", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", r"no m= sections"),
    (
        "control character",
        FIREFOX_PUBLISH.replace("s=-", "s=-\x00"),
        r"line 3 has a control character",
    ),
    (
        "bare CR inside a line",
        FIREFOX_PUBLISH.replace("a=fmtp:109 max", "a=fmtp:109 x\rmax"),
        r"control character",
    ),
    (
        "oversize",
        FIREFOX_PUBLISH + "a=x:" + "y" * MAX_OFFER_CHARS + "\r\n",
        r"longer than 65536 characters",
    ),
    (
        "too many lines",
        FIREFOX_PUBLISH + "a=rtcp-mux\r\n" * MAX_OFFER_LINES,
        r"more than 4096 lines",
    ),
]


@pytest.mark.parametrize(("why", "text", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal(why: str, text: str, message: str) -> None:
    with pytest.raises(OfferError, match=message):
        answer_publisher(parse_offer(text), **LOCAL)


def test_refusal_of_non_text() -> None:
    with pytest.raises(OfferError, match="must be SDP text"):
        parse_offer(FIREFOX_PUBLISH.encode())  # type: ignore[arg-type]


def test_errors_do_not_repeat_the_offer() -> None:
    """control/errors.py: an error never repeats a value the client sent."""
    secretive = [
        AUDIO_ONLY.replace("UDP/TLS/RTP/SAVPF", "RTP/SECRETPROTO"),
        FIREFOX_PUBLISH.replace("a=ice-pwd:5f2b6c9d", "a=ice-pwd:SECRET!!"),
        FIREFOX_PUBLISH.replace("a=mid:1", "a=mid:SECRETMID\r\na=mid:SECRETMID2"),
    ]
    for text in secretive:
        with pytest.raises(OfferError) as refused:
            answer_publisher(parse_offer(text), **LOCAL)
        assert "SECRET" not in str(refused.value)
    view = FIREFOX_VIEW.replace("a=rtpmap:120 VP8/90000", "a=rtpmap:120 SECRETCODEC/90000")
    with pytest.raises(OfferError, match="an unknown codec") as refused:
        answer_viewer(parse_offer(view), **LOCAL, streams=[VP8])
    assert "SECRET" not in str(refused.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "relay.example.com"}, "not a name.*mDNS or DNS"),
        ({"host": "0.0.0.0"}, "unspecified"),
        ({"host": "fe80::1%eth0"}, "zone index"),
        ({"port": 0}, "port must be an integer in 1..65535"),
        ({"session_id": -1}, "session id"),
        ({"ice_ufrag": "a:b"}, "ice_ufrag must be"),
        ({"ice_pwd": "short"}, "ice_pwd must be"),
        ({"fingerprint": "sha-256 zz"}, "hex pairs separated by colons"),
        ({"fingerprint": "md5 00:11"}, "not supported"),
    ],
)
def test_relay_parameters_are_checked(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        answer_publisher(parse_offer(FIREFOX_PUBLISH), **{**LOCAL, **change})
    assert not isinstance(refused.value, OfferError)  # the relay's mistake, not the offer's


def test_viewer_streams_are_checked() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        answer_viewer(parse_offer(CHROME_VIEW), **LOCAL, streams=[VP8, VP8])


# --- properties -------------------------------------------------------------------------------

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OFFER_LINES = sorted({line for text in SAMPLES.values() for line in text.split("\r\n") if line})


def answer_both(text: str) -> None:
    """parse_offer, then both answers: OfferError (a ValueError) is the only way out, and what
    comes back is clean SDP."""
    try:
        offer = parse_offer(text)
    except OfferError:
        return
    for answer in (
        lambda: answer_publisher(offer, **LOCAL).sdp,
        lambda: answer_viewer(offer, **LOCAL, streams=[OPUS, VP8, H264]).sdp,
    ):
        try:
            sdp = answer()
        except OfferError:
            continue
        check_clean(sdp)


@PROPERTIES
@given(st.text(max_size=2000))
def test_arbitrary_text_raises_only_offer_error(text: str) -> None:
    answer_both(text)


@PROPERTIES
@given(
    st.text(alphabet=st.sampled_from("v=0\r\nmaudiovideo 9UDP/TLS/RTP/SAVPF:;-1a"), max_size=400)
)
def test_sdp_like_text_raises_only_offer_error(text: str) -> None:
    answer_both(text)


@PROPERTIES
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.lists(
        st.tuples(
            st.integers(0, 400),
            st.sampled_from(["drop", "dup", "insert", "mangle"]),
            st.integers(0, 10**6),
        ),
        max_size=6,
    ),
)
def test_mutated_browser_offers_raise_only_offer_error(
    name: str, edits: list[tuple[int, str, int]]
) -> None:
    lines = SAMPLES[name].split("\r\n")
    for position, action, seed in edits:
        i = position % len(lines)
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "insert":
            lines.insert(i, OFFER_LINES[seed % len(OFFER_LINES)])
        elif lines[i]:
            cut = seed % len(lines[i])
            lines[i] = lines[i][:cut] + chr(seed % 0x250) + lines[i][cut + 1 :]
        if not lines:
            lines = [""]
    answer_both("\r\n".join(lines))


def test_fuzz_seeds_are_the_samples() -> None:
    """fuzz/corpus-sdp holds the sample offers (and aiortc's), each one an answerable offer."""
    seeds = {path.name: path.read_bytes().decode() for path in CORPUS.iterdir()}
    for name, text in SAMPLES.items():
        assert seeds[f"{name}.sdp"] == text
    for text in seeds.values():
        parse_offer(text)


# --- aiortc: an independent WebRTC peer ---------------------------------------------------------

aiortc = pytest.importorskip("aiortc")
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack  # noqa: E402
from aiortc.sdp import SessionDescription  # noqa: E402


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


async def offer_from(pc: Any) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


def check_transport_as_aiortc_sees_it(pc: Any, answer_sdp: str, role: str) -> None:
    """aiortc's reading of our answer: the relay's ICE credentials, ICE-lite, fingerprint and
    candidate, and the DTLS role aiortc takes (the other one). aiortc's parser is the one its
    setRemoteDescription used."""
    seen = SessionDescription.parse(answer_sdp)
    algorithm, digest = RELAY_FP.split(" ")
    for media in seen.media:
        assert media.ice.usernameFragment == UFRAG and media.ice.password == PWD
        assert media.ice.iceLite
        assert [(f.algorithm, f.value) for f in media.dtls.fingerprints] == [(algorithm, digest)]
        assert media.dtls.role == role  # aiortc's name for our a=setup: passive is "server"
        assert [(c.ip, c.port, c.type, c.priority) for c in media.ice_candidates] == [
            (HOST, PORT, "host", 2130706431)
        ]
        assert media.rtcp_mux
    transports = {id(t.receiver.transport) for t in pc.getTransceivers()}
    assert len(transports) == 1  # bundled onto one transport
    dtls = pc.getTransceivers()[0].receiver.transport
    assert dtls._role == ("client" if role == "server" else "server")  # aiortc's own role
    remote = dtls.transport.getRemoteCandidates()
    assert [(c.ip, c.port, c.type) for c in remote] == [(HOST, PORT, "host")]


def test_aiortc_publisher_with_tracks() -> None:
    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            pc.addTrack(AudioStreamTrack())
            pc.addTrack(VideoStreamTrack())
            text = await offer_from(pc)
            offer = parse_offer(text)
            answer = answer_publisher(offer, **LOCAL)
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
            audio, video = pc.getTransceivers()
            assert audio.currentDirection == video.currentDirection == "sendonly"
            assert [(c.mimeType, c.payloadType) for c in audio._codecs] == [
                ("audio/opus", answer.streams[0].pt)
            ]
            assert [(c.mimeType, c.payloadType) for c in video._codecs] == [
                ("video/VP8", answer.streams[1].pt)
            ]
            # The SSRCs the relay expects are those aiortc's senders send with.
            assert [s.ssrc for s in answer.streams] == [audio.sender._ssrc, video.sender._ssrc]
            assert (
                answer.peer_ice_ufrag
                == pc.getTransceivers()[0]
                .receiver.transport.transport.iceGatherer.getLocalParameters()
                .usernameFragment
            )
            local_fp = pc.getTransceivers()[0].receiver.transport.getLocalParameters().fingerprints
            assert str(answer.peer_fingerprint) in [f"{f.algorithm} {f.value}" for f in local_fp]
            assert answer.dtls_role == "server"
            check_transport_as_aiortc_sees_it(pc, answer.sdp, "server")
        finally:
            await pc.close()

    run(scenario)


def test_aiortc_publisher_h264_only_and_passive() -> None:
    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio", direction="sendonly")
            video = pc.addTransceiver("video", direction="sendonly")
            h264 = [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType == "video/H264"
            ]
            video.setCodecPreferences(h264)
            text = (await offer_from(pc)).replace("a=setup:actpass", "a=setup:passive")
            answer = answer_publisher(parse_offer(text), **LOCAL)
            assert answer.dtls_role == "client" and "a=setup:active" in answer.sdp
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
            negotiated = pc.getTransceivers()[1]._codecs
            assert len(negotiated) == 1 and negotiated[0].mimeType == "video/H264"
            assert negotiated[0].payloadType == answer.streams[1].pt
            assert negotiated[0].parameters["packetization-mode"] == "1"
            check_transport_as_aiortc_sees_it(pc, answer.sdp, "client")
        finally:
            await pc.close()

    run(scenario)


def test_aiortc_viewer() -> None:
    async def scenario() -> None:
        pc = RTCPeerConnection()
        tracks: list[Any] = []
        pc.on("track", tracks.append)
        try:
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")
            offer = parse_offer(await offer_from(pc))
            h264 = {H264.ssrc: "packetization-mode=1;profile-level-id=42e01f"}
            answer = answer_viewer(offer, **LOCAL, streams=[H264, OPUS], fmtp=h264)
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
            audio, video = pc.getTransceivers()
            assert audio.currentDirection == video.currentDirection == "recvonly"
            assert [t.kind for t in tracks] == ["audio", "video"]
            (opus,) = audio._codecs
            (h264_codec,) = video._codecs
            assert (opus.mimeType, h264_codec.mimeType) == ("audio/opus", "video/H264")
            assert h264_codec.parameters["profile-level-id"] == "42e01f"
            assert answer.placed == (
                Placement(OPUS.ssrc, opus.payloadType),
                Placement(H264.ssrc, h264_codec.payloadType),
            )
            seen = SessionDescription.parse(answer.sdp)
            assert [[s.ssrc for s in media.ssrc] for media in seen.media] == [
                [OPUS.ssrc],
                [H264.ssrc],
            ]
            assert [media.msid for media in seen.media] == [
                f"relay audio-{OPUS.ssrc}",
                f"relay video-{H264.ssrc}",
            ]
            check_transport_as_aiortc_sees_it(pc, answer.sdp, "server")
        finally:
            await pc.close()

    run(scenario)


def test_aiortc_viewer_without_a_stream_for_a_section() -> None:
    async def scenario() -> None:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio", direction="recvonly")
            pc.addTransceiver("video", direction="recvonly")
            answer = answer_viewer(parse_offer(await offer_from(pc)), **LOCAL, streams=[VP8])
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
            audio, video = pc.getTransceivers()
            assert (audio.currentDirection, video.currentDirection) == ("inactive", "recvonly")
            assert answer.placed == (Placement(VP8.ssrc, video._codecs[0].payloadType),)
        finally:
            await pc.close()

    run(scenario)
