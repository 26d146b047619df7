"""The forwarding core (relay._core.RouteTable + Forwarder) without sockets.

Every test drives Forwarder.process() with datagrams pushed into a RecvBatch and reads what
it queued in the SendBatch: where each datagram goes and whether the receiver's client-side
Session decrypts it to exactly what the sender sent. Counters are read from the table; the
packets_out counters only move on a real socket flush, so here tx.items() is what went out.
"""

from __future__ import annotations

import random
import secrets
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relay import _core
from relay.srtp import AuthError, Session
from tests.conftest import rtcp_sr, rtp

ROOT = Path(__file__).resolve().parents[1]
AES = "AES_CM_128_HMAC_SHA1_80"
GCM = "AEAD_AES_128_GCM"
SUITES = [AES, GCM]
MID = 1
HOST_SSRC = 0x0A0A0A0A
Address = tuple[str, int]
Datagram = tuple[bytes, Address]


def key_material(suite: str) -> bytes:
    key_len, salt_len, _ = _core.SUITES[suite]
    return secrets.token_bytes(key_len + salt_len)


def rtcp_rr(ssrc: int) -> bytes:
    """An RTCP receiver report with no report blocks (RFC 3550 section 6.4.2)."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def rtcp_pli(sender: int, media: int) -> bytes:
    """Picture loss indication (RFC 4585 section 6.3.1): PT 206, FMT 1."""
    return struct.pack("!BBHII", 0x81, 206, 2, sender, media)


def rtcp_fir(sender: int, media: int, seq_nr: int = 1) -> bytes:
    """Full intra request (RFC 5104 section 4.3.1): PT 206, FMT 4, one FCI entry."""
    return struct.pack("!BBHIIIB3x", 0x84, 206, 4, sender, 0, media, seq_nr)


@dataclass
class Peer:
    """A participant as its client sees it: keys, SSRCs, the address it uses."""

    pid: int
    suite: str
    uplink: bytes
    downlink: bytes
    address: Address
    ssrcs: tuple[int, ...]
    out: Session = field(init=False)  # protects what it sends (uplink)
    inp: Session = field(init=False)  # unprotects what it receives (downlink)

    def __post_init__(self) -> None:
        self.out = Session(self.suite, self.uplink)
        self.inp = Session(self.suite, self.downlink)

    @property
    def ssrc(self) -> int:
        return self.ssrcs[0]

    def media(self, seq: int, ssrc: int | None = None) -> tuple[bytes, bytes]:
        """(plaintext RTP, SRTP) for the next packet of a stream, payload unique."""
        ssrc = self.ssrc if ssrc is None else ssrc
        payload = struct.pack("!IIH", self.pid, ssrc, seq & 0xFFFF) + secrets.token_bytes(40)
        plain = rtp(seq & 0xFFFF, ssrc=ssrc, payload=payload, ts=seq * 960 & 0xFFFFFFFF)
        return plain, self.out.protect(plain)

    def fresh_receiver(self) -> Session:
        return Session(self.suite, self.downlink)


class Relay:
    """One RouteTable and Forwarder with a meeting, driven without sockets."""

    def __init__(self, suite: str = AES, mode: str = "webinar", capacity: int = 4096) -> None:
        self.suite = suite
        self.table = _core.RouteTable()
        self.table.open_meeting(MID, mode)
        self.forwarder = _core.Forwarder(self.table)
        self.tx = _core.SendBatch(capacity)
        self.now = 1000.0

    def join(
        self,
        pid: int,
        role: str,
        ssrcs: Iterable[int] = (),
        *,
        given: bool = True,
        meeting: int = MID,
        address: Address | None = None,
        suite: str | None = None,
    ) -> Peer:
        """Join a participant; with given=True its address is set at join (receive_at)."""
        suite = suite or self.suite
        peer = Peer(
            pid,
            suite,
            key_material(suite),
            key_material(suite),
            address or (f"10.{pid >> 8 & 0xFF}.{pid & 0xFF}.1", 20000 + pid),
            tuple(ssrcs),
        )
        self.table.join(
            pid,
            meeting,
            role,
            peer.suite,
            peer.uplink,
            peer.downlink,
            ssrcs=peer.ssrcs,
            address=peer.address if given else None,
        )
        return peer

    def feed(self, datagrams: Iterable[Datagram], now: float | None = None) -> list[Datagram]:
        """Forward the datagrams (in batches of at most 64); what went out, in order."""
        out: list[Datagram] = []
        pending = list(datagrams)
        when = self.now if now is None else now
        for start in range(0, len(pending), 64):
            rx = _core.RecvBatch()
            for data, address in pending[start : start + 64]:
                rx.push(data, address)
            self.forwarder.process(rx, self.tx, when)
            out += self.tx.items()
            self.tx.clear()
        return out

    def send(self, peer: Peer, *packets: bytes, source: Address | None = None) -> list[Datagram]:
        return self.feed((p, source or peer.address) for p in packets)

    def drops(self) -> dict[str, int]:
        return dict(self.table.counters()["dropped"])

    def counter(self, name: str) -> int:
        return int(self.table.counters()[name])


def by_address(items: Iterable[Datagram]) -> dict[Address, list[bytes]]:
    grouped: dict[Address, list[bytes]] = defaultdict(list)
    for data, address in items:
        grouped[address].append(data)
    return dict(grouped)


def new_drops(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The drop counters that moved, and by how much."""
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


class DropWatch:
    """with DropWatch(relay) as w: ...; then w.delta is the drops counted inside."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.delta: dict[str, int] = {}

    def __enter__(self) -> DropWatch:
        self.before = self.relay.drops()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delta = new_drops(self.before, self.relay.drops())


def webinar(suite: str, attendees: int = 3, **kw: Any) -> tuple[Relay, Peer, list[Peer]]:
    relay = Relay(suite, "webinar", **kw)
    host = relay.join(1, "host", [HOST_SSRC])
    return relay, host, [relay.join(10 + i, "attendee") for i in range(attendees)]


def decrypt_all(session: Session, packets: Iterable[bytes]) -> list[bytes]:
    return [session.unprotect(p) for p in packets]


# --- 1. webinar fan-out ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_webinar_fan_out_reaches_every_attendee_once_in_order(suite: str) -> None:
    relay, host, attendees = webinar(suite, attendees=4)
    plains, packets = zip(*(host.media(seq) for seq in range(3000, 3200)), strict=True)

    items = relay.send(host, *packets)

    got = by_address(items)
    assert set(got) == {a.address for a in attendees}  # nothing to the host, nothing else
    for attendee in attendees:
        assert decrypt_all(attendee.fresh_receiver(), got[attendee.address]) == list(plains)
    assert len(items) == len(plains) * len(attendees)
    assert relay.drops() == dict.fromkeys(_core.DROP_NAMES, 0)
    counters = relay.table.counters()
    assert counters["packets_in"] == len(plains)
    assert counters["bytes_in"] == sum(map(len, packets))
    assert relay.table.participant_counters()[host.pid][:2] == (len(plains), counters["bytes_in"])


@pytest.mark.parametrize("suite", SUITES)
def test_receivers_keys_are_their_own(suite: str) -> None:
    relay, host, attendees = webinar(suite, attendees=2)
    _, packet = host.media(1)
    got = by_address(relay.send(host, packet))
    first, second = attendees
    with pytest.raises(AuthError):
        second.fresh_receiver().unprotect(got[first.address][0])
    with pytest.raises(AuthError):
        host.fresh_receiver().unprotect(got[first.address][0])


def test_mixed_suites_at_the_size_limit() -> None:
    """Each participant has its own suite: a sender with 4-byte tags at the largest packet
    the relay takes still fits for receivers with 16-byte GCM tags (and SRTCP trailers)."""
    relay = Relay("AES_CM_128_HMAC_SHA1_32", "webinar")
    host = relay.join(1, "host", [HOST_SSRC])
    attendees = [relay.join(10 + i, "attendee", suite=s) for i, s in enumerate(_core.SUITES)]
    plain = rtp(1, HOST_SSRC, payload=bytes(range(256)) * 7 + bytes(2012 - 12 - 4 - 1792))
    packet = host.out.protect(plain)
    assert len(packet) == 2012
    big = rtcp_sr(HOST_SSRC, extra=bytes(1996 - 28))  # + 14 bytes of SRTCP trailer and tag
    big_sr = big[:2] + struct.pack("!H", len(big) // 4 - 1) + big[4:]
    srtcp = host.out.protect_rtcp(big_sr)
    assert len(srtcp) == 2010
    got = by_address(relay.send(host, packet, srtcp))
    for attendee in attendees:
        session = attendee.fresh_receiver()
        media, report = got[attendee.address]
        assert session.unprotect(media) == plain
        assert session.unprotect_rtcp(report) == big_sr
    assert relay.drops() == dict.fromkeys(_core.DROP_NAMES, 0)


# --- 2. latching ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_latching_only_on_authenticated_packets(suite: str) -> None:
    relay, host, attendees = webinar(suite, attendees=2)
    relay.table.leave(host.pid)
    host = relay.join(2, "host", [HOST_SSRC], given=False)
    a_addr, b_addr = ("192.0.2.1", 5000), ("198.51.100.7", 6000)
    assert relay.table.address_of(host.pid) is None
    assert relay.counter("latched") == 0

    # The first packet that authenticates latches the sender's address.
    _, p1 = host.media(1)
    assert len(relay.send(host, p1, source=a_addr)) == 2
    assert relay.table.address_of(host.pid) == a_addr
    assert relay.counter("latched") == 1

    # A forged packet (bad tag) from elsewhere changes nothing.
    _, p2 = host.media(2)
    forged = bytearray(p2)
    forged[-1] ^= 0x40
    with DropWatch(relay) as w:
        assert relay.send(host, bytes(forged), source=b_addr) == []
    assert w.delta == {"auth": 1}
    assert relay.table.address_of(host.pid) == a_addr
    assert relay.counter("latched") == 1

    # A replay of a genuine packet from elsewhere changes nothing either.
    with DropWatch(relay) as w:
        assert relay.send(host, p1, source=b_addr) == []
    assert w.delta == {"replay": 1}
    assert relay.table.address_of(host.pid) == a_addr

    # An authenticated packet from a new address moves it (NAT rebinding).
    assert len(relay.send(host, p2, source=b_addr)) == 2
    assert relay.table.address_of(host.pid) == b_addr
    assert relay.counter("latched") == 2

    # SRTCP from another port authenticates (it is forwarded) but does not move the address.
    report = rtcp_sr(HOST_SSRC)
    items = relay.send(host, host.out.protect_rtcp(report), source=(b_addr[0], b_addr[1] + 1))
    got = by_address(items)
    assert set(got) == {a.address for a in attendees}
    for attendee in attendees:
        assert attendee.fresh_receiver().unprotect_rtcp(got[attendee.address][0]) == report
    assert relay.table.address_of(host.pid) == b_addr
    assert relay.counter("latched") == 2

    # Media after the move goes on to everyone; attendees' given addresses never moved.
    plain, p3 = host.media(3)
    got = by_address(relay.send(host, p3, source=b_addr))
    assert {a: len(v) for a, v in got.items()} == {a.address: 1 for a in attendees}
    for attendee in attendees:
        assert relay.table.address_of(attendee.pid) == attendee.address


def test_ipv6_addresses_latch_and_receive() -> None:
    relay = Relay(AES, "webinar")
    host = relay.join(1, "host", [HOST_SSRC], given=False, address=("2001:db8::1", 5004))
    v6 = relay.join(10, "attendee", address=("2001:db8::a", 6000))
    v4 = relay.join(11, "attendee")
    plain, packet = host.media(1)
    got = by_address(relay.send(host, packet))
    assert relay.table.address_of(host.pid) == ("2001:db8::1", 5004)
    assert set(got) == {v6.address, v4.address}
    assert v6.fresh_receiver().unprotect(got[v6.address][0]) == plain
    # A forged packet from a v4 address with the same port does not move it.
    _, packet = host.media(2)
    with DropWatch(relay) as w:
        relay.send(host, packet[:-1] + bytes([packet[-1] ^ 1]), source=("192.0.2.1", 5004))
    assert w.delta == {"auth": 1}
    assert relay.table.address_of(host.pid) == ("2001:db8::1", 5004)


@pytest.mark.parametrize("suite", SUITES)
def test_listener_without_address_is_latched_by_its_receiver_report(suite: str) -> None:
    relay, host, _ = webinar(suite, attendees=1)
    # A listen-only client that declared the SSRC of its reports but gave no address.
    listener = relay.join(50, "attendee", [0x5EED], given=False)
    assert relay.table.address_of(listener.pid) is None

    with DropWatch(relay) as w:
        items = relay.send(host, *(host.media(seq)[1] for seq in range(1, 4)))
    assert listener.address not in by_address(items)
    assert w.delta == {"no_address": 3}

    terminated = relay.counter("rtcp_terminated")
    with DropWatch(relay) as w:
        assert relay.send(listener, listener.out.protect_rtcp(rtcp_rr(0x5EED))) == []
    assert w.delta == {}
    assert relay.table.address_of(listener.pid) == listener.address
    assert relay.counter("latched") == 1
    assert relay.counter("rtcp_terminated") == terminated + 1

    plain, packet = host.media(4)
    got = by_address(relay.send(host, packet))
    assert listener.fresh_receiver().unprotect(got[listener.address][0]) == plain


@pytest.mark.parametrize("suite", SUITES)
def test_attendee_media_is_dropped_but_latches_its_address(suite: str) -> None:
    relay, host, _ = webinar(suite, attendees=1)
    attendee = relay.join(50, "attendee", [0xA77E], given=False)
    with DropWatch(relay) as w:
        assert relay.send(attendee, attendee.media(1)[1]) == []
    assert w.delta == {"not_allowed": 1}
    assert relay.table.address_of(attendee.pid) == attendee.address
    plain, packet = host.media(1)
    got = by_address(relay.send(host, packet))
    assert attendee.fresh_receiver().unprotect(got[attendee.address][0]) == plain


def test_listener_without_address_or_ssrc_cannot_be_found(suite: str) -> None:
    """DESIGN: the relay finds a participant by a declared SSRC or by its address; a client
    that declares neither must give receive_at. Trying every listener's key on an unknown
    packet would let anyone make the relay do that work."""
    relay, host, _ = webinar(suite, attendees=1)
    listener = relay.join(50, "attendee", given=False)
    with DropWatch(relay) as w:
        relay.send(listener, listener.out.protect_rtcp(rtcp_rr(0x5EED)))
    assert w.delta == {"unknown_source": 1}
    assert relay.table.address_of(listener.pid) is None


@pytest.mark.parametrize("suite", [AES])
def test_attendee_feedback_from_its_other_port_reaches_the_sender(suite: str) -> None:
    relay, host, (attendee,) = webinar(suite, attendees=1)
    relay.send(host, host.media(1)[1], source=host.address)  # host is at its address
    ip, port = attendee.address
    pli = rtcp_pli(0x5EED, HOST_SSRC)
    items = relay.send(attendee, attendee.out.protect_rtcp(pli), source=(ip, port + 1))
    assert [a for _, a in items] == [host.address]
    assert host.fresh_receiver().unprotect_rtcp(items[0][0]) == pli


# --- 3. drop reasons ------------------------------------------------------------------------------


def test_malformed() -> None:
    relay, host, _ = webinar(AES, attendees=1)
    plain, genuine = host.media(1)
    version1 = bytes([0x40 | (genuine[0] & 0x3F)]) + genuine[1:]
    short_header = genuine[:8]
    no_room_for_tag = plain[:12]  # a header with the host's SSRC and nothing after it
    for packet, count in ((b"", 1), (short_header, 1), (version1, 1), (no_room_for_tag, 1)):
        with DropWatch(relay) as w:
            assert relay.send(host, packet) == []
        assert w.delta == {"malformed": count}, packet
    assert len(relay.send(host, genuine)) == 1  # the stream is unharmed


def test_stun_and_dtls_are_set_aside_only_when_asked_and_never_forwarded() -> None:
    """RFC 7983 section 7: the first byte tells STUN (0..3) and DTLS (20..63) from RTP. A
    worker that serves WebRTC peers gets them aside with their source, in order; one that
    does not counts them malformed, as before. Neither is ever forwarded."""
    relay, host, (attendee,) = webinar(AES, attendees=1)
    stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)  # a Binding request header
    dtls = b"\x16\xfe\xfd" + bytes(10)  # a handshake record header, DTLS 1.2
    other = [bytes([first]) + bytes(20) for first in (4, 19, 64, 127, 192, 255)]
    other += [b"", stun[:12], dtls[:12]]  # shorter than any STUN or DTLS header
    other += [
        b"\x00\x01\x00\x00\x21\x12\xa4\x43" + bytes(12),  # not STUN's magic cookie
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12),  # a length past the datagram
        b"\x16\x03\x03" + bytes(10),  # TLS's version, not DTLS's
    ]
    stranger = ("192.0.2.7", 5000)
    with DropWatch(relay) as w:
        assert relay.feed([(stun, stranger), (dtls, host.address)]) == []
    assert w.delta == {"malformed": 2}
    assert relay.forwarder.take_aside() == []

    relay.forwarder.set_aside = True
    relay.forwarder.budget = 4
    _, genuine = host.media(1)
    with DropWatch(relay) as w:
        out = relay.feed([(stun, stranger), (genuine, host.address), (dtls, host.address)])
        out += relay.feed((p, stranger) for p in other)
    assert [address for _, address in out] == [attendee.address]
    assert w.delta == {"malformed": len(other)}
    assert relay.forwarder.take_aside() == [(stun, stranger), (dtls, host.address)]
    assert relay.forwarder.take_aside() == []
    v6 = ("2001:db8::7", 6000)
    relay.feed([(stun, v6)])
    assert relay.forwarder.take_aside() == [(stun, v6)]
    # The budget the worker gives each second: one left, then counted past it.
    with DropWatch(relay) as w:
        relay.feed([(stun, stranger), (dtls, stranger), (stun, v6)])
    assert w.delta == {"signalling_limit": 2}
    assert relay.forwarder.take_aside() == [(stun, stranger)]


@pytest.mark.parametrize("suite", SUITES)
def test_a_viewer_gets_the_streams_its_answer_placed_under_its_own_payload_types(
    suite: str,
) -> None:
    """A WebRTC viewer's SDP answer places a stream under the payload type its offer gave the
    codec (RFC 3264 section 6.1): the relay rewrites it, keeps the marker bit, and does not
    send a stream the answer did not place. Other receivers get the sender's numbers."""
    relay, host, (plain_listener,) = webinar(suite, attendees=1)
    viewer = relay.join(20, "attendee", address=("10.0.0.20", 4444))
    relay.table.leave(20)  # again, with its payload types
    relay.table.join(
        20,
        MID,
        "attendee",
        suite,
        viewer.uplink,
        viewer.downlink,
        address=viewer.address,
        payload_types=[(HOST_SSRC, 120)],
    )
    second = 0x0B0B0B0B
    panelist = relay.join(30, "panelist", [second])
    sent = [
        rtp(1, HOST_SSRC, pt=96, marker=True),
        rtp(2, HOST_SSRC, pt=96),
    ]
    out = by_address(relay.send(host, *(host.out.protect(p) for p in sent)))
    out |= {
        k: v + out.get(k, [])
        for k, v in by_address(
            relay.send(panelist, panelist.out.protect(rtp(1, second, pt=97)))
        ).items()
    }
    got = decrypt_all(viewer.fresh_receiver(), out[viewer.address])
    assert [(p[1], p[2:4]) for p in got] == [(0x80 | 120, b"\x00\x01"), (120, b"\x00\x02")]
    assert [p[12:] for p in got] == [p[12:] for p in sent]
    kept = decrypt_all(plain_listener.fresh_receiver(), out[plain_listener.address])
    assert sorted(p[1] for p in kept) == [96, 97, 0x80 | 96]
    # A WHIP publisher's answer places nothing for it to receive: it gets nothing.
    relay.table.join(
        40, MID, "panelist", suite, viewer.uplink, viewer.downlink,
        address=("10.0.0.40", 4444), payload_types=[],
    )  # fmt: skip
    assert ("10.0.0.40", 4444) not in by_address(
        relay.send(host, host.out.protect(rtp(3, HOST_SSRC)))
    )
    with pytest.raises(ValueError, match="0..127"):
        relay.table.join(
            21,
            MID,
            "attendee",
            suite,
            viewer.uplink,
            viewer.downlink,
            payload_types=[(HOST_SSRC, 128)],
        )
    with pytest.raises(ValueError, match="not both"):
        relay.table.join(
            21,
            MID,
            "attendee",
            suite,
            viewer.uplink,
            viewer.downlink,
            receive_ports=[(HOST_SSRC, 5000)],
            payload_types=[(HOST_SSRC, 1)],
        )


@pytest.mark.parametrize("suite", SUITES)
def test_rekey_keeps_everything_but_the_keys_and_never_reuses_an_index(suite: str) -> None:
    """A WebRTC peer joins with placeholder keys and gets its DTLS keys later (rekey). As a
    sender, only the new uplink key authenticates; as a receiver, what comes after is under
    the new downlink key, its streams and payload types kept, and the receiver's indexes
    under each key never repeat."""
    relay, host, (listener,) = webinar(suite, attendees=1)
    relay.table.join(
        20, MID, "attendee", suite, key_material(suite), key_material(suite),
        address=("10.0.0.20", 4444), payload_types=[(HOST_SSRC, 120)],
    )  # fmt: skip
    before = relay.send(host, *(host.media(n)[1] for n in (1, 2)))
    new_up, new_down = key_material(suite), key_material(suite)
    relay.table.rekey(20, new_up, new_down)
    relay.table.rekey(1, *(new_host := (key_material(suite), key_material(suite))))
    assert relay.table.address_of(20) == ("10.0.0.20", 4444)
    with DropWatch(relay) as w:
        assert relay.send(host, host.media(3)[1]) == []  # the host's old uplink key
    assert w.delta == {"auth": 1}
    sender = Session(suite, new_host[0])
    after = relay.send(host, *(sender.protect(rtp(n, HOST_SSRC, pt=96)) for n in (4, 5)))
    to_viewer = [p for p, a in after if a == ("10.0.0.20", 4444)]
    got = decrypt_all(Session(suite, new_down), to_viewer)
    assert [p[1] for p in got] == [120, 120]
    old_to_viewer = [p for p, a in before if a == ("10.0.0.20", 4444)]
    assert len(old_to_viewer) == 2
    with pytest.raises(AuthError):
        Session(suite, new_down).unprotect(old_to_viewer[0])
    # The listener, whose keys did not change, sees one stream whose indexes only grow.
    heard = decrypt_all(
        listener.fresh_receiver(), [p for p, a in before + after if a == listener.address]
    )
    assert [int.from_bytes(p[2:4], "big") for p in heard] == [1, 2, 3, 4]
    # A mute outlives a rekey (the same keys again: its streams continue from the ledger).
    relay.table.mute(1)
    relay.table.rekey(1, *new_host)
    with DropWatch(relay) as w:
        assert relay.send(host, sender.protect(rtp(6, HOST_SSRC, pt=96))) == []
    assert w.delta == {"muted": 1}
    assert len(relay.table) == 3
    with pytest.raises(ValueError, match="bytes"):
        relay.table.rekey(20, b"short", new_down)


def test_an_address_selected_by_ice_gets_media_until_consent_is_forgotten() -> None:
    """A WebRTC peer's address comes from ICE (select_address) and goes when its consent
    expires (forget_address, RFC 7675): nothing is sent to it in between."""
    relay, host, _ = webinar(AES, attendees=0)
    viewer = relay.join(20, "attendee", given=False)
    _, first = host.media(1)
    with DropWatch(relay) as w:
        assert relay.send(host, first) == []
    assert w.delta == {"no_address": 1}
    relay.table.select_address(20, ("198.51.100.9", 50000))
    assert relay.table.address_of(20) == ("198.51.100.9", 50000)
    out = relay.send(host, host.media(2)[1])
    assert [a for _, a in out] == [("198.51.100.9", 50000)]
    relay.table.forget_address(20)
    assert relay.table.address_of(20) is None
    with DropWatch(relay) as w:
        assert relay.send(host, host.media(3)[1]) == []
    assert w.delta == {"no_address": 1}
    relay.table.select_address(20, ("198.51.100.9", 50001))
    out = relay.send(host, host.media(4)[1])
    assert [a for _, a in out] == [("198.51.100.9", 50001)]
    assert len(decrypt_all(viewer.fresh_receiver(), [p for p, _ in out])) == 1


@pytest.mark.parametrize("suite", SUITES)
def test_too_large(suite: str) -> None:
    relay, host, (attendee,) = webinar(suite, attendees=1)
    tag = _core.SUITES[suite][2]
    header = 12
    at_limit = host.out.protect(rtp(1, HOST_SSRC, payload=b"\x01" * (2012 - header - tag)))
    over = host.out.protect(rtp(2, HOST_SSRC, payload=b"\x02" * (2013 - header - tag)))
    assert (len(at_limit), len(over)) == (2012, 2013)
    with DropWatch(relay) as w:
        items = relay.send(host, at_limit, over, b"\x80" * 4000)
    assert w.delta == {"too_large": 2}
    assert len(items) == 1
    assert attendee.fresh_receiver().unprotect(items[0][0])[12:] == b"\x01" * (2012 - 12 - tag)


def test_unknown_source() -> None:
    relay, host, (attendee,) = webinar(AES, attendees=1)
    with DropWatch(relay) as w:
        # RTP from an SSRC nobody declared, even from a known address with a valid key.
        assert relay.send(host, host.out.protect(rtp(1, ssrc=0xDEAD))) == []
        # RTCP from an undeclared SSRC and an unknown address.
        stranger = Session(AES, key_material(AES))
        assert relay.send(host, stranger.protect_rtcp(rtcp_rr(0xBEEF)), source=("1.2.3.4", 9)) == []
    assert w.delta == {"unknown_source": 2}
    assert relay.counter("latched") == 0


@pytest.mark.parametrize("suite", SUITES)
def test_auth(suite: str) -> None:
    relay, host, _ = webinar(suite, attendees=1)
    _, genuine = host.media(1)
    for position in (-1, 12, len(genuine) // 2):  # tag, first payload byte, middle
        forged = bytearray(genuine)
        forged[position] ^= 0x01
        with DropWatch(relay) as w:
            assert relay.send(host, bytes(forged)) == []
        assert w.delta == {"auth": 1}
    # Wrong key entirely.
    other = Session(suite, key_material(suite))
    with DropWatch(relay) as w:
        assert relay.send(host, other.protect(rtp(1, HOST_SSRC))) == []
        assert relay.send(host, other.protect_rtcp(rtcp_sr(HOST_SSRC))) == []
    assert w.delta == {"auth": 2}
    assert len(relay.send(host, genuine)) == 1


@pytest.mark.parametrize("suite", SUITES)
def test_replay(suite: str) -> None:
    relay, host, (attendee,) = webinar(suite, attendees=1)
    plain, genuine = host.media(7)
    with DropWatch(relay) as w:
        items = relay.send(host, genuine, genuine)
    assert w.delta == {"replay": 1}
    assert [attendee.fresh_receiver().unprotect(d) for d, _ in items] == [plain]
    srtcp = host.out.protect_rtcp(rtcp_sr(HOST_SSRC))
    with DropWatch(relay) as w:
        assert len(relay.send(host, srtcp, srtcp)) == 1
    assert w.delta == {"replay": 1}


@pytest.mark.parametrize("suite", SUITES)
def test_not_allowed_in_webinar_but_allowed_in_meeting(suite: str) -> None:
    relay, host, (listener,) = webinar(suite, attendees=1)
    talker = relay.join(60, "attendee", [0x7A1C])
    with DropWatch(relay) as w:
        assert relay.send(talker, talker.media(1)[1]) == []
        assert relay.send(talker, talker.out.protect_rtcp(rtcp_sr(0x7A1C))) == []
    assert w.delta == {"not_allowed": 2}

    meeting = Relay(suite, "meeting")
    host = meeting.join(1, "host", [HOST_SSRC])
    talker = meeting.join(60, "attendee", [0x7A1C])
    plain, packet = talker.media(1)
    items = meeting.send(talker, packet)
    assert [a for _, a in items] == [host.address]
    assert host.fresh_receiver().unprotect(items[0][0]) == plain


@pytest.mark.parametrize("suite", SUITES)
def test_muted_then_unmuted(suite: str) -> None:
    relay, host, attendees = webinar(suite, attendees=2)
    receivers = {a.address: a.fresh_receiver() for a in attendees}
    relay.table.mute(host.pid, True)
    with DropWatch(relay) as w:
        assert relay.send(host, *(host.media(s)[1] for s in range(1, 6))) == []
        assert relay.send(host, host.out.protect_rtcp(rtcp_sr(HOST_SSRC))) == []
    assert w.delta == {"muted": 6}
    relay.table.mute(host.pid, False)
    plain, packet = host.media(6)
    items = relay.send(host, packet)
    assert sorted(a for _, a in items) == sorted(receivers)
    for data, address in items:
        assert receivers[address].unprotect(data) == plain


@pytest.mark.parametrize("suite", SUITES)
def test_ejected_attendee_gets_nothing_and_sends_nothing(suite: str) -> None:
    relay, host, (kept, ejected) = webinar(suite, attendees=2)
    relay.send(host, host.media(1)[1])
    relay.table.eject(ejected.pid)
    with DropWatch(relay) as w:
        items = relay.send(host, *(host.media(s)[1] for s in range(2, 5)))
        items += relay.send(host, host.out.protect_rtcp(rtcp_sr(HOST_SSRC)))
    assert {a for _, a in items} == {kept.address}
    assert len(items) == 4
    assert w.delta == {"ejected": 4}
    # Its own reports and feedback go nowhere and never move its address.
    with DropWatch(relay) as w:
        assert relay.send(ejected, ejected.out.protect_rtcp(rtcp_pli(0x5EED, HOST_SSRC))) == []
    assert w.delta == {"ejected": 1}
    assert relay.table.address_of(ejected.pid) == ejected.address


@pytest.mark.parametrize("suite", SUITES)
def test_ejected_sender_is_cut_off_both_ways(suite: str) -> None:
    relay, host, (attendee,) = webinar(suite, attendees=1)
    relay.send(host, host.media(1)[1])
    relay.table.eject(host.pid)
    terminated = relay.counter("rtcp_terminated")
    with DropWatch(relay) as w:
        assert relay.send(host, host.media(2)[1], source=("203.0.113.9", 1)) == []
        assert relay.send(host, host.out.protect_rtcp(rtcp_sr(HOST_SSRC))) == []
        # Feedback to it is not sent either, and counts as a drop for it.
        assert relay.send(attendee, attendee.out.protect_rtcp(rtcp_pli(1, HOST_SSRC))) == []
    assert w.delta == {"ejected": 3}
    assert relay.counter("rtcp_terminated") == terminated
    assert relay.table.address_of(host.pid) == host.address


@pytest.mark.parametrize("suite", SUITES)
def test_ended_meeting_stops_all_media(suite: str) -> None:
    relay, host, (attendee,) = webinar(suite, attendees=1)
    assert len(relay.send(host, host.media(1)[1])) == 1
    relay.table.end_meeting(MID)
    with DropWatch(relay) as w:
        assert relay.send(host, host.media(2)[1]) == []
        assert relay.send(host, host.out.protect_rtcp(rtcp_sr(HOST_SSRC))) == []
        assert relay.send(attendee, attendee.out.protect_rtcp(rtcp_pli(1, HOST_SSRC))) == []
    assert w.delta == {"ended": 3}
    relay.table.close_meeting(MID)
    with DropWatch(relay) as w:
        assert relay.send(host, host.media(3)[1]) == []
    assert w.delta == {"unknown_source": 1}
    with pytest.raises(KeyError):
        relay.table.address_of(host.pid)


@pytest.mark.parametrize("suite", SUITES)
def test_late_packet_from_before_a_receivers_first_roc_is_not_sent_to_it(suite: str) -> None:
    """A receiver's ROC 0 starts at the sender's ROC of its first packet: a reordered packet
    from the sender's previous ROC would be index -1 for it, so it gets none (late), while a
    receiver that was there before gets it."""
    relay, host, (early,) = webinar(suite, attendees=1)
    early_rx = early.fresh_receiver()
    # The sender goes up to ROC 1, seq 100, skipping seq 65535 of ROC 0.
    seqs = [65000, 65534, 65536, 65536 + 100]
    plains = {}
    for s in seqs:
        plains[s], packet = host.media(s)
        (item,) = relay.send(host, packet)
        assert early_rx.unprotect(item[0]) == plains[s]
    late = relay.join(70, "attendee")
    late_rx = late.fresh_receiver()
    plains[65637], packet = host.media(65637)
    got = by_address(relay.send(host, packet))
    assert late_rx.unprotect(got[late.address][0]) == plains[65637]
    # Now the skipped packet of ROC 0 arrives, reordered (the sender never sent it before).
    plain, packet = host.media(65535)
    with DropWatch(relay) as w:
        items = relay.send(host, packet)
    assert w.delta == {"late": 1}
    assert [a for _, a in items] == [early.address]
    assert early_rx.unprotect(items[0][0]) == plain
    # Both go on decrypting the stream.
    plain, packet = host.media(65638)
    got = by_address(relay.send(host, packet))
    assert early_rx.unprotect(got[early.address][0]) == plain
    assert late_rx.unprotect(got[late.address][0]) == plain


@pytest.mark.parametrize("suite", SUITES)
def test_feedback_merged_per_stream_and_one_follows(suite: str) -> None:
    """One keyframe request per stream per keyframe_interval (0.5 s) reaches the sender; those
    merged meanwhile are followed by one PLI of the relay's when the interval ends."""
    relay = Relay(suite, "webinar")
    video = 0x0B0B0B0B
    host = relay.join(1, "host", [HOST_SSRC, video])
    attendee = relay.join(10, "attendee")
    t0 = relay.now

    def feedback(packet: bytes, now: float) -> list[Datagram]:
        return relay.feed([(attendee.out.protect_rtcp(packet), attendee.address)], now)

    def due(now: float) -> list[Datagram]:
        relay.forwarder.process_keyframes_due(relay.tx, now)
        out = relay.tx.items()
        relay.tx.clear()
        return out

    host_rx = host.fresh_receiver()
    pli = rtcp_pli(0x5EED, HOST_SSRC)
    items = feedback(pli, t0)
    assert [a for _, a in items] == [host.address]
    assert host_rx.unprotect_rtcp(items[0][0]) == pli
    with DropWatch(relay) as w:
        assert feedback(pli, t0 + 0.2) == []
        assert feedback(rtcp_fir(0x5EED, HOST_SSRC), t0 + 0.3) == []  # FIR shares the limit
    assert w.delta == {"rate_limited": 2}
    # Another stream of the same sender has its own.
    fir = rtcp_fir(0x5EED, video, 3)
    items = feedback(fir, t0 + 0.3)
    assert [a for _, a in items] == [host.address]
    assert host_rx.unprotect_rtcp(items[0][0]) == fir
    # The merged two are followed by one PLI when the interval ends, and only then.
    assert due(t0 + 0.45) == []
    (follow,) = due(t0 + 0.5)
    assert follow[1] == host.address
    assert host_rx.unprotect_rtcp(follow[0]) == rtcp_pli(0, HOST_SSRC)
    assert due(t0 + 2.0) == []  # once
    items = feedback(pli, t0 + 1.1)
    assert [a for _, a in items] == [host.address]


def test_overflow_when_the_send_batch_is_full() -> None:
    relay, host, attendees = webinar(AES, attendees=3, capacity=2)
    with DropWatch(relay) as w:
        items = relay.send(host, host.media(1)[1])
    assert w.delta == {"overflow": 1}
    assert len(items) == 2


def test_send_error_and_packets_out_on_a_real_socket() -> None:
    """run_once() on a real socket: one receiver is reachable, the other's address (the
    broadcast address, without SO_BROADCAST) is refused by the kernel: send_error."""
    relay = Relay(AES, "webinar")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
    ):
        for s in (media, client, sink):
            s.bind(("127.0.0.1", 0))
        sink.settimeout(5)
        host = relay.join(1, "host", [HOST_SSRC], given=False)
        relay.join(10, "attendee", address=("255.255.255.255", 9))
        good = relay.join(11, "attendee", address=sink.getsockname())
        plain, packet = host.media(1)
        client.sendto(packet, media.getsockname())
        deadline = time.monotonic() + 5
        received = 0
        while received == 0 and time.monotonic() < deadline:
            received = relay.forwarder.run_once(media.fileno(), time.monotonic())
            if received == 0:
                time.sleep(0.005)
        assert received == 1
        assert good.fresh_receiver().unprotect(sink.recv(2048)) == plain
        counters = relay.table.counters()
        assert counters["dropped"]["send_error"] == 1
        assert counters["packets_out"] == 1
        assert counters["bytes_out"] == len(packet)
        assert relay.table.address_of(host.pid) == client.getsockname()
        assert relay.table.participant_counters()[good.pid][2:] == (1, len(packet))


SCM_TIMESTAMPNS = _core.RECEIVE_TIMESTAMPS  # the control message has the option's number


def timestamps_on(media: socket.socket, client: socket.socket) -> None:
    """Until the host's receive timestamping is on (the kernel turns it on a moment after the
    first socket asks), a datagram is stamped only when it is read: wait until one sent 20 ms
    before it is read carries the time it arrived."""
    deadline = time.monotonic() + 5
    while True:
        client.sendto(b"warm-up", media.getsockname())
        time.sleep(0.02)
        _, ancillary, _, _ = media.recvmsg(64, 64)
        read_at = time.time()
        stamps = [
            d
            for level, kind, d in ancillary
            if (level, kind) == (socket.SOL_SOCKET, SCM_TIMESTAMPNS)
        ]
        assert stamps, "the socket gives no receive timestamps"
        seconds, nanoseconds = struct.unpack("qq", stamps[0][:16])
        if read_at - (seconds + nanoseconds / 1e9) >= 0.015:
            return
        assert time.monotonic() < deadline, "the kernel never stamped a datagram on arrival"


def forward_all(relay: Relay, media: socket.socket, datagrams: int) -> None:
    """run_once() until the media socket has given it `datagrams` (loopback may deliver
    them a moment after sendto() returns)."""
    deadline = time.monotonic() + 5
    received = 0
    while received < datagrams:
        assert time.monotonic() < deadline, f"{received} of {datagrams} datagrams arrived"
        received += relay.forwarder.run_once(media.fileno(), time.monotonic())
        time.sleep(0.005)


@pytest.mark.parametrize("stamped", [True, False])
def test_the_forwarding_delay_counts_each_relayed_packet_of_a_stamped_socket(
    stamped: bool,
) -> None:
    """ext/delay.pxi: a relayed packet is counted once, from the kernel's receive timestamp to
    its copies' flush (here: the test's own sleep before run_once, at least); one that fails
    authentication is not; a socket without SO_TIMESTAMPNS gives no timestamps to count."""
    relay = Relay(AES, "webinar")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
    ):
        if stamped:
            media.setsockopt(socket.SOL_SOCKET, _core.RECEIVE_TIMESTAMPS, 1)
        for s in (media, client, sink):
            s.bind(("127.0.0.1", 0))
        host = relay.join(1, "host", [HOST_SSRC], given=False)
        relay.join(11, "attendee", address=sink.getsockname())
        if stamped:
            timestamps_on(media, client)
        _, packet = host.media(1)
        client.sendto(packet, media.getsockname())
        time.sleep(0.02)  # the packet waits in the socket: part of its delay
        client.sendto(b"", media.getsockname())  # malformed
        forged = bytearray(host.media(2)[1])
        forged[-1] ^= 1
        client.sendto(bytes(forged), media.getsockname())  # fails authentication
        forward_all(relay, media, 3)
        counters = relay.table.counters()
        assert counters["packets_out"] == 1
        assert counters["dropped"]["auth"] == 1
        histogram = counters["forward_delay"]
        assert list(histogram)[-1] == "+Inf"
        assert [float(e) for e in list(histogram)[:-1]] == sorted(
            float(e) for e in list(histogram)[:-1]
        )
        if not stamped:
            assert sum(histogram.values()) == 0
            assert counters["forward_sums"]["delay_us"] == 0
            return
        assert sum(histogram.values()) == 1
        (edge,) = [e for e, n in histogram.items() if n]
        assert edge == "+Inf" or float(edge) >= 0.02
        assert 20_000 <= counters["forward_sums"]["delay_us"] < 5_000_000


# --- 4. ROC ---------------------------------------------------------------------------------------


def roc_schedule(start: int, stop: int) -> list[int]:
    """Indexes from start to stop: one by one within 40 of a 16-bit wrap, else steps of 1000
    (gaps under 32768 keep every ROC estimate right)."""
    out, i = [], start
    while i <= stop:
        out.append(i)
        seq = i & 0xFFFF
        i += 1 if seq >= 65536 - 40 or seq < 40 else min(1000, 65536 - 40 - seq)
    return out


@pytest.mark.parametrize("suite", SUITES)
def test_roc_across_wraps_for_early_and_late_receivers(suite: str) -> None:
    relay, host, (early,) = webinar(suite, attendees=1)
    receivers = {early.address: (early, early.fresh_receiver())}
    expected: dict[Address, list[bytes]] = defaultdict(list)
    got: dict[Address, list[bytes]] = defaultdict(list)
    joins = {
        (1 << 16) + 30000: 20,  # mid-ROC 1
        (2 << 16) + 65534: 21,  # two packets before the wrap into ROC 3
    }
    schedule = roc_schedule(65530, (4 << 16) + 100)
    for index in sorted({*schedule, *joins}):
        if index in joins:
            peer = relay.join(joins[index], "attendee")
            receivers[peer.address] = (peer, peer.fresh_receiver())
        plain, packet = host.media(index)
        items = relay.send(host, packet)
        assert sorted(a for _, a in items) == sorted(receivers)
        for data, address in items:
            got[address].append(receivers[address][1].unprotect(data))
            expected[address].append(plain)
    assert relay.drops() == dict.fromkeys(_core.DROP_NAMES, 0)
    for address in receivers:
        assert got[address] == expected[address]
    assert len(got[early.address]) == len({*schedule, *joins})
    assert len(expected) == 3


# --- 5. SRTCP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_sender_report_reaches_every_attendee(suite: str) -> None:
    relay, host, attendees = webinar(suite, attendees=3)
    report = rtcp_sr(HOST_SSRC)
    items = relay.send(host, host.out.protect_rtcp(report))
    got = by_address(items)
    assert set(got) == {a.address for a in attendees}
    assert len(items) == len(attendees)
    for attendee in attendees:
        assert attendee.fresh_receiver().unprotect_rtcp(got[attendee.address][0]) == report
    assert relay.counter("rtcp_terminated") == 0


@pytest.mark.parametrize("suite", SUITES)
def test_receiver_report_ends_at_the_relay(suite: str) -> None:
    relay, host, (attendee, _) = webinar(suite, attendees=2)
    with DropWatch(relay) as w:
        assert relay.send(attendee, attendee.out.protect_rtcp(rtcp_rr(0x5EED))) == []
    assert w.delta == {}
    assert relay.counter("rtcp_terminated") == 1
    assert relay.table.participant_counters()[attendee.pid][0] == 1


@pytest.mark.parametrize("suite", SUITES)
def test_picture_loss_indication_reaches_only_the_sender(suite: str) -> None:
    relay, host, (asking, other) = webinar(suite, attendees=2)
    panelist = relay.join(5, "panelist", [0x0C0C0C0C])
    pli = rtcp_pli(0x5EED, HOST_SSRC)
    items = relay.send(asking, asking.out.protect_rtcp(pli))
    assert [a for _, a in items] == [host.address]
    assert host.fresh_receiver().unprotect_rtcp(items[0][0]) == pli
    for peer in (other, panelist, asking):
        with pytest.raises(AuthError):
            peer.fresh_receiver().unprotect_rtcp(items[0][0])
    assert relay.counter("rtcp_terminated") == 0
    # A PLI inside a compound packet: only the PLI goes on, the RR ends here.
    fir = rtcp_fir(0x5EED, 0x0C0C0C0C)
    items = relay.send(other, other.out.protect_rtcp(rtcp_rr(0x5EEE) + fir))
    assert [a for _, a in items] == [panelist.address]
    assert panelist.fresh_receiver().unprotect_rtcp(items[0][0]) == fir
    # A PLI naming nobody's SSRC goes nowhere.
    with DropWatch(relay) as w:
        assert relay.send(other, other.out.protect_rtcp(rtcp_pli(0x5EEE, 0x999))) == []
    assert w.delta == {"unknown_source": 1}


@pytest.mark.parametrize("suite", [AES])
def test_srtcp_of_senders_sharing_an_ssrc(suite: str) -> None:
    relay = Relay(suite, "webinar")
    relay.table.open_meeting(2, "webinar")
    hosts = {m: relay.join(m, "host", [HOST_SSRC], meeting=m) for m in (1, 2)}
    attendees = {m: relay.join(10 + m, "attendee", meeting=m) for m in (1, 2)}
    for m in (1, 2):  # RTP copes with the collision: each reaches its own meeting
        plain, packet = hosts[m].media(5)
        items = relay.send(hosts[m], packet)
        assert [a for _, a in items] == [attendees[m].address]
    for m in (1, 2):
        report = rtcp_sr(HOST_SSRC)
        items = relay.send(hosts[m], hosts[m].out.protect_rtcp(report))
        assert [a for _, a in items] == [attendees[m].address], f"meeting {m}"
        assert attendees[m].fresh_receiver().unprotect_rtcp(items[0][0]) == report


def test_feedback_does_not_cross_meetings() -> None:
    relay, host, _ = webinar(AES, attendees=1)
    relay.table.open_meeting(2, "webinar")
    outsider = relay.join(90, "attendee", meeting=2)
    with DropWatch(relay) as w:
        assert relay.send(outsider, outsider.out.protect_rtcp(rtcp_pli(1, HOST_SSRC))) == []
    assert w.delta == {"unknown_source": 1}
    # and media does not either
    items = relay.send(host, host.media(1)[1])
    assert outsider.address not in by_address(items)


# --- 6. meeting mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_meeting_everyone_gets_the_others_not_their_own(suite: str) -> None:
    relay = Relay(suite, "meeting")
    peers = [
        relay.join(1, "host", [0x100], given=False),
        relay.join(2, "panelist", [0x200], given=False),
        relay.join(3, "panelist", [0x300, 0x301], given=False),
    ]
    sessions = {p.address: p.fresh_receiver() for p in peers}
    sent: dict[int, list[bytes]] = defaultdict(list)
    got: dict[Address, dict[int, list[bytes]]] = {p.address: defaultdict(list) for p in peers}
    datagrams: list[Datagram] = []
    for seq in range(500, 560):
        for peer in peers:
            for ssrc in peer.ssrcs:
                plain, packet = peer.media(seq, ssrc)
                sent[ssrc].append(plain)
                datagrams.append((packet, peer.address))
    # Everyone latches on its first packet, before anyone else has sent: none is lost after.
    first_round = 4
    relay.feed(datagrams[:first_round])
    items = relay.feed(datagrams[first_round:])
    for data, address in items:
        plain = sessions[address].unprotect(data)
        got[address][struct.unpack("!I", plain[8:12])[0]].append(plain)
    for peer in peers:
        mine = got[peer.address]
        assert not set(mine) & set(peer.ssrcs)
        others = [s for p in peers if p is not peer for s in p.ssrcs]
        assert sorted(mine) == sorted(others)
        for ssrc in others:
            assert mine[ssrc] == sent[ssrc][-len(mine[ssrc]) :]
            assert len(mine[ssrc]) >= len(sent[ssrc]) - 1
    assert relay.counter("latched") == 3


# --- 7. unauthenticated packets change nothing ----------------------------------------------------


def flip_one_bit(packet: bytes, rng: random.Random) -> bytes:
    out = bytearray(packet)
    bit = rng.randrange(len(out) * 8)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_garbage_and_forgeries_change_no_state(suite: str, seed: int) -> None:
    rng = random.Random(seed)
    relay = Relay(suite, "webinar")
    host = relay.join(1, "host", [HOST_SSRC], given=False)
    attendees = [relay.join(10, "attendee"), relay.join(11, "attendee")]
    talker = relay.join(30, "attendee", [0x7A1C], given=False)
    listener = relay.join(31, "attendee", [0x5EED], given=False)
    pids = [host.pid, talker.pid, listener.pid, *(a.pid for a in attendees)]
    relay.send(host, host.media(0)[1])  # the host latches at its address
    assert relay.table.address_of(host.pid) == host.address
    receivers = {a.address: a.fresh_receiver() for a in attendees}
    genuine = [host.media(seq) for seq in range(1, 301)]
    talker_packets = [talker.media(seq)[1] for seq in range(1, 20)]
    reports = [listener.out.protect_rtcp(rtcp_rr(0x5EED)) for _ in range(10)]
    sr = [host.out.protect_rtcp(rtcp_sr(HOST_SSRC)) for _ in range(10)]
    ssrcs = [HOST_SSRC, 0x7A1C, 0x5EED, rng.getrandbits(32)]

    def garbage(sent_upto: int) -> bytes:
        kind = rng.randrange(8)
        if kind == 0:
            return rng.randbytes(rng.randrange(0, 300))
        if kind == 1:  # RTP header with a declared SSRC, junk body
            seq = rng.randrange(65536)
            return rtp(seq, rng.choice(ssrcs), rng.randbytes(rng.randrange(0, 200)))
        if kind == 2:  # RTCP-typed with a declared or random SSRC, junk body
            pt = rng.randrange(192, 224)
            body = rng.randbytes(rng.randrange(4, 100))
            return struct.pack("!BBHI", 0x80, pt, len(body) // 4, rng.choice(ssrcs)) + body
        if kind == 3:  # a genuine (future or past) packet, one bit flipped
            return flip_one_bit(rng.choice(genuine)[1], rng)
        if kind == 4:
            return flip_one_bit(rng.choice(reports + sr + talker_packets), rng)
        if kind == 5 and sent_upto:  # a replay of something already accepted
            return genuine[rng.randrange(sent_upto)][1]
        if kind == 6:  # far-future sequence numbers, forged tag
            plain = rtp(rng.randrange(65536), HOST_SSRC, rng.randbytes(60))
            return plain + rng.randbytes(_core.SUITES[suite][2])
        return rng.randbytes(rng.randrange(2013, 2100))

    def address() -> Address:
        choice = rng.randrange(4)
        if choice == 0:
            return (f"203.0.113.{rng.randrange(1, 255)}", rng.randrange(1, 65536))
        peer = rng.choice([host, talker, listener, *attendees])
        return (peer.address[0], peer.address[1] + rng.choice([0, 0, 1, 2]))

    before = (
        relay.counter("latched"),
        {pid: relay.table.address_of(pid) for pid in pids},
        relay.table.participant_counters(),
    )
    got: dict[Address, list[bytes]] = defaultdict(list)
    datagrams: list[Datagram] = []
    for i, (_, packet) in enumerate(genuine):
        datagrams += [(garbage(i), address()) for _ in range(rng.randrange(0, 6))]
        datagrams.append((packet, host.address))
    items = relay.feed(datagrams)
    counters = relay.table.counters()
    after = (
        counters["latched"],
        {pid: relay.table.address_of(pid) for pid in pids},
        relay.table.participant_counters(),
    )
    # Only the genuine packets moved the host's counters; nothing else changed.
    assert after[0] == before[0] == 1
    assert after[1] == before[1]
    assert after[1][talker.pid] is None and after[1][listener.pid] is None
    host_in = after[2][host.pid][0] - before[2][host.pid][0]
    assert host_in == len(genuine)
    for pid in pids:
        if pid != host.pid:
            assert after[2][pid][:2] == before[2][pid][:2]
    assert counters["rtcp_terminated"] == 0
    dropped = sum(counters["dropped"].values())
    assert counters["packets_in"] == 1 + len(datagrams)
    # every datagram is either forwarded (a genuine one) or counted as dropped once;
    # genuine media is not dropped but fanned out to the 2 attendees (and no_address twice)
    assert dropped == len(datagrams) - len(genuine) + 2 * len(genuine) + 2
    # The genuine stream flowed, whole and in order, to both attendees.
    for data, addr in items:
        got[addr].append(receivers[addr].unprotect(data))
    for attendee in attendees:
        assert got[attendee.address] == [plain for plain, _ in genuine]


# --- 8. leave -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_leave(suite: str) -> None:
    relay, host, (staying, leaving) = webinar(suite, attendees=2)
    relay.send(host, host.media(1)[1])
    relay.table.leave(leaving.pid)
    with pytest.raises(KeyError):
        relay.table.address_of(leaving.pid)
    items = relay.send(host, *(host.media(s)[1] for s in range(2, 5)))
    assert {a for _, a in items} == {staying.address}
    assert len(items) == 3
    # Its reports are now from nobody.
    with DropWatch(relay) as w:
        assert relay.send(leaving, leaving.out.protect_rtcp(rtcp_rr(0x5EED))) == []
    assert w.delta == {"unknown_source": 1}
    # A newcomer in the freed slot starts afresh at ROC 0 with its own key.
    newcomer = relay.join(leaving.pid + 100, "attendee")
    plain, packet = host.media(5)
    got = by_address(relay.send(host, packet))
    assert newcomer.fresh_receiver().unprotect(got[newcomer.address][0]) == plain

    # A sender that left: its SSRC is unknown, nobody gets its packets.
    relay.table.leave(host.pid)
    with DropWatch(relay) as w:
        assert relay.send(host, host.media(6)[1]) == []
        assert relay.send(host, host.out.protect_rtcp(rtcp_sr(HOST_SSRC))) == []
    assert w.delta == {"unknown_source": 2}
    with DropWatch(relay) as w:
        relay.send(staying, staying.out.protect_rtcp(rtcp_pli(0x5EED, HOST_SSRC)))
    assert w.delta == {"unknown_source": 1}


# --- the address index ----------------------------------------------------------------------------

_MOVES_THEN_LOOKUP = textwrap.dedent(
    """
    import secrets, struct
    from relay import _core
    from relay.srtp import Session
    from tests.conftest import rtp

    suite = "AES_CM_128_HMAC_SHA1_80"
    t = _core.RouteTable()
    t.open_meeting(1, "webinar")
    up = secrets.token_bytes(30)
    t.join(1, 1, "host", suite, up, secrets.token_bytes(30), ssrcs=[0xAA])
    f, tx, host = _core.Forwarder(t), _core.SendBatch(64), Session(suite, up)
    rx = _core.RecvBatch()
    for i in range(1000):  # an authenticated packet from a new port each time
        rx.push(host.protect(rtp(i, ssrc=0xAA)), ("192.0.2.1", 1000 + i))
        if len(rx) == 64:
            f.process(rx, tx, 0.0)
    f.process(rx, tx, 0.0)
    assert t.counters()["latched"] == 1000
    # Any RTCP-typed datagram from an unknown address with an undeclared SSRC.
    rx.push(struct.pack("!BBHI", 0x80, 201, 1, 0x1234) + bytes(20), ("198.51.100.1", 9))
    f.process(rx, tx, 0.0)
    print("done", t.counters()["dropped"]["unknown_source"])
    """
)


def test_many_address_moves_do_not_hang_address_lookups() -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _MOVES_THEN_LOOKUP],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the forwarding loop hung on an address lookup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["done", "1"]


def test_a_receiver_with_a_port_per_stream_gets_each_stream_on_its_port() -> None:
    """ffmpeg reads one stream per m= line: a listener whose SDP puts stream k on port + 2k
    gets each described stream there, its sender reports on that port + 1, and no stream its
    SDP does not describe."""
    relay = Relay(AES, "meeting")
    audio = relay.join(1, "host", [0xA0])
    video = relay.join(2, "panelist", [0xB0])
    late = relay.join(3, "panelist", [0xC0])  # joined after the listener's SDP was written
    listener = Peer(9, AES, key_material(AES), key_material(AES), ("10.0.9.9", 7000), ())
    relay.table.join(
        9,
        MID,
        "attendee",
        AES,
        listener.uplink,
        listener.downlink,
        address=listener.address,
        receive_ports=[(0xA0, 7000), (0xB0, 7002)],
    )
    out = relay.send(audio, audio.out.protect(rtp(1, 0xA0)))
    out += relay.send(video, video.out.protect(rtp(1, 0xB0)))
    out += relay.send(late, late.out.protect(rtp(1, 0xC0)))
    mine = [(data, address) for data, address in out if address[0] == "10.0.9.9"]
    assert [address for _, address in mine] == [("10.0.9.9", 7000), ("10.0.9.9", 7002)]
    assert [listener.inp.unprotect(d)[8:12] for d, _ in mine] == [
        (0xA0).to_bytes(4, "big"),
        (0xB0).to_bytes(4, "big"),
    ]
    report = rtcp_sr(0xB0)
    out = relay.send(video, video.out.protect_rtcp(report))
    (packet,) = [d for d, address in out if address == ("10.0.9.9", 7003)]
    assert listener.inp.unprotect_rtcp(packet) == report
    with pytest.raises(ValueError, match="receive ports"):
        relay.table.join(
            10, MID, "attendee", AES, listener.uplink, listener.downlink, receive_ports=[(1, 0)]
        )


def test_a_first_packet_is_tried_before_latched_holders_of_its_ssrc() -> None:
    """Six participants of other meetings declared the same SSRC and have addresses; a new
    sender with that SSRC is still found and latched on its first packet (the relay tries the
    unlatched holders first, and at most a few tags)."""
    relay = Relay(AES, "meeting")
    ssrc = 0x5EED
    for m in range(2, 8):
        relay.table.open_meeting(m, "meeting")
        relay.join(100 + m, "panelist", [ssrc], meeting=m)  # given an address at join
    newcomer = relay.join(1, "panelist", [ssrc], given=False)
    listener = relay.join(2, "panelist")
    out = relay.send(newcomer, newcomer.out.protect(rtp(1, ssrc)))
    assert [a for _, a in out] == [listener.address]
    assert relay.table.address_of(1) == newcomer.address
