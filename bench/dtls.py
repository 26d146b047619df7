"""DTLS-SRTP handshakes per second of one process (relay/dtls.py).

    python -m bench.dtls [--seconds 10] [--rounds 5] [--suite AEAD_AES_128_GCM] [--json PATH]

Complete handshakes in memory, one after another: relay's server endpoint against a client
endpoint, each with a fresh endpoint (as every WebRTC peer gets) and the same two P-256
certificates, the keys checked equal at the end. The CPU time of each side's calls
(construction, receive, start) is taken apart with the thread's CPU clock, so the server's
figure is what a worker spends per joining peer; the client's (the browser's part) is
reported beside it, not added. `--rounds` rounds of `--seconds`/`--rounds` each; the medians
are reported. The target: 200 handshakes a second of server work in one process, so that
10,000 WebRTC attendees can join within a minute (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from relay.certificate import Certificate
from relay.dtls import DtlsEndpoint, DtlsState

TARGET = 200.0  # handshakes a second of server work, one process (see the docstring)


def one_handshake(
    server_cert: Certificate, client_cert: Certificate, suite: str
) -> tuple[float, float, int, int]:
    """(server CPU seconds, client CPU seconds, datagrams, largest datagram) of one
    handshake in memory."""
    clock = time.thread_time
    t = clock()
    client = DtlsEndpoint(client_cert, "client", [suite], server_cert.fingerprint)
    queue = [(True, d) for d in client.start(0.0)]
    client_s = clock() - t
    t = clock()
    server = DtlsEndpoint(server_cert, "server", [suite], client_cert.fingerprint)
    server_s = clock() - t
    count = largest = 0
    while queue:
        to_server, datagram = queue.pop(0)
        count += 1
        largest = max(largest, len(datagram))
        t = clock()
        if to_server:
            queue += [(False, d) for d in server.receive(datagram, 0.0)]
            server_s += clock() - t
        else:
            queue += [(True, d) for d in client.receive(datagram, 0.0)]
            client_s += clock() - t
    if server.state is not DtlsState.CONNECTED or client.keys is None or server.keys is None:
        raise RuntimeError(f"handshake failed: {server.failure} / {client.failure}")
    if server.keys.local != client.keys.remote:
        raise RuntimeError("the two ends derived different keys")
    return server_s, client_s, count, largest


def measure(seconds: float, rounds: int, suite: str) -> dict[str, Any]:
    server_cert, client_cert = Certificate.generate(), Certificate.generate()
    one_handshake(server_cert, client_cert, suite)  # contexts made, code warm
    per_round: list[dict[str, float]] = []
    largest = datagrams = 0
    for _ in range(rounds):
        server_cpu = client_cpu = 0.0
        n = 0
        wall = time.perf_counter()
        stop = wall + seconds / rounds
        while time.perf_counter() < stop:
            s, c, count, big = one_handshake(server_cert, client_cert, suite)
            server_cpu += s
            client_cpu += c
            datagrams, largest = count, max(largest, big)
            n += 1
        wall = time.perf_counter() - wall
        per_round.append(
            {
                "handshakes": n,
                "server_cpu_ms": 1e3 * server_cpu / n,
                "client_cpu_ms": 1e3 * client_cpu / n,
                "server_handshakes_per_s": n / server_cpu,
                "client_handshakes_per_s": n / client_cpu,
                "pairs_per_s_wall": n / wall,
            }
        )
    median = {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
    return {
        "suite": suite,
        "seconds": seconds,
        "rounds": per_round,
        "median": median,
        "datagrams_per_handshake": datagrams,
        "largest_datagram": largest,
        "target_server_handshakes_per_s": TARGET,
        "meets_target": median["server_handshakes_per_s"] >= TARGET,
        "python": platform.python_version(),
        "openssl": SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode(),
        "machine": platform.machine(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="all rounds together")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--suite", default="AES_CM_128_HMAC_SHA1_80")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    result = measure(args.seconds, max(1, args.rounds), args.suite)
    m = result["median"]
    print(
        f"{result['suite']}, {result['openssl']}: median of {len(result['rounds'])} rounds\n"
        f"  server: {m['server_cpu_ms']:.3f} ms CPU per handshake = "
        f"{m['server_handshakes_per_s']:.0f} handshakes/s of one process "
        f"(target {TARGET:.0f}: {'met' if result['meets_target'] else 'NOT met'})\n"
        f"  client: {m['client_cpu_ms']:.3f} ms CPU per handshake = "
        f"{m['client_handshakes_per_s']:.0f}/s\n"
        f"  both ends in this one thread: {m['pairs_per_s_wall']:.0f} handshakes/s (wall)\n"
        f"  {result['datagrams_per_handshake']} datagrams per handshake, the largest "
        f"{result['largest_datagram']} bytes"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
