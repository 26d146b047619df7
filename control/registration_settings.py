"""A meeting's registration settings and the limits of its form (the rules they serve:
control/registration.py).

The settings are set whole (`PUT /v1/meetings/ID/registration`): the HTTP API's request model
checks them (control/api/requests.py, `RegistrationSettingsIn`) and builds the
`RegistrationSettings` below, which the service stores as JSON in the meeting's row
(`to_json`). `settings_of` reads that JSON back: it was written by `to_json`, so it is taken
as it is (a key missing from an older row takes its default), not checked again.

The limits here are the form's: the request models take their lengths from them, and the public
form (`form_of`) tells a registrant what they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from control import answers
from control.answers import Approval
from control.store import MeetingRow

__all__ = [
    "CONFIRMED_BY_EMAIL",
    "OPTIONAL_FIELDS",
    "STANDARD_FIELDS",
    "OptionalField",
    "Question",
    "RegistrationSettings",
    "form_of",
    "registration_enabled",
    "settings_of",
]

StandardField = Literal["first_name", "last_name", "email"]
OptionalField = Literal["job_title", "company", "city", "country"]
STANDARD_FIELDS: tuple[StandardField, ...] = ("first_name", "last_name", "email")
OPTIONAL_FIELDS: tuple[OptionalField, ...] = ("job_title", "company", "city", "country")

# The lengths of the form's values, in characters (before trimming).
FIELD_MAX: dict[StandardField, int] = {"first_name": 100, "last_name": 100, "email": 254}
OTHER_MAX = 200  # an optional field
ANSWER_MAX = 1000
# The settings' own limits.
LABEL_MAX = 200
MAX_QUESTIONS = 20
MAX_DOMAINS = 100
CAPACITY_MAX = 1_000_000
QUESTION_ID = r"^[a-z][a-z0-9_]{0,31}$"  # a question's id, and the key of its answers

# The approvals that wait for the registrant to confirm the email with a mailed code.
CONFIRMED_BY_EMAIL: tuple[Approval, ...] = ("automatic", "rules")


@dataclass(frozen=True)
class Question:
    id: str
    label: str
    required: bool = False


@dataclass(frozen=True)
class RegistrationSettings:
    """A meeting's registration, as checked: domains lower case without repeats, question ids
    unique and none a field's name, the optional fields in the form's order."""

    enabled: bool = True
    approval: Approval = "automatic"
    email_domains: tuple[str, ...] = ()  # approval "rules": the domains approved
    capacity: int | None = None  # registrations pending or approved; None: no limit
    questions: tuple[Question, ...] = ()
    optional_fields: tuple[OptionalField, ...] = ()

    def to_json(self) -> answers.RegistrationSettings:
        """The settings as the API answers them and the meeting's row stores them."""
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
    def from_json(cls, stored: Mapping[str, Any]) -> RegistrationSettings:
        """The settings `to_json` wrote (trusted: nothing here is checked again)."""
        rules = stored.get("rules") or {}
        return cls(
            enabled=stored.get("enabled", True),
            approval=stored.get("approval", "automatic"),
            email_domains=tuple(rules.get("email_domains", ())),
            capacity=stored.get("capacity"),
            questions=tuple(
                Question(q["id"], q["label"], q.get("required", False))
                for q in stored.get("questions", ())
            ),
            optional_fields=tuple(stored.get("optional_fields", ())),
        )


def settings_of(meeting: MeetingRow) -> RegistrationSettings | None:
    """The meeting's registration settings; None when it never had any."""
    if meeting.registration is None:
        return None
    return RegistrationSettings.from_json(json.loads(meeting.registration))


def registration_enabled(meeting: MeetingRow) -> bool:
    """Whether the meeting takes registrations (and so the password alone admits nobody)."""
    settings = settings_of(meeting)
    return settings is not None and settings.enabled


def form_of(
    meeting: MeetingRow, settings: RegistrationSettings, *, full: bool
) -> answers.RegistrationForm:
    """The public form: the fields and questions with their lengths, and whether it is full."""
    fields: list[answers.FormField] = [
        {"id": name, "required": True, "max_length": FIELD_MAX[name]} for name in STANDARD_FIELDS
    ]
    fields += [
        {"id": name, "required": False, "max_length": OTHER_MAX}
        for name in settings.optional_fields
    ]
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
