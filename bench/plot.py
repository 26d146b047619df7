"""`relay bench --plot FILE.png`: out pps against N, and the latency distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write(reports: list[dict[str, Any]], path: Path) -> None:
    """One figure, two panels: capacity (out pps) per target against receivers, and the
    added latency percentiles of each target at 80 % of its capacity (for the largest N)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None

    targets = ["relay", *reports[0].get("baselines", {})]
    fig, (cap, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    receivers = [r["receivers"] for r in reports]
    for name in targets:
        values = [
            r["out_pps"] if name == "relay" else r["baselines"][name]["out_pps"] for r in reports
        ]
        cap.plot(receivers, values, marker="o", label=name)
    first = reports[0]
    cap.set_title(f"{first['scenario']}, {first['size']} B, {first['suite']}")
    cap.set_xlabel("receivers (N)")
    cap.set_ylabel("out packets/s within 0.1 % loss")
    cap.set_ylim(bottom=0)
    cap.grid(True, alpha=0.3)
    cap.legend()

    last = reports[-1]
    marks = ["p50", "p99", "p999"]
    width = 0.8 / len(targets)
    for k, name in enumerate(targets):
        figures = last["latency_us"] if name == "relay" else last["baselines"][name]["latency_us"]
        lat.bar(
            [i + k * width for i in range(len(marks))],
            [figures[m] for m in marks],
            width=width,
            label=name,
        )
    lat.set_xticks([i + width * (len(targets) - 1) / 2 for i in range(len(marks))], marks)
    lat.set_ylabel("added latency, µs (at 80 % of capacity)")
    lat.set_title(f"latency, N = {last['receivers']}")
    lat.grid(True, axis="y", alpha=0.3)
    lat.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
