"""The control plane's storage: meetings, participants, usage records, the routing log,
registrations (personal data sealed) and the audit log.

`open_store(url)` picks the backend from a `--db` value: a path or `sqlite:///path` for SQLite
(`SqliteStore`, the default, one node), a `postgresql://` or `postgres://` URL for PostgreSQL
(`PostgresStore`, many nodes on one database, same schema). Both are `Store`
(control/store/store.py), the one store class the rest of the control plane types against:
its operations are written once over an executor (control/store/executor.py) that each
backend implements, so they accept, refuse and return alike.

The modules: `store` (the class), `meetings`, `participants`, `registrations`,
`confirmation` and `records` (the operations by entity: statements, rows' encoding), `core`
(how an operation runs), `executor` (the executor and the SQL dialects), `numbering` (the
numbers the store assigns), `schema` (with schema.sql: the schema and its migrations), `rows`
(typed in the vocabulary: relay/vocabulary.py), `errors`, `values` (the encodings of a few
columns), `sqlite` and `postgres` (the backends). The services import the class, its rows and
its errors from here; a registration's confirmation outcomes from `confirmation`.
"""

from __future__ import annotations

import os
from pathlib import Path

from control.store.errors import (
    CapacityReached,
    DuplicateKey,
    ForeignKeyViolation,
    IntegrityViolation,
    RegistrationErased,
    SchemaMismatch,
    StoreClosed,
    StoreError,
)
from control.store.postgres import PostgresStore
from control.store.rows import (
    AuditRow,
    MeetingRow,
    ParticipantRow,
    RegistrationRow,
    RoutingUpdate,
    UsageRecord,
)
from control.store.sqlite import SqliteStore
from control.store.store import Store
from control.store.values import new_id

__all__ = [
    "AuditRow",
    "CapacityReached",
    "DuplicateKey",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "MeetingRow",
    "ParticipantRow",
    "PostgresStore",
    "RegistrationErased",
    "RegistrationRow",
    "RoutingUpdate",
    "SchemaMismatch",
    "SqliteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "UsageRecord",
    "new_id",
    "open_store",
]

DEFAULT_FILE = "relay.db"


async def open_store(url: str | os.PathLike[str], *, data_dir: Path | None = None) -> Store:
    """The store a `--db` value names.

    - `postgresql://...` or `postgres://...`: that PostgreSQL database (a pool of connections;
      the password, if the URL holds one, never shows in messages).
    - `sqlite:///abs/path.db` or `sqlite://rel/path.db`, or a plain path: that SQLite file.
    - empty: `relay.db` in `data_dir`.
    """
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        return await PostgresStore.open(text)
    if not text:
        if data_dir is None:
            raise StoreError("no database given: pass a --db URL or a data directory")
        return await SqliteStore.open(data_dir / DEFAULT_FILE)
    if text.startswith("sqlite://"):
        text = text.removeprefix("sqlite://")
        if not text or text == "/":
            raise StoreError("sqlite:// needs a file path, as in sqlite:///var/lib/relay/relay.db")
    elif "://" in text:
        raise StoreError(f"unknown database URL scheme in {text.split('://')[0] + '://'!r}")
    return await SqliteStore.open(text)
