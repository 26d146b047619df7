"""The HTTP API (DESIGN.md, "HTTP API"): FastAPI over the control plane.

This module only translates: it checks the request's shape (pydantic models, which also make
the OpenAPI description at /openapi.json), finds the caller's credential, calls
`plane.service` and turns the answer into JSON. The rules live in control/meetings.py.

Errors are always `{"error": {"code", "message"}}` with the status DESIGN.md gives; input
that does not fit is a 4xx with a message that says what is wrong, never a 500:
- a body that is not JSON, has a wrong type, an unknown field or a field too long: 422;
- a name or displayed field (a title, a participant's name, a registrant's fields, a question's
  label or an answer) with a control or invisible character (control/text.py): 422;
- a body over MAX_BODY bytes: 413, before it is read whole;
- an unknown path: 404, a wrong method: 405;
- too many sign-ups from one address or for one meeting: 429 with Retry-After;
- a store that cannot be reached: 503 (the server's fault, not the caller's, but not a crash);
- an email that cannot be sent: 503 `email_unavailable`.
A message names the field and the rule, and never holds a value the client sent (a path
parameter, a field's value, an unknown field's name, a key of `answers`): `_validation_message`
words pydantic's refusals that way, and the services word theirs so (control/errors.py).

Credentials: `Authorization: Bearer TOKEN`, the operator token (every meeting) or a host key
(its meeting). Operator only: creating and listing meetings, deleting one, the usage report,
the whole audit log, erasing a person by email. Joining needs no token: the password (or the
registration token) in the body is the credential. Registering needs none either: reading a
meeting's form (`GET .../registration`), sending it (`POST .../registrations`), confirming the
email with the code it received (`POST .../registrations/RID/confirm`) and asking for a new
code (`POST .../registrations/RID/resend`) are public; everything else about registrations is
for the host and the operator (control/registration.py).

Audit (control/audit.py): every host or operator action that succeeds appends an entry (ids
and flags only) after it: meetings created, changed, ended, deleted; locked, unlocked,
recording on or off; participants muted, expelled, given another role; registration settings,
approvals, rejections, corrections, new tokens, reads and exports of the registrants, erasures;
recordings downloaded (the file's name and its size in bytes).

Client address: the TCP peer's, or, when the peer is one of the trusted proxies given to
`create_app` (`relay serve --trusted-proxies`), the client its X-Forwarded-For names
(control/proxies.py). `client_address` is the one place that decides: the join throttle and
the access log's pseudonym both use it.

Logs: one line per request with the method, the route (its template, so no ids), the status
and the time taken; the client address appears only as a keyed pseudonym (DESIGN.md: logs
carry no PII). Secrets never reach a log: they are in bodies and headers, which are not logged,
and so are registrants' fields. Error messages never echo a submitted value.
"""

import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control import auth, puzzle
from control.errors import (
    ApiError,
    Forbidden,
    NotFound,
    ProofOfWorkRequired,
    Throttled,
    Unauthorized,
)
from control.meetings import NAME_MAX, TITLE_MAX
from control.metrics import RelayCollector
from control.plane import ControlPlane
from control.proxies import TrustedProxies
from control.registration import (
    ANSWER_MAX,
    CAPACITY_MAX,
    CODE_DIGITS,
    FIELD_MAX,
    LABEL_MAX,
    MAX_DOMAINS,
    MAX_QUESTIONS,
    OTHER_MAX,
    RegistrationService,
)
from control.store import InvalidValue, MeetingRow, StoreError, UsageRecord
from control.text import HIDDEN_MESSAGE, has_hidden_characters
from relay.srtp import SUITES

__all__ = ["MAX_BODY", "create_app"]

log = logging.getLogger("control.api")

MAX_BODY = 64 * 1024  # bytes: the largest body any call takes is a few KiB
MAX_OFFSET = 1 << 31  # paging further than this is a mistake, not a page
PAGE_MAX = 1000  # rows of a list a call answers at most
PASSWORD_MAX = 256
Suite = Literal[
    "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"
]
assert set(Suite.__args__) == set(SUITES)  # type: ignore[attr-defined]


# --- request bodies ---------------------------------------------------------------------------


def _visible(value: str) -> str:
    if has_hidden_characters(value):
        raise ValueError(HIDDEN_MESSAGE)
    return value


def _visible_lines(value: str) -> str:
    if has_hidden_characters(value, line_breaks=True):
        raise ValueError(HIDDEN_MESSAGE)
    return value


# A string people see (control/text.py): no control or invisible characters; free text (an
# answer) may also hold line breaks and tabs.
Visible = Annotated[str, AfterValidator(_visible)]
VisibleLines = Annotated[str, AfterValidator(_visible_lines)]


class _Body(BaseModel):
    # strict: no "1" for 1 or "true" for true; forbid: a misspelt field is an error, not ignored
    model_config = ConfigDict(strict=True, extra="forbid")


class MeetingCreate(_Body):
    title: Visible = Field(min_length=1, max_length=TITLE_MAX)
    mode: Literal["meeting", "webinar"] = "meeting"
    password: str | None = Field(
        None, min_length=1, max_length=PASSWORD_MAX, description="generated when not given"
    )
    panelist_password: str | None = Field(None, min_length=1, max_length=PASSWORD_MAX)
    suite: Suite | None = None


class MeetingPatch(_Body):
    title: Visible = Field(min_length=1, max_length=TITLE_MAX)


class Controls(_Body):
    locked: bool | None = None
    recording: bool | None = None


class StreamIn(_Body):
    ssrc: int = Field(ge=0, le=0xFFFFFFFF)
    kind: Literal["audio", "video"] = "audio"
    pt: int | None = Field(None, ge=0, le=127, description="default: 111 audio, 96 video")
    codec: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="default: opus/48000/2 audio, VP8/90000 video",
    )

    def stream(self) -> dict[str, Any]:
        """As the meeting service takes it, with the defaults of its kind filled in."""
        pt, codec = STREAM_DEFAULTS[self.kind]
        return {
            "ssrc": self.ssrc,
            "kind": self.kind,
            "pt": pt if self.pt is None else self.pt,
            "codec": codec if self.codec is None else self.codec,
        }


STREAM_DEFAULTS = {"audio": (111, "opus/48000/2"), "video": (96, "VP8/90000")}


class ProofOfWorkIn(_Body):
    challenge: str = Field(
        min_length=1,
        max_length=puzzle.MAX_CHALLENGE_CHARS,
        description="the challenge of the 428 proof_of_work_required answer, as given",
    )
    nonces: list[Annotated[int, Field(ge=0, le=puzzle.NONCE_LIMIT - 1)]] = Field(
        min_length=1,
        max_length=puzzle.MAX_SOLUTIONS,
        description="`solutions` nonces in increasing order, each making "
        "SHA-256(challenge || nonce as 8 bytes big-endian) begin with `difficulty` zero bits",
    )


class JoinIn(_Body):
    password: str | None = Field(None, max_length=PASSWORD_MAX)
    name: Visible = Field(min_length=1, max_length=NAME_MAX)
    role: Literal["host", "panelist", "attendee"] | None = None
    host_key: str | None = Field(None, max_length=128)
    ssrcs: list[Annotated[int, Field(ge=0, le=0xFFFFFFFF)]] | None = Field(None, max_length=8)
    streams: list[StreamIn] | None = Field(None, max_length=8)
    receive_at: str | None = Field(None, max_length=64, description='"ip:port"')
    uplink: str | None = Field(
        None,
        max_length=128,
        description="base64 of master key || salt this participant sends with, for SDES "
        "clients that choose their own key (default: one is generated)",
    )
    registration_token: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="the one-time join token of an approved registration, instead of the "
        "meeting password (which alone does not admit while registration is enabled)",
    )
    proof_of_work: ProofOfWorkIn | None = Field(
        None,
        description="a solved challenge, needed with a password while the meeting is under "
        "attack (the join answers 428 proof_of_work_required with the challenge to solve)",
    )


class ParticipantPatch(_Body):
    muted: bool | None = None
    role: Literal["host", "panelist", "attendee"] | None = None
    expel: bool | None = None


OptionalField = Literal["job_title", "company", "city", "country"]
QuestionId = Annotated[str, Field(min_length=1, max_length=32)]


class QuestionIn(_Body):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="a-z, 0-9, _")
    label: Visible = Field(min_length=1, max_length=LABEL_MAX)
    required: bool = False


class RulesIn(_Body):
    email_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=MAX_DOMAINS
    )


class RegistrationSettingsIn(_Body):
    enabled: bool = True
    approval: Literal["automatic", "manual", "rules"] = Field(
        "automatic",
        description="automatic: approved once the registrant confirms the email with the code "
        "mailed to it; manual: the host approves; rules: once the email is confirmed, approved "
        "when its domain is in rules.email_domains. automatic and rules need the server's "
        "smtp_url",
    )
    rules: RulesIn | None = None
    capacity: int | None = Field(None, ge=1, le=CAPACITY_MAX)
    questions: list[QuestionIn] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    optional_fields: list[OptionalField] = Field(default_factory=list, max_length=4)


class RegistrationIn(_Body):
    first_name: Visible = Field(min_length=1, max_length=FIELD_MAX["first_name"])
    last_name: Visible = Field(min_length=1, max_length=FIELD_MAX["last_name"])
    email: Visible = Field(min_length=3, max_length=FIELD_MAX["email"])
    job_title: Visible | None = Field(None, max_length=OTHER_MAX)
    company: Visible | None = Field(None, max_length=OTHER_MAX)
    city: Visible | None = Field(None, max_length=OTHER_MAX)
    country: Visible | None = Field(None, max_length=OTHER_MAX)
    answers: dict[QuestionId, Annotated[VisibleLines, Field(max_length=ANSWER_MAX)]] | None = Field(
        None, max_length=MAX_QUESTIONS
    )


class ConfirmIn(_Body):
    code: str = Field(
        pattern=rf"^[0-9]{{{CODE_DIGITS}}}$",
        description=f"the {CODE_DIGITS} digits the confirmation email gave",
    )


class FieldsPatch(_Body):
    first_name: Visible | None = Field(None, max_length=FIELD_MAX["first_name"])
    last_name: Visible | None = Field(None, max_length=FIELD_MAX["last_name"])
    email: Visible | None = Field(None, max_length=FIELD_MAX["email"])
    job_title: Visible | None = Field(None, max_length=OTHER_MAX)
    company: Visible | None = Field(None, max_length=OTHER_MAX)
    city: Visible | None = Field(None, max_length=OTHER_MAX)
    country: Visible | None = Field(None, max_length=OTHER_MAX)
    answers: (
        dict[QuestionId, Annotated[VisibleLines, Field(max_length=ANSWER_MAX)] | None] | None
    ) = Field(None, max_length=MAX_QUESTIONS)


class RegistrationPatch(_Body):
    status: Literal["pending", "approved", "rejected"] | None = None
    fields: FieldsPatch | None = Field(
        None, description="corrections: the fields given replace those stored (null removes)"
    )
    new_token: bool | None = Field(
        None, description="issue a new join token (approved only): the old one stops working"
    )


class EraseIn(_Body):
    email: str = Field(min_length=1, max_length=FIELD_MAX["email"])


# --- answers ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class ProofOfWorkDetail(ErrorDetail):
    code: Literal["proof_of_work_required"]
    algorithm: Literal["sha256-k-nonces"] = Field(description="control/puzzle.py")
    challenge: str = Field(description="ASCII, hashed as given; send it back as given")
    difficulty: int = Field(description="leading zero bits each nonce's hash needs")
    solutions: int = Field(description="how many nonces the proof needs")
    expires_in: float = Field(description="seconds the challenge may still be answered")


class ProofOfWorkOut(BaseModel):
    """428: the meeting is under attack; solve the challenge and join again with it."""

    error: ProofOfWorkDetail


assert puzzle.ALGORITHM == "sha256-k-nonces"


def meeting_json(m: MeetingRow) -> dict[str, Any]:
    return {
        "id": m.id,
        "title": m.title,
        "mode": m.mode,
        "suite": m.suite,
        "state": m.state,
        "locked": m.locked,
        "recording": m.recording,
        "created_at": m.created_at,
        "ended_at": m.ended_at,
        "registration": None if m.registration is None else json.loads(m.registration),
    }


def usage_json(u: UsageRecord) -> dict[str, Any]:
    body = dataclasses.asdict(u)
    body["features"] = list(u.features)
    return body


USAGE_FIELDS = [f.name for f in dataclasses.fields(UsageRecord)]


def usage_csv(records: list[UsageRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(USAGE_FIELDS)
    for u in records:
        row = usage_json(u)
        row["features"] = " ".join(u.features)
        writer.writerow([row[name] for name in USAGE_FIELDS])
    return out.getvalue()


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Any:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


# The names a refusal may show: the request models' fields and the query parameters. Anything
# else in an error's location is something the client sent (an unknown field's name, a key of
# `answers`), which a message never repeats.
QUERY_NAMES = ("query", "format", "meeting", "limit", "offset", "state")
KNOWN_NAMES = frozenset(
    [name for model in _Body.__subclasses__() for name in model.model_fields] + list(QUERY_NAMES)
)


def _where(loc: object) -> str:
    """The error's location as a message names it: known names and list positions only."""
    parts = loc if isinstance(loc, tuple | list) else ()
    shown = [
        str(part)
        for part in parts
        if isinstance(part, int) or (part in KNOWN_NAMES and part != "body")
    ]
    return ".".join(shown)


def _said(error: Mapping[str, Any]) -> str:
    """pydantic's words for one error, unless they quote what was sent."""
    kind = error.get("type")
    if kind == "extra_forbidden":
        return "unknown field"
    text = str(error.get("msg", "invalid"))
    if kind == "value_error":  # our own validators' messages (never a value)
        return text.removeprefix("Value error, ")
    sent = error.get("input")
    if isinstance(sent, str | int | float) and not isinstance(sent, bool):
        if str(sent) and str(sent) in text:
            return "invalid value"
    return text


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        if error.get("type") == "json_invalid":
            return "the body is not valid JSON"
        if error.get("loc") == ("body",) and error.get("type") in (
            "model_attributes_type",
            "dict_type",
            "missing",
        ):
            return "the body must be a JSON object"
        where, text = _where(error.get("loc")), _said(error)
        problems.append(f"{where}: {text}" if where else text)
    return "; ".join(problems) or "invalid request"


# --- size limit -------------------------------------------------------------------------------


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, by Content-Length or as they stream in."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _error(413, "too_large", f"the body is over {self.limit} bytes")(
                    scope, receive, send
                )
                return
        seen = 0
        answered = False

        async def limited() -> Message:
            # Over the limit: answer 413 here and tell the app the client went away, so it
            # stops reading; whatever it then tries to send is dropped.
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    answered = True
                    await _error(413, "too_large", f"the body is over {self.limit} bytes")(
                        scope, receive, send
                    )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, limited, guarded_send)


# --- the application --------------------------------------------------------------------------


def create_app(
    plane: ControlPlane | Callable[[], Awaitable[ControlPlane]],
    trusted_proxies: Iterable[str] = (),
) -> FastAPI:
    """The API over a running control plane, or over one that `plane()` starts (and the app
    closes) in its lifespan. `trusted_proxies`: the networks (CIDR) whose X-Forwarded-For is
    believed; by default none, and the TCP peer is the client."""
    proxies = TrustedProxies(trusted_proxies)
    holder: dict[str, ControlPlane] = {}
    if isinstance(plane, ControlPlane):
        holder["plane"] = plane
        lifespan = None
    else:
        starter = plane

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> Any:
            holder["plane"] = await starter()
            try:
                yield
            finally:
                await holder["plane"].close()

    app = FastAPI(
        title="relay",
        version="1",
        summary="Meetings, webinars and their SRTP media relay",
        description=__doc__,
        lifespan=lifespan,
        redirect_slashes=False,  # /v1/meetings/ is a 404 JSON error, not a redirect
    )
    pseudonym_key = secrets.token_bytes(16)

    def the_plane() -> ControlPlane:
        return holder["plane"]

    Plane = Annotated[ControlPlane, Depends(the_plane)]

    def bearer(request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be: Bearer <token>")
        return token.strip()

    Token = Annotated[str | None, Depends(bearer)]

    # A correct token is checked first and never refused; a wrong one counts against its
    # client alone, which gets 429 once it has sent too many (control/meetings.py). Async, so
    # that the count is kept on the event loop's thread, never from FastAPI's thread pool.
    async def operator(plane: Plane, token: Token, request: Request) -> None:
        if token is None:
            raise Unauthorized("missing token: send Authorization: Bearer <token>")
        if not _is_operator(plane, token):
            refusal = Unauthorized("this call needs the operator token")
            plane.service.refuse_secret(client_address(request), plane.clock(), refusal)

    async def host_or_operator(
        meeting_id: str, plane: Plane, token: Token, request: Request
    ) -> str:
        return await plane.service.authorize(
            token,
            meeting_id,
            plane.token_digest,
            client_address=client_address(request),
            now=plane.clock(),
        )

    async def operator_only(meeting_id: str, plane: Plane, token: Token, request: Request) -> None:
        if await host_or_operator(meeting_id, plane, token, request) != "operator":
            raise Forbidden("only the operator may do this")

    # 'operator' or 'host': who the caller is, for the audit log (FastAPI runs a dependency
    # once per request, so naming it in `dependencies` too costs nothing).
    Who = Annotated[str, Depends(host_or_operator)]

    def registrations(plane: ControlPlane) -> RegistrationService:
        if plane.registrations is None:
            raise NotFound("this server takes no registrations")
        return plane.registrations

    def client_address(request: Request) -> str:
        """Who sent the request, for the join throttle and the access log (control/proxies.py)."""
        if request.client is None:
            return "unknown"
        return proxies.client(request.client.host, request.headers.getlist("x-forwarded-for"))

    # -- errors --

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
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Any:
        return _error(422, "invalid", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 400:
            # FastAPI's body reader could not parse the body (JSON nested past Python's
            # recursion limit, say): an invalid body like any other.
            return _error(422, "invalid", "the body could not be parsed as JSON")
        codes = {404: "not_found", 405: "method_not_allowed"}
        messages = {404: "no such endpoint", 405: "this endpoint does not take that method"}
        message = messages.get(exc.status_code, "the request was refused")
        return _error(exc.status_code, codes.get(exc.status_code, "error"), message)

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> Any:
        if isinstance(exc, InvalidValue):  # a value the store refuses: the caller's input
            return _error(422, "invalid", str(exc))
        log.error("storage failed: %s", exc)
        return _error(503, "unavailable", "storage is unavailable; try again")

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = _error(500, "internal", "internal error")
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

    # -- meetings --

    @app.post("/v1/meetings", status_code=201, dependencies=[Depends(operator)])
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

    @app.get("/v1/meetings", dependencies=[Depends(operator)])
    async def list_meetings(
        plane: Plane,
        state: Literal["open", "ended"] | None = None,
        limit: Annotated[int, Query(ge=0, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[dict[str, Any]]:
        rows = await plane.service.list_meetings(limit=limit, offset=offset, state=state)
        return [meeting_json(m) for m in rows]

    @app.get("/v1/meetings/{meeting_id}", dependencies=[Depends(host_or_operator)])
    async def get_meeting(meeting_id: str, plane: Plane) -> dict[str, Any]:
        meeting = await plane.service.get_meeting(meeting_id)
        answer = meeting_json(meeting)
        answer["join_throttle"] = plane.service.join_throttle(meeting.id, plane.clock())
        return answer

    @app.patch("/v1/meetings/{meeting_id}", dependencies=[Depends(host_or_operator)])
    async def patch_meeting(
        meeting_id: str, body: MeetingPatch, plane: Plane, who: Who
    ) -> dict[str, Any]:
        row = await plane.service.update_meeting(meeting_id, title=body.title)
        await plane.audit.append(
            who, "meeting.update", row.id, None, {"fields": ["title"]}, now=plane.clock()
        )
        return meeting_json(row)

    @app.delete("/v1/meetings/{meeting_id}", status_code=204, dependencies=[Depends(operator_only)])
    async def delete_meeting(meeting_id: str, plane: Plane) -> Response:
        meeting = await plane.service.get_meeting(meeting_id)
        if meeting.state == "open":
            await _end(plane, meeting_id)  # with the workers' totals in its usage record
        await plane.service.delete_meeting(meeting_id, now=plane.clock())
        if plane.recordings is not None:  # its recordings go with it
            await asyncio.to_thread(plane.recordings.delete_meeting, meeting.wire_id)
        await plane.audit.append("operator", "meeting.delete", meeting.id, now=plane.clock())
        return Response(status_code=204)

    @app.put("/v1/meetings/{meeting_id}/controls", dependencies=[Depends(host_or_operator)])
    async def set_controls(
        meeting_id: str, body: Controls, plane: Plane, who: Who
    ) -> dict[str, bool]:
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

    @app.post("/v1/meetings/{meeting_id}/end", dependencies=[Depends(host_or_operator)])
    async def end_meeting(meeting_id: str, plane: Plane, who: Who) -> dict[str, Any]:
        record = await _end(plane, meeting_id)
        await plane.audit.append(who, "meeting.end", meeting_id, now=plane.clock())
        return {"id": meeting_id, "state": "ended", "usage": usage_json(record)}

    # -- joining and participants --

    @app.post(
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
                operator=_operator_calling(plane, request),
                proof_of_work=None
                if body.proof_of_work is None
                else body.proof_of_work.model_dump(),
            )
        except ApiError as exc:
            plane.counters.join_failed(exc.code)
            raise
        plane.counters.joins += 1
        return answer

    @app.get("/v1/meetings/{meeting_id}/participants", dependencies=[Depends(host_or_operator)])
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
        _link_next_page(request, response, len(people), limit, offset)
        return people

    @app.patch(
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
                entries.append(
                    ("participant.mute" if answer["muted"] else "participant.unmute", None)
                )
        for action, detail in entries:
            await plane.audit.append(
                who, action, meeting_id, answer["id"], detail, now=plane.clock()
            )
        return answer

    # -- registration (control/registration.py) --

    @app.put("/v1/meetings/{meeting_id}/registration", dependencies=[Depends(host_or_operator)])
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

    @app.get("/v1/meetings/{meeting_id}/registration")
    async def registration_form(meeting_id: str, plane: Plane) -> dict[str, Any]:
        """The registration form (public): its fields and questions, and whether it is full."""
        return await registrations(plane).form(meeting_id)

    @app.post("/v1/meetings/{meeting_id}/registrations", status_code=201)
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

    @app.post("/v1/meetings/{meeting_id}/registrations/{registration_id}/confirm")
    async def confirm_registration(
        meeting_id: str, registration_id: str, body: ConfirmIn, plane: Plane
    ) -> dict[str, Any]:
        """Confirm the email with the code it received (public): the registration gets its
        status, and an approved one its join token, shown once in this answer."""
        return await registrations(plane).confirm(
            meeting_id, registration_id, body.code, now=plane.clock()
        )

    @app.post("/v1/meetings/{meeting_id}/registrations/{registration_id}/resend")
    async def resend_code(
        meeting_id: str, registration_id: str, plane: Plane, request: Request
    ) -> dict[str, Any]:
        """Mail a new confirmation code (public; throttled): the old code stops working."""
        return await registrations(plane).resend(
            meeting_id, registration_id, now=plane.clock(), client_address=client_address(request)
        )

    @app.get(
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
        _link_next_page(request, response, len(views), limit, offset)
        detail = {"format": "json", "count": len(views)}
        await plane.audit.append(
            who, "registration.read", meeting_id, None, detail, now=plane.clock()
        )
        return views

    @app.get(
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

    @app.patch(
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
            await plane.audit.append(
                who, action, meeting_id, answer["id"], detail, now=plane.clock()
            )
        return answer

    @app.delete(
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

    @app.post("/v1/registrations/erase", dependencies=[Depends(operator)])
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

    # -- recordings --

    @app.get("/v1/meetings/{meeting_id}/recordings", dependencies=[Depends(host_or_operator)])
    async def list_recordings(meeting_id: str, plane: Plane) -> list[dict[str, Any]]:
        meeting = await plane.service.get_meeting(meeting_id)
        if plane.recordings is None:
            return []
        return await asyncio.to_thread(plane.recordings.of_meeting, meeting.wire_id)

    @app.get(
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
        pcap = await asyncio.to_thread(plane.recordings.pcap, meeting.wire_id, name)
        # `name` is a recording's own file name here (pcap found it): an id, not input.
        await plane.audit.append(
            who, "recording.download", meeting.id, name, {"bytes": len(pcap)}, now=plane.clock()
        )
        stem = name.removesuffix(".rec")
        return Response(
            pcap,
            media_type="application/vnd.tcpdump.pcap",
            headers={"Content-Disposition": f'attachment; filename="{stem}.pcap"'},
        )

    # -- reports, metrics, health --

    @app.get("/v1/reports/usage", dependencies=[Depends(operator)], response_model=None)
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

    @app.get("/v1/audit", dependencies=[Depends(operator)])
    async def audit(
        plane: Plane,
        meeting: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[dict[str, Any]]:
        """Every host and operator action, oldest first (`meeting`: one meeting's, deleted
        ones too)."""
        return await plane.audit.entries(meeting, limit=limit, offset=offset)

    @app.get("/v1/meetings/{meeting_id}/audit", dependencies=[Depends(host_or_operator)])
    async def meeting_audit(
        meeting_id: str,
        plane: Plane,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[dict[str, Any]]:
        """This meeting's audit entries, oldest first (the host key reads its own)."""
        meeting = await plane.service.get_meeting(meeting_id)
        return await plane.audit.entries(meeting.id, limit=limit, offset=offset)

    registry = CollectorRegistry(auto_describe=True)
    collector: MutableMapping[str, RelayCollector] = {}

    @app.get("/metrics", response_class=Response)
    async def metrics(plane: Plane) -> Response:
        if "c" not in collector:
            collector["c"] = RelayCollector(plane.stats, plane.counters, plane.gauges)
            registry.register(collector["c"])
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz(plane: Plane) -> dict[str, Any]:
        return plane.health()

    return app


def _link_next_page(
    request: Request, response: Response, count: int, limit: int, offset: int
) -> None:
    """A full page links to the next one (RFC 8288 `Link`, rel="next")."""
    if count == limit:
        following = request.url.include_query_params(limit=limit, offset=offset + limit)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'


def _is_operator(plane: ControlPlane, token: str) -> bool:
    return auth.secret_matches(token, plane.token_digest)


def _operator_calling(plane: ControlPlane, request: Request) -> bool:
    """Whether a join comes with the operator token (a service joining its users): joining
    needs no token, so anything else in Authorization is simply not the operator."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and _is_operator(plane, token.strip())


async def _end(plane: ControlPlane, meeting_id: str) -> UsageRecord:
    """End a meeting with the packet and byte totals the workers last reported for it."""
    participants = await plane.service.store.list_participants(meeting_id)
    totals = plane.meeting_totals([p.wire_id for p in participants])
    return await plane.service.end_meeting(meeting_id, now=plane.clock(), totals=totals)
