"""A worker's WebRTC peers (relay/webrtc.py) over a real RouteTable and Forwarder, in memory:
a browser's part played by the project's own STUN and DTLS client (independent peers, aiortc
and browsers, connect through `relay serve` in tests/test_whip.py). What is checked here is
the worker's side: nothing reaches a peer before its keys and its address are in, the keys the
handshake exported are the ones media flows under, forged sources get nothing, consent ends."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from relay import _core, stun, wire
from relay.certificate import Certificate
from relay.dtls import DtlsEndpoint, DtlsRole, DtlsState
from relay.srtp import ReplayError, Session
from relay.webrtc import (
    CONNECT_WITHIN_S,
    DROP_NO_CHECK,
    ENDED_CLOSED,
    ENDED_CONSENT,
    ENDED_DTLS_FAILED,
    ENDED_NEVER_CONNECTED,
    WebRtcPeers,
)
from tests.conftest import rtp

SUITES = ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"]
MEETING = 1
HOST, VIEWER = 1, 2
HOST_SSRC = 0x0A0A0A0A
BROWSER = ("192.0.2.10", 50000)
STRANGER = ("203.0.113.66", 40000)
RELAY_UFRAG, RELAY_PWD = "rlay", "relayPasswordOf24chars+/"
BROWSER_UFRAG = "brws"
CERTIFICATE = Certificate.generate()  # the node's, as the worker has it
BROWSER_CERT = Certificate.generate()
T0 = 1000.0


def key(suite: str) -> bytes:
    return os.urandom(sum(_core.SUITES[suite][:2]))


@dataclass
class Setup:
    suite: str
    table: _core.RouteTable
    forwarder: _core.Forwarder
    peers: WebRtcPeers
    host_up: bytes
    browser_dtls: DtlsEndpoint

    def feed(self, datagrams: list[tuple[bytes, tuple[str, int]]]) -> list[tuple[bytes, tuple]]:
        """Through the forwarder as the worker does: media forwarded, signalling to `peers`."""
        rx = _core.RecvBatch()
        for data, source in datagrams:
            rx.push(data, source)
        tx = _core.SendBatch(64)
        self.forwarder.process(rx, tx, T0)
        for data, source in self.forwarder.take_aside():
            self.peers.receive(data, source, T0)
        return list(tx.items())

    def check(self, nominate: bool = True) -> bytes:
        """A browser's nominating connectivity check (RFC 8445 section 7.2.2)."""
        return stun.build_binding_request(
            os.urandom(12),
            username=f"{RELAY_UFRAG}:{BROWSER_UFRAG}",
            integrity_key=RELAY_PWD.encode(),
            priority=1 << 24,
            ice_controlling=1,
            use_candidate=nominate,
        )

    def take_outbox(self) -> list[tuple[bytes, tuple[str, int]]]:
        out = list(self.peers.outbox)
        self.peers.outbox.clear()
        return out

    def handshake(self, source: tuple[str, int] = BROWSER) -> None:
        """The browser's DTLS client against the relay, datagrams passed both ways."""
        flight = self.browser_dtls.start(T0)
        for _ in range(10):
            if self.browser_dtls.state is DtlsState.CONNECTED:
                return
            self.feed([(d, source) for d in flight])
            replies = [d for d, address in self.take_outbox() if address == source]
            flight = [out for d in replies for out in self.browser_dtls.receive(d, T0)]
        raise AssertionError(f"no handshake: {self.browser_dtls.state}")


def setup(suite: str, *, payload_types: tuple[tuple[int, int], ...] | None = None) -> Setup:
    table = _core.RouteTable()
    table.open_meeting(MEETING, "webinar")
    forwarder = _core.Forwarder(table)
    forwarder.set_aside = True
    forwarder.budget = 1000
    peers = WebRtcPeers(table, CERTIFICATE)
    host_up = key(suite)
    table.join(HOST, MEETING, "host", suite, host_up, key(suite), ssrcs=[HOST_SSRC])
    joined = wire.ParticipantJoined(
        VIEWER,
        MEETING,
        wire.Role.ATTENDEE,
        wire.Suite(suite),
        key(suite),  # placeholders: nobody knows them
        key(suite),
        payload_types=payload_types,
        webrtc=wire.WebRtcPeer(RELAY_UFRAG, RELAY_PWD, BROWSER_UFRAG, BROWSER_CERT.fingerprint),
    )
    table.join(
        VIEWER,
        MEETING,
        joined.role,
        joined.suite,
        joined.uplink,
        joined.downlink,
        payload_types=payload_types,
    )
    peers.joined(joined)
    browser = DtlsEndpoint(BROWSER_CERT, DtlsRole.CLIENT, [suite], CERTIFICATE.fingerprint)
    return Setup(suite, table, forwarder, peers, host_up, browser)


@pytest.mark.parametrize("suite", SUITES)
def test_a_viewer_gets_media_under_its_dtls_keys_once_checked_and_connected(suite: str) -> None:
    s = setup(suite, payload_types=((HOST_SSRC, 120),))
    host = Session(suite, s.host_up)
    seq = iter(range(1, 100))

    def host_sends() -> list[tuple[bytes, tuple]]:
        return s.feed([(host.protect(rtp(next(seq), HOST_SSRC, pt=96)), ("10.0.0.1", 5000))])

    # Nothing before ICE, nothing between ICE and DTLS (the placeholders must not be used).
    assert host_sends() == []
    s.feed([(s.check(), BROWSER)])
    (response, to), *_ = s.take_outbox()
    assert to == BROWSER and stun.parse(response).message_class == stun.StunClass.SUCCESS
    assert host_sends() == []
    s.handshake()
    keys = s.browser_dtls.keys
    assert keys is not None and s.peers.connected == 1
    out = host_sends()
    assert [address for _, address in out] == [BROWSER]
    plain = Session(suite, keys.remote).unprotect(out[0][0])  # the relay's write key
    assert plain[1] == 120 and plain[8:12] == HOST_SSRC.to_bytes(4, "big")


@pytest.mark.parametrize("suite", SUITES)
def test_a_publishers_media_authenticates_only_under_its_dtls_key(suite: str) -> None:
    s = setup(suite)
    s.table.leave(HOST)  # the browser is the one who sends here; a plain listener receives
    listener_down = key(suite)
    s.table.join(
        3, MEETING, "attendee", suite, key(suite), listener_down, address=("10.0.0.3", 6000)
    )
    s.table.leave(VIEWER)
    s.table.join(VIEWER, MEETING, "host", suite, key(suite), key(suite), ssrcs=[0x5151])
    s.feed([(s.check(), BROWSER)])
    s.take_outbox()
    s.handshake()
    keys = s.browser_dtls.keys
    assert keys is not None
    sent = Session(suite, keys.local).protect(rtp(1, 0x5151, pt=111))
    out = s.feed([(sent, BROWSER)])
    assert [a for _, a in out] == [("10.0.0.3", 6000)]
    assert Session(suite, listener_down).unprotect(out[0][0])[8:12] == (0x5151).to_bytes(4, "big")
    forged = Session(suite, key(suite)).protect(rtp(2, 0x5151, pt=111))
    assert s.feed([(forged, BROWSER)]) == []


def test_dtls_from_an_address_without_a_valid_check_gets_nothing() -> None:
    s = setup(SUITES[0])
    hello = s.browser_dtls.start(T0)
    s.feed([(d, STRANGER) for d in hello])
    assert s.take_outbox() == [] and s.peers.drops[DROP_NO_CHECK] == len(hello)
    # A check with the wrong password is not answered, and opens no door for DTLS either.
    bad = stun.build_binding_request(
        os.urandom(12),
        username=f"{RELAY_UFRAG}:{BROWSER_UFRAG}",
        integrity_key=b"notTheRelayPasswordAtAll",
        priority=1,
        ice_controlling=1,
        use_candidate=True,
    )
    s.feed([(bad, STRANGER), *((d, STRANGER) for d in hello)])
    assert s.take_outbox() == []


def test_consent_expires_and_media_stops_then_a_new_nomination_restores_it() -> None:
    suite = SUITES[0]
    s = setup(suite)
    host = Session(suite, s.host_up)
    s.feed([(s.check(), BROWSER)])
    s.handshake()
    assert s.table.address_of(VIEWER) == BROWSER
    s.peers.tick(T0 + 29.0)
    assert s.table.address_of(VIEWER) == BROWSER
    assert s.peers.ended == {}
    s.peers.tick(T0 + 30.5)
    assert s.table.address_of(VIEWER) is None
    assert s.peers.ended == {VIEWER: ENDED_CONSENT}  # reported: the control plane ends it
    assert s.feed([(host.protect(rtp(1, HOST_SSRC)), ("10.0.0.1", 5000))]) == []
    # Until its ParticipantLeft comes, a check from a new address still selects it.
    moved = ("192.0.2.10", 50002)
    s.peers.receive(s.check(), moved, T0 + 31)
    assert s.table.address_of(VIEWER) == moved


def test_a_peer_that_never_connects_ends_30_s_after_joining() -> None:
    s = setup(SUITES[0])
    s.peers.tick(T0)  # the first tick after its join starts its clock
    s.peers.receive(s.check(), BROWSER, T0 + 5)  # ICE alone is not connected: no keys yet
    s.peers.tick(T0 + CONNECT_WITHIN_S - 0.1)
    assert s.peers.ended == {}
    s.peers.tick(T0 + CONNECT_WITHIN_S)
    assert s.peers.ended == {VIEWER: ENDED_NEVER_CONNECTED}
    assert s.peers.ended_total == {ENDED_NEVER_CONNECTED: 1}
    s.peers.tick(T0 + 2 * CONNECT_WITHIN_S)  # once
    assert s.peers.ended_total == {ENDED_NEVER_CONNECTED: 1}
    s.table.leave(VIEWER)
    s.peers.left(VIEWER)  # its ParticipantLeft: no longer reported
    assert s.peers.ended == {}


def test_a_peer_connected_in_time_is_not_ended() -> None:
    s = setup(SUITES[0])
    s.peers.tick(T0)
    s.feed([(s.check(), BROWSER)])
    s.handshake()
    s.peers.receive(s.check(), BROWSER, T0 + CONNECT_WITHIN_S - 1)  # consent kept
    s.peers.tick(T0 + CONNECT_WITHIN_S + 1)
    assert s.peers.ended == {}


def test_the_peers_close_notify_ends_it() -> None:
    """A browser closing its RTCPeerConnection (or its tab) sends close_notify, and seldom
    the WHIP or WHEP DELETE."""
    s = setup(SUITES[0])
    s.feed([(s.check(), BROWSER)])
    s.handshake()
    s.take_outbox()
    s.feed([(d, BROWSER) for d in s.browser_dtls.close()])
    assert s.peers.ended == {VIEWER: ENDED_CLOSED}


def test_a_failed_handshake_ends_the_peer() -> None:
    s = setup(SUITES[0])
    s.feed([(s.check(), BROWSER)])
    s.take_outbox()
    # A browser whose certificate is not the one its offer's fingerprint named.
    s.browser_dtls = DtlsEndpoint(
        Certificate.generate(), DtlsRole.CLIENT, [s.suite], CERTIFICATE.fingerprint
    )
    flight = s.browser_dtls.start(T0)
    for _ in range(10):
        if VIEWER in s.peers.ended:
            break
        s.feed([(d, BROWSER) for d in flight])
        replies = [d for d, address in s.take_outbox() if address == BROWSER]
        flight = [out for d in replies for out in s.browser_dtls.receive(d, T0)]
    assert s.peers.ended == {VIEWER: ENDED_DTLS_FAILED}
    assert s.peers.connected == 0


def test_leaving_closes_the_dtls_association_and_forgets_the_checks() -> None:
    s = setup(SUITES[0])
    s.feed([(s.check(), BROWSER)])
    s.handshake()
    s.take_outbox()
    s.table.leave(VIEWER)
    s.peers.left(VIEWER)
    goodbye = s.take_outbox()
    assert goodbye and all(address == BROWSER for _, address in goodbye)
    for data, _ in goodbye:
        s.browser_dtls.receive(data, T0)
    assert s.browser_dtls.state is DtlsState.CLOSED
    s.feed([(s.check(), BROWSER)])
    assert s.take_outbox() == [] and len(s.peers) == 0


def test_a_snapshot_applied_again_gets_the_peers_keys_and_address_back() -> None:
    """A snapshot puts the join's placeholder keys back in the table; resync restores the
    DTLS keys and the selected address, and the stream continues where it was."""
    suite = SUITES[1]
    s = setup(suite, payload_types=((HOST_SSRC, 120),))
    host = Session(suite, s.host_up)
    s.feed([(s.check(), BROWSER)])
    s.handshake()
    keys = s.browser_dtls.keys
    assert keys is not None
    first = s.feed([(host.protect(rtp(1, HOST_SSRC, pt=96)), ("10.0.0.1", 5000))])
    # As RouteReplica.apply_snapshot does: close, join again (placeholders), then resync.
    s.table.close_meeting(MEETING)
    s.table.open_meeting(MEETING, "webinar")
    s.table.join(HOST, MEETING, "host", suite, s.host_up, key(suite), ssrcs=[HOST_SSRC])
    s.table.join(VIEWER, MEETING, "attendee", suite, key(suite), key(suite))
    s.peers.resync([HOST, VIEWER])
    second = s.feed([(host.protect(rtp(2, HOST_SSRC, pt=96)), ("10.0.0.1", 5000))])
    viewer = Session(suite, keys.remote)
    got = [viewer.unprotect(p) for p, _ in first + second]
    assert [p[1] for p in got] == [120, 120]
    with pytest.raises(ReplayError):  # the same index again is refused by its session
        viewer.unprotect(first[0][0])
