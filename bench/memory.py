"""Memory per receiver of the routing table: a webinar of N attendees, each with its own keys,
after every attendee has been sent packets (so its downlink context is keyed) and a sender
report (so its SRTCP keys were used once).

    python -m bench.memory --receivers 100000
"""

from __future__ import annotations

import argparse
import os
import socket
import time

from bench import _loadgen
from relay import _core
from relay.srtp import SUITES, Session

SSRC = 0x5EED


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(receivers: int, suite: str = "AES_CM_128_HMAC_SHA1_80") -> dict[str, float]:
    key_len, salt_len, _ = SUITES[suite]
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("0.0.0.0", 0))  # every attendee's address lands here; nobody reads it
    relay_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay_sock.bind(("127.0.0.1", 0))
    host_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host_sock.bind(("127.0.0.1", 0))
    host_key = os.urandom(key_len + salt_len)
    before = rss_bytes()
    started = time.perf_counter()
    table = _core.RouteTable()
    table.open_meeting(1, "webinar")
    table.join(
        0,
        1,
        "host",
        suite,
        host_key,
        os.urandom(key_len + salt_len),
        [SSRC],
        host_sock.getsockname(),
    )
    for i in range(1, receivers + 1):
        table.join(
            i,
            1,
            "attendee",
            suite,
            os.urandom(key_len + salt_len),
            os.urandom(key_len + salt_len),
            (),
            (_loadgen.participant_address(i), sink.getsockname()[1]),
        )
    joined = rss_bytes()
    forwarder = _core.Forwarder(table)
    host = Session(suite, host_key)
    for seq in range(3):
        header = bytes([0x80, 111, 0, seq]) + bytes(4) + SSRC.to_bytes(4, "big")
        host_sock.sendto(host.protect(header + bytes(160)), relay_sock.getsockname())
        while forwarder.run_once(relay_sock.fileno(), time.monotonic()) == 0:
            pass
    sr = bytes([0x80, 200, 0, 6]) + SSRC.to_bytes(4, "big") + bytes(20)
    host_sock.sendto(host.protect_rtcp(sr), relay_sock.getsockname())
    while forwarder.run_once(relay_sock.fileno(), time.monotonic()) == 0:
        pass
    after = rss_bytes()
    counters = table.counters()
    for s in (sink, relay_sock, host_sock):
        s.close()
    return {
        "receivers": receivers,
        "rss_mb_after_join": (joined - before) / 2**20,
        "rss_mb_after_traffic": (after - before) / 2**20,
        "bytes_per_receiver": (after - before) / receivers,
        "packets_out_or_refused": counters["packets_out"] + counters["dropped"]["send_error"],
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=100_000)
    parser.add_argument("--suite", default="AES_CM_128_HMAC_SHA1_80", choices=list(SUITES))
    args = parser.parse_args()
    result = measure(args.receivers, args.suite)
    for name, value in result.items():
        print(f"{name:>24}: {value:,.1f}" if isinstance(value, float) else f"{name:>24}: {value:,}")


if __name__ == "__main__":
    main()
