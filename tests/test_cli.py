"""The `relay` command as a user runs it: a real process."""

from __future__ import annotations

import re
import subprocess
import sys

from cli.main import build_parser, glue_secrets


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_runs_a_server_and_a_webinar_and_prints_the_usage_record() -> None:
    done = relay("demo", "--attendees", "20", "--seconds", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "1 presenter and 20 attendees joined over the API" in out
    # The webinar's pages, for a newcomer to open (tests/test_web_browsers.py hears them).
    assert re.search(r"join page: +http://127\.0\.0\.1:\d+/m/\S+ +\(password \S+;", out), out
    assert re.search(r"host console: +http://127\.0\.0\.1:\d+/host/\S+ +\(host key \S+\)", out)
    table = out.split("p99 ms", 1)[1].split("\n\n", 1)[0]
    rows = [line.split() for line in table.strip().splitlines()]
    assert [row[:2] for row in rows[:2]] == [["1", "21"], ["2", "21"]]  # second, present
    assert "100 packets from the presenter, 2,000 of 2,000 copies delivered (0.000% lost)" in (
        out.replace("\n", " ")
    )
    usage = dict(
        line.split(None, 1) for line in out.split("its usage record:")[1].strip().splitlines()
    )
    assert usage["total_participants"] == "21" and usage["features"] == "webinar"
    assert usage["packets_in"] == "100" and usage["packets_out"] == "2,000"


def test_crypto_demo_relays_and_every_receiver_verifies() -> None:
    done = relay("demo", "--crypto", "--receivers", "3", "--packets", "300", "--size", "1200")
    assert done.returncode == 0, done.stderr
    for suite in (
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
        "AEAD_AES_128_GCM",
        "AEAD_AES_256_GCM",
    ):
        row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {suite}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:3] == ["300", "900"]
        assert cells[5].startswith("900 by ")


def test_bad_arguments_exit_2_with_a_message() -> None:
    done = relay("demo", "--receivers", "0")
    assert done.returncode == 2
    assert "must be a positive integer" in done.stderr
    done = relay("no-such-command")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_the_parser_loads_none_of_what_the_commands_run() -> None:
    """Building the whole parser (cli/main.py) loads no command's modules: `relay worker`,
    `relay bench` and the client commands start without the server's or the bench's."""
    code = (
        "import sys, cli.main; cli.main.build_parser(); "
        "loaded = {'httpx', 'numpy', 'zmq', 'uvicorn', 'fastapi'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_secret_that_begins_with_a_dash_is_still_the_options_value() -> None:
    """Random tokens and host keys (base64url) begin with "-" one time in 64, and passwords
    are anyone's: `--token -Xy` is glued into `--token=-Xy` before argparse sees it."""
    argv = ["meetings", "list", "--token", "-Xy", "--password", "--", "--limit", "5"]
    assert glue_secrets(argv) == [
        "meetings",
        "list",
        "--token=-Xy",
        "--password=--",
        "--limit",
        "5",
    ]
    assert glue_secrets(["join", "m", "--", "--token", "-x"]) == [
        "join",
        "m",
        "--",
        "--token",
        "-x",
    ]
    assert glue_secrets(["usage", "--token"]) == ["usage", "--token"]  # argparse says what lacks
    args = build_parser().parse_args(glue_secrets(["meetings", "list", "--token", "-abc"]))
    assert args.token == "-abc"


def test_output_cut_short_by_its_reader_ends_quietly() -> None:
    """`relay ... | head`: the reader is gone before the command writes; it ends with 128 +
    SIGPIPE and says nothing (no traceback, no "Exception ignored")."""
    done = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m cli demo --crypto --receivers 1 --packets 100 | true; "
            "echo ${PIPESTATUS[0]} >&2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stderr.strip() == "141", done.stderr
