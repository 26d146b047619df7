"""The relays under test as processes, for `relay bench` (bench/run.py): the relay itself
(W workers over a routing table file), the C ceilings and the Python baseline, each started on
loopback with the same table (on the send-only path inside the bench's network namespace,
bound to the ifb device's address: bench/sendonly.py); free ports for them; their counters
combined.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relay import lifecycle


def free_udp_port(pairs: bool = True) -> int:
    """A port P with P (and P+1) free on 127.0.0.1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if not pairs or port >= 65535:
                return int(port)
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("127.0.0.1", port + 1))
                    return int(port)
            except OSError:
                continue
    raise RuntimeError("no free UDP port pair")


def free_udp_ports(count: int) -> int:
    """A port P with P .. P+count-1 free on 127.0.0.1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port + count - 1 > 65535:
                continue
            others: list[socket.socket] = []
            try:
                for k in range(1, count):
                    others.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    others[-1].bind(("127.0.0.1", port + k))
                return port
            except OSError:
                continue
            finally:
                for sock in others:
                    sock.close()
    raise RuntimeError(f"no {count} free consecutive UDP ports")


# Targets that are another target in another way of sending (the send-only path compares
# them, bench/sendonly.py): the relay as it sent before UDP GSO (a datagram per copy, one
# sendmmsg per batch), with connected per-receiver sockets (ext/connected.pxi) with and
# without GSO, through AF_XDP frames on the bench's device (ext/xdp.pxi); and the C ceilings
# in those ways (their default is the relay's).
FORMS = {
    "relay_sendmmsg": "relay",
    "relay_connected": "relay",
    "relay_connected_only": "relay",
    "relay_xdp": "relay",
    "ceiling_sendmmsg": "ceiling",
    "ceiling_connected": "ceiling",
    "ceiling_xdp": "ceiling",
    "io_ceiling_xdp": "io_ceiling",
}
XDP_DEVICE = "rbench0"  # the send-only path's device (bench/sendonly.py, DEVICE)
# The C ceiling's flags of each form (bench/ceiling_relay.py): by default it groups a burst's
# copies (UDP GSO) from one unconnected socket, as the relay does by default.
CEILING_FORM_FLAGS = {
    "ceiling_sendmmsg": ["--no-gso"],
    "ceiling_connected": ["--connected", "--no-gso"],
    "ceiling_xdp": ["--xdp", XDP_DEVICE],
    "io_ceiling_xdp": ["--xdp", XDP_DEVICE],
}
# The relay worker's flags of each form (relay/worker.py), whatever RELAY_CONNECTED_SOCKETS
# and RELAY_GSO say; the relay itself runs as configured (its defaults, or those variables).
CONNECTED = ["--connected-sockets", "100000"]
RELAY_FORM_FLAGS = {
    "relay_sendmmsg": ["--connected-sockets", "0", "--no-gso"],
    "relay_connected": CONNECTED,
    "relay_connected_only": [*CONNECTED, "--no-gso"],
    "relay_xdp": ["--connected-sockets", "0", "--xdp", XDP_DEVICE],
}
LOOPBACK = "127.0.0.1"


def base_target(target: str) -> str:
    """The program target runs: relay, ceiling, io_ceiling, python or python_uvloop."""
    return FORMS.get(target, target)


def relay_command(
    target: str,
    table: Path,
    port: int,
    ready: Path,
    worker: int | None = None,
    fanout: list[str] | None = None,
    state: Path | None = None,
    host: str = LOOPBACK,
    stats: str | None = None,
) -> list[str]:
    """The command line of one process of target, listening on host:port. With worker (one
    process of W): the relay's worker `worker`, passing packets to the others over the
    ZeroMQ endpoints `fanout`, or a ceiling serving only the receivers homed on `worker`.
    With `state`, the relay runs as `relay serve` runs it: with its SRTP state on disk there
    (the ledger of index reservations, relay/ledger.py). With `stats`, the relay's worker
    pushes its counters there every second (bench/delay.py reads them). The forms of the relay
    and the ceiling (FORMS) add RELAY_FORM_FLAGS' and CEILING_FORM_FLAGS'."""
    py = sys.executable
    kind = base_target(target)
    if kind == "relay":
        cmd = [
            py,
            "-m",
            "relay.worker",
            "--table",
            str(table),
            "--media-port",
            str(port),
            "--ready-file",
            str(ready),
        ]
        if host != LOOPBACK:
            cmd += ["--media-host", host]
        cmd += RELAY_FORM_FLAGS.get(target, [])
        if state is not None:
            cmd += ["--state-file", str(state / f"worker-{worker or 0}.state")]
        if worker is not None:
            cmd += ["--index", str(worker), "--fanout", ",".join(fanout or [])]
        if stats is not None:
            cmd += ["--stats", stats]
        return cmd
    if kind in ("ceiling", "io_ceiling"):
        cmd = [
            py,
            "-m",
            "bench.ceiling_relay",
            "--table",
            str(table),
            "--port",
            str(port),
            "--ready-file",
            str(ready),
        ]
        if host != LOOPBACK:
            cmd += ["--host", host]
        cmd += CEILING_FORM_FLAGS.get(target, [])
        if worker is not None:
            cmd += ["--worker", str(worker)]
        return cmd + (["--no-crypto"] if kind == "io_ceiling" else [])
    if kind in ("python", "python_uvloop"):
        cmd = [
            py,
            "-m",
            "bench.pyrelay",
            "--table",
            str(table),
            "--port",
            str(port),
            "--ready-file",
            str(ready),
            "--loop",
            "uvloop" if kind == "python_uvloop" else "asyncio",
        ]
        return cmd + (["--host", host] if host != LOOPBACK else [])
    raise ValueError(f"unknown target {target!r}")


class RelayGroup:
    """A target's processes: one, or with processes = W one per worker, worker i on port + 2i
    (its routing table says whom it serves). `host`: as relay_command's; `wrap`
    turns each command line into the one that runs it (bench/sendonly.py: inside the bench's
    network namespace); `stats`: as relay_command's, for a group of one process."""

    def __init__(
        self,
        target: str,
        table: Path,
        port: int,
        workdir: Path,
        processes: int = 1,
        *,
        host: str = LOOPBACK,
        wrap: Callable[[Sequence[str]], list[str]] | None = None,
        stats: str | None = None,
    ) -> None:
        self.target = target
        self.procs: list[subprocess.Popen[str]] = []
        fanout = (
            [f"ipc://{workdir}/fanout-{i}.sock" for i in range(processes)]
            if processes > 1 and base_target(target) == "relay"
            else None
        )
        readies = []
        # The relay's SRTP state, its own for each start: a ledger left by another target
        # would be another relay's history of these keys.
        state = Path(tempfile.mkdtemp(prefix=f"{target}-state-", dir=workdir))
        try:
            for i in range(processes):
                ready = workdir / (f"{target}.ready" if processes == 1 else f"{target}-{i}.ready")
                ready.unlink(missing_ok=True)
                readies.append(ready)
                command = relay_command(
                    target,
                    table,
                    port + 2 * i,
                    ready,
                    worker=i if processes > 1 else None,
                    fanout=fanout,
                    state=state,
                    host=host,
                    stats=stats,
                )
                if wrap is not None:
                    command = wrap(command)
                self.procs.append(
                    lifecycle.spawn(
                        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    )
                )
            deadline = time.monotonic() + 30
            for i, (proc, ready) in enumerate(zip(self.procs, readies, strict=True)):
                while not ready.exists():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = (
                            proc.communicate(timeout=5)[1]
                            if proc.poll() is not None
                            else "did not become ready in 30 s"
                        )
                        which = f" worker {i}" if processes > 1 else ""
                        raise RuntimeError(
                            f"{target} relay{which} failed to start: {err.strip()[-2000:]}"
                        )
                    time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def cpu_each(self) -> list[float]:
        """CPU seconds of each process so far."""
        return [process_cpu_seconds(proc.pid) for proc in self.procs]

    def cpu_seconds(self) -> float:
        return sum(self.cpu_each())

    def stop(self) -> dict[str, Any]:
        """Stops every process; their counters (what each printed last), combined."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        counters = []
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            lines = [line for line in (out or "").splitlines() if line.startswith("{")]
            counters.append(json.loads(lines[-1]) if lines else {})
        return combine_counters(counters)


def combine_counters(counters: list[dict[str, Any]]) -> dict[str, Any]:
    """One process's counters as they are; several: the totals of their counts (numbers, and
    dicts of numbers such as drops by reason) and each process's own under `per_worker`."""
    if len(counters) == 1:
        return counters[0]
    total: dict[str, Any] = {}
    for c in counters:
        for key, value in c.items():
            if key in NOT_SUMMED:
                continue
            if isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
            ):
                into = total.setdefault(key, {})
                for k, v in value.items():
                    into[k] = into.get(k, 0) + v
    total["per_worker"] = [{"worker": i, **c} for i, c in enumerate(counters)]
    return total


NOT_SUMMED = ("seconds", "senders")  # figures of each process, not counts to add up


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (proc(5): utime, stime)."""
    fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields_[11]) / tick, int(fields_[12]) / tick


def process_cpu_seconds(pid: int) -> float:
    return sum(process_cpu_split(pid))
