"""Baseline (c) for `relay bench --compare`: a pure-Python asyncio SRTP relay.

This is the relay a competent Python developer would write with only the per-packet
`relay.srtp` API and asyncio: one UDP socket, one `datagram_received` call per packet, one
`unprotect` per packet in and one `protect` plus one `sendto` per receiver out. It exists so the
benchmark can show what the project's native forwarding loop (batched, nogil, recvmmsg and
sendmmsg) buys over the obvious approach, with the same crypto underneath.

It is therefore written plainly on purpose: dictionaries for lookups, a dataclass per
participant, asyncio's own event loop (`--loop uvloop` runs it on uvloop, the faster loop a
Python developer who cares about throughput might pick; `relay bench --compare` measures both),
large socket buffers, and no micro-optimisation tricks (no batching, no method caching
into locals, no threads). It is not a production relay: the routing table is read once from a
file and never updated, and sequence numbers are forwarded unchanged (each receiver's tx Session
tracks the ROC on its own).

Behaviour, matching the real relay where it matters for a fair comparison:

- RTP and RTCP share the port (RFC 5761 demux on the second byte).
- RTP: SSRC -> participant, unprotect with its uplink key, drop media from attendees of a
  webinar, then protect with each other participant's downlink key and send it there.
- RTCP: sender reports are forwarded the same way; everything else (receiver reports, ...) is
  consumed and counted as `rtcp_terminated`.
- A participant's address comes from the table or is latched from the first packet that
  authenticates with its uplink key; authenticated RTP from a new address moves it. SRTCP only
  latches an address that is still unknown (clients such as ffmpeg send SRTCP from port+1).
  Packets that fail authentication or the replay check never change any state.

    python -m bench.pyrelay --table FILE --port PORT [--host 127.0.0.1] [--ready-file PATH]
        [--duration SECONDS]

On exit (SIGTERM, SIGINT or after --duration) it prints one JSON line with its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from relay import lifecycle
from relay.srtp import AuthError, ReplayError, Session, SrtpError
from relay.wire import ParticipantJoined, Snapshot, load_snapshot

Address = tuple[str, int]

SOCKET_BUFFER = 4 * 1024 * 1024
RTP_HEADER = 12
RTCP_HEADER = 8
RTCP_SR = 200

_SSRC = struct.Struct("!I")


@dataclass(eq=False)
class Participant:
    """One participant's routing state: its keys, whether it may send, and where it is."""

    id: int
    meeting: int
    may_send: bool
    rx: Session  # unprotects what it sends (uplink key)
    tx: Session  # protects what it receives (downlink key)
    address: Address | None = None
    peers: list[Participant] = field(default_factory=list)  # the others in its meeting


def is_rtcp(packet: bytes) -> bool:
    """RFC 5761 section 4: RTCP packet types 192..223 occupy the RTP marker/PT byte's 64..95."""
    return 64 <= (packet[1] & 0x7F) <= 95


class PyRelay(asyncio.DatagramProtocol):
    """Forwards SRTP between the participants of the meetings in one routing table."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.by_ssrc: dict[int, Participant] = {}
        self.by_address: dict[Address, Participant] = {}
        self.packets_in = 0
        self.packets_out = 0
        self.rtcp_terminated = 0
        self.dropped: Counter[str] = Counter()
        self._load(snapshot)

    def _load(self, snapshot: Snapshot) -> None:
        modes = {m.meeting: m.mode for m in snapshot.meetings}
        meetings: dict[int, list[Participant]] = {}
        for joined in snapshot.participants:
            participant = self._participant(joined, modes.get(joined.meeting, "meeting"))
            meetings.setdefault(joined.meeting, []).append(participant)
            for stream in joined.streams:
                self.by_ssrc[stream.ssrc] = participant
            if participant.address is not None:
                self.by_address[participant.address] = participant
        for members in meetings.values():
            for participant in members:
                participant.peers = [p for p in members if p is not participant]

    @staticmethod
    def _participant(joined: ParticipantJoined, mode: str) -> Participant:
        return Participant(
            id=joined.participant,
            meeting=joined.meeting,
            may_send=not (mode == "webinar" and joined.role == "attendee"),
            rx=Session(joined.suite, joined.uplink),
            tx=Session(joined.suite, joined.downlink),
            address=joined.address,
        )

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport implements DatagramTransport without subclassing it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.packets_in += 1
        if len(data) < RTCP_HEADER:
            self.dropped["malformed"] += 1
        elif is_rtcp(data):
            self._on_rtcp(data, addr)
        else:
            self._on_rtp(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.dropped["send_error"] += 1

    # packet handling

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        if len(data) < RTP_HEADER:
            self.dropped["malformed"] += 1
            return
        sender = self.by_ssrc.get(_SSRC.unpack_from(data, 8)[0])
        if sender is None:
            self.dropped["unknown_source"] += 1
            return
        plain = self._unprotect(sender.rx.unprotect, data)
        if plain is None:
            return
        self._latch(sender, addr, move=True)
        if not sender.may_send:
            self.dropped["not_allowed"] += 1
            return
        for receiver in sender.peers:
            if receiver.address is not None:
                self._send(receiver.tx.protect(plain), receiver.address)

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        ssrc = _SSRC.unpack_from(data, 4)[0]
        sender = self.by_ssrc.get(ssrc) or self.by_address.get(addr)
        if sender is None:
            self.dropped["unknown_source"] += 1
            return
        plain = self._unprotect(sender.rx.unprotect_rtcp, data)
        if plain is None:
            return
        self._latch(sender, addr, move=False)
        if plain[1] != RTCP_SR or not sender.may_send:
            self.rtcp_terminated += 1
            return
        for receiver in sender.peers:
            if receiver.address is not None:
                self._send(receiver.tx.protect_rtcp(plain), receiver.address)

    def _unprotect(self, unprotect: Callable[[bytes], bytes], data: bytes) -> bytes | None:
        """Call `unprotect(data)`; on failure count the drop and return None."""
        try:
            plain = unprotect(data)
        except AuthError:
            self.dropped["auth"] += 1
        except ReplayError:
            self.dropped["replay"] += 1
        except SrtpError:
            self.dropped["malformed"] += 1
        else:
            return plain
        return None

    def _latch(self, participant: Participant, addr: Address, *, move: bool) -> None:
        """Learn (or, with `move`, update) where an authenticated participant is."""
        if participant.address == addr or (participant.address is not None and not move):
            return
        if participant.address is not None:
            self.by_address.pop(participant.address, None)
        participant.address = addr
        self.by_address[addr] = participant

    def _send(self, packet: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(packet, addr)
        self.packets_out += 1

    def counters(self) -> dict[str, Any]:
        return {
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "dropped": dict(self.dropped),
            "rtcp_terminated": self.rtcp_terminated,
        }


def open_socket(host: str, port: int) -> socket.socket:
    """A bound UDP socket with large buffers (best effort: the kernel may cap them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def write_ready_file(path: Path) -> None:
    """Write our pid to `path` atomically, so a reader never sees it half written."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(f"{os.getpid()}\n")
    partial.replace(path)


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    """Relay until SIGTERM, SIGINT or the end of --duration; return the counters."""
    loop = asyncio.get_running_loop()
    relay = PyRelay(load_snapshot(args.table))
    transport, _ = await loop.create_datagram_endpoint(
        lambda: relay, sock=open_socket(args.host, args.port)
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.ready_file:
        write_ready_file(Path(args.ready_file))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        transport.close()
    return relay.counters()


def run(main: Coroutine[Any, Any, dict[str, Any]], loop: str) -> dict[str, Any]:
    """Run `main` on asyncio's own event loop, or on uvloop."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pyrelay", description="Pure-Python asyncio SRTP relay (baseline)."
    )
    parser.add_argument("--table", required=True, help="routing table file (a wire.Snapshot)")
    parser.add_argument("--port", required=True, type=int, help="UDP port for RTP and RTCP")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--ready-file", help="write the pid here once the socket is bound")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop (default: asyncio's own, pure Python)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lifecycle.bind_to_parent()  # never outlive the bench that started it
    counters = run(serve(args), args.loop)
    print(json.dumps(counters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
