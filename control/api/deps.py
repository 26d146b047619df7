"""Who is calling and over what: the FastAPI dependencies every route shares.

The app keeps its control plane, its trusted proxies and its metrics registry in `app.state`
(control/api/app.py); these read them from the request, so that the routes can live in
modules of their own.

Credentials: `Authorization: Bearer TOKEN`, the operator token (every meeting) or a host key
(its meeting). A correct token is checked first and never refused; a wrong one counts against
its client alone, which gets 429 once it has sent too many (control/meetings.py). The checks
are async, so that the counts are kept on the event loop's thread, never from FastAPI's
thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Query, Request, Response

from control import auth
from control.answers import Actor
from control.errors import Draining, Forbidden, NotFound, Unauthorized
from control.plane import ControlPlane
from control.proxies import TrustedProxies
from control.registration import RegistrationService

MAX_OFFSET = 1 << 31  # paging further than this is a mistake, not a page
PAGE_MAX = 1000  # rows of a list a call answers at most


def the_plane(request: Request) -> ControlPlane:
    return cast(ControlPlane, request.app.state.plane)


Plane = Annotated[ControlPlane, Depends(the_plane)]


def client_address(request: Request) -> str:
    """Who sent the request, for the throttles and the access log: the TCP peer, or the client
    a trusted proxy's X-Forwarded-For names (control/proxies.py). The one place that decides."""
    if request.client is None:
        return "unknown"
    proxies = cast(TrustedProxies, request.app.state.proxies)
    return proxies.client(request.client.host, request.headers.getlist("x-forwarded-for"))


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be: Bearer <token>")
    return token.strip()


Token = Annotated[str | None, Depends(bearer)]


def is_operator(plane: ControlPlane, token: str) -> bool:
    return auth.secret_matches(token, plane.token_digest)


def operator_calling(plane: ControlPlane, request: Request) -> bool:
    """Whether a join comes with the operator token (a service joining its users): joining
    needs no token, so anything else in Authorization is simply not the operator."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and is_operator(plane, token.strip())


async def operator(plane: Plane, token: Token, request: Request) -> None:
    if token is None:
        raise Unauthorized("missing token: send Authorization: Bearer <token>")
    if not is_operator(plane, token):
        refusal = Unauthorized("this call needs the operator token")
        plane.service.admission.refuse_secret(client_address(request), plane.clock(), refusal)


async def host_or_operator(meeting_id: str, plane: Plane, token: Token, request: Request) -> Actor:
    return await plane.service.admission.authorize(
        token,
        meeting_id,
        plane.token_digest,
        client_address=client_address(request),
        now=plane.clock(),
    )


async def operator_only(meeting_id: str, plane: Plane, token: Token, request: Request) -> None:
    if await host_or_operator(meeting_id, plane, token, request) != "operator":
        raise Forbidden("only the operator may do this")


# 'operator' or 'host': who the caller is, for the audit log (FastAPI runs a dependency once
# per request, so naming it in `dependencies` too costs nothing).
Who = Annotated[Actor, Depends(host_or_operator)]


def taking_joins(plane: ControlPlane, *, here_only: bool = False) -> None:
    """Draining (control/nodes.py): a join that would be homed here (`here_only`: a WebRTC
    peer; anyone, on a node alone on its store) is refused with 503, before anything. On a
    node sharing its store with others, placement homes it elsewhere (control/placement.py)."""
    if plane.draining and (here_only or not plane.places_elsewhere):
        raise Draining("this node is draining: it takes no new participants; join another node")


def registrations(plane: ControlPlane) -> RegistrationService:
    if plane.registrations is None:
        raise NotFound("this server takes no registrations")
    return plane.registrations


@dataclass(frozen=True)
class Paging:
    """A page of a long list: `limit` rows from `offset`. `link` gives a full page a `Link`
    to the next one (RFC 8288, rel="next"); a shorter page is the last."""

    limit: int
    offset: int
    request: Request
    response: Response

    def link(self, count: int) -> None:
        if count == self.limit:
            following = self.request.url.include_query_params(
                limit=self.limit, offset=self.offset + self.limit
            )
            self.response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'


def paging(
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = PAGE_MAX,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Paging:
    return Paging(limit, offset, request, response)


# The `limit` (at most 1,000) and `offset` query parameters of a list answered page by page.
Page = Annotated[Paging, Depends(paging)]
