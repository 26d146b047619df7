"""The schema: `schema.sql` as each dialect runs it, the version it creates, the migrations
from older versions, and `open_schema`, which a backend runs when it opens a database.

`schema.sql` is portable SQL (SQLite 3.23 or later, PostgreSQL 9.5 or later); the one
difference between the dialects is the binary column type, written `${binary}` there and
filled in here. Every statement is idempotent, so opening a database runs the whole file.

Opening is one transaction, written once for both backends (`open_schema`): read the stored
version, refuse a newer one (SchemaMismatch), migrate an older one step by step, create what
is missing. On PostgreSQL it holds the schema's advisory lock (control/store/executor.py
`lock_counter`), so two nodes starting at once neither race on CREATE TABLE nor migrate twice;
on SQLite the write lock serialises it.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from control.store.errors import SchemaMismatch
from control.store.executor import POSTGRESQL, SQLITE, Database, lock_counter
from control.store.numbering import WIRE_ID_TABLES
from control.store.registrations import REGISTRATION_V4_COLUMNS

__all__ = [
    "BINARY_TYPES",
    "SCHEMA_VERSION",
    "open_schema",
    "opening_statements",
    "schema_statements",
    "schema_text",
]

SCHEMA_VERSION = 7
"""The version `schema.sql` creates; stored in the `schema_version` table. Version 2 added the
wire ids, version 3 the features a meeting has used (`meetings.features`), version 4 the
registrations, the audit log and a meeting's registration settings (`meetings.registration`),
version 5 the 'unconfirmed' registrations and their confirmation codes' digests, version 6 the
nodes sharing the database, version 7 the node each participant is homed on, each node's own
numbering in the routing log, and the trunks between nodes."""

BINARY_TYPES = {dialect.name: dialect.binary_type for dialect in (SQLITE, POSTGRESQL)}
"""The binary column type per dialect: the one place the schema differs between backends."""

SCHEMA_PATH = Path(__file__).with_name("schema.sql")


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

# Version 5 -> 6 adds the nodes table, which the schema creates: nothing to change.
MIGRATE_5_TO_6: dict[str, tuple[str, ...]] = {"sqlite": (), "postgresql": ()}

# Version 6 -> 7 adds the node a participant is homed on and each node's numbering in the
# routing log (NULL in the rows before: the one node there was); the trunks table is new, so
# the schema creates it.
_V7_COLUMNS = (
    "ALTER TABLE participants ADD COLUMN node TEXT",
    "ALTER TABLE routing_log ADD COLUMN node TEXT",
    "ALTER TABLE routing_log ADD COLUMN node_seq BIGINT",
)
MIGRATE_6_TO_7: dict[str, tuple[str, ...]] = {"sqlite": _V7_COLUMNS, "postgresql": _V7_COLUMNS}

MIGRATIONS: dict[int, dict[str, tuple[str, ...]]] = {
    1: MIGRATE_1_TO_2,
    2: MIGRATE_2_TO_3,
    3: MIGRATE_3_TO_4,
    4: MIGRATE_4_TO_5,
    5: MIGRATE_5_TO_6,
    6: MIGRATE_6_TO_7,
}
"""Per stored version, the statements per dialect that take a database to the next one."""

MIGRATED_LATE = ("routing_log",)
"""Tables a migration changes that a database of version 1 may not have."""

SELECT_SCHEMA_VERSION = "SELECT MAX(version) FROM schema_version"
INSERT_SCHEMA_VERSION = "INSERT INTO schema_version (version) VALUES (?)"
UPDATE_SCHEMA_VERSION = "UPDATE schema_version SET version = ?"


def opening_statements(
    dialect: str, version: int | None, missing: frozenset[str] = frozenset()
) -> list[tuple[str, tuple[Any, ...]]]:
    """What opening a database runs, in one transaction, once it has read the stored schema
    version (None: no schema yet): the migrations from an older version, one step after the
    other (1 -> 2 -> ... -> 7), the schema (idempotent: on an existing database it creates
    nothing new), and the version of a new database.

    `missing`: tables an older database does not have (the routing log came after version 1):
    the schema creates them as they are now, so no migration changes them.

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
            statements += [
                (statement, ())
                for statement in MIGRATIONS[old][dialect]
                if not any(statement.startswith(f"ALTER TABLE {t} ") for t in missing)
            ]
        statements.append((UPDATE_SCHEMA_VERSION, (SCHEMA_VERSION,)))
    statements += [(statement, ()) for statement in schema_statements(dialect)]
    if version is None:
        statements.append((INSERT_SCHEMA_VERSION, (SCHEMA_VERSION,)))
    return statements


async def open_schema(db: Database) -> None:
    """Create the schema on a new database, or check and migrate an existing one's, in one
    transaction (`opening_statements`)."""
    async with db.transaction() as tx:
        await lock_counter(tx, "schema")
        version = None
        if await tx.fetch_one(tx.dialect.schema_exists) is not None:
            stored = await tx.fetch_one(SELECT_SCHEMA_VERSION)
            version = None if stored is None else stored[0]
        missing = set()
        for table in MIGRATED_LATE:
            exists = tx.dialect.schema_exists.replace("schema_version", table)
            if await tx.fetch_one(exists) is None:
                missing.add(table)
        for statement, params in opening_statements(tx.dialect.name, version, frozenset(missing)):
            await tx.execute(statement, params)
