"""The names the services import from the store, in one module: `Store` (the one store class,
control/store/store.py), the rows it returns (control/store/rows.py), the errors it raises
(control/store/errors.py), the outcomes of a registration's confirmation step
(control/store/confirmation.py), `new_id` and the schema's version.

Nothing is defined here: each name lives in the module that says what it is, and the services
(control/meetings.py, control/registration.py, control/audit.py, control/roster.py) import it
from here so that they need not know how the store is cut into modules. `control.store` offers
the same names, the backends and `open_store`.
"""

from __future__ import annotations

from control.store.confirmation import (
    CODE_EXPIRED,
    CONFIRMED,
    ERASED,
    FULL,
    NO_MORE_CODES,
    NOT_UNCONFIRMED,
    RENEWED,
    TOO_SOON,
    WRONG_CODE,
    RegistrationStep,
)
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
from control.store.rows import (
    AuditRow,
    MeetingRow,
    ParticipantRow,
    RegistrationRow,
    RoutingUpdate,
    UsageRecord,
)
from control.store.schema import SCHEMA_VERSION
from control.store.store import Store
from control.store.values import new_id

__all__ = [
    "CODE_EXPIRED",
    "CONFIRMED",
    "ERASED",
    "FULL",
    "NOT_UNCONFIRMED",
    "NO_MORE_CODES",
    "RENEWED",
    "SCHEMA_VERSION",
    "TOO_SOON",
    "WRONG_CODE",
    "AuditRow",
    "CapacityReached",
    "DuplicateKey",
    "ForeignKeyViolation",
    "IntegrityViolation",
    "MeetingRow",
    "ParticipantRow",
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
]
