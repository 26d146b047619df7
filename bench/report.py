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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    reports = [json.loads(f.read_text()) for f in args.files]
    first = reports[0]
    print(
        f"{first['scenario']}, N = {first['receivers']}, {first['size']} B, {first['suite']}, "
        f"{first['workers']} worker; median of {len(reports)} run(s)\n"
    )
    print(table(reports))


if __name__ == "__main__":
    main()
