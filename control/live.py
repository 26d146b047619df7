"""What the live pages and event streams wait on: numbers that grow with every change.

The web console (control/web/) shows participants, controls and figures that change; its
pages keep one event stream open each (control/api/live.py, server-sent events) rather than
polling. A stream sends its subject again when it changed, and it learns of a change here:
every routing update the control plane publishes (a join, a leave, an expulsion, a mute, a
role change, a meeting ended, recording switched: control/routing.py) and every audit entry
(lock, unlock, registrations decided: control/audit.py) bumps `Changes.version` and the
version of the meeting it concerns, and wakes the streams waiting on that meeting (and those
waiting on `NODE`, every change: the operator's). So a join in one webinar wakes its own
viewers' streams, not every viewer on the node. Figures that move without a change (packets,
reception) are sent on the stream's tick instead, so a busy webinar's joins cost each open
console one read per wake-up, not one per join.

A meeting is named two ways by what bumps it: routing updates know its wire id, audit entries
its id. `meeting_subjects` gives both, and a stream waits on both.

`read()` shares what streams read: the first stream to want a subject (a meeting's participants,
say) at a version reads it, the others wait for that read.

`close()` ends every stream: uvicorn waits for open responses before it stops, and an event
stream never ends by itself (control/server.py closes this when it is told to stop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
NODE = "node"  # the subject every change bumps
MEMO_MAX = 10_000  # reads remembered at once; past it the memo starts again


def meeting_subjects(meeting_id: str, wire_id: int) -> tuple[Hashable, ...]:
    """The subjects a change of one meeting bumps: its id (audit entries) and its wire id
    (routing updates)."""
    return (("meeting", meeting_id), ("wire", wire_id))


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._versions: dict[Hashable, int] = {}  # subject -> the version of its last change
        self._waiting: dict[Hashable, asyncio.Event] = {}  # subject -> set at its next change
        # what was read -> (the version it was read at, the read): see `read`
        self._reads: dict[str, tuple[int, asyncio.Future[Any]]] = {}

    def bump(self, *subjects: Hashable | None) -> None:
        """Something a live page shows changed (of these subjects, None for none known):
        wake the streams waiting on them, and on NODE."""
        self.version += 1
        for subject in (NODE, *subjects):
            if subject is None:
                continue
            self._versions[subject] = self.version
            waiting = self._waiting.pop(subject, None)
            if waiting is not None:
                waiting.set()

    def meeting_changed(self, meeting_id: str | None) -> None:
        """An audit entry of a meeting (or of none)."""
        self.bump(None if meeting_id is None else ("meeting", meeting_id))

    def wire_changed(self, wire_id: int | None) -> None:
        """A routing update of a meeting known by its wire id (or of none)."""
        self.bump(None if wire_id is None else ("wire", wire_id))

    def version_of(self, subjects: Sequence[Hashable]) -> int:
        """The version of the last change of any of `subjects`."""
        return max((self._versions.get(s, 0) for s in subjects), default=0)

    def close(self) -> None:
        """The server is stopping: wake every stream, and let them see they must end."""
        self.closed = True
        for waiting in self._waiting.values():
            waiting.set()
        self._waiting.clear()
        self.bump()

    async def wait(self, subjects: Sequence[Hashable], seen: int, timeout: float) -> None:
        """Until one of `subjects` changes past version `seen`, or `timeout` seconds (the
        stream's tick), whichever is first."""
        if self.closed or self.version_of(subjects) != seen:
            return
        events = [self._waiting.setdefault(s, asyncio.Event()) for s in subjects]
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def read(self, key: str, version: int, read: Callable[[], Awaitable[T]]) -> T:
        """`read()` of `key` at `version` (its subjects' `version_of`), made once: every stream
        that wants it at this version (a webinar's thousand viewers woken by one join) shares
        one read of the store instead of making its own. A read that fails fails for all of
        them, and is made again at the next version."""
        found = self._reads.get(key)
        if found is None or found[0] != version:
            if len(self._reads) >= MEMO_MAX:
                self._reads.clear()
            found = (version, asyncio.ensure_future(read()))
            self._reads[key] = found
        future: asyncio.Future[T] = found[1]
        return await asyncio.shield(future)
