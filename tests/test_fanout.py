"""Fan-out across workers (ext/fanout.pxi), without sockets: two workers' tables hold the same
meeting, each participant homed on one of them. A packet that reaches its sender's home worker
is sent there to that worker's members and passed on, as records, to the other, which sends
it to its own. Every receiver must get each packet exactly once, in order, decryptable with its
own keys; mute, eject and end must hold on the importing side too.
"""

from __future__ import annotations

import struct

import pytest

from relay import _core, wire
from relay.routes import RouteReplica
from relay.srtp import Session
from tests.conftest import rtcp_sr, rtp
from tests.test_forward import AES, GCM, HOST_SSRC, MID, Peer, key_material

Address = tuple[str, int]


class Worker:
    def __init__(self) -> None:
        self.table = _core.RouteTable()
        self.table.open_meeting(MID, "webinar")
        self.forwarder = _core.Forwarder(self.table)
        self.tx = _core.SendBatch(4096)

    def feed(self, datagrams: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        rx = _core.RecvBatch()
        for data, address in datagrams:
            rx.push(data, address)
        self.forwarder.process(rx, self.tx, 1000.0)
        out = self.tx.items()
        self.tx.clear()
        return out

    def take_in(self, records: bytes) -> list[tuple[bytes, Address]]:
        self.forwarder.process_import(records, self.tx, 1000.0)
        out = self.tx.items()
        self.tx.clear()
        return out


def two_workers(
    suite: str, attendees: int = 6
) -> tuple[list[Worker], Peer, list[Peer], dict[int, int]]:
    """A webinar over two workers: the host homed on worker 0, attendee k on worker k % 2."""
    workers = [Worker(), Worker()]
    host = Peer(
        1, suite, key_material(suite), key_material(suite), ("10.0.0.1", 5000), (HOST_SSRC,)
    )
    people = [
        Peer(10 + k, suite, key_material(suite), key_material(suite), (f"10.0.1.{k}", 6000), ())
        for k in range(attendees)
    ]
    home = {host.pid: 0, **{p.pid: k % 2 for k, p in enumerate(people)}}
    for index, w in enumerate(workers):
        for peer, role in [(host, "host"), *((p, "attendee") for p in people)]:
            w.table.join(
                peer.pid,
                MID,
                role,
                suite,
                peer.uplink,
                peer.downlink,
                ssrcs=peer.ssrcs,
                address=peer.address,
                local=home[peer.pid] == index,
            )
    return workers, host, people, home


@pytest.mark.parametrize("suite", [AES, GCM])
def test_each_receiver_gets_each_packet_once_from_its_home_worker(suite: str) -> None:
    workers, host, people, home = two_workers(suite)
    plains = [rtp(seq, HOST_SSRC, payload=b"p%d" % seq) for seq in range(100)]
    sent = [host.out.protect(p) for p in plains]
    out0: list[tuple[bytes, Address]] = []
    out1: list[tuple[bytes, Address]] = []
    for start in range(0, len(sent), 64):
        out0 += workers[0].feed([(p, host.address) for p in sent[start : start + 64]])
        exports = workers[0].forwarder.take_exports()
        assert [m for m, _ in exports] == [MID]  # one message per meeting per batch
        out1 += workers[1].take_in(exports[0][1])
    assert workers[1].forwarder.take_exports() == []  # imports are never passed on again
    for peer in people:
        from_home = out0 if home[peer.pid] == 0 else out1
        from_other = out1 if home[peer.pid] == 0 else out0
        assert not [d for d, a in from_other if a == peer.address]
        got = [peer.inp.unprotect(d) for d, a in from_home if a == peer.address]
        assert got == plains
    c0, c1 = workers[0].table.counters(), workers[1].table.counters()
    assert (c0["exported"], c1["imported"]) == (100, 100)
    assert c0["imported"] == 0 and c1["exported"] == 0


def test_sender_reports_cross_workers_too() -> None:
    workers, host, people, home = two_workers(AES)
    workers[0].feed([(host.out.protect(rtp(0, HOST_SSRC)), host.address)])
    workers[1].take_in(workers[0].forwarder.take_exports()[0][1])
    report = rtcp_sr(HOST_SSRC)
    workers[0].feed([(host.out.protect_rtcp(report), host.address)])
    out1 = workers[1].take_in(workers[0].forwarder.take_exports()[0][1])
    for peer in people:
        if home[peer.pid] == 1:
            (packet,) = [d for d, a in out1 if a == peer.address]
            assert peer.inp.unprotect_rtcp(packet) == report


def test_the_importing_worker_applies_its_own_mute_eject_and_end() -> None:
    workers, host, people, home = two_workers(AES)
    there = [p for p in people if home[p.pid] == 1]

    def relay_one(seq: int) -> list[tuple[bytes, Address]]:
        workers[0].feed([(host.out.protect(rtp(seq, HOST_SSRC)), host.address)])
        return workers[1].take_in(workers[0].forwarder.take_exports()[0][1])

    assert len(relay_one(0)) == len(there)
    workers[1].table.eject(there[0].pid)
    assert {a for _, a in relay_one(1)} == {p.address for p in there[1:]}
    workers[1].table.mute(host.pid)  # worker 1 heard of the mute before worker 0
    assert relay_one(2) == []
    assert workers[1].table.counters()["dropped"]["muted"] == 1
    workers[1].table.mute(host.pid, False)
    workers[1].table.end_meeting(MID)
    assert relay_one(3) == []


def test_no_records_without_members_elsewhere_and_bad_records_are_counted() -> None:
    w = Worker()
    suite = AES
    host = Peer(
        1, suite, key_material(suite), key_material(suite), ("10.0.0.1", 5000), (HOST_SSRC,)
    )
    listener = Peer(2, suite, key_material(suite), key_material(suite), ("10.0.0.2", 5000), ())
    for peer, role in ((host, "host"), (listener, "attendee")):
        w.table.join(
            peer.pid,
            MID,
            role,
            suite,
            peer.uplink,
            peer.downlink,
            ssrcs=peer.ssrcs,
            address=peer.address,
        )
    w.feed([(host.out.protect(rtp(0, HOST_SSRC)), host.address)])
    assert w.forwarder.take_exports() == []  # everyone is homed here
    # A truncated record and one whose sender is unknown here.
    assert w.forwarder.process_import(b"\x00" * 10, w.tx) == -1
    record = struct.pack("<BBHIIIQ", 0, 0, 12, MID, 99, 0xDEAD, 0) + rtp(0, 0xDEAD)[:12]
    assert w.forwarder.process_import(record, w.tx) == 0
    drops = w.table.counters()["dropped"]
    assert drops["malformed"] == 1 and drops["unknown_source"] == 1


def test_replica_subscribes_while_members_are_homed_here() -> None:
    calls: list[tuple[int, bool]] = []
    table = _core.RouteTable()
    replica = RouteReplica(table, 1, lambda m, on: calls.append((m, on)))
    key = key_material(AES)
    replica.apply_snapshot(wire.Snapshot(0, (wire.MeetingOpened(7, "webinar"),)))

    def joined(pid: int, worker: int) -> wire.ParticipantJoined:
        return wire.ParticipantJoined(pid, 7, "attendee", AES, key, key, (), None, worker)

    replica.apply(1, joined(1, 0))  # homed on worker 0: nothing to subscribe to here
    assert calls == []
    replica.apply(2, joined(2, 1))
    replica.apply(3, joined(3, 1))
    assert calls == [(7, True)]
    replica.apply(4, wire.ParticipantLeft(2))
    replica.apply(5, wire.ParticipantLeft(3))
    assert calls == [(7, True), (7, False)]
    replica.apply(6, joined(4, 1))
    replica.apply_snapshot(wire.Snapshot(6))  # the meeting is gone: unsubscribe
    assert calls[-1] == (7, False)
    assert Session(AES, key)  # the keys were usable ones


class DurableWorker(Worker):
    """A worker whose table reserves indexes through a ledger, here a bytearray: what
    relay/worker.py appends to its file (and fdatasyncs) before it commits."""

    def __init__(self, ledger: bytearray, restored: bytes = b"") -> None:
        self.table = _core.RouteTable(durable=True)
        self.table.ledger_load(restored)  # before anyone joins, as a restarted worker does
        self.table.open_meeting(MID, "webinar")
        self.forwarder = _core.Forwarder(self.table)
        self.tx = _core.SendBatch(4096)
        self.ledger = ledger

    def reserve(self) -> None:
        self.ledger += self.table.ledger_pending()
        self.table.ledger_commit()
        self.forwarder.process_release(self.tx)

    def feed(self, datagrams: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        rx = _core.RecvBatch()
        for data, address in datagrams:
            rx.push(data, address)
        self.forwarder.process(rx, self.tx, 1000.0)
        self.reserve()
        out = self.tx.items()
        self.tx.clear()
        return out


def test_a_restarted_worker_carries_on_past_a_wrap_and_never_repeats_an_index() -> None:
    """A sender past its first sequence wrap (ROC 1) and a receiver that followed it. A fresh
    table (a restarted worker) given what the ledger and the stream state held before it
    crashed authenticates the sender's next packets and sends the receiver indexes above all
    it may have been sent, which the receiver's own ROC estimate follows; without the stream
    state the sender's ROC 1 is unknown, and without the ledger nothing is sent at all."""
    suite = AES
    host = Peer(
        1, suite, key_material(suite), key_material(suite), ("10.0.0.1", 5000), (HOST_SSRC,)
    )
    listener = Peer(2, suite, key_material(suite), key_material(suite), ("10.0.0.2", 5000), ())

    def fresh(ledger: bytearray, restored: bytes = b"") -> DurableWorker:
        w = DurableWorker(ledger, restored)
        for peer, role in ((host, "host"), (listener, "attendee")):
            w.table.join(
                peer.pid,
                MID,
                role,
                suite,
                peer.uplink,
                peer.downlink,
                ssrcs=peer.ssrcs,
                address=peer.address,
            )
        w.reserve()
        return w

    ledger = bytearray()
    before = fresh(ledger)
    sender = Session(suite, host.uplink)
    seqs = [65530 + i for i in range(12)]  # wraps: the last six have ROC 1
    sent_before = []
    for i, seq in enumerate(seqs):
        packet = sender.protect(rtp(seq & 0xFFFF, HOST_SSRC, payload=b"%d" % i))
        (out,) = before.feed([(packet, host.address)])
        assert listener.inp.unprotect(out[0]) == rtp(seq & 0xFFFF, HOST_SSRC, payload=b"%d" % i)
        sent_before.append(out[0])
    assert before.table.counters()["parked"] == 1  # the first copy waited for its reservation
    state = before.table.stream_state()

    lost = fresh(bytearray(), bytes(ledger))  # the ledger alone: the sender's ROC is unknown
    after = fresh(bytearray(), bytes(ledger) + state)
    indexes_after = []
    for n in range(20, 25):
        packet = sender.protect(rtp(n, HOST_SSRC, payload=b"after %d" % n))
        assert lost.feed([(packet, host.address)]) == []
        (out,) = after.feed([(packet, host.address)])
        plain = listener.inp.unprotect(out[0])
        assert plain[12:] == b"after %d" % n and plain[8:12] == struct.pack("!I", HOST_SSRC)
        indexes_after.append(struct.unpack("!H", plain[2:4])[0])
    assert lost.table.counters()["dropped"]["auth"] == 5
    # The receiver's stream went on above everything reserved before the crash (its ROC 1,
    # seq 5 was the last it had): its sequence numbers jumped by less than 2^15.
    assert indexes_after == list(range(indexes_after[0], indexes_after[0] + 5))
    last_before, first_after = 65536 + 5, 65536 + indexes_after[0]
    assert last_before < first_after <= last_before + _core.INDEX_RESERVE
    # A packet from before the restart, replayed, is refused.
    old = Session(suite, host.uplink)
    for seq in seqs[:-1]:
        old.protect(rtp(seq & 0xFFFF, HOST_SSRC))
    replayed = old.protect(rtp(seqs[-1] & 0xFFFF, HOST_SSRC, payload=b"%d" % (len(seqs) - 1)))
    assert after.feed([(replayed, host.address)]) == []
    with pytest.raises(ValueError, match="whole number"):
        after.table.ledger_load(b"X123")


def test_an_imported_record_shorter_than_its_header_is_dropped() -> None:
    """Found by fuzzing (AddressSanitizer: a read past a 3-byte RTCP record): records are
    checked against the header they claim before anything reads it."""
    workers, host, people, home = two_workers(AES)
    for kind, length in ((1, 3), (0, 11)):
        record = struct.pack("<BBHIIIQ", kind, 0, length, MID, host.pid, HOST_SSRC, 0)
        assert workers[1].forwarder.process_import(record + bytes(length), workers[1].tx) == 0
    assert workers[1].table.counters()["dropped"]["malformed"] == 2
