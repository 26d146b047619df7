"""The `sdp` of a join answer (docs/ARCHITECTURE.md, "The path of a join").

Two forms, both SDP (RFC 4566) with CRLF line endings (section 5), SDES keys (RFC 4568) and
`RTP/SAVP` m= lines (RFC 3711 section 12):

- `listener_sdp`: for a client that only listens and gave `receive_at` at join, typically
  `ffmpeg -protocol_whitelist file,udp,rtp,srtp -i join.sdp`. The `c=` line carries the
  receive_at address, and stream k of the meeting gets its own m= line on port + 2k (ffmpeg reads
  one stream per m= line and binds port + 1 for RTCP, RFC 3550 section 11). Each m= line is
  `a=recvonly` (RFC 4566 section 6), names the stream's SSRC (`a=ssrc`, RFC 5576 section 4.1;
  SSRCs are kept end to end) and carries `a=crypto` with the participant's downlink key: the key
  the relay encrypts with and the participant decrypts with. ffmpeg reads `a=crypto` only at
  media level, hence one per m= line.
- `sender_sdp`: the relay side, as an SDP answer (RFC 3264) would describe it, for a client
  that sends: `c=` is the relay's media address and every m= line (one per stream the
  participant declared, or one Opus audio line when it declared none) is on the relay's port,
  which carries RTP and RTCP together (`a=rtcp-mux`, RFC 5761 section 5.1.1). The m= lines are
  `a=sendrecv`, and `a=crypto` carries the downlink key: in SDES each side's `a=crypto` holds
  the key that side sends with (RFC 4568 section 5.1, offer/answer), and the relay sends to
  this participant with its downlink key.

Keys are written with `=` padding (RFC 4568 section 6.1, base64 of RFC 4648 section 4);
`relay.srtp.parse_sdes_key` reads them back. Payload types 64..95 are refused (RFC 5761
section 4: under rtcp-mux they collide with RTCP packet types 192..223), as are payload types
outside 0..127 (RFC 3550 section 5.1). H.264 gets `a=fmtp:<pt> packetization-mode=1`
(RFC 6184 section 8.1), what ffmpeg sends and expects.

Interop notes (shared/reference/srtp-interop-notes.md): ffmpeg's SRTP speaks only the AES-CM
suites. For AES_CM_128_HMAC_SHA1_32 it applies the 32-bit tag to SRTCP too, where RFC 4568
section 6.2 (and the relay) keep 80 bits on SRTCP, so an ffmpeg listener given that suite
decodes RTP but drops the relay's SRTCP; AES_CM_128_HMAC_SHA1_80 has no such difference.

Errors are ValueErrors that name the rule broken and never repeat the value: the meeting
service passes them on to API clients (control/errors.py).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from control.keys import crypto_line
from relay.srtp import SUITES
from relay.wire import Stream

__all__ = ["KINDS", "listener_sdp", "sender_sdp"]

KINDS = ("audio", "video", "application")

# RFC 4566 section 6, a=rtpmap: <encoding name>/<clock rate>[/<encoding parameters>]. Encoding
# names are media subtype names (RFC 6838 section 4.2: restricted-name characters).
_CODEC = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126})/([1-9][0-9]{0,9})(?:/([1-9][0-9]{0,2}))?"
)
_MAX_SESSION_ID = 2**63 - 1  # RFC 3264 section 5: sess-id below 2**63
_SESSION_VERSION = 1
_DEFAULT_STREAM = Stream(ssrc=0, kind="audio", pt=111, codec="opus/48000/2")


def _address(host: str, what: str) -> tuple[str, str]:
    """(`IP4` or `IP6`, the address as SDP writes it) for a unicast IP literal."""
    if not isinstance(host, str):
        raise ValueError(f"{what} must be an IP address string, not {type(host).__name__}")
    try:
        ip = ipaddress.ip_address(host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host)
    except ValueError:
        raise ValueError(f"{what} is not an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        raise ValueError(f"{what} has a zone index, which SDP cannot carry")
    if ip.is_unspecified:
        raise ValueError(f"{what} is unspecified; give the address packets go to")
    if ip.is_multicast:
        raise ValueError(f"{what} is multicast; only unicast addresses are supported")
    return ("IP4" if ip.version == 4 else "IP6"), str(ip)


def _port(port: int, what: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{what} must be an integer in 1..65535")
    return port


def _session_id(session_id: int) -> int:
    if (
        isinstance(session_id, bool)
        or not isinstance(session_id, int)
        or not 0 <= session_id <= _MAX_SESSION_ID
    ):
        raise ValueError("session id must be an integer in 0..2**63-1")
    return session_id


def _check_key(suite: str, downlink: bytes) -> None:
    if suite not in SUITES:
        raise ValueError(f"unknown SRTP suite; expected one of: {', '.join(SUITES)}")
    crypto_line(1, suite, downlink)  # raises ValueError for key material of the wrong length


def _check_stream(index: int, stream: Stream) -> None:
    where = f"stream {index}"
    if not isinstance(stream, Stream):
        raise ValueError(f"{where} must be a relay.wire.Stream, not {type(stream).__name__}")
    ssrc, kind, pt, codec = stream.ssrc, stream.kind, stream.pt, stream.codec
    if isinstance(ssrc, bool) or not isinstance(ssrc, int) or not 0 <= ssrc <= 0xFFFFFFFF:
        raise ValueError(f"{where}: ssrc must be an integer in 0..2**32-1")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}")
    if isinstance(pt, bool) or not isinstance(pt, int) or not 0 <= pt <= 127:
        raise ValueError(f"{where}: payload type must be an integer in 0..127")
    if 64 <= pt <= 95:
        raise ValueError(
            f"{where}: payload type is in 64..95, which collides with RTCP packet types "
            "under rtcp-mux (RFC 5761 section 4); use a dynamic type in 96..127"
        )
    match = _CODEC.fullmatch(codec) if isinstance(codec, str) else None
    if match is None:
        raise ValueError(
            f"{where}: codec must be name/clock[/channels] such as 'opus/48000/2' or 'VP8/90000'"
        )
    clock, channels = int(match.group(2)), match.group(3)
    if clock > 0xFFFFFFFF:
        raise ValueError(f"{where}: the codec's clock rate must be in 1..2**32-1")
    if channels is not None and kind != "audio":
        raise ValueError(
            f"{where}: the codec gives a channel count, which only audio has "
            "(RFC 4566 section 6, a=rtpmap)"
        )


def check_streams(streams: Sequence[Stream]) -> list[Stream]:
    if isinstance(streams, str | bytes) or not isinstance(streams, Sequence):
        raise ValueError(
            f"streams must be a list of relay.wire.Stream, not {type(streams).__name__}"
        )
    seen: set[int] = set()
    for index, stream in enumerate(streams):
        _check_stream(index, stream)
        if stream.ssrc in seen:
            raise ValueError(f"stream {index}: its ssrc appears twice")
        seen.add(stream.ssrc)
    return list(streams)


def _session(family: str, addr: str, session_id: int) -> list[str]:
    return [
        "v=0",
        f"o=- {session_id} {_SESSION_VERSION} IN {family} {addr}",
        "s=relay",
        f"c=IN {family} {addr}",
        "t=0 0",
    ]


def _rtpmap(stream: Stream) -> list[str]:
    lines = [f"a=rtpmap:{stream.pt} {stream.codec}"]
    if stream.codec.split("/", 1)[0].upper() == "H264":
        lines.append(f"a=fmtp:{stream.pt} packetization-mode=1")
    return lines


def _render(lines: list[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def listener_sdp(
    receive_at: tuple[str, int],
    streams: list[Stream],
    suite: str,
    downlink: bytes,
    session_id: int,
) -> str:
    """The SDP a listen-only client receives with (`ffmpeg -i join.sdp`).

    Stream k of `streams` (the meeting's streams, in the order the relay numbers them) is
    described on port receive_at.port + 2k; RTCP for it would be on that port + 1. With no
    streams the SDP has one Opus audio line (pt 111) on the port, so a player has something to
    open before anyone sends.

    Raises:
        ValueError: a bad address, port, stream, suite, key or session id.
    """
    if not isinstance(receive_at, tuple) or len(receive_at) != 2:
        raise ValueError("receive_at must be a (host, port) tuple")
    family, addr = _address(receive_at[0], "receive_at address")
    port = _port(receive_at[1], "receive_at port")
    checked = check_streams(streams)
    _check_key(suite, downlink)
    session_id = _session_id(session_id)
    described = checked or [_DEFAULT_STREAM]
    last_rtcp = port + 2 * (len(described) - 1) + 1
    if last_rtcp > 65535:
        raise ValueError(
            f"receive_at port is too high: the SDP describes {len(described)} "
            f"stream(s) (stream k on port + 2k, its RTCP on port + 2k + 1), which would need "
            f"ports up to {last_rtcp}"
        )
    crypto = crypto_line(1, suite, downlink)
    lines = _session(family, addr, session_id)
    for k, stream in enumerate(described):
        lines.append(f"m={stream.kind} {port + 2 * k} RTP/SAVP {stream.pt}")
        lines.extend(_rtpmap(stream))
        lines.append("a=recvonly")
        if checked:
            lines.append(f"a=ssrc:{stream.ssrc} cname:relay")
        lines.append(crypto)
    return _render(lines)


def sender_sdp(
    relay_host: str,
    relay_port: int,
    streams: list[Stream],
    suite: str,
    downlink: bytes,
    session_id: int,
) -> str:
    """The relay side of the session, as an SDP answer would describe it: where to send.

    One m= line per stream the participant declared (one Opus audio line, pt 111, if none), all
    on `relay_port` with `a=rtcp-mux`, each `a=sendrecv` with the downlink key in `a=crypto`.

    Raises:
        ValueError: a bad address, port, stream, suite, key or session id.
    """
    family, addr = _address(relay_host, "relay host")
    port = _port(relay_port, "relay port")
    checked = check_streams(streams)
    _check_key(suite, downlink)
    session_id = _session_id(session_id)
    crypto = crypto_line(1, suite, downlink)
    lines = _session(family, addr, session_id)
    for stream in checked or [_DEFAULT_STREAM]:
        lines.append(f"m={stream.kind} {port} RTP/SAVP {stream.pt}")
        lines.extend(_rtpmap(stream))
        lines.append("a=rtcp-mux")
        lines.append("a=sendrecv")
        lines.append(crypto)
    return _render(lines)
