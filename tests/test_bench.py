"""`relay bench` as a user runs it, kept small: every target starts, forwards, is measured and
verified, and the JSON carries the fields DESIGN.md promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _loadgen, run


def test_participant_addresses_are_distinct_loopback_addresses() -> None:
    seen = {_loadgen.participant_address(i) for i in range(70_000)}
    assert len(seen) == 70_000
    assert all(a.startswith("127.") and not a.startswith("127.0.") for a in seen)


def test_payload_round_trip_and_tamper() -> None:
    packet = run.rtp_packet(seq=7, ssrc=0x1234, number=99, size=200)
    assert len(packet) == 200
    assert run.check_payload(packet, 200) == 99
    with pytest.raises(ValueError):
        run.check_payload(packet[:-1] + b"\x01", 200)


def test_bench_compare_fixed_rate_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay",
            "bench",
            "webinar",
            "--receivers",
            "20",
            "--rate",
            "100",
            "--duration",
            "0.5",
            "--compare",
            "--json",
            str(out),
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in (
        "scenario",
        "suite",
        "size",
        "workers",
        "receivers",
        "in_pps",
        "out_pps",
        "loss_ratio",
        "latency_us",
        "relay_cpu",
        "out_pps_per_relay_core",
        "verified_packets",
        "baselines",
    ):
        assert key in report, key
    assert report["receivers"] == 20 and report["scenario"] == "webinar"
    assert set(report["baselines"]) == {"ceiling", "io_ceiling", "python", "python_uvloop"}
    for figures in [report, *report["baselines"].values()]:
        assert figures["loss_ratio"] < 0.01
        assert figures["verified_packets"] > 0
        assert figures["out_pps"] == pytest.approx(2000, rel=0.05)
        assert 0 < figures["latency_us"]["p50"] <= figures["latency_us"]["p99"]
    assert plot.stat().st_size > 10_000


def test_bench_meeting_every_participant_hears_the_others(tmp_path: Path) -> None:
    out = tmp_path / "meeting.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "relay",
            "bench",
            "meeting",
            "--receivers",
            "5",
            "--rate",
            "50",
            "--duration",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["in_pps"] == pytest.approx(250)  # 5 senders at 50 packets/s
    assert report["out_pps"] == pytest.approx(1000, rel=0.05)  # each to the 4 others
    assert report["loss_ratio"] < 0.01
    assert report["verified_packets"] > 0


def test_bench_rejects_bad_arguments() -> None:
    for args in (
        ["webinar", "--workers", "2"],
        ["meeting", "--receivers", "1"],
        ["webinar", "--rate", "-5"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "relay", "bench", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, args
        assert "relay bench" in done.stderr
