"""The supervisor: W workers on their ports; one killed with -9 is back within a second, takes a
routing snapshot, and its receivers keep decrypting."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import time
from pathlib import Path

import pytest

from bench.relays import free_udp_port
from control.routing import RoutingServer
from relay import wire
from relay.srtp import Session
from relay.supervisor import Supervisor, SupervisorConfig
from tests.conftest import rtp

SUITE = "AES_CM_128_HMAC_SHA1_80"


def free_port_block(count: int) -> int:
    """A port P with P .. P + count - 1 free on 127.0.0.1."""
    for _ in range(50):
        base = free_udp_port()
        socks = []
        try:
            for offset in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports")


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        Supervisor(SupervisorConfig(workers=0))
    with pytest.raises(ValueError):
        Supervisor(SupervisorConfig(workers=2, media_port=65533))


def test_a_killed_worker_is_restarted_and_resumes_from_a_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        pub, snap = f"ipc://{tmp_path}/pub", f"ipc://{tmp_path}/snap"
        server = RoutingServer(pub, snap)
        server.start()
        port = free_port_block(4)
        host_key, listener_key = secrets.token_bytes(30), secrets.token_bytes(30)
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        await server.publish(wire.MeetingOpened(1, "webinar"))
        await server.publish(
            wire.ParticipantJoined(
                1, 1, "host", SUITE, host_key, secrets.token_bytes(30), (wire.Stream(7),)
            )
        )
        await server.publish(
            wire.ParticipantJoined(
                2,
                1,
                "attendee",
                SUITE,
                secrets.token_bytes(30),
                listener_key,
                (),
                listener.getsockname(),
            )
        )
        supervisor = Supervisor(
            SupervisorConfig(workers=2, media_port=port, control=pub, snapshot=snap)
        )
        host = Session(SUITE, host_key)
        rx = Session(SUITE, listener_key)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seq = 0

        async def received_through(worker: int, tries: int = 50) -> bool:
            nonlocal seq
            for _ in range(tries):
                seq += 1
                sender.sendto(host.protect(rtp(seq, ssrc=7)), ("127.0.0.1", port + 2 * worker))
                await asyncio.sleep(0.05)
                try:
                    if rx.unprotect(listener.recv(4096)) == rtp(seq, ssrc=7):
                        return True
                except BlockingIOError:
                    pass
            return False

        supervisor.start()
        try:
            assert await received_through(0)
            assert await received_through(1)  # every worker holds the routing table
            old = supervisor.pids()
            os.kill(old[0], signal.SIGKILL)
            killed_at = time.monotonic()
            while not supervisor.check():
                assert time.monotonic() - killed_at < 1.0, "not restarted within a second"
                await asyncio.sleep(0.02)
            assert supervisor.pids()[0] != old[0] and supervisor.pids()[1] == old[1]
            assert supervisor.restarts == 1
            # The new worker took a snapshot; the listener keeps decrypting with its keys.
            assert await received_through(0)
        finally:
            supervisor.stop()
            await server.close()
            listener.close()
            sender.close()
        assert all(p is not None and p.returncode is not None for p in supervisor.processes)

    asyncio.run(scenario())
