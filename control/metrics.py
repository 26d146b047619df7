"""Prometheus /metrics: a custom collector that reads the aggregates when scraped.

Nothing here runs per packet: the workers count, push totals once a second, and this turns
the latest totals into metric families (prometheus_client's "custom collector" pattern). No
per-participant labels; drop reasons use the fast path's vocabulary (relay._core.DROP_NAMES).
Besides the node's totals, the `relay_worker_*` families give each worker's own (label `worker`,
its index): a dashboard shows how a node's load spreads over its cores, and an alert sees one
worker stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from control.stats import HISTOGRAMS, StatsAggregator, WorkerTotals

# A worker that has not reported for this long counts as down: the one rule by which /healthz
# counts `workers_reporting` (control/plane.py), the status the operator view reads
# (control/api/live.py) and relay_worker_up.
STATS_STALE_S = 3.0

HISTOGRAM_HELP = {
    "rr_loss": "Fraction lost, per receiver report block (RTCP RR, RFC 3550 section 6.4).",
    "rr_jitter": "Interarrival jitter receivers report, per report block.",
    "rr_rtt": "Round-trip time between the relay and a receiver, per report block.",
    "forward_delay": "How long each relayed RTP packet stayed in the relay: from its arrival "
    "in the media socket to the flush of its last copy (ext/delay.pxi).",
}


class ControlCounters:
    """What the control plane itself counts: joins and failed joins by reason."""

    def __init__(self) -> None:
        self.joins = 0
        self.join_failures: dict[str, int] = {}

    def join_failed(self, reason: str) -> None:
        self.join_failures[reason] = self.join_failures.get(reason, 0) + 1


def worker_up(worker: WorkerTotals, now: float) -> bool:
    """Whether a worker reported within STATS_STALE_S of `now` (monotonic seconds)."""
    return now - worker.last_seen < STATS_STALE_S


def worker_dropped(worker: WorkerTotals) -> int:
    """Everything one worker dropped, all reasons, across its restarts."""
    names = {n for n in (*worker.base, *worker.current) if n.startswith("dropped:")}
    return sum(worker.total(n) for n in names)


class RelayCollector(Collector):
    def __init__(
        self,
        stats: StatsAggregator,
        control: ControlCounters,
        gauges: Callable[[], tuple[int, int]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """gauges() -> (open meetings, participants present); clock() -> the monotonic time the
        workers' reports are stamped with (StatsAggregator.receive's `now`)."""
        self.stats = stats
        self.control = control
        self.gauges = gauges
        self.clock = clock

    def collect(
        self,
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        s = self.stats
        for name, key, text in (
            ("relay_packets_in", "packets_in", "Packets received by the workers."),
            ("relay_packets_out", "packets_out", "Packets sent by the workers."),
            ("relay_bytes_in", "bytes_in", "Bytes received by the workers."),
            ("relay_bytes_out", "bytes_out", "Bytes sent by the workers."),
        ):
            yield CounterMetricFamily(name, text, value=s.total(key))
        yield CounterMetricFamily(
            "relay_nacks",
            "Generic NACKs (RFC 4585) receivers sent.",
            value=s.total("nacks"),
        )
        # What receivers' reports say (ext/reports.pxi), one observation per report block, and
        # how long each relayed packet stayed in the relay (ext/delay.pxi).
        for family, (name, sums_family, sum_key, unit) in HISTOGRAMS.items():
            sums = s.labelled(sums_family)
            counts = s.labelled(family)
            edges = sorted((k for k in counts if k != "+Inf"), key=float)
            cumulative, buckets = 0, []
            for edge in [*edges, "+Inf"]:
                cumulative += counts.get(edge, 0)
                buckets.append((edge, cumulative))
            yield HistogramMetricFamily(
                name,
                HISTOGRAM_HELP[family],
                buckets=buckets,
                sum_value=sums.get(sum_key, 0) * unit,
            )
        # Counters by label: drops, retransmissions (ext/rtx.pxi), and the WebRTC peers'
        # (relay/webrtc.py) ICE checks, signalling refused and sessions ended.
        for name, family, label, text in (
            (
                "relay_packets_dropped",
                "dropped",
                "reason",
                "Packets (or copies) not forwarded, by reason.",
            ),
            (
                "relay_retransmissions",
                "rtx",
                "outcome",
                "Packets that NACKs named, by what became of each (ext/rtx.pxi).",
            ),
            (
                "relay_gso",
                "gso",
                "outcome",
                "Copies sent as segments of one message (segments), and such messages the "
                "kernel refused, which turns grouping off (refused): UDP GSO, ext/batch.pxi.",
            ),
            (
                "relay_connected_sockets",
                "connect",
                "outcome",
                "Sockets connected to a receiver (made), refused by the kernel (failed), and "
                "receivers left without one at the limit (over_limit): ext/connected.pxi.",
            ),
            (
                "relay_xdp",
                "xdp",
                "outcome",
                "The AF_XDP path (ext/xdp.pxi): copies sent as frames (frames), copies that found "
                "its ring full (ring_full) and went from the media socket (fallbacks), the kernel "
                "woken (wakeups) and how often it refused (wakeup_errors), frames it refused as "
                "malformed (invalid).",
            ),
            ("relay_ice_checks", "ice", "outcome", "STUN checks on the media ports, by outcome."),
            (
                "relay_webrtc_dropped",
                "webrtc_dropped",
                "reason",
                "DTLS datagrams of WebRTC peers refused, by reason.",
            ),
            (
                "relay_webrtc_ended",
                "webrtc_ended",
                "reason",
                "WebRTC peers gone without a DELETE (made to leave), by reason.",
            ),
        ):
            family_metric = CounterMetricFamily(name, text, labels=[label])
            for value, count in s.labelled(family).items():
                family_metric.add_metric([value], count)
            yield family_metric
        yield CounterMetricFamily(
            "relay_dtls_handshakes",
            "DTLS-SRTP handshakes WebRTC peers completed.",
            value=s.total("webrtc_connected"),
        )
        meetings, participants = self.gauges()
        yield GaugeMetricFamily("relay_meetings", "Meetings open now.", value=meetings)
        yield GaugeMetricFamily(
            "relay_participants", "Participants present now.", value=participants
        )
        yield CounterMetricFamily("relay_joins", "Successful joins.", value=self.control.joins)
        failures = CounterMetricFamily(
            "relay_join_failures", "Refused joins, by reason.", labels=["reason"]
        )
        for reason, count in sorted(self.control.join_failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily(
            "relay_worker_restarts", "Worker processes restarted.", value=s.restarts()
        )
        yield from self._per_worker()

    def _per_worker(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Each worker's own totals, labelled by its index, and whether it reports."""
        workers = sorted(self.stats.workers.items(), key=lambda item: item[0])
        for name, key, text in (
            ("relay_worker_packets_in", "packets_in", "Packets received, per worker."),
            ("relay_worker_packets_out", "packets_out", "Packets sent, per worker."),
            ("relay_worker_bytes_in", "bytes_in", "Bytes received, per worker."),
            ("relay_worker_bytes_out", "bytes_out", "Bytes sent, per worker."),
        ):
            counter = CounterMetricFamily(name, text, labels=["worker"])
            for index, worker in workers:
                counter.add_metric([str(index)], worker.total(key))
            yield counter
        dropped = CounterMetricFamily(
            "relay_worker_packets_dropped",
            "Packets (or copies) not forwarded, all reasons, per worker.",
            labels=["worker"],
        )
        for index, worker in workers:
            dropped.add_metric([str(index)], worker_dropped(worker))
        yield dropped
        now = self.clock()
        up = GaugeMetricFamily(
            "relay_worker_up",
            f"1 if the worker reported in the last {STATS_STALE_S:g} s, else 0.",
            labels=["worker"],
        )
        for index, worker in workers:
            up.add_metric([str(index)], 1 if worker_up(worker, now) else 0)
        yield up
