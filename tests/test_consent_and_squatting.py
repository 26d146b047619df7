"""The fast path against participants who try to misuse it (docs/SECURITY.md), without
sockets: consent before media for addresses given at join, and SSRCs declared by
participants of other meetings (squatting), latched or not.
"""

from __future__ import annotations

import os
import struct

import pytest

from relay import _core
from relay.srtp import SUITES, Session
from tests.conftest import rtp

AES = "AES_CM_128_HMAC_SHA1_80"
PRESENTER_SSRC = 0x5EED5EED
Address = tuple[str, int]


def keys(suite: str = AES) -> bytes:
    return os.urandom(sum(SUITES[suite][:2]))


class Relay:
    def __init__(self) -> None:
        self.table = _core.RouteTable()
        self.forwarder = _core.Forwarder(self.table)
        self.tx = _core.SendBatch(4096)
        self.meetings: set[int] = set()

    def meeting(self, mid: int, mode: str = "webinar") -> None:
        self.table.open_meeting(mid, mode)
        self.meetings.add(mid)

    def feed(self, datagrams: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        rx = _core.RecvBatch()
        for data, address in datagrams:
            rx.push(data, address)
        self.forwarder.process(rx, self.tx, 1.0)
        out = self.tx.items()
        self.tx.clear()
        return out

    def drops(self) -> dict[str, int]:
        return {k: v for k, v in self.table.counters()["dropped"].items() if v}


class Member:
    """A participant: its keys, its client's sessions, where it is."""

    def __init__(
        self,
        relay: Relay,
        pid: int,
        mid: int,
        role: str,
        address: Address,
        ssrcs: tuple[int, ...] = (),
        given: bool = False,
        confirmed: bool = True,
        hint: str | None = None,
    ) -> None:
        self.pid, self.address, self.ssrcs = pid, address, ssrcs
        self.uplink, self.downlink = keys(), keys()
        self.out = Session(AES, self.uplink)
        self.inp = Session(AES, self.downlink)
        relay.table.join(
            pid,
            mid,
            role,
            AES,
            self.uplink,
            self.downlink,
            ssrcs=list(ssrcs),
            address=address if given else None,
            address_confirmed=confirmed,
            source_hint=hint,
        )

    def media(self, seq: int, ssrc: int | None = None) -> bytes:
        return self.out.protect(rtp(seq, ssrc or self.ssrcs[0], payload=b"m%d" % seq))

    def report(self) -> bytes:
        """An RTCP receiver report from an SSRC it did not declare, as listeners send."""
        return self.out.protect_rtcp(struct.pack("!BBHI", 0x80, 201, 1, 0x7000_0000 + self.pid))


# --- consent --------------------------------------------------------------------------------


def test_an_address_given_by_someone_else_gets_nothing_until_it_answers() -> None:
    """receive_at from a caller at another IP (a reflection attempt, or a listener whose
    join went through a service): nothing is sent there until an authenticated packet from
    that IP shows it wants media (RFC 7675's consent, for clients without ICE)."""
    relay = Relay()
    relay.meeting(1)
    host = Member(relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    target = ("192.0.2.9", 5004)
    listeners = [
        Member(relay, 10 + k, 1, "attendee", target, given=True, confirmed=False)
        for k in range(5)  # five joins aimed at one port
    ]
    for seq in range(3):
        assert relay.feed([(host.media(seq), host.address)]) == []
    assert relay.drops() == {"no_consent": 15}
    assert relay.table.address_of(listeners[0].pid) is None
    # The real listener answers from its own IP, from another port (RTCP from port + 1).
    relay.feed([(listeners[0].report(), ("192.0.2.9", 5005))])
    assert relay.table.address_of(listeners[0].pid) == target  # confirmed, not moved
    out = relay.feed([(host.media(3), host.address)])
    assert [a for _, a in out] == [target]  # one copy: the other four never answered
    assert listeners[0].inp.unprotect(out[0][0])[12:] == b"m3"


def test_a_report_from_another_ip_confirms_nothing() -> None:
    """A listener's report names no declared SSRC: only its address could tie it to the
    listener, and from elsewhere nothing does."""
    relay = Relay()
    relay.meeting(1)
    host = Member(relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    listener = Member(relay, 2, 1, "attendee", ("192.0.2.9", 5004), given=True, confirmed=False)
    relay.feed([(listener.report(), ("198.51.100.3", 41000))])
    assert relay.table.address_of(listener.pid) is None
    assert relay.feed([(host.media(0), host.address)]) == []
    assert relay.drops() == {"unknown_source": 1, "no_consent": 1}


def test_media_from_the_listeners_ip_confirms_its_address_as_given() -> None:
    """A participant of a meeting that gave receive_at and also sends: its first packet
    from that IP confirms the address it gave (receive port kept, not the source port)."""
    relay = Relay()
    relay.meeting(1, "meeting")
    other = Member(relay, 1, 1, "panelist", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    both = Member(
        relay, 2, 1, "panelist", ("192.0.2.9", 5004), (0x77,), given=True, confirmed=False
    )
    assert relay.feed([(other.media(0), other.address)]) == []
    relay.feed([(both.media(0), ("192.0.2.9", 39000))])
    assert relay.table.address_of(both.pid) == ("192.0.2.9", 5004)
    out = relay.feed([(other.media(1), other.address)])
    assert [a for _, a in out] == [("192.0.2.9", 5004)]


def test_a_forged_answer_confirms_nothing() -> None:
    relay = Relay()
    relay.meeting(1)
    host = Member(relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    listener = Member(relay, 2, 1, "attendee", ("192.0.2.9", 5004), given=True, confirmed=False)
    forged = bytearray(listener.report())
    forged[-1] ^= 1
    relay.feed([(bytes(forged), ("192.0.2.9", 5005))])
    assert relay.table.address_of(listener.pid) is None
    assert relay.feed([(host.media(0), host.address)]) == []


def test_a_join_from_the_address_itself_is_consent() -> None:
    relay = Relay()
    relay.meeting(1)
    host = Member(relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    Member(relay, 2, 1, "attendee", ("192.0.2.9", 5004), given=True, confirmed=True)
    out = relay.feed([(host.media(0), host.address)])
    assert [a for _, a in out] == [("192.0.2.9", 5004)]


# --- squatting ------------------------------------------------------------------------------


def squatted_webinar(
    relay: Relay, squatters: int, presenter_hint: str | None
) -> tuple[Member, list[Member], list[Member]]:
    """A webinar whose presenter's SSRC `squatters` participants of other meetings (one
    meeting each: SSRCs are unique within a meeting) declared before it joined, half of
    them latched (they sent from their own addresses), half never heard of; all from one IP
    other than the presenter's."""
    squatting = []
    for k in range(squatters):
        relay.meeting(100 + k, "meeting")
        squatting.append(
            Member(
                relay,
                100 + k,
                100 + k,
                "panelist",
                (f"203.0.113.{k}", 6000),
                (PRESENTER_SSRC,),
                hint="203.0.113.250",
            )
        )
        Member(relay, 1000 + k, 100 + k, "panelist", (f"203.0.113.{k}", 6002), given=True)
    for k, s in enumerate(squatting):
        if k % 2:
            relay.feed([(s.media(k), s.address)])  # latch: its own meeting may hear it
    relay.meeting(1)
    presenter = Member(
        relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,), hint=presenter_hint
    )
    attendees = [
        Member(relay, 2 + k, 1, "attendee", (f"10.0.1.{k}", 7000), given=True) for k in range(4)
    ]
    return presenter, attendees, squatting


@pytest.mark.parametrize("squatters", [4, 16, 40])
def test_squatters_of_other_meetings_cannot_delay_a_presenter_who_sends_from_where_it_joined(
    squatters: int,
) -> None:
    relay = Relay()
    presenter, attendees, _ = squatted_webinar(relay, squatters, presenter_hint="10.0.0.1")
    for seq in range(10):
        out = relay.feed([(presenter.media(seq), presenter.address)])
        assert sorted(a for _, a in out) == sorted(a.address for a in attendees), seq
        for data, address in out:
            member = next(a for a in attendees if a.address == address)
            assert member.inp.unprotect(data)[12:] == b"m%d" % seq


@pytest.mark.parametrize("squatters", [16, 40])
def test_squatters_delay_a_presenter_from_elsewhere_by_at_most_a_few_packets(
    squatters: int,
) -> None:
    """Its join came through a service (another IP): its first packet competes with the
    squatters' claims, at most MAX_CANDIDATES tags a packet, the first tried turning."""
    relay = Relay()
    presenter, attendees, _ = squatted_webinar(relay, squatters, presenter_hint=None)
    first = None
    for seq in range(40):
        out = relay.feed([(presenter.media(seq), presenter.address)])
        if out and first is None:
            first = seq
        if first is not None:
            assert len(out) == len(attendees), seq  # latched: every packet after
    holders = squatters + 1
    assert first is not None and first <= -(-holders // 4)
    assert relay.drops().get("auth", 0) <= 4 * first


def test_a_squatter_latched_at_the_presenters_own_address_does_not_block_it() -> None:
    """A squatter that spoofed the presenter's source address and latched there first is
    tried first and fails; the presenter's tag is tried next in the same packet."""
    relay = Relay()
    relay.meeting(50, "meeting")
    spoofer = Member(relay, 50, 50, "panelist", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    relay.feed([(spoofer.media(0), ("10.0.0.1", 5000))])
    assert relay.table.address_of(spoofer.pid) == ("10.0.0.1", 5000)
    relay.meeting(1)
    presenter = Member(relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    attendee = Member(relay, 2, 1, "attendee", ("10.0.1.1", 7000), given=True)
    for seq in range(3):
        out = relay.feed([(presenter.media(seq), presenter.address)])
        assert [a for _, a in out] == [attendee.address]


def test_no_squatter_hears_the_webinar() -> None:
    relay = Relay()
    presenter, attendees, squatting = squatted_webinar(relay, 16, presenter_hint="10.0.0.1")
    heard: set[Address] = set()
    for seq in range(5):
        heard |= {a for _, a in relay.feed([(presenter.media(seq), presenter.address)])}
    assert heard == {a.address for a in attendees}
    # and the squatters' own meetings still work for them
    s = squatting[1]
    out = relay.feed([(s.media(100), s.address)])
    assert [a for _, a in out] == [(s.address[0], 6002)]


def test_consent_outlives_a_snapshot_applied_again_and_a_crash() -> None:
    """A control plane that restarts sends snapshots that cannot tell which addresses
    consented; the worker's ledger remembers (kind A), in its table and across its own
    restart, so that nothing is taken back from a listener that asked."""
    ledger = bytearray()

    def durable(restored: bytes = b"") -> Relay:
        relay = Relay()
        relay.table = _core.RouteTable(durable=True)
        relay.table.ledger_load(restored)
        relay.forwarder = _core.Forwarder(relay.table)
        relay.meeting(1)
        return relay

    def reserve(relay: Relay) -> None:
        ledger.extend(relay.table.ledger_pending())
        relay.table.ledger_commit()
        relay.forwarder.process_release(relay.tx)

    def rejoin(relay: Relay, *members: Member) -> None:
        for m in members:
            relay.table.join(
                m.pid,
                1,
                "host" if m.ssrcs else "attendee",
                AES,
                m.uplink,
                m.downlink,
                ssrcs=list(m.ssrcs),
                address=None if m.ssrcs else m.address,
                address_confirmed=False,  # as a rebuilt snapshot says
            )
        reserve(relay)

    relay = durable()
    host = Member(relay, 1, 1, "host", ("10.0.0.1", 5000), (PRESENTER_SSRC,))
    asked = Member(relay, 2, 1, "attendee", ("192.0.2.9", 5004), given=True, confirmed=False)
    joined_there = Member(relay, 3, 1, "attendee", ("192.0.2.10", 5004), given=True)
    silent = Member(relay, 4, 1, "attendee", ("192.0.2.11", 5004), given=True, confirmed=False)
    reserve(relay)
    relay.feed([(asked.report(), ("192.0.2.9", 5005))])
    reserve(relay)
    wanted = {asked.address, joined_there.address}

    def heard(relay: Relay, seq: int) -> set[Address]:
        out = relay.feed([(host.media(seq), host.address)])
        reserve(relay)  # what waited for its first reservation goes out now
        released = relay.tx.items()
        relay.tx.clear()
        return {a for _, a in out} | {a for _, a in released}

    assert heard(relay, 0) == wanted
    relay.table.close_meeting(1)  # a snapshot applied again
    relay.table.open_meeting(1, "webinar")
    rejoin(relay, host, asked, joined_there, silent)
    relay.feed([(host.media(1), host.address)])  # latch the host again
    assert heard(relay, 2) == wanted
    crashed = durable(bytes(ledger))  # the worker starts again from its ledger
    rejoin(crashed, host, asked, joined_there, silent)
    crashed.feed([(host.media(3), host.address)])
    assert heard(crashed, 4) == wanted
