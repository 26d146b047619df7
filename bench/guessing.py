"""Password guessing against one meeting, measured (docs/RELIABILITY.md, "Password guessing"):
how many guesses an hour an attacker gets, and what its attack costs the people who know the
password or hold the host key.

    python -m bench.guessing [--runs 7] [--json guessing.json]

Three parts, all on this machine:
1. The proof of work's cost: control.puzzle.solve, the Python client's solver, on `--runs`
   fresh challenges at each difficulty the server asks (control/proof_of_work.py, POW_MIN_BITS to
   POW_MAX_BITS), one core; the median and the slowest. SHA-256's speed in native code, what
   a native solver would get. And one Argon2id check of the server.
2. Guesses per hour against one meeting: attackers with 1, 10 and 1,000 IPv4 addresses, and
   with 1,000 IPv6 addresses of one /64, each address retrying the moment it may. The throttle
   and the proof of work are the server's own code (control.throttle.FailureThrottle and
   control.proof_of_work.JoinPuzzles, keyed by control.throttle.client_key) on a simulated
   clock, so an hour takes seconds; each guess costs the attacker the median solve time
   measured in part 1 at the difficulty the meeting asks at that moment (not solved for
   real: 24,000 solves would take hours), plus the server's Argon2 check. Two attackers:
   one core like this machine's per address (a botnet), and every address sharing this
   machine's 2 cores.
3. The delay of a join during an attack, for real: a uvicorn server on loopback over a real
   control plane (SQLite, Argon2 at its real cost), a meeting (a new one each run, so Argon2
   runs every time) whose recent failures put it at the hardest proof of work, and
   control.client.RelayClient joining with the correct password (solving included), with the
   host key, and with the password on a calm meeting. Median and slowest of `--runs`.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import secrets
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control import auth, proof_of_work, puzzle
from control.proof_of_work import JoinPuzzles
from control.throttle import FailureThrottle, client_key

HOUR = 3600.0
ROUND_TRIP = 0.002  # seconds per request on top of the work (a near server; more only slows it)


# --- 1. what a solve costs ----------------------------------------------------------------------


def solve_costs(runs: int) -> dict[int, list[float]]:
    """Seconds per solve at each difficulty the server asks, on fresh challenges."""
    puzzles = JoinPuzzles()
    costs: dict[int, list[float]] = {}
    for bits in range(proof_of_work.POW_MIN_BITS, proof_of_work.POW_MAX_BITS + 1):
        costs[bits] = []
        for _ in range(runs):
            challenge = puzzles.challenge("bench", 0.0, bits)
            started = time.perf_counter()
            puzzle.solve(challenge.text, bits, challenge.solutions)
            costs[bits].append(time.perf_counter() - started)
    return costs


def native_blocks_per_s(runs: int) -> float:
    """SHA-256 compression blocks per second in native code on this CPU (hashlib hashing one
    64 MiB buffer: OpenSSL, no Python per block): what an attacker's native solver gets per
    try, since the challenge fits the first block and only the block holding the nonce
    changes from one try to the next."""
    data = bytes(64 << 20)
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        hashlib.sha256(data).digest()
        rates.append(len(data) / 64 / (time.perf_counter() - started))
    return statistics.median(rates)


def argon2_cost(runs: int) -> list[float]:
    stored = auth.hash_password("correct horse battery staple")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        auth.verify_password("a wrong guess", stored)
        times.append(time.perf_counter() - started)
    return times


# --- 2. guesses per hour, on a simulated clock -------------------------------------------------


@dataclass(frozen=True)
class Attacker:
    name: str
    addresses: list[str]


def attackers() -> list[Attacker]:
    ipv4 = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(1000)]
    one_64 = [f"2001:db8:1:2::{n:x}" for n in range(1, 1001)]
    return [
        Attacker("1 address", ipv4[:1]),
        Attacker("10 addresses", ipv4[:10]),
        Attacker("1,000 addresses", ipv4),
        Attacker("1,000 IPv6 addresses in one /64", one_64),
    ]


@dataclass(frozen=True)
class Strategy:
    cores: int | None  # None: one core per address (a botnet); else shared by all addresses
    patient: bool  # after a lockout, wait until the throttle has forgotten the address

    @property
    def name(self) -> str:
        compute = "a core each" if self.cores is None else f"{self.cores} cores in all"
        pace = "waits out each run" if self.patient else "retries at once"
        return f"{compute}, {pace}"


STRATEGIES = [Strategy(None, False), Strategy(None, True), Strategy(2, False), Strategy(2, True)]


@dataclass
class Outcome:
    guesses: int = 0
    with_proof: int = 0
    solving_s: float = 0.0  # attacker CPU spent on proofs
    hardest: int = 0


def guesses_per_hour(
    attacker: Attacker,
    strategy: Strategy,
    solve_s: Callable[[int], float],
    argon2_s: float,
    hours: float = 1.0,
) -> Outcome:
    """Wrong passwords the meeting checks in `hours` when every address of `attacker` tries
    as `strategy` says, solving each proof of work it is asked for (charged `solve_s(bits)`
    of one core). Events: (time, order, address, bits): bits -1 asks to join, and the server
    answers wait (429), solve (428: a challenge at the current difficulty) or checks the
    password; bits >= 0 sends the solved proof, which the server checks as it would then.
    A check is counted at the moment it is made (the server counts checks in flight, which
    comes to the same)."""
    throttle, puzzles = FailureThrottle(), JoinPuzzles()
    meeting, end = "meeting", hours * HOUR
    cores = [0.0] * (strategy.cores or 0)  # when each shared core is next free
    outcome = Outcome()
    events: list[tuple[float, int, int, int]] = []
    order = 0
    for index in range(len(attacker.addresses)):
        heapq.heappush(events, (0.0, order, index, -1))
        order += 1
    while events:
        now, _, index, bits = heapq.heappop(events)
        if now >= end:
            continue
        client = client_key(attacker.addresses[index])
        wait = throttle.wait(meeting, client, now)
        needed = puzzles.difficulty(meeting, now)
        later: float
        if wait > 0:  # 429: come back later (a solved proof is wasted)
            later = now + wait + (throttle.window + 0.001 if strategy.patient else 0.0)
            bits = -1
        elif bits < 0 and needed > 0:  # 428: solve, then send the proof
            bits, cost, start = needed, solve_s(needed), now + ROUND_TRIP
            if cores:
                free = min(range(len(cores)), key=cores.__getitem__)
                start = max(start, cores[free])
                cores[free] = start + cost
            outcome.solving_s += cost
            later = start + cost
        elif bits >= 0 and bits < needed - 1:  # the proof is too easy by now: a new one
            later, bits = now + ROUND_TRIP, -1
        else:  # the server checks the password: a failure
            outcome.guesses += 1
            if bits >= 0:
                outcome.with_proof += 1
                outcome.hardest = max(outcome.hardest, bits)
            throttle.failure(meeting, client, now)
            puzzles.failure(meeting, now)
            later, bits = now + argon2_s + ROUND_TRIP, -1
        heapq.heappush(events, (later, order, index, bits))
        order += 1
    return outcome


# --- 3. join delays, for real -------------------------------------------------------------------


@contextmanager
def served() -> Iterator[tuple[str, str, Any]]:
    """A control plane (SQLite, no workers) behind uvicorn on loopback: (url, token, plane)."""
    import uvicorn

    from control.api import create_app
    from control.plane import ControlPlane, Endpoints
    from control.store import SqliteStore

    tmp = Path(tempfile.mkdtemp(prefix="relay-guessing-", dir="/tmp"))
    token = secrets.token_urlsafe(32)
    planes: list[ControlPlane] = []

    async def start() -> ControlPlane:
        store = await SqliteStore.open(tmp / "relay.db")
        plane = await ControlPlane.start(
            store,
            Endpoints(routing=f"ipc://{tmp}/r", snapshot=f"ipc://{tmp}/s", stats=f"ipc://{tmp}/st"),
            token=token,
            box_key=os.urandom(32),
            relay_host="127.0.0.1",
            media_port=40000,
            workers=1,
        )
        planes.append(plane)
        return plane

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(start), host="127.0.0.1", log_config=None, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", token, planes[0]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


def join_delays(runs: int) -> dict[str, list[float]]:
    """Seconds per join: with the password under the hardest proof of work, with the host key
    on that meeting, and with the password on a calm meeting."""
    from control.client import ProofOfWorkRequired, RelayClient

    delays: dict[str, list[float]] = {"attacked": [], "host key": [], "calm": [], "solved": []}
    with served() as (url, token, plane), RelayClient(url, token) as operator:
        for run in range(runs):
            attacked = operator.create_meeting(f"attacked {run}", password=f"right-{run}")
            calm = operator.create_meeting(f"calm {run}", password=f"right-{run}")
            for _ in range(
                20 * proof_of_work.POW_THRESHOLD
            ):  # the failures of an attack at the cap
                plane.service.admission.puzzles.failure(attacked["id"], plane.clock())
            shown = operator.get_meeting(attacked["id"])["join_throttle"]
            assert shown.get("difficulty") == proof_of_work.POW_MAX_BITS, shown
            asked: list[ProofOfWorkRequired] = []
            with RelayClient(url) as person:
                started = time.perf_counter()
                person.join(
                    attacked["id"],
                    name="Ann",
                    password=f"right-{run}",
                    on_proof_of_work=asked.append,
                )
                delays["attacked"].append(time.perf_counter() - started)
                assert [a.difficulty for a in asked] == [proof_of_work.POW_MAX_BITS], asked
                started = time.perf_counter()
                person.join(attacked["id"], name="Host", role="host", host_key=attacked["host_key"])
                delays["host key"].append(time.perf_counter() - started)
                started = time.perf_counter()
                person.join(calm["id"], name="Bo", password=f"right-{run}")
                delays["calm"].append(time.perf_counter() - started)
    return delays


# --- report -----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="repetitions of each measurement")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    costs = solve_costs(args.runs)
    argon2 = argon2_cost(args.runs)
    native = native_blocks_per_s(args.runs)
    median_cost = {bits: statistics.median(times) for bits, times in costs.items()}
    argon2_s = statistics.median(argon2)
    print(f"Argon2id check (the server, per guess): median {_ms(argon2_s)}")
    print(f"SHA-256 in native code, one core: {native / 1e6:.1f} M blocks/s (one per try)")
    print("proof of work, Python solver, one core (median, slowest):")
    for bits, times in costs.items():
        work = proof_of_work.POW_SOLUTIONS << bits
        rate = work / median_cost[bits] / 1e6
        print(
            f"  {proof_of_work.POW_SOLUTIONS} x {bits} bits ({work:>9,} tries): "
            f"{_ms(median_cost[bits]):>9}, {_ms(max(times)):>9}  ({rate:.1f} M tries/s)"
        )

    print("\nwrong passwords one meeting checks in an hour (simulated clock):")
    results: dict[str, dict[str, Outcome]] = {}
    for attacker in attackers():
        print(f"  {attacker.name}")
        results[attacker.name] = {}
        for strategy in STRATEGIES:
            outcome = guesses_per_hour(attacker, strategy, median_cost.__getitem__, argon2_s)
            results[attacker.name][strategy.name] = outcome
            print(
                f"    {strategy.name:<36} {outcome.guesses:>8,}  "
                f"({outcome.with_proof:,} with a proof, up to {outcome.hardest} bits; "
                f"{outcome.solving_s / HOUR:.2f} core-hours solving)"
            )

    delays = join_delays(args.runs)
    print(f"\njoins, real server on loopback ({args.runs} runs; median, slowest):")
    for what, label in (
        ("attacked", f"password, meeting under attack ({proof_of_work.POW_MAX_BITS} bits)"),
        ("host key", "host key, same meeting"),
        ("calm", "password, calm meeting"),
    ):
        times = delays[what]
        print(f"  {label:<44} {_ms(statistics.median(times)):>9}, {_ms(max(times)):>9}")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "runs": args.runs,
                    "argon2_s": argon2,
                    "native_blocks_per_s": native,
                    "solve_s": {str(bits): times for bits, times in costs.items()},
                    "guesses_per_hour": {
                        attacker: {
                            strategy: {
                                "guesses": o.guesses,
                                "with_proof": o.with_proof,
                                "hardest_bits": o.hardest,
                                "solving_core_hours": o.solving_s / HOUR,
                            }
                            for strategy, o in outcomes.items()
                        }
                        for attacker, outcomes in results.items()
                    },
                    "join_s": {k: v for k, v in delays.items() if v},
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
