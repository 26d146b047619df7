"""The schema: `schema.sql` as each dialect runs it, and the version it creates.

`schema.sql` is portable SQL (SQLite 3.23 or later, PostgreSQL 9.5 or later); the one
difference between the dialects is the binary column type, written `${binary}` there and
filled in here. Every statement is idempotent, so opening a database runs the whole file.
"""

from __future__ import annotations

import string
from pathlib import Path

__all__ = ["BINARY_TYPES", "SCHEMA_VERSION", "schema_statements", "schema_text"]

SCHEMA_VERSION = 5
"""The version `schema.sql` creates; stored in the `schema_version` table. Version 2 added the
wire ids, version 3 the features a meeting has used (`meetings.features`), version 4 the
registrations, the audit log and a meeting's registration settings (`meetings.registration`),
version 5 the 'unconfirmed' registrations and their confirmation codes' digests."""

BINARY_TYPES = {"sqlite": "BLOB", "postgresql": "BYTEA"}
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
