"""What the workers report, added up: the totals behind /metrics and the usage records.

Each worker pushes, once a second, its counters since it started (relay/worker.py): packets
and bytes in and out, drops by reason, and packets/bytes per participant. Counters only grow,
so when a worker's numbers go down it has restarted: what it had counted before is kept as a
base, and the new numbers add to it. Sans-IO: StatsAggregator takes decoded messages; the
PULL socket that feeds it lives with the application.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOTALS = ("packets_in", "bytes_in", "packets_out", "bytes_out", "rtcp_terminated", "latched")


def _flatten(counters: dict[str, Any]) -> dict[str, int]:
    flat = {name: int(counters.get(name, 0)) for name in TOTALS}
    for reason, count in counters.get("dropped", {}).items():
        flat[f"dropped:{reason}"] = int(count)
    return flat


@dataclass
class WorkerTotals:
    base: dict[str, int] = field(default_factory=dict)  # from before its restarts
    current: dict[str, int] = field(default_factory=dict)  # since it last started
    participants_base: dict[str, list[int]] = field(default_factory=dict)
    participants: dict[str, list[int]] = field(default_factory=dict)
    restarts: int = 0
    last_seen: float = 0.0

    def total(self, name: str) -> int:
        return self.base.get(name, 0) + self.current.get(name, 0)


class StatsAggregator:
    def __init__(self) -> None:
        self.workers: dict[int, WorkerTotals] = {}
        # participant (wire id) -> when its address became known (`wall` time of the report)
        self.latched_at: dict[str, float] = {}

    def receive(self, message: dict[str, Any], now: float, wall: float | None = None) -> None:
        """Take one worker's report, with its events (participants whose address became
        known, stamped with `wall`). Malformed reports raise ValueError (and change nothing)."""
        try:
            index = int(message["worker"])
            flat = _flatten(message["counters"])
            people = {
                str(k): [int(x) for x in v] for k, v in message.get("participants", {}).items()
            }
            latched = [
                str(int(e["participant"]))
                for e in message.get("events", [])
                if e.get("kind") == "latched"
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad worker stats: {exc}") from None
        worker = self.workers.setdefault(index, WorkerTotals())
        if any(flat.get(name, 0) < count for name, count in worker.current.items()):
            # It started again: keep what it had counted.
            for name, count in worker.current.items():
                worker.base[name] = worker.base.get(name, 0) + count
            for pid, values in worker.participants.items():
                kept = worker.participants_base.setdefault(pid, [0, 0, 0, 0])
                worker.participants_base[pid] = [a + b for a, b in zip(kept, values, strict=True)]
            worker.restarts += 1
        for gone in worker.participants.keys() - people.keys():
            self.latched_at.pop(gone, None)  # it left this worker's table
        worker.current = flat
        worker.participants = people
        worker.last_seen = now
        for pid in latched:
            self.latched_at.setdefault(pid, now if wall is None else wall)

    def total(self, name: str) -> int:
        return sum(w.total(name) for w in self.workers.values())

    def drops(self) -> dict[str, int]:
        reasons: set[str] = set()
        for w in self.workers.values():
            reasons |= {n for n in (*w.base, *w.current) if n.startswith("dropped:")}
        return {r.split(":", 1)[1]: self.total(r) for r in sorted(reasons)}

    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers.values())

    def participant(self, pid: str) -> tuple[int, int, int, int]:
        """(packets in, bytes in, packets out, bytes out) of one participant, all workers."""
        sums = [0, 0, 0, 0]
        for w in self.workers.values():
            for source in (w.participants_base.get(pid), w.participants.get(pid)):
                if source:
                    sums = [a + b for a, b in zip(sums, source, strict=True)]
        return sums[0], sums[1], sums[2], sums[3]
