"""Participants: their statements, their rows, and the store's participant operations (add,
read, list, update), written once over the executor.

A participant's SRTP master keys arrive sealed by the caller (control/meetings.py `KeyBox`):
the store never holds one in clear. Its wire id is assigned in the inserting transaction
(control/store/numbering.py). A participant of a meeting that does not exist is refused by
the foreign key, as a ForeignKeyViolation that names the meeting.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from control.store.core import StoreCore, Updatable, update_row
from control.store.errors import ForeignKeyViolation, IntegrityViolation, restated
from control.store.executor import Database, Row, marks, paged
from control.store.numbering import take_wire_id
from control.store.rows import ParticipantRow
from control.store.values import (
    decode_address,
    decode_streams,
    encode_address,
    encode_streams,
    new_id,
)
from relay.vocabulary import Address, Role
from relay.wire import Stream

__all__ = ["ParticipantOperations"]

PARTICIPANT_COLUMNS = (
    "id, meeting_id, name, role, streams, receive_at, uplink_sealed, downlink_sealed, "
    "worker, muted, expelled, joined_at, left_at, wire_id, node"
)
INSERT_PARTICIPANT = (
    f"INSERT INTO participants ({PARTICIPANT_COLUMNS}) VALUES ({marks(PARTICIPANT_COLUMNS)})"
)
SELECT_PARTICIPANT = f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE id = ?"
SELECT_PARTICIPANT_OF = (
    f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE id = ? AND meeting_id = ?"
)
SELECT_PARTICIPANT_BY_WIRE_ID = f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE wire_id = ?"
_LIST_PARTICIPANTS = f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE meeting_id = ?"
_PARTICIPANT_ORDER = " ORDER BY joined_at, id"
MARK_GONE = "UPDATE participants SET left_at = ? WHERE meeting_id = ? AND left_at IS NULL"
MARK_NODE_GONE = "UPDATE participants SET left_at = ? WHERE node = ? AND left_at IS NULL"
PARTICIPANT_UPDATABLE = (
    "muted",
    "expelled",
    "role",
    "uplink_sealed",
    "downlink_sealed",
    "left_at",
)


def list_participants(
    meeting_id: str, present_only: bool, limit: int | None, offset: int
) -> tuple[str, list[Any]]:
    sql = _LIST_PARTICIPANTS + (" AND left_at IS NULL" if present_only else "")
    return paged(sql + _PARTICIPANT_ORDER, [meeting_id], limit, offset)


def participant_row(r: Row) -> ParticipantRow:
    """A row of PARTICIPANT_COLUMNS (a driver may give 0/1 for booleans, memoryview for
    binary)."""
    return ParticipantRow(
        id=r[0],
        meeting_id=r[1],
        name=r[2],
        role=Role(r[3]),
        streams=decode_streams(r[4]),
        receive_at=decode_address(r[5]),
        uplink_sealed=bytes(r[6]),
        downlink_sealed=bytes(r[7]),
        worker=int(r[8]),
        muted=bool(r[9]),
        expelled=bool(r[10]),
        joined_at=float(r[11]),
        left_at=None if r[12] is None else float(r[12]),
        wire_id=int(r[13]),
        node=r[14],
    )


PARTICIPANTS = Updatable("participants", PARTICIPANT_UPDATABLE, SELECT_PARTICIPANT, participant_row)


def participant_params(p: ParticipantRow) -> tuple[Any, ...]:
    return (
        p.id,
        p.meeting_id,
        p.name,
        p.role,
        encode_streams(p.streams),
        encode_address(p.receive_at),
        p.uplink_sealed,
        p.downlink_sealed,
        p.worker,
        p.muted,
        p.expelled,
        p.joined_at,
        p.left_at,
        p.wire_id,
        p.node,
    )


def no_such_meeting(meeting_id: str) -> ForeignKeyViolation:
    """The error for a participant added to a meeting that does not exist."""
    return ForeignKeyViolation(
        f"cannot add a participant to meeting {meeting_id!r}: no such meeting"
    )


async def insert_participant(db: Database, row: ParticipantRow) -> ParticipantRow:
    """Insert the row under the next wire id, in one transaction; the row as stored."""
    async with db.transaction() as tx:
        stored = dataclasses.replace(row, wire_id=await take_wire_id(tx, "participants"))
        try:
            await tx.execute(INSERT_PARTICIPANT, participant_params(stored))
        except ForeignKeyViolation as exc:
            raise no_such_meeting(row.meeting_id) from exc
        except IntegrityViolation as exc:
            raise restated(exc, f"cannot add participant {row.id!r}") from exc
    return stored


class ParticipantOperations(StoreCore):
    """The store's participant operations."""

    async def add_participant(
        self,
        *,
        meeting_id: str,
        name: str,
        role: Role,
        uplink_sealed: bytes,
        downlink_sealed: bytes,
        worker: int,
        streams: tuple[Stream, ...] = (),
        receive_at: Address | None = None,
        joined_at: float | None = None,
        participant_id: str | None = None,
        node: str | None = None,
    ) -> ParticipantRow:
        """A new participant of `meeting_id` (ForeignKeyViolation if there is no such
        meeting), homed on `node`. `participant_id` defaults to `new_id()`, `joined_at` to
        now."""
        row = ParticipantRow(
            id=new_id() if participant_id is None else participant_id,
            meeting_id=meeting_id,
            name=name,
            role=role,
            streams=streams,
            receive_at=receive_at,
            uplink_sealed=uplink_sealed,
            downlink_sealed=downlink_sealed,
            worker=worker,
            muted=False,
            expelled=False,
            joined_at=time.time() if joined_at is None else float(joined_at),
            left_at=None,
            node=node,
        )  # its wire id still 0: insert_participant assigns it
        return await self._run(insert_participant, row)

    async def get_participant(
        self, participant_id: str, *, meeting_id: str | None = None
    ) -> ParticipantRow | None:
        """The participant, or None; with `meeting_id`, None also when it belongs to another
        meeting."""
        if meeting_id is None:
            return await self._one(SELECT_PARTICIPANT, (participant_id,), participant_row)
        params = (participant_id, meeting_id)
        return await self._one(SELECT_PARTICIPANT_OF, params, participant_row)

    async def get_participant_by_wire_id(self, wire_id: int) -> ParticipantRow | None:
        """The participant the workers know by `wire_id` (unique, never reused), or None."""
        return await self._one(SELECT_PARTICIPANT_BY_WIRE_ID, (wire_id,), participant_row)

    async def list_participants(
        self,
        meeting_id: str,
        *,
        present_only: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ParticipantRow]:
        """The participants of one meeting in the order they joined; `present_only` leaves out
        those who left. Empty for an unknown meeting."""
        query, params = list_participants(meeting_id, present_only, limit, offset)
        return await self._all(query, params, participant_row)

    async def update_participant(
        self,
        participant_id: str,
        *,
        muted: bool | None = None,
        expelled: bool | None = None,
        role: Role | None = None,
        uplink_sealed: bytes | None = None,
        downlink_sealed: bytes | None = None,
        left_at: float | None = None,
    ) -> ParticipantRow | None:
        """Change the given fields; the row after the change, or None if unknown."""
        given = {
            "muted": muted,
            "expelled": expelled,
            "role": role,
            "uplink_sealed": uplink_sealed,
            "downlink_sealed": downlink_sealed,
            "left_at": left_at,
        }
        changes: dict[str, object] = {k: v for k, v in given.items() if v is not None}
        return await self._run(update_row, PARTICIPANTS, participant_id, changes)

    async def mark_gone(self, meeting_id: str, *, left_at: float) -> int:
        """Every participant of the meeting still present leaves at `left_at`, in one
        statement (a meeting's end: a webinar's whole audience at once); how many."""
        return await self._run(_mark_gone, meeting_id, left_at)

    async def mark_node_gone(self, node: str, *, left_at: float) -> int:
        """Every participant homed on `node` still present leaves at `left_at`, in one
        statement (the node is gone: control/cluster.py); how many. Idempotent."""
        return await self._run(_execute, MARK_NODE_GONE, (left_at, node))


async def _mark_gone(db: Database, meeting_id: str, left_at: float) -> int:
    return await db.execute(MARK_GONE, (left_at, meeting_id))


async def _execute(db: Database, query: str, params: tuple[Any, ...]) -> int:
    return await db.execute(query, params)
