"""Meetings: their statements, their rows, and the store's meeting operations (create, read,
list, update, delete), written once over the executor.

A meeting's wire id is assigned in the inserting transaction (control/store/numbering.py).
Its features (version 3) are only ever added to: an update that adds names reads the stored
set for update and writes the union in one transaction, so a feature switched off again
before the end is still billed. Deleting a meeting deletes its participants and its
registrations with it (not its usage records nor its audit entries, which outlive it), and on
SQLite leaves nothing of them in the WAL (`scrub_journal`).
"""

from __future__ import annotations

import dataclasses
import time

from control.answers import State
from control.store.core import Derive, StoreCore, Updatable, update_row
from control.store.errors import IntegrityViolation, restated
from control.store.executor import Database, Row, marks
from control.store.numbering import take_wire_id
from control.store.rows import DEFAULT_PAGE, MeetingRow
from control.store.values import decode_features, encode_features, merge_features, new_id
from relay.vocabulary import Mode, Suite

__all__ = ["MeetingOperations"]

MEETING_COLUMNS = (
    "id, title, mode, suite, password_hash, panelist_password_hash, host_key_digest, "
    "state, locked, recording, created_at, ended_at, wire_id, features, registration"
)
INSERT_MEETING = f"INSERT INTO meetings ({MEETING_COLUMNS}) VALUES ({marks(MEETING_COLUMNS)})"
SELECT_MEETING = f"SELECT {MEETING_COLUMNS} FROM meetings WHERE id = ?"
SELECT_MEETING_BY_WIRE_ID = f"SELECT {MEETING_COLUMNS} FROM meetings WHERE wire_id = ?"
LIST_MEETINGS = (
    f"SELECT {MEETING_COLUMNS} FROM meetings ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
)
LIST_MEETINGS_IN_STATE = (
    f"SELECT {MEETING_COLUMNS} FROM meetings WHERE state = ? "
    "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
)
MEETING_UPDATABLE = (
    "title",
    "locked",
    "recording",
    "state",
    "ended_at",
    "features",
    "registration",
)
SELECT_MEETING_FEATURES = "SELECT features FROM meetings WHERE id = ?"
# A meeting goes with its participants and its registrations, deleted first in the same
# transaction.
DELETE_PARTICIPANTS_OF = "DELETE FROM participants WHERE meeting_id = ?"
DELETE_REGISTRATIONS_OF = "DELETE FROM registrations WHERE meeting_id = ?"
DELETE_MEETING = "DELETE FROM meetings WHERE id = ?"


def meeting_row(r: Row) -> MeetingRow:
    """A row of MEETING_COLUMNS (a driver may give 0/1 for booleans)."""
    return MeetingRow(
        id=r[0],
        title=r[1],
        mode=Mode(r[2]),
        suite=Suite(r[3]),
        password_hash=r[4],
        panelist_password_hash=r[5],
        host_key_digest=r[6],
        state=r[7],
        locked=bool(r[8]),
        recording=bool(r[9]),
        created_at=float(r[10]),
        ended_at=None if r[11] is None else float(r[11]),
        wire_id=int(r[12]),
        features=decode_features(r[13]),
        registration=r[14],
    )


MEETINGS = Updatable("meetings", MEETING_UPDATABLE, SELECT_MEETING, meeting_row)


def meeting_params(m: MeetingRow) -> tuple[object, ...]:
    return (
        m.id,
        m.title,
        m.mode,
        m.suite,
        m.password_hash,
        m.panelist_password_hash,
        m.host_key_digest,
        m.state,
        m.locked,
        m.recording,
        m.created_at,
        m.ended_at,
        m.wire_id,
        encode_features(m.features),
        m.registration,
    )


def features_added(added: tuple[str, ...]) -> Derive:
    """The part of an update that joins `added` to the features the row holds."""

    def joined(row: Row) -> dict[str, object]:
        return {"features": merge_features(row[0], added)}

    return SELECT_MEETING_FEATURES, joined


async def insert_meeting(db: Database, row: MeetingRow) -> MeetingRow:
    """Insert the row under the next wire id, in one transaction; the row as stored."""
    async with db.transaction() as tx:
        stored = dataclasses.replace(row, wire_id=await take_wire_id(tx, "meetings"))
        try:
            await tx.execute(INSERT_MEETING, meeting_params(stored))
        except IntegrityViolation as exc:
            raise restated(exc, f"cannot create meeting {row.id!r}") from exc
    return stored


async def delete_meeting(db: Database, meeting_id: str) -> bool:
    """Delete a meeting's participants, its registrations and the meeting, in one
    transaction; False if there is no such meeting."""
    async with db.transaction() as tx:
        await tx.execute(DELETE_PARTICIPANTS_OF, (meeting_id,))
        await tx.execute(DELETE_REGISTRATIONS_OF, (meeting_id,))
        deleted = await tx.execute(DELETE_MEETING, (meeting_id,)) > 0
    if deleted:
        await db.scrub_journal()  # its registrations and participants held personal data
    return deleted


class MeetingOperations(StoreCore):
    """The store's meeting operations."""

    async def create_meeting(
        self,
        *,
        title: str,
        mode: Mode,
        suite: Suite,
        password_hash: str,
        host_key_digest: str,
        panelist_password_hash: str | None = None,
        created_at: float | None = None,
        meeting_id: str | None = None,
    ) -> MeetingRow:
        """A new open, unlocked, not recording meeting with no features. `meeting_id` defaults
        to `new_id()`, `created_at` to now; DuplicateKey if the id is taken."""
        row = MeetingRow(
            id=new_id() if meeting_id is None else meeting_id,
            title=title,
            mode=mode,
            suite=suite,
            password_hash=password_hash,
            panelist_password_hash=panelist_password_hash,
            host_key_digest=host_key_digest,
            state="open",
            locked=False,
            recording=False,
            created_at=time.time() if created_at is None else float(created_at),
            ended_at=None,
            features=(),
            registration=None,
        )  # its wire id still 0: insert_meeting assigns it
        return await self._run(insert_meeting, row)

    async def get_meeting(self, meeting_id: str) -> MeetingRow | None:
        return await self._one(SELECT_MEETING, (meeting_id,), meeting_row)

    async def get_meeting_by_wire_id(self, wire_id: int) -> MeetingRow | None:
        """The meeting the workers know by `wire_id` (unique, never reused), or None."""
        return await self._one(SELECT_MEETING_BY_WIRE_ID, (wire_id,), meeting_row)

    async def list_meetings(
        self, *, limit: int = DEFAULT_PAGE, offset: int = 0, state: State | None = None
    ) -> list[MeetingRow]:
        """A page of meetings, newest first (by created_at, then id); only `state` if given."""
        if state is None:
            return await self._all(LIST_MEETINGS, (limit, offset), meeting_row)
        params = (state, limit, offset)
        return await self._all(LIST_MEETINGS_IN_STATE, params, meeting_row)

    async def update_meeting(
        self,
        meeting_id: str,
        *,
        title: str | None = None,
        locked: bool | None = None,
        recording: bool | None = None,
        state: State | None = None,
        ended_at: float | None = None,
        add_features: tuple[str, ...] | None = None,
        registration: str | None = None,
    ) -> MeetingRow | None:
        """Change the given fields; the row after the change, or None if there is no such
        meeting. With no field given, the row as it is. `add_features` joins feature names
        to the meeting's `features`, in the same transaction as the other changes: names are
        only ever added, never removed. `registration` is the registration settings, a JSON
        object."""
        given = {
            "title": title,
            "locked": locked,
            "recording": recording,
            "state": state,
            "ended_at": ended_at,
            "registration": registration,
        }
        changes: dict[str, object] = {k: v for k, v in given.items() if v is not None}
        # joined to the stored names inside the transaction
        derive = features_added(add_features) if add_features else None
        return await self._run(update_row, MEETINGS, meeting_id, changes, derive)

    async def delete_meeting(self, meeting_id: str) -> bool:
        """Delete a meeting, its participants and its registrations (not its usage records
        nor its audit entries); False if unknown. On SQLite the deleted rows are overwritten
        in the file and the WAL, as by `erase_registrations`."""
        return await self._run(delete_meeting, meeting_id)
