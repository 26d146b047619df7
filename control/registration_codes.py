"""The confirmation codes that prove a registrant reads the email they gave (the rules:
control/registration.py, "Confirming the email"): how they are made, how long and how often
they work, and the refusal for each outcome the store reports (control/store/confirmation.py,
`confirmation_step`)."""

from __future__ import annotations

import math
import secrets

from control.errors import CodeExpired, Conflict, Forbidden, Full, Gone, Throttled
from control.store.confirmation import (
    CODE_EXPIRED,
    CONFIRMED,
    ERASED,
    FULL,
    NO_MORE_CODES,
    NOT_UNCONFIRMED,
    TOO_SOON,
    WRONG_CODE,
    RegistrationStep,
)

__all__ = [
    "CODES_PER_REGISTRATION",
    "CODE_DIGITS",
    "CODE_RESEND_AFTER_S",
    "CODE_TRIES",
    "CODE_TTL_S",
    "UNCONFIRMED_KEPT_S",
    "new_code",
    "refuse_confirmation",
    "refuse_renewal",
]

# 8 digits: 10**8 values against at most CODE_TRIES * CODES_PER_REGISTRATION guesses per
# registration, each registration itself throttled; short enough to type.
CODE_DIGITS = 8
CODE_TTL_S = 15 * 60
CODE_TRIES = 5
CODE_RESEND_AFTER_S = 60.0
CODES_PER_REGISTRATION = 5
UNCONFIRMED_KEPT_S = 24 * 3600.0


def new_code() -> str:
    """A confirmation code: CODE_DIGITS random decimal digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def refuse_confirmation(step: RegistrationStep) -> None:
    """The refusal for a confirmation that did not confirm (nothing for one that did)."""
    outcome = step.outcome
    if outcome == CONFIRMED:
        return
    if outcome == WRONG_CODE:
        left = max(0, CODE_TRIES - step.row.confirm_attempts)
        if left:
            raise Forbidden(f"wrong code: {left} more tries for this code")
        raise Forbidden("wrong code, and that was its last try: ask for a new code")
    if outcome == CODE_EXPIRED:
        raise CodeExpired(
            "this code no longer works (it expired, or was tried too often): ask for a new one"
        )
    if outcome == NOT_UNCONFIRMED:
        raise Conflict("this registration is confirmed already")
    if outcome == ERASED:
        raise Gone("this registration was erased")
    if outcome == FULL:
        raise Full("this meeting is full: its last place was taken before this confirmation")
    raise AssertionError(f"unexpected outcome {outcome}")


def refuse_renewal(step: RegistrationStep, now: float) -> None:
    """The refusal for a new code that was not made (nothing for one that was)."""
    outcome = step.outcome
    if outcome == TOO_SOON:
        sent = step.row.confirm_sent_at or now
        wait = max(1.0, sent + CODE_RESEND_AFTER_S - now)
        raise Throttled(f"a new code can be sent {math.ceil(wait)} s from now", wait)
    if outcome == NO_MORE_CODES:
        raise Conflict(
            f"this registration had its {CODES_PER_REGISTRATION} codes: register again to "
            "start over"
        )
    if outcome == NOT_UNCONFIRMED:
        raise Conflict("this registration is confirmed already: it needs no code")
    if outcome == ERASED:
        raise Gone("this registration was erased")
