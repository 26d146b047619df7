"""`relay demo --crypto`: what the SRTP core does for one presenter and N receivers, here.

A presenter protects a stream with its uplink key; the relay unprotects each packet once and
protects a copy for every receiver with that receiver's own downlink key, in batches, the way
the forwarding loop will; each receiver then decrypts its copy with libsrtp (pylibsrtp), an
implementation independent of relay, when it is installed. Keys come from the OS CSPRNG and are
never printed.

`relay demo` without --crypto runs a server and a webinar (cli/demo.py).
"""

from __future__ import annotations

import secrets
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from bench import libsrtp
from relay import _core
from relay.srtp import SUITES, Session

ROW = 1500  # bytes per packet slot: an Ethernet MTU
BATCH = 256  # packets per batch call, as the forwarding loop will use


@dataclass
class SuiteResult:
    suite: str
    packets_in: int
    packets_out: int
    relay_seconds: float
    verified: int
    verifier: str

    @property
    def ns_per_packet_out(self) -> float:
        return self.relay_seconds * 1e9 / self.packets_out

    @property
    def out_pps(self) -> float:
        return self.packets_out / self.relay_seconds


def audio_packets(count: int, size: int, ssrc: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` RTP packets of `size` bytes: 20 ms Opus-like frames from one SSRC."""
    slab = np.zeros((count, ROW), np.uint8)
    for seq in range(count):
        header = struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, ssrc)
        slab[seq, :12] = np.frombuffer(header, np.uint8)
        slab[seq, 12:size] = seq & 0xFF
    return slab, np.full(count, size, np.uint32)


def libsrtp_receiver(suite: str, key: bytes) -> Any | None:
    """A libsrtp session that checks what the relay protects; None where pylibsrtp is
    missing or libsrtp lacks the suite."""
    return None if libsrtp.profile(suite) is None else libsrtp.session(suite, key, outbound=False)


def run_suite(suite: str, receivers: int, packets: int, size: int) -> SuiteResult:
    key_len, salt_len, _ = SUITES[suite]
    uplink = secrets.token_bytes(key_len + salt_len)
    downlinks = [secrets.token_bytes(key_len + salt_len) for _ in range(receivers)]
    plain, plain_lengths = audio_packets(packets, size, ssrc=secrets.randbits(32))

    # The presenter's side.
    wire, wire_lengths = plain.copy(), plain_lengths.copy()
    Session(suite, uplink).protect_batch(wire, wire_lengths)

    # The relay: unprotect once, protect per receiver, batch by batch, in reused slots (as
    # the forwarding loop will). Only this part is timed; each receiver then decrypts its
    # copy and compares it with what the presenter sent.
    relay_in = Session(suite, uplink)
    relay_out = [Session(suite, k) for k in downlinks]
    receivers_rx: list[Any] = [libsrtp_receiver(suite, k) for k in downlinks]
    verifier = "libsrtp (pylibsrtp)"
    if receivers_rx[0] is None:
        receivers_rx = [Session(suite, k) for k in downlinks]
        verifier = "relay.srtp (pylibsrtp not installed)"
    slots = np.zeros((BATCH, ROW), np.uint8)
    slot_lengths = np.zeros(BATCH, np.uint32)
    elapsed, verified = 0.0, 0
    for first in range(0, packets, BATCH):
        count = min(BATCH, packets - first)
        batch, lengths = wire[first : first + count], wire_lengths[first : first + count]
        width = int(lengths.max())
        started = time.perf_counter()
        if relay_in.unprotect_batch(batch, lengths) != count:
            raise RuntimeError("the relay refused packets from its own presenter")
        for r in range(receivers):
            slots[:count, :width] = batch[:, :width]
            slot_lengths[:count] = lengths
            relay_out[r].protect_batch(slots[:count], slot_lengths[:count])
            elapsed += time.perf_counter() - started
            for i in range(count):
                got = receivers_rx[r].unprotect(slots[i, : slot_lengths[i]].tobytes())
                if got != plain[first + i, : plain_lengths[first + i]].tobytes():
                    raise RuntimeError(f"receiver {r} got a different packet {first + i}")
                verified += 1
            started = time.perf_counter()
    return SuiteResult(suite, packets, packets * receivers, elapsed, verified, verifier)


def main(receivers: int = 8, packets: int = 5000, size: int = 200, out: TextIO = sys.stdout) -> int:
    """Run the demonstration and print a table; returns a process exit status."""
    build = "debug" if _core.DEBUG_BUILD else "release"
    print(
        f"relay demo: 1 presenter -> {receivers} receivers, {packets} packets of {size} B "
        f"per suite\nnative core: {build} build on {_core.OPENSSL_VERSION}\n",
        file=out,
    )
    results = []
    for n, suite in enumerate(SUITES, 1):
        print(f"[{n}/{len(SUITES)}] {suite} ...", end="", file=out, flush=True)
        result = run_suite(suite, receivers, packets, size)
        results.append(result)
        print(
            f" {result.out_pps / 1e6:.2f} M packets/s out, {result.verified} verified",
            file=out,
            flush=True,
        )
    print(
        "\n| suite | packets in | packets out | ns per packet out "
        "| crypto out pps, one core, no I/O | verified by |",
        file=out,
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |", file=out)
    for r in results:
        print(
            f"| {r.suite} | {r.packets_in} | {r.packets_out} | {r.ns_per_packet_out:.0f} "
            f"| {r.out_pps:,.0f} | {r.verified} by {r.verifier} |",
            file=out,
        )
    print(
        "\nEach packet was authenticated and decrypted once, then encrypted per receiver "
        "with its own key;\nevery receiver's copy was decrypted and compared with what the "
        "presenter sent.",
        file=out,
    )
    return 0
