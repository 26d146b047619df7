"""The SQLite backend: one file in WAL mode, nothing to install (DESIGN.md, "Storage and scale").

`SqliteStore.open(path)` opens (or creates) the database file with mode 0600 (it holds password
hashes and host key digests), switches it to WAL (`journal_mode=WAL`, which persists in the
file), and creates the schema on first open.

Threading: the stdlib sqlite3 module blocks, so the store owns one connection and one worker
thread (a ThreadPoolExecutor with a single thread). The connection is created, used and closed
only on that thread; every call is a job queued to it, so the event loop never blocks and the
calls of many asyncio tasks run one after another, in the order they were made. A job that its
caller stopped awaiting (a cancelled task) still runs to its end: a write that started commits
or rolls back whole.

Durability: every write is one transaction (`BEGIN IMMEDIATE` .. `COMMIT`), with
`synchronous=NORMAL`. In WAL mode that survives the process being killed at any point (what
`relay serve` needs: the control plane may be killed and restarted); only a power loss or OS
crash can lose the last transactions before a checkpoint, never corrupt the file.
`foreign_keys=ON` makes SQLite enforce the schema's REFERENCES, and `busy_timeout` lets a
second process (a CLI reading the same file) wait for a write lock instead of failing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from control.store import sql
from control.store.base import (
    DEFAULT_PAGE,
    MAX_WIRE_ID,
    SCHEMA_VERSION,
    STATES,
    DuplicateKey,
    ForeignKeyViolation,
    IntegrityViolation,
    MeetingRow,
    ParticipantRow,
    RoutingUpdate,
    SchemaMismatch,
    StoreClosed,
    StoreError,
    UsageRecord,
    check_choice,
    check_int,
    check_page,
    check_routing,
    check_text,
    meeting_changes,
    new_meeting,
    new_participant,
    new_usage,
    participant_changes,
    schema_statements,
)

__all__ = ["FILE_MODE", "SqliteStore"]

P = ParamSpec("P")
T = TypeVar("T")

FILE_MODE = 0o600
"""The mode of the database file and of its -wal and -shm companions."""

BUSY_TIMEOUT_S = 5.0


# --- on the store's thread --------------------------------------------------------------------


def _secure_file(path: Path) -> None:
    """Create the file if need be, with mode 0600 from the start; tighten an existing one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _secure_companions(path: Path) -> None:
    # SQLite creates -wal and -shm with the database file's mode; make sure of it.
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(companion.stat().st_mode) != FILE_MODE:
                companion.chmod(FILE_MODE)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: BEGIN IMMEDIATE takes the write lock at once (no upgrade
    deadlock between processes); anything raised inside rolls it back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _connect(path: Path) -> sqlite3.Connection:
    if not path.parent.is_dir():
        raise StoreError(
            f"cannot open the database {str(path)!r}: no directory {str(path.parent)!r}"
        )
    try:
        _secure_file(path)
    except OSError as exc:
        raise StoreError(f"cannot open the database {str(path)!r}: {exc.strerror}") from exc
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot use WAL mode for {str(path)!r} (journal mode is {mode!r})")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
            raise StoreError("this SQLite library cannot enforce foreign keys")
        _create_schema(conn)
        _secure_companions(path)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the database {str(path)!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(conn: sqlite3.Connection) -> None:
    with _transaction(conn):
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        version = conn.execute(sql.SELECT_SCHEMA_VERSION).fetchone()[0] if exists else None
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"the database has schema version {version}, newer than this relay's "
                f"({SCHEMA_VERSION}): run a newer relay, or restore a backup"
            )
        if version == 1:
            # Version 2 added the wire ids: add the columns and number the existing rows in
            # the order they were inserted (the schema below then adds the unique indexes).
            for statement in sql.MIGRATE_1_TO_2:
                conn.execute(statement)
            conn.execute(sql.UPDATE_SCHEMA_VERSION, (SCHEMA_VERSION,))
        # Idempotent: on an existing database this creates nothing new.
        for statement in schema_statements("sqlite"):
            conn.execute(statement)
        if version is None:
            conn.execute(sql.INSERT_SCHEMA_VERSION, (SCHEMA_VERSION,))


def _integrity(exc: sqlite3.IntegrityError, what: str) -> IntegrityViolation:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return ForeignKeyViolation(f"{what}: it refers to a row that does not exist")
    if name in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
        return DuplicateKey(f"{what}: the key exists already")
    return IntegrityViolation(f"{what}: {exc}")


def _next_wire_id(conn: sqlite3.Connection, table: str) -> int:
    """MAX + 1 over the table and its counter, inside the caller's transaction; the counter
    then holds it, so the id is never handed out again even if the row is deleted."""
    counter = conn.execute(sql.SELECT_WIRE_COUNTER, (table,)).fetchone()
    highest = int(conn.execute(sql.max_wire_id(table)).fetchone()[0])
    next_id = max(highest, 0 if counter is None else int(counter[0])) + 1
    if next_id > MAX_WIRE_ID:
        raise StoreError(f"no {table} wire ids left: they are unsigned 32-bit numbers")
    if counter is None:
        conn.execute(sql.INSERT_WIRE_COUNTER, (table, next_id))
    else:
        conn.execute(sql.UPDATE_WIRE_COUNTER, (next_id, table))
    return next_id


def _insert_meeting(conn: sqlite3.Connection, row: MeetingRow) -> MeetingRow:
    with _transaction(conn):
        stored = dataclasses.replace(row, wire_id=_next_wire_id(conn, "meetings"))
        try:
            conn.execute(sql.INSERT_MEETING, sql.meeting_params(stored))
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc, f"cannot create meeting {row.id!r}") from exc
    return stored


def _fetch_one(
    conn: sqlite3.Connection,
    query: str,
    params: Sequence[Any],
    decode: Callable[[Sequence[Any]], T],
) -> T | None:
    row = conn.execute(query, params).fetchone()
    return None if row is None else decode(row)


def _fetch_all(
    conn: sqlite3.Connection,
    query: str,
    params: Sequence[Any],
    decode: Callable[[Sequence[Any]], T],
) -> list[T]:
    return [decode(row) for row in conn.execute(query, params).fetchall()]


def _update(
    conn: sqlite3.Connection,
    table: str,
    allowed: Sequence[str],
    select: str,
    decode: Callable[[Sequence[Any]], T],
    row_id: str,
    changes: dict[str, object],
) -> T | None:
    with _transaction(conn):
        if changes:
            statement = sql.update(table, list(changes), allowed)
            try:
                conn.execute(statement, [*changes.values(), row_id])
            except sqlite3.IntegrityError as exc:
                raise _integrity(exc, f"cannot update {table} row {row_id!r}") from exc
        return _fetch_one(conn, select, (row_id,), decode)


def _delete_meeting(conn: sqlite3.Connection, meeting_id: str) -> bool:
    with _transaction(conn):
        conn.execute(sql.DELETE_PARTICIPANTS_OF, (meeting_id,))
        return conn.execute(sql.DELETE_MEETING, (meeting_id,)).rowcount > 0


def _insert_participant(conn: sqlite3.Connection, row: ParticipantRow) -> ParticipantRow:
    with _transaction(conn):
        stored = dataclasses.replace(row, wire_id=_next_wire_id(conn, "participants"))
        try:
            conn.execute(sql.INSERT_PARTICIPANT, sql.participant_params(stored))
        except sqlite3.IntegrityError as exc:
            error = _integrity(exc, f"cannot add participant {row.id!r}")
            if isinstance(error, ForeignKeyViolation):
                error = ForeignKeyViolation(
                    f"cannot add a participant to meeting {row.meeting_id!r}: no such meeting"
                )
            raise error from exc
    return stored


def _append_usage(conn: sqlite3.Connection, record: UsageRecord, features: str) -> UsageRecord:
    with _transaction(conn):
        stored = dataclasses.replace(record, id=int(conn.execute(sql.NEXT_USAGE_ID).fetchone()[0]))
        try:
            conn.execute(sql.INSERT_USAGE, sql.usage_params(stored, features))
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc, "cannot append the usage record") from exc
    return stored


def _append_routing(conn: sqlite3.Connection, body: str, seq: int | None, created_at: float) -> int:
    with _transaction(conn):
        last = int(conn.execute(sql.LAST_ROUTING_SEQ).fetchone()[0])
        if seq is None:
            seq = last + 1
        elif seq <= last:
            raise DuplicateKey(
                f"routing update {seq} is not after the last stored one ({last}): "
                "numbers only go up"
            )
        conn.execute(sql.INSERT_ROUTING, (seq, created_at, body))
    return seq


def _last_routing_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute(sql.LAST_ROUTING_SEQ).fetchone()[0])


def _close(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA optimize")
    conn.close()  # the last connection to close checkpoints the WAL into the main file


def _translated(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run fn; sqlite3's own exceptions leave as StoreError (callers never import sqlite3)."""
    try:
        return fn(*args, **kwargs)
    except sqlite3.IntegrityError as exc:
        raise IntegrityViolation(f"a database constraint failed: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"database error: {exc}") from exc


# --- the store --------------------------------------------------------------------------------


class SqliteStore:
    """The `Store` protocol on one SQLite file. Make one with `await SqliteStore.open(path)`;
    it is also an async context manager that closes itself."""

    dialect = "sqlite"

    def __init__(self, path: Path, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        """Use `open()`: this takes a connection made on `executor`'s only thread."""
        self.path = path
        self._conn = conn
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SqliteStore:
        """Open or create the database at `path` (its directory must exist).

        Raises:
            StoreError: the file cannot be created or opened, is not an SQLite database, or
                cannot use WAL mode.
            SchemaMismatch: the database was written by a newer relay.
        """
        db_path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-store")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, db_path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(db_path, conn, executor)

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def _call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run fn(connection, ...) on the store's thread, after every call queued before it."""
        if self._closed:
            raise StoreClosed("the store is closed")
        job = functools.partial(_translated, fn, self._conn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    # meetings

    async def create_meeting(
        self,
        *,
        title: str,
        mode: str,
        suite: str,
        password_hash: str,
        host_key_digest: str,
        panelist_password_hash: str | None = None,
        created_at: float | None = None,
        meeting_id: str | None = None,
    ) -> MeetingRow:
        row = new_meeting(
            title=title,
            mode=mode,
            suite=suite,
            password_hash=password_hash,
            host_key_digest=host_key_digest,
            panelist_password_hash=panelist_password_hash,
            created_at=created_at,
            meeting_id=meeting_id,
        )
        return await self._call(_insert_meeting, row)

    async def get_meeting(self, meeting_id: str) -> MeetingRow | None:
        return await self._call(_fetch_one, sql.SELECT_MEETING, (meeting_id,), sql.meeting_row)

    async def list_meetings(
        self, *, limit: int = DEFAULT_PAGE, offset: int = 0, state: str | None = None
    ) -> list[MeetingRow]:
        check_int("limit", limit)
        check_int("offset", offset)
        params: list[object]
        if state is None:
            query, params = sql.LIST_MEETINGS, [limit, offset]
        else:
            query = sql.LIST_MEETINGS_IN_STATE
            params = [check_choice("state", state, STATES), limit, offset]
        return await self._call(_fetch_all, query, params, sql.meeting_row)

    async def update_meeting(
        self,
        meeting_id: str,
        *,
        title: str | None = None,
        locked: bool | None = None,
        recording: bool | None = None,
        state: str | None = None,
        ended_at: float | None = None,
    ) -> MeetingRow | None:
        changes = meeting_changes(
            title=title, locked=locked, recording=recording, state=state, ended_at=ended_at
        )
        return await self._call(
            _update,
            "meetings",
            sql.MEETING_UPDATABLE,
            sql.SELECT_MEETING,
            sql.meeting_row,
            meeting_id,
            changes,
        )

    async def delete_meeting(self, meeting_id: str) -> bool:
        return await self._call(_delete_meeting, meeting_id)

    # participants

    async def add_participant(
        self,
        *,
        meeting_id: str,
        name: str,
        role: str,
        uplink_sealed: bytes,
        downlink_sealed: bytes,
        worker: int,
        streams: str = "[]",
        receive_at: str | None = None,
        joined_at: float | None = None,
        participant_id: str | None = None,
    ) -> ParticipantRow:
        row = new_participant(
            meeting_id=meeting_id,
            name=name,
            role=role,
            uplink_sealed=uplink_sealed,
            downlink_sealed=downlink_sealed,
            worker=worker,
            streams=streams,
            receive_at=receive_at,
            joined_at=joined_at,
            participant_id=participant_id,
        )
        return await self._call(_insert_participant, row)

    async def get_participant(
        self, participant_id: str, *, meeting_id: str | None = None
    ) -> ParticipantRow | None:
        params: tuple[str, ...]
        if meeting_id is None:
            query, params = sql.SELECT_PARTICIPANT, (participant_id,)
        else:
            query, params = sql.SELECT_PARTICIPANT_OF, (participant_id, meeting_id)
        return await self._call(_fetch_one, query, params, sql.participant_row)

    async def list_participants(
        self,
        meeting_id: str,
        *,
        present_only: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ParticipantRow]:
        check_page(limit, offset)
        query, params = sql.list_participants(meeting_id, present_only, limit, offset)
        return await self._call(_fetch_all, query, params, sql.participant_row)

    async def update_participant(
        self,
        participant_id: str,
        *,
        muted: bool | None = None,
        expelled: bool | None = None,
        role: str | None = None,
        uplink_sealed: bytes | None = None,
        downlink_sealed: bytes | None = None,
        left_at: float | None = None,
    ) -> ParticipantRow | None:
        changes = participant_changes(
            muted=muted,
            expelled=expelled,
            role=role,
            uplink_sealed=uplink_sealed,
            downlink_sealed=downlink_sealed,
            left_at=left_at,
        )
        return await self._call(
            _update,
            "participants",
            sql.PARTICIPANT_UPDATABLE,
            sql.SELECT_PARTICIPANT,
            sql.participant_row,
            participant_id,
            changes,
        )

    # usage records

    async def append_usage(
        self,
        *,
        meeting_id: str,
        started_at: float,
        ended_at: float,
        total_participants: int,
        peak_participants: int,
        participant_minutes: float,
        features: Sequence[str] = (),
        packets_in: int = 0,
        packets_out: int = 0,
        bytes_in: int = 0,
        bytes_out: int = 0,
        duration_s: float | None = None,
    ) -> UsageRecord:
        record, features_json = new_usage(
            meeting_id=meeting_id,
            started_at=started_at,
            ended_at=ended_at,
            total_participants=total_participants,
            peak_participants=peak_participants,
            participant_minutes=participant_minutes,
            features=features,
            packets_in=packets_in,
            packets_out=packets_out,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            duration_s=duration_s,
        )
        return await self._call(_append_usage, record, features_json)

    async def list_usage(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[UsageRecord]:
        check_page(limit, offset)
        if meeting_id is not None:
            check_text("meeting id", meeting_id)
        query, params = sql.list_usage(meeting_id, limit, offset)
        return await self._call(_fetch_all, query, params, sql.usage_record)

    # routing log

    async def append_routing_update(
        self, body: str, *, seq: int | None = None, created_at: float | None = None
    ) -> int:
        body, seq, when = check_routing(body, seq, created_at)
        return await self._call(_append_routing, body, seq, when)

    async def routing_updates_after(
        self, seq: int, *, limit: int | None = None
    ) -> list[RoutingUpdate]:
        check_int("seq", seq)
        check_page(limit, 0)
        query, params = sql.routing_after(seq, limit)
        return await self._call(_fetch_all, query, params, sql.routing_update)

    async def last_routing_seq(self) -> int:
        return await self._call(_last_routing_seq)

    async def close(self) -> None:
        """Finish the calls queued before this one, close the connection (which checkpoints
        the WAL into the database file), and stop the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, _translated, _close, self._conn
            )
        finally:
            self._executor.shutdown(wait=True)
