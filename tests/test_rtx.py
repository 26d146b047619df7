"""Retransmission from the cache (ext/rtx.pxi): a receiver's generic NACK (RFC 4585 section
6.2.1) is answered with the packets it names, protected for it at the index they first had,
byte for byte the same SRTP packets; what the cache cannot serve is asked of the sender once;
a NACK flood is bounded. In memory, through relay._core's RouteTable and Forwarder; libsrtp
(pylibsrtp), an independent SRTP implementation, is the receiver that lost the packets."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import pytest

from tests.test_fanout import Worker
from tests.test_forward import AES, GCM, MID, Datagram, Peer, Relay, key_material

pylibsrtp = pytest.importorskip("pylibsrtp")

PROFILES = {
    AES: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}
VIDEO = 0x0B0B0B0B


def nack(media_ssrc: int, lost: Iterable[int]) -> bytes:
    """A generic NACK naming these sequence numbers: one entry per 17 (PID and bitmask)."""
    seqs = sorted(lost)
    entries = b""
    while seqs:
        pid, blp = seqs.pop(0), 0
        while seqs and 1 <= (seqs[0] - pid) % 65536 <= 16:
            blp |= 1 << ((seqs.pop(0) - pid) % 65536 - 1)
        entries += struct.pack("!HH", pid, blp)
    return struct.pack("!BBHII", 0x81, 205, 2 + len(entries) // 4, 0x5EED, media_ssrc) + entries


def named(packet: bytes) -> tuple[int, list[int]]:
    """The media SSRC and the sequence numbers a NACK names."""
    media = struct.unpack_from("!I", packet, 8)[0]
    seqs = []
    for off in range(12, len(packet), 4):
        pid, blp = struct.unpack_from("!HH", packet, off)
        seqs += [pid] + [(pid + b + 1) % 65536 for b in range(16) if blp >> b & 1]
    return media, seqs


def libsrtp_receiver(peer: Peer) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=peer.downlink,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
        srtp_profile=PROFILES[peer.suite],
    )
    return pylibsrtp.Session(policy)


def rtx(relay: Relay | Worker) -> dict[str, int]:
    return dict(relay.table.counters()["rtx"])


class Scene:
    """A webinar: the host sends video; two attendees watch."""

    def __init__(self, suite: str) -> None:
        self.relay = Relay(suite, "webinar")
        self.host = self.relay.join(1, "host", [VIDEO])
        self.viewers = [self.relay.join(10, "attendee"), self.relay.join(11, "attendee")]
        self.seq = 100

    def send(self, count: int, now: float | None = None) -> list[Datagram]:
        out = []
        for _ in range(count):
            self.seq += 1
            out += self.relay.feed([(self.host.media(self.seq, VIDEO)[1], self.host.address)], now)
        return out

    def nack(self, viewer: Peer, lost: Iterable[int], now: float | None = None) -> list[Datagram]:
        packet = viewer.out.protect_rtcp(nack(VIDEO, lost))
        return self.relay.feed([(packet, viewer.address)], now)


@pytest.mark.parametrize("suite", [AES, GCM])
def test_a_nacked_packet_comes_again_byte_for_byte_and_libsrtp_takes_it(suite: str) -> None:
    s = Scene(suite)
    s.nack(s.viewers[0], [1])  # the first NACK of a stream opens its cache
    assert rtx(s.relay)["not_sent"] == 1
    first = s.send(20)
    to_viewer = [d for d, a in first if a == s.viewers[0].address]
    assert len(to_viewer) == 20
    # libsrtp got all but three (lost on the way), decrypts those and then the retransmissions.
    receiver = libsrtp_receiver(s.viewers[0])
    lost = {3, 7, 8}
    for i, packet in enumerate(to_viewer):
        if i not in lost:
            receiver.unprotect(packet)
    seqs = [struct.unpack_from("!H", to_viewer[i], 2)[0] for i in sorted(lost)]
    again = s.nack(s.viewers[0], seqs)
    assert [a for _, a in again] == [s.viewers[0].address] * 3
    assert [d for d, _ in again] == [to_viewer[i] for i in sorted(lost)]  # the same bytes
    plain = [receiver.unprotect(d) for d, _ in again]
    assert [struct.unpack_from("!H", p, 2)[0] for p in plain] == seqs
    assert rtx(s.relay)["served"] == 3 and s.relay.counter("nacks") == 2
    # The other viewer was sent nothing more.
    assert all(a == s.viewers[0].address for _, a in again)


def test_only_what_the_viewer_was_sent_is_sent_again() -> None:
    s = Scene(AES)
    assert s.nack(s.viewers[0], [1, 2]) == []  # before its first packet
    to = [d for d, a in s.send(5) if a == s.viewers[0].address]
    last = struct.unpack_from("!H", to[-1], 2)[0]
    assert s.nack(s.viewers[0], [last + 1, last + 2]) == []  # the future
    assert rtx(s.relay)["not_sent"] == 4


def test_what_the_cache_lacks_is_asked_of_the_sender_once() -> None:
    s = Scene(AES)
    to = [d for d, a in s.send(10) if a == s.viewers[0].address]  # before any NACK: no cache
    sent = [struct.unpack_from("!H", d, 2)[0] for d in to]
    items = s.nack(s.viewers[0], sent[2:5])
    assert [a for _, a in items] == [s.host.address]
    media, seqs = named(s.host.fresh_receiver().unprotect_rtcp(items[0][0]))
    # The host's own numbers: a fresh stream keeps the sender's (no other source before).
    assert media == VIDEO and seqs == sent[2:5]
    assert s.nack(s.viewers[1], sent[2:5], s.relay.now + 0.1) == []  # merged with the first
    assert rtx(s.relay) | {"asked_sender": 3, "not_cached": 3} == rtx(s.relay)
    again = s.nack(s.viewers[1], sent[2:5], s.relay.now + 0.3)  # still missing: asked again
    assert [a for _, a in again] == [s.host.address]


def test_a_packet_older_than_a_second_is_not_served() -> None:
    s = Scene(AES)
    s.nack(s.viewers[0], [1])
    t0 = s.relay.now
    to = s.send(5, t0)
    seq = struct.unpack_from("!H", to[0][0], 2)[0]
    assert s.nack(s.viewers[0], [seq], t0 + 0.9) != []
    late = s.nack(s.viewers[0], [seq], t0 + 1.1)
    assert [a for _, a in late] == [s.host.address]  # asked of the sender instead


def test_a_new_source_on_the_ssrc_is_not_resent_what_the_old_one_sent() -> None:
    """After the SSRC passes to a new sender, the viewer's stream continues at its next index
    under a new mapping; indexes of the old mapping are not sent again (other bytes went
    there)."""
    s = Scene(AES)
    s.nack(s.viewers[0], [1])
    old = [d for d, a in s.send(5) if a == s.viewers[0].address]
    s.relay.table.leave(1)
    newcomer = s.relay.join(2, "host", [VIDEO])
    s.nack(s.viewers[0], [1])  # its stream is another: its own cache, opened by a NACK
    fresh = []
    for seq in range(5000, 5005):
        fresh += s.relay.feed([(newcomer.media(seq, VIDEO)[1], newcomer.address)])
    new = [d for d, a in fresh if a == s.viewers[0].address]
    old_seqs = [struct.unpack_from("!H", d, 2)[0] for d in old]
    new_seqs = [struct.unpack_from("!H", d, 2)[0] for d in new]
    assert new_seqs[0] == old_seqs[-1] + 1  # continued, rewritten
    before = rtx(s.relay)
    assert s.nack(s.viewers[0], old_seqs) == []
    assert rtx(s.relay)["not_sent"] - before["not_sent"] == 5
    again = s.nack(s.viewers[0], new_seqs[1:3])
    assert [d for d, _ in again] == new[1:3]


def test_a_nack_flood_is_bounded() -> None:
    s = Scene(AES)
    s.nack(s.viewers[0], [1])
    to = [d for d, a in s.send(200) if a == s.viewers[0].address]
    seqs = [struct.unpack_from("!H", d, 2)[0] for d in to]
    served = 0
    for _ in range(10):  # the whole second's packets, ten times over
        served += len(s.nack(s.viewers[0], seqs))
    # No socket here, so nothing counts as sent: the burst alone (ext/rtx.pxi, RTX_BURST).
    assert served == 64
    assert rtx(s.relay)["rate_limited"] == 10 * 200 - 64
    # A second later the budget is back (for packets still young enough: an audio stream's
    # cache serves half a second).
    assert len(s.nack(s.viewers[0], seqs[-3:], s.relay.now + 0.5)) == 0  # not yet
    later = s.relay.now + 1.0
    fresh = [d for d, a in s.send(3, later) if a == s.viewers[0].address]
    seqs = [struct.unpack_from("!H", d, 2)[0] for d in fresh]
    assert len(s.nack(s.viewers[0], seqs, later + 0.1)) == 3


def test_a_nack_flood_for_packets_no_cache_holds_asks_the_sender_a_bounded_number() -> None:
    s = Scene(AES)  # audio: its cache opens at the first NACK, after these were sent
    to = [d for d, a in s.send(200) if a == s.viewers[0].address]
    seqs = [struct.unpack_from("!H", d, 2)[0] for d in to]
    t0 = s.relay.now
    asked = 0
    for k in range(4):  # each 0.25 s: past RTX_ASK_AGAIN, so each packet may be asked again
        for start in range(0, 200, 32):
            asked += len(s.nack(s.viewers[0], seqs[start : start + 32], t0 + 0.25 * k))
    assert rtx(s.relay)["asked_sender"] == 64  # the receiver's budget for the second
    assert asked == 2  # NACKs to the host, of 32 packets each
    assert rtx(s.relay)["rate_limited"] == 4 * 200 - 64


def test_a_nack_for_an_unknown_stream_is_counted_and_a_forged_one_changes_nothing() -> None:
    s = Scene(AES)
    viewer = s.viewers[0]
    assert s.relay.feed([(viewer.out.protect_rtcp(nack(0xDEAD, [5])), viewer.address)]) == []
    assert rtx(s.relay)["unknown_stream"] == 1
    s.send(5)
    before = rtx(s.relay), s.relay.counter("nacks")
    impostor = Peer(10, AES, bytes(30), bytes(30), viewer.address, ())  # not its key
    assert s.relay.feed([(impostor.out.protect_rtcp(nack(VIDEO, [101])), viewer.address)]) == []
    assert (rtx(s.relay), s.relay.counter("nacks")) == before


def test_a_packet_no_worker_here_holds_is_asked_by_the_senders_home_worker() -> None:
    """Worker 0 is the host's home, the viewer is worker 1's. A packet that never reached
    worker 1 (its record lost) is not in worker 1's cache: its NACK goes to worker 0 as a
    record, and worker 0 asks the host, which only it may send RTCP to."""
    workers = [Worker(), Worker()]
    host = Peer(1, AES, key_material(AES), key_material(AES), ("10.0.0.1", 5000), (VIDEO,))
    viewer = Peer(10, AES, key_material(AES), key_material(AES), ("10.0.1.1", 6000), ())
    for index, w in enumerate(workers):
        for peer, role, home in ((host, "host", 0), (viewer, "attendee", 1)):
            w.table.join(
                peer.pid, MID, role, AES, peer.uplink, peer.downlink, ssrcs=peer.ssrcs,
                address=peer.address, local=home == index, video_ssrcs=[VIDEO],
            )  # fmt: skip
    got = []
    for seq in range(1, 6):
        workers[0].feed([(host.media(seq, VIDEO)[1], host.address)])
        ((_, records),) = workers[0].forwarder.take_exports()
        if seq != 3:  # the third never reaches worker 1
            got += workers[1].take_in(records)
    assert len(got) == 4
    assert workers[1].feed([(viewer.out.protect_rtcp(nack(VIDEO, [3])), viewer.address)]) == []
    assert rtx(workers[1])["asked_sender"] == 1
    ((_, records),) = workers[1].forwarder.take_exports()
    # (With it, worker 1's keyframe request for its newcomer: a video stream's first packet.)
    to_host = host.fresh_receiver()
    sent = [to_host.unprotect_rtcp(d) for d, a in workers[0].take_in(records) if a == host.address]
    assert [p[1] for p in sent] == [206, 205]
    assert named(sent[1]) == (VIDEO, [3])
