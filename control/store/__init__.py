"""The control plane's storage: meetings, participants, usage records and the routing log.

`open_store(url)` picks the backend from a `--db` value: a path or `sqlite:///path` for SQLite
(the default, one node), `postgresql://...` for PostgreSQL (many nodes, same schema; not yet
built). The `Store` protocol in `control.store.base` is what the rest of the control plane uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from control.store.base import (
    DuplicateKey,
    ForeignKeyViolation,
    IntegrityViolation,
    InvalidValue,
    MeetingRow,
    ParticipantRow,
    RoutingUpdate,
    SchemaMismatch,
    Store,
    StoreClosed,
    StoreError,
    UsageRecord,
    new_id,
)
from control.store.sqlite import SqliteStore

__all__ = [
    "DuplicateKey",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "InvalidValue",
    "MeetingRow",
    "ParticipantRow",
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

    - `postgresql://...` or `postgres://...`: PostgreSQL (not available yet: raises StoreError).
    - `sqlite:///abs/path.db` or `sqlite://rel/path.db`, or a plain path: that SQLite file.
    - empty: `relay.db` in `data_dir`.
    """
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        raise StoreError("the PostgreSQL backend is not built yet; use an SQLite file")
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
