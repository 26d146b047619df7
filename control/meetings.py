"""The meeting service: what the HTTP API calls (DESIGN.md, "HTTP API" and "Keys, joining,
addresses"). Sans-IO apart from the store and the `publish` callable: no HTTP, no sockets,
and no clock of its own (every call that needs the time takes `now`, so tests control it).
Every refusal is a `control.errors.ApiError` with its HTTP status; bad input never becomes
anything a server would answer with 500, and no refusal repeats the value it refuses (ids,
SSRCs, addresses, keys). Titles and names refuse control and invisible characters
(control/text.py).

Rules, and why:

- Credentials (DESIGN.md, "Keys, joining, addresses"). The operator token works on every
  meeting, a meeting's host key on that meeting only (`authorize`); anything else is 401.
  Meeting passwords are stored as Argon2id hashes (`control.auth`), a strong one is generated
  and returned once when none is given, and host keys are stored as SHA-256 digests.
- Secrets first (control/auth.py): a host key, a join token or a bearer token (256 random
  bits each) is checked before any throttle and a correct one is never refused for anyone's
  failures. A wrong one is counted for its client alone (`secret_throttle`, over the whole
  server): once it has 5 within 60 s its wrong ones are answered 429 instead of 401/403, with
  a back-off that doubles up to 300 s. Wrong secrets do not count against the meeting.
- Joining (`join`), in this order: unknown meeting 404; ended 409; locked 423 unless the
  joiner is the host with its host key (so the host can always get back in); then the
  credential:
  - `host` needs the host key (a stronger credential than any password; the password is then
    not checked);
  - a join token of an approved registration (control/registration.py; used once: the store
    clears its digest at the join, in one transaction, so two joins with one token cannot
    both succeed) admits without a password;
  - `panelist` in a webinar needs the panelist password: the attendee password never grants
    panelist or host (DESIGN.md, join);
  - everyone else gives the meeting password; while the meeting's registration is enabled the
    password alone no longer admits: only tokens do.
  A password join goes through, in this order, the client's own throttle (429 with
  `retry_after` once this client, IPv6 by its /64, has 5 wrong passwords for the meeting
  within 60 s: checked before any work, a success does not reset it), the meeting's proof of
  work while it is under attack (428 `proof_of_work_required` with a challenge: checked before
  the password, so every guess costs the guesser the proof; `auth.JoinPuzzles`), then the
  password (403 if wrong, counted for the client and for the meeting's proof of work).
  Refusals that check no secret (no password, registration required, no panelist password)
  are not counted: they tell a guesser nothing.
  Without `role` a webinar makes an attendee (receives only) and a meeting a panelist.
- A webinar's attendees all give the same password, and Argon2id costs ~45 ms of CPU per
  check: thousands joining at once would queue for minutes. A password that verified once is
  remembered (`auth.VerifiedPasswords`: a keyed hash, in memory only) and later joins with it
  skip Argon2; a password that does not match the remembered one still goes through Argon2,
  so guessing gains nothing.
- A participant may bring the key it sends with (`uplink`, SDES style: each side of an offer
  picks its own sending key, and rtpengine, say, offers its own); the key it receives with
  is always generated here.
- Each participant gets fresh SRTP master keys per direction (`control.keys`), sealed with
  `KeyBox` (AES-GCM, associated data = participant id, so a sealed key copied onto another
  participant's row does not open) before they reach the store: the store never holds a key
  in clear. They leave the service only in the join answer, the promotion answer and the
  routing updates to the workers; never in exceptions, logs or reprs.
- Homing (`_home`): a participant is homed on one worker, which alone receives from it and
  sends to it (worker i listens on media_port + 2i, DESIGN.md "Command line"); the workers
  pass a meeting's packets among themselves (DESIGN.md, "fan-out across workers"). The first
  SMALL_MEETING members share the meeting's worker, (wire id - 1) mod W, which spreads meetings
  over the workers; later ones go to the worker with the fewest of the meeting's members, so a
  webinar's fan-out runs W-way parallel.
- Changes of membership (join, end, delete) of one meeting hold that meeting's lock between
  their checks and their writes, so a join racing the end of its meeting, or two joins
  claiming one SSRC, cannot both succeed.
- Wire ids: the routing table uses unsigned 32-bit ids; the store assigns them (`wire_id`,
  never reused) and every update carries them.
- Promotion of an attendee to a role that may send issues new keys (the keys an attendee held
  never become send keys): ParticipantLeft, then ParticipantJoined under the same wire id.
  Expelling marks the participant expelled and gone: that participant id never comes back;
  the person may join again as a new participant unless the host locks the meeting.
- Restart (DESIGN.md, "Supervisor"): everything a worker needs is in the store, so
  `routing_snapshot_state()` rebuilds the routing state a restarted control plane serves.
- Usage: the features a meeting used are billed even if switched off again before the end.
  Switching locking or recording on adds "locked" or "recording" to the meeting's stored
  features (in the same store transaction as the switch), so a restart of the control plane
  in between forgets nothing; `end_meeting` writes them, with "webinar" for a webinar, into
  the usage record.

Not here (yet): the per-meeting packet and byte totals come in through `end_meeting`'s
`totals`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import logging
import math
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control import auth, ffmpeg
from control.auth import FailureThrottle, JoinPuzzles
from control.errors import (
    ApiError,
    Conflict,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    Unauthorized,
)
from control.keys import new_master_key
from control.limits import JoinLimits
from control.lookup import find_meeting, find_open_meeting
from control.registration import registration_enabled
from control.roster import Roster
from control.routing import RoutingState
from control.sdp import check_streams, listener_sdp, sender_sdp
from control.store.base import (
    InvalidValue,
    MeetingRow,
    ParticipantRow,
    Store,
    UsageRecord,
    new_id,
)
from control.text import HIDDEN_MESSAGE, has_hidden_characters
from relay import wire
from relay.srtp import SUITES, parse_sdes_key

__all__ = ["DEFAULT_SUITE", "Created", "KeyBox", "MeetingService", "usage_figures"]

log = logging.getLogger("control.meetings")

DEFAULT_SUITE = "AES_CM_128_HMAC_SHA1_80"
TITLE_MAX = 200
NAME_MAX = 100
MAX_SSRCS = 8
SMALL_MEETING = 8  # members: up to this many share one worker
MODES = ("meeting", "webinar")
ROLES = ("host", "panelist", "attendee")

Publish = Callable[[wire.Update], Awaitable[int]]


# --- sealing keys for storage -----------------------------------------------------------------


class KeyBox:
    """Seals SRTP master keys for the store with AES-256-GCM under a 32-byte box key.

    Sealed form: 12-byte random nonce || ciphertext and tag; the associated data is the
    participant id, so a sealed key only opens for the participant it was made for."""

    NONCE_BYTES = 12

    def __init__(self, box_key: bytes) -> None:
        if not isinstance(box_key, bytes | bytearray) or len(box_key) != 32:
            raise ValueError("the key box needs a 32-byte key")
        self._aead = AESGCM(bytes(box_key))

    def __repr__(self) -> str:
        return "KeyBox(<sealed>)"

    def seal(self, key: bytes, participant_id: str) -> bytes:
        nonce = os.urandom(self.NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, participant_id.encode())

    def unseal(self, sealed: bytes, participant_id: str) -> bytes:
        """The key; ValueError if `sealed` was not made by this box for this participant."""
        nonce, body = sealed[: self.NONCE_BYTES], sealed[self.NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, participant_id.encode())
        except (InvalidTag, ValueError):
            raise ValueError("a sealed key does not open with this key box") from None


# --- helpers ----------------------------------------------------------------------------------


def _text(name: str, value: object, maximum: int) -> str:
    """A title or a name: a string people see, so without control or invisible characters
    (control/text.py)."""
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if not value.strip():
        raise Invalid(f"{name} must not be empty")
    if len(value) > maximum:
        raise Invalid(f"{name} must be at most {maximum} characters")
    if has_hidden_characters(value):
        raise Invalid(f"{name} {HIDDEN_MESSAGE}")
    return value


def _flag(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise Invalid(f"{name} must be true or false")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _streams(ssrcs: object, streams: object) -> list[wire.Stream]:
    """What a participant declares it will send, validated (DESIGN.md, join: `ssrcs` or
    `streams`, at most 8, distinct 32-bit SSRCs, kind/pt/codec as the SDP takes them)."""
    if ssrcs is not None and streams is not None:
        raise Invalid("give ssrcs or streams, not both")
    items: list[wire.Stream] = []
    if ssrcs is not None:
        if not isinstance(ssrcs, list):
            raise Invalid("ssrcs must be a list of integers")
        for ssrc in ssrcs:
            if isinstance(ssrc, bool) or not isinstance(ssrc, int):
                raise Invalid("ssrcs must be a list of integers")
            items.append(wire.Stream(ssrc))
    elif streams is not None:
        if not isinstance(streams, list):
            raise Invalid("streams must be a list of objects")
        for index, item in enumerate(streams):
            if isinstance(item, wire.Stream):
                items.append(item)
                continue
            if not isinstance(item, Mapping) or "ssrc" not in item:
                raise Invalid(f"stream {index} must be an object with at least an ssrc")
            extra = set(item) - {"ssrc", "kind", "pt", "codec"}
            if extra:
                raise Invalid(
                    f"stream {index} has unknown fields: a stream has ssrc, kind, pt, codec"
                )
            items.append(wire.Stream(**dict(item)))
    if len(items) > MAX_SSRCS:
        raise Invalid(f"at most {MAX_SSRCS} streams per participant")
    try:
        return check_streams(items)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _streams_json(streams: Sequence[wire.Stream]) -> str:
    return json.dumps(
        [{"ssrc": s.ssrc, "kind": s.kind, "pt": s.pt, "codec": s.codec} for s in streams]
    )


def _load_streams(text: str) -> tuple[wire.Stream, ...]:
    return tuple(wire.Stream(**item) for item in json.loads(text))


def _own_key(suite: str, value: object) -> bytes | None:
    """A key the participant chose for what it sends (SDES: each side picks its own sending
    key, so a client that offers one keeps it), checked against the meeting's suite."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise Invalid("uplink must be the base64 of master key || salt")
    try:
        key = parse_sdes_key(suite, value)
    except ValueError as exc:  # relay's message may quote the value: say the rule instead
        raise Invalid(_uplink_rule(suite, str(exc))) from None
    if len(set(key)) < 4:
        raise Invalid("uplink: that is not a random key")
    return key


def _uplink_rule(suite: str, refusal: str) -> str:
    """What is wrong with an uplink key, from relay.srtp's refusal, in words that do not
    repeat the key or its parameters."""
    if "MKI" in refusal:
        return "uplink: MKI is not supported; give 'inline:<base64>', at most a lifetime after |"
    if "lifetime" in refusal:
        return "uplink: a key lifetime must be '2^N' or a number of packets, at least 2^31"
    if "base64" in refusal:
        return "uplink must be the base64 of master key || salt"
    key_len, salt_len, _ = SUITES[suite]
    return (
        f"uplink: {suite} needs {key_len + salt_len} bytes of key material "
        f"({key_len}-byte key || {salt_len}-byte salt)"
    )


RECEIVE_PORT_MIN = 1024  # below: system services, never a listener's media port


def _receive_at(value: object) -> tuple[str, int] | None:
    """Where a listen-only client wants media: one unicast host and an unprivileged port.
    Multicast, broadcast, unspecified, link-local (169.254/16: cloud metadata services live
    there) and reserved addresses would turn the relay against networks, not send to a
    listener (docs/SECURITY.md, "Reflection")."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise Invalid("receive_at must be an 'ip:port' string")
    try:
        host, port = wire.parse_address(value)
    except wire.WireError:  # relay's message quotes the value: give the rule instead
        raise Invalid(
            "receive_at must be 'ip:port', as in 192.0.2.1:5004 or [2001:db8::1]:5004"
        ) from None
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    reserved = ip.is_reserved and not ip.is_loopback  # ::1 lies in IPv6's reserved ::/8
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or reserved:
        raise Invalid(
            "receive_at must be the unicast address of the listener: not multicast, "
            "broadcast, unspecified, link-local or reserved"
        )
    if port < RECEIVE_PORT_MIN:
        raise Invalid(f"receive_at's port must be {RECEIVE_PORT_MIN}..65535")
    return host, port


def _same_host(client_address: str, host: str) -> bool:
    """Whether the join's caller is at `host` (IPv4-mapped IPv6 and IPv4 alike): then the
    address it gives for media is its own, and it asked for what goes there."""
    try:
        a, b = ipaddress.ip_address(client_address), ipaddress.ip_address(host)
    except ValueError:
        return False
    a = a.ipv4_mapped or a if isinstance(a, ipaddress.IPv6Address) else a
    b = b.ipv4_mapped or b if isinstance(b, ipaddress.IPv6Address) else b
    return a == b


def _ip_or_none(client_address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(client_address))
    except ValueError:
        return None


def _described(
    meeting: MeetingRow, row: ParticipantRow, senders: Sequence[ParticipantRow]
) -> list[wire.Stream]:
    """The meeting's streams as `row`'s join answer described them: those of the senders
    present when it joined (stored before it, not gone by then) that may send, in the order
    they joined. The same from the join itself and, later, from the store. (`senders` may
    hold everyone: those that declared no streams add none.)"""
    before = [
        p
        for p in senders
        if p.wire_id < row.wire_id and (p.left_at is None or p.left_at > row.joined_at)
    ]
    before.sort(key=lambda p: (p.joined_at, p.id))
    return [s for p in before if _may_send(meeting.mode, p.role) for s in _load_streams(p.streams)]


def _joined(
    meeting: MeetingRow,
    row: ParticipantRow,
    uplink: bytes,
    downlink: bytes,
    role: str | None = None,
    described: Sequence[wire.Stream] = (),
    *,
    address_confirmed: bool = False,
    source_hint: str | None = None,
) -> wire.ParticipantJoined:
    """The routing update for a participant as stored (its role may be changing). A receiver
    that gave receive_at gets stream k of its SDP (`described`) on port + 2k. Its address is
    confirmed only by a join from that address: a worker remembers a confirmation in its
    ledger (relay/ledger.py), so an update or snapshot without it takes nothing back."""
    address = None if row.receive_at is None else wire.parse_address(row.receive_at)
    ports: tuple[tuple[int, int], ...] = ()
    if address is not None:
        ports = tuple((s.ssrc, address[1] + 2 * k) for k, s in enumerate(described))
    return wire.ParticipantJoined(
        row.wire_id,
        meeting.wire_id,
        role or row.role,
        meeting.suite,
        uplink,
        downlink,
        _load_streams(row.streams),
        address,
        row.worker,
        ports,
        address_confirmed,
        source_hint,
    )


def _may_send(mode: str, role: str) -> bool:
    return role != "attendee" or mode == "meeting"


@dataclass(frozen=True)
class Created:
    """What `create_meeting` answers. The host key and a generated password are shown once."""

    meeting: MeetingRow
    host_key: str
    password: str | None

    def __repr__(self) -> str:
        return f"Created(meeting={self.meeting!r}, host_key=<secret>, password=<secret>)"


# --- the service ------------------------------------------------------------------------------


class MeetingService:
    """Meetings, joining, host controls and usage records over a `Store`; routing updates go
    out through `publish` (normally `RoutingServer.publish`)."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        *,
        relay_host: str,
        media_port: int,
        workers: int,
        throttle: FailureThrottle | None = None,
        secret_throttle: FailureThrottle | None = None,
        puzzles: JoinPuzzles | None = None,
        key_box: KeyBox,
        limits: JoinLimits | None = None,
    ) -> None:
        ipaddress.ip_address(relay_host)  # ValueError at start-up, not a 500 at join
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not 1 <= media_port <= 65535 - 2 * workers + 1:
            raise ValueError(f"media port {media_port} leaves no room for {workers} workers")
        self.store = store
        self.publish = publish
        self.relay_host = relay_host
        self.media_port = media_port
        self.workers = workers
        self.throttle = throttle or FailureThrottle()  # wrong passwords, per meeting and client
        self.secret_throttle = secret_throttle or FailureThrottle(
            refusal="too many wrong keys or tokens from your address"
        )
        self.puzzles = puzzles or JoinPuzzles()
        self.limits = limits or JoinLimits()
        self.key_box = key_box
        self._verified = auth.VerifiedPasswords()
        # What joins need of each open meeting's participants, kept as they come and go
        # (control/roster.py): a join never reads everyone.
        self._rosters: dict[str, Roster] = {}
        # One lock per meeting, held while a join, an end or a deletion changes who is in it,
        # so that their reads and writes do not interleave at an await.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, meeting_id: str) -> asyncio.Lock:
        lock = self._locks.get(meeting_id)
        if lock is None:
            lock = self._locks[meeting_id] = asyncio.Lock()
        return lock

    # -- meetings --

    async def _meeting(self, meeting_id: object) -> MeetingRow:
        return await find_meeting(self.store, meeting_id)

    async def _open_meeting(self, meeting_id: object) -> MeetingRow:
        return await find_open_meeting(self.store, meeting_id)

    async def create_meeting(
        self,
        title: object,
        mode: object = "meeting",
        password: object = None,
        panelist_password: object = None,
        suite: object = None,
        *,
        now: float,
    ) -> Created:
        title = _text("title", title, TITLE_MAX)
        if mode not in MODES:
            raise Invalid(f"mode must be one of {', '.join(MODES)}")
        suite = DEFAULT_SUITE if suite is None else suite
        if not isinstance(suite, str) or suite not in SUITES:
            raise Invalid(f"suite must be one of {', '.join(SUITES)}")
        generated = None
        if password is None:
            password = generated = auth.generate_password()
        if not isinstance(password, str):
            raise Invalid("password must be a string")
        if panelist_password is not None and not isinstance(panelist_password, str):
            raise Invalid("panelist_password must be a string")
        password_hash = await asyncio.to_thread(auth.hash_password, password)
        panelist_hash = (
            None
            if panelist_password is None
            else await asyncio.to_thread(auth.hash_password, panelist_password)
        )
        host_key = auth.new_secret()
        meeting = await self.store.create_meeting(
            title=title,
            mode=str(mode),
            suite=suite,
            password_hash=password_hash,
            panelist_password_hash=panelist_hash,
            host_key_digest=auth.secret_digest(host_key),
            created_at=now,
        )
        await self.publish(wire.MeetingOpened(meeting.wire_id, meeting.mode))
        log.info("meeting %s opened (%s)", meeting.id, meeting.mode)
        return Created(meeting, host_key, generated)

    async def list_meetings(
        self, *, limit: int = 50, offset: int = 0, state: str | None = None
    ) -> list[MeetingRow]:
        if state is not None and state not in ("open", "ended"):
            raise Invalid("state must be open or ended")
        numbers = (limit, offset)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers) or not (
            0 <= limit <= 1000 and 0 <= offset
        ):
            raise Invalid("limit must be 0..1000 and offset at least 0")
        return await self.store.list_meetings(limit=limit, offset=offset, state=state)

    async def get_meeting(self, meeting_id: object) -> MeetingRow:
        return await self._meeting(meeting_id)

    async def update_meeting(self, meeting_id: object, *, title: object) -> MeetingRow:
        meeting = await self._open_meeting(meeting_id)
        row = await self.store.update_meeting(meeting.id, title=_text("title", title, TITLE_MAX))
        if row is None:
            raise NotFound("no such meeting")
        return row

    async def set_controls(
        self, meeting_id: object, *, locked: object = None, recording: object = None
    ) -> dict[str, bool]:
        lock, record = _flag("locked", locked), _flag("recording", recording)
        meeting = await self._open_meeting(meeting_id)
        # A feature switched on is remembered in the store, with the switch: billed at the end
        # even if switched off again, and even across a restart.
        used = [name for name, on in (("locked", lock), ("recording", record)) if on]
        row = await self.store.update_meeting(
            meeting.id, locked=lock, recording=record, add_features=used
        )
        if row is None:
            raise NotFound("no such meeting")
        if row.recording != meeting.recording:
            # The workers start (or stop) writing its media: nothing is kept unless asked.
            await self.publish(wire.MeetingRecording(row.wire_id, row.recording))
            log.info("meeting %s recording %s", row.id, "on" if row.recording else "off")
        return {"locked": row.locked, "recording": row.recording}

    async def end_meeting(
        self,
        meeting_id: object,
        *,
        now: float,
        totals: Mapping[str, int] | None = None,
    ) -> UsageRecord:
        """End the meeting at once (MeetingEnded reaches the workers, which stop its media),
        mark everyone present as gone, and append its usage record."""
        meeting = await self._open_meeting(meeting_id)
        async with self._lock(meeting.id):
            return await self._end(meeting.id, now, totals)

    async def _end(
        self, meeting_id: str, now: float, totals: Mapping[str, int] | None
    ) -> UsageRecord:
        meeting = await self._open_meeting(meeting_id)  # again: it may have ended meanwhile
        # The row as the end left it: features a set_controls added since the read above count.
        ended = await self.store.update_meeting(meeting.id, state="ended", ended_at=now)
        if ended is not None:
            meeting = ended
        await self.publish(wire.MeetingEnded(meeting.wire_id))
        self._rosters.pop(meeting.id, None)  # nobody joins an ended meeting
        participants = await self.store.list_participants(meeting.id)
        for p in participants:
            if p.left_at is None:
                self._gone(p)
                await self.store.update_participant(p.id, left_at=now)
        features = set(meeting.features)
        features |= {
            f for f, on in (("locked", meeting.locked), ("recording", meeting.recording)) if on
        }
        if meeting.mode == "webinar":
            features.add("webinar")
        counts = dict(totals or {})
        unknown = set(counts) - {"packets_in", "packets_out", "bytes_in", "bytes_out"}
        if unknown:
            raise ValueError(f"unknown totals: {sorted(unknown)}")
        total, peak, minutes = usage_figures(
            [(p.joined_at, p.left_at) for p in participants], meeting.created_at, now
        )
        record = await self.store.append_usage(
            meeting_id=meeting.id,
            started_at=meeting.created_at,
            ended_at=max(now, meeting.created_at),
            total_participants=total,
            peak_participants=peak,
            participant_minutes=minutes,
            features=sorted(features),
            **counts,
        )
        log.info("meeting %s ended", meeting.id)
        return record

    async def delete_meeting(self, meeting_id: object, *, now: float) -> None:
        """Delete a meeting (ending it first if it is open; its usage record stays)."""
        meeting = await self._meeting(meeting_id)
        async with self._lock(meeting.id):
            meeting = await self._meeting(meeting.id)
            if meeting.state == "open":
                await self._end(meeting.id, now, None)
            await self.store.delete_meeting(meeting.id)

    async def list_usage(self, meeting_id: str | None = None) -> list[UsageRecord]:
        return await self.store.list_usage(meeting_id=meeting_id)

    # -- credentials --

    async def authorize(
        self,
        token: object,
        meeting_id: str | None,
        operator_token_digest: str,
        *,
        client_address: str | None = None,
        now: float | None = None,
    ) -> str:
        """'operator' for the operator token (every meeting), 'host' for the host key of
        `meeting_id`; Unauthorized otherwise. A correct token is never refused; a wrong one is
        counted for `client_address` (when given, with `now`), and answered 429 once that
        client has sent too many."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("missing token: send Authorization: Bearer <token>")
        if auth.secret_matches(token, operator_token_digest):
            return "operator"
        if meeting_id is not None and isinstance(meeting_id, str) and len(meeting_id) <= 64:
            meeting = await self.store.get_meeting(meeting_id)
            if meeting is not None and auth.secret_matches(token, meeting.host_key_digest):
                return "host"
            refusal = Unauthorized(
                "the token is neither the operator token nor this meeting's host key"
            )
        else:
            refusal = Unauthorized(
                "the token is not the operator token (a host key works only on its own meeting)"
            )
        if client_address is None or now is None:
            raise refusal
        self.refuse_secret(client_address, now, refusal)

    def refuse_secret(self, client_address: str, now: float, refusal: ApiError) -> NoReturn:
        """Raise `refusal` for a wrong host key, join token or bearer token, counted for this
        client alone; Throttled (429) instead once the client was already locked out by its
        own wrong secrets (each further one doubles its back-off)."""
        client = auth.client_key(client_address)
        locked = self.secret_throttle.wait("", client, now) > 0
        self.secret_throttle.failure("", client, now)
        if locked:
            self.secret_throttle.check("", client, now)
        raise refusal

    def join_throttle(self, meeting_id: str, now: float) -> dict[str, bool | float | int]:
        """What GET /v1/meetings/ID shows as `join_throttle` (README.md, "Proof of work")."""
        return self.puzzles.status(meeting_id, now)

    # -- joining --

    async def join(
        self,
        meeting_id: object,
        *,
        password: object,
        name: object,
        client_address: str,
        now: float,
        role: object = None,
        host_key: object = None,
        ssrcs: object = None,
        streams: object = None,
        receive_at: object = None,
        uplink: object = None,
        registration_token: object = None,
        operator: bool = False,
        proof_of_work: object = None,
    ) -> dict[str, Any]:
        """Admit a participant (the rules are at the top of this module); its join answer.
        `client_address` is the caller's IP: the throttles count it, and a `receive_at` at
        that IP is its own (consent). `operator`: the caller showed the operator token (a
        service joining for its users): the per-client join rate does not count it, and the
        addresses it gives are taken as consented, as the operator's own."""
        meeting = await self._open_meeting(meeting_id)
        if registration_token is not None and (
            not isinstance(registration_token, str) or not 1 <= len(registration_token) <= 128
        ):
            raise Invalid("registration_token must be the token your registration gave")
        if role is not None and role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        own_uplink = _own_key(meeting.suite, uplink)
        role = role or ("attendee" if meeting.mode == "webinar" else "panelist")
        assert isinstance(role, str)
        name = _text("name", name, NAME_MAX)
        declared = _streams(ssrcs, streams)
        address = _receive_at(receive_at)
        if host_key is not None and not isinstance(host_key, str):
            raise Invalid("host_key must be a string")
        if password is not None and not isinstance(password, str):
            raise Invalid("password must be a string")
        is_host = (
            role == "host"
            and isinstance(host_key, str)
            and auth.secret_matches(host_key, meeting.host_key_digest)
        )
        if meeting.locked and not is_host:
            raise Locked("this meeting is locked: nobody new may join")
        token_digest = await self._check_credential(
            meeting,
            role,
            is_host,
            password,
            client_address,
            now,
            registration_token,
            proof_of_work,
            host_key_given=host_key is not None,
            operator=operator,
        )

        if declared and not _may_send(meeting.mode, role):
            raise Forbidden("attendees of a webinar receive only: they may not declare streams")
        if address is not None:
            self.limits.check_listener(address[0])
        if not operator:
            self.limits.take_join(client_address, now)
        async with self._lock(meeting.id):
            # Again, under the meeting's lock: it may have ended, gone or been locked while the
            # password was checked, and no other join may take these SSRCs meanwhile.
            meeting = await self._open_meeting(meeting.id)
            if meeting.locked and not is_host:
                raise Locked("this meeting is locked: nobody new may join")
            roster = await self._roster(meeting)
            self.limits.check_room(roster.present)
            if address is not None:
                self.limits.check_listener(address[0])  # again: joins may have raced
            if roster.taken_ssrcs() & {s.ssrc for s in declared}:
                raise Conflict("an ssrc given is already used by another participant")
            worker = self._home(meeting, roster)
            meeting_streams = [
                s
                for p in roster.present_senders()
                if _may_send(meeting.mode, p.role)
                for s in _load_streams(p.streams)
            ]
            participant_id = new_id()
            uplink = own_uplink or new_master_key(meeting.suite)
            downlink = new_master_key(meeting.suite)
            receive_at = None if address is None else f"{address[0]}:{address[1]}"
            # The answer's SDP can still refuse the input (a receive_at port too high for the
            # streams): find out before anything is stored or published.
            self._sdp(meeting, worker, receive_at, downlink, declared, meeting_streams, 1)
            used = None
            if token_digest is not None:
                # One token, one join: used (cleared) in one store transaction, so of two
                # joins with it only one gets here.
                used = await self.store.use_registration_token(
                    meeting_id=meeting.id,
                    token_digest=token_digest,
                    participant_id=participant_id,
                    used_at=now,
                )
                if used is None:
                    raise Forbidden("this registration token was used already")
            try:
                row = await self.store.add_participant(
                    meeting_id=meeting.id,
                    name=name,
                    role=role,
                    uplink_sealed=self.key_box.seal(uplink, participant_id),
                    downlink_sealed=self.key_box.seal(downlink, participant_id),
                    worker=worker,
                    streams=_streams_json(declared),
                    receive_at=receive_at,
                    joined_at=now,
                    participant_id=participant_id,
                )
            except BaseException:
                if used is not None:  # not joined after all: the token stays usable
                    with contextlib.suppress(Exception):
                        await self.store.update_registration(used.id, token_digest=token_digest)
                raise
            roster.joined(row)
            if address is not None:
                self.limits.add_listener(address[0])
            await self.publish(
                _joined(
                    meeting,
                    row,
                    uplink,
                    downlink,
                    None,
                    meeting_streams,
                    # Consent: the caller is at that address, or is the operator's own
                    # service vouching for its listeners (docs/SECURITY.md, "Reflection").
                    address_confirmed=address is not None
                    and (operator or _same_host(client_address, address[0])),
                    source_hint=_ip_or_none(client_address),
                )
            )
        log.info("participant %s joined meeting %s as %s", row.id, meeting.id, role)
        return self._answer(meeting, row, uplink, downlink, declared, meeting_streams)

    async def _check_credential(
        self,
        meeting: MeetingRow,
        role: str,
        is_host: bool,
        password: str | None,
        client_address: str,
        now: float,
        registration_token: str | None = None,
        proof_of_work: object = None,
        host_key_given: bool = False,
        operator: bool = False,
    ) -> str | None:
        """Check the joiner's credential, secrets first (see the module's docstring); the
        digest of the registration token it joins with, to be used at the join, or None.
        `operator`: the caller holds the operator token, which can do anything a guess
        could win: its password checks are neither throttled nor asked for a proof."""
        if role == "host":
            if not is_host:
                refusal = Forbidden("joining as host needs this meeting's host key")
                if not host_key_given:
                    raise refusal
                self.refuse_secret(client_address, now, refusal)
            return None
        if role == "panelist" and meeting.mode == "webinar":
            stored = meeting.panelist_password_hash
            if stored is None:
                raise Forbidden(
                    "this webinar has no panelist password: join as attendee and ask the host "
                    "to promote you"
                )
            what = "panelist password"
        else:
            if registration_token is not None:
                return await self._check_registration_token(
                    meeting, registration_token, client_address, now
                )
            if registration_enabled(meeting):
                raise Forbidden(
                    "this meeting needs registration: join with the registration token your "
                    "registration gave (the meeting password alone does not admit)"
                )
            stored, what = meeting.password_hash, "meeting password"
        if password is None:
            raise Forbidden(f"the {what} is required")
        await self._check_password(
            meeting, stored, what, password, client_address, now, proof_of_work, operator
        )
        return None

    async def _check_password(
        self,
        meeting: MeetingRow,
        stored: str,
        what: str,
        password: str,
        client_address: str,
        now: float,
        proof_of_work: object,
        operator: bool = False,
    ) -> None:
        """The client's own throttle (429), then the meeting's proof of work while it is under
        attack (428), then the password (403 if wrong, counted for both). The check is "in
        flight" for both from the start, so guesses sent at once cannot all slip through
        before the first failure is counted. (Even a password known to be right takes that
        path: answering it first would tell a guesser right from wrong without the proof.)
        The operator's service, which could change the password, guesses nothing: its checks
        are not throttled."""
        if operator:
            if not (
                self._verified.matches(meeting.id, stored, password)
                or await asyncio.to_thread(auth.verify_password, password, stored)
            ):
                raise Forbidden(f"wrong {what}")
            self._verified.add(meeting.id, stored, password)
            return
        client = auth.client_key(client_address)
        self.throttle.begin(meeting.id, client, now)
        failed = False  # a refused proof, or a check that did not finish, counts nothing
        try:
            self.puzzles.begin(meeting.id, proof_of_work, now)
            try:
                failed = not (
                    self._verified.matches(meeting.id, stored, password)
                    or await asyncio.to_thread(auth.verify_password, password, stored)
                )
            finally:
                self.puzzles.end(meeting.id, now, failed)
        finally:
            self.throttle.end(meeting.id, client, now, failed)
        if failed:
            raise Forbidden(f"wrong {what}")
        self._verified.add(meeting.id, stored, password)

    async def _check_registration_token(
        self, meeting: MeetingRow, token: str, client_address: str, now: float
    ) -> str:
        """The token's digest if it belongs to an approved, not erased registration of this
        meeting and was not used; 403 otherwise (counted for this client alone)."""
        digest = auth.secret_digest(token)
        found = await self.store.get_registration_by_token(meeting.id, digest)
        if found is None or found.token_digest is None:
            found = None
        if found is None or not auth.secret_matches(token, str(found.token_digest)):
            self.refuse_secret(
                client_address,
                now,
                Forbidden(
                    "this registration token does not admit: unknown, not approved (yet), or "
                    "used already"
                ),
            )
        return digest

    async def _roster(self, meeting: MeetingRow) -> Roster:
        """The meeting's roster: kept, or built from the store the first time (after the
        control plane started, routing_snapshot_state built every open meeting's)."""
        roster = self._rosters.get(meeting.id)
        if roster is None:
            everyone = await self.store.list_participants(meeting.id)
            roster = self._rosters.setdefault(meeting.id, Roster.of(self.workers, everyone))
        return roster

    def _home(self, meeting: MeetingRow, roster: Roster) -> int:
        """The worker a newcomer is homed on. Each member costs its worker the same output
        (a copy of every stream of the meeting), so a meeting's members are spread evenly,
        each to the worker with the fewest (ties: the lowest index); a small meeting stays on
        one worker, where passing its packets between workers would cost more than it
        spreads."""
        pinned = (meeting.wire_id - 1) % self.workers
        if roster.present < SMALL_MEETING:
            return pinned
        return roster.per_worker.index(min(roster.per_worker))

    def _sdp(
        self,
        meeting: MeetingRow,
        worker: int,
        receive_at: str | None,
        downlink: bytes,
        declared: Sequence[wire.Stream],
        meeting_streams: list[wire.Stream],
        session_id: int,
    ) -> str:
        """The participant's SDP (DESIGN.md, join); Invalid if its input cannot make one."""
        try:
            if receive_at is not None:
                return listener_sdp(
                    wire.parse_address(receive_at),
                    meeting_streams,
                    meeting.suite,
                    downlink,
                    session_id,
                )
            port = self.media_port + 2 * worker
            return sender_sdp(
                self.relay_host, port, list(declared), meeting.suite, downlink, session_id
            )
        except ValueError as exc:  # e.g. a receive_at port with no room for every stream
            raise Invalid(str(exc)) from None

    def _answer(
        self,
        meeting: MeetingRow,
        row: ParticipantRow,
        uplink: bytes,
        downlink: bytes,
        declared: Sequence[wire.Stream],
        meeting_streams: list[wire.Stream],
    ) -> dict[str, Any]:
        sdp = self._sdp(
            meeting, row.worker, row.receive_at, downlink, declared, meeting_streams, row.wire_id
        )
        port = self.media_port + 2 * row.worker
        return {
            "participant_id": row.id,
            "role": row.role,
            "relay": {"host": self.relay_host, "port": port},
            "srtp": {"suite": meeting.suite, "uplink": _b64(uplink), "downlink": _b64(downlink)},
            "sdp": sdp,
            "recording": meeting.recording,  # participants are told when they are recorded
            "ffmpeg": ffmpeg.arguments(
                meeting.suite,
                uplink,
                self.relay_host,
                port,
                declared,
                listener=row.receive_at is not None,
            ),
        }

    # -- participants --

    async def list_participants(
        self, meeting_id: object, *, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of the meeting's participants, in the order they joined (all of them
        without `limit`), each with its `wire_id` (the API turns it into media counters)."""
        meeting = await self._meeting(meeting_id)
        return [
            {
                "id": p.id,
                "name": p.name,
                "role": p.role,
                "worker": p.worker,
                "muted": p.muted,
                "expelled": p.expelled,
                "joined_at": p.joined_at,
                "left_at": p.left_at,
                "streams": json.loads(p.streams),
                "recording": meeting.recording and p.left_at is None,  # being recorded now
                "wire_id": p.wire_id,
            }
            for p in await self.store.list_participants(meeting.id, limit=limit, offset=offset)
        ]

    async def _present(self, meeting: MeetingRow, participant_id: object) -> ParticipantRow:
        if not isinstance(participant_id, str) or not participant_id or len(participant_id) > 64:
            raise NotFound("no such participant")
        row = await self.store.get_participant(participant_id, meeting_id=meeting.id)
        if row is None:
            raise NotFound("no such participant in this meeting")
        if row.expelled:
            raise Conflict("this participant was expelled")
        if row.left_at is not None:
            raise Conflict("this participant has left")
        return row

    async def update_participant(
        self,
        meeting_id: object,
        participant_id: object,
        *,
        now: float,
        muted: object = None,
        role: object = None,
        expel: object = None,
    ) -> dict[str, Any]:
        """Mute or unmute, change the role, or expel. A role change that lets an attendee
        send issues new keys, returned under "srtp" and "sdp" as in a join answer."""
        mute, out = _flag("muted", muted), _flag("expel", expel)
        if role is not None and role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}")
        meeting = await self._open_meeting(meeting_id)
        row = await self._present(meeting, participant_id)
        answer: dict[str, Any] = {}
        if out:
            roster = await self._roster(meeting)  # before the store changes: it counts them
            self._gone(row)
            row = await self._store_update(row.id, expelled=True, left_at=now)
            roster.left(row)
            await self.publish(wire.ParticipantEjected(row.wire_id))
            log.info("participant %s expelled from meeting %s", row.id, meeting.id)
            return {"id": row.id, "expelled": True}
        if role is not None and role != row.role:
            assert isinstance(role, str)
            answer.update(await self._change_role(meeting, row, role))
            row = await self._store_get(row.id)
        if mute is not None and mute != row.muted:
            row = await self._store_update(row.id, muted=mute)
            await self.publish(wire.ParticipantMuted(row.wire_id, mute))
        return {
            "id": row.id,
            "role": row.role,
            "muted": row.muted,
            "expelled": row.expelled,
            **answer,
        }

    async def _change_role(
        self, meeting: MeetingRow, row: ParticipantRow, role: str
    ) -> dict[str, Any]:
        declared = list(_load_streams(row.streams))
        if declared and not _may_send(meeting.mode, role):
            raise Conflict("a participant that declared streams cannot become an attendee")
        fresh = not _may_send(meeting.mode, row.role) and _may_send(meeting.mode, role)
        if fresh:
            uplink, downlink = new_master_key(meeting.suite), new_master_key(meeting.suite)
            await self._store_update(
                row.id,
                role=role,
                uplink_sealed=self.key_box.seal(uplink, row.id),
                downlink_sealed=self.key_box.seal(downlink, row.id),
            )
        else:
            uplink, downlink = self._keys(row)
            await self._store_update(row.id, role=role)
        roster = await self._roster(meeting)
        roster.changed(await self._store_get(row.id))
        # A listener keeps the streams (and ports) its join answer described; anyone else
        # gets the meeting's streams as they are now, as in a join answer.
        if row.receive_at is not None:
            meeting_streams = _described(meeting, row, roster.all_senders())
        else:
            meeting_streams = [
                s
                for p in roster.present_senders()
                if p.id != row.id and _may_send(meeting.mode, p.role)
                for s in _load_streams(p.streams)
            ]
        await self.publish(wire.ParticipantLeft(row.wire_id))
        await self.publish(_joined(meeting, row, uplink, downlink, role, meeting_streams))
        if row.muted:  # ParticipantLeft cleared the flag in the workers' table
            await self.publish(wire.ParticipantMuted(row.wire_id, True))
        if not fresh:
            return {}
        changed = await self._store_get(row.id)
        full = self._answer(meeting, changed, uplink, downlink, declared, meeting_streams)
        return {k: full[k] for k in ("srtp", "sdp", "relay", "ffmpeg")}

    async def leave(self, meeting_id: object, participant_id: object, *, now: float) -> None:
        """The participant is gone (hung up): ParticipantLeft, and its time is counted."""
        meeting = await self._open_meeting(meeting_id)
        row = await self._present(meeting, participant_id)
        roster = await self._roster(meeting)  # before the store changes: it counts them
        self._gone(row)
        roster.left(await self._store_update(row.id, left_at=now))
        await self.publish(wire.ParticipantLeft(row.wire_id))

    def _gone(self, row: ParticipantRow) -> None:
        """A participant stops being present: its receive_at no longer counts."""
        if row.left_at is None and row.receive_at is not None:
            self.limits.remove_listener(wire.parse_address(row.receive_at)[0])

    async def _store_get(self, participant_id: str) -> ParticipantRow:
        row = await self.store.get_participant(participant_id)
        if row is None:  # deleted under us, with its meeting
            raise NotFound("no such participant")
        return row

    async def _store_update(self, participant_id: str, **changes: Any) -> ParticipantRow:
        try:
            row = await self.store.update_participant(participant_id, **changes)
        except InvalidValue as exc:
            raise Invalid(str(exc)) from None
        if row is None:
            raise NotFound("no such participant")
        return row

    def _keys(self, row: ParticipantRow) -> tuple[bytes, bytes]:
        return (
            self.key_box.unseal(row.uplink_sealed, row.id),
            self.key_box.unseal(row.downlink_sealed, row.id),
        )

    # -- restart --

    async def routing_snapshot_state(self, seq: int | None = None) -> RoutingState:
        """The routing state rebuilt from the store: open meetings, their present (and
        expelled) participants with unsealed keys, the muted and ejected flags. `seq`
        defaults to the store's last routing update number."""
        state = RoutingState(await self.store.last_routing_seq() if seq is None else seq)
        self.limits.clear_listeners()  # counted again below, from the store
        offset = 0
        while True:
            page = await self.store.list_meetings(limit=500, offset=offset, state="open")
            for meeting in page:
                state.meetings[meeting.wire_id] = wire.MeetingOpened(meeting.wire_id, meeting.mode)
                if meeting.recording:
                    state.recording.add(meeting.wire_id)
                everyone = await self.store.list_participants(meeting.id)
                self._rosters[meeting.id] = Roster.of(self.workers, everyone)
                for p in everyone:
                    if p.left_at is not None and not p.expelled:
                        continue
                    if p.left_at is None and p.receive_at is not None:
                        self.limits.add_listener(wire.parse_address(p.receive_at)[0])
                    described = _described(meeting, p, everyone) if p.receive_at else []
                    state.participants[p.wire_id] = _joined(
                        meeting, p, *self._keys(p), None, described
                    )
                    if p.muted:
                        state.muted.add(p.wire_id)
                    if p.expelled:
                        state.ejected.add(p.wire_id)
            if len(page) < 500:
                return state
            offset += 500


def usage_figures(
    spans: Sequence[tuple[float, float | None]], start: float, end: float
) -> tuple[int, int, float]:
    """(total participants, peak present at once, participant-minutes) of joins and leaves
    (None: still present at `end`), each span clipped to [start, end]. A leave at the same
    instant as a join is counted first, so back-to-back participants do not overlap."""
    events: list[tuple[float, int]] = []
    minutes = 0.0
    for joined, left in spans:
        a = min(max(joined, start), end)
        b = min(max(end if left is None else left, a), end)
        minutes += (b - a) / 60.0
        if b > a:
            events += [(a, 1), (b, -1)]
    peak = present = 0
    for _, delta in sorted(events):
        present += delta
        peak = max(peak, present)
    if not math.isfinite(minutes):
        minutes = 0.0
    return len(spans), peak, minutes
