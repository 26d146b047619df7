"""What the live pages and event streams wait on: a number that grows with every change.

The web console (control/web/) shows participants, controls and figures that change; its
pages keep one event stream open each (control/api/live.py, server-sent events) rather than
polling. A stream sends its subject again when it changed, and it learns of a change here:
every routing update the control plane publishes (a join, a leave, an expulsion, a mute, a
role change, a meeting ended, recording switched: control/routing.py) and every audit entry
(lock, unlock, registrations decided: control/audit.py) bumps `Changes.version` and wakes
the waiting streams. Figures that move without a change (packets, reception) are sent on
the stream's tick instead, so a busy webinar's joins cost each open console one read per
wake-up, not one per join.

`read()` shares what streams read: the first stream to want a subject (a meeting's participants,
say) at a version reads it, the others wait for that read.

`close()` ends every stream: uvicorn waits for open responses before it stops, and an event
stream never ends by itself (control/server.py closes this when it is told to stop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
MEMO_MAX = 10_000  # subjects remembered at once; past it the memo starts again


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._changed = asyncio.Event()
        # subject -> (the version it was read at, the read): see `read`
        self._reads: dict[str, tuple[int, asyncio.Future[Any]]] = {}

    def bump(self) -> None:
        """Something a live page shows changed: wake every stream waiting."""
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """The server is stopping: wake every stream, and let them see they must end."""
        self.closed = True
        self.bump()

    async def wait(self, seen: int, timeout: float) -> int:
        """The version once it is past `seen`, or after `timeout` seconds, whichever is
        first (the stream's tick)."""
        if self.version == seen and not self.closed:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        return self.version

    async def read(self, subject: str, read: Callable[[], Awaitable[T]]) -> T:
        """`read()` of `subject`, made once per version: every stream that wants it at this
        version (a webinar's thousand viewers woken by one join) shares one read of the store
        instead of making its own. A read that fails fails for all of them, and is made again
        at the next version."""
        found = self._reads.get(subject)
        if found is None or found[0] != self.version:
            if len(self._reads) >= MEMO_MAX:
                self._reads.clear()
            found = (self.version, asyncio.ensure_future(read()))
            self._reads[subject] = found
        future: asyncio.Future[T] = found[1]
        return await asyncio.shield(future)
