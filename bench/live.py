"""What the web console's event streams cost a webinar: N browser attendees, each holding its
WHEP session's event stream open (control/api/live.py), and a change they must all hear of.

    python -m bench.live [--viewers 1000] [--joins 20] [--json PATH]

A `relay serve` on this machine (one worker, SQLite in a temporary directory) and a webinar.
`--viewers` WHEP viewers join (one aiortc offer, POSTed N times: the sessions need no media
for this) and each opens its session's event stream, as the join page does. Then:

- the presenter joins: the time until each stream has said so (its `state` lists the
  presenter's stream, which is what makes a page that came early join again), median, p99
  and the last, and the control plane's CPU seconds for it;
- `--joins` more attendees join one after another, each over the JSON API: the control
  plane's CPU per join with every stream open, against the same joins with no stream open
  (measured first, before the viewers), so the streams' share is the difference;
- `--joins` attendees join another webinar while the streams stay open: a change wakes the
  streams of its own meeting alone (control/live.py), so these cost what joins cost with no
  stream open.

Every stream is read by one asyncio client in this process; the control plane's CPU comes from
/proc (user + system) of its process. The viewers must be measured within 30 s of their POST:
a WHEP session that never connects is made to leave then (relay/webrtc.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCPeerConnection

from control.settings import Settings
from node.serve import Server, free_ports

TICKS = 100.0  # /proc/PID/stat counts CPU in clock ticks of 1/100 s on Linux


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


async def _offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


class Viewer:
    """One WHEP session and its event stream: when its state first listed a stream."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.heard: float | None = None
        self.opened = asyncio.Event()

    async def follow(self, client: httpx.AsyncClient) -> None:
        async with client.stream("GET", self.location + "/events") as r:
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "state":
                    self.opened.set()
                    if json.loads(line[6:])["streams"] and self.heard is None:
                        self.heard = time.monotonic()


async def _joins(
    api: httpx.AsyncClient, meeting: str, password: str, n: int, pid: int, idle: float, net: int
) -> float:
    """The control plane's CPU seconds per join, over `n` JSON joins one after another, less
    what it spends meanwhile anyway (`idle`: CPU seconds a second)."""
    started, before = time.monotonic(), _cpu_seconds(pid)
    for i in range(n):
        r = await api.post(
            f"/v1/meetings/{meeting}/join",
            # An address each: at most 64 listeners may share one (--listeners-per-address).
            json={
                "name": f"attendee {i}",
                "password": password,
                "receive_at": f"127.{net}.{i // 200}.{i % 200 + 1}:9999",
            },
        )
        r.raise_for_status()
    await asyncio.sleep(1.0)  # the streams' reads after the last join
    spent = _cpu_seconds(pid) - before
    elapsed = time.monotonic() - started
    print(f"  {n} joins: {spent:.2f} CPU s in {elapsed:.2f} s (idle {idle:.3f}/s)", file=sys.stderr)
    return (spent - elapsed * idle) / n


async def measure(server: Server, viewers: int, joins: int) -> dict[str, Any]:
    pid = int((server.run_dir / "control.ready").read_text())
    limits = httpx.Limits(max_connections=viewers + 20, max_keepalive_connections=viewers + 20)
    auth = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(
        base_url=server.api_url, headers=auth, timeout=60, limits=limits
    ) as api:
        created = (
            await api.post("/v1/meetings", json={"title": "live bench", "mode": "webinar"})
        ).json()
        meeting, password = created["id"], created["password"]
        start = _cpu_seconds(pid)
        await asyncio.sleep(3.0)
        idle = (_cpu_seconds(pid) - start) / 3.0  # its own ticks: stats, heartbeats
        quiet = await _joins(api, meeting, password, joins, pid, idle, 1)

        sdp = await _offer()
        posted = time.monotonic()
        gate = asyncio.Semaphore(16)
        as_viewer = {"Content-Type": "application/sdp", "Authorization": f"Bearer {password}"}

        async def whep(i: int) -> Viewer:
            async with gate:
                r = await api.post(
                    f"/v1/meetings/{meeting}/whep?name=viewer%20{i}",
                    content=sdp,
                    headers=as_viewer,
                )
                r.raise_for_status()
                return Viewer(r.headers["location"])

        people = await asyncio.gather(*(whep(i) for i in range(viewers)))
        tasks = [asyncio.create_task(v.follow(api)) for v in people]
        await asyncio.wait_for(asyncio.gather(*(v.opened.wait() for v in people)), 30)
        ready = time.monotonic() - posted
        if ready > 25:
            raise RuntimeError(f"{viewers} viewers took {ready:.0f} s to join: fewer, please")

        before = _cpu_seconds(pid)
        started = time.monotonic()
        presenter = await api.post(
            f"/v1/meetings/{meeting}/join",
            json={
                "name": "presenter",
                "role": "host",
                "host_key": created["host_key"],
                "streams": [{"ssrc": 0x5EED, "kind": "audio", "pt": 111}],
            },
        )
        presenter.raise_for_status()
        deadline = time.monotonic() + 10
        while any(v.heard is None for v in people) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        waits = sorted((v.heard - started) * 1000 for v in people if v.heard is not None)
        told_cpu = _cpu_seconds(pid) - before - (time.monotonic() - started) * idle
        loud = await _joins(api, meeting, password, joins, pid, idle, 2)
        other = (
            await api.post("/v1/meetings", json={"title": "another", "mode": "webinar"})
        ).json()
        elsewhere = await _joins(api, other["id"], other["password"], joins, pid, idle, 3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "viewers": viewers,
        "joined_and_streaming_s": round(ready, 2),
        "heard": len(waits),
        "presenter_heard_ms": {
            "p50": round(statistics.median(waits), 1),
            "p99": round(waits[int(0.99 * (len(waits) - 1))], 1),
            "max": round(waits[-1], 1),
        },
        "control_cpu_to_tell_all_s": round(told_cpu, 3),
        "control_cpu_per_join_ms": {
            "no_streams": round(quiet * 1000, 2),
            "with_streams": round(loud * 1000, 2),
            "another_meeting_with_streams": round(elsewhere * 1000, 2),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")  # the server's own logs
    with tempfile.TemporaryDirectory(prefix="relay-bench-live-") as tmp:
        base = free_ports(2)
        settings = Settings(
            data_dir=Path(tmp) / "data",
            api_port=base + 2,
            media_port=base,
            workers=1,
            joins_per_minute=1_000_000,  # one client joins every viewer here
        )
        server = Server(settings)
        server.start()
        try:
            result = asyncio.run(measure(server, args.viewers, args.joins))
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
