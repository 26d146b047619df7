"""Writing the relay's answer to a WebRTC offer: `answer_publisher` (WHIP) and `answer_viewer`
(WHEP)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from control.sdp import _CODEC, _address, _port, _session_id, check_streams
from control.webrtc_sdp.model import (
    _FEEDBACK,
    _HOST_PRIORITY,
    _KNOWN_CODECS,
    _OPUS,
    _REPAIR,
    _VIDEO,
    PROTO,
    Codec,
    Direction,
    MediaSection,
    OfferError,
    Placement,
    PublisherAnswer,
    Setup,
    ViewerAnswer,
    WebRtcOffer,
    _fmtp_parameters,
    _section_name,
)
from relay.certificate import Fingerprint
from relay.dtls import DtlsRole
from relay.ice import PASSWORD as ICE_PASSWORD  # RFC 8839 section 5.4's ice-chars
from relay.ice import UFRAG as ICE_UFRAG
from relay.vocabulary import Kind
from relay.wire import Stream


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
    if not isinstance(ice_ufrag, str) or ICE_UFRAG.fullmatch(ice_ufrag) is None:
        raise ValueError(
            "ice_ufrag must be 4 to 256 letters, digits, '+' or '/' (RFC 8839 section 5.4)"
        )
    if not isinstance(ice_pwd, str) or ICE_PASSWORD.fullmatch(ice_pwd) is None:
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
    return cast(Setup, role.setup), role


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
            if codec.is_opus:
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
    """The codec as `relay.wire.Stream.codec` has it, with the registry's spelling (Opus
    always as RFC 7587 writes it, whatever the offer's spelling: SDES listeners are told it)."""
    if codec.is_opus:
        return "/".join(map(str, _OPUS))
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
    if codec.is_opus:
        return True  # any Opus decoder plays any Opus stream, mono or stereo
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


def _peer_answer(
    local: _Local, offer: WebRtcOffer, plans: Sequence[_Accept | _Reject], role: DtlsRole
) -> dict[str, Any]:
    """PeerAnswer's fields, as both answers fill them."""
    return {
        "sdp": _render(local, offer, plans),
        "peer_ice_ufrag": offer.ice_ufrag,
        "peer_ice_pwd": offer.ice_pwd,
        "ice_username": f"{local.ice_ufrag}:{offer.ice_ufrag}",
        "peer_fingerprint": offer.fingerprint,
        "dtls_role": role,
        "rejected": _rejected(plans),
    }


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
        **_peer_answer(local, offer, plans, role), streams=tuple(streams), fmtp=fmtp
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
        **_peer_answer(local, offer, plans, role), placed=tuple(placed), unplaced=tuple(pending)
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
