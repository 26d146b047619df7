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

`close()` ends every stream: uvicorn waits for open responses before it stops, and an event
stream never ends by itself (control/server.py closes this when it is told to stop).
"""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._changed = asyncio.Event()

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
