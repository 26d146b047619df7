"""Starts W worker processes and keeps them running: no media logic here.

Worker i serves media port PORT + 2i (and PORT + 2i + 1 for RTCP without rtcp-mux). A worker
that dies is started again within a second; the new one asks the control plane for a routing
snapshot and resumes its participants (relay/worker.py). stop() ends them all: SIGTERM, then
SIGKILL for any that has not exited in time.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("relay.supervisor")

CHECK_INTERVAL = 0.1  # seconds between looks at the workers
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit after SIGTERM


@dataclass
class SupervisorConfig:
    workers: int
    media_host: str = "127.0.0.1"
    media_port: int = 40000
    control: str | None = None  # ZeroMQ endpoint publishing routing updates
    snapshot: str | None = None  # ZeroMQ endpoint answering snapshot requests
    stats: str | None = None  # ZeroMQ endpoint the workers push counters to
    python: str = field(default=sys.executable)


class Supervisor:
    def __init__(self, config: SupervisorConfig) -> None:
        if config.workers < 1:
            raise ValueError("at least one worker")
        if config.media_port + 2 * config.workers > 65536:
            raise ValueError(
                f"media ports {config.media_port}..{config.media_port + 2 * config.workers - 1} "
                "run past 65535"
            )
        self.config = config
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * config.workers
        self.restarts = 0
        self.stopping = False

    def command(self, index: int) -> list[str]:
        c = self.config
        cmd = [
            c.python,
            "-m",
            "relay",
            "worker",
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
        return cmd

    def start(self) -> None:
        for index in range(self.config.workers):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        process = subprocess.Popen(self.command(index), stdout=subprocess.DEVNULL)
        self.processes[index] = process
        log.info(
            "worker %d started (pid %d) on port %d",
            index,
            process.pid,
            self.config.media_port + 2 * index,
        )

    def check(self) -> list[int]:
        """Start again every worker that has exited; returns their indexes."""
        restarted = []
        for index, process in enumerate(self.processes):
            if self.stopping or process is None or process.poll() is None:
                continue
            log.warning(
                "worker %d (pid %d) exited with %s; starting it again",
                index,
                process.pid,
                process.returncode,
            )
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
