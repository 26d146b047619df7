"""The offer as read, the answers as written, and the limits and rules both use
(control/webrtc_sdp/__init__.py says what the relay answers and why)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from relay.certificate import Fingerprint
from relay.dtls import DtlsRole
from relay.errors import RelayError
from relay.wire import Stream

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
# fmtp parameters are written back into the answer: printable ASCII only.
_FMTP = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?")
_MAX_MID = 64

# What the relay takes from a publisher, in the relay's order of preference for video: VP8 and
# H.264 are what every browser must decode (RFC 7742 section 5), VP8 first because it has no
# profiles a viewer might lack; VP9 last.
_OPUS = ("opus", 48000, 2)  # RFC 7587 section 7: always opus/48000/2
_VIDEO = (("VP8", 90000), ("H264", 90000), ("VP9", 90000))
_REPAIR = ("rtx", "red", "ulpfec", "flexfec-03")  # retransmission, redundancy and FEC formats
# Feedback the answer keeps where offered: generic NACKs (answered from the relay's cache,
# ext/rtx.pxi; the relay's own go to a publisher, which retransmits on the media SSRC, no RTX
# being negotiated) and keyframe requests (merged per stream, ext/forward.pxi).
_FEEDBACK = ("nack", "nack pli", "ccm fir")

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

    @property
    def is_opus(self) -> bool:
        """Opus at 48 kHz. RFC 7587 section 7 spells it opus/48000/2 whatever the audio (every
        Opus decoder plays mono and stereo streams); GStreamer's webrtcbin writes OPUS/48000,
        with no channel count, and means the same: both are taken."""
        name, clock, channels = _OPUS
        return (
            self.name.lower() == name and self.clock == clock and self.channels in (None, channels)
        )


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
class PeerAnswer:
    """What both answers carry: the SDP, and what the worker needs to connect the peer."""

    sdp: str
    peer_ice_ufrag: str
    peer_ice_pwd: str = field(repr=False)
    # The USERNAME the peer's connectivity checks carry (RFC 8445 section 7.2.2): the relay's
    # ufrag, a colon, the peer's.
    ice_username: str
    peer_fingerprint: Fingerprint
    dtls_role: DtlsRole
    rejected: tuple[tuple[int, str], ...]  # (m= section index, why) for each one answered port 0


@dataclass(frozen=True)
class PublisherAnswer(PeerAnswer):
    """The answer to a WHIP offer, and what the peer will send."""

    streams: tuple[Stream, ...]  # in m= section order
    fmtp: dict[int, str]  # by SSRC: the chosen codec's a=fmtp as offered (answer_viewer's fmtp)


@dataclass(frozen=True)
class ViewerAnswer(PeerAnswer):
    """The answer to a WHEP offer, and where each stream goes."""

    placed: tuple[Placement, ...]  # (ssrc, viewer's payload type) per stream sent
    unplaced: tuple[Stream, ...]  # streams the offer had no free m= section of their kind for


# --- reading an offer -------------------------------------------------------------------------


def _fmtp_parameters(fmtp: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for item in fmtp.split(";"):
        key, _, value = item.partition("=")
        if key.strip():
            parameters.setdefault(key.strip().lower(), value.strip())
    return parameters


def _section_name(section: MediaSection) -> str:
    if section.kind in ("audio", "video", "application"):
        return f"m= section {section.index + 1} ({section.kind})"
    return f"m= section {section.index + 1}"
