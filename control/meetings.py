"""The meeting service: meetings, joining, host controls and usage records, over a `Store`,
with routing updates out through `publish` (docs/ARCHITECTURE.md, "The path of a join").

Sans-IO apart from the store and `publish`: no HTTP, no sockets, and no clock of its own
(every call that needs the time takes `now`, so tests control it). It takes typed values that
the HTTP API's request models already checked (control/api/requests.py) and checks only what
needs the stored state. Every refusal is a `control.errors.ApiError` with its HTTP status, and
no refusal repeats the value it refuses.

Every host or operator action appends its audit entry here, with the change, once it has
succeeded (control/audit.py): `by` says who acted.

What the services share of the open meetings (their rosters and locks, homing participants
on workers, the restart path) is control/rooms.py's; participants after their join (the list,
the host's controls, leaving) are control/participants.py's.

- Wire ids: the routing table uses unsigned 32-bit ids; the store assigns them (`wire_id`,
  never reused) and every update carries them.
- Keys: each participant gets fresh SRTP master keys per direction (`control.keys`), sealed
  (control/keybox.py) before they reach the store; they leave the service only in the join
  answer, the promotion answer and the routing updates to the workers, never in exceptions,
  logs or reprs.
- Restart: everything a worker needs is in the store, so `routing_snapshot_state()` rebuilds
  the routing state a restarted control plane serves (control/rooms.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from control import auth
from control.admission import Admission, own_key
from control.answers import Actor, Controls, JoinAnswer, State
from control.audit import Audit
from control.errors import Conflict, Draining, Forbidden, Invalid, Locked, NotFound
from control.keybox import KeyBox
from control.keys import new_master_key
from control.limits import JoinLimits
from control.lookup import find_meeting, find_open_meeting
from control.media import Describer, may_send, routing_update, sending_streams
from control.nodes import GONE_AFTER_S, HEARTBEAT_S
from control.participants import ParticipantService
from control.placement import FRESH_S, choose_node
from control.proof_of_work import JoinPuzzles, Proof
from control.rooms import Publish, Rooms
from control.roster import Roster
from control.routing import RoutingState
from control.store import MeetingRow, Store, UsageRecord, new_id
from control.store.rows import NodeRow
from control.throttle import FailureThrottle
from control.usage import record_usage
from control.webrtc import OfferError, WebRtcJoin
from relay import wire
from relay.vocabulary import DEFAULT_SUITE, Address, Mode, Role, Suite

__all__ = ["Created", "KeyBox", "MeetingService"]

log = logging.getLogger("control.meetings")

TITLE_MAX = 200
NAME_MAX = 100
MAX_STREAMS = 8  # per participant

Totals = Callable[[list[int]], Mapping[str, int]]  # wire ids -> packets and bytes, summed


@dataclass(frozen=True)
class Created:
    """What `create_meeting` answers. The host key and a generated password are shown once."""

    meeting: MeetingRow
    host_key: str
    password: str | None

    def __repr__(self) -> str:
        return f"Created(meeting={self.meeting!r}, host_key=<secret>, password=<secret>)"


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


CACHED_UP_S = GONE_AFTER_S + HEARTBEAT_S


def apis_of(nodes: Iterable[NodeRow], home: str, now: float, fresh: float = FRESH_S) -> list[str]:
    """The APIs of the nodes that take newcomers (a heartbeat within `fresh`), the home
    node's first (a join answer's `apis`)."""
    open_ = [
        n
        for n in nodes
        if n.name == home
        or (now - n.heartbeat_at < fresh and not n.draining and n.load < n.capacity)
    ]
    return [n.api_url for n in sorted(open_, key=lambda n: (n.name != home, n.name))]


class MeetingService:
    """Meetings, joining, host controls and usage records (the rules: this module's
    docstring, control/admission.py for credentials)."""

    def __init__(
        self,
        store: Store,
        publish: Publish,
        *,
        relay_host: str,
        media_port: int,
        workers: int,
        key_box: KeyBox,
        throttle: FailureThrottle | None = None,
        secret_throttle: FailureThrottle | None = None,
        puzzles: JoinPuzzles | None = None,
        limits: JoinLimits | None = None,
        audit: Audit | None = None,
    ) -> None:
        ipaddress.ip_address(relay_host)  # ValueError at start-up, not a 500 at join
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not 1 <= media_port <= 65535 - 2 * workers + 1:
            raise ValueError(f"media port {media_port} leaves no room for {workers} workers")
        self.store = store
        self.publish = publish
        self.workers = workers
        self.audit = audit or Audit(store)
        self.describer = Describer(relay_host, media_port)
        self.admission = Admission(
            store, throttle=throttle, secret_throttle=secret_throttle, puzzles=puzzles
        )
        self.rooms = Rooms(store, publish, workers, limits or JoinLimits(), key_box)
        self.key_box = key_box
        self.participants = ParticipantService(self.rooms, self.describer, self.audit)

    # -- meetings --

    async def create_meeting(
        self,
        title: str,
        mode: Mode = Mode.MEETING,
        password: str | None = None,
        panelist_password: str | None = None,
        suite: Suite = DEFAULT_SUITE,
        *,
        now: float,
        by: Actor = "operator",
    ) -> Created:
        """A new open meeting. Its password is stored as an Argon2id hash; a strong one is
        generated (and returned once) when none is given. The host key is returned once and
        stored as a digest."""
        generated = None
        if password is None:
            password = generated = auth.generate_password()
        password_hash = await asyncio.to_thread(auth.hash_password, password)
        panelist_hash = (
            None
            if panelist_password is None
            else await asyncio.to_thread(auth.hash_password, panelist_password)
        )
        host_key = auth.new_secret()
        meeting = await self.store.create_meeting(
            title=title,
            mode=mode,
            suite=suite,
            password_hash=password_hash,
            panelist_password_hash=panelist_hash,
            host_key_digest=auth.secret_digest(host_key),
            created_at=now,
        )
        await self.publish(wire.MeetingOpened(meeting.wire_id, meeting.mode))
        log.info("meeting %s opened (%s)", meeting.id, meeting.mode)
        await self.audit.append(by, "meeting.create", meeting.id, None, {"mode": mode}, now=now)
        return Created(meeting, host_key, generated)

    async def list_meetings(
        self, *, limit: int = 50, offset: int = 0, state: State | None = None
    ) -> list[MeetingRow]:
        return await self.store.list_meetings(limit=limit, offset=offset, state=state)

    async def get_meeting(self, meeting_id: str) -> MeetingRow:
        return await find_meeting(self.store, meeting_id)

    async def update_meeting(
        self, meeting_id: str, *, title: str, now: float, by: Actor
    ) -> MeetingRow:
        meeting = await find_open_meeting(self.store, meeting_id)
        row = await self.store.update_meeting(meeting.id, title=title)
        if row is None:
            raise NotFound("no such meeting")
        await self.audit.append(by, "meeting.update", row.id, None, {"fields": ["title"]}, now=now)
        return row

    async def set_controls(
        self,
        meeting_id: str,
        *,
        locked: bool | None = None,
        recording: bool | None = None,
        now: float,
        by: Actor,
    ) -> Controls:
        """Lock or unlock, switch recording on or off. A feature switched on is remembered in
        the store with the switch: billed at the end even if switched off again, and even
        across a restart (control/usage.py)."""
        meeting = await find_open_meeting(self.store, meeting_id)
        used = tuple(name for name, on in (("locked", locked), ("recording", recording)) if on)
        row = await self.store.update_meeting(
            meeting.id, locked=locked, recording=recording, add_features=used
        )
        if row is None:
            raise NotFound("no such meeting")
        if row.recording != meeting.recording:
            # The workers start (or stop) writing its media: nothing is kept unless asked.
            await self.publish(wire.MeetingRecording(row.wire_id, row.recording))
            log.info("meeting %s recording %s", row.id, "on" if row.recording else "off")
        switches = (
            (meeting.locked, row.locked, "meeting.lock", "meeting.unlock"),
            (meeting.recording, row.recording, "meeting.recording_on", "meeting.recording_off"),
        )
        for was, is_on, on, off in switches:
            if was != is_on:
                await self.audit.append(by, on if is_on else off, row.id, None, None, now=now)
        return {"locked": row.locked, "recording": row.recording}

    async def end_meeting(
        self, meeting_id: str, *, now: float, by: Actor, totals: Totals | None = None
    ) -> UsageRecord:
        """End the meeting at once (MeetingEnded reaches the workers, which stop its media),
        mark everyone present as gone, and append its usage record, with the packet and byte
        totals `totals` gives for its participants."""
        meeting = await find_open_meeting(self.store, meeting_id)
        async with self.rooms.lock(meeting.id):
            record = await self._end(meeting.id, now, totals)
        await self.audit.append(by, "meeting.end", meeting.id, now=now)
        return record

    async def _end(self, meeting_id: str, now: float, totals: Totals | None) -> UsageRecord:
        meeting = await find_open_meeting(self.store, meeting_id)  # again: it may have ended
        # The row as the end left it: features a set_controls added since the read above count.
        ended = await self.store.update_meeting(meeting.id, state="ended", ended_at=now)
        if ended is not None:
            meeting = ended
        await self.publish(wire.MeetingEnded(meeting.wire_id))
        self.rooms.closed(meeting.id)
        participants = await self.store.list_participants(meeting.id)
        for p in participants:
            self.rooms.gone(p)  # a listener still present no longer counts
        await self.store.mark_gone(meeting.id, left_at=now)
        counts = totals([p.wire_id for p in participants]) if totals else {}
        record = await record_usage(self.store, meeting, participants, now, counts)
        log.info("meeting %s ended", meeting.id)
        return record

    async def delete_meeting(
        self, meeting_id: str, *, now: float, by: Actor = "operator", totals: Totals | None = None
    ) -> MeetingRow:
        """Delete a meeting, ending it first if it is open (its usage record stays); the row
        as it was."""
        meeting = await find_meeting(self.store, meeting_id)
        async with self.rooms.lock(meeting.id):
            meeting = await find_meeting(self.store, meeting.id)
            if meeting.state == "open":
                await self._end(meeting.id, now, totals)
            await self.store.delete_meeting(meeting.id)
        await self.audit.append(by, "meeting.delete", meeting.id, now=now)
        return meeting

    async def list_usage(self, meeting_id: str | None = None) -> list[UsageRecord]:
        return await self.store.list_usage(meeting_id=meeting_id)

    # -- joining --

    async def join(
        self,
        meeting_id: str,
        *,
        name: str,
        password: str | None,
        client_address: str,
        now: float,
        role: Role | None = None,
        host_key: str | None = None,
        streams: Sequence[wire.Stream] = (),
        receive_at: Address | None = None,
        uplink: str | None = None,
        registration_token: str | None = None,
        proof_of_work: Proof | None = None,
        operator: bool = False,
        webrtc: WebRtcJoin | None = None,
        avoid_nodes: frozenset[str] = frozenset(),
    ) -> JoinAnswer:
        """Admit a participant; its join answer. In this order: unknown meeting 404; ended
        409; locked 423 unless the joiner is the host with its host key (so the host can
        always get back in); the credential (control/admission.py: host key, registration
        token, panelist or meeting password, with throttles and proof of work); the limits
        (control/limits.py); then, under the meeting's lock, the checks again and the SSRCs
        (unique in the meeting, 409).

        Without `role` a webinar makes an attendee (receives only) and a meeting a panelist.
        `streams` are what it will send; `receive_at` is where a listen-only client wants
        media. `uplink`: the key it sends with, when it brings its own (SDES: each side of an
        offer picks its sending key); the key it receives with is always generated here.
        `client_address` is the caller's IP: the throttles count it, and a `receive_at` at
        that IP is its own (consent). `operator`: the caller showed the operator token (a
        service joining for its users): the per-client join rate does not count it, and the
        addresses it gives are taken as consented, as the operator's own. `webrtc`: a WHIP or
        WHEP peer's offer (control/webrtc.py); the answer's `sdp` is then the SDP answer for
        it, and its keys are placeholders its DTLS handshake replaces. `avoid_nodes`: nodes
        placement passes over (control/placement.py)."""
        meeting = await find_open_meeting(self.store, meeting_id)
        own_uplink = own_key(meeting.suite, uplink)
        role = role or (Role.ATTENDEE if meeting.mode == Mode.WEBINAR else Role.PANELIST)
        is_host = self.admission.is_host(meeting, role, host_key)
        if meeting.locked and not is_host:
            raise Locked("this meeting is locked: nobody new may join")
        token_digest = await self.admission.check_join(
            meeting,
            role,
            host_key=host_key,
            password=password,
            registration_token=registration_token,
            proof_of_work=proof_of_work,
            client_address=client_address,
            now=now,
            operator=operator,
        )
        if streams and not may_send(meeting.mode, role):
            raise Forbidden("attendees of a webinar receive only: they may not declare streams")
        if receive_at is not None:
            self.rooms.limits.check_listener(receive_at.host)
        if not operator:
            self.rooms.limits.take_join(client_address, now)
        # The node it is homed on, before the meeting's lock: placing is a transaction of its
        # own, which joins of one meeting need not wait for each other's. A WebRTC peer is
        # connected by this node's workers (its ICE and DTLS state lives in memory here), so
        # it is homed here; anyone else where placement says.
        node, describer, workers, apis = await self._place(
            meeting,
            await self.rooms.roster(meeting),
            role,
            now,
            here_only=webrtc is not None,
            avoid=avoid_nodes,
        )
        async with self.rooms.lock(meeting.id):
            # Again, under the meeting's lock: it may have ended, gone or been locked while the
            # password was checked, and no other join may take these SSRCs meanwhile.
            meeting = await find_open_meeting(self.store, meeting.id)
            if meeting.locked and not is_host:
                raise Locked("this meeting is locked: nobody new may join")
            roster = await self.rooms.roster(meeting)
            self.rooms.limits.check_room(roster.present)
            if receive_at is not None:
                self.rooms.limits.check_listener(receive_at.host)  # again: joins may have raced
            if roster.taken_ssrcs() & {s.ssrc for s in streams}:
                raise Conflict("an ssrc given is already used by another participant")
            worker = self.rooms.home(meeting, roster, node, workers)
            meeting_streams = sending_streams(meeting, roster.present_senders())
            participant_id = new_id()
            uplink_key = own_uplink or new_master_key(meeting.suite)
            downlink = new_master_key(meeting.suite)
            # The answer's SDP can still refuse the input (a receive_at port too high for the
            # streams, an offer for a codec the meeting does not send): find out before
            # anything is stored or published.
            payload_types: tuple[tuple[int, int], ...] | None = None
            peer: wire.WebRtcPeer | None = None
            if webrtc is not None:
                try:
                    webrtc_sdp, payload_types, peer = webrtc.answer(
                        describer.relay_host,
                        describer.port(worker),
                        meeting_streams,
                        secrets.randbits(62),
                    )
                except OfferError as exc:
                    raise Invalid(str(exc)) from None
            else:
                describer.sdp(meeting, worker, receive_at, downlink, streams, meeting_streams, 1)
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
                    uplink_sealed=self.key_box.seal(uplink_key, participant_id),
                    downlink_sealed=self.key_box.seal(downlink, participant_id),
                    worker=worker,
                    streams=tuple(streams),
                    receive_at=receive_at,
                    joined_at=now,
                    participant_id=participant_id,
                    node=node or None,
                )
            except BaseException:
                if used is not None:  # not joined after all: the token stays usable
                    with contextlib.suppress(Exception):
                        await self.store.update_registration(used.id, token_digest=token_digest)
                raise
            roster.joined(row)
            if receive_at is not None and self.rooms.local(row):
                # (Its own node counts one homed elsewhere: control/cluster.py.)
                self.rooms.limits.add_listener(receive_at.host)
            # Consent: the caller is at that address, or is the operator's own service
            # vouching for its listeners (docs/SECURITY.md, "No reflection: consent before
            # media").
            confirmed = receive_at is not None and (
                operator or _same_host(client_address, receive_at.host)
            )
            if self.rooms.local(row):
                await self.publish(
                    routing_update(
                        meeting,
                        row,
                        uplink_key,
                        downlink,
                        None,
                        meeting_streams,
                        address_confirmed=confirmed,
                        source_hint=_ip_or_none(client_address),
                        payload_types=payload_types,
                        webrtc=peer,
                    )
                )
            else:  # its node's control plane publishes it (control/cluster.py)
                await self.rooms.tell_home(row, confirmed)
        log.info("participant %s joined meeting %s as %s on %s", row.id, meeting.id, role, node)
        answer = describer.answer(meeting, row, uplink_key, downlink, streams, meeting_streams)
        answer["apis"] = apis
        if webrtc is not None:
            answer["sdp"] = webrtc_sdp
        return answer

    async def _place(
        self,
        meeting: MeetingRow,
        roster: Roster,
        role: Role,
        now: float,
        *,
        here_only: bool,
        avoid: frozenset[str] = frozenset(),
    ) -> tuple[str, Describer, int, list[str]]:
        """The node a newcomer is homed on (control/placement.py; `here_only`: this one),
        with what describes its media address, its number of workers, and the APIs of the
        nodes that take newcomers (that node's first). A plane alone on its store (SQLite, or
        no node name) homes everyone here; Draining when no node takes newcomers."""
        here = self.rooms.node
        if not self.store.shared or not here:
            return here, self.describer, self.workers, []
        # The nodes as last read (every HEARTBEAT_S: a row there may be that much older than
        # the database's, so a node counts here until GONE_AFTER_S past that).
        known = [n for n in self.rooms.nodes().values() if now - n.heartbeat_at < CACHED_UP_S]
        if here_only or (here not in avoid and all(n.name == here for n in known)):
            # Homed here, or alone on the database: no placement to make, and no transaction.
            return here, self.describer, self.workers, apis_of(known, here, now, CACHED_UP_S)
        seen: list[NodeRow] = []

        def choose(rows: list[NodeRow]) -> str | None:
            seen.extend(rows)
            candidates = [r for r in rows if r.name not in avoid]
            return choose_node(candidates, meeting, roster, role, here=here, now=now)

        name = await self.store.place_on_node(choose)
        if name is None:
            raise Draining("no node takes new participants now (each is draining, full or silent)")
        apis = apis_of([r for r in seen if r.name not in avoid], name, now)
        if name == here:
            return here, self.describer, self.workers, apis
        node = next(r for r in seen if r.name == name)
        return name, Describer(node.media_host, node.media_port), node.workers, apis

    # -- restart --

    async def routing_snapshot_state(self, seq: int | None = None) -> RoutingState:
        """The routing state rebuilt from the store (control/rooms.py, `snapshot_state`)."""
        return await self.rooms.snapshot_state(seq)
