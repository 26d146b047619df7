"""The `relay` command: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import sys


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="A media relay for online meetings and large webinars."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="show the SRTP core relaying one presenter to N receivers"
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from relay import demo

        return demo.main(receivers=args.receivers, packets=args.packets, size=args.size)
    raise AssertionError(args.command)  # argparse allows nothing else


if __name__ == "__main__":
    sys.exit(main())
