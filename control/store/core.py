"""What every store operation runs through: `StoreCore`, and the operations several entities
share (a read decoded into a row, an update of the given columns).

A public method of the store (control/store/store.py) builds its row or its statement's
parameters from its typed arguments, then runs its operation with `StoreCore._run`: a
coroutine over the database's executor (control/store/executor.py), written once for SQLite
and PostgreSQL. The executor decides where it runs: SQLite runs it whole on the store's one
thread, PostgreSQL as a task on a pooled connection; on both, `close()` waits for the calls
made before it, and a call after it raises StoreClosed.

A change that depends on what a row holds (a meeting's features: names are added to the
stored set; a registration that must not be erased) reads the row inside the updating
transaction, `for_update`, then writes: on SQLite the write lock is held from
`BEGIN IMMEDIATE`, on PostgreSQL the read locks the row until the transaction ends, so two
such changes never lose one another (`update_row`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar

from control.store.errors import IntegrityViolation, StoreClosed, restated
from control.store.executor import Database, Executor, Row, update

__all__ = ["Decode", "Derive", "StoreCore", "Updatable", "read_all", "read_one", "update_row"]

P = ParamSpec("P")
T = TypeVar("T")

Decode = Callable[[Row], T]
"""Builds a row dataclass (control/store/rows.py) from the columns a SELECT names."""

Derive = tuple[str, Callable[[Row], dict[str, object]]]
"""A read-modify-write part of an update: a statement that reads the row by id (`update_row`
locks it for update), and a function from the row it reads to more changes (or an exception
that rolls the update back)."""


@dataclass(frozen=True, slots=True)
class Updatable(Generic[T]):
    """What `update_row` needs to know of a table: its name, the columns a caller may set
    (no other name ever reaches the SQL), the statement that reads a row by id, and the
    decoder of what it reads."""

    table: str
    columns: tuple[str, ...]
    select: str
    decode: Decode[T]


class StoreCore:
    """The store's state and the way its operations run; the operations themselves are in the
    modules by entity, each a subclass (control/store/store.py puts them together)."""

    def __init__(self, executor: Database) -> None:
        """Use a backend's `open()` (SqliteStore, PostgresStore): this takes an executor on a
        database that has the schema."""
        self._executor = executor
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Refuse new calls, finish those in flight, then release the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._executor.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(
        self,
        operation: Callable[Concatenate[Database, P], Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """operation(executor, *args, **kwargs), run by the executor; StoreClosed after
        `close()`. Nothing is awaited before the executor takes it, so calls reach the
        database in the order they were made."""
        if self._closed:
            raise StoreClosed("the store is closed")
        return await self._executor.run(lambda db: operation(db, *args, **kwargs))

    async def _one(self, query: str, params: Sequence[Any], decode: Decode[T]) -> T | None:
        return await self._run(read_one, query, params, decode)

    async def _all(self, query: str, params: Sequence[Any], decode: Decode[T]) -> list[T]:
        return await self._run(read_all, query, params, decode)


async def read_one(db: Executor, query: str, params: Sequence[Any], decode: Decode[T]) -> T | None:
    """The first row of a query, decoded; None if there is none."""
    row = await db.fetch_one(query, params)
    return None if row is None else decode(row)


async def read_all(db: Executor, query: str, params: Sequence[Any], decode: Decode[T]) -> list[T]:
    """Every row of a query, decoded."""
    return [decode(row) for row in await db.fetch_all(query, params)]


async def update_row(
    db: Database,
    what: Updatable[T],
    row_id: str,
    changes: dict[str, object],
    derive: Derive | None = None,
) -> T | None:
    """In one transaction: with `derive`, its statement reads the row by id, for update, and
    if there is one, its function's changes join `changes`; then the changes (if any) are
    written; then the row is read back (None: no such row)."""
    async with db.transaction() as tx:
        if derive is not None:
            read, more = derive
            current = await tx.fetch_one(tx.dialect.for_update(read), (row_id,))
            if current is not None:
                changes = {**changes, **more(current)}
        if changes:
            statement = update(what.table, list(changes), what.columns)
            try:
                await tx.execute(statement, [*changes.values(), row_id])
            except IntegrityViolation as exc:
                raise restated(exc, f"cannot update {what.table} row {row_id!r}") from exc
        return await read_one(tx, what.select, (row_id,), what.decode)
