"""The `relay` command: its whole parser, and which code runs each command.

| command | runs |
| --- | --- |
| `bench SCENARIO` | cli/bench.py, over bench/ (the scenarios, the load generator, the baselines) |
| `worker` | relay/worker.py: the worker's flags are its own, the rest of the line goes to it |
| `meetings`, `participants`, `usage` | cli/client.py, the API client's commands |
| `join` | cli/join.py, a client's join from a shell |
| `serve` | cli/serve.py, over node/serve.py (the processes) |
| `demo` | cli/demo.py (a server and a webinar), or cli/crypto_demo.py with `--crypto` |

Only argparse and the client commands' registration load here: what a command needs loads when
it runs, so that `relay bench` and `relay worker` start as fast as before and no command loads
httpx before it runs. `python -m cli` is the same command (the tests run it so).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from cli import client, join
from relay import lifecycle
from relay.vocabulary import DEFAULT_SUITE, Suite


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_list(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",")]


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
    bench.add_argument("--suite", default=DEFAULT_SUITE.value, choices=[s.value for s in Suite])
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
        "--frame",
        type=int,
        default=1,
        choices=range(1, 65),
        metavar="N",
        help="webinar: the presenter sends N packets at once, as a video frame's, at the same "
        "average rate (default 1: evenly spaced); the relay sends each attendee's copies of "
        "them as one message where it can (UDP GSO)",
    )
    bench.add_argument(
        "--path",
        choices=["loopback", "send-only"],
        default="loopback",
        help="loopback (default): sinks receive and check every copy on the same cores; "
        "send-only (webinar, root): the relays run in a network namespace of the bench's own "
        "and send to an ifb device that frees each copy, so only the send half of a copy is "
        "paid, as with a NIC; no latency there (bench/sendonly.py)",
    )
    bench.add_argument(
        "--db",
        default="",
        metavar="URL",
        help="joins: postgresql://... (default: SQLite); webinar --nodes: the database the "
        "nodes share (default: a throwaway PostgreSQL server)",
    )
    bench.add_argument(
        "--nodes",
        type=_positive,
        default=1,
        help="webinar: N nodes sharing one PostgreSQL, against one node in the same run "
        "(bench/nodes.py; --rate default 50, the presenter's packets a second)",
    )
    bench.add_argument("--json", type=Path, help="write the results here")
    bench.add_argument("--plot", type=Path, help="write a PNG: out pps against N, latency")
    bench.set_defaults(run=_bench)
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
    worker.set_defaults(run=_worker)
    client.register(commands)
    join.register(commands)
    serve = commands.add_parser(
        "serve",
        help="run the relay: HTTP API, control plane, supervisor and workers",
        description="Run the relay: the HTTP API and control plane, and W forwarding workers "
        "under a supervisor. Settings come from these flags, then RELAY_* environment "
        "variables, then the --config TOML file (see control/settings.py).",
    )
    serve.add_argument("--data-dir", help="database, token and keys (default ~/.local/share/relay)")
    serve.add_argument(
        "--api",
        metavar="HOST:PORT",
        help="HTTP API address (127.0.0.1:8080); off loopback it needs --tls-cert and --tls-key, "
        "or --plain-http",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve the API over HTTPS with this PEM certificate (the server's, then any "
        "intermediates); needs --tls-key",
    )
    serve.add_argument(
        "--tls-key", metavar="FILE", help="the certificate's PEM private key, unencrypted"
    )
    serve.add_argument(
        "--plain-http",
        action="store_true",
        default=None,  # None: not given, so RELAY_PLAIN_HTTP or the config file may say
        help="allow plain HTTP on a non-loopback --api: only behind a proxy that terminates TLS",
    )
    serve.add_argument(
        "--trusted-proxies",
        metavar="CIDR,...",
        help="proxies whose X-Forwarded-For names the client, as in 10.0.0.0/24,192.0.2.7 "
        "(default: none; the TCP peer is the client)",
    )
    serve.add_argument("--media-host", help="address the workers bind (127.0.0.1)")
    serve.add_argument("--media-port", help="worker i uses PORT+2i, and PORT+2i+1 for RTCP (40000)")
    serve.add_argument(
        "--public-host", help="address participants are told to use (default: --media-host)"
    )
    serve.add_argument("--workers", help="worker processes (default: one per core)")
    serve.add_argument("--db", metavar="URL", help="postgresql://... or an SQLite file")
    serve.add_argument(
        "--recording-retention-days",
        metavar="DAYS",
        help="delete recordings older than this (default 30)",
    )
    serve.add_argument(
        "--keyframe-interval",
        metavar="SECONDS",
        help="keyframe requests (PLI/FIR) passed to one stream's sender at most this often; "
        "one merged meanwhile follows when it ends (0.5)",
    )
    serve.add_argument(
        "--max-participants", metavar="N", help="present participants per meeting (100000)"
    )
    serve.add_argument(
        "--listeners-per-address",
        metavar="N",
        help="participants whose receive_at names one address (an IPv6 /64), over all "
        "meetings (64)",
    )
    serve.add_argument(
        "--joins-per-minute",
        metavar="N",
        help="joins per client address (an IPv6 /64); joins with the operator token aside (600)",
    )
    serve.add_argument(
        "--smtp-url",
        metavar="URL",
        help="the mail server that sends registrants their confirmation codes: "
        "smtps://USER:PASSWORD@HOST[:465], smtp+starttls://USER:PASSWORD@HOST[:587] or "
        "smtp://HOST[:25] (a password here shows in ps: prefer RELAY_SMTP_URL); without it, "
        "only manual approval of registrations",
    )
    serve.add_argument(
        "--smtp-from", metavar="ADDRESS", help="the From address of confirmation codes"
    )
    serve.add_argument(
        "--signup-client-per-minute",
        metavar="N",
        help="sign-ups (registrations, new codes) per client address (IPv6: per /64), "
        "a burst of N then N a minute (default 5)",
    )
    serve.add_argument(
        "--signup-meeting-per-minute",
        metavar="N",
        help="sign-ups per meeting from all clients, a burst of N then N a minute (default 120)",
    )
    serve.add_argument(
        "--node-name",
        metavar="NAME",
        help="this node among those sharing one database (default: the host's name)",
    )
    serve.add_argument(
        "--node-capacity",
        metavar="N",
        help="participants this node takes; placement weighs its load against it "
        "(default: 5000 per worker)",
    )
    serve.add_argument(
        "--connected-sockets",
        metavar="N",
        help="receivers per worker sent to from a socket connected to each, which skips the "
        "kernel's route lookup per copy; past N, from the media socket (default 0: none)",
    )
    serve.add_argument(
        "--xdp",
        metavar="IFACE",
        help="send copies to receivers reached through IFACE as frames through AF_XDP, past "
        "the IP stack, worker i on the interface's queue i (needs root or CAP_NET_ADMIN and "
        "CAP_NET_RAW; default: off)",
    )
    serve.add_argument(
        "--xdp-checksum",
        metavar="WHO",
        help="who computes the AF_XDP frames' UDP checksums: offload (the device), relay (the "
        "workers), kernel (in software) or auto (offload, except on a device whose AF_XDP "
        "frames cannot ask for it; default)",
    )
    serve.add_argument(
        "--busy-poll",
        metavar="US",
        help="microseconds each worker keeps polling its sockets without sleeping after a "
        "batch of media: lower forwarding delay, a busier core (default 0: off)",
    )
    serve.add_argument("--config", metavar="FILE", help="a TOML file of the same settings")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo",
        help="a server and a simulated webinar, with live progress and the usage record",
        description="Start a server on SQLite in a temporary directory, create a webinar over "
        "its API, join a presenter and N attendees, play them with the native load generator "
        "and show progress each second, then end the webinar and print its usage record. "
        "--crypto instead shows the SRTP core alone.",
    )
    demo.add_argument(
        "--attendees", type=_positive, default=200, help="attendees of the webinar (default 200)"
    )
    demo.add_argument("--seconds", type=_positive, default=5, help="how long (default 5)")
    demo.add_argument(
        "--listen",
        type=int,
        default=0,
        metavar="S",
        help="then play a chime for S seconds, to hear on the printed join page in a browser "
        "(media then listens on every address; default 0)",
    )
    demo.add_argument(
        "--rate", type=float, default=50.0, help="presenter packets per second (default 50: audio)"
    )
    demo.add_argument(
        "--crypto",
        action="store_true",
        help="instead: the SRTP core alone, one presenter to --receivers",
    )
    demo.add_argument("--receivers", type=_positive, default=8, help="receivers (default 8)")
    demo.add_argument(
        "--packets", type=_positive, default=5000, help="packets per suite (default 5000)"
    )
    demo.add_argument(
        "--size",
        type=int,
        default=200,
        choices=range(12, 1401),
        metavar="BYTES",
        help="RTP packet size, 12..1400 (default 200)",
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    # From the first line a signal ends the command cleanly (relay/lifecycle.py); commands
    # that start processes catch it themselves to stop them and say so.
    try:
        try:
            return lifecycle.run_command("relay", lambda: _main(argv))
        finally:
            sys.stdout.flush()  # here, where a reader gone away can still be answered
    except BrokenPipeError:
        # Its output went to a reader that stopped reading (`relay meetings list | head`): as
        # Unix tools do, end quietly with 128 + SIGPIPE. Python would flush stdout again at
        # exit and fail again, so stdout is pointed at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


# Options whose values are secrets or passwords. A random one (base64url: tokens, host keys,
# generated passwords) begins with "-" one time in 64, and anyone's password may; argparse
# reads "--token -Xy..." as two options and refuses it, so such a value is glued to its option
# ("--token=-Xy...") before parsing.
SECRET_OPTIONS = frozenset({"--token", "--password", "--panelist-password", "--host-key"})


def glue_secrets(argv: Sequence[str]) -> list[str]:
    """argv with each SECRET_OPTIONS option and the value after it made one argument."""
    out: list[str] = []
    rest = iter(argv)
    for arg in rest:
        if arg == "--":  # everything after it is positional
            out += [arg, *rest]
            break
        value = next(rest, None) if arg in SECRET_OPTIONS else None
        out.append(arg if value is None else f"{arg}={value}")
    return out


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(glue_secrets(sys.argv[1:] if argv is None else argv))
    status: int = args.run(args)
    return status


def _bench(args: argparse.Namespace) -> int:
    from cli import bench

    return bench.main(args)


def _worker(args: argparse.Namespace) -> int:
    from relay import worker

    return worker.command(args.argv)


def _serve(args: argparse.Namespace) -> int:
    from cli import serve

    return serve.main(args)


def _demo(args: argparse.Namespace) -> int:
    if args.crypto:
        from cli import crypto_demo

        return crypto_demo.main(receivers=args.receivers, packets=args.packets, size=args.size)
    if not 0 < args.rate <= 10_000:
        print("relay demo: --rate must be between 0 and 10000 packets per second")
        return 2
    from cli import demo

    if not 0 <= args.listen <= 86_400:
        print("relay demo: --listen must be between 0 and 86400 seconds")
        return 2
    return demo.main(
        attendees=args.attendees, seconds=args.seconds, rate=args.rate, listen=args.listen
    )
