"""How fast an expel reaches the fast path: from the moment the control plane publishes
ParticipantEjected to the last packet that still reaches the expelled participant.

A real worker on loopback takes its routing from a RoutingServer (control/routing.py), as under
`relay serve`. A presenter streams at a steady rate to two attendees; in each trial a fresh
attendee joins, receives for a while, and is expelled while the other keeps listening.

    python -m bench.expel --trials 50 --rate 2000

The HTTP layer adds its own time before it publishes (a database write); this measures the
part after it, which the design says must be milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.run import free_udp_port
from control.routing import RoutingServer
from relay import wire
from relay.srtp import Session

SUITE = "AES_CM_128_HMAC_SHA1_80"
SSRC = 0x5EED


class Listener:
    """An attendee: a socket and a thread that timestamps what arrives."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.uplink, self.downlink = secrets.token_bytes(30), secrets.token_bytes(30)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.arrivals: list[float] = []
        self.running = True
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while self.running:
            try:
                self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.arrivals.append(time.monotonic())

    def joined(self) -> wire.ParticipantJoined:
        return wire.ParticipantJoined(
            self.pid, 1, "attendee", SUITE, self.uplink, self.downlink, (), self.sock.getsockname()
        )

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


class Presenter:
    """Streams protected packets to the relay from its own thread at `rate` per second."""

    def __init__(self, port: int, rate: float) -> None:
        self.uplink = secrets.token_bytes(30)
        self.session = Session(SUITE, self.uplink)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.port, self.interval = port, 1.0 / rate
        self.running = True
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        seq = 0
        next_at = time.monotonic()
        while self.running:
            header = bytes([0x80, 111, (seq >> 8) & 0xFF, seq & 0xFF]) + bytes(4)
            self.sock.sendto(
                self.session.protect(header + SSRC.to_bytes(4, "big") + bytes(160)),
                ("127.0.0.1", self.port),
            )
            seq = (seq + 1) & 0xFFFF
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


async def measure(trials: int, rate: float, workdir: Path) -> list[float]:
    server = RoutingServer(f"ipc://{workdir}/pub", f"ipc://{workdir}/snap")
    server.start()
    port = free_udp_port()
    presenter = Presenter(port, rate)
    witness = Listener(2)
    await server.publish(wire.MeetingOpened(1, "webinar"))
    await server.publish(
        wire.ParticipantJoined(
            1, 1, "host", SUITE, presenter.uplink, secrets.token_bytes(30), (wire.Stream(SSRC),)
        )
    )
    await server.publish(witness.joined())
    ready = workdir / "worker.ready"
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "worker",
        "--media-port",
        str(port),
        "--control",
        f"ipc://{workdir}/pub",
        "--snapshot",
        f"ipc://{workdir}/snap",
        "--ready-file",
        str(ready),
        stdout=asyncio.subprocess.DEVNULL,
    )
    delays: list[float] = []
    try:
        while not ready.exists():
            await asyncio.sleep(0.01)
        presenter.thread.start()
        for trial in range(trials):
            victim = Listener(100 + trial)
            await server.publish(victim.joined())
            while len(victim.arrivals) < 20:
                await asyncio.sleep(0.005)
            before = len(witness.arrivals)
            published = time.monotonic()
            await server.publish(wire.ParticipantEjected(victim.pid))
            await asyncio.sleep(0.2)
            last = victim.arrivals[-1]
            victim.close()
            if len(witness.arrivals) - before < rate * 0.1:
                raise RuntimeError("the other attendee stopped receiving")
            delays.append(max(0.0, last - published) * 1000)
            await server.publish(wire.ParticipantLeft(victim.pid))
    finally:
        presenter.close()
        witness.close()
        worker.terminate()
        await worker.wait()
        await server.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="presenter packets per second: the resolution of the measure",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="relay-expel-") as tmp:
        delays = asyncio.run(measure(args.trials, args.rate, Path(tmp)))
    ms = np.array(delays)
    print(
        f"expel -> last packet to the expelled attendee, {len(ms)} trials at "
        f"{args.rate:g} packets/s (resolution {1000 / args.rate:.1f} ms):"
    )
    print(
        f"  p50 {np.percentile(ms, 50):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
        f"max {ms.max():.2f} ms, mean {statistics.fmean(ms):.2f} ms"
    )


if __name__ == "__main__":
    main()
