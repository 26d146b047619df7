"""The `relay meetings`, `relay participants` and `relay usage` commands (README.md, "Serve
it"): the HTTP API from a shell, through `control.client.RelayClient`.

    relay meetings create TITLE [--webinar] [--password P] [--panelist-password P] [--suite S]
    relay meetings list [--state open|ended] [--limit N] [--offset N]
    relay meetings show|lock|unlock|end|delete ID
    relay participants list MEETING
    relay participants mute|unmute|expel MEETING PID
    relay usage [--meeting ID] [--csv]

Every one takes `--url` (default: $RELAY_URL, else http://127.0.0.1:8080), `--ca` (the PEM CA
bundle an https:// server's certificate is verified against; default: $RELAY_CA, else the
default trust store), `--token` (default:
$RELAY_TOKEN, else the file `token` in the data directory, which `relay serve` writes),
`--data-dir` (default: $RELAY_DATA_DIR, else the server's default) and `--json` (print the
API's JSON answer instead of a table). A token on the command line shows in `ps`: prefer
$RELAY_TOKEN or the token file. The operator token is never printed.

`relay join` (cli/join.py) takes `--url` and `--ca` too (it sends no token).

Errors print `relay: MESSAGE` on stderr and exit with 1 (2 for a usage error, as argparse); a
server certificate that cannot be verified is one such line, with what to set.

Every string the server sends (names, titles, ids, error messages, the JSON answer itself) is
printed through control/text.py's `printable` or `printable_json`: a control or invisible
character is shown as an escape (\x1b, \u202e), never sent to the terminal raw. The server
refuses such characters in what it takes now, but rows written before it did may hold them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.text import printable, printable_json
from relay.vocabulary import Mode, Suite

if TYPE_CHECKING:  # loaded when a command runs, so that `relay bench` does not load httpx
    from control.client import Meeting, Participant, RelayClient, UsageRecord

__all__ = ["DEFAULT_URL", "SUITES", "register"]

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_FILE = "token"  # as control/credentials.py writes it
SUITES = tuple(Suite)


class CommandError(Exception):
    """A problem to report as `relay: MESSAGE` with this exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


Action = Callable[["RelayClient", argparse.Namespace], int]

CA_HELP = (
    "PEM CA bundle that an https:// server's certificate must chain to "
    "(default: $RELAY_CA, else the default trust store)"
)


# --- options, token ---------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument("--url", help=f"the relay's API (default: $RELAY_URL, else {DEFAULT_URL})")
    group.add_argument("--ca", metavar="FILE", help=CA_HELP)
    group.add_argument(
        "--token",
        help="operator token or host key (default: $RELAY_TOKEN, else DATA_DIR/token); "
        "on the command line it shows in ps",
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        help="where `relay serve` keeps its token (default: $RELAY_DATA_DIR, else the "
        "server's default, $XDG_DATA_HOME/relay or ~/.local/share/relay)",
    )
    group.add_argument(
        "--json", action="store_true", help="print the API's JSON answer instead of a table"
    )
    return common


def api_url(args: argparse.Namespace) -> str:
    url: str = args.url or os.environ.get("RELAY_URL") or DEFAULT_URL
    return url


def _token(args: argparse.Namespace) -> str:
    if args.token:
        token: str = args.token
        return token
    env = os.environ.get("RELAY_TOKEN")
    if env:
        return env.strip()
    data_dir = args.data_dir or os.environ.get("RELAY_DATA_DIR")
    if not data_dir:
        from control.settings import DEFAULT_DATA_DIR

        data_dir = DEFAULT_DATA_DIR
    path = Path(data_dir).expanduser() / TOKEN_FILE
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise CommandError(
            f"no token: no --token, RELAY_TOKEN is not set, and {path} does not exist "
            "(give --data-dir, the server's data directory, or set RELAY_TOKEN)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise CommandError(f"cannot read the token file {path}: {reason}") from None
    if not text:
        raise CommandError(f"the token file {path} is empty")
    return text


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from control.client import ApiError, RelayClient, RelayClientError

        try:
            token = _token(args)
            with RelayClient(api_url(args), token, ca=args.ca) as client:
                return action(client, args)
        except CommandError as exc:
            say_error(str(exc))
            return exc.status
        except ApiError as exc:
            say_error(f"{exc.message} ({exc.status} {exc.code})")
            return 1
        except RelayClientError as exc:
            say_error(str(exc))
            return 1
        except ValueError as exc:  # a bad --url or token, an empty id: usage errors
            say_error(str(exc))
            return 2

    return run


# --- output -----------------------------------------------------------------------------------


def say_error(message: str) -> None:
    print(f"relay: {printable(message)}", file=sys.stderr)


def print_json(data: Any) -> None:
    print(printable_json(json.dumps(data, indent=2, ensure_ascii=False)))


def say(text: str) -> None:
    """A line with server strings in it, printed safely."""
    print(printable(text))


def _csv(text: str) -> None:
    """CSV from the server, each line printed safely (its line ends kept)."""
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        sys.stdout.write(printable(body) + line[len(body) :])


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(headers)] + [[printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_fields(pairs: Sequence[tuple[str, object]]) -> None:
    width = max(len(name) for name, _ in pairs) + 1
    for name, value in pairs:
        print(f"{name + ':':<{width}} {printable(value)}")


def _meeting_fields(m: Meeting) -> list[tuple[str, object]]:
    return [
        ("id", m["id"]),
        ("title", m["title"]),
        ("mode", m["mode"]),
        ("suite", m["suite"]),
        ("state", m["state"]),
        ("locked", _yes(m["locked"])),
        ("recording", _yes(m["recording"])),
        ("created", _when(m["created_at"])),
        ("ended", _when(m["ended_at"])),
    ]


def _usage_fields(u: UsageRecord) -> list[tuple[str, object]]:
    return [
        ("started", _when(u["started_at"])),
        ("ended", _when(u["ended_at"])),
        ("duration", f"{u['duration_s']:.0f} s"),
        ("participants", u["total_participants"]),
        ("peak", u["peak_participants"]),
        ("participant minutes", f"{u['participant_minutes']:.1f}"),
        ("features", ", ".join(u["features"]) or "-"),
        ("packets in/out", f"{u['packets_in']} / {u['packets_out']}"),
        ("bytes in/out", f"{u['bytes_in']} / {u['bytes_out']}"),
    ]


def _streams(p: Participant) -> str:
    return ",".join(str(s["ssrc"]) for s in p["streams"]) or "-"


# --- meetings ---------------------------------------------------------------------------------


def _meetings_create(client: RelayClient, args: argparse.Namespace) -> int:
    created = client.create_meeting(
        args.title,
        mode=Mode.WEBINAR if args.webinar else Mode.MEETING,
        password=args.password,
        panelist_password=args.panelist_password,
        suite=args.suite,
    )
    if args.json:
        print_json(created)
        return 0
    pairs: list[tuple[str, object]] = [
        ("id", created["id"]),
        ("title", created["title"]),
        ("mode", created["mode"]),
        ("suite", created["suite"]),
        ("host key", created["host_key"]),
    ]
    if "password" in created:
        pairs.append(("password", created["password"]))
    print_fields(pairs)
    if "password" in created:
        print("The host key and the password are shown only this once: keep them now.")
    else:
        print("The host key is shown only this once: keep it now.")
    return 0


def _meetings_list(client: RelayClient, args: argparse.Namespace) -> int:
    meetings = client.list_meetings(state=args.state, limit=args.limit, offset=args.offset)
    if args.json:
        print_json(meetings)
    elif not meetings:
        print("no meetings")
    else:
        _table(
            ["ID", "TITLE", "MODE", "STATE", "LOCKED", "RECORDING", "CREATED"],
            [
                [
                    m["id"],
                    m["title"],
                    m["mode"],
                    m["state"],
                    _yes(m["locked"]),
                    _yes(m["recording"]),
                    _when(m["created_at"]),
                ]
                for m in meetings
            ],
        )
    return 0


def _meetings_show(client: RelayClient, args: argparse.Namespace) -> int:
    meeting = client.get_meeting(args.id)
    if args.json:
        print_json(meeting)
        return 0
    throttle = meeting["join_throttle"]
    if throttle["locked_out"]:  # a server from before the proof of work
        joins = f"paused for {throttle['retry_after']:.0f} s"
    elif throttle.get("proof_of_work"):
        bits, count = throttle.get("difficulty", 0), throttle.get("solutions", 0)
        joins = f"open, with a proof of work ({count} x {bits} bits) for passwords"
    else:
        joins = "open"
    pairs = _meeting_fields(meeting)
    pairs.append(("joins", f"{joins} ({throttle['recent_failures']} recent failures)"))
    print_fields(pairs)
    return 0


def _meetings_lock(client: RelayClient, args: argparse.Namespace) -> int:
    controls = client.lock(args.id) if args.command_name == "lock" else client.unlock(args.id)
    if args.json:
        print_json(controls)
    else:
        say(f"meeting {args.id}: {'locked' if controls['locked'] else 'unlocked'}")
    return 0


def _meetings_end(client: RelayClient, args: argparse.Namespace) -> int:
    ended = client.end_meeting(args.id)
    if args.json:
        print_json(ended)
    else:
        say(f"meeting {ended['id']}: ended")
        print_fields(_usage_fields(ended["usage"]))
    return 0


def _meetings_delete(client: RelayClient, args: argparse.Namespace) -> int:
    client.delete_meeting(args.id)
    if args.json:  # the API answers 204 with no body; this says the same in JSON
        print_json({"id": args.id, "deleted": True})
    else:
        say(f"meeting {args.id}: deleted")
    return 0


# --- participants -----------------------------------------------------------------------------


def _participants_list(client: RelayClient, args: argparse.Namespace) -> int:
    participants = client.list_participants(args.meeting)
    if args.json:
        print_json(participants)
    elif not participants:
        print("no participants")
    else:
        _table(
            ["ID", "NAME", "ROLE", "WORKER", "MUTED", "STATE", "JOINED", "SSRCS"],
            [
                [
                    p["id"],
                    p["name"],
                    p["role"],
                    p["worker"],
                    _yes(p["muted"]),
                    "expelled" if p["expelled"] else "left" if p["left_at"] else "present",
                    _when(p["joined_at"]),
                    _streams(p),
                ]
                for p in participants
            ],
        )
    return 0


def _participants_update(client: RelayClient, args: argparse.Namespace) -> int:
    change = {"mute": client.mute, "unmute": client.unmute, "expel": client.expel}
    answer = change[args.command_name](args.meeting, args.pid)
    if args.json:
        print_json(answer)
    else:
        done = {"mute": "muted", "unmute": "unmuted", "expel": "expelled"}[args.command_name]
        say(f"participant {answer['id']}: {done}")
    return 0


# --- usage ------------------------------------------------------------------------------------


def _usage(client: RelayClient, args: argparse.Namespace) -> int:
    if args.csv and args.json:
        raise CommandError("give --csv or --json, not both", 2)
    if args.csv:
        _csv(client.usage_csv(args.meeting))
        return 0
    records = client.usage(args.meeting)
    if args.json:
        print_json(records)
    elif not records:
        print("no usage records")
    else:
        _table(
            [
                "MEETING",
                "STARTED",
                "DURATION",
                "PARTICIPANTS",
                "PEAK",
                "MINUTES",
                "FEATURES",
                "PACKETS IN",
                "PACKETS OUT",
                "BYTES IN",
                "BYTES OUT",
            ],
            [
                [
                    u["meeting_id"],
                    _when(u["started_at"]),
                    f"{u['duration_s']:.0f} s",
                    u["total_participants"],
                    u["peak_participants"],
                    f"{u['participant_minutes']:.1f}",
                    ",".join(u["features"]) or "-",
                    u["packets_in"],
                    u["packets_out"],
                    u["bytes_in"],
                    u["bytes_out"],
                ]
                for u in records
            ],
        )
    return 0


# --- nodes ------------------------------------------------------------------------------------


def _nodes(client: RelayClient, args: argparse.Namespace) -> int:
    found = client.nodes()
    if args.json:
        print_json(found)
        return 0
    _table(
        ["NODE", "STATE", "LOAD", "CAPACITY", "WORKERS", "API", "MEDIA", "HEARTBEAT"],
        [
            [
                n["name"],
                n["state"],
                n["load"],
                n["capacity"],
                n["workers"],
                n["api_url"],
                f"{n['media']['host']}:{n['media']['port']}",
                _when(n["heartbeat_at"]),
            ]
            for n in found
        ],
    )
    return 0


def _drain(client: RelayClient, args: argparse.Namespace) -> int:
    node = client.drain(args.name, draining=not args.undo)
    if args.json:
        print_json(node)
    elif args.undo:
        say(f"node {node['name']} takes new participants again")
    else:
        say(
            f"node {node['name']} is draining: it takes no new participants; "
            f"{node['load']} present stay until their meetings end"
        )
    return 0


# --- registration -----------------------------------------------------------------------------


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be 0..1000, got {value}")
    return value


def _offset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meetings`, `participants` and `usage` to the `relay` command's subcommands; each
    leaf parser gets `run`, which cli/main.py calls as `args.run(args)` for the exit
    status."""
    common = _common()

    def leaf(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        action: Action,
        help: str,
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(run=_run(action), command_name=name)
        return parser

    meetings = commands.add_parser(
        "meetings", help="create, list, lock, end and delete meetings (the HTTP API)"
    )
    meeting_commands = meetings.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = leaf(
        meeting_commands,
        "create",
        _meetings_create,
        "create a meeting; prints its host key and generated password, shown once",
    )
    create.add_argument("title")
    create.add_argument(
        "--webinar", action="store_true", help="attendees receive only (default: a meeting)"
    )
    create.add_argument("--password", help="the meeting password (default: a generated one)")
    create.add_argument("--panelist-password", help="the password that makes a webinar panelist")
    create.add_argument("--suite", choices=SUITES, help="SRTP suite (default: the server's)")
    listing = leaf(meeting_commands, "list", _meetings_list, "list meetings")
    listing.add_argument("--state", choices=["open", "ended"])
    listing.add_argument("--limit", type=_limit, default=50, help="at most N (0..1000, 50)")
    listing.add_argument("--offset", type=_offset, default=0, help="skip the first N")
    for name, action, text in (
        ("show", _meetings_show, "a meeting's state, controls and join throttle"),
        ("lock", _meetings_lock, "lock a meeting: nobody new may join"),
        ("unlock", _meetings_lock, "unlock a meeting"),
        ("end", _meetings_end, "end a meeting now; prints its usage record"),
        ("delete", _meetings_delete, "delete a meeting (ended first; its usage record stays)"),
    ):
        leaf(meeting_commands, name, action, text).add_argument("id", metavar="ID")

    participants = commands.add_parser(
        "participants", help="list, mute, unmute and expel a meeting's participants"
    )
    participant_commands = participants.add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    leaf(participant_commands, "list", _participants_list, "a meeting's participants").add_argument(
        "meeting", metavar="MEETING"
    )
    for name, text in (
        ("mute", "mute a participant"),
        ("unmute", "unmute a participant"),
        ("expel", "expel a participant for good"),
    ):
        parser = leaf(participant_commands, name, _participants_update, text)
        parser.add_argument("meeting", metavar="MEETING")
        parser.add_argument("pid", metavar="PID")

    usage = commands.add_parser(
        "usage",
        parents=[common],
        help="usage records of ended meetings (operator)",
        description="usage records of ended meetings (operator)",
    )
    usage.add_argument("--meeting", metavar="ID", help="only this meeting's")
    usage.add_argument("--csv", action="store_true", help="print CSV, as the API gives it")
    usage.set_defaults(run=_run(_usage), command_name="usage")

    nodes = commands.add_parser(
        "nodes",
        parents=[common],
        help="the nodes sharing the server's database, their state and load (operator)",
        description="the nodes sharing the server's database, their state and load (operator)",
    )
    nodes.set_defaults(run=_run(_nodes), command_name="nodes")
    drain = commands.add_parser(
        "drain",
        parents=[common],
        help="place no new participants on a node; those present stay (operator)",
        description="place no new participants on a node; those present stay until their "
        "meetings end (operator); --undo takes it back",
    )
    drain.add_argument("name", metavar="NODE")
    drain.add_argument("--undo", action="store_true", help="take new participants there again")
    drain.set_defaults(run=_run(_drain), command_name="drain")
