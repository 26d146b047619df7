"""The storage layer (control.store): both backends, the SQLite file, and the portable schema.

Every behavioural test of the store runs against SqliteStore and PostgresStore (the `db`
fixture's two parameters), on a database of its own: the two backends must accept, refuse and
return exactly the same things. The tests of SQLite's file (WAL, its mode, a killed process,
the store's one thread) are SQLite only; those of connection URLs, passwords, several nodes on
one database, and the shared statements on a real server are PostgreSQL only.

PostgreSQL runs as a throwaway server for the session (tests/pg_server.py); without its
programs those tests skip, unless RELAY_REQUIRE_POSTGRES=1 makes them fail. Each test drives
the async store with asyncio.run (no pytest plugin).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from control.store import (
    CapacityReached,
    DuplicateKey,
    ForeignKeyViolation,
    IntegrityViolation,
    MeetingRow,
    ParticipantRow,
    PostgresStore,
    RegistrationErased,
    RegistrationRow,
    SchemaMismatch,
    SqliteStore,
    Store,
    StoreClosed,
    StoreError,
    confirmation,
    executor,
    meetings,
    nodes,
    numbering,
    open_store,
    participants,
    records,
    registrations,
    schema,
    trunks,
)
from control.store.confirmation import (
    CODE_EXPIRED,
    CONFIRMED,
    ERASED,
    FULL,
    NO_MORE_CODES,
    NOT_UNCONFIRMED,
    RENEWED,
    TOO_SOON,
    WRONG_CODE,
)
from control.store.executor import POSTGRESQL
from control.store.postgres import numbered, redact_url
from control.store.schema import SCHEMA_VERSION, schema_statements, schema_text
from control.store.values import new_id
from relay.vocabulary import Address, Mode, Role, Suite
from relay.wire import Stream
from tests.pg_server import PostgresServer, postgres_server  # noqa: F401

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

ROOT = Path(__file__).resolve().parent.parent
STATEMENTS = {
    name: value
    for module in (
        confirmation,
        meetings,
        nodes,
        numbering,
        participants,
        records,
        registrations,
        schema,
        trunks,
    )
    for name, value in vars(module).items()
    if name.isupper() and isinstance(value, str)
}
"""Every constant statement of the store, by name (the modules by entity hold their own)."""
SUITE = Suite.AES_CM_128_HMAC_SHA1_80
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def with_store(path: Path, body: Callable[[SqliteStore], Awaitable[T]]) -> T:
    """Open the SQLite store at path, run body(store), close it."""

    async def main() -> T:
        store = await SqliteStore.open(path)
        try:
            return await body(store)
        finally:
            await store.close()

    return run(main())


class Db:
    """One test's database on one backend: stores opened on it, and statements run on it
    behind the store's back (as another program would)."""

    def __init__(self, kind: str, target: Path | str) -> None:
        self.kind = kind  # 'sqlite' | 'postgresql'
        self.target = target  # the SQLite file, or the PostgreSQL URL

    def __repr__(self) -> str:
        return f"Db({self.kind!r}, {str(self.target)!r})"

    async def open(self) -> Store:
        if self.kind == "sqlite":
            return await SqliteStore.open(self.target)
        return await PostgresStore.open(str(self.target))

    def run(self, body: Callable[[Store], Awaitable[T]]) -> T:
        """Open a store on the database, run body(store), close it."""

        async def main() -> T:
            store = await self.open()
            try:
                return await body(store)
            finally:
                await store.close()

        return run(main())

    def raw(self, *statements: tuple[str, Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Run (statement, params) pairs, qmark style, in one transaction on a connection of
        the driver's own (foreign keys enforced); the rows of the last one."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.target)
            try:
                conn.execute("PRAGMA foreign_keys=ON")
                with conn:
                    rows: list[tuple[Any, ...]] = []
                    for statement, params in statements:
                        rows = conn.execute(statement, params).fetchall()
                return rows
            finally:
                conn.close()

        async def main() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(str(self.target))
            try:
                async with conn.transaction():
                    records: list[Any] = []
                    for statement, params in statements:
                        records = await conn.fetch(numbered(statement), *params)
                return [tuple(r) for r in records]
            finally:
                await conn.close()

        return run(main())

    @property
    def integrity_error(self) -> type[Exception]:
        """What the driver raises for a foreign key or check violation."""
        if self.kind == "sqlite":
            return sqlite3.IntegrityError
        return asyncpg.IntegrityConstraintViolationError  # type: ignore[no-any-return]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A fresh database, on each backend in turn."""
    if request.param == "sqlite":
        return Db("sqlite", tmp_path / "relay.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return Db("postgresql", server.new_database())


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> Db:
    """A fresh PostgreSQL database (PostgreSQL-only tests)."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return Db("postgresql", server.new_database())


async def a_meeting(store: Store, **kw: Any) -> MeetingRow:
    args: dict[str, Any] = {
        "title": "weekly",
        "mode": Mode.MEETING,
        "suite": SUITE,
        "password_hash": "$scrypt$n=16384$salt$hash",
        "host_key_digest": "ab" * 32,
    }
    args.update(kw)
    return await store.create_meeting(**args)


async def a_participant(store: Store, meeting_id: str, **kw: Any) -> ParticipantRow:
    args: dict[str, Any] = {
        "meeting_id": meeting_id,
        "name": "Ada",
        "role": Role.PANELIST,
        "uplink_sealed": b"\x01sealed-up",
        "downlink_sealed": b"\x02sealed-down",
        "worker": 0,
    }
    args.update(kw)
    return await store.add_participant(**args)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- meetings ---------------------------------------------------------------------------------


def test_meeting_round_trip(db: Db) -> None:
    async def body(store: Store) -> None:
        made = await a_meeting(
            store,
            title="All hands",
            mode="webinar",
            panelist_password_hash="$scrypt$panel",
            created_at=1_700_000_000.25,
        )
        assert made.state == "open" and not made.locked and not made.recording
        assert made.ended_at is None
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", made.id)  # random, URL-safe
        assert await store.get_meeting(made.id) == made
        assert await store.get_meeting("no-such-meeting") is None
        chosen = await a_meeting(store, meeting_id="room-1")
        assert chosen.id == "room-1" and await store.get_meeting("room-1") == chosen
        with pytest.raises(DuplicateKey, match="room-1"):
            await a_meeting(store, meeting_id="room-1")

    db.run(body)


def test_meetings_paged_newest_first(db: Db) -> None:
    async def body(store: Store) -> None:
        made = [await a_meeting(store, title=f"m{i}", created_at=1000.0 + i) for i in range(25)]
        newest_first = made[::-1]
        pages = [await store.list_meetings(limit=10, offset=o) for o in (0, 10, 20, 30)]
        assert [len(p) for p in pages] == [10, 10, 5, 0]
        assert pages[0] + pages[1] + pages[2] == newest_first
        assert await store.list_meetings(limit=3) == newest_first[:3]
        assert len(await store.list_meetings()) == 25  # default page is 50
        # Same created_at: the id decides, so pages never overlap or skip.
        same = [await a_meeting(store, meeting_id=f"tie-{i}", created_at=5000.0) for i in range(4)]
        top = await store.list_meetings(limit=2) + await store.list_meetings(limit=2, offset=2)
        assert [m.id for m in top] == [m.id for m in sorted(same, key=lambda m: m.id)][::-1]
        # By state.
        await store.update_meeting(made[3].id, state="ended", ended_at=2000.0)
        ended = await store.list_meetings(state="ended")
        assert [m.id for m in ended] == [made[3].id]
        assert made[3].id not in {m.id for m in await store.list_meetings(state="open", limit=99)}

    db.run(body)


def test_update_meeting_changes_only_what_is_given(db: Db) -> None:
    async def body(store: Store) -> None:
        made = await a_meeting(store, title="before", created_at=10.0)
        locked = await store.update_meeting(made.id, locked=True)
        assert locked is not None
        assert locked.locked and locked.title == "before" and not locked.recording
        both = await store.update_meeting(made.id, title="after", recording=True)
        assert both is not None
        assert (both.title, both.locked, both.recording) == ("after", True, True)
        unlocked = await store.update_meeting(made.id, locked=False)
        assert unlocked is not None and not unlocked.locked and unlocked.recording
        ended = await store.update_meeting(made.id, state="ended", ended_at=99.5)
        assert ended is not None and (ended.state, ended.ended_at) == ("ended", 99.5)
        # Nothing given: the row as it is; everything not named stays.
        assert await store.update_meeting(made.id) == ended
        assert await store.get_meeting(made.id) == ended
        assert ended.created_at == 10.0 and ended.password_hash == made.password_hash
        assert await store.update_meeting("unknown", locked=True) is None
        assert await store.update_meeting("unknown") is None

    db.run(body)


def test_meeting_features_added_and_unioned(db: Db) -> None:
    async def body(store: Store) -> str:
        made = await a_meeting(store)
        assert made.features == ()
        first = await store.update_meeting(made.id, add_features=["recording"])
        assert first is not None and first.features == ("recording",)
        # Union, sorted, each name once; together with other changes in one call.
        both = await store.update_meeting(
            made.id, locked=True, add_features=("recording", "locked", "locked")
        )
        assert both is not None and both.features == ("locked", "recording") and both.locked
        # Switching off, or adding nothing, removes nothing.
        off = await store.update_meeting(made.id, locked=False, recording=False, add_features=[])
        assert off is not None and off.features == ("locked", "recording") and not off.locked
        assert await store.update_meeting(made.id, title="t", add_features=None) == (
            await store.get_meeting(made.id)
        )
        more = await store.update_meeting(made.id, add_features=["breakout_rooms"])
        assert more is not None and more.features == ("breakout_rooms", "locked", "recording")
        assert await store.get_meeting(made.id) == more
        # Other meetings are untouched; an unknown one is None.
        other = await a_meeting(store)
        assert (await store.get_meeting(other.id)) == other and other.features == ()
        assert await store.update_meeting("unknown", add_features=["locked"]) is None
        # Many writers adding at once (several connections on PostgreSQL): none is lost.
        names = [f"f_{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(40)]
        await asyncio.gather(*(store.update_meeting(other.id, add_features=[n]) for n in names))
        final = await store.get_meeting(other.id)
        assert final is not None and final.features == tuple(sorted(names))
        return made.id

    made_id = db.run(body)
    # Stored as usage_records.features is: a JSON array, sorted.
    stored = db.raw(("SELECT features FROM meetings WHERE id = ?", (made_id,)))
    assert stored == [('["breakout_rooms", "locked", "recording"]',)]


def test_delete_meeting_removes_participants_keeps_usage(db: Db) -> None:
    async def body(store: Store) -> None:
        gone, kept = await a_meeting(store), await a_meeting(store)
        p_gone = await a_participant(store, gone.id)
        p_kept = await a_participant(store, kept.id)
        await store.append_usage(
            meeting_id=gone.id,
            started_at=1.0,
            ended_at=2.0,
            total_participants=1,
            peak_participants=1,
            participant_minutes=1 / 60,
        )
        assert await store.delete_meeting(gone.id) is True
        assert await store.delete_meeting(gone.id) is False
        assert await store.get_meeting(gone.id) is None
        assert await store.get_participant(p_gone.id) is None
        assert await store.list_participants(gone.id) == []
        assert await store.get_participant(p_kept.id) == p_kept
        assert [u.meeting_id for u in await store.list_usage()] == [gone.id]

    db.run(body)


# --- participants -----------------------------------------------------------------------------


def test_participant_round_trip(db: Db) -> None:
    async def body(store: Store) -> str:
        meeting = await a_meeting(store, mode=Mode.WEBINAR)
        streams = (Stream(1234), Stream(5678, "video", 96, "VP8/90000"))
        made = await a_participant(
            store,
            meeting.id,
            name="Grace Hopper",
            role=Role.ATTENDEE,
            streams=streams,
            receive_at=Address("192.0.2.7", 40000),
            uplink_sealed=bytes(range(256)),  # every byte value survives
            downlink_sealed=b"\x00" * 46,
            worker=3,
            joined_at=1234.5,
        )
        got = await store.get_participant(made.id)
        assert got == made
        assert got.uplink_sealed == bytes(range(256)) and isinstance(got.uplink_sealed, bytes)
        assert got.streams == streams
        assert (got.role, got.worker, got.receive_at, got.joined_at) == (
            Role.ATTENDEE,
            3,
            Address("192.0.2.7", 40000),
            1234.5,
        )
        assert type(got.role) is Role and type(got.receive_at) is Address
        assert not got.muted and not got.expelled and got.left_at is None
        assert await store.get_participant(made.id, meeting_id=meeting.id) == made
        assert await store.get_participant("nobody") is None
        assert made.wire_id > 0 and await store.get_participant_by_wire_id(made.wire_id) == made
        assert await store.get_participant_by_wire_id(made.wire_id + 1000) is None
        plain = await a_participant(store, meeting.id)
        assert plain.streams == () and plain.receive_at is None
        v6 = await a_participant(
            store, meeting.id, receive_at=Address("2001:db8::1", 5004), joined_at=9e9
        )
        assert await store.list_participants(meeting.id) == [made, plain, v6]
        # Logged rows carry no personal data and no key material.
        text = repr(got)
        assert "Grace" not in text and "192.0.2.7" not in text and "sealed" not in text
        assert "scrypt" not in repr(meeting)
        return meeting.id

    meeting_id = db.run(body)
    # Stored as text: the streams a JSON array, the address "ip:port" ("[v6]:port").
    query = "SELECT role, streams, receive_at FROM participants WHERE meeting_id = ?"
    assert set(db.raw((query, (meeting_id,)))) == {
        (
            "attendee",
            '[{"ssrc": 1234, "kind": "audio", "pt": 111, "codec": "opus/48000/2"}, '
            '{"ssrc": 5678, "kind": "video", "pt": 96, "codec": "VP8/90000"}]',
            "192.0.2.7:40000",
        ),
        ("panelist", "[]", None),
        ("panelist", "[]", "[2001:db8::1]:5004"),
    }


def test_update_participant(db: Db) -> None:
    async def body(store: Store) -> None:
        meeting = await a_meeting(store, mode="webinar")
        made = await a_participant(store, meeting.id, role="attendee")
        muted = await store.update_participant(made.id, muted=True)
        assert muted is not None and muted.muted and not muted.expelled
        assert muted.role == "attendee" and muted.uplink_sealed == made.uplink_sealed
        # Promotion issues new keys: role and both sealed keys change in one write.
        promoted = await store.update_participant(
            made.id, role="panelist", uplink_sealed=b"new-up", downlink_sealed=b"new-down"
        )
        assert promoted is not None
        assert (promoted.role, promoted.uplink_sealed, promoted.downlink_sealed) == (
            "panelist",
            b"new-up",
            b"new-down",
        )
        assert promoted.muted  # untouched
        expelled = await store.update_participant(made.id, expelled=True, left_at=77.0)
        assert expelled is not None and expelled.expelled and expelled.left_at == 77.0
        unmuted = await store.update_participant(made.id, muted=False)
        assert unmuted is not None and not unmuted.muted and unmuted.expelled
        assert await store.get_participant(made.id) == unmuted
        assert (unmuted.name, unmuted.joined_at, unmuted.worker) == (
            made.name,
            made.joined_at,
            made.worker,
        )
        assert await store.update_participant(made.id) == unmuted
        assert await store.update_participant("nobody", muted=True) is None

    db.run(body)


def test_present_only_and_participant_paging(db: Db) -> None:
    async def body(store: Store) -> None:
        meeting = await a_meeting(store)
        people = [await a_participant(store, meeting.id, joined_at=100.0 + i) for i in range(7)]
        await store.update_participant(people[2].id, left_at=200.0)
        await store.update_participant(people[5].id, left_at=201.0)
        present = await store.list_participants(meeting.id, present_only=True)
        assert [p.id for p in present] == [people[i].id for i in (0, 1, 3, 4, 6)]
        assert len(await store.list_participants(meeting.id)) == 7
        page = await store.list_participants(meeting.id, limit=3, offset=3)
        assert [p.id for p in page] == [p.id for p in people[3:6]]
        rest = await store.list_participants(meeting.id, offset=5)
        assert [p.id for p in rest] == [p.id for p in people[5:]]

    db.run(body)


def test_two_meetings_participants_kept_apart(db: Db) -> None:
    async def body(store: Store) -> None:
        a, b = await a_meeting(store, title="a"), await a_meeting(store, title="b")
        in_a = [
            await a_participant(store, a.id, name=f"a{i}", joined_at=float(i)) for i in range(3)
        ]
        in_b = [
            await a_participant(store, b.id, name=f"b{i}", joined_at=float(i)) for i in range(2)
        ]
        assert await store.list_participants(a.id) == in_a
        assert await store.list_participants(b.id) == in_b
        assert await store.get_participant(in_a[0].id, meeting_id=b.id) is None
        assert await store.get_participant(in_b[0].id, meeting_id=b.id) == in_b[0]
        await store.update_participant(in_a[0].id, expelled=True)
        assert not any(p.expelled for p in await store.list_participants(b.id))
        assert await store.list_participants("unknown") == []

    db.run(body)


def test_mark_gone_ends_only_those_present_in_that_meeting(db: Db) -> None:
    async def body(store: Store) -> None:
        a, b = await a_meeting(store, title="a"), await a_meeting(store, title="b")
        in_a = [await a_participant(store, a.id, joined_at=float(i)) for i in range(4)]
        other = await a_participant(store, b.id, joined_at=1.0)
        await store.update_participant(in_a[1].id, left_at=10.0)
        assert await store.mark_gone(a.id, left_at=50.0) == 3
        left = {p.id: p.left_at for p in await store.list_participants(a.id)}
        assert left == {in_a[0].id: 50.0, in_a[1].id: 10.0, in_a[2].id: 50.0, in_a[3].id: 50.0}
        assert (await store.list_participants(b.id)) == [other]  # another meeting: untouched
        assert await store.mark_gone(a.id, left_at=60.0) == 0

    db.run(body)


def test_foreign_key_violation_is_a_clear_error(db: Db) -> None:
    async def body(store: Store) -> None:
        with pytest.raises(ForeignKeyViolation, match=r"meeting 'no-such-meeting'.*no such"):
            await a_participant(store, "no-such-meeting")
        # It is part of the hierarchy callers catch, not sqlite3's.
        with pytest.raises(IntegrityViolation):
            await a_participant(store, "no-such-meeting")
        # The failed write left nothing behind and the store goes on working.
        meeting = await a_meeting(store)
        assert await a_participant(store, meeting.id)
        assert await store.list_participants("no-such-meeting") == []

    db.run(body)
    # The database enforces it, not only the store's code.
    with pytest.raises(db.integrity_error, match="(?i)foreign key"):
        db.raw(
            (
                "INSERT INTO participants (id, meeting_id, name, role, uplink_sealed, "
                "downlink_sealed, worker, joined_at, wire_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ("x", "nope", "n", "host", b"\x01", b"\x02", 0, 1.0, 99),
            )
        )


# --- usage records ----------------------------------------------------------------------------


def test_usage_records_append_only_and_per_meeting(db: Db) -> None:
    async def body(store: Store) -> None:
        a, b = await a_meeting(store), await a_meeting(store)
        first = await store.append_usage(
            meeting_id=a.id,
            started_at=100.0,
            ended_at=700.0,
            total_participants=12,
            peak_participants=9,
            participant_minutes=87.5,
            features=["webinar", "recording"],
            packets_in=10_000,
            packets_out=90_000,
            bytes_in=1 << 40,  # beyond 32 bits
            bytes_out=(1 << 62) + 1,
        )
        assert first.id == 1 and first.duration_s == 600.0
        assert first.features == ("webinar", "recording")
        second = await store.append_usage(
            meeting_id=b.id,
            started_at=5.0,
            ended_at=6.0,
            total_participants=2,
            peak_participants=2,
            participant_minutes=2 / 60,
            duration_s=1.0,
        )
        third = await store.append_usage(
            meeting_id=a.id,
            started_at=800.0,
            ended_at=800.0,
            total_participants=0,
            peak_participants=0,
            participant_minutes=0.0,
        )
        assert (second.id, third.id) == (2, 3) and second.features == ()
        assert await store.list_usage() == [first, second, third]
        assert await store.list_usage(meeting_id=a.id) == [first, third]
        assert await store.list_usage(meeting_id=b.id) == [second]
        assert await store.list_usage(meeting_id="other") == []
        assert await store.list_usage(limit=1, offset=1) == [second]
        # There is no API to change or remove one.
        usage_api = {n for n in dir(type(store)) if "usage" in n and not n.startswith("_")}
        assert usage_api == {"append_usage", "list_usage"}
        assert {n for n in dir(Store) if "usage" in n and not n.startswith("_")} == usage_api
        # The schema's rules (control/store/schema.sql): no end before the start, no
        # negative count.
        with pytest.raises(IntegrityViolation, match="usage record"):
            await store.append_usage(
                meeting_id=a.id,
                started_at=10.0,
                ended_at=5.0,
                total_participants=0,
                peak_participants=0,
                participant_minutes=0.0,
            )
        with pytest.raises(IntegrityViolation, match="usage record"):
            await store.append_usage(
                meeting_id=a.id,
                started_at=1.0,
                ended_at=2.0,
                total_participants=0,
                peak_participants=0,
                participant_minutes=0.0,
                packets_in=-1,
            )
        assert len(await store.list_usage()) == 3

    db.run(body)


# --- routing log ------------------------------------------------------------------------------


def test_routing_log_numbers_and_reads(db: Db) -> None:
    async def first(store: Store) -> None:
        assert await store.last_routing_seq() == 0
        assert await store.routing_updates_after(0) == []
        seqs = [
            await store.append_routing_update(json.dumps({"kind": "k", "n": i})) for i in range(5)
        ]
        assert seqs == [1, 2, 3, 4, 5]
        assert await store.last_routing_seq() == 5
        after = await store.routing_updates_after(2)
        assert [u.seq for u in after] == [3, 4, 5]
        assert [json.loads(u.body)["n"] for u in after] == [2, 3, 4]
        assert [u.seq for u in await store.routing_updates_after(0, limit=2)] == [1, 2]
        assert await store.routing_updates_after(5) == []
        # A caller that numbers its own updates (RoutingState) stores them under its numbers.
        assert await store.append_routing_update("{}", seq=9, created_at=42.0) == 9
        with pytest.raises(DuplicateKey, match="not after"):
            await store.append_routing_update("{}", seq=9)
        with pytest.raises(DuplicateKey):
            await store.append_routing_update("{}", seq=3)
        assert await store.last_routing_seq() == 9

    async def second(store: Store) -> None:
        # A restarted control plane continues the sequence.
        assert await store.last_routing_seq() == 9
        assert await store.append_routing_update('{"kind": "after restart"}') == 10
        tail = await store.routing_updates_after(5)
        assert [(u.seq, u.created_at) for u in tail[:1]] == [(9, 42.0)]
        assert [u.seq for u in tail] == [9, 10]

    db.run(first)
    db.run(second)
    assert db.run(lambda s: s.last_routing_seq()) == 10


# --- reopening -------------------------------------------------------------------------------


# --- registrations and the audit log (version 4) ----------------------------------------------


async def a_registration(store: Store, meeting_id: str, **kw: Any) -> RegistrationRow:
    args: dict[str, Any] = {
        "meeting_id": meeting_id,
        "status": "approved",
        "sealed": b"\x10sealed-fields",
        "wrapped_key": b"\x20wrapped-key",
        "email_tag": "tag-" + new_id(),
        "token_digest": "digest-" + new_id(),
    }
    args.update(kw)
    return await store.add_registration(**args)


def test_registration_round_trip_and_updates(db: Db) -> None:
    # Long enough that no random id in the repr can contain it by chance (as "d1" once did).
    TOKEN_DIGEST = "digest-of-the-first-token"  # noqa: N806

    async def body(store: Store) -> None:
        m = await a_meeting(store)
        made = await a_registration(
            store, m.id, registration_id="r1", token_digest=TOKEN_DIGEST, created_at=5.0
        )
        assert (made.id, made.meeting_id, made.status) == ("r1", m.id, "approved")
        assert (made.created_at, made.updated_at, made.erased_at) == (5.0, 5.0, None)
        assert made.participant_id is None
        assert await store.get_registration("r1") == made
        assert await store.get_registration("r1", meeting_id=m.id) == made
        assert await store.get_registration("r1", meeting_id="other") is None
        assert await store.get_registration("nope") is None
        # nothing sealed shows in a repr
        for secret in ("sealed", "wrapped", TOKEN_DIGEST, made.email_tag or "?"):
            assert secret not in repr(made)
        assert await store.get_registration_by_token(m.id, TOKEN_DIGEST) == made
        assert await store.get_registration_by_token("other", TOKEN_DIGEST) is None

        changed = await store.update_registration(
            "r1", status="pending", sealed=b"\x11new", email_tag="t2", updated_at=6.0
        )
        assert changed is not None and changed.status == "pending" and changed.sealed == b"\x11new"
        assert (changed.email_tag, changed.updated_at, changed.token_digest) == (
            "t2",
            6.0,
            TOKEN_DIGEST,
        )
        assert await store.get_registration_by_token(m.id, TOKEN_DIGEST) is None  # not approved
        cleared = await store.update_registration("r1", clear_token=True, updated_at=7.0)
        assert cleared is not None and cleared.token_digest is None
        again = await store.update_registration(
            "r1", status="approved", token_digest="d2", updated_at=8.0
        )
        assert again is not None and again.token_digest == "d2"
        assert await store.update_registration("nope", status="approved") is None
        with pytest.raises(ValueError, match="not both"):
            await store.update_registration("r1", token_digest="x", clear_token=True)
        with pytest.raises(ForeignKeyViolation, match="no such meeting"):
            await a_registration(store, "nope")
        # one registration per email tag and meeting; another meeting may have it
        with pytest.raises(DuplicateKey):
            await a_registration(store, m.id, email_tag="t2")
        with pytest.raises(DuplicateKey):
            await store.update_registration((await a_registration(store, m.id)).id, email_tag="t2")
        other = await a_meeting(store, title="other")
        await a_registration(store, other.id, email_tag="t2")
        listed = await store.list_registrations(m.id)
        assert [r.id for r in listed][0] == "r1" and len(listed) == 2
        assert len(await store.list_registrations(m.id, limit=1, offset=1)) == 1
        assert await store.list_registrations("nope") == []

    db.run(body)


def test_registration_token_used_once(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        r = await a_registration(store, m.id, token_digest="d")
        uses = await asyncio.gather(
            *(
                store.use_registration_token(
                    meeting_id=m.id, token_digest="d", participant_id=f"p{i}", used_at=9.0
                )
                for i in range(5)
            )
        )
        won = [u for u in uses if u is not None]
        assert len(won) == 1 and won[0].id == r.id and won[0].token_digest is None
        assert won[0].participant_id in {f"p{i}" for i in range(5)}
        assert won[0].updated_at == 9.0
        assert await store.get_registration_by_token(m.id, "d") is None
        pending = await a_registration(store, m.id, status="pending", token_digest="e")
        used = await store.use_registration_token(
            meeting_id=m.id, token_digest="e", participant_id="p", used_at=1.0
        )
        assert used is None and (await store.get_registration(pending.id)) == pending

    db.run(body)


def test_registration_capacity_holds_under_concurrency(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        tries = await asyncio.gather(
            *(a_registration(store, m.id, capacity=3) for _ in range(8)),
            return_exceptions=True,
        )
        made = [t for t in tries if isinstance(t, RegistrationRow)]
        full = [t for t in tries if isinstance(t, CapacityReached)]
        assert (len(made), len(full)) == (3, 5)
        assert await store.count_registrations(m.id) == 3
        assert await store.count_registrations("nope") == 0
        assert "capacity" in str(full[0])
        # rejected and erased registrations leave their place
        await store.update_registration(made[0].id, status="rejected")
        await store.erase_registrations(registration_ids=[made[1].id])
        await a_registration(store, m.id, capacity=3)
        await a_registration(store, m.id, capacity=3)
        with pytest.raises(CapacityReached):
            await a_registration(store, m.id, capacity=3)
        await a_registration(store, m.id)  # no capacity given: not counted
        with pytest.raises(ForeignKeyViolation, match="no such meeting"):
            await a_registration(store, "nope", capacity=3)

    db.run(body)


# --- confirming a registration's email (version 5) --------------------------------------------


async def an_unconfirmed(
    store: Store, meeting_id: str, code: str = "c0de", expires: float = 100.0, **kw: Any
) -> RegistrationRow:
    return await a_registration(
        store,
        meeting_id,
        status="unconfirmed",
        token_digest=None,
        confirm_digest=code,
        confirm_expires_at=expires,
        created_at=kw.pop("created_at", 1.0),
        **kw,
    )


def test_unconfirmed_registrations_confirm_once_with_their_code(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        r = await an_unconfirmed(store, m.id, "c0de")
        assert (r.confirm_attempts, r.confirm_sends, r.confirm_sent_at) == (0, 1, 1.0)
        assert "c0de" not in repr(r)
        assert await store.count_registrations(m.id) == 0  # not counted until confirmed

        def confirm(code: str, now: float = 10.0, **kw: Any) -> Any:
            args: dict[str, Any] = {
                "meeting_id": m.id,
                "code_digest": code,
                "now": now,
                "max_attempts": 3,
                "status": "approved",
                "token_digest": "tok",
            }
            return store.confirm_registration(r.id, **{**args, **kw})

        wrong = await confirm("bad0")
        assert wrong.outcome == WRONG_CODE and wrong.row.confirm_attempts == 1
        assert wrong.row.status == "unconfirmed" and wrong.row.confirm_digest == "c0de"
        assert (await confirm("c0de", now=100.0)).outcome == CODE_EXPIRED  # at its expiry
        assert await confirm("c0de", meeting_id="other") is None
        assert (
            await store.confirm_registration(
                "nope",
                meeting_id=m.id,
                code_digest="c0de",
                now=1.0,
                max_attempts=3,
                status="pending",
            )
            is None
        )
        done = await confirm("c0de")
        assert done.outcome == CONFIRMED
        assert (done.row.status, done.row.token_digest, done.row.confirm_digest) == (
            "approved",
            "tok",
            None,
        )
        assert await store.get_registration_by_token(m.id, "tok") == done.row
        assert (await confirm("c0de")).outcome == NOT_UNCONFIRMED
        assert await store.count_registrations(m.id) == 1
        with pytest.raises(ValueError, match="token_digest"):
            await confirm("c0de", status="pending")  # a pending one has no token
        with pytest.raises(ValueError, match="unconfirmed"):
            await a_registration(store, m.id, confirm_digest="x", confirm_expires_at=1.0)
        with pytest.raises(ValueError, match="unconfirmed"):
            await a_registration(store, m.id, status="unconfirmed", token_digest=None)

    db.run(body)


def test_wrong_codes_use_a_code_up_and_new_codes_are_limited(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        r = await an_unconfirmed(store, m.id, "aaaa", expires=1000.0)

        async def attempt(code: str, now: float = 10.0) -> str:
            step = await store.confirm_registration(
                r.id, meeting_id=m.id, code_digest=code, now=now, max_attempts=2, status="pending"
            )
            assert step is not None
            return step.outcome

        # two wrong tries at once: both counted, and the code is used up
        outcomes = await asyncio.gather(attempt("bbbb"), attempt("cccc"))
        assert outcomes == [WRONG_CODE, WRONG_CODE]
        used = await store.get_registration(r.id)
        assert used is not None and used.confirm_digest is None and used.confirm_attempts == 2
        assert await attempt("aaaa") == CODE_EXPIRED  # the right code, too late

        async def renew(code: str, now: float) -> str:
            step = await store.renew_confirmation(
                r.id,
                meeting_id=m.id,
                code_digest=code,
                expires_at=now + 100,
                now=now,
                min_interval=60.0,
                max_sends=3,
            )
            assert step is not None
            return step.outcome

        assert await renew("dddd", 30.0) == TOO_SOON  # the first was sent at 1.0
        assert await renew("dddd", 61.0) == RENEWED
        fresh = await store.get_registration(r.id)
        assert fresh is not None
        assert (fresh.confirm_digest, fresh.confirm_attempts, fresh.confirm_sends) == (
            "dddd",
            0,
            2,
        )
        assert (fresh.confirm_sent_at, fresh.confirm_expires_at) == (61.0, 161.0)
        assert await renew("eeee", 121.0) == RENEWED
        assert await renew("ffff", 999.0) == NO_MORE_CODES
        assert await attempt("eeee", 130.0) == CONFIRMED
        assert await renew("ffff", 2000.0) == NOT_UNCONFIRMED
        await store.erase_registrations(registration_ids=[r.id])
        assert await attempt("eeee") == ERASED

    db.run(body)


def test_a_confirmation_takes_a_place_only_if_one_is_left(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        waiting = [await an_unconfirmed(store, m.id, f"c{i}") for i in range(5)]
        await a_registration(store, m.id, capacity=3)  # unconfirmed ones take no place

        async def confirm(r: RegistrationRow, i: int) -> str:
            step = await store.confirm_registration(
                r.id,
                meeting_id=m.id,
                code_digest=f"c{i}",
                now=5.0,
                max_attempts=3,
                status="approved",
                token_digest=f"t{i}",
                capacity=3,
            )
            assert step is not None
            return step.outcome

        outcomes = await asyncio.gather(*(confirm(r, i) for i, r in enumerate(waiting)))
        assert sorted(outcomes) == [CONFIRMED, CONFIRMED, FULL, FULL, FULL]
        assert await store.count_registrations(m.id) == 3
        still = [await store.get_registration(r.id) for r in waiting]
        full = [r for r in still if r is not None and r.status == "unconfirmed"]
        assert len(full) == 3 and all(r.confirm_digest is not None for r in full)

    db.run(body)


def test_registering_again_replaces_an_unconfirmed_registration(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        first = await an_unconfirmed(store, m.id, email_tag="same")
        again = await an_unconfirmed(store, m.id, email_tag="same")
        assert await store.get_registration(first.id) is None
        assert [r.id for r in await store.list_registrations(m.id)] == [again.id]
        step = await store.confirm_registration(
            again.id,
            meeting_id=m.id,
            code_digest="c0de",
            now=2.0,
            max_attempts=1,
            status="pending",
        )
        assert step is not None and step.outcome == CONFIRMED
        with pytest.raises(DuplicateKey):  # a confirmed one is kept
            await an_unconfirmed(store, m.id, email_tag="same")
        assert [r.id for r in await store.list_registrations(m.id)] == [again.id]

    db.run(body)


def test_unconfirmed_registrations_are_discarded_and_purged(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        old = await an_unconfirmed(store, m.id, created_at=10.0)
        new = await an_unconfirmed(store, m.id, created_at=20.0)
        gone = await an_unconfirmed(store, m.id, created_at=30.0)
        kept = await a_registration(store, m.id, created_at=5.0)
        assert await store.discard_unconfirmed(gone.id) is True
        assert await store.discard_unconfirmed(gone.id) is False
        assert await store.discard_unconfirmed(kept.id) is False  # not unconfirmed
        assert await store.purge_unconfirmed(20.0) == 1
        assert [r.id for r in await store.list_registrations(m.id)] == [kept.id, new.id]
        assert old.id not in {r.id for r in await store.list_registrations(m.id)}
        assert await store.purge_unconfirmed(1000.0) == 1
        assert await store.purge_unconfirmed(1000.0) == 0

    db.run(body)


def test_sqlite_purged_registrations_leave_nothing_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    wrapped = b"WRAPPED-UNCONFIRMED-" + os.urandom(20)
    replaced = b"WRAPPED-REPLACED-" + os.urandom(20)

    async def main() -> None:
        async with await SqliteStore.open(path) as store:
            m = await a_meeting(store)
            await an_unconfirmed(store, m.id, wrapped_key=wrapped, created_at=1.0)
            await an_unconfirmed(store, m.id, wrapped_key=replaced, email_tag="t")
            await an_unconfirmed(store, m.id, email_tag="t")  # replaces the one before
            assert wrapped in _file_bytes(path) and replaced not in _file_bytes(path)
            assert await store.purge_unconfirmed(2.0) >= 1
            assert wrapped not in _file_bytes(path)

    run(main())


def test_erase_registrations_overwrites_and_scrubs_the_participant(db: Db) -> None:
    async def body(store: Store) -> None:
        m1, m2 = await a_meeting(store), await a_meeting(store, title="two")
        p = await a_participant(
            store, m1.id, name="Grace Hopper", receive_at=Address("192.0.2.1", 5004)
        )
        await store.update_participant(p.id, left_at=5.0)
        here = await a_participant(
            store, m1.id, name="Still Here", receive_at=Address("192.0.2.2", 5004)
        )
        r0 = await a_registration(store, m1.id, token_digest="d0")
        await store.use_registration_token(
            meeting_id=m1.id, token_digest="d0", participant_id=here.id, used_at=3.0
        )
        keep = await a_participant(store, m1.id, name="Alan Turing")
        r1 = await a_registration(store, m1.id, email_tag="same", token_digest="d1")
        await store.use_registration_token(
            meeting_id=m1.id, token_digest="d1", participant_id=p.id, used_at=3.0
        )
        r2 = await a_registration(store, m2.id, email_tag="same")
        r3 = await a_registration(store, m2.id, email_tag="else")
        erased = await store.erase_registrations(email_tag="same", erased_at=10.0)
        assert sorted(r.id for r in erased) == sorted([r1.id, r2.id])
        for row in erased:
            assert (row.sealed, row.wrapped_key, row.email_tag, row.token_digest) == (
                b"",
                None,
                None,
                None,
            )
            assert (row.erased_at, row.updated_at) == (10.0, 10.0)
            assert await store.get_registration(row.id) == row
        assert (await store.get_registration(r1.id)).participant_id == p.id  # type: ignore[union-attr]
        scrubbed = await store.get_participant(p.id)
        assert scrubbed is not None and scrubbed.name == "" and scrubbed.receive_at is None
        await store.erase_registrations(registration_ids=[r0.id])
        present = await store.get_participant(here.id)
        # present: the name goes, the address the workers send to stays until it leaves
        assert present is not None and present.name == ""
        assert present.receive_at == Address("192.0.2.2", 5004)
        assert (await store.get_participant(keep.id)).name == "Alan Turing"  # type: ignore[union-attr]
        assert await store.get_registration(r3.id) == r3
        # erased once: nothing more to erase, and an erased registration never changes
        assert await store.erase_registrations(email_tag="same") == []
        assert await store.erase_registrations(registration_ids=[r1.id, "nope"]) == []
        with pytest.raises(RegistrationErased):
            await store.update_registration(r1.id, status="approved", sealed=b"x")
        assert await store.get_registration(r1.id) == next(r for r in erased if r.id == r1.id)
        # the person may register again
        await a_registration(store, m1.id, email_tag="same")
        by_id = await store.erase_registrations(registration_ids=[r3.id])
        assert [r.id for r in by_id] == [r3.id]

    db.run(body)


def test_delete_meeting_deletes_its_registrations(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        r = await a_registration(store, m.id)
        assert await store.delete_meeting(m.id)
        assert await store.get_registration(r.id) is None

    db.run(body)


def test_meeting_registration_settings(db: Db) -> None:
    async def body(store: Store) -> None:
        m = await a_meeting(store)
        assert m.registration is None
        settings = json.dumps({"enabled": True, "capacity": 3})
        changed = await store.update_meeting(m.id, registration=settings)
        assert changed is not None and changed.registration == settings
        assert (await store.get_meeting(m.id)) == changed

    db.run(body)


def test_audit_log_appends_in_order(db: Db) -> None:
    async def body(store: Store) -> None:
        entries = await asyncio.gather(
            *(
                store.append_audit(
                    actor="host", action="meeting.lock", meeting_id=f"m{i % 2}", at=float(i)
                )
                for i in range(10)
            )
        )
        assert sorted(e.id for e in entries) == list(range(1, 11))
        first = await store.append_audit(
            actor="operator",
            action="registration.erase",
            meeting_id="m0",
            target="r1",
            detail='{"by": "email"}',
            at=20.0,
        )
        assert (first.id, first.actor, first.target, first.detail) == (
            11,
            "operator",
            "r1",
            '{"by": "email"}',
        )
        everything = await store.list_audit()
        assert [e.id for e in everything] == list(range(1, 12))
        ones = sorted(e.id for e in entries if e.meeting_id == "m1")
        assert len(ones) == 5 and [e.id for e in await store.list_audit(meeting_id="m1")] == ones
        assert [e.id for e in await store.list_audit(limit=2, offset=3)] == [4, 5]
        system = await store.append_audit(actor="system", action="meeting.end")
        assert system.meeting_id is None and system.detail == "{}"
        assert len(await store.list_audit()) == 12

    db.run(body)


def test_migration_from_version_3(db: Db) -> None:
    """A version 3 database gets meetings.registration (NULL everywhere) and the registrations
    and audit_log tables; every row stays as it was, and the store goes on from there."""
    v3 = _version_3_schema(db.kind)
    assert len(v3) == len(_version_6_schema(db.kind)) - 7
    assert V3_MEETING_COLUMNS.endswith("features")
    db.raw(
        *[(s, ()) for s in v3],
        ("INSERT INTO schema_version (version) VALUES (?)", (3,)),
        (
            f"INSERT INTO meetings ({V3_MEETING_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("m0", "t", "meeting", SUITE, "h", None, "d", "open", True, False, 1.0, None, 1)
            + ('["locked"]',),
        ),
        ("INSERT INTO wire_ids (name, last_id) VALUES (?, ?)", ("meetings", 1)),
    )
    before = db.raw((f"SELECT {V3_MEETING_COLUMNS} FROM meetings", ()))

    async def body(store: Store) -> None:
        m = await store.get_meeting("m0")
        assert m is not None and m.registration is None and m.features == ("locked",)
        await a_registration(store, "m0")
        await store.append_audit(actor="operator", action="meeting.create", meeting_id="m0")
        assert len(await store.list_registrations("m0")) == 1

    db.run(body)
    assert db.raw((f"SELECT {V3_MEETING_COLUMNS} FROM meetings", ())) == before
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]
    assert db.raw(("SELECT COUNT(*) FROM audit_log", ())) == [(1,)]


# The registrations table as version 4 made it (before 'unconfirmed' and the confirmation
# columns of version 5), exactly as schema.sql had it.
V4_REGISTRATIONS = """CREATE TABLE IF NOT EXISTS registrations (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    sealed ${binary} NOT NULL,
    wrapped_key ${binary},
    email_tag TEXT,
    token_digest TEXT,
    participant_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    erased_at DOUBLE PRECISION,
    CHECK (erased_at IS NULL OR (wrapped_key IS NULL AND email_tag IS NULL))
)"""


V6_PARTICIPANT_COLUMNS = participants.PARTICIPANT_COLUMNS.removesuffix(", node")


def _version_6_schema(dialect: str) -> list[str]:
    """The schema as version 6 had it: no participants.node, no routing_log.node and
    node_seq (nor their index), no trunks table."""
    statements = []
    for statement in schema_statements(dialect):
        if " trunks " in statement or "routing_log_by_node" in statement:
            continue
        statement = re.sub(r",\n\s*node_seq BIGINT[^\n]*", "", statement)
        statement = re.sub(r",\n\s*node TEXT[^\n]*", "", statement)
        statements.append(statement)
    return statements


def _version_4_schema(dialect: str) -> list[str]:
    """The schema as version 4 had it: version 5's with the registrations table of V4."""
    binary = {"sqlite": "BLOB", "postgresql": "BYTEA"}[dialect]
    old = V4_REGISTRATIONS.replace("${binary}", binary)
    statements = []
    for statement in _version_6_schema(dialect):
        if statement.startswith("CREATE TABLE IF NOT EXISTS registrations ("):
            statement = old
        statements.append(statement)
    assert old in statements
    return statements


def test_migration_from_version_4(db: Db) -> None:
    """A version 4 database's registrations may become 'unconfirmed' and get the confirmation
    columns (no code, nothing tried, for every existing row); every row stays as it was, the
    indexes are back (one email per meeting, one token), and the store goes on from there."""
    v4_columns = registrations.REGISTRATION_V4_COLUMNS
    db.raw(
        *[(s, ()) for s in _version_4_schema(db.kind)],
        ("INSERT INTO schema_version (version) VALUES (?)", (4,)),
        (
            f"INSERT INTO meetings ({meetings.MEETING_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("m0", "t", "webinar", SUITE, "h", None, "d", "open", False, False, 1.0, None, 1)
            + ("[]", '{"enabled": true, "approval": "manual"}'),
        ),
        ("INSERT INTO wire_ids (name, last_id) VALUES (?, ?)", ("meetings", 1)),
        *[
            (
                f"INSERT INTO registrations ({v4_columns}) VALUES ({', '.join('?' * 11)})",
                (f"r{i}", "m0", status, b"\x10s", b"\x20w", f"tag{i}", digest, None)
                + (1.0 + i, 2.0 + i, None),
            )
            for i, (status, digest) in enumerate(
                (("approved", "tok0"), ("pending", None), ("rejected", None))
            )
        ],
    )
    before = db.raw((f"SELECT {v4_columns} FROM registrations ORDER BY id", ()))
    with pytest.raises(db.integrity_error):  # version 4 knows no 'unconfirmed'
        db.raw(("UPDATE registrations SET status = 'unconfirmed' WHERE id = 'r1'", ()))

    async def body(store: Store) -> None:
        rows = await store.list_registrations("m0")
        assert [(r.id, r.status) for r in rows] == [
            ("r0", "approved"),
            ("r1", "pending"),
            ("r2", "rejected"),
        ]
        assert all(
            (r.confirm_digest, r.confirm_expires_at, r.confirm_attempts, r.confirm_sends)
            == (None, None, 0, 0)
            for r in rows
        )
        assert await store.count_registrations("m0") == 2
        assert await store.get_registration_by_token("m0", "tok0") == rows[0]
        made = await a_registration(
            store,
            "m0",
            status="unconfirmed",
            token_digest=None,
            confirm_digest="c0de",
            confirm_expires_at=100.0,
        )
        assert made.status == "unconfirmed" and made.confirm_sends == 1
        with pytest.raises(DuplicateKey):  # the email index came back
            await a_registration(store, "m0", email_tag="tag1")

    db.run(body)
    kept = f"SELECT {v4_columns} FROM registrations WHERE id IN ('r0', 'r1', 'r2') ORDER BY id"
    assert db.raw((kept, ())) == before
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]
    with pytest.raises(db.integrity_error):  # the token index came back
        db.raw(("UPDATE registrations SET token_digest = 'tok0' WHERE id = 'r1'", ()))
    # Reopening migrates nothing again.
    assert len(db.run(lambda s: s.list_registrations("m0"))) == 4


def _file_bytes(path: Path) -> bytes:
    """The database file and its WAL, as they are on disk."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_sqlite_erase_leaves_nothing_in_the_file_or_the_wal(tmp_path: Path) -> None:
    """secure_delete overwrites what an erase replaces, the checkpoint empties the WAL: the
    wrapped key, the sealed fields, the tag and the participant's name are gone from disk,
    while the store stays open (its connection keeps the WAL file)."""
    path = tmp_path / "relay.db"
    wrapped = b"WRAPPED-KEY-" + os.urandom(20)
    sealed = b"SEALED-FIELDS-" + os.urandom(40)
    kept = b"KEPT-WRAPPED-" + os.urandom(20)

    async def main() -> None:
        async with await SqliteStore.open(path) as store:
            m = await a_meeting(store)
            p = await a_participant(store, m.id, name="Ada Lovelace-Byron")
            r = await a_registration(
                store,
                m.id,
                sealed=sealed,
                wrapped_key=wrapped,
                email_tag="EMAILTAG-0123456789",
                token_digest="TOKENDIGEST-0123456789",
            )
            await a_registration(store, m.id, wrapped_key=kept)
            await store.update_registration(r.id, sealed=sealed + b"-edited")
            await store.use_registration_token(
                meeting_id=m.id,
                token_digest="TOKENDIGEST-0123456789",
                participant_id=p.id,
                used_at=1.0,
            )
            await store.update_meeting(m.id, title="busy")  # more pages in the WAL
            on_disk = _file_bytes(path)
            assert wrapped in on_disk and sealed in on_disk and b"Ada Lovelace" in on_disk
            await store.erase_registrations(registration_ids=[r.id])
            on_disk = _file_bytes(path)
            for gone in (wrapped, sealed, b"EMAILTAG-0123456789", b"Ada Lovelace"):
                assert gone not in on_disk, gone
            assert kept in on_disk  # the others are untouched
            wal = path.with_name(path.name + "-wal")
            assert not wal.exists() or wal.stat().st_size == 0
        on_disk = _file_bytes(path)
        assert wrapped not in on_disk and kept in on_disk

    run(main())


def test_sqlite_delete_meeting_leaves_no_registration_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    wrapped = b"WRAPPED-KEY-" + os.urandom(20)

    async def main() -> None:
        async with await SqliteStore.open(path) as store:
            m = await a_meeting(store)
            await a_participant(store, m.id, name="Ada Lovelace-Byron")
            await a_registration(store, m.id, wrapped_key=wrapped)
            assert wrapped in _file_bytes(path)
            await store.delete_meeting(m.id)
            assert wrapped not in _file_bytes(path)
            assert b"Ada Lovelace" not in _file_bytes(path)

    run(main())


def test_data_survives_close_and_reopen(db: Db) -> None:
    async def write(store: Store) -> dict[str, Any]:
        meetings = [await a_meeting(store, title=f"m{i}", created_at=float(i)) for i in range(6)]
        people = {
            m.id: [await a_participant(store, m.id, worker=i) for i in range(4)] for m in meetings
        }
        await store.update_meeting(meetings[0].id, locked=True, recording=True)
        await store.update_meeting(meetings[0].id, add_features=["recording", "locked"])
        await store.update_meeting(meetings[1].id, add_features=["recording"])
        await store.update_participant(people[meetings[1].id][0].id, muted=True, left_at=9.0)
        await store.append_usage(
            meeting_id=meetings[2].id,
            started_at=1.0,
            ended_at=2.0,
            total_participants=4,
            peak_participants=4,
            participant_minutes=4 / 60,
            features=["webinar"],
        )
        for i in range(3):
            await store.append_routing_update(json.dumps({"i": i}))
        return await snapshot(store)

    async def snapshot(store: Store) -> dict[str, Any]:
        meetings = await store.list_meetings(limit=1000)
        return {
            "meetings": meetings,
            "participants": {m.id: await store.list_participants(m.id) for m in meetings},
            "usage": await store.list_usage(),
            "routing": await store.routing_updates_after(0),
        }

    before = db.run(write)
    if db.kind == "sqlite":
        # WAL checkpointed on close: the main file alone holds everything.
        assert not Path(db.target).with_name("relay.db-wal").exists()
    after = db.run(snapshot)
    assert after == before
    assert len(after["meetings"]) == 6 and after["meetings"][-1].locked
    assert [m.features for m in after["meetings"]] == [()] * 4 + [
        ("recording",),
        ("locked", "recording"),
    ]
    assert sum(len(p) for p in after["participants"].values()) == 24
    # Reopening does not recreate or re-version anything.
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]
    # And goes on numbering where it stopped.
    more = db.run(lambda s: a_meeting(s))
    assert more.wire_id == max(m.wire_id for m in after["meetings"]) + 1 == 7


def test_newer_schema_refused(db: Db) -> None:
    """A database written by a newer relay is refused, not silently misread."""
    db.run(lambda s: s.last_routing_seq())
    db.raw(("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,)))
    with pytest.raises(SchemaMismatch, match="newer"):
        db.run(lambda s: s.last_routing_seq())


V4_TABLES = ("registrations", "audit_log")


def _version_3_schema(dialect: str) -> list[str]:
    """The schema as version 3 had it: no meetings.registration column, no registrations
    and audit_log tables (nor their indexes)."""
    statements = []
    for statement in _version_6_schema(dialect):
        if any(f" {table} " in statement for table in V4_TABLES):
            continue
        if statement.startswith("CREATE TABLE IF NOT EXISTS meetings "):
            statement = re.sub(r",\n\s*registration TEXT[^\n]*", "", statement)
            assert "registration" not in statement
        statements.append(statement)
    return statements


def _version_2_schema(dialect: str) -> list[str]:
    """The schema as version 2 had it: version 3's without the meetings.features column."""
    statements = []
    for statement in _version_3_schema(dialect):
        if statement.startswith("CREATE TABLE IF NOT EXISTS meetings "):
            statement = re.sub(r",\n\s*features TEXT[^\n]*", "", statement)
            assert "features" not in statement
        statements.append(statement)
    return statements


def _version_1_schema(dialect: str) -> list[str]:
    """The schema as version 1 had it: version 2's without the wire_id columns and the
    wire_ids table."""
    statements = []
    for statement in _version_2_schema(dialect):
        statement = re.sub(r",\n\s*wire_id BIGINT[^\n]*", "", statement)
        if "wire_id" not in statement:
            statements.append(statement)
    return statements


def test_opening_statements_migrate_step_by_step() -> None:
    def migrations(version: int | None) -> list[str]:
        return [s for s, _ in schema.opening_statements("sqlite", version) if s.startswith("ALTER")]

    assert SCHEMA_VERSION == 7
    v7 = list(schema.MIGRATE_6_TO_7["sqlite"])
    v1 = migrations(1)
    # 1 -> 2 (two columns), then 2 -> 3, then 3 -> 4; 4 -> 5 changes the registrations table,
    # which a database older than 4 does not have yet (the schema creates it as it is now);
    # 5 -> 6 is a new table; 6 -> 7 three columns (and a new table)
    assert len(v1) == 4 + len(v7) and v1[2] == schema.MIGRATE_2_TO_3["sqlite"][0]
    assert v1[3] == schema.MIGRATE_3_TO_4["sqlite"][0] and v1[4:] == v7
    assert "ADD COLUMN wire_id" in v1[0]
    v3_v4 = [*schema.MIGRATE_2_TO_3["sqlite"], *schema.MIGRATE_3_TO_4["sqlite"]]
    assert migrations(2) == [*v3_v4, *v7]
    assert migrations(3) == [*schema.MIGRATE_3_TO_4["sqlite"], *v7]
    assert migrations(5) == migrations(6) == v7 and migrations(7) == migrations(None) == []
    for dialect in ("sqlite", "postgresql"):
        tail = [(statement, ()) for statement in schema.MIGRATE_6_TO_7[dialect]]
        steps = schema.opening_statements(dialect, 2)
        assert steps[0] == (
            "ALTER TABLE meetings ADD COLUMN features TEXT NOT NULL DEFAULT '[]'",
            (),
        )
        assert steps[1] == ("ALTER TABLE meetings ADD COLUMN registration TEXT", ())
        assert steps[2:5] == tail and steps[5] == (schema.UPDATE_SCHEMA_VERSION, (7,))
        steps = schema.opening_statements(dialect, 3)
        assert steps[0] == ("ALTER TABLE meetings ADD COLUMN registration TEXT", ())
        assert steps[1:4] == tail and steps[4] == (schema.UPDATE_SCHEMA_VERSION, (7,))
        steps = schema.opening_statements(dialect, 4)
        migration = schema.MIGRATE_4_TO_5[dialect]
        assert steps[: len(migration)] == [(statement, ()) for statement in migration]
        n = len(migration)
        assert steps[n : n + 3] == tail and steps[n + 3] == (schema.UPDATE_SCHEMA_VERSION, (7,))
    with pytest.raises(SchemaMismatch, match="newer"):
        schema.opening_statements("sqlite", 8)
    with pytest.raises(SchemaMismatch, match="no relay wrote"):
        schema.opening_statements("postgresql", 0)


def test_migration_from_version_1(db: Db) -> None:
    """A version 1 database gets the wire ids, the existing rows numbered in the order they
    were made, and the store goes on from there."""
    v1 = _version_1_schema(db.kind)
    assert not any("wire_id" in s for s in v1) and len(v1) == len(_version_3_schema(db.kind)) - 3
    meetings = [
        (
            "INSERT INTO meetings (id, title, mode, suite, password_hash, host_key_digest, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f"m{i}", "t", "meeting", SUITE, "h", "d", 10.0 + i),
        )
        for i in range(3)
    ]
    people = [
        (
            "INSERT INTO participants (id, meeting_id, name, role, uplink_sealed, "
            "downlink_sealed, worker, joined_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (f"p{i}", f"m{i % 2}", "n", "host", b"u", b"d", 0, 20.0 + i),
        )
        for i in range(4)
    ]
    db.raw(
        *[(s, ()) for s in v1],
        ("INSERT INTO schema_version (version) VALUES (?)", (1,)),
        *meetings,
        *people,
    )

    async def body(store: Store) -> None:
        assert [m.wire_id for m in await store.list_meetings()] == [3, 2, 1]  # newest first
        for i in range(4):
            p = await store.get_participant(f"p{i}")
            assert p is not None and p.wire_id == i + 1
        assert all(m.features == () for m in await store.list_meetings())
        new = await a_meeting(store)
        assert new.wire_id == 4
        assert (await a_participant(store, new.id)).wire_id == 5

    db.run(body)
    # 1 -> 2 -> 3 -> 4 -> 5 -> 6
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]
    assert db.raw(("SELECT DISTINCT features FROM meetings", ())) == [("[]",)]
    assert db.raw(("SELECT DISTINCT registration FROM meetings", ())) == [(None,)]
    # Reopening migrates nothing again: the numbers stay.
    assert [m.wire_id for m in db.run(lambda s: s.list_meetings())] == [4, 3, 2, 1]
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]
    with pytest.raises(db.integrity_error):  # the unique index is there
        db.raw(("UPDATE participants SET wire_id = 1 WHERE id = ?", ("p1",)))


V3_MEETING_COLUMNS = meetings.MEETING_COLUMNS.removesuffix(", registration")
V2_MEETING_COLUMNS = V3_MEETING_COLUMNS.removesuffix(", features")


def test_migration_from_version_2(db: Db) -> None:
    """A version 2 database gets meetings.features ('[]' for every meeting); every row of
    every table stays as it was, and the store goes on from there."""
    v2 = _version_2_schema(db.kind)
    assert len(v2) == len(_version_3_schema(db.kind)) and V2_MEETING_COLUMNS.endswith("wire_id")
    meetings = [
        (
            f"INSERT INTO meetings ({V2_MEETING_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"m{i}",
                f"t{i}",
                ("meeting", "webinar")[i % 2],
                SUITE,
                "h",
                None if i % 2 else "ph",
                "d",
                "ended" if i == 3 else "open",
                i == 1,
                i == 2,
                10.0 + i,
                20.0 if i == 3 else None,
                i + 1,
            ),
        )
        for i in range(4)
    ]
    people = [
        (
            f"INSERT INTO participants ({V6_PARTICIPANT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (f"p{i}", f"m{i % 3}", "n", "host", "[]", None, b"u", b"d", i, i == 0, False)
            + (30.0 + i, None, i + 1),
        )
        for i in range(5)
    ]
    db.raw(
        *[(s, ()) for s in v2],
        ("INSERT INTO schema_version (version) VALUES (?)", (2,)),
        *meetings,
        *people,
        ("INSERT INTO wire_ids (name, last_id) VALUES (?, ?)", ("meetings", 7)),
        ("INSERT INTO wire_ids (name, last_id) VALUES (?, ?)", ("participants", 5)),
        (
            f"INSERT INTO usage_records ({records.USAGE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (1, "m3", 10.0, 20.0, 10.0, 2, 2, 0.5, '["recording"]', 1, 2, 3, 4),
        ),
        ("INSERT INTO routing_log (seq, created_at, body) VALUES (?, ?, ?)", (9, 1.0, "{}")),
    )
    tables = {
        "meetings": f"SELECT {V2_MEETING_COLUMNS} FROM meetings ORDER BY id",
        "participants": f"SELECT {V6_PARTICIPANT_COLUMNS} FROM participants ORDER BY id",
        "usage_records": f"SELECT {records.USAGE_COLUMNS} FROM usage_records ORDER BY id",
        "routing_log": f"SELECT {records.ROUTING_COLUMNS} FROM routing_log ORDER BY seq",
        "wire_ids": "SELECT name, last_id FROM wire_ids ORDER BY name",
    }
    before = {table: db.raw((query, ())) for table, query in tables.items()}
    assert [len(rows) for rows in before.values()] == [4, 5, 1, 1, 2]

    async def body(store: Store) -> None:
        listed = await store.list_meetings()
        assert [m.id for m in listed] == ["m3", "m2", "m1", "m0"]
        assert all(m.features == () for m in listed)
        assert [(m.locked, m.recording, m.state) for m in listed] == [
            (False, False, "ended"),
            (False, True, "open"),
            (True, False, "open"),
            (False, False, "open"),
        ]
        usage = await store.list_usage()
        assert [u.features for u in usage] == [("recording",)]
        assert await store.last_routing_seq() == 9

    db.run(body)
    after = {table: db.raw((query, ())) for table, query in tables.items()}
    assert after == before
    assert db.raw(("SELECT id, features, registration FROM meetings ORDER BY id", ())) == [
        (f"m{i}", "[]", None) for i in range(4)
    ]
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]

    async def then(store: Store) -> None:
        # The migrated store works as a new one: features recorded, numbers go on.
        m1 = await store.update_meeting("m1", add_features=["locked"])
        assert m1 is not None and m1.features == ("locked",)
        new = await a_meeting(store)
        assert new.wire_id == 8 and new.features == ()
        assert (await a_participant(store, new.id)).wire_id == 6

    db.run(then)
    # Reopening migrates nothing again: what was added stays.
    assert db.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]
    again = db.run(lambda s: s.get_meeting("m1"))
    assert again is not None and again.features == ("locked",)


def test_closed_store_refuses_calls_and_close_is_idempotent(db: Db) -> None:
    async def main() -> None:
        async with await db.open() as store:
            pending = [asyncio.ensure_future(a_meeting(store)) for _ in range(20)]
            await asyncio.sleep(0)  # under way (queued on SQLite's thread, or on the pool)
            await store.close()  # waits for the writes in flight: none fails on a closed store
            assert len({m.id for m in await asyncio.gather(*pending)}) == 20
            assert store.closed
            with pytest.raises(StoreClosed):
                await store.get_meeting("x")
            with pytest.raises(StoreClosed):
                await a_meeting(store)
            await store.close()
        async with await db.open() as again:
            assert len(await again.list_meetings()) == 20

    run(main())


# --- the SQLite file --------------------------------------------------------------------------


def test_nothing_lost_when_the_process_is_killed(tmp_path: Path) -> None:
    """Every write that returned is on disk, even if the process dies without closing."""
    path = tmp_path / "relay.db"
    script = f"""
import asyncio, os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from control.store import SqliteStore

async def main():
    store = await SqliteStore.open({str(path)!r})
    m = await store.create_meeting(title="t", mode="meeting", suite="AEAD_AES_128_GCM",
                                   password_hash="h",
                                   host_key_digest="d", meeting_id="killed")
    await asyncio.gather(*(store.add_participant(meeting_id=m.id, name=str(i), role="host",
                            uplink_sealed=b"u", downlink_sealed=b"d", worker=0)
                           for i in range(50)))
    await store.append_routing_update("{{}}")
    print("written", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "written"
    assert (tmp_path / "relay.db-wal").exists()  # never checkpointed: recovery reads the WAL

    async def check(store: SqliteStore) -> None:
        assert await store.get_meeting("killed") is not None
        assert len(await store.list_participants("killed")) == 50
        assert await store.last_routing_seq() == 1

    with_store(path, check)


def test_wal_and_pragmas_on(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def body(store: SqliteStore) -> tuple[Any, ...]:
        def pragmas(conn: sqlite3.Connection) -> tuple[Any, ...]:
            return tuple(
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys")
            )

        return await store._executor.call(pragmas)

    journal, synchronous, foreign_keys = with_store(path, body)
    assert (journal, synchronous, foreign_keys) == ("wal", 1, 1)  # synchronous 1 = NORMAL
    # WAL is a property of the file: another connection sees it too.
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_file_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    old_umask = os.umask(0)  # even with a permissive umask
    try:

        async def body(store: SqliteStore) -> list[int]:
            await a_meeting(store)  # a write, so -wal and -shm exist
            files = [path, tmp_path / "relay.db-wal", tmp_path / "relay.db-shm"]
            assert all(f.exists() for f in files)
            return [mode_of(f) for f in files]

        assert with_store(path, body) == [0o600, 0o600, 0o600]
    finally:
        os.umask(old_umask)
    assert mode_of(path) == 0o600
    # An existing file with a looser mode is tightened on open.
    loose = tmp_path / "loose.db"
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    with_store(loose, lambda s: s.last_routing_seq())
    assert mode_of(loose) == 0o600


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no directory"):
        run(SqliteStore.open(tmp_path / "missing" / "relay.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an sqlite database, not at all" * 100)
    with pytest.raises(StoreError, match="junk.db"):
        run(SqliteStore.open(junk))


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_calls_all_land(db: Db) -> None:
    async def body(store: Store) -> None:
        meeting = await a_meeting(store)
        made = await asyncio.gather(
            *(a_participant(store, meeting.id, name=f"p{i}", worker=i % 8) for i in range(200))
        )
        listed = await store.list_participants(meeting.id)
        assert len(listed) == 200 == len({p.id for p in listed})
        assert {p.id for p in listed} == {p.id for p in made}
        # Mixed reads and writes from many tasks; numbers stay unique and gap-free.
        seqs = await asyncio.gather(*(store.append_routing_update("{}") for _ in range(200)))
        assert sorted(seqs) == list(range(1, 201))
        usage = await asyncio.gather(
            *(
                store.append_usage(
                    meeting_id=meeting.id,
                    started_at=0.0,
                    ended_at=1.0,
                    total_participants=1,
                    peak_participants=1,
                    participant_minutes=1.0,
                )
                for _ in range(50)
            )
        )
        assert sorted(u.id for u in usage) == list(range(1, 51))
        updates = await asyncio.gather(
            *(store.update_participant(p.id, muted=True) for p in made[:100]),
            *(store.get_participant(p.id) for p in made[100:]),
        )
        assert all(u is not None for u in updates)
        assert sum(p.muted for p in await store.list_participants(meeting.id)) == 100

    db.run(body)


def test_database_work_runs_off_the_event_loop_on_one_thread(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        loop_thread = threading.get_ident()
        idents = await asyncio.gather(
            *(store._executor.call(lambda _conn: threading.get_ident()) for _ in range(20))
        )
        assert len(set(idents)) == 1 and idents[0] != loop_thread

        # While the store's thread is busy, the loop keeps running other tasks.
        def slow(conn: sqlite3.Connection) -> None:
            conn.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                "WHERE x < 3000000) SELECT count(*) FROM c"
            ).fetchone()

        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        await store._executor.call(slow)
        ticking.cancel()
        assert ticks > 5

    with_store(tmp_path / "relay.db", body)


# --- open_store -------------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path) -> None:
    async def main() -> None:
        for url in (str(tmp_path / "a.db"), f"sqlite://{tmp_path / 'b.db'}"):
            store = await open_store(url)
            assert isinstance(store, SqliteStore)
            await store.close()
        store = await open_store("", data_dir=tmp_path)
        assert isinstance(store, SqliteStore) and store.path == tmp_path / "relay.db"
        await store.close()
        with pytest.raises(StoreError, match="scheme"):
            await open_store("mysql://localhost/relay")

    run(main())
    assert {p.name for p in tmp_path.glob("*.db")} == {"a.db", "b.db", "relay.db"}


# --- PostgreSQL only --------------------------------------------------------------------------

SECRET = "s3cret-Pa55"


def _closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_open_store_postgresql_urls(pg: Db) -> None:
    url = str(pg.target)
    assert url.startswith("postgresql://")

    async def main() -> None:
        for each in (url, "postgres://" + url.removeprefix("postgresql://")):
            store = await open_store(each)
            assert isinstance(store, PostgresStore) and store.url == each
            await a_meeting(store)
            await store.close()
        async with await PostgresStore.open(url) as again:  # both opened the same database
            assert len(await again.list_meetings()) == 2

    run(main())
    assert pg.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]


def test_redact_url() -> None:
    assert redact_url("postgresql://relay:pw@db.example:5432/relay") == (
        "postgresql://relay:***@db.example:5432/relay",
        ("pw",),
    )
    safe, secrets = redact_url("postgres://relay:p%40ss@h1:5432,h2:5433/relay?sslmode=require")
    assert safe == "postgres://relay:***@h1:5432,h2:5433/relay?sslmode=require"
    assert set(secrets) == {"p%40ss", "p@ss"}
    assert redact_url("postgresql:///relay?host=/run/pg&password=x1y2&user=relay") == (
        "postgresql:///relay?host=/run/pg&password=***&user=relay",
        ("x1y2",),
    )
    assert redact_url("postgresql://relay@h/relay") == ("postgresql://relay@h/relay", ())


def test_postgres_password_never_shown(pg: Db) -> None:
    """Not in repr(), not in an error's message, not anywhere in its printed traceback."""

    def shown(exc: BaseException) -> str:
        return "".join(traceback.format_exception(exc))

    async def main() -> None:
        # Nothing listens on the port: the connection is refused.
        for wrong in (
            f"postgresql://relay:{SECRET}@127.0.0.1:{_closed_port()}/relay",
            f"postgresql://relay@127.0.0.1:{_closed_port()}/relay?password={SECRET}",
        ):
            with pytest.raises(StoreError, match="cannot open the database") as caught:
                await PostgresStore.open(wrong)
            assert "127.0.0.1" in str(caught.value) and "***" in str(caught.value)
            assert SECRET not in shown(caught.value)
        # The throwaway server trusts everyone, so a password in the URL is accepted unused.
        url = str(pg.target).replace("relay@", f"relay:{SECRET}@")
        store = await open_store(url)
        try:
            assert SECRET not in repr(store) and SECRET not in str(store)
            assert "relay:***@" in repr(store) and isinstance(store, PostgresStore)
            assert SECRET not in store.url
            # An error from the server, raised by a call: a table dropped behind its back.
            await _raw_async(str(pg.target), "DROP TABLE routing_log")
            with pytest.raises(StoreError, match="routing_log") as caught:
                await store.last_routing_seq()
            assert SECRET not in shown(caught.value)
            assert not isinstance(caught.value, IntegrityViolation)
        finally:
            await store.close()

    run(main())


async def _raw_async(url: str, statement: str, *params: Any) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(statement, *params))
    finally:
        await conn.close()


def test_postgres_driver_errors_are_store_errors(pg: Db) -> None:
    """What the driver refuses leaves as StoreError (never an asyncpg exception), and the store
    goes on working."""

    async def body(store: Store) -> None:
        meeting = await a_meeting(store)
        # INTEGER is 32 bits in PostgreSQL: asyncpg refuses to encode a bigger worker index.
        with pytest.raises(StoreError) as caught:
            await a_participant(store, meeting.id, worker=1 << 40)
        assert type(caught.value) is StoreError
        assert await store.list_participants(meeting.id) == []
        assert (await a_participant(store, meeting.id)).wire_id == 1
        # A check constraint of the database (the store's own checks passed).
        await _raw_async(
            str(pg.target), "ALTER TABLE meetings ADD CONSTRAINT short CHECK (length(title) < 9)"
        )
        with pytest.raises(IntegrityViolation, match="short") as violation:
            await a_meeting(store, title="far too long")
        assert type(violation.value) is IntegrityViolation
        assert len(await store.list_meetings()) == 1

    pg.run(body)


def test_postgres_two_nodes_on_one_database(pg: Db) -> None:
    """Nodes that start at once and write at once: one schema, every row lands, and the
    numbers they assign are distinct and gap-free."""
    url = str(pg.target)

    async def main() -> None:
        nodes = await asyncio.gather(*(PostgresStore.open(url) for _ in range(4)))
        try:
            a, b = nodes[:2]
            meetings = await asyncio.gather(
                *(a_meeting(node, title=f"m{i}") for i, node in enumerate([a, b] * 10))
            )
            assert sorted(m.wire_id for m in meetings) == list(range(1, 21))
            meeting = meetings[0]
            made = await asyncio.gather(
                *(
                    a_participant(node, meeting.id, name=f"p{i}", worker=i % 4)
                    for i, node in enumerate([a, b] * 100)
                )
            )
            assert sorted(p.wire_id for p in made) == list(range(1, 201))
            seen_by_a = await a.list_participants(meeting.id)
            assert seen_by_a == await b.list_participants(meeting.id)
            assert sorted(seen_by_a, key=lambda p: p.id) == sorted(made, key=lambda p: p.id)
            seqs = await asyncio.gather(*(node.append_routing_update("{}") for node in nodes * 25))
            assert sorted(seqs) == list(range(1, 101))
            usage = await asyncio.gather(
                *(
                    node.append_usage(
                        meeting_id=meeting.id,
                        started_at=0.0,
                        ended_at=1.0,
                        total_participants=1,
                        peak_participants=1,
                        participant_minutes=1.0,
                    )
                    for node in nodes * 10
                )
            )
            assert sorted(u.id for u in usage) == list(range(1, 41))
            assert len(await nodes[3].list_usage()) == 40
        finally:
            await asyncio.gather(*(node.close() for node in nodes))

    run(main())
    assert pg.raw(("SELECT version FROM schema_version", ())) == [(SCHEMA_VERSION,)]


def test_postgres_cancelled_caller_write_lands(pg: Db) -> None:
    """A write that started runs to its end even if its caller stops waiting (as on SQLite's
    thread), and close() waits for it."""

    async def main() -> None:
        store = await pg.open()
        task = asyncio.ensure_future(a_meeting(store, meeting_id="cancelled"))
        await asyncio.sleep(0)  # under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()
        async with await pg.open() as again:
            assert await again.get_meeting("cancelled") is not None

    run(main())


# --- portability ------------------------------------------------------------------------------


def test_schema_is_portable_text() -> None:
    sqlite_code = "\n".join(schema_statements("sqlite"))
    pg_code = "\n".join(schema_statements("postgresql"))
    # The binary type is the one difference between the dialects.
    assert "BLOB" in sqlite_code and "BYTEA" not in sqlite_code
    assert sqlite_code.replace("BLOB", "BYTEA") == pg_code
    assert "$" not in schema_text("postgresql")
    code = "\n".join(schema_statements("postgresql")).upper()
    for sqlite_only in ("AUTOINCREMENT", "WITHOUT ROWID", "STRICT", "DATETIME(", "PRAGMA"):
        assert sqlite_only not in code, sqlite_only
    for table in ("MEETINGS", "PARTICIPANTS", "USAGE_RECORDS", "ROUTING_LOG", "SCHEMA_VERSION"):
        assert f"CREATE TABLE IF NOT EXISTS {table} " in code
    with pytest.raises(ValueError, match="dialect"):
        schema_text("mysql")


def test_numbered_placeholders() -> None:
    assert numbered("SELECT a FROM t WHERE b = ? AND c = ?") == (
        "SELECT a FROM t WHERE b = $1 AND c = $2"
    )
    assert numbered(records.INSERT_ROUTING).endswith("VALUES ($1, $2, $3)")
    assert numbered("SELECT 1") == "SELECT 1"


def test_schema_and_statements_valid_on_postgresql(pg: Db) -> None:
    """Run schema.sql (twice: idempotent) and prepare every shared statement on a real
    PostgreSQL server; a round trip through booleans, BYTEA, the foreign key and the checks."""
    statements = {
        name: value
        for name, value in STATEMENTS.items()
        if value.split(" ", 1)[0] in {"SELECT", "INSERT", "UPDATE", "DELETE"}
    }
    statements["UPDATE_M"] = executor.update(
        "meetings", meetings.MEETING_UPDATABLE, meetings.MEETING_UPDATABLE
    )
    statements["UPDATE_P"] = executor.update(
        "participants", participants.PARTICIPANT_UPDATABLE, participants.PARTICIPANT_UPDATABLE
    )
    statements["UPDATE_R"] = executor.update(
        "registrations", registrations.REGISTRATION_UPDATABLE, registrations.REGISTRATION_UPDATABLE
    )
    statements["UPDATE_C"] = executor.update(
        "registrations", confirmation.CONFIRMATION_UPDATABLE, confirmation.CONFIRMATION_UPDATABLE
    )
    statements["LIST_R"] = registrations.list_registrations("m", 10, 5)[0]
    statements["LIST_A0"] = records.list_audit(None, 5, 1)[0]
    statements["LIST_A1"] = records.list_audit("m", None, 0)[0]
    for name in (
        "LOCK_MEETING",
        "SELECT_REGISTRATION_BY_TOKEN",
        "SELECT_ERASABLE_BY_TAG",
        "SELECT_REGISTRATION_OF",
    ):
        statements[f"{name}_FOR_UPDATE"] = POSTGRESQL.for_update(STATEMENTS[name])
    statements["LIST_P0"] = participants.list_participants("m", True, 10, 5)[0]
    statements["LIST_P1"] = participants.list_participants("m", False, None, 3)[0]
    statements["LIST_U0"] = records.list_usage(None, 5, 1)[0]
    statements["LIST_U1"] = records.list_usage("m", None, 0)[0]
    statements["ROUTING_0"] = records.routing_after(3, None)[0]
    statements["ROUTING_1"] = records.routing_after(3, 10)[0]
    statements["MAX_WIRE_M"] = numbering.max_wire_id("meetings")
    statements["MAX_WIRE_P"] = numbering.max_wire_id("participants")
    statements["FEATURES_FOR_UPDATE"] = POSTGRESQL.for_update(meetings.SELECT_MEETING_FEATURES)
    assert len(statements) >= 40

    async def main() -> None:
        conn = await asyncpg.connect(str(pg.target))
        try:
            for statement in schema_statements("postgresql") * 2:
                await conn.execute(statement)
            prepared = {
                name: await conn.prepare(numbered(text)) for name, text in statements.items()
            }

            async def execute(name: str, *args: Any) -> None:
                await prepared[name].fetch(*args)

            await execute(
                "INSERT_MEETING",
                "m",
                "t",
                "webinar",
                "s",
                "h",
                None,
                "d",
                "open",
                False,
                False,
                1.5,
                None,
                1,
                "[]",
                '{"enabled": true}',
            )
            await execute(
                "INSERT_PARTICIPANT",
                "p",
                "m",
                "n",
                "attendee",
                "[]",
                None,
                b"\x00\xff",
                b"\x01",
                2,
                False,
                False,
                2.0,
                None,
                1,
                "node-a",
            )
            await execute("UPDATE_M", "x", True, False, "ended", 3.0, '["locked"]', "{}", "m")
            await execute("UPDATE_P", True, False, "panelist", b"\x02", b"\x03", 4.0, "p")
            await execute("INSERT_USAGE", 1, "m", 1.0, 2.0, 1.0, 1, 1, 0.5, "[]", 1, 2, 3, 4)
            await execute("INSERT_ROUTING", 1, 1.0, "{}")
            row = await conn.fetchrow(
                "SELECT m.title, m.locked, m.state, p.role, p.muted, p.uplink_sealed, "
                "(SELECT MAX(seq) FROM routing_log), (SELECT MAX(id) + 1 FROM usage_records) "
                "FROM meetings m JOIN participants p ON p.meeting_id = m.id"
            )
            assert tuple(row) == ("x", True, "ended", "panelist", True, b"\x02", 1, 2)
            async with conn.transaction():
                features = await prepared["FEATURES_FOR_UPDATE"].fetchval("m")
            assert features == '["locked"]'
            with pytest.raises(asyncpg.ForeignKeyViolationError, match="participants_meeting_id"):
                await execute(
                    "INSERT_PARTICIPANT",
                    "q",
                    "nope",
                    "n",
                    "host",
                    "[]",
                    None,
                    b"\x01",
                    b"\x01",
                    0,
                    False,
                    False,
                    1.0,
                    None,
                    2,
                    None,
                )
            with pytest.raises(asyncpg.CheckViolationError, match="meetings_mode_check"):
                await execute(
                    "INSERT_MEETING",
                    "m2",
                    "t",
                    "party",
                    "s",
                    "h",
                    None,
                    "d",
                    "open",
                    False,
                    False,
                    1.5,
                    None,
                    2,
                    "[]",
                    None,
                )
            reg = ("r", "m", "approved", b"\x00sealed", b"\x01wrapped", "tag", "digest", None)
            await execute("INSERT_REGISTRATION", *reg, 1.0, 1.0, None, None, None, 0, 0, None)
            # version 5: an unconfirmed one, a wrong code, its confirmation, the purge
            unconfirmed = ("u", "m", "unconfirmed", b"s", b"w", "tag-u", None, None, 1.0, 1.0)
            await execute("INSERT_REGISTRATION", *unconfirmed, None, "c1", 9.0, 0, 1, 1.0)
            await execute("UPDATE_C", "unconfirmed", None, "c1", 9.0, 1, 1, 1.0, 2.0, "u")
            await execute("UPDATE_C", "approved", "digest-u", None, None, 1, 1, 1.0, 3.0, "u")
            await execute("COUNT_REGISTRATIONS", "m")
            await execute("PURGE_UNCONFIRMED", 100.0)
            assert await conn.fetchval("SELECT status FROM registrations WHERE id = 'u'") == (
                "approved"
            )
            await execute("DISCARD_UNCONFIRMED", "u")
            await execute("DELETE_UNCONFIRMED_OF_EMAIL", "m", "tag-u")
            assert await conn.fetchval("SELECT COUNT(*) FROM registrations WHERE id = 'u'") == 1
            with pytest.raises(
                asyncpg.CheckViolationError, match="registrations_confirm_attempts_check"
            ):
                await execute("UPDATE_C", "approved", None, None, None, -1, 1, 1.0, 3.0, "u")
            await execute("UPDATE_R", "pending", b"\x02", "tag2", "digest2", 2.0, "r")
            await execute("USE_TOKEN", "p", 3.0, "r")
            await execute("ERASE_REGISTRATION", b"", 4.0, 4.0, "r")
            await execute("INSERT_AUDIT", 1, 1.0, "host", "meeting.lock", "m", None, "{}")
            row = await conn.fetchrow(
                "SELECT r.status, r.sealed, r.wrapped_key, r.email_tag, r.participant_id, "
                "a.action FROM registrations r JOIN audit_log a ON a.meeting_id = r.meeting_id"
            )
            assert tuple(row) == ("pending", b"", None, None, "p", "meeting.lock")
            bad = ("r2", "m", "maybe", b"s", b"w", "t2", None, None, 1.0, 1.0, None)
            bad += (None, None, 0, 0, None)
            with pytest.raises(asyncpg.CheckViolationError, match="registrations_status_check"):
                await execute("INSERT_REGISTRATION", *bad)
            with pytest.raises(asyncpg.CheckViolationError, match="registrations_check"):
                await execute("UPDATE_R", "pending", b"\x02", "tag3", None, 2.0, "r")
        finally:
            await conn.close()

    run(main())


def test_new_ids_never_start_like_an_option() -> None:
    from control.store.values import new_id

    ids = {new_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(i[0].isalnum() and len(i) == 22 for i in ids)
