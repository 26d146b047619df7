"""The PostgreSQL backend: many control-plane nodes on one database (README.md, "Serve it"),
with the schema and the operations SQLite uses: the store's executor on an asyncpg pool, and
`PostgresStore`.

`PostgresStore.open(url)` takes a `postgresql://` (or `postgres://`) URL as libpq writes it,
opens an asyncpg connection pool, and creates the schema if need be (control/store/schema.py
`open_schema`, in one transaction under the schema's advisory lock, so two nodes starting at
once neither race on CREATE TABLE nor migrate twice).

Pool: `min_size` connections are opened at once and up to `max_size` when calls overlap. A
statement outside a transaction borrows a connection for itself; a transaction borrows one for
all of its statements (`PostgresExecutor.transaction` yields an executor on that connection).
The operations of many asyncio tasks run side by side, never blocking the event loop. An
operation runs as a task of its own (`run`), so one whose caller stops awaiting it (a
cancelled task) still runs to its end, as it does on SQLite: a write that started commits or
rolls back whole. `close()` waits for the operations in flight, then closes the pool's
connections.

Transactions: every write is one transaction (READ COMMITTED, PostgreSQL's default). The
statements are written with `?` placeholders, rewritten here to asyncpg's `$1, $2, ...` the
first time each is run (`numbered` caches them); asyncpg prepares each statement once per
connection and reuses it (https://magicstack.github.io/asyncpg/current/api/index.html,
`statement_cache_size`). Rows about to change are read `FOR UPDATE`, and the numbers the store
assigns are taken under advisory locks (control/store/executor.py, control/store/numbering.py).

Erasure: an erased registration is overwritten by an UPDATE, which in PostgreSQL writes a new
row version; the old one (with the wrapped data key) stays in the table's pages until VACUUM
reclaims it and later writes reuse the space (https://www.postgresql.org/docs/current/
routine-vacuuming.html). The data key is still only readable with the server's PII key; run
VACUUM (autovacuum does, in time) for the old versions to go. `scrub_journal` has nothing to
do here.

Types: the schema's BOOLEAN, BYTEA, DOUBLE PRECISION, INTEGER/BIGINT and TEXT columns come back
from asyncpg as bool, bytes, float, int and str, and the decoders of the entity modules build
the same row dataclasses as from SQLite. INTEGER is 32 bits in PostgreSQL: a worker index or
participant count beyond 2**31 - 1 is refused by the driver (StoreError), where SQLite would
store it.

Errors: asyncpg's integrity errors become ForeignKeyViolation, DuplicateKey or IntegrityViolation;
every other asyncpg error, and OSError (a refused or lost connection, a timeout), becomes
StoreError. The URL's password never appears in a message or in `repr(store)`: the store keeps
the URL with the password replaced by `***`, and driver messages are scrubbed of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from control.store.errors import (
    FOREIGN_KEY,
    OTHER_CONSTRAINT,
    UNIQUE,
    IntegrityViolation,
    StoreError,
    constraint_error,
)
from control.store.executor import POSTGRESQL, Database, Dialect, Executor, Operation, Row
from control.store.schema import open_schema
from control.store.store import Closer, Store

__all__ = ["PostgresExecutor", "PostgresStore", "numbered", "redact_url"]

T = TypeVar("T")

Connection = Any
"""An asyncpg connection (asyncpg has no type information)."""

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,  # what the server reported
    asyncpg.InterfaceError,  # what the driver refused (a value it cannot encode, a closed pool)
    asyncpg.InternalClientError,
    OSError,  # the connection refused, lost or timed out (TimeoutError is an OSError)
)
"""What asyncpg raises: translated to StoreError, never seen by callers."""

OPEN_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, ValueError)
"""What connecting may raise: the driver's errors, and ValueError for a URL it cannot parse."""


@functools.cache
def numbered(statement: str) -> str:
    """A qmark statement (`?`) in asyncpg's numbered style (`$1`, `$2`, ...). Safe because no
    statement of the store holds a `?` other than its placeholders; cached, so each distinct
    statement is rewritten once."""
    parts = statement.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


def _row_count(status: str) -> int:
    """The number of rows a command changed, from its status ("DELETE 1", "INSERT 0 1"); 0
    for a command that reports none ("CREATE TABLE")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


# --- passwords out of sight -------------------------------------------------------------------

_PASSWORD_PARAMETER = re.compile(r"(?i)([?&](?:ssl)?password=)([^&#]*)")


def redact_url(url: str) -> tuple[str, tuple[str, ...]]:
    """The URL with its password (in the user part, or a `password=` parameter) replaced by
    `***`, and the secrets it held (as written and percent-decoded), to scrub from messages.
    The rest of the URL is left exactly as written. As in any URL (and as asyncpg and libpq
    read it), the password ends the user part: a `/`, `?`, `#` or `@` in it must be
    percent-encoded."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for stop in "/?#":
        at_stop = rest.find(stop)
        if at_stop != -1:
            end = min(end, at_stop)
    netloc, tail = rest[:end], rest[end:]
    secrets: list[str] = []
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            secrets.append(password)
            netloc = f"{user}:***@{hosts}"

    def hide(match: re.Match[str]) -> str:
        secrets.append(match.group(2))
        return match.group(1) + "***"

    tail = _PASSWORD_PARAMETER.sub(hide, tail)
    safe = f"{scheme}{sep}{netloc}{tail}"
    forms = {s for secret in secrets for s in (secret, urllib.parse.unquote(secret)) if s}
    return safe, tuple(sorted(forms, key=len, reverse=True))  # longest first, for _scrub


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _failure(message: str, exc: BaseException, secrets: Sequence[str]) -> StoreError:
    """StoreError("message: what the driver said"), with the secrets scrubbed."""
    return StoreError(f"{message}: {_scrub(str(exc) or type(exc).__name__, secrets)}")


def _cause(exc: BaseException, secrets: Sequence[str]) -> BaseException | None:
    """The driver's exception, to chain to the StoreError; None (left out of the chain) when
    its text shows a secret."""
    leaks = any(secret in text for secret in secrets for text in (str(exc), repr(exc)))
    return None if leaks else exc


def _integrity(exc: BaseException, what: str) -> IntegrityViolation:
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return constraint_error(what, FOREIGN_KEY, exc)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return constraint_error(what, UNIQUE, exc)
    return constraint_error(what, OTHER_CONSTRAINT, exc)


class _Errors:
    """asyncpg's errors as the store's (callers never import asyncpg), with the URL's secrets
    scrubbed from what they say."""

    def __init__(self, url: str, secrets: Sequence[str]) -> None:
        self.url = url  # without its password (`redact_url`)
        self.secrets = tuple(secrets)
        self.failing = f"cannot open the database {url}"  # until the store is open

    def failure(self, message: str, exc: BaseException) -> StoreError:
        return _failure(message, exc, self.secrets)

    def translated(self, exc: BaseException) -> StoreError:
        """The store's error for one of DRIVER_ERRORS."""
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return _integrity(exc, "a database constraint failed")
        return self.failure(self.failing, exc)

    def cause(self, exc: BaseException) -> BaseException | None:
        return _cause(exc, self.secrets)


# --- the executors ----------------------------------------------------------------------------


class _OnConnection:
    """The store's executor on one borrowed connection (a transaction's)."""

    def __init__(self, conn: Connection, errors: _Errors) -> None:
        self.conn = conn
        self._errors = errors

    @property
    def dialect(self) -> Dialect:
        return POSTGRESQL

    # Each statement's driver errors leave as the store's (a try costs nothing until it
    # catches: https://docs.python.org/3.11/whatsnew/3.11.html, "zero-cost" exceptions).

    async def fetch_one(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            row: Row | None = await self.conn.fetchrow(numbered(query), *params)
        except DRIVER_ERRORS as exc:
            raise self._errors.translated(exc) from self._errors.cause(exc)
        return row

    async def fetch_all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return list(await self.conn.fetch(numbered(query), *params))
        except DRIVER_ERRORS as exc:
            raise self._errors.translated(exc) from self._errors.cause(exc)

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        try:
            status = await self.conn.execute(numbered(query), *params)
        except DRIVER_ERRORS as exc:
            raise self._errors.translated(exc) from self._errors.cause(exc)
        return _row_count(status)


class PostgresExecutor:
    """The store's executor (control/store/executor.py `Database`) on an asyncpg pool."""

    def __init__(self, pool: Any, errors: _Errors) -> None:
        self._pool = pool
        self._errors = errors
        self._in_flight: set[asyncio.Task[Any]] = set()

    @property
    def dialect(self) -> Dialect:
        return POSTGRESQL

    async def _borrowed(self, statement: Callable[[_OnConnection], Awaitable[T]]) -> T:
        """statement(executor) on a connection of the pool, given back after it."""
        try:
            async with self._pool.acquire() as conn:
                return await statement(_OnConnection(conn, self._errors))
        except DRIVER_ERRORS as exc:  # acquiring or giving back (the statement's are the store's)
            raise self._errors.translated(exc) from self._errors.cause(exc)

    async def fetch_one(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        return await self._borrowed(lambda on: on.fetch_one(query, params))

    async def fetch_all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._borrowed(lambda on: on.fetch_all(query, params))

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        return await self._borrowed(lambda on: on.execute(query, params))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        """A connection of the pool in a transaction (READ COMMITTED) for the block's
        statements: committed when it ends, rolled back if it raises."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield _OnConnection(conn, self._errors)
        except DRIVER_ERRORS as exc:  # BEGIN, COMMIT, acquiring (the statements' are the store's)
            raise self._errors.translated(exc) from self._errors.cause(exc)

    async def listen(self, channel: str, heard: Callable[[str], None]) -> Closer:
        """Hold a connection that LISTENs on `channel`; the closer gives it back."""

        def callback(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            heard(payload)

        try:
            conn = await self._pool.acquire()
            await conn.add_listener(channel, callback)
        except DRIVER_ERRORS as exc:
            raise self._errors.translated(exc) from self._errors.cause(exc)

        async def close() -> None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await conn.remove_listener(channel, callback)
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._pool.release(conn)

        return close

    async def scrub_journal(self) -> None:
        """Nothing to do: an old row version goes at VACUUM (see the module's docstring)."""

    async def run(self, operation: Operation[T]) -> T:
        """The operation's result, run as a task of its own: to its end even if the caller is
        cancelled, and `close()` waits for it."""
        task = asyncio.ensure_future(operation(self))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that stopped waiting leaves no warning

    async def close(self) -> None:
        """Wait for the operations in flight, then close the pool's connections."""
        try:
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
            await self._pool.close()
        except DRIVER_ERRORS as exc:
            self._pool.terminate()
            error = self._errors.failure(f"cannot close {self._errors.url} cleanly", exc)
            raise error from _cause(exc, self._errors.secrets)
        except BaseException:
            self._pool.terminate()
            raise


async def _notify(db: Database, channel: str, payload: str) -> None:
    await db.execute("SELECT pg_notify(?, ?)", (channel, payload))


# --- the store --------------------------------------------------------------------------------


class PostgresStore(Store):
    """`Store` on a PostgreSQL database. Make one with `await PostgresStore.open(url)`; it is
    also an async context manager that closes itself."""

    def __init__(self, url: str, executor: PostgresExecutor) -> None:
        """Use `open()`: this takes an executor on a database that has the schema. `url` is
        shown in messages and repr(), so it must hold no password (see `redact_url`)."""
        super().__init__(executor)
        self.url = url

    shared = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY, to every session listening on `channel` (one node's notifications reach
        it too): https://www.postgresql.org/docs/current/sql-notify.html."""
        await self._run(_notify, channel, payload)

    async def listen(self, channel: str, heard: Callable[[str], None]) -> Closer | None:
        """LISTEN on a connection of the pool held for it (asyncpg's `add_listener`) until
        the closer is awaited. A lost connection hears nothing more: whoever listens must
        also look for itself now and then."""
        executor = self._executor
        assert isinstance(executor, PostgresExecutor)
        return await executor.listen(channel, heard)

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        """Connect to the database at `url` (`postgresql://user:password@host:port/dbname`,
        or any URL libpq takes), with a pool of `min_size` to `max_size` connections, and
        create the schema if need be.

        Raises:
            StoreError: the server cannot be reached or refuses the connection, or the schema
                cannot be created.
            SchemaMismatch: the database was written by a newer relay.
        """
        safe, secrets = redact_url(url)
        errors = _Errors(safe, secrets)
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        except OPEN_ERRORS as exc:
            raise errors.failure(errors.failing, exc) from _cause(exc, secrets)
        executor = PostgresExecutor(pool, errors)
        try:
            await executor.run(open_schema)
        except BaseException:
            pool.terminate()
            raise
        errors.failing = f"database error on {safe}"
        return cls(safe, executor)
