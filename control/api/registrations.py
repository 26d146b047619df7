"""Routes: registration, its form, the registrants, erasure (the rules:
control/registration.py). Reading the form, registering, confirming and asking for a new code
are public; everything else is for the host and the operator.

Each route only translates: the request model checks the body and builds what the service
takes (control/api/requests.py), the service acts, appends to the audit log and answers in
the API's vocabulary (control/answers.py), which the route declares as its response model."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response

from control.answers import (
    Erased,
    Registered,
    Registration,
    RegistrationForm,
    RegistrationSettings,
)
from control.api.deps import (
    Page,
    Plane,
    Who,
    client_address,
    host_or_operator,
    operator,
    registrations,
)
from control.api.requests import (
    ConfirmIn,
    EraseIn,
    RegistrationIn,
    RegistrationPatch,
    RegistrationSettingsIn,
)

router = APIRouter()


@router.put("/v1/meetings/{meeting_id}/registration", dependencies=[Depends(host_or_operator)])
async def configure_registration(
    meeting_id: str, body: RegistrationSettingsIn, plane: Plane, who: Who
) -> RegistrationSettings:
    """Turn registration on or off and set its approval, capacity, optional fields and
    questions (all of them: what is not given takes its default)."""
    return await registrations(plane).configure(
        meeting_id, body.settings(), by=who, now=plane.clock()
    )


@router.get("/v1/meetings/{meeting_id}/registration")
async def registration_form(meeting_id: str, plane: Plane) -> RegistrationForm:
    """The registration form (public): its fields and questions, and whether it is full."""
    return await registrations(plane).form(meeting_id)


@router.post("/v1/meetings/{meeting_id}/registrations", status_code=201)
async def register(
    meeting_id: str, body: RegistrationIn, plane: Plane, request: Request
) -> Registered:
    """Register (public; throttled per address and per meeting). Manual approval: pending,
    the host decides. Automatic or rules approval: unconfirmed, and a code goes to the
    email; `POST .../registrations/{id}/confirm` with it gives the join token."""
    return await registrations(plane).register(
        meeting_id, body.sign_up(), now=plane.clock(), client_address=client_address(request)
    )


@router.post("/v1/meetings/{meeting_id}/registrations/{registration_id}/confirm")
async def confirm_registration(
    meeting_id: str, registration_id: str, body: ConfirmIn, plane: Plane
) -> Registered:
    """Confirm the email with the code it received (public): the registration gets its
    status, and an approved one its join token, shown once in this answer."""
    return await registrations(plane).confirm(
        meeting_id, registration_id, body.code, now=plane.clock()
    )


@router.post("/v1/meetings/{meeting_id}/registrations/{registration_id}/resend")
async def resend_code(
    meeting_id: str, registration_id: str, plane: Plane, request: Request
) -> Registered:
    """Mail a new confirmation code (public; throttled): the old code stops working."""
    return await registrations(plane).resend(
        meeting_id, registration_id, now=plane.clock(), client_address=client_address(request)
    )


@router.get(
    "/v1/meetings/{meeting_id}/registrations",
    dependencies=[Depends(host_or_operator)],
    response_model=None,
    responses={
        200: {
            "model": list[Registration],
            "description": "A page of the registrants (JSON), or all of them (CSV)",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def list_registrations(
    meeting_id: str,
    plane: Plane,
    who: Who,
    page: Page,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """The registrants with their fields (JSON, or CSV to export); erased ones without.
    JSON comes a page at a time (`limit`, at most 1,000, and `offset`; a full page
    carries a `Link` to the next, RFC 8288); CSV is the whole export."""
    service = registrations(plane)
    if format == "csv":
        text = await service.export_csv(meeting_id, by=who, now=plane.clock())
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="registrations.csv"',
                "Cache-Control": "no-store",
            },
        )
    views = await service.registrants(
        meeting_id, by=who, now=plane.clock(), limit=page.limit, offset=page.offset
    )
    page.link(len(views))
    return views


@router.get(
    "/v1/meetings/{meeting_id}/registrations/{registration_id}",
    dependencies=[Depends(host_or_operator)],
)
async def get_registration(
    meeting_id: str, registration_id: str, plane: Plane, who: Who
) -> Registration:
    return await registrations(plane).get(meeting_id, registration_id, by=who, now=plane.clock())


@router.patch(
    "/v1/meetings/{meeting_id}/registrations/{registration_id}",
    dependencies=[Depends(host_or_operator)],
)
async def patch_registration(
    meeting_id: str, registration_id: str, body: RegistrationPatch, plane: Plane, who: Who
) -> Registration:
    """Approve, reject or hold; correct fields; issue a new join token. An approval (or a
    new token) answers the join token, shown once: the host passes it on."""
    return await registrations(plane).update(
        meeting_id,
        registration_id,
        by=who,
        now=plane.clock(),
        status=body.status,
        corrections=body.corrections(),
        new_token=bool(body.new_token),
    )


@router.delete(
    "/v1/meetings/{meeting_id}/registrations/{registration_id}",
    status_code=204,
    dependencies=[Depends(host_or_operator)],
)
async def erase_registration(
    meeting_id: str, registration_id: str, plane: Plane, who: Who
) -> Response:
    """Erase a registrant: the data key and everything sealed under it, the email tag,
    the join token, and the name they joined with. The row stays, marked erased."""
    await registrations(plane).erase(meeting_id, registration_id, by=who, now=plane.clock())
    return Response(status_code=204)


@router.post("/v1/registrations/erase", dependencies=[Depends(operator)])
async def erase_person(body: EraseIn, plane: Plane) -> Erased:
    """Erase a person (by email) from every meeting's registrations (operator only)."""
    return await registrations(plane).erase_by_email(body.email, by="operator", now=plane.clock())
