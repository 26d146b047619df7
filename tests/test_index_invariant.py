"""The relay never protects two packets with the same (key, SSRC, index) (ext/table.pxi,
"Never the same index twice"), whatever happens to the meeting: tested as a property.

Hypothesis drives one meeting through random sequences of joins, leaves, expulsions, role
changes (with the keys kept, and promotions with new ones), newcomers declaring an SSRC that
someone had before, snapshots applied again, crashes (a fresh durable table that knows only
what the ledger made durable, and, or not, the stream state) and NACKs, for packets sent and
for any others. Every packet the core emits is recorded: its index is recovered with the
receiver's key alone (the ROC whose tag verifies), and a (receiver key, SSRC, index) that
comes again must come with the very same bytes: a retransmission (ext/rtx.pxi), never other
bytes under that keystream. Every receiver also decrypts everything else it is sent with a
stateful session of its own, as its client would (relay.srtp, which estimates the ROC as
libsrtp does): no replay refusal, no failed tag.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from relay import _core
from relay.srtp import SUITES, Session, SrtpError
from tests.conftest import rtp

MEETING = 7
# A ledger record (ext/table.pxi, _RECORD): kind, meeting, participant, key fingerprint, SSRC,
# value.
LEDGER_RECORD = struct.Struct("<c3xIIQIQ")
SSRCS = (0x1111, 0x2222, 0x3333)  # few, so that they are declared again and again
Address = tuple[str, int]


@dataclass
class Person:
    pid: int
    suite: str
    address: Address
    ssrc: int | None = None  # what it sends, if it may
    uplink: bytes = b""
    downlink: bytes = b""
    sender: Session | None = None  # its client's sending session
    receiver: Session | None = None  # its client's receiving session
    seq: int = 0
    expelled: bool = False

    def new_keys(self) -> None:
        size = sum(SUITES[self.suite][:2])
        self.uplink, self.downlink = os.urandom(size), os.urandom(size)
        self.sender = Session(self.suite, self.uplink)
        self.receiver = Session(self.suite, self.downlink, replay_window=1024)
        self.seq = int.from_bytes(os.urandom(2), "big")  # a client's random first SEQ


@dataclass
class Relay:
    """One durable table with its forwarder, run as relay/worker.py runs it: reservations
    made durable (here: appended to `ledger`) before the commit that lets them be used; those
    no packet waits for yet written beside the media (a round in flight, `in_flight`, whose
    records reach `ledger` only when it lands), those packets wait for at once."""

    suite: str
    ledger: bytearray
    restored: bytes = b""
    in_flight: bytes | None = None
    table: _core.RouteTable = field(init=False)
    forwarder: _core.Forwarder = field(init=False)
    tx: _core.SendBatch = field(init=False)

    def __post_init__(self) -> None:
        self.table = _core.RouteTable(durable=True)
        self.table.ledger_load(self.restored)
        self.table.open_meeting(MEETING, "meeting")
        self.forwarder = _core.Forwarder(self.table)
        self.tx = _core.SendBatch(4096)

    def join(self, p: Person) -> None:
        self.table.join(
            p.pid,
            MEETING,
            "panelist" if p.ssrc is not None else "attendee",
            self.suite,
            p.uplink,
            p.downlink,
            ssrcs=[p.ssrc] if p.ssrc is not None else [],
            address=p.address,
        )
        if p.expelled:
            self.table.eject(p.pid)

    def reserve(self) -> None:
        """relay/worker.py's _reserve: a round in flight lands first, then one now."""
        self.land()
        self.ledger += self.table.ledger_pending()
        self.table.ledger_commit()
        self.forwarder.process_release(self.tx)

    def reserve_ahead(self) -> None:
        """relay/worker.py's _reserve_ahead: a round opened and left in flight."""
        if self.in_flight is None:
            records = self.table.ledger_pending()
            if records:
                self.in_flight = records
            else:
                self.table.ledger_commit()

    def land(self, written: bool = True) -> None:
        """The round in flight on disk and committed, or (not `written`) aborted."""
        if self.in_flight is None:
            return
        if written:
            self.ledger += self.in_flight
            self.table.ledger_commit()
        else:
            self.table.ledger_abort()
        self.in_flight = None

    def feed(self, datagrams: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        rx = _core.RecvBatch()
        for data, address in datagrams:
            rx.push(data, address)
        self.forwarder.process(rx, self.tx, 1.0)
        if self.forwarder.waiting:
            self.reserve()
        elif self.table.reservations_waiting():
            self.reserve_ahead()
        out = self.tx.items()
        self.tx.clear()
        return out


class IndexInvariant(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.suite = "AES_CM_128_HMAC_SHA1_80"
        self.ledger = bytearray()
        self.relay = Relay(self.suite, self.ledger)
        self.present: dict[int, Person] = {}
        self.next_pid = 1
        # (downlink key, SSRC, index) sent -> the packet that went out
        self.used: dict[tuple[bytes, int, int], bytes] = {}
        self.seqs: dict[tuple[int, int], list[int]] = {}  # (receiver, SSRC) -> its last SEQs
        self.resent = 0
        self.rocs: dict[tuple[bytes, int], int] = {}  # the last ROC seen per key and SSRC
        self.emitted = 0
        # (downlink key fingerprint, SSRC) -> the highest limit the ledger holds durably, as
        # of `durable_read` bytes of it
        self.durable: dict[tuple[int, int], int] = {}
        self.durable_read = 0

    # -- who is there --

    @initialize()
    def a_sender_and_two_listeners(self) -> None:
        for ssrc in (SSRCS[0], None, None):
            self.join(ssrc)

    def _new(self, ssrc: int | None) -> Person:
        pid = self.next_pid
        self.next_pid += 1
        p = Person(pid, self.suite, (f"10.1.{pid >> 8}.{pid & 255}", 5000), ssrc)
        p.new_keys()
        return p

    @rule(ssrc=st.sampled_from((None, *SSRCS)))
    def join(self, ssrc: int | None) -> None:
        """A newcomer; a sender may declare an SSRC someone else had or even has (the
        control plane refuses two present holders in one meeting; the core must not
        depend on it)."""
        p = self._new(ssrc)
        self.present[p.pid] = p
        self.relay.join(p)
        self.relay.reserve()

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(sorted(self.present)))
        del self.present[pid]
        self.relay.table.leave(pid)

    @precondition(lambda self: self.present)
    @rule(data=st.data())
    def expel(self, data: st.DataObject) -> None:
        p = self.present[data.draw(st.sampled_from(sorted(self.present)))]
        p.expelled = True
        self.relay.table.eject(p.pid)

    @precondition(lambda self: self.present)
    @rule(data=st.data(), promote=st.booleans(), ssrc=st.sampled_from((None, *SSRCS)))
    def change_role(self, data: st.DataObject, promote: bool, ssrc: int | None) -> None:
        """As the control plane does it: the participant leaves and joins again under its
        id, with its keys (a panelist becoming host) or new ones (an attendee promoted)."""
        p = self.present[data.draw(st.sampled_from(sorted(self.present)))]
        self.relay.table.leave(p.pid)
        if promote:
            p.ssrc = ssrc
            p.new_keys()
        self.relay.join(p)
        self.relay.reserve()

    @rule()
    def snapshot_again(self) -> None:
        """A worker that missed updates applies a whole snapshot: every meeting is closed
        and rebuilt."""
        self.relay.table.close_meeting(MEETING)
        self.relay.table.open_meeting(MEETING, "meeting")
        for p in self.present.values():
            self.relay.join(p)
        self.relay.reserve()

    @rule(written=st.booleans())
    def round_lands(self, written: bool) -> None:
        """The round written beside the media is on disk (or could not be written)."""
        self.relay.land(written)

    @rule(with_state=st.booleans())
    def crash(self, with_state: bool) -> None:
        """The worker dies (kill -9) and starts again: only what was durable survives, not
        a round still in flight."""
        restored = bytes(self.ledger)
        if with_state:
            restored += self.relay.table.stream_state()
        self.relay = Relay(self.suite, self.ledger, restored)
        for p in self.present.values():
            self.relay.join(p)
        self.relay.reserve()

    # -- media --

    @precondition(lambda self: any(p.ssrc is not None for p in self.present.values()))
    @rule(
        data=st.data(),
        count=st.integers(1, 40),
        skip=st.sampled_from((0, 0, 0, 2500, 20000)),
        lost=st.lists(st.integers(0, 40), max_size=6),
    )
    def send(self, data: st.DataObject, count: int, skip: int, lost: list[int]) -> None:
        """A sender sends `count` packets, after skipping `skip` sequence numbers (packets
        lost on the way in: the sender's ROC moves on; 2500 takes its receivers' streams past
        half their margin, where their next reservation is written beside the media, and
        20000 past it, where packets wait for one); then a receiver NACKs some of them
        (`lost`, counted back from its latest)."""
        senders = sorted(pid for pid, p in self.present.items() if p.ssrc is not None)
        p = self.present[data.draw(st.sampled_from(senders))]
        assert p.sender is not None and p.ssrc is not None
        p.seq += skip
        datagrams = []
        for _ in range(count):
            plain = rtp(p.seq & 0xFFFF, p.ssrc, payload=struct.pack("!II", p.pid, p.seq))
            p.seq += 1
            datagrams.append((p.sender.protect(plain), p.address))
        for packet, address in self.relay.feed(datagrams):
            self._check(packet, address)
        if lost:
            self.nack(data, lost)

    @precondition(lambda self: self.present)
    @rule(data=st.data(), back=st.lists(st.integers(0, 60), max_size=20))
    def nack(self, data: st.DataObject, back: list[int]) -> None:
        """A receiver names packets it says it lost: some it was sent (`back` from its
        latest), and whatever else Hypothesis picks, of a stream it gets or any other."""
        p = self.present[data.draw(st.sampled_from(sorted(self.present)))]
        assert p.sender is not None
        got = sorted(ssrc for pid, ssrc in self.seqs if pid == p.pid)
        # Drawn the same way whatever the state (keys and first SEQs are random: Hypothesis
        # must be able to replay the draws), then applied to it.
        pick, any_stream = data.draw(st.integers(0, 7)), data.draw(st.booleans())
        choices = SSRCS if any_stream or not got else got
        ssrc = choices[pick % len(choices)]
        recent = self.seqs.get((p.pid, ssrc), [])
        named = {recent[-1 - b] for b in back if b < len(recent)}
        named |= set(data.draw(st.lists(st.integers(0, 0xFFFF), max_size=3)))
        fci = b"".join(struct.pack("!HH", seq, 0) for seq in sorted(named)) or b"\0\0\0\0"
        packet = struct.pack("!BBHII", 0x81, 205, 2 + len(fci) // 4, 1, ssrc) + fci
        for out, address in self.relay.feed([(p.sender.protect_rtcp(packet), p.address)]):
            if not 192 <= out[1] <= 223:  # RTCP is the NACK passed on to a sender
                self._check(out, address)

    def _check(self, packet: bytes, address: Address) -> None:
        receiver = next(p for p in self.present.values() if p.address == address)
        assert not receiver.expelled, "an expelled participant was sent media"
        ssrc = struct.unpack("!I", packet[8:12])[0]
        seq = struct.unpack("!H", packet[2:4])[0]
        index = self._index(receiver.downlink, ssrc, seq, packet)
        # table.pxi's invariant 4 itself: never an index the ledger does not hold durably.
        limit = self._durable_limit(_core.key_fingerprint(receiver.downlink), ssrc)
        assert index < limit, f"index {index} of SSRC {ssrc:#x} sent, durable only below {limit}"
        key = (receiver.downlink, ssrc, index)
        if key in self.used:  # only ever a retransmission: the same packet again
            assert self.used[key] == packet, f"index {index} of SSRC {ssrc:#x}: other bytes"
            self.resent += 1
            return
        self.used[key] = packet
        self.seqs.setdefault((receiver.pid, ssrc), []).append(seq)
        del self.seqs[(receiver.pid, ssrc)][:-64]
        self.emitted += 1
        assert receiver.receiver is not None
        try:
            receiver.receiver.unprotect(packet)  # as the receiver's own client would
        except SrtpError as exc:
            raise AssertionError(f"the receiver's client refused index {index}: {exc}") from None

    def _durable_limit(self, fingerprint: int, ssrc: int) -> int:
        """What the ledger file holds for a receiver's stream: the records appended since the
        last look read in, the highest limit of each stream kept."""
        for off in range(self.durable_read, len(self.ledger), LEDGER_RECORD.size):
            kind, _meeting, _pid, fp, record_ssrc, value = LEDGER_RECORD.unpack_from(
                self.ledger, off
            )
            if kind == b"O":
                stream = (fp, record_ssrc)
                self.durable[stream] = max(self.durable.get(stream, 0), value)
        self.durable_read = len(self.ledger)
        return self.durable.get((fingerprint, ssrc), 0)

    def _index(self, key: bytes, ssrc: int, seq: int, packet: bytes) -> int:
        """The index the packet was protected at, found with the key alone: the ROC whose
        tag verifies (HMAC covers the ROC, RFC 3711 section 4.2)."""
        last = self.rocs.get((key, ssrc), 0)
        for roc in sorted(range(max(0, last - 2), last + 4), key=lambda r: abs(r - last)):
            try:
                Session(self.suite, key).unprotect_at(packet, roc)
            except SrtpError:
                continue
            self.rocs[(key, ssrc)] = roc
            return (roc << 16) | seq
        raise AssertionError("a packet no ROC near the receiver's opens")

    @invariant()
    def nothing_waits(self) -> None:
        assert self.relay.forwarder.waiting == 0


# 300 examples on the release build, which explores; 50 under the sanitizers, where each costs
# three times as much and the pass checks the memory safety of the same paths (tests/conftest.py).
IndexInvariant.TestCase.settings = settings(
    max_examples=int(
        os.environ.get("RELAY_PROPERTY_EXAMPLES", "50" if _core.DEBUG_BUILD else "300")
    ),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestIndexInvariant = IndexInvariant.TestCase


class IndexInvariantGcm(IndexInvariant):
    """The same with AES-GCM (RFC 7714), where a repeated nonce also gives away the
    authentication key."""

    def __init__(self) -> None:
        super().__init__()
        self.suite = "AEAD_AES_128_GCM"
        self.relay = Relay(self.suite, self.ledger)


IndexInvariantGcm.TestCase.settings = IndexInvariant.TestCase.settings
TestIndexInvariantGcm = IndexInvariantGcm.TestCase


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"])
def test_the_findings_scenario_expel_then_a_newcomer_with_the_same_ssrc(suite: str) -> None:
    """The review's reproduction: a presenter expelled, a newcomer declares its SSRC and
    sends sequence numbers 100-104 again. Before, the listener received both at the same
    indexes under its key (c1 xor c2 == p1 xor p2) and its libsrtp refused the newcomer's as
    replays; now the newcomer's packets continue the listener's stream."""
    ledger = bytearray()
    relay = Relay(suite, ledger)
    listener = Person(1, suite, ("10.0.0.1", 5000))
    first = Person(2, suite, ("10.0.0.2", 5000), SSRCS[0])
    for p in (listener, first):
        p.new_keys()
        relay.join(p)
    relay.reserve()

    def send(p: Person, seqs: range) -> list[bytes]:
        assert p.sender is not None and p.ssrc is not None
        out = []
        for s in seqs:
            sent = relay.feed(
                [(p.sender.protect(rtp(s, p.ssrc, payload=os.urandom(40))), p.address)]
            )
            out += [d for d, a in sent if a == listener.address]
        return out

    before = send(first, range(100, 105))
    relay.table.eject(first.pid)
    relay.table.leave(first.pid)
    second = Person(3, suite, ("10.0.0.3", 5000), SSRCS[0])
    second.new_keys()
    relay.join(second)
    relay.reserve()
    after = send(second, range(100, 105))
    assert len(before) == len(after) == 5
    seqs_before = [struct.unpack("!H", d[2:4])[0] for d in before]
    seqs_after = [struct.unpack("!H", d[2:4])[0] for d in after]
    assert seqs_after == [seqs_before[-1] + 1 + k for k in range(5)]  # continued, not repeated
    assert listener.receiver is not None
    for packet in before + after:
        listener.receiver.unprotect(packet)  # no ReplayError, every tag verifies


def test_the_ledger_records_name_each_reservation_field_by_field() -> None:
    """ledger_pending and ledger_records write their records in C (ext/table.pxi,
    `_record_at`): read back here with struct alone, each names its receiver, the receiver's
    key, the sender's SSRC and the limit, and ledger_live_bytes counts them without building
    them."""
    record = struct.Struct("<c3xIIQIQ")  # kind, meeting, participant, key fingerprint, SSRC, value
    ledger = bytearray()
    relay = Relay("AES_CM_128_HMAC_SHA1_80", ledger)
    people = [Person(1, relay.suite, ("10.2.0.1", 5000), SSRCS[0])]
    people += [Person(pid, relay.suite, (f"10.2.0.{pid}", 5000)) for pid in range(2, 40)]
    for p in people:
        p.new_keys()
        relay.join(p)
    sender = people[0]
    assert sender.sender is not None
    packet = sender.sender.protect(rtp(sender.seq, SSRCS[0], payload=b"x" * 40))
    rx = _core.RecvBatch()
    rx.push(packet, sender.address)
    relay.forwarder.process(rx, relay.tx, 1.0)

    pending = relay.table.ledger_pending()
    assert len(pending) % record.size == 0
    asked = {}
    for off in range(0, len(pending), record.size):
        kind, meeting, pid, fp, ssrc, value = record.unpack_from(pending, off)
        assert meeting == MEETING
        if kind == b"A":  # an address that consented: its fingerprint, not a key's
            assert (ssrc, value) == (0, 1)
            continue
        assert fp == _core.key_fingerprint(people[pid - 1].downlink)
        asked[kind, pid, ssrc] = value
    for p in people[1:]:
        # Each listener's stream of the sender's SSRC starts at the sender's sequence number,
        # with ROC 0 (ext/table.pxi, `out_bind`), and is reserved INDEX_RESERVE past it.
        assert asked[b"O", p.pid, SSRCS[0]] == sender.seq + _core.INDEX_RESERVE
        assert asked[b"C", p.pid, 0] > 0  # and its SRTCP

    relay.table.ledger_commit()
    live = relay.table.ledger_records()
    assert relay.table.ledger_live_bytes() == len(live)
    durable = {}
    for off in range(0, len(live), record.size):
        kind, meeting, pid, fp, ssrc, value = record.unpack_from(live, off)
        durable[kind, pid, ssrc] = value
    assert {k: v for k, v in durable.items() if k[0] in (b"O", b"C")} == asked
    # Nothing more is asked until the streams near their limits.
    assert relay.table.ledger_pending() == b""


def test_a_round_written_beside_the_media_commits_only_what_it_wrote() -> None:
    """ext/table.pxi, invariant 4 with the worker's rounds in flight (relay/worker.py,
    `_reserve_ahead`): packets sent while a round's records are being written ask for more;
    its commit applies only the limits it wrote, and what was asked meanwhile is the next
    round's. One round at a time; an aborted round raises nothing and is asked again, with
    the consent it carried."""
    record = LEDGER_RECORD
    ledger = bytearray()
    relay = Relay("AES_CM_128_HMAC_SHA1_80", ledger)
    sender = Person(1, relay.suite, ("10.3.0.1", 5000), SSRCS[0])
    listener = Person(2, relay.suite, ("10.3.0.2", 5000))
    for p in (sender, listener):
        p.new_keys()
        relay.join(p)
    relay.reserve()
    assert sender.sender is not None

    def send(count: int) -> int:
        packets = []
        for _ in range(count):
            packet = sender.sender.protect(rtp(sender.seq & 0xFFFF, SSRCS[0]))
            packets.append((packet, sender.address))
            sender.seq += 1
        return len(relay.feed(packets))

    def limits(records: bytes) -> dict[bytes, int]:
        return {
            record.unpack_from(records, off)[0]: record.unpack_from(records, off)[5]
            for off in range(0, len(records), record.size)
            if record.unpack_from(records, off)[2] == listener.pid
        }

    first = sender.seq
    assert send(1) == 1  # the stream's first packet waited for its reservation, made at once
    assert relay.in_flight is None
    assert limits(bytes(ledger))[b"O"] == first + _core.INDEX_RESERVE
    # Past half the margin, the next reservation is a round of its own, left in flight.
    sender.seq += _core.INDEX_RESERVE // 2
    assert send(1) == 1
    assert relay.in_flight is not None and relay.table.ledger_round_open
    written = limits(relay.in_flight)[b"O"]
    assert written == sender.seq - 1 + _core.INDEX_RESERVE
    with pytest.raises(RuntimeError, match="a ledger round is open"):
        relay.table.ledger_pending()
    # Meanwhile the media goes on within what is durable, and asks for more.
    assert send(5) == 5
    assert relay.table.reservations_waiting() is False  # the listener waits in the round
    relay.land()
    assert not relay.table.ledger_round_open
    assert relay.table.reservations_waiting()  # it asked for more than was written
    nxt = relay.table.ledger_pending()
    assert limits(nxt)[b"O"] == sender.seq - 1 + _core.INDEX_RESERVE > written
    # Not written: nothing rises, and the same is asked again.
    relay.table.ledger_abort()
    assert limits(relay.table.ledger_records())[b"O"] == written
    assert limits(relay.table.ledger_pending()) == limits(nxt)
    relay.table.ledger_commit()
    with pytest.raises(RuntimeError, match="no ledger round is open"):
        relay.table.ledger_commit()


def test_an_aborted_round_keeps_the_consent_it_carried() -> None:
    """An address that consented is recorded once (ext/table.pxi, kind A): a round that
    could not be written gives it again."""
    relay = Relay("AES_CM_128_HMAC_SHA1_80", bytearray())
    listener = Person(1, relay.suite, ("10.4.0.1", 5000))
    listener.new_keys()
    relay.join(listener)

    def consents(records: bytes) -> int:
        return sum(
            LEDGER_RECORD.unpack_from(records, off)[0] == b"A"
            for off in range(0, len(records), LEDGER_RECORD.size)
        )

    assert consents(relay.table.ledger_pending()) == 1
    relay.table.ledger_abort()
    assert consents(relay.table.ledger_pending()) == 1
    relay.table.ledger_commit()
    assert not relay.table.reservations_waiting()
