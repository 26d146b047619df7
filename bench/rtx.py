"""What retransmission costs the forwarding core (ext/rtx.pxi), in memory, side by side.

    python -m bench.rtx [--receivers 200] [--frames 60] [--rounds 5] [--json PATH]

One worker's RouteTable and Forwarder, no sockets: a presenter sends video in frames of 30
packets of 1,200 bytes (a burst, as an encoder emits a frame) to `--receivers` viewers. The
same stream is forwarded four ways, interleaved round by round so that the machine's noise
falls on all of them alike:

- `off`: the stream declared audio: no cache is opened (no NACK names it);
- `cache`: declared video: every packet is kept in the stream's cache, nobody NACKs;
- `nack_1%` and `nack_5%`: video, and each viewer loses that share of its packets at random
  and NACKs them after each frame, one NACK per viewer and frame; the relay answers from the
  cache.

Only Forwarder.process() is timed (the thread's CPU clock); the packets, the viewers' NACKs
(SRTCP, protected with each viewer's key) and the batches are made beforehand. Reported per
way: copies sent per CPU second (forwarded and retransmitted), retransmissions per second
of video, and the ratio to `off` (the issue's target for the cache: at least 0.9). Medians of
the rounds. The cache's memory per stream is RTX_CACHE_BYTES.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay import _core
from relay.srtp import SUITES, Session

SUITE = "AES_CM_128_HMAC_SHA1_80"
SSRC = 0x0B0B0B0B
FRAME = 30  # packets per frame
SIZE = 1200  # bytes of RTP per packet
FPS = 30
WAYS = ("off", "cache", "nack_1%", "nack_5%")
LOSS = {"off": 0.0, "cache": 0.0, "nack_1%": 0.01, "nack_5%": 0.05}


@dataclass
class Run:
    way: str
    cpu_s: float
    copies: int
    retransmitted: int
    frames: int


def _key() -> bytes:
    return bytes(random.getrandbits(8) for _ in range(sum(SUITES[SUITE][:2])))


def _nack(seqs: list[int]) -> bytes:
    entries = b""
    seqs = sorted(seqs)
    while seqs:
        pid, blp = seqs.pop(0), 0
        while seqs and 1 <= seqs[0] - pid <= 16:
            blp |= 1 << (seqs.pop(0) - pid - 1)
        entries += struct.pack("!HH", pid, blp)
    return struct.pack("!BBHII", 0x81, 205, 2 + len(entries) // 4, 1, SSRC) + entries


def one_run(way: str, receivers: int, frames: int, seed: int) -> Run:
    rng = random.Random(seed)
    table = _core.RouteTable()
    table.open_meeting(1, "webinar")
    host_up = _key()
    video = [SSRC] if way != "off" else []
    table.join(1, 1, "host", SUITE, host_up, _key(), ssrcs=[SSRC], video_ssrcs=video)
    viewers = []
    for i in range(receivers):
        up = _key()
        address = (f"10.1.{i >> 8}.{i & 255}", 20000)
        table.join(100 + i, 1, "attendee", SUITE, up, _key(), address=address)
        viewers.append((Session(SUITE, up), address))
    forwarder = _core.Forwarder(table)
    forwarder.keyframe_interval = 1e9  # keyframe requests aside: not what is measured here
    tx = _core.SendBatch(FRAME * receivers * 2 + 64)
    sender = Session(SUITE, host_up)
    payload = bytes(SIZE - 12)
    batches: list[tuple[float, list[tuple[bytes, tuple[str, int]]]]] = []
    seq = 0
    for frame in range(frames):
        now = 1000.0 + frame / FPS
        media = []
        for _ in range(FRAME):
            header = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, frame * 3000, SSRC)
            media.append((sender.protect(header + payload), ("10.0.0.1", 5000)))
            seq += 1
        batches += [(now, media[i : i + 64]) for i in range(0, len(media), 64)]
        loss = LOSS[way]
        if loss:  # each viewer's losses in this frame, NACKed right after it
            first = seq - FRAME
            nacks = []
            for session, address in viewers:
                lost = [first + k for k in range(FRAME) if rng.random() < loss]
                if lost:
                    nacks.append((session.protect_rtcp(_nack(lost)), address))
            now += 0.5 / FPS
            batches += [(now, nacks[i : i + 64]) for i in range(0, len(nacks), 64)]
    before = table.counters()["rtx"]["served"]
    cpu = 0.0
    copies = 0
    clock = time.thread_time
    for now, datagrams in batches:
        rx = _core.RecvBatch()
        for data, address in datagrams:
            rx.push(data, address)
        t = clock()
        forwarder.process(rx, tx, now)
        cpu += clock() - t
        copies += len(tx)
        tx.clear()
    served = table.counters()["rtx"]["served"] - before
    return Run(way, cpu, copies, served, frames)


def measure(receivers: int, frames: int, rounds: int, progress: Any = print) -> dict[str, Any]:
    runs: dict[str, list[Run]] = {way: [] for way in WAYS}
    for r in range(rounds):
        for way in WAYS:
            run = one_run(way, receivers, frames, seed=r)
            runs[way].append(run)
            progress(
                f"round {r + 1}/{rounds} {way:8} {run.copies / run.cpu_s:12,.0f} copies/s"
                f"  {run.retransmitted:6} retransmitted"
            )
    result: dict[str, Any] = {}
    off = statistics.median(r.copies / r.cpu_s for r in runs["off"])
    for way in WAYS:
        rate = statistics.median(r.copies / r.cpu_s for r in runs[way])
        seconds_of_video = frames / FPS
        result[way] = {
            "copies_per_cpu_second": round(rate),
            "vs_off": round(rate / off, 3),
            "retransmissions_per_second_of_video": round(
                statistics.median(r.retransmitted for r in runs[way]) / seconds_of_video
            ),
            "forwarded_per_second_of_video": round(receivers * FRAME * FPS),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=200)
    parser.add_argument("--frames", type=int, default=60, help="frames per run (default 60)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if args.receivers < 1 or args.frames < 1 or args.rounds < 1:
        parser.error("--receivers, --frames and --rounds must be at least 1")
    result = measure(args.receivers, args.frames, args.rounds)
    report = {
        "benchmark": "rtx",
        "receivers": args.receivers,
        "frames": args.frames,
        "packet_bytes": SIZE,
        "packets_per_frame": FRAME,
        "rounds": args.rounds,
        "cache_bytes_per_stream": _core.RTX_CACHE_BYTES,
        "ways": result,
        "machine": platform.processor() or platform.machine(),
    }
    print(f"{'way':10} {'copies/CPU s':>14} {'vs off':>8} {'retransmitted/s':>16}")
    for way, r in result.items():
        print(
            f"{way:10} {r['copies_per_cpu_second']:14,} {r['vs_off']:8.3f}"
            f" {r['retransmissions_per_second_of_video']:16,}"
        )
    print(f"cache per stream: {_core.RTX_CACHE_BYTES:,} bytes")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
