"""`relay join`: join a meeting as a client would, from a shell (README.md, "Join a webinar
with ffmpeg"): the password is the credential (no token), the answer's SDP is written to a
file, and `--ffmpeg` prints the arguments that make ffmpeg the client. While the meeting is
under attack, the proof of work it asks of password joins is solved here (control/client.py).

Errors print `relay: MESSAGE` on stderr and exit with 1, as the API client's other commands
(cli/client.py) do; strings from the server are printed through control/text.py's
`printable`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from cli.client import CA_HELP, DEFAULT_URL, api_url, print_fields, print_json, say, say_error
from relay.vocabulary import Kind, Role

__all__ = ["register"]


def _stream(text: str) -> dict[str, Any]:
    """KIND:SSRC[:PT[:CODEC]], as in audio:1234 or video:5678:96:VP8/90000."""
    parts = text.split(":", 3)
    if len(parts) < 2 or parts[0] not in tuple(Kind):
        raise argparse.ArgumentTypeError(f"a stream is KIND:SSRC[:PT[:CODEC]], got {text!r}")
    try:
        stream: dict[str, Any] = {"kind": parts[0], "ssrc": int(parts[1], 0)}
        if len(parts) > 2:
            stream["pt"] = int(parts[2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"SSRC and payload type are numbers: {text!r}") from None
    if len(parts) > 3:
        stream["codec"] = parts[3]
    return stream


def _join(args: argparse.Namespace) -> int:
    """Join with the password (no token), write the SDP, print what a client needs. While the
    meeting is under attack the client solves its proof of work by itself."""
    from control.client import ApiError, ProofOfWorkRequired, RelayClientError, join_first

    def solving(required: ProofOfWorkRequired) -> None:
        # One line, on a terminal only: stdout may be going into $(...), and scripts want
        # nothing but the answer.
        if sys.stderr.isatty():
            print(
                "relay: the meeting is seeing many failed joins; solving its proof of work "
                f"({required.solutions} x {required.difficulty} bits)...",
                file=sys.stderr,
            )

    # Several URLs, comma-separated: the APIs of nodes sharing one database, tried in turn
    # (one that cannot be reached, or is draining, is passed over: README.md, "Several nodes").
    urls = [u.strip() for u in api_url(args).split(",") if u.strip()]
    try:
        answer = join_first(
            urls,
            args.meeting,
            ca=args.ca,
            name=args.name,
            password=args.password,
            role=args.role,
            host_key=args.host_key,
            streams=args.stream or None,
            receive_at=args.receive_at,
            on_proof_of_work=solving,
        )
    except ApiError as exc:
        say_error(f"{exc.message} ({exc.status} {exc.code})")
        return 1
    except (RelayClientError, ValueError) as exc:
        say_error(str(exc))
        return 1
    if args.sdp:
        Path(args.sdp).write_text(answer["sdp"])
    tools = answer.get("ffmpeg")
    if args.ffmpeg_args:
        # Only the arguments, for $(...): the first stream's output, or a listener's input.
        if tools is None:
            print("relay: ffmpeg cannot speak this meeting's suite", file=sys.stderr)
            return 1
        if tools["outputs"]:
            say(shlex.join(["-rtpflags", "send_bye", *tools["outputs"][0]]))
        elif "input" in tools:
            say(shlex.join([*tools["input"][:-1], args.sdp or "join.sdp"]))
        return 0
    if args.json:
        print_json(answer)
        return 0
    relay = answer["relay"]
    print_fields(
        [
            ("participant", answer["participant_id"]),
            ("role", answer["role"]),
            ("relay", f"{relay['host']}:{relay['port']} (RTCP also on {relay['port'] + 1})"),
            ("suite", answer["srtp"]["suite"]),
            ("sdp", args.sdp or "(not written: give --sdp FILE)"),
        ]
    )
    if not args.ffmpeg:
        return 0
    if tools is None:
        print("ffmpeg cannot speak this meeting's suite (it has AES_CM_128_HMAC_SHA1_80/32 only)")
        return 1
    for stream, output in zip(args.stream or [], tools["outputs"], strict=False):
        print(f"\nsend {stream['kind']} {stream['ssrc']}: after your input and encoder options,")
        say("  " + shlex.join(["-rtpflags", "send_bye", *output]))
    if "input" in tools:
        sdp = args.sdp or "join.sdp"
        print("\nreceive (the SDP above, as written):")
        say("  " + shlex.join(["ffmpeg", *tools["input"][:-1], sdp, "-c", "copy", "-y", "out.mkv"]))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `join` to the `relay` command's subcommands."""
    join = commands.add_parser(
        "join",
        help="join a meeting as a client: keys, SDP and ffmpeg arguments from the answer",
        description="Join a meeting with its password (no token) and print where to send, "
        "write the answer's SDP (--sdp) and, with --ffmpeg, the arguments that make ffmpeg "
        "the client. The answer holds this participant's SRTP keys: keep it to yourself. "
        "While the meeting is under attack, the proof of work it asks of password joins is "
        "solved here (about a second at most).",
    )
    join.add_argument("meeting", metavar="MEETING")
    join.add_argument("--name", required=True, help="the name others see")
    join.add_argument("--password", help="the meeting (or panelist) password")
    join.add_argument("--role", choices=list(Role))
    join.add_argument("--host-key", help="with --role host: the meeting's host key")
    join.add_argument(
        "--stream",
        type=_stream,
        action="append",
        metavar="KIND:SSRC[:PT[:CODEC]]",
        help="a stream this client will send (repeat for each); e.g. audio:1234",
    )
    join.add_argument("--receive-at", metavar="IP:PORT", help="listen here (stream k on PORT+2k)")
    join.add_argument("--sdp", metavar="FILE", help="write the answer's SDP here")
    join.add_argument("--ffmpeg", action="store_true", help="print ffmpeg's arguments")
    join.add_argument(
        "--ffmpeg-args",
        action="store_true",
        help="print only ffmpeg's arguments (the first stream's output, or the input), for $(...)",
    )
    join.add_argument(
        "--url",
        help=f"the relay's API (default: $RELAY_URL, else {DEFAULT_URL}); several, "
        "comma-separated, for nodes sharing one database: the first that takes the join",
    )
    join.add_argument("--ca", metavar="FILE", help=CA_HELP)
    join.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    join.set_defaults(run=_join, command_name="join")
