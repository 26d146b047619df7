"""This node among those that share one database: its registration, heartbeat and drain.

Several `relay serve` processes on one PostgreSQL database are one service (README.md, "Several
nodes"); on SQLite there is one. Each registers at its start (`nodes` table: its name, API
address, media address, workers, capacity), then writes its load (participants present) and
a heartbeat every HEARTBEAT_S; a node whose heartbeat is GONE_AFTER_S old is gone (killed, or
cut off from the database). A node is its data directory (DATA_DIR/node.id): started again, it
takes its row back at once; a node of another data directory under a running node's name is
refused at start. `relay drain NAME` marks a node draining: it takes no new participants
(its joins are answered 503) and lets those present stay until their meetings end; `relay
drain --undo NAME` takes it back. The node reads its own flag with each heartbeat, so a
drain made through any node's API reaches it within HEARTBEAT_S. A node that stops cleanly
removes its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

from control.answers import Node
from control.settings import Settings
from control.store import Store, StoreError
from control.store.rows import NodeRow

log = logging.getLogger("control.nodes")

HEARTBEAT_S = 2.0
GONE_AFTER_S = 5.0

NodeState = Literal["up", "draining", "gone"]


def node_state(row: NodeRow, now: float) -> NodeState:
    if now - row.heartbeat_at >= GONE_AFTER_S:
        return "gone"
    return "draining" if row.draining else "up"


def node_json(row: NodeRow, now: float) -> Node:
    return {
        "name": row.name,
        "state": node_state(row, now),
        "api_url": row.api_url,
        "media": {"host": row.media_host, "port": row.media_port},
        "workers": row.workers,
        "capacity": row.capacity,
        "load": row.load,
        "started_at": row.started_at,
        "heartbeat_at": row.heartbeat_at,
    }


def api_url(settings: Settings) -> str:
    """Where this node's API is reached: its advertised host when the API listens on every
    address, else the address it listens on."""
    host = settings.api_host
    if host in ("0.0.0.0", "::"):
        host = settings.advertised_host
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.api_port}"


def this_node(settings: Settings, instance: str, now: float) -> NodeRow:
    """This node's row as it registers; `instance`: its data directory's identity
    (control/credentials.py `node_instance`), so that the node started again (after a crash,
    or its control plane restarted) takes its own row back at once."""
    return NodeRow(
        name=settings.node,
        instance=instance,
        api_url=api_url(settings),
        media_host=settings.advertised_host,
        media_port=settings.media_port,
        workers=settings.workers,
        capacity=settings.capacity,
        load=0,
        started_at=now,
        heartbeat_at=now,
        draining=False,
    )


class NodeRegistry:
    """This node's row, registered already (`Store.register_node`: control/server.py does it
    before anything listens), kept fresh: a heartbeat every HEARTBEAT_S from `start` with the
    load `load()` gives, removed by `close`. `draining` is what its row said last."""

    def __init__(
        self, store: Store, row: NodeRow, load: Callable[[], int], clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.row = row
        self.load = load
        self.clock = clock
        self.draining = row.draining
        self._beating: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Beat from now on."""
        self._beating = asyncio.get_running_loop().create_task(self._beat())
        log.info("node %s registered%s", self.row.name, " (draining)" if self.draining else "")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self.beat()
            except StoreError as exc:
                log.error("node %s: heartbeat not written: %s", self.row.name, exc)

    async def beat(self) -> None:
        """One heartbeat: the load, and the draining flag read back. A row that is gone (or
        taken over after this node was thought gone) is registered again."""
        now = self.clock()
        if not await self.store.heartbeat_node(
            self.row.name, self.row.instance, load=self.load(), at=now
        ):
            fresh = dataclasses.replace(self.row, heartbeat_at=now, load=self.load())
            self.row = await self.store.register_node(fresh, gone_after=GONE_AFTER_S)
        row = await self.store.get_node(self.row.name)
        if row is not None and row.draining != self.draining:
            self.draining = row.draining
            log.info("node %s %s", row.name, "draining" if row.draining else "taken back")

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beating
        with contextlib.suppress(StoreError):
            await self.store.forget_node(self.row.name, self.row.instance)
