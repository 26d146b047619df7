"""API errors: each carries the HTTP status and a stable code, and the HTTP layer turns it into
`{"error": {"code", "message"}}` (control/api/errors.py). Raised by the sans-IO services
(meetings, auth, storage) so they need not know about HTTP.

A message says what is wrong in words of the API (the field, the rule), and never repeats a
value the client sent, path parameters included: an error body is shown to people and logged
by proxies, so an echoed value could carry markup, escape sequences or someone's personal data
into places nobody checks."""

from __future__ import annotations

from relay.errors import RelayError


class ApiError(RelayError):
    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"code": self.code, "message": self.message}}


class Invalid(ApiError):
    """The request is well-formed JSON but not what the call takes."""

    status = 422
    code = "invalid"


class Unauthorized(ApiError):
    """No token, or a token that is not the operator token nor this meeting's host key."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """A wrong password, or a role the credential does not grant."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Ended(ApiError):
    """The meeting has ended: nothing more can happen in it."""

    status = 409
    code = "ended"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Full(ApiError):
    """The meeting has as many registrations as its capacity allows."""

    status = 409
    code = "full"


class Gone(ApiError):
    """What was asked for was erased (a registration): it is not coming back."""

    status = 410
    code = "erased"


class CodeExpired(ApiError):
    """A registration's confirmation code no longer works (expired, or tried too often): the
    registrant asks for a new one."""

    status = 409
    code = "code_expired"


class Locked(ApiError):
    """The host locked the meeting: nobody new may join."""

    status = 423
    code = "locked"


class ProofOfWorkRequired(ApiError):
    """The meeting is under attack: a password join must carry a proof of work. `puzzle` is
    the fresh challenge (algorithm, challenge, difficulty, solutions, expires_in) that the
    error object carries next to its code and message (README.md, "Proof of work"). 428:
    the request must be sent again with something it lacked, as RFC 6585 section 3 has it,
    and not 429, which says this client sent too many (it may have sent one)."""

    status = 428
    code = "proof_of_work_required"

    def __init__(self, message: str, puzzle: dict[str, object]) -> None:
        super().__init__(message)
        self.puzzle = puzzle

    def body(self) -> dict[str, dict[str, object]]:
        return {"error": {"code": self.code, "message": self.message, **self.puzzle}}


class Throttled(ApiError):
    """Too many failed attempts; try again after `retry_after` seconds."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EmailUnavailable(ApiError):
    """An email could not be sent (no mail server configured, or it refused): the server's
    trouble, not the caller's, and not a crash."""

    status = 503
    code = "email_unavailable"


class PreconditionFailed(ApiError):
    """412: an If-Match that names another state of the resource (RFC 9110 section 13.1.1),
    such as a WHIP session's ETag after its ICE session changed."""

    status = 412
    code = "precondition_failed"


class UnsupportedMediaType(ApiError):
    """415: a body of a type the call does not take (a WHIP offer that is not SDP)."""

    status = 415
    code = "unsupported_media_type"


class Draining(ApiError):
    """503: this node is draining (`relay drain`: control/nodes.py): it takes no new
    participants, and those present stay."""

    status = 503
    code = "draining"


class Unavailable(ApiError):
    """503: a part of the server that this call needs is not set up here (WebRTC without the
    node's DTLS certificate)."""

    status = 503
    code = "unavailable"
