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
    worker = commands.add_parser(
        "worker", help="run one forwarding worker (standalone: a routing table from a file)"
    )
    worker.add_argument("--table", type=Path, help="routing table: a Snapshot as JSON")
    worker.add_argument("--media-host", default="127.0.0.1", help="address to bind")
    worker.add_argument(
        "--media-port",
        type=int,
        default=40000,
        help="RTP/RTCP port; RTCP also on PORT+1 (default 40000)",
    )
    worker.add_argument("--control", help="ZeroMQ endpoint publishing routing updates")
    worker.add_argument("--snapshot", help="ZeroMQ endpoint answering snapshot requests")
    worker.add_argument("--stats", help="ZeroMQ endpoint to push counters to, every second")
    worker.add_argument("--ready-file", type=Path, help="written with the pid once bound")
    worker.add_argument(
        "--recordings", type=Path, help="directory for recorded meetings' encrypted media"
    )
    worker.add_argument(
        "--recording-key", type=Path, help="file holding the 32-byte key recordings use"
    )
    worker.add_argument(
        "--state-file",
        type=Path,
        help="SRTP index state, saved every second and read back after a restart",
    )
    worker.add_argument("--duration", type=float, help="stop after this many seconds")
    worker.add_argument(
        "--index", type=int, default=0, help="this worker's number among W (default 0)"
    )
    worker.add_argument(
        "--fanout",
        metavar="EP0,EP1,...",
        help="every worker's ZeroMQ endpoint for packets passed between workers, in order",
    )
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
    with lifecycle.stop_on_signals():
        try:
            return _main(argv)
        except lifecycle.Interrupted as stop:
            if not lifecycle.managed():  # a managed process's parent reports for it
                print(f"relay: stopped by {stop.signal_name}", file=sys.stderr, flush=True)
            return stop.exit_status


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
        from relay import worker as worker_module

        return worker_module.main(
            worker_module.WorkerConfig(
                index=args.index,
                media_host=args.media_host,
                media_port=args.media_port,
                table=args.table,
                control=args.control,
                snapshot=args.snapshot,
                stats=args.stats,
                ready_file=args.ready_file,
                fanout=tuple(args.fanout.split(",")) if args.fanout else (),
                state_file=args.state_file,
                recordings=args.recordings,
                recording_key=args.recording_key,
                duration=args.duration,
            )
        )
    raise AssertionError(args.command)  # argparse allows nothing else


if __name__ == "__main__":
    sys.exit(main())
