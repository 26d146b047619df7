"""What a join needs to know of a meeting's participants, kept as they come and go, so that
a join costs the same with ten people present or a hundred thousand: no query, loop or
message over everyone on the join path (control/meetings.py).

A join needs four things of the people already there:
- how many are present (the meeting's limit, control/limits.py);
- how many are homed on each node and worker (placement: control/placement.py, `Rooms.home`);
- the SSRCs present senders declared (unique within a meeting);
- the streams of the senders, for the newcomer's SDP (and, for a listener whose SDP gives each
  stream a port, the senders present when it joined).

Senders are few whatever the audience (a webinar's thousands of attendees declare nothing),
so a `Roster` keeps every participant that ever declared streams in the meeting, with its
current row, and counts for everyone else. One Roster per open meeting lives in the control
plane's memory: built from the store when the control plane starts (which reads everyone
once anyway) or when a meeting is first touched, changed by every join, leave, expulsion and
role change, and dropped when the meeting ends. The store stays the truth: a restarted control
plane builds the rosters again from it. Nodes sharing one database each keep a roster of the
whole meeting, every node's members included (by node and worker: placement), kept in step by
the notifications of control/cluster.py; a change is counted by participant id, so hearing it
twice counts it once.
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
    """`node`: the name of the node whose roster this is; a row homed on no node (joined
    before there were nodes) counts as homed here."""

    workers: int
    node: str = ""
    # Present members: participant id -> (node, worker). Kept by id, so a change heard twice
    # (this node's own, and the notification of it: control/cluster.py) counts once.
    members: dict[str, tuple[str, int]] = field(default_factory=dict)
    per_home: dict[tuple[str, int], int] = field(default_factory=dict)  # (node, worker) -> n
    senders: dict[str, ParticipantRow] = field(default_factory=dict)  # every one, ever

    @classmethod
    def of(cls, workers: int, rows: Iterable[ParticipantRow], node: str = "") -> Roster:
        """The roster of a meeting whose participants (present or not) are `rows`."""
        roster = cls(workers, node)
        for row in rows:
            roster.sync(row)
        return roster

    @property
    def present(self) -> int:
        return len(self.members)

    @property
    def per_worker(self) -> list[int]:
        """Present members per worker of this node."""
        return self.load_on(self.node, self.workers)

    def load_on(self, node: str, workers: int) -> list[int]:
        """Present members per worker of `node` (which has `workers`)."""
        return [self.per_home.get((node, w), 0) for w in range(workers)]

    def nodes(self) -> set[str]:
        """The nodes that have present members."""
        return {node for (node, _), n in self.per_home.items() if n > 0}

    def home_of(self, row: ParticipantRow) -> tuple[str, int]:
        return (row.node or self.node, row.worker)

    def _add(self, row: ParticipantRow) -> None:
        if row.id not in self.members:
            home = self.members[row.id] = self.home_of(row)
            self.per_home[home] = self.per_home.get(home, 0) + 1

    def _remove(self, row: ParticipantRow) -> None:
        home = self.members.pop(row.id, None)
        if home is not None:
            self.per_home[home] -= 1

    def sync(self, row: ParticipantRow) -> None:
        """`row` as it is now, whatever happened to it: present or gone, its row kept if it
        declared streams. Idempotent."""
        if row.left_at is None:
            self._add(row)
        else:
            self._remove(row)
        if _declares_streams(row):
            self.senders[row.id] = row

    def joined(self, row: ParticipantRow) -> None:
        self.sync(row)

    def left(self, row: ParticipantRow) -> None:
        """`row` as it is after leaving or being expelled (its left_at set)."""
        self.sync(row)

    def changed(self, row: ParticipantRow) -> None:
        """A present participant's row changed (its role, its keys)."""
        if row.id in self.senders:
            self.senders[row.id] = row

    def lost_node(self, node: str) -> list[str]:
        """Forget the members homed on `node` (gone: control/cluster.py); their ids."""
        ids = [pid for pid, (n, _) in self.members.items() if n == node]
        for pid in ids:
            home = self.members.pop(pid)
            self.per_home[home] -= 1
        return ids

    def present_senders(self) -> list[ParticipantRow]:
        """The senders present now, in the order they joined."""
        rows = [r for r in self.senders.values() if r.left_at is None and r.id in self.members]
        return sorted(rows, key=lambda r: (r.joined_at, r.id))

    def all_senders(self) -> list[ParticipantRow]:
        return list(self.senders.values())

    def taken_ssrcs(self) -> set[int]:
        return {s.ssrc for r in self.present_senders() for s in r.streams}
