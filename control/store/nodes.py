"""The nodes sharing the database (version 6): their statements, rows and the store's
operations on them, written once over the executor (control/nodes.py says what they mean).

Registering is one transaction: a row under the name that a live process of another instance
still heartbeats is refused (NodeNameTaken), anything else (a new name, the node's own earlier
row, a row silent past the given age) is written afresh. No upsert: the executor's SQL has
none that both dialects share (control/store/executor.py), so an UPDATE that finds no row is
followed by an INSERT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from control.store.core import StoreCore
from control.store.errors import StoreError
from control.store.executor import Database, Row, lock_counter
from control.store.rows import NodeRow

__all__ = ["NodeNameTaken", "NodeOperations"]

NODE_COLUMNS = (
    "name, instance, api_url, media_host, media_port, workers, capacity, load, started_at, "
    "heartbeat_at, draining"
)
SELECT_NODE = f"SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?"
SELECT_NODES = f"SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"
UPDATE_NODE = (
    "UPDATE nodes SET instance = ?, api_url = ?, media_host = ?, media_port = ?, workers = ?, "
    "capacity = ?, load = ?, started_at = ?, heartbeat_at = ?, draining = ? WHERE name = ?"
)
INSERT_NODE = f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
HEARTBEAT = "UPDATE nodes SET load = ?, heartbeat_at = ? WHERE name = ? AND instance = ?"
SET_DRAINING = "UPDATE nodes SET draining = ? WHERE name = ?"
FORGET_NODE = "DELETE FROM nodes WHERE name = ? AND instance = ?"
CLAIM_PLACE = "UPDATE nodes SET load = load + 1 WHERE name = ?"

Choose = Callable[[list[NodeRow]], "str | None"]
"""Picks a node among every registered one (control/placement.py), or None."""


class NodeNameTaken(StoreError):
    """Another live process heartbeats under this node name."""


def node_row(r: Row) -> NodeRow:
    return NodeRow(
        name=r[0],
        instance=r[1],
        api_url=r[2],
        media_host=r[3],
        media_port=int(r[4]),
        workers=int(r[5]),
        capacity=int(r[6]),
        load=int(r[7]),
        started_at=float(r[8]),
        heartbeat_at=float(r[9]),
        draining=bool(r[10]),
    )


def _params(n: NodeRow) -> tuple[Any, ...]:
    return (
        n.instance,
        n.api_url,
        n.media_host,
        n.media_port,
        n.workers,
        n.capacity,
        n.load,
        n.started_at,
        n.heartbeat_at,
        int(n.draining),
    )


async def register(db: Database, node: NodeRow, gone_after: float) -> NodeRow:
    async with db.transaction() as tx:
        found = await tx.fetch_one(SELECT_NODE, (node.name,))
        if found is None:
            await tx.execute(INSERT_NODE, (node.name, *_params(node)))
            return node
        old = node_row(found)
        if old.instance != node.instance and node.heartbeat_at - old.heartbeat_at < gone_after:
            raise NodeNameTaken(
                f"node {node.name!r} is running elsewhere (its last heartbeat "
                f"{node.heartbeat_at - old.heartbeat_at:.1f} s ago): give this one another "
                "--node-name"
            )
        # A node started again keeps being drained if it was: the operator undoes that.
        kept = dataclasses.replace(node, draining=old.draining)
        await tx.execute(UPDATE_NODE, (*_params(kept), node.name))
        return kept


async def place(db: Database, choose: Choose) -> str | None:
    """One transaction under the placement lock: read the nodes, let `choose` pick one, and
    count the newcomer in its load at once, so that joins placed on other nodes meanwhile see
    it before that node's next heartbeat writes its own count."""
    async with db.transaction() as tx:
        await lock_counter(tx, "placement")
        name = choose([node_row(r) for r in await tx.fetch_all(SELECT_NODES)])
        if name is not None:
            await tx.execute(CLAIM_PLACE, (name,))
        return name


class NodeOperations(StoreCore):
    """The store's operations on the nodes sharing its database."""

    async def register_node(self, node: NodeRow, *, gone_after: float) -> NodeRow:
        """Write this node's row (as stored: a drained node stays drained), or NodeNameTaken
        when another instance heartbeat under its name less than `gone_after` s before
        `node.heartbeat_at`."""
        return await self._run(register, node, gone_after)

    async def heartbeat_node(self, name: str, instance: str, *, load: int, at: float) -> bool:
        """The node's load and heartbeat; False if its row is gone or another instance's."""
        return bool(await self._run(_execute, HEARTBEAT, (load, at, name, instance)))

    async def get_node(self, name: str) -> NodeRow | None:
        return await self._one(SELECT_NODE, (name,), node_row)

    async def list_nodes(self) -> list[NodeRow]:
        """Every node that registered, by name (gone ones too: their heartbeat says so)."""
        return await self._all(SELECT_NODES, (), node_row)

    async def set_node_draining(self, name: str, draining: bool) -> bool:
        """Drain a node or take it back; False if there is no such node."""
        return bool(await self._run(_execute, SET_DRAINING, (int(draining), name)))

    async def place_on_node(self, choose: Choose) -> str | None:
        """The node `choose` picks among every registered one (None: none), its load counted
        one more; picks on all nodes are serialised (an advisory lock on PostgreSQL)."""
        return await self._run(place, choose)

    async def forget_node(self, name: str, instance: str) -> bool:
        """Remove the node's row (a node that stops), if it is still this instance's."""
        return bool(await self._run(_execute, FORGET_NODE, (name, instance)))


async def _execute(db: Database, query: str, params: tuple[Any, ...]) -> int:
    async with db.transaction() as tx:
        return await tx.execute(query, params)
