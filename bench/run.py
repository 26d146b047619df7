"""`relay bench`: measure a relay with the native load generator, beside baselines.

A scenario is a meeting shape (webinar: 1 presenter -> N attendees; meeting: N participants
all sending audio), a packet size and an SRTP suite. For each relay under test (relay itself;
with --compare also the C ceiling, the same without crypto, and a pure-Python asyncio relay on
relay.srtp) the driver starts it as a process on loopback with the same routing table, then:

1. finds its capacity (unless --rate is given): it raises the offered rate until end-to-end
   loss (packets sent x receivers, against packets the sinks got) passes 0.1 %, bisects, and
   keeps the highest output rate within 0.1 %;
2. measures latency and loss at 80 % of that rate, on samples the sinks decrypt and check.

Each step also reads the relay's CPU time from /proc, so out pps per relay core is a figure of
its own. Results go to stdout, --json and --plot.

With --workers W the relay runs as W worker processes (worker i on media port P + 2i, passing
packets between them over ZeroMQ, --fanout). Participant k is homed on worker k % W (in a
webinar the presenter, participant 0, on worker 0): it sends to its worker's port and is served
by it, so the sinks' counts per participant give each worker's output. The C ceilings then run
as W processes too, each serving the receivers homed on it; with no path between them, the
generator sends each of them a copy of every packet (counted once in in_pps): the ideal split,
an upper bound for the relay. The Python baseline stays one process.

With --path send-only (bench/sendonly.py) a webinar's relays run in a network namespace of the
bench's own and send every copy to an ifb device, which frees it: "received" is the device's
count, so only the send half of each copy is paid on the relay's core (on loopback the sinks'
receive half runs on the same cores). Nothing receives, so there is no latency (None); loss
is measured at 80 % as on loopback, and a step at 10 % verifies a sample of the copies,
captured at the device (which costs the relay's core, so not in the step at 80 %). The
device's count is exact at any moment, so a capacity step there must also have kept up: at
the end of the sending, the relay may be behind by the last frame and KEPT_UP_LAG, no more
(what it still had queued would otherwise count, forwarded after the step's span).
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import _loadgen, delay, relays, sendonly
from bench.relays import (
    RelayGroup,
    base_target,
    free_udp_port,
    free_udp_ports,
    process_cpu_seconds,
)
from relay import wire, worker
from relay.srtp import SUITES, Session, SrtpError

LOSS_LIMIT = 0.001  # 0.1 %
LATENCY_LOAD = 0.8  # latency is measured at this fraction of capacity
# Send-only: how far behind its input a relay may be when the sending ends, in seconds of
# input beyond the last frame's, for the step to count as kept up. Copies still queued then
# are forwarded in the quarter second the step waits after, so a relay 10 % slower than the
# offered rate would otherwise pass a 2-second step without loss, and 80 % of such a
# "capacity" would be a load it cannot sustain (bench/RESULTS.md, "What holds a packet up
# besides its fan-out").
KEPT_UP_LAG = 0.02
VERIFY_LOAD = 0.1  # send-only: a sample is captured and checked at this fraction of it
PAYLOAD_MAGIC = b"relaybench"
VIEWER_PT = 120  # a WebRTC viewer's number for the presenter's codec (the sender uses 111)
WEBRTC_VARIANT = "webrtc_viewers"  # the relay with WebRTC receivers: report["variants"]
RTX_VARIANT = "rtx_cache"  # the relay keeping every packet for retransmission: a variant too
VARIANTS = (WEBRTC_VARIANT, RTX_VARIANT)
MEASURABLE_CPU = 0.05  # cores: below it, a ratio of figures per core is noise
TARGETS = ("relay", "ceiling", "io_ceiling", "python", "python_uvloop")
# The send-only path's (bench/sendonly.py): the relay and the C ceiling each in its ways of
# sending (bench/relays.py, FORMS).
SEND_ONLY_TARGETS = (
    "relay",
    "relay_sendmmsg",
    "relay_connected",
    "relay_connected_only",
    "relay_xdp",
    "ceiling",
    "ceiling_connected",
    "ceiling_sendmmsg",
    "ceiling_xdp",
    "io_ceiling",
    "io_ceiling_xdp",
    "python",
    "python_uvloop",
)
# The relay in its other ways of sending (bench/relays.py, FORMS): variants, not baselines.
# relay_sendmmsg is the loop as it was before connected sockets and GSO: what they gain.
SEND_ONLY_VARIANTS = ("relay_sendmmsg", "relay_connected", "relay_connected_only", "relay_xdp")
# Targets whose receivers get their way out only after the worker looked their next hop up
# (relay/worker.py, HOPS_INTERVAL): each is warmed up before it is measured. (The C ceilings'
# AF_XDP forms look their hops up before they are ready, bench/ceiling_relay.py.)
HOP_TARGETS = ("relay_xdp",)
# Targets whose copies leave as AF_XDP frames, which the kernel hands to the device's driver
# directly, past the taps an AF_PACKET capture reads: the send-only path cannot sample them
# (verified_packets is None); tests/test_xdp.py decrypts such frames on a veth pair, where a
# receiver gets them.
FRAME_TARGETS = ("relay_xdp", "ceiling_xdp", "io_ceiling_xdp")
# Targets that run one process per worker with --workers W (the others run one process).
PER_WORKER_TARGETS = ("relay", "ceiling", "io_ceiling", *relays.FORMS)


@dataclass
class Scenario:
    name: str  # "webinar" or "meeting"
    receivers: int  # attendees (webinar) or participants (meeting)
    size: int = 200  # RTP packet bytes before SRTP
    suite: str = "AES_CM_128_HMAC_SHA1_80"
    workers: int = 1
    duration: float = 2.0  # seconds per measurement step
    rate: float | None = None  # fixed input packets per second per sender; None: find capacity
    # The receivers as WebRTC viewers (a webinar's): each gets the presenter's stream under a
    # payload type of its own, as a WHEP answer places it (what the core does differently
    # for them: relay/webrtc.py connects them, then they are receivers like any other).
    webrtc: bool = False
    # The presenter's stream declared video: the relay keeps each of its packets in the
    # stream's retransmission cache (ext/rtx.pxi) and a receiver's first packet asks a
    # keyframe. Against the same stream declared audio: what the cache costs.
    video: bool = False
    # "loopback" (sinks receive every copy) or "send-only" (bench/sendonly.py: a device frees
    # every copy, so only the send half is paid).
    path: str = "loopback"
    # Packets the sender sends back to back, as a video frame's, at the same average rate
    # (1: evenly spaced): what reaches the relay in one batch as a burst (ext/forward.pxi).
    frame: int = 1

    @property
    def senders(self) -> int:
        return 1 if self.name == "webinar" else self.receivers

    @property
    def participants(self) -> int:
        return self.receivers + 1 if self.name == "webinar" else self.receivers

    @property
    def fanout(self) -> int:
        """Copies the relay sends of each packet."""
        return self.receivers if self.name == "webinar" else self.receivers - 1

    def home(self, participant: int) -> int:
        """The worker participant i is homed on: i % workers, so a webinar's presenter
        (participant 0) is on worker 0 and its attendees spread over all workers."""
        return participant % self.workers

    def processes(self, target: str) -> int:
        """How many processes `target` runs as: one per worker, or one (the Python relays)."""
        return self.workers if target in PER_WORKER_TARGETS else 1

    def receiver_homes(self, processes: int) -> list[int]:
        """The process serving each receiving participant (all of them but a webinar's
        presenter), for a target that runs as `processes` processes."""
        first = 1 if self.name == "webinar" else 0
        return [self.home(i) if processes > 1 else 0 for i in range(first, self.participants)]


@dataclass
class Step:
    in_pps: float  # offered, all senders together
    out_pps: float  # received by the sinks, per second of sending
    loss_ratio: float
    relay_cpu: float  # cores the relay's processes used during the step
    sent: int
    received: int
    sender_late_us_p99: float  # how far behind its schedule the generator sent
    latencies_us: list[float] = field(default_factory=list, repr=False)
    latency_receivers: list[int] = field(default_factory=list, repr=False)  # who, per latency
    verified: int = 0
    # Per relay process (worker): out pps of the receivers it serves, and its cores.
    worker_out_pps: list[float] = field(default_factory=list)
    worker_cpu: list[float] = field(default_factory=list)
    # The relay's own count of how long this step's packets stayed in it (bench/delay.py):
    # bucket upper edge -> packets; None where the target does not count it.
    forward_delay: dict[str, int] | None = None
    # Send-only: how far behind its input the relay was when the sending ended (seconds of
    # input), and whether that is within KEPT_UP_LAG of the last frame's own fan-out.
    lag_s: float = 0.0
    kept_up: bool = True


# --- the routing table and the packets ----------------------------------------------------------


@dataclass
class Cast:
    """Everyone in the scenario: keys and addresses, as the relay's table says."""

    scenario: Scenario
    sink_port: int
    uplinks: list[bytes]
    downlinks: list[bytes]
    ssrcs: list[int]

    @classmethod
    def make(cls, scenario: Scenario, sink_port: int) -> Cast:
        key_len, salt_len, _ = SUITES[scenario.suite]
        n = scenario.participants
        return cls(
            scenario,
            sink_port,
            [secrets.token_bytes(key_len + salt_len) for _ in range(n)],
            [secrets.token_bytes(key_len + salt_len) for _ in range(n)],
            [0x10000 + i for i in range(n)],
        )

    def address(self, i: int) -> tuple[str, int]:
        s = self.scenario
        if s.path == sendonly.PATH and i >= s.senders:
            return sendonly.receiver_address(i), self.sink_port  # on the device's subnet
        return _loadgen.participant_address(i), self.sink_port

    def snapshot(self) -> wire.Snapshot:
        s = self.scenario
        webinar = s.name == "webinar"
        people = []
        for i in range(s.participants):
            sends = i < s.senders
            role = "host" if i == 0 else ("attendee" if webinar else "panelist")
            people.append(
                wire.ParticipantJoined(
                    participant=i + 1,
                    meeting=1,
                    role=role,
                    suite=s.suite,
                    uplink=self.uplinks[i],
                    downlink=self.downlinks[i],
                    streams=(
                        (wire.Stream(self.ssrcs[i], "video", 96, "VP8/90000"),)
                        if s.video
                        else (wire.Stream(self.ssrcs[i]),)
                    )
                    if sends
                    else (),
                    address=self.address(i),
                    worker=s.home(i) if s.workers > 1 else None,
                    payload_types=((self.ssrcs[0], VIEWER_PT),) if s.webrtc and not sends else None,
                )
            )
        return wire.Snapshot(0, (wire.MeetingOpened(1, s.name),), tuple(people))


class PacketSource:
    """SRTP packets from every sender, protected ahead of each step, numbered globally."""

    def __init__(self, cast: Cast) -> None:
        self.cast = cast
        self.number = 0  # next packet number (inside every payload)
        self.restart()

    def restart(self) -> None:
        """Start every sender's stream afresh (new sessions, sequence numbers from 0)."""
        senders = self.cast.scenario.senders
        self.sessions = [
            Session(self.cast.scenario.suite, self.cast.uplinks[i]) for i in range(senders)
        ]
        self.seq = [0] * senders  # each sender's next 48-bit packet index

    def index_of(self, sender: int, seq16: int) -> int:
        """The full index of sender's latest packet with this sequence number."""
        last = self.seq[sender] - 1
        return last - ((last - seq16) & 0xFFFF)

    def make(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """count packets round-robin over the senders: slab, lengths, sender per row, first
        packet number."""
        s = self.cast.scenario
        slab = np.zeros((count, 2048), np.uint8)
        lengths = np.zeros(count, np.uint32)
        senders = (np.arange(count) % s.senders).astype(np.int32)
        first = self.number
        for row in range(count):
            who = int(senders[row])
            seq = self.seq[who] & 0xFFFF
            self.seq[who] += 1
            plain = rtp_packet(seq, self.cast.ssrcs[who], first + row, s.size)
            data = self.sessions[who].protect(plain)
            slab[row, : len(data)] = np.frombuffer(data, np.uint8)
            lengths[row] = len(data)
        self.number += count
        return slab, lengths, senders, first


def schedule(start_ns: int, count: int, in_pps: float, frame: int) -> np.ndarray:
    """When each of `count` packets is due: evenly at in_pps, or in frames of `frame`
    packets due together at the frame's time (the same average rate)."""
    due = (np.arange(count) // frame) * frame
    return (start_ns + due * (1e9 / in_pps)).astype(np.int64)


def rtp_packet(seq: int, ssrc: int, number: int, size: int) -> bytes:
    header = (
        bytes([0x80, 111, (seq >> 8) & 0xFF, seq & 0xFF])
        + (seq * 960).to_bytes(4, "big", signed=False)[-4:]
        + ssrc.to_bytes(4, "big")
    )
    body = PAYLOAD_MAGIC + number.to_bytes(8, "big")
    return header + body + bytes(max(0, size - len(header) - len(body)))


def check_payload(plain: bytes, size: int) -> int:
    """The packet number of a decrypted sample; ValueError if it is not what was sent."""
    body = plain[12:]
    if not body.startswith(PAYLOAD_MAGIC) or len(plain) != max(size, 12 + 18):
        raise ValueError("payload differs from what the generator sent")
    number = int.from_bytes(body[len(PAYLOAD_MAGIC) : len(PAYLOAD_MAGIC) + 8], "big")
    if any(body[len(PAYLOAD_MAGIC) + 8 :]):
        raise ValueError("payload padding differs")
    return number


# --- measuring ----------------------------------------------------------------------------------


def sink_socket() -> socket.socket:
    """The load generator's socket: every participant's address is 127.x.y.z on its port
    (IP_PKTINFO tells them apart), large buffers, and a receive timeout so the sink notices
    stop()."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_PKTINFO", 8), 1)
    for opt in (
        getattr(socket, "SO_RCVBUFFORCE", socket.SO_RCVBUF),
        getattr(socket, "SO_SNDBUFFORCE", socket.SO_SNDBUF),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, 32 << 20)
        except OSError:
            pass
    # The sink blocks in recvmmsg at most 20 ms at a time, so it notices stop().
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 20_000))
    sock.bind(("0.0.0.0", 0))
    return sock


@dataclass
class Attached:
    """A relay that runs already, for Bench to drive: where it listens, the processes whose
    CPU time counts, and the cast as its participants joined (keys from their join answers;
    participant i listens at participant_address(i) on the socket's port)."""

    sock: socket.socket
    cast: Cast
    port: int
    pids: list[int]

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    def cpu_each(self) -> list[float]:
        """All the processes as one: the sinks cannot tell which of them served whom."""
        return [self.cpu_seconds()]

    def stop(self) -> dict[str, Any]:
        return {}


class Bench:
    """Runs the steps of one scenario against one relay process."""

    def __init__(
        self,
        scenario: Scenario,
        target: str,
        workdir: Path,
        progress: Callable[[str], None],
        *,
        attach: Attached | None = None,
        netns: sendonly.Namespace | None = None,
    ) -> None:
        """Start `target` on a routing table of its own, or with `attach`, drive a relay that
        is already running (`relay demo`: a server whose participants joined over its API).
        With `netns` (the send-only path): the relay and the generator's socket in it."""
        self.scenario = scenario
        self.target = target
        self.progress = progress
        self.netns = netns
        self.host = netns.host if netns is not None else "127.0.0.1"  # where the relay is
        if attach is not None:
            self.sock = attach.sock
        elif netns is not None:
            with netns.inside():  # the presenter reaches the relay over the namespace's lo
                self.sock = sink_socket()
        else:
            self.sock = sink_socket()
        if attach is not None:
            self.cast = attach.cast
        else:
            self.cast = Cast.make(scenario, self.sock.getsockname()[1])
        self.source = PacketSource(self.cast)
        self.loadgen = _loadgen.Loadgen(self.sock.fileno(), scenario.participants)
        table = workdir / f"{target}-table.json"
        self.relay: RelayGroup | Attached
        self.processes = 1 if attach is not None else scenario.processes(target)
        # The relay's own forwarding delay (bench/delay.py), where one worker process runs.
        self.delay_feed: delay.DelayFeed | None = None
        if attach is None and base_target(target) == "relay" and self.processes == 1:
            self.delay_feed = delay.DelayFeed(f"ipc://{workdir}/{target}-stats.sock")
        if attach is not None:
            self.port, self.relay = attach.port, attach
        else:
            wire.save_snapshot(self.cast.snapshot(), table)
            self.port = (
                free_udp_port() if self.processes == 1 else free_udp_ports(2 * self.processes)
            )
            self.table, self.workdir = table, workdir
            self.relay = self._start()
        self.sender_ports = self._sender_ports()
        self.homes = np.array(
            [scenario.home(i) if self.processes > 1 else 0 for i in range(scenario.participants)],
            np.intp,
        )
        # A receiver decrypts with its downlink key; the I/O ceiling forwards the sender's
        # packets unchanged, so there the sender's uplink key opens them.
        self.receiver_sessions: dict[tuple[int, int], Session] = {}
        # Receivers whose samples are not checked: their keys are changing (bench/nodes.py:
        # attendees joining again), so a sample may be under the old one or the new.
        self.unverified: set[int] = set()
        self.table = table
        self.workdir = workdir
        self.device_check: dict[str, Any] | None = None  # send-only: bench/sendonly.py
        self.queue_drops = 0  # send-only: what the device's queue dropped, all steps

    def _start(self) -> RelayGroup:
        """Start the target's processes (on the send-only path in the namespace, bound to the
        device's address) and note the device's count then."""
        netns = self.netns
        group = RelayGroup(
            self.target,
            self.table,
            self.port,
            self.workdir,
            self.processes,
            host=self.host,
            wrap=netns.wrap if netns is not None else None,
            stats=self.delay_feed.endpoint if self.delay_feed is not None else None,
        )
        self._device_start = netns.device_packets() if netns is not None else 0
        return group

    def _sender_ports(self) -> np.ndarray:
        """Where each sender's packets go: a row per sender, a column per copy."""
        s, w = self.scenario, self.processes
        if w == 1:
            ports = [[self.port]] * s.senders
        elif base_target(self.target) == "relay":
            # Each sender to its home worker, which passes the packet on to the others.
            ports = [[self.port + 2 * s.home(i)] for i in range(s.senders)]
        else:
            # The ceilings have no path between their processes: each gets every packet.
            ports = [[self.port + 2 * k for k in range(w)]] * s.senders
        return np.array(ports, np.int32)

    def close(self) -> dict[str, Any]:
        counters = self.relay.stop()
        self.sock.close()
        if self.delay_feed is not None:
            self.delay_feed.close()
        if self.netns is not None:
            # What the device counted over the relay's life against what the relay says it
            # sent (its counters at stop): packets lost between would show here.
            sent = self.netns.device_packets() - self._device_start
            self.device_check = sendonly.counters_check(counters, sent)
        return counters

    def wait_idle(self, limit: float = 20.0) -> None:
        """Wait until the relay has worked off what an overloaded step left queued: its CPU
        use falls below 5 % over 100 ms. Otherwise that backlog would count in the next step."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = self.relay.cpu_seconds()
            time.sleep(0.1)
            if self.relay.cpu_seconds() - before < 0.005:
                return

    def step(
        self, in_pps: float, seconds: float, keep_latency: bool = False, settle: bool = True
    ) -> Step:
        """One measurement at `in_pps` for `seconds`; `settle`: first wait until the relay's
        processes are idle (what an earlier step left queued), which a step taken while
        they do other work (bench/nodes.py: joins) must not."""
        s = self.scenario
        count = max(1, int(in_pps * seconds))
        self._prepare(count, settle)
        if self.netns is not None:
            return self._step_send_only(in_pps, count, verify=keep_latency)
        self.loadgen.reset()
        self.loadgen.sink(0.1)  # swallow what an earlier step left in our socket
        slab, lengths, senders, first = self.source.make(count)
        start = _loadgen.monotonic_ns() + 50_000_000
        at_ns = schedule(start, count, in_pps, s.frame)
        sent_ns = np.zeros(count, np.int64)
        self.loadgen.reset(sample_every=max(1, count * s.fanout // 4000))
        ports = np.ascontiguousarray(self.sender_ports[senders])
        sink = threading.Thread(target=self.loadgen.sink, args=(seconds + 5,))
        cpu0, wall0 = self.relay.cpu_each(), time.monotonic()
        sink.start()
        try:
            sent = self.loadgen.send(
                slab, lengths, senders, at_ns, sent_ns, "127.0.0.1", ports=ports
            )
            time.sleep(0.25)  # what is still in flight
        finally:  # interrupted or not, the sink thread ends with the step
            self.loadgen.stop()
            sink.join()
        # Rates are per second of the schedule: a late sender that catches up in a burst
        # makes loss likelier, never the rate higher.
        span = count / in_pps
        late_us = (sent_ns[:sent] - at_ns[:sent]) / 1e3
        elapsed = max(time.monotonic() - wall0 - 0.05, 1e-3)
        worker_cpu = [(b - a) / elapsed for a, b in zip(cpu0, self.relay.cpu_each(), strict=True)]
        cpu = sum(worker_cpu)
        received = self.loadgen.received
        by_worker = np.bincount(
            self.homes, weights=np.array(self.loadgen.counts(), np.float64), minlength=len(cpu0)
        )
        expected = sent * s.fanout
        step = Step(
            in_pps=in_pps,
            out_pps=received / span,
            loss_ratio=max(0.0, 1 - received / expected) if expected else 1.0,
            relay_cpu=cpu,
            sent=sent,
            received=received,
            sender_late_us_p99=float(np.percentile(late_us, 99)) if sent else 0.0,
            worker_out_pps=[float(x) / span for x in by_worker],
            worker_cpu=worker_cpu,
        )
        self._check_samples(step, first, sent_ns, keep_latency)
        per_worker = ""
        if len(worker_cpu) > 1:
            per_worker = "  per worker " + " | ".join(
                f"{x:,.0f} ({c:.2f})" for x, c in zip(step.worker_out_pps, worker_cpu, strict=True)
            )
        self.progress(
            f"{self.target:>10}  offered {in_pps * s.fanout:>11,.0f} out pps  "
            f"got {step.out_pps:>11,.0f}  loss {step.loss_ratio:7.3%}  "
            f"relay cpu {cpu:4.2f}  verified {step.verified}{per_worker}"
        )
        return step

    def _prepare(self, count: int, settle: bool) -> None:
        """Before a step of `count` packets: fresh ceilings if their sequence numbers would
        wrap; with `settle`, wait until the relay is idle."""
        s = self.scenario
        if base_target(self.target) in ("ceiling", "io_ceiling") and (
            max(self.source.seq) + count // s.senders + 1 > 0xFFFF
        ):
            # The ceilings keep no ROC (index = sequence number): give them fresh streams
            # before any sender's sequence number would wrap.
            self.relay.stop()
            self.relay = self._start()
            self.source.restart()
            self.receiver_sessions.clear()
        if settle:
            self.wait_idle()

    def _step_send_only(self, in_pps: float, count: int, verify: bool) -> Step:
        """A step on the send-only path: out is what the device counted (every copy the relay
        handed to it), loss against sent x fanout; with `verify`, a sample of the copies is
        captured at the device and checked (bench/sendonly.py). No latency: nothing receives."""
        s, netns = self.scenario, self.netns
        assert netns is not None
        self.loadgen.reset()
        self.loadgen.sink(0.1)  # what the relay sent the presenter (RTCP), if anything
        slab, lengths, senders, first = self.source.make(count)
        capture = None
        if verify and self.target not in FRAME_TARGETS:  # none to capture: see FRAME_TARGETS
            with netns.inside():
                capture = sendonly.Capture(netns.device, sendonly.sample_mask(count * s.fanout))
        try:
            ports = np.ascontiguousarray(self.sender_ports[senders])
            device0, queue0 = netns.device_packets(), netns.queue_drops()
            start = _loadgen.monotonic_ns() + 50_000_000
            at_ns = schedule(start, count, in_pps, s.frame)
            sent_ns = np.zeros(count, np.int64)
            cpu0, wall0 = self.relay.cpu_each(), time.monotonic()
            sent = self.loadgen.send(
                slab, lengths, senders, at_ns, sent_ns, netns.host, ports=ports
            )
            at_end = netns.device_packets() - device0
            time.sleep(0.25)  # what the relay still has queued
            worker_cpu = [
                (b - a) / max(time.monotonic() - wall0 - 0.05, 1e-3)
                for a, b in zip(cpu0, self.relay.cpu_each(), strict=True)
            ]
            received = netns.device_packets() - device0
            queue_drops = netns.queue_drops() - queue0
            samples = capture.take() if capture is not None else []
        finally:
            if capture is not None:
                capture.sock.close()
        self.queue_drops += queue_drops
        span = count / in_pps
        late_us = (sent_ns[:sent] - at_ns[:sent]) / 1e3
        expected = sent * s.fanout
        lag_s = max(0, expected - at_end) / (s.fanout * in_pps)
        step = Step(
            in_pps=in_pps,
            out_pps=received / span,
            loss_ratio=max(0.0, 1 - received / expected) if expected else 1.0,
            relay_cpu=sum(worker_cpu),
            sent=sent,
            received=received,
            sender_late_us_p99=float(np.percentile(late_us, 99)) if sent else 0.0,
            worker_out_pps=[received / span],
            worker_cpu=worker_cpu,
            lag_s=lag_s,
            kept_up=lag_s <= KEPT_UP_LAG + s.frame / in_pps,
        )
        self._check_samples(step, first, sent_ns, False, [(w, 0, d) for w, d in samples])
        self.progress(
            f"{self.target:>10}  offered {in_pps * s.fanout:>11,.0f} out pps  "
            f"sent {step.out_pps:>11,.0f}  loss {step.loss_ratio:7.3%}  "
            f"relay cpu {step.relay_cpu:4.2f}  verified {step.verified}"
            + (f"  device queue dropped {queue_drops}" if queue_drops else "")
            + ("" if step.kept_up else f"  behind {1e3 * step.lag_s:,.0f} ms at the end")
        )
        return step

    def _check_samples(
        self,
        step: Step,
        first: int,
        sent_ns: np.ndarray,
        keep: bool,
        samples: list[tuple[int, int, bytes]] | None = None,
    ) -> None:
        """Decrypt and check the sinks' samples (or `samples`: (receiver, receive time,
        packet)). Samples of one stream can be far apart, so the ROC comes from the
        generator's own count (unprotect_at), not from an estimate."""
        for who, recv_ns, data in self.loadgen.samples() if samples is None else samples:
            data = bytes(data)
            if 192 <= data[1] <= 223:
                continue  # RTCP: the relay asking the presenter for a keyframe (video)
            if who in self.unverified:
                continue
            sender = int.from_bytes(data[8:12], "big") - self.cast.ssrcs[0]
            if not 0 <= sender < self.scenario.senders:
                raise RuntimeError(f"{self.target}: a receiver got a packet of unknown SSRC")
            session = self.receiver_sessions.get((who, sender))
            if session is None:
                # The I/O ceiling forwards the sender's packets unchanged: its key opens them.
                key = (
                    self.cast.uplinks[sender]
                    if base_target(self.target) == "io_ceiling"
                    else self.cast.downlinks[who]
                )
                session = self.receiver_sessions[(who, sender)] = Session(
                    self.scenario.suite, key, replay_window=1024
                )
            index = self.source.index_of(sender, int.from_bytes(data[2:4], "big"))
            try:
                plain = session.unprotect_at(data, index >> 16)
                number = check_payload(plain, self.scenario.size)
                if self.scenario.webrtc and plain[1] & 0x7F != VIEWER_PT:
                    raise ValueError("a WebRTC viewer got the sender's payload type")
            except (SrtpError, ValueError) as exc:
                raise RuntimeError(f"{self.target}: a receiver got a bad packet: {exc}") from None
            if first <= number < first + len(sent_ns):
                step.verified += 1
                if keep:
                    step.latencies_us.append((recv_ns - int(sent_ns[number - first])) / 1e3)
                    step.latency_receivers.append(who)

    def warm_hops(self) -> None:
        """Light traffic until the worker's next-hop look-up has run: its first copies to each
        receiver go from the media socket (which makes the kernel resolve the neighbour), the
        look-up runs every HOPS_INTERVAL, and only then do copies take the way measured."""
        self.step(20_000 / self.scenario.fanout, 0.5)
        time.sleep(worker.HOPS_INTERVAL + 0.3)
        self.step(20_000 / self.scenario.fanout, 0.5)

    def delay_step(self, in_pps: float, seconds: float, keep_latency: bool = False) -> Step:
        """A step, with the relay's own count of how long its packets stayed in it where the
        target keeps one: the difference of the worker's reports after it went idle and after
        the step's last copies left (bench/delay.py)."""
        if self.delay_feed is None:
            return self.step(in_pps, seconds, keep_latency)
        self.wait_idle()
        before = self.delay_feed.histogram_after(time.monotonic())
        result = self.step(in_pps, seconds, keep_latency, settle=False)
        after = self.delay_feed.histogram_after(time.monotonic())
        result.forward_delay = delay.difference(after, before)
        return result

    def capacity(self) -> tuple[Step, Step]:
        """(the best step within the loss limit, the latency step at 80 % of it)."""
        s = self.scenario
        if self.target in HOP_TARGETS:
            self.warm_hops()
        if s.rate is not None:
            fixed = self.delay_step(s.rate * s.senders, s.duration, keep_latency=True)
            return fixed, fixed
        rate = 20_000 / s.fanout  # in pps, all senders together: 20k out pps
        good: Step | None = None
        bad: Step | None = None
        for _ in range(14):
            result = self.step(rate, s.duration)
            if result.loss_ratio <= LOSS_LIMIT and result.kept_up:
                if good is None or result.out_pps > good.out_pps:
                    good = result
            elif bad is None or result.in_pps < bad.in_pps:
                bad = result
            if good is not None and bad is not None:
                if bad.in_pps / good.in_pps < 1.08:
                    break
                rate = (good.in_pps + bad.in_pps) / 2
            elif bad is None:
                rate *= 2
            else:
                rate /= 2
        if good is None:
            raise RuntimeError(
                f"{self.target}: loss above 0.1 % (or, send-only, falling behind) even at "
                f"{rate * s.fanout:,.0f} out pps"
            )
        if self.netns is None:
            latency = self.delay_step(good.in_pps * LATENCY_LOAD, s.duration, keep_latency=True)
            return good, latency
        # Send-only: capturing the sample at the device costs the relay's core (the kernel
        # copies every transmitted packet to the capture), so the sample is checked in a
        # light step of its own, and the step at 80 % measures the relay alone.
        latency = self.delay_step(good.in_pps * LATENCY_LOAD, s.duration)
        check = self.step(good.in_pps * VERIFY_LOAD, s.duration, keep_latency=True)
        latency.verified += check.verified
        return good, latency


def summarise(scenario: Scenario, best: Step, latency: Step) -> dict[str, Any]:
    lat = np.array(latency.latencies_us) if latency.latencies_us else np.array([np.nan])
    return {
        "in_pps": round(best.in_pps, 1),
        "out_pps": round(best.out_pps, 1),
        "loss_ratio": latency.loss_ratio,
        # None on the send-only path: nothing receives the copies, so none has an arrival.
        "latency_us": None
        if scenario.path == sendonly.PATH
        else {
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
            "p999": float(np.percentile(lat, 99.9)),
            "samples": len(latency.latencies_us),
        },
        # How long packets stayed in the relay at the latency step, by its own count (bench/
        # delay.py), and the serial fan-out floor: one packet's copies at capacity's pace.
        "forward_delay_us": delay.summary(latency.forward_delay),
        "fanout_floor_us": round(1e6 * scenario.fanout / best.out_pps, 1) if best.out_pps else None,
        "relay_cpu": round(best.relay_cpu, 3),
        "out_pps_per_relay_core": round(best.out_pps / max(best.relay_cpu, 1e-6), 1),
        "verified_packets": best.verified + (latency.verified if latency is not best else 0),
        "processes": len(best.worker_cpu),
        "per_worker": per_worker(scenario, best),
        "capacity_step": asdict(best) | {"latencies_us": None},
    }


def per_worker(scenario: Scenario, step: Step) -> list[dict[str, Any]]:
    """Each relay process's share of a step: the receivers homed on it, their out pps (it
    serves them), and its cores."""
    homes = scenario.receiver_homes(len(step.worker_cpu))
    return [
        {
            "worker": i,
            "receivers": homes.count(i),
            "out_pps": round(out, 1),
            "relay_cpu": round(cpu, 3),
        }
        for i, (out, cpu) in enumerate(zip(step.worker_out_pps, step.worker_cpu, strict=True))
    ]


def run(scenario: Scenario, compare: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measure relay (and the baselines with compare) on one scenario."""
    if scenario.path == sendonly.PATH:
        return run_send_only(scenario, compare, progress)
    targets: list[tuple[str, str, Scenario]] = [
        (t, t, scenario) for t in (TARGETS if compare else ("relay",))
    ]
    if compare and scenario.name == "webinar":
        # WebRTC viewers against SDES receivers, the same relay in the same run.
        webrtc = dataclasses.replace(scenario, webrtc=True)
        targets.insert(1, (WEBRTC_VARIANT, "relay", webrtc))
        # The retransmission cache on (a video stream) against off, the same relay.
        targets.insert(1, (RTX_VARIANT, "relay", dataclasses.replace(scenario, video=True)))
    if compare and scenario.workers > 1:
        # What the workers gain is measured against the relay on one worker, in this run.
        targets.insert(1, ("relay_1_worker", "relay", dataclasses.replace(scenario, workers=1)))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        for name, target, scenario in targets:
            shape = (
                f"webinar 1 -> {scenario.receivers}"
                if scenario.name == "webinar"
                else f"meeting of {scenario.receivers}"
            )
            processes = scenario.processes(target)
            how = ""
            if scenario.workers > 1:
                how = (
                    f"; {processes} processes"
                    if processes > 1
                    else "; one process: no multi-worker form"
                )
            progress(f"-- {name}: {shape} ({scenario.size} B, {scenario.suite}{how})")
            results[name] = measure(scenario, target, Path(tmp), progress)
        scenario = targets[0][2]
    report: dict[str, Any] = {**describe(scenario), **results["relay"]}
    if compare:
        baselines = [name for name, _, _ in targets[1:] if name not in VARIANTS]
        report["baselines"] = {name: results[name] for name in baselines}
        report["ratios"] = {
            f"out_pps_vs_{name}": round(results["relay"]["out_pps"] / results[name]["out_pps"], 3)
            for name in baselines
        }
        if RTX_VARIANT in results:
            # Not a baseline either: the relay with its cache on, against itself with it off.
            cached = results[RTX_VARIANT]
            report.setdefault("variants", {})[RTX_VARIANT] = cached
            report["ratios"]["rtx_cache_out_pps_vs_off"] = round(
                cached["out_pps"] / results["relay"]["out_pps"], 3
            )
        if WEBRTC_VARIANT in results:
            # Not a baseline: the relay itself, its receivers WebRTC viewers, against itself.
            viewers, sdes = results[WEBRTC_VARIANT], results["relay"]
            report.setdefault("variants", {})[WEBRTC_VARIANT] = viewers
            # Per core: None where either used too little CPU to measure (a low --rate).
            measurable = min(viewers["relay_cpu"], sdes["relay_cpu"]) >= MEASURABLE_CPU
            report["ratios"]["webrtc_viewers_out_pps_per_core_vs_sdes"] = (
                round(viewers["out_pps_per_relay_core"] / sdes["out_pps_per_relay_core"], 3)
                if measurable
                else None
            )
    return report


def describe(scenario: Scenario) -> dict[str, Any]:
    """The scenario as a report's JSON begins (the send-only path also names its path)."""
    return {
        "scenario": scenario.name,
        **({"path": scenario.path} if scenario.path == sendonly.PATH else {}),
        "suite": scenario.suite,
        "size": scenario.size,
        "frame": scenario.frame,
        "workers": scenario.workers,
        "receivers": scenario.receivers,
        "duration_per_step": scenario.duration,
        "rate": scenario.rate,
    }


def measure(
    scenario: Scenario,
    target: str,
    workdir: Path,
    progress: Callable[[str], None],
    netns: sendonly.Namespace | None = None,
) -> dict[str, Any]:
    """One target's capacity and figures (with `netns`, on the send-only path)."""
    bench = Bench(scenario, target, workdir, progress, netns=netns)
    try:
        best, latency = bench.capacity()
    finally:
        counters = bench.close()
    result = summarise(scenario, best, latency) | {"relay_counters": counters}
    if target in FRAME_TARGETS and netns is not None:
        result["verified_packets"] = None  # see FRAME_TARGETS
    if bench.device_check is not None:
        result["device_check"] = bench.device_check | {"queue_dropped": bench.queue_drops}
        if bench.device_check["agree"] is False:
            progress(
                f"   {target}: the device counted {bench.device_check['device_packets']:,} "
                f"copies, the relay says it sent {bench.device_check['relay_packets_out']:,}"
            )
    return result


def run_send_only(
    scenario: Scenario, compare: bool, progress: Callable[[str], None]
) -> dict[str, Any]:
    """A webinar on the send-only path (bench/sendonly.py): every target in the bench's own
    network namespace, its copies counted by the ifb device that frees them. With compare:
    the relay as it sent before GSO (relay_sendmmsg) and with connected sockets, with GSO
    and without and through AF_XDP (variants), the C ceiling in the relay's default way and in
    those of relay_sendmmsg, relay_connected_only and relay_xdp, the I/O ceiling in the
    default way and through AF_XDP, and the Python relays."""
    if scenario.name != "webinar" or scenario.workers != 1:
        raise ValueError("the send-only path measures a webinar on one worker")
    targets = list(SEND_ONLY_TARGETS if compare else ("relay",))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp, sendonly.Namespace() as ns:
        progress(
            f"-- send-only path: namespace {ns.name}, relays at {ns.host}, copies to "
            f"{ns.device} (ifb), which frees them"
        )
        for target in targets:
            progress(
                f"-- {target}: webinar 1 -> {scenario.receivers} ({scenario.size} B, "
                f"{scenario.suite}; send-only)"
            )
            results[target] = measure(scenario, target, Path(tmp), progress, ns)
        where = {"netns": ns.name, "device": ns.device, "relay_host": ns.host}
    report: dict[str, Any] = {**describe(scenario), **where, **results["relay"]}
    if compare:
        baselines = [t for t in targets[1:] if t not in SEND_ONLY_VARIANTS]
        report["baselines"] = {name: results[name] for name in baselines}
        relay_out = results["relay"]["out_pps"]

        def ratio(other: dict[str, Any] | None) -> float | None:
            if other is None or not other["out_pps"]:
                return None
            return round(relay_out / other["out_pps"], 3)

        report["ratios"] = {f"out_pps_vs_{name}": ratio(results[name]) for name in baselines}
        # The relay's ways of sending against the loop as it was (relay_sendmmsg).
        report["variants"] = {name: results[name] for name in SEND_ONLY_VARIANTS}
        before = results["relay_sendmmsg"]
        for name, form in (
            ("relay", "gso"),
            ("relay_connected", "connected_and_gso"),
            ("relay_connected_only", "connected"),
            ("relay_xdp", "xdp"),
        ):
            other = results[name]["out_pps"]
            report["ratios"][f"{form}_vs_sendmmsg"] = (
                round(other / before["out_pps"], 3) if before["out_pps"] else None
            )
        # The AF_XDP path against the C ceiling sending the same way: the relay's own share.
        frames = results["ceiling_xdp"]["out_pps"]
        report["ratios"]["xdp_vs_ceiling_xdp"] = (
            round(results["relay_xdp"]["out_pps"] / frames, 3) if frames else None
        )
    return report
