"""Registrations (version 4): their statements, their rows, and the store's operations on
them (register, read, list, count, correct, use a join token, erase), written once over the
executor. Confirming a registration's email (version 5) is in control/store/confirmation.py.

Personal data never reaches the store in clear (control/pii.py, README.md "Attendee data
(privacy)"): `sealed` is the fields' ciphertext under the registrant's own data key,
`wrapped_key` that data key under the server's key, `email_tag` a keyed hash of the email,
`token_digest` the SHA-256 of the one-time join token.

What must hold under concurrency, and how:
    - capacity: a registration counts its meeting's places with the meeting's row read for
      update (`LOCK_MEETING`), so two registrations never both take the last place;
    - one join per token: the token's row is read for update, then its digest cleared, in one
      transaction (of two joins with one token, one gets the row, the other None);
    - an erased registration stays erased: a correction reads `erased_at` for update inside
      its transaction and is refused (RegistrationErased) if it is set;
    - erasure overwrites the rows it finds in place (`ERASE_REGISTRATION`, and the name of a
      participant who joined with one: `SCRUB_PARTICIPANT`) in one transaction, then on
      SQLite empties the WAL (`scrub_journal`) so that no older page keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from control.answers import RegistrationStatus
from control.store.core import Derive, StoreCore, Updatable, read_one, update_row
from control.store.errors import (
    CapacityReached,
    ForeignKeyViolation,
    IntegrityViolation,
    RegistrationErased,
    restated,
)
from control.store.executor import Database, Executor, Row, marks, paged
from control.store.rows import RegistrationRow
from control.store.values import new_id

__all__ = ["RegistrationOperations"]

# The registrations' columns as version 4 made them, and all of them (version 5 added the
# confirmation's).
REGISTRATION_V4_COLUMNS = (
    "id, meeting_id, status, sealed, wrapped_key, email_tag, token_digest, participant_id, "
    "created_at, updated_at, erased_at"
)
REGISTRATION_COLUMNS = (
    f"{REGISTRATION_V4_COLUMNS}, confirm_digest, confirm_expires_at, confirm_attempts, "
    "confirm_sends, confirm_sent_at"
)
INSERT_REGISTRATION = (
    f"INSERT INTO registrations ({REGISTRATION_COLUMNS}) VALUES ({marks(REGISTRATION_COLUMNS)})"
)
SELECT_REGISTRATION = f"SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE id = ?"
SELECT_REGISTRATION_OF = (
    f"SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE id = ? AND meeting_id = ?"
)
SELECT_REGISTRATION_BY_TOKEN = (
    f"SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE meeting_id = ? "
    "AND token_digest = ? AND status = 'approved' AND erased_at IS NULL"
)
_LIST_REGISTRATIONS = (
    f"SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE meeting_id = ? ORDER BY created_at, id"
)
REGISTRATION_UPDATABLE = ("status", "sealed", "email_tag", "token_digest", "updated_at")
SELECT_REGISTRATION_ERASED = "SELECT erased_at FROM registrations WHERE id = ?"
# A registration counted against the capacity: waiting for the host or admitted, not erased
# (an unconfirmed one does not count: its email may not even be the registrant's). The count
# runs with the meeting's row locked (`for_update`), so two registrations never both take the
# last place.
LOCK_MEETING = "SELECT id FROM meetings WHERE id = ?"
COUNT_REGISTRATIONS = (
    "SELECT COUNT(*) FROM registrations WHERE meeting_id = ? AND erased_at IS NULL "
    "AND status IN ('pending', 'approved')"
)
# Version 5: a new registration replaces an unconfirmed one of the same email.
DELETE_UNCONFIRMED_OF_EMAIL = (
    "DELETE FROM registrations WHERE meeting_id = ? AND email_tag = ? AND status = 'unconfirmed'"
)
USE_TOKEN = (
    "UPDATE registrations SET token_digest = NULL, participant_id = ?, updated_at = ? "
    "WHERE id = ? AND token_digest IS NOT NULL"
)
SELECT_ERASABLE = "SELECT id, participant_id FROM registrations WHERE id = ? AND erased_at IS NULL"
SELECT_ERASABLE_BY_TAG = (
    "SELECT id, participant_id FROM registrations WHERE email_tag = ? AND erased_at IS NULL "
    "ORDER BY created_at, id"
)
# Overwrite in place: the ciphertext becomes empty, the wrapped key, tag and token digest NULL
# (and the digest of a confirmation code that may still be live).
ERASE_REGISTRATION = (
    "UPDATE registrations SET sealed = ?, wrapped_key = NULL, email_tag = NULL, "
    "token_digest = NULL, confirm_digest = NULL, erased_at = ?, updated_at = ? WHERE id = ?"
)
ERASED_SEALED = b""
# The name a participant who joined with an erased registration gave, and the address it
# listened at once it has left (while present, the workers still send there).
SCRUB_PARTICIPANT = (
    "UPDATE participants SET name = ?, "
    "receive_at = CASE WHEN left_at IS NULL THEN receive_at ELSE NULL END WHERE id = ?"
)


def list_registrations(meeting_id: str, limit: int | None, offset: int) -> tuple[str, list[Any]]:
    return paged(_LIST_REGISTRATIONS, [meeting_id], limit, offset)


def registration_row(r: Row) -> RegistrationRow:
    """A row of REGISTRATION_COLUMNS (a driver may give memoryview for binary)."""
    return RegistrationRow(
        id=r[0],
        meeting_id=r[1],
        status=r[2],
        sealed=bytes(r[3]),
        wrapped_key=None if r[4] is None else bytes(r[4]),
        email_tag=r[5],
        token_digest=r[6],
        participant_id=r[7],
        created_at=float(r[8]),
        updated_at=float(r[9]),
        erased_at=None if r[10] is None else float(r[10]),
        confirm_digest=r[11],
        confirm_expires_at=None if r[12] is None else float(r[12]),
        confirm_attempts=int(r[13]),
        confirm_sends=int(r[14]),
        confirm_sent_at=None if r[15] is None else float(r[15]),
    )


REGISTRATIONS = Updatable(
    "registrations", REGISTRATION_UPDATABLE, SELECT_REGISTRATION, registration_row
)


def registration_params(g: RegistrationRow) -> tuple[Any, ...]:
    return (
        g.id,
        g.meeting_id,
        g.status,
        g.sealed,
        g.wrapped_key,
        g.email_tag,
        g.token_digest,
        g.participant_id,
        g.created_at,
        g.updated_at,
        g.erased_at,
        g.confirm_digest,
        g.confirm_expires_at,
        g.confirm_attempts,
        g.confirm_sends,
        g.confirm_sent_at,
    )


def not_erased(row: Row) -> dict[str, object]:
    """The derive of a registration's update: no more changes, or RegistrationErased (which
    rolls the transaction back) when the row read (`SELECT_REGISTRATION_ERASED`) is erased."""
    if row[0] is not None:
        raise RegistrationErased("that registration was erased: it cannot change any more")
    return {}


UNLESS_ERASED: Derive = (SELECT_REGISTRATION_ERASED, not_erased)
"""A correction's read-modify-write part: refused (and rolled back) if the row is erased."""


async def meeting_locked(tx: Executor, meeting_id: str) -> bool:
    """Whether the meeting exists, its row locked until the transaction ends: registrations
    of one meeting then count and change one after the other, on every node."""
    return await tx.fetch_one(tx.dialect.for_update(LOCK_MEETING), (meeting_id,)) is not None


async def places_taken(tx: Executor, meeting_id: str) -> int:
    """How many registrations of the meeting count against its capacity (`COUNT_REGISTRATIONS`);
    run with the meeting locked (`meeting_locked`)."""
    row = await tx.fetch_one(COUNT_REGISTRATIONS, (meeting_id,))
    assert row is not None  # an aggregate always has a row
    return int(row[0])


def full(meeting_id: str, capacity: int) -> CapacityReached:
    return CapacityReached(
        f"meeting {meeting_id!r} has {capacity} registrations: its capacity is reached"
    )


async def insert_registration(
    db: Database, row: RegistrationRow, capacity: int | None
) -> RegistrationRow:
    """In one transaction with the meeting locked: with `capacity`, CapacityReached when its
    places are taken; an unconfirmed registration with the row's email tag deleted; the row
    inserted (a second registration with the email tag: DuplicateKey)."""
    async with db.transaction() as tx:
        if not await meeting_locked(tx, row.meeting_id):
            raise ForeignKeyViolation(
                f"cannot register for meeting {row.meeting_id!r}: no such meeting"
            )
        if capacity is not None and await places_taken(tx, row.meeting_id) >= capacity:
            raise full(row.meeting_id, capacity)
        replaced = await tx.execute(DELETE_UNCONFIRMED_OF_EMAIL, (row.meeting_id, row.email_tag))
        try:
            await tx.execute(INSERT_REGISTRATION, registration_params(row))
        except IntegrityViolation as exc:
            raise restated(exc, f"cannot add registration {row.id!r}") from exc
    if replaced:
        await db.scrub_journal()  # the replaced registration held personal data
    return row


async def use_token(
    db: Database, meeting_id: str, token_digest: str, participant_id: str, at: float
) -> RegistrationRow | None:
    """In one transaction: the row `SELECT_REGISTRATION_BY_TOKEN` finds, for update, gets
    `USE_TOKEN`; the row after, or None if there was none."""
    async with db.transaction() as tx:
        query = tx.dialect.for_update(SELECT_REGISTRATION_BY_TOKEN)
        found = await tx.fetch_one(query, (meeting_id, token_digest))
        if found is None:
            return None
        await tx.execute(USE_TOKEN, (participant_id, at, found[0]))
        return await read_one(tx, SELECT_REGISTRATION, (found[0],), registration_row)


async def erasable(
    tx: Executor, ids: Sequence[str], email_tag: str | None
) -> dict[str, str | None]:
    """The registrations not erased yet among `ids` and those with `email_tag`, read for
    update: their ids, each with the participant who joined with it (or None)."""
    found: dict[str, str | None] = {}
    for registration_id in ids:
        query = tx.dialect.for_update(SELECT_ERASABLE)
        for rid, participant in await tx.fetch_all(query, (registration_id,)):
            found[rid] = participant
    if email_tag is not None:
        query = tx.dialect.for_update(SELECT_ERASABLE_BY_TAG)
        for rid, participant in await tx.fetch_all(query, (email_tag,)):
            found[rid] = participant
    return found


async def erase_registrations(
    db: Database, ids: Sequence[str], email_tag: str | None, erased_at: float
) -> list[RegistrationRow]:
    """In one transaction: each registration `erasable` finds is overwritten in place
    (`ERASE_REGISTRATION`), the participant who joined with it scrubbed
    (`SCRUB_PARTICIPANT`); the rows after."""
    async with db.transaction() as tx:
        erased = []
        for rid, participant in (await erasable(tx, ids, email_tag)).items():
            await tx.execute(ERASE_REGISTRATION, (ERASED_SEALED, erased_at, erased_at, rid))
            if participant is not None:
                await tx.execute(SCRUB_PARTICIPANT, ("", participant))
            row = await read_one(tx, SELECT_REGISTRATION, (rid,), registration_row)
            assert row is not None
            erased.append(row)
    if erased:
        await db.scrub_journal()
    return erased


class RegistrationOperations(StoreCore):
    """The store's registration operations (those of version 5's confirmation codes are in
    control/store/confirmation.py)."""

    async def add_registration(
        self,
        *,
        meeting_id: str,
        status: RegistrationStatus,
        sealed: bytes,
        wrapped_key: bytes,
        email_tag: str,
        token_digest: str | None = None,
        created_at: float | None = None,
        registration_id: str | None = None,
        capacity: int | None = None,
        confirm_digest: str | None = None,
        confirm_expires_at: float | None = None,
    ) -> RegistrationRow:
        """A new registration of `meeting_id`. With `capacity`, CapacityReached when the
        meeting has that many registrations (pending or approved, not erased) already:
        counted and inserted in one transaction, so concurrent registrations never pass it.
        An 'unconfirmed' one (version 5) takes its first code's digest and expiry. In the same
        transaction, an unconfirmed registration of the meeting with this email tag is deleted
        first: whoever registers an address again gets a new code, and an address nobody
        confirmed cannot be kept from its owner. DuplicateKey when the meeting has another
        registration with this email tag, ForeignKeyViolation when there is no such meeting."""
        when = time.time() if created_at is None else float(created_at)
        unconfirmed = status == "unconfirmed"
        # Not a type's re-check: the types do not tie these three arguments together, and a
        # caller that got them wrong would store a registration that waits for a code it
        # cannot be confirmed with (or a code nothing asks for). A caller's mistake: ValueError.
        if unconfirmed != (confirm_digest is not None) or unconfirmed != (
            confirm_expires_at is not None
        ):
            raise ValueError(
                "an unconfirmed registration needs confirm_digest and confirm_expires_at, and "
                "only an unconfirmed one takes them"
            )
        row = RegistrationRow(
            id=new_id() if registration_id is None else registration_id,
            meeting_id=meeting_id,
            status=status,
            sealed=sealed,
            wrapped_key=wrapped_key,
            email_tag=email_tag,
            token_digest=token_digest,
            participant_id=None,
            created_at=when,
            updated_at=when,
            erased_at=None,
            confirm_digest=confirm_digest,
            confirm_expires_at=None if confirm_expires_at is None else float(confirm_expires_at),
            # an unconfirmed one's first code counts as sent, when it registers
            confirm_sends=1 if unconfirmed else 0,
            confirm_sent_at=when if unconfirmed else None,
        )
        return await self._run(insert_registration, row, capacity)

    async def get_registration(
        self, registration_id: str, *, meeting_id: str | None = None
    ) -> RegistrationRow | None:
        """The registration, or None; with `meeting_id`, None also when it is another
        meeting's."""
        if meeting_id is None:
            return await self._one(SELECT_REGISTRATION, (registration_id,), registration_row)
        params = (registration_id, meeting_id)
        return await self._one(SELECT_REGISTRATION_OF, params, registration_row)

    async def get_registration_by_token(
        self, meeting_id: str, token_digest: str
    ) -> RegistrationRow | None:
        """The approved, not erased registration of `meeting_id` whose unused join token has
        this digest, or None."""
        params = (meeting_id, token_digest)
        return await self._one(SELECT_REGISTRATION_BY_TOKEN, params, registration_row)

    async def list_registrations(
        self, meeting_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[RegistrationRow]:
        """The registrations of one meeting in the order they came (erased ones too)."""
        query, params = list_registrations(meeting_id, limit, offset)
        return await self._all(query, params, registration_row)

    async def count_registrations(self, meeting_id: str) -> int:
        """How many registrations of one meeting count against its capacity (pending or
        approved, not erased: not the unconfirmed ones)."""
        count = await self._one(COUNT_REGISTRATIONS, (meeting_id,), lambda r: int(r[0]))
        return count or 0

    async def update_registration(
        self,
        registration_id: str,
        *,
        status: RegistrationStatus | None = None,
        sealed: bytes | None = None,
        email_tag: str | None = None,
        token_digest: str | None = None,
        clear_token: bool = False,
        updated_at: float | None = None,
    ) -> RegistrationRow | None:
        """Change the given fields (`clear_token`: the token digest becomes None) and
        `updated_at` (default now); the row after, None if unknown, RegistrationErased (and
        nothing changed) if it was erased, DuplicateKey if the meeting has another
        registration with `email_tag`."""
        given = {"status": status, "sealed": sealed, "email_tag": email_tag}
        changes: dict[str, object] = {k: v for k, v in given.items() if v is not None}
        if clear_token:
            # Not a type's re-check: the types cannot say "one of the two", and one of them
            # would be dropped without a word. A caller's mistake: ValueError.
            if token_digest is not None:
                raise ValueError("give token_digest or clear_token, not both")
            changes["token_digest"] = None
        elif token_digest is not None:
            changes["token_digest"] = token_digest
        changes["updated_at"] = time.time() if updated_at is None else updated_at
        return await self._run(update_row, REGISTRATIONS, registration_id, changes, UNLESS_ERASED)

    async def use_registration_token(
        self, *, meeting_id: str, token_digest: str, participant_id: str, used_at: float
    ) -> RegistrationRow | None:
        """Use a join token once: the registration `get_registration_by_token` finds gets its
        token digest cleared and `participant_id` recorded, in one transaction (two joins
        with one token: one gets the row, the other None)."""
        return await self._run(use_token, meeting_id, token_digest, participant_id, used_at)

    async def erase_registrations(
        self,
        *,
        registration_ids: tuple[str, ...] = (),
        email_tag: str | None = None,
        erased_at: float | None = None,
    ) -> list[RegistrationRow]:
        """Erase the given registrations and those with `email_tag` (in every meeting), in
        one transaction: `sealed` becomes empty, the wrapped key, email tag and token digest
        None, `erased_at` set; the name of a participant who joined with one of them becomes
        empty. The rows erased by this call, after the change (those erased before are left
        as they are and not returned). On SQLite nothing erased survives in the file or the
        WAL afterwards."""
        when = time.time() if erased_at is None else erased_at
        if not registration_ids and email_tag is None:
            return []
        return await self._run(erase_registrations, registration_ids, email_tag, when)
