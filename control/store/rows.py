"""The rows the store returns.

One frozen dataclass per table (`MeetingRow`, `ParticipantRow`, `UsageRecord`,
`RegistrationRow`, `AuditRow`, `RoutingUpdate`): what every read and write of the store hands
back, on SQLite and PostgreSQL alike, in the vocabulary the services speak (relay/vocabulary.py,
control/answers.py): a role is a `Role`, a listener's address an `Address`, a stream a
`wire.Stream`. Conventions (README.md, "Serve it" and "Attendee data (privacy)"):

    - Times are float seconds since the epoch (DOUBLE PRECISION); None means "not yet".
    - Secrets never reach the store in clear: passwords and host keys arrive as hashes or
      digests, SRTP master keys sealed (encrypted) by the caller. So does personal data: a
      registrant's fields arrive sealed under their own data key, the data key wrapped, the
      email as a keyed tag and the join token as a digest. None of them shows in a row's
      repr(), so that logging a row leaks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from control.answers import Actor, RegistrationStatus, State
from relay.vocabulary import Address, Mode, Role, Suite
from relay.wire import Stream

__all__ = [
    "DEFAULT_PAGE",
    "MAX_WIRE_ID",
    "AuditRow",
    "MeetingRow",
    "ParticipantRow",
    "RegistrationRow",
    "RoutingUpdate",
    "UsageRecord",
]

DEFAULT_PAGE = 50
"""How many meetings `list_meetings` returns when no limit is given."""

MAX_WIRE_ID = 0xFFFFFFFF
"""Wire ids (meetings, participants) are unsigned 32-bit: the routing table's ids."""


@dataclass(frozen=True, slots=True)
class MeetingRow:
    """One row of `meetings`."""

    id: str
    title: str
    mode: Mode
    suite: Suite  # the SRTP suite of every participant's keys
    # Digests, not secrets in clear, but nothing gains from printing them: not in repr().
    password_hash: str = field(repr=False)
    panelist_password_hash: str | None = field(repr=False)
    host_key_digest: str = field(repr=False)
    state: State
    locked: bool
    recording: bool
    created_at: float
    ended_at: float | None
    wire_id: int = 0  # the routing table's u32 id; 0 until the backend assigns it
    # The features switched on at some point ('locked', 'recording', ...), sorted: kept even
    # when switched off again, so the usage record bills them (version 3).
    features: tuple[str, ...] = ()
    # The registration settings, a JSON object (control/registration.py), or None: the
    # meeting takes no registrations (version 4).
    registration: str | None = None


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    """One row of `participants`. The SRTP master keys are sealed: encrypted by the caller."""

    id: str
    meeting_id: str
    # The name and address are personal data and the keys are sealed secrets: not in repr(),
    # so that logging a row leaks none of them (README.md: "logs without personal data").
    name: str = field(repr=False)
    role: Role
    streams: tuple[Stream, ...]  # what it sends (stored as a JSON array)
    receive_at: Address | None = field(repr=False)  # for clients that only listen
    uplink_sealed: bytes = field(repr=False)
    downlink_sealed: bytes = field(repr=False)
    worker: int  # the worker it is homed on
    muted: bool
    expelled: bool
    joined_at: float
    left_at: float | None
    wire_id: int = 0  # the routing table's u32 id; 0 until the backend assigns it
    node: str | None = None  # the node it is homed on (version 7); None: before nodes


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One row of `usage_records`: what one meeting used, written once when it ends."""

    id: int  # increasing in the order the records were appended
    meeting_id: str  # not a foreign key: a usage record outlives its meeting
    started_at: float
    ended_at: float
    duration_s: float
    total_participants: int
    peak_participants: int
    participant_minutes: float
    features: tuple[str, ...]  # 'webinar', 'recording', ...
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class RegistrationRow:
    """One row of `registrations` (version 4): one person's registration for one meeting.

    The personal data is sealed by the caller (control/pii.py): `sealed` is the fields'
    ciphertext under the registrant's own data key, `wrapped_key` that data key encrypted
    under the server's key, `email_tag` a keyed hash of the email (to find a person across
    meetings), `token_digest` the SHA-256 of the one-time join token (None once used). An
    erased registration has `sealed` empty and the other three None. None of them is in
    repr().

    Version 5: an 'unconfirmed' registration waits for its registrant to confirm the email
    with the code mailed to it: `confirm_digest` is the code's keyed digest (None once used
    up or confirmed), `confirm_expires_at` when it stops working, `confirm_attempts` the
    wrong codes tried against it, `confirm_sends` the codes sent, `confirm_sent_at` when the
    last one was."""

    id: str
    meeting_id: str
    status: RegistrationStatus
    sealed: bytes = field(repr=False)
    wrapped_key: bytes | None = field(repr=False)
    email_tag: str | None = field(repr=False)
    token_digest: str | None = field(repr=False)
    participant_id: str | None  # who joined with its token (scrubbed too when it is erased)
    created_at: float
    updated_at: float
    erased_at: float | None
    confirm_digest: str | None = field(default=None, repr=False)
    confirm_expires_at: float | None = None
    confirm_attempts: int = 0
    confirm_sends: int = 0
    confirm_sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of `audit_log` (version 4): a host or operator action. Ids and flags only:
    `detail` is a JSON object that never holds personal data."""

    id: int  # increasing in the order the entries were appended
    at: float
    actor: Actor
    action: str  # 'meeting.create', 'participant.expel', 'registration.erase', ...
    meeting_id: str | None  # not a foreign key: the audit outlives the meeting
    target: str | None  # the id acted on (a participant, a registration), if any
    detail: str  # JSON object


@dataclass(frozen=True, slots=True)
class RoutingUpdate:
    """One row of `routing_log`: a numbered routing update as the workers received it."""

    seq: int
    created_at: float
    body: str  # JSON


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One row of `nodes` (version 6): a node sharing the database (control/nodes.py)."""

    name: str
    instance: str  # the registering process's random token
    api_url: str
    media_host: str  # what participants are told (its public host)
    media_port: int  # worker 0's
    workers: int
    capacity: int  # participants it takes
    load: int  # participants present on it at its last heartbeat
    started_at: float
    heartbeat_at: float
    draining: bool  # no new participants are placed there


@dataclass(frozen=True, slots=True)
class TrunkRow:
    """One row of `trunks` (version 7): a sender's streams carried from its node to another
    (control/trunks.py). Its two master keys are sealed, and never in repr()."""

    id: str
    meeting_id: str
    sender_id: str
    origin: str  # the node the sender is homed on
    edge: str  # the node its receivers there get it from
    origin_worker: int
    edge_worker: int
    out_wire_id: int  # the origin's end: a receiver
    in_wire_id: int  # the edge's end: a sender of the same SSRCs
    media_sealed: bytes = field(repr=False)  # origin -> edge
    feedback_sealed: bytes = field(repr=False)  # edge -> origin (RTCP)
    created_at: float = 0.0
