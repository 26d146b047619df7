"""`relay bench webinar --nodes N`: one webinar over N nodes, against one node, in one run.

Each configuration (one node, then N) is `relay serve`'s processes per node (node/serve.py
`Server`: a control plane and W workers), each on a loopback address of its own, sharing
one PostgreSQL database (`--db`; without it, a throwaway server this bench starts and stops:
PostgreSQL's programs must be installed, bench/postgres.py). A webinar is created through the
first node's API and its presenter joins there, so it is homed there (the origin). The
audience then joins through every node's API in turn, from `CONCURRENCY` clients at once, each
call with that node's operator token (a service joining listeners on their behalf, which
consents for their addresses), and placement spreads it (control/placement.py). Each attendee
listens at an address of its own (127.x.y.z: the native load generator's sinks).

Then the load generator plays the presenter at `--rate` packets a second (50: an Opus stream)
for `--duration` seconds, three times: it counts what every attendee gets and decrypts samples
with each attendee's own keys. Reported, the median of the three:

- out pps (every copy the sinks got) and loss, against what was offered;
- CPU: of every node's processes together, and per node (its workers, its control plane);
- latency from the presenter's send to an attendee's receive, p50 and p99, for attendees
  homed on the origin (one hop) and on the other nodes (two: over a trunk, control/trunks.py);
  the difference of the medians is what a hop adds;
- placement: the latency of a join through the API (p50, p99) and joins a second.

With N > 1 it then kills one of the other nodes (SIGKILL to its control plane and workers, as
`kill -9` of its `relay serve` does: relay/lifecycle.py ends the children with it) and its
attendees join again as clients whose media stopped would (control/client.py `join_again`):
after `SILENCE_S` without a packet, all at once, through the other nodes' APIs, naming the
dead node as one not to be placed on, while the presenter goes on. Reported: when they had
all joined again, and when each heard the presenter again, after the kill.

    relay bench webinar --nodes 3 --receivers 3000
    python -m bench.nodes --nodes 3 --attendees 3000 --json nodes.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import _loadgen, run
from bench.postgres import PostgresServer
from bench.relays import process_cpu_seconds
from bench.served import check, join_presenter
from control.nodes import HEARTBEAT_S
from control.settings import Settings
from node.serve import Server, free_ports

PRESENTER_SSRC = 0x0D0D0001
CONCURRENCY = 16  # join calls in flight at once
SILENCE_S = 2.0  # an attendee that hears nothing this long joins again
RUNS = 3

Progress = Callable[[str], None]


@contextmanager
def database(url: str) -> Iterator[Callable[[], str]]:
    """A function that gives the database URL for each configuration: `url` itself, or a
    fresh database of a throwaway server."""
    if url:
        yield lambda: url
        return
    with PostgresServer.start() as server:
        yield server.new_database
        # (stopped, and its directory deleted, on the way out)


def run_nodes(
    attendees: int,
    nodes: int = 3,
    workers: int = 1,
    rate: float = 50.0,
    duration: float = 2.0,
    db: str = "",
    progress: Progress = print,
    kill: bool = True,
    baseline: bool = True,
    runs: int = RUNS,
) -> dict[str, Any]:
    """The report: one node's run (unless not `baseline`), then `nodes` nodes' run, each
    measured `runs` times (the medians)."""
    if nodes < 2:
        raise ValueError("--nodes: at least 2 (the baseline is one node)")
    # The nodes' processes inherit these (and only while the bench runs: a caller's own
    # environment is put back). Nodes sharing a database share the key that seals its SRTP
    # keys (README.md).
    with environment(
        RELAY_LOG_LEVEL=os.environ.get("RELAY_LOG_LEVEL", "WARNING"),
        RELAY_BOX_KEY=os.environ.get("RELAY_BOX_KEY") or base64.b64encode(os.urandom(32)).decode(),
    ):
        return _run_nodes(
            attendees, nodes, workers, rate, duration, db, progress, kill, baseline, runs
        )


@contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run_nodes(
    attendees: int,
    nodes: int,
    workers: int,
    rate: float,
    duration: float,
    db: str,
    progress: Progress,
    kill: bool,
    baseline: bool,
    runs: int,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "scenario": "webinar-nodes",
        "attendees": attendees,
        "nodes": nodes,
        "workers_per_node": workers,
        "presenter_pps": rate,
        "duration_s": duration,
    }
    with tempfile.TemporaryDirectory(prefix="relay-nodes-") as tmp, database(db) as next_db:
        if baseline:
            progress(f"relay bench webinar --nodes: 1 node, {attendees:,} attendees")
            report["one_node"] = Configuration(
                1, workers, next_db(), Path(tmp) / "one", progress
            ).measure(attendees, rate, duration, runs, kill=False)
        progress(f"relay bench webinar --nodes: {nodes} nodes, {attendees:,} attendees")
        report["many_nodes"] = Configuration(
            nodes, workers, next_db(), Path(tmp) / "many", progress
        ).measure(attendees, rate, duration, runs, kill=kill)
    if baseline:
        one, many = report["one_node"], report["many_nodes"]
        report["ratios"] = {
            "out_pps": many["out_pps"] / one["out_pps"] if one["out_pps"] else None,
            "cpu": many["cpu"]["total"] / one["cpu"]["total"] if one["cpu"]["total"] else None,
        }
    return report


class Configuration:
    """N nodes on one database, started; `measure` runs the webinar and stops them."""

    def __init__(
        self, nodes: int, workers: int, db: str, workdir: Path, progress: Progress
    ) -> None:
        self.progress = progress
        self.workdir = workdir
        self.password = ""
        self.servers: list[Server] = []
        self.names = [f"node-{k + 1}" for k in range(nodes)]
        for k, name in enumerate(self.names):
            base = free_ports(2 * workers + 1)
            # Each node on a loopback address of its own (the load generator sends the
            # presenter's packets to 127.0.0.1: the origin's); the attendees' sinks are at
            # 127.1.0.0 and above.
            host = f"127.0.0.{k + 1}"
            settings = Settings(
                data_dir=workdir / name,
                api_host=host,
                media_host=host,
                api_port=base + 2 * workers,
                media_port=base,
                workers=workers,
                db=db,
                node_name=name,
                max_participants=1_000_000,
            )
            server = Server(settings)
            self.servers.append(server)
            server.start()
        if nodes > 1:
            time.sleep(HEARTBEAT_S + 0.5)  # each has read the others (control/cluster.py)

    def pids(self, k: int) -> dict[str, int]:
        server = self.servers[k]
        pids = {"control": server.control.process.pid}  # type: ignore[union-attr]
        pids |= {f"worker {i}": p for i, p in enumerate(server.supervisor.pids())}
        return pids

    def cpu(self) -> list[dict[str, float]]:
        return [
            {name: process_cpu_seconds(pid) for name, pid in self.pids(k).items()}
            for k in range(len(self.servers))
        ]

    def measure(
        self, attendees: int, rate: float, duration: float, runs: int, *, kill: bool
    ) -> dict[str, Any]:
        try:
            return self._measure(attendees, rate, duration, runs, kill)
        finally:
            for server in self.servers:
                server.stop()

    def _measure(
        self, attendees: int, rate: float, duration: float, runs: int, kill: bool
    ) -> dict[str, Any]:
        origin = self.servers[0]
        with httpx.Client(
            base_url=origin.api_url, headers={"Authorization": f"Bearer {origin.token}"}
        ) as api:
            created = check(api.post("/v1/meetings", json={"title": "bench", "mode": "webinar"}))
            meeting, self.password = created["id"], created["password"]
            presenter = join_presenter(api, meeting, created["host_key"], PRESENTER_SSRC)
        assert presenter["node"] == self.names[0], presenter["node"]
        sock = run.sink_socket()
        sink_port = sock.getsockname()[1]
        started = time.monotonic()
        answers, latencies = asyncio.run(
            self._arrive(meeting, created["password"], attendees, sink_port)
        )
        joining = time.monotonic() - started
        node_of = [presenter["node"]] + [a["node"] for a in answers]
        per_node = {n: node_of[1:].count(n) for n in self.names}
        self.progress(
            f"  {attendees:,} joined in {joining:.1f} s "
            f"({attendees / joining:,.0f} a second); placed "
            + ", ".join(f"{n} {c:,}" for n, c in per_node.items())
        )
        everyone = [presenter, *answers]
        scenario = run.Scenario("webinar", attendees, size=200, rate=rate, duration=duration)
        cast = run.Cast(
            scenario,
            sink_port,
            [base64.b64decode(a["srtp"]["uplink"]) for a in everyone],
            [base64.b64decode(a["srtp"]["downlink"]) for a in everyone],
            [PRESENTER_SSRC + i for i in range(len(everyone))],
        )
        all_pids = [p for k in range(len(self.servers)) for p in self.pids(k).values()]
        attach = run.Attached(sock, cast, presenter["relay"]["port"], all_pids)
        bench = run.Bench(scenario, "relay", self.workdir, lambda _line: None, attach=attach)
        try:
            self._until_everyone_hears(bench, rate)
            steps = []
            for i in range(runs):
                cpu0, t0 = self.cpu(), time.monotonic()
                step = bench.step(rate, duration, keep_latency=True)
                cpu1, elapsed = self.cpu(), time.monotonic() - t0
                steps.append((step, per_node_cpu(cpu0, cpu1, elapsed)))
                self.progress(
                    f"  run {i + 1}: out {step.out_pps:,.0f} pps, loss {step.loss_ratio:.3%}, "
                    f"cpu {step.relay_cpu:.2f}, verified {step.verified}"
                )
            result = summarise(steps, node_of, self.names)
            result["placement"] = {
                "joins_per_s": attendees / joining,
                "latency_ms_p50": float(np.percentile(latencies, 50)) * 1e3,
                "latency_ms_p99": float(np.percentile(latencies, 99)) * 1e3,
            }
            result["placed"] = per_node
            if kill and len(self.servers) > 1:
                result["node_killed"] = self._kill_an_edge(bench, meeting, node_of, rate)
            return result
        finally:
            bench.close()

    async def _arrive(
        self, meeting: str, password: str, attendees: int, sink_port: int
    ) -> tuple[list[dict[str, Any]], list[float]]:
        """Attendee i (1..N) joins through node i mod N's API."""
        bodies = {
            i: {
                "name": f"attendee {i}",
                "password": password,
                "receive_at": f"{_loadgen.participant_address(i)}:{sink_port}",
            }
            for i in range(1, attendees + 1)
        }
        answers: dict[int, dict[str, Any]] = {}
        latencies = await join_all(self.servers, meeting, bodies, answers)
        return [answers[i] for i in sorted(answers)], latencies

    def _until_everyone_hears(self, bench: run.Bench, rate: float, limit: float = 60.0) -> None:
        """Until a step loses nothing: every node has published its attendees, and the
        trunks are up."""
        deadline = time.monotonic() + limit
        while True:
            step = bench.step(rate, 0.5)
            if step.loss_ratio == 0.0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"attendees still miss {step.loss_ratio:.1%} after {limit} s")

    def _kill_an_edge(
        self, bench: run.Bench, meeting: str, node_of: list[str], rate: float
    ) -> dict[str, Any]:
        """SIGKILL the last node's processes; after SILENCE_S its attendees join again, all at
        once, through the other nodes' APIs in turn, while the presenter goes on; when each
        heard the presenter again, after the kill (to the next 0.2 s)."""
        k = len(self.servers) - 1
        dead = self.names[k]
        lost = [i for i, n in enumerate(node_of) if n == dead and i > 0]
        for pid in self.pids(k).values():
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        self.progress(f"  killed {dead} ({len(lost):,} attendees homed there)")
        bench.unverified.update(lost)
        answers: dict[int, dict[str, Any]] = {}  # filled by the rejoining thread
        rejoined_at: list[float] = []

        def rejoin() -> None:
            time.sleep(SILENCE_S)  # what their players notice
            asyncio.run(self._rejoin(meeting, lost, dead, bench.cast.sink_port, answers))
            rejoined_at.append(time.monotonic() - killed)

        joiner = threading.Thread(target=rejoin, daemon=True)
        joiner.start()
        keyed: set[int] = set()
        heard: dict[int, float] = {}
        while len(heard) < len(lost) and time.monotonic() - killed < 60:
            # The keys of those that joined again since the last step, between steps.
            for i in [i for i in list(answers) if i not in keyed]:
                bench.cast.downlinks[i] = base64.b64decode(answers[i]["srtp"]["downlink"])
                node_of[i] = answers[i]["node"]
                bench.receiver_sessions = {
                    key: v for key, v in bench.receiver_sessions.items() if key[0] != i
                }
                bench.unverified.discard(i)
                keyed.add(i)
            bench.step(rate, 0.2, settle=False)
            now = time.monotonic() - killed
            counts = bench.loadgen.counts()
            for i in keyed:
                if counts[i] > 0 and i not in heard:
                    heard[i] = now
        joiner.join(60)
        times = sorted(heard.values())
        return {
            "node": dead,
            "attendees": len(lost),
            "joined_again_s": rejoined_at[0] if rejoined_at else None,
            "heard_again": len(times),
            "heard_again_s_p50": statistics.median(times) if times else None,
            "heard_again_s_max": times[-1] if times else None,
        }

    async def _rejoin(
        self,
        meeting: str,
        lost: list[int],
        dead: str,
        sink_port: int,
        answers: dict[int, dict[str, Any]],
    ) -> None:
        """Attendee i joins again through a surviving node's API, naming the dead node as
        one not to be placed on (`avoid_nodes`: it may not be found silent yet); its answer
        goes into `answers`."""
        bodies = {
            i: {
                "name": f"attendee {i} again",
                "password": self.password,
                "receive_at": f"{_loadgen.participant_address(i)}:{sink_port}",
                "avoid_nodes": [dead],
            }
            for i in lost
        }
        alive = [s for s, n in zip(self.servers, self.names, strict=True) if n != dead]
        await join_all(alive, meeting, bodies, answers)


async def join_all(
    servers: list[Server],
    meeting: str,
    bodies: dict[int, dict[str, Any]],
    answers: dict[int, dict[str, Any]],
) -> list[float]:
    """Join body i through server i mod N's API (with its operator token), CONCURRENCY at
    once; each answer into `answers` as it comes; the latency of each join."""
    clients = [
        httpx.AsyncClient(
            base_url=s.api_url, headers={"Authorization": f"Bearer {s.token}"}, timeout=120
        )
        for s in servers
    ]
    latencies: list[float] = []
    cursor = iter(bodies.items())

    async def one_client() -> None:
        for i, body in cursor:
            started = time.monotonic()
            r = await clients[i % len(clients)].post(f"/v1/meetings/{meeting}/join", json=body)
            latencies.append(time.monotonic() - started)
            answers[i] = check(r)

    try:
        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    finally:
        for c in clients:
            await c.aclose()
    return latencies


def per_node_cpu(
    before: list[dict[str, float]], after: list[dict[str, float]], elapsed: float
) -> list[dict[str, float]]:
    """Cores each process of each node used."""
    return [
        {name: (a[name] - b[name]) / elapsed for name in b}
        for b, a in zip(before, after, strict=True)
    ]


def summarise(
    steps: list[tuple[run.Step, list[dict[str, float]]]], node_of: list[str], names: list[str]
) -> dict[str, Any]:
    """The medians of the runs: out pps, loss, CPU (total, per node), latency by hop."""

    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    origin = names[0]
    hops: dict[str, list[float]] = {"origin": [], "other": []}
    for step, _ in steps:
        for latency, who in zip(step.latencies_us, step.latency_receivers, strict=True):
            hops["origin" if node_of[who] == origin else "other"].append(latency)
    latency = {
        where: {
            "p50_us": float(np.percentile(values, 50)),
            "p99_us": float(np.percentile(values, 99)),
            "samples": len(values),
        }
        for where, values in hops.items()
        if values
    }
    if "origin" in latency and "other" in latency:
        latency["added_by_a_hop_p50_us"] = latency["other"]["p50_us"] - latency["origin"]["p50_us"]
    per_node = [
        {
            "node": name,
            "workers_cpu": median(
                [sum(v for n, v in cpu[k].items() if n != "control") for _, cpu in steps]
            ),
            "control_cpu": median([cpu[k]["control"] for _, cpu in steps]),
        }
        for k, name in enumerate(names)
    ]
    return {
        "in_pps": steps[0][0].in_pps,
        "out_pps": median([s.out_pps for s, _ in steps]),
        "loss_ratio": median([s.loss_ratio for s, _ in steps]),
        "verified": sum(s.verified for s, _ in steps),
        "cpu": {"total": median([s.relay_cpu for s, _ in steps]), "per_node": per_node},
        "latency": latency,
    }


def print_report(r: dict[str, Any]) -> None:
    print(
        f"\nrelay bench webinar --nodes {r['nodes']}: {r['attendees']:,} attendees, "
        f"{r['workers_per_node']} worker(s) a node, presenter at {r['presenter_pps']:g} pps"
    )
    for key, label in (("one_node", "1 node"), ("many_nodes", f"{r['nodes']} nodes")):
        c = r.get(key)
        if c is None:
            continue
        hops = c["latency"]
        line = (
            f"  {label:>8}: out {c['out_pps']:>9,.0f} pps  loss {c['loss_ratio']:.3%}  "
            f"cpu {c['cpu']['total']:.2f}  join p50 {c['placement']['latency_ms_p50']:.0f} ms"
            f" ({c['placement']['joins_per_s']:,.0f}/s)"
        )
        for where in ("origin", "other"):
            if where in hops:
                h = hops[where]
                line += f"  latency {where} p50/p99 {h['p50_us']:,.0f}/{h['p99_us']:,.0f} µs"
        print(line)
        for n in c["cpu"]["per_node"]:
            print(
                f"            {n['node']}: workers {n['workers_cpu']:.2f} cores, "
                f"control plane {n['control_cpu']:.2f}, {c['placed'][n['node']]:,} attendees"
            )
        if "node_killed" in c:
            k = c["node_killed"]
            print(
                f"            killed {k['node']}: {k['attendees']:,} joined again within "
                f"{k['joined_again_s']:.1f} s; {k['heard_again']:,} heard the presenter again, "
                f"p50 {k['heard_again_s_p50']:.1f} s, last {k['heard_again_s_max']:.1f} s"
            )
    if "ratios" in r:
        print(
            f"  {r['nodes']} nodes / 1 node: out pps {r['ratios']['out_pps']:.3f}, "
            f"cpu {r['ratios']['cpu']:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attendees", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--db", default="")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run_nodes(
        args.attendees,
        args.nodes,
        args.workers,
        args.rate,
        args.duration,
        args.db,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
