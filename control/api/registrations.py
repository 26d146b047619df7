"""Routes: registration, its form, the registrants, erasure (the rules:
control/registration.py). Reading the form, registering, confirming and asking for a new code
are public; everything else is for the host and the operator."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from control.api.deps import (
    MAX_OFFSET,
    PAGE_MAX,
    Plane,
    Who,
    client_address,
    host_or_operator,
    link_next_page,
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


# -- registration (control/registration.py) --


@router.put("/v1/meetings/{meeting_id}/registration", dependencies=[Depends(host_or_operator)])
async def configure_registration(
    meeting_id: str, body: RegistrationSettingsIn, plane: Plane, who: Who
) -> dict[str, Any]:
    """Turn registration on or off and set its approval, capacity, optional fields and
    questions (all of them: what is not given takes its default)."""
    settings = await registrations(plane).configure(meeting_id, body.model_dump())
    detail = {
        "enabled": settings.enabled,
        "approval": settings.approval,
        "capacity": settings.capacity,
        "questions": len(settings.questions),
        "optional_fields": list(settings.optional_fields),
        "email_domains": len(settings.email_domains),
    }
    await plane.audit.append(
        who, "registration.settings", meeting_id, None, detail, now=plane.clock()
    )
    return settings.to_json()


@router.get("/v1/meetings/{meeting_id}/registration")
async def registration_form(meeting_id: str, plane: Plane) -> dict[str, Any]:
    """The registration form (public): its fields and questions, and whether it is full."""
    return await registrations(plane).form(meeting_id)


@router.post("/v1/meetings/{meeting_id}/registrations", status_code=201)
async def register(
    meeting_id: str, body: RegistrationIn, plane: Plane, request: Request
) -> dict[str, Any]:
    """Register (public; throttled per address and per meeting). Manual approval: pending,
    the host decides. Automatic or rules approval: unconfirmed, and a code goes to the
    email; `POST .../registrations/{id}/confirm` with it gives the join token."""
    return await registrations(plane).register(
        meeting_id,
        body.model_dump(exclude_unset=True),
        now=plane.clock(),
        client_address=client_address(request),
    )


@router.post("/v1/meetings/{meeting_id}/registrations/{registration_id}/confirm")
async def confirm_registration(
    meeting_id: str, registration_id: str, body: ConfirmIn, plane: Plane
) -> dict[str, Any]:
    """Confirm the email with the code it received (public): the registration gets its
    status, and an approved one its join token, shown once in this answer."""
    return await registrations(plane).confirm(
        meeting_id, registration_id, body.code, now=plane.clock()
    )


@router.post("/v1/meetings/{meeting_id}/registrations/{registration_id}/resend")
async def resend_code(
    meeting_id: str, registration_id: str, plane: Plane, request: Request
) -> dict[str, Any]:
    """Mail a new confirmation code (public; throttled): the old code stops working."""
    return await registrations(plane).resend(
        meeting_id, registration_id, now=plane.clock(), client_address=client_address(request)
    )


@router.get(
    "/v1/meetings/{meeting_id}/registrations",
    dependencies=[Depends(host_or_operator)],
    response_model=None,
)
async def list_registrations(
    meeting_id: str,
    plane: Plane,
    who: Who,
    request: Request,
    response: Response,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = PAGE_MAX,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Any:
    """The registrants with their fields (JSON, or CSV to export); erased ones without.
    JSON comes a page at a time (`limit`, at most 1,000, and `offset`; a full page
    carries a `Link` to the next, RFC 8288); CSV is the whole export."""
    service = registrations(plane)
    if format == "csv":
        text, count = await service.export_csv(meeting_id)
        detail = {"format": "csv", "count": count}
        await plane.audit.append(
            who, "registration.export", meeting_id, None, detail, now=plane.clock()
        )
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": 'attachment; filename="registrations.csv"',
                "Cache-Control": "no-store",
            },
        )
    views = await service.registrants(meeting_id, limit=limit, offset=offset)
    link_next_page(request, response, len(views), limit, offset)
    detail = {"format": "json", "count": len(views)}
    await plane.audit.append(who, "registration.read", meeting_id, None, detail, now=plane.clock())
    return views


@router.get(
    "/v1/meetings/{meeting_id}/registrations/{registration_id}",
    dependencies=[Depends(host_or_operator)],
)
async def get_registration(
    meeting_id: str, registration_id: str, plane: Plane, who: Who
) -> dict[str, Any]:
    view = await registrations(plane).get(meeting_id, registration_id)
    await plane.audit.append(
        who, "registration.read", meeting_id, view["id"], None, now=plane.clock()
    )
    return view


@router.patch(
    "/v1/meetings/{meeting_id}/registrations/{registration_id}",
    dependencies=[Depends(host_or_operator)],
)
async def patch_registration(
    meeting_id: str, registration_id: str, body: RegistrationPatch, plane: Plane, who: Who
) -> dict[str, Any]:
    """Approve, reject or hold; correct fields; issue a new join token. An approval (or a
    new token) answers the join token, shown once: the host passes it on."""
    answer, changed, status = await registrations(plane).update(
        meeting_id,
        registration_id,
        now=plane.clock(),
        status=body.status,
        fields=None if body.fields is None else body.fields.model_dump(exclude_unset=True),
        new_token=body.new_token,
    )
    actions = {"approved": "approve", "rejected": "reject", "pending": "hold"}
    entries: list[tuple[str, dict[str, object] | None]] = []
    if status is not None:
        entries.append((f"registration.{actions[status]}", None))
    if changed:
        entries.append(("registration.edit", {"fields": changed}))
    if body.new_token and status is None:
        entries.append(("registration.new_token", None))
    for action, detail in entries:
        await plane.audit.append(who, action, meeting_id, answer["id"], detail, now=plane.clock())
    return answer


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
    row = await registrations(plane).erase(meeting_id, registration_id, now=plane.clock())
    await plane.audit.append(
        who, "registration.erase", row.meeting_id, row.id, {"by": "id"}, now=plane.clock()
    )
    return Response(status_code=204)


@router.post("/v1/registrations/erase", dependencies=[Depends(operator)])
async def erase_person(body: EraseIn, plane: Plane) -> dict[str, Any]:
    """Erase a person (by email) from every meeting's registrations (operator only)."""
    rows = await registrations(plane).erase_by_email(body.email, now=plane.clock())
    for row in rows:
        await plane.audit.append(
            "operator",
            "registration.erase",
            row.meeting_id,
            row.id,
            {"by": "email"},
            now=plane.clock(),
        )
    return {
        "erased": len(rows),
        "registrations": [{"id": r.id, "meeting_id": r.meeting_id} for r in rows],
    }
