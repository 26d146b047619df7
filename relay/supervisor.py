"""Starts W worker processes and keeps them running: no media logic here.

Worker i serves media port PORT + 2i (and PORT + 2i + 1 for RTCP without rtcp-mux). A worker
that dies is started again within a second; the new one asks the control plane for a routing
snapshot and resumes its participants (relay/worker.py). stop() ends them all: SIGTERM, then
SIGKILL for any that has not exited in time.

A worker that dies again soon after it was started (a port someone else took, a broken
install) is not restarted in a tight loop: each quick death doubles the wait before the next
start, up to MAX_BACKOFF seconds; a worker that ran for STABLE_AFTER seconds starts over at no
wait. With `ready_dir`, each worker writes `worker-<i>.ready` once its sockets are bound, and
`wait_ready` tells a start that worked from one that did not. With `state_dir`, worker i keeps
its SRTP state there (`worker-<i>.state`), where the next start of the worker, or of the whole
server, finds it.

Workers are started with `lifecycle.child_env()`: each ends within a second of the process
that started it, however that process ends (relay/lifecycle.py).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relay import lifecycle

log = logging.getLogger("relay.supervisor")

CHECK_INTERVAL = 0.1  # seconds between looks at the workers
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit after SIGTERM
STABLE_AFTER = 10.0  # seconds: a worker that ran this long died of something new
FIRST_BACKOFF = 0.25  # seconds before restarting a worker that died soon after its start
MAX_BACKOFF = 30.0  # seconds: the longest wait before starting a worker that keeps dying


@dataclass
class SupervisorConfig:
    workers: int
    media_host: str = "127.0.0.1"
    media_port: int = 40000
    control: str | None = None  # ZeroMQ endpoint publishing routing updates
    snapshot: str | None = None  # ZeroMQ endpoint answering snapshot requests
    stats: str | None = None  # ZeroMQ endpoint the workers push counters to
    ready_dir: Path | None = None  # worker-<i>.ready once bound
    state_dir: Path | None = None  # worker-<i>.state: SRTP state kept across restarts
    fanout: tuple[str, ...] = ()  # every worker's endpoint for packets between workers
    recordings: Path | None = None  # where recorded meetings go, and the key that seals them
    recording_key: Path | None = None
    certificate: Path | None = None  # the node's DTLS certificate: workers connect WebRTC peers
    keyframe_interval: float | None = None  # seconds between keyframe requests to a stream
    connected_sockets: int | None = None  # receivers per worker with a connected socket
    xdp: str = ""  # the interface of the AF_XDP path; each worker binds the queue of its index
    xdp_checksum: str = "auto"  # who computes the AF_XDP frames' UDP checksums
    busy_poll: int = 0  # microseconds a worker polls without sleeping after media; 0: off
    python: str = field(default=sys.executable)


class WorkerStartError(RuntimeError):
    """A worker exited before it was ready (its own message went to stderr)."""


class Supervisor:
    def __init__(
        self, config: SupervisorConfig, on_start: Callable[[int], None] = lambda _pid: None
    ) -> None:
        if config.workers < 1:
            raise ValueError("at least one worker")
        if config.media_port + 2 * config.workers > 65536:
            raise ValueError(
                f"media ports {config.media_port}..{config.media_port + 2 * config.workers - 1} "
                "run past 65535"
            )
        self.config = config
        self.on_start = on_start  # told each new worker's pid
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * config.workers
        self.started_at = [0.0] * config.workers
        self.backoff = [0.0] * config.workers  # seconds to wait before the next start
        self.due = [0.0] * config.workers  # when a dead worker may be started again
        self.restarts = 0
        self.stopping = False

    def ready_file(self, index: int) -> Path | None:
        d = self.config.ready_dir
        return None if d is None else d / f"worker-{index}.ready"

    def command(self, index: int) -> list[str]:
        c = self.config
        cmd = [
            c.python,
            "-m",
            "relay.worker",
            "--index",
            str(index),
            "--media-host",
            c.media_host,
            "--media-port",
            str(c.media_port + 2 * index),
        ]
        for flag, value in (
            ("--control", c.control),
            ("--snapshot", c.snapshot),
            ("--stats", c.stats),
        ):
            if value:
                cmd += [flag, value]
        ready = self.ready_file(index)
        if ready is not None:
            assert c.ready_dir is not None
            cmd += ["--ready-file", str(ready)]
        state_dir = c.state_dir or c.ready_dir
        if state_dir is not None:
            cmd += ["--state-file", str(state_dir / f"worker-{index}.state")]
        if len(c.fanout) > 1:
            cmd += ["--fanout", ",".join(c.fanout)]
        if c.recordings is not None and c.recording_key is not None:
            cmd += ["--recordings", str(c.recordings), "--recording-key", str(c.recording_key)]
        if c.certificate is not None:
            cmd += ["--certificate", str(c.certificate)]
        if c.keyframe_interval is not None:
            cmd += ["--keyframe-interval", repr(c.keyframe_interval)]
        if c.connected_sockets is not None:
            cmd += ["--connected-sockets", str(c.connected_sockets)]
        if c.xdp:
            cmd += ["--xdp", c.xdp, "--xdp-queue", str(index), "--xdp-checksum", c.xdp_checksum]
        # Always said: a worker would otherwise take RELAY_BUSY_POLL from the environment it
        # inherits, where the server's own setting may have come from a flag that overrides it.
        cmd += ["--busy-poll", str(c.busy_poll)]
        return cmd

    def start(self) -> None:
        for index in range(self.config.workers):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        ready = self.ready_file(index)
        if ready is not None:
            ready.unlink(missing_ok=True)
        self.started_at[index] = time.monotonic()
        process = lifecycle.spawn(self.command(index), stdout=subprocess.DEVNULL)
        self.processes[index] = process
        self.on_start(process.pid)
        log.info(
            "worker %d started (pid %d) on port %d",
            index,
            process.pid,
            self.config.media_port + 2 * index,
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until every worker has written its ready file (needs ready_dir);
        WorkerStartError if one exits first, TimeoutError if one takes longer than timeout."""
        deadline = time.monotonic() + timeout
        for index, process in enumerate(self.processes):
            ready = self.ready_file(index)
            assert process is not None and ready is not None, "start() with a ready_dir first"
            while not ready.exists():
                if process.poll() is not None:
                    raise WorkerStartError(
                        f"worker {index} (port {self.config.media_port + 2 * index}) exited "
                        f"with status {process.returncode} before it was ready"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {index} was not ready within {timeout:g} s")
                time.sleep(0.02)

    def check(self) -> list[int]:
        """Start again every worker that has exited (once its back-off has passed);
        returns their indexes."""
        restarted = []
        now = time.monotonic()
        for index, process in enumerate(self.processes):
            if self.stopping or process is None or process.poll() is None:
                continue
            if self.due[index] == 0.0:  # just noticed: decide when to start it again
                ran = now - self.started_at[index]
                quick = ran < STABLE_AFTER
                previous = self.backoff[index]
                self.backoff[index] = (
                    (min(2 * previous, MAX_BACKOFF) if previous else FIRST_BACKOFF)
                    if quick
                    else 0.0
                )
                self.due[index] = now + self.backoff[index]
                log.warning(
                    "worker %d (pid %d) exited with %s after %.1f s; starting it again%s",
                    index,
                    process.pid,
                    process.returncode,
                    ran,
                    f" in {self.backoff[index]:g} s" if self.backoff[index] else "",
                )
            if now < self.due[index]:
                continue
            self.due[index] = 0.0
            self._spawn(index)
            self.restarts += 1
            restarted.append(index)
        return restarted

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None]

    def stop(self) -> None:
        self.stopping = True
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            if process is None:
                continue
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()

    def run_until(self, stopped: Callable[[], bool]) -> None:
        """Watch the workers until stopped() is true, then stop them."""
        try:
            while not stopped():
                self.check()
                time.sleep(CHECK_INTERVAL)
        finally:
            self.stop()
