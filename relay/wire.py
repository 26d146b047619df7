"""The messages between the control plane and the workers, and their encoding.

Each message is a past-tense event (or a request) as a frozen dataclass. On the wire a message
is a list of ZeroMQ frames: [topic, version, json body]; decode() refuses unknown versions and
kinds with WireError. No sockets here: encode and decode only.

The routing table a worker holds is the result of applying, in order, a Snapshot and then
numbered updates (the ZeroMQ "clone" pattern). A Snapshot is also what `relay worker --table
FILE` and the benchmark baselines read from a file.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from relay.errors import RelayError
from relay.vocabulary import Address, Kind, Mode, Role, Suite

WIRE_VERSION = b"1"
SNAPSHOT_REQUEST = b"snapshot"  # a worker's DEALER asks the control plane's ROUTER
ROLES = tuple(Role)
MODES = tuple(Mode)


class WireError(RelayError, ValueError):
    """A message that cannot be decoded: unknown version or kind, missing or bad fields."""


def parse_address(text: str) -> Address:
    """'ip:port' or '[v6]:port' -> Address (a tuple (ip, port)), validated."""
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise WireError(str(exc)) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise WireError(f"{what} is not base64") from None


@dataclass(frozen=True)
class Stream:
    """One stream a participant sends: its SSRC and how receivers' SDP describes it."""

    ssrc: int
    kind: str = Kind.AUDIO  # a Kind; "application" too, for SDP's sake (control/sdp.py)
    pt: int = 111
    codec: str = "opus/48000/2"


@dataclass(frozen=True)
class WebRtcPeer:
    """What the home worker of a WebRTC peer (WHIP or WHEP) needs to connect it: the ICE
    credentials of the relay's SDP answer and of the peer's offer (RFC 8445 section 7.3:
    a check's USERNAME is "relay's ufrag:peer's ufrag", its MESSAGE-INTEGRITY keyed with the
    relay's password), the peer's certificate fingerprint from its offer (RFC 8122: the
    DTLS handshake must present that certificate) and the relay's DTLS role (RFC 8842:
    "server" when it answered a=setup:passive). The SRTP keys come from the handshake
    (RFC 5764 section 4.2), on the worker: the join's keys are placeholders nobody knows."""

    ice_ufrag: str
    ice_pwd: str = field(repr=False)  # a credential: never in a log line made of a message
    remote_ufrag: str
    fingerprint: str  # "sha-256 AB:CD:..." as the offer's a=fingerprint gave it
    dtls_role: str = "server"


@dataclass(frozen=True)
class MeetingOpened:
    kind: ClassVar[str] = "meeting_opened"
    meeting: int
    mode: Mode = Mode.MEETING


@dataclass(frozen=True)
class MeetingEnded:
    kind: ClassVar[str] = "meeting_ended"
    meeting: int


@dataclass(frozen=True)
class ParticipantJoined:
    kind: ClassVar[str] = "participant_joined"
    participant: int
    meeting: int
    role: Role
    suite: Suite
    uplink: bytes  # master key || salt for what the participant sends
    downlink: bytes  # master key || salt for what it receives
    streams: tuple[Stream, ...] = ()
    address: Address | None = None  # receive_at, for listen-only clients
    # The worker it is homed on: that worker receives from it and sends to it; the others
    # only know it (None: every worker treats it as its own, as a lone worker does).
    worker: int | None = None
    # For a receiver whose SDP puts each stream on a port of its own (receive_at: stream k of
    # its SDP on port + 2k): (ssrc, port) per stream; streams not listed are not sent to it.
    receive_ports: tuple[tuple[int, int], ...] = ()
    # Whether `address` asked for media: the join's caller was at that IP. If not, nothing is
    # sent there until an authenticated packet from that IP confirms it (consent, RFC 7675).
    address_confirmed: bool = True
    # The IP the join came from (kept in memory only, never stored): the first packets of a
    # sender likely come from there, which helps pick it among holders of a shared SSRC.
    source_hint: str | None = None
    # For a receiver whose SDP answer placed each stream it can play under a payload type of
    # its own (a WebRTC viewer): (ssrc, pt) per stream; streams not listed are not sent to it,
    # and with none listed nothing is (a WHIP publisher). None: every stream, as sent.
    payload_types: tuple[tuple[int, int], ...] | None = None
    # A WebRTC peer (WHIP or WHEP): connected by its home worker (relay/webrtc.py).
    webrtc: WebRtcPeer | None = None


@dataclass(frozen=True)
class ParticipantLeft:
    kind: ClassVar[str] = "participant_left"
    participant: int


@dataclass(frozen=True)
class ParticipantEjected:
    kind: ClassVar[str] = "participant_ejected"
    participant: int


@dataclass(frozen=True)
class ParticipantMuted:
    kind: ClassVar[str] = "participant_muted"
    participant: int
    muted: bool


@dataclass(frozen=True)
class MeetingRecording:
    """The host switched recording on or off: while on, every worker writes the meeting's
    decrypted media to its recording file (relay/recording.py)."""

    kind: ClassVar[str] = "meeting_recording"
    meeting: int
    on: bool


@dataclass(frozen=True)
class Heartbeat:
    """Sent on the update stream when nothing else is, numbered with the last update's number:
    a subscriber that is behind it missed updates (ZeroMQ PUB drops what it sends before a
    subscriber has (re)connected, say after the control plane restarted) and asks for a
    snapshot. Not an update: it changes nothing and takes no number of its own."""

    kind: ClassVar[str] = "heartbeat"


@dataclass(frozen=True)
class Snapshot:
    """The whole routing state at update number `seq`."""

    kind: ClassVar[str] = "snapshot"
    seq: int = 0
    meetings: tuple[MeetingOpened, ...] = ()
    participants: tuple[ParticipantJoined, ...] = ()
    ended: tuple[int, ...] = ()  # meetings that have ended
    muted: tuple[int, ...] = ()  # participants muted
    ejected: tuple[int, ...] = ()  # participants ejected
    recording: tuple[int, ...] = ()  # meetings being recorded


Update = (
    MeetingOpened
    | MeetingEnded
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantEjected
    | ParticipantMuted
    | MeetingRecording
)
Message = Update | Snapshot | Heartbeat

_KINDS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        MeetingOpened,
        MeetingEnded,
        ParticipantJoined,
        ParticipantLeft,
        ParticipantEjected,
        ParticipantMuted,
        MeetingRecording,
        Snapshot,
        Heartbeat,
    )
}


_DTLS_ROLES = ("server", "client")


def _webrtc_peer(body: Any) -> WebRtcPeer:
    if not isinstance(body, dict):
        raise WireError("webrtc must be an object")
    try:
        peer = WebRtcPeer(**body)
    except TypeError:
        raise WireError("webrtc must have ice_ufrag, ice_pwd, remote_ufrag, fingerprint") from None
    texts = (peer.ice_ufrag, peer.ice_pwd, peer.remote_ufrag, peer.fingerprint)
    if not all(isinstance(t, str) and 0 < len(t) <= 256 for t in texts):
        raise WireError("webrtc's credentials and fingerprint must be short non-empty strings")
    if peer.dtls_role not in _DTLS_ROLES:
        raise WireError(f"dtls_role must be one of {', '.join(_DTLS_ROLES)}")
    return peer


def _payload_type(pair: Any) -> tuple[int, int]:
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
        or not 0 <= pair[0] <= 0xFFFFFFFF
        or not 0 <= pair[1] <= 127
    ):
        raise WireError(f"a payload type must be [ssrc, 0..127], got {pair!r}")
    return int(pair[0]), int(pair[1])


def _receive_port(pair: Any) -> tuple[int, int]:
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
        or not 0 <= pair[0] <= 0xFFFFFFFF
        or not 0 < pair[1] < 65536
    ):
        raise WireError(f"a receive port must be [ssrc, port], got {pair!r}")
    return int(pair[0]), int(pair[1])


def to_json(msg: Message) -> dict[str, Any]:
    """A message as a JSON-ready dict (bytes as base64, addresses as 'ip:port')."""
    if isinstance(msg, Snapshot):
        return {
            "kind": msg.kind,
            "seq": msg.seq,
            "meetings": [to_json(m) for m in msg.meetings],
            "participants": [to_json(p) for p in msg.participants],
            "ended": list(msg.ended),
            "muted": list(msg.muted),
            "ejected": list(msg.ejected),
            "recording": list(msg.recording),
        }
    body: dict[str, Any] = {"kind": msg.kind, **asdict(msg)}
    if isinstance(msg, ParticipantJoined):
        body["uplink"], body["downlink"] = _b64(msg.uplink), _b64(msg.downlink)
        body["address"] = None if msg.address is None else str(Address(*msg.address))
        body["streams"] = [asdict(s) for s in msg.streams]
        body["receive_ports"] = [list(pair) for pair in msg.receive_ports]
        if msg.payload_types is not None:
            body["payload_types"] = [list(pair) for pair in msg.payload_types]
    return body


def from_json(body: Any) -> Message:
    """Validate and build a message from a decoded JSON object; WireError if it is bad."""
    if not isinstance(body, dict) or body.get("kind") not in _KINDS:
        raise WireError(
            f"unknown message kind {body.get('kind') if isinstance(body, dict) else body!r}"
        )
    cls = _KINDS[body["kind"]]
    try:
        if cls is Snapshot:
            meetings = tuple(
                _check(from_json({"kind": "meeting_opened", **m}), MeetingOpened)
                for m in body.get("meetings", [])
            )
            participants = tuple(
                _check(from_json({"kind": "participant_joined", **p}), ParticipantJoined)
                for p in body.get("participants", [])
            )
            return Snapshot(
                int(body.get("seq", 0)),
                meetings,
                participants,
                tuple(int(m) for m in body.get("ended", [])),
                tuple(int(p) for p in body.get("muted", [])),
                tuple(int(p) for p in body.get("ejected", [])),
                tuple(int(m) for m in body.get("recording", [])),
            )
        args = {f.name: body[f.name] for f in fields(cls) if f.name in body}
        if cls is ParticipantJoined:
            args["uplink"] = _unb64(args.get("uplink", ""), "uplink")
            args["downlink"] = _unb64(args.get("downlink", ""), "downlink")
            args["streams"] = tuple(
                Stream(**s) if isinstance(s, dict) else Stream(int(s))
                for s in body.get("streams") or body.get("ssrcs") or []
            )
            address = body.get("address")
            args["address"] = parse_address(address) if address else None
            ports = body.get("receive_ports") or []
            if not isinstance(ports, list) or len(ports) > 16:
                raise WireError("receive_ports must be a list of at most 16 [ssrc, port] pairs")
            args["receive_ports"] = tuple(_receive_port(pair) for pair in ports)
            types = body.get("payload_types")
            if types is not None:
                if not isinstance(types, list) or len(types) > 16:
                    raise WireError("payload_types must be a list of at most 16 [ssrc, pt] pairs")
                args["payload_types"] = tuple(_payload_type(pair) for pair in types)
            if body.get("webrtc") is not None:
                args["webrtc"] = _webrtc_peer(body["webrtc"])
            worker = body.get("worker")
            if worker is not None and (
                isinstance(worker, bool) or not isinstance(worker, int) or not 0 <= worker < 4096
            ):
                raise WireError(f"worker must be a worker index, got {worker!r}")
            args["role"] = _member(Role, args.get("role"), "role")
            args["suite"] = _member(Suite, args.get("suite"), "suite")
            if not isinstance(args.get("address_confirmed", True), bool):
                raise WireError("address_confirmed must be true or false")
            hint = args.get("source_hint")
            if hint is not None:
                try:
                    args["source_hint"] = str(ipaddress.ip_address(hint))
                except ValueError:
                    raise WireError("source_hint must be an IP address") from None
        if cls is MeetingOpened:
            args["mode"] = _member(Mode, args.get("mode", Mode.MEETING), "mode")
        return cls(**args)  # type: ignore[no-any-return]
    except WireError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise WireError(f"bad {body['kind']} message: {exc}") from None


def _member(vocabulary: type[StrEnum], value: Any, what: str) -> Any:
    """`value` as a member of one of relay/vocabulary.py's enums; WireError otherwise."""
    try:
        return vocabulary(value)
    except ValueError:
        names = ", ".join(vocabulary)
        raise WireError(f"{what} must be one of {names}, got {value!r}") from None


def _check(msg: Message, cls: type[Any]) -> Any:
    if not isinstance(msg, cls):
        raise WireError(f"expected {cls.__name__}")
    return msg


def encode(msg: Message, topic: bytes = b"") -> list[bytes]:
    return [topic, WIRE_VERSION, json.dumps(to_json(msg), separators=(",", ":")).encode()]


def decode(frames: list[bytes]) -> Message:
    if len(frames) != 3:
        raise WireError(f"expected 3 frames, got {len(frames)}")
    if frames[1] != WIRE_VERSION:
        raise WireError(
            f"unsupported wire version {frames[1]!r}, this worker speaks {WIRE_VERSION!r}"
        )
    try:
        body = json.loads(frames[2])
    except ValueError:
        raise WireError("message body is not JSON") from None
    return from_json(body)


def load_snapshot(path: str | Path) -> Snapshot:
    """Read a routing table file (the JSON form of a Snapshot)."""
    try:
        body = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise WireError(f"{path}: not JSON: {exc}") from None
    body.setdefault("kind", "snapshot")
    return _check(from_json(body), Snapshot)  # type: ignore[no-any-return]


def save_snapshot(snapshot: Snapshot, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(snapshot), indent=1))


__all__ = [
    "ROLES",
    "MODES",
    "WireError",
    "Stream",
    "WebRtcPeer",
    "MeetingOpened",
    "MeetingEnded",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantEjected",
    "ParticipantMuted",
    "MeetingRecording",
    "Snapshot",
    "Update",
    "Message",
    "encode",
    "decode",
    "load_snapshot",
    "save_snapshot",
    "to_json",
    "from_json",
    "parse_address",
]
