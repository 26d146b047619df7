"""`relay bench joins`: a webinar's audience arriving at once, through the HTTP API.

A server (`relay serve`'s processes: the control plane on SQLite in a temporary directory, or
on the PostgreSQL database `--db` names, and W workers) runs on loopback. A webinar is
created; its presenter joins and sends SRTP all along (`--rate` packets a second), so the
workers forward while the audience arrives. Then N attendees join from `--concurrency`
concurrent clients as fast as the server admits them, each listening at an address of its
own (127.x.y.z: the native load generator's sinks count what reaches each), and a few
panelists join at fixed points of the arrival. The joins carry the operator token, as a
service that joins people on their behalf does (they are not counted by the per-client join
rate; each one still gives the meeting's password).

Reported: joins per second overall and per tenth of N, in the order the joins completed (a
cost that grows with N shows as falling rates), the last tenth's rate against the first's,
the latency of a join (p50, p99), the CPU the control plane and the workers used, the memory
they hold at the end, and when each attendee's first packet arrived: p50 and p99 after its
join returned, and when the last attendee had one.

    python -m bench.joins --attendees 10000 --json joins.json --plot joins.png
    relay bench joins --receivers 10000 --db postgresql://relay@127.0.0.1/relay
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import _loadgen
from bench.relays import process_cpu_seconds
from bench.run import sink_socket
from control.settings import Settings
from node.serve import Server, free_ports
from relay.srtp import Session

PRESENTER_SSRC = 0x0B0B0B0B
PANELIST_SSRC = 0x0C0C0000
POLL_S = 0.05  # how often the sinks' counts are looked at (first-packet times to this)


@dataclass
class Arrival:
    """What the audience's arrival did, as it happened."""

    started: float = 0.0
    joined_at: dict[int, float] = field(default_factory=dict)  # attendee -> join returned
    latencies: list[float] = field(default_factory=list)  # seconds, one per join
    completions: list[float] = field(default_factory=list)  # when each join returned
    first_packet: dict[int, float] = field(default_factory=dict)  # attendee -> first arrival
    failures: dict[str, int] = field(default_factory=dict)
    # (joins done, control plane CPU seconds so far) at each tenth of the audience
    cpu_marks: list[tuple[int, float]] = field(default_factory=list)
    control_pid: int = 0


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS"))
    return int(line.split()[1]) * 1024


class Presenter(threading.Thread):
    """Sends the presenter's SRTP at `rate` a second until stopped."""

    def __init__(self, answer: dict[str, Any], rate: float) -> None:
        super().__init__(daemon=True, name="presenter")
        self.session = Session(answer["srtp"]["suite"], base64.b64decode(answer["srtp"]["uplink"]))
        self.to = (answer["relay"]["host"], answer["relay"]["port"])
        self.rate = rate
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            while not self.stopping.wait(1 / self.rate):
                seq = self.sent & 0xFFFF
                packet = struct.pack("!BBHII", 0x80, 111, seq, self.sent * 960, PRESENTER_SSRC)
                sock.sendto(self.session.protect(packet + bytes(160)), self.to)
                self.sent += 1
        finally:
            sock.close()


def watch_first_packets(
    loadgen: Any, attendees: int, arrival: Arrival, done: threading.Event
) -> None:
    """Note when each attendee's first packet arrives, from the sinks' counts."""
    while not done.wait(POLL_S):
        counts = np.array(loadgen.counts()[:attendees])
        now = time.monotonic()
        for i in np.flatnonzero(counts):
            arrival.first_packet.setdefault(int(i), now)
        if len(arrival.first_packet) == attendees:
            return


async def arrive(
    url: str,
    token: str,
    meeting: str,
    password: str,
    panelist_password: str,
    attendees: int,
    panelists: int,
    concurrency: int,
    sink_port: int,
    arrival: Arrival,
    progress: Any,
) -> None:
    """N attendees from `concurrency` clients, and the panelists at fixed points."""
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/v1/meetings/{meeting}/join"
    cursor = iter(range(attendees))
    panel_at = {attendees * (k + 1) // (panelists + 1): k for k in range(panelists)}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=120, limits=limits
    ) as client:

        async def one(body: dict[str, Any]) -> bool:
            started = time.monotonic()
            try:
                r = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
                arrival.failures[kind] = arrival.failures.get(kind, 0) + 1
                return False
            done = time.monotonic()
            if r.status_code != 201:
                code = f"{r.status_code} {r.json().get('error', {}).get('code', '')}"
                arrival.failures[code] = arrival.failures.get(code, 0) + 1
                return False
            arrival.latencies.append(done - started)
            arrival.completions.append(done)
            return True

        async def client_loop() -> None:
            for i in cursor:
                body = {
                    "name": f"attendee {i}",
                    "password": password,
                    "receive_at": f"{_loadgen.participant_address(i)}:{sink_port}",
                }
                if await one(body):
                    arrival.joined_at[i] = arrival.completions[-1]
                k = panel_at.get(i)
                if k is not None:
                    await one(
                        {
                            "name": f"panelist {k}",
                            "password": panelist_password,
                            "role": "panelist",
                            "streams": [{"ssrc": PANELIST_SSRC + k, "kind": "audio"}],
                        }
                    )
                if len(arrival.completions) % max(1, attendees // 10) == 0:
                    arrival.cpu_marks.append(
                        (len(arrival.completions), process_cpu_seconds(arrival.control_pid))
                    )
                    progress(
                        f"  {len(arrival.joined_at):>8,} joined, "
                        f"{len(arrival.first_packet):>8,} heard the presenter, "
                        f"{time.monotonic() - arrival.started:6.1f} s"
                    )

        arrival.started = time.monotonic()
        arrival.cpu_marks.append((0, process_cpu_seconds(arrival.control_pid)))
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))


def summary(
    arrival: Arrival, attendees: int, cpu: dict[str, float], elapsed: float
) -> dict[str, Any]:
    completions = np.sort(np.array(arrival.completions))
    tenth = max(1, len(completions) // 10)
    deciles = []
    for k in range(10):
        part = completions[k * tenth : (k + 1) * tenth]
        if len(part) < 2:
            continue
        start = completions[k * tenth - 1] if k else arrival.started
        deciles.append(round(len(part) / max(part[-1] - start, 1e-9), 1))
    latencies = np.array(arrival.latencies) * 1000
    after_join = np.array(
        [
            arrival.first_packet[i] - t
            for i, t in arrival.joined_at.items()
            if i in arrival.first_packet
        ]
    )
    heard = len(arrival.first_packet)
    # What a join cost the control plane, tenth by tenth: its CPU time between two marks over
    # the joins between them. Rates fall as the workers' output grows on a shared machine;
    # this says whether a join itself got dearer.
    marks = arrival.cpu_marks
    cpu_per_join = [
        round((b[1] - a[1]) * 1000 / (b[0] - a[0]), 3)
        for a, b in zip(marks, marks[1:], strict=False)
        if b[0] > a[0]
    ]
    return {
        "joins": len(completions),
        "control_cpu_ms_per_join_by_tenth": cpu_per_join,
        "joins_per_s": round(len(completions) / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "deciles_joins_per_s": deciles,
        "last_vs_first_decile": round(deciles[-1] / deciles[0], 3) if deciles else None,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 2),
            "p99": round(float(np.percentile(latencies, 99)), 2),
        },
        "cpu_cores": {name: round(seconds / elapsed, 3) for name, seconds in cpu.items()},
        "first_packet": {
            "attendees_heard": heard,
            "after_join_ms_p50": round(float(np.percentile(after_join, 50)) * 1000, 1)
            if len(after_join)
            else None,
            "after_join_ms_p99": round(float(np.percentile(after_join, 99)) * 1000, 1)
            if len(after_join)
            else None,
            "all_heard_after_s": round(max(arrival.first_packet.values()) - arrival.started, 2)
            if heard == attendees
            else None,
        },
        "failures": arrival.failures,
    }


def run(
    attendees: int,
    panelists: int = 3,
    concurrency: int = 16,
    workers: int = 1,
    rate: float = 20.0,
    db: str = "",
    progress: Any = print,
) -> dict[str, Any]:
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="relay-joins-") as tmp:
        base = free_ports(2 * workers)
        settings = Settings(
            data_dir=Path(tmp) / "data",
            api_port=base + 2 * workers,
            media_port=base,
            workers=workers,
            db=db,
            max_participants=attendees + panelists + 1,
        )
        server = Server(settings)
        server.start()
        try:
            return _measure(server, attendees, panelists, concurrency, rate, progress)
        finally:
            server.stop()


def _measure(
    server: Server, attendees: int, panelists: int, concurrency: int, rate: float, progress: Any
) -> dict[str, Any]:
    api = httpx.Client(
        base_url=server.api_url, headers={"Authorization": f"Bearer {server.token}"}, timeout=60
    )
    with api:
        created = api.post(
            "/v1/meetings",
            json={"title": "bench joins", "mode": "webinar", "panelist_password": "panel-pw"},
        ).json()
        meeting, password = created["id"], created["password"]
        presenter_answer = api.post(
            f"/v1/meetings/{meeting}/join",
            json={
                "name": "presenter",
                "role": "host",
                "host_key": created["host_key"],
                "streams": [{"ssrc": PRESENTER_SSRC, "kind": "audio"}],
            },
        ).json()
    sock = sink_socket()
    loadgen = _loadgen.Loadgen(sock.fileno(), attendees)
    sink = threading.Thread(target=loadgen.sink, args=(24 * 3600.0,), daemon=True)
    sink.start()
    presenter = Presenter(presenter_answer, rate)
    presenter.start()
    arrival = Arrival(control_pid=server.control.process.pid)  # type: ignore[union-attr]
    done = threading.Event()
    watcher = threading.Thread(
        target=watch_first_packets, args=(loadgen, attendees, arrival, done), daemon=True
    )
    watcher.start()
    control_pid = server.control.process.pid  # type: ignore[union-attr]
    worker_pids = server.supervisor.pids()
    before = {"control": process_cpu_seconds(control_pid)}
    before |= {f"worker {i}": process_cpu_seconds(p) for i, p in enumerate(worker_pids)}
    progress(
        f"relay bench joins: {attendees:,} attendees and {panelists} panelists, "
        f"{concurrency} clients, {len(worker_pids)} worker(s), "
        f"{'PostgreSQL' if server.settings.db else 'SQLite'}"
    )
    try:
        asyncio.run(
            arrive(
                server.api_url,
                server.token,
                meeting,
                password,
                "panel-pw",
                attendees,
                panelists,
                concurrency,
                sock.getsockname()[1],
                arrival,
                progress,
            )
        )
        elapsed = max(arrival.completions, default=arrival.started) - arrival.started
        cpu_at_end = {"control": process_cpu_seconds(control_pid)}
        cpu_at_end |= {f"worker {i}": process_cpu_seconds(p) for i, p in enumerate(worker_pids)}
        deadline = time.monotonic() + 30  # the last attendees' first packets
        while len(arrival.first_packet) < len(arrival.joined_at) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        memory = {"control": rss_bytes(control_pid)}
        memory |= {f"worker {i}": rss_bytes(p) for i, p in enumerate(worker_pids)}
    finally:
        done.set()
        presenter.stopping.set()
        loadgen.stop()
        sink.join(5)
        sock.close()
    cpu = {name: cpu_at_end[name] - before[name] for name in before}
    return {
        "scenario": "joins",
        "attendees": attendees,
        "panelists": panelists,
        "concurrency": concurrency,
        "workers": len(worker_pids),
        "store": "postgresql" if server.settings.db else "sqlite",
        "presenter_pps": rate,
        **summary(arrival, attendees, cpu, elapsed),
        "rss_bytes": memory,
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """Joins per second per tenth of the audience (bars), and what a join cost the control
    plane in CPU over the same tenths (line): flat when a join costs the same whatever N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    deciles = report["deciles_joins_per_s"]
    ax.bar([f"{10 * (k + 1)}%" for k in range(len(deciles))], deciles)
    ax.set_ylabel("joins per second")
    ax.set_xlabel("tenth of the audience, in the order the joins completed")
    cpu = report.get("control_cpu_ms_per_join_by_tenth", [])
    if cpu:
        twin = ax.twinx()
        twin.plot(range(len(cpu)), cpu, color="tab:red", marker="o")
        twin.set_ylabel("control plane CPU per join, ms", color="tab:red")
        twin.set_ylim(0, max(cpu) * 1.5)
    ax.set_title(
        f"{report['attendees']:,} attendees join, {report['store']}: "
        f"{report['joins_per_s']} joins/s, p50 {report['latency_ms']['p50']} ms, "
        f"p99 {report['latency_ms']['p99']} ms",
        fontsize=9,
    )
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_report(r: dict[str, Any]) -> None:
    fp = r["first_packet"]
    print(
        f"\n{r['joins']:,} joins in {r['elapsed_s']} s: {r['joins_per_s']:,} joins/s "
        f"({r['store']}, {r['concurrency']} clients, {r['workers']} worker(s))\n"
        f"per tenth of the audience: {', '.join(f'{x:,.0f}' for x in r['deciles_joins_per_s'])}"
        f" joins/s; last/first {r['last_vs_first_decile']}\n"
        f"join latency p50 {r['latency_ms']['p50']} ms, p99 {r['latency_ms']['p99']} ms\n"
        f"control plane CPU per join, per tenth: "
        f"{', '.join(f'{x:.2f}' for x in r['control_cpu_ms_per_join_by_tenth'])} ms\n"
        f"first packet after the join: p50 {fp['after_join_ms_p50']} ms, "
        f"p99 {fp['after_join_ms_p99']} ms; every attendee heard the presenter "
        f"{fp['all_heard_after_s']} s after the first join ({fp['attendees_heard']:,} heard)\n"
        f"cores used: {', '.join(f'{k} {v}' for k, v in r['cpu_cores'].items())}\n"
        f"memory at the end: "
        f"{', '.join(f'{k} {v / 2**20:,.0f} MiB' for k, v in r['rss_bytes'].items())}"
        + (f"\nfailures: {r['failures']}" if r["failures"] else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.joins", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--attendees", type=int, default=10_000)
    parser.add_argument("--panelists", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent API clients")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0, help="presenter packets/s")
    parser.add_argument("--db", default="", help="postgresql://... (default: SQLite)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    report = run(
        args.attendees,
        args.panelists,
        args.concurrency,
        args.workers,
        args.rate,
        args.db,
        lambda line: print(line, file=sys.stderr, flush=True),
    )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
