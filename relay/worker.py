"""One worker process: a UDP socket pair, the forwarding core, and its ZeroMQ sockets.

The worker binds the media port P (RTP and RTCP, rtcp-mux) and P+1 (RTCP from clients that do
not multiplex), and polls them together with its control socket. Between batches it applies
routing updates; once a second it pushes its counters. The media path itself is
relay._core.Forwarder: this module is the I/O shell around it.

Its command line is its own, `python -m relay.worker` (how the supervisor starts it), and
`relay worker` passes its arguments here unchanged. Standalone (for benchmarks and tests):
`relay worker --table FILE` loads the routing table from a Snapshot file; `--control
ENDPOINT` subscribes to numbered updates as the control plane will publish them.

With `--state-file`, the worker keeps its SRTP state on disk beside it (relay/ledger.py): the
ledger of index reservations, made durable before the fast path uses them (those asked for
ahead of need by a thread of its own, beside the media), and the senders' stream state every
second. Both are read back before the first routing snapshot, so a restarted worker (or
server) never sends a receiver an index it may have had.

With `--certificate` (the node's DTLS certificate), it also connects WebRTC peers on its media
port: the core sets their STUN and DTLS aside (ext/demux.pxi, at most SIGNALLING_PER_SECOND),
and after each batch relay/webrtc.py answers them and its replies go out from this port.

Copies go out from the media socket, one sendmmsg per batch, and a receiver's copies of a burst
(a video frame's packets, arriving in one batch) as one message the kernel splits (UDP GSO,
ext/batch.pxi) unless `--no-gso`. With `--connected-sockets N`, each of up to N receivers gets a
socket of its own connected to it, bound to the media port too (ext/connected.pxi), so its
copies skip the kernel's route lookup; the worker raises its descriptor limit for them at
start. It is off by default: measured on the send-only path it cost more than it saved
(bench/RESULTS.md, "Connected sockets and GSO").

With `--xdp IFACE`, copies to receivers reached through that interface leave through an
AF_XDP socket on its queue `--xdp-queue` (default: the worker's index) as whole Ethernet frames,
past the IP stack (ext/xdp.pxi, ext/xsk.h); the worker looks each receiver's next hop up in
the kernel's tables (relay/nexthop.py) once a second until it has one, and every receiver's
again every nexthop.REFRESH seconds. Receivers it finds no hop for stay on the socket path.
`--xdp-checksum` says who computes the frames' UDP checksums (xdp_checksum_for).

With `--busy-poll US` (RELAY_BUSY_POLL), after each batch of media it keeps polling its
sockets without sleeping for US microseconds: the next fan-out starts with warm caches, at
the cost of a core spinning while traffic is steady. Its chores of each second (counters,
stream state, the ledger's compaction, the address index) run one per pass of the loop, a
quarter second apart (docs/ARCHITECTURE.md, "How long a packet stays in the relay").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from relay import _core, ledger, lifecycle, nexthop, recording, wire
from relay.certificate import Certificate
from relay.logs import log_setup
from relay.nexthop import LOOKUP_PASS_S, REFRESH, Hop, NextHops
from relay.routes import RouteReplica
from relay.webrtc import WebRtcPeers

log = logging.getLogger("relay.worker")

SOCKET_BUFFER = 8 << 20  # bytes: absorbs bursts of a large fan-out
BATCHES_PER_WAKEUP = 64  # recvmmsg batches before control messages get a turn
STATS_INTERVAL = 1.0  # seconds
BUSY_POLL_MAX_US = 100_000  # --busy-poll: past a tenth of a second, spinning is just waste
SNAPSHOT_TIMEOUT = 1.0  # seconds to wait for a snapshot reply
SNAPSHOT_RETRY = 1.0  # seconds between snapshot requests while one is needed
FANOUT_HWM = 10_000  # messages (batches) queued per peer before the PUB drops
# STUN and DTLS datagrams the core passes to the WebRTC peers each second (ext/demux.pxi):
# 10,000 peers' consent checks (one each 5 s) and 200 handshakes a second (some 20 datagrams
# each) take a fifth of it; the rest is counted as `signalling_limit`.
SIGNALLING_PER_SECOND = 20_000
# Receivers one worker sends to from sockets connected to them (ext/connected.pxi); past it,
# from the media socket. Each is a file descriptor: the worker raises its limit to fit them.
# None by default: a send() per copy on its own socket costs more here than the route lookup
# it saves (bench/RESULTS.md, "Connected sockets and GSO").
CONNECTED_SOCKETS = 0
CONNECTED_SOCKETS_MAX = 1_000_000
DESCRIPTORS_SPARE = 256  # for everything else: ZeroMQ, the ledger, recordings, logs
HOPS_INTERVAL = 1.0  # seconds between next-hop look-ups for receivers without one (AF_XDP)
NO_HOP_RETRY = 5.0  # seconds before an address found without a hop is looked up again
# The environment variables the worker's flags take their defaults from (parser): what
# decides how a worker started without those flags runs (bench/ways.py records them).
FLAG_VARIABLES = (
    "RELAY_CONNECTED_SOCKETS",
    "RELAY_GSO",
    "RELAY_XDP",
    "RELAY_XDP_CHECKSUM",
    "RELAY_BUSY_POLL",
)
# Who computes the AF_XDP frames' UDP checksums (--xdp-checksum; ext/xsk.h says each way):
# the core's ways, and "auto", which picks one of them for the device (xdp_checksum_for).
XDP_CHECKSUMS = ("auto", *_core.XSK_CHECKSUMS)
# Drivers that have the kernel build an AF_XDP socket's skbs from its frames' pages (the
# kernel's IFF_TX_SKB_NO_LINEAR), a path on which the kernel read no TX metadata until late
# 2025: which kernels do cannot be told from here, so their frames' checksums are the
# relay's to compute, whatever the kernel.
XDP_NO_TX_METADATA = frozenset({"virtio_net"})


@dataclass
class WorkerConfig:
    index: int = 0
    media_host: str = "127.0.0.1"
    media_port: int = 40000
    table: Path | None = None  # a Snapshot file to start from
    control: str | None = None  # ZeroMQ SUB endpoint for numbered routing updates
    snapshot: str | None = None  # ZeroMQ ROUTER endpoint that answers snapshot requests
    stats: str | None = None  # ZeroMQ PUSH endpoint for counters
    # Every worker's ZeroMQ endpoint for packets passed between workers, in worker order: this
    # one publishes on fanout[index] and subscribes to the others (one worker: none needed).
    fanout: tuple[str, ...] = ()
    # Where the senders' stream state is saved every second and read back after a restart
    # (so that senders past a sequence wrap keep authenticating); beside it, the ledger of
    # index reservations (relay/ledger.py). Without it, the worker keeps no SRTP state on disk
    # and a restart must come with new keys: for benchmarks and tests.
    state_file: Path | None = None
    # Where recorded meetings' media is written (relay/recording.py), and the key file that
    # encrypts it; without both, a meeting switched to recording is not recorded here.
    recordings: Path | None = None
    recording_key: Path | None = None
    ready_file: Path | None = None
    duration: float | None = None
    # The node's DTLS certificate (PEM, relay/certificate.py): with it the worker connects
    # WebRTC peers (relay/webrtc.py) on its media port; without it STUN and DTLS are dropped.
    certificate: Path | None = None
    # Seconds between keyframe requests passed to one stream's sender (ext/forward.pxi).
    keyframe_interval: float = 0.5
    # Receivers sent to from sockets connected to them (ext/connected.pxi); 0: none.
    connected_sockets: int = CONNECTED_SOCKETS
    # A receiver's copies of a burst as one message of several segments (ext/batch.pxi).
    gso: bool = True
    # The interface whose receivers get their copies through AF_XDP (ext/xdp.pxi), and the
    # queue of it this worker binds (None: its index); no interface: off.
    xdp: str | None = None
    xdp_queue: int | None = None
    xdp_checksum: str = "auto"  # who computes the frames' UDP checksums: XDP_CHECKSUMS
    # Seconds the worker keeps polling its sockets without sleeping after a batch of media
    # (docs/ARCHITECTURE.md, "How long a packet stays in the relay"); 0: it sleeps at once.
    busy_poll: float = 0.0


def bind_udp(host: str, port: int, share: bool = False) -> socket.socket:
    """A UDP socket for the media path: large buffers; sends block when the buffer is full
    (back-pressure), receives never wait (the core passes MSG_DONTWAIT). `share`: with
    SO_REUSEPORT, so that the receivers' connected sockets can bind the same port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if share:
        # SO_REUSEPORT would let a second relay of the same user bind this port beside us
        # and take half its traffic. A plain bind first fails if anyone holds it.
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, port))
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    for force, plain in (
        (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF),
        (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force or plain, SOCKET_BUFFER)
        except (OSError, TypeError):
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
    # Each datagram stamped with when the kernel received it: how long packets stay in the
    # relay, the forwarding delay histogram (ext/delay.pxi).
    sock.setsockopt(socket.SOL_SOCKET, _core.RECEIVE_TIMESTAMPS, 1)
    sock.bind((host, port))
    return sock


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.table = _core.RouteTable(durable=config.state_file is not None)
        self.forwarder = _core.Forwarder(self.table)
        self.forwarder.keyframe_interval = config.keyframe_interval
        self.forwarder.gso = config.gso
        self.ledger: ledger.Ledger | None = None
        self.ledger_failing = False  # the last append failed: logged once until it works
        # Reservations asked for ahead of need are written by the ledger's own thread while
        # the media goes on (_reserve_ahead), a round at a time.
        self.ledger_writer: ledger.Writer | None = None
        if config.state_file is not None:
            # Before any routing state: the joins it brings take up what these hold.
            directory = config.state_file.parent
            loaded = ledger.load_ledgers(directory, self.table)
            loaded += ledger.load_state(config.state_file, self.table)
            if loaded:
                log.info("SRTP state of earlier runs read: %d records", loaded)
            self.ledger = ledger.Ledger(config.state_file.with_suffix(".ledger"))
            self.ledger.open()
            self.ledger_writer = ledger.Writer(self.ledger)
        self.running = True
        self.zmq: zmq.Context[Any] = zmq.Context.instance()
        self.peers_out: zmq.Socket[Any] | None = None  # PUB: our packets for other workers
        self.peers_in: zmq.Socket[Any] | None = None  # SUB: theirs for our members
        self.fanout_dropped = 0  # messages the PUB refused (a subscriber far behind)
        self.recorders: dict[int, recording.Recorder] = {}  # meeting -> its recording here
        self.webrtc: WebRtcPeers | None = None
        if config.certificate is not None:
            self.webrtc = WebRtcPeers(
                self.table, Certificate.from_pem(config.certificate.read_bytes())
            )
            self.forwarder.set_aside = True  # STUN and DTLS come to self.webrtc
            self.forwarder.budget = SIGNALLING_PER_SECOND
        if len(config.fanout) > 1:
            if not 0 <= config.index < len(config.fanout):
                raise ValueError(f"worker {config.index} has no endpoint in --fanout")
            self.peers_out = self.zmq.socket(zmq.PUB)
            self.peers_out.setsockopt(zmq.SNDHWM, FANOUT_HWM)
            self.peers_out.setsockopt(zmq.LINGER, 0)
            self.peers_out.bind(config.fanout[config.index])
            self.peers_in = self.zmq.socket(zmq.SUB)
            self.peers_in.setsockopt(zmq.RCVHWM, FANOUT_HWM)
            for i, endpoint in enumerate(config.fanout):
                if i != config.index:
                    self.peers_in.connect(endpoint)
            self.replica = RouteReplica(
                self.table, config.index, self._subscribe, self._recording, self.webrtc
            )
        else:
            self.replica = RouteReplica(
                self.table, on_recording=self._recording, webrtc=self.webrtc
            )
        connected = descriptors_for(config.connected_sockets)
        self.sockets = [
            bind_udp(config.media_host, config.media_port, share=connected > 0),
            bind_udp(config.media_host, config.media_port + 1),
        ]
        if connected:
            self.table.connect_receivers(self.sockets[0].getsockname()[:2], connected)
        self.hops: NextHops | None = None
        self.no_hop: dict[bytes, float] = {}  # sockaddr -> when to look it up again
        self.lookups: deque[tuple[int, bytes]] = deque()  # (receiver, sockaddr) to look up
        self.hops_found: dict[bytes, Hop | None] = {}  # address -> its hop, until REFRESH
        self.hops_due = 0.0
        self.hops_refresh_due = 0.0
        if config.xdp:
            self._open_xdp(config.xdp)
        self.control: zmq.Socket[Any] | None = None
        self.stats: zmq.Socket[Any] | None = None
        if config.table is not None:
            self.replica.apply_snapshot(wire.load_snapshot(config.table))
            self._reserve()
        self.snapshot_due = 0.0  # when to ask for a snapshot again, if one is needed
        self.snapshot_sock: zmq.Socket[Any] | None = None  # a request in flight
        self.poller = zmq.Poller()
        if config.control:
            # Subscribe before asking for the snapshot, so no update falls in between: the
            # replica skips those the snapshot already holds (the clone pattern).
            self.control = self.zmq.socket(zmq.SUB)
            self.control.connect(config.control)
            self.control.setsockopt(zmq.SUBSCRIBE, b"")
        if config.stats:
            self.stats = self.zmq.socket(zmq.PUSH)
            self.stats.setsockopt(zmq.SNDHWM, 10)
            self.stats.setsockopt(zmq.LINGER, 0)
            self.stats.connect(config.stats)

    def stop(self, *_: object) -> None:
        self.running = False

    def _open_xdp(self, interface: str) -> None:
        queue = self.config.index if self.config.xdp_queue is None else self.config.xdp_queue
        checksum = xdp_checksum_for(interface, self.config.xdp_checksum)
        self.hops = NextHops(interface, self.config.media_host)
        try:
            self.table.xdp_open(self.hops.ifindex, queue, checksum=checksum)
        except OSError as exc:
            self.hops.close()
            raise OSError(
                exc.errno, f"--xdp {interface}: queue {queue}: {exc.strerror or exc}"
            ) from exc
        log.info(
            "AF_XDP path open on %s, queue %d; UDP checksums: %s",
            interface,
            queue,
            self.table.xdp_checksum,
        )

    def _route_receivers(self, now: float) -> None:
        """Queue look-ups (AF_XDP): every HOPS_INTERVAL those of receivers without a hop;
        every REFRESH seconds, every receiver's again (a neighbour's MAC moved, a route
        changed). An address found without a hop waits NO_HOP_RETRY before its next. A round
        starts only once the last is done, so an audience larger than a second's look-ups is
        never queued twice."""
        if now >= self.hops_due and not self.lookups:
            self.hops_due = now + HOPS_INTERVAL
            # An address found without a hop is asked about again when its wait ends.
            self.hops_found = {ip: hop for ip, hop in self.hops_found.items() if hop}
            self.lookups.extend(
                (pid, address)
                for pid, address in self.table.xdp_unrouted()
                if self.no_hop.get(address, 0.0) <= now
            )
            if now >= self.hops_refresh_due:
                self.hops_refresh_due = now + REFRESH
                self.lookups.extend(self.table.xdp_routed())
                self.no_hop = {a: when for a, when in self.no_hop.items() if when > now}
                self.hops_found.clear()
        if self.lookups:
            self._look_up(now)

    def _look_up(self, now: float) -> None:
        """Queued look-ups for LOOKUP_PASS_S at most (one at least): a large audience's never
        hold up the media for long. Receivers at one address share its answer until the
        refresh."""
        assert self.hops is not None
        port = self.sockets[0].getsockname()[1]
        until = time.monotonic() + LOOKUP_PASS_S
        while self.lookups:
            pid, address = self.lookups.popleft()
            ip = nexthop.sockaddr_ip(address)
            if ip in self.hops_found:
                hop = self.hops_found[ip]
            else:
                try:
                    hop = self.hops_found[ip] = self.hops.resolve_packed(ip)
                except OSError as exc:  # a netlink time-out: the next round asks again
                    log.warning("next-hop look-up failed: %s", exc)
                    return
            try:
                if hop is None:
                    self.no_hop[address] = now + NO_HOP_RETRY
                    self.table.xdp_unroute(pid)
                else:
                    self.table.xdp_route(pid, address, hop.dst_mac, hop.src_mac, hop.src, port)
            except KeyError:
                pass  # it left meanwhile
            if time.monotonic() >= until:
                return

    def _recording(self, meeting: int, on: bool) -> None:
        """Open or close this worker's recording file of a meeting."""
        recorder = self.recorders.pop(meeting, None)
        if recorder is not None:
            recorder.close()
            log.info("recording of meeting %d closed: %s", meeting, recorder.path.name)
        if not on:
            return
        c = self.config
        if c.recordings is None or c.recording_key is None:
            log.warning("meeting %d is to be recorded, but this worker has no recordings", meeting)
            return
        try:
            key = c.recording_key.read_bytes()
            self.recorders[meeting] = recording.Recorder(c.recordings, key, meeting, c.index)
        except (OSError, ValueError) as exc:
            log.error("cannot record meeting %d: %s", meeting, exc)
            return
        log.info("recording meeting %d to %s", meeting, self.recorders[meeting].path.name)

    def _subscribe(self, meeting: int, wanted: bool) -> None:
        """Take the other workers' packets of a meeting while members are homed here."""
        assert self.peers_in is not None
        option = zmq.SUBSCRIBE if wanted else zmq.UNSUBSCRIBE
        self.peers_in.setsockopt(option, meeting.to_bytes(4, "big"))

    def _publish_exports(self) -> None:
        """The batch's packets for other workers' members (one message per meeting), and for
        the recordings of the meetings being recorded."""
        for meeting, records in self.forwarder.take_exports():
            recorder = self.recorders.get(meeting)
            if recorder is not None:
                try:
                    recorder.write(_core.records_to_pcap(records, time.time()))
                except OSError as exc:
                    log.error("recording of meeting %d stopped: %s", meeting, exc)
                    del self.recorders[meeting]
            if self.peers_out is None:
                continue
            try:
                self.peers_out.send_multipart(
                    [meeting.to_bytes(4, "big"), records], zmq.NOBLOCK, copy=False
                )
            except zmq.Again:
                self.fanout_dropped += 1

    def _take_imports(self, now: float) -> None:
        assert self.peers_in is not None
        fd = self.sockets[0].fileno()
        for _ in range(BATCHES_PER_WAKEUP):
            try:
                frames = self.peers_in.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if self._control_waiting():  # as for media: updates first
                self._drain_control()
            if len(frames) == 2:
                self.forwarder.run_import(fd, frames[1].buffer, now)
                self._reserve()

    def run(self) -> dict[str, Any]:
        """Forward until stopped; returns the final counters."""
        poller = self.poller
        for sock in self.sockets:
            poller.register(sock.fileno(), zmq.POLLIN)
        connected_fd = self.table.connected_fd  # the receivers' connected sockets, or -1
        if connected_fd >= 0:
            poller.register(connected_fd, zmq.POLLIN)
        if self.control is not None:
            poller.register(self.control, zmq.POLLIN)
        if self.peers_in is not None:
            poller.register(self.peers_in, zmq.POLLIN)
        if self.replica.needs_snapshot and self.config.snapshot:
            # At start there is nothing to forward before the routing state: wait a while.
            self._ask_snapshot(time.monotonic())
            assert self.snapshot_sock is not None
            if self.snapshot_sock.poll(int(SNAPSHOT_TIMEOUT * 1000), zmq.POLLIN):
                self._take_snapshot_reply()
            else:
                log.warning("no snapshot from %s yet; asking again", self.config.snapshot)
        if self.config.ready_file:
            self.config.ready_file.write_text(str(os.getpid()))
        deadline = time.monotonic() + self.config.duration if self.config.duration else None
        # The chores of each second, one per pass of the loop, a quarter of a second apart:
        # with a thousand receivers each holds the media for up to a millisecond, and run
        # together they held it for several, which the packets behind them waited out
        # (docs/ARCHITECTURE.md, "How long a packet stays in the relay").
        chores = (self._report, self._save_state, self._compact_ledger, self.table.maintain)
        chore_next = 0
        chore_due = time.monotonic() + STATS_INTERVAL / len(chores)
        forward = self.forwarder.run_once
        busy_poll = self.config.busy_poll
        spin_until = 0.0  # with busy_poll: poll without sleeping until then
        while self.running:
            # Without media, the loop still comes round every 100 ms; every millisecond while
            # look-ups wait (each pass does LOOKUP_PASS_S of them).
            if spin_until and time.monotonic() < spin_until:
                timeout = 0
            else:
                timeout = 1 if self.lookups else 100
            ready = dict(poller.poll(timeout))
            now = time.monotonic()
            for sock in self.sockets:
                if sock.fileno() in ready:
                    fd = sock.fileno()
                    for _ in range(BATCHES_PER_WAKEUP):
                        # Routing updates before media: an eject published before these
                        # packets arrived applies to them (one cheap check per batch).
                        if self._control_waiting():
                            self._drain_control()
                        n = forward(fd, now)
                        if self.webrtc is not None:
                            self._signalling(now)
                        if self.forwarder.waiting:
                            self._reserve()  # packets wait for it: now, before anything else
                        elif self.table.reservations_waiting():
                            self._reserve_ahead()  # a stream half way through its margin
                        if self.peers_out is not None or self.recorders:
                            self._publish_exports()  # one message per meeting per batch
                        if n < 64:
                            if n < 0:
                                log.warning("recvmmsg failed: %s", os.strerror(-n))
                            break
                    if busy_poll:  # from the end of the batch: a fan-out may outlast the spin
                        spin_until = time.monotonic() + busy_poll
            if connected_fd in ready:
                # What receivers send back (reports, consent checks) reaches their own
                # sockets: rare beside the media, a batch from each ready one per wakeup.
                if self._control_waiting():
                    self._drain_control()
                self.forwarder.run_connected(self.sockets[0].fileno(), now)
                if self.webrtc is not None:
                    self._signalling(now)
                if self.forwarder.waiting:
                    self._reserve()
                elif self.table.reservations_waiting():
                    self._reserve_ahead()
                if self.peers_out is not None or self.recorders:
                    self._publish_exports()
            if self._control_waiting():
                self._drain_control()
            if self.webrtc is not None:
                self.webrtc.tick(now)  # DTLS retransmissions, consent
                self._send_signalling()
            if self.peers_in is not None and self.peers_in in ready:
                self._take_imports(now)
            # Keyframe requests merged earlier whose interval ended (ext/forward.pxi); those
            # for senders homed elsewhere, and the imports' own, go out with the exports.
            self.forwarder.keyframes_due(self.sockets[0].fileno(), now)
            if self.peers_out is not None or self.recorders:
                self._publish_exports()
            if self.snapshot_sock is not None and self.snapshot_sock in ready:
                self._take_snapshot_reply()
            if self.replica.needs_snapshot and self.config.snapshot and now >= self.snapshot_due:
                self._ask_snapshot(now)
            if self.hops is not None:
                self._route_receivers(now)
            if self.ledger_writer is not None and self.ledger_writer.busy:
                self._land(wait=False)
            if now >= chore_due:
                chores[chore_next]()
                chore_next = (chore_next + 1) % len(chores)
                chore_due = now + STATS_INTERVAL / len(chores)
            if deadline is not None and now >= deadline:
                break
        self._land(wait=True)
        counters: dict[str, Any] = self.table.counters()
        counters["fanout_dropped"] = self.fanout_dropped
        counters["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with open("/proc/self/statm") as statm:  # resident now, after the peaks of start-up
            counters["rss_bytes"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        return counters

    def _signalling(self, now: float) -> None:
        """The batch's STUN and DTLS (ext/demux.pxi), to the WebRTC peers; their answers out.
        Before the table's reservations: a handshake that completes here rekeys a peer."""
        assert self.webrtc is not None
        for datagram, source in self.forwarder.take_aside():
            self.webrtc.receive(datagram, source, now)
        self._send_signalling()

    def _send_signalling(self) -> None:
        assert self.webrtc is not None
        outbox = self.webrtc.outbox
        if not outbox:
            return
        sock = self.sockets[0]
        for datagram, address in outbox:
            try:
                sock.sendto(datagram, address)
            except OSError as exc:  # a peer gone unreachable: its handshake retries or ends
                log.debug("signalling to a WebRTC peer not sent: %s", exc)
        outbox.clear()

    def _control_waiting(self) -> bool:
        if self.control is None:
            return False
        events = self.control.get(zmq.EVENTS)
        return isinstance(events, int) and bool(events & zmq.POLLIN)

    def _drain_control(self) -> None:
        assert self.control is not None
        while True:
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self._reserve()  # the newcomers' reservations, before any packet of theirs
                return
            try:
                seq = int(frames[0])
                message = wire.decode([b"", *frames[1:]])
            except (ValueError, wire.WireError) as exc:
                log.warning("ignored a control message: %s", exc)
                continue
            try:
                if isinstance(message, wire.Snapshot):
                    self.replica.apply_snapshot(message)
                else:
                    behind = not self.replica.needs_snapshot
                    if not self.replica.apply(seq, message) and behind:
                        log.warning("missed routing updates up to %d; asking for a snapshot", seq)
            except (KeyError, ValueError, MemoryError) as exc:
                # The table refused it (an unknown participant, a bad key): this worker and
                # the control plane disagree, so only a new snapshot can set it right.
                self.replica.needs_snapshot = True
                log.warning("routing update %d refused (%s); waiting for a snapshot", seq, exc)

    def _ask_snapshot(self, now: float) -> None:
        """Ask the control plane for the whole routing state (on start, after a gap, after a
        refused update), without waiting: the reply is taken in the loop when it comes, so a
        control plane that is down or restarting never holds up the media. A request that
        got no reply within SNAPSHOT_RETRY is made again on a fresh socket."""
        assert self.config.snapshot is not None
        self._drop_snapshot_socket()
        sock = self.zmq.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.config.snapshot)
        sock.send_multipart([b"", wire.SNAPSHOT_REQUEST])
        self.snapshot_sock = sock
        self.poller.register(sock, zmq.POLLIN)
        self.snapshot_due = now + SNAPSHOT_RETRY

    def _drop_snapshot_socket(self) -> None:
        if self.snapshot_sock is not None:
            self.poller.unregister(self.snapshot_sock)
            self.snapshot_sock.close(0)
            self.snapshot_sock = None

    def _take_snapshot_reply(self) -> None:
        assert self.snapshot_sock is not None
        try:
            frames = self.snapshot_sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        self._drop_snapshot_socket()
        try:
            snapshot = wire.decode([b"", *frames[2:]])
            if not isinstance(snapshot, wire.Snapshot):
                raise wire.WireError("the snapshot reply holds no snapshot")
            self.replica.apply_snapshot(snapshot)
        except (wire.WireError, KeyError, ValueError, IndexError) as exc:
            log.warning("bad snapshot reply: %s", exc)
            return
        log.info(
            "routing snapshot %d applied: %d participants",
            snapshot.seq,
            len(snapshot.participants),
        )
        self._reserve()
        if self.control is not None:
            self._drain_control()  # the updates numbered after it

    def _reserve(self) -> None:
        """Make the reservations the table asks for durable, then let it use them, then
        send what waited for them (ext/table.pxi, "Never the same index twice"), now: a
        round written ahead that is still in flight lands first. If the ledger cannot be
        written, nothing is committed: what waited is dropped (counted as unreserved) and
        the fast path goes on only within what is already durable."""
        if not self.table.reservations_waiting() and not self.forwarder.waiting:
            return  # nothing new asks: a round in flight lands in its own time
        self._land(wait=True)
        records = self.table.ledger_pending()
        if self.ledger is not None and records:
            try:
                self.ledger.append(records)
            except OSError as exc:
                self.table.ledger_abort()
                self._ledger_failed(exc)
                self.forwarder.release(self.sockets[0].fileno())
                return
            self._ledger_written()
        self.table.ledger_commit()
        if self.forwarder.waiting:
            self.forwarder.release(self.sockets[0].fileno())

    def _reserve_ahead(self) -> None:
        """Reservations no packet waits for yet (a stream half way through its margin of
        INDEX_RESERVE indexes): written and fdatasynced by the ledger's thread while the media
        goes on, and committed once they are on disk (_land). An fdatasync here takes 0.3 to
        5 ms, which the packets behind it would otherwise wait out (docs/ARCHITECTURE.md, "How
        long a packet stays in the relay"). One round at a time."""
        writer = self.ledger_writer
        if writer is not None and writer.busy:
            self._land(wait=False)
            if writer.busy:
                return
        records = self.table.ledger_pending()
        if writer is None or not records:
            self.table.ledger_commit()
            return
        writer.write(records)

    def _land(self, wait: bool) -> None:
        """The round in flight, if any and once written (waited for if `wait`): committed,
        or aborted if the ledger could not be written (its reservations are asked for again
        in the next round)."""
        if self.ledger_writer is None or not self.ledger_writer.busy:
            return
        written, error = self.ledger_writer.outcome(wait)
        if not written:
            return
        if error is not None:
            self.table.ledger_abort()
            self._ledger_failed(error)
            return
        self._ledger_written()
        self.table.ledger_commit()

    def _ledger_failed(self, exc: OSError) -> None:
        assert self.ledger is not None
        if not self.ledger_failing:
            log.error("ledger %s not written: %s", self.ledger.path, exc)
        self.ledger_failing = True

    def _ledger_written(self) -> None:
        if self.ledger_failing:
            assert self.ledger is not None
            log.info("ledger %s written again", self.ledger.path)
            self.ledger_failing = False

    def _report(self) -> None:
        """The second's counters out; the second's budget of signalling in."""
        self._push_stats(time.monotonic())
        if self.webrtc is not None:
            self.forwarder.budget = SIGNALLING_PER_SECOND

    def _compact_ledger(self) -> None:
        if self.ledger is None or not self.ledger.worth_compacting(self.table.ledger_live_bytes()):
            return
        # Never beside a round in flight: its records would go to the file being replaced.
        self._land(wait=True)
        try:
            self.ledger.compact(self.table.ledger_records())
        except OSError as exc:
            log.warning("ledger %s not compacted: %s", self.ledger.path, exc)

    def _save_state(self) -> None:
        path = self.config.state_file
        if path is None or self.replica.needs_snapshot:
            return
        try:
            ledger.save_state(path, self.table.stream_state())
        except OSError as exc:
            log.warning("stream state not saved: %s", exc)

    def _push_stats(self, now: float) -> None:
        if self.stats is None:
            return
        # Participants whose address became known since the last report (a packet that
        # authenticated, or receive_at): ids only, addresses are personal data.
        events = [{"kind": "latched", "participant": pid} for pid in self.table.take_latched()]
        if self.webrtc is not None:
            # WebRTC peers gone (relay/webrtc.py): again each second until they have left.
            events += [
                {"kind": "webrtc_ended", "participant": pid, "reason": reason}
                for pid, reason in self.webrtc.ended.items()
            ]
        body = {
            "worker": self.config.index,
            "time": now,
            "counters": {
                **self.table.counters(),
                "fanout_dropped": self.fanout_dropped,
                **self._webrtc_counters(),
            },
            "events": events,
        }
        # Per participant: one binary frame, whose cost per participant does not depend on
        # how many there are (docs/wire.md); JSON of 100,000 would cost a core.
        frames = [json.dumps(body).encode(), self.table.participant_counters_blob()]
        reception = self.table.take_reception()  # what receivers' reports said, once changed
        if reception:
            frames.append(reception)
        try:
            self.stats.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # nobody is reading: the next second's totals replace these

    def _webrtc_counters(self) -> dict[str, Any]:
        """The WebRTC peers' signalling, for the metrics (only counts that grow: a count that
        falls would look like a restart, control/stats.py): ICE outcomes, DTLS refusals,
        handshakes completed, peers gone by reason."""
        if self.webrtc is None:
            return {}
        return {
            "webrtc_connected": self.webrtc.connected,
            "ice": dict(self.webrtc.ice.counters),
            "webrtc_dropped": dict(self.webrtc.drops),
            "webrtc_ended": dict(self.webrtc.ended_total),
        }

    def close(self) -> None:
        if self.hops is not None:
            self.hops.close()
        if self.ledger_writer is not None:
            self.ledger_writer.close()  # a round still being written, first
        if self.ledger is not None:
            self.ledger.close()
        for sock in self.sockets:
            sock.close()
        for recorder in self.recorders.values():
            recorder.close()
        if self.snapshot_sock is not None:
            self.snapshot_sock.close(0)
        for zsock in (self.control, self.stats, self.peers_out, self.peers_in):
            if zsock is not None:
                zsock.close(0)


def descriptors_for(connected: int) -> int:
    """Raise this process's descriptor limit to fit `connected` sockets and the spare, as far
    as the hard limit allows; how many connected sockets fit (logged if fewer)."""
    if connected <= 0:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connected + DESCRIPTORS_SPARE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    fits = connected
    if soft != resource.RLIM_INFINITY:
        fits = max(0, min(connected, soft - DESCRIPTORS_SPARE))
    if fits < connected:
        log.warning(
            "descriptor limit %d: %d receivers get connected sockets, not %d "
            "(the rest are sent to from the media socket)",
            soft,
            fits,
            connected,
        )
    return fits


def xdp_checksum_for(interface: str, asked: str) -> str:
    """Who computes the UDP checksums of the AF_XDP frames sent through `interface`, of
    XDP_CHECKSUMS less "auto": "auto" is the device ("offload", as for the kernel's own UDP
    sockets; ext/xsk.h), unless the kernel may not read the TX metadata that asks for it on
    that device's path (XDP_NO_TX_METADATA), when it is the relay. ValueError where the
    device cannot do what was asked."""
    driver = interface_driver(interface)
    if driver not in XDP_NO_TX_METADATA:
        return "offload" if asked == "auto" else asked
    if asked in ("auto", "relay"):
        return "relay"
    raise ValueError(
        f"--xdp-checksum {asked}: {interface}'s driver ({driver}) sends AF_XDP frames without "
        "their TX metadata on kernels before late 2025, so nothing would compute their "
        "checksums; use relay (or auto)"
    )


def interface_driver(interface: str) -> str | None:
    """The name of `interface`'s device driver as sysfs gives it; None for a virtual device
    without one (veth, ifb, dummy) or where sysfs does not say."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{interface}/device/driver"))
    except OSError:
        return None


def main(config: WorkerConfig) -> int:
    managed = lifecycle.bind_to_parent()  # before the ports: never outlive the supervisor
    log_setup()
    try:
        worker = Worker(config)
    except (OSError, wire.WireError, ValueError, KeyError, ledger.LedgerError) as exc:
        print(f"relay worker: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, worker.stop)
    if not managed:  # a supervised worker leaves Ctrl-C to its supervisor
        signal.signal(signal.SIGINT, worker.stop)
    try:
        counters = worker.run()
    finally:
        worker.close()
    print(json.dumps(counters), flush=True)
    return 0


def parser() -> argparse.ArgumentParser:
    """The worker's command line: `relay worker ...` and `python -m relay.worker ...`."""
    parser = argparse.ArgumentParser(
        prog="relay worker",
        description="Run one forwarding worker (standalone: a routing table from a file).",
    )
    parser.add_argument("--table", type=Path, help="routing table: a Snapshot as JSON")
    parser.add_argument("--media-host", default="127.0.0.1", help="address to bind")
    parser.add_argument(
        "--media-port",
        type=int,
        default=40000,
        help="RTP/RTCP port; RTCP also on PORT+1 (default 40000)",
    )
    parser.add_argument("--control", help="ZeroMQ endpoint publishing routing updates")
    parser.add_argument("--snapshot", help="ZeroMQ endpoint answering snapshot requests")
    parser.add_argument("--stats", help="ZeroMQ endpoint to push counters to, every second")
    parser.add_argument("--ready-file", type=Path, help="written with the pid once bound")
    parser.add_argument(
        "--recordings", type=Path, help="directory for recorded meetings' encrypted media"
    )
    parser.add_argument(
        "--recording-key", type=Path, help="file holding the 32-byte key recordings use"
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        help="SRTP index state, saved every second and read back after a restart",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--certificate",
        type=Path,
        help="the node's DTLS certificate and key (PEM): connect WebRTC peers (WHIP, WHEP)",
    )
    parser.add_argument(
        "--keyframe-interval",
        type=float,
        default=0.5,
        help="seconds between keyframe requests (PLI/FIR) passed to one stream's sender",
    )
    parser.add_argument(
        "--connected-sockets",
        type=_connected_sockets,
        default=os.environ.get("RELAY_CONNECTED_SOCKETS", str(CONNECTED_SOCKETS)),
        metavar="N",
        help="receivers sent to from a socket connected to each, bound to the media port "
        f"(default: RELAY_CONNECTED_SOCKETS or {CONNECTED_SOCKETS}; 0: every copy from the "
        "media socket by sendmmsg)",
    )
    parser.add_argument(
        "--no-gso",
        action="store_true",
        default=os.environ.get("RELAY_GSO", "1") == "0",
        help="send every copy as a datagram of its own, not a receiver's copies of a burst "
        "as one message the kernel splits (UDP GSO); default: RELAY_GSO=0 says so",
    )
    parser.add_argument(
        "--xdp",
        metavar="IFACE",
        default=os.environ.get("RELAY_XDP") or None,
        help="send copies to receivers reached through IFACE as frames through an AF_XDP "
        "socket, past the IP stack (copy mode; needs CAP_NET_RAW and CAP_NET_ADMIN or root); "
        "default: RELAY_XDP, else off",
    )
    parser.add_argument(
        "--xdp-queue",
        type=int,
        metavar="Q",
        help="the interface's queue this worker's AF_XDP socket binds (default: --index)",
    )
    parser.add_argument(
        "--xdp-checksum",
        type=_xdp_checksum,
        default=os.environ.get("RELAY_XDP_CHECKSUM", "auto"),
        metavar="WHO",
        help="who computes the AF_XDP frames' UDP checksums: offload (the device, as for the "
        "kernel's UDP sockets), relay (this worker), kernel (in software, as it builds each "
        "skb), auto (offload, or relay where the kernel may ignore the frames' TX metadata); "
        "default: RELAY_XDP_CHECKSUM or auto",
    )
    parser.add_argument(
        "--busy-poll",
        type=_busy_poll,
        default=os.environ.get("RELAY_BUSY_POLL", "0"),
        metavar="US",
        help="after a batch of media, poll the sockets without sleeping for US microseconds "
        f"(0..{BUSY_POLL_MAX_US}; default: RELAY_BUSY_POLL or 0): a worker that sleeps between "
        "packets wakes with cold caches; one that spins keeps a core busy",
    )
    parser.add_argument(
        "--index", type=int, default=0, help="this worker's number among W (default 0)"
    )
    parser.add_argument(
        "--fanout",
        metavar="EP0,EP1,...",
        help="every worker's ZeroMQ endpoint for packets passed between workers, in order",
    )
    return parser


def _busy_poll(text: str) -> float:
    """--busy-poll's microseconds, as the seconds WorkerConfig.busy_poll holds."""
    return _whole_up_to(text, BUSY_POLL_MAX_US) / 1e6


def _xdp_checksum(text: str) -> str:
    """--xdp-checksum's way, checked in RELAY_XDP_CHECKSUM too (argparse checks `choices`
    only on the command line)."""
    if text not in XDP_CHECKSUMS:
        raise argparse.ArgumentTypeError(f"one of {', '.join(XDP_CHECKSUMS)}, not {text!r}")
    return text


def _connected_sockets(text: str) -> int:
    return _whole_up_to(text, CONNECTED_SOCKETS_MAX)


def _whole_up_to(text: str, top: int) -> int:
    """A flag's whole number 0..top, or the error argparse shows beside the flag's name."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= top:
        raise argparse.ArgumentTypeError(f"must be 0..{top}, got {text!r}")
    return number


def command(argv: Sequence[str]) -> int:
    """`relay worker ARGV...`: parse the worker's arguments and run it."""
    args = parser().parse_args(argv)
    return main(
        WorkerConfig(
            index=args.index,
            media_host=args.media_host,
            media_port=args.media_port,
            table=args.table,
            control=args.control,
            snapshot=args.snapshot,
            stats=args.stats,
            ready_file=args.ready_file,
            fanout=tuple(args.fanout.split(",")) if args.fanout else (),
            state_file=args.state_file,
            recordings=args.recordings,
            recording_key=args.recording_key,
            duration=args.duration,
            certificate=args.certificate,
            keyframe_interval=args.keyframe_interval,
            connected_sockets=args.connected_sockets,
            gso=not args.no_gso,
            xdp=args.xdp,
            xdp_queue=args.xdp_queue,
            xdp_checksum=args.xdp_checksum,
            busy_poll=args.busy_poll,
        )
    )


if __name__ == "__main__":
    sys.exit(lifecycle.run_command("relay", lambda: command(sys.argv[1:])))
