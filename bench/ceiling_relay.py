"""The C relay ceilings as a process, for `relay bench --compare`.

    python -m bench.ceiling_relay --table FILE --port PORT [--host 127.0.0.1] [--no-crypto]
                                  [--connected] [--no-gso] [--xdp IFACE] [--worker K]
                                  [--duration S] [--ready-file PATH]

Loads a routing table (relay.wire snapshot), derives the SRTP session keys, binds one UDP
socket and runs bench/ceiling_relay.c without the GIL: recvmmsg -> unprotect with the sender's
uplink key -> for each other participant of the meeting that has an address: copy, protect
with its downlink key -> sendmmsg. With --no-crypto (the io ceiling) packets are copied and sent
unchanged. With --worker K it serves only the receivers the table homes on worker K (those
whose `worker` is K or None), as worker K of the real relay would: W such processes, each sent
a copy of every packet, split the receivers at no cost between processes (the ideal
multi-worker split, for `relay bench --workers W --compare`). With --connected each receiver
gets a UDP socket of its own, bound with SO_REUSEPORT to the same address and port and
connected to it, and each copy leaves by send() on that socket instead of in the sendmmsg
batch: the way the relay's own connected sockets send (ext/connected.pxi), which `relay bench
--path send-only` measures it against (bench/sendonly.py). A receiver's copies of a burst (one
sender's consecutive packets in a receive batch) leave as one message of several segments (UDP
GSO), as the relay sends them (ext/batch.pxi), unless --no-gso. With --xdp IFACE each copy
to a receiver whose next hop the kernel knows on IFACE leaves as an Ethernet frame on an
AF_XDP socket's ring instead (ext/xsk.c, the relay's own `--xdp` path): before it is ready,
the process sends each receiver one empty datagram from the relay socket (which makes the
kernel resolve the neighbour, as the relay's first copies do) and looks the hops up over
rtnetlink (relay/nexthop.py). The ready file gets this
process's pid once the socket is bound. SIGTERM or SIGINT (or the duration) stops it; it then
prints one JSON line with the counters.

Minimal on purpose (see ceiling_relay.h): no replay window, no ROC, no latching, no RTCP,
IPv4 only; webinar attendees' streams are not relayed, nor any SSRC the table does not declare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import _ceiling
from relay import lifecycle, nexthop
from relay._core import _kdf
from relay.srtp import SUITES
from relay.wire import ParticipantJoined, Snapshot, load_snapshot

SOCKET_BUFFER = 8 << 20
# Linux values from asm-generic/socket.h; the socket module does not export them.
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

SessionKeys = tuple[bool, bytes, bytes, bytes, int]
RESOLVE_TRIES = 3  # rounds of datagrams before a receiver is left on the socket path


def session_keys(suite: str, material: bytes) -> SessionKeys:
    """(aead, cipher key, salt, auth key, tag length) for CeilingRelay from master key || salt."""
    key_len, salt_len, tag_len = SUITES[suite]
    if len(material) != key_len + salt_len:
        raise ValueError(f"{suite} needs {key_len + salt_len} bytes of key material")
    aead = suite.startswith("AEAD")
    master_key, master_salt = material[:key_len], material[key_len:]
    key = _kdf(master_key, master_salt, 0, key_len)
    auth_key = b"" if aead else _kdf(master_key, master_salt, 1, 20)
    salt = _kdf(master_key, master_salt, 2, 12 if aead else 14)
    return aead, key, salt, auth_key, tag_len


def build(
    relay: _ceiling.CeilingRelay,
    table: Snapshot,
    worker: int | None = None,
    connected: bool = False,
    xdp: str | None = None,
    sock: socket.socket | None = None,
) -> dict[str, int]:
    """Adds the table's receivers (with worker: those homed on it) and senders to relay;
    returns how many of each. `connected`: each receiver that sends nothing relayed gets a
    connected socket of its own (a sender's would take its packets, which only the relay
    socket reads). `xdp`: an interface; each receiver whose next hop is on it gets its
    copies as AF_XDP frames (route_frames; `sock` is the relay socket)."""
    modes = {m.meeting: m.mode for m in table.meetings}
    members: dict[int, list[ParticipantJoined]] = defaultdict(list)
    index: dict[int, int] = {}
    for p in table.participants:
        members[p.meeting].append(p)
        if p.address is not None and (worker is None or p.worker in (None, worker)):
            keys = session_keys(p.suite, p.downlink) if relay.crypto else None
            index[p.participant] = relay.add_receiver(p.address[0], p.address[1], keys)
    senders = 0
    sending: set[int] = set()
    for p in table.participants:
        if modes.get(p.meeting, "meeting") == "webinar" and p.role == "attendee":
            continue
        receivers = [
            index[q.participant]
            for q in members[p.meeting]
            if q.participant != p.participant and q.participant in index
        ]
        for stream in p.streams:
            keys = session_keys(p.suite, p.uplink) if relay.crypto else None
            relay.add_sender(stream.ssrc, receivers, keys)
            senders += 1
            sending.add(p.participant)
    listening = [i for p, i in index.items() if p not in sending]
    if connected:
        relay.connect(listening)
    sizes = {"receivers": len(index), "senders": senders}
    if xdp is not None:
        if sock is None:
            raise ValueError("the AF_XDP form needs the relay socket")
        addresses = {
            i: q.address for q in table.participants if (i := index.get(q.participant)) is not None
        }
        sizes["xdp_routed"] = route_frames(relay, addresses, xdp, sock)
    return sizes | ({"connected": len(listening)} if connected else {})


def route_frames(
    relay: _ceiling.CeilingRelay,
    addresses: dict[int, tuple[str, int] | None],
    interface: str,
    sock: socket.socket,
) -> int:
    """Opens the AF_XDP socket on `interface` and gives every receiver (index: address) whose
    next hop the kernel resolves there a hop; how many got one. An empty datagram to each
    first makes the kernel resolve its neighbour, as the relay's first copies from its socket
    do (relay/worker.py); the rest stay on the socket."""
    relay.xdp_open(socket.if_nametoindex(interface))
    hops = nexthop.NextHops(interface, sock.getsockname()[0])
    waiting = {i: a for i, a in addresses.items() if a is not None}
    try:
        for _ in range(RESOLVE_TRIES):  # a datagram the kernel dropped resolves nothing
            for address in waiting.values():
                sock.sendto(b"", address)
            time.sleep(0.2)  # neighbours that need resolving (ARP, NDP) get a moment
            for index, address in list(waiting.items()):
                hop = hops.resolve(address[0])
                if hop is not None:
                    relay.set_hop(index, hop.dst_mac, hop.src_mac, hop.src)
                    del waiting[index]
            if not waiting:
                break
    finally:
        hops.close()
    return sum(a is not None for a in addresses.values()) - len(waiting)


def open_socket(host: str, port: int, reuseport: bool = False) -> socket.socket:
    """The relay socket; `reuseport`: with SO_REUSEPORT, so that receivers' connected
    sockets can bind its address and port too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    for forced, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:  # as root the FORCE variants pass net.core.[rw]mem_max
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER)
    sock.bind((host, port))
    return sock


def write_ready(path: Path) -> None:
    """Writes the pid atomically, so a waiting reader never sees a partial file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling_relay", description=__doc__)
    parser.add_argument("--table", required=True, type=Path, help="routing table (snapshot)")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--no-crypto", action="store_true", help="the io ceiling: no SRTP")
    parser.add_argument(
        "--connected",
        action="store_true",
        help="a connected socket per receiver, one send() per copy (not sendmmsg)",
    )
    parser.add_argument(
        "--no-gso",
        action="store_true",
        help="every copy a message of its own, not a receiver's copies of a burst as one (UDP GSO)",
    )
    parser.add_argument(
        "--xdp",
        metavar="IFACE",
        help="each copy an Ethernet frame on an AF_XDP socket on IFACE (root; copy mode)",
    )
    parser.add_argument("--worker", type=int, help="serve only the receivers homed on this worker")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: until signal)")
    parser.add_argument("--ready-file", type=Path, help="gets the pid once the socket is bound")
    args = parser.parse_args(argv)
    lifecycle.bind_to_parent()  # never outlive the bench that started it

    sock = open_socket(args.host, args.port, reuseport=args.connected)
    relay = _ceiling.CeilingRelay(sock.fileno(), not args.no_crypto, gso=not args.no_gso)
    if args.connected:
        # A descriptor per receiver: as many as the hard limit allows.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        sizes = build(relay, load_snapshot(args.table), args.worker, args.connected, args.xdp, sock)
    except OSError as exc:
        print(f"bench.ceiling_relay: {exc}", file=sys.stderr)
        return 1
    # A signal between the ready file and run() (which catches them in C) still stops cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: relay.stop())
    if args.ready_file is not None:
        write_ready(args.ready_file)
    started = time.monotonic()
    counters: dict[str, Any] = relay.run(args.duration)
    counters.update(
        mode="io_ceiling" if args.no_crypto else "ceiling",
        seconds=round(time.monotonic() - started, 6),
        **sizes,
    )
    sock.close()
    sys.stdout.write(json.dumps(counters) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
