"""Routes: WHIP (RFC 9725) and WHEP, WebRTC peers publishing and playing (the rules:
control/webrtc.py; the media: relay/webrtc.py).

    POST   /v1/meetings/{id}/whip   an offer (application/sdp) -> 201, the answer, Location
    POST   /v1/meetings/{id}/whep   the same, for a viewer
    PATCH  {Location}               trickled candidates (RFC 8840 sdpfrag): 204
    DELETE {Location}               leave: 204
    GET    {Location}/events        the session's state as server-sent events
                                    (control/api/live.py; the answer's Link header names it)

The credential is `Authorization: Bearer CREDENTIAL` (a host key, the panelist or meeting
password, a registration's join token); `?name=` is the display name. While the meeting is
under attack a password join is answered 428 with a challenge, as a JSON join is (README.md,
"Proof of work"): the same POST again with `Relay-Proof-Of-Work: CHALLENGE N1,N2,...` (the
challenge as given, a space, the nonces in increasing order) carries the proof. Refusals are
the API's JSON errors: 401 without a credential, 403 a wrong one, 409 an ended meeting, 415 a
body that is not SDP, 422 an offer the relay cannot answer, saying why, 423 a locked meeting,
428 a proof of work needed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import ValidationError

from control import puzzle
from control.api.deps import Plane, bearer, client_address, taking_joins
from control.api.errors import ErrorOut
from control.api.requests import Named, ProofOfWorkIn
from control.errors import (
    ApiError,
    Invalid,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from control.lookup import find_open_meeting
from control.meetings import NAME_MAX
from control.proof_of_work import Proof
from control.webrtc import OfferError, WebRtcJoin, join_arguments, parse_offer

router = APIRouter()

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"  # RFC 8840 section 9
EVENTS_REL = "urn:ietf:params:whep:ext:core:server-sent-events"

_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no credential: send Authorization: Bearer ..."},
    403: {"model": ErrorOut, "description": "a wrong host key, password or token"},
    409: {"model": ErrorOut, "description": "the meeting has ended"},
    415: {"model": ErrorOut, "description": "the body is not application/sdp"},
    422: {"model": ErrorOut, "description": "an offer the relay cannot answer, and why"},
    423: {"model": ErrorOut, "description": "the meeting is locked"},
    428: {
        "model": ErrorOut,
        "description": "a password join on a meeting under attack needs a proof of work: the "
        "error object carries the challenge; send the POST again with Relay-Proof-Of-Work",
    },
}
_ANSWERED: dict[int | str, dict[str, Any]] = {
    201: {"content": {SDP: {}}, "description": "the SDP answer; Location: the session"}
}


# The proof of work a WHIP or WHEP POST carries (declared, so that the OpenAPI description
# shows it and schemathesis sends it anything): the challenge, a space, the nonces.
ProofHeader = Annotated[
    str | None,
    Header(
        alias="Relay-Proof-Of-Work",
        max_length=puzzle.MAX_CHALLENGE_CHARS + 1 + 17 * puzzle.MAX_SOLUTIONS,
        description="while the meeting asks for a proof of work (428): the challenge of the "
        "428, a space, and its nonces in increasing order separated by commas",
    ),
]


def _proof(header: str | None) -> Proof | None:
    """The proof of work a WHIP or WHEP POST carries in its header, checked as the JSON join's
    `proof_of_work` is (control/api/requests.py, ProofOfWorkIn); None without one."""
    if header is None:
        return None
    challenge, _, listed = header.strip().partition(" ")
    try:
        proof = ProofOfWorkIn(
            challenge=challenge, nonces=[int(n) for n in listed.split(",") if n.strip()]
        )
    except (ValueError, ValidationError):
        raise Invalid(
            "Relay-Proof-Of-Work must be the challenge, a space, and its nonces separated by "
            f"commas (at most {puzzle.MAX_SOLUTIONS}, each below 2^53)"
        ) from None
    return Proof(proof.challenge, tuple(proof.nonces))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def _text(request: Request, media_type: str, what: str) -> str:
    if _media_type(request) != media_type:
        raise UnsupportedMediaType(f"{what} must be sent as {media_type}")
    try:
        return (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(f"{what} is not UTF-8 text") from None


# The display name: what a join's `name` may be (control/api/requests.py, control/text.py).
Name = Annotated[Named | None, Query(min_length=1, max_length=NAME_MAX)]


async def _join(
    meeting_id: str,
    request: Request,
    plane: Plane,
    name: str | None,
    publishes: bool,
    proof: str | None,
) -> Response:
    if plane.webrtc_fingerprint is None:
        raise Unavailable("this relay serves no WebRTC peers: it has no DTLS certificate")
    credential = bearer(request)
    if credential is None:
        raise Unauthorized(
            "send Authorization: Bearer CREDENTIAL (a host key, password or join token)"
        )
    text = await _text(request, SDP, "the offer")
    shown = name or ("WHIP publisher" if publishes else "WHEP viewer")
    try:
        join = WebRtcJoin(parse_offer(text), publishes, plane.webrtc_fingerprint)
        streams = join.declared(plane.service.describer.relay_host)
    except OfferError as exc:
        raise Invalid(str(exc)) from None
    meeting = await find_open_meeting(plane.store, meeting_id)
    who = join_arguments(meeting, publishes, credential)
    try:
        taking_joins(plane, here_only=True)
        answer = await plane.service.join(
            meeting.id,
            name=shown,
            password=who.password,
            client_address=client_address(request),
            now=plane.clock(),
            role=who.role,
            host_key=who.host_key,
            streams=streams,
            registration_token=who.registration_token,
            webrtc=join,
            proof_of_work=_proof(proof),
        )
    except ApiError as exc:
        plane.counters.join_failed(exc.code)
        raise
    plane.counters.joins += 1
    participant = answer["participant_id"]
    token = plane.webrtc_sessions.token(participant)
    location = f"/v1/meetings/{meeting.id}/webrtc/{participant}/{token}"
    headers = {
        "Location": location,
        # The session's own events (expelled, ended, muted: control/api/live.py), named as
        # WHEP's server-sent events extension names its stream.
        "Link": f'<{location}/events>; rel="{EVENTS_REL}"; events="state"',
        "ETag": _etag(participant),
        # The recording notice a join answer carries, where a WHIP client can see it.
        "Relay-Recording": "on" if answer["recording"] else "off",
    }
    return Response(answer["sdp"], status_code=201, headers=headers, media_type=SDP)


@router.post(
    "/v1/meetings/{meeting_id}/whip",
    status_code=201,
    response_class=Response,
    responses={**_ANSWERED, **_REFUSALS},
)
async def whip(
    meeting_id: str, request: Request, plane: Plane, name: Name = None, proof: ProofHeader = None
) -> Response:
    """Publish from a WebRTC peer (OBS, GStreamer, a browser): its SDP offer in, the relay's
    answer out (ICE-lite, DTLS-SRTP; Opus, VP8 or H.264 as offered)."""
    return await _join(meeting_id, request, plane, name, publishes=True, proof=proof)


@router.post(
    "/v1/meetings/{meeting_id}/whep",
    status_code=201,
    response_class=Response,
    responses={**_ANSWERED, **_REFUSALS},
)
async def whep(
    meeting_id: str, request: Request, plane: Plane, name: Name = None, proof: ProofHeader = None
) -> Response:
    """Play the meeting's streams in a WebRTC peer (a browser): its recvonly offer in, the
    relay's answer out, each stream under the payload type the offer gave its codec."""
    return await _join(meeting_id, request, plane, name, publishes=False, proof=proof)


def _etag(participant_id: str) -> str:
    """The ETag of a session's ICE session (RFC 9725 section 4.3.1): the relay makes one per
    session and never restarts it, so it never changes."""
    return f'"{participant_id}.ice-1"'


def _session(plane: Plane, participant_id: str, token: str) -> None:
    if not plane.webrtc_sessions.matches(participant_id, token):
        raise NotFound("no such WebRTC session")


@router.patch(
    "/v1/meetings/{meeting_id}/webrtc/{participant_id}/{token}",
    status_code=204,
    response_class=Response,
)
async def trickle(
    meeting_id: str, participant_id: str, token: str, request: Request, plane: Plane
) -> Response:
    """Trickled ICE candidates (RFC 9725 section 4.3, RFC 8840): taken and not needed. The
    relay is ICE-lite (RFC 8445 section 2.5): it learns a peer's address from its checks, not
    from its candidates. An ICE restart (new credentials in the fragment) is refused: send
    DELETE and a new offer."""
    _session(plane, participant_id, token)
    await find_open_meeting(plane.store, meeting_id)
    fragment = await _text(request, SDPFRAG, "trickled candidates")
    if_match = request.headers.get("if-match", "*").strip()
    if if_match not in ("*", _etag(participant_id)):
        raise PreconditionFailed("If-Match names another ICE session than this one's ETag")
    if "a=ice-pwd:" in fragment:
        raise Invalid("ICE restarts are not supported: DELETE the session and send a new offer")
    return Response(status_code=204)


@router.delete(
    "/v1/meetings/{meeting_id}/webrtc/{participant_id}/{token}",
    status_code=204,
    response_class=Response,
)
async def leave(meeting_id: str, participant_id: str, token: str, plane: Plane) -> Response:
    """End a WHIP or WHEP session: the participant leaves, its DTLS association closes."""
    _session(plane, participant_id, token)
    await plane.service.participants.leave(meeting_id, participant_id, now=plane.clock())
    return Response(status_code=204)
