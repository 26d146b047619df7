"""What the HTTP API answers, one TypedDict per answer, in the shared vocabulary
(relay/vocabulary.py).

The server declares these as its routes' response models (control/api/): FastAPI checks each
answer against them and the OpenAPI description documents every one. The Python client
(control/client.py) returns the same types, so the schema a program reads is the one the
server keeps. They are TypedDicts (typing_extensions': pydantic reads those on Python 3.11),
plain JSON objects at run time: the client needs neither
pydantic nor a conversion step, and an answer prints and compares as the JSON it came from.

A field added to an answer is added here, and nowhere else: the server drops (and the tests
notice) any key an answer's type does not name.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict

from relay.vocabulary import Kind, Mode, Role, Suite

__all__ = [
    "Actor",
    "AuditEntry",
    "Controls",
    "CreatedMeeting",
    "EndedMeeting",
    "Erased",
    "ErasedRegistration",
    "FfmpegArguments",
    "FormField",
    "FormQuestion",
    "Health",
    "JoinAnswer",
    "JoinThrottle",
    "Lobby",
    "Media",
    "Meeting",
    "MeetingDetail",
    "Node",
    "Participant",
    "ParticipantState",
    "ParticipantUpdate",
    "SentStream",
    "Question",
    "Recording",
    "Registered",
    "Registration",
    "RegistrationForm",
    "RegistrationRules",
    "RegistrationSettings",
    "RelayAddress",
    "SrtpKeys",
    "Status",
    "Stream",
    "UsageRecord",
    "UsageSoFar",
    "WorkerStatus",
]

State = Literal["open", "ended"]
Actor = Literal["operator", "host", "system"]  # who did what an audit entry records
Approval = Literal["automatic", "manual", "rules"]
RegistrationStatus = Literal["unconfirmed", "pending", "approved", "rejected"]


# --- meetings ---------------------------------------------------------------------------------


class RegistrationRules(TypedDict):
    email_domains: list[str]  # approval "rules": the domains approved once confirmed


class Question(TypedDict):
    id: str
    label: str
    required: bool


class RegistrationSettings(TypedDict):
    """A meeting's registration (control/registration.py): on or off, how registrants are
    approved, how many places, and what the form asks beyond name and email."""

    enabled: bool
    approval: Approval
    rules: RegistrationRules
    capacity: int | None  # None: no limit
    questions: list[Question]
    optional_fields: list[str]  # of job_title, company, city, country


class Meeting(TypedDict):
    id: str
    title: str
    mode: Mode
    suite: Suite
    state: State
    locked: bool
    recording: bool
    created_at: float  # seconds since the epoch
    ended_at: float | None
    registration: RegistrationSettings | None  # None: registration was never configured


class JoinThrottle(TypedDict):
    """How the meeting's password joins are held back after failed ones: while
    `proof_of_work`, each needs a proof of `solutions` nonces of `difficulty` zero bits."""

    locked_out: bool  # always False: there is no meeting-wide lockout (kept for old clients)
    retry_after: float  # always 0.0, likewise
    recent_failures: int  # wrong passwords within the last 60 s, from every client
    proof_of_work: NotRequired[bool]
    difficulty: NotRequired[int]  # 0 when no proof is needed
    solutions: NotRequired[int]


class MeetingDetail(Meeting):
    """A meeting read by id: the meeting and its join throttle."""

    join_throttle: JoinThrottle


class CreatedMeeting(Meeting):
    """A meeting just created. The host key, and the password when the server generated it
    (none was given), are shown this once."""

    host_key: str
    password: NotRequired[str]


class Controls(TypedDict):
    locked: bool
    recording: bool


class UsageRecord(TypedDict):
    """What one meeting used, written once when it ended."""

    id: int
    meeting_id: str
    started_at: float
    ended_at: float
    duration_s: float
    total_participants: int
    peak_participants: int
    participant_minutes: float
    features: list[str]  # "webinar", "locked", "recording"
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int


class EndedMeeting(TypedDict):
    id: str
    state: Literal["ended"]
    usage: UsageRecord


# --- joining and participants -----------------------------------------------------------------


class Stream(TypedDict):
    """A stream a participant sends, as its receivers' SDP describes it."""

    ssrc: int
    kind: Kind
    pt: int
    codec: str


class RelayAddress(TypedDict):
    host: str
    port: int


class SrtpKeys(TypedDict):
    """The participant's SRTP master keys: base64 of master key || master salt (RFC 4568)."""

    suite: Suite
    uplink: str  # what the participant sends with
    downlink: str  # what it receives with


class FfmpegArguments(TypedDict):
    """ffmpeg's arguments from a join answer (control/ffmpeg.py): one RTP output per declared
    stream, and for a listener the input (the answer's `sdp` written to join.sdp)."""

    outputs: list[list[str]]
    input: NotRequired[list[str]]


class JoinAnswer(TypedDict):
    participant_id: str
    role: Role
    relay: RelayAddress  # where to send (and what sends to it)
    srtp: SrtpKeys
    sdp: str
    recording: bool  # participants are told when the meeting is recorded
    ffmpeg: FfmpegArguments | None  # None: ffmpeg cannot speak the meeting's suite
    node: str  # the node it is homed on (control/placement.py); "" for a server on its own
    # The APIs of the nodes that take newcomers now, its own node's first: where to join again
    # should that node stop answering (control/client.py `join_again`). Empty on its own.
    apis: list[str]


class Reception(TypedDict):
    """What a receiver's latest RTCP receiver report said of a stream it gets (RFC 3550
    section 6.4; ext/reports.pxi)."""

    loss: float  # the fraction of packets lost since its previous report, 0..1
    jitter_ms: float  # interarrival jitter
    rtt_ms: float | None  # between the relay and it (None: not known yet)


class Media(TypedDict):
    """What the workers last reported of one participant."""

    address_known_at: float | None  # when its media address was learnt (None: not yet)
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    reception: Reception | None  # None: it has sent no receiver report


class Participant(TypedDict):
    id: str
    name: str
    role: Role
    worker: int
    muted: bool
    expelled: bool
    joined_at: float
    left_at: float | None
    streams: list[Stream]
    recording: bool  # being recorded now
    media: Media


class ParticipantUpdate(TypedDict):
    """A participant changed. An expelled participant's answer is `{"id", "expelled"}`; a
    promotion that lets an attendee send carries its new keys as a join answer does."""

    id: str
    expelled: bool
    role: NotRequired[Role]
    muted: NotRequired[bool]
    relay: NotRequired[RelayAddress]
    srtp: NotRequired[SrtpKeys]
    sdp: NotRequired[str]
    ffmpeg: NotRequired[FfmpegArguments | None]


# --- registration -----------------------------------------------------------------------------


class FormField(TypedDict):
    id: str
    required: bool
    max_length: int


class FormQuestion(Question):
    max_length: int


class RegistrationForm(TypedDict):
    """What a registrant fills in (public)."""

    meeting_id: str
    open: bool
    approval: Approval
    full: bool  # every place is taken
    fields: list[FormField]
    questions: list[FormQuestion]


class Registered(TypedDict):
    """A registration made, confirmed or sent a new code. The join token of an approved one
    is shown once, in the answer that approved it."""

    id: str
    meeting_id: str
    status: RegistrationStatus
    code_expires_at: NotRequired[float | None]  # a code was mailed: it works until then
    join_token: NotRequired[str]


class Registration(TypedDict):
    """A registrant as the host sees it; an erased one has no fields."""

    id: str
    meeting_id: str
    status: RegistrationStatus
    created_at: float
    updated_at: float
    erased: bool
    erased_at: float | None
    joined: bool
    participant_id: str | None
    fields: dict[str, Any] | None  # the form's fields, and "answers" to its questions
    join_token: NotRequired[str]  # an approval (or a new token): shown this once


class ErasedRegistration(TypedDict):
    id: str
    meeting_id: str


class Erased(TypedDict):
    """A person erased by email from every meeting's registrations."""

    erased: int
    registrations: list[ErasedRegistration]


# --- reports ----------------------------------------------------------------------------------


class Recording(TypedDict):
    name: str
    worker: int
    started_at: float
    bytes: int
    deleted_after: float  # seconds since the epoch: the file goes then


class AuditEntry(TypedDict):
    """One host or operator action (control/audit.py)."""

    id: int
    at: float
    actor: Actor
    action: str  # e.g. "meeting.lock", "participant.expel", "registration.read"
    meeting_id: str | None
    target: str | None  # the participant, registration or recording acted on
    detail: dict[str, Any]  # ids, flags and numbers only


class Health(TypedDict):
    status: str
    routing_seq: int
    workers_expected: int
    workers_reporting: int
    meetings: int
    participants: int


# --- what the web console reads (control/api/live.py) -----------------------------------------


class Lobby(TypedDict):
    """What anyone with a meeting's link may know before joining (public): what the join
    page shows and asks for."""

    id: str
    title: str
    mode: Mode
    state: State
    locked: bool
    recording: bool  # the notice a joiner must see
    registration: bool  # joining takes a registration's join token, not the password


class UsageSoFar(TypedDict):
    """A meeting's usage: while it is open, the figures so far (what its usage record would
    say if it ended now); once ended, its usage record's."""

    meeting_id: str
    final: bool  # the meeting has ended: these are its usage record's figures
    started_at: float
    duration_s: float
    present: int  # participants present now (0 once ended)
    total_participants: int
    peak_participants: int
    participant_minutes: float
    features: list[str]
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int


class SentStream(TypedDict):
    ssrc: int
    kind: str  # audio or video ("application" for a stream SDP describes so)


class ParticipantState(TypedDict):
    """A WebRTC participant's own state, as its session's event stream tells it."""

    state: Literal["present", "left", "expelled", "ended"]
    role: Role
    muted: bool
    recording: bool  # its meeting is being recorded
    streams: list[SentStream]  # what the meeting's present senders send now, but its own


class WorkerStatus(TypedDict):
    worker: int
    up: bool  # reported within the last few seconds
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int
    dropped: int
    restarts: int


class Status(TypedDict):
    """The node at a glance, for the operator (totals since start: a client takes rates
    from two of them and their `at`)."""

    at: float  # seconds since the epoch
    health: Health
    workers: list[WorkerStatus]
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int
    drops: dict[str, int]  # by reason (the fast path's vocabulary)
    joins: int
    join_failures: dict[str, int]  # by reason
    meetings: list[Meeting]  # the open ones, newest first (at most 200)
    present: dict[str, int]  # meeting id -> participants present
    ended: list[Meeting]  # ended ones, the newest first (at most 20)
    nodes: list[Node]  # the nodes sharing the database (control/nodes.py)


class Node(TypedDict):
    """A node sharing the database (control/nodes.py)."""

    name: str
    state: Literal["up", "draining", "gone"]
    api_url: str
    media: RelayAddress  # worker 0's, as participants are told
    workers: int
    capacity: int  # participants it takes
    load: int  # participants present on it at its last heartbeat
    started_at: float
    heartbeat_at: float
