"""Routes: meetings, their controls and their end (the rules: control/meetings.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Query, Response

from control.answers import (
    Controls,
    CreatedMeeting,
    EndedMeeting,
    JoinThrottle,
    Meeting,
    MeetingDetail,
)
from control.api.deps import MAX_OFFSET, Plane, Who, host_or_operator, operator, operator_only
from control.api.requests import ControlsIn, MeetingCreate, MeetingPatch
from control.api.shapes import meeting_json, usage_json
from relay.vocabulary import DEFAULT_SUITE

router = APIRouter()


@router.post("/v1/meetings", status_code=201, dependencies=[Depends(operator)])
async def create_meeting(body: MeetingCreate, plane: Plane) -> CreatedMeeting:
    """Create a meeting. The host key, and the password when none was given (a strong one
    is generated), are in this answer only."""
    created = await plane.service.create_meeting(
        body.title,
        body.mode,
        body.password,
        body.panelist_password,
        body.suite or DEFAULT_SUITE,
        now=plane.clock(),
    )
    answer = cast(CreatedMeeting, meeting_json(created.meeting))
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
) -> list[Meeting]:
    rows = await plane.service.list_meetings(limit=limit, offset=offset, state=state)
    return [meeting_json(m) for m in rows]


@router.get("/v1/meetings/{meeting_id}", dependencies=[Depends(host_or_operator)])
async def get_meeting(meeting_id: str, plane: Plane) -> MeetingDetail:
    meeting = await plane.service.get_meeting(meeting_id)
    throttle = plane.service.admission.join_throttle(meeting.id, plane.clock())
    answer = cast(MeetingDetail, meeting_json(meeting))
    answer["join_throttle"] = cast(JoinThrottle, throttle)
    return answer


@router.patch("/v1/meetings/{meeting_id}", dependencies=[Depends(host_or_operator)])
async def patch_meeting(meeting_id: str, body: MeetingPatch, plane: Plane, who: Who) -> Meeting:
    row = await plane.service.update_meeting(
        meeting_id, title=body.title, now=plane.clock(), by=who
    )
    return meeting_json(row)


@router.delete("/v1/meetings/{meeting_id}", status_code=204, dependencies=[Depends(operator_only)])
async def delete_meeting(meeting_id: str, plane: Plane) -> Response:
    """Delete a meeting, ending it first if it is open; its recordings go with it, its usage
    record stays."""
    meeting = await plane.service.delete_meeting(
        meeting_id, now=plane.clock(), totals=plane.meeting_totals
    )
    if plane.recordings is not None:
        await asyncio.to_thread(plane.recordings.delete_meeting, meeting.wire_id)
    return Response(status_code=204)


@router.put("/v1/meetings/{meeting_id}/controls", dependencies=[Depends(host_or_operator)])
async def set_controls(meeting_id: str, body: ControlsIn, plane: Plane, who: Who) -> Controls:
    return await plane.service.set_controls(
        meeting_id, locked=body.locked, recording=body.recording, now=plane.clock(), by=who
    )


@router.post("/v1/meetings/{meeting_id}/end", dependencies=[Depends(host_or_operator)])
async def end_meeting(meeting_id: str, plane: Plane, who: Who) -> EndedMeeting:
    """End the meeting now; its usage record, with the packets and bytes the workers last
    reported."""
    record = await plane.service.end_meeting(
        meeting_id, now=plane.clock(), by=who, totals=plane.meeting_totals
    )
    return {"id": meeting_id, "state": "ended", "usage": usage_json(record)}
