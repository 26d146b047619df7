"""Medians over several `relay bench --json` runs of one scenario, as a Markdown table.

python -m bench.report bench/results/webinar-1000-cm80-200-run*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

FIELDS = [
    ("out pps", lambda x: x["out_pps"], "{:,.0f}"),
    ("relay cores", lambda x: x["relay_cpu"], "{:.2f}"),
    ("out pps per core", lambda x: x["out_pps_per_relay_core"], "{:,.0f}"),
    ("loss at 80 %", lambda x: x["loss_ratio"] * 100, "{:.3f} %"),
    ("p50 µs", lambda x: x["latency_us"]["p50"], "{:,.0f}"),
    ("p99 µs", lambda x: x["latency_us"]["p99"], "{:,.0f}"),
    ("p99.9 µs", lambda x: x["latency_us"]["p999"], "{:,.0f}"),
    ("verified", lambda x: x["verified_packets"], "{:,.0f}"),
]


def targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"relay": report, **report.get("baselines", {})}


def table(reports: list[dict[str, Any]]) -> str:
    names = list(targets(reports[0]))
    lines = [
        "| target | " + " | ".join(f for f, _, _ in FIELDS) + " | relay ÷ target |",
        "| --- | " + " | ".join("---:" for _ in FIELDS) + " | ---: |",
    ]
    relay_out = statistics.median(r["out_pps"] for r in reports)
    for name in names:
        cells = []
        for _, get, fmt in FIELDS:
            cells.append(fmt.format(statistics.median(get(targets(r)[name]) for r in reports)))
        ratio = relay_out / statistics.median(targets(r)[name]["out_pps"] for r in reports)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def per_worker_table(reports: list[dict[str, Any]]) -> str:
    """With --workers W: each target's out pps and cores per process (median over the runs);
    a target that ran as one process (the Python baselines) shows that. Empty for reports
    from a single worker, or from before per-worker figures."""
    workers = reports[0].get("workers", 1)
    if workers < 2 or "per_worker" not in reports[0]:
        return ""
    lines = [
        "| target | " + " | ".join(f"worker {i}: out pps (cores)" for i in range(workers)) + " |",
        "| --- | " + " | ".join("---:" for _ in range(workers)) + " |",
    ]
    for name in targets(reports[0]):
        shares = [targets(r)[name].get("per_worker", []) for r in reports]
        if len(shares[0]) < 2:
            lines.append(f"| {name} | one process |" + " |" * (workers - 1))
            continue
        cells = []
        for i in range(workers):
            out = statistics.median(s[i]["out_pps"] for s in shares)
            cpu = statistics.median(s[i]["relay_cpu"] for s in shares)
            cells.append(f"{out:,.0f} ({cpu:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    reports = [json.loads(f.read_text()) for f in args.files]
    first = reports[0]
    print(
        f"{first['scenario']}, N = {first['receivers']}, {first['size']} B, {first['suite']}, "
        f"{first['workers']} worker(s); median of {len(reports)} run(s)\n"
    )
    print(table(reports))
    shares = per_worker_table(reports)
    if shares:
        print(f"\nper worker:\n\n{shares}")


if __name__ == "__main__":
    main()
