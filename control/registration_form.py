"""A registrant's fields: what a registration form brings (`SignUp`), what a host corrects
(`Corrections`), the checks that need the meeting's form, the approval rule, and the CSV export
(the rules they serve: control/registration.py).

The HTTP API's request models have checked each value already (control/api/requests.py):
trimmed, within its length, free of control and invisible characters (control/text.py), names
not empty, the email a plain address (control/mail.py), answers keyed by well-formed question
ids. What is left here needs the meeting's settings: an optional field the form asks for, a
question it has, a required question answered. No refusal repeats a value it refuses
(control/errors.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from control.answers import Registration
from control.errors import Invalid
from control.pii import normalise_email
from control.registration_settings import (
    OPTIONAL_FIELDS,
    STANDARD_FIELDS,
    OptionalField,
    RegistrationSettings,
)

__all__ = ["Corrections", "SignUp", "fields_of", "merge", "registrants_csv", "status_for"]


@dataclass(frozen=True)
class SignUp:
    """A registration form as the API took it (`RegistrationIn`): first name, last name and
    email, the optional fields given (a value may be empty: nothing is kept for it) and the
    answers given (likewise)."""

    first_name: str
    last_name: str
    email: str
    optional: Mapping[OptionalField, str] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)  # question id -> answer


@dataclass(frozen=True)
class Corrections:
    """A host's corrections as the API took them (`FieldsPatch`): each field given with its
    new value (None: removed, which a first or last name or the email never is); `answers`,
    when given, the answers to change (None: removed). Any optional field may be corrected,
    not only those the form asks for now: the host corrects what was given."""

    fields: Mapping[str, str | None] = field(default_factory=dict)
    answers: Mapping[str, str | None] | None = None

    @property
    def names(self) -> list[str]:
        """What is corrected, for the audit log: field names, and "answers"."""
        return sorted([*self.fields, *([] if self.answers is None else ["answers"])])


def fields_of(form: SignUp, settings: RegistrationSettings) -> dict[str, Any]:
    """The fields to seal for a new registration: Invalid when the form does not fit the
    meeting's (an optional field it does not ask for, an answer to a question it does not
    have, a required question without an answer)."""
    fields: dict[str, Any] = {
        "first_name": form.first_name,
        "last_name": form.last_name,
        "email": form.email,
    }
    for name in OPTIONAL_FIELDS:
        if name not in form.optional:
            continue
        if name not in settings.optional_fields:
            raise Invalid(f"this form does not ask for {name}")
        fields[name] = form.optional[name] or None
    # A question is named by its place in the form (1, 2, ...), never by the key sent.
    places = {q.id: n for n, q in enumerate(settings.questions, 1)}
    answers: dict[str, str] = {}
    for qid, answer in form.answers.items():
        if qid not in places:
            raise Invalid("answers: this form has no such question (answers are keyed by id)")
        if answer:
            answers[qid] = answer
    for q in settings.questions:
        if q.required and q.id not in answers:
            raise Invalid(f"answers: question {places[q.id]} ({q.id}) needs an answer")
    fields["answers"] = answers
    return fields


def merge(current: Mapping[str, Any], changes: Corrections) -> dict[str, Any]:
    """The fields with the corrections made."""
    merged = dict(current)
    for name, value in changes.fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    if changes.answers is not None:
        answers = dict(merged.get("answers") or {})
        for qid, answer in changes.answers.items():
            if answer is None:
                answers.pop(qid, None)
            else:
                answers[qid] = answer
        merged["answers"] = answers
    return merged


def status_for(settings: RegistrationSettings, email: str) -> Literal["approved", "pending"]:
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


def registrants_csv(views: Sequence[Registration], settings: RegistrationSettings) -> str:
    """The registrations as CSV: one row each, the standard and optional fields, then one
    column per question (`answer:<id>`, the form's questions and any other answered);
    erased ones with their fields empty."""
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
            [_cell(c) for c in (v["id"], v["status"], v["created_at"], v["updated_at"])]
            + [_cell(v["erased"]), _cell(v["joined"])]
            + [_cell(fields.get(n)) for n in names]
            + [_cell(answers.get(q)) for q in questions]
        )
    return out.getvalue()
