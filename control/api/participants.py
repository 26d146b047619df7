"""Routes: joining, and the participants' list and changes (the rules: control/meetings.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from control.answers import JoinAnswer, Participant, ParticipantUpdate
from control.api.deps import (
    Page,
    Plane,
    Who,
    client_address,
    host_or_operator,
    operator_calling,
    taking_joins,
)
from control.api.errors import ErrorOut, ProofOfWorkOut
from control.api.requests import JoinIn, ParticipantPatch
from control.errors import ApiError
from control.proof_of_work import Proof

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
async def join(meeting_id: str, body: JoinIn, plane: Plane, request: Request) -> JoinAnswer:
    """Join with the host key, a registration's join token, or a password. A host key or
    token is checked first and a correct one always admits. A password join is refused
    with 429 while this client (IPv6: its /64) has too many wrong passwords for the
    meeting, and, while the meeting sees many wrong passwords from anyone, with 428
    `proof_of_work_required` unless it carries `proof_of_work`: find `solutions` nonces
    n_1 < ... < n_k below 2**53 such that SHA-256(challenge || n as 8 bytes big-endian)
    begins with `difficulty` zero bits; each challenge admits one attempt and expires
    after `expires_in` seconds."""
    proof = body.proof_of_work
    try:
        taking_joins(plane)
        answer = await plane.service.join(
            meeting_id,
            name=body.name,
            password=body.password,
            client_address=client_address(request),
            now=plane.clock(),
            role=body.role,
            host_key=body.host_key,
            streams=body.declared(),
            receive_at=body.receive_at,
            uplink=body.uplink,
            registration_token=body.registration_token,
            proof_of_work=None if proof is None else Proof(proof.challenge, tuple(proof.nonces)),
            operator=operator_calling(plane, request),
            avoid_nodes=frozenset(body.avoid_nodes or ()),
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
    page: Page,
) -> list[Participant]:
    """The participants in the order they joined, a page at a time (`limit`, at most
    1,000, and `offset`); a full page carries a `Link` to the next one (RFC 8288)."""
    people = await plane.service.participants.list(
        meeting_id, media=plane.media_of, limit=page.limit, offset=page.offset
    )
    page.link(len(people))
    return people


@router.patch(
    "/v1/meetings/{meeting_id}/participants/{participant_id}",
    dependencies=[Depends(host_or_operator)],
)
async def patch_participant(
    meeting_id: str, participant_id: str, body: ParticipantPatch, plane: Plane, who: Who
) -> ParticipantUpdate:
    """Mute or unmute, change the role (a promotion that lets an attendee send answers its
    new keys, as a join does), or expel."""
    return await plane.service.participants.update(
        meeting_id,
        participant_id,
        now=plane.clock(),
        by=who,
        muted=body.muted,
        role=body.role,
        expel=body.expel,
    )
