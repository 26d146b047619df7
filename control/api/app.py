"""The FastAPI application: its state, middleware, error handlers and routes
(control/api/__init__.py says what the API promises)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from control.api import live, meetings, nodes, participants, registrations, reports, webrtc
from control.api.deps import client_address
from control.api.errors import BodyLimit, error_response, validation_message
from control.errors import ApiError, ProofOfWorkRequired, Throttled, Unauthorized
from control.plane import ControlPlane
from control.proxies import TrustedProxies
from control.store import StoreError
from control.web import pages

log = logging.getLogger("control.api")


def create_app(
    plane: ControlPlane | Callable[[], Awaitable[ControlPlane]],
    trusted_proxies: Iterable[str] = (),
) -> FastAPI:
    """The API over a running control plane, or over one that `plane()` starts (and the app
    closes) in its lifespan. `trusted_proxies`: the networks (CIDR) whose X-Forwarded-For is
    believed; by default none, and the TCP peer is the client."""
    lifespan = None
    if not isinstance(plane, ControlPlane):
        starter = plane

        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> Any:
            app.state.plane = await starter()
            try:
                yield
            finally:
                await app.state.plane.close()

    from control import api  # its docstring is the API's description

    app = FastAPI(
        title="relay",
        version="1",
        summary="Meetings, webinars and their SRTP media relay",
        description=api.__doc__,
        lifespan=lifespan,
        redirect_slashes=False,  # /v1/meetings/ is a 404 JSON error, not a redirect
    )
    app.state.plane = plane if isinstance(plane, ControlPlane) else None
    app.state.proxies = TrustedProxies(trusted_proxies)
    app.state.registry = CollectorRegistry(auto_describe=True)
    app.state.collector = None
    pseudonym_key = secrets.token_bytes(16)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> Any:
        if isinstance(exc, ProofOfWorkRequired):  # the error object carries the challenge
            return JSONResponse(
                exc.body(), status_code=exc.status, headers={"Cache-Control": "no-store"}
            )
        headers = None
        if isinstance(exc, Throttled):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        elif isinstance(exc, Unauthorized):
            headers = {"WWW-Authenticate": "Bearer"}
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Any:
        return error_response(422, "invalid", validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 400:
            # FastAPI's body reader could not parse the body (JSON nested past Python's
            # recursion limit, say): an invalid body like any other.
            return error_response(422, "invalid", "the body could not be parsed as JSON")
        codes = {404: "not_found", 405: "method_not_allowed"}
        messages = {404: "no such endpoint", 405: "this endpoint does not take that method"}
        message = messages.get(exc.status_code, "the request was refused")
        return error_response(exc.status_code, codes.get(exc.status_code, "error"), message)

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> Any:
        log.error("storage failed: %s", exc)
        return error_response(503, "unavailable", "storage is unavailable; try again")

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = error_response(500, "internal", "internal error")
        route = request.scope.get("route")
        template = getattr(route, "path", "?")
        who = hashlib.blake2s(
            client_address(request).encode(), key=pseudonym_key, digest_size=4
        ).hexdigest()
        log.info(
            "%s %s %d %.1f ms client %s",
            request.method,
            template,
            response.status_code,
            (time.perf_counter() - started) * 1000,
            who,
        )
        return response

    app.add_middleware(BodyLimit)
    for routes in (meetings, participants, registrations, reports, webrtc, live, nodes):
        app.include_router(routes.router)
    app.include_router(pages.router)
    return app
