"""The numbers the store assigns: wire ids (meetings, participants), usage record and audit
entry ids, routing update numbers.

Each is `COALESCE(MAX(...), 0) + 1` inside the inserting transaction, with the counter's lock
held (`lock_counter`: SQLite's write lock, or a PostgreSQL advisory lock per counter): portable,
gap-free, and never the same number for two concurrent writers, in one process or on several
nodes. Under PostgreSQL's READ COMMITTED, the MAX read after taking the lock sees the row the
previous holder committed (https://www.postgresql.org/docs/current/transaction-iso.html).

A wire id is the routing table's unsigned 32-bit id. It is MAX + 1 over the table and its
counter in `wire_ids` (schema.sql), which then holds it, so an id is never handed out again
after its row is deleted: a worker that remembers an ended meeting or an ejected participant
never confuses it with a new one.
"""

from __future__ import annotations

from typing import Any

from control.store.errors import StoreError
from control.store.executor import Executor, lock_counter
from control.store.rows import MAX_WIRE_ID

__all__ = [
    "INSERT_WIRE_COUNTER",
    "SELECT_WIRE_COUNTER",
    "UPDATE_WIRE_COUNTER",
    "WIRE_ID_TABLES",
    "max_wire_id",
    "locked_number",
    "next_wire_id",
    "take_wire_id",
]

WIRE_ID_TABLES = ("meetings", "participants")
SELECT_WIRE_COUNTER = "SELECT last_id FROM wire_ids WHERE name = ?"
INSERT_WIRE_COUNTER = "INSERT INTO wire_ids (name, last_id) VALUES (?, ?)"
UPDATE_WIRE_COUNTER = "UPDATE wire_ids SET last_id = ? WHERE name = ?"


def max_wire_id(table: str) -> str:
    if table not in WIRE_ID_TABLES:  # never build SQL from anything but known names
        raise ValueError(f"{table!r} has no wire ids")
    return f"SELECT COALESCE(MAX(wire_id), 0) FROM {table}"


def next_wire_id(table: str, highest: int, counter: int | None) -> tuple[int, str, tuple[Any, ...]]:
    """The next wire id of `table`, given the highest in the table and its counter (None when
    the counter has no row yet), and the statement with its parameters that records it in the
    counter, so it is never handed out again even if the row is deleted."""
    next_id = max(highest, 0 if counter is None else counter) + 1
    if next_id > MAX_WIRE_ID:
        raise StoreError(f"no {table} wire ids left: they are unsigned 32-bit numbers")
    if counter is None:
        return next_id, INSERT_WIRE_COUNTER, (table, next_id)
    return next_id, UPDATE_WIRE_COUNTER, (next_id, table)


async def take_wire_id(tx: Executor, table: str) -> int:
    """The next wire id of `table`, inside the caller's transaction, with the table's counter
    locked until it ends; the counter then holds it."""
    await lock_counter(tx, table)
    counter = await tx.fetch_one(SELECT_WIRE_COUNTER, (table,))
    highest = await tx.fetch_one(max_wire_id(table))
    assert highest is not None  # an aggregate always has a row
    next_id, statement, params = next_wire_id(
        table, int(highest[0]), None if counter is None else int(counter[0])
    )
    await tx.execute(statement, params)
    return next_id


async def locked_number(tx: Executor, counter: str, query: str) -> int:
    """The number `query` gives (an aggregate: the last number, or the next), read inside the
    caller's transaction with `counter` locked until it ends."""
    await lock_counter(tx, counter)
    row = await tx.fetch_one(query)
    assert row is not None  # an aggregate always has a row
    return int(row[0])
