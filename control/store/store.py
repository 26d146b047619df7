"""`Store`: the one store class, the storage the rest of the control plane types against.

Its operations are written once, over an executor (control/store/executor.py), in the modules
by entity it is made of: meetings (control/store/meetings.py), participants
(participants.py), registrations (registrations.py) and their email confirmation
(confirmation.py), the append-only records: usage, audit and routing (records.py), the
nodes sharing the database (nodes.py) and the trunks between them (trunks.py). A
backend gives it its executor: `SqliteStore.open(path)` (one file, one node) or
`PostgresStore.open(url)` (many nodes on one database), so SQLite and PostgreSQL accept,
refuse and return exactly the same things.

Every method is a coroutine and never blocks the event loop; every write is one transaction,
which lands whole or not at all. It takes and returns typed values (control/store/rows.py) and
does not check them again: input is checked once, by the HTTP API's request models
(docs/ARCHITECTURE.md, "Validation once, at the edge"). Errors (control/store/errors.py):
`ForeignKeyViolation` for a row referring to a missing one, `DuplicateKey` for a key used
twice, `IntegrityViolation` for another constraint of the schema, `StoreClosed` after
`close()`, `StoreError` for anything else the database reports. Not found is None (or an
empty list), never an exception: the services turn it into a 404. Update methods take keyword
arguments that default to None, meaning "leave as it is". A store is also an async context
manager that closes itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from control.store.confirmation import ConfirmationOperations
from control.store.meetings import MeetingOperations
from control.store.nodes import NodeOperations
from control.store.participants import ParticipantOperations
from control.store.records import RecordOperations
from control.store.registrations import RegistrationOperations
from control.store.trunks import TrunkOperations

__all__ = ["Closer", "Store"]

Closer = Callable[[], Awaitable[None]]


class Store(
    MeetingOperations,
    ParticipantOperations,
    RegistrationOperations,
    ConfirmationOperations,
    RecordOperations,
    NodeOperations,
    TrunkOperations,
):
    """The control plane's storage over one database's executor (see the module's docstring);
    open one with a backend's `open()`, or `control.store.open_store(url)`."""

    shared = False
    """Whether several nodes may share this database (PostgreSQL): then they tell each other
    of changes (`notify`, `listen`); alone on it (SQLite) a node has nobody to tell."""

    async def notify(self, channel: str, payload: str) -> None:
        """Tell every node listening on `channel` (PostgreSQL's NOTIFY); alone, nothing."""

    async def listen(self, channel: str, heard: Callable[[str], None]) -> Closer | None:
        """Call `heard(payload)` for each notification on `channel` from now on, until the
        returned closer is awaited; None: nobody else can notify (SQLite)."""
        return None
