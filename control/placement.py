"""Which node a newcomer is homed on, among the nodes sharing one database (control/nodes.py).

A node takes newcomers while it is up (a heartbeat in the last FRESH_S: one that missed a
beat gets nobody new, well before it counts as gone), not draining, and under its capacity.
Among those (as Jitsi Videobridge's and LiveKit's selectors do, by load against capacity):

- a sender (a host or panelist of a webinar, anyone in a meeting), and anyone while the
  meeting is small (SMALL_MEETING present), goes to the node of the meeting's first present
  sender when it can take them: a small meeting then runs on one node with no trunk at all,
  and a webinar's panel shares the presenter's node;
- anyone else (a webinar's audience) goes to the node with the lowest stress, load over
  capacity, ties to this node and then by name, so an audience spreads over every node in
  proportion to what each can take, and each node gets the presenter's streams once
  (control/trunks.py).

The choice is made in one store transaction under the placement lock, which also counts the
newcomer in the chosen node's load (`Store.place_on_node`): joins placed through several
nodes' APIs at once spread rather than all picking the same least-loaded node.
"""

from __future__ import annotations

from collections.abc import Sequence

from control.media import may_send
from control.rooms import SMALL_MEETING
from control.roster import Roster
from control.store import MeetingRow
from control.store.rows import NodeRow
from relay.vocabulary import Role

__all__ = ["FRESH_S", "alive", "choose_node", "takes_newcomers"]

FRESH_S = 3.0  # seconds since its heartbeat within which a node takes newcomers


def alive(node: NodeRow, now: float) -> bool:
    """Whether `node` beat within FRESH_S."""
    return now - node.heartbeat_at < FRESH_S


def takes_newcomers(node: NodeRow, now: float) -> bool:
    return alive(node, now) and not node.draining and node.load < node.capacity


def choose_node(
    nodes: Sequence[NodeRow],
    meeting: MeetingRow,
    roster: Roster,
    role: Role,
    *,
    here: str,
    now: float,
) -> str | None:
    """The node a newcomer of `role` in `meeting` is homed on (the module's docstring), or
    None when no node takes newcomers."""
    open_ = [n for n in nodes if takes_newcomers(n, now)]
    if not open_:
        return None
    names = {n.name for n in open_}
    if may_send(meeting.mode, role) or roster.present < SMALL_MEETING:
        for sender in roster.present_senders():
            node = sender.node or here
            if node in names:
                return node
    return min(open_, key=lambda n: (n.load / n.capacity, n.name != here, n.name)).name
