"""Registration for meetings and webinars (issue 7): the form, approval, capacity, one-time join
tokens, and the registrants' rights to correction and erasure. Sans-IO like the meeting
service (control/meetings.py): no HTTP and no clock (every call that needs the time takes
`now`); every refusal is a `control.errors.ApiError` with its HTTP status, and a refused call
writes nothing (but for a wrong confirmation code, which uses up one of the code's tries).

Settings (per meeting, `meetings.registration`, a JSON object; `configure`): `enabled`;
`approval`: `automatic` (everyone is approved once they confirm their email), `manual`
(pending until the host approves or rejects) or `rules` (once the email is confirmed:
approved when its domain is one of `rules.email_domains`, pending otherwise); `capacity`
(registrations pending or approved, not erased; none: no limit); `questions` the host adds
(`id`, `label`, `required`); the optional standard fields the form asks for
(`optional_fields`, of job_title, company, city, country).

Confirming the email (`automatic` and `rules`): approval by address alone would approve
anyone@corp.example who types that address, so these approvals wait until the registrant
shows they read that mailbox. The registration is made `unconfirmed` and a code of
CODE_DIGITS digits is mailed to the address (control/mail.py, the server's `smtp_url`); the
answer holds the registration's id but no token. `confirm` with the code gives the
registration its status under the approval rule, and an approved one its join token, shown
once in that answer. A code works for CODE_TTL_S seconds and CODE_TRIES tries (a wrong one
answers 403 with the tries left); then `resend` mails a new one, at most every
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
(control/ratelimit.py): each may send an email and writes a row.

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
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control import auth
from control.errors import (
    CodeExpired,
    Conflict,
    EmailUnavailable,
    Ended,
    Forbidden,
    Full,
    Gone,
    Invalid,
    NotFound,
    Throttled,
)
from control.lookup import find_meeting, find_open_meeting
from control.mail import ADDRESS, Mailer, MailError, confirmation_email
from control.pii import PiiBox, PiiError, normalise_email
from control.ratelimit import SignupThrottle
from control.store.base import (
    CODE_EXPIRED,
    CONFIRMED,
    ERASED,
    FULL,
    NO_MORE_CODES,
    NOT_UNCONFIRMED,
    TOO_SOON,
    WRONG_CODE,
    CapacityReached,
    DuplicateKey,
    ForeignKeyViolation,
    MeetingRow,
    RegistrationErased,
    RegistrationRow,
    RegistrationStep,
    Store,
    new_id,
)
from control.text import HIDDEN_MESSAGE, has_hidden_characters
from control.throttle import client_key

__all__ = [
    "APPROVALS",
    "OPTIONAL_FIELDS",
    "STANDARD_FIELDS",
    "RegistrationService",
    "RegistrationSettings",
    "registration_enabled",
]

log = logging.getLogger("control.registration")

STANDARD_FIELDS = ("first_name", "last_name", "email")
OPTIONAL_FIELDS = ("job_title", "company", "city", "country")
FIELD_MAX = {"first_name": 100, "last_name": 100, "email": 254}
OTHER_MAX = 200
ANSWER_MAX = 1000
LABEL_MAX = 200
MAX_QUESTIONS = 20
MAX_DOMAINS = 100
CAPACITY_MAX = 1_000_000
APPROVALS = ("automatic", "manual", "rules")
STATUSES = ("pending", "approved", "rejected")  # what the host sets; 'unconfirmed' is not
CONFIRMED_BY_EMAIL = ("automatic", "rules")  # the approvals that wait for the email's code

# Confirmation codes: 8 digits (10**8 values against at most CODE_TRIES * CODES_PER_REGISTRATION
# guesses per registration, each registration itself throttled), short enough to type.
CODE_DIGITS = 8
CODE = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")
CODE_TTL_S = 15 * 60
CODE_TRIES = 5
CODE_RESEND_AFTER_S = 60.0
CODES_PER_REGISTRATION = 5
UNCONFIRMED_KEPT_S = 24 * 3600.0

QUESTION_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    label: str
    required: bool = False


@dataclass(frozen=True)
class RegistrationSettings:
    enabled: bool = True
    approval: str = "automatic"
    email_domains: tuple[str, ...] = ()
    capacity: int | None = None
    questions: tuple[Question, ...] = ()
    optional_fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "approval": self.approval,
            "rules": {"email_domains": list(self.email_domains)},
            "capacity": self.capacity,
            "questions": [
                {"id": q.id, "label": q.label, "required": q.required} for q in self.questions
            ],
            "optional_fields": list(self.optional_fields),
        }

    @classmethod
    def parse(cls, value: object) -> RegistrationSettings:
        """The settings from a JSON object (as the API takes it, or as stored); Invalid with
        what is wrong."""
        if not isinstance(value, Mapping):
            raise Invalid("the registration settings must be an object")
        known = ("enabled", "approval", "rules", "capacity", "questions", "optional_fields")
        if set(value) - set(known):
            raise Invalid(f"unknown registration setting: the settings are {', '.join(known)}")
        enabled = value.get("enabled", True)
        if not isinstance(enabled, bool):
            raise Invalid("enabled must be true or false")
        approval = value.get("approval", "automatic")
        if approval not in APPROVALS:
            raise Invalid(f"approval must be one of {', '.join(APPROVALS)}")
        domains = _domains(value.get("rules"))
        if approval == "rules" and not domains:
            raise Invalid("approval by rules needs rules.email_domains: the domains approved")
        capacity = value.get("capacity")
        if capacity is not None and (
            isinstance(capacity, bool)
            or not isinstance(capacity, int)
            or not 1 <= capacity <= CAPACITY_MAX
        ):
            raise Invalid(f"capacity must be a whole number from 1 to {CAPACITY_MAX}, or null")
        optional = value.get("optional_fields", [])
        if not isinstance(optional, list) or any(f not in OPTIONAL_FIELDS for f in optional):
            raise Invalid(f"optional_fields must be a list of: {', '.join(OPTIONAL_FIELDS)}")
        return cls(
            enabled=enabled,
            approval=str(approval),
            email_domains=domains,
            capacity=capacity,
            questions=_questions(value.get("questions", [])),
            optional_fields=tuple(f for f in OPTIONAL_FIELDS if f in optional),
        )


def _domains(rules: object) -> tuple[str, ...]:
    if rules is None:
        return ()
    if not isinstance(rules, Mapping) or set(rules) - {"email_domains"}:
        raise Invalid("rules must be an object with email_domains (a list of domains)")
    domains = rules.get("email_domains", [])
    if not isinstance(domains, list) or len(domains) > MAX_DOMAINS:
        raise Invalid(f"rules.email_domains must be a list of at most {MAX_DOMAINS} domains")
    out: list[str] = []
    for domain in domains:
        if not isinstance(domain, str) or not DOMAIN.fullmatch(domain.strip().lower()):
            raise Invalid("rules.email_domains: each must be a domain name, as in example.com")
        if domain.strip().lower() not in out:
            out.append(domain.strip().lower())
    return tuple(out)


def _questions(value: object) -> tuple[Question, ...]:
    if not isinstance(value, list) or len(value) > MAX_QUESTIONS:
        raise Invalid(f"questions must be a list of at most {MAX_QUESTIONS}")
    out: list[Question] = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or set(item) - {"id", "label", "required"}:
            raise Invalid(f"question {index} must be an object with id, label and required")
        qid, label, required = item.get("id"), item.get("label"), item.get("required", False)
        if not isinstance(qid, str) or not QUESTION_ID.fullmatch(qid):
            raise Invalid(
                f"question {index}: id must be 1 to 32 of a-z, 0-9 and _, starting with a letter"
            )
        if qid in STANDARD_FIELDS + OPTIONAL_FIELDS or any(q.id == qid for q in out):
            raise Invalid(f"question {index}: its id is taken (by a field or another question)")
        if not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX:
            raise Invalid(f"question {index}: label must be 1 to {LABEL_MAX} characters")
        if has_hidden_characters(label):
            raise Invalid(f"question {index}: label {HIDDEN_MESSAGE}")
        if not isinstance(required, bool):
            raise Invalid(f"question {index}: required must be true or false")
        out.append(Question(qid, label.strip(), required))
    return tuple(out)


def settings_of(meeting: MeetingRow) -> RegistrationSettings | None:
    """The meeting's registration settings; None when it never had any."""
    if meeting.registration is None:
        return None
    return RegistrationSettings.parse(json.loads(meeting.registration))


def registration_enabled(meeting: MeetingRow) -> bool:
    """Whether the meeting takes registrations (and so the password alone admits nobody)."""
    settings = settings_of(meeting)
    return settings is not None and settings.enabled


# --- the form ---------------------------------------------------------------------------------


def _value(name: str, value: object, maximum: int, *, lines: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    if len(value) > maximum:
        raise Invalid(f"{name} must be at most {maximum} characters")
    if has_hidden_characters(value, line_breaks=lines):
        raise Invalid(f"{name} {HIDDEN_MESSAGE}")
    return value.strip()


def _email(value: object) -> str:
    email = _value("email", value, FIELD_MAX["email"])
    if not ADDRESS.fullmatch(email):
        raise Invalid("email must be an email address, as in name@example.com")
    return email


def clean_fields(
    form: Mapping[str, Any], settings: RegistrationSettings, *, partial: bool = False
) -> dict[str, Any]:
    """The form's fields, checked and trimmed. With `partial` (a correction), only those
    given; a field set to null or "" is removed (not a required one), and the optional fields
    are not limited to those the form asks for now (the host corrects what was given)."""
    if not isinstance(form, Mapping):
        raise Invalid("the registration must be an object")
    asked = OPTIONAL_FIELDS if partial else settings.optional_fields
    known = (*STANDARD_FIELDS, *OPTIONAL_FIELDS, "answers")
    if any(k not in known for k in form):
        raise Invalid(f"unknown field: the fields are {', '.join(known)}")
    fields: dict[str, Any] = {}
    for name in STANDARD_FIELDS:
        if name not in form and partial:
            continue
        value = form.get(name)
        if value is None:
            raise Invalid(f"{name} is required")
        text = _email(value) if name == "email" else _value(name, value, FIELD_MAX[name])
        if not text:
            raise Invalid(f"{name} must not be empty")
        fields[name] = text
    for name in OPTIONAL_FIELDS:
        if name not in form or (form[name] is None and not partial):
            continue
        if name not in asked:
            raise Invalid(f"this form does not ask for {name}")
        value = form[name]
        fields[name] = None if value is None else _value(name, value, OTHER_MAX) or None
    if "answers" in form or not partial:
        fields["answers"] = _answers(form.get("answers"), settings, partial)
    return fields


def _answers(value: object, settings: RegistrationSettings, partial: bool) -> dict[str, str | None]:
    """The answers, checked and trimmed; with `partial`, None (from null or "") removes one."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise Invalid("answers must be an object: question id -> answer")
    # A question is named by its place in the form (1, 2, ...), never by the key sent.
    places = {q.id: n for n, q in enumerate(settings.questions, 1)}
    answers: dict[str, str | None] = {}
    for qid, answer in value.items():
        gone = partial and isinstance(qid, str) and QUESTION_ID.fullmatch(qid) is not None
        if qid not in places and not gone:
            raise Invalid("answers: this form has no such question (answers are keyed by id)")
        name = f"answers: the answer to question {places[qid]}" if qid in places else "answers"
        text = None
        if answer is not None:
            text = _value(name, answer, ANSWER_MAX, lines=True) or None
        if text is not None or partial:
            answers[str(qid)] = text
    if not partial:
        for q in settings.questions:
            if q.required and q.id not in answers:
                raise Invalid(f"answers: question {places[q.id]} ({q.id}) needs an answer")
    return answers


def _merge(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for name, value in changes.items():
        if name == "answers":
            answers = dict(merged.get("answers") or {})
            for qid, answer in value.items():
                if answer is None:
                    answers.pop(qid, None)
                else:
                    answers[qid] = answer
            merged["answers"] = answers
        elif value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _status_for(settings: RegistrationSettings, email: str) -> str:
    """The status a registration gets under the approval rule (once its email is confirmed,
    for the approvals that confirm it)."""
    if settings.approval == "automatic":
        return "approved"
    if settings.approval == "rules":
        domain = normalise_email(email).rsplit("@", 1)[-1]
        return "approved" if domain in settings.email_domains else "pending"
    return "pending"


CSV_COLUMNS = ("id", "status", "created_at", "updated_at", "erased", "joined")


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading =, +, - or @ would be a formula."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


# --- the service ------------------------------------------------------------------------------


def new_code() -> str:
    """A confirmation code: CODE_DIGITS random decimal digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _client(address: str | None) -> str:
    return client_key(address) if address else "unknown"


class RegistrationService:
    """Registrations over a `Store`, their personal data sealed by a `PiiBox`; confirmation
    codes go out through `mailer` (None: this server sends no email, so it takes no approval
    that needs one), sign-ups pass `throttle`."""

    def __init__(
        self,
        store: Store,
        pii: PiiBox,
        *,
        mailer: Mailer | None = None,
        throttle: SignupThrottle | None = None,
    ) -> None:
        self.store = store
        self.pii = pii
        self.mailer = mailer
        self.throttle = throttle or SignupThrottle()

    def __repr__(self) -> str:
        return "RegistrationService(<store>, <pii>)"

    async def _meeting(self, meeting_id: object) -> MeetingRow:
        return await find_meeting(self.store, meeting_id)

    async def _open_meeting(self, meeting_id: object) -> MeetingRow:
        return await find_open_meeting(self.store, meeting_id)

    async def _registration(self, meeting: MeetingRow, registration_id: object) -> RegistrationRow:
        if not isinstance(registration_id, str) or not registration_id or len(registration_id) > 64:
            raise NotFound("no such registration")
        row = await self.store.get_registration(registration_id, meeting_id=meeting.id)
        if row is None:
            raise NotFound("no such registration in this meeting")
        return row

    # -- settings and the form --

    async def configure(self, meeting_id: object, settings: object) -> RegistrationSettings:
        """Set the meeting's registration settings (all of them: what is not given takes its
        default)."""
        parsed = RegistrationSettings.parse(settings)
        if parsed.enabled and parsed.approval in CONFIRMED_BY_EMAIL and self.mailer is None:
            raise Invalid(
                f"approval {parsed.approval} confirms each registrant's email with a code, and "
                "this server sends no email: its operator must set smtp_url and smtp_from "
                "(or use approval manual)"
            )
        meeting = await self._open_meeting(meeting_id)
        row = await self.store.update_meeting(meeting.id, registration=json.dumps(parsed.to_json()))
        if row is None:
            raise NotFound("no such meeting")
        return parsed

    async def settings(self, meeting_id: object) -> RegistrationSettings | None:
        return settings_of(await self._meeting(meeting_id))

    async def form(self, meeting_id: object) -> dict[str, Any]:
        """What a registrant fills in (public): the fields and questions, whether the meeting
        is full; 404 when the meeting takes no registrations."""
        meeting = await self._meeting(meeting_id)
        settings = settings_of(meeting)
        if settings is None or not settings.enabled:
            raise NotFound("this meeting takes no registrations")
        fields = [
            {"id": name, "required": True, "max_length": FIELD_MAX[name]}
            for name in STANDARD_FIELDS
        ] + [
            {"id": name, "required": False, "max_length": OTHER_MAX}
            for name in settings.optional_fields
        ]
        full = False
        if settings.capacity is not None:
            full = await self.store.count_registrations(meeting.id) >= settings.capacity
        return {
            "meeting_id": meeting.id,
            "open": meeting.state == "open",
            "approval": settings.approval,
            "full": full,
            "fields": fields,
            "questions": [
                {"id": q.id, "label": q.label, "required": q.required, "max_length": ANSWER_MAX}
                for q in settings.questions
            ],
        }

    # -- registering --

    async def register(
        self,
        meeting_id: object,
        form: Mapping[str, Any],
        *,
        now: float,
        client_address: str | None = None,
    ) -> dict[str, Any]:
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
        fields = clean_fields(form, settings)
        registration_id = new_id()
        sealed, wrapped = self.pii.seal(registration_id, fields)
        code = new_code() if by_email else None
        row = await self._insert(
            meeting,
            settings,
            registration_id=registration_id,
            status="unconfirmed" if by_email else "pending",
            sealed=sealed,
            wrapped_key=wrapped,
            email_tag=self.pii.email_tag(fields["email"]),
            confirm_digest=None if code is None else self.pii.code_digest(registration_id, code),
            confirm_expires_at=None if code is None else now + CODE_TTL_S,
            now=now,
        )
        answer: dict[str, Any] = {"id": row.id, "meeting_id": meeting.id, "status": row.status}
        if code is not None:
            try:
                await self._mail_code(meeting, fields["email"], code)
            except MailError:
                await self.store.discard_unconfirmed(row.id)
                raise EmailUnavailable(
                    "the confirmation email could not be sent, so nothing was kept: "
                    "try registering again later"
                ) from None
            answer["code_expires_at"] = row.confirm_expires_at
        log.info("registration %s for meeting %s: %s", row.id, meeting.id, row.status)
        return answer

    async def _insert(
        self,
        meeting: MeetingRow,
        settings: RegistrationSettings,
        *,
        registration_id: str,
        status: str,
        sealed: bytes,
        wrapped_key: bytes,
        email_tag: str,
        confirm_digest: str | None,
        confirm_expires_at: float | None,
        now: float,
    ) -> RegistrationRow:
        try:
            return await self.store.add_registration(
                meeting_id=meeting.id,
                status=status,
                sealed=sealed,
                wrapped_key=wrapped_key,
                email_tag=email_tag,
                created_at=now,
                registration_id=registration_id,
                capacity=settings.capacity,
                confirm_digest=confirm_digest,
                confirm_expires_at=confirm_expires_at,
            )
        except CapacityReached:
            raise Full("this meeting is full: every place is taken") from None
        except DuplicateKey:
            raise Conflict("this email is registered for this meeting already") from None
        except ForeignKeyViolation:
            raise NotFound("no such meeting") from None

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
        self, meeting_id: object, registration_id: object, code: object, *, now: float
    ) -> dict[str, Any]:
        """Confirm an unconfirmed registration's email with the code mailed to it: the
        registration gets its status under the approval rule, and an approved one its join
        token, shown once in this answer."""
        if not isinstance(code, str) or not CODE.fullmatch(code):
            raise Invalid(f"code must be the {CODE_DIGITS} digits the email gave")
        meeting = await self._open_meeting(meeting_id)
        settings = settings_of(meeting) or RegistrationSettings()
        row = await self._registration(meeting, registration_id)
        fields = self._fields(row)
        status = "pending" if fields is None else _status_for(settings, fields["email"])
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
        _refuse_confirmation(step)
        log.info("registration %s of meeting %s confirmed: %s", row.id, meeting.id, status)
        answer: dict[str, Any] = {"id": row.id, "meeting_id": meeting.id, "status": status}
        if token is not None:
            answer["join_token"] = token
        return answer

    async def resend(
        self,
        meeting_id: object,
        registration_id: object,
        *,
        now: float,
        client_address: str | None = None,
    ) -> dict[str, Any]:
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
        _refuse_renewal(step, now)
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

    def view(self, row: RegistrationRow) -> dict[str, Any]:
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
        self, meeting_id: object, *, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A page of the registrants in the order they registered (all without `limit`)."""
        meeting = await self._meeting(meeting_id)
        rows = await self.store.list_registrations(meeting.id, limit=limit, offset=offset)
        return [self.view(r) for r in rows]

    async def get(self, meeting_id: object, registration_id: object) -> dict[str, Any]:
        meeting = await self._meeting(meeting_id)
        return self.view(await self._registration(meeting, registration_id))

    async def export_csv(self, meeting_id: object) -> tuple[str, int]:
        """(the meeting's registrations as CSV, how many): one row each, the standard and
        optional fields, then one column per question (`answer:<id>`); erased ones with
        their fields empty."""
        meeting = await self._meeting(meeting_id)
        settings = settings_of(meeting) or RegistrationSettings()
        views = [self.view(r) for r in await self.store.list_registrations(meeting.id)]
        questions = [q.id for q in settings.questions]
        for v in views:
            for qid in (v["fields"] or {}).get("answers", {}):
                if qid not in questions:
                    questions.append(qid)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        names = STANDARD_FIELDS + OPTIONAL_FIELDS
        writer.writerow([*CSV_COLUMNS, *names, *(f"answer:{q}" for q in questions)])
        for v in views:
            fields = v["fields"] or {}
            answers = fields.get("answers", {})
            writer.writerow(
                [_cell(v[c]) for c in CSV_COLUMNS]
                + [_cell(fields.get(n)) for n in names]
                + [_cell(answers.get(q)) for q in questions]
            )
        return out.getvalue(), len(views)

    # -- the host's changes --

    async def update(
        self,
        meeting_id: object,
        registration_id: object,
        *,
        now: float,
        status: object = None,
        fields: object = None,
        new_token: object = None,
    ) -> tuple[dict[str, Any], list[str], str | None]:
        """Approve, reject or hold (`status`), correct `fields`, or issue a new join token:
        (the registration as `view` shows it, with `join_token` when one was issued; the
        names of the corrected fields; the new status if it changed, else None)."""
        if status is not None and status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        if new_token is not None and not isinstance(new_token, bool):
            raise Invalid("new_token must be true or false")
        if fields is not None and not isinstance(fields, Mapping):
            raise Invalid("fields must be an object")
        if status is None and not fields and not new_token:
            raise Invalid("nothing to change: give status, fields or new_token")
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
        if fields:
            settings = settings_of(meeting) or RegistrationSettings()
            corrections = clean_fields(fields, settings, partial=True)
            current = self._fields(row)
            if current is None or row.wrapped_key is None:
                raise Conflict("this registration does not open: it cannot be corrected")
            merged = _merge(current, corrections)
            changed = sorted(corrections)
            sealed = self.pii.reseal(row.id, row.wrapped_key, merged)
            if "email" in corrections:
                email_tag = self.pii.email_tag(merged["email"])
        token: str | None = None
        clear = False
        target = row.status if status is None else str(status)
        if target != row.status or new_token:
            if meeting.state == "ended":
                raise Ended("this meeting has ended: its registrations are closed")
            if target == "approved" and (row.status != "approved" or new_token):
                token = auth.new_secret()
            elif new_token:
                raise Conflict("only an approved registration has a join token")
            clear = target != "approved"
        try:
            updated = await self.store.update_registration(
                row.id,
                status=None if target == row.status else target,
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
        return answer, changed, (None if target == row.status else target)

    # -- erasure --

    async def erase(
        self, meeting_id: object, registration_id: object, *, now: float
    ) -> RegistrationRow:
        """Erase one registration: its data key, sealed fields, email tag and token go, and
        the name its participant joined with. 410 if it was erased already."""
        meeting = await self._meeting(meeting_id)
        row = await self._registration(meeting, registration_id)
        if row.erased_at is not None:
            raise Gone("this registration was erased already")
        erased = await self.store.erase_registrations(registration_ids=[row.id], erased_at=now)
        if not erased:
            raise Gone("this registration was erased already")
        log.info("registration %s of meeting %s erased", row.id, meeting.id)
        return erased[0]

    async def erase_by_email(self, email: object, *, now: float) -> list[RegistrationRow]:
        """Erase every registration with this email, in every meeting; 404 when none holds
        it (never made, or erased already)."""
        address = _email(email)
        erased = await self.store.erase_registrations(
            email_tag=self.pii.email_tag(address), erased_at=now
        )
        if not erased:
            raise NotFound(
                "no registration holds this email: none was made with it, or it was erased already"
            )
        log.info("%d registrations erased by email", len(erased))
        return erased


def _refuse_confirmation(step: RegistrationStep) -> None:
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


def _refuse_renewal(step: RegistrationStep, now: float) -> None:
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
