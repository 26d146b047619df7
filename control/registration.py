"""Registration for meetings and webinars: the form, approval, capacity, one-time join
tokens, and the registrants' rights to correction and erasure. Sans-IO like the meeting
service (control/meetings.py): no HTTP and no clock (every call that needs the time takes
`now`); every refusal is a `control.errors.ApiError` with its HTTP status, and a refused call
writes nothing (but for a wrong confirmation code, which uses up one of the code's tries).

The service takes typed values: the HTTP API's request models check what a request may hold
(control/api/requests.py) and build the settings (control/registration_settings.py), a
registration form (`SignUp`) and a host's corrections (`Corrections`,
control/registration_form.py); the service checks what needs state or the meeting's settings,
and answers in the API's vocabulary (control/answers.py).

Settings (per meeting, `meetings.registration`, a JSON object; `configure`): `enabled`;
`approval`: `automatic` (everyone is approved once they confirm their email), `manual`
(pending until the host approves or rejects) or `rules` (once the email is confirmed:
approved when its domain is one of `rules.email_domains`, pending otherwise); `capacity`
(registrations pending or approved, not erased; none: no limit); `questions` the host adds
(`id`, `label`, `required`); the optional standard fields the form asks for
(`optional_fields`, of job_title, company, city, country).

Confirming the email (`automatic` and `rules`; control/registration_codes.py): approval by
address alone would approve anyone@corp.example who types that address, so these approvals
wait until the registrant shows they read that mailbox. The registration is made `unconfirmed`
and a code of CODE_DIGITS digits is mailed to the address (control/mail.py, the server's
`smtp_url`); the answer holds the registration's id but no token. `confirm` with the code
gives the registration its status under the approval rule, and an approved one its join token,
shown once in that answer. A code works for CODE_TTL_S seconds and CODE_TRIES tries (a wrong
one answers 403 with the tries left); then `resend` mails a new one, at most every
CODE_RESEND_AFTER_S seconds and CODES_PER_REGISTRATION codes in all (after that, registering
again starts over). The store keeps only a keyed digest of a code (control/pii.py,
`code_digest`). An unconfirmed registration does not count against the capacity (the
address may not even be the registrant's; `confirm` takes the place, and answers 409 `full`
when there is none left), is replaced when the same address registers again (so nobody can
hold an address they cannot read), is listed to the host as `unconfirmed` (the host may
reject or erase it, not approve it), and is deleted with its personal data after
UNCONFIRMED_KEPT_S seconds (`purge_unconfirmed`, which the control plane runs every hour).
A server without `smtp_url` refuses these two approvals (422 naming smtp_url); an email that
cannot be sent answers 503 `email_unavailable` (a new registration is then not kept at all).
`manual` approval needs no email: the host reads every registration and passes each token on
to the registered address, which proves that address as well as a code would.

Sign-ups (`register`, `resend`) are throttled per client address and per meeting
(control/ratelimit.py): each may send an email and writes a row. A body the request model
refuses never reaches the service, so it is no sign-up; a form the meeting's settings refuse
is one.

While registration is enabled the meeting password alone no longer admits attendees
(control/meetings.py, join): they join with their registration token. The host key still
admits the host, and a webinar's panelists still give the panelist password.

The form (`register`, public): first_name, last_name and email always (required), the optional
fields the settings ask for, and `answers` to the questions. Each value is a string without
control or invisible characters (control/text.py; answers may hold line breaks), trimmed, at
most 100 characters for names, 254 for the email (a plain address, as control/mail.py sends
to), 200 for the other fields and 1000 for an answer; a field the form does not ask for is
refused, so is a second registration with the same email for one meeting. A full meeting
answers 409 `full`. No refusal repeats the value it refuses (control/errors.py).

Join tokens: an approved registration gets a token (256 random bits), shown once: in the
answer to the confirmation (automatic and rules approval) or to the host's approval, which
the host passes on. The store keeps its SHA-256 digest only, and clears it when the token is
used: one token, one join. A host may issue a new one (`new_token`), which replaces the old.

Personal data: the fields are sealed under the registrant's own data key (control/pii.py)
before they reach the store; the store sees ciphertext, a wrapped key, a keyed tag of the
email and a token digest. `registrants`, `export_csv` and `get` open them for the host and
the operator. `erase` (one registration) and `erase_by_email` (a person, in every meeting)
overwrite all four in place and scrub the name the person joined with; an erased registration
stays listed as erased, without fields, and erasing it again is 410 (by email: 404, as no
registration holds that email any more). Usage records never held personal data and do not
change.

Audit (control/audit.py): each method a host or the operator calls (`by`) appends its entry
once it has acted: the settings, approvals, rejections, holds, corrections (the names of the
fields), new tokens, reads and exports of the registrants (how many), erasures (by id or by
email).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from control import answers, auth
from control.answers import Actor
from control.audit import Audit
from control.errors import (
    Conflict,
    EmailUnavailable,
    Ended,
    Full,
    Gone,
    Invalid,
    NotFound,
)
from control.lookup import find_meeting, find_open_meeting
from control.mail import Mailer, MailError, confirmation_email
from control.pii import PiiBox, PiiError
from control.ratelimit import SignupThrottle
from control.registration_codes import (
    CODE_RESEND_AFTER_S,
    CODE_TRIES,
    CODE_TTL_S,
    CODES_PER_REGISTRATION,
    UNCONFIRMED_KEPT_S,
    new_code,
    refuse_confirmation,
    refuse_renewal,
)
from control.registration_form import (
    Corrections,
    SignUp,
    fields_of,
    merge,
    registrants_csv,
    status_for,
)
from control.registration_settings import (
    CONFIRMED_BY_EMAIL,
    RegistrationSettings,
    form_of,
    registration_enabled,
    settings_of,
)
from control.store import (
    CapacityReached,
    DuplicateKey,
    ForeignKeyViolation,
    MeetingRow,
    RegistrationErased,
    RegistrationRow,
    Store,
    new_id,
)
from control.throttle import client_key

__all__ = [
    "Corrections",
    "Decision",
    "RegistrationService",
    "RegistrationSettings",
    "SignUp",
    "registration_enabled",
    "settings_of",
]

log = logging.getLogger("control.registration")

Decision = Literal["pending", "approved", "rejected"]  # what the host sets (not "unconfirmed")
DECISIONS = {"approved": "approve", "rejected": "reject", "pending": "hold"}  # audit actions


def _client(address: str | None) -> str:
    return client_key(address) if address else "unknown"


class RegistrationService:
    """Registrations over a `Store`, their personal data sealed by a `PiiBox`; confirmation
    codes go out through `mailer` (None: this server sends no email, so it takes no approval
    that needs one), sign-ups pass `throttle`, and what a host or the operator does goes to
    `audit` (by default the store's audit log)."""

    def __init__(
        self,
        store: Store,
        pii: PiiBox,
        *,
        mailer: Mailer | None = None,
        throttle: SignupThrottle | None = None,
        audit: Audit | None = None,
    ) -> None:
        self.store = store
        self.pii = pii
        self.mailer = mailer
        self.throttle = throttle or SignupThrottle()
        self.audit = audit or Audit(store)

    def __repr__(self) -> str:
        return "RegistrationService(<store>, <pii>)"

    async def _meeting(self, meeting_id: str) -> MeetingRow:
        return await find_meeting(self.store, meeting_id)

    async def _open_meeting(self, meeting_id: str) -> MeetingRow:
        return await find_open_meeting(self.store, meeting_id)

    async def _registration(self, meeting: MeetingRow, registration_id: str) -> RegistrationRow:
        row = await self.store.get_registration(registration_id, meeting_id=meeting.id)
        if row is None:
            raise NotFound("no such registration in this meeting")
        return row

    # -- settings and the form --

    async def configure(
        self, meeting_id: str, settings: RegistrationSettings, *, by: Actor, now: float
    ) -> answers.RegistrationSettings:
        """Set the meeting's registration settings (all of them: the API fills in the
        defaults of what is not given); the settings as stored."""
        if settings.enabled and settings.approval in CONFIRMED_BY_EMAIL and self.mailer is None:
            raise Invalid(
                f"approval {settings.approval} confirms each registrant's email with a code, "
                "and this server sends no email: its operator must set smtp_url and smtp_from "
                "(or use approval manual)"
            )
        meeting = await self._open_meeting(meeting_id)
        stored = settings.to_json()
        row = await self.store.update_meeting(meeting.id, registration=json.dumps(stored))
        if row is None:
            raise NotFound("no such meeting")
        detail = {
            "enabled": settings.enabled,
            "approval": settings.approval,
            "capacity": settings.capacity,
            "questions": len(settings.questions),
            "optional_fields": list(settings.optional_fields),
            "email_domains": len(settings.email_domains),
        }
        await self.audit.append(by, "registration.settings", meeting.id, None, detail, now=now)
        return stored

    async def form(self, meeting_id: str) -> answers.RegistrationForm:
        """What a registrant fills in (public): the fields and questions, whether the meeting
        is full; 404 when the meeting takes no registrations."""
        meeting = await self._meeting(meeting_id)
        settings = settings_of(meeting)
        if settings is None or not settings.enabled:
            raise NotFound("this meeting takes no registrations")
        full = False
        if settings.capacity is not None:
            full = await self.store.count_registrations(meeting.id) >= settings.capacity
        return form_of(meeting, settings, full=full)

    # -- registering --

    async def register(
        self,
        meeting_id: str,
        form: SignUp,
        *,
        now: float,
        client_address: str | None = None,
    ) -> answers.Registered:
        """A new registration: 201's body. With manual approval it is pending (the host
        decides); with automatic or rules approval it is unconfirmed, and its code is mailed
        to the email (`confirm` then gives the status and the join token)."""
        meeting = await self._open_meeting(meeting_id)
        settings = settings_of(meeting)
        if settings is None or not settings.enabled:
            raise Conflict("this meeting takes no registrations")
        by_email = settings.approval in CONFIRMED_BY_EMAIL
        if by_email and self.mailer is None:
            raise EmailUnavailable(
                "registrations for this meeting confirm the email with a code, and this server "
                "sends no email (no smtp_url): ask the meeting's host or the server's operator"
            )
        self.throttle.take(meeting.id, _client(client_address), now)
        fields = fields_of(form, settings)
        registration_id = new_id()
        sealed, wrapped = self.pii.seal(registration_id, fields)
        code = new_code() if by_email else None
        try:
            row = await self.store.add_registration(
                meeting_id=meeting.id,
                status="unconfirmed" if by_email else "pending",
                sealed=sealed,
                wrapped_key=wrapped,
                email_tag=self.pii.email_tag(form.email),
                created_at=now,
                registration_id=registration_id,
                capacity=settings.capacity,
                confirm_digest=None
                if code is None
                else self.pii.code_digest(registration_id, code),
                confirm_expires_at=None if code is None else now + CODE_TTL_S,
            )
        except CapacityReached:
            raise Full("this meeting is full: every place is taken") from None
        except DuplicateKey:
            raise Conflict("this email is registered for this meeting already") from None
        except ForeignKeyViolation:
            raise NotFound("no such meeting") from None
        answer: answers.Registered = {
            "id": row.id,
            "meeting_id": meeting.id,
            "status": row.status,
        }
        if code is not None:
            try:
                await self._mail_code(meeting, form.email, code)
            except MailError:
                await self.store.discard_unconfirmed(row.id)
                raise EmailUnavailable(
                    "the confirmation email could not be sent, so nothing was kept: "
                    "try registering again later"
                ) from None
            answer["code_expires_at"] = row.confirm_expires_at
        log.info("registration %s for meeting %s: %s", row.id, meeting.id, row.status)
        return answer

    async def _mail_code(self, meeting: MeetingRow, email: str, code: str) -> None:
        """Mail a confirmation code (MailError if the server would not take it). No store
        transaction and no lock is held meanwhile: a slow mail server delays this request
        only."""
        assert self.mailer is not None
        message = confirmation_email(
            sender=self.mailer.sender,
            recipient=email,
            code=code,
            meeting_id=meeting.id,
            minutes=CODE_TTL_S // 60,
            tries=CODE_TRIES,
        )
        await self.mailer.send(message, email)

    # -- confirming the email --

    async def confirm(
        self, meeting_id: str, registration_id: str, code: str, *, now: float
    ) -> answers.Registered:
        """Confirm an unconfirmed registration's email with the code mailed to it (CODE_DIGITS
        digits): the registration gets its status under the approval rule, and an approved
        one its join token, shown once in this answer."""
        meeting = await self._open_meeting(meeting_id)
        settings = settings_of(meeting) or RegistrationSettings()
        row = await self._registration(meeting, registration_id)
        fields = self._fields(row)
        status: Literal["approved", "pending"] = "pending"
        if fields is not None:
            status = status_for(settings, fields["email"])
        token = auth.new_secret() if status == "approved" else None
        step = await self.store.confirm_registration(
            row.id,
            meeting_id=meeting.id,
            code_digest=self.pii.code_digest(row.id, code),
            now=now,
            max_attempts=CODE_TRIES,
            status=status,
            token_digest=None if token is None else auth.secret_digest(token),
            capacity=settings.capacity,
        )
        if step is None:
            raise NotFound("no such registration in this meeting")
        refuse_confirmation(step)
        log.info("registration %s of meeting %s confirmed: %s", row.id, meeting.id, status)
        answer: answers.Registered = {"id": row.id, "meeting_id": meeting.id, "status": status}
        if token is not None:
            answer["join_token"] = token
        return answer

    async def resend(
        self,
        meeting_id: str,
        registration_id: str,
        *,
        now: float,
        client_address: str | None = None,
    ) -> answers.Registered:
        """Mail a new code to an unconfirmed registration (the old one stops working)."""
        meeting = await self._open_meeting(meeting_id)
        self.throttle.take(meeting.id, _client(client_address), now)
        row = await self._registration(meeting, registration_id)
        if row.status != "unconfirmed" and row.erased_at is None:
            raise Conflict("this registration is confirmed already: it needs no code")
        fields = self._fields(row)
        if fields is None and row.erased_at is None:  # it does not open: no address to mail
            raise Conflict("this registration does not open: register again")
        if self.mailer is None:  # unconfirmed, yet this server cannot mail: its trouble
            raise EmailUnavailable("this server sends no email (no smtp_url): ask its operator")
        code = new_code()
        step = await self.store.renew_confirmation(
            row.id,
            meeting_id=meeting.id,
            code_digest=self.pii.code_digest(row.id, code),
            expires_at=now + CODE_TTL_S,
            now=now,
            min_interval=CODE_RESEND_AFTER_S,
            max_sends=CODES_PER_REGISTRATION,
        )
        if step is None:
            raise NotFound("no such registration in this meeting")
        refuse_renewal(step, now)
        assert fields is not None  # an erased one was refused
        try:
            await self._mail_code(meeting, fields["email"], code)
        except MailError:
            raise EmailUnavailable(
                "the email with the new code could not be sent: ask again in a minute"
            ) from None
        log.info("registration %s of meeting %s: a new code", row.id, meeting.id)
        return {
            "id": row.id,
            "meeting_id": meeting.id,
            "status": step.row.status,
            "code_expires_at": step.row.confirm_expires_at,
        }

    async def purge_unconfirmed(self, *, now: float) -> int:
        """Delete the registrations nobody confirmed within UNCONFIRMED_KEPT_S seconds, with
        their personal data; how many."""
        purged = await self.store.purge_unconfirmed(now - UNCONFIRMED_KEPT_S)
        if purged:
            log.info("%d unconfirmed registrations deleted after their time", purged)
        return purged

    # -- reading --

    def _fields(self, row: RegistrationRow) -> dict[str, Any] | None:
        if row.erased_at is not None or row.wrapped_key is None:
            return None
        try:
            return self.pii.open(row.id, row.sealed, row.wrapped_key)
        except PiiError:
            log.error("registration %s does not open with this server's PII key", row.id)
            return None

    def view(self, row: RegistrationRow) -> answers.Registration:
        """A registration as the host sees it, its fields opened (None once erased)."""
        return {
            "id": row.id,
            "meeting_id": row.meeting_id,
            "status": row.status,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "erased": row.erased_at is not None,
            "erased_at": row.erased_at,
            "joined": row.participant_id is not None and row.token_digest is None,
            "participant_id": row.participant_id,
            "fields": self._fields(row),
        }

    async def registrants(
        self,
        meeting_id: str,
        *,
        by: Actor,
        now: float,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[answers.Registration]:
        """A page of the registrants in the order they registered (all without `limit`)."""
        meeting = await self._meeting(meeting_id)
        rows = await self.store.list_registrations(meeting.id, limit=limit, offset=offset)
        views = [self.view(r) for r in rows]
        detail = {"format": "json", "count": len(views)}
        await self.audit.append(by, "registration.read", meeting.id, None, detail, now=now)
        return views

    async def get(
        self, meeting_id: str, registration_id: str, *, by: Actor, now: float
    ) -> answers.Registration:
        meeting = await self._meeting(meeting_id)
        view = self.view(await self._registration(meeting, registration_id))
        await self.audit.append(by, "registration.read", meeting.id, view["id"], None, now=now)
        return view

    async def export_csv(self, meeting_id: str, *, by: Actor, now: float) -> str:
        """The meeting's registrations as CSV (control/registration_form.py,
        `registrants_csv`)."""
        meeting = await self._meeting(meeting_id)
        settings = settings_of(meeting) or RegistrationSettings()
        views = [self.view(r) for r in await self.store.list_registrations(meeting.id)]
        text = registrants_csv(views, settings)
        detail = {"format": "csv", "count": len(views)}
        await self.audit.append(by, "registration.export", meeting.id, None, detail, now=now)
        return text

    # -- the host's changes --

    async def update(
        self,
        meeting_id: str,
        registration_id: str,
        *,
        by: Actor,
        now: float,
        status: Decision | None = None,
        corrections: Corrections | None = None,
        new_token: bool = False,
    ) -> answers.Registration:
        """Approve, reject or hold (`status`), correct fields, or issue a new join token: the
        registration as `view` shows it, with `join_token` when one was issued (the API's
        model makes sure there is something to change)."""
        meeting = await self._meeting(meeting_id)
        row = await self._registration(meeting, registration_id)
        if row.erased_at is not None:
            raise Gone("this registration was erased: there is nothing to change")
        if row.status == "unconfirmed" and status in ("approved", "pending"):
            raise Conflict(
                "this registrant has not confirmed the email yet: the registration may be "
                "rejected or erased, not approved or held"
            )
        changed: list[str] = []
        sealed = email_tag = None
        if corrections is not None and corrections.names:
            current = self._fields(row)
            if current is None or row.wrapped_key is None:
                raise Conflict("this registration does not open: it cannot be corrected")
            merged = merge(current, corrections)
            changed = corrections.names
            sealed = self.pii.reseal(row.id, row.wrapped_key, merged)
            if "email" in corrections.fields:
                email_tag = self.pii.email_tag(merged["email"])
        token: str | None = None
        clear = False
        target = row.status if status is None else status
        if target != row.status or new_token:
            if meeting.state == "ended":
                raise Ended("this meeting has ended: its registrations are closed")
            if target == "approved" and (row.status != "approved" or new_token):
                token = auth.new_secret()
            elif new_token:
                raise Conflict("only an approved registration has a join token")
            clear = target != "approved"
        decided = None if target == row.status else target
        try:
            updated = await self.store.update_registration(
                row.id,
                status=decided,
                sealed=sealed,
                email_tag=email_tag,
                token_digest=None if token is None else auth.secret_digest(token),
                clear_token=clear,
                updated_at=now,
            )
        except RegistrationErased:
            raise Gone("this registration was erased: there is nothing to change") from None
        except DuplicateKey:
            raise Conflict("another registration for this meeting has this email") from None
        if updated is None:
            raise NotFound("no such registration")
        answer = self.view(updated)
        if token is not None:
            answer["join_token"] = token
        entries: list[tuple[str, dict[str, object] | None]] = []
        if decided is not None:
            entries.append((f"registration.{DECISIONS[decided]}", None))
        if changed:
            entries.append(("registration.edit", {"fields": changed}))
        if new_token and decided is None:
            entries.append(("registration.new_token", None))
        for action, detail in entries:
            await self.audit.append(by, action, meeting.id, row.id, detail, now=now)
        return answer

    # -- erasure --

    async def erase(self, meeting_id: str, registration_id: str, *, by: Actor, now: float) -> None:
        """Erase one registration: its data key, sealed fields, email tag and token go, and
        the name its participant joined with. 410 if it was erased already."""
        meeting = await self._meeting(meeting_id)
        row = await self._registration(meeting, registration_id)
        if row.erased_at is not None:
            raise Gone("this registration was erased already")
        erased = await self.store.erase_registrations(registration_ids=(row.id,), erased_at=now)
        if not erased:
            raise Gone("this registration was erased already")
        log.info("registration %s of meeting %s erased", row.id, meeting.id)
        detail = {"by": "id"}
        await self.audit.append(by, "registration.erase", meeting.id, row.id, detail, now=now)

    async def erase_by_email(self, email: str, *, by: Actor, now: float) -> answers.Erased:
        """Erase every registration with this email (a plain address), in every meeting; 404
        when none holds it (never made, or erased already)."""
        erased = await self.store.erase_registrations(
            email_tag=self.pii.email_tag(email), erased_at=now
        )
        if not erased:
            raise NotFound(
                "no registration holds this email: none was made with it, or it was erased already"
            )
        log.info("%d registrations erased by email", len(erased))
        for row in erased:
            detail = {"by": "email"}
            await self.audit.append(
                by, "registration.erase", row.meeting_id, row.id, detail, now=now
            )
        return {
            "erased": len(erased),
            "registrations": [{"id": r.id, "meeting_id": r.meeting_id} for r in erased],
        }
