"""What the HTTP API takes: a pydantic model per request body (control/api/__init__.py says
how refusals read). strict: no "1" for 1 or "true" for true; forbid: a misspelt field is an
error, not ignored. Names and displayed fields refuse control and invisible characters
(control/text.py).

This is the one place input is checked: the services below take the typed values these
models give (the vocabulary's enums, `Address`, `wire.Stream`) and check only what needs the
stored state (docs/ARCHITECTURE.md, "Validation once, at the edge")."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from control import puzzle
from control.answers import Approval
from control.mail import ADDRESS
from control.meetings import MAX_STREAMS, NAME_MAX, TITLE_MAX
from control.registration import Decision
from control.registration_codes import CODE_DIGITS
from control.registration_form import Corrections, SignUp
from control.registration_settings import (
    ANSWER_MAX,
    CAPACITY_MAX,
    FIELD_MAX,
    LABEL_MAX,
    MAX_DOMAINS,
    MAX_QUESTIONS,
    OPTIONAL_FIELDS,
    OTHER_MAX,
    QUESTION_ID,
    STANDARD_FIELDS,
    OptionalField,
    Question,
    RegistrationSettings,
)
from control.sdp import check_streams
from control.settings import NODE_NAME
from control.text import HIDDEN_MESSAGE, has_hidden_characters
from relay.vocabulary import Address, Kind, Mode, Role, Suite
from relay.wire import Stream

PASSWORD_MAX = 256
RECEIVE_PORT_MIN = 1024  # below: system services, never a listener's media port


def _visible(value: str) -> str:
    if has_hidden_characters(value):
        raise ValueError(HIDDEN_MESSAGE)
    return value


def _visible_lines(value: str) -> str:
    if has_hidden_characters(value, line_breaks=True):
        raise ValueError(HIDDEN_MESSAGE)
    return value


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return _visible(value)


# A string people see (control/text.py): no control or invisible characters; free text (an
# answer) may also hold line breaks and tabs. A title or a name is more than blanks.
Visible = Annotated[str, AfterValidator(_visible)]
VisibleLines = Annotated[str, AfterValidator(_visible_lines)]
Named = Annotated[str, AfterValidator(_named)]


def _enum(default: object, description: str) -> Any:
    """A vocabulary enum field: its value as JSON gives it (strict mode would want the
    Python member itself)."""
    return Field(default, strict=False, description=description)


def listener_address(value: object) -> Address:
    """Where a listen-only client wants media: one unicast host and an unprivileged port.
    Multicast, broadcast, unspecified, link-local (169.254/16: cloud metadata services live
    there) and reserved addresses would turn the relay against networks, not send to a
    listener (docs/SECURITY.md, "No reflection: consent before media"). The messages never
    repeat the value."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be an 'ip:port' string")
    try:
        address = Address.parse(value)
    except ValueError:
        raise ValueError("must be 'ip:port', as in 192.0.2.1:5004 or [2001:db8::1]:5004") from None
    ip = ipaddress.ip_address(address.host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    reserved = ip.is_reserved and not ip.is_loopback  # ::1 lies in IPv6's reserved ::/8
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or reserved:
        raise ValueError(
            "must be the unicast address of the listener: not multicast, broadcast, "
            "unspecified, link-local or reserved"
        )
    if address.port < RECEIVE_PORT_MIN:
        raise ValueError(f"the port must be {RECEIVE_PORT_MIN}..65535")
    return address


# A listener's own address, "ip:port" on the wire and an `Address` for the services.
ListenerAddress = Annotated[
    Address,
    PlainValidator(listener_address),
    PlainSerializer(str),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 64,
            "description": '"ip:port" (IPv6: "[addr]:port"), unicast, port 1024..65535',
        }
    ),
]


class Body(BaseModel):
    # strict: no "1" for 1 or "true" for true; forbid: a misspelt field is an error, not ignored
    model_config = ConfigDict(strict=True, extra="forbid")


class MeetingCreate(Body):
    title: Named = Field(min_length=1, max_length=TITLE_MAX)
    mode: Mode = _enum(Mode.MEETING, "a webinar's attendees receive only")
    password: str | None = Field(
        None, min_length=1, max_length=PASSWORD_MAX, description="generated when not given"
    )
    panelist_password: str | None = Field(None, min_length=1, max_length=PASSWORD_MAX)
    suite: Suite | None = _enum(None, "the SRTP suite (default AES_CM_128_HMAC_SHA1_80)")


class MeetingPatch(Body):
    title: Named = Field(min_length=1, max_length=TITLE_MAX)


class ControlsIn(Body):
    locked: bool | None = None
    recording: bool | None = None


class StreamIn(Body):
    ssrc: int = Field(ge=0, le=0xFFFFFFFF)
    kind: Kind = _enum(Kind.AUDIO, "audio or video")
    pt: int | None = Field(None, ge=0, le=127, description="default: 111 audio, 96 video")
    codec: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="default: opus/48000/2 audio, VP8/90000 video",
    )

    def stream(self) -> Stream:
        """As the meeting service takes it, with the defaults of its kind filled in."""
        pt, codec = STREAM_DEFAULTS[self.kind]
        return Stream(
            self.ssrc,
            self.kind,
            pt if self.pt is None else self.pt,
            codec if self.codec is None else self.codec,
        )


STREAM_DEFAULTS = {Kind.AUDIO: (111, "opus/48000/2"), Kind.VIDEO: (96, "VP8/90000")}


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


NodeName = Annotated[str, Field(min_length=1, max_length=63, pattern=f"^{NODE_NAME.pattern}$")]


class JoinIn(Body):
    password: str | None = Field(None, max_length=PASSWORD_MAX)
    name: Named = Field(min_length=1, max_length=NAME_MAX)
    role: Role | None = _enum(None, "default: attendee in a webinar, panelist in a meeting")
    host_key: str | None = Field(None, max_length=128)
    ssrcs: list[Annotated[int, Field(ge=0, le=0xFFFFFFFF)]] | None = Field(
        None, max_length=MAX_STREAMS
    )
    streams: list[StreamIn] | None = Field(None, max_length=MAX_STREAMS)
    receive_at: ListenerAddress | None = None
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
    avoid_nodes: list[NodeName] | None = Field(
        None,
        max_length=8,
        description="nodes not to be placed on: a client joining again after the node it was "
        "on stopped answering names that node, which may not be found silent yet (README.md, "
        '"Several nodes")',
    )

    @model_validator(mode="after")
    def _one_way_to_declare(self) -> JoinIn:
        if self.ssrcs is not None and self.streams is not None:
            raise ValueError("give ssrcs or streams, not both")
        check_streams(self.declared())  # distinct SSRCs, payload types and codecs SDP takes
        return self

    def declared(self) -> list[Stream]:
        """The streams the participant will send, defaults filled in."""
        if self.streams is not None:
            return [s.stream() for s in self.streams]
        return [Stream(ssrc) for ssrc in self.ssrcs or ()]


class ParticipantPatch(Body):
    muted: bool | None = None
    role: Role | None = _enum(None, "a promotion to a role that sends issues new keys")
    expel: bool | None = None


# -- registration (control/registration.py): these models check every value, and build what
# the service takes (control/registration_settings.py, control/registration_form.py) --


def _trimmed(value: str) -> str:
    return value.strip()


def _filled(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _address(value: str) -> str:
    if not ADDRESS.fullmatch(value):
        raise ValueError("must be an email address, as in name@example.com")
    return value


DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


def _domain(value: str) -> str:
    domain = value.strip().lower()
    if not DOMAIN.fullmatch(domain):
        raise ValueError("must be a domain name, as in example.com")
    return domain


# A registrant's value: checked for hidden characters as sent (and its length, by the field),
# then trimmed; `Filled` is not empty once trimmed, `Email` is a plain address.
Trimmed = Annotated[str, AfterValidator(_visible), AfterValidator(_trimmed)]
Filled = Annotated[Trimmed, AfterValidator(_filled)]
Email = Annotated[Trimmed, AfterValidator(_address)]
Answer = Annotated[
    str, Field(max_length=ANSWER_MAX), AfterValidator(_visible_lines), AfterValidator(_trimmed)
]
QuestionId = Annotated[str, Field(pattern=QUESTION_ID, description="a-z, 0-9, _")]
Domain = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_domain)]


class QuestionIn(Body):
    id: QuestionId
    label: Filled = Field(min_length=1, max_length=LABEL_MAX)
    required: bool = False


class RulesIn(Body):
    email_domains: list[Domain] = Field(default_factory=list, max_length=MAX_DOMAINS)


class RegistrationSettingsIn(Body):
    enabled: bool = True
    approval: Approval = Field(
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

    @model_validator(mode="after")
    def _consistent(self) -> RegistrationSettingsIn:
        taken: set[str] = {*STANDARD_FIELDS, *OPTIONAL_FIELDS}
        for index, question in enumerate(self.questions):
            if question.id in taken:
                raise ValueError(
                    f"questions.{index}: its id is taken (by a field or another question)"
                )
            taken.add(question.id)
        if self.approval == "rules" and not (self.rules and self.rules.email_domains):
            raise ValueError("approval by rules needs rules.email_domains: the domains approved")
        return self

    def settings(self) -> RegistrationSettings:
        """As the service takes them: domains without repeats, the optional fields in the
        form's order."""
        domains = [] if self.rules is None else self.rules.email_domains
        return RegistrationSettings(
            enabled=self.enabled,
            approval=self.approval,
            email_domains=tuple(dict.fromkeys(domains)),
            capacity=self.capacity,
            questions=tuple(Question(q.id, q.label, q.required) for q in self.questions),
            optional_fields=tuple(f for f in OPTIONAL_FIELDS if f in self.optional_fields),
        )


class RegistrationIn(Body):
    first_name: Filled = Field(min_length=1, max_length=FIELD_MAX["first_name"])
    last_name: Filled = Field(min_length=1, max_length=FIELD_MAX["last_name"])
    email: Email = Field(min_length=3, max_length=FIELD_MAX["email"])
    job_title: Trimmed | None = Field(None, max_length=OTHER_MAX)
    company: Trimmed | None = Field(None, max_length=OTHER_MAX)
    city: Trimmed | None = Field(None, max_length=OTHER_MAX)
    country: Trimmed | None = Field(None, max_length=OTHER_MAX)
    answers: dict[QuestionId, Answer] | None = Field(None, max_length=MAX_QUESTIONS)

    def sign_up(self) -> SignUp:
        """As the service takes it: the optional fields given (null is not given)."""
        optional: dict[OptionalField, str | None] = {
            "job_title": self.job_title,
            "company": self.company,
            "city": self.city,
            "country": self.country,
        }
        return SignUp(
            first_name=self.first_name,
            last_name=self.last_name,
            email=self.email,
            optional={name: value for name, value in optional.items() if value is not None},
            answers=dict(self.answers or {}),
        )


class ConfirmIn(Body):
    code: str = Field(
        pattern=rf"^[0-9]{{{CODE_DIGITS}}}$",
        description=f"the {CODE_DIGITS} digits the confirmation email gave",
    )


class FieldsPatch(Body):
    """Corrections: the fields given replace those stored; null (or an empty value) removes
    an optional field or an answer, never a first or last name or the email."""

    first_name: Filled | None = Field(None, max_length=FIELD_MAX["first_name"])
    last_name: Filled | None = Field(None, max_length=FIELD_MAX["last_name"])
    email: Email | None = Field(None, max_length=FIELD_MAX["email"])
    job_title: Trimmed | None = Field(None, max_length=OTHER_MAX)
    company: Trimmed | None = Field(None, max_length=OTHER_MAX)
    city: Trimmed | None = Field(None, max_length=OTHER_MAX)
    country: Trimmed | None = Field(None, max_length=OTHER_MAX)
    answers: dict[QuestionId, Answer | None] | None = Field(None, max_length=MAX_QUESTIONS)

    @field_validator("first_name", "last_name", "email")
    @classmethod
    def _kept(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("is required: it may be corrected, not removed")
        return value

    def corrections(self) -> Corrections:
        """As the service takes them: the fields given (an empty one removed), the answers
        when given."""
        values: dict[str, str | None] = {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "job_title": self.job_title,
            "company": self.company,
            "city": self.city,
            "country": self.country,
        }
        given = self.model_fields_set
        answers = None
        if "answers" in given:
            answers = {qid: text or None for qid, text in (self.answers or {}).items()}
        return Corrections(
            fields={name: value or None for name, value in values.items() if name in given},
            answers=answers,
        )


class RegistrationPatch(Body):
    status: Decision | None = None
    fields: FieldsPatch | None = Field(
        None, description="corrections: the fields given replace those stored (null removes)"
    )
    new_token: bool | None = Field(
        None, description="issue a new join token (approved only): the old one stops working"
    )

    @model_validator(mode="after")
    def _something(self) -> RegistrationPatch:
        corrects = self.fields is not None and bool(self.fields.model_fields_set)
        if self.status is None and not corrects and not self.new_token:
            raise ValueError("nothing to change: give status, fields or new_token")
        return self

    def corrections(self) -> Corrections | None:
        if self.fields is None or not self.fields.model_fields_set:
            return None
        return self.fields.corrections()


class EraseIn(Body):
    email: Email = Field(min_length=1, max_length=FIELD_MAX["email"])
