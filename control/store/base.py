"""The storage layer's contract: the `Store` protocol, and the rows and changes it takes.

The control plane keeps its truth here (README.md, "Serve it"): meetings, participants,
append-only usage records, the numbered routing log that lets a restarted control plane
continue the update sequence the workers follow, registrations (their personal data sealed by
the caller, control/pii.py) and the audit log of host and operator actions. One node uses
SQLite (`control.store.sqlite`); many nodes use PostgreSQL (`control.store.postgres`) with the
same schema (`schema.sql`).

The rows are in `control.store.rows`, the errors in `control.store.errors`, the checks of
values in `control.store.values` and the schema in `control.store.schema`; this module builds
the rows and changes the backends write from the checked values, and re-exports the names the
services import.

Conventions:
    - Not found is None (or an empty list), never an exception: the service layer turns it
      into a 404.
    - Erasing a registrant (`erase_registrations`) overwrites its sealed data in place; on
      SQLite the file and its WAL keep no copy afterwards (secure_delete, then a WAL
      checkpoint).
    - Update methods take keyword arguments that default to None, meaning "leave as it is".
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from control.store.errors import (
    CapacityReached,
    DuplicateKey,
    ForeignKeyViolation,
    IntegrityViolation,
    InvalidValue,
    RegistrationErased,
    SchemaMismatch,
    StoreClosed,
    StoreError,
)
from control.store.rows import (
    ACTORS,
    DEFAULT_PAGE,
    MAX_WIRE_ID,
    MODES,
    REGISTRATION_STATUSES,
    ROLES,
    STATES,
    AuditRow,
    MeetingRow,
    ParticipantRow,
    RegistrationRow,
    RoutingUpdate,
    UsageRecord,
)
from control.store.schema import BINARY_TYPES, SCHEMA_VERSION, schema_statements
from control.store.values import (
    check_bool,
    check_bytes,
    check_choice,
    check_digest,
    check_feature_names,
    check_int,
    check_json,
    check_json_object,
    check_number,
    check_text,
    check_time,
    decode_features,
    encode_features,
    new_id,
)

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
    "BINARY_TYPES",
    "MODES",
    "ROLES",
    "SCHEMA_VERSION",
    "STATES",
    "ACTORS",
    "AuditRow",
    "CapacityReached",
    "DuplicateKey",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "InvalidValue",
    "MeetingRow",
    "ParticipantRow",
    "REGISTRATION_STATUSES",
    "RegistrationErased",
    "RegistrationRow",
    "RegistrationStep",
    "RoutingUpdate",
    "SchemaMismatch",
    "Store",
    "StoreClosed",
    "StoreError",
    "UsageRecord",
    "new_id",
    "confirmation_step",
    "renewal_step",
    "schema_statements",
    "MAX_WIRE_ID",
]


# --- building rows and changes (shared by the backends, so they validate alike) -------------


def new_meeting(
    *,
    title: str,
    mode: str,
    suite: str,
    password_hash: str,
    host_key_digest: str,
    panelist_password_hash: str | None,
    created_at: float | None,
    meeting_id: str | None,
) -> MeetingRow:
    return MeetingRow(
        id=new_id() if meeting_id is None else check_text("meeting id", meeting_id),
        title=check_text("title", title, empty=True),
        mode=check_choice("mode", mode, MODES),
        suite=check_text("suite", suite),
        password_hash=check_text("password_hash", password_hash),
        panelist_password_hash=(
            None
            if panelist_password_hash is None
            else check_text("panelist_password_hash", panelist_password_hash)
        ),
        host_key_digest=check_text("host_key_digest", host_key_digest),
        state="open",
        locked=False,
        recording=False,
        created_at=time.time() if created_at is None else check_time("created_at", created_at),
        ended_at=None,
        features=(),
        registration=None,
    )


def meeting_changes(
    *,
    title: str | None,
    locked: bool | None,
    recording: bool | None,
    state: str | None,
    ended_at: float | None,
    add_features: Sequence[str] | None = None,
    registration: str | None = None,
) -> tuple[dict[str, object], tuple[str, ...]]:
    """The columns to set, and the feature names to add to the stored ones (the store joins
    them to what it reads inside the updating transaction)."""
    changes: dict[str, object] = {}
    if title is not None:
        changes["title"] = check_text("title", title, empty=True)
    if locked is not None:
        changes["locked"] = check_bool("locked", locked)
    if recording is not None:
        changes["recording"] = check_bool("recording", recording)
    if state is not None:
        changes["state"] = check_choice("state", state, STATES)
    if ended_at is not None:
        changes["ended_at"] = check_time("ended_at", ended_at)
    if registration is not None:
        changes["registration"] = check_json_object("registration", registration)
    added = () if add_features is None else check_feature_names("add_features", add_features)
    return changes, added


def new_participant(
    *,
    meeting_id: str,
    name: str,
    role: str,
    uplink_sealed: bytes,
    downlink_sealed: bytes,
    worker: int,
    streams: str,
    receive_at: str | None,
    joined_at: float | None,
    participant_id: str | None,
) -> ParticipantRow:
    return ParticipantRow(
        id=new_id() if participant_id is None else check_text("participant id", participant_id),
        meeting_id=check_text("meeting id", meeting_id),
        name=check_text("name", name, empty=True),
        role=check_choice("role", role, ROLES),
        streams=check_json("streams", streams, array=True),
        receive_at=None if receive_at is None else check_text("receive_at", receive_at),
        uplink_sealed=check_bytes("uplink_sealed", uplink_sealed),
        downlink_sealed=check_bytes("downlink_sealed", downlink_sealed),
        worker=check_int("worker", worker),
        muted=False,
        expelled=False,
        joined_at=time.time() if joined_at is None else check_time("joined_at", joined_at),
        left_at=None,
    )


def participant_changes(
    *,
    muted: bool | None,
    expelled: bool | None,
    role: str | None,
    uplink_sealed: bytes | None,
    downlink_sealed: bytes | None,
    left_at: float | None,
) -> dict[str, object]:
    changes: dict[str, object] = {}
    if muted is not None:
        changes["muted"] = check_bool("muted", muted)
    if expelled is not None:
        changes["expelled"] = check_bool("expelled", expelled)
    if role is not None:
        changes["role"] = check_choice("role", role, ROLES)
    if uplink_sealed is not None:
        changes["uplink_sealed"] = check_bytes("uplink_sealed", uplink_sealed)
    if downlink_sealed is not None:
        changes["downlink_sealed"] = check_bytes("downlink_sealed", downlink_sealed)
    if left_at is not None:
        changes["left_at"] = check_time("left_at", left_at)
    return changes


def new_usage(
    *,
    meeting_id: str,
    started_at: float,
    ended_at: float,
    total_participants: int,
    peak_participants: int,
    participant_minutes: float,
    features: Sequence[str],
    packets_in: int,
    packets_out: int,
    bytes_in: int,
    bytes_out: int,
    duration_s: float | None,
) -> tuple[UsageRecord, str]:
    """The record (its id still 0: the backend assigns it) and its features as JSON."""
    started = check_time("started_at", started_at)
    ended = check_time("ended_at", ended_at)
    if ended < started:
        raise InvalidValue("ended_at is before started_at")
    features_json = encode_features(features)
    record = UsageRecord(
        id=0,
        meeting_id=check_text("meeting id", meeting_id),
        started_at=started,
        ended_at=ended,
        duration_s=ended - started
        if duration_s is None
        else check_number("duration_s", duration_s),
        total_participants=check_int("total_participants", total_participants),
        peak_participants=check_int("peak_participants", peak_participants),
        participant_minutes=check_number("participant_minutes", participant_minutes),
        features=decode_features(features_json),
        packets_in=check_int("packets_in", packets_in),
        packets_out=check_int("packets_out", packets_out),
        bytes_in=check_int("bytes_in", bytes_in),
        bytes_out=check_int("bytes_out", bytes_out),
    )
    return record, features_json


def new_registration(
    *,
    meeting_id: str,
    status: str,
    sealed: bytes,
    wrapped_key: bytes,
    email_tag: str,
    token_digest: str | None,
    created_at: float | None,
    registration_id: str | None,
    confirm_digest: str | None = None,
    confirm_expires_at: float | None = None,
) -> RegistrationRow:
    """The row to insert. An 'unconfirmed' one needs its first code's digest and expiry (and
    counts that code as sent, at `created_at`); any other status takes neither."""
    when = time.time() if created_at is None else check_time("created_at", created_at)
    status = check_choice("status", status, REGISTRATION_STATUSES)
    unconfirmed = status == "unconfirmed"
    if unconfirmed != (confirm_digest is not None) or unconfirmed != (
        confirm_expires_at is not None
    ):
        raise InvalidValue(
            "an unconfirmed registration needs confirm_digest and confirm_expires_at, and "
            "only an unconfirmed one takes them"
        )
    return RegistrationRow(
        id=new_id() if registration_id is None else check_text("registration id", registration_id),
        meeting_id=check_text("meeting id", meeting_id),
        status=status,
        sealed=check_bytes("sealed", sealed),
        wrapped_key=check_bytes("wrapped_key", wrapped_key),
        email_tag=check_text("email_tag", email_tag),
        token_digest=None if token_digest is None else check_text("token_digest", token_digest),
        participant_id=None,
        created_at=when,
        updated_at=when,
        erased_at=None,
        confirm_digest=None
        if confirm_digest is None
        else check_digest("confirm_digest", confirm_digest),
        confirm_expires_at=(
            None
            if confirm_expires_at is None
            else check_time("confirm_expires_at", confirm_expires_at)
        ),
        confirm_sends=1 if unconfirmed else 0,
        confirm_sent_at=when if unconfirmed else None,
    )


# --- confirming a registration's email (version 5) --------------------------------------------
# One step of a confirmation or of a new code is decided from the row as it is inside the
# store's transaction (read for update), so that two requests never both use one code or both
# count as the last attempt: `confirmation_step` and `renewal_step` give the outcome and the
# columns to change, the backends run them (SqlStore.confirm_registration and
# renew_confirmation).

CONFIRMED = "confirmed"  # the code matched: the registration has its status now
WRONG_CODE = "wrong_code"  # counted against the code's attempts
CODE_EXPIRED = "code_expired"  # no code that works: expired, used up, or none sent
NOT_UNCONFIRMED = "not_unconfirmed"  # confirmed already (or never needed to be)
ERASED = "erased"
FULL = "full"  # the code matched, but the meeting's places were taken meanwhile
RENEWED = "renewed"  # a new code replaced the old one
TOO_SOON = "too_soon"  # the last code went out less than the minimum interval ago
NO_MORE_CODES = "no_more_codes"  # as many codes were sent as one registration gets


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
    status: str,
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
    if not hmac.compare_digest(row.confirm_digest, code_digest):
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


def registration_changes(
    *,
    status: str | None,
    sealed: bytes | None,
    email_tag: str | None,
    token_digest: str | None,
    clear_token: bool,
    updated_at: float | None,
) -> dict[str, object]:
    """The columns to set; `updated_at` (default now) is always among them."""
    changes: dict[str, object] = {}
    if status is not None:
        changes["status"] = check_choice("status", status, REGISTRATION_STATUSES)
    if sealed is not None:
        changes["sealed"] = check_bytes("sealed", sealed)
    if email_tag is not None:
        changes["email_tag"] = check_text("email_tag", email_tag)
    if check_bool("clear_token", clear_token):
        if token_digest is not None:
            raise InvalidValue("give token_digest or clear_token, not both")
        changes["token_digest"] = None
    elif token_digest is not None:
        changes["token_digest"] = check_text("token_digest", token_digest)
    when = time.time() if updated_at is None else check_time("updated_at", updated_at)
    changes["updated_at"] = when
    return changes


AUDIT_ACTION = re.compile(r"[a-z_]{1,32}(\.[a-z_]{1,32})?")
"""What an audit action may be: 'meeting.create', 'registration.erase', ..."""


def new_audit(
    *,
    at: float | None,
    actor: str,
    action: str,
    meeting_id: str | None,
    target: str | None,
    detail: str,
) -> AuditRow:
    if not isinstance(action, str) or not AUDIT_ACTION.fullmatch(action):
        raise InvalidValue("an audit action is a name like 'meeting.create'")
    return AuditRow(
        id=0,
        at=time.time() if at is None else check_time("at", at),
        actor=check_choice("actor", actor, ACTORS),
        action=action,
        meeting_id=None if meeting_id is None else check_text("meeting id", meeting_id),
        target=None if target is None else check_text("target", target),
        detail=check_json_object("detail", detail),
    )


def check_routing(
    body: str, seq: int | None, created_at: float | None
) -> tuple[str, int | None, float]:
    body = check_json("routing update body", body)
    if seq is not None:
        check_int("seq", seq, minimum=1)
    return body, seq, time.time() if created_at is None else check_time("created_at", created_at)


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


def no_such_meeting(meeting_id: str) -> ForeignKeyViolation:
    """The error for a participant added to a meeting that does not exist."""
    return ForeignKeyViolation(
        f"cannot add a participant to meeting {meeting_id!r}: no such meeting"
    )


# --- the protocol -----------------------------------------------------------------------------


class Store(Protocol):
    """What the control plane needs from storage. Every method is a coroutine; a backend must
    never block the event loop. Every write is one transaction: it lands whole or not at all.

    Errors: `InvalidValue` for a value the schema refuses (before any SQL runs),
    `ForeignKeyViolation` for a row referring to a missing one, `DuplicateKey` for a key used
    twice, `StoreClosed` after `close()`, `StoreError` for anything else the database reports.
    """

    # meetings

    async def create_meeting(
        self,
        *,
        title: str,
        mode: str,
        suite: str,
        password_hash: str,
        host_key_digest: str,
        panelist_password_hash: str | None = None,
        created_at: float | None = None,
        meeting_id: str | None = None,
    ) -> MeetingRow:
        """A new open, unlocked, not recording meeting with no features. `meeting_id` defaults
        to `new_id()`, `created_at` to now."""
        ...

    async def get_meeting(self, meeting_id: str) -> MeetingRow | None: ...

    async def list_meetings(
        self, *, limit: int = DEFAULT_PAGE, offset: int = 0, state: str | None = None
    ) -> list[MeetingRow]:
        """A page of meetings, newest first (by created_at, then id); only `state` if given."""
        ...

    async def update_meeting(
        self,
        meeting_id: str,
        *,
        title: str | None = None,
        locked: bool | None = None,
        recording: bool | None = None,
        state: str | None = None,
        ended_at: float | None = None,
        add_features: Sequence[str] | None = None,
        registration: str | None = None,
    ) -> MeetingRow | None:
        """Change the given fields; the row after the change, or None if there is no such
        meeting. With no field given, the row as it is. `add_features` joins feature names
        (1 to 32 of a-z and _ each) to the meeting's `features`, in the same transaction as
        the other changes: names are only ever added, never removed. `registration` is the
        registration settings, a JSON object."""
        ...

    async def delete_meeting(self, meeting_id: str) -> bool:
        """Delete a meeting, its participants and its registrations (not its usage records
        nor its audit entries); False if unknown. On SQLite the deleted rows are overwritten
        in the file and the WAL, as by `erase_registrations`."""
        ...

    # participants

    async def add_participant(
        self,
        *,
        meeting_id: str,
        name: str,
        role: str,
        uplink_sealed: bytes,
        downlink_sealed: bytes,
        worker: int,
        streams: str = "[]",
        receive_at: str | None = None,
        joined_at: float | None = None,
        participant_id: str | None = None,
    ) -> ParticipantRow:
        """A new participant of `meeting_id` (ForeignKeyViolation if there is no such
        meeting). `participant_id` defaults to `new_id()`, `joined_at` to now."""
        ...

    async def get_participant(
        self, participant_id: str, *, meeting_id: str | None = None
    ) -> ParticipantRow | None:
        """The participant, or None; with `meeting_id`, None also when it belongs to another
        meeting."""
        ...

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
        ...

    async def update_participant(
        self,
        participant_id: str,
        *,
        muted: bool | None = None,
        expelled: bool | None = None,
        role: str | None = None,
        uplink_sealed: bytes | None = None,
        downlink_sealed: bytes | None = None,
        left_at: float | None = None,
    ) -> ParticipantRow | None:
        """Change the given fields; the row after the change, or None if unknown."""
        ...

    # registrations (version 4)

    async def add_registration(
        self,
        *,
        meeting_id: str,
        status: str,
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
        ...

    async def get_registration(
        self, registration_id: str, *, meeting_id: str | None = None
    ) -> RegistrationRow | None:
        """The registration, or None; with `meeting_id`, None also when it is another
        meeting's."""
        ...

    async def get_registration_by_token(
        self, meeting_id: str, token_digest: str
    ) -> RegistrationRow | None:
        """The approved, not erased registration of `meeting_id` whose unused join token has
        this digest, or None."""
        ...

    async def list_registrations(
        self, meeting_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[RegistrationRow]:
        """The registrations of one meeting in the order they came (erased ones too)."""
        ...

    async def count_registrations(self, meeting_id: str) -> int:
        """How many registrations of one meeting count against its capacity (pending or
        approved, not erased: not the unconfirmed ones)."""
        ...

    async def confirm_registration(
        self,
        registration_id: str,
        *,
        meeting_id: str,
        code_digest: str,
        now: float,
        max_attempts: int,
        status: str,
        token_digest: str | None = None,
        capacity: int | None = None,
    ) -> RegistrationStep | None:
        """Try a confirmation code on an unconfirmed registration of `meeting_id`, in one
        transaction with the meeting's and the registration's rows locked
        (`confirmation_step`): on a match it gets `status` (pending or approved, with
        `token_digest`), unless `capacity` registrations count already (FULL, nothing
        changed). None when the meeting has no such registration."""
        ...

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
        ...

    async def discard_unconfirmed(self, registration_id: str) -> bool:
        """Delete a registration if it is still unconfirmed (its code could not be mailed);
        whether one was deleted. On SQLite nothing of it stays in the file or the WAL."""
        ...

    async def purge_unconfirmed(self, created_before: float) -> int:
        """Delete every unconfirmed registration made before `created_before` (nobody
        confirmed it: its personal data goes); how many. On SQLite nothing of them stays in
        the file or the WAL."""
        ...

    async def update_registration(
        self,
        registration_id: str,
        *,
        status: str | None = None,
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
        ...

    async def use_registration_token(
        self, *, meeting_id: str, token_digest: str, participant_id: str, used_at: float
    ) -> RegistrationRow | None:
        """Use a join token once: the registration `get_registration_by_token` finds gets its
        token digest cleared and `participant_id` recorded, in one transaction (two joins
        with one token: one gets the row, the other None)."""
        ...

    async def erase_registrations(
        self,
        *,
        registration_ids: Sequence[str] = (),
        email_tag: str | None = None,
        erased_at: float | None = None,
    ) -> list[RegistrationRow]:
        """Erase the given registrations and those with `email_tag` (in every meeting), in
        one transaction: `sealed` becomes empty, the wrapped key, email tag and token digest
        None, `erased_at` set; the name of a participant who joined with one of them becomes
        empty. The rows erased by this call, after the change (those erased before are left
        as they are and not returned). On SQLite nothing erased survives in the file or the
        WAL afterwards."""
        ...

    # the audit log (append-only: there is no update or delete)

    async def append_audit(
        self,
        *,
        actor: str,
        action: str,
        meeting_id: str | None = None,
        target: str | None = None,
        detail: str = "{}",
        at: float | None = None,
    ) -> AuditRow:
        """Append an entry under the next id; `detail` a JSON object, `at` default now."""
        ...

    async def list_audit(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[AuditRow]:
        """Audit entries in the order they were appended; all of them, or one meeting's."""
        ...

    # usage records (append-only: there is no update or delete)

    async def append_usage(
        self,
        *,
        meeting_id: str,
        started_at: float,
        ended_at: float,
        total_participants: int,
        peak_participants: int,
        participant_minutes: float,
        features: Sequence[str] = (),
        packets_in: int = 0,
        packets_out: int = 0,
        bytes_in: int = 0,
        bytes_out: int = 0,
        duration_s: float | None = None,
    ) -> UsageRecord:
        """Append a usage record; `duration_s` defaults to ended_at - started_at."""
        ...

    async def list_usage(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[UsageRecord]:
        """Usage records in the order they were appended; all of them, or one meeting's."""
        ...

    # routing log

    async def append_routing_update(
        self, body: str, *, seq: int | None = None, created_at: float | None = None
    ) -> int:
        """Store a routing update (a JSON text) and return its number: `seq` if given (it must
        be above every stored one, else DuplicateKey), else one more than the last."""
        ...

    async def routing_updates_after(
        self, seq: int, *, limit: int | None = None
    ) -> list[RoutingUpdate]:
        """The updates numbered above `seq`, in order."""
        ...

    async def last_routing_seq(self) -> int:
        """The number of the last stored update; 0 when there is none."""
        ...

    async def close(self) -> None:
        """Finish the calls in flight, then release the database. Idempotent."""
        ...
