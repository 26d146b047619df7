"""Trunks between nodes (version 7): their statements, rows and the store's operations on
them, written once over the executor (control/trunks.py says what they mean).

A trunk's two ends are participants of two nodes' routing tables, so each takes a wire id
from the participants' counter (control/store/numbering.py) in the inserting transaction:
never one a participant has or will have. One trunk per sender and edge node: a second
insert for the same pair is refused as a DuplicateKey, which the caller takes as "made
already" (two of its reconciliations may race).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from control.store.core import StoreCore
from control.store.errors import IntegrityViolation, restated
from control.store.executor import Database, Row, marks
from control.store.numbering import take_wire_id
from control.store.rows import TrunkRow

__all__ = ["TrunkOperations"]

TRUNK_COLUMNS = (
    "id, meeting_id, sender_id, origin, edge, origin_worker, edge_worker, out_wire_id, "
    "in_wire_id, media_sealed, feedback_sealed, created_at"
)
INSERT_TRUNK = f"INSERT INTO trunks ({TRUNK_COLUMNS}) VALUES ({marks(TRUNK_COLUMNS)})"
SELECT_TRUNKS_OF = (
    f"SELECT {TRUNK_COLUMNS} FROM trunks WHERE meeting_id = ? ORDER BY created_at, id"
)


def trunk_row(r: Row) -> TrunkRow:
    return TrunkRow(
        id=r[0],
        meeting_id=r[1],
        sender_id=r[2],
        origin=r[3],
        edge=r[4],
        origin_worker=int(r[5]),
        edge_worker=int(r[6]),
        out_wire_id=int(r[7]),
        in_wire_id=int(r[8]),
        media_sealed=bytes(r[9]),
        feedback_sealed=bytes(r[10]),
        created_at=float(r[11]),
    )


def _params(t: TrunkRow) -> tuple[Any, ...]:
    return (
        t.id,
        t.meeting_id,
        t.sender_id,
        t.origin,
        t.edge,
        t.origin_worker,
        t.edge_worker,
        t.out_wire_id,
        t.in_wire_id,
        t.media_sealed,
        t.feedback_sealed,
        t.created_at,
    )


async def insert_trunk(db: Database, row: TrunkRow) -> TrunkRow:
    async with db.transaction() as tx:
        out_id = await take_wire_id(tx, "participants")
        in_id = await take_wire_id(tx, "participants")
        stored = dataclasses.replace(row, out_wire_id=out_id, in_wire_id=in_id)
        try:
            await tx.execute(INSERT_TRUNK, _params(stored))
        except IntegrityViolation as exc:
            raise restated(exc, f"cannot add trunk {row.id!r}") from exc
    return stored


class TrunkOperations(StoreCore):
    """The store's operations on trunks."""

    async def add_trunk(self, row: TrunkRow) -> TrunkRow:
        """Store a trunk (its wire ids assigned here: those given are ignored); the row as
        stored. DuplicateKey: the sender has a trunk to that edge already;
        ForeignKeyViolation: its meeting or sender is gone."""
        return await self._run(insert_trunk, row)

    async def list_trunks(self, meeting_id: str) -> list[TrunkRow]:
        """The meeting's trunks, oldest first."""
        return await self._all(SELECT_TRUNKS_OF, (meeting_id,), trunk_row)
