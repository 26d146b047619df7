"""The statements every backend runs, in portable SQL, the decoding of their rows, and
`SqlStore`: the `Store` protocol's methods written once over them.

Placeholders are qmark style (`?`), as sqlite3 takes them; the PostgreSQL backend rewrites
them to its driver's numbered style (`$1`, `$2`, ...), which is safe because no statement here
holds a `?` anywhere else. Column lists are spelled out (never `SELECT *`), so the order the
decoders expect does not depend on how a table was created.

Numbers that the store assigns (wire ids, usage record and audit entry ids, routing update
numbers) come from `COALESCE(MAX(...), 0) + 1` inside the inserting transaction: portable,
and gap-free. On one SQLite node the write lock (`BEGIN IMMEDIATE`) serialises the writers;
with several PostgreSQL writers (several nodes, or one node's connection pool) the backend
first takes a transaction-level advisory lock of that counter, so two transactions never pick
the same number.

A change that depends on what a row holds (a meeting's features: names are added to the stored
set) reads the row inside the updating transaction, then writes: on SQLite the write lock is
held from `BEGIN IMMEDIATE`, on PostgreSQL the read is `SELECT ... FOR UPDATE` (`for_update`),
which locks the row until the transaction ends, so two such changes never lose one another.

Registrations (version 4) follow the same rules: a registration counts its meeting's places
with the meeting's row read `for_update` (capacity), a join token is used by reading its row
`for_update` then clearing its digest (once), a correction of an erased registration is
refused inside its transaction (`not_erased`), and an erasure overwrites the rows it finds in
place (`ERASE_REGISTRATION`, `SCRUB_PARTICIPANT`) in one transaction. Version 5's
confirmation codes: a code is tried, or replaced by a new one, with the meeting's and the
registration's rows locked in that order (`_registration_step`), the outcome decided from the
row as the transaction reads it (base.confirmation_step, base.renewal_step), so two requests
never both use one code or both get the last attempt.

`SqlStore` holds what does not depend on the driver: validating values before any SQL runs,
choosing and paging the statements, and the row types. A backend subclasses it and supplies a
few primitives (fetch one, fetch all, and the write transactions); so SQLite and PostgreSQL
accept, refuse and return exactly the same things.
"""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

from control.store.base import (
    MAX_WIRE_ID,
    SCHEMA_VERSION,
    STATES,
    AuditRow,
    CapacityReached,
    ForeignKeyViolation,
    InvalidValue,
    MeetingRow,
    ParticipantRow,
    RegistrationErased,
    RegistrationRow,
    RegistrationStep,
    RoutingUpdate,
    SchemaMismatch,
    StoreError,
    UsageRecord,
    check_routing,
    confirmation_step,
    meeting_changes,
    new_audit,
    new_meeting,
    new_participant,
    new_registration,
    new_usage,
    participant_changes,
    registration_changes,
    renewal_step,
    schema_statements,
)
from control.store.rows import DEFAULT_PAGE
from control.store.values import (
    check_choice,
    check_digest,
    check_int,
    check_number,
    check_page,
    check_text,
    check_time,
    decode_features,
    encode_features,
    merge_features,
)

T = TypeVar("T")

Derive = tuple[str, Callable[[Sequence[Any]], dict[str, object]]]
"""A read-modify-write part of an update: a statement that reads the row by id (made with
`for_update`), and a function from the row it reads to more changes."""

MEETING_COLUMNS = (
    "id, title, mode, suite, password_hash, panelist_password_hash, host_key_digest, "
    "state, locked, recording, created_at, ended_at, wire_id, features, registration"
)
PARTICIPANT_COLUMNS = (
    "id, meeting_id, name, role, streams, receive_at, uplink_sealed, downlink_sealed, "
    "worker, muted, expelled, joined_at, left_at, wire_id"
)
USAGE_COLUMNS = (
    "id, meeting_id, started_at, ended_at, duration_s, total_participants, peak_participants, "
    "participant_minutes, features, packets_in, packets_out, bytes_in, bytes_out"
)
ROUTING_COLUMNS = "seq, created_at, body"
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
AUDIT_COLUMNS = "id, at, actor, action, meeting_id, target, detail"


def _marks(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


# schema version

SELECT_SCHEMA_VERSION = "SELECT MAX(version) FROM schema_version"
INSERT_SCHEMA_VERSION = "INSERT INTO schema_version (version) VALUES (?)"

# meetings

INSERT_MEETING = f"INSERT INTO meetings ({MEETING_COLUMNS}) VALUES ({_marks(MEETING_COLUMNS)})"
SELECT_MEETING = f"SELECT {MEETING_COLUMNS} FROM meetings WHERE id = ?"
LIST_MEETINGS = (
    f"SELECT {MEETING_COLUMNS} FROM meetings ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
)
LIST_MEETINGS_IN_STATE = (
    f"SELECT {MEETING_COLUMNS} FROM meetings WHERE state = ? "
    "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
)
DELETE_MEETING = "DELETE FROM meetings WHERE id = ?"
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


def for_update(dialect: str, query: str) -> str:
    """A read of rows about to be changed, inside a write transaction: PostgreSQL locks them
    (`FOR UPDATE`) until the transaction ends; SQLite has no such clause and needs none (the
    transaction holds the database's write lock from `BEGIN IMMEDIATE`)."""
    if dialect == "postgresql":
        return f"{query} FOR UPDATE"
    if dialect == "sqlite":
        return query
    raise ValueError(f"unknown SQL dialect {dialect!r}")


# participants

INSERT_PARTICIPANT = (
    f"INSERT INTO participants ({PARTICIPANT_COLUMNS}) VALUES ({_marks(PARTICIPANT_COLUMNS)})"
)
SELECT_PARTICIPANT = f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE id = ?"
SELECT_PARTICIPANT_OF = (
    f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE id = ? AND meeting_id = ?"
)
_LIST_PARTICIPANTS = f"SELECT {PARTICIPANT_COLUMNS} FROM participants WHERE meeting_id = ?"
_PARTICIPANT_ORDER = " ORDER BY joined_at, id"
PARTICIPANT_UPDATABLE = (
    "muted",
    "expelled",
    "role",
    "uplink_sealed",
    "downlink_sealed",
    "left_at",
)
DELETE_PARTICIPANTS_OF = "DELETE FROM participants WHERE meeting_id = ?"

# registrations (version 4)

INSERT_REGISTRATION = (
    f"INSERT INTO registrations ({REGISTRATION_COLUMNS}) VALUES ({_marks(REGISTRATION_COLUMNS)})"
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
# Version 5: a new registration replaces an unconfirmed one of the same email (add_registration),
# a confirmation step changes these columns, and unconfirmed ones are discarded or purged.
DELETE_UNCONFIRMED_OF_EMAIL = (
    "DELETE FROM registrations WHERE meeting_id = ? AND email_tag = ? AND status = 'unconfirmed'"
)
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
DELETE_REGISTRATIONS_OF = "DELETE FROM registrations WHERE meeting_id = ?"

# the audit log (version 4)

NEXT_AUDIT_ID = "SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log"
INSERT_AUDIT = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({_marks(AUDIT_COLUMNS)})"

# wire ids: MAX + 1 over the table and its counter (never reused after a delete)

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


# schema migrations: version 1 -> 2 adds the wire ids, numbering the existing rows. SQLite
# numbers them in insertion order (rowid); PostgreSQL has no insertion order, so in the order
# the rows were created (created_at, joined_at; the id breaks ties).

_CREATED_COLUMN = {"meetings": "created_at", "participants": "joined_at"}

MIGRATE_1_TO_2: dict[str, tuple[str, ...]] = {
    "sqlite": tuple(
        statement
        for table in WIRE_ID_TABLES
        for statement in (
            f"ALTER TABLE {table} ADD COLUMN wire_id BIGINT NOT NULL DEFAULT 0",
            f"UPDATE {table} SET wire_id = "
            f"(SELECT COUNT(*) FROM {table} AS t WHERE t.rowid <= {table}.rowid)",
        )
    ),
    "postgresql": tuple(
        statement
        for table in WIRE_ID_TABLES
        for statement in (
            f"ALTER TABLE {table} ADD COLUMN wire_id BIGINT NOT NULL DEFAULT 0",
            f"UPDATE {table} SET wire_id = n.number FROM (SELECT id, ROW_NUMBER() OVER "
            f"(ORDER BY {_CREATED_COLUMN[table]}, id) AS number FROM {table}) AS n "
            f"WHERE {table}.id = n.id",
        )
    ),
}

# Version 2 -> 3 adds the features a meeting has used; existing meetings have none recorded.
_ADD_MEETING_FEATURES = "ALTER TABLE meetings ADD COLUMN features TEXT NOT NULL DEFAULT '[]'"
MIGRATE_2_TO_3: dict[str, tuple[str, ...]] = {
    "sqlite": (_ADD_MEETING_FEATURES,),
    "postgresql": (_ADD_MEETING_FEATURES,),
}

# Version 3 -> 4 adds a meeting's registration settings (NULL: none, for every existing
# meeting); the registrations and audit_log tables are new, so the schema creates them.
_ADD_MEETING_REGISTRATION = "ALTER TABLE meetings ADD COLUMN registration TEXT"
MIGRATE_3_TO_4: dict[str, tuple[str, ...]] = {
    "sqlite": (_ADD_MEETING_REGISTRATION,),
    "postgresql": (_ADD_MEETING_REGISTRATION,),
}


def _registrations_v5(dialect: str, name: str) -> str:
    """schema.sql's CREATE TABLE of registrations (version 5), under another name: the one
    definition of the table, for the migration to rebuild it."""
    head = "CREATE TABLE IF NOT EXISTS registrations ("
    for statement in schema_statements(dialect):
        if statement.startswith(head):
            return f"CREATE TABLE {name} (" + statement[len(head) :]
    raise AssertionError("schema.sql has no registrations table")


# Version 4 -> 5 lets a registration be 'unconfirmed' (its status CHECK) and adds the columns of
# its confirmation code. SQLite cannot change a CHECK constraint in place, so it rebuilds the
# table as SQLite's documentation says (https://www.sqlite.org/lang_altertable.html, "Making
# Other Kinds Of Table Schema Changes"): create the new table, copy the rows, drop the old one,
# rename the new one; the schema then creates its indexes again. Nothing refers to
# registrations, so no foreign key needs switching off (which a transaction cannot do).
# PostgreSQL replaces the constraint (a column's CHECK is named <table>_<column>_check) and
# adds the columns.
MIGRATE_4_TO_5: dict[str, tuple[str, ...]] = {
    "sqlite": (
        _registrations_v5("sqlite", "registrations_v5"),
        f"INSERT INTO registrations_v5 ({REGISTRATION_V4_COLUMNS}) "
        f"SELECT {REGISTRATION_V4_COLUMNS} FROM registrations",
        "DROP TABLE registrations",
        "ALTER TABLE registrations_v5 RENAME TO registrations",
    ),
    "postgresql": (
        "ALTER TABLE registrations DROP CONSTRAINT registrations_status_check",
        "ALTER TABLE registrations ADD CONSTRAINT registrations_status_check "
        "CHECK (status IN ('unconfirmed', 'pending', 'approved', 'rejected'))",
        "ALTER TABLE registrations ADD COLUMN confirm_digest TEXT",
        "ALTER TABLE registrations ADD COLUMN confirm_expires_at DOUBLE PRECISION",
        "ALTER TABLE registrations ADD COLUMN confirm_attempts INTEGER NOT NULL DEFAULT 0 "
        "CHECK (confirm_attempts >= 0)",
        "ALTER TABLE registrations ADD COLUMN confirm_sends INTEGER NOT NULL DEFAULT 0 "
        "CHECK (confirm_sends >= 0)",
        "ALTER TABLE registrations ADD COLUMN confirm_sent_at DOUBLE PRECISION",
    ),
}

REGISTRATIONS_SINCE = 4
"""The schema version that created the registrations table."""

MIGRATIONS: dict[int, dict[str, tuple[str, ...]]] = {
    1: MIGRATE_1_TO_2,
    2: MIGRATE_2_TO_3,
    3: MIGRATE_3_TO_4,
    4: MIGRATE_4_TO_5,
}
"""Per stored version, the statements per dialect that take a database to the next one."""

UPDATE_SCHEMA_VERSION = "UPDATE schema_version SET version = ?"


def opening_statements(dialect: str, version: int | None) -> list[tuple[str, tuple[Any, ...]]]:
    """What opening a database runs, in one transaction, once it has read the stored schema
    version (None: no schema yet): the migrations from an older version, one step after the
    other (1 -> 2 -> 3 -> 4 -> 5), the schema (idempotent: on an existing database it creates
    nothing new), and the version of a new database.

    Raises:
        SchemaMismatch: the database was written by a newer relay, or holds a version no
            relay wrote.
    """
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the database has schema version {version}, newer than this relay's "
            f"({SCHEMA_VERSION}): run a newer relay, or restore a backup"
        )
    if version is not None and version < min(MIGRATIONS):
        raise SchemaMismatch(f"the database has schema version {version}, which no relay wrote")
    statements: list[tuple[str, tuple[Any, ...]]] = []
    if version is not None and version < SCHEMA_VERSION:
        # Version 2 added the wire ids: add the columns and number the existing rows (the
        # schema below then adds the unique indexes). Version 3 added meetings.features,
        # version 4 meetings.registration (and the new tables, which the schema creates),
        # version 5 the unconfirmed registrations (the schema then recreates the indexes of
        # the table SQLite rebuilt).
        for old in range(version, SCHEMA_VERSION):
            if old == REGISTRATIONS_SINCE and version < REGISTRATIONS_SINCE:
                continue  # no registrations table to change: the schema creates it as it is now
            statements += [(statement, ()) for statement in MIGRATIONS[old][dialect]]
        statements.append((UPDATE_SCHEMA_VERSION, (SCHEMA_VERSION,)))
    statements += [(statement, ()) for statement in schema_statements(dialect)]
    if version is None:
        statements.append((INSERT_SCHEMA_VERSION, (SCHEMA_VERSION,)))
    return statements


# usage records

NEXT_USAGE_ID = "SELECT COALESCE(MAX(id), 0) + 1 FROM usage_records"
INSERT_USAGE = f"INSERT INTO usage_records ({USAGE_COLUMNS}) VALUES ({_marks(USAGE_COLUMNS)})"
SELECT_USAGE = f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE id = ?"

# routing log

LAST_ROUTING_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM routing_log"
INSERT_ROUTING = f"INSERT INTO routing_log ({ROUTING_COLUMNS}) VALUES (?, ?, ?)"


def _page(sql: str, params: list[Any], limit: int | None, offset: int) -> tuple[str, list[Any]]:
    # "LIMIT ALL" is PostgreSQL only and SQLite refuses "LIMIT NULL": no limit, no clause.
    if limit is not None:
        return f"{sql} LIMIT ? OFFSET ?", [*params, limit, offset]
    if offset:
        # Both accept a LIMIT large enough to mean "all" (SQLite needs one before OFFSET).
        return f"{sql} LIMIT ? OFFSET ?", [*params, (1 << 63) - 1, offset]
    return sql, params


def list_participants(
    meeting_id: str, present_only: bool, limit: int | None, offset: int
) -> tuple[str, list[Any]]:
    sql = _LIST_PARTICIPANTS + (" AND left_at IS NULL" if present_only else "")
    return _page(sql + _PARTICIPANT_ORDER, [meeting_id], limit, offset)


def list_usage(meeting_id: str | None, limit: int | None, offset: int) -> tuple[str, list[Any]]:
    if meeting_id is None:
        sql, params = f"SELECT {USAGE_COLUMNS} FROM usage_records", []
    else:
        sql, params = (
            f"SELECT {USAGE_COLUMNS} FROM usage_records WHERE meeting_id = ?",
            [meeting_id],
        )
    return _page(sql + " ORDER BY id", params, limit, offset)


def list_registrations(meeting_id: str, limit: int | None, offset: int) -> tuple[str, list[Any]]:
    return _page(_LIST_REGISTRATIONS, [meeting_id], limit, offset)


def list_audit(meeting_id: str | None, limit: int | None, offset: int) -> tuple[str, list[Any]]:
    if meeting_id is None:
        sql, params = f"SELECT {AUDIT_COLUMNS} FROM audit_log", []
    else:
        sql, params = f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE meeting_id = ?", [meeting_id]
    return _page(sql + " ORDER BY id", params, limit, offset)


def routing_after(seq: int, limit: int | None) -> tuple[str, list[Any]]:
    sql = f"SELECT {ROUTING_COLUMNS} FROM routing_log WHERE seq > ? ORDER BY seq"
    return _page(sql, [seq], limit, 0)


def update(table: str, columns: Sequence[str], allowed: Sequence[str]) -> str:
    """`UPDATE table SET a = ?, b = ? WHERE id = ?` for columns from a fixed list only."""
    for column in columns:
        if column not in allowed:  # never build SQL from anything but known names
            raise ValueError(f"{column!r} is not an updatable column of {table}")
    sets = ", ".join(f"{column} = ?" for column in columns)
    return f"UPDATE {table} SET {sets} WHERE id = ?"


# rows -> dataclasses (a driver may give 0/1 for booleans, memoryview for binary)


def meeting_row(r: Sequence[Any]) -> MeetingRow:
    return MeetingRow(
        id=r[0],
        title=r[1],
        mode=r[2],
        suite=r[3],
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


def meeting_params(m: MeetingRow) -> tuple[Any, ...]:
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


def participant_row(r: Sequence[Any]) -> ParticipantRow:
    return ParticipantRow(
        id=r[0],
        meeting_id=r[1],
        name=r[2],
        role=r[3],
        streams=r[4],
        receive_at=r[5],
        uplink_sealed=bytes(r[6]),
        downlink_sealed=bytes(r[7]),
        worker=int(r[8]),
        muted=bool(r[9]),
        expelled=bool(r[10]),
        joined_at=float(r[11]),
        left_at=None if r[12] is None else float(r[12]),
        wire_id=int(r[13]),
    )


def participant_params(p: ParticipantRow) -> tuple[Any, ...]:
    return (
        p.id,
        p.meeting_id,
        p.name,
        p.role,
        p.streams,
        p.receive_at,
        p.uplink_sealed,
        p.downlink_sealed,
        p.worker,
        p.muted,
        p.expelled,
        p.joined_at,
        p.left_at,
        p.wire_id,
    )


def usage_record(r: Sequence[Any]) -> UsageRecord:
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


def registration_row(r: Sequence[Any]) -> RegistrationRow:
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


def audit_row(r: Sequence[Any]) -> AuditRow:
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


def no_meeting_to_register(meeting_id: str) -> ForeignKeyViolation:
    return ForeignKeyViolation(f"cannot register for meeting {meeting_id!r}: no such meeting")


def full(meeting_id: str, capacity: int) -> CapacityReached:
    return CapacityReached(
        f"meeting {meeting_id!r} has {capacity} registrations: its capacity is reached"
    )


Decide = Callable[[RegistrationRow], tuple[str, dict[str, object]]]
"""One step of a confirmation (base.confirmation_step or renewal_step, its arguments bound):
from the registration as the transaction reads it, the outcome and the columns to change."""


def not_erased(row: Sequence[Any]) -> dict[str, object]:
    """The `derive` of a registration's update: no more changes, or RegistrationErased (which
    rolls the transaction back) when the row read (`SELECT_REGISTRATION_ERASED`) is erased."""
    if row[0] is not None:
        raise RegistrationErased("that registration was erased: it cannot change any more")
    return {}


def routing_update(r: Sequence[Any]) -> RoutingUpdate:
    return RoutingUpdate(seq=int(r[0]), created_at=float(r[1]), body=r[2])


# --- the Store methods, written once ----------------------------------------------------------


class SqlStore(abc.ABC):
    """The `Store` protocol over the statements above. A backend subclasses it and supplies the
    primitives (the abstract methods), each of which raises StoreClosed after `close()` and
    translates its driver's errors into the store's; every value is validated here, before any
    primitive runs."""

    dialect: str

    # the primitives a backend supplies

    @property
    @abc.abstractmethod
    def closed(self) -> bool: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the calls in flight, then release the database. Idempotent."""

    @abc.abstractmethod
    async def _fetch_one(
        self, query: str, params: Sequence[Any], decode: Callable[[Sequence[Any]], T]
    ) -> T | None:
        """The first row of a query, decoded; None if there is none."""

    @abc.abstractmethod
    async def _fetch_all(
        self, query: str, params: Sequence[Any], decode: Callable[[Sequence[Any]], T]
    ) -> list[T]:
        """Every row of a query, decoded."""

    @abc.abstractmethod
    async def _insert_meeting(self, row: MeetingRow) -> MeetingRow:
        """Insert the row under the next wire id (`next_wire_id`), in one transaction; the
        row as stored."""

    @abc.abstractmethod
    async def _update(
        self,
        table: str,
        allowed: Sequence[str],
        select: str,
        decode: Callable[[Sequence[Any]], T],
        row_id: str,
        changes: dict[str, object],
        derive: Derive | None = None,
    ) -> T | None:
        """In one transaction: with `derive`, its statement reads the row by id and, if there
        is one, its function's changes join `changes`; then `update(table, changes, allowed)`
        (when there are changes), then the row as `select` reads it by id."""

    @abc.abstractmethod
    async def _delete_meeting(self, meeting_id: str) -> bool:
        """Delete a meeting's participants, its registrations and the meeting, in one
        transaction; False if there is no such meeting."""

    @abc.abstractmethod
    async def _insert_participant(self, row: ParticipantRow) -> ParticipantRow:
        """Insert the row under the next wire id, in one transaction (`no_such_meeting` when
        its meeting does not exist); the row as stored."""

    @abc.abstractmethod
    async def _insert_registration(
        self, row: RegistrationRow, capacity: int | None
    ) -> RegistrationRow:
        """In one transaction: lock the meeting's row (`LOCK_MEETING`, made with `for_update`;
        no row: `no_meeting_to_register`), with `capacity` count its registrations
        (`COUNT_REGISTRATIONS`; `full` when there are `capacity`), delete an unconfirmed one
        with the row's email tag (`DELETE_UNCONFIRMED_OF_EMAIL`), insert the row (a second
        registration with the email tag: DuplicateKey); the row as stored."""

    @abc.abstractmethod
    async def _registration_step(
        self, registration_id: str, meeting_id: str, decide: Decide, capacity: int | None
    ) -> RegistrationStep | None:
        """In one transaction: lock the meeting's row (`LOCK_MEETING`, for update; none:
        None), read the registration (`SELECT_REGISTRATION_OF`, for update; none: None),
        `decide` the outcome and the changes; a CONFIRMED outcome with `capacity` counts the
        registrations first (`COUNT_REGISTRATIONS`: FULL and no changes when there are
        `capacity`); run `update("registrations", changes, CONFIRMATION_UPDATABLE)`; the
        outcome and the row after. The meeting is locked before the registration, in the
        order `_insert_registration` locks them, so that the two never deadlock."""

    @abc.abstractmethod
    async def _delete_registrations(self, statement: str, params: Sequence[Any]) -> int:
        """Run a DELETE of registrations in one transaction; how many rows it deleted. SQLite
        then checkpoints the WAL when there were any (the rows held personal data)."""

    @abc.abstractmethod
    async def _use_token(
        self, meeting_id: str, token_digest: str, participant_id: str, used_at: float
    ) -> RegistrationRow | None:
        """In one transaction: find the row (`SELECT_REGISTRATION_BY_TOKEN`, for update),
        `USE_TOKEN` on it; the row after, or None if there was none."""

    @abc.abstractmethod
    async def _erase_registrations(
        self, ids: Sequence[str], email_tag: str | None, erased_at: float
    ) -> list[RegistrationRow]:
        """In one transaction: the rows `SELECT_ERASABLE` (each id) and
        `SELECT_ERASABLE_BY_TAG` find, for update; `ERASE_REGISTRATION` and
        `SCRUB_PARTICIPANT` on each; the rows after. SQLite then checkpoints the WAL."""

    @abc.abstractmethod
    async def _append_audit(self, row: AuditRow) -> AuditRow:
        """Insert the entry under the next id (`NEXT_AUDIT_ID`), in one transaction."""

    @abc.abstractmethod
    async def _append_usage(self, record: UsageRecord, features: str) -> UsageRecord:
        """Insert the record under the next id (`NEXT_USAGE_ID`), in one transaction."""

    @abc.abstractmethod
    async def _append_routing(self, body: str, seq: int | None, created_at: float) -> int:
        """Insert the update under the number `check_routing_seq` gives after the last stored
        one, in one transaction; that number."""

    @abc.abstractmethod
    async def _last_routing_seq(self) -> int: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

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
        row = new_meeting(
            title=title,
            mode=mode,
            suite=suite,
            password_hash=password_hash,
            host_key_digest=host_key_digest,
            panelist_password_hash=panelist_password_hash,
            created_at=created_at,
            meeting_id=meeting_id,
        )
        return await self._insert_meeting(row)

    async def get_meeting(self, meeting_id: str) -> MeetingRow | None:
        return await self._fetch_one(SELECT_MEETING, (meeting_id,), meeting_row)

    async def list_meetings(
        self, *, limit: int = DEFAULT_PAGE, offset: int = 0, state: str | None = None
    ) -> list[MeetingRow]:
        check_int("limit", limit)
        check_int("offset", offset)
        params: list[object]
        if state is None:
            query, params = LIST_MEETINGS, [limit, offset]
        else:
            query = LIST_MEETINGS_IN_STATE
            params = [check_choice("state", state, STATES), limit, offset]
        return await self._fetch_all(query, params, meeting_row)

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
        changes, added = meeting_changes(
            title=title,
            locked=locked,
            recording=recording,
            state=state,
            ended_at=ended_at,
            add_features=add_features,
            registration=registration,
        )
        derive: Derive | None = None
        if added:

            def joined(row: Sequence[Any]) -> dict[str, object]:
                return {"features": merge_features(row[0], added)}

            derive = (for_update(self.dialect, SELECT_MEETING_FEATURES), joined)
        return await self._update(
            "meetings", MEETING_UPDATABLE, SELECT_MEETING, meeting_row, meeting_id, changes, derive
        )

    async def delete_meeting(self, meeting_id: str) -> bool:
        return await self._delete_meeting(meeting_id)

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
        row = new_participant(
            meeting_id=meeting_id,
            name=name,
            role=role,
            uplink_sealed=uplink_sealed,
            downlink_sealed=downlink_sealed,
            worker=worker,
            streams=streams,
            receive_at=receive_at,
            joined_at=joined_at,
            participant_id=participant_id,
        )
        return await self._insert_participant(row)

    async def get_participant(
        self, participant_id: str, *, meeting_id: str | None = None
    ) -> ParticipantRow | None:
        params: tuple[str, ...]
        if meeting_id is None:
            query, params = SELECT_PARTICIPANT, (participant_id,)
        else:
            query, params = SELECT_PARTICIPANT_OF, (participant_id, meeting_id)
        return await self._fetch_one(query, params, participant_row)

    async def list_participants(
        self,
        meeting_id: str,
        *,
        present_only: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[ParticipantRow]:
        check_page(limit, offset)
        query, params = list_participants(meeting_id, present_only, limit, offset)
        return await self._fetch_all(query, params, participant_row)

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
        changes = participant_changes(
            muted=muted,
            expelled=expelled,
            role=role,
            uplink_sealed=uplink_sealed,
            downlink_sealed=downlink_sealed,
            left_at=left_at,
        )
        return await self._update(
            "participants",
            PARTICIPANT_UPDATABLE,
            SELECT_PARTICIPANT,
            participant_row,
            participant_id,
            changes,
        )

    # registrations

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
        row = new_registration(
            meeting_id=meeting_id,
            status=status,
            sealed=sealed,
            wrapped_key=wrapped_key,
            email_tag=email_tag,
            token_digest=token_digest,
            created_at=created_at,
            registration_id=registration_id,
            confirm_digest=confirm_digest,
            confirm_expires_at=confirm_expires_at,
        )
        if capacity is not None:
            check_int("capacity", capacity)
        return await self._insert_registration(row, capacity)

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
        check_text("registration id", registration_id)
        check_text("meeting id", meeting_id)
        check_digest("code_digest", code_digest)
        when = check_time("now", now)
        check_int("max_attempts", max_attempts, minimum=1)
        check_choice("status", status, ("pending", "approved"))  # what a confirmation gives
        if (status == "approved") != (token_digest is not None):
            raise InvalidValue("an approved registration, and only one, takes a token_digest")
        if token_digest is not None:
            check_digest("token_digest", token_digest)
        if capacity is not None:
            check_int("capacity", capacity)
        decide: Decide = functools.partial(
            confirmation_step,
            code_digest=code_digest,
            now=when,
            max_attempts=max_attempts,
            status=status,
            token_digest=token_digest,
        )
        return await self._registration_step(registration_id, meeting_id, decide, capacity)

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
        check_text("registration id", registration_id)
        check_text("meeting id", meeting_id)
        decide: Decide = functools.partial(
            renewal_step,
            code_digest=check_digest("code_digest", code_digest),
            expires_at=check_time("expires_at", expires_at),
            now=check_time("now", now),
            min_interval=check_number("min_interval", min_interval),
            max_sends=check_int("max_sends", max_sends, minimum=1),
        )
        return await self._registration_step(registration_id, meeting_id, decide, None)

    async def discard_unconfirmed(self, registration_id: str) -> bool:
        check_text("registration id", registration_id)
        return await self._delete_registrations(DISCARD_UNCONFIRMED, (registration_id,)) > 0

    async def purge_unconfirmed(self, created_before: float) -> int:
        when = check_time("created_before", created_before)
        return await self._delete_registrations(PURGE_UNCONFIRMED, (when,))

    async def get_registration(
        self, registration_id: str, *, meeting_id: str | None = None
    ) -> RegistrationRow | None:
        params: tuple[str, ...]
        if meeting_id is None:
            query, params = SELECT_REGISTRATION, (registration_id,)
        else:
            query, params = SELECT_REGISTRATION_OF, (registration_id, meeting_id)
        return await self._fetch_one(query, params, registration_row)

    async def get_registration_by_token(
        self, meeting_id: str, token_digest: str
    ) -> RegistrationRow | None:
        check_text("token_digest", token_digest)
        return await self._fetch_one(
            SELECT_REGISTRATION_BY_TOKEN, (meeting_id, token_digest), registration_row
        )

    async def list_registrations(
        self, meeting_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[RegistrationRow]:
        check_page(limit, offset)
        query, params = list_registrations(meeting_id, limit, offset)
        return await self._fetch_all(query, params, registration_row)

    async def count_registrations(self, meeting_id: str) -> int:
        count = await self._fetch_one(COUNT_REGISTRATIONS, (meeting_id,), lambda r: int(r[0]))
        return count or 0

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
        changes = registration_changes(
            status=status,
            sealed=sealed,
            email_tag=email_tag,
            token_digest=token_digest,
            clear_token=clear_token,
            updated_at=updated_at,
        )
        derive: Derive = (for_update(self.dialect, SELECT_REGISTRATION_ERASED), not_erased)
        return await self._update(
            "registrations",
            REGISTRATION_UPDATABLE,
            SELECT_REGISTRATION,
            registration_row,
            registration_id,
            changes,
            derive,
        )

    async def use_registration_token(
        self, *, meeting_id: str, token_digest: str, participant_id: str, used_at: float
    ) -> RegistrationRow | None:
        check_text("meeting id", meeting_id)
        check_text("token_digest", token_digest)
        check_text("participant id", participant_id)
        return await self._use_token(
            meeting_id, token_digest, participant_id, check_time("used_at", used_at)
        )

    async def erase_registrations(
        self,
        *,
        registration_ids: Sequence[str] = (),
        email_tag: str | None = None,
        erased_at: float | None = None,
    ) -> list[RegistrationRow]:
        if isinstance(registration_ids, str):
            raise InvalidValue("registration_ids must be a list of ids, not a string")
        ids = [check_text("registration id", i) for i in registration_ids]
        if email_tag is not None:
            check_text("email_tag", email_tag)
        when = time.time() if erased_at is None else check_time("erased_at", erased_at)
        if not ids and email_tag is None:
            return []
        return await self._erase_registrations(ids, email_tag, when)

    # the audit log

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
        row = new_audit(
            at=at,
            actor=actor,
            action=action,
            meeting_id=meeting_id,
            target=target,
            detail=detail,
        )
        return await self._append_audit(row)

    async def list_audit(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[AuditRow]:
        check_page(limit, offset)
        if meeting_id is not None:
            check_text("meeting id", meeting_id)
        query, params = list_audit(meeting_id, limit, offset)
        return await self._fetch_all(query, params, audit_row)

    # usage records

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
        record, features_json = new_usage(
            meeting_id=meeting_id,
            started_at=started_at,
            ended_at=ended_at,
            total_participants=total_participants,
            peak_participants=peak_participants,
            participant_minutes=participant_minutes,
            features=features,
            packets_in=packets_in,
            packets_out=packets_out,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            duration_s=duration_s,
        )
        return await self._append_usage(record, features_json)

    async def list_usage(
        self, *, meeting_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[UsageRecord]:
        check_page(limit, offset)
        if meeting_id is not None:
            check_text("meeting id", meeting_id)
        query, params = list_usage(meeting_id, limit, offset)
        return await self._fetch_all(query, params, usage_record)

    # routing log

    async def append_routing_update(
        self, body: str, *, seq: int | None = None, created_at: float | None = None
    ) -> int:
        body, seq, when = check_routing(body, seq, created_at)
        return await self._append_routing(body, seq, when)

    async def routing_updates_after(
        self, seq: int, *, limit: int | None = None
    ) -> list[RoutingUpdate]:
        check_int("seq", seq)
        check_page(limit, 0)
        query, params = routing_after(seq, limit)
        return await self._fetch_all(query, params, routing_update)

    async def last_routing_seq(self) -> int:
        return await self._last_routing_seq()
