"""The processes of one relay node, as `relay serve` runs them (README.md, "Serve it";
docs/ARCHITECTURE.md, "The processes").

`Server` is everything `relay serve` runs, as a library: the command (cli/serve.py), `relay
demo` (cli/demo.py) and bench's joins, soak and expel start it. It imports the two planes and
nothing above them (tests/test_layers.py).

Process layout. The process that holds a `Server` is the supervisor of everything it runs: the
control plane is a child process (`python -m control.server`: the HTTP API, routing, stats, the
store) and so is each worker (`python -m relay.worker`, started by relay/supervisor.py).
Keeping the control plane out of this process is what lets the data plane keep forwarding
while the control plane is killed and restarted: this process notices it is gone and starts it
again, it rebuilds its state from the store, and the workers, which never stopped, pick up its
updates on the same ZeroMQ endpoints.

Start-up is checked, not hoped for: the data directory, the token, the key box and PII keys,
then the control plane (it writes a ready file once its API listens), then the workers (each
writes one once its UDP ports are bound). If anything fails before it is ready, everything
started so far is stopped and `start()` raises `ServeError` with the reason.

ZeroMQ endpoints are IPC sockets in DATA_DIR/run (mode 0700), or in a private temporary
directory when that path is too long for a Unix socket. The workers keep their SRTP state in
DATA_DIR/state. One `relay serve` per data directory: a lock file (flock on
DATA_DIR/serve.lock) refuses a second.

`stop()` stops the workers and the control plane (SIGTERM, then SIGKILL after a grace period);
the store has committed every write as it happened, so nothing is lost. However this process
dies, SIGKILL included, its children end within a second (relay/lifecycle.py), and a `Server`
started again at once on the same data directory first waits for (or ends) any child of its
predecessor still on its way out (DATA_DIR/serve.pids), so that its ports are free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from control import credentials
from control.plane import Endpoints
from control.settings import Settings
from relay import lifecycle
from relay.supervisor import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    STABLE_AFTER,
    Supervisor,
    SupervisorConfig,
    WorkerStartError,
)

log = logging.getLogger("node.serve")

CONTROL_READY_TIMEOUT = 30.0  # seconds for the control plane to open the store and listen
CONTROL_STOP_TIMEOUT = 15.0  # uvicorn finishes requests in flight within 10 s
CHECK_INTERVAL = 0.1
IPC_PATH_MAX = 100  # bytes; a Unix socket path holds 107
CHILDREN_FILE = "serve.pids"  # in the data directory: the pids of the processes started
LEFTOVER_WAIT = 2.0  # seconds a predecessor's children get to finish exiting


class ServeError(RuntimeError):
    """`relay serve` could not start; the message says why."""


def _lock(data_dir: Path) -> IO[bytes]:
    handle = (data_dir / "serve.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ServeError(
            f"another `relay serve` is using {data_dir}; stop it or give another --data-dir"
        ) from None
    return handle


def _run_dir(data_dir: Path) -> tuple[Path, bool]:
    """The directory for the IPC sockets and ready files; True if it is a temporary one."""
    run = data_dir / "run"
    if len(str(run / "snapshot.sock").encode()) <= IPC_PATH_MAX:
        run.mkdir(mode=0o700, exist_ok=True)
        for stale in run.iterdir():
            stale.unlink(missing_ok=True)
        return run, False
    return Path(tempfile.mkdtemp(prefix="relay-")), True


def _ours(pid: int) -> bool:
    """Whether pid is still a process of relay's (the control plane or a worker): a pid the
    kernel handed to someone else since must not be touched."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"control.server" in cmdline or b"relay.worker" in cmdline:
        return True
    # `-m relay worker`: a worker started by a `relay serve` of an earlier version
    return b"relay" in cmdline and b"worker" in cmdline


def _end_leftovers(children: Path) -> None:
    """A predecessor killed outright (SIGKILL, OOM) leaves its children exiting on their own
    (relay/lifecycle.py): wait for them, and end any still there after LEFTOVER_WAIT, so
    that the ports and files they held are free before this server takes them."""
    try:
        pids = [int(line) for line in children.read_text().split()]
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + LEFTOVER_WAIT
    while any(_ours(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if _ours(pid):
            log.warning("pid %d of the previous relay serve is still running; ending it", pid)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    while any(_ours(pid) for pid in pids) and time.monotonic() < deadline + 1.0:
        time.sleep(0.02)


def free_ports(count: int) -> int:
    """An even base port P with UDP P..P+count-1 free, and TCP P+count free, right now: where
    a node on loopback can listen (its media ports from P, its API after them). Below the
    kernel's ephemeral range, so that no client socket takes one meanwhile."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 2)
        held = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(t)
            t.bind(("127.0.0.1", base + count))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free ports on 127.0.0.1")


def endpoints_in(run: Path) -> Endpoints:
    return Endpoints(
        routing=f"ipc://{run}/routing.sock",
        snapshot=f"ipc://{run}/snapshot.sock",
        stats=f"ipc://{run}/stats.sock",
    )


@dataclass
class ControlProcess:
    """The control plane's child process, started again when it dies (with back-off)."""

    settings: Settings
    endpoints: Endpoints
    ready: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    backoff: float = 0.0
    due: float = 0.0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    on_start: Callable[[int], None] = lambda _pid: None  # told each new process's pid

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        env = dict(os.environ)
        env["RELAY_SERVE_SETTINGS"] = json.dumps(self.settings.to_json())
        env["RELAY_SERVE_ENDPOINTS"] = json.dumps(self.endpoints.__dict__)
        env["RELAY_SERVE_READY"] = str(self.ready)
        env.update(self.env)
        self.started_at = time.monotonic()
        self.process = lifecycle.spawn([sys.executable, "-m", "control.server"], env=env)
        self.on_start(self.process.pid)

    def wait_ready(self, timeout: float = CONTROL_READY_TIMEOUT) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.process.poll() is not None:
                raise ServeError(
                    f"the control plane exited with status {self.process.returncode} before "
                    "its API was up (its message is above)"
                )
            if time.monotonic() > deadline:
                raise ServeError(f"the control plane was not up within {timeout:g} s")
            time.sleep(0.02)

    def check(self) -> bool:
        """Start it again if it has exited and its back-off has passed; True if restarted."""
        assert self.process is not None
        if self.process.poll() is None:
            return False
        now = time.monotonic()
        if self.due == 0.0:
            if now - self.started_at < STABLE_AFTER:  # died soon after its start: back off
                self.backoff = min(2 * self.backoff, MAX_BACKOFF) if self.backoff else FIRST_BACKOFF
            else:
                self.backoff = 0.0
            self.due = now + self.backoff
            log.warning(
                "the control plane (pid %d) exited with %s; starting it again in %g s",
                self.process.pid,
                self.process.returncode,
                self.backoff,
            )
        if now < self.due:
            return False
        self.due = 0.0
        self.restarts += 1
        self.start()
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(CONTROL_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("the control plane ignored SIGTERM; killing it")
            self.process.kill()
            self.process.wait()


class Server:
    """Everything `relay serve` runs, as a library: `start()`, then `run()` or `stop()`.
    (`relay demo` and the end-to-end tests use it too.)"""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.data_dir = credentials.ensure_data_dir(settings.data_dir)
        self._lock = _lock(self.data_dir)
        self._children_file = self.data_dir / CHILDREN_FILE
        _end_leftovers(self._children_file)
        self._children: list[int] = []
        self.token, self.token_created = credentials.operator_token(self.data_dir)
        credentials.box_key(self.data_dir)
        credentials.pii_key(self.data_dir)
        self.run_dir, self._temporary_run = _run_dir(self.data_dir)
        self.state_dir = self.data_dir / "state"
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.endpoints = endpoints_in(self.run_dir)
        self.control = ControlProcess(
            settings,
            self.endpoints,
            self.run_dir / "control.ready",
            env=dict(env or {}),
            on_start=self._started,
        )
        self.supervisor = Supervisor(
            SupervisorConfig(
                workers=settings.workers,
                media_host=settings.media_host,
                media_port=settings.media_port,
                control=self.endpoints.routing,
                snapshot=self.endpoints.snapshot,
                stats=self.endpoints.stats,
                ready_dir=self.run_dir,
                state_dir=self.state_dir,
                fanout=tuple(
                    f"ipc://{self.run_dir}/fanout-{i}.sock" for i in range(settings.workers)
                ),
                recordings=self.data_dir / "recordings",
                recording_key=credentials.recording_key_file(self.data_dir),
                certificate=credentials.dtls_certificate(self.data_dir)[0],
                keyframe_interval=settings.keyframe_interval,
                connected_sockets=settings.connected_sockets,
                xdp=settings.xdp,
                xdp_checksum=settings.xdp_checksum,
                busy_poll=settings.busy_poll,
            ),
            on_start=self._started,
        )
        self.stopping = False

    def _started(self, pid: int) -> None:
        """Note a child's pid where a successor would look for leftovers (`_end_leftovers`),
        before anything could kill this process with the child still starting."""
        self._children = [p for p in self._children if _ours(p)] + [pid]
        partial = self._children_file.with_name(CHILDREN_FILE + ".partial")
        partial.write_text("".join(f"{p}\n" for p in self._children))
        partial.replace(self._children_file)

    @property
    def api_url(self) -> str:
        host = self.settings.api_host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{host}:{self.settings.api_port}"

    def start(self) -> None:
        try:
            self.control.start()
            self.control.wait_ready()
            self.supervisor.start()
            self.supervisor.wait_ready()
        except (WorkerStartError, TimeoutError) as exc:
            self.stop()
            raise ServeError(f"{exc} (its message is above)") from None
        except BaseException:
            self.stop()
            raise

    def check(self) -> None:
        """One look at every child: start again what died."""
        self.control.check()
        self.supervisor.check()

    def run(self) -> None:
        """Watch the children until an exception (`lifecycle.Interrupted`, say) ends the
        watch; stop them all either way."""
        try:
            while not self.stopping:
                self.check()
                time.sleep(CHECK_INTERVAL)
        finally:
            self.stop()

    def describe(self) -> str:
        """What this server runs, as the line that reports its stop says it."""
        w = self.settings.workers
        return f"the control plane and {w} worker{'s' if w != 1 else ''}"

    def stop(self) -> None:
        self.stopping = True
        self.supervisor.stop()
        self.control.stop()
        if self._temporary_run:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self._children_file.unlink(missing_ok=True)
        self._lock.close()
