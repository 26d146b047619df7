"""The SQLite backend: one file in WAL mode, nothing to install (README.md, "Serve it"): the
store's executor on a sqlite3 connection, and `SqliteStore`.

`SqliteStore.open(path)` opens (or creates) the database file with mode 0600 (it holds password
hashes and host key digests), switches it to WAL (`journal_mode=WAL`, which persists in the
file), and creates the schema on first open (control/store/schema.py `open_schema`).

Threading: the stdlib sqlite3 module blocks, so the store owns one connection and one worker
thread (a ThreadPoolExecutor with a single thread). The connection is created, used and closed
only on that thread (sqlite3 refuses a connection used from another thread:
https://docs.python.org/3/library/sqlite3.html#sqlite3.connect, `check_same_thread`). Every
store operation is one job queued to it: `SqliteExecutor.run` hands the whole operation (a
coroutine over this executor, written once for both backends) to the thread, which runs it
from start to end in that one call (`_drive`). The executor's statements (`fetch_one`,
`fetch_all`, `execute`, the transaction's BEGIN and COMMIT) are coroutines that never suspend:
each runs its statement on the connection at once and returns. So a transaction holds the
connection for all of its statements with no lock (nothing else runs on the thread meanwhile),
the event loop never blocks, an operation costs one trip to the thread however many statements
it runs (a join's insert runs six), and the calls of many asyncio tasks run one after another,
in the order they were made. (The other way, an asyncio.Lock held on the event loop across a
transaction whose statements each go to the thread, would cost a trip per statement, and a
caller cancelled between two statements would leave its transaction open unless shielded.)
A job that its caller stopped awaiting (a cancelled task) still runs to its end once it
started: a write commits or rolls back whole.

Durability: every write is one transaction (`BEGIN IMMEDIATE` .. `COMMIT`: the write lock is
taken at once, so two processes never deadlock upgrading a read lock,
https://www.sqlite.org/lang_transaction.html), with `synchronous=NORMAL`. In WAL mode that
survives the process being killed at any point (what `relay serve` needs: the control plane
may be killed and restarted); only a power loss or OS crash can lose the last transactions
before a checkpoint, never corrupt the file (https://www.sqlite.org/pragma.html#pragma_synchronous).
`foreign_keys=ON` makes SQLite enforce the schema's REFERENCES, and `busy_timeout` lets a
second process (a CLI reading the same file) wait for a write lock instead of failing at once.

Erasure (README.md, "Attendee data (privacy)": erasing a person leaves nothing readable).
`secure_delete=ON` makes SQLite overwrite with zeros whatever a statement deletes or replaces,
in the pages it writes (https://www.sqlite.org/pragma.html#pragma_secure_delete); but in WAL
mode the older versions of those pages stay in the -wal file until a checkpoint copies the
newest into the database and the WAL is emptied (https://www.sqlite.org/wal.html). So erasing
registrations, deleting a meeting and deleting unconfirmed registrations (replaced, discarded
or purged; version 5) end with `wal_checkpoint(TRUNCATE)` (`scrub_journal`): afterwards
neither the database file nor the WAL holds an erased registrant's wrapped data key, sealed
fields, email tag or token digest, nor the name a participant who joined with it gave. A
checkpoint that another connection blocks (a reader in another process) is logged and retried
at the next erasure and at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from control.store.errors import (
    FOREIGN_KEY,
    OTHER_CONSTRAINT,
    UNIQUE,
    StoreError,
    constraint_error,
)
from control.store.executor import SQLITE, Database, Dialect, Operation, Row
from control.store.schema import open_schema
from control.store.store import Store

__all__ = ["FILE_MODE", "SqliteExecutor", "SqliteStore"]

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


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the file at `path` (made 0600), in WAL mode, with the pragmas this
    module's docstring describes."""
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
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the database {str(path)!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _store_error(exc: sqlite3.Error, failing: str) -> StoreError:
    """sqlite3's exception as the store's (callers never import sqlite3): a constraint of the
    database by its kind (the extended result code,
    https://www.sqlite.org/rescode.html#constraint), anything else as StoreError."""
    if isinstance(exc, sqlite3.IntegrityError):
        what = "a database constraint failed"
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
            return constraint_error(what, FOREIGN_KEY, exc)
        if name in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
            return constraint_error(what, UNIQUE, exc)
        return constraint_error(what, OTHER_CONSTRAINT, exc)
    return StoreError(f"{failing}: {exc}")


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database file and empty it: the older versions of the pages an
    erasure overwrote leave the -wal file (secure_delete has zeroed them in the new ones)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        log.warning("the WAL could not be emptied now (another connection reads); retried later")


def _close(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA optimize")
    conn.close()  # the last connection to close checkpoints the WAL into the main file


def _drive(operation: Operation[T], executor: SqliteExecutor) -> T:
    """Run a store operation from start to end, here on the store's thread, in this one call.

    Every await in it is of the executor's statements, which never suspend, so the coroutine
    finishes at its first step. One that suspended would be waiting for the event loop from
    the wrong thread: it is stopped (its transaction rolls back) and refused."""
    coroutine = operation(executor)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return cast(T, finished.value)
    coroutine.close()
    raise RuntimeError("a store operation waited for something other than its SQLite statements")


# --- the executor -----------------------------------------------------------------------------


class _Transaction:
    """`SqliteExecutor.transaction()`: an async context written out rather than made with
    contextlib.asynccontextmanager, which costs a generator and a few calls more per write."""

    def __init__(self, executor: SqliteExecutor) -> None:
        self._executor = executor

    async def __aenter__(self) -> SqliteExecutor:
        self._executor._control("BEGIN IMMEDIATE")
        return self._executor

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            try:
                self._executor._control("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()  # and what was raised inside goes on

    def _rollback(self) -> None:
        if self._executor.in_transaction:
            self._executor._control("ROLLBACK")


class SqliteExecutor:
    """The store's executor (control/store/executor.py `Database`) on one sqlite3 connection,
    used only on its one thread. Make one with `await SqliteExecutor.connect(path)`."""

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor, failing: str) -> None:
        """Use `connect()`: this takes a connection made on `thread`, its only thread."""
        self._conn = conn
        self._thread = thread
        self.failing = failing
        """What a driver error's message starts with ('cannot open the database ...' until
        the store is open)."""

    @classmethod
    async def connect(cls, path: Path) -> SqliteExecutor:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-store")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, _connect, path)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(conn, thread, f"cannot open the database {str(path)!r}")

    @property
    def dialect(self) -> Dialect:
        return SQLITE

    # Statements: awaited only inside an operation that `run` drives on the thread. Each is
    # written out (no helper between it and sqlite3): a join runs a dozen of them.

    async def fetch_one(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            row: Row | None = self._conn.execute(query, params).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc, self.failing) from exc
        return row

    async def fetch_all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return self._conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc, self.failing) from exc

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        try:
            count: int = self._conn.execute(query, params).rowcount
        except sqlite3.Error as exc:
            raise _store_error(exc, self.failing) from exc
        return max(count, 0)  # -1: not an INSERT, UPDATE or DELETE

    def transaction(self) -> _Transaction:
        """One write transaction: BEGIN IMMEDIATE takes the write lock at once (no upgrade
        deadlock between processes); anything raised inside rolls it back. It yields this
        executor: on the one thread, its statements are the transaction's."""
        return _Transaction(self)

    def _control(self, statement: str) -> None:
        """BEGIN, COMMIT or ROLLBACK."""
        try:
            self._conn.execute(statement)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.failing) from exc

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def scrub_journal(self) -> None:
        try:
            _checkpoint(self._conn)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.failing) from exc

    # around the operations, on the event loop

    async def run(self, operation: Operation[T]) -> T:
        """The operation's result, once the store's thread ran it whole (`_drive`), after
        every operation queued before it."""
        job = functools.partial(_drive, operation, self)
        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    async def call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """fn(connection, ...) on the store's thread, after every job queued before it;
        sqlite3's exceptions leave as the store's."""
        job = functools.partial(self._translated, fn, self._conn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._thread, job)

    def _translated(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.failing) from exc

    async def close(self) -> None:
        """Finish the jobs queued before this one, close the connection (which checkpoints
        the WAL into the database file), and stop the thread."""
        try:
            await self.call(_close)
        finally:
            self._thread.shutdown(wait=True)

    def discard(self) -> None:
        """Close the connection and let the thread go, without waiting (a store that failed
        to open)."""
        self._thread.submit(_close, self._conn)
        self._thread.shutdown(wait=False)


# --- the store --------------------------------------------------------------------------------


class SqliteStore(Store):
    """`Store` on one SQLite file. Make one with `await SqliteStore.open(path)`; it is also an
    async context manager that closes itself."""

    _executor: SqliteExecutor

    def __init__(self, path: Path, executor: SqliteExecutor) -> None:
        """Use `open()`: this takes an executor on a database that has the schema."""
        super().__init__(executor)
        self.path = path

    @classmethod
    async def open(cls, path: str | os.PathLike[str]) -> SqliteStore:
        """Open or create the database at `path` (its directory must exist).

        Raises:
            StoreError: the file cannot be created or opened, is not an SQLite database, or
                cannot use WAL mode.
            SchemaMismatch: the database was written by a newer relay.
        """
        db_path = Path(path)
        executor = await SqliteExecutor.connect(db_path)

        async def opened(db: Database) -> None:
            await open_schema(db)
            _secure_companions(db_path)  # after the schema's first write made them

        try:
            await executor.run(opened)
        except BaseException:
            executor.discard()
            raise
        executor.failing = "database error"
        return cls(db_path, executor)
