"""The append-only records: usage records, the audit log and the routing log, with their
statements and rows, and the store's operations on them, written once over the executor.

None of them is ever updated or deleted: the store has no statement that would. A usage record
(what one meeting used, written once when it ends) and an audit entry (a host or operator
action: ids, flags and counts, never personal data) name their meeting without a foreign key,
so that they outlive it. The routing log holds the numbered routing updates (the clone
pattern's sequence, docs/wire.md "Routing"), so that a restarted control plane continues the
numbers the workers follow. Each record's number is the next one under its counter's lock
(control/store/numbering.py).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from control.answers import Actor
from control.store.core import StoreCore
from control.store.errors import DuplicateKey, IntegrityViolation, restated
from control.store.executor import Database, Row, marks, paged
from control.store.numbering import locked_number
from control.store.rows import AuditRow, RoutingUpdate, UsageRecord
from control.store.values import decode_features, encode_features

__all__ = ["RecordOperations"]

USAGE_COLUMNS = (
    "id, meeting_id, started_at, ended_at, duration_s, total_participants, peak_participants, "
    "participant_minutes, features, packets_in, packets_out, bytes_in, bytes_out"
)
NEXT_USAGE_ID = "SELECT COALESCE(MAX(id), 0) + 1 FROM usage_records"
INSERT_USAGE = f"INSERT INTO usage_records ({USAGE_COLUMNS}) VALUES ({marks(USAGE_COLUMNS)})"

AUDIT_COLUMNS = "id, at, actor, action, meeting_id, target, detail"
NEXT_AUDIT_ID = "SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log"
INSERT_AUDIT = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({marks(AUDIT_COLUMNS)})"

ROUTING_COLUMNS = "seq, created_at, body"
LAST_ROUTING_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM routing_log"
INSERT_ROUTING = f"INSERT INTO routing_log ({ROUTING_COLUMNS}) VALUES (?, ?, ?)"
# Version 7: each node's own numbering, and the rows from before it (the one node's).
LAST_NODE_SEQ = "SELECT COALESCE(MAX(node_seq), 0) FROM routing_log WHERE node = ?"
LAST_UNNAMED_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM routing_log WHERE node IS NULL"
INSERT_NODE_ROUTING = (
    f"INSERT INTO routing_log ({ROUTING_COLUMNS}, node, node_seq) VALUES (?, ?, ?, ?, ?)"
)


def listing(
    columns: str, table: str, meeting_id: str | None, limit: int | None, offset: int
) -> tuple[str, list[Any]]:
    """A page of records in the order they were appended; all of them, or one meeting's."""
    if meeting_id is None:
        sql, params = f"SELECT {columns} FROM {table}", []
    else:
        sql, params = f"SELECT {columns} FROM {table} WHERE meeting_id = ?", [meeting_id]
    return paged(sql + " ORDER BY id", params, limit, offset)


list_usage = functools.partial(listing, USAGE_COLUMNS, "usage_records")
list_audit = functools.partial(listing, AUDIT_COLUMNS, "audit_log")


def routing_after(seq: int, limit: int | None) -> tuple[str, list[Any]]:
    sql = f"SELECT {ROUTING_COLUMNS} FROM routing_log WHERE seq > ? ORDER BY seq"
    return paged(sql, [seq], limit, 0)


def usage_record(r: Row) -> UsageRecord:
    return UsageRecord(
        id=int(r[0]),
        meeting_id=r[1],
        started_at=float(r[2]),
        ended_at=float(r[3]),
        duration_s=float(r[4]),
        total_participants=int(r[5]),
        peak_participants=int(r[6]),
        participant_minutes=float(r[7]),
        features=decode_features(r[8]),
        packets_in=int(r[9]),
        packets_out=int(r[10]),
        bytes_in=int(r[11]),
        bytes_out=int(r[12]),
    )


def usage_params(u: UsageRecord, features_json: str) -> tuple[Any, ...]:
    return (
        u.id,
        u.meeting_id,
        u.started_at,
        u.ended_at,
        u.duration_s,
        u.total_participants,
        u.peak_participants,
        u.participant_minutes,
        features_json,
        u.packets_in,
        u.packets_out,
        u.bytes_in,
        u.bytes_out,
    )


def audit_row(r: Row) -> AuditRow:
    return AuditRow(
        id=int(r[0]),
        at=float(r[1]),
        actor=r[2],
        action=r[3],
        meeting_id=r[4],
        target=r[5],
        detail=r[6],
    )


def audit_params(a: AuditRow) -> tuple[Any, ...]:
    return (a.id, a.at, a.actor, a.action, a.meeting_id, a.target, a.detail)


def routing_update(r: Row) -> RoutingUpdate:
    return RoutingUpdate(seq=int(r[0]), created_at=float(r[1]), body=r[2])


def check_routing_seq(seq: int | None, last: int) -> int:
    """The number a routing update gets when `last` is the highest stored one: `seq` if it is
    above `last` (else DuplicateKey), one more than `last` if `seq` is None."""
    if seq is None:
        return last + 1
    if seq <= last:
        raise DuplicateKey(
            f"routing update {seq} is not after the last stored one ({last}): numbers only go up"
        )
    return seq


async def append_usage(db: Database, record: UsageRecord, features: str) -> UsageRecord:
    """Insert the record under the next id, in one transaction; the record as stored."""
    async with db.transaction() as tx:
        stored = dataclasses.replace(
            record, id=await locked_number(tx, "usage_records", NEXT_USAGE_ID)
        )
        try:
            await tx.execute(INSERT_USAGE, usage_params(stored, features))
        except IntegrityViolation as exc:
            raise restated(exc, "cannot append the usage record") from exc
    return stored


async def append_audit(db: Database, row: AuditRow) -> AuditRow:
    """Insert the entry under the next id, in one transaction; the entry as stored."""
    async with db.transaction() as tx:
        stored = dataclasses.replace(row, id=await locked_number(tx, "audit_log", NEXT_AUDIT_ID))
        await tx.execute(INSERT_AUDIT, audit_params(stored))
    return stored


async def append_routing(db: Database, body: str, seq: int | None, created_at: float) -> int:
    """Insert the update under the number `check_routing_seq` gives after the last stored one,
    in one transaction; that number."""
    async with db.transaction() as tx:
        seq = check_routing_seq(seq, await locked_number(tx, "routing_log", LAST_ROUTING_SEQ))
        await tx.execute(INSERT_ROUTING, (seq, created_at, body))
    return seq


async def append_node_routing(
    db: Database, node: str, node_seq: int, body: str, created_at: float
) -> int:
    """Insert a node's update numbered `node_seq` by that node, under the log's next number,
    in one transaction; that number."""
    async with db.transaction() as tx:
        seq = await locked_number(tx, "routing_log", LAST_ROUTING_SEQ) + 1
        await tx.execute(INSERT_NODE_ROUTING, (seq, created_at, body, node, node_seq))
    return seq


async def last_node_seq(db: Database, node: str) -> int:
    mine = await db.fetch_one(LAST_NODE_SEQ, (node,))
    before = await db.fetch_one(LAST_UNNAMED_SEQ)
    assert mine is not None and before is not None  # aggregates always have a row
    return max(int(mine[0]), int(before[0]))


class RecordOperations(StoreCore):
    """The store's operations on usage records, the audit log and the routing log (append and
    read: there is no update or delete)."""

    async def append_usage(
        self,
        *,
        meeting_id: str,
        started_at: float,
        ended_at: float,
        total_participants: int,
        peak_participants: int,
        participant_minutes: float,
        features: tuple[str, ...] = (),
        packets_in: int = 0,
        packets_out: int = 0,
        bytes_in: int = 0,
        bytes_out: int = 0,
        duration_s: float | None = None,
    ) -> UsageRecord:
        """Append a usage record; `duration_s` defaults to ended_at - started_at. (The schema
        refuses an `ended_at` before `started_at`, and negative counts: IntegrityViolation.)"""
        record = UsageRecord(
            id=0,  # append_usage assigns it
            meeting_id=meeting_id,
            started_at=float(started_at),
            ended_at=float(ended_at),
            duration_s=float(ended_at - started_at if duration_s is None else duration_s),
            total_participants=total_participants,
            peak_participants=peak_participants,
            participant_minutes=float(participant_minutes),
            features=tuple(features),
            packets_in=packets_in,
            packets_out=packets_out,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
        return await self._run(append_usage, record, encode_features(features))

    async def list_usage(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[UsageRecord]:
        """Usage records in the order they were appended; all of them, or one meeting's."""
        query, params = list_usage(meeting_id, limit, offset)
        return await self._all(query, params, usage_record)

    async def append_audit(
        self,
        *,
        actor: Actor,
        action: str,
        meeting_id: str | None = None,
        target: str | None = None,
        detail: str = "{}",
        at: float | None = None,
    ) -> AuditRow:
        """Append an entry under the next id; `action` a name like 'meeting.create', `detail` a
        JSON object (control/audit.py makes it), `at` default now."""
        row = AuditRow(
            id=0,  # append_audit assigns it
            at=time.time() if at is None else float(at),
            actor=actor,
            action=action,
            meeting_id=meeting_id,
            target=target,
            detail=detail,
        )
        return await self._run(append_audit, row)

    async def list_audit(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[AuditRow]:
        """Audit entries in the order they were appended; all of them, or one meeting's."""
        query, params = list_audit(meeting_id, limit, offset)
        return await self._all(query, params, audit_row)

    async def append_routing_update(
        self, body: str, *, seq: int | None = None, created_at: float | None = None
    ) -> int:
        """Store a routing update (a JSON text) and return its number: `seq` if given (it must
        be above every stored one, else DuplicateKey), else one more than the last."""
        when = time.time() if created_at is None else created_at
        return await self._run(append_routing, body, seq, when)

    async def routing_updates_after(
        self, seq: int, *, limit: int | None = None
    ) -> list[RoutingUpdate]:
        """The updates numbered above `seq`, in order."""
        query, params = routing_after(seq, limit)
        return await self._all(query, params, routing_update)

    async def last_routing_seq(self) -> int:
        """The number of the last stored update; 0 when there is none."""
        last = await self._one(LAST_ROUTING_SEQ, (), lambda r: int(r[0]))
        assert last is not None  # an aggregate always has a row
        return last

    async def append_node_routing_update(
        self, node: str, node_seq: int, body: str, *, created_at: float | None = None
    ) -> int:
        """Store node `node`'s routing update that it numbered `node_seq` (the numbers its
        workers follow; several nodes share the log, version 7); the log's own number."""
        when = time.time() if created_at is None else created_at
        return await self._run(append_node_routing, node, node_seq, body, when)

    async def last_node_routing_seq(self, node: str) -> int:
        """The number node `node` gave its last stored update, or the last number of the
        updates from before version 7 if higher (they were the one node's); 0: none."""
        return await self._run(last_node_seq, node)
