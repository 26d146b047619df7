"""The control plane's commands in `relay`: `serve` and `demo` (the API client's commands are
in control/client_cli.py). Both register through the "relay.commands" entry point group
(relay/cli.py), so the data plane's command line never imports the control plane.

Only argparse is imported at registration: the server's modules load when a command runs, so
`relay bench` and `relay worker` start as fast as before.
"""

from __future__ import annotations

import argparse
from typing import Any


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def register(commands: Any) -> None:
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


def _serve(args: argparse.Namespace) -> int:
    import sys

    from node import serve
    from control.settings import SettingsError, resolve

    try:
        settings = resolve(vars(args))
    except SettingsError as exc:
        print(f"relay serve: {exc}", file=sys.stderr)
        return 2
    return serve.main(settings)


def _demo(args: argparse.Namespace) -> int:
    if args.crypto:
        from relay import demo as crypto_demo

        return crypto_demo.main(receivers=args.receivers, packets=args.packets, size=args.size)
    if not 0 < args.rate <= 10_000:
        print("relay demo: --rate must be between 0 and 10000 packets per second")
        return 2
    from control import demo

    return demo.main(attendees=args.attendees, seconds=args.seconds, rate=args.rate)
