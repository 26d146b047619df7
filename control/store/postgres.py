"""The PostgreSQL backend: many control-plane nodes on one database (DESIGN.md, "Storage and
scale"), with the schema and statements SQLite uses.

`PostgresStore.open(url)` takes a `postgresql://` (or `postgres://`) URL as libpq writes it,
opens an asyncpg connection pool, and creates the schema if need be. The public methods are
`control.store.sql.SqlStore`'s, shared with the SQLite backend, so both validate, refuse and
return alike; this module supplies the primitives they run.

Pool: `min_size` connections are opened at once and up to `max_size` when calls overlap. Each
call borrows one connection for its statement or its transaction and gives it back; the calls
of many asyncio tasks run side by side, never blocking the event loop. A call whose caller
stops awaiting it (a cancelled task) still runs to its end, as it does on SQLite: a write that
started commits or rolls back whole. `close()` refuses new calls (StoreClosed), waits for those
in flight, then closes the pool's connections; it is idempotent.

Transactions: every write is one transaction (READ COMMITTED, PostgreSQL's default). The
statements are sql.py's with their `?` placeholders rewritten to asyncpg's `$1, $2, ...`: the
constant ones once, when this module is imported, the few built per call (an UPDATE of the
given columns, a paged list) the first time each is built (`numbered` caches them). asyncpg
prepares each statement once per connection and reuses it.

Numbers the store assigns (wire ids, usage record and audit ids, routing update numbers) are
MAX + 1 inside the inserting transaction, as on SQLite; there the write lock serialises the
writers, here a transaction-level advisory lock of that counter does (`pg_advisory_xact_lock`,
one key per counter, released at commit or rollback). Under READ COMMITTED the MAX read after
taking the lock sees the row the previous holder committed, so concurrent writers, in one
process or on several nodes, never pick the same number, and the numbers stay gap-free.
Opening serialises the same way on its own key: creating the schema, checking the stored
version (SchemaMismatch for a newer one) and migrating an older one happen in one transaction,
so two nodes starting at once neither race on CREATE TABLE nor migrate twice. A registration
counts its meeting's places with the meeting's row locked (`SELECT ... FOR UPDATE`), so
concurrent registrations never pass the capacity.

Erasure: an erased registration is overwritten by an UPDATE, which in PostgreSQL writes a new
row version; the old one (with the wrapped data key) stays in the table's pages until VACUUM
reclaims it and later writes reuse the space. The data key is still only readable with the
server's PII key; run VACUUM (autovacuum does, in time) for the old versions to go.

Types: the schema's BOOLEAN, BYTEA, DOUBLE PRECISION, INTEGER/BIGINT and TEXT columns come back
from asyncpg as bool, bytes, float, int and str, and the shared decoders in sql.py build the
same row dataclasses as from SQLite. INTEGER is 32 bits in PostgreSQL: a worker index or
participant count beyond 2**31 - 1 is refused by the driver (StoreError), where SQLite would
store it.

Errors: asyncpg's integrity errors become ForeignKeyViolation, DuplicateKey or IntegrityViolation;
every other asyncpg error, and OSError (a refused or lost connection, a timeout), becomes
StoreError. The URL's password never appears in a message or in `repr(store)`: the store keeps
the URL with the password replaced by `***`, and driver messages are scrubbed of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from control.store import sql
from control.store.base import (
    CONFIRMED,
    FULL,
    AuditRow,
    ForeignKeyViolation,
    IntegrityViolation,
    InvalidValue,
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
from control.store.values import check_int

__all__ = ["PostgresStore", "numbered", "redact_url"]

P = ParamSpec("P")
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


# --- statements -------------------------------------------------------------------------------


@functools.cache
def numbered(statement: str) -> str:
    """A qmark statement (`?`) in asyncpg's numbered style (`$1`, `$2`, ...). Safe because no
    statement in sql.py holds a `?` other than its placeholders; cached, so each distinct
    statement is rewritten once."""
    parts = statement.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


def _rewrite_constants() -> None:
    """Rewrite every constant statement of sql.py now, at import time."""
    for name, value in vars(sql).items():
        if name.isupper() and isinstance(value, str) and "?" in value:
            numbered(value)


_rewrite_constants()

_INSERT_MEETING = numbered(sql.INSERT_MEETING)
_INSERT_PARTICIPANT = numbered(sql.INSERT_PARTICIPANT)
_INSERT_USAGE = numbered(sql.INSERT_USAGE)
_INSERT_ROUTING = numbered(sql.INSERT_ROUTING)
_DELETE_MEETING = numbered(sql.DELETE_MEETING)
_DELETE_PARTICIPANTS_OF = numbered(sql.DELETE_PARTICIPANTS_OF)
_SELECT_WIRE_COUNTER = numbered(sql.SELECT_WIRE_COUNTER)
_DELETE_REGISTRATIONS_OF = numbered(sql.DELETE_REGISTRATIONS_OF)
_LOCK_MEETING = numbered(sql.for_update("postgresql", sql.LOCK_MEETING))
_SELECT_BY_TOKEN = numbered(sql.for_update("postgresql", sql.SELECT_REGISTRATION_BY_TOKEN))
_SELECT_REGISTRATION_OF = numbered(sql.for_update("postgresql", sql.SELECT_REGISTRATION_OF))
_DELETE_UNCONFIRMED_OF_EMAIL = numbered(sql.DELETE_UNCONFIRMED_OF_EMAIL)
_SELECT_ERASABLE = numbered(sql.for_update("postgresql", sql.SELECT_ERASABLE))
_SELECT_ERASABLE_BY_TAG = numbered(sql.for_update("postgresql", sql.SELECT_ERASABLE_BY_TAG))

_SCHEMA_EXISTS = "SELECT to_regclass('schema_version') IS NOT NULL"

# Advisory locks: two 32-bit keys, the first naming relay (so they never collide with another
# application's locks on the same database), the second the counter.
_LOCK = "SELECT pg_advisory_xact_lock($1, $2)"
LOCK_SPACE = 0x52454C59  # "RELY"
LOCK_KEYS = {
    "schema": 1,  # creating, checking and migrating the schema
    "meetings": 2,  # the meetings' wire ids
    "participants": 3,  # the participants' wire ids
    "usage_records": 4,  # usage record ids
    "routing_log": 5,  # routing update numbers
    "audit_log": 6,  # audit entry ids
}


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


# --- on a borrowed connection -----------------------------------------------------------------


async def _lock(conn: Connection, counter: str) -> None:
    """Take the counter's advisory lock until the transaction ends."""
    await conn.execute(_LOCK, LOCK_SPACE, LOCK_KEYS[counter])


async def _create_schema(conn: Connection) -> None:
    async with conn.transaction():
        await _lock(conn, "schema")
        exists = await conn.fetchval(_SCHEMA_EXISTS)
        version = await conn.fetchval(numbered(sql.SELECT_SCHEMA_VERSION)) if exists else None
        for statement, params in sql.opening_statements("postgresql", version):
            await conn.execute(numbered(statement), *params)


async def _next_wire_id(conn: Connection, table: str) -> int:
    """MAX + 1 over the table and its counter, under the table's advisory lock, inside the
    caller's transaction; the counter then holds it (sql.next_wire_id)."""
    await _lock(conn, table)
    counter = await conn.fetchval(_SELECT_WIRE_COUNTER, table)
    highest = int(await conn.fetchval(numbered(sql.max_wire_id(table))))
    next_id, statement, params = sql.next_wire_id(
        table, highest, None if counter is None else int(counter)
    )
    await conn.execute(numbered(statement), *params)
    return next_id


async def _fetch_one(
    conn: Connection, query: str, params: Sequence[Any], decode: Callable[[Sequence[Any]], T]
) -> T | None:
    row = await conn.fetchrow(numbered(query), *params)
    return None if row is None else decode(row)


async def _fetch_all(
    conn: Connection, query: str, params: Sequence[Any], decode: Callable[[Sequence[Any]], T]
) -> list[T]:
    return [decode(row) for row in await conn.fetch(numbered(query), *params)]


async def _insert_meeting(conn: Connection, row: MeetingRow) -> MeetingRow:
    async with conn.transaction():
        stored = dataclasses.replace(row, wire_id=await _next_wire_id(conn, "meetings"))
        try:
            await conn.execute(_INSERT_MEETING, *sql.meeting_params(stored))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity(exc, f"cannot create meeting {row.id!r}") from exc
    return stored


async def _update(
    conn: Connection,
    table: str,
    allowed: Sequence[str],
    select: str,
    decode: Callable[[Sequence[Any]], T],
    row_id: str,
    changes: dict[str, object],
    derive: sql.Derive | None,
) -> T | None:
    async with conn.transaction():
        if derive is not None:
            read, more = derive  # read: SELECT ... FOR UPDATE, the row locked until the end
            current = await conn.fetchrow(numbered(read), row_id)
            if current is not None:
                changes = {**changes, **more(current)}
        if changes:
            statement = numbered(sql.update(table, list(changes), allowed))
            try:
                await conn.execute(statement, *changes.values(), row_id)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise _integrity(exc, f"cannot update {table} row {row_id!r}") from exc
        return await _fetch_one(conn, select, (row_id,), decode)


def _row_count(status: str) -> int:
    """The number of rows a command changed, from its status ("DELETE 1")."""
    return int(status.rsplit(" ", 1)[-1])


async def _delete_meeting(conn: Connection, meeting_id: str) -> bool:
    async with conn.transaction():
        await conn.execute(_DELETE_PARTICIPANTS_OF, meeting_id)
        await conn.execute(_DELETE_REGISTRATIONS_OF, meeting_id)
        return _row_count(await conn.execute(_DELETE_MEETING, meeting_id)) > 0


async def _insert_registration(
    conn: Connection, row: RegistrationRow, capacity: int | None
) -> RegistrationRow:
    async with conn.transaction():
        # The meeting's row locked until the end: registrations of one meeting count and
        # insert one after the other, on every node.
        if await conn.fetchrow(_LOCK_MEETING, row.meeting_id) is None:
            raise sql.no_meeting_to_register(row.meeting_id)
        if capacity is not None:
            taken = int(await conn.fetchval(numbered(sql.COUNT_REGISTRATIONS), row.meeting_id))
            if taken >= capacity:
                raise sql.full(row.meeting_id, capacity)
        await conn.execute(_DELETE_UNCONFIRMED_OF_EMAIL, row.meeting_id, row.email_tag)
        try:
            await conn.execute(numbered(sql.INSERT_REGISTRATION), *sql.registration_params(row))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity(exc, f"cannot add registration {row.id!r}") from exc
    return row


async def _registration_step(
    conn: Connection,
    registration_id: str,
    meeting_id: str,
    decide: sql.Decide,
    capacity: int | None,
) -> RegistrationStep | None:
    async with conn.transaction():
        # The meeting's row, then the registration's, locked until the end: in the order a
        # new registration locks them (never a deadlock), so concurrent tries of one code
        # are one after the other and a confirmation counts the places alone.
        if await conn.fetchrow(_LOCK_MEETING, meeting_id) is None:
            return None
        found = await conn.fetchrow(_SELECT_REGISTRATION_OF, registration_id, meeting_id)
        if found is None:
            return None
        row = sql.registration_row(found)
        outcome, changes = decide(row)
        if outcome == CONFIRMED and capacity is not None:
            taken = int(await conn.fetchval(numbered(sql.COUNT_REGISTRATIONS), meeting_id))
            if taken >= capacity:
                outcome, changes = FULL, {}
        if changes:
            statement = sql.update("registrations", list(changes), sql.CONFIRMATION_UPDATABLE)
            await conn.execute(numbered(statement), *changes.values(), row.id)
        after = await _fetch_one(conn, sql.SELECT_REGISTRATION, (row.id,), sql.registration_row)
        assert after is not None
        return RegistrationStep(outcome, after)


async def _delete_registrations(conn: Connection, statement: str, params: Sequence[Any]) -> int:
    async with conn.transaction():
        return _row_count(await conn.execute(numbered(statement), *params))


async def _use_token(
    conn: Connection, meeting_id: str, token_digest: str, participant_id: str, at: float
) -> RegistrationRow | None:
    async with conn.transaction():
        found = await conn.fetchrow(_SELECT_BY_TOKEN, meeting_id, token_digest)
        if found is None:
            return None
        row = sql.registration_row(found)
        await conn.execute(numbered(sql.USE_TOKEN), participant_id, at, row.id)
        return await _fetch_one(conn, sql.SELECT_REGISTRATION, (row.id,), sql.registration_row)


async def _erase_registrations(
    conn: Connection, ids: Sequence[str], email_tag: str | None, erased_at: float
) -> list[RegistrationRow]:
    async with conn.transaction():
        found: dict[str, str | None] = {}
        for registration_id in ids:
            for record in await conn.fetch(_SELECT_ERASABLE, registration_id):
                found[record[0]] = record[1]
        if email_tag is not None:
            for record in await conn.fetch(_SELECT_ERASABLE_BY_TAG, email_tag):
                found[record[0]] = record[1]
        erased = []
        for rid, participant in found.items():
            await conn.execute(
                numbered(sql.ERASE_REGISTRATION), sql.ERASED_SEALED, erased_at, erased_at, rid
            )
            if participant is not None:
                await conn.execute(numbered(sql.SCRUB_PARTICIPANT), "", participant)
            row = await _fetch_one(conn, sql.SELECT_REGISTRATION, (rid,), sql.registration_row)
            assert row is not None
            erased.append(row)
    return erased


async def _append_audit(conn: Connection, row: AuditRow) -> AuditRow:
    async with conn.transaction():
        await _lock(conn, "audit_log")
        stored = dataclasses.replace(row, id=int(await conn.fetchval(numbered(sql.NEXT_AUDIT_ID))))
        await conn.execute(numbered(sql.INSERT_AUDIT), *sql.audit_params(stored))
    return stored


async def _insert_participant(conn: Connection, row: ParticipantRow) -> ParticipantRow:
    async with conn.transaction():
        stored = dataclasses.replace(row, wire_id=await _next_wire_id(conn, "participants"))
        try:
            await conn.execute(_INSERT_PARTICIPANT, *sql.participant_params(stored))
        except asyncpg.IntegrityConstraintViolationError as exc:
            error = _integrity(exc, f"cannot add participant {row.id!r}")
            if isinstance(error, ForeignKeyViolation):
                error = no_such_meeting(row.meeting_id)
            raise error from exc
    return stored


async def _append_usage(conn: Connection, record: UsageRecord, features: str) -> UsageRecord:
    async with conn.transaction():
        await _lock(conn, "usage_records")
        next_id = int(await conn.fetchval(numbered(sql.NEXT_USAGE_ID)))
        stored = dataclasses.replace(record, id=next_id)
        try:
            await conn.execute(_INSERT_USAGE, *sql.usage_params(stored, features))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity(exc, "cannot append the usage record") from exc
    return stored


async def _append_routing(conn: Connection, body: str, seq: int | None, created_at: float) -> int:
    async with conn.transaction():
        await _lock(conn, "routing_log")
        last = int(await conn.fetchval(numbered(sql.LAST_ROUTING_SEQ)))
        seq = check_routing_seq(seq, last)
        await conn.execute(_INSERT_ROUTING, seq, created_at, body)
    return seq


async def _last_routing_seq(conn: Connection) -> int:
    return int(await conn.fetchval(numbered(sql.LAST_ROUTING_SEQ)))


# --- the store --------------------------------------------------------------------------------


class PostgresStore(sql.SqlStore):
    """The `Store` protocol on a PostgreSQL database. Make one with
    `await PostgresStore.open(url)`; it is also an async context manager that closes itself."""

    dialect = "postgresql"

    def __init__(self, url: str, pool: Any, secrets: Sequence[str] = ()) -> None:
        """Use `open()`: this takes a pool on a database that has the schema. `url` is shown
        in messages and repr(), so it must hold no password (see `redact_url`)."""
        self.url = url
        self._pool = pool
        self._secrets = tuple(secrets)
        self._closed = False
        self._in_flight: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        """Connect to the database at `url` (`postgresql://user:password@host:port/dbname`,
        or any URL libpq takes), with a pool of `min_size` to `max_size` connections, and
        create the schema if need be.

        Raises:
            StoreError: the server cannot be reached or refuses the connection, or the schema
                cannot be created.
            SchemaMismatch: the database was written by a newer relay.
            InvalidValue: pool sizes that make no sense.
        """
        check_int("min_size", min_size)
        check_int("max_size", max_size, minimum=1)
        if min_size > max_size:
            raise InvalidValue(f"min_size ({min_size}) is above max_size ({max_size})")
        safe, secrets = redact_url(url)
        try:
            pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        except OPEN_ERRORS as exc:
            error = _failure(f"cannot open the database {safe}", exc, secrets)
            raise error from _cause(exc, secrets)
        try:
            try:
                async with pool.acquire() as conn:
                    await _create_schema(conn)
            except DRIVER_ERRORS as exc:
                error = _failure(f"cannot open the database {safe}", exc, secrets)
                raise error from _cause(exc, secrets)
        except BaseException:
            pool.terminate()
            raise
        return cls(safe, pool, secrets)

    @property
    def closed(self) -> bool:
        return self._closed

    async def _call(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run fn(connection, ...) on a connection of the pool. It runs to its end even if the
        caller is cancelled, and `close()` waits for it."""
        if self._closed:
            raise StoreClosed("the store is closed")
        task = asyncio.ensure_future(self._on_connection(fn, *args, **kwargs))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)
        return await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that stopped waiting leaves no warning

    async def _on_connection(
        self,
        fn: Callable[Concatenate[Connection, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """fn(connection, ...) on a borrowed connection; asyncpg's errors leave as the store's
        (callers never import asyncpg)."""
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn, *args, **kwargs)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity(exc, "a database constraint failed") from exc
        except DRIVER_ERRORS as exc:
            error = _failure(f"database error on {self.url}", exc, self._secrets)
            raise error from _cause(exc, self._secrets)

    # the primitives of sql.SqlStore

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
        """Refuse new calls, wait for those in flight, then close the pool's connections.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
            await self._pool.close()
        except DRIVER_ERRORS as exc:
            self._pool.terminate()
            error = _failure(f"cannot close {self.url} cleanly", exc, self._secrets)
            raise error from _cause(exc, self._secrets)
        except BaseException:
            self._pool.terminate()
            raise
