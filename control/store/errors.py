"""The errors the store raises, whichever database it runs on.

Each backend's executor (control/store/sqlite.py, control/store/postgres.py) turns its driver's
exceptions into these, so the services never import sqlite3 or asyncpg and never see a driver
message where a store error is expected: `ForeignKeyViolation`, `DuplicateKey` or
`IntegrityViolation` for a constraint of the database, `StoreClosed` after `close()`,
`StoreError` for anything else the database reports.
"""

from __future__ import annotations

from relay.errors import RelayError

__all__ = [
    "FOREIGN_KEY",
    "OTHER_CONSTRAINT",
    "UNIQUE",
    "CapacityReached",
    "DuplicateKey",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "RegistrationErased",
    "SchemaMismatch",
    "StoreClosed",
    "StoreError",
    "constraint_error",
    "restated",
]


class StoreError(RelayError):
    """The storage layer failed: the database cannot be opened, or a statement failed.

    Backends translate their driver's exceptions into this hierarchy, so callers need not
    import sqlite3 or asyncpg.
    """


class StoreClosed(StoreError):
    """A call on a store after `close()`."""


class SchemaMismatch(StoreError):
    """The database was written by a newer relay (a schema version this code does not know)."""


class IntegrityViolation(StoreError):
    """A write broke a constraint of the database."""

    detail: object = None
    """What the driver said (kept so that an operation can restate the error about its row)."""


class ForeignKeyViolation(IntegrityViolation):
    """A row refers to a row that does not exist (a participant of an unknown meeting)."""


class DuplicateKey(IntegrityViolation):
    """A row with this key exists already (an id, or a routing update number, used twice)."""


class CapacityReached(StoreError):
    """A registration for a meeting that has as many (pending or approved, not erased) as
    its capacity allows."""


class RegistrationErased(StoreError):
    """A change to a registration that was erased: an erased one stays as it is."""


# The kinds of constraint a driver reports; each executor maps its driver's errors to them.
FOREIGN_KEY = "foreign key"
UNIQUE = "unique"
OTHER_CONSTRAINT = "other"


def constraint_error(what: str, kind: str, detail: object) -> IntegrityViolation:
    """The error for a write (`what`, as in "cannot create meeting 'x'") that broke a constraint
    of the database; `kind` is FOREIGN_KEY, UNIQUE or OTHER_CONSTRAINT, `detail` the driver's
    message (shown for OTHER_CONSTRAINT only)."""
    error: IntegrityViolation
    if kind == FOREIGN_KEY:
        error = ForeignKeyViolation(f"{what}: it refers to a row that does not exist")
    elif kind == UNIQUE:
        error = DuplicateKey(f"{what}: the key exists already")
    else:
        error = IntegrityViolation(f"{what}: {detail}")
    error.detail = detail
    return error


def restated(error: IntegrityViolation, what: str) -> IntegrityViolation:
    """The same kind of error as `error` (raised by an executor, about no row in particular),
    said of the write `what`."""
    if isinstance(error, ForeignKeyViolation):
        return constraint_error(what, FOREIGN_KEY, error.detail)
    if isinstance(error, DuplicateKey):
        return constraint_error(what, UNIQUE, error.detail)
    return constraint_error(what, OTHER_CONSTRAINT, error.detail)
