"""The errors of the relay's Python client (control/client.py): one class per kind of
refusal, each carrying the server's `status`, `code` and `message`."""

from __future__ import annotations

import email.utils
import time
from typing import Any

from control import puzzle

__all__ = [
    "ApiError",
    "Conflict",
    "Ended",
    "Forbidden",
    "Invalid",
    "Locked",
    "NotFound",
    "ProofOfWorkRequired",
    "RelayClientError",
    "ServerError",
    "Throttled",
    "Unauthorized",
    "UntrustedCertificate",
    "error_for",
]


class RelayClientError(Exception):
    """Base of every error this client raises: the relay cannot be reached, or answered
    something that is not what the call returns."""


class UntrustedCertificate(RelayClientError):
    """The server's TLS certificate could not be verified (an unknown CA, a name it is not
    for, an expired one): nothing was sent to it."""


class ApiError(RelayClientError):
    """The relay answered with a status outside 2xx; its `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, {self.message!r})"


class Unauthorized(ApiError):
    """401: no token, or one that is neither the operator token nor the meeting's host key."""


class Forbidden(ApiError):
    """403: a wrong password, or a call the credential does not allow."""


class NotFound(ApiError):
    """404: no such meeting, participant or endpoint."""


class Conflict(ApiError):
    """409: the call conflicts with the current state (an SSRC in use, an expelled
    participant, a meeting that has ended)."""


class Ended(Conflict):
    """409 with code "ended": the meeting has ended; nothing more can happen in it."""


class Invalid(ApiError):
    """422: the request is not what the call takes."""


class Locked(ApiError):
    """423: the host locked the meeting; nobody new may join."""


class Throttled(ApiError):
    """429: too many failed attempts; `retry_after` is the seconds to wait (the Retry-After
    header), None if the server gave none."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


class ProofOfWorkRequired(ApiError):
    """428: the meeting is under attack and a password join must carry a proof of work: the
    fresh challenge to solve (`challenge`, `difficulty`, `solutions`, `expires_in`, see
    control/puzzle.py). `RelayClient.join` solves it by itself."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        challenge: str,
        difficulty: int,
        solutions: int,
        expires_in: float,
    ) -> None:
        super().__init__(status, code, message)
        self.challenge = challenge
        self.difficulty = difficulty
        self.solutions = solutions
        self.expires_in = expires_in


class ServerError(ApiError):
    """5xx: the relay (or a proxy before it) failed; trying again later may work."""


_BY_CODE: dict[str, type[ApiError]] = {"ended": Ended}
_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    423: Locked,
    429: Throttled,
}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _proof_of_work(
    status: int, code: str, message: str, error: dict[str, Any]
) -> ProofOfWorkRequired | None:
    """The 428 error with its challenge, or None if the error object lacks a usable one."""
    challenge, difficulty = error.get("challenge"), error.get("difficulty")
    solutions, expires_in = error.get("solutions"), error.get("expires_in", 0.0)
    numbers = (difficulty, solutions, expires_in)
    if error.get("algorithm") != puzzle.ALGORITHM or not isinstance(challenge, str):
        return None
    if any(isinstance(n, bool) or not isinstance(n, int | float) for n in numbers):
        return None
    if not isinstance(difficulty, int) or not isinstance(solutions, int):
        return None
    return ProofOfWorkRequired(
        status, code, message, challenge, difficulty, solutions, float(expires_in)
    )


def error_for(
    status: int, code: str, message: str, error: dict[str, Any], retry_after: str | None
) -> ApiError:
    """The exception for an answer outside 2xx: by its code, else by its status. `error` is
    the answer's error object (a 428's carries the challenge); `retry_after`, its
    Retry-After header."""
    if code == "proof_of_work_required":
        required = _proof_of_work(status, code, message, error)
        if required is not None:
            return required
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    if cls is Throttled:
        return Throttled(status, code, message, _retry_after(retry_after))
    return cls(status, code, message)
