"""Soak: a long webinar through `relay serve`'s processes, sampling every process's memory
and open file descriptors, to show they stay flat (docs/RELIABILITY.md, "Soak").

The server (control plane on SQLite in a temporary directory, W workers) runs on loopback; a
webinar of N attendees is joined over the API and played by the native load generator
(bench/served.py, open_webinar), in steps of --step seconds for --minutes. After each step it
samples, for the control plane, each worker and this process: resident memory (VmRSS) and open
file descriptors, plus the step's loss. At the end: the first and last samples per process,
the growth, and the JSON of every sample with --json.

    python -m bench.soak --minutes 60 --attendees 200 --rate 50 --workers 2 --json soak.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.served import open_webinar
from control.settings import Settings
from node.serve import Server, free_ports


def sample(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def processes(server: Server) -> dict[str, int]:
    found = {"serve": os.getpid(), "control": server.control.process.pid}  # type: ignore[union-attr]
    for i, pid in enumerate(server.supervisor.pids()):
        found[f"worker {i}"] = pid
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--attendees", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="presenter packets/s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--step", type=float, default=30.0, help="seconds per sample")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="relay-soak-") as tmp:
        base = free_ports(2 * args.workers)
        server = Server(
            Settings(
                data_dir=Path(tmp) / "data",
                api_port=base + 2 * args.workers,
                media_port=base,
                workers=args.workers,
            )
        )
        server.start()
        api = httpx.Client(
            base_url=server.api_url, headers={"Authorization": f"Bearer {server.token}"}
        )
        try:
            _, bench = open_webinar(
                server, api, args.attendees, args.rate, Path(tmp), io.StringIO()
            )
            started = time.monotonic()
            while time.monotonic() - started < args.minutes * 60:
                step = bench.step(args.rate, args.step)
                server.check()  # the supervisor's watch, as `relay serve` runs it
                row: dict[str, Any] = {
                    "minute": round((time.monotonic() - started) / 60, 2),
                    "sent": step.sent,
                    "received": step.received,
                    "loss_ratio": step.loss_ratio,
                    "restarts": server.supervisor.restarts,
                }
                for name, pid in processes(server).items():
                    row[name] = sample(pid)
                samples.append(row)
                print(json.dumps(row), flush=True)
            bench.close()
        finally:
            api.close()
            server.stop()
    first, last = samples[0], samples[-1]
    print(f"\n{len(samples)} samples over {last['minute']:.1f} minutes")
    for name in (k for k in first if isinstance(first[k], dict)):
        a, b = first[name], last[name]
        print(
            f"  {name:<10} rss {a['rss_kib'] / 1024:7.1f} -> {b['rss_kib'] / 1024:7.1f} MiB "
            f"({(b['rss_kib'] - a['rss_kib']) / 1024:+.1f}), fds {a['fds']} -> {b['fds']}"
        )
    lost = sum(s["sent"] * args.attendees - s["received"] for s in samples)
    print(f"  copies lost over the run: {lost:,}; worker restarts: {last['restarts']}")
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
