"""`relay bench`, the command: runs bench/'s scenarios, shows progress, writes --json and --plot.

The scenarios are bench's (bench/run.py: webinar and meeting; bench/flood.py, bench/joins.py);
this module only picks one from the parsed flags (cli/main.py) and writes what it reports.

Ctrl-C or SIGTERM at any moment stops it quietly (relay/lifecycle.py): the relay processes it
started are stopped, its temporary directory is removed, one line says what it was doing, and
it exits with 130 or 143.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import run, sendonly
from bench.report import print_report
from relay import lifecycle

_phase = ["starting"]  # what the last progress line said the bench was doing


def progress(line: str) -> None:
    _phase[0] = line.strip(" -")
    print(line, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    with lifecycle.stop_on_signals():
        try:
            return _main(args)
        except lifecycle.Interrupted as stop:
            print(
                f"relay bench: stopped by {stop.signal_name} ({_phase[0]}); its relay processes "
                "have exited and its temporary files are removed",
                file=sys.stderr,
                flush=True,
            )
            return stop.exit_status


def _main(args: argparse.Namespace) -> int:
    if args.rate is not None and args.rate <= 0:
        print("relay bench: --rate must be positive", file=sys.stderr)
        return 2
    if args.frame > 1 and args.scenario != "webinar":
        print("relay bench: --frame is for the webinar scenario", file=sys.stderr)
        return 2
    if args.path == "send-only":
        problem = _send_only_refusal(args)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    if args.scenario == "joins":
        from bench import joins

        report = joins.run(
            args.receivers[0],
            workers=args.workers,
            rate=args.rate or 20.0,
            db=args.db,
            progress=progress,
        )
        joins.print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        if args.plot:
            joins.plot(report, args.plot)
        return 0
    if args.nodes > 1:
        if args.scenario != "webinar":
            print("relay bench: --nodes is for the webinar scenario", file=sys.stderr)
            return 2
        from bench import nodes

        try:
            report = nodes.run_nodes(
                args.receivers[0],
                args.nodes,
                args.workers,
                args.rate or 50.0,
                args.duration,
                args.db,
                progress=progress,
            )
        except (RuntimeError, ValueError) as exc:
            print(f"relay bench: {exc}", file=sys.stderr)
            return 1
        nodes.print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 0
    if args.scenario == "flood":
        from bench import flood

        report = flood.main(args.receivers[0], args.rate or 500.0, args.duration, progress)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return 0
    reports: list[dict[str, Any]] = []
    for receivers in args.receivers:
        if args.scenario == "meeting" and receivers < 2:
            print("relay bench: a meeting needs at least 2 participants", file=sys.stderr)
            return 2
        scenario = run.Scenario(
            args.scenario, receivers, args.size, args.suite, args.workers, args.duration, args.rate
        )
        scenario.path = args.path
        scenario.frame = args.frame
        try:
            reports.append(run.run(scenario, args.compare, progress))
        except sendonly.Refused as exc:
            print(exc, file=sys.stderr)
            return 2
        except RuntimeError as exc:
            print(f"relay bench: {exc}", file=sys.stderr)
            return 1
        print_report(reports[-1])
    result: dict[str, Any] = reports[0] if len(reports) == 1 else {"runs": reports}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.plot:
        from bench import plot

        plot.write(reports, args.plot)
    return 0


def _send_only_refusal(args: argparse.Namespace) -> str | None:
    """Why `--path send-only` cannot run with these flags or on this host, or None. It is a
    webinar's path (one sender reaching the relay over loopback, its receivers on the
    device), on one worker (one device counts every copy: it cannot tell workers apart)."""
    if args.scenario != "webinar" or args.nodes > 1:
        return (
            "relay bench: --path send-only measures the webinar scenario only (one presenter "
            "on loopback, its attendees on the device)"
        )
    if args.workers != 1:
        return "relay bench: --path send-only runs one worker (--workers 1)"
    if any(n > sendonly.MAX_RECEIVERS for n in args.receivers):
        return f"relay bench: --path send-only has room for {sendonly.MAX_RECEIVERS} receivers"
    refusal: str | None = sendonly.refusal()  # bench/ is not type-checked: say what it is
    return refusal
