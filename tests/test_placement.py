"""Placement, rosters by node, trunk planning and the notifications between nodes, as pure
functions (control/placement.py, control/roster.py, control/trunks.py, control/cluster.py);
the nodes themselves run in tests/test_cluster.py."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.cluster import parse_notification
from control.keybox import KeyBox
from control.placement import FRESH_S, choose_node
from control.roster import Roster
from control.store import MeetingRow, ParticipantRow
from control.store.rows import NodeRow
from control.trunks import new_trunk, trunk_ends, wanted_trunks
from relay.vocabulary import Address, Mode, Role, Suite
from relay.wire import Stream

pytestmark = pytest.mark.release_only  # tests/conftest.py: pure functions of the control plane

NOW = 1000.0
SUITE = Suite.AES_CM_128_HMAC_SHA1_80


def node(name: str, load: int = 0, capacity: int = 100, **changes: object) -> NodeRow:
    row = NodeRow(
        name=name,
        instance="i-" + name,
        api_url=f"http://{name}:8080",
        media_host=f"10.0.0.{len(name)}",
        media_port=40000,
        workers=2,
        capacity=capacity,
        load=load,
        started_at=0.0,
        heartbeat_at=NOW - 1,
        draining=False,
    )
    return dataclasses.replace(row, **changes)  # type: ignore[arg-type]


def meeting(mode: Mode = Mode.WEBINAR) -> MeetingRow:
    return MeetingRow(
        id="m",
        title="t",
        mode=mode,
        suite=SUITE,
        password_hash="h",
        panelist_password_hash=None,
        host_key_digest="d",
        state="open",
        locked=False,
        recording=False,
        created_at=0.0,
        ended_at=None,
        wire_id=7,
    )


def person(
    pid: str, node_name: str, *, ssrc: int | None = None, role: Role = Role.ATTENDEE, at: float = 1
) -> ParticipantRow:
    return ParticipantRow(
        id=pid,
        meeting_id="m",
        name=pid,
        role=role,
        streams=(Stream(ssrc),) if ssrc is not None else (),
        receive_at=None,
        uplink_sealed=b"",
        downlink_sealed=b"",
        worker=0,
        muted=False,
        expelled=False,
        joined_at=at,
        left_at=None,
        wire_id=abs(hash(pid)) % 1000 + 1,
        node=node_name,
    )


def test_a_webinars_audience_spreads_by_load_over_capacity_and_its_panel_joins_the_presenter() -> (
    None
):
    roster = Roster.of(2, [person("host", "b", ssrc=1, role=Role.HOST)], "a")
    roster.sync(person("x", "b"))
    nodes = [node("a", load=50, capacity=100), node("b", load=40), node("c", load=30, capacity=200)]
    # Small meeting: everyone with the presenter.
    assert choose_node(nodes, meeting(), roster, Role.ATTENDEE, here="a", now=NOW) == "b"
    for i in range(10):
        roster.sync(person(f"p{i}", "c"))
    # Past SMALL_MEETING: the lowest stress (c: 30/200), the panel still on the presenter's.
    assert choose_node(nodes, meeting(), roster, Role.ATTENDEE, here="a", now=NOW) == "c"
    assert choose_node(nodes, meeting(), roster, Role.PANELIST, here="a", now=NOW) == "b"
    # Ties go to the node placing, then by name.
    even = [node("a", 10), node("b", 10), node("c", 10)]
    assert choose_node(even, meeting(), roster, Role.ATTENDEE, here="c", now=NOW) == "c"
    # Not a node that is draining, full, or silent for FRESH_S.
    closed = [
        node("a", draining=True),
        node("b", load=100, capacity=100),
        node("c", heartbeat_at=NOW - FRESH_S),
    ]
    assert choose_node(closed, meeting(), roster, Role.PANELIST, here="a", now=NOW) is None
    closed.append(node("d", load=99))
    assert choose_node(closed, meeting(), roster, Role.PANELIST, here="a", now=NOW) == "d"


def test_a_roster_counts_each_member_once_by_node_and_forgets_a_lost_node() -> None:
    roster = Roster(2, "a")
    ann, bob = person("ann", "a"), person("bob", "b")
    for row in (ann, ann, bob, person("old", None)):  # a change heard twice counts once
        roster.sync(row)
    assert roster.present == 3 and roster.nodes() == {"a", "b"}
    assert roster.per_worker == [2, 0]  # "old" joined before nodes: homed here
    assert roster.load_on("b", 3) == [1, 0, 0]
    roster.sync(dataclasses.replace(bob, left_at=5.0))
    roster.sync(dataclasses.replace(bob, left_at=5.0))
    assert roster.present == 2 and roster.nodes() == {"a"}
    roster.sync(person("cy", "c", ssrc=9, role=Role.HOST))
    assert roster.taken_ssrcs() == {9}
    assert roster.lost_node("c") == ["cy"]
    assert roster.present == 2 and roster.taken_ssrcs() == set()


def test_trunks_go_from_each_senders_node_to_each_other_node_up_with_members() -> None:
    box = KeyBox(bytes(32))
    host = person("host", "a", ssrc=0xAA, role=Role.HOST)
    roster = Roster.of(1, [host, person("x", "b"), person("y", "c"), person("z", "d")], "a")
    nodes = {n: node(n) for n in "abcd"}
    nodes["d"] = node("d", heartbeat_at=NOW - 10)  # gone
    wanted = wanted_trunks(roster, nodes, "a", NOW)
    assert [(s.id, edge) for s, edge in wanted] == [("host", "b"), ("host", "c")]
    assert wanted_trunks(roster, nodes, "b", NOW) == []  # b's senders: none
    trunks = [
        dataclasses.replace(
            new_trunk(meeting(), host, nodes[e], "a", box, NOW),
            out_wire_id=10 + k,
            in_wire_id=20 + k,
        )
        for k, (_, e) in enumerate(wanted)
    ]
    origin = trunk_ends(meeting(), trunks, roster, nodes, "a", box, NOW)
    edge = trunk_ends(meeting(), trunks, roster, nodes, "b", box, NOW)
    assert set(origin) == {10, 11} and set(edge) == {20}
    out, into = origin[10], edge[20]
    # The origin's end receives only the sender's stream, at the edge's worker, consented;
    # the edge's end sends its SSRCs; each direction's key is the other end's.
    assert out.payload_types == ((0xAA, 111),) and out.address_confirmed
    assert out.address == Address(nodes["b"].media_host, 40000 + 2 * ((7 - 1) % 2))
    assert out.role == Role.ATTENDEE and into.role == Role.PANELIST
    assert into.streams == host.streams and into.address is None
    assert (out.downlink, out.uplink) == (into.uplink, into.downlink)
    assert out.downlink != out.uplink
    # The sender leaves, or the edge goes: the ends go.
    roster.sync(dataclasses.replace(host, left_at=9.0))
    assert trunk_ends(meeting(), trunks, roster, nodes, "a", box, NOW) == {}
    roster.sync(host)
    nodes["b"] = node("b", heartbeat_at=NOW - 6)
    assert set(trunk_ends(meeting(), trunks, roster, nodes, "a", box, NOW)) == {11}


def test_notifications_parse() -> None:
    assert parse_notification("p 12 node-a 1") == ("p", 12, "node-a", True)
    assert parse_notification("m 4294967295") == ("m", 0xFFFFFFFF, "", False)
    assert parse_notification("t 3") == ("t", 3, "", False)
    for bad in ("", "p 12 node-a", "p 0 a 1", "m 4294967296", "m -1", "m ١٢", "x 1", "m 1 2"):
        with pytest.raises(ValueError):
            parse_notification(bad)


@given(st.text(max_size=80))
def test_any_payload_parses_or_is_refused_with_value_error(payload: str) -> None:
    try:
        kind, wire_id, _, _ = parse_notification(payload)
    except ValueError:
        return
    assert kind in ("p", "m", "t") and 0 < wire_id <= 0xFFFFFFFF
