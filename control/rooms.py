"""What the meeting and participant services share of the open meetings: the store, the
routing updates out to the workers, each open meeting's roster and lock, the listeners'
limits and the key box (control/meetings.py, control/participants.py).

- Changes of membership (join, leave, expulsion, end, deletion) of one meeting hold that
  meeting's lock between their checks and their writes, so a join racing the end of its
  meeting, or two joins claiming one SSRC, cannot both succeed.
- A roster (control/roster.py) keeps what joins need of each open meeting's participants, so
  a join never reads everyone; the store stays the truth, and `snapshot_state` rebuilds every
  roster from it when the control plane starts.
- Homing: a participant is homed on one node (control/placement.py) and one of its workers,
  which alone receives from it and sends to it (worker i listens on media_port + 2i); the
  workers pass a meeting's packets among themselves, and nodes over trunks
  (control/trunks.py). This node's routing state holds only what is homed here.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from control.errors import NotFound
from control.keybox import KeyBox
from control.limits import JoinLimits
from control.media import described, routing_update
from control.roster import Roster
from control.routing import RoutingState
from control.store import MeetingRow, ParticipantRow, Store
from control.store.rows import NodeRow
from relay import wire

__all__ = ["Publish", "Rooms"]

Publish = Callable[[wire.Update], Awaitable[int]]
SMALL_MEETING = 8  # members: up to this many share one worker


async def _nobody(_row: ParticipantRow, _confirmed: bool) -> None:
    """A plane of its own: nobody else to tell."""


class Rooms:
    def __init__(
        self, store: Store, publish: Publish, workers: int, limits: JoinLimits, key_box: KeyBox
    ) -> None:
        self.store = store
        self.publish = publish
        self.workers = workers
        self.limits = limits
        self.key_box = key_box
        # This node's name among those sharing the store (control/nodes.py; "" for a plane of
        # its own), the other nodes as last read, and how a participant's home node, when it
        # is another, hears that it joined or changed (with whether its receive_at address is
        # confirmed): control/cluster.py sets them.
        self.node = ""
        self.nodes: Callable[[], Mapping[str, NodeRow]] = dict
        self.tell_home: Callable[[ParticipantRow, bool], Awaitable[None]] = _nobody
        self._rosters: dict[str, Roster] = {}
        # One lock per meeting, held while a join, an end or a deletion changes who is in it,
        # so that their reads and writes do not interleave at an await.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, meeting_id: str) -> asyncio.Lock:
        lock = self._locks.get(meeting_id)
        if lock is None:
            lock = self._locks[meeting_id] = asyncio.Lock()
        return lock

    async def roster(self, meeting: MeetingRow) -> Roster:
        """The meeting's roster: kept, or built from the store the first time."""
        roster = self._rosters.get(meeting.id)
        if roster is None:
            everyone = await self.store.list_participants(meeting.id)
            roster = self._rosters.setdefault(
                meeting.id, Roster.of(self.workers, everyone, self.node)
            )
        return roster

    def rosters(self) -> dict[str, Roster]:
        """The rosters kept now, by meeting id."""
        return dict(self._rosters)

    def local(self, row: ParticipantRow) -> bool:
        """Whether `row` is homed on this node (one joined before nodes were is)."""
        return row.node is None or row.node == self.node

    def closed(self, meeting_id: str) -> None:
        """The meeting ended: nobody joins it any more."""
        self._rosters.pop(meeting_id, None)

    def home(
        self, meeting: MeetingRow, roster: Roster, node: str | None = None, workers: int = 0
    ) -> int:
        """The worker of `node` (this one by default; `workers`: how many it has) a newcomer
        is homed on. Each member costs its worker the same output (a copy of every stream of
        the meeting), so a meeting's members are spread evenly, each to the worker with the
        fewest (ties: the lowest index); the first SMALL_MEETING on a node share the meeting's
        worker, (wire id - 1) mod W, which spreads meetings over the workers and keeps a small
        meeting where passing packets between workers would cost more than it spreads."""
        node = self.node if node is None else node
        workers = workers or self.workers
        pinned = (meeting.wire_id - 1) % workers
        load = roster.load_on(node, workers)
        if sum(load) < SMALL_MEETING:
            return pinned
        return load.index(min(load))

    def gone(self, row: ParticipantRow) -> None:
        """A participant stops being present: its receive_at no longer counts (on its own
        node, which counted it)."""
        if row.left_at is None and row.receive_at is not None and self.local(row):
            self.limits.remove_listener(row.receive_at.host)

    def keys(self, row: ParticipantRow) -> tuple[bytes, bytes]:
        """Its master keys (uplink, downlink), unsealed."""
        return (
            self.key_box.unseal(row.uplink_sealed, row.id),
            self.key_box.unseal(row.downlink_sealed, row.id),
        )

    async def participant(self, participant_id: str) -> ParticipantRow:
        row = await self.store.get_participant(participant_id)
        if row is None:  # deleted under us, with its meeting
            raise NotFound("no such participant")
        return row

    async def update(self, participant_id: str, **changes: Any) -> ParticipantRow:
        row = await self.store.update_participant(participant_id, **changes)
        if row is None:  # deleted under us, with its meeting
            raise NotFound("no such participant")
        return row

    async def snapshot_state(self, seq: int | None = None) -> RoutingState:
        """The routing state rebuilt from the store (a restarted control plane serves it):
        open meetings, their present (and expelled) participants with unsealed keys, the muted
        and ejected flags, and every open meeting's roster and listeners counted again. `seq`
        defaults to the store's last routing update number."""
        state = RoutingState(await self.store.last_routing_seq() if seq is None else seq)
        self.limits.clear_listeners()
        offset = 0
        while True:
            page = await self.store.list_meetings(limit=500, offset=offset, state="open")
            for meeting in page:
                state.meetings[meeting.wire_id] = wire.MeetingOpened(meeting.wire_id, meeting.mode)
                if meeting.recording:
                    state.recording.add(meeting.wire_id)
                everyone = await self.store.list_participants(meeting.id)
                self._rosters[meeting.id] = Roster.of(self.workers, everyone, self.node)
                for p in everyone:
                    if (p.left_at is not None and not p.expelled) or not self.local(p):
                        continue
                    address = p.receive_at
                    if p.left_at is None and address is not None:
                        self.limits.add_listener(address.host)
                    streams = described(meeting, p, everyone) if address else []
                    state.participants[p.wire_id] = routing_update(
                        meeting, p, *self.keys(p), None, streams
                    )
                    if p.muted:
                        state.muted.add(p.wire_id)
                    if p.expelled:
                        state.ejected.add(p.wire_id)
            if len(page) < 500:
                return state
            offset += 500
