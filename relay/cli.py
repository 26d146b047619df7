"""The `relay` command: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from relay import lifecycle

PLUGIN_GROUP = "relay.commands"


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_list(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",")]


SUITE_NAMES = (
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="A media relay for online meetings and large webinars."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser(
        "bench",
        help="measure a relay with the native load generator (capacity, loss, latency)",
        description="Find the highest output rate within 0.1 % loss, then latency at 80 % of "
        "it; with --compare also the C ceiling, the I/O ceiling and a pure-Python relay.",
    )
    bench.add_argument(
        "scenario",
        choices=["webinar", "meeting", "flood", "joins"],
        help="webinar: 1 presenter -> N attendees; meeting: N all sending; flood: a webinar "
        "at --rate while a second generator sends bad packets at rising rates; joins: N "
        "attendees join one webinar through the HTTP API at once (bench/joins.py)",
    )
    bench.add_argument(
        "--receivers",
        type=_positive_list,
        default=[1000],
        metavar="N[,N...]",
        help="attendees (webinar) or participants (meeting); several: one run each (default 1000)",
    )
    bench.add_argument(
        "--size",
        type=int,
        default=200,
        choices=range(40, 1401),
        metavar="BYTES",
        help="RTP packet size, 40..1400 (default 200)",
    )
    bench.add_argument("--suite", default="AES_CM_128_HMAC_SHA1_80", choices=list(SUITE_NAMES))
    bench.add_argument("--workers", type=_positive, default=1, help="worker processes")
    bench.add_argument(
        "--duration", type=float, default=2.0, help="seconds per measurement step (default 2)"
    )
    bench.add_argument(
        "--rate",
        type=float,
        help="fixed packets per second per sender instead of a capacity search",
    )
    bench.add_argument(
        "--compare", action="store_true", help="measure the baselines in the same run"
    )
    bench.add_argument(
        "--db", default="", metavar="URL", help="joins: postgresql://... (default: SQLite)"
    )
    bench.add_argument("--json", type=Path, help="write the results here")
    bench.add_argument("--plot", type=Path, help="write a PNG: out pps against N, latency")
    # The worker's flags are its own (relay/worker.py, also `python -m relay.worker`): the
    # rest of the line goes to it as it is. prefix_chars="\0": no word of it is taken for
    # an option of this parser's, --help included.
    worker = commands.add_parser(
        "worker",
        help="run one forwarding worker (standalone: a routing table from a file)",
        add_help=False,
        prefix_chars="\0",
    )
    worker.add_argument("argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    add_plugins(commands)
    return parser


def add_plugins(commands: Any) -> None:
    """Commands that other packages register under the entry point group "relay.commands":
    the control plane's `serve`, `demo` and API client commands (control/cli.py). The data
    plane never imports the control plane; the control plane plugs its commands in."""
    for entry in sorted(metadata.entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        entry.load()(commands)


def main(argv: list[str] | None = None) -> int:
    # From the first line a signal ends the command cleanly (relay/lifecycle.py); commands
    # that start processes catch it themselves to stop them and say so.
    return lifecycle.run_command("relay", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    run = getattr(args, "run", None)
    if run is not None:
        status: int = run(args)
        return status
    if args.command == "bench":
        # bench/ is the project's measuring kit, not part of the relay itself.
        bench_cli = importlib.import_module("bench.cli")
        status = bench_cli.main(args)
        return status
    if args.command == "worker":
        from relay import worker

        return worker.command(args.argv)
    raise AssertionError(args.command)  # argparse allows nothing else


if __name__ == "__main__":
    sys.exit(main())
