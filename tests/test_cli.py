"""The `relay` command as a user runs it: a real process."""

from __future__ import annotations

import subprocess
import sys


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_runs_a_server_and_a_webinar_and_prints_the_usage_record() -> None:
    done = relay("demo", "--attendees", "20", "--seconds", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "1 presenter and 20 attendees joined over the API" in out
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
