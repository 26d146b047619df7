"""SRTP microbenchmarks, each measured beside its baseline in the same run.

(a) per Python call: relay.srtp.Session against pylibsrtp (libsrtp 2.7 through CFFI), the
    same packets through both, one call per packet;
(b) batched: Session.protect_batch/unprotect_batch against the plain C OpenSSL loop in
    bench/ceiling.c (same crypto, no ROC, replay window or SSRC lookup), ns per packet.

For every suite, protect and unprotect, 200- and 1,200-byte RTP packets.

In the test suite these run once each as correctness checks (timing off). To measure:

    python -m bench.micro.bench_srtp --runs 3

which runs pytest-benchmark `--runs` times and prints the median of the runs' medians, with
the ratios the targets in bench/RESULTS.md are stated in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.libsrtp import session as libsrtp_session
from relay import _core
from relay.srtp import SUITES, Session

pylibsrtp = pytest.importorskip("pylibsrtp")
_ceiling = pytest.importorskip("bench._ceiling")

PER_CALL_PACKETS = 256  # packets per timed round, per-call benchmarks
BATCH_PACKETS = 1024  # packets per timed round, batch benchmarks
ROUNDS = 60
SIZES = [200, 1200]
OPS = ["protect", "unprotect"]


def key(suite: str) -> bytes:
    key_len, salt_len, _ = SUITES[suite]
    return bytes(range(1, key_len + salt_len + 1))


def packets(size: int, count: int) -> list[bytes]:
    """RTP packets of `size` bytes (12-byte header), one SSRC, consecutive sequence numbers."""
    return [
        struct.pack("!BBHII", 0x80, 111, seq, seq * 960, 0x5EED) + bytes(size - 12)
        for seq in range(count)
    ]


def libsrtp(suite: str, outbound: bool) -> Any:
    return libsrtp_session(suite, key(suite), outbound=outbound)


def session(impl: str, suite: str, outbound: bool) -> Any:
    return Session(suite, key(suite)) if impl == "relay" else libsrtp(suite, outbound)


def per_call_loop(call: Callable[[bytes], bytes], inputs: list[bytes]) -> int:
    for packet in inputs:
        call(packet)
    return len(inputs)


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", ["relay", "pylibsrtp"])
def test_per_call(benchmark: Any, impl: str, op: str, size: int, suite: str) -> None:
    benchmark.group = f"per-call {op} {suite} {size}B"
    plain = packets(size, PER_CALL_PACKETS)
    sender = Session(suite, key(suite))
    protected = [sender.protect(p) for p in plain]

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        # A fresh session each round: sequence numbers restart, nothing counts as a replay.
        if op == "protect":
            return (session(impl, suite, outbound=True).protect, plain), {}
        return (session(impl, suite, outbound=False).unprotect, protected), {}

    done = benchmark.pedantic(per_call_loop, setup=setup, rounds=ROUNDS)
    assert done == PER_CALL_PACKETS
    benchmark.extra_info["packets"] = PER_CALL_PACKETS


def slab_of(size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    slab = np.zeros((count, size + 32), np.uint8)
    for i, p in enumerate(packets(size, count)):
        slab[i, :size] = np.frombuffer(p, np.uint8)
    return slab, np.full(count, size, np.uint32)


def ceiling_for(suite: str) -> Any:
    key_len, salt_len, tag_len = SUITES[suite]
    aead = suite.startswith("AEAD")
    return _ceiling.Ceiling(
        aead, bytes(range(key_len)), bytes(range(14)), bytes(range(20)), tag_len
    )


@pytest.mark.parametrize("suite", list(SUITES))
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", ["relay", "ceiling"])
def test_batch(benchmark: Any, impl: str, op: str, size: int, suite: str) -> None:
    benchmark.group = f"batch {op} {suite} {size}B"
    plain_slab, plain_lengths = slab_of(size, BATCH_PACKETS)
    maker = ceiling_for(suite) if impl == "ceiling" else Session(suite, key(suite))
    sealed_slab, sealed_lengths = plain_slab.copy(), plain_lengths.copy()
    assert maker.protect_batch(sealed_slab, sealed_lengths) == BATCH_PACKETS

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        target = ceiling_for(suite) if impl == "ceiling" else Session(suite, key(suite))
        if op == "protect":
            return (target.protect_batch, plain_slab.copy(), plain_lengths.copy()), {}
        return (target.unprotect_batch, sealed_slab.copy(), sealed_lengths.copy()), {}

    def run(call: Callable[..., int], slab: np.ndarray, lengths: np.ndarray) -> int:
        return call(slab, lengths)

    assert benchmark.pedantic(run, setup=setup, rounds=ROUNDS) == BATCH_PACKETS
    benchmark.extra_info["packets"] = BATCH_PACKETS


# --- script mode ------------------------------------------------------------------------------


def medians_ns_per_packet(report: dict[str, Any]) -> dict[tuple[str, str], float]:
    """{(group, impl): median ns per packet} from one pytest-benchmark JSON report."""
    out = {}
    for bench in report["benchmarks"]:
        impl = bench["params"]["impl"]
        out[(bench["group"], impl)] = (
            bench["stats"]["median"] * 1e9 / bench["extra_info"]["packets"]
        )
    return out


def summarise(runs: list[dict[tuple[str, str], float]]) -> str:
    keys = runs[0].keys()
    med = {k: statistics.median(run[k] for run in runs) for k in keys}
    lines = [
        f"relay._core on {_core.OPENSSL_VERSION}; median of {len(runs)} runs, "
        "each the median of its rounds; ns per packet",
        "",
    ]
    lines.append("| measurement | relay | baseline | ratio |")
    lines.append("| --- | ---: | ---: | ---: |")
    for group in sorted({g for g, _ in keys}):
        ours = med[(group, "relay")]
        if group.startswith("per-call"):
            theirs = med[(group, "pylibsrtp")]
            ratio = f"{theirs / ours:.2f}x faster than pylibsrtp"
        else:
            theirs = med[(group, "ceiling")]
            ratio = f"{ours / theirs:.3f}x the C loop"
        lines.append(f"| {group} | {ours:.0f} | {theirs:.0f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="pytest-benchmark runs (default 3)")
    parser.add_argument("-k", default="", help="pytest -k filter, e.g. 'AES_CM_128_HMAC_SHA1_80'")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            out = Path(tmp) / f"run{i}.json"
            cmd = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                __file__,
                "--benchmark-enable",
                "--benchmark-disable-gc",
                "--benchmark-json",
                str(out),
            ]
            if args.k:
                cmd += ["-k", args.k]
            print(f"run {i + 1}/{args.runs}: {' '.join(cmd[2:5])} ...", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"benchmark run failed:\n{done.stdout}{done.stderr}")
            runs.append(medians_ns_per_packet(json.loads(out.read_text())))
    print(summarise(runs))


if __name__ == "__main__":
    main()
