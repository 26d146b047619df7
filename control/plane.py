"""The control plane's running parts, wired together: the store, the meeting service, the
registration service (with the PII box that seals registrants' data, the mailer that sends
confirmation codes and the throttle on sign-ups), the audit log, the routing server (updates
out to the workers, with the routing journal), the stats intake (counters in from the
workers) and the metrics. The HTTP layer (control/api/) only
translates requests into calls on `plane.service` and answers.

Restart (docs/ARCHITECTURE.md, "The path of a join"): `ControlPlane.start` rebuilds the routing
state from the store (open meetings, present and expelled participants, their keys unsealed) and
continues the update numbering from the journal, so workers that kept forwarding while the control
plane was down take the next update as the one they expect; a worker that did miss updates asks for
a snapshot and gets the rebuilt state.

Every hour (and at the start) the plane deletes recordings past their retention period and
registrations nobody confirmed in time (control/registration.py, `purge_unconfirmed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
import zmq.asyncio

from control import auth
from control.answers import Health, Media
from control.audit import Audit
from control.cluster import Cluster
from control.errors import ApiError
from control.limits import JoinLimits
from control.live import Changes
from control.mail import Mailer
from control.meetings import KeyBox, MeetingService
from control.metrics import ControlCounters, worker_up
from control.nodes import NodeRegistry
from control.pii import PiiBox, derived_pii_key
from control.ratelimit import SignupThrottle
from control.recordings import SWEEP_INTERVAL_S, Recordings
from control.registration import RegistrationService
from control.routing import RoutingServer
from control.stats import StatsAggregator
from control.store import Store, StoreError
from control.store.rows import NodeRow
from control.webrtc import SessionKeys
from relay import wire

log = logging.getLogger("control.plane")

# A WebRTC peer made to leave is not looked up again for this long: its worker reports it
# every second until the ParticipantLeft reaches it (_end_webrtc_peers).
ENDING_HOLD_S = 10.0


@dataclass(frozen=True)
class Endpoints:
    """Where the control plane's ZeroMQ sockets bind (and the workers connect)."""

    routing: str  # PUB: numbered routing updates
    snapshot: str  # ROUTER: snapshot requests
    stats: str  # PULL: workers' counters


class ControlPlane:
    def __init__(
        self,
        store: Store,
        service: MeetingService,
        routing: RoutingServer,
        token_digest: str,
        clock: Callable[[], float] = time.time,
        recordings: Recordings | None = None,
        registrations: RegistrationService | None = None,
    ) -> None:
        self.store = store
        # Without a registration service of its own (a PII key), registration is refused:
        # `ControlPlane.start` always makes one.
        self.registrations = registrations
        self.audit = Audit(store)
        self.recordings = recordings
        self._sweeping: asyncio.Task[None] | None = None
        self._purging: asyncio.Task[None] | None = None
        self.service = service
        self.routing = routing
        self.token_digest = token_digest
        self.clock = clock
        self.stats = StatsAggregator()
        self.counters = ControlCounters()
        self.bad_stats = 0  # worker reports that did not decode
        # WebRTC peers (WHIP, WHEP; control/webrtc.py): the node's DTLS certificate
        # fingerprint, None when it has none (those calls answer 503), and the keys of the
        # session URLs.
        self.webrtc_fingerprint: str | None = None
        self.webrtc_sessions = SessionKeys(secrets.token_bytes(32))
        self._stats_socket: zmq.asyncio.Socket | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._ending: dict[int, float] = {}  # WebRTC peers made to leave: wire id -> when
        self.nodes: NodeRegistry | None = None  # this node among those on the database
        self.cluster: Cluster | None = None  # keeping in step with them (control/cluster.py)
        # What the live pages' event streams wait on (control/live.py): every routing update
        # and every audit entry bumps it, and the version of the meeting it concerns.
        self.changes = Changes()
        routing.changed = self.changes.wire_changed
        for audit in (self.audit, service.audit, *([registrations.audit] if registrations else [])):
            audit.appended = self.changes.meeting_changed

    @classmethod
    async def start(
        cls,
        store: Store,
        endpoints: Endpoints,
        *,
        token: str,
        box_key: bytes,
        relay_host: str,
        media_port: int,
        workers: int,
        clock: Callable[[], float] = time.time,
        context: zmq.asyncio.Context | None = None,
        recordings: Recordings | None = None,
        pii_key: bytes | None = None,
        limits: JoinLimits | None = None,
        mailer: Mailer | None = None,
        signup: SignupThrottle | None = None,
        dtls_fingerprint: str | None = None,
        node: NodeRow | None = None,
    ) -> ControlPlane:
        """Rebuild the routing state from the store, bind the sockets, start serving.
        `pii_key` seals registrants' data (control/pii.py); without one (tests, embedding) a
        key derived from `box_key` does. `mailer` sends registrations' confirmation codes
        (None: approvals that need one are refused); `signup` throttles sign-ups (default:
        control/ratelimit.py's rates). The plane closes the mailer when it closes.
        `dtls_fingerprint`: the node's DTLS certificate's (relay/certificate.py), which the
        workers connect WebRTC peers with; None: no WHIP or WHEP. `node`: this node's row
        among those sharing the database (control/nodes.py), as `Store.register_node` stored
        it; the plane keeps it fresh. None: none (an embedded plane)."""

        here = "" if node is None else node.name

        async def journal(seq: int, body: str) -> None:
            if here:  # nodes sharing a store number their updates each (control/cluster.py)
                await store.append_node_routing_update(here, seq, body, created_at=clock())
            else:
                await store.append_routing_update(body, seq=seq, created_at=clock())

        async def publish(update: wire.Update) -> int:
            return await cluster.publish(update)

        routing = RoutingServer(
            endpoints.routing, endpoints.snapshot, context=context, journal=journal
        )
        service = MeetingService(
            store,
            publish,
            relay_host=relay_host,
            media_port=media_port,
            workers=workers,
            key_box=KeyBox(box_key),
            limits=limits,
        )
        key_box = service.key_box
        cluster = Cluster(store, service.rooms, routing, key_box, here, clock)
        try:
            # What a restarted control plane serves, rebuilt from the store before the first
            # snapshot request is answered (routing.start below): what is homed here, and this
            # node's ends of trunks.
            seq = await store.last_node_routing_seq(here) if here else None
            state = routing.state = await service.routing_snapshot_state(seq)
            await cluster.start(state)
        except BaseException:
            await cluster.close()
            await routing.close()
            raise
        pii = PiiBox(derived_pii_key(box_key) if pii_key is None else pii_key)
        plane = cls(
            store,
            service,
            routing,
            auth.secret_digest(token),
            clock,
            recordings,
            RegistrationService(store, pii, mailer=mailer, throttle=signup),
        )
        plane.cluster = cluster
        plane.webrtc_fingerprint = dtls_fingerprint
        plane.webrtc_sessions = SessionKeys(box_key)  # the same URLs after a restart
        if node is not None:
            plane.nodes = NodeRegistry(store, node, lambda: plane.gauges()[1], clock)
            plane.nodes.start()
        routing.start()
        plane._stats_socket = routing.context.socket(zmq.PULL)
        plane._stats_socket.setsockopt(zmq.RCVHWM, 1000)
        plane._stats_socket.bind(endpoints.stats)
        plane._stats_task = asyncio.get_running_loop().create_task(plane._take_stats())
        if recordings is not None:
            plane._sweeping = asyncio.get_running_loop().create_task(plane._sweep_recordings())
        plane._purging = asyncio.get_running_loop().create_task(plane._purge_unconfirmed())
        log.info(
            "control plane up: routing update %d, %d meetings and %d participants restored",
            state.seq,
            len(state.meetings),
            len(state.participants),
        )
        return plane

    async def _sweep_recordings(self) -> None:
        """Delete recordings past their retention period, at start and then every hour."""
        assert self.recordings is not None
        while True:
            await asyncio.to_thread(self.recordings.sweep, self.clock())
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def _purge_unconfirmed(self) -> None:
        """Delete registrations nobody confirmed in time, at start and then every hour. A
        store that fails just then is logged and tried again at the next hour."""
        assert self.registrations is not None
        while True:
            try:
                await self.registrations.purge_unconfirmed(now=self.clock())
            except StoreError as exc:
                log.error("unconfirmed registrations not purged: %s", type(exc).__name__)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    async def _take_stats(self) -> None:
        assert self._stats_socket is not None
        while True:
            frames = await self._stats_socket.recv_multipart()
            try:
                if not 1 <= len(frames) <= 3:
                    raise ValueError("a report is one to three frames")
                message = json.loads(frames[0])
                if not isinstance(message, dict):
                    raise ValueError("not an object")
                people = frames[1] if len(frames) >= 2 else None
                reception = frames[2] if len(frames) == 3 else None
                self.stats.receive(message, time.monotonic(), self.clock(), people, reception)
            except ValueError as exc:
                self.bad_stats += 1
                log.debug("ignored a worker report: %s", exc)
                continue
            ended = self.stats.take_ended()
            if ended:
                await self._end_webrtc_peers(ended, time.monotonic())

    async def _end_webrtc_peers(self, ended: dict[int, str], now: float) -> None:
        """WebRTC peers their worker reports gone (relay/webrtc.py: never connected, DTLS
        failed or closed, consent expired) leave, as a DELETE of their session would make
        them. A worker reports each again every second until its ParticipantLeft arrives, so
        one just handled is skipped for a while; a store error is left to the next report."""
        for wire_id in [w for w, at in self._ending.items() if now - at > ENDING_HOLD_S]:
            del self._ending[wire_id]
        for wire_id, reason in ended.items():
            if wire_id in self._ending:
                continue
            self._ending[wire_id] = now
            try:
                row = await self.store.get_participant_by_wire_id(wire_id)
                if row is None or row.left_at is not None or row.expelled:
                    continue
                await self.service.participants.leave(row.meeting_id, row.id, now=self.clock())
            except ApiError:
                continue  # its meeting ended, or it left meanwhile: nothing to do
            except StoreError as exc:
                del self._ending[wire_id]
                log.error("WebRTC peer %d not made to leave: %s", wire_id, type(exc).__name__)
                continue
            log.info(
                "participant %s left meeting %s: its WebRTC peer ended (%s)",
                row.id,
                row.meeting_id,
                reason,
            )

    # -- what /metrics and /healthz read --

    def gauges(self) -> tuple[int, int]:
        """(meetings open, participants present), from the routing state: no database work."""
        state = self.routing.state
        open_meetings = set(state.meetings) - state.ended
        present = sum(state.present.get(m, 0) for m in open_meetings)
        return len(open_meetings), present

    def workers_reporting(self) -> int:
        now = time.monotonic()
        return sum(1 for w in self.stats.workers.values() if worker_up(w, now))

    def media_of(self, wire_id: int) -> Media:
        """What the workers last reported of one participant: its address known since when,
        packets and bytes each way."""
        pin, bin_, pout, bout = self.stats.participant(str(wire_id))
        return {
            "address_known_at": self.stats.latched_at.get(str(wire_id)),
            "packets_in": pin,
            "bytes_in": bin_,
            "packets_out": pout,
            "bytes_out": bout,
            "reception": self.stats.reception.get(wire_id),
        }

    def meeting_totals(self, wire_ids: list[int]) -> dict[str, int]:
        """Packets and bytes of a meeting's participants, as the workers last reported them."""
        sums = [0, 0, 0, 0]
        for wire_id in wire_ids:
            sums = [a + b for a, b in zip(sums, self.stats.participant(str(wire_id)), strict=True)]
        return dict(zip(("packets_in", "bytes_in", "packets_out", "bytes_out"), sums, strict=True))

    def health(self) -> Health:
        meetings, participants = self.gauges()
        return {
            "status": "ok",
            "routing_seq": self.routing.state.seq,
            "workers_expected": self.service.workers,
            "workers_reporting": self.workers_reporting(),
            "meetings": meetings,
            "participants": participants,
        }

    @property
    def draining(self) -> bool:
        """Whether this node takes no new participants (`relay drain`: control/nodes.py)."""
        return self.nodes is not None and self.nodes.draining

    @property
    def places_elsewhere(self) -> bool:
        """Whether a join here may be homed on another node (control/placement.py)."""
        return self.cluster is not None and self.cluster.shared

    async def close(self) -> None:
        self.changes.close()
        if self.cluster is not None:
            await self.cluster.close()
        if self.nodes is not None:
            await self.nodes.close()
        for task in (self._stats_task, self._sweeping, self._purging):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._stats_socket is not None:
            self._stats_socket.close(0)
        await self.routing.close()
        if self.registrations is not None and self.registrations.mailer is not None:
            self.registrations.mailer.close()
        await self.store.close()
