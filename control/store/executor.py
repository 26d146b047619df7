"""What every store operation is written against: an executor of statements, and its dialect.

The store's operations (control/store/meetings.py and the other modules by entity) are written
once, as coroutines over an `Executor`; SQLite (control/store/sqlite.py) and asyncpg
(control/store/postgres.py) each implement it. An executor runs a statement and returns its
rows as sequences in the order of the SELECT's columns (`fetch_one`, `fetch_all`) or the number
of rows it changed (`execute`); a `Database` adds the transaction (`transaction()`: an async
context that yields an executor whose statements run in one transaction, committed when the
block ends, rolled back when it raises), and what surrounds the operations: running one to its
end (`run`), the journal after an erasure (`scrub_journal`), and `close`.

Statements are written in portable SQL with qmark placeholders (`?`). What differs between the
dialects is kept out of the operations:

    - placeholders: the PostgreSQL executor rewrites `?` to asyncpg's `$1, $2, ...` (safe
      because no statement holds a `?` anywhere else);
    - the binary type of the schema (BLOB, BYTEA): `Dialect.binary_type`;
    - a read of rows about to change: PostgreSQL locks them (`SELECT ... FOR UPDATE`,
      https://www.postgresql.org/docs/current/sql-select.html#SQL-FOR-UPDATE-SHARE); SQLite
      has no such clause and needs none, since a transaction holds the database's write lock
      from `BEGIN IMMEDIATE` (https://www.sqlite.org/lang_transaction.html): `for_update`;
    - the lock of a number the store assigns (wire ids, usage and audit ids, routing update
      numbers, the schema itself): on PostgreSQL a transaction-level advisory lock
      (`pg_advisory_xact_lock`, https://www.postgresql.org/docs/current/explicit-locking.html
      #ADVISORY-LOCKS), on SQLite again the write lock: `lock_counter`;
    - whether the schema exists yet (sqlite_master, to_regclass): `Dialect.schema_exists`.

No statement needs RETURNING or an upsert (INSERT .. ON CONFLICT): SQLite has them only
since 3.35 and 3.24 (https://www.sqlite.org/lang_returning.html,
https://www.sqlite.org/lang_upsert.html) and schema.sql promises 3.23, so a number the store
assigns is read, then written, under its lock, and a row is read back after its write, in the
same transaction.

Also here, the builders of the statements whose text depends on the call: `update` (the
columns given) and `paged` (LIMIT and OFFSET, which the dialects spell alike only if given).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "Database",
    "Dialect",
    "Executor",
    "Operation",
    "Row",
    "lock_counter",
    "marks",
    "paged",
    "update",
]

T = TypeVar("T")

Row = Sequence[Any]
"""A row as a driver returns it (a tuple from sqlite3, an asyncpg Record): its columns in the
order the statement names them."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one SQL dialect spells differently, for the statements that need it."""

    name: str  # 'sqlite' | 'postgresql'
    binary_type: str  # schema.sql's ${binary}
    row_lock: str  # what follows a read of rows about to change, to lock them
    counter_lock: str | None  # takes a counter's lock until the transaction ends, or None
    schema_exists: str  # one row if the schema_version table exists, none otherwise

    def for_update(self, query: str) -> str:
        """A read of rows about to be changed, inside a write transaction."""
        return query + self.row_lock


SQLITE = Dialect(
    name="sqlite",
    binary_type="BLOB",
    row_lock="",
    counter_lock=None,
    schema_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
)

POSTGRESQL = Dialect(
    name="postgresql",
    binary_type="BYTEA",
    row_lock=" FOR UPDATE",
    counter_lock="SELECT pg_advisory_xact_lock(?, ?)",
    schema_exists="SELECT 1 WHERE to_regclass('schema_version') IS NOT NULL",
)

# Advisory locks take two 32-bit keys: the first names relay (so they never collide with
# another application's locks on the same database), the second the counter.
LOCK_SPACE = 0x52454C59  # "RELY"
LOCK_KEYS = {
    "schema": 1,  # creating, checking and migrating the schema
    "meetings": 2,  # the meetings' wire ids
    "participants": 3,  # the participants' wire ids
    "usage_records": 4,  # usage record ids
    "routing_log": 5,  # routing update numbers
    "audit_log": 6,  # audit entry ids
    "placement": 7,  # placing a participant on a node (control/placement.py)
}


class Executor(Protocol):
    """Runs statements (qmark style) on one database. Driver errors leave as the store's
    (control/store/errors.py): a constraint of the database as an IntegrityViolation (its
    kind kept), anything else as StoreError."""

    @property
    def dialect(self) -> Dialect: ...

    async def fetch_one(self, query: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query; None if there is none."""
        ...

    async def fetch_all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query."""
        ...

    async def execute(self, query: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it inserted, updated or deleted."""
        ...


Operation = Callable[["Database"], Coroutine[Any, Any, T]]
"""A store operation: a coroutine over a database, run by `Database.run`."""


class Database(Executor, Protocol):
    """An executor on a whole database: outside a transaction each statement runs on its own
    (autocommit), and `transaction()` groups statements."""

    def transaction(self) -> AbstractAsyncContextManager[Executor]:
        """An async context that yields an executor whose statements run in one write
        transaction: committed when the block ends, rolled back if it raises. Transactions
        do not nest (no operation needs it)."""
        ...

    async def run(self, operation: Operation[T]) -> T:
        """Run one store operation over this database to its end, and return what it
        returns. Where it runs (a thread of its own, a task) is the backend's choice."""
        ...

    async def scrub_journal(self) -> None:
        """After a committed transaction that deleted or overwrote personal data: leave no
        older version of it in a journal that a backend keeps beside the database (SQLite's
        WAL); nothing to do where there is none."""
        ...

    async def close(self) -> None:
        """Finish the operations in flight, then release the database."""
        ...


async def lock_counter(tx: Executor, counter: str) -> None:
    """Hold the lock of a number the store assigns (`LOCK_KEYS`) until the transaction ends,
    so that concurrent writers (several nodes, or one node's connection pool) never take the
    same number; SQLite's write lock does this for every transaction already."""
    statement = tx.dialect.counter_lock
    if statement is not None:
        await tx.execute(statement, (LOCK_SPACE, LOCK_KEYS[counter]))


def marks(columns: str) -> str:
    """The placeholders of an INSERT of `columns` (a comma-separated list)."""
    return ", ".join("?" for _ in columns.split(","))


def update(table: str, columns: Sequence[str], allowed: Sequence[str]) -> str:
    """`UPDATE table SET a = ?, b = ? WHERE id = ?` for columns from a fixed list only."""
    for column in columns:
        if column not in allowed:  # never build SQL from anything but known names
            raise ValueError(f"{column!r} is not an updatable column of {table}")
    sets = ", ".join(f"{column} = ?" for column in columns)
    return f"UPDATE {table} SET {sets} WHERE id = ?"


def paged(sql: str, params: list[Any], limit: int | None, offset: int) -> tuple[str, list[Any]]:
    """A listing with its page: `limit` rows (None: all) after the first `offset`."""
    # "LIMIT ALL" is PostgreSQL only and SQLite refuses "LIMIT NULL": no limit, no clause.
    if limit is not None:
        return f"{sql} LIMIT ? OFFSET ?", [*params, limit, offset]
    if offset:
        # Both accept a LIMIT large enough to mean "all" (SQLite needs one before OFFSET).
        return f"{sql} LIMIT ? OFFSET ?", [*params, (1 << 63) - 1, offset]
    return sql, params
