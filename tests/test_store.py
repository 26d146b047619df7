"""The storage layer (control.store): the SQLite backend, its file, and the portable schema.

Each test drives the async store with asyncio.run (no pytest plugin). The last test checks
that the schema and every shared statement are valid PostgreSQL too, on a throwaway server,
when PostgreSQL's programs are installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from control.store import (
    DuplicateKey,
    ForeignKeyViolation,
    IntegrityViolation,
    InvalidValue,
    MeetingRow,
    ParticipantRow,
    SchemaMismatch,
    SqliteStore,
    Store,
    StoreClosed,
    StoreError,
    open_store,
    sql,
)
from control.store.base import SCHEMA_VERSION, schema_statements, schema_text

ROOT = Path(__file__).resolve().parent.parent
SUITE = "AES_CM_128_HMAC_SHA1_80"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def with_store(path: Path, body: Callable[[SqliteStore], Awaitable[T]]) -> T:
    """Open the store at path, run body(store), close it."""

    async def main() -> T:
        store = await SqliteStore.open(path)
        try:
            return await body(store)
        finally:
            await store.close()

    return run(main())


async def a_meeting(store: Store, **kw: Any) -> MeetingRow:
    args: dict[str, Any] = {
        "title": "weekly",
        "mode": "meeting",
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
        "role": "panelist",
        "uplink_sealed": b"\x01sealed-up",
        "downlink_sealed": b"\x02sealed-down",
        "worker": 0,
    }
    args.update(kw)
    return await store.add_participant(**args)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- meetings ---------------------------------------------------------------------------------


def test_meeting_round_trip(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


def test_meeting_values_checked_before_sql(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with pytest.raises(InvalidValue, match="mode"):
            await a_meeting(store, mode="party")
        with pytest.raises(InvalidValue, match="password_hash"):
            await a_meeting(store, password_hash="")
        made = await a_meeting(store)
        with pytest.raises(InvalidValue, match="state"):
            await store.update_meeting(made.id, state="paused")
        with pytest.raises(InvalidValue, match="locked"):
            await store.update_meeting(made.id, locked=1)  # type: ignore[arg-type]
        with pytest.raises(InvalidValue, match="limit"):
            await store.list_meetings(limit=-1)
        assert await store.list_meetings() == [made]  # nothing half-written

    with_store(tmp_path / "relay.db", body)


def test_meetings_paged_newest_first(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


def test_update_meeting_changes_only_what_is_given(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


def test_delete_meeting_removes_participants_keeps_usage(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


# --- participants -----------------------------------------------------------------------------


def test_participant_round_trip(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        meeting = await a_meeting(store, mode="webinar")
        streams = json.dumps([{"ssrc": 1234, "kind": "audio", "pt": 111, "codec": "opus/48000/2"}])
        made = await a_participant(
            store,
            meeting.id,
            name="Grace Hopper",
            role="attendee",
            streams=streams,
            receive_at="192.0.2.7:40000",
            uplink_sealed=bytes(range(256)),  # every byte value survives
            downlink_sealed=b"\x00" * 46,
            worker=3,
            joined_at=1234.5,
        )
        got = await store.get_participant(made.id)
        assert got == made
        assert got.uplink_sealed == bytes(range(256)) and isinstance(got.uplink_sealed, bytes)
        assert json.loads(got.streams) == json.loads(streams)
        assert (got.role, got.worker, got.receive_at, got.joined_at) == (
            "attendee",
            3,
            "192.0.2.7:40000",
            1234.5,
        )
        assert not got.muted and not got.expelled and got.left_at is None
        assert await store.get_participant(made.id, meeting_id=meeting.id) == made
        assert await store.get_participant("nobody") is None
        plain = await a_participant(store, meeting.id)
        assert plain.streams == "[]" and plain.receive_at is None
        assert await store.list_participants(meeting.id) == [made, plain]
        # Logged rows carry no personal data and no key material.
        text = repr(got)
        assert "Grace" not in text and "192.0.2.7" not in text and "sealed" not in text
        assert "scrypt" not in repr(meeting)

    with_store(tmp_path / "relay.db", body)


def test_participant_values_checked(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        meeting = await a_meeting(store)
        with pytest.raises(InvalidValue, match="role"):
            await a_participant(store, meeting.id, role="owner")
        with pytest.raises(InvalidValue, match="streams"):
            await a_participant(store, meeting.id, streams="{not json")
        with pytest.raises(InvalidValue, match="streams"):
            await a_participant(store, meeting.id, streams='{"ssrc": 1}')
        with pytest.raises(InvalidValue, match="uplink_sealed"):
            await a_participant(store, meeting.id, uplink_sealed="key")
        with pytest.raises(InvalidValue, match="worker"):
            await a_participant(store, meeting.id, worker=-1)
        assert await store.list_participants(meeting.id) == []

    with_store(tmp_path / "relay.db", body)


def test_update_participant(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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
        with pytest.raises(InvalidValue, match="role"):
            await store.update_participant(made.id, role="owner")

    with_store(tmp_path / "relay.db", body)


def test_present_only_and_participant_paging(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


def test_two_meetings_participants_kept_apart(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


def test_foreign_key_violation_is_a_clear_error(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with pytest.raises(ForeignKeyViolation, match=r"meeting 'no-such-meeting'.*no such"):
            await a_participant(store, "no-such-meeting")
        # It is part of the hierarchy callers catch, not sqlite3's.
        with pytest.raises(IntegrityViolation):
            await a_participant(store, "no-such-meeting")
        # The failed write left nothing behind and the store goes on working.
        meeting = await a_meeting(store)
        assert await a_participant(store, meeting.id)
        assert await store.list_participants("no-such-meeting") == []

    with_store(tmp_path / "relay.db", body)
    # The database enforces it, not only the store's code.
    raw = sqlite3.connect(tmp_path / "relay.db")
    raw.execute("PRAGMA foreign_keys=ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        raw.execute(
            "INSERT INTO participants (id, meeting_id, name, role, uplink_sealed, "
            "downlink_sealed, worker, joined_at, wire_id) VALUES ('x', 'nope', 'n', 'host', "
            "x'01', x'02', 0, 1.0, 99)"
        )
    raw.close()


# --- usage records ----------------------------------------------------------------------------


def test_usage_records_append_only_and_per_meeting(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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
        usage_api = {n for n in dir(SqliteStore) if "usage" in n and not n.startswith("_")}
        assert usage_api == {"append_usage", "list_usage"}
        assert {n for n in dir(Store) if "usage" in n and not n.startswith("_")} == usage_api
        with pytest.raises(InvalidValue, match="before"):
            await store.append_usage(
                meeting_id=a.id,
                started_at=10.0,
                ended_at=5.0,
                total_participants=0,
                peak_participants=0,
                participant_minutes=0.0,
            )
        with pytest.raises(InvalidValue, match="packets_in"):
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

    with_store(tmp_path / "relay.db", body)


# --- routing log ------------------------------------------------------------------------------


def test_routing_log_numbers_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def first(store: SqliteStore) -> None:
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
        with pytest.raises(InvalidValue, match="JSON"):
            await store.append_routing_update("not json")
        assert await store.last_routing_seq() == 9

    async def second(store: SqliteStore) -> None:
        # A restarted control plane continues the sequence.
        assert await store.last_routing_seq() == 9
        assert await store.append_routing_update('{"kind": "after restart"}') == 10
        tail = await store.routing_updates_after(5)
        assert [(u.seq, u.created_at) for u in tail[:1]] == [(9, 42.0)]
        assert [u.seq for u in tail] == [9, 10]

    with_store(path, first)
    with_store(path, second)
    assert with_store(path, lambda s: s.last_routing_seq()) == 10


# --- the file ---------------------------------------------------------------------------------


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def write(store: SqliteStore) -> dict[str, Any]:
        meetings = [await a_meeting(store, title=f"m{i}", created_at=float(i)) for i in range(6)]
        people = {
            m.id: [await a_participant(store, m.id, worker=i) for i in range(4)] for m in meetings
        }
        await store.update_meeting(meetings[0].id, locked=True, recording=True)
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

    async def snapshot(store: SqliteStore) -> dict[str, Any]:
        meetings = await store.list_meetings(limit=1000)
        return {
            "meetings": meetings,
            "participants": {m.id: await store.list_participants(m.id) for m in meetings},
            "usage": await store.list_usage(),
            "routing": await store.routing_updates_after(0),
        }

    before = with_store(path, write)
    # WAL checkpointed on close: the main file alone holds everything.
    assert not (tmp_path / "relay.db-wal").exists()
    after = with_store(path, snapshot)
    assert after == before
    assert len(after["meetings"]) == 6 and after["meetings"][-1].locked
    assert sum(len(p) for p in after["participants"].values()) == 24
    # Reopening does not recreate or re-version anything.
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    raw.close()


def test_nothing_lost_when_the_process_is_killed(tmp_path: Path) -> None:
    """Every write that returned is on disk, even if the process dies without closing."""
    path = tmp_path / "relay.db"
    script = f"""
import asyncio, os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
from control.store import SqliteStore

async def main():
    store = await SqliteStore.open({str(path)!r})
    m = await store.create_meeting(title="t", mode="meeting", suite="s", password_hash="h",
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

        return await store._call(pragmas)

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
    # Written by a newer relay: refused, not silently misread.
    newer = tmp_path / "newer.db"
    with_store(newer, lambda s: s.last_routing_seq())
    raw = sqlite3.connect(newer)
    raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    raw.close()
    with pytest.raises(SchemaMismatch, match="newer"):
        run(SqliteStore.open(newer))


def test_closed_store_refuses_calls_and_close_is_idempotent(tmp_path: Path) -> None:
    async def main() -> None:
        async with await SqliteStore.open(tmp_path / "relay.db") as store:
            pending = [asyncio.ensure_future(a_meeting(store)) for _ in range(20)]
            await asyncio.sleep(0)  # queued on the store's thread
            await store.close()  # waits for the queued writes: none fails on a closed file
            assert len({m.id for m in await asyncio.gather(*pending)}) == 20
            assert store.closed
            with pytest.raises(StoreClosed):
                await store.get_meeting("x")
            await store.close()
        async with await SqliteStore.open(tmp_path / "relay.db") as again:
            assert len(await again.list_meetings()) == 20

    run(main())


# --- concurrency ------------------------------------------------------------------------------


def test_concurrent_calls_all_land(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
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

    with_store(tmp_path / "relay.db", body)


def test_database_work_runs_off_the_event_loop_on_one_thread(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        loop_thread = threading.get_ident()
        idents = await asyncio.gather(
            *(store._call(lambda _conn: threading.get_ident()) for _ in range(20))
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
        await store._call(slow)
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
        with pytest.raises(StoreError, match="PostgreSQL"):
            await open_store("postgresql://localhost/relay")
        with pytest.raises(StoreError, match="scheme"):
            await open_store("mysql://localhost/relay")

    run(main())
    assert {p.name for p in tmp_path.glob("*.db")} == {"a.db", "b.db", "relay.db"}


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


def _pg_programs() -> tuple[str, str, str] | None:
    initdb, pg_ctl, psql = (shutil.which(p) for p in ("initdb", "pg_ctl", "psql"))
    if initdb is None or pg_ctl is None or psql is None:
        return None
    return initdb, pg_ctl, psql


def test_schema_and_statements_valid_on_postgresql(request: pytest.FixtureRequest) -> None:
    """Run schema.sql (twice: idempotent) and PREPARE every shared statement on a throwaway
    PostgreSQL server; a round trip through booleans, BYTEA, the foreign key and the checks."""
    programs = _pg_programs()
    if programs is None:
        pytest.skip("PostgreSQL's initdb, pg_ctl and psql are not installed")
    initdb, pg_ctl, psql = programs
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: use its own account
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            pytest.skip("running as root without a postgres account to run PostgreSQL as")
        as_user = [runuser, "-u", "postgres", "--"]
    # A directory of its own that the postgres account can reach (pytest's is root's, 0700).
    tmp_path = Path(tempfile.mkdtemp(prefix="relay-pg-"))
    os.chmod(tmp_path, 0o777)
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    data, sock = tmp_path / "pg", tmp_path
    script = tmp_path / "check.sql"
    lines = ["\\set ON_ERROR_STOP 1"]
    lines += [s + ";" for s in schema_statements("postgresql")] * 2
    statements = {
        name: value
        for name, value in vars(sql).items()
        if name.isupper()
        and isinstance(value, str)
        and value.split(" ", 1)[0] in {"SELECT", "INSERT", "UPDATE", "DELETE"}
    }
    statements["UPDATE_M"] = sql.update("meetings", sql.MEETING_UPDATABLE, sql.MEETING_UPDATABLE)
    statements["UPDATE_P"] = sql.update(
        "participants", sql.PARTICIPANT_UPDATABLE, sql.PARTICIPANT_UPDATABLE
    )
    statements["LIST_P0"] = sql.list_participants("m", True, 10, 5)[0]
    statements["LIST_P1"] = sql.list_participants("m", False, None, 3)[0]
    statements["LIST_U0"] = sql.list_usage(None, 5, 1)[0]
    statements["LIST_U1"] = sql.list_usage("m", None, 0)[0]
    statements["ROUTING_0"] = sql.routing_after(3, None)[0]
    statements["ROUTING_1"] = sql.routing_after(3, 10)[0]
    assert len(statements) >= 20
    for name, text in statements.items():
        parts = text.split("?")
        numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
        lines.append(f"PREPARE {name.lower()} AS {numbered};")
    lines += [
        "EXECUTE insert_meeting('m', 't', 'webinar', 's', 'h', NULL, 'd', 'open', "
        "FALSE, FALSE, 1.5, NULL, 1);",
        "EXECUTE insert_participant('p', 'm', 'n', 'attendee', '[]', NULL, "
        "'\\x00ff'::bytea, '\\x01'::bytea, 2, FALSE, FALSE, 2.0, NULL, 1);",
        "EXECUTE update_m('x', TRUE, FALSE, 'ended', 3.0, 'm');",
        "EXECUTE update_p(TRUE, FALSE, 'panelist', '\\x02'::bytea, '\\x03'::bytea, 4.0, 'p');",
        "EXECUTE insert_usage(1, 'm', 1.0, 2.0, 1.0, 1, 1, 0.5, '[]', 1, 2, 3, 4);",
        "EXECUTE insert_routing(1, 1.0, '{}');",
        "\\echo RESULT",
        "SELECT m.title, m.locked, m.state, p.role, p.muted, encode(p.uplink_sealed, 'hex'), "
        "(SELECT MAX(seq) FROM routing_log), (SELECT MAX(id) + 1 FROM usage_records) "
        "FROM meetings m JOIN participants p ON p.meeting_id = m.id;",
        "\\set ON_ERROR_STOP 0",
        "EXECUTE insert_participant('q', 'nope', 'n', 'host', '[]', NULL, '\\x01'::bytea, "
        "'\\x01'::bytea, 0, FALSE, FALSE, 1.0, NULL, 2);",
        "EXECUTE insert_meeting('m2', 't', 'party', 's', 'h', NULL, 'd', 'open', "
        "FALSE, FALSE, 1.5, NULL, 2);",
    ]
    script.write_text("\n".join(lines) + "\n")
    # PostgreSQL's programs must not inherit the debug run's sanitizer preload (it hangs
    # initdb's bootstrap backend).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")
    }
    env["LC_ALL"] = "C"

    def pg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=120, env=env, check=False
        )
        assert not check or done.returncode == 0, f"{args[0]}: {done.stdout}{done.stderr}"
        return done

    pg(initdb, "-D", str(data), "-A", "trust", "-U", "relay")
    port = str(20000 + os.getpid() % 20000)
    options = f"-c listen_addresses='' -k {sock} -p {port} -c fsync=off"
    pg(pg_ctl, "-D", str(data), "-o", options, "-l", str(tmp_path / "pg.log"), "-w", "start")
    try:
        out = pg(
            psql,
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            str(sock),
            "-p",
            port,
            "-U",
            "relay",
            "-d",
            "postgres",
            "-f",
            str(script),
            check=False,
        )
    finally:
        pg(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    result = out.stdout.split("RESULT", 1)[1].split()
    assert result[0] == "x|t|ended|panelist|t|02|1|2", out.stdout
    assert 'violates foreign key constraint "participants_meeting_id_fkey"' in out.stderr
    assert 'violates check constraint "meetings_mode_check"' in out.stderr
