"""Ways of sending side by side on the send-only path, round after round: `python -m
bench.ways --targets relay_sendmmsg,relay,relay_xdp,ceiling --rounds 3` (root).

`relay bench --path send-only --compare` runs every target once; comparing a few of them over
several rounds, each round every target one after another in one namespace, is what a noisy
host needs (bench/RESULTS.md quotes medians of rounds). Each target is measured as `relay
bench` measures it (bench/run.py, `measure`: capacity within 0.1 % loss, the device's count
checked against the relay's). Prints each result as it comes and, at the end, each target's
median and its runs; `--json FILE` keeps every round's figures and the relay's counters.

`--split OUT_PPS` measures instead, at that fixed rate, where each target's time per copy goes:
its process's user and system CPU (/proc/PID/stat) over a 3-second step, divided by the copies
the device counted: the relay's own work against the kernel's.

`--at OUT_PPS,OUT_PPS,...` measures instead, at each of those fixed rates in turn, how long
the relay's packets stayed in it (bench/delay.py: its worker's own histogram, from each
packet's arrival in the media socket to its last copy's flush) over a 3-second step, with the
step's loss and the relay's CPU: where each way of sending starts to keep a backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import delay, run, sendonly
from bench.relays import RelayGroup, process_cpu_split
from relay.srtp import SUITES
from relay.worker import FLAG_VARIABLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ways", description=__doc__)
    parser.add_argument("--targets", required=True, help="comma-separated: run.SEND_ONLY_TARGETS")
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--size", type=int, default=200, help="RTP packet bytes before SRTP")
    parser.add_argument("--frame", type=int, default=1, help="packets sent back to back")
    parser.add_argument(
        "--suite", default="AES_CM_128_HMAC_SHA1_80", choices=list(SUITES), help="SRTP suite"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="every round's figures")
    parser.add_argument(
        "--split", type=float, metavar="OUT_PPS", help="user and system CPU per copy at this rate"
    )
    parser.add_argument(
        "--at",
        metavar="OUT_PPS,...",
        help="the forwarding delay at these fixed rates (the relay's targets only)",
    )
    args = parser.parse_args(argv)
    rates: list[float] = []
    if args.at is not None:
        if args.split is not None:
            parser.error("--at and --split measure different things: one at a time")
        try:
            rates = [float(r) for r in args.at.split(",")]
        except ValueError:
            parser.error(f"--at takes out pps separated by commas, not {args.at!r}")
        if not rates or min(rates) <= 0:
            parser.error("--at takes rates above 0")
    targets = args.targets.split(",")
    unknown = [t for t in targets if t not in run.SEND_ONLY_TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(run.SEND_ONLY_TARGETS)}")
    if (why := sendonly.refusal()) is not None:
        print(why, file=sys.stderr)
        return 2
    scenario = run.Scenario(
        "webinar",
        args.receivers,
        size=args.size,
        suite=args.suite,
        path=sendonly.PATH,
        frame=args.frame,
    )
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="relay-ways-") as tmp, sendonly.Namespace() as ns:
        for round_ in range(args.rounds):
            for target in targets:
                if rates:
                    rounds[target].append(
                        {"at": delay_at(scenario, target, Path(tmp), ns, rates, round_ + 1)}
                    )
                    continue
                if args.split is not None:
                    split = cpu_split(scenario, target, Path(tmp), ns, args.split)
                    rounds[target].append(split)
                    print(
                        f"round {round_ + 1} {target}: user {split['user_us']:.3f} us, "
                        f"system {split['system_us']:.3f} us a copy at "
                        f"{split['out_pps']:,.0f} out pps (loss {split['loss_ratio']:.3%})",
                        flush=True,
                    )
                    continue
                result = run.measure(
                    scenario, target, Path(tmp), lambda m: print(m, file=sys.stderr), ns
                )
                counters = result["relay_counters"]
                rounds[target].append(
                    {
                        "out_pps": result["out_pps"],
                        "relay_cpu": result["relay_cpu"],
                        "verified_packets": result["verified_packets"],
                        "forward_delay_us": result["forward_delay_us"],
                        "fanout_floor_us": result["fanout_floor_us"],
                        "device_check": result.get("device_check"),
                        # the relay's AF_XDP counters, or the C ceiling's
                        "xdp": counters.get("xdp")
                        or {k: v for k, v in counters.items() if k.startswith("xdp_")},
                        "gso": counters.get("gso"),
                    }
                )
                delays = result["forward_delay_us"]
                print(
                    f"round {round_ + 1} {target}: {result['out_pps']:,.0f} out pps"
                    + (
                        f"; at 80 %: forwarding delay p50 {delays['p50']:,.0f} us, p99 "
                        f"{delays['p99']:,.0f} us (fan-out floor "
                        f"{result['fanout_floor_us']:,.0f} us)"
                        if delays
                        else ""
                    ),
                    flush=True,
                )
    for target, runs in rounds.items() if args.split is None and not rates else ():
        figures = [r["out_pps"] for r in runs]
        shown = ", ".join(f"{f:,.0f}" for f in figures)
        print(f"{target:>16} median {statistics.median(figures):>11,.0f}  ({shown})")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "scenario": vars(args) | {"json": str(args.json)},
                    "environment": recorded_environment(os.environ),
                    "rounds": rounds,
                },
                indent=1,
            )
        )
    return 0


def recorded_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """How the relay ran where no flag of its form says (RELAY_GSO, RELAY_BUSY_POLL, ...), and
    which build of the core: those variables only, never the rest of RELAY_* (the operator
    token, the keys and the mail password live there too)."""
    return {name: environ[name] for name in (*FLAG_VARIABLES, "RELAY_CORE_DIR") if name in environ}


def delay_at(
    scenario: run.Scenario,
    target: str,
    workdir: Path,
    ns: sendonly.Namespace,
    rates: list[float],
    round_: int,
) -> list[dict[str, Any]]:
    """One 3-second step of `target` at each of `rates` (out pps), after its warm-up if it
    needs one: the forwarding delay's percentiles, loss and the relay's CPU at each."""
    bench = run.Bench(scenario, target, workdir, lambda _m: None, netns=ns)
    steps = []
    try:
        if target in run.HOP_TARGETS:
            bench.warm_hops()
        for out_pps in rates:
            step = bench.delay_step(out_pps / scenario.fanout, 3.0)
            figures = delay.summary(step.forward_delay)
            steps.append(
                {
                    "out_pps": out_pps,
                    "loss_ratio": step.loss_ratio,
                    "relay_cpu": step.relay_cpu,
                    "sender_late_us_p99": step.sender_late_us_p99,
                    "forward_delay_us": figures,
                }
            )
            shown = f"p50 {figures['p50']:,.0f} us, p99 {figures['p99']:,.0f} us" if figures else ""
            print(
                f"round {round_} {target} at {out_pps:,.0f} out pps: {shown}, loss "
                f"{step.loss_ratio:.3%}, relay cpu {step.relay_cpu:.2f}",
                flush=True,
            )
    finally:
        bench.close()
    return steps


def cpu_split(
    scenario: run.Scenario, target: str, workdir: Path, ns: sendonly.Namespace, out_pps: float
) -> dict[str, Any]:
    """One 3-second step of `target` at `out_pps` (after its warm-up, if it needs one): its
    user and system CPU per copy, in microseconds."""
    bench = run.Bench(scenario, target, workdir, lambda _m: None, netns=ns)
    try:
        if target in run.HOP_TARGETS:
            bench.warm_hops()
        assert isinstance(bench.relay, RelayGroup)
        pid = bench.relay.procs[0].pid
        user0, system0 = process_cpu_split(pid)
        step = bench.step(out_pps / scenario.fanout, 3.0)
        user1, system1 = process_cpu_split(pid)
    finally:
        bench.close()
    copies = max(step.received, 1)
    return {
        "out_pps": step.out_pps,
        "loss_ratio": step.loss_ratio,
        "user_us": 1e6 * (user1 - user0) / copies,
        "system_us": 1e6 * (system1 - system0) / copies,
    }


if __name__ == "__main__":
    sys.exit(main())
