"""Routes: recordings, the usage report, the audit log, metrics and health."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from control.answers import AuditEntry, Health, Recording
from control.api.deps import MAX_OFFSET, Plane, Who, host_or_operator, operator
from control.api.shapes import usage_csv, usage_json
from control.errors import NotFound
from control.metrics import RelayCollector

router = APIRouter()


# -- recordings --


@router.get("/v1/meetings/{meeting_id}/recordings", dependencies=[Depends(host_or_operator)])
async def list_recordings(meeting_id: str, plane: Plane) -> list[Recording]:
    meeting = await plane.service.get_meeting(meeting_id)
    if plane.recordings is None:
        return []
    return await asyncio.to_thread(plane.recordings.of_meeting, meeting.wire_id)


@router.get(
    "/v1/meetings/{meeting_id}/recordings/{name}",
    dependencies=[Depends(host_or_operator)],
    response_class=Response,
)
async def get_recording(meeting_id: str, name: str, plane: Plane, who: Who) -> Response:
    """The recording as a pcap file (decrypted here, in memory): Wireshark plays it. Each
    download is in the audit log (the file's name and size)."""
    meeting = await plane.service.get_meeting(meeting_id)
    if plane.recordings is None:
        raise NotFound("this server keeps no recordings")
    pcap = await plane.recordings.download(
        meeting, name, audit=plane.audit, by=who, now=plane.clock()
    )
    stem = name.removesuffix(".rec")
    return Response(
        pcap,
        media_type="application/vnd.tcpdump.pcap",
        headers={"Content-Disposition": f'attachment; filename="{stem}.pcap"'},
    )


# -- reports, metrics, health --


@router.get("/v1/reports/usage", dependencies=[Depends(operator)], response_model=None)
async def usage(
    plane: Plane,
    format: Literal["json", "csv"] = "json",
    meeting: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> Any:
    records = await plane.service.list_usage(meeting)
    if format == "csv":
        return Response(
            usage_csv(records),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
        )
    return [usage_json(u) for u in records]


# -- the audit log (control/audit.py) --


@router.get("/v1/audit", dependencies=[Depends(operator)])
async def audit(
    plane: Plane,
    meeting: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AuditEntry]:
    """Every host and operator action, oldest first (`meeting`: one meeting's, deleted
    ones too)."""
    return await plane.audit.entries(meeting, limit=limit, offset=offset)


@router.get("/v1/meetings/{meeting_id}/audit", dependencies=[Depends(host_or_operator)])
async def meeting_audit(
    meeting_id: str,
    plane: Plane,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[AuditEntry]:
    """This meeting's audit entries, oldest first (the host key reads its own)."""
    meeting = await plane.service.get_meeting(meeting_id)
    return await plane.audit.entries(meeting.id, limit=limit, offset=offset)


@router.get("/metrics", response_class=Response)
async def metrics(plane: Plane, request: Request) -> Response:
    """Prometheus's text format (control/metrics.py): totals and gauges, no per-participant
    labels."""
    state = request.app.state
    if state.collector is None:
        state.collector = RelayCollector(plane.stats, plane.counters, plane.gauges)
        state.registry.register(state.collector)
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz")
async def healthz(plane: Plane) -> Health:
    return plane.health()
