"""`relay bench` as a user runs it, kept small: every target starts, forwards, is measured and
verified, and the JSON carries the fields README.md ("Measure it") promises."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import _loadgen, run, sendonly


def test_participant_addresses_are_distinct_loopback_addresses() -> None:
    seen = {_loadgen.participant_address(i) for i in range(70_000)}
    assert len(seen) == 70_000
    assert all(a.startswith("127.") and not a.startswith("127.0.") for a in seen)


def test_loadgen_sends_each_row_to_its_ports() -> None:
    """A row per packet, a column per copy: each row leaves once per column, to that port,
    from its sender's address; a row counts as sent once all its copies left."""
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for sock in receivers:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
        sender.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_PKTINFO", 8), 1)
        sender.bind(("0.0.0.0", 0))
        port = [sock.getsockname()[1] for sock in receivers]
        slab = np.zeros((3, 2048), np.uint8)
        slab[:, 0] = [10, 11, 12]
        lengths = np.ones(3, np.uint32)
        senders = np.array([0, 1, 2], np.int32)
        at_ns = np.full(3, _loadgen.monotonic_ns(), np.int64)
        sent_ns = np.zeros(3, np.int64)
        ports = np.array([[port[0], port[1]], [port[0], port[2]], [port[1], port[2]]], np.int32)
        gen = _loadgen.Loadgen(sender.fileno(), 3)
        assert gen.send(slab, lengths, senders, at_ns, sent_ns, "127.0.0.1", ports=ports) == 3
        assert (sent_ns > 0).all()
        got = []
        for sock in receivers:
            packets = [sock.recvfrom(16) for _ in range(2)]
            got.append(sorted((data[0], ip) for data, (ip, _) in packets))
        a, b, c = (_loadgen.participant_address(i) for i in range(3))
        assert got == [[(10, a), (11, b)], [(10, a), (12, c)], [(11, b), (12, c)]]
        with pytest.raises(ValueError):
            gen.send(slab, lengths, senders, at_ns, sent_ns, "127.0.0.1", ports=ports[:2])
        with pytest.raises(ValueError):
            gen.send(slab, lengths, senders, at_ns, sent_ns, "127.0.0.1", ports=ports * 0)
    finally:
        sender.close()
        for sock in receivers:
            sock.close()


def test_payload_round_trip_and_tamper() -> None:
    packet = run.rtp_packet(seq=7, ssrc=0x1234, number=99, size=200)
    assert len(packet) == 200
    assert run.check_payload(packet, 200) == 99
    with pytest.raises(ValueError):
        run.check_payload(packet[:-1] + b"\x01", 200)


@pytest.mark.release_only  # tests/conftest.py: every target once more, on paths tested there
def test_bench_compare_fixed_rate_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
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
    # And the same relay with its receivers as WebRTC viewers (each packet they got was checked
    # for the viewer's own payload type: bench/run.py), and with its stream kept for
    # retransmission (declared video), each with its ratio.
    assert set(report["variants"]) == {"webrtc_viewers", "rtx_cache"}
    assert report["ratios"]["rtx_cache_out_pps_vs_off"] == pytest.approx(1.0, rel=0.05)
    # At this low rate the relay uses too little CPU for a per-core ratio: none is made up.
    ratio = report["ratios"]["webrtc_viewers_out_pps_per_core_vs_sdes"]
    if min(report["relay_cpu"], report["variants"]["webrtc_viewers"]["relay_cpu"]) < 0.05:
        assert ratio is None
    else:
        assert ratio > 0
    for figures in [report, *report["baselines"].values(), *report["variants"].values()]:
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
            "cli",
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
        ["webinar", "--workers", "0"],
        ["meeting", "--receivers", "1"],
        ["webinar", "--rate", "-5"],
        # The send-only path is a webinar's, on one worker (refused before anything starts).
        ["meeting", "--path", "send-only"],
        ["webinar", "--path", "send-only", "--workers", "2"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "cli", "bench", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, args
        assert "relay bench" in done.stderr


# --- --workers W: W relay processes, and the W-process C ceiling -------------------------------


@functools.cache
def _has_fanout() -> bool:
    """Whether `relay worker` can pass packets to other workers (--fanout)."""
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--fanout" in done.stdout


needs_fanout = pytest.mark.skipif(
    not _has_fanout(), reason="relay worker has no --fanout (cross-worker fan-out) yet"
)


def _measure_two_workers(
    tmp_path: Path, name: str, target: str, receivers: int
) -> tuple[run.Scenario, run.Step, list[int], dict[str, object]]:
    """One fixed-rate step of target as 2 processes: the scenario, the step, the packets each
    participant got, and the processes' counters."""
    scenario = run.Scenario(name, receivers, workers=2, duration=0.5, rate=100)
    bench = run.Bench(scenario, target, tmp_path, lambda _line: None)
    try:
        assert bench.processes == 2
        step, _ = bench.capacity()
        counts = bench.loadgen.counts()
        made = bench.source.number  # packets made, round-robin over the senders
    finally:
        counters = bench.close()
    assert step.sent == made
    return scenario, step, counts, counters


def _expected_counts(scenario: run.Scenario, sent: int) -> list[int]:
    """What each participant receives when none of `sent` round-robin packets is lost."""
    if scenario.name == "webinar":
        return [0] + [sent] * scenario.receivers
    n = scenario.participants
    return [sent - (sent // n + (1 if i < sent % n else 0)) for i in range(n)]


def _check_two_workers(scenario: run.Scenario, step: run.Step, counts: list[int]) -> None:
    assert counts == _expected_counts(scenario, step.sent)  # every receiver, every packet
    assert step.loss_ratio == 0
    assert step.verified > 0
    figures = run.summarise(scenario, step, step)
    assert figures["processes"] == 2
    shares = figures["per_worker"]
    assert [w["worker"] for w in shares] == [0, 1]
    homes = scenario.receiver_homes(2)
    assert [w["receivers"] for w in shares] == [homes.count(0), homes.count(1)]
    assert sum(w["out_pps"] for w in shares) == pytest.approx(step.out_pps)
    for w in shares:
        assert w["out_pps"] > 0 and w["relay_cpu"] >= 0


@pytest.mark.parametrize(
    ("name", "target", "receivers"),
    [
        ("webinar", "ceiling", 20),
        ("meeting", "io_ceiling", 6),
    ],
)
def test_two_worker_ceiling_serves_each_share_once(
    tmp_path: Path, name: str, target: str, receivers: int
) -> None:
    scenario, step, counts, counters = _measure_two_workers(tmp_path, name, target, receivers)
    _check_two_workers(scenario, step, counts)
    # Each process got a copy of every packet and served only the receivers homed on it.
    per_worker = counters["per_worker"]
    assert isinstance(per_worker, list) and len(per_worker) == 2
    assert [w["packets_in"] for w in per_worker] == [step.sent, step.sent]
    assert sum(w["packets_out"] for w in per_worker) == counters["packets_out"] == step.received


@needs_fanout
@pytest.mark.parametrize(("name", "receivers"), [("webinar", 20), ("meeting", 6)])
def test_two_worker_relay_serves_every_receiver(tmp_path: Path, name: str, receivers: int) -> None:
    scenario, step, counts, counters = _measure_two_workers(tmp_path, name, "relay", receivers)
    _check_two_workers(scenario, step, counts)
    per_worker = counters["per_worker"]
    assert isinstance(per_worker, list) and len(per_worker) == 2
    assert sum(w["packets_out"] for w in per_worker) == counters["packets_out"] == step.received


@needs_fanout
def test_bench_two_workers_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "bench",
            "webinar",
            "--workers",
            "2",
            "--receivers",
            "20",
            "--rate",
            "100",
            "--duration",
            "0.5",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "per worker" in done.stdout
    report = json.loads(out.read_text())
    assert report["workers"] == 2 and report["processes"] == 2
    assert report["out_pps"] == pytest.approx(2000, rel=0.05)
    assert report["loss_ratio"] < 0.01 and report["verified_packets"] > 0
    assert [w["worker"] for w in report["per_worker"]] == [0, 1]
    for w in report["per_worker"]:
        assert w["receivers"] == 10
        assert w["out_pps"] == pytest.approx(1000, rel=0.05)
    assert len(report["relay_counters"]["per_worker"]) == 2


def test_flood_every_bad_packet_is_counted_and_the_webinar_loses_nothing() -> None:
    from bench import flood

    report = flood.measure(20, 200.0, 0.5, lambda _line: None, flood_rates=(2_000, 10_000))
    assert [s["loss_ratio"] for s in report["steps"]] == [0.0, 0.0]
    assert report["highest_clean_flood_pps"] >= 9_000
    sent, dropped = report["flood_sent"], report["dropped"]
    assert sum(sent.values()) >= 0.95 * (2_000 + 10_000) * 1.0
    # Each kind lands under the reasons it must: nothing bad was forwarded, nothing uncounted.
    assert dropped.get("malformed", 0) >= sent["truncated"]
    assert dropped.get("unknown_source", 0) >= sent["stranger"]
    assert dropped.get("auth", 0) + dropped.get("replay", 0) >= sent["forged"] + sent["replay"]
    assert sum(dropped.values()) >= sum(sent.values())
    assert set(dropped) <= {"malformed", "unknown_source", "auth", "replay"}


def test_bench_joins_reports_the_arrival_of_an_audience(tmp_path: Path) -> None:
    """`relay bench joins`: every attendee joins through the API and hears the presenter; the
    report has the rates per tenth of the audience, latencies and first-packet times."""
    out = tmp_path / "joins.json"
    plot = tmp_path / "joins.png"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "joins", "--receivers", "300"]
        + ["--json", str(out), "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["scenario"] == "joins" and report["attendees"] == 300
    assert report["joins"] == 300 + report["panelists"] and report["failures"] == {}
    assert len(report["deciles_joins_per_s"]) == 10
    assert all(rate > 0 for rate in report["deciles_joins_per_s"])
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert report["first_packet"]["attendees_heard"] == 300
    assert report["first_packet"]["all_heard_after_s"] is not None
    assert set(report["rss_bytes"]) == {"control", "worker 0"}
    assert plot.stat().st_size > 0
    assert "joins/s" in done.stdout


# --- --path send-only: the relays in a namespace of the bench's own, sending to an ifb device ---


@functools.cache
def _send_only_refused() -> str | None:
    """Why this host cannot run the send-only path (not root, no ip, no ifb), or None."""
    problem = sendonly.refusal()
    if problem is None:
        try:
            with sendonly.Namespace():
                pass
        except (sendonly.Refused, RuntimeError) as exc:
            problem = str(exc)
    return problem


needs_send_only = pytest.mark.skipif(
    _send_only_refused() is not None, reason=f"send-only path: {_send_only_refused()}"
)


def _namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def _bench_send_only(tmp_path: Path, *flags: str) -> tuple[dict, str, str]:
    """`relay bench webinar --path send-only FLAGS`: (its JSON, stdout, its namespace's name),
    having checked that it exited 0 and left no namespace behind."""
    out = tmp_path / "send-only.json"
    # The relay as it runs by default, whatever the environment asks of its workers.
    env = {k: v for k, v in os.environ.items() if k not in ("RELAY_CONNECTED_SOCKETS", "RELAY_GSO")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "bench", "webinar", "--path", "send-only"]
        + [*flags, "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["netns"] == f"relaybench-{proc.pid}"
    assert report["netns"] not in _namespaces()
    return report, stdout, stderr


@needs_send_only
def test_send_only_counts_every_copy_at_the_device(tmp_path: Path) -> None:
    """40 attendees at 100 packets a second: the device counts every copy (4,000 a second),
    the relay's own count agrees, what went out decrypts with each receiver's key, and there
    is no latency figure (nothing receives)."""
    report, stdout, _ = _bench_send_only(
        tmp_path, "--receivers", "40", "--rate", "100", "--duration", "0.5"
    )
    assert report["path"] == "send-only" and report["device"] == sendonly.DEVICE
    assert report["loss_ratio"] == 0
    step = report["capacity_step"]
    assert step["received"] == step["sent"] * 40 and step["sent"] == 50
    assert report["out_pps"] == pytest.approx(4000, rel=0.02)
    assert report["latency_us"] is None
    # 2,000 copies: under SAMPLES, so every one was captured at the device and checked.
    assert report["verified_packets"] == step["received"]
    check = report["device_check"]
    assert check["agree"] is True and check["relay_packets_out"] == check["device_packets"]
    assert check["queue_dropped"] == 0
    assert "latency: not measured on the send-only path" in stdout
    # What the relay says of itself instead: each packet's stay in it (bench/delay.py); and
    # the fan-out floor, receivers / out pps (at a fixed rate, that rate's).
    assert report["forward_delay_us"]["packets"] == 50
    assert report["fanout_floor_us"] == pytest.approx(1e6 * 40 / report["out_pps"], rel=0.01)
    assert step["kept_up"] is True and step["lag_s"] <= run.KEPT_UP_LAG


@needs_send_only
def test_a_send_only_step_the_relay_fell_behind_in_is_not_kept_up(tmp_path: Path) -> None:
    """The Python relay offered far more than it forwards: when the sending ends it is
    further behind than KEPT_UP_LAG, so the step does not count as within capacity whatever
    it forwarded afterwards; a light step does."""
    scenario = run.Scenario("webinar", 200, path=sendonly.PATH, duration=0.5)
    with sendonly.Namespace() as ns:
        bench = run.Bench(scenario, "python", tmp_path, lambda _line: None, netns=ns)
        try:
            light = bench.step(50, 0.5)  # 10,000 out pps
            heavy = bench.step(2000, 0.5)  # 400,000 out pps: far past a Python relay
        finally:
            bench.close()
    assert light.kept_up and light.lag_s <= run.KEPT_UP_LAG
    assert not heavy.kept_up and heavy.lag_s > run.KEPT_UP_LAG


@needs_send_only
@pytest.mark.release_only  # tests/conftest.py: every target once more, on paths tested there
def test_send_only_compare_runs_both_forms_of_relay_and_ceiling(tmp_path: Path) -> None:
    report, stdout, stderr = _bench_send_only(
        tmp_path, "--receivers", "20", "--rate", "100", "--duration", "0.3", "--compare"
    )
    assert set(report["baselines"]) == {
        "ceiling",
        "ceiling_connected",
        "ceiling_sendmmsg",
        "ceiling_xdp",
        "io_ceiling",
        "io_ceiling_xdp",
        "python",
        "python_uvloop",
    }
    # The ceiling in the relay's ways: connected sockets (one per attendee) only in one,
    # frames through AF_XDP (every attendee given a hop, every copy a frame) in two.
    baselines = report["baselines"]
    assert baselines["ceiling_connected"]["relay_counters"]["connected"] == 20
    assert "connected" not in baselines["ceiling"]["relay_counters"]
    assert "connected" not in baselines["ceiling_sendmmsg"]["relay_counters"]
    for name in ("ceiling_xdp", "io_ceiling_xdp"):
        counters = baselines[name]["relay_counters"]
        assert counters["xdp_routed"] == 20
        assert counters["xdp_frames"] == counters["packets_out"] > 0, counters
        assert counters["xdp_fallbacks"] == 0
    assert baselines["ceiling"]["relay_counters"]["xdp_frames"] == 0
    assert report["ratios"]["xdp_vs_ceiling_xdp"] == pytest.approx(1.0, rel=0.05)
    # The relay in its ways of sending: GSO on and connected sockets off (the relay itself),
    # both off (relay_sendmmsg), connected with GSO and without; at a fixed rate under
    # capacity all send everything.
    variants = report["variants"]
    assert set(variants) == {
        "relay_sendmmsg",
        "relay_connected",
        "relay_connected_only",
        "relay_xdp",
    }
    assert report["relay_counters"]["connected_sockets"] == 0
    assert variants["relay_sendmmsg"]["relay_counters"]["connected_sockets"] == 0
    assert variants["relay_connected"]["relay_counters"]["connected_sockets"] == 20
    assert variants["relay_connected_only"]["relay_counters"]["connected_sockets"] == 20
    # Through AF_XDP: every attendee given a hop (the presenter, on lo, is not), and the
    # copies of the measured step (and the second warm-up step) as frames.
    xdp = variants["relay_xdp"]["relay_counters"]
    assert xdp["xdp_on"] and xdp["xdp_routed"] == 20
    assert xdp["xdp"]["frames"] >= 20 * 30 and xdp["xdp"]["fallbacks"] == 0
    assert report["relay_counters"]["xdp"]["frames"] == 0
    for form in ("connected_and_gso", "connected", "gso", "xdp"):
        assert report["ratios"][f"{form}_vs_sendmmsg"] == pytest.approx(1.0, rel=0.05)
    figures = [report, *report["baselines"].values(), *variants.values()]
    for figures_ in figures:
        assert figures_["loss_ratio"] == 0
        assert figures_["out_pps"] == pytest.approx(2000, rel=0.02)
        assert figures_["latency_us"] is None
        frames = (variants["relay_xdp"], baselines["ceiling_xdp"], baselines["io_ceiling_xdp"])
        if all(figures_ is not f for f in frames):  # frames skip the capture (bench/run.py)
            assert figures_["verified_packets"] > 0
        assert figures_["device_check"]["agree"] is True
    for name in report["baselines"]:
        assert report["ratios"][f"out_pps_vs_{name}"] == pytest.approx(1.0, rel=0.05)
    # The relay's own count of how long packets stayed in it (bench/delay.py): one per packet
    # of the step, for the relay in each of its ways; none for the ceilings.
    for figures_ in (report, *variants.values()):
        assert figures_["forward_delay_us"]["packets"] == figures_["capacity_step"]["sent"]
        assert 0 < figures_["forward_delay_us"]["p50"] <= figures_["forward_delay_us"]["p99"]
    assert all(b["forward_delay_us"] is None for b in baselines.values())
    assert "ceiling_sendmmsg" in stdout


def test_send_only_refused_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert sendonly.refusal() == sendonly.REFUSED
    with pytest.raises(sendonly.Refused, match="needs root"):
        with sendonly.Namespace():
            pass
    monkeypatch.undo()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "needs the `ip` command" in (sendonly.refusal() or "")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root to run the command as another user (setpriv)",
)
def test_send_only_as_another_user_says_why_in_one_line() -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*nobody, sys.executable, "-m", "cli", "bench", "webinar", "--path", "send-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == sendonly.REFUSED


@needs_send_only
def test_send_only_namespace_goes_when_the_device_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No ifb: refused (exit status 2 in `relay bench`), and the namespace made before it
    is removed; one left by a bench that no longer runs is removed by the next."""
    stale = f"{sendonly.NETNS_PREFIX}{_dead_pid()}"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    real = sendonly._ip

    def no_ifb(*args: str) -> str:
        if "ifb" in args:
            raise RuntimeError("Error: Unknown device type.")
        return real(*args)

    monkeypatch.setattr(sendonly, "_ip", no_ifb)
    namespace = sendonly.Namespace()
    try:
        with pytest.raises(sendonly.Refused, match="ifb"):
            namespace.__enter__()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
    names = _namespaces()
    assert namespace.name not in names and stale not in names


def _dead_pid() -> int:
    """A pid no process has now."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@needs_send_only
def test_send_only_sigterm_removes_the_namespace(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "bench", "webinar", "--path", "send-only"]
        # A capacity search of short steps: a signal is taken between two steps' sending.
        + ["--receivers", "20", "--duration", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    name = f"relaybench-{proc.pid}"
    try:
        deadline = time.monotonic() + 30
        while name not in _namespaces():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)  # into the measurement: the relay runs in it
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert name not in _namespaces()


@needs_send_only
def test_send_only_capture_keeps_the_sampled_sequence_numbers() -> None:
    """The capture's filter keeps the copies whose RTP sequence number & mask is 0 and tells
    whom each was for."""
    assert sendonly.sample_mask(1_000) == 0
    assert sendonly.sample_mask(2_000_000) == 511
    with sendonly.Namespace() as ns:
        with ns.inside():
            capture = sendonly.Capture(ns.device, 0x3FF)
            out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            out.bind((ns.host, 0))
            for seq in range(3000):
                rtp = bytes([0x80, 111, seq >> 8, seq & 0xFF]) + bytes(40)
                out.sendto(rtp, (sendonly.receiver_address(seq % 7 + 1), 5000))
            time.sleep(0.1)
            got = [(who, int.from_bytes(data[2:4], "big")) for who, data in capture.take()]
        finally:
            out.close()
        assert got == [(1, 0), (3, 1024), (5, 2048)]
        assert ns.device_packets() == 3000


def test_report_prints_each_targets_median_over_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m bench.report RUN.json ...`: the median of each target's figures and each
    ratio over the runs, with every run's out pps beside it."""
    from bench import report

    def run_of(relay: float, ceiling: float) -> dict[str, Any]:
        def figures(out: float) -> dict[str, Any]:
            return {"out_pps": out, "relay_cpu": 1.0, "out_pps_per_relay_core": out}

        return {
            "scenario": "webinar",
            "receivers": 1000,
            "size": 200,
            "suite": "AES_CM_128_HMAC_SHA1_80",
            **figures(relay),
            "baselines": {"ceiling": figures(ceiling)},
            "ratios": {"out_pps_vs_ceiling": relay / ceiling},
        }

    report.medians([run_of(500_000, 500_000), run_of(600_000, 400_000), run_of(700_000, 350_000)])
    out = capsys.readouterr().out
    assert "medians of 3 runs" in out
    assert "relay     600,000" in out and "500,000, 600,000, 700,000" in out
    assert "ceiling     400,000" in out
    assert "out_pps_vs_ceiling: 1.50 (runs: 1.00, 1.50, 2.00)" in out


def test_ways_refuses_a_target_it_does_not_know() -> None:
    """`python -m bench.ways` (bench/RESULTS.md's send-only rounds) names the known targets."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.ways", "--targets", "relay,relay_teleport"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "relay_teleport" in done.stderr and "relay_xdp" in done.stderr


def test_forwarding_delay_quantiles_interpolate_within_their_bucket() -> None:
    """bench/delay.py reads percentiles from the relay's histogram (ext/delay.pxi): counts
    per bucket by upper edge, linear within a bucket, the +Inf bucket its lower edge."""
    from bench import delay

    counts = {"0.001": 50, "0.002": 40, "0.005": 10, "+Inf": 0}
    assert delay.quantile(counts, 0.25) == pytest.approx(0.0005)
    assert delay.quantile(counts, 0.7) == pytest.approx(0.0015)
    assert delay.quantile(counts, 0.95) == pytest.approx(0.0035)
    assert delay.quantile({"0.001": 0, "+Inf": 0}, 0.5) is None
    assert delay.quantile({"0.001": 1, "+Inf": 9}, 0.99) == 0.001
    assert delay.summary(counts) == {"p50": 1000.0, "p99": 4700.0, "p999": 4970.0, "packets": 100}
    assert delay.difference({"0.001": 5, "+Inf": 1}, {"0.001": 2, "+Inf": 1}) == {
        "0.001": 3,
        "+Inf": 0,
    }


def test_ways_records_how_the_relay_ran_and_no_secret() -> None:
    """bench.ways' JSON keeps the variables the worker's flags default from, never the
    operator token, keys or mail password that RELAY_* also holds."""
    from bench.ways import recorded_environment

    environ = {
        "RELAY_BUSY_POLL": "1000",
        "RELAY_XDP_CHECKSUM": "relay",
        "RELAY_CORE_DIR": "build/old",
        "RELAY_TOKEN": "operator-secret",
        "RELAY_BOX_KEY": "a-key",
        "RELAY_SMTP_URL": "smtps://u:password@mail.example.org",
        "HOME": "/root",
    }
    assert recorded_environment(environ) == {
        "RELAY_XDP_CHECKSUM": "relay",
        "RELAY_BUSY_POLL": "1000",
        "RELAY_CORE_DIR": "build/old",
    }
