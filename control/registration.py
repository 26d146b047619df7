"""Registration for meetings and webinars (issue 7): the form, approval, capacity, one-time join
tokens, and the registrants' rights to correction and erasure. Sans-IO like the meeting
service (control/meetings.py): no HTTP and no clock (every call that needs the time takes
`now`); every refusal is a `control.errors.ApiError` with its HTTP status, and a refused call
writes nothing.

Settings (per meeting, `meetings.registration`, a JSON object; `configure`): `enabled`;
`approval`: `automatic` (everyone is approved at once), `manual` (pending until the host
approves or rejects) or `rules` (approved at once when the email's domain is one of
`rules.email_domains`, pending otherwise); `capacity` (registrations pending or approved, not
erased; none: no limit); `questions` the host adds (`id`, `label`, `required`); the optional
standard fields the form asks for (`optional_fields`, of job_title, company, city, country).
While registration is enabled the meeting password alone no longer admits attendees
(control/meetings.py, join): they join with their registration token. The host key still
admits the host, and a webinar's panelists still give the panelist password.

The form (`register`, public): first_name, last_name and email always (required), the optional
fields the settings ask for, and `answers` to the questions. Each value is a string without
control characters (answers may hold line breaks), trimmed, at most 100 characters for names,
254 for the email (which must look like one), 200 for the other fields and 1000 for an
answer; a field the form does not ask for is refused, so is a second registration with the
same email for one meeting. A full meeting answers 409 `full`.

Join tokens: an approved registration gets a token (256 random bits), shown once: in the
answer to the registration (automatic approval) or to the host's approval, which the host
passes on. The store keeps its SHA-256 digest only, and clears it when the token is used: one
token, one join. A host may issue a new one (`new_token`), which replaces the old.

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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control import auth
from control.errors import Conflict, Ended, Full, Gone, Invalid, NotFound
from control.lookup import find_meeting, find_open_meeting
from control.pii import PiiBox, PiiError, normalise_email
from control.store.base import (
    CapacityReached,
    DuplicateKey,
    ForeignKeyViolation,
    MeetingRow,
    RegistrationErased,
    RegistrationRow,
    Store,
    new_id,
)

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
STATUSES = ("pending", "approved", "rejected")

QUESTION_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
EMAIL = re.compile(r"[^@\s]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
        known = {"enabled", "approval", "rules", "capacity", "questions", "optional_fields"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise Invalid(f"unknown registration setting: {', '.join(unknown)}")
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
            raise Invalid(f"question {index}: the id {qid!r} is taken")
        if not isinstance(label, str) or not label.strip() or len(label) > LABEL_MAX:
            raise Invalid(f"question {index}: label must be 1 to {LABEL_MAX} characters")
        if CONTROL.search(label):
            raise Invalid(f"question {index}: label must not hold control characters")
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
        raise Invalid(f"{name} must be at most {maximum} characters (got {len(value)})")
    if (CONTROL_BUT_LINES if lines else CONTROL).search(value):
        raise Invalid(f"{name} must not hold control characters")
    return value.strip()


def _email(value: object) -> str:
    email = _value("email", value, FIELD_MAX["email"])
    if not EMAIL.fullmatch(email):
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
    known = set(STANDARD_FIELDS) | set(OPTIONAL_FIELDS) | {"answers"}
    unknown = sorted(str(k) for k in form if k not in known)
    if unknown:
        raise Invalid(f"unknown field: {', '.join(unknown)}")
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
    questions = {q.id: q for q in settings.questions}
    answers: dict[str, str | None] = {}
    for qid, answer in value.items():
        if qid not in questions and not (partial and isinstance(qid, str) and len(qid) <= 32):
            raise Invalid(f"answers: this form has no question {str(qid)[:32]!r}")
        text = None
        if answer is not None:
            text = _value(f"the answer to {qid}", answer, ANSWER_MAX, lines=True) or None
        if text is not None or partial:
            answers[str(qid)] = text
    if not partial:
        for q in settings.questions:
            if q.required and q.id not in answers:
                raise Invalid(f"the question {q.id!r} needs an answer")
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


class RegistrationService:
    """Registrations over a `Store`, their personal data sealed by a `PiiBox`."""

    def __init__(self, store: Store, pii: PiiBox) -> None:
        self.store = store
        self.pii = pii

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
            raise NotFound(f"no registration {registration_id!r} in meeting {meeting.id!r}")
        return row

    # -- settings and the form --

    async def configure(self, meeting_id: object, settings: object) -> RegistrationSettings:
        """Set the meeting's registration settings (all of them: what is not given takes its
        default)."""
        parsed = RegistrationSettings.parse(settings)
        meeting = await self._open_meeting(meeting_id)
        row = await self.store.update_meeting(meeting.id, registration=json.dumps(parsed.to_json()))
        if row is None:
            raise NotFound(f"no meeting {meeting.id!r}")
        return parsed

    async def settings(self, meeting_id: object) -> RegistrationSettings | None:
        return settings_of(await self._meeting(meeting_id))

    async def form(self, meeting_id: object) -> dict[str, Any]:
        """What a registrant fills in (public): the fields and questions, whether the meeting
        is full; 404 when the meeting takes no registrations."""
        meeting = await self._meeting(meeting_id)
        settings = settings_of(meeting)
        if settings is None or not settings.enabled:
            raise NotFound(f"meeting {meeting.id!r} takes no registrations")
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
        self, meeting_id: object, form: Mapping[str, Any], *, now: float
    ) -> dict[str, Any]:
        """A new registration: 201's body, with the join token (shown once) if approved."""
        meeting = await self._open_meeting(meeting_id)
        settings = settings_of(meeting)
        if settings is None or not settings.enabled:
            raise Conflict(f"meeting {meeting.id!r} takes no registrations")
        fields = clean_fields(form, settings)
        status = _status_for(settings, fields["email"])
        registration_id = new_id()
        token = auth.new_secret() if status == "approved" else None
        sealed, wrapped = self.pii.seal(registration_id, fields)
        try:
            row = await self.store.add_registration(
                meeting_id=meeting.id,
                status=status,
                sealed=sealed,
                wrapped_key=wrapped,
                email_tag=self.pii.email_tag(fields["email"]),
                token_digest=None if token is None else auth.secret_digest(token),
                created_at=now,
                registration_id=registration_id,
                capacity=settings.capacity,
            )
        except CapacityReached:
            raise Full(
                f"meeting {meeting.id!r} is full: its {settings.capacity} places are taken"
            ) from None
        except DuplicateKey:
            raise Conflict("this email is registered for this meeting already") from None
        except ForeignKeyViolation:
            raise NotFound(f"no meeting {meeting.id!r}") from None
        log.info("registration %s for meeting %s: %s", row.id, meeting.id, row.status)
        answer: dict[str, Any] = {"id": row.id, "meeting_id": meeting.id, "status": row.status}
        if token is not None:
            answer["join_token"] = token
        return answer

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

    async def registrants(self, meeting_id: object) -> list[dict[str, Any]]:
        meeting = await self._meeting(meeting_id)
        return [self.view(r) for r in await self.store.list_registrations(meeting.id)]

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
            raise Gone(f"registration {row.id!r} was erased: there is nothing to change")
        changed: list[str] = []
        sealed = email_tag = None
        if fields:
            settings = settings_of(meeting) or RegistrationSettings()
            corrections = clean_fields(fields, settings, partial=True)
            current = self._fields(row)
            if current is None or row.wrapped_key is None:
                raise Conflict(f"registration {row.id!r} does not open: it cannot be corrected")
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
                raise Ended(f"meeting {meeting.id!r} has ended: its registrations are closed")
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
            raise Gone(f"registration {row.id!r} was erased: there is nothing to change") from None
        except DuplicateKey:
            raise Conflict("another registration for this meeting has this email") from None
        if updated is None:
            raise NotFound(f"no registration {row.id!r}")
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
            raise Gone(f"registration {row.id!r} was erased already")
        erased = await self.store.erase_registrations(registration_ids=[row.id], erased_at=now)
        if not erased:
            raise Gone(f"registration {row.id!r} was erased already")
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
