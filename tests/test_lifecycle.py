"""No orphans: every process `relay serve`, `relay demo` and `relay bench` start ends with
them, however they end (relay/lifecycle.py).

Each command runs in a session of its own, so its process group holds it and everything it
started. It is interrupted (SIGINT, SIGTERM) or killed (SIGKILL) at moments drawn at random
over its phases; afterwards no process of that group may remain, every port it used must be
free, and its temporary directories must be gone. An interrupted command says what it stopped
in one line, without a traceback, and exits with 128 + the signal's number.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.serve import free_ports
from relay import lifecycle

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

ROOT = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("RELAY_TEST_SEED", time.time_ns() % 100_000))


def processes() -> Iterator[tuple[int, list[str], Path]]:
    """Every process now: its pid, the fields of its /proc stat after its name (state, ppid,
    pgrp, ...) and its /proc directory."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'
        yield int(entry.name), stat[stat.rindex(")") + 2 :].split(), entry


def group_members(pgid: int) -> list[int]:
    """The pids of the processes in process group `pgid` (zombies excluded: they hold nothing)."""
    return [pid for pid, fields, _ in processes() if int(fields[2]) == pgid and fields[0] != "Z"]


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for its reaper holds nothing: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_group_gone(pgid: int, limit: float) -> list[int]:
    deadline = time.monotonic() + limit
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def tcp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(args: list[str], tmp: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("RELAY_TOKEN", "RELAY_CONFIG")}
    env["TMPDIR"] = str(tmp)  # every temporary directory of the command lands here
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,  # its own process group: pgid == pid
        )


def interrupt_and_check(
    process: subprocess.Popen[bytes],
    signo: int,
    log: Path,
    tmp: Path,
    udp_ports: list[int],
    tcp_ports: list[int],
    what: str,
) -> None:
    pgid = process.pid
    if signo == signal.SIGKILL:
        os.kill(process.pid, signo)  # the parent alone: its children must follow it
    else:
        os.killpg(pgid, signo)  # as a terminal's Ctrl-C reaches the whole group
    status = process.wait(60)
    left = wait_group_gone(pgid, 1.5)
    output = log.read_text(errors="replace")
    assert not left, f"{what}: processes {left} outlived it ({output[-2000:]})"
    if signo == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:
        assert status in (0, 128 + signo), f"{what}: exit status {status}\n{output[-3000:]}"
        assert "Traceback" not in output, f"{what}:\n{output[-3000:]}"
        if status:
            lines = [line for line in output.splitlines() if "stopped by" in line]
            assert len(lines) == 1, f"{what}: {output[-2000:]}"
            assert signal.Signals(signo).name in lines[0]
        assert [p.name for p in tmp.iterdir()] == [], f"{what}: temporary files left"
    assert all(udp_free(p) for p in udp_ports), f"{what}: a UDP port is still taken"
    assert all(tcp_free(p) for p in tcp_ports), f"{what}: a TCP port is still taken"


# --- the building block ----------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    from relay import lifecycle
    grandchild = subprocess.Popen(
        [sys.executable, "-c",
         "from relay import lifecycle; import time; lifecycle.bind_to_parent(); "
         "print('bound', flush=True); time.sleep(60)"],
        env=lifecycle.child_env(), stdout=subprocess.PIPE, text=True)
    print(grandchild.pid, grandchild.stdout.readline().strip(), flush=True)
    time.sleep(60)
    """
)


def test_a_child_ends_within_a_second_of_its_parent_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert parent.stdout is not None
    pid, state = parent.stdout.readline().split()
    assert state == "bound"
    assert alive(int(pid))  # while its parent is
    parent.kill()
    parent.wait()
    killed_at = time.monotonic()
    while time.monotonic() - killed_at < 1.0:
        if not alive(int(pid)):
            break
        time.sleep(0.01)
    else:
        os.kill(int(pid), signal.SIGKILL)
        raise AssertionError("the grandchild outlived its parent by a second")


def test_a_child_whose_parent_died_before_it_bound_exits_at_once() -> None:
    """The race PR_SET_PDEATHSIG leaves open: the parent dies before the child asks."""
    env = dict(os.environ, **{lifecycle.PARENT_ENV: "1"})  # not our parent's pid
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from relay import lifecycle; lifecycle.bind_to_parent(); print('still here')",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == lifecycle.EXIT_ORPHANED
    assert "still here" not in done.stdout


def test_a_child_takes_no_sigint_even_while_its_interpreter_starts() -> None:
    """Ctrl-C reaches the whole process group; a child still importing its modules must not
    die of it (and print half a traceback): it is started with SIGINT blocked."""
    child = lifecycle.spawn(
        [sys.executable, "-c", "import time; time.sleep(0.5); print('done', flush=True)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    for _ in range(20):  # from its first instants on
        os.kill(child.pid, signal.SIGINT)
        time.sleep(0.005)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0 and out.strip() == "done", err
    assert "Traceback" not in err


# --- the commands, interrupted at random moments ---------------------------------------------


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_relay_serve_leaves_nothing_behind(tmp_path: Path, signo: int) -> None:
    rng = random.Random(SEED + signo)
    base = free_ports(4)
    api = base + 4
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--workers", "2"]
    args += ["--api", f"127.0.0.1:{api}", "--media-port", str(base)]
    for attempt in range(2):
        tmp = tmp_path / f"tmp-{attempt}"
        tmp.mkdir()
        log = tmp_path / f"serve-{attempt}.log"
        process = start(args, tmp, log)
        # From its first lines to well after it is up (about 2 s here). Before 0.1 s the
        # interpreter itself is starting, before any line of relay's could take a signal.
        delay = rng.uniform(0.1, 4.0)
        time.sleep(delay)
        interrupt_and_check(
            process,
            signo,
            log,
            tmp,
            list(range(base, base + 4)),
            [api],
            f"relay serve, {signal.Signals(signo).name} after {delay:.2f} s (seed {SEED})",
        )


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_relay_demo_leaves_nothing_behind(tmp_path: Path, signo: int) -> None:
    rng = random.Random(SEED + 100 + signo)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "demo.log"
    process = start(["demo", "--attendees", "50", "--seconds", "3"], tmp, log)
    # Starting, joining, measuring, ending: the whole demo takes about 7 s here.
    delay = rng.uniform(0.2, 7.0)
    time.sleep(delay)
    what = f"relay demo, {signal.Signals(signo).name} after {delay:.2f} s (seed {SEED})"
    interrupt_and_check(process, signo, log, tmp, [], [], what)
    if signo == signal.SIGKILL:
        # Killed outright it cannot remove its directories (the demo's, and the server's
        # socket directory when the demo's path is too long for Unix sockets); its processes
        # are gone all the same.
        for leftover in tmp.iterdir():
            assert leftover.name.startswith("relay-")


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_relay_bench_leaves_nothing_behind(tmp_path: Path, signo: int) -> None:
    rng = random.Random(SEED + 200 + signo)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "bench.log"
    args = ["bench", "webinar", "--receivers", "20", "--duration", "0.3", "--compare"]
    process = start(args, tmp, log)
    delay = rng.uniform(0.5, 6.0)
    time.sleep(delay)
    what = f"relay bench, {signal.Signals(signo).name} after {delay:.2f} s (seed {SEED})"
    interrupt_and_check(process, signo, log, tmp, [], [], what)


def children_running(parent: int, module: str) -> list[int]:
    """The pids of `parent`'s children whose command line names `module`."""
    found = []
    for pid, fields, entry in processes():
        if int(fields[1]) != parent:
            continue
        try:
            if module.encode() in (entry / "cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_the_control_plane_killed_with_serve_while_still_importing_ends_at_once(
    tmp_path: Path,
) -> None:
    """`relay serve` SIGKILLed the moment its control plane's process exists: that process is
    still importing (a second or more on a loaded host), and binds itself to its parent before
    those imports (control/server.py), so it ends at once rather than when they are done."""
    base = free_ports(4)
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--workers", "1"]
    process = start(
        [*args, "--api", f"127.0.0.1:{base + 4}", "--media-port", str(base)],
        tmp_path,
        tmp_path / "serve.log",
    )
    deadline = time.monotonic() + 30
    while not (found := children_running(process.pid, "control.server")):
        assert process.poll() is None and time.monotonic() < deadline, "no control plane"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    killed = time.monotonic()
    while alive(found[0]) and time.monotonic() - killed < 5:
        time.sleep(0.005)
    outlived = time.monotonic() - killed
    assert outlived < 0.5, f"the control plane outlived relay serve by {outlived:.2f} s"
    assert wait_group_gone(process.pid, 1.5) == []
