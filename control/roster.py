"""What a join needs to know of a meeting's participants, kept as they come and go, so that
a join costs the same with ten people present or a hundred thousand: no query, loop or
message over everyone on the join path (control/meetings.py).

A join needs four things of the people already there:
- how many are present (the meeting's limit, control/limits.py);
- how many are homed on each worker (placement, `MeetingService._home`);
- the SSRCs present senders declared (unique within a meeting);
- the streams of the senders, for the newcomer's SDP (and, for a listener whose SDP gives each
  stream a port, the senders present when it joined).

Senders are few whatever the audience (a webinar's thousands of attendees declare nothing),
so a `Roster` keeps every participant that ever declared streams in the meeting, with its
current row, and counts for everyone else. One Roster per open meeting lives in the control
plane's memory: built from the store when the control plane starts (which reads everyone
once anyway) or when a meeting is first touched, changed by every join, leave, expulsion and
role change, and dropped when the meeting ends. The store stays the truth: a restarted control
plane builds the rosters again from it. Several control planes writing one database would each
need the store's own counts instead; one control plane per store holds for now.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from control.store import ParticipantRow

__all__ = ["Roster"]


def _declares_streams(row: ParticipantRow) -> bool:
    return bool(row.streams)


@dataclass
class Roster:
    workers: int
    present: int = 0
    per_worker: list[int] = field(default_factory=list)
    senders: dict[str, ParticipantRow] = field(default_factory=dict)  # every one, ever

    def __post_init__(self) -> None:
        if not self.per_worker:
            self.per_worker = [0] * self.workers

    @classmethod
    def of(cls, workers: int, rows: Iterable[ParticipantRow]) -> Roster:
        """The roster of a meeting whose participants (present or not) are `rows`."""
        roster = cls(workers)
        for row in rows:
            if row.left_at is None:
                roster._count(row, 1)
            if _declares_streams(row):
                roster.senders[row.id] = row
        return roster

    def _count(self, row: ParticipantRow, delta: int) -> None:
        self.present += delta
        if 0 <= row.worker < self.workers:
            self.per_worker[row.worker] += delta

    def joined(self, row: ParticipantRow) -> None:
        self._count(row, 1)
        if _declares_streams(row):
            self.senders[row.id] = row

    def left(self, row: ParticipantRow) -> None:
        """`row` as it is after leaving or being expelled (its left_at set)."""
        self._count(row, -1)
        if row.id in self.senders:
            self.senders[row.id] = row

    def changed(self, row: ParticipantRow) -> None:
        """A present participant's row changed (its role, its keys)."""
        if row.id in self.senders:
            self.senders[row.id] = row

    def present_senders(self) -> list[ParticipantRow]:
        """The senders present now, in the order they joined."""
        rows = [r for r in self.senders.values() if r.left_at is None]
        return sorted(rows, key=lambda r: (r.joined_at, r.id))

    def all_senders(self) -> list[ParticipantRow]:
        return list(self.senders.values())

    def taken_ssrcs(self) -> set[int]:
        return {s.ssrc for r in self.present_senders() for s in r.streams}
