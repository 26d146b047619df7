"""Routes: the nodes sharing the database (control/nodes.py), for the operator.

GET    /v1/nodes               every node that registered: up, draining or gone, its
                               load against its capacity, its API and media addresses
POST   /v1/nodes/{name}/drain  take no new participants there; those present stay
DELETE /v1/nodes/{name}/drain  take new participants there again
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from control.answers import Node
from control.api.deps import Plane, operator
from control.errors import NotFound
from control.nodes import node_json
from control.plane import ControlPlane

router = APIRouter()


@router.get("/v1/nodes", dependencies=[Depends(operator)])
async def list_nodes(plane: Plane) -> list[Node]:
    """Every node that registered on this database, by name."""
    now = plane.clock()
    return [node_json(row, now) for row in await plane.store.list_nodes()]


async def _drain(plane: ControlPlane, name: str, draining: bool) -> Node:
    if len(name) > 63 or not await plane.store.set_node_draining(name, draining):
        raise NotFound("no such node")
    if plane.nodes is not None and plane.nodes.row.name == name:
        plane.nodes.draining = draining  # this node's own: at once, not at its next beat
    await plane.audit.append(
        "operator", "node.drain" if draining else "node.undrain", None, name, now=plane.clock()
    )
    row = await plane.store.get_node(name)
    if row is None:
        raise NotFound("no such node")
    return node_json(row, plane.clock())


@router.post("/v1/nodes/{name}/drain", dependencies=[Depends(operator)])
async def drain(name: str, plane: Plane) -> Node:
    """Place no new participants on this node: its joins are answered 503 while those
    present stay until their meetings end (`relay drain NAME`)."""
    return await _drain(plane, name, True)


@router.delete("/v1/nodes/{name}/drain", dependencies=[Depends(operator)])
async def undrain(name: str, plane: Plane) -> Node:
    """Take new participants on this node again (`relay drain --undo NAME`)."""
    return await _drain(plane, name, False)
