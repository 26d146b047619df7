"""The relay's own forwarding delay, as `relay bench` reads it (ext/delay.pxi).

The worker stamps each packet with when the kernel received it for the media socket and, once
the last of its copies has been flushed, counts how long it stayed in a histogram it reports
every second (`--stats ENDPOINT`, docs/wire.md). That measures the relay where the sinks
cannot: on the send-only path nothing receives the copies, and on loopback the sinks' own
receive work shares the host's cores with the relay, so their arrival times say as much about
the generator's core as about the relay.

DelayFeed binds the ZeroMQ PULL socket the worker pushes to; `histogram_after(t)` waits for a
report made at or after monotonic time t (the worker stamps its reports with time.monotonic(),
the same clock on one host), so the difference of two such reports, one taken after the relay
went idle and one after a step's last copies left, counts exactly that step's packets.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import zmq

REPORT_WAIT = 3.0  # seconds: the worker reports every second (relay/worker.py, STATS_INTERVAL)


class DelayFeed:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.context = zmq.Context.instance()
        self.sock = self.context.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)

    def histogram_after(self, t: float) -> dict[str, int]:
        """The forwarding delay histogram (bucket upper edge in seconds, or "+Inf" -> count)
        of the first report made at or after monotonic time `t`."""
        deadline = time.monotonic() + REPORT_WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                raise RuntimeError(f"no report from the relay's worker on {self.endpoint}")
            body: dict[str, Any] = json.loads(self.sock.recv_multipart()[0])
            if body["time"] >= t:
                return {k: int(v) for k, v in body["counters"]["forward_delay"].items()}

    def close(self) -> None:
        self.sock.close()


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {edge: count - before.get(edge, 0) for edge, count in after.items()}


def quantile(counts: dict[str, int], q: float) -> float | None:
    """The q-quantile in seconds of a histogram of counts per bucket (upper edge -> count),
    interpolated linearly within its bucket; a quantile in the +Inf bucket is its lower edge,
    and None if the histogram is empty."""
    edges = sorted((float(e), n) for e, n in counts.items() if e != "+Inf")
    total = sum(counts.values())
    if total == 0:
        return None
    rank = q * total
    lower, seen = 0.0, 0
    for edge, n in edges:
        if n and seen + n >= rank:
            return lower + (edge - lower) * (rank - seen) / n
        seen += n
        lower = edge
    return lower if counts.get("+Inf", 0) else math.nan


def summary(counts: dict[str, int] | None) -> dict[str, Any] | None:
    """p50, p99 and p99.9 in microseconds, and how many packets were counted."""
    if not counts or sum(counts.values()) == 0:
        return None

    def us(q: float) -> float | None:
        value = quantile(counts, q)
        return None if value is None else round(value * 1e6, 1)

    return {"p50": us(0.5), "p99": us(0.99), "p999": us(0.999), "packets": sum(counts.values())}
