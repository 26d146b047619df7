"""The clone pattern end to end: the control plane's RoutingServer and real worker processes."""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from bench.relays import free_udp_port
from control.routing import RoutingServer, RoutingState
from relay import wire
from relay.srtp import Session
from tests.conftest import rtp

SUITE = "AES_CM_128_HMAC_SHA1_80"
ROOT = Path(__file__).resolve().parent.parent


def random_updates(rng: random.Random, count: int) -> list[wire.Update]:
    updates: list[wire.Update] = []
    joined: list[int] = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.1 or not joined:
            updates.append(wire.MeetingOpened(rng.randint(1, 3), rng.choice(wire.MODES)))
        if roll < 0.5 or not joined:
            pid = 100 + i
            joined.append(pid)
            updates.append(
                wire.ParticipantJoined(
                    pid, rng.randint(1, 3), "panelist", SUITE, bytes(30), bytes(30)
                )
            )
        elif roll < 0.65:
            updates.append(wire.ParticipantLeft(joined.pop(rng.randrange(len(joined)))))
        elif roll < 0.8:
            updates.append(wire.ParticipantMuted(rng.choice(joined), rng.random() < 0.5))
        elif roll < 0.9:
            updates.append(wire.ParticipantEjected(rng.choice(joined)))
        else:
            updates.append(wire.MeetingEnded(rng.randint(1, 3)))
    return updates


@pytest.mark.parametrize("seed", range(5))
def test_snapshot_then_later_updates_equals_a_later_snapshot(seed: int) -> None:
    rng = random.Random(seed)
    updates = random_updates(rng, 200)
    cut = rng.randrange(len(updates))
    early = RoutingState()
    for update in updates[:cut]:
        early.apply(update)
    replica = RoutingState.from_snapshot(wire.decode(wire.encode(early.snapshot())))  # type: ignore[arg-type]
    final = RoutingState()
    for update in updates:
        final.apply(update)
        if final.seq > cut:
            assert replica.apply(update) == final.seq
    assert replica.snapshot() == final.snapshot()
    # The present counts kept as updates came, against a count of everyone.
    for state in (replica, final):
        counted: dict[int, int] = {}
        for p in state.participants.values():
            if p.participant not in state.ejected:
                counted[p.meeting] = counted.get(p.meeting, 0) + 1
        assert {m: n for m, n in state.present.items() if n} == counted


class Client:
    """A participant on loopback: a socket, its keys."""

    def __init__(self, pid: int, role: str, ssrc: int | None = None) -> None:
        self.pid, self.role, self.ssrc = pid, role, ssrc
        self.uplink, self.downlink = secrets.token_bytes(30), secrets.token_bytes(30)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.tx = Session(SUITE, self.uplink)
        self.rx = Session(SUITE, self.downlink)

    def joined(self) -> wire.ParticipantJoined:
        streams = (wire.Stream(self.ssrc),) if self.ssrc is not None else ()
        address = None if self.ssrc is not None else self.sock.getsockname()
        return wire.ParticipantJoined(
            self.pid, 1, self.role, SUITE, self.uplink, self.downlink, streams, address
        )

    def drain(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.rx.unprotect(self.sock.recv(4096)))
            except BlockingIOError:
                return got


async def start_worker(port: int, pub: str, snap: str, tmp: Path) -> asyncio.subprocess.Process:
    ready = tmp / f"ready-{time.monotonic_ns()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli",
        "worker",
        "--media-port",
        str(port),
        "--control",
        pub,
        "--snapshot",
        snap,
        "--ready-file",
        str(ready),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(300):
        if ready.exists():
            return process
        await asyncio.sleep(0.02)
    process.kill()
    raise AssertionError("the worker did not start")


async def media(host: Client, port: int, seq: int, listeners: list[Client]) -> list[int]:
    host.sock.sendto(host.tx.protect(rtp(seq, ssrc=host.ssrc)), ("127.0.0.1", port))
    await asyncio.sleep(0.05)
    return [len(c.drain()) for c in listeners]


def test_worker_takes_a_snapshot_follows_updates_and_resumes_after_kill(tmp_path: Path) -> None:
    async def scenario() -> None:
        pub = f"ipc://{tmp_path}/pub"
        snap = f"ipc://{tmp_path}/snap"
        server = RoutingServer(pub, snap)
        server.start()
        port = free_udp_port()
        host = Client(1, "host", ssrc=0xABC)
        listeners = [Client(2 + i, "attendee") for i in range(3)]
        await server.publish(wire.MeetingOpened(1, "webinar"))
        for c in (host, *listeners):
            await server.publish(c.joined())
        worker = await start_worker(port, pub, snap, tmp_path)
        try:
            seq = 0
            # The worker learnt everything from its snapshot.
            for _ in range(20):
                seq += 1
                if await media(host, port, seq, listeners) == [1, 1, 1]:
                    break
            else:
                raise AssertionError("no media through a worker started from a snapshot")
            # Updates after the snapshot: a newcomer, then a mute.
            late = Client(9, "attendee")
            await server.publish(late.joined())
            await asyncio.sleep(0.1)
            seq += 1
            assert await media(host, port, seq, [*listeners, late]) == [1, 1, 1, 1]
            await server.publish(wire.ParticipantMuted(1, True))
            await asyncio.sleep(0.1)
            seq += 1
            assert await media(host, port, seq, [*listeners, late]) == [0, 0, 0, 0]
            # kill -9; while it is down the host is unmuted and someone is ejected.
            worker.send_signal(signal.SIGKILL)
            await worker.wait()
            await server.publish(wire.ParticipantMuted(1, False))
            await server.publish(wire.ParticipantEjected(listeners[0].pid))
            worker = await start_worker(port, pub, snap, tmp_path)
            for _ in range(20):
                seq += 1
                got = await media(host, port, seq, [*listeners, late])
                if got[1:] == [1, 1, 1]:
                    break
            else:
                raise AssertionError("no media after the restart")
            assert got[0] == 0  # the ejection it missed came with the snapshot
        finally:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
                await worker.wait()
            await server.close()
            for c in (host, *listeners):
                c.sock.close()

    asyncio.run(scenario())


def test_a_gap_in_the_numbers_makes_the_worker_ask_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        pub = f"ipc://{tmp_path}/pub"
        snap = f"ipc://{tmp_path}/snap"
        server = RoutingServer(pub, snap)
        server.start()
        port = free_udp_port()
        host = Client(1, "host", ssrc=0xABC)
        listener = Client(2, "attendee")
        await server.publish(wire.MeetingOpened(1, "webinar"))
        await server.publish(host.joined())
        worker = await start_worker(port, pub, snap, tmp_path)
        try:
            await asyncio.sleep(0.3)
            # An update the worker never sees (applied to the state, not published) ...
            server.state.apply(listener.joined())
            # ... then one it does: its number skips one, so it asks for a snapshot.
            await server.publish(wire.ParticipantMuted(1, False))
            for seq in range(1, 40):
                if await media(host, port, seq, [listener]) == [1]:
                    break
            else:
                raise AssertionError("the worker did not recover from the gap")
        finally:
            worker.send_signal(signal.SIGTERM)
            await worker.wait()
            await server.close()

    asyncio.run(scenario())


def test_a_heartbeat_past_the_last_update_asks_for_a_snapshot() -> None:
    from relay.routes import RouteReplica

    class Table:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def open_meeting(self, meeting: int, mode: str) -> None:
            self.calls.append(f"open {meeting}")

        def ledger_prune(self) -> int:
            return 0

    replica = RouteReplica(Table())
    replica.apply_snapshot(wire.Snapshot(5))
    assert replica.apply(5, wire.Heartbeat()) and not replica.needs_snapshot
    assert replica.apply(6, wire.MeetingOpened(1)) and replica.seq == 6
    assert replica.apply(6, wire.Heartbeat()) and replica.seq == 6
    assert not replica.apply(8, wire.Heartbeat())  # update 7 never arrived
    assert replica.needs_snapshot and replica.seq == 6
    assert wire.decode(wire.encode(wire.Heartbeat())) == wire.Heartbeat()


def test_the_journal_keeps_no_key_and_no_address() -> None:
    """A join's keys, where it receives and the IP it came from stay out of the store."""
    import json

    from control.routing import journal_body

    joined = wire.ParticipantJoined(
        7,
        1,
        "attendee",
        "AES_CM_128_HMAC_SHA1_80",
        b"u" * 30,
        b"d" * 30,
        address=("198.51.100.7", 5004),
        source_hint="203.0.113.9",
    )
    body = journal_body(joined)
    for secret in ("dXV1", "ZGRk", "198.51.100.7", "203.0.113.9"):
        assert secret not in body
    assert json.loads(body)["participant"] == 7
