"""Trunks: one webinar over several nodes (README.md, "Several nodes").

A participant is homed on one node (control/placement.py), which alone receives from it and
sends to it. When a meeting has members on other nodes, the node of each sender (its origin)
sends that sender's streams once to each such node (an edge), which fans them out to its own
members exactly as if the sender were homed there: the tree of Zoom's media routers, Jitsi
Videobridge's relays, with SDES-style keys from the control plane as Janus' remote
publishers have.

No new machinery in the data plane: each end of a trunk is a participant of its node's
routing table (docs/wire.md, `participant_joined`).

- On the origin, the trunk's *out end* is a receiver, homed on the sender's worker, that
  gets only the sender's streams (`payload_types`: each under its own payload type) at the
  edge's address: worker `edge_worker` of the edge (media port + 2 x worker). The control
  plane vouches for that address (`address_confirmed`): the edge asked for the stream
  through the shared database, as an operator's own service vouches for its listeners.
- On the edge, its *in end* is a sender of the same SSRCs, homed on `edge_worker`, whose
  address latches on the first packet that authenticates, as any sender's does.

Each direction has its own master key, made here when the trunk is made and sealed in the
store as participants' keys are: `media` (the origin protects RTP and sender reports with it,
the edge unprotects) and `feedback` (the edge protects the RTCP it sends back: NACKs and
keyframe requests, which the origin passes on to the sender or answers from its cache; the
origin unprotects). So each key protects on one node only, and there each end's indexes are
reserved in that worker's ledger like any receiver's (docs/SECURITY.md, "Never the same
index twice"): no (key, SSRC, index) is used twice. A packet sent to an end by anyone but
the other end fails authentication and is dropped and counted (`auth`, or `replay` when
replayed) like any participant's.

A trunk is made by its origin when one of its senders is present and another node that is up
has members of the meeting; it lasts as long as its sender, and its ends leave the routing
tables when the sender leaves or the other node is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from control.keybox import KeyBox
from control.keys import new_master_key
from control.nodes import GONE_AFTER_S
from control.roster import Roster
from control.store import MeetingRow, ParticipantRow, new_id
from control.store.rows import NodeRow, TrunkRow
from relay import wire
from relay.vocabulary import Address, Role

__all__ = ["trunk_ends", "trunk_keys", "new_trunk", "wanted_trunks"]


def up(node: NodeRow | None, now: float) -> bool:
    return node is not None and now - node.heartbeat_at < GONE_AFTER_S


def wanted_trunks(
    roster: Roster, nodes: Mapping[str, NodeRow], here: str, now: float
) -> list[tuple[ParticipantRow, str]]:
    """The (sender, edge) pairs this node should have a trunk for: each present sender homed
    here, to each other node that is up and has members of the meeting."""
    edges = sorted(n for n in roster.nodes() if n != here and up(nodes.get(n), now))
    senders = [s for s in roster.present_senders() if (s.node or here) == here]
    return [(s, edge) for s in senders for edge in edges]


def new_trunk(
    meeting: MeetingRow, sender: ParticipantRow, edge: NodeRow, here: str, box: KeyBox, now: float
) -> TrunkRow:
    """A trunk from this node to `edge` for `sender`, with two fresh keys, sealed; its ends'
    wire ids are the store's to assign. The edge's end is homed on the worker the meeting's
    small members share there (control/rooms.py `Rooms.home`)."""
    trunk_id = new_id()
    return TrunkRow(
        id=trunk_id,
        meeting_id=meeting.id,
        sender_id=sender.id,
        origin=here,
        edge=edge.name,
        origin_worker=sender.worker,
        edge_worker=(meeting.wire_id - 1) % edge.workers,
        out_wire_id=0,
        in_wire_id=0,
        media_sealed=box.seal(new_master_key(meeting.suite), f"{trunk_id}/media"),
        feedback_sealed=box.seal(new_master_key(meeting.suite), f"{trunk_id}/feedback"),
        created_at=now,
    )


def trunk_keys(trunk: TrunkRow, box: KeyBox) -> tuple[bytes, bytes]:
    """(media, feedback) master keys, unsealed."""
    return (
        box.unseal(trunk.media_sealed, f"{trunk.id}/media"),
        box.unseal(trunk.feedback_sealed, f"{trunk.id}/feedback"),
    )


def trunk_ends(
    meeting: MeetingRow,
    trunks: Iterable[TrunkRow],
    roster: Roster,
    nodes: Mapping[str, NodeRow],
    here: str,
    box: KeyBox,
    now: float,
) -> dict[int, wire.ParticipantJoined]:
    """This node's ends of the meeting's trunks that should be in its routing table (wire
    id -> its update): those whose sender is present and whose other node is up."""
    present = {s.id: s for s in roster.present_senders()}
    ends: dict[int, wire.ParticipantJoined] = {}
    for t in trunks:
        sender = present.get(t.sender_id)
        if sender is None or here not in (t.origin, t.edge):
            continue
        other = nodes.get(t.edge if t.origin == here else t.origin)
        if not up(other, now):
            continue
        assert other is not None
        media, feedback = trunk_keys(t, box)
        if t.origin == here:
            address = Address(other.media_host, other.media_port + 2 * t.edge_worker)
            ends[t.out_wire_id] = wire.ParticipantJoined(
                t.out_wire_id,
                meeting.wire_id,
                Role.ATTENDEE,
                meeting.suite,
                feedback,  # what it sends us: RTCP feedback
                media,  # what we send it
                (),
                address,
                t.origin_worker,
                (),
                True,
                None,
                tuple((s.ssrc, s.pt) for s in sender.streams),
            )
        else:
            ends[t.in_wire_id] = wire.ParticipantJoined(
                t.in_wire_id,
                meeting.wire_id,
                Role.PANELIST,
                meeting.suite,
                media,  # what it sends us: the sender's streams
                feedback,  # what we send it: RTCP feedback
                sender.streams,
                None,
                t.edge_worker,
            )
    return ends
