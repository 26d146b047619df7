"""Routes: joining, and the participants' list and changes (the rules: control/meetings.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from control.api.deps import (
    MAX_OFFSET,
    PAGE_MAX,
    Plane,
    Who,
    client_address,
    host_or_operator,
    link_next_page,
    operator_calling,
)
from control.api.errors import ErrorOut, ProofOfWorkOut
from control.api.requests import JoinIn, ParticipantPatch
from control.errors import ApiError

router = APIRouter()


# -- joining and participants --


@router.post(
    "/v1/meetings/{meeting_id}/join",
    status_code=201,
    responses={
        403: {"model": ErrorOut, "description": "a wrong password, key or token"},
        428: {
            "model": ProofOfWorkOut,
            "description": "the meeting is under attack: solve the challenge (README.md, "
            '"Proof of work") and send the join again with "proof_of_work"',
        },
        429: {
            "model": ErrorOut,
            "description": "this client sent too many wrong passwords (or keys): wait "
            "Retry-After seconds",
        },
    },
)
async def join(meeting_id: str, body: JoinIn, plane: Plane, request: Request) -> dict[str, Any]:
    """Join with the host key, a registration's join token, or a password. A host key or
    token is checked first and a correct one always admits. A password join is refused
    with 429 while this client (IPv6: its /64) has too many wrong passwords for the
    meeting, and, while the meeting sees many wrong passwords from anyone, with 428
    `proof_of_work_required` unless it carries `proof_of_work`: find `solutions` nonces
    n_1 < ... < n_k below 2**53 such that SHA-256(challenge || n as 8 bytes big-endian)
    begins with `difficulty` zero bits; each challenge admits one attempt and expires
    after `expires_in` seconds."""
    try:
        answer = await plane.service.join(
            meeting_id,
            password=body.password,
            name=body.name,
            client_address=client_address(request),
            now=plane.clock(),
            role=body.role,
            host_key=body.host_key,
            ssrcs=body.ssrcs,
            streams=None if body.streams is None else [s.stream() for s in body.streams],
            receive_at=body.receive_at,
            uplink=body.uplink,
            registration_token=body.registration_token,
            operator=operator_calling(plane, request),
            proof_of_work=None if body.proof_of_work is None else body.proof_of_work.model_dump(),
        )
    except ApiError as exc:
        plane.counters.join_failed(exc.code)
        raise
    plane.counters.joins += 1
    return answer


@router.get("/v1/meetings/{meeting_id}/participants", dependencies=[Depends(host_or_operator)])
async def list_participants(
    meeting_id: str,
    plane: Plane,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = PAGE_MAX,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[dict[str, Any]]:
    """The participants in the order they joined, a page at a time (`limit`, at most
    1,000, and `offset`); a full page carries a `Link` to the next one (RFC 8288)."""
    people = await plane.service.list_participants(meeting_id, limit=limit, offset=offset)
    for person in people:
        person["media"] = plane.media_of(person.pop("wire_id"))
    link_next_page(request, response, len(people), limit, offset)
    return people


@router.patch(
    "/v1/meetings/{meeting_id}/participants/{participant_id}",
    dependencies=[Depends(host_or_operator)],
)
async def patch_participant(
    meeting_id: str, participant_id: str, body: ParticipantPatch, plane: Plane, who: Who
) -> dict[str, Any]:
    before = None
    if body.role is not None or body.muted is not None:
        before = await plane.store.get_participant(participant_id, meeting_id=meeting_id)
    answer = await plane.service.update_participant(
        meeting_id,
        participant_id,
        now=plane.clock(),
        muted=body.muted,
        role=body.role,
        expel=body.expel,
    )
    entries: list[tuple[str, dict[str, object] | None]] = []
    if answer.get("expelled") and body.expel:
        entries.append(("participant.expel", None))
    elif before is not None:
        if answer.get("role") != before.role:
            entries.append(("participant.role", {"from": before.role, "to": answer["role"]}))
        if answer.get("muted") != before.muted:
            entries.append(("participant.mute" if answer["muted"] else "participant.unmute", None))
    for action, detail in entries:
        await plane.audit.append(who, action, meeting_id, answer["id"], detail, now=plane.clock())
    return answer
