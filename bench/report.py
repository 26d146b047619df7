"""The table `relay bench` prints for a webinar or meeting report (bench/run.py makes it), and
`python -m bench.report RUN.json ...`: each target's medians over several runs."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any


def print_report(r: dict[str, Any]) -> None:
    rows = [("relay", r), *r.get("variants", {}).items(), *r.get("baselines", {}).items()]
    shape = (
        f"webinar 1 -> {r['receivers']}"
        if r["scenario"] == "webinar"
        else f"meeting of {r['receivers']}"
    )
    send_only = r.get("path") == "send-only"
    path = ", send-only path (out pps: copies the ifb device freed)" if send_only else ""
    print(f"\n{shape}, {r['size']} B, {r['suite']}, {r['workers']} worker(s){path}")
    w = 16 if send_only else 11  # room for ceiling_sendmmsg
    print(
        f"{'':>{w}} {'out pps':>11} {'cores':>6} {'pps/core':>10} {'loss@80%':>9} "
        f"{'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'verified':>9}"
    )
    for name, x in rows:
        lat = x["latency_us"]
        # None on the send-only path: nothing receives there, so there is no latency.
        p50, p99, p999 = (
            (f"{lat['p50']:>8.0f}", f"{lat['p99']:>8.0f}", f"{lat['p999']:>9.0f}")
            if lat is not None
            else (f"{'-':>8}", f"{'-':>8}", f"{'-':>9}")
        )
        # None where the copies cannot be sampled (AF_XDP frames skip the capture: bench/run.py)
        verified = "-" if x["verified_packets"] is None else x["verified_packets"]
        print(
            f"{name:>{w}} {x['out_pps']:>11,.0f} {x['relay_cpu']:>6.2f} "
            f"{x['out_pps_per_relay_core']:>10,.0f} {x['loss_ratio']:>9.4%} "
            f"{p50} {p99} {p999} {verified:>9}"
        )
    if send_only:
        print("  latency: not measured on the send-only path (nothing receives the copies)")
    if any(x["verified_packets"] is None for _, x in rows):
        print(
            "  verified -: AF_XDP frames pass the device's capture by; tests/test_xdp.py "
            "decrypts them on a veth pair"
        )
    if r["workers"] > 1:
        print_per_worker(rows)
    for name, ratio in r.get("ratios", {}).items():
        shown = "too little CPU to measure" if ratio is None else f"{ratio:.2f}"
        print(f"  relay {name.replace('_', ' ')}: {shown}")


def print_per_worker(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Out pps and cores of each process of each target (its share of the receivers)."""
    print("per worker: out pps (cores)")
    for name, x in rows:
        workers = x.get("per_worker", [])
        if len(workers) > 1:
            cells = "  ".join(
                f"{w['worker']}: {w['out_pps']:>9,.0f} ({w['relay_cpu']:.2f})" for w in workers
            )
        else:
            cells = "one process (the baseline has no multi-worker form)"
        print(f"{name:>11} {cells}")


def medians(reports: list[dict[str, Any]]) -> None:
    """Each target's median over several runs of one scenario (`relay bench ... --json` of
    each): out pps, cores, out pps per core, and the median of each ratio."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        for name, x in [
            ("relay", r),
            *r.get("variants", {}).items(),
            *r.get("baselines", {}).items(),
        ]:
            rows.setdefault(name, []).append(x)
    first = reports[0]
    print(
        f"{first['scenario']} of {first['receivers']}, {first['size']} B, {first['suite']}, "
        f"path {first.get('path', 'loopback')}: medians of {len(reports)} runs"
    )
    print(f"{'':>20} {'out pps':>11} {'cores':>6} {'pps/core':>10}  out pps of each run")
    for name, xs in rows.items():
        runs = ", ".join(f"{x['out_pps']:,.0f}" for x in xs)
        print(
            f"{name:>20} {statistics.median(x['out_pps'] for x in xs):>11,.0f} "
            f"{statistics.median(x['relay_cpu'] for x in xs):>6.2f} "
            f"{statistics.median(x['out_pps_per_relay_core'] for x in xs):>10,.0f}  {runs}"
        )
    for key in first.get("ratios", {}):
        values = [r["ratios"][key] for r in reports if r["ratios"].get(key) is not None]
        if values:
            shown = ", ".join(f"{v:.2f}" for v in values)
            print(f"  {key}: {statistics.median(values):.2f} (runs: {shown})")


if __name__ == "__main__":
    # python -m bench.report RUN.json ...: the medians of several runs of one scenario.
    medians([json.loads(Path(name).read_text()) for name in sys.argv[1:]])
