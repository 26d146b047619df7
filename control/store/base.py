"""The storage layer's contract: row types, errors, the schema, and the `Store` protocol.

The control plane keeps its truth here (DESIGN.md, "Storage and scale"): meetings, participants,
append-only usage records, the numbered routing log that lets a restarted control plane
continue the update sequence the workers follow, registrations (their personal data sealed by
the caller, control/pii.py) and the audit log of host and operator actions. One node uses
SQLite (`control.store.sqlite`); many nodes use PostgreSQL (`control.store.postgres`) with the
same schema (`schema.sql`).

Backends share everything in this module: the rows they return, the errors they raise (so the
service layer never sees a driver's exception), the validation of values before they reach SQL,
and the schema text. The one dialect difference in the schema is the binary column type
(`BLOB` in SQLite, `BYTEA` in PostgreSQL), written `${binary}` in `schema.sql` and filled in by
`schema_statements()`.

Conventions:
    - Times are float seconds since the epoch (DOUBLE PRECISION); None means "not yet".
    - Not found is None (or an empty list), never an exception: the service layer turns it
      into a 404.
    - Secrets never reach the store in clear: passwords and host keys arrive as hashes or
      digests, SRTP master keys sealed (encrypted) by the caller. So does personal data: a
      registrant's fields arrive sealed under their own data key, the data key wrapped, the
      email as a keyed tag and the join token as a digest. Erasing a registrant
      (`erase_registrations`) overwrites all four in place; on SQLite the file and its WAL
      keep no copy of them afterwards (secure_delete, then a WAL checkpoint).
    - Update methods take keyword arguments that default to None, meaning "leave as it is".
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from relay.errors import RelayError

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

SCHEMA_VERSION = 5
"""The version `schema.sql` creates; stored in the `schema_version` table. Version 2 added the
wire ids, version 3 the features a meeting has used (`meetings.features`), version 4 the
registrations, the audit log and a meeting's registration settings (`meetings.registration`),
version 5 the 'unconfirmed' registrations and their confirmation codes' digests."""

MODES = ("meeting", "webinar")
STATES = ("open", "ended")
ROLES = ("host", "panelist", "attendee")
REGISTRATION_STATUSES = ("unconfirmed", "pending", "approved", "rejected")
ACTORS = ("operator", "host", "system")

BINARY_TYPES = {"sqlite": "BLOB", "postgresql": "BYTEA"}
"""The binary column type per dialect: the one place the schema differs between backends."""

DEFAULT_PAGE = 50

MAX_WIRE_ID = 0xFFFFFFFF
"""Wire ids (meetings, participants) are unsigned 32-bit: the routing table's ids."""

SCHEMA_PATH = Path(__file__).with_name("schema.sql")


# --- errors -----------------------------------------------------------------------------------


class StoreError(RelayError):
    """The storage layer failed: the database cannot be opened, or a statement failed.

    Backends translate their driver's exceptions into this hierarchy, so callers need not
    import sqlite3 or asyncpg.
    """


class StoreClosed(StoreError):
    """A call on a store after `close()`."""


class SchemaMismatch(StoreError):
    """The database was written by a newer relay (a schema version this code does not know)."""


class InvalidValue(StoreError, ValueError):
    """A value the schema does not allow (an unknown role or mode, a negative count, ...),
    refused before it reaches the database."""


class IntegrityViolation(StoreError):
    """A write broke a constraint of the database."""


class ForeignKeyViolation(IntegrityViolation):
    """A row refers to a row that does not exist (a participant of an unknown meeting)."""


class DuplicateKey(IntegrityViolation):
    """A row with this key exists already (an id, or a routing update number, used twice)."""


class CapacityReached(StoreError):
    """A registration for a meeting that has as many (pending or approved, not erased) as
    its capacity allows."""


class RegistrationErased(StoreError):
    """A change to a registration that was erased: an erased one stays as it is."""


# --- rows -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeetingRow:
    """One row of `meetings`."""

    id: str
    title: str
    mode: str  # 'meeting' | 'webinar'
    suite: str  # the SRTP suite of every participant's keys
    # Digests, not secrets in clear, but nothing gains from printing them: not in repr().
    password_hash: str = field(repr=False)
    panelist_password_hash: str | None = field(repr=False)
    host_key_digest: str = field(repr=False)
    state: str  # 'open' | 'ended'
    locked: bool
    recording: bool
    created_at: float
    ended_at: float | None
    wire_id: int = 0  # the routing table's u32 id; 0 until the backend assigns it
    # The features switched on at some point ('locked', 'recording', ...), sorted: kept even
    # when switched off again, so the usage record bills them (version 3).
    features: tuple[str, ...] = ()
    # The registration settings, a JSON object (control/registration.py), or None: the
    # meeting takes no registrations (version 4).
    registration: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    """One row of `participants`. The SRTP master keys are sealed: encrypted by the caller."""

    id: str
    meeting_id: str
    # The name and address are personal data and the keys are sealed secrets: not in repr(),
    # so that logging a row leaks none of them (DESIGN.md: logs carry no PII).
    name: str = field(repr=False)
    role: str  # 'host' | 'panelist' | 'attendee'
    streams: str  # JSON array of what it sends, as the API took it
    receive_at: str | None = field(repr=False)  # 'ip:port' for clients that only listen
    uplink_sealed: bytes = field(repr=False)
    downlink_sealed: bytes = field(repr=False)
    worker: int  # the worker it is homed on
    muted: bool
    expelled: bool
    joined_at: float
    left_at: float | None
    wire_id: int = 0  # the routing table's u32 id; 0 until the backend assigns it


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One row of `usage_records`: what one meeting used, written once when it ends."""

    id: int  # increasing in the order the records were appended
    meeting_id: str  # not a foreign key: a usage record outlives its meeting
    started_at: float
    ended_at: float
    duration_s: float
    total_participants: int
    peak_participants: int
    participant_minutes: float
    features: tuple[str, ...]  # 'webinar', 'recording', ...
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class RegistrationRow:
    """One row of `registrations` (version 4): one person's registration for one meeting.

    The personal data is sealed by the caller (control/pii.py): `sealed` is the fields'
    ciphertext under the registrant's own data key, `wrapped_key` that data key encrypted
    under the server's key, `email_tag` a keyed hash of the email (to find a person across
    meetings), `token_digest` the SHA-256 of the one-time join token (None once used). An
    erased registration has `sealed` empty and the other three None. None of them is in
    repr().

    Version 5: an 'unconfirmed' registration waits for its registrant to confirm the email
    with the code mailed to it: `confirm_digest` is the code's keyed digest (None once used
    up or confirmed), `confirm_expires_at` when it stops working, `confirm_attempts` the
    wrong codes tried against it, `confirm_sends` the codes sent, `confirm_sent_at` when the
    last one was."""

    id: str
    meeting_id: str
    status: str  # 'unconfirmed' | 'pending' | 'approved' | 'rejected'
    sealed: bytes = field(repr=False)
    wrapped_key: bytes | None = field(repr=False)
    email_tag: str | None = field(repr=False)
    token_digest: str | None = field(repr=False)
    participant_id: str | None  # who joined with its token (scrubbed too when it is erased)
    created_at: float
    updated_at: float
    erased_at: float | None
    confirm_digest: str | None = field(default=None, repr=False)
    confirm_expires_at: float | None = None
    confirm_attempts: int = 0
    confirm_sends: int = 0
    confirm_sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of `audit_log` (version 4): a host or operator action. Ids and flags only:
    `detail` is a JSON object that never holds personal data."""

    id: int  # increasing in the order the entries were appended
    at: float
    actor: str  # 'operator' | 'host' | 'system'
    action: str  # 'meeting.create', 'participant.expel', 'registration.erase', ...
    meeting_id: str | None  # not a foreign key: the audit outlives the meeting
    target: str | None  # the id acted on (a participant, a registration), if any
    detail: str  # JSON object


@dataclass(frozen=True, slots=True)
class RoutingUpdate:
    """One row of `routing_log`: a numbered routing update as the workers received it."""

    seq: int
    created_at: float
    body: str  # JSON


# --- values -----------------------------------------------------------------------------------


def new_id() -> str:
    """A random URL-safe id (128 bits from the OS CSPRNG, 22 characters) that starts with a
    letter or digit: an id starting with "-" would read as an option on a command line
    (`relay meetings end ID`)."""
    while True:
        candidate = secrets.token_urlsafe(16)
        if candidate[0].isalnum():
            return candidate


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidValue(f"{name} must be one of {', '.join(choices)}")
    return value


def check_text(name: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string, not {type(value).__name__}")
    if not empty and not value:
        raise InvalidValue(f"{name} must not be empty")
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidValue(f"{name} must be true or false, not {type(value).__name__}")
    return value


def check_int(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"{name} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise InvalidValue(f"{name} must be at least {minimum}")
    if value >= 1 << 63:
        raise InvalidValue(f"{name} does not fit in 64 bits")
    return value


def check_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{name} must be seconds since the epoch, not {type(value).__name__}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidValue(f"{name} must be a finite number of seconds")
    return value


def check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidValue(f"{name} must be a finite number")
    if number < 0:
        raise InvalidValue(f"{name} must not be negative")
    return number


def check_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidValue(f"{name} must be bytes, not {type(value).__name__}")
    if not value:
        raise InvalidValue(f"{name} must not be empty")
    return bytes(value)


def check_json(name: str, value: object, *, array: bool = False) -> str:
    """A JSON text (with `array`, one whose top level is an array), returned as given."""
    text = check_text(name, value)
    try:
        decoded = json.loads(text)
    except ValueError:
        raise InvalidValue(f"{name} is not valid JSON") from None
    if array and not isinstance(decoded, list):
        raise InvalidValue(f"{name} must be a JSON array")
    return text


def check_json_object(name: str, value: object) -> str:
    """A JSON text whose top level is an object, returned as given."""
    text = check_json(name, value)
    if not isinstance(json.loads(text), dict):
        raise InvalidValue(f"{name} must be a JSON object")
    return text


def check_page(limit: int | None, offset: int) -> tuple[int | None, int]:
    if limit is not None:
        check_int("limit", limit)
    check_int("offset", offset)
    return limit, offset


def encode_features(features: Sequence[str]) -> str:
    if isinstance(features, str):
        raise InvalidValue("features must be a list of names, not a string")
    for feature in features:
        check_text("a feature", feature)
    return json.dumps(list(features))


def decode_features(text: str) -> tuple[str, ...]:
    return tuple(str(f) for f in json.loads(text))


FEATURE_NAME = re.compile(r"[a-z_]{1,32}")
"""What a feature name a meeting records may be: 1 to 32 of a-z and _."""


def check_feature_names(name: str, value: object) -> tuple[str, ...]:
    """A list of feature names (FEATURE_NAME each), as a tuple."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidValue(f"{name} must be a list of feature names")
    for feature in value:
        if not isinstance(feature, str) or not FEATURE_NAME.fullmatch(feature):
            raise InvalidValue(f"{name}: a feature name is 1 to 32 characters of a-z and _")
    return tuple(value)


def merge_features(stored: str, added: Sequence[str]) -> str:
    """The stored JSON feature list with `added` joined to it, sorted, as JSON."""
    return encode_features(sorted(set(decode_features(stored)) | set(added)))


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


def check_digest(name: str, value: object) -> str:
    """A digest as the callers make them: 1 to 128 characters of ASCII letters and digits (so
    that it compares in constant time with `hmac.compare_digest`)."""
    text = check_text(name, value)
    if len(text) > 128 or not text.isascii() or not text.isalnum():
        raise InvalidValue(f"{name} must be a digest: letters and digits")
    return text


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


# --- errors from the database (the backends map their driver's errors to these kinds) --------

FOREIGN_KEY = "foreign key"
UNIQUE = "unique"
OTHER_CONSTRAINT = "other"


def constraint_error(what: str, kind: str, detail: object) -> IntegrityViolation:
    """The error for a write (`what`, as in "cannot create meeting 'x'") that broke a constraint
    of the database; `kind` is FOREIGN_KEY, UNIQUE or OTHER_CONSTRAINT, `detail` the driver's
    message (shown for OTHER_CONSTRAINT only)."""
    if kind == FOREIGN_KEY:
        return ForeignKeyViolation(f"{what}: it refers to a row that does not exist")
    if kind == UNIQUE:
        return DuplicateKey(f"{what}: the key exists already")
    return IntegrityViolation(f"{what}: {detail}")


def no_such_meeting(meeting_id: str) -> ForeignKeyViolation:
    """The error for a participant added to a meeting that does not exist."""
    return ForeignKeyViolation(
        f"cannot add a participant to meeting {meeting_id!r}: no such meeting"
    )


# --- schema -----------------------------------------------------------------------------------


def schema_text(dialect: str) -> str:
    """`schema.sql` for one dialect ('sqlite' or 'postgresql')."""
    if dialect not in BINARY_TYPES:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {list(BINARY_TYPES)}")
    source = SCHEMA_PATH.read_text(encoding="utf-8")
    return string.Template(source).substitute(binary=BINARY_TYPES[dialect])


def schema_statements(dialect: str) -> list[str]:
    """The statements of `schema.sql` for one dialect, comments stripped, in order.

    Every statement is idempotent (IF NOT EXISTS), so running them on a database that has the
    schema already changes nothing.
    """
    lines = []
    for line in schema_text(dialect).splitlines():
        code = line.split("--", 1)[0].rstrip()
        if code:
            lines.append(code)
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


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
