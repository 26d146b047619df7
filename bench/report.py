"""The table `relay bench` prints for a webinar or meeting report (bench/run.py makes it)."""

from __future__ import annotations

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
        print(
            f"{name:>{w}} {x['out_pps']:>11,.0f} {x['relay_cpu']:>6.2f} "
            f"{x['out_pps_per_relay_core']:>10,.0f} {x['loss_ratio']:>9.4%} "
            f"{p50} {p99} {p999} {x['verified_packets']:>9}"
        )
    if send_only:
        print("  latency: not measured on the send-only path (nothing receives the copies)")
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
