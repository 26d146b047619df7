"""The `relay` command as a user runs it: a real process."""

from __future__ import annotations

import subprocess
import sys


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_runs_a_webinar_through_a_real_worker() -> None:
    done = relay("demo", "--attendees", "20", "--seconds", "2")
    assert done.returncode == 0, done.stderr
    assert "100 packets from the presenter, 2,000 of 2,000 copies delivered (0.000% lost)" in (
        done.stdout.replace("\n", " ")
    )
    assert "100 in, 2,000 out, drops: none" in done.stdout


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
