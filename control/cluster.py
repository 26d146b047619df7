"""This node among others on one database: keeping each node's routing state in step with
what any node's API changed (README.md, "Several nodes").

Every node's API takes every call. A change is written to the store first; the node that made
it publishes to its own workers what concerns them (the services do, through `publish` here)
and tells the others over PostgreSQL's LISTEN/NOTIFY, on CHANNEL, one notification per
routing update, in a few bytes:

- `p <participant wire id> <from node> <c>`: a participant joined, left, was expelled, muted
  or changed role (`c`: 1 when its receive_at address is confirmed). Each node reads its row
  and keeps its roster in step; its home node, if the change came from another, publishes it
  to its workers.
- `m <meeting wire id>`: a meeting opened, ended or changed recording. Each node reads the
  meeting and publishes what differs.
- `t <meeting wire id>`: a trunk was made. Each node reads the meeting's trunks.

After each, the node makes the trunks its senders need and publishes its ends of the
meeting's trunks (control/trunks.py). The store stays the truth and a notification only
says where to look, so hearing one twice, or one's own, changes nothing; one missed (a lost
connection) is made up by the look every RESYNC_S at every open meeting a node keeps (at
participants that joined before the last RESYNC_S: a newer one's notification is on its way,
and only it says whether its address is confirmed). Whatever publishes a participant's change
holds its meeting's lock (control/rooms.py), so a notification and that look never publish one
change twice. Notifications go out from a task of their own, in order: a join does not wait
for them.

Every HEARTBEAT_S the node reads the nodes' rows (control/nodes.py). A node silent for
GONE_AFTER_S is gone (killed, or cut off): whichever node sees it first marks the
participants homed there as having left then (`Store.mark_node_gone`, idempotent), each
node forgets them and drops its trunk ends towards it. Its attendees join again, through any
node's API, and are placed among the nodes that are up (control/placement.py). A look that
comes more than LATE_WAKE_S after its beat judges no node gone: the watcher was held up
itself (a busy loop, a stalled host), and every heartbeat would look as old as its delay.

A node alone on its store (SQLite) has nobody to tell: `publish` only publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from control.keybox import KeyBox
from control.media import described, routing_update
from control.nodes import HEARTBEAT_S
from control.rooms import Rooms
from control.roster import Roster
from control.routing import RoutingServer, RoutingState
from control.store import (
    DuplicateKey,
    ForeignKeyViolation,
    MeetingRow,
    ParticipantRow,
    Store,
    StoreError,
)
from control.store.rows import NodeRow, TrunkRow
from control.store.store import Closer
from control.trunks import new_trunk, trunk_ends, up, wanted_trunks
from relay import wire

__all__ = ["CHANNEL", "Cluster", "parse_notification"]

log = logging.getLogger("control.cluster")

CHANNEL = "relay_changes"
RESYNC_S = 10.0
LATE_WAKE_S = 1.0  # a watcher this late past its beat judges no node gone (_watch)

_PARTICIPANT_UPDATES = (wire.ParticipantLeft, wire.ParticipantEjected, wire.ParticipantMuted)


MAX_WIRE_ID = 0xFFFFFFFF


def parse_notification(payload: str) -> tuple[str, int, str, bool]:
    """(kind, wire id, the node it came from, confirmed) of a notification (the table
    above); ValueError for anything else. Only nodes sharing the database can NOTIFY, but a
    payload is still read as untrusted text: a wire id outside 1..2**32-1 or a node name of
    the wrong shape is refused."""
    parts = payload.split(" ")
    kind = parts[0]
    if kind == "p" and len(parts) == 4 and parts[3] in ("0", "1") and 0 < len(parts[2]) <= 63:
        wire_id, source, confirmed = parts[1], parts[2], parts[3] == "1"
    elif kind in ("m", "t") and len(parts) == 2:
        wire_id, source, confirmed = parts[1], "", False
    else:
        raise ValueError("not a notification of control/cluster.py")
    if not wire_id.isascii() or not wire_id.isdigit() or not 0 < int(wire_id) <= MAX_WIRE_ID:
        raise ValueError("a notification's wire id is not a u32 above 0")
    return kind, int(wire_id), source, confirmed


class Cluster:
    def __init__(
        self,
        store: Store,
        rooms: Rooms,
        routing: RoutingServer,
        box: KeyBox,
        here: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.routing = routing
        self.box = box
        self.here = here
        self.clock = clock
        self.nodes: dict[str, NodeRow] = {}
        self.gone: set[str] = set()  # nodes whose participants were let go
        # This node's trunk ends in its routing state, per meeting wire id.
        self.ends: dict[int, dict[int, wire.ParticipantJoined]] = {}
        # What each meeting's trunks were last worked out from (its present senders, the
        # nodes with members, the nodes up), by meeting wire id: an attendee joining a node
        # that has members already changes none of it, and costs no look at the trunks.
        self._trunks_from: dict[int, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {}
        self._meetings: dict[str, MeetingRow] = {}  # open meetings as last read, by id
        self.heard = 0  # notifications handled
        self.trunks_made = 0
        self._queue: asyncio.Queue[str] = asyncio.Queue()  # heard, to apply
        self._outbox: asyncio.Queue[str] = asyncio.Queue()  # to send
        self._unlisten: Closer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        rooms.node = here
        rooms.nodes = lambda: self.nodes
        rooms.tell_home = self.tell_home

    @property
    def shared(self) -> bool:
        return self.store.shared and bool(self.here)

    # -- starting: the trunk ends of the state rebuilt from the store --

    async def start(self, state: RoutingState) -> None:
        """Before the routing server answers its first snapshot: read the nodes, add this
        node's trunk ends to the state rebuilt from the store, then listen and watch."""
        if not self.shared:
            return
        self.nodes = {n.name: n for n in await self.store.list_nodes()}
        for meeting_id, roster in self.rooms.rosters().items():
            meeting = await self.store.get_meeting(meeting_id)
            if meeting is None or meeting.state != "open":
                continue
            trunks = await self.store.list_trunks(meeting.id)
            now = self.clock()
            ends = trunk_ends(meeting, trunks, roster, self.nodes, self.here, self.box, now)
            self.ends[meeting.wire_id] = ends
            for wire_id, update in ends.items():
                state.participants[wire_id] = update
                state.present[meeting.wire_id] = state.present.get(meeting.wire_id, 0) + 1
        self._unlisten = await self.store.listen(CHANNEL, self._queue.put_nowait)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._consume()),
            loop.create_task(self._watch()),
            loop.create_task(self._send()),
        ]

    # -- what the services publish, and tell the others --

    async def publish(self, update: wire.Update) -> int:
        """The services' `publish`: to this node's workers what concerns them (a change of a
        participant homed elsewhere does not), then a notification to every node."""
        if isinstance(update, _PARTICIPANT_UPDATES) and (
            update.participant not in self.routing.state.participants
        ):
            seq = self.routing.state.seq
        else:
            seq = await self.routing.publish(update)
        if self.shared:
            if isinstance(update, (*_PARTICIPANT_UPDATES, wire.ParticipantJoined)):
                await self._notify(f"p {update.participant} {self.here} 0")
            elif isinstance(update, wire.MeetingOpened | wire.MeetingEnded | wire.MeetingRecording):
                await self._notify(f"m {update.meeting}")
        return seq

    async def tell_home(self, row: ParticipantRow, confirmed: bool) -> None:
        """A participant homed on another node joined or changed here: its node publishes it."""
        await self._notify(f"p {row.wire_id} {self.here} {int(confirmed)}")

    async def _notify(self, payload: str) -> None:
        """Queue a notification: one task sends them, in order, so that a join does not wait
        for it."""
        self._outbox.put_nowait(payload)

    async def _send(self) -> None:
        while True:
            payload = await self._outbox.get()
            try:
                await self.store.notify(CHANNEL, payload)
            except StoreError as exc:  # the others catch up at their next look (RESYNC_S)
                log.error("nodes not told of a change: %s", type(exc).__name__)

    # -- hearing --

    async def _consume(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self.apply(payload)
            except (StoreError, ValueError) as exc:
                log.error("a change from another node not applied: %s", exc)
            self.heard += 1

    async def apply(self, payload: str) -> None:
        """Act on one notification (ValueError: not one of those above)."""
        kind, wire_id, source, confirmed = parse_notification(payload)
        if kind == "p":
            await self.participant_changed(wire_id, source, confirmed)
        else:
            await self.meeting_changed(wire_id, trunks=kind == "t")

    async def _meeting(self, meeting_id: str) -> MeetingRow | None:
        """The meeting if it is open: as last read (an `m` notification reads it again)."""
        meeting = self._meetings.get(meeting_id)
        if meeting is None:
            meeting = await self.store.get_meeting(meeting_id)
            if meeting is None or meeting.state != "open":
                return None
            self._meetings[meeting_id] = meeting
        return meeting

    async def participant_changed(self, wire_id: int, source: str, confirmed: bool) -> None:
        row = await self.store.get_participant_by_wire_id(wire_id)
        if row is None:
            return
        meeting = await self._meeting(row.meeting_id)
        if meeting is None:
            return
        roster = await self.rooms.roster(meeting)
        roster.sync(row)
        if self.rooms.local(row) and source != self.here:
            # Under the meeting's lock, as joins and `resync` publish: one of them may be
            # about to publish this participant too.
            async with self.rooms.lock(meeting.id):
                await self._follow(meeting, row, roster, confirmed)
        await self.sync_trunks(meeting, roster)

    async def _follow(
        self, meeting: MeetingRow, row: ParticipantRow, roster: Roster, confirmed: bool
    ) -> None:
        """Publish to this node's workers what another node changed of a participant homed
        here: its join, its leaving or expulsion, its role (and keys), its mute."""
        state = self.routing.state
        publish = self.routing.publish
        current = state.participants.get(row.wire_id)
        if row.left_at is not None:  # expelled, or left
            if current is not None and row.wire_id not in state.ejected:
                if row.receive_at is not None:  # no longer counts (control/limits.py)
                    self.rooms.limits.remove_listener(row.receive_at.host)
                gone = wire.ParticipantEjected if row.expelled else wire.ParticipantLeft
                await publish(gone(row.wire_id))
            return
        uplink, downlink = self.rooms.keys(row)
        if current is None:
            streams = described(meeting, row, roster.all_senders()) if row.receive_at else []
            if row.receive_at is not None:
                self.rooms.limits.add_listener(row.receive_at.host)
            await publish(
                routing_update(
                    meeting, row, uplink, downlink, None, streams, address_confirmed=confirmed
                )
            )
        elif (current.role, current.uplink, current.downlink) != (row.role, uplink, downlink):
            await publish(wire.ParticipantLeft(row.wire_id))
            await publish(
                dataclasses.replace(current, role=row.role, uplink=uplink, downlink=downlink)
            )
            if row.muted:
                await publish(wire.ParticipantMuted(row.wire_id, True))
            return
        if (row.wire_id in state.muted) != row.muted:
            await publish(wire.ParticipantMuted(row.wire_id, row.muted))

    async def meeting_changed(self, wire_id: int, *, trunks: bool = False) -> None:
        meeting = await self.store.get_meeting_by_wire_id(wire_id)
        state = self.routing.state
        if meeting is not None:
            self._meetings.pop(meeting.id, None)
        if trunks:
            self._trunks_from.pop(wire_id, None)  # a trunk was made: look at them again
        if meeting is None or meeting.state != "open":
            if wire_id in state.meetings and wire_id not in state.ended:
                await self.routing.publish(wire.MeetingEnded(wire_id))
            if meeting is not None:
                self.rooms.closed(meeting.id)
            self.ends.pop(wire_id, None)
            return
        if wire_id not in state.meetings:
            await self.routing.publish(wire.MeetingOpened(wire_id, meeting.mode))
        if (wire_id in state.recording) != meeting.recording:
            await self.routing.publish(wire.MeetingRecording(wire_id, meeting.recording))
        await self.sync_trunks(meeting, await self.rooms.roster(meeting))

    # -- trunks --

    async def sync_trunks(self, meeting: MeetingRow, roster: Roster) -> None:
        """Make the trunks this node's senders need, then publish this node's ends of the
        meeting's trunks that should be there and take back those that should not."""
        if not self.shared:
            return
        now = self.clock()
        basis = (
            frozenset(p.id for p in roster.present_senders()),
            frozenset(roster.nodes()),
            frozenset(n for n, row in self.nodes.items() if up(row, now)),
        )
        if self._trunks_from.get(meeting.wire_id) == basis:
            return
        self._trunks_from[meeting.wire_id] = basis
        trunks = await self.store.list_trunks(meeting.id)
        have = {(t.sender_id, t.edge) for t in trunks}
        made = False
        for sender, edge in wanted_trunks(roster, self.nodes, self.here, now):
            if (sender.id, edge) in have:
                continue
            try:
                row = new_trunk(meeting, sender, self.nodes[edge], self.here, self.box, now)
                trunks.append(await self.store.add_trunk(row))
                self.trunks_made += 1
                log.info("trunk for %s from %s to %s", sender.id, self.here, edge)
            except DuplicateKey:
                trunks = await self.store.list_trunks(meeting.id)  # made meanwhile
            except ForeignKeyViolation:
                continue  # the sender or its meeting went meanwhile
            made = True
        if made:
            await self._notify(f"t {meeting.wire_id}")
        await self._publish_ends(meeting, trunks, roster, now)

    async def _publish_ends(
        self, meeting: MeetingRow, trunks: list[TrunkRow], roster: Roster, now: float
    ) -> None:
        wanted = trunk_ends(meeting, trunks, roster, self.nodes, self.here, self.box, now)
        mine = self.ends.setdefault(meeting.wire_id, {})
        for wire_id in [w for w in mine if w not in wanted]:
            del mine[wire_id]
            await self.routing.publish(wire.ParticipantLeft(wire_id))
        for wire_id, update in wanted.items():
            if wire_id not in mine:
                mine[wire_id] = update
                await self.routing.publish(update)

    # -- watching the nodes --

    async def _watch(self) -> None:
        last_resync = time.monotonic()
        while True:
            asleep = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)
            # A watcher that wakes much later than it asked was held up itself (its loop busy,
            # the whole host stalled): every other node's heartbeat then looks as old as that
            # delay, and a verdict would be about its own stall. It reads the nodes but judges
            # none gone until a look that comes on time.
            on_time = time.monotonic() - asleep < HEARTBEAT_S + LATE_WAKE_S
            try:
                await self.look(judge=on_time)
                if time.monotonic() - last_resync >= RESYNC_S:
                    last_resync = time.monotonic()
                    await self.resync()
            except StoreError as exc:
                log.error("nodes not read: %s", type(exc).__name__)

    async def look(self, judge: bool = True) -> None:
        """Read the nodes; with `judge`, let go of the participants of those gone."""
        now = self.clock()  # before the read: the rows are at least this fresh
        self.nodes = {n.name: n for n in await self.store.list_nodes()}
        if not judge:
            return
        homes = {home for r in self.rooms.rosters().values() for home in r.nodes()}
        gone = {
            n for n in homes | set(self.nodes) if n != self.here and not up(self.nodes.get(n), now)
        }
        self.gone &= gone  # one back up is watched again
        for node in sorted(gone - self.gone):
            left = await self.store.mark_node_gone(node, left_at=now)
            self.gone.add(node)
            log.warning("node %s is gone: %d of its participants let go", node, left)
            for roster in self.rooms.rosters().values():
                roster.lost_node(node)
            await self._trunks_everywhere()

    async def _trunks_everywhere(self) -> None:
        for meeting_id, roster in self.rooms.rosters().items():
            meeting = await self.store.get_meeting(meeting_id)
            if meeting is not None and meeting.state == "open":
                await self.sync_trunks(meeting, roster)

    async def resync(self) -> None:
        """Every open meeting kept here read again from the store: rosters, the
        participants homed here that another node's notification did not bring, trunks."""
        for meeting_id, roster in self.rooms.rosters().items():
            self._meetings.pop(meeting_id, None)
            meeting = await self._meeting(meeting_id)
            if meeting is None:
                continue
            self._trunks_from.pop(meeting.wire_id, None)
            async with self.rooms.lock(meeting.id):
                now = self.clock()
                for row in await self.store.list_participants(meeting.id):
                    roster.sync(row)
                    missed = (row.left_at is None) != (
                        row.wire_id in self.routing.state.participants
                    )
                    # One that joined lately is left to its notification, which says whether
                    # its address is confirmed (this look cannot: it would publish it
                    # unconfirmed, and its listener would get nothing until it sends).
                    if missed and self.rooms.local(row) and now - row.joined_at >= RESYNC_S:
                        await self._follow(meeting, row, roster, False)
            await self.sync_trunks(meeting, roster)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._unlisten is not None:
            await self._unlisten()
