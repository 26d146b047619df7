"""Reading a WebRTC offer (RFC 8829 JSEP, RFC 8843 BUNDLE, RFC 8839 ICE, RFC 8122 fingerprints,
RFC 8842 setup, RFC 5761 rtcp-mux, RFC 5576 SSRCs): `parse_offer`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from control.sdp import _CODEC
from control.webrtc_sdp.model import (
    _ATTRIBUTE,
    _CONTROL,
    _DIRECTIONS,
    _FMTP,
    _HASHES,
    _LINE,
    _MAX_MID,
    _NUMBER,
    _PROTO_RE,
    _SETUPS,
    _TOKEN_RE,
    MAX_MEDIA_SECTIONS,
    MAX_OFFER_CHARS,
    MAX_OFFER_LINES,
    PROTO,
    Codec,
    Direction,
    Extmap,
    MediaSection,
    OfferError,
    Setup,
    SsrcGroup,
    WebRtcOffer,
    _section_name,
)
from relay.certificate import Fingerprint
from relay.ice import PASSWORD as ICE_PASSWORD  # RFC 8839 section 5.4's ice-chars
from relay.ice import UFRAG as ICE_UFRAG


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


def _ice(block: _Block) -> tuple[str | None, str | None]:
    ufrag = _one(block, "ice-ufrag")
    pwd = _one(block, "ice-pwd")
    if ufrag is not None and ICE_UFRAG.fullmatch(ufrag[1]) is None:
        raise OfferError(
            f"line {ufrag[0]}: a=ice-ufrag must be 4 to 256 letters, digits, '+' or '/' "
            "(RFC 8839 section 5.4)"
        )
    if pwd is not None and ICE_PASSWORD.fullmatch(pwd[1]) is None:
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
