"""What the workers report, added up: the totals behind /metrics and the usage records.

Each worker pushes, once a second, its counters since it started (relay/worker.py): packets
and bytes in and out, drops by reason, and packets/bytes per participant. Counters only grow,
so when a worker's numbers go down it has restarted: what it had counted before is kept as a
base, and the new numbers add to it. Sans-IO: StatsAggregator takes decoded messages; the
PULL socket that feeds it lives with the application.

Per participant, a report is a binary frame beside the JSON (docs/wire.md): 40-byte records
of id and four counters, read as NumPy arrays and kept sorted by id. A webinar of 100,000
attendees sends a hundred thousand of them every second; as JSON, decoding them took the
control plane most of a core, which the joins of the next attendees then lacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from control.answers import Reception

TOTALS = (
    "packets_in",
    "bytes_in",
    "packets_out",
    "bytes_out",
    "rtcp_terminated",
    "latched",
    "nacks",
)

# A participant's record in a worker's report: id, padding, packets in, bytes in, packets out,
# bytes out (relay._core.RouteTable.participant_counters_blob).
RECORD = np.dtype([("id", "<u4"), ("pad", "<u4"), ("counters", "<u8", (4,))])
# A receiver's latest report (RouteTable.take_reception): id, jitter and round-trip time in
# microseconds (RTT_UNKNOWN: none), fraction lost of 256.
RECEPTION = np.dtype(
    [("id", "<u4"), ("jitter_us", "<u4"), ("rtt_us", "<u4"), ("fraction", "u1"), ("pad", "V3")]
)
RTT_UNKNOWN = 0xFFFFFFFF
# Histograms: of what receiver reports say (ext/reports.pxi), and of how long relayed packets
# stayed in the relay (ext/delay.pxi). Family -> (metric, the family holding its sum, the sum's
# key there, what turns the sum into the metric's unit).
HISTOGRAMS = {
    "rr_loss": ("relay_receiver_loss_ratio", "rr_sums", "loss_ppm", 1e-6),
    "rr_jitter": ("relay_receiver_jitter_seconds", "rr_sums", "jitter_us", 1e-6),
    "rr_rtt": ("relay_receiver_rtt_seconds", "rr_sums", "rtt_us", 1e-6),
    "forward_delay": ("relay_forward_delay_seconds", "forward_sums", "delay_us", 1e-6),
}

Ids = npt.NDArray[np.uint32]
Counts = npt.NDArray[np.uint64]


# Counters by label: drops by reason, what became of each packet a NACK named (ext/rtx.pxi),
# copies sent grouped and groups refused (UDP GSO, ext/batch.pxi), connected sockets made,
# refused and not made for the limit (ext/connected.pxi), what the AF_XDP path did
# (ext/xdp.pxi), and what a worker serving WebRTC
# peers adds (relay/worker.py): ICE checks by outcome
# (relay/ice.py), signalling refused and peers gone, by reason (relay/webrtc.py). All only
# grow, as everything here must: a count that goes down means the worker started again.
LABELLED = (
    "dropped",
    "rtx",
    "gso",
    "connect",
    "xdp",
    "ice",
    "webrtc_dropped",
    "webrtc_ended",
    *HISTOGRAMS,
    "rr_sums",
    "forward_sums",
)


def _flatten(counters: dict[str, Any]) -> dict[str, int]:
    flat = {name: int(counters.get(name, 0)) for name in (*TOTALS, "webrtc_connected")}
    for family in LABELLED:
        for label, count in counters.get(family, {}).items():
            flat[f"{family}:{label}"] = int(count)
    return flat


def _reception(blob: bytes) -> dict[int, Reception]:
    """A report's third frame: the receivers whose reports said something new."""
    if len(blob) % RECEPTION.itemsize:
        raise ValueError("the reception frame is not whole records")
    out: dict[int, Reception] = {}
    for record in np.frombuffer(blob, RECEPTION):
        rtt = int(record["rtt_us"])
        out[int(record["id"])] = {
            "loss": round(int(record["fraction"]) / 256, 4),
            "jitter_ms": round(int(record["jitter_us"]) / 1000, 3),
            "rtt_ms": None if rtt == RTT_UNKNOWN else round(rtt / 1000, 3),
        }
    return out


def _people(message: dict[str, Any], blob: bytes | None) -> tuple[Ids, Counts]:
    """A report's participants as (ids, counters), sorted by id: from its binary frame, or
    from a JSON `participants` object {"<id>": [four counts]} (older workers, tests)."""
    if blob is not None:
        if len(blob) % RECORD.itemsize:
            raise ValueError("the participants' frame is not whole records")
        records = np.frombuffer(blob, RECORD)
        ids, counts = records["id"].copy(), records["counters"].copy()
    else:
        people = message.get("participants", {})
        ids = np.array([int(k) for k in people], np.uint32)
        counts = np.array([[int(x) for x in v] for v in people.values()], np.uint64)
        counts = counts.reshape(len(ids), 4)
    order = np.argsort(ids, kind="stable")
    return ids[order], counts[order]


def _empty() -> tuple[Ids, Counts]:
    return np.zeros(0, np.uint32), np.zeros((0, 4), np.uint64)


def _find(ids: Ids, counts: Counts, pid: int) -> Counts | None:
    k = int(np.searchsorted(ids, pid))
    return counts[k] if k < len(ids) and ids[k] == pid else None


@dataclass
class WorkerTotals:
    base: dict[str, int] = field(default_factory=dict)  # from before its restarts
    current: dict[str, int] = field(default_factory=dict)  # since it last started
    # Per participant since the worker last started (ids sorted), and from before that.
    ids: Ids = field(default_factory=lambda: _empty()[0])
    counts: Counts = field(default_factory=lambda: _empty()[1])
    base_ids: Ids = field(default_factory=lambda: _empty()[0])
    base_counts: Counts = field(default_factory=lambda: _empty()[1])
    restarts: int = 0
    last_seen: float = 0.0

    def total(self, name: str) -> int:
        return self.base.get(name, 0) + self.current.get(name, 0)

    def keep_as_base(self) -> None:
        """The worker started again: what it had counted per participant adds to the base."""
        ids = np.concatenate([self.base_ids, self.ids])
        counts = np.concatenate([self.base_counts, self.counts])
        self.base_ids, inverse = np.unique(ids, return_inverse=True)
        self.base_counts = np.zeros((len(self.base_ids), 4), np.uint64)
        np.add.at(self.base_counts, inverse, counts)


class StatsAggregator:
    def __init__(self) -> None:
        self.workers: dict[int, WorkerTotals] = {}
        # participant (wire id) -> when its address became known (`wall` time of the report)
        self.latched_at: dict[str, float] = {}
        # WebRTC peers a worker reports gone, not yet made to leave: wire id -> reason. The
        # control plane takes them (`take_ended`); a worker reports each until it has left.
        self.ended: dict[int, str] = {}
        # participant (wire id) -> what its latest receiver report said
        self.reception: dict[int, Reception] = {}

    def receive(
        self,
        message: dict[str, Any],
        now: float,
        wall: float | None = None,
        participants: bytes | None = None,
        reception: bytes | None = None,
    ) -> None:
        """Take one worker's report (`participants`: its binary frame, if any), with its
        events (participants whose address became known, stamped with `wall`; WebRTC peers
        gone). Malformed reports raise ValueError (and change nothing)."""
        try:
            index = int(message["worker"])
            flat = _flatten(message["counters"])
            ids, counts = _people(message, participants)
            events = message.get("events", [])
            latched = [str(int(e["participant"])) for e in events if e.get("kind") == "latched"]
            ended = {
                int(e["participant"]): str(e["reason"])
                for e in events
                if e.get("kind") == "webrtc_ended"
            }
            reports = _reception(reception) if reception is not None else {}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad worker stats: {exc}") from None
        worker = self.workers.setdefault(index, WorkerTotals())
        if any(flat.get(name, 0) < count for name, count in worker.current.items()):
            # It started again: keep what it had counted.
            for name, count in worker.current.items():
                worker.base[name] = worker.base.get(name, 0) + count
            worker.keep_as_base()
            worker.restarts += 1
        for gone in np.setdiff1d(worker.ids, ids, assume_unique=True):
            self.latched_at.pop(str(int(gone)), None)  # it left this worker's table
            self.reception.pop(int(gone), None)
        worker.current = flat
        worker.ids, worker.counts = ids, counts
        worker.last_seen = now
        for pid in latched:
            self.latched_at.setdefault(pid, now if wall is None else wall)
        self.ended.update(ended)
        self.reception.update(reports)

    def take_ended(self) -> dict[int, str]:
        """The WebRTC peers reported gone since the last call (wire id -> reason)."""
        ended, self.ended = self.ended, {}
        return ended

    def total(self, name: str) -> int:
        return sum(w.total(name) for w in self.workers.values())

    def drops(self) -> dict[str, int]:
        return self.labelled("dropped")

    def labelled(self, family: str) -> dict[str, int]:
        """One of LABELLED's counters, label by label, over every worker."""
        prefix = f"{family}:"
        labels: set[str] = set()
        for w in self.workers.values():
            labels |= {n for n in (*w.base, *w.current) if n.startswith(prefix)}
        return {n.split(":", 1)[1]: self.total(n) for n in sorted(labels)}

    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers.values())

    def participant(self, pid: str) -> tuple[int, int, int, int]:
        """(packets in, bytes in, packets out, bytes out) of one participant, all workers."""
        sums = [0, 0, 0, 0]
        number = int(pid)
        for w in self.workers.values():
            for ids, counts in ((w.base_ids, w.base_counts), (w.ids, w.counts)):
                found = _find(ids, counts, number)
                if found is not None:
                    sums = [a + int(b) for a, b in zip(sums, found, strict=True)]
        return sums[0], sums[1], sums[2], sums[3]
