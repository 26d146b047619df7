"""WebRTC SDP for WHIP (RFC 9725) and WHEP: read a peer's offer, write the relay's answer.

A WHIP client (a browser, OBS, GStreamer's webrtcbin) publishes: it POSTs an offer whose audio
and video m= sections send, and `answer_publisher` answers them `recvonly`. A WHEP client plays:
its m= sections receive, and `answer_viewer` puts the meeting's streams on them, `sendonly`.
`parse_offer` reads either offer (JSEP, RFC 8829) and refuses, with `OfferError`, what the relay
cannot answer; the message says why and the API sends it as a 422. No I/O here: text in, text
and dataclasses out.

What the relay is, as the answer says it:

- One transport per peer: ICE-lite (`a=ice-lite`, RFC 8445 section 2.5) on the relay's one UDP
  port, with one host candidate, all of them at once (`a=end-of-candidates`, RFC 8840). The
  peer's media must therefore be bundled (RFC 8843): with a BUNDLE group, m= sections outside it
  are rejected; without one, only an offer with a single audio or video m= section is answered.
- DTLS-SRTP (`UDP/TLS/RTP/SAVPF`, RFC 5764 section 8) with RTP and RTCP on one port
  (`a=rtcp-mux`, RFC 5761 section 5.1.1; every WebRTC offerer includes it, RFC 8829 section
  5.2.1, so an offer without it is refused rather than answered with a second port).
- The relay answers `a=setup:passive` (it is the DTLS server) unless the offer says passive
  (RFC 8842 section 5.3). RFC 5763 section 5 recommends `active` to save a round trip; passive
  means the worker never starts a handshake, it only answers the peer's ClientHello, which
  arrives from the address the ICE check came from.
- One codec per m= section and no extras: an answer lists the formats the answerer will
  receive (RFC 3264 section 6.1), so leaving RTX, RED and FEC out tells the sender not to use
  them.
  `a=extmap` is parsed and answered with none: the relay forwards packets unchanged and cannot
  keep extension ids consistent between a presenter and each viewer, so it negotiates none and
  browsers then send none (RFC 8285). `a=simulcast` and `a=rid` are left out of the
  answer, which turns simulcast off (RFC 8853); one encoding per m= section is sent.
- SSRCs identify streams: with no MID header extension negotiated, the relay (and a viewer's
  browser) can only map a packet to an m= section by the SSRC the SDP declares (`a=ssrc`, RFC
  5576 section 4.1; RFC 8843 section 9.2). A publisher must declare one media SSRC per m=
  section, as Chrome, Firefox, OBS and webrtcbin do; the answer to a viewer declares the SSRC
  (kept end to end) and an `a=msid` (RFC 8830) for each stream it sends.

Feedback (`a=rtcp-fb`, RFC 4585 section 4.2): the answer keeps `nack pli` and `ccm fir`
(RFC 5104 section 7.1) where offered: the relay passes viewers' keyframe requests on to the
presenter. It leaves out generic `nack` (a viewer would expect retransmissions the relay keeps
no packets for, and a presenter's would reach every viewer as duplicates), `transport-cc` and
`goog-remb` (bandwidth estimates need header extensions the relay does not negotiate, and an
estimate for the relay's hop is not one for the viewers').

Errors never repeat a value from the offer (control/errors.py): m= sections are named by their
position ("m= section 2, video"), codecs only by well-known names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from control.sdp import _CODEC, _address, _port, _session_id, check_streams
from relay.certificate import Fingerprint
from relay.dtls import DtlsRole
from relay.errors import RelayError
from relay.vocabulary import Kind
from relay.wire import Stream

__all__ = [
    "MAX_OFFER_CHARS",
    "MAX_OFFER_LINES",
    "MAX_MEDIA_SECTIONS",
    "PROTO",
    "Codec",
    "Direction",
    "DtlsRole",
    "Extmap",
    "Fingerprint",
    "MediaSection",
    "OfferError",
    "Placement",
    "PublisherAnswer",
    "Setup",
    "SsrcGroup",
    "ViewerAnswer",
    "WebRtcOffer",
    "answer_publisher",
    "answer_viewer",
    "parse_offer",
]

# A browser's offer with a few transceivers is 3 to 10 KiB; a viewer with dozens stays well
# under these. The limits bound the work an unauthenticated POST can cause.
MAX_OFFER_CHARS = 64 * 1024
MAX_OFFER_LINES = 4096
MAX_MEDIA_SECTIONS = 256

PROTO = "UDP/TLS/RTP/SAVPF"  # RFC 5764 section 8, with RFC 4585 feedback: what WebRTC offers

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
Setup = Literal["actpass", "active", "passive"]

_DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")
_SETUPS: tuple[Setup, ...] = ("actpass", "active", "passive")

# RFC 8122 section 5 hash function names (relay/certificate.py checks digests with them), in
# the relay's order of preference when an offer carries several (section 5: check against the
# fingerprints of one hash function the endpoint prefers). MD2 and MD5, which section 5 forbids,
# and names the relay does not know are skipped.
_HASHES: tuple[str, ...] = ("sha-512", "sha-384", "sha-256", "sha-224", "sha-1")

# RFC 8866 section 9 grammar. token-char: %x21 / %x23-27 / %x2A-2B / %x2D-2E / %x30-39 /
# %x41-5A / %x5E-7E.
_TOKEN = r"[!#-'*+\-.0-9A-Z^-~]+"
_TOKEN_RE = re.compile(_TOKEN)
_PROTO_RE = re.compile(rf"{_TOKEN}(?:/{_TOKEN})*")
_LINE = re.compile(r"([a-z])=(.*)")
_ATTRIBUTE = re.compile(rf"({_TOKEN})(?::(.*))?")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # TAB is allowed in free text
_NUMBER = re.compile(r"[0-9]{1,10}")  # ASCII digits only: int() would take other scripts'
# RFC 8839 section 5.4: ice-char = ALPHA / DIGIT / "+" / "/".
_ICE_UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")
_ICE_PWD = re.compile(r"[A-Za-z0-9+/]{22,256}")
# fmtp parameters are written back into the answer: printable ASCII only.
_FMTP = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?")
_MAX_MID = 64

# What the relay takes from a publisher, in the relay's order of preference for video: VP8 and
# H.264 are what every browser must decode (RFC 7742 section 5), VP8 first because it has no
# profiles a viewer might lack; VP9 last.
_OPUS = ("opus", 48000, 2)  # RFC 7587 section 7: always opus/48000/2
_VIDEO = (("VP8", 90000), ("H264", 90000), ("VP9", 90000))
_REPAIR = ("rtx", "red", "ulpfec", "flexfec-03")  # retransmission, redundancy and FEC formats
_FEEDBACK = ("nack pli", "ccm fir")  # what the relay passes on: keyframe requests

# Codec names an error message may repeat (IANA media subtypes WebRTC peers offer).
_KNOWN_CODECS = {
    name.lower(): name
    for name in "opus PCMU PCMA G722 ISAC ILBC CN telephone-event red ulpfec flexfec-03 rtx "
    "VP8 VP9 H264 H265 AV1 L16 multiopus".split()
}

# RFC 8445 section 5.1.2.1: priority = 2^24 * type preference (126, host) + 2^8 * local
# preference (65535, the only address) + (256 - component ID 1).
_HOST_PRIORITY = (1 << 24) * 126 + (1 << 8) * 65535 + (256 - 1)


class OfferError(RelayError, ValueError):
    """An offer the relay cannot answer. The message says which rule it breaks and never
    repeats a value from the offer; the API sends it as a 422."""


@dataclass(frozen=True)
class Codec:
    """One payload type of an m= section: its `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines."""

    pt: int
    name: str  # the encoding name as offered: "opus", "VP8", "H264"
    clock: int
    channels: int | None  # audio only; None when the rtpmap gives none (RFC 8866: one)
    fmtp: str = ""  # the a=fmtp parameters as offered ("" when none)
    rtcp_fb: tuple[str, ...] = ()  # feedback types in lower case: "nack", "nack pli", ...

    @property
    def rtpmap(self) -> str:
        """`name/clock[/channels]`, as a=rtpmap writes it and `relay.wire.Stream.codec` takes."""
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.name}/{self.clock}{tail}"

    @property
    def parameters(self) -> dict[str, str]:
        """The fmtp parameters (`key=value;...`), keys in lower case."""
        return _fmtp_parameters(self.fmtp)


@dataclass(frozen=True)
class SsrcGroup:
    """`a=ssrc-group` (RFC 5576 section 4.2): FID pairs a media SSRC with its RTX SSRC
    (RFC 4588 section 8.7), FEC-FR with its FEC SSRC, SIM lists simulcast layers."""

    semantics: str
    ssrcs: tuple[int, ...]


@dataclass(frozen=True)
class Extmap:
    """`a=extmap` (RFC 8285): recorded, never answered (the module docstring says why)."""

    id: int
    uri: str
    direction: str | None


@dataclass(frozen=True)
class MediaSection:
    """One m= section of an offer. Transport fields are the effective ones: the section's own
    attribute, else the session's."""

    index: int  # position in the offer, from 0
    kind: str  # "audio", "video", "application" (a data channel), or another media type
    port: int  # 0: disabled by the offerer, unless bundle_only (RFC 8843 section 7.2)
    proto: str
    formats: tuple[str, ...]  # the m= line's fmt list, as offered
    mid: str | None  # a=mid (RFC 5888)
    direction: Direction  # what the offerer does; sendrecv when not said (RFC 8866 section 6.7)
    bundle_only: bool
    rtcp_mux: bool
    rtcp_rsize: bool  # RFC 5506 reduced-size RTCP
    codecs: tuple[Codec, ...]  # the rtpmap'd payload types, in the m= line's order
    ssrcs: tuple[int, ...]  # every a=ssrc, in order of appearance
    ssrc_groups: tuple[SsrcGroup, ...]
    msids: tuple[str, ...]  # a=msid values (RFC 8830)
    extmaps: tuple[Extmap, ...]
    simulcast: bool  # a=simulcast or a=rid present (RFC 8853, RFC 8851)
    ice_ufrag: str | None
    ice_pwd: str | None = field(repr=False)
    fingerprints: tuple[Fingerprint, ...]  # those with a hash function the relay knows
    setup: Setup | None
    rejected: str | None = None  # why no answer can accept it; None: it can be answered

    @property
    def primary_ssrcs(self) -> tuple[int, ...]:
        """The media SSRCs: every a=ssrc but the RTX and FEC ones (the second and later SSRCs
        of FID and FEC-FR groups)."""
        secondary = {
            ssrc
            for group in self.ssrc_groups
            if group.semantics.upper() in ("FID", "FEC-FR", "FEC")
            for ssrc in group.ssrcs[1:]
        }
        return tuple(ssrc for ssrc in self.ssrcs if ssrc not in secondary)


@dataclass(frozen=True)
class WebRtcOffer:
    """A parsed offer the relay can answer: at least one audio or video m= section it can take,
    and the transport (ICE, DTLS) those share."""

    media: tuple[MediaSection, ...]
    bundle: tuple[str, ...]  # the mids of the BUNDLE group the relay uses, as offered; () none
    ice_ufrag: str  # the peer's
    ice_pwd: str = field(repr=False)
    fingerprint: Fingerprint  # the one the peer's certificate is checked against
    setup: Setup  # the offer's a=setup (active when it has none, RFC 4145 section 4.1)
    trickle: bool  # a=ice-options:trickle (RFC 8840): more candidates may follow the offer


class Placement(NamedTuple):
    """A stream placed on a viewer's m= section: the relay sends its packets to this viewer
    with the payload type the viewer gave the codec (RFC 3264 section 6.1)."""

    ssrc: int
    pt: int


@dataclass(frozen=True)
class PublisherAnswer:
    """The answer to a WHIP offer and what the worker needs to serve the peer."""

    sdp: str
    streams: tuple[Stream, ...]  # what the peer will send, in m= section order
    fmtp: dict[int, str]  # by SSRC: the chosen codec's a=fmtp as offered (answer_viewer's fmtp)
    peer_ice_ufrag: str
    peer_ice_pwd: str = field(repr=False)
    # The USERNAME the peer's connectivity checks carry (RFC 8445 section 7.2.2): the relay's
    # ufrag, a colon, the peer's.
    ice_username: str
    peer_fingerprint: Fingerprint
    dtls_role: DtlsRole
    rejected: tuple[tuple[int, str], ...]  # (m= section index, why) for each one answered port 0


@dataclass(frozen=True)
class ViewerAnswer:
    """The answer to a WHEP offer and what the worker needs to serve the peer."""

    sdp: str
    placed: tuple[Placement, ...]  # (ssrc, viewer's payload type) per stream sent
    unplaced: tuple[Stream, ...]  # streams the offer had no free m= section of their kind for
    peer_ice_ufrag: str
    peer_ice_pwd: str = field(repr=False)
    # The USERNAME the peer's connectivity checks carry (RFC 8445 section 7.2.2): the relay's
    # ufrag, a colon, the peer's.
    ice_username: str
    peer_fingerprint: Fingerprint
    dtls_role: DtlsRole
    rejected: tuple[tuple[int, str], ...]  # (m= section index, why) for each one answered port 0


# --- reading an offer -------------------------------------------------------------------------


@dataclass
class _Block:
    """The lines of the session part or of one m= section, before interpretation."""

    line: int  # 1-based line number of its m= line; 0 for the session part
    media: str  # the m= line's value ("" for the session)
    attributes: list[tuple[int, str, str | None]] = field(default_factory=list)

    def values(self, name: str) -> Iterator[tuple[int, str | None]]:
        for line, attr, value in self.attributes:
            if attr == name:
                yield line, value

    def has(self, name: str) -> bool:
        return any(attr == name for _, attr, _ in self.attributes)


def _blocks(text: object) -> tuple[_Block, list[_Block]]:
    if not isinstance(text, str):
        raise OfferError("the offer must be SDP text")
    if len(text) > MAX_OFFER_CHARS:
        raise OfferError(f"the offer is longer than {MAX_OFFER_CHARS} characters")
    raw = text.split("\n")
    if len(raw) > MAX_OFFER_LINES:
        raise OfferError(f"the offer has more than {MAX_OFFER_LINES} lines")
    session = _Block(0, "")
    media: list[_Block] = []
    current = session
    seen_version = False
    for number, line in enumerate(raw, start=1):
        if line.endswith("\r"):  # CRLF (RFC 8866 section 5) or LF, as clients send
            line = line[:-1]
        if not line.strip(" "):
            continue
        if _CONTROL.search(line):
            raise OfferError(f"line {number} has a control character")
        match = _LINE.fullmatch(line)
        if match is None:
            raise OfferError(f"line {number} is not <type>=<value> (RFC 8866 section 5)")
        kind, value = match.group(1), match.group(2).strip(" ")
        if not seen_version:
            if kind != "v" or value != "0":
                raise OfferError("the offer does not start with v=0 (RFC 8866 section 5.1)")
            seen_version = True
            continue
        if kind == "m":
            if len(media) == MAX_MEDIA_SECTIONS:
                raise OfferError(f"the offer has more than {MAX_MEDIA_SECTIONS} m= sections")
            current = _Block(number, value)
            media.append(current)
        elif kind == "a":
            attribute = _ATTRIBUTE.fullmatch(value)
            if attribute is None:
                raise OfferError(
                    f"line {number}: a= is not <name>[:<value>] (RFC 8866 section 5.13)"
                )
            current.attributes.append((number, attribute.group(1), attribute.group(2)))
        # o=, s=, t=, c=, b= and the rest say nothing the answer depends on.
    if not seen_version:
        raise OfferError("the offer is empty")
    return session, media


def _one(block: _Block, name: str) -> tuple[int, str] | None:
    """The value of an attribute that may appear once (again with the same value is allowed)."""
    found: tuple[int, str] | None = None
    for line, value in block.values(name):
        if value is None or not value.strip(" "):
            raise OfferError(f"line {line}: a={name} needs a value")
        value = value.strip(" ")
        if found is not None and found[1] != value:
            raise OfferError(f"line {line}: a second a={name} with another value")
        found = (line, value)
    return found


def _fields(value: str) -> list[str]:
    return [part for part in value.split(" ") if part]


def _number(text: str, limit: int) -> int | None:
    if _NUMBER.fullmatch(text) is None:
        return None
    number = int(text)
    return number if number <= limit else None


def _fmtp_parameters(fmtp: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for item in fmtp.split(";"):
        key, _, value = item.partition("=")
        if key.strip():
            parameters.setdefault(key.strip().lower(), value.strip())
    return parameters


def _ice(block: _Block) -> tuple[str | None, str | None]:
    ufrag = _one(block, "ice-ufrag")
    pwd = _one(block, "ice-pwd")
    if ufrag is not None and _ICE_UFRAG.fullmatch(ufrag[1]) is None:
        raise OfferError(
            f"line {ufrag[0]}: a=ice-ufrag must be 4 to 256 letters, digits, '+' or '/' "
            "(RFC 8839 section 5.4)"
        )
    if pwd is not None and _ICE_PWD.fullmatch(pwd[1]) is None:
        raise OfferError(
            f"line {pwd[0]}: a=ice-pwd must be 22 to 256 letters, digits, '+' or '/' "
            "(RFC 8839 section 5.4)"
        )
    return (ufrag[1] if ufrag else None), (pwd[1] if pwd else None)


def _fingerprints(block: _Block) -> tuple[Fingerprint, ...]:
    found: list[Fingerprint] = []
    for line, value in block.values("fingerprint"):
        algorithm, _, digest = (value or "").strip(" ").partition(" ")
        if algorithm.lower() not in _HASHES:
            continue  # MD5, MD2 (forbidden) or a hash the relay does not know: not usable
        try:
            fingerprint = Fingerprint.parse(f"{algorithm} {digest.strip(' ')}")
        except ValueError:
            raise OfferError(
                f"line {line}: a=fingerprint is not '<hash function> <hex pairs>' of the "
                "hash function's length (RFC 8122 section 5)"
            ) from None
        if fingerprint not in found:
            found.append(fingerprint)
    return tuple(found)


def _setup(block: _Block) -> Setup | None:
    found = _one(block, "setup")
    if found is None:
        return None
    value = found[1].lower()
    if value == "holdconn":
        raise OfferError(
            f"line {found[0]}: a=setup:holdconn asks for no DTLS connection, and the relay "
            "has nothing to send or receive without one (RFC 4145 section 4)"
        )
    for setup in _SETUPS:
        if value == setup:
            return setup
    raise OfferError(
        f"line {found[0]}: a=setup must be actpass, active or passive (RFC 8842 section 5)"
    )


def _direction(block: _Block, default: Direction) -> Direction:
    said = [direction for direction in _DIRECTIONS if block.has(direction)]
    if len(said) > 1:
        raise OfferError("more than one direction attribute in one place (RFC 8866 section 6.7)")
    return said[0] if said else default


def _codecs(block: _Block, formats: list[int]) -> tuple[Codec, ...]:
    rtpmaps: dict[int, tuple[str, int, int | None]] = {}
    for line, value in block.values("rtpmap"):
        head, _, codec = (value or "").strip(" ").partition(" ")
        pt = _number(head, 127)
        match = _CODEC.fullmatch(codec.strip(" "))
        if pt is None or match is None or int(match.group(2)) > 0xFFFFFFFF:
            raise OfferError(
                f"line {line}: a=rtpmap is not '<payload type> <name>/<clock rate>"
                "[/<channels>]' (RFC 8866 section 6.6)"
            )
        channels = match.group(3)
        rtpmap = (match.group(1), int(match.group(2)), int(channels) if channels else None)
        if rtpmaps.setdefault(pt, rtpmap) != rtpmap:
            raise OfferError(f"line {line}: a second a=rtpmap for one payload type")
    fmtps: dict[int, str] = {}
    for line, value in block.values("fmtp"):
        head, _, parameters = (value or "").strip(" ").partition(" ")
        pt = _number(head, 127)
        parameters = parameters.strip(" ")
        if pt is None or (parameters and _FMTP.fullmatch(parameters) is None):
            raise OfferError(
                f"line {line}: a=fmtp is not '<payload type> <parameters>' in printable ASCII "
                "(RFC 8866 section 6.15)"
            )
        if fmtps.setdefault(pt, parameters) != parameters:
            raise OfferError(f"line {line}: a second a=fmtp for one payload type")
    feedback: dict[int | str, list[str]] = {}
    for _line, value in block.values("rtcp-fb"):
        # Recorded only to be intersected with the relay's own two types: a malformed line is
        # one the answer would not have kept anyway.
        head, _, kind = (value or "").strip(" ").partition(" ")
        key: int | str | None = "*" if head == "*" else _number(head, 127)
        normalized = " ".join(_fields(kind.lower()))
        if key is not None and normalized:
            feedback.setdefault(key, []).append(normalized)
    codecs = []
    for pt in formats:
        if pt in rtpmaps:
            name, clock, channels = rtpmaps[pt]
            types = tuple(dict.fromkeys(feedback.get(pt, []) + feedback.get("*", [])))
            codecs.append(Codec(pt, name, clock, channels, fmtps.get(pt, ""), types))
    return tuple(codecs)


def _ssrcs(block: _Block) -> tuple[tuple[int, ...], tuple[SsrcGroup, ...], tuple[str, ...]]:
    ssrcs: list[int] = []
    for line, value in block.values("ssrc"):
        head = (value or "").strip(" ").split(" ", 1)[0]
        ssrc = _number(head, 0xFFFFFFFF)
        if ssrc is None:
            raise OfferError(
                f"line {line}: a=ssrc does not start with an SSRC in 0..2**32-1 "
                "(RFC 5576 section 4.1)"
            )
        if ssrc not in ssrcs:
            ssrcs.append(ssrc)
    groups: list[SsrcGroup] = []
    for line, value in block.values("ssrc-group"):
        parts = _fields(value or "")
        members = [_number(part, 0xFFFFFFFF) for part in parts[1:]]
        if not parts or _TOKEN_RE.fullmatch(parts[0]) is None or not members:
            raise OfferError(
                f"line {line}: a=ssrc-group is not '<semantics> <ssrc>...' (RFC 5576 section 4.2)"
            )
        numbers = [member for member in members if member is not None]
        if len(numbers) != len(members):
            raise OfferError(f"line {line}: a=ssrc-group has an SSRC outside 0..2**32-1")
        groups.append(SsrcGroup(parts[0], tuple(numbers)))
    msids = tuple(
        " ".join(_fields(value))
        for _, value in block.values("msid")
        if value and _FMTP.fullmatch(value.strip(" "))
    )
    return tuple(ssrcs), tuple(groups), msids


def _extmaps(block: _Block) -> tuple[Extmap, ...]:
    extmaps = []
    for _, value in block.values("extmap"):
        parts = _fields(value or "")
        if len(parts) < 2:
            continue  # recorded only: a malformed one changes nothing in the answer
        head, _, direction = parts[0].partition("/")
        number = _number(head, 4095)
        if number is not None:
            extmaps.append(Extmap(number, parts[1], direction or None))
    return tuple(extmaps)


def _media(
    index: int,
    block: _Block,
    direction: Direction,
    session_ice: tuple[str | None, str | None],
    session_fingerprints: tuple[Fingerprint, ...],
    session_setup: Setup | None,
) -> MediaSection:
    parts = _fields(block.media)
    port = _number(parts[1].split("/", 1)[0], 65535) if len(parts) >= 4 else None
    if (
        port is None
        or _TOKEN_RE.fullmatch(parts[0]) is None
        or _PROTO_RE.fullmatch(parts[2]) is None
        or any(_TOKEN_RE.fullmatch(part) is None for part in parts[3:])
    ):
        raise OfferError(
            f"line {block.line}: m= is not '<media> <port> <proto> <fmt>...' "
            "(RFC 8866 section 5.14)"
        )
    kind, proto, formats = parts[0], parts[2], tuple(parts[3:])
    rtp = proto.upper() == PROTO
    payload_types: list[int] = []
    if rtp:
        for fmt in formats:
            pt = _number(fmt, 127)
            if pt is None:
                raise OfferError(
                    f"line {block.line}: an RTP m= line's formats must be payload types in "
                    "0..127 (RFC 3550 section 5.1)"
                )
            if pt not in payload_types:
                payload_types.append(pt)
    mid = _one(block, "mid")
    if mid is not None and (_TOKEN_RE.fullmatch(mid[1]) is None or len(mid[1]) > _MAX_MID):
        raise OfferError(
            f"line {mid[0]}: a=mid must be a token of at most {_MAX_MID} characters (RFC 5888)"
        )
    ufrag, pwd = _ice(block)
    fingerprints = _fingerprints(block)
    setup = _setup(block)
    ssrcs, groups, msids = _ssrcs(block) if rtp else ((), (), ())
    return MediaSection(
        index=index,
        kind=kind,
        port=port,
        proto=proto,
        formats=formats,
        mid=mid[1] if mid else None,
        direction=_direction(block, direction),
        bundle_only=block.has("bundle-only"),
        rtcp_mux=block.has("rtcp-mux"),
        rtcp_rsize=block.has("rtcp-rsize"),
        codecs=_codecs(block, payload_types) if rtp else (),
        ssrcs=ssrcs,
        ssrc_groups=groups,
        msids=msids,
        extmaps=_extmaps(block),
        simulcast=block.has("simulcast") or block.has("rid"),
        ice_ufrag=ufrag if ufrag is not None else session_ice[0],
        ice_pwd=pwd if pwd is not None else session_ice[1],
        fingerprints=fingerprints or session_fingerprints,
        setup=setup if setup is not None else session_setup,
    )


def _bundle_groups(session: _Block) -> list[tuple[str, ...]]:
    groups = []
    for line, value in session.values("group"):
        parts = _fields(value or "")
        if not parts or parts[0].upper() != "BUNDLE":
            continue  # other semantics (LS, FID) say nothing about transports
        mids = tuple(parts[1:])
        if len(set(mids)) != len(mids):
            raise OfferError(f"line {line}: a=group:BUNDLE names one mid twice (RFC 5888)")
        if mids:
            groups.append(mids)
    return groups


def _section_name(section: MediaSection) -> str:
    if section.kind in ("audio", "video", "application"):
        return f"m= section {section.index + 1} ({section.kind})"
    return f"m= section {section.index + 1}"


def _reason(section: MediaSection, bundle: tuple[str, ...]) -> str | None:
    """Why no answer can accept this m= section, whatever it is for; None if one can."""
    if section.port == 0 and not (section.bundle_only and section.mid in bundle):
        return "the offer disables it (port 0, RFC 3264 section 8.2)"
    if section.kind == "application":
        return "the relay carries no data channels"
    if section.kind not in ("audio", "video"):
        return "the relay carries only audio and video"
    if section.proto.upper() != PROTO:
        return f"its proto is not {PROTO} (DTLS-SRTP, RFC 5764 section 8)"
    if bundle and section.mid not in bundle:
        return "it is outside the BUNDLE group, and the relay has one transport per peer"
    return None


def _reasons(sections: Sequence[MediaSection]) -> str:
    return "; ".join(f"{_section_name(s)}: {s.rejected}" for s in sections if s.rejected)


def parse_offer(text: str) -> WebRtcOffer:
    """Read a WebRTC offer (JSEP, RFC 8829) as a WHIP or WHEP client POSTs it.

    Lines may end in CRLF or LF. The offer must have at least one audio or video m= section
    the relay can take (UDP/TLS/RTP/SAVPF, not disabled, in the BUNDLE group if there is one);
    the others are recorded with the reason in `MediaSection.rejected`, and the answers reject
    them. Those it can take must share one transport: the same ICE credentials, certificate
    fingerprints and a=setup, with a=rtcp-mux.

    Raises:
        OfferError: the offer is malformed, too large, or cannot be answered; the message says
            why.
    """
    session, blocks = _blocks(text)
    if session.has("ice-lite"):
        raise OfferError(
            "the offer is ICE-lite, like the relay: two lite agents never run connectivity "
            "checks, so neither learns a working address (RFC 8445 section 2.5)"
        )
    direction = _direction(session, "sendrecv")
    session_ice = _ice(session)
    session_fingerprints = _fingerprints(session)
    session_setup = _setup(session)
    media = [
        _media(i, block, direction, session_ice, session_fingerprints, session_setup)
        for i, block in enumerate(blocks)
    ]
    if not media:
        raise OfferError("the offer has no m= sections")

    mids = [section.mid for section in media if section.mid is not None]
    if len(set(mids)) != len(mids):
        raise OfferError("two m= sections have the same a=mid (RFC 5888)")
    groups = _bundle_groups(session)
    grouped = [mid for group in groups for mid in group]
    if len(set(grouped)) != len(grouped):
        raise OfferError("an m= section is in two BUNDLE groups (RFC 8843 section 5)")
    if any(mid not in mids for mid in grouped):
        raise OfferError("a=group:BUNDLE names a mid no m= section has (RFC 5888)")
    # The first BUNDLE group is the peer's one transport; others would need more transports.
    bundle = groups[0] if groups else ()
    media = [replace(section, rejected=_reason(section, bundle)) for section in media]

    usable = [section for section in media if section.rejected is None]
    if not usable:
        raise OfferError(f"no m= section of this offer can be answered: {_reasons(media)}")
    if not bundle and len(usable) > 1:
        raise OfferError(
            f"the offer has {len(usable)} audio and video m= sections and no a=group:BUNDLE; "
            "the relay carries a peer's media on one transport, so they must be bundled "
            "(RFC 8843; bundlePolicy max-bundle)"
        )
    # RFC 8843 section 7.3.1: the offerer-tagged m= section is the first one in the group's
    # order the answer accepts that has a port; its transport is the BUNDLE transport.
    order = {mid: i for i, mid in enumerate(bundle)}
    carriers = sorted(
        (section for section in usable if section.port != 0),
        key=lambda section: order.get(section.mid or "", 0),
    )
    if not carriers:
        raise OfferError(
            "every m= section the relay could take is bundle-only (port 0), so none carries "
            "the transport (RFC 8843 section 7.3.1)"
        )
    tagged = carriers[0]
    for section in carriers:
        name = _section_name(section)
        if not section.rtcp_mux:
            raise OfferError(
                f"{name} has no a=rtcp-mux: the relay carries RTP and RTCP on one port "
                "(RFC 5761 section 5.1.1), as every WebRTC offerer does (RFC 8829 section 5.2.1)"
            )
        if section.ice_ufrag is None or section.ice_pwd is None:
            raise OfferError(
                f"{name} has no ICE credentials (a=ice-ufrag and a=ice-pwd, RFC 8839 section 5.4)"
            )
        if not section.fingerprints:
            raise OfferError(
                f"{name} has no a=fingerprint with a hash function the relay supports "
                f"({', '.join(_HASHES)}; RFC 8122 section 5)"
            )
    for section in usable:  # bundle-only ones included, where they say anything
        name = _section_name(section)
        if section.ice_ufrag is not None and (
            section.ice_ufrag != tagged.ice_ufrag or section.ice_pwd != tagged.ice_pwd
        ):
            raise OfferError(
                f"{name} has other ICE credentials than {_section_name(tagged)}; bundled m= "
                "sections share one ICE session (RFC 8843 section 7.1.3)"
            )
        if section.fingerprints and set(section.fingerprints) != set(tagged.fingerprints):
            raise OfferError(
                f"{name} has other fingerprints than {_section_name(tagged)}; bundled m= "
                "sections share one DTLS connection (RFC 8843 section 7.1.3)"
            )
        if section.setup is not None and section.setup != tagged.setup:
            raise OfferError(
                f"{name} has another a=setup than {_section_name(tagged)}; bundled m= "
                "sections share one DTLS connection (RFC 8843 section 7.1.3)"
            )
    assert tagged.ice_ufrag is not None and tagged.ice_pwd is not None  # checked above
    return WebRtcOffer(
        media=tuple(media),
        bundle=bundle,
        ice_ufrag=tagged.ice_ufrag,
        ice_pwd=tagged.ice_pwd,
        fingerprint=_preferred(tagged.fingerprints),
        setup=tagged.setup or "active",
        trickle=any(
            "trickle" in _fields(value or "")
            for block in (session, *blocks)
            for _, value in block.values("ice-options")
        ),
    )


def _preferred(fingerprints: tuple[Fingerprint, ...]) -> Fingerprint:
    for algorithm in _HASHES:
        chosen = [f for f in fingerprints if f.algorithm == algorithm]
        if len(chosen) > 1:
            # RFC 8122 section 5 lets a peer list one fingerprint per certificate it might
            # use; WebRTC peers use one, and the worker checks against one.
            raise OfferError(
                "the offer has several certificate fingerprints of one hash function; the "
                "relay takes one certificate per peer"
            )
        if chosen:
            return chosen[0]
    raise AssertionError("no fingerprints")  # parse_offer refused that already


# --- writing an answer ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Local:
    """The relay's side of the transport, checked once per answer."""

    family: str  # "IP4" or "IP6"
    address: str
    port: int
    ice_ufrag: str
    ice_pwd: str = field(repr=False)
    fingerprint: str  # as a=fingerprint writes it
    session_id: int


def _local(
    ice_ufrag: str, ice_pwd: str, fingerprint: str, host: str, port: int, session_id: int
) -> _Local:
    if not isinstance(ice_ufrag, str) or _ICE_UFRAG.fullmatch(ice_ufrag) is None:
        raise ValueError(
            "ice_ufrag must be 4 to 256 letters, digits, '+' or '/' (RFC 8839 section 5.4)"
        )
    if not isinstance(ice_pwd, str) or _ICE_PWD.fullmatch(ice_pwd) is None:
        raise ValueError(
            "ice_pwd must be 22 to 256 letters, digits, '+' or '/' (RFC 8839 section 5.4)"
        )
    if not isinstance(fingerprint, str):
        raise ValueError("fingerprint must be text such as 'sha-256 AB:CD:...'")
    parsed = Fingerprint.parse(fingerprint)
    if isinstance(host, str):
        bare = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            raise ValueError(
                "host must be an IPv4 or IPv6 address, not a name: the peer would have to "
                "resolve its candidate (mDNS or DNS), which browsers do not all do "
                "(RFC 8839 section 5.1)"
            ) from None
    family, address = _address(host, "host")
    return _Local(
        family=family,
        address=address,
        port=_port(port, "port"),
        ice_ufrag=ice_ufrag,
        ice_pwd=ice_pwd,
        fingerprint=str(parsed),
        session_id=_session_id(session_id),
    )


def _answer_setup(offer: WebRtcOffer) -> tuple[Setup, DtlsRole]:
    """The answer's a=setup and the relay's DTLS role (relay/dtls.py, DtlsRole.for_offer)."""
    role = DtlsRole.for_offer(offer.setup)
    return ("passive" if role is DtlsRole.SERVER else "active"), role


@dataclass(frozen=True)
class _Accept:
    section: MediaSection
    direction: Direction
    codec: Codec
    extra: tuple[str, ...] = ()  # a=ssrc and a=msid lines for a stream the relay sends


@dataclass(frozen=True)
class _Reject:
    section: MediaSection
    reason: str


def _take(section: MediaSection) -> Codec | None:
    """The first offered codec the relay takes for this m= section, in the relay's order."""
    if section.kind == "audio":
        for codec in section.codecs:
            if (codec.name.lower(), codec.clock, codec.channels) == _OPUS:
                return codec
        return None
    for name, clock in _VIDEO:
        for codec in section.codecs:
            if codec.name.upper() != name or codec.clock != clock:
                continue
            # RFC 6184 section 8.1: packetization-mode absent is 0 (single NAL unit), which
            # cannot carry a frame larger than a packet; the relay forwards mode 1 only.
            if name == "H264" and codec.parameters.get("packetization-mode") != "1":
                continue
            return codec
    return None


def _canonical(codec: Codec) -> str:
    """The codec as `relay.wire.Stream.codec` has it, with the registry's spelling."""
    name = _KNOWN_CODECS.get(codec.name.lower(), codec.name)
    return Codec(codec.pt, name, codec.clock, codec.channels).rtpmap


def _check_pt(codec: Codec, section: MediaSection) -> None:
    if 64 <= codec.pt <= 95:
        raise OfferError(
            f"{_section_name(section)}: the codec the relay would use has a payload type in "
            "64..95, which collides with RTCP packet types under rtcp-mux (RFC 5761 section 4)"
        )


def _describe(codec: Codec) -> str:
    name = _KNOWN_CODECS.get(codec.name.lower(), "an unknown codec")
    if name == "an unknown codec":
        return name
    text = f"{name}/{codec.clock}"
    if name == "H264":
        parameters = codec.parameters
        profile = _h264_profile(parameters)
        mode = parameters.get("packetization-mode", "0")
        text += f" (profile {profile or 'unreadable'}, packetization-mode={_safe(mode)})"
    return text


def _safe(value: str) -> str:
    return value if value in ("0", "1", "2") else "other"


def _h264_profile(parameters: Mapping[str, str]) -> str | None:
    """profile_idc and profile-iop, the first 4 hex digits of profile-level-id (RFC 6184
    section 8.1); 42000a, Baseline level 1, when absent."""
    level_id = parameters.get("profile-level-id", "42000a")
    if re.fullmatch(r"[0-9A-Fa-f]{6}", level_id) is None:
        return None
    return level_id[:4].lower()


def _plays(stream: Stream, sender_fmtp: str | None, codec: Codec) -> bool:
    """Whether a viewer that offered `codec` can play `stream`."""
    match = _CODEC.fullmatch(stream.codec)
    assert match is not None  # check_streams checked it
    name, clock, channels = match.group(1), int(match.group(2)), match.group(3)
    if codec.name.lower() != name.lower() or codec.clock != clock:
        return False
    if stream.kind == "audio" and (codec.channels or 1) != int(channels or 1):
        return False
    offered = codec.parameters
    known = _fmtp_parameters(sender_fmtp) if sender_fmtp is not None else None
    if name.upper() == "H264":
        if offered.get("packetization-mode") != "1":
            return False  # the relay's H.264 is packetization-mode 1 (control/sdp.py)
        if known is not None:
            theirs = _h264_profile(offered)
            return theirs is not None and theirs == _h264_profile(known)
    if name.upper() == "VP9" and known is not None:
        # The VP9 RTP payload format's profile-id (RFC 9628): 0 when absent.
        return offered.get("profile-id", "0") == known.get("profile-id", "0")
    return True


def _lines_for(local: _Local, plan: _Accept | _Reject, setup: Setup) -> list[str]:
    section = plan.section
    mid = [f"a=mid:{section.mid}"] if section.mid is not None else []
    if isinstance(plan, _Reject):
        # RFC 3264 section 6 and RFC 8843 section 7.3.3: port 0, out of the BUNDLE group, no
        # bundle-only; the m= line otherwise as offered (validated tokens only).
        return [
            f"m={section.kind} 0 {section.proto} {' '.join(section.formats)}",
            f"c=IN {local.family} {local.address}",
            *mid,
        ]
    codec = plan.codec
    lines = [
        f"m={section.kind} {local.port} {PROTO} {codec.pt}",
        f"c=IN {local.family} {local.address}",
        *mid,
        f"a={plan.direction}",
        # The transport attributes go in every accepted m= section, identical: RFC 8843
        # section 7.1.3 needs them only in the tagged one, and browsers take either.
        f"a=ice-ufrag:{local.ice_ufrag}",
        f"a=ice-pwd:{local.ice_pwd}",
        f"a=fingerprint:{local.fingerprint}",
        f"a=setup:{setup}",
        "a=rtcp-mux",
    ]
    if section.rtcp_rsize:
        lines.append("a=rtcp-rsize")  # RFC 5506 section 5: answered only when offered
    lines.append(f"a=rtpmap:{codec.pt} {codec.rtpmap}")
    lines.extend(f"a=rtcp-fb:{codec.pt} {kind}" for kind in _FEEDBACK if kind in codec.rtcp_fb)
    if codec.fmtp:
        lines.append(f"a=fmtp:{codec.pt} {codec.fmtp}")
    lines.extend(plan.extra)
    lines.append(
        # RFC 8839 section 5.1: foundation, component 1 (RTP, with RTCP muxed), transport,
        # priority, address, port, type. A fixed foundation: the relay has one candidate.
        f"a=candidate:1 1 udp {_HOST_PRIORITY} {local.address} {local.port} typ host"
    )
    lines.append("a=end-of-candidates")  # ICE-lite: every candidate is in the answer (RFC 8840)
    return lines


def _render(local: _Local, offer: WebRtcOffer, plans: Sequence[_Accept | _Reject]) -> str:
    setup, _ = _answer_setup(offer)
    accepted = {plan.section.mid for plan in plans if isinstance(plan, _Accept)}
    lines = [
        "v=0",
        f"o=- {local.session_id} 1 IN {local.family} {local.address}",
        "s=-",
        "t=0 0",
        "a=ice-lite",  # RFC 8445 section 2.5, RFC 8839 section 5.3: the peer controls
    ]
    bundled = [mid for mid in offer.bundle if mid in accepted]
    if bundled:
        # RFC 8843 section 7.3.1: in the offer's order, so the first is the tagged section.
        lines.append(f"a=group:BUNDLE {' '.join(bundled)}")
    for plan in plans:
        lines.extend(_lines_for(local, plan, setup))
    return "\r\n".join(lines) + "\r\n"


def _rejected(plans: Sequence[_Accept | _Reject]) -> tuple[tuple[int, str], ...]:
    return tuple((p.section.index, p.reason) for p in plans if isinstance(p, _Reject))


def _nothing_accepted(plans: Sequence[_Accept | _Reject]) -> str:
    return "; ".join(
        f"{_section_name(p.section)}: {p.reason}" for p in plans if isinstance(p, _Reject)
    )


def answer_publisher(
    offer: WebRtcOffer,
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: str,
    host: str,
    port: int,
    session_id: int,
) -> PublisherAnswer:
    """Answer a WHIP offer: the peer sends, the relay receives.

    Each audio or video m= section that sends (sendonly or sendrecv) is answered `recvonly`
    with one codec, the first offered of those the relay takes (audio: opus/48000/2; video:
    VP8/90000, else H264/90000 with packetization-mode=1, else VP9/90000), at the offered
    payload type and fmtp. One that does not send is answered `inactive`; one with no codec
    the relay takes is rejected (port 0).

    Args:
        offer: from `parse_offer`.
        ice_ufrag, ice_pwd: the relay's ICE credentials for this peer (RFC 8839 section 5.4).
        fingerprint: the relay's certificate fingerprint, `sha-256 AB:CD:...`.
        host, port: the relay's media address; host an IPv4 or IPv6 address.
        session_id: the o= line's sess-id, in 0..2**63-1.

    Returns:
        The answer text (CRLF lines), the streams the peer will send (SSRC from its a=ssrc,
        kind, payload type, codec) and the peer's transport parameters.

    Raises:
        OfferError: nothing sends, a sending m= section declares no single media SSRC, an SSRC
            is on two m= sections, or the chosen payload type is in 64..95.
        ValueError: a bad credential, fingerprint, host, port or session id of the relay's.
    """
    local = _local(ice_ufrag, ice_pwd, fingerprint, host, port, session_id)
    plans: list[_Accept | _Reject] = []
    streams: list[Stream] = []
    fmtp: dict[int, str] = {}
    for section in offer.media:
        if section.rejected is not None:
            plans.append(_Reject(section, section.rejected))
            continue
        codec = _take(section)
        sends = section.direction in ("sendonly", "sendrecv")
        if codec is None:
            plans.append(
                _Reject(
                    section,
                    "it offers none of the codecs the relay takes (audio: opus/48000/2; "
                    "video: VP8, H264 with packetization-mode=1, VP9)",
                )
            )
            continue
        if not sends:
            plans.append(_Accept(section, "inactive", codec))
            continue
        _check_pt(codec, section)
        ssrc = _publisher_ssrc(section)
        if ssrc in fmtp:
            raise OfferError(
                f"{_section_name(section)} declares an SSRC another m= section has; each "
                "stream is one m= section's (RFC 8843 section 9.2)"
            )
        streams.append(
            Stream(ssrc=ssrc, kind=Kind(section.kind), pt=codec.pt, codec=_canonical(codec))
        )
        fmtp[ssrc] = codec.fmtp
        plans.append(_Accept(section, "recvonly", codec))
    if not streams:
        reasons = _nothing_accepted(plans)
        raise OfferError(
            "no audio or video m= section of this offer sends media the relay can take"
            + (f": {reasons}" if reasons else " (a WHIP offer is sendonly or sendrecv)")
        )
    _, role = _answer_setup(offer)
    return PublisherAnswer(
        sdp=_render(local, offer, plans),
        streams=tuple(streams),
        fmtp=fmtp,
        peer_ice_ufrag=offer.ice_ufrag,
        peer_ice_pwd=offer.ice_pwd,
        ice_username=f"{local.ice_ufrag}:{offer.ice_ufrag}",
        peer_fingerprint=offer.fingerprint,
        dtls_role=role,
        rejected=_rejected(plans),
    )


def _publisher_ssrc(section: MediaSection) -> int:
    primary = section.primary_ssrcs
    name = _section_name(section)
    if not primary:
        simulcast = (
            " It offers simulcast, which the relay answers off (RFC 8853); publish one encoding."
            if section.simulcast
            else ""
        )
        raise OfferError(
            f"{name} declares no SSRC: the relay needs the SSRC of what it will receive "
            f"(a=ssrc, RFC 5576 section 4.1), since it negotiates no MID header extension."
            f"{simulcast}"
        )
    if len(primary) > 1:
        raise OfferError(
            f"{name} declares {len(primary)} media SSRCs (legacy simulcast or Plan B); the "
            "relay takes one per m= section (RFC 8829, unified plan)"
        )
    return primary[0]


def answer_viewer(
    offer: WebRtcOffer,
    *,
    ice_ufrag: str,
    ice_pwd: str,
    fingerprint: str,
    host: str,
    port: int,
    session_id: int,
    streams: Sequence[Stream],
    fmtp: Mapping[int, str] | None = None,
) -> ViewerAnswer:
    """Answer a WHEP offer: the relay sends `streams`, the peer receives.

    Each audio or video m= section that receives (recvonly or sendrecv) gets the first of
    `streams` of its kind not yet placed, answered `sendonly` with that stream's codec at the
    payload type the viewer gave it (RFC 3264 section 6.1), its SSRC (`a=ssrc:<ssrc>
    cname:relay`, RFC 5576) and `a=msid:relay <kind>-<ssrc>` (RFC 8830; one media stream, so a
    player's `event.streams[0]` has audio and video together). A section left without a stream
    is answered `inactive` rather than rejected: it stays in the BUNDLE group and its
    transceiver stays usable for a later renegotiation, where a rejected one is stopped for
    good (RFC 8829) and, once it is the offerer-tagged one of a later offer, could not be
    rejected at all (RFC 8843 section 7.3.3).

    Args:
        offer: from `parse_offer`.
        ice_ufrag, ice_pwd, fingerprint, host, port, session_id: as for `answer_publisher`.
        streams: the streams to send, in the order they should be placed.
        fmtp: by SSRC, the a=fmtp each stream's sender declared (`PublisherAnswer.fmtp`).
            With it, an H.264 stream goes only to an m= section offering the same profile
            (profile_idc and profile-iop, RFC 6184 section 8.1) and a VP9 one to the same
            profile-id; without it, only packetization-mode=1 is checked for H.264.

    Returns:
        The answer text, per placed stream its SSRC and the viewer's payload type (the relay
        rewrites the payload type of that stream's packets for this viewer), the streams left
        unplaced, and the peer's transport parameters.

    Raises:
        OfferError: a stream's codec is not among those its m= section offers (the message
            names both), the viewer's payload type for it is in 64..95, or nothing can be
            answered.
        ValueError: a bad stream or relay parameter.
    """
    local = _local(ice_ufrag, ice_pwd, fingerprint, host, port, session_id)
    pending = check_streams(streams)
    known = dict(fmtp) if fmtp is not None else {}
    if any(not isinstance(value, str) for value in known.values()):
        raise ValueError("fmtp must map SSRCs to a=fmtp parameter text")
    plans: list[_Accept | _Reject] = []
    placed: list[Placement] = []
    for section in offer.media:
        if section.rejected is not None:
            plans.append(_Reject(section, section.rejected))
            continue
        stream = None
        if section.direction in ("recvonly", "sendrecv"):
            stream = next((s for s in pending if s.kind == section.kind), None)
        if stream is None:
            codec = _take(section)
            if codec is None:
                plans.append(
                    _Reject(section, "there is no stream for it and no codec the relay takes")
                )
            else:
                plans.append(_Accept(section, "inactive", codec))
            continue
        codec = _playable(stream, known.get(stream.ssrc), section)
        _check_pt(codec, section)
        pending.remove(stream)
        placed.append(Placement(stream.ssrc, codec.pt))
        track = f"{stream.kind}-{stream.ssrc}"
        extra = (f"a=ssrc:{stream.ssrc} cname:relay", f"a=msid:relay {track}")
        plans.append(_Accept(section, "sendonly", codec, extra))
    if not any(isinstance(plan, _Accept) for plan in plans):
        raise OfferError(f"no m= section of this offer can be answered: {_nothing_accepted(plans)}")
    _, role = _answer_setup(offer)
    return ViewerAnswer(
        sdp=_render(local, offer, plans),
        placed=tuple(placed),
        unplaced=tuple(pending),
        peer_ice_ufrag=offer.ice_ufrag,
        peer_ice_pwd=offer.ice_pwd,
        ice_username=f"{local.ice_ufrag}:{offer.ice_ufrag}",
        peer_fingerprint=offer.fingerprint,
        dtls_role=role,
        rejected=_rejected(plans),
    )


def _playable(stream: Stream, sender_fmtp: str | None, section: MediaSection) -> Codec:
    for codec in section.codecs:
        if _plays(stream, sender_fmtp, codec):
            return codec
    sent = stream.codec
    if stream.codec.split("/", 1)[0].upper() == "H264" and sender_fmtp is not None:
        profile = _h264_profile(_fmtp_parameters(sender_fmtp))
        sent += f" (profile {profile or 'unreadable'}, packetization-mode=1)"
    offered = list(
        dict.fromkeys(
            _describe(codec)
            for codec in section.codecs
            if codec.name.lower() not in _REPAIR  # not media a presenter could send
        )
    )
    if len(offered) > 8:
        offered = [*offered[:8], "..."]
    has = f"has only {', '.join(offered)}" if offered else "offers no codecs"
    raise OfferError(
        f"the presenter sends {sent}; this offer's {_section_name(section)} {has}, so this "
        "viewer cannot play it"
    )
