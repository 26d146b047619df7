"""What the HTTP API takes: a pydantic model per request body (control/api/__init__.py says
how refusals read). strict: no "1" for 1 or "true" for true; forbid: a misspelt field is an
error, not ignored. Names and displayed fields refuse control and invisible characters
(control/text.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from control import puzzle
from control.meetings import NAME_MAX, TITLE_MAX
from control.registration import (
    ANSWER_MAX,
    CAPACITY_MAX,
    CODE_DIGITS,
    FIELD_MAX,
    LABEL_MAX,
    MAX_DOMAINS,
    MAX_QUESTIONS,
    OTHER_MAX,
)
from control.text import HIDDEN_MESSAGE, has_hidden_characters
from relay.srtp import SUITES

PASSWORD_MAX = 256
Suite = Literal[
    "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"
]
assert set(Suite.__args__) == set(SUITES)  # type: ignore[attr-defined]


def _visible(value: str) -> str:
    if has_hidden_characters(value):
        raise ValueError(HIDDEN_MESSAGE)
    return value


def _visible_lines(value: str) -> str:
    if has_hidden_characters(value, line_breaks=True):
        raise ValueError(HIDDEN_MESSAGE)
    return value


# A string people see (control/text.py): no control or invisible characters; free text (an
# answer) may also hold line breaks and tabs.
Visible = Annotated[str, AfterValidator(_visible)]
VisibleLines = Annotated[str, AfterValidator(_visible_lines)]


class Body(BaseModel):
    # strict: no "1" for 1 or "true" for true; forbid: a misspelt field is an error, not ignored
    model_config = ConfigDict(strict=True, extra="forbid")


class MeetingCreate(Body):
    title: Visible = Field(min_length=1, max_length=TITLE_MAX)
    mode: Literal["meeting", "webinar"] = "meeting"
    password: str | None = Field(
        None, min_length=1, max_length=PASSWORD_MAX, description="generated when not given"
    )
    panelist_password: str | None = Field(None, min_length=1, max_length=PASSWORD_MAX)
    suite: Suite | None = None


class MeetingPatch(Body):
    title: Visible = Field(min_length=1, max_length=TITLE_MAX)


class Controls(Body):
    locked: bool | None = None
    recording: bool | None = None


class StreamIn(Body):
    ssrc: int = Field(ge=0, le=0xFFFFFFFF)
    kind: Literal["audio", "video"] = "audio"
    pt: int | None = Field(None, ge=0, le=127, description="default: 111 audio, 96 video")
    codec: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="default: opus/48000/2 audio, VP8/90000 video",
    )

    def stream(self) -> dict[str, Any]:
        """As the meeting service takes it, with the defaults of its kind filled in."""
        pt, codec = STREAM_DEFAULTS[self.kind]
        return {
            "ssrc": self.ssrc,
            "kind": self.kind,
            "pt": pt if self.pt is None else self.pt,
            "codec": codec if self.codec is None else self.codec,
        }


STREAM_DEFAULTS = {"audio": (111, "opus/48000/2"), "video": (96, "VP8/90000")}


class ProofOfWorkIn(Body):
    challenge: str = Field(
        min_length=1,
        max_length=puzzle.MAX_CHALLENGE_CHARS,
        description="the challenge of the 428 proof_of_work_required answer, as given",
    )
    nonces: list[Annotated[int, Field(ge=0, le=puzzle.NONCE_LIMIT - 1)]] = Field(
        min_length=1,
        max_length=puzzle.MAX_SOLUTIONS,
        description="`solutions` nonces in increasing order, each making "
        "SHA-256(challenge || nonce as 8 bytes big-endian) begin with `difficulty` zero bits",
    )


class JoinIn(Body):
    password: str | None = Field(None, max_length=PASSWORD_MAX)
    name: Visible = Field(min_length=1, max_length=NAME_MAX)
    role: Literal["host", "panelist", "attendee"] | None = None
    host_key: str | None = Field(None, max_length=128)
    ssrcs: list[Annotated[int, Field(ge=0, le=0xFFFFFFFF)]] | None = Field(None, max_length=8)
    streams: list[StreamIn] | None = Field(None, max_length=8)
    receive_at: str | None = Field(None, max_length=64, description='"ip:port"')
    uplink: str | None = Field(
        None,
        max_length=128,
        description="base64 of master key || salt this participant sends with, for SDES "
        "clients that choose their own key (default: one is generated)",
    )
    registration_token: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="the one-time join token of an approved registration, instead of the "
        "meeting password (which alone does not admit while registration is enabled)",
    )
    proof_of_work: ProofOfWorkIn | None = Field(
        None,
        description="a solved challenge, needed with a password while the meeting is under "
        "attack (the join answers 428 proof_of_work_required with the challenge to solve)",
    )


class ParticipantPatch(Body):
    muted: bool | None = None
    role: Literal["host", "panelist", "attendee"] | None = None
    expel: bool | None = None


OptionalField = Literal["job_title", "company", "city", "country"]
QuestionId = Annotated[str, Field(min_length=1, max_length=32)]


class QuestionIn(Body):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="a-z, 0-9, _")
    label: Visible = Field(min_length=1, max_length=LABEL_MAX)
    required: bool = False


class RulesIn(Body):
    email_domains: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=MAX_DOMAINS
    )


class RegistrationSettingsIn(Body):
    enabled: bool = True
    approval: Literal["automatic", "manual", "rules"] = Field(
        "automatic",
        description="automatic: approved once the registrant confirms the email with the code "
        "mailed to it; manual: the host approves; rules: once the email is confirmed, approved "
        "when its domain is in rules.email_domains. automatic and rules need the server's "
        "smtp_url",
    )
    rules: RulesIn | None = None
    capacity: int | None = Field(None, ge=1, le=CAPACITY_MAX)
    questions: list[QuestionIn] = Field(default_factory=list, max_length=MAX_QUESTIONS)
    optional_fields: list[OptionalField] = Field(default_factory=list, max_length=4)


class RegistrationIn(Body):
    first_name: Visible = Field(min_length=1, max_length=FIELD_MAX["first_name"])
    last_name: Visible = Field(min_length=1, max_length=FIELD_MAX["last_name"])
    email: Visible = Field(min_length=3, max_length=FIELD_MAX["email"])
    job_title: Visible | None = Field(None, max_length=OTHER_MAX)
    company: Visible | None = Field(None, max_length=OTHER_MAX)
    city: Visible | None = Field(None, max_length=OTHER_MAX)
    country: Visible | None = Field(None, max_length=OTHER_MAX)
    answers: dict[QuestionId, Annotated[VisibleLines, Field(max_length=ANSWER_MAX)]] | None = Field(
        None, max_length=MAX_QUESTIONS
    )


class ConfirmIn(Body):
    code: str = Field(
        pattern=rf"^[0-9]{{{CODE_DIGITS}}}$",
        description=f"the {CODE_DIGITS} digits the confirmation email gave",
    )


class FieldsPatch(Body):
    first_name: Visible | None = Field(None, max_length=FIELD_MAX["first_name"])
    last_name: Visible | None = Field(None, max_length=FIELD_MAX["last_name"])
    email: Visible | None = Field(None, max_length=FIELD_MAX["email"])
    job_title: Visible | None = Field(None, max_length=OTHER_MAX)
    company: Visible | None = Field(None, max_length=OTHER_MAX)
    city: Visible | None = Field(None, max_length=OTHER_MAX)
    country: Visible | None = Field(None, max_length=OTHER_MAX)
    answers: (
        dict[QuestionId, Annotated[VisibleLines, Field(max_length=ANSWER_MAX)] | None] | None
    ) = Field(None, max_length=MAX_QUESTIONS)


class RegistrationPatch(Body):
    status: Literal["pending", "approved", "rejected"] | None = None
    fields: FieldsPatch | None = Field(
        None, description="corrections: the fields given replace those stored (null removes)"
    )
    new_token: bool | None = Field(
        None, description="issue a new join token (approved only): the old one stops working"
    )


class EraseIn(Body):
    email: str = Field(min_length=1, max_length=FIELD_MAX["email"])
