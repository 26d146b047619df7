"""The audit log: who did what to which meeting, for the host and the operator to read.

The services append an entry after each host or operator action succeeds (control/meetings.py,
control/registration.py, control/recordings.py), with what changed:
creating, changing, ending and deleting a meeting; locking and unlocking it, switching
recording on and off; muting, expelling and changing the role of a participant; the
registration settings; approving, rejecting and correcting a registration, issuing a new join
token, reading or exporting the registrants; erasing a registration (by id or by email);
downloading a recording (`recording.download`: the file's name as target, its size). The
operator reads every entry (`GET /v1/audit`, `?meeting=ID`), a host its meeting's
(`GET /v1/meetings/{id}/audit`). Entries are never changed or deleted, and outlive their
meeting.

No personal data, by construction: an entry holds the actor ('operator', 'host' or
'system'), the action, the meeting id, the id acted on, and a detail object whose keys and
values are checked here: booleans, numbers, null, and short strings of letters, digits and
`_ . : -` (ids, flags, names of fields), or lists of those. A name with a space, an email
(`@`), an address with a slash or free text cannot pass, so a mistake in a caller fails loudly
(ValueError) instead of writing PII into a log that is never erased.

An entry is written after the action, in a transaction of its own: if the store fails just
then, the action stands, the entry is lost and the failure is logged (ids only).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping

from control.answers import Actor, AuditEntry
from control.store import AuditRow, Store, StoreError

__all__ = ["Audit", "audit_json", "check_detail"]

log = logging.getLogger("control.audit")

SAFE_TEXT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_ITEMS = 32


def _safe_value(key: str, value: object) -> object:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"audit detail {key!r}: not a finite number")
        return value
    if isinstance(value, str):
        if not SAFE_TEXT.fullmatch(value):
            raise ValueError(f"audit detail {key!r}: only ids and flags, never free text")
        return value
    if isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            raise ValueError(f"audit detail {key!r}: at most {MAX_ITEMS} items")
        if any(isinstance(item, list | tuple | dict) for item in value):
            raise ValueError(f"audit detail {key!r}: a list of ids and flags, not nested")
        return [_safe_value(key, item) for item in value]
    raise ValueError(f"audit detail {key!r}: {type(value).__name__} is not allowed")


def check_detail(detail: Mapping[str, object] | None) -> str:
    """The detail as JSON, if every key and value is an id, a flag, a number or a list of
    those; ValueError otherwise."""
    if not detail:
        return "{}"
    if len(detail) > MAX_ITEMS:
        raise ValueError(f"an audit detail has at most {MAX_ITEMS} keys")
    clean: dict[str, object] = {}
    for key, value in detail.items():
        if not isinstance(key, str) or not SAFE_TEXT.fullmatch(key):
            raise ValueError("an audit detail's keys are short names")
        clean[key] = _safe_value(key, value)
    return json.dumps(clean, sort_keys=True)


def audit_json(row: AuditRow) -> AuditEntry:
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "meeting_id": row.meeting_id,
        "target": row.target,
        "detail": json.loads(row.detail),
    }


class Audit:
    """Appends to and reads the store's audit log."""

    def __init__(
        self, store: Store, appended: Callable[[str | None], None] = lambda _meeting: None
    ) -> None:
        self.store = store
        # After each entry, with its meeting's id (the live pages: control/live.py).
        self.appended = appended

    async def append(
        self,
        actor: Actor,
        action: str,
        meeting_id: str | None = None,
        target: str | None = None,
        detail: Mapping[str, object] | None = None,
        *,
        now: float,
    ) -> AuditRow | None:
        """Append an entry; None (and an error logged) if the store fails."""
        body = check_detail(detail)
        try:
            row = await self.store.append_audit(
                actor=actor,
                action=action,
                meeting_id=meeting_id,
                target=target,
                detail=body,
                at=now,
            )
            self.appended(meeting_id)
            return row
        except StoreError as exc:
            log.error(
                "audit entry lost (%s %s, meeting %s, target %s): %s",
                actor,
                action,
                meeting_id,
                target,
                type(exc).__name__,
            )
            return None

    async def entries(
        self, meeting_id: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[AuditEntry]:
        rows = await self.store.list_audit(meeting_id=meeting_id, limit=limit, offset=offset)
        return [audit_json(r) for r in rows]
