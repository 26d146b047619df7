"""Applying the control plane's routing messages to a worker's RouteTable.

The clone pattern: a Snapshot sets the whole state as of update number `seq`; updates follow,
numbered seq+1, seq+2, ... RouteReplica applies them in order and notices a gap (a lost
update), after which the worker must ask for a new snapshot. Everything runs between batches,
on the worker's one thread.
"""

from __future__ import annotations

from typing import Any

from relay import wire


class RouteReplica:
    """Keeps a RouteTable equal to the control plane's routing state."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.seq = -1  # last update applied; -1 before the first snapshot
        self.needs_snapshot = True
        self.meetings: set[int] = set()  # meetings the table holds

    def apply_snapshot(self, snapshot: wire.Snapshot) -> None:
        """Replace everything with the snapshot's state."""
        for meeting in self.meetings:
            self.table.close_meeting(meeting)
        self.meetings.clear()
        for opened in snapshot.meetings:
            self._apply(opened)
        for joined in snapshot.participants:
            self._apply(joined)
        for meeting in snapshot.ended:
            self._apply(wire.MeetingEnded(meeting))
        for participant in snapshot.muted:
            self._apply(wire.ParticipantMuted(participant, True))
        for participant in snapshot.ejected:
            self._apply(wire.ParticipantEjected(participant))
        self.seq = snapshot.seq
        self.needs_snapshot = False

    def apply(self, seq: int, update: wire.Update | wire.Heartbeat) -> bool:
        """Apply update number seq. False (and needs_snapshot) if updates were missed. A
        heartbeat carries the number of the last update: past ours, we missed some."""
        if self.needs_snapshot or seq <= self.seq:
            return not self.needs_snapshot  # old news (already in the snapshot)
        if isinstance(update, wire.Heartbeat) or seq != self.seq + 1:
            self.needs_snapshot = True
            return False
        self._apply(update)
        self.seq = seq
        return True

    def _apply(self, update: wire.Update) -> None:
        t = self.table
        if isinstance(update, wire.MeetingOpened):
            t.open_meeting(update.meeting, update.mode)
            self.meetings.add(update.meeting)
        elif isinstance(update, wire.MeetingEnded):
            t.end_meeting(update.meeting)
        elif isinstance(update, wire.ParticipantJoined):
            t.join(
                update.participant,
                update.meeting,
                update.role,
                update.suite,
                update.uplink,
                update.downlink,
                [s.ssrc for s in update.streams],
                update.address,
            )
        elif isinstance(update, wire.ParticipantLeft):
            t.leave(update.participant)
        elif isinstance(update, wire.ParticipantEjected):
            t.eject(update.participant)
        elif isinstance(update, wire.ParticipantMuted):
            t.mute(update.participant, update.muted)
