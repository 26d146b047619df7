"""How the HTTP API refuses: every error is `{"error": {"code", "message"}}` (the models below
document it), a message names the field and the rule and never holds a value the client sent
(`validation_message` words pydantic's refusals that way), and a body over MAX_BODY bytes is
refused before it is read whole (`BodyLimit`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control import puzzle
from control.api.requests import Body

MAX_BODY = 64 * 1024  # bytes: the largest body any call takes is a few KiB


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


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Any:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


# The names a refusal may show: the request models' fields and the query parameters. Anything
# else in an error's location is something the client sent (an unknown field's name, a key of
# `answers`), which a message never repeats.
QUERY_NAMES = ("query", "format", "meeting", "limit", "offset", "state")
KNOWN_NAMES = frozenset(
    [name for model in Body.__subclasses__() for name in model.model_fields] + list(QUERY_NAMES)
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


def validation_message(exc: RequestValidationError) -> str:
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
                await error_response(413, "too_large", f"the body is over {self.limit} bytes")(
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
                    await error_response(413, "too_large", f"the body is over {self.limit} bytes")(
                        scope, receive, send
                    )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, limited, guarded_send)
