"""The WebRTC peers homed on one worker: ICE-lite, DTLS-SRTP, and what they change in its table.

A WHIP or WHEP peer joins like any participant (docs/ARCHITECTURE.md, "The path of a join"),
with placeholder SRTP keys that nobody knows and, in its ParticipantJoined, the ICE and DTLS
parameters of its offer and the relay's answer (relay/wire.py, WebRtcPeer). Its home worker
then connects it on the worker's one UDP port, where the core sets STUN and DTLS aside for
this module (ext/demux.pxi, RFC 7983):

1. ICE (relay/ice.py): the peer's authenticated connectivity checks are answered; the address
   of its latest nominating check is where it receives (RFC 8445 section 7.3.2).
2. DTLS (relay/dtls.py): only from an address that passed a check for that peer, so a forged
   source gets no handshake state and no answer. The handshake's exported keys (RFC 5764
   section 4.2) replace the placeholders (RouteTable.rekey): the peer's write key unprotects
   what it sends, the relay's protects what it receives.
3. Media: the core forwards the peer's SRTP exactly as an SDES participant's, once the keys
   are in and an address is selected: RouteTable.select_address, not before (what would go out
   under the placeholder keys could not be read). Consent (RFC 7675): 30 s without a check
   from the selected address and the table forgets it (RouteTable.forget_address).

A peer that is gone ends its participation, as a DELETE of its session would: one that has
not connected (ICE and DTLS) within 30 s of joining, whose handshake failed, that sent a DTLS
close_notify (a browser closing its RTCPeerConnection or its tab), or whose consent expired.
Browsers seldom send the DELETE, and a participant nobody removes would stay listed, counted
against the meeting's limits and billed. The worker reports each such peer in its stats
(`ended`, until the participant's ParticipantLeft comes back: a report lost while the control
plane restarts is made again), and the control plane makes it leave (control/plane.py).

State lives here, on the worker, not in the control plane: the keys exist only on this
worker and in memory (no key the peer negotiated is ever stored). A snapshot applied again
puts the placeholders back in the table; `resync` gives the table the peer's keys and address
again (the ledger continues its streams: the same keys, the same indexes, table.pxi). A worker
that restarts loses them, and its WebRTC peers must connect again (their ICE fails, which a
browser reports as a failed connection).

Sans-IO: datagrams and `now` in; what is to be sent waits in `outbox` (datagram, address),
which the worker empties after each call.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from relay import wire
from relay.certificate import Certificate
from relay.dtls import DtlsEndpoint, DtlsRole, DtlsState, SrtpKeys
from relay.errors import DtlsError
from relay.ice import IceLite

log = logging.getLogger("relay.webrtc")

Address = tuple[str, int]

# What `receive` and `tick` did not take, by reason (the worker's metrics add ICE's own).
DROP_NO_CHECK = "dtls_before_check"  # DTLS from an address no peer has passed a check from
DROP_DTLS = "dtls_refused"  # the peer's DTLS endpoint refused it (relay/dtls.py counts why)
DROP_DTLS_FAILED = "dtls_failed"  # a handshake failed: fingerprint, profile, timeout

# Why a peer ended (`ended`, and the metrics): it leaves the meeting.
ENDED_NEVER_CONNECTED = "never_connected"  # no keys within CONNECT_WITHIN_S of joining
ENDED_DTLS_FAILED = "dtls_failed"
ENDED_CLOSED = "closed"  # its DTLS close_notify (RFC 5246 section 7.2.1)
ENDED_CONSENT = "consent_expired"  # RFC 7675: 30 s without a check from its address
# As long as a connected peer keeps consent without a check (RFC 7675 section 5.1): a browser
# gives up on ICE well before (Chromium: about 30 s from its first check, Firefox likewise).
CONNECT_WITHIN_S = 30.0


@dataclass
class _Peer:
    participant: int
    params: wire.WebRtcPeer
    dtls: DtlsEndpoint
    # A viewer's streams under its own payload types, as its join gave them: a snapshot
    # rebuilt from the store (after the control plane restarted) no longer has them.
    payload_types: tuple[tuple[int, int], ...] | None
    keys: SrtpKeys | None = None  # once the handshake is done
    checked: set[Address] = field(default_factory=set)  # addresses with a valid check
    selected: Address | None = None  # ICE's selected address (RFC 8445 section 7.3.2)
    dtls_address: Address | None = None  # where the handshake talks
    ended: str | None = None  # why it is gone (ENDED_*), once it is


class WebRtcPeers:
    """The worker's WebRTC peers over its RouteTable.

    Args:
        table: the worker's relay._core.RouteTable.
        certificate: the node's DTLS certificate (its fingerprint is in every answer).
    """

    def __init__(self, table: Any, certificate: Certificate) -> None:
        self.table = table
        self.certificate = certificate
        self.ice = IceLite()
        self.peers: dict[int, _Peer] = {}
        self.by_address: dict[Address, _Peer] = {}  # addresses with a valid check: DTLS source
        self.drops: Counter[str] = Counter()
        self.connected = 0  # handshakes completed, ever
        self.outbox: list[tuple[bytes, Address]] = []  # to send: the worker takes them
        # Peers whose handshake has begun and not ended: the DTLS timers `tick` must watch.
        self.handshaking: set[int] = set()
        # Joined and not yet stamped by `tick` (joins carry no time), then (deadline, peer) in
        # joining order, so deadlines come in order: `tick` looks only at the due ones.
        self.unstamped: list[int] = []
        self.connect_by: deque[tuple[float, int]] = deque()
        # Peers gone, and why: reported by the worker until their ParticipantLeft comes.
        self.ended: dict[int, str] = {}
        self.ended_total: Counter[str] = Counter()  # ever, by reason (the metrics)

    def __len__(self) -> int:
        return len(self.peers)

    # -- routing updates (relay/routes.py calls these) ------------------------------------------

    def joined(self, update: wire.ParticipantJoined) -> None:
        """A participant homed here joined; if it is a WebRTC peer, expect its checks."""
        if update.webrtc is None or update.participant in self.peers:
            return  # not WebRTC, or a snapshot applied again: the same peer and handshake
        params = update.webrtc
        try:
            endpoint = DtlsEndpoint(
                self.certificate, DtlsRole(params.dtls_role), [update.suite], params.fingerprint
            )
            self.ice.add(update.participant, params.ice_ufrag, params.ice_pwd, params.remote_ufrag)
        except (DtlsError, ValueError) as exc:
            # The control plane checked all of this before it answered the offer: a worker
            # that disagrees leaves the peer unconnected rather than stop for it.
            log.warning("WebRTC peer %d not set up: %s", update.participant, exc)
            return
        self.peers[update.participant] = _Peer(
            update.participant, params, endpoint, update.payload_types
        )
        self.unstamped.append(update.participant)

    def left(self, participant: int) -> None:
        """It left (or was expelled): close its DTLS (a close_notify tells the browser at
        once, RFC 5246 section 7.2.1), forget its checks."""
        peer = self.peers.pop(participant, None)
        if peer is None:
            return
        self.ice.remove(participant)
        self.handshaking.discard(participant)
        self.ended.pop(participant, None)
        for address in peer.checked:
            if self.by_address.get(address) is peer:
                del self.by_address[address]
        goodbye = peer.dtls.close()
        if peer.dtls_address is not None:
            self.outbox += [(d, peer.dtls_address) for d in goodbye]

    def resync(self, present: Iterable[int]) -> None:
        """After a snapshot: peers no longer in the table are gone; those still there get
        their keys and address back (the snapshot put their placeholders back)."""
        present = set(present)
        for participant in [p for p in self.peers if p not in present]:
            self.left(participant)
        for peer in self.peers.values():
            self._apply(peer, rekey=True)

    # -- datagrams ------------------------------------------------------------------------------

    def receive(self, datagram: bytes, address: Address, now: float) -> None:
        """One STUN or DTLS datagram the core set aside (first byte: RFC 7983 section 7)."""
        if datagram[0] <= 3:
            self._stun(datagram, address, now)
        else:
            self._dtls(datagram, address, now)

    def _stun(self, datagram: bytes, address: Address, now: float) -> None:
        result = self.ice.receive(datagram, address, now)
        if result.response is not None:
            self.outbox.append((result.response, address))
        check = result.check
        if check is None:
            return
        peer = self.peers.get(check.participant)
        if peer is None:  # pragma: no cover - the ICE agent only knows peers added here
            return
        source = check.address
        if source not in peer.checked:
            peer.checked.add(source)
            self.by_address[source] = peer
        if peer.dtls_address is None:
            peer.dtls_address = source
            if peer.dtls.role is DtlsRole.CLIENT:  # it speaks first (RFC 8842 section 5.3)
                self.outbox += [(d, source) for d in peer.dtls.start(now)]
                self.handshaking.add(peer.participant)
        if result.selected is not None:
            peer.selected = result.selected.address
            self._apply(peer, rekey=False)

    def _dtls(self, datagram: bytes, address: Address, now: float) -> None:
        peer = self.by_address.get(address)
        if peer is None:
            self.drops[DROP_NO_CHECK] += 1
            return
        peer.dtls_address = address
        was = peer.dtls.state
        before = sum(peer.dtls.drops.values())
        self.outbox += [(d, address) for d in peer.dtls.receive(datagram, now)]
        if peer.dtls.state is DtlsState.HANDSHAKING:
            self.handshaking.add(peer.participant)
        if sum(peer.dtls.drops.values()) > before:
            self.drops[DROP_DTLS] += 1
        self._after_handshake_step(peer, was)

    def tick(self, now: float) -> None:
        """Retransmit handshakes whose timers ran out; forget addresses whose consent
        expired. Cheap enough to call a few times a second."""
        for participant in list(self.handshaking):
            peer = self.peers[participant]
            deadline = peer.dtls.next_timeout()
            if deadline is not None and now >= deadline:
                was = peer.dtls.state
                sent = peer.dtls.handle_timeout(now)
                if peer.dtls_address is not None:
                    self.outbox += [(d, peer.dtls_address) for d in sent]
                self._after_handshake_step(peer, was)
        expiry = self.ice.next_expiry()
        if expiry is not None and now >= expiry:
            for gone in self.ice.expired(now):
                peer_gone = self.peers.get(gone.participant)
                if peer_gone is not None and peer_gone.selected == gone.address:
                    peer_gone.selected = None
                    self.table.forget_address(gone.participant)
                    self._end(peer_gone, ENDED_CONSENT)
        for participant in self.unstamped:
            self.connect_by.append((now + CONNECT_WITHIN_S, participant))
        self.unstamped.clear()
        while self.connect_by and self.connect_by[0][0] <= now:
            _, participant = self.connect_by.popleft()
            unconnected = self.peers.get(participant)
            if unconnected is not None and unconnected.keys is None:
                self._end(unconnected, ENDED_NEVER_CONNECTED)

    def _end(self, peer: _Peer, reason: str) -> None:
        """The peer is gone: reported (`ended`) until the control plane makes it leave."""
        if peer.ended is not None:
            return
        peer.ended = reason
        self.ended[peer.participant] = reason
        self.ended_total[reason] += 1
        log.info("WebRTC peer %d ended: %s", peer.participant, reason)

    # -- the table ------------------------------------------------------------------------------

    def _after_handshake_step(self, peer: _Peer, was: DtlsState) -> None:
        state = peer.dtls.state
        if state is was:
            return
        if state is not DtlsState.HANDSHAKING:
            self.handshaking.discard(peer.participant)
        if state is DtlsState.CONNECTED and peer.dtls.keys is not None:
            peer.keys = peer.dtls.keys
            self.connected += 1
            self._apply(peer, rekey=True)
        elif state is DtlsState.FAILED:
            self.drops[DROP_DTLS_FAILED] += 1
            log.info("WebRTC peer %d: DTLS failed (%s)", peer.participant, peer.dtls.failure)
            self._end(peer, ENDED_DTLS_FAILED)
        elif state is DtlsState.CLOSED:  # the peer's close_notify: our own close() is in left()
            self._end(peer, ENDED_CLOSED)

    def _apply(self, peer: _Peer, *, rekey: bool) -> None:
        """Give the table what the peer has: its keys, then (only with them) its address."""
        if peer.keys is None:
            return
        if rekey:
            # The peer's write key unprotects what it sends (the table's uplink); the relay's
            # own write key protects what it receives (downlink).
            self.table.rekey(
                peer.participant, peer.keys.remote, peer.keys.local, peer.payload_types
            )
        if peer.selected is not None:
            self.table.select_address(peer.participant, peer.selected)
