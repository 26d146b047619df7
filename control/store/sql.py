"""The statements every backend runs, in portable SQL, and the decoding of their rows.

Placeholders are qmark style (`?`), as sqlite3 takes them; the PostgreSQL backend rewrites
them to its driver's style (`%s`), which is safe because no statement here holds a `?` or `%`
anywhere else. Column lists are spelled out (never `SELECT *`), so the order the decoders
expect does not depend on how a table was created.

Numbers that the store assigns (usage record ids, routing update numbers) come from
`COALESCE(MAX(...), 0) + 1` inside the inserting transaction: portable, and gap-free on one
node. (With several PostgreSQL writers, two transactions may pick the same number; the primary
key refuses the second, which retries.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from control.store.base import (
    MeetingRow,
    ParticipantRow,
    RoutingUpdate,
    UsageRecord,
    decode_features,
)

MEETING_COLUMNS = (
    "id, title, mode, suite, password_hash, panelist_password_hash, host_key_digest, "
    "state, locked, recording, created_at, ended_at, wire_id"
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
MEETING_UPDATABLE = ("title", "locked", "recording", "state", "ended_at")

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

# wire ids: MAX + 1 over the table and its counter (never reused after a delete)

WIRE_ID_TABLES = ("meetings", "participants")
SELECT_WIRE_COUNTER = "SELECT last_id FROM wire_ids WHERE name = ?"
INSERT_WIRE_COUNTER = "INSERT INTO wire_ids (name, last_id) VALUES (?, ?)"
UPDATE_WIRE_COUNTER = "UPDATE wire_ids SET last_id = ? WHERE name = ?"


def max_wire_id(table: str) -> str:
    if table not in WIRE_ID_TABLES:  # never build SQL from anything but known names
        raise ValueError(f"{table!r} has no wire ids")
    return f"SELECT COALESCE(MAX(wire_id), 0) FROM {table}"


# schema migrations: version 1 -> 2 adds the wire ids (numbered in insertion order)

MIGRATE_1_TO_2 = tuple(
    statement
    for table in WIRE_ID_TABLES
    for statement in (
        f"ALTER TABLE {table} ADD COLUMN wire_id BIGINT NOT NULL DEFAULT 0",
        f"UPDATE {table} SET wire_id = "
        f"(SELECT COUNT(*) FROM {table} AS t WHERE t.rowid <= {table}.rowid)",
    )
)
UPDATE_SCHEMA_VERSION = "UPDATE schema_version SET version = ?"

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


def routing_update(r: Sequence[Any]) -> RoutingUpdate:
    return RoutingUpdate(seq=int(r[0]), created_at=float(r[1]), body=r[2])
