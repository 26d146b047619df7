"""Who gets in: the credentials of a join and of an API call, checked secrets first
(README.md, "Proof of work"; docs/SECURITY.md, "Guessing without lockout").

- The operator token works on every meeting, a meeting's host key on that meeting only
  (`authorize`); anything else is 401.
- Secrets first: a host key, a join token or a bearer token (256 random bits each) is checked
  before any throttle, and a correct one is never refused for anyone's failures. A wrong one
  is counted for its client alone (`secret_throttle`, over the whole server): once it has 5
  within 60 s its wrong ones are answered 429 instead of 401/403, with a back-off that doubles
  up to 300 s. Wrong secrets do not count against the meeting.
- The credential of a join (`check_join`), by role:
  - `host` needs the host key (a stronger credential than any password: the password is then
    not checked);
  - a join token of an approved registration (control/registration.py) admits without a
    password; the meeting service uses it up at the join, in one store transaction;
  - `panelist` in a webinar needs the panelist password: the attendee password never grants
    panelist or host;
  - everyone else gives the meeting password; while the meeting's registration is enabled the
    password alone no longer admits: only tokens do.
- A password goes through, in this order: the client's own throttle (429 with `retry_after`
  once this client, IPv6 by its /64, has 5 wrong passwords for the meeting within 60 s;
  checked before any work, and a success does not reset it), the meeting's proof of work while
  it is under attack (428 with a challenge, control/proof_of_work.py: checked before the
  password, so every guess costs the guesser the proof), then the password (403 if wrong,
  counted for the client and for the meeting's proof of work). Refusals that check no secret
  (no password, registration required, no panelist password) are not counted: they tell a
  guesser nothing.
- The operator's own service (a caller holding the operator token, joining for its users) can
  do anything a guess could win: its password checks are neither throttled nor asked for a
  proof.
- A webinar's attendees all give the same password, and Argon2id costs about 45 ms of CPU per
  check: thousands joining at once would queue for minutes. A password that verified once is
  remembered (`auth.VerifiedPasswords`: a keyed hash, in memory only) and later joins with it
  skip Argon2; a password that does not match the remembered one still goes through Argon2,
  so guessing gains nothing.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from control import auth
from control.answers import Actor
from control.errors import ApiError, Forbidden, Invalid, Unauthorized
from control.proof_of_work import JoinPuzzles, Proof
from control.registration import registration_enabled
from control.store import MeetingRow, Store
from control.throttle import FailureThrottle, client_key
from relay.srtp import parse_sdes_key
from relay.vocabulary import Mode, Role, Suite

__all__ = ["Admission", "own_key"]


class Admission:
    """Checks credentials against the store; counts failures (throttles, proof of work)."""

    def __init__(
        self,
        store: Store,
        *,
        throttle: FailureThrottle | None = None,
        secret_throttle: FailureThrottle | None = None,
        puzzles: JoinPuzzles | None = None,
    ) -> None:
        self.store = store
        self.throttle = throttle or FailureThrottle()  # wrong passwords, per meeting and client
        self.secret_throttle = secret_throttle or FailureThrottle(
            refusal="too many wrong keys or tokens from your address"
        )
        self.puzzles = puzzles or JoinPuzzles()
        self._verified = auth.VerifiedPasswords()

    # -- API calls --

    async def authorize(
        self,
        token: str | None,
        meeting_id: str | None,
        operator_token_digest: str,
        *,
        client_address: str | None = None,
        now: float | None = None,
    ) -> Actor:
        """'operator' for the operator token (every meeting), 'host' for the host key of
        `meeting_id`; Unauthorized otherwise. A correct token is never refused; a wrong one is
        counted for `client_address` (when given, with `now`), and answered 429 once that
        client has sent too many."""
        if not token:
            raise Unauthorized("missing token: send Authorization: Bearer <token>")
        if auth.secret_matches(token, operator_token_digest):
            return "operator"
        if meeting_id is not None and len(meeting_id) <= 64:
            meeting = await self.store.get_meeting(meeting_id)
            if meeting is not None and auth.secret_matches(token, meeting.host_key_digest):
                return "host"
            refusal = Unauthorized(
                "the token is neither the operator token nor this meeting's host key"
            )
        else:
            refusal = Unauthorized(
                "the token is not the operator token (a host key works only on its own meeting)"
            )
        if client_address is None or now is None:
            raise refusal
        self.refuse_secret(client_address, now, refusal)

    def refuse_secret(self, client_address: str, now: float, refusal: ApiError) -> NoReturn:
        """Raise `refusal` for a wrong host key, join token or bearer token, counted for this
        client alone; Throttled (429) instead once the client was already locked out by its
        own wrong secrets (each further one doubles its back-off)."""
        client = client_key(client_address)
        locked = self.secret_throttle.wait("", client, now) > 0
        self.secret_throttle.failure("", client, now)
        if locked:
            self.secret_throttle.check("", client, now)
        raise refusal

    def join_throttle(self, meeting_id: str, now: float) -> dict[str, bool | float | int]:
        """What GET /v1/meetings/ID shows as `join_throttle` (README.md, "Proof of work")."""
        return self.puzzles.status(meeting_id, now)

    # -- joins --

    def is_host(self, meeting: MeetingRow, role: Role, host_key: str | None) -> bool:
        return (
            role == Role.HOST
            and host_key is not None
            and auth.secret_matches(host_key, meeting.host_key_digest)
        )

    async def check_join(
        self,
        meeting: MeetingRow,
        role: Role,
        *,
        host_key: str | None,
        password: str | None,
        registration_token: str | None,
        proof_of_work: Proof | None,
        client_address: str,
        now: float,
        operator: bool,
    ) -> str | None:
        """Check the joiner's credential for `role`, secrets first (the rules are at the top
        of this module); the digest of the registration token it joins with, for the meeting
        service to use up at the join, or None."""
        if role == Role.HOST:
            if not self.is_host(meeting, role, host_key):
                refusal = Forbidden("joining as host needs this meeting's host key")
                if host_key is None:
                    raise refusal
                self.refuse_secret(client_address, now, refusal)
            return None
        if role == Role.PANELIST and meeting.mode == Mode.WEBINAR:
            stored = meeting.panelist_password_hash
            if stored is None:
                raise Forbidden(
                    "this webinar has no panelist password: join as attendee and ask the host "
                    "to promote you"
                )
            what = "panelist password"
        else:
            if registration_token is not None:
                return await self._check_registration_token(
                    meeting, registration_token, client_address, now
                )
            if registration_enabled(meeting):
                raise Forbidden(
                    "this meeting needs registration: join with the registration token your "
                    "registration gave (the meeting password alone does not admit)"
                )
            stored, what = meeting.password_hash, "meeting password"
        if password is None:
            raise Forbidden(f"the {what} is required")
        await self._check_password(
            meeting, stored, what, password, client_address, now, proof_of_work, operator
        )
        return None

    async def _check_password(
        self,
        meeting: MeetingRow,
        stored: str,
        what: str,
        password: str,
        client_address: str,
        now: float,
        proof_of_work: Proof | None,
        operator: bool,
    ) -> None:
        """The client's own throttle (429), then the meeting's proof of work while it is under
        attack (428), then the password (403 if wrong, counted for both). The check is "in
        flight" for both from the start, so guesses sent at once cannot all slip through
        before the first failure is counted. (Even a password known to be right takes that
        path: answering it first would tell a guesser right from wrong without the proof.)"""
        if operator:
            if not await self._password_matches(meeting, stored, password):
                raise Forbidden(f"wrong {what}")
            return
        client = client_key(client_address)
        self.throttle.begin(meeting.id, client, now)
        failed = False  # a refused proof, or a check that did not finish, counts nothing
        try:
            self.puzzles.begin(meeting.id, proof_of_work, now)
            try:
                failed = not await self._password_matches(meeting, stored, password)
            finally:
                self.puzzles.end(meeting.id, now, failed)
        finally:
            self.throttle.end(meeting.id, client, now, failed)
        if failed:
            raise Forbidden(f"wrong {what}")

    async def _password_matches(self, meeting: MeetingRow, stored: str, password: str) -> bool:
        if self._verified.matches(meeting.id, stored, password):
            return True
        if not await asyncio.to_thread(auth.verify_password, password, stored):
            return False
        self._verified.add(meeting.id, stored, password)
        return True

    async def _check_registration_token(
        self, meeting: MeetingRow, token: str, client_address: str, now: float
    ) -> str:
        """The token's digest if it belongs to an approved, not erased registration of this
        meeting and was not used; 403 otherwise (counted for this client alone)."""
        digest = auth.secret_digest(token)
        found = await self.store.get_registration_by_token(meeting.id, digest)
        if (
            found is None
            or found.token_digest is None
            or not auth.secret_matches(token, found.token_digest)
        ):
            self.refuse_secret(
                client_address,
                now,
                Forbidden(
                    "this registration token does not admit: unknown, not approved (yet), or "
                    "used already"
                ),
            )
        return digest


# -- a participant's own sending key --


def own_key(suite: Suite, value: str | None) -> bytes | None:
    """A key the participant chose for what it sends (SDES: each side picks its own sending
    key, RFC 4568 section 5.1, so a client that offers one keeps it), checked against the
    meeting's suite; Invalid in words that do not repeat the key."""
    if value is None:
        return None
    try:
        key = parse_sdes_key(suite, value)
    except ValueError as exc:  # relay's message may quote the value: say the rule instead
        raise Invalid(_uplink_rule(suite, str(exc))) from None
    if len(set(key)) < 4:
        raise Invalid("uplink: that is not a random key")
    return key


def _uplink_rule(suite: Suite, refusal: str) -> str:
    if "MKI" in refusal:
        return "uplink: MKI is not supported; give 'inline:<base64>', at most a lifetime after |"
    if "lifetime" in refusal:
        return "uplink: a key lifetime must be '2^N' or a number of packets, at least 2^31"
    if "base64" in refusal:
        return "uplink must be the base64 of master key || salt"
    return (
        f"uplink: {suite} needs {suite.key_len + suite.salt_len} bytes of key material "
        f"({suite.key_len}-byte key || {suite.salt_len}-byte salt)"
    )
