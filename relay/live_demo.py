"""`relay demo`: a webinar through a real relay worker, with live progress.

A worker process is started on loopback from a routing table (one presenter, N attendees, each
with its own SRTP keys and address); the native load generator plays the presenter (Opus-sized
packets at an audio rate) and every attendee. Each second prints what went in and out, the loss,
how many sampled packets the attendees decrypted and checked with their own keys, and the added
latency. At the end: the worker's own counters. `relay demo --crypto` shows the SRTP core alone.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def main(
    attendees: int = 200, seconds: int = 5, rate: float = 50.0, out: TextIO = sys.stdout
) -> int:
    run = importlib.import_module("bench.run")  # the load generator lives with the benchmarks
    scenario = run.Scenario("webinar", attendees, size=200, rate=rate, duration=1.0)
    print(
        f"relay demo: a webinar, 1 presenter -> {attendees} attendees, {rate:g} packets/s of "
        f"200-byte SRTP ({scenario.suite}), {seconds} s, one worker on 127.0.0.1\n",
        file=out,
    )
    with tempfile.TemporaryDirectory(prefix="relay-demo-") as tmp:
        bench = run.Bench(scenario, "relay", Path(tmp), lambda _line: None)
        print(
            f"worker pid {bench.relay.proc.pid} on port {bench.port}; attendees at "
            f"127.1.0.1.. port {bench.cast.sink_port}\n",
            file=out,
        )
        print(
            f"{'second':>6} {'sent':>6} {'delivered':>10} {'loss':>8} {'verified':>9} "
            f"{'p50 ms':>7} {'p99 ms':>7}",
            file=out,
            flush=True,
        )
        totals: dict[str, Any] = {"sent": 0, "delivered": 0, "verified": 0}
        try:
            for second in range(1, seconds + 1):
                step = bench.step(rate, 1.0, keep_latency=True)
                lat = np.array(step.latencies_us or [np.nan]) / 1000
                totals["sent"] += step.sent
                totals["delivered"] += step.received
                totals["verified"] += step.verified
                print(
                    f"{second:>6} {step.sent:>6} {step.received:>10,} "
                    f"{step.loss_ratio:>8.3%} {step.verified:>9,} "
                    f"{np.percentile(lat, 50):>7.2f} {np.percentile(lat, 99):>7.2f}",
                    file=out,
                    flush=True,
                )
        finally:
            counters = bench.close()
    expected = totals["sent"] * attendees
    print(
        f"\n{totals['sent']} packets from the presenter, {totals['delivered']:,} of "
        f"{expected:,} copies delivered ({1 - totals['delivered'] / max(expected, 1):.3%} "
        f"lost); {totals['verified']:,} sampled copies decrypted and checked by the attendees.",
        file=out,
    )
    dropped = {k: v for k, v in counters.get("dropped", {}).items() if v}
    print(
        f"worker counters: {counters.get('packets_in', 0):,} in, "
        f"{counters.get('packets_out', 0):,} out, drops: {dropped or 'none'}",
        file=out,
    )
    return 0 if totals["delivered"] else 1
