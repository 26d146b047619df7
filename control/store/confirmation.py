"""Confirming a registration's email (version 5): the outcomes, how one step is decided, and
the store's operations on unconfirmed registrations (confirm, renew the code, discard,
purge), written once over the executor.

A registration that must confirm its email is 'unconfirmed' until its registrant gives the
code mailed to it (README.md, "Attendee data (privacy)"; docs/SECURITY.md, "Registration
proves the email"). The store keeps a keyed digest of the code, never the code. One step (a
code tried, or a new code sent) is decided from the row as the transaction reads it, with the
meeting's and the registration's rows locked in that order (`registration_step`): so two
requests never both use one code or both get the last attempt, and a confirmation counts the
meeting's places alone. Unconfirmed registrations that go (discarded, purged, or replaced by a
new registration of the same email) leave nothing in SQLite's WAL (`scrub_journal`).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from control.store.core import StoreCore, read_one
from control.store.executor import Database, update
from control.store.registrations import (
    SELECT_REGISTRATION,
    SELECT_REGISTRATION_OF,
    meeting_locked,
    places_taken,
    registration_row,
)
from control.store.rows import RegistrationRow

__all__ = [
    "CODE_EXPIRED",
    "CONFIRMED",
    "ERASED",
    "FULL",
    "NOT_UNCONFIRMED",
    "NO_MORE_CODES",
    "RENEWED",
    "TOO_SOON",
    "WRONG_CODE",
    "ConfirmationOperations",
    "RegistrationStep",
    "confirmation_step",
    "renewal_step",
]

CONFIRMATION_UPDATABLE = (
    "status",
    "token_digest",
    "confirm_digest",
    "confirm_expires_at",
    "confirm_attempts",
    "confirm_sends",
    "confirm_sent_at",
    "updated_at",
)
DISCARD_UNCONFIRMED = "DELETE FROM registrations WHERE id = ? AND status = 'unconfirmed'"
PURGE_UNCONFIRMED = "DELETE FROM registrations WHERE status = 'unconfirmed' AND created_at < ?"

# What a step did.
CONFIRMED = "confirmed"  # the code matched: the registration has its status now
WRONG_CODE = "wrong_code"  # counted against the code's attempts
CODE_EXPIRED = "code_expired"  # no code that works: expired, used up, or none sent
NOT_UNCONFIRMED = "not_unconfirmed"  # confirmed already (or never needed to be)
ERASED = "erased"
FULL = "full"  # the code matched, but the meeting's places were taken meanwhile
RENEWED = "renewed"  # a new code replaced the old one
TOO_SOON = "too_soon"  # the last code went out less than the minimum interval ago
NO_MORE_CODES = "no_more_codes"  # as many codes were sent as one registration gets


Confirmed = Literal["pending", "approved"]
"""What a confirmed registration becomes."""


@dataclass(frozen=True, slots=True)
class RegistrationStep:
    """What a confirmation or a new code did: the outcome (above) and the row after it."""

    outcome: str
    row: RegistrationRow


def confirmation_step(
    row: RegistrationRow,
    *,
    code_digest: str,
    now: float,
    max_attempts: int,
    status: Confirmed,
    token_digest: str | None,
) -> tuple[str, dict[str, object]]:
    """The outcome of trying the code whose digest is `code_digest` on `row`, and the columns
    to change: a match gives the registration `status` (and its join token's digest) and uses
    the code up; a miss counts an attempt, and the last allowed one uses the code up too."""
    if row.erased_at is not None:
        return ERASED, {}
    if row.status != "unconfirmed":
        return NOT_UNCONFIRMED, {}
    if (
        row.confirm_digest is None
        or row.confirm_expires_at is None
        or now >= row.confirm_expires_at
        or row.confirm_attempts >= max_attempts
    ):
        return CODE_EXPIRED, {}
    # Compared as bytes: `hmac.compare_digest` takes str only when it is ASCII, and bytes
    # compare in constant time whatever they hold.
    if not hmac.compare_digest(row.confirm_digest.encode(), code_digest.encode()):
        attempts = row.confirm_attempts + 1
        changes: dict[str, object] = {"confirm_attempts": attempts, "updated_at": now}
        if attempts >= max_attempts:
            changes["confirm_digest"] = None
        return WRONG_CODE, changes
    return CONFIRMED, {
        "status": status,
        "token_digest": token_digest,
        "confirm_digest": None,
        "confirm_expires_at": None,
        "updated_at": now,
    }


def renewal_step(
    row: RegistrationRow,
    *,
    code_digest: str,
    expires_at: float,
    now: float,
    min_interval: float,
    max_sends: int,
) -> tuple[str, dict[str, object]]:
    """The outcome of replacing `row`'s code with a new one, and the columns to change: at
    most `max_sends` codes per registration, `min_interval` seconds apart; a new code gets
    the full number of attempts."""
    if row.erased_at is not None:
        return ERASED, {}
    if row.status != "unconfirmed":
        return NOT_UNCONFIRMED, {}
    if row.confirm_sends >= max_sends:
        return NO_MORE_CODES, {}
    if row.confirm_sent_at is not None and now < row.confirm_sent_at + min_interval:
        return TOO_SOON, {}
    return RENEWED, {
        "confirm_digest": code_digest,
        "confirm_expires_at": expires_at,
        "confirm_attempts": 0,
        "confirm_sends": row.confirm_sends + 1,
        "confirm_sent_at": now,
        "updated_at": now,
    }


Decide = Callable[[RegistrationRow], tuple[str, dict[str, object]]]
"""One step (`confirmation_step` or `renewal_step`, its arguments bound): from the
registration as the transaction reads it, the outcome and the columns to change."""


async def registration_step(
    db: Database,
    registration_id: str,
    meeting_id: str,
    decide: Decide,
    capacity: int | None,
) -> RegistrationStep | None:
    """In one transaction: the meeting's row, then the registration's, locked until the end
    (in the order a new registration locks them, so the two never deadlock); `decide` the
    outcome and the changes; a CONFIRMED outcome with `capacity` counts the places first
    (FULL, nothing changed, when they are taken); the outcome and the row after. None when the
    meeting has no such registration."""
    async with db.transaction() as tx:
        if not await meeting_locked(tx, meeting_id):
            return None
        query = tx.dialect.for_update(SELECT_REGISTRATION_OF)
        row = await read_one(tx, query, (registration_id, meeting_id), registration_row)
        if row is None:
            return None
        outcome, changes = decide(row)
        if outcome == CONFIRMED and capacity is not None:
            if await places_taken(tx, meeting_id) >= capacity:
                outcome, changes = FULL, {}
        if changes:
            statement = update("registrations", list(changes), CONFIRMATION_UPDATABLE)
            await tx.execute(statement, [*changes.values(), row.id])
        after = await read_one(tx, SELECT_REGISTRATION, (row.id,), registration_row)
        assert after is not None
        return RegistrationStep(outcome, after)


async def delete_unconfirmed(db: Database, statement: str, params: tuple[Any, ...]) -> int:
    """Run a DELETE of unconfirmed registrations in one transaction; how many it deleted."""
    async with db.transaction() as tx:
        deleted = await tx.execute(statement, params)
    if deleted:
        await db.scrub_journal()  # the rows held personal data
    return deleted


class ConfirmationOperations(StoreCore):
    """The store's operations on unconfirmed registrations (version 5)."""

    async def confirm_registration(
        self,
        registration_id: str,
        *,
        meeting_id: str,
        code_digest: str,
        now: float,
        max_attempts: int,
        status: Confirmed,
        token_digest: str | None = None,
        capacity: int | None = None,
    ) -> RegistrationStep | None:
        """Try a confirmation code on an unconfirmed registration of `meeting_id`, in one
        transaction with the meeting's and the registration's rows locked
        (`confirmation_step`): on a match it gets `status` (pending or approved, with
        `token_digest`), unless `capacity` registrations count already (FULL, nothing
        changed). None when the meeting has no such registration."""
        # Not a type's re-check: the types do not tie the token to the status, and an approved
        # registration without one could never join. A caller's mistake: ValueError.
        if (status == "approved") != (token_digest is not None):
            raise ValueError("an approved registration, and only one, takes a token_digest")
        decide: Decide = functools.partial(
            confirmation_step,
            code_digest=code_digest,
            now=now,
            max_attempts=max_attempts,
            status=status,
            token_digest=token_digest,
        )
        return await self._run(registration_step, registration_id, meeting_id, decide, capacity)

    async def renew_confirmation(
        self,
        registration_id: str,
        *,
        meeting_id: str,
        code_digest: str,
        expires_at: float,
        now: float,
        min_interval: float,
        max_sends: int,
    ) -> RegistrationStep | None:
        """Replace an unconfirmed registration's code with a new one, in one transaction
        (`renewal_step`); None when the meeting has no such registration."""
        decide: Decide = functools.partial(
            renewal_step,
            code_digest=code_digest,
            expires_at=expires_at,
            now=now,
            min_interval=min_interval,
            max_sends=max_sends,
        )
        return await self._run(registration_step, registration_id, meeting_id, decide, None)

    async def discard_unconfirmed(self, registration_id: str) -> bool:
        """Delete a registration if it is still unconfirmed (its code could not be mailed);
        whether one was deleted. On SQLite nothing of it stays in the file or the WAL."""
        return await self._run(delete_unconfirmed, DISCARD_UNCONFIRMED, (registration_id,)) > 0

    async def purge_unconfirmed(self, created_before: float) -> int:
        """Delete every unconfirmed registration made before `created_before` (nobody
        confirmed it: its personal data goes); how many. On SQLite nothing of them stays in
        the file or the WAL."""
        return await self._run(delete_unconfirmed, PURGE_UNCONFIRMED, (created_before,))
