"""Routes: meetings, their controls and their end (the rules: control/meetings.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from control.api.deps import MAX_OFFSET, Plane, Who, host_or_operator, operator, operator_only
from control.api.requests import Controls, MeetingCreate, MeetingPatch
from control.api.shapes import meeting_json, usage_json
from control.plane import ControlPlane
from control.store import UsageRecord

router = APIRouter()


# -- meetings --


@router.post("/v1/meetings", status_code=201, dependencies=[Depends(operator)])
async def create_meeting(body: MeetingCreate, plane: Plane) -> dict[str, Any]:
    created = await plane.service.create_meeting(
        body.title,
        body.mode,
        body.password,
        body.panelist_password,
        body.suite,
        now=plane.clock(),
    )
    m = created.meeting
    await plane.audit.append(
        "operator", "meeting.create", m.id, None, {"mode": m.mode}, now=plane.clock()
    )
    answer = meeting_json(created.meeting)
    answer["host_key"] = created.host_key
    if created.password is not None:
        answer["password"] = created.password
    return answer


@router.get("/v1/meetings", dependencies=[Depends(operator)])
async def list_meetings(
    plane: Plane,
    state: Literal["open", "ended"] | None = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[dict[str, Any]]:
    rows = await plane.service.list_meetings(limit=limit, offset=offset, state=state)
    return [meeting_json(m) for m in rows]


@router.get("/v1/meetings/{meeting_id}", dependencies=[Depends(host_or_operator)])
async def get_meeting(meeting_id: str, plane: Plane) -> dict[str, Any]:
    meeting = await plane.service.get_meeting(meeting_id)
    answer = meeting_json(meeting)
    answer["join_throttle"] = plane.service.join_throttle(meeting.id, plane.clock())
    return answer


@router.patch("/v1/meetings/{meeting_id}", dependencies=[Depends(host_or_operator)])
async def patch_meeting(
    meeting_id: str, body: MeetingPatch, plane: Plane, who: Who
) -> dict[str, Any]:
    row = await plane.service.update_meeting(meeting_id, title=body.title)
    await plane.audit.append(
        who, "meeting.update", row.id, None, {"fields": ["title"]}, now=plane.clock()
    )
    return meeting_json(row)


@router.delete("/v1/meetings/{meeting_id}", status_code=204, dependencies=[Depends(operator_only)])
async def delete_meeting(meeting_id: str, plane: Plane) -> Response:
    meeting = await plane.service.get_meeting(meeting_id)
    if meeting.state == "open":
        await end_with_totals(plane, meeting_id)  # with the workers' totals in its usage record
    await plane.service.delete_meeting(meeting_id, now=plane.clock())
    if plane.recordings is not None:  # its recordings go with it
        await asyncio.to_thread(plane.recordings.delete_meeting, meeting.wire_id)
    await plane.audit.append("operator", "meeting.delete", meeting.id, now=plane.clock())
    return Response(status_code=204)


@router.put("/v1/meetings/{meeting_id}/controls", dependencies=[Depends(host_or_operator)])
async def set_controls(meeting_id: str, body: Controls, plane: Plane, who: Who) -> dict[str, bool]:
    before = await plane.service.get_meeting(meeting_id)
    controls = await plane.service.set_controls(
        meeting_id, locked=body.locked, recording=body.recording
    )
    switches = (
        (before.locked, controls["locked"], "meeting.lock", "meeting.unlock"),
        (
            before.recording,
            controls["recording"],
            "meeting.recording_on",
            "meeting.recording_off",
        ),
    )
    for was, now_on, on, off in switches:
        if was != now_on:
            await plane.audit.append(
                who, on if now_on else off, before.id, None, None, now=plane.clock()
            )
    return controls


@router.post("/v1/meetings/{meeting_id}/end", dependencies=[Depends(host_or_operator)])
async def end_meeting(meeting_id: str, plane: Plane, who: Who) -> dict[str, Any]:
    record = await end_with_totals(plane, meeting_id)
    await plane.audit.append(who, "meeting.end", meeting_id, now=plane.clock())
    return {"id": meeting_id, "state": "ended", "usage": usage_json(record)}


async def end_with_totals(plane: ControlPlane, meeting_id: str) -> UsageRecord:
    """End a meeting with the packet and byte totals the workers last reported for it."""
    participants = await plane.service.store.list_participants(meeting_id)
    totals = plane.meeting_totals([p.wire_id for p in participants])
    return await plane.service.end_meeting(meeting_id, now=plane.clock(), totals=totals)
