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

Erasure (DESIGN.md: erasing a person leaves nothing readable). `secure_delete=ON` makes SQLite
overwrite with zeros whatever a statement deletes or replaces, in the pages it writes; but in
WAL mode the older versions of those pages stay in the -wal file until a checkpoint copies the
newest into the database and the WAL is emptied. So erasing registrations, deleting a
meeting and deleting unconfirmed registrations (replaced, discarded or purged; version 5) end
with `wal_checkpoint(TRUNCATE)`: afterwards neither the database file nor the WAL holds an
erased registrant's wrapped data key, sealed fields, email tag or token digest, nor the name a
participant who joined with it gave. A checkpoint that another connection blocks
(a reader in another process) is logged and retried at the next erasure and at close.

The public methods (validation, statements, paging) are `control.store.sql.SqlStore`'s, shared
with the PostgreSQL backend; this module supplies the primitives they run on the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from control.store import sql
from control.store.base import (
    CONFIRMED,
    FULL,
    AuditRow,
    ForeignKeyViolation,
    IntegrityViolation,
    MeetingRow,
    ParticipantRow,
    RegistrationRow,
    RegistrationStep,
    StoreClosed,
    StoreError,
    UsageRecord,
    check_routing_seq,
    no_such_meeting,
)
from control.store.errors import FOREIGN_KEY, OTHER_CONSTRAINT, UNIQUE, constraint_error

__all__ = ["FILE_MODE", "SqliteStore"]

log = logging.getLogger("control.store.sqlite")

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
        conn.execute("PRAGMA secure_delete=ON")
        if conn.execute("PRAGMA secure_delete").fetchone()[0] != 1:
            raise StoreError("this SQLite library cannot overwrite deleted content")
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
        for statement, params in sql.opening_statements("sqlite", version):
            conn.execute(statement, params)


def _integrity(exc: sqlite3.IntegrityError, what: str) -> IntegrityViolation:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return constraint_error(what, FOREIGN_KEY, exc)
    if name in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
        return constraint_error(what, UNIQUE, exc)
    return constraint_error(what, OTHER_CONSTRAINT, exc)


def _next_wire_id(conn: sqlite3.Connection, table: str) -> int:
    """MAX + 1 over the table and its counter, inside the caller's transaction; the counter
    then holds it, so the id is never handed out again even if the row is deleted."""
    counter = conn.execute(sql.SELECT_WIRE_COUNTER, (table,)).fetchone()
    highest = int(conn.execute(sql.max_wire_id(table)).fetchone()[0])
    next_id, statement, params = sql.next_wire_id(
        table, highest, None if counter is None else int(counter[0])
    )
    conn.execute(statement, params)
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
    derive: sql.Derive | None,
) -> T | None:
    with _transaction(conn):  # holds the write lock: what derive reads stays as it is
        if derive is not None:
            read, more = derive
            current = conn.execute(read, (row_id,)).fetchone()
            if current is not None:
                changes = {**changes, **more(current)}
        if changes:
            statement = sql.update(table, list(changes), allowed)
            try:
                conn.execute(statement, [*changes.values(), row_id])
            except sqlite3.IntegrityError as exc:
                raise _integrity(exc, f"cannot update {table} row {row_id!r}") from exc
        return _fetch_one(conn, select, (row_id,), decode)


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database file and empty it: the older versions of the pages an
    erasure overwrote leave the -wal file (secure_delete has zeroed them in the new ones)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("the WAL could not be emptied now (another connection reads); retried later")


def _delete_meeting(conn: sqlite3.Connection, meeting_id: str) -> bool:
    with _transaction(conn):
        conn.execute(sql.DELETE_PARTICIPANTS_OF, (meeting_id,))
        conn.execute(sql.DELETE_REGISTRATIONS_OF, (meeting_id,))
        deleted = conn.execute(sql.DELETE_MEETING, (meeting_id,)).rowcount > 0
    if deleted:
        _checkpoint(conn)
    return deleted


def _insert_registration(
    conn: sqlite3.Connection, row: RegistrationRow, capacity: int | None
) -> RegistrationRow:
    with _transaction(conn):  # the write lock: no other registration counts meanwhile
        if conn.execute(sql.LOCK_MEETING, (row.meeting_id,)).fetchone() is None:
            raise sql.no_meeting_to_register(row.meeting_id)
        if capacity is not None:
            taken = int(conn.execute(sql.COUNT_REGISTRATIONS, (row.meeting_id,)).fetchone()[0])
            if taken >= capacity:
                raise sql.full(row.meeting_id, capacity)
        replaced = conn.execute(
            sql.DELETE_UNCONFIRMED_OF_EMAIL, (row.meeting_id, row.email_tag)
        ).rowcount
        try:
            conn.execute(sql.INSERT_REGISTRATION, sql.registration_params(row))
        except sqlite3.IntegrityError as exc:
            raise _integrity(exc, f"cannot add registration {row.id!r}") from exc
    if replaced:
        _checkpoint(conn)  # the replaced registration held personal data
    return row


def _registration_step(
    conn: sqlite3.Connection,
    registration_id: str,
    meeting_id: str,
    decide: sql.Decide,
    capacity: int | None,
) -> RegistrationStep | None:
    with _transaction(conn):  # the write lock: what is read stays as it is until the end
        if conn.execute(sql.LOCK_MEETING, (meeting_id,)).fetchone() is None:
            return None
        row = _fetch_one(
            conn, sql.SELECT_REGISTRATION_OF, (registration_id, meeting_id), sql.registration_row
        )
        if row is None:
            return None
        outcome, changes = decide(row)
        if outcome == CONFIRMED and capacity is not None:
            taken = int(conn.execute(sql.COUNT_REGISTRATIONS, (meeting_id,)).fetchone()[0])
            if taken >= capacity:
                outcome, changes = FULL, {}
        if changes:
            statement = sql.update("registrations", list(changes), sql.CONFIRMATION_UPDATABLE)
            conn.execute(statement, [*changes.values(), row.id])
        after = _fetch_one(conn, sql.SELECT_REGISTRATION, (row.id,), sql.registration_row)
        assert after is not None
        return RegistrationStep(outcome, after)


def _delete_registrations(conn: sqlite3.Connection, statement: str, params: Sequence[Any]) -> int:
    with _transaction(conn):
        deleted = int(conn.execute(statement, params).rowcount)
    if deleted:
        _checkpoint(conn)
    return deleted


def _use_token(
    conn: sqlite3.Connection, meeting_id: str, token_digest: str, participant_id: str, at: float
) -> RegistrationRow | None:
    with _transaction(conn):
        found = _fetch_one(
            conn, sql.SELECT_REGISTRATION_BY_TOKEN, (meeting_id, token_digest), sql.registration_row
        )
        if found is None:
            return None
        conn.execute(sql.USE_TOKEN, (participant_id, at, found.id))
        return _fetch_one(conn, sql.SELECT_REGISTRATION, (found.id,), sql.registration_row)


def _erase_registrations(
    conn: sqlite3.Connection, ids: Sequence[str], email_tag: str | None, erased_at: float
) -> list[RegistrationRow]:
    with _transaction(conn):
        found: dict[str, str | None] = {}
        for registration_id in ids:
            for rid, participant in conn.execute(sql.SELECT_ERASABLE, (registration_id,)):
                found[rid] = participant
        if email_tag is not None:
            for rid, participant in conn.execute(sql.SELECT_ERASABLE_BY_TAG, (email_tag,)):
                found[rid] = participant
        erased = []
        for rid, participant in found.items():
            conn.execute(sql.ERASE_REGISTRATION, (sql.ERASED_SEALED, erased_at, erased_at, rid))
            if participant is not None:
                conn.execute(sql.SCRUB_PARTICIPANT, ("", participant))
            row = _fetch_one(conn, sql.SELECT_REGISTRATION, (rid,), sql.registration_row)
            assert row is not None
            erased.append(row)
    if erased:
        _checkpoint(conn)
    return erased


def _append_audit(conn: sqlite3.Connection, row: AuditRow) -> AuditRow:
    with _transaction(conn):
        stored = dataclasses.replace(row, id=int(conn.execute(sql.NEXT_AUDIT_ID).fetchone()[0]))
        conn.execute(sql.INSERT_AUDIT, sql.audit_params(stored))
    return stored


def _insert_participant(conn: sqlite3.Connection, row: ParticipantRow) -> ParticipantRow:
    with _transaction(conn):
        stored = dataclasses.replace(row, wire_id=_next_wire_id(conn, "participants"))
        try:
            conn.execute(sql.INSERT_PARTICIPANT, sql.participant_params(stored))
        except sqlite3.IntegrityError as exc:
            error = _integrity(exc, f"cannot add participant {row.id!r}")
            if isinstance(error, ForeignKeyViolation):
                error = no_such_meeting(row.meeting_id)
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
        seq = check_routing_seq(seq, int(conn.execute(sql.LAST_ROUTING_SEQ).fetchone()[0]))
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


class SqliteStore(sql.SqlStore):
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

    # the primitives of sql.SqlStore, each one job on the store's thread

    async def _fetch_one(
        self, query: str, params: Sequence[Any], decode: Callable[[Sequence[Any]], T]
    ) -> T | None:
        return await self._call(_fetch_one, query, params, decode)

    async def _fetch_all(
        self, query: str, params: Sequence[Any], decode: Callable[[Sequence[Any]], T]
    ) -> list[T]:
        return await self._call(_fetch_all, query, params, decode)

    async def _insert_meeting(self, row: MeetingRow) -> MeetingRow:
        return await self._call(_insert_meeting, row)

    async def _update(
        self,
        table: str,
        allowed: Sequence[str],
        select: str,
        decode: Callable[[Sequence[Any]], T],
        row_id: str,
        changes: dict[str, object],
        derive: sql.Derive | None = None,
    ) -> T | None:
        return await self._call(_update, table, allowed, select, decode, row_id, changes, derive)

    async def _delete_meeting(self, meeting_id: str) -> bool:
        return await self._call(_delete_meeting, meeting_id)

    async def _insert_participant(self, row: ParticipantRow) -> ParticipantRow:
        return await self._call(_insert_participant, row)

    async def _insert_registration(
        self, row: RegistrationRow, capacity: int | None
    ) -> RegistrationRow:
        return await self._call(_insert_registration, row, capacity)

    async def _use_token(
        self, meeting_id: str, token_digest: str, participant_id: str, used_at: float
    ) -> RegistrationRow | None:
        return await self._call(_use_token, meeting_id, token_digest, participant_id, used_at)

    async def _registration_step(
        self, registration_id: str, meeting_id: str, decide: sql.Decide, capacity: int | None
    ) -> RegistrationStep | None:
        return await self._call(_registration_step, registration_id, meeting_id, decide, capacity)

    async def _delete_registrations(self, statement: str, params: Sequence[Any]) -> int:
        return await self._call(_delete_registrations, statement, params)

    async def _erase_registrations(
        self, ids: Sequence[str], email_tag: str | None, erased_at: float
    ) -> list[RegistrationRow]:
        return await self._call(_erase_registrations, ids, email_tag, erased_at)

    async def _append_audit(self, row: AuditRow) -> AuditRow:
        return await self._call(_append_audit, row)

    async def _append_usage(self, record: UsageRecord, features: str) -> UsageRecord:
        return await self._call(_append_usage, record, features)

    async def _append_routing(self, body: str, seq: int | None, created_at: float) -> int:
        return await self._call(_append_routing, body, seq, created_at)

    async def _last_routing_seq(self) -> int:
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
