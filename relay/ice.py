"""ICE-lite for one worker's UDP port: answer connectivity checks, follow nominations, keep
consent (RFC 8445 sections 2.5 and 7.3, RFC 7675). Sans-IO: datagrams and `now` in, responses
and events out; no sockets, no clock. The whole state machine is this module's `IceLite`.

    ice = IceLite()
    ice.add(7, local_ufrag, local_pwd, remote_ufrag)      # from the offer/answer
    result = ice.receive(datagram, address, now)          # a STUN datagram from the port
    if result.response is not None:
        sock.sendto(result.response, address)
    if result.selected is not None:                       # media now goes there
        latch(result.selected.participant, result.selected.address)
    if now >= (ice.next_expiry() or math.inf):            # e.g. checked once a second
        for gone in ice.expired(now):
            unlatch(gone.participant, gone.address)       # media must stop

What a lite agent does. It has host candidates only and sends no checks of its own (section
2.5); next to a full agent (a browser) it is always the controlled one (section 6.1.1). Its
work is responding (section 7.3): to each Binding request that authenticates with the local
password it sends a success response carrying the source address (XOR-MAPPED-ADDRESS), and a
request that nominates (USE-CANDIDATE) makes its source the participant's selected address,
the one media is sent to (section 7.3.2, the lite agent's part). A lite agent learns no
peer-reflexive candidates and starts no triggered checks (section 7.3.1 is for full agents).

What is never answered. A request that does not authenticate is dropped without a word and
counted under a named reason (`counters`): the source address of a UDP datagram is not
proven, and answering a forged one would make this port reflect traffic at whoever's address
was forged in. Only the participant's password, which travelled in the signalling, makes a
request worth an answer.

Consent (RFC 7675). Media may be sent to an address only while its owner keeps saying yes. A
full agent asks (its own Binding requests every 5 s, section 5.1); a lite agent sends none, so
here the peer's authenticated checks from the selected address are the evidence: the peer
sends them as consent checks of its own. After 30 s without one (section 5.1, "consent expires
after 30 seconds") the address is unselected and `expired` reports it. What this cannot tell
is a fresh check from a replayed one: someone who recorded a valid check and can send with the
selected address as source could keep consent alive (RFC 7675's security considerations);
the worker can add its own evidence (authenticated SRTCP from the peer, which has replay
protection) if that matters.

Selected address. The most recent nominating check wins, not the first: a browser on a
network change or behind a NAT that rebinds nominates again from its new address (the
renomination that RFC 8445 section 8.1.1 otherwise leaves to an ICE restart), and media must
follow it. Only an authenticated request can move it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from relay import stun
from relay.errors import StunError

__all__ = [
    "CHECK_VALID",
    "CONSENT_TIMEOUT",
    "DROP_FINGERPRINT",
    "DROP_INTEGRITY",
    "DROP_MALFORMED",
    "DROP_NOT_REQUEST",
    "DROP_REMOTE_UFRAG",
    "DROP_UNKNOWN_UFRAG",
    "OUTCOMES",
    "PASSWORD",
    "REFUSED_ROLE_CONFLICT",
    "REFUSED_UNKNOWN_ATTRIBUTE",
    "UFRAG",
    "AddressSelected",
    "CheckSucceeded",
    "ConsentExpired",
    "IceLite",
    "IceResult",
]

#: Seconds without a valid check from the selected address before consent expires (RFC 7675
#: section 5.1). The peer checks every 4 to 6 s, so this is some five lost checks in a row.
CONSENT_TIMEOUT = 30.0

# What became of each datagram `receive` was given: the keys of `IceLite.counters`.
# Dropped, never answered:
DROP_MALFORMED = "malformed"  # not a STUN message that parses (relay/stun.py)
DROP_NOT_REQUEST = "not_request"  # a response, an indication (a keepalive) or another method
DROP_FINGERPRINT = "fingerprint"  # FINGERPRINT missing or wrong (RFC 8445 section 7)
DROP_UNKNOWN_UFRAG = "unknown_ufrag"  # no USERNAME "<a local ufrag>:<theirs>" (section 7.3)
DROP_INTEGRITY = "integrity"  # MESSAGE-INTEGRITY missing or not under that local password
DROP_REMOTE_UFRAG = "remote_ufrag"  # authenticated, but the sender's ufrag is not the SDP's
# Authenticated, so answered with an error response, and no check:
REFUSED_UNKNOWN_ATTRIBUTE = "unknown_attribute"  # 420 (RFC 8489 section 6.3.1)
REFUSED_ROLE_CONFLICT = "role_conflict"  # 487 (RFC 8445 section 7.3.1.1)
# Answered with a success response:
CHECK_VALID = "valid"

OUTCOMES = (
    DROP_MALFORMED,
    DROP_NOT_REQUEST,
    DROP_FINGERPRINT,
    DROP_UNKNOWN_UFRAG,
    DROP_INTEGRITY,
    DROP_REMOTE_UFRAG,
    REFUSED_UNKNOWN_ATTRIBUTE,
    REFUSED_ROLE_CONFLICT,
    CHECK_VALID,
)

# ice-char = ALPHA / DIGIT / "+" / "/"; a ufrag has 4 to 256, a password 22 to 256 (RFC 8839
# section 5.4). No ':' can occur, so the USERNAME splits at its first one.
UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")
PASSWORD = re.compile(r"[A-Za-z0-9+/]{22,256}")


@dataclass(frozen=True, slots=True)
class CheckSucceeded:
    """A Binding request authenticated and was answered with a success response."""

    participant: int
    address: tuple[str, int]  # where it came from, where the response goes
    nominated: bool  # it carried USE-CANDIDATE


@dataclass(frozen=True, slots=True)
class AddressSelected:
    """A nomination moved the participant's selected address: media goes to `address` now."""

    participant: int
    address: tuple[str, int]
    previous: tuple[str, int] | None  # the address it replaces, None for the first


@dataclass(frozen=True, slots=True)
class ConsentExpired:
    """No valid check came from the selected address for CONSENT_TIMEOUT seconds: the address
    is unselected and media to it must stop (RFC 7675 section 5.1)."""

    participant: int
    address: tuple[str, int]


class IceResult(NamedTuple):
    """What `IceLite.receive` made of one datagram."""

    response: bytes | None  # to send back to the datagram's source address
    check: CheckSucceeded | None  # when it was a valid check
    selected: AddressSelected | None  # when that check moved the selected address
    outcome: str  # one of OUTCOMES, as counted


@dataclass(slots=True)
class _Peer:
    participant: int
    local_ufrag: str
    key: bytes  # the local password's bytes: the MESSAGE-INTEGRITY key (RFC 8489 section 9.1.1)
    remote_ufrag: str | None  # from the peer's SDP; None accepts any
    selected: tuple[str, int] | None = None


_DROPPED = {outcome: IceResult(None, None, None, outcome) for outcome in OUTCOMES}


class IceLite:
    """The ICE-lite responder of one worker: every participant's checks arrive on one port
    and are told apart by the local ufrag in their USERNAME (a dict: O(1) per request).

    Attributes:
        counters: how many datagrams `receive` saw per outcome (OUTCOMES), for the metrics.
    """

    def __init__(self) -> None:
        self._by_ufrag: dict[str, _Peer] = {}
        self._by_participant: dict[int, _Peer] = {}
        # Participants with a selected address, least recently refreshed first, each with the
        # time of its last valid check from that address. A refresh moves it to the end, so
        # the ones to expire are always at the front: `expired` and `next_expiry` look at as
        # many entries as expire (plus one), never at all of them, and a refresh is O(1).
        # That needs `now` not to go backwards (time.monotonic()).
        self._consent: OrderedDict[int, float] = OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def __len__(self) -> int:
        return len(self._by_participant)

    def __contains__(self, participant: object) -> bool:
        return participant in self._by_participant

    def add(
        self, participant: int, local_ufrag: str, local_pwd: str, remote_ufrag: str | None
    ) -> None:
        """Accept checks for a participant: those whose USERNAME is `local_ufrag:remote_ufrag`
        (any remote ufrag when None) and whose MESSAGE-INTEGRITY is keyed with `local_pwd`.

        Adding a participant again replaces its credentials (an ICE restart, RFC 8445 section
        9) and keeps its selected address: media goes on until the peer nominates anew.

        Raises:
            ValueError: a ufrag or password that is not ice-chars of the allowed length (RFC
                8839 section 5.4), or a local ufrag that another participant has.
        """
        if not UFRAG.fullmatch(local_ufrag):
            raise ValueError("a local ufrag is 4 to 256 ice-chars (RFC 8839 section 5.4)")
        if not PASSWORD.fullmatch(local_pwd):
            raise ValueError("a local password is 22 to 256 ice-chars (RFC 8839 section 5.4)")
        if remote_ufrag is not None and not UFRAG.fullmatch(remote_ufrag):
            raise ValueError("a remote ufrag is 4 to 256 ice-chars (RFC 8839 section 5.4)")
        owner = self._by_ufrag.get(local_ufrag)
        if owner is not None and owner.participant != participant:
            raise ValueError(f"local ufrag {local_ufrag!r} belongs to another participant")
        peer = self._by_participant.get(participant)
        if peer is None:
            peer = _Peer(participant, local_ufrag, local_pwd.encode("ascii"), remote_ufrag)
            self._by_participant[participant] = peer
        else:
            del self._by_ufrag[peer.local_ufrag]
            peer.local_ufrag = local_ufrag
            peer.key = local_pwd.encode("ascii")
            peer.remote_ufrag = remote_ufrag
        self._by_ufrag[local_ufrag] = peer

    def remove(self, participant: int) -> tuple[str, int] | None:
        """Forget a participant; its later checks are `unknown_ufrag`. Returns the address it
        had selected (to unlatch), None if none or if it was not known."""
        peer = self._by_participant.pop(participant, None)
        if peer is None:
            return None
        del self._by_ufrag[peer.local_ufrag]
        self._consent.pop(participant, None)
        return peer.selected

    def selected(self, participant: int) -> tuple[str, int] | None:
        """The participant's selected address (where its media goes), None before a
        nomination, after consent expired, or for an unknown participant."""
        peer = self._by_participant.get(participant)
        return None if peer is None else peer.selected

    def receive(self, datagram: bytes, address: tuple[str, int], now: float) -> IceResult:
        """Handle one STUN datagram that arrived from `address` at `now` (monotonic seconds;
        never going back). An IPv6 socket's (host, port, flowinfo, scope_id) is taken as its
        (host, port).

        Never raises for what the datagram holds: anything but a valid check is dropped and
        counted, or (authenticated, but refused) answered with an error response. Send
        `response`, when there is one, to `address`.
        """
        try:
            message = stun.parse(datagram)
        except StunError:
            return self._drop(DROP_MALFORMED)
        # A lite agent sends no requests, so a response is not for it; a Binding indication
        # (an RFC 8445 section 11 keepalive) has no MESSAGE-INTEGRITY, so it proves nothing
        # and refreshes no consent.
        if message.method != stun.BINDING or message.message_class != stun.StunClass.REQUEST:
            return self._drop(DROP_NOT_REQUEST)
        # RFC 8445 section 7: checks carry FINGERPRINT; the cheap test first.
        if not message.check_fingerprint():
            return self._drop(DROP_FINGERPRINT)
        # USERNAME = "<our ufrag>:<their ufrag>" (section 7.2.2) picks the participant, and so
        # the key: the one lookup per request.
        username = message.username
        if username is None:
            return self._drop(DROP_UNKNOWN_UFRAG)
        local_ufrag, colon, remote_ufrag = username.partition(":")
        peer = self._by_ufrag.get(local_ufrag) if colon else None
        if peer is None:
            return self._drop(DROP_UNKNOWN_UFRAG)
        # RFC 8489 section 9.1.3: a request that fails MESSAGE-INTEGRITY gets a 401 there; it is
        # not answered here, for the reason in the module docstring. The ufrags are on the wire
        # in clear, the password is not: only this test authenticates.
        if not message.check_integrity(peer.key):
            return self._drop(DROP_INTEGRITY)
        # Checked after the integrity so that the count means "the right password, the wrong
        # session" (an earlier ICE generation, or a misrouted peer), not a forgery.
        if peer.remote_ufrag is not None and remote_ufrag != peer.remote_ufrag:
            return self._drop(DROP_REMOTE_UFRAG)

        address = (address[0], address[1])  # an IPv6 socket address has four parts
        tid = message.transaction_id
        if message.unknown_required:
            # RFC 8489 section 6.3.1: an unknown comprehension-required attribute makes the
            # request a 420 with UNKNOWN-ATTRIBUTES. Answered, not dropped: it authenticated,
            # and the peer learns why at once instead of timing out.
            response = stun.build_error(
                tid,
                420,
                "Unknown Attribute",
                integrity_key=peer.key,
                unknown_attributes=message.unknown_required,
            )
            return self._refuse(REFUSED_UNKNOWN_ATTRIBUTE, response)
        if message.ice_controlled is not None:
            # The peer thinks it is controlled too: RFC 8445 section 7.3.1.1's role conflict
            # (written for full agents). There a controlled agent switches to controlling when
            # its tie-breaker is not less than the peer's, else answers 487; a lite agent may
            # never be controlling (section 6.1.1), so it acts as if its tie-breaker were below
            # every other and always answers 487. The peer then takes the controlling role and
            # checks again (section 7.2.5.1): the connection completes instead of timing out.
            # The request authenticated, so the answer reflects nothing, and it carries
            # MESSAGE-INTEGRITY so that the peer accepts it.
            response = stun.build_error(tid, 487, "Role Conflict", integrity_key=peer.key)
            return self._refuse(REFUSED_ROLE_CONFLICT, response)

        self.counters[CHECK_VALID] += 1
        response = stun.build_binding_success(tid, address, peer.key)
        participant = peer.participant
        nominated = message.use_candidate
        selected: AddressSelected | None = None
        if nominated and address != peer.selected:
            selected = AddressSelected(participant, address, peer.selected)
            peer.selected = address
        if address == peer.selected:
            self._consent[participant] = now
            self._consent.move_to_end(participant)
        return IceResult(
            response, CheckSucceeded(participant, address, nominated), selected, CHECK_VALID
        )

    def expired(self, now: float) -> list[ConsentExpired]:
        """Unselect every address whose consent expired: no valid check from it for
        CONSENT_TIMEOUT seconds up to `now` (RFC 7675 section 5.1). Media to those must stop;
        a later nomination selects an address again. Costs one step per expiry plus one."""
        consent = self._consent
        gone: list[ConsentExpired] = []
        while consent:
            participant, refreshed = next(iter(consent.items()))
            if now - refreshed < CONSENT_TIMEOUT:
                break
            consent.popitem(last=False)
            peer = self._by_participant[participant]
            if peer.selected is not None:  # always, while in _consent
                gone.append(ConsentExpired(participant, peer.selected))
            peer.selected = None
        return gone

    def next_expiry(self) -> float | None:
        """When `expired` will next have something to report, unless checks come first; None
        while no address is selected. O(1): a worker may ask after every batch."""
        for refreshed in self._consent.values():
            return refreshed + CONSENT_TIMEOUT
        return None

    def _drop(self, outcome: str) -> IceResult:
        self.counters[outcome] += 1
        return _DROPPED[outcome]

    def _refuse(self, outcome: str, response: bytes) -> IceResult:
        self.counters[outcome] += 1
        return IceResult(response, None, None, outcome)
