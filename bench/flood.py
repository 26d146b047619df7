"""`relay bench flood`: a webinar keeps its promises while a second generator attacks the relay.

One worker serves a webinar (1 presenter -> N attendees, a fixed presenter rate, every copy
counted and sampled copies decrypted by the attendees, as in `relay bench webinar --rate`).
During each step a second load generator sends, at a rising total rate, equal shares of:

- garbage: random bytes of random length (most are not RTP version 2);
- truncated: 1 to 11 bytes, shorter than any RTP header;
- replays: packets the presenter really sent earlier, sent again from its address;
- forged: the presenter's SSRC and address, a plausible header, a random payload and tag;
- strangers: well-formed SRTP from addresses and SSRCs nobody declared.

Each step reports the attendees' loss and the relay's CPU; the result is the highest flood
rate at which the attendees lost nothing, and, from the worker's own counters at the end,
every bad packet under its drop reason next to what was sent of each kind.

    relay bench flood --receivers 200 --rate 500 --json flood.json
"""

from __future__ import annotations

import os
import secrets
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import _loadgen, run

KINDS = ("garbage", "truncated", "replay", "forged", "stranger")
# What each kind must be counted as (relay._core.DROP_NAMES), given what it is.
EXPECTED = {
    "garbage": ("malformed", "unknown_source"),
    "truncated": ("malformed",),
    "replay": ("replay",),
    # A forged tag fails the HMAC ("auth"), unless its sequence number puts it behind the
    # replay window, which refuses it before any crypto ("replay"): cheaper, and as right.
    "forged": ("auth", "replay"),
    "stranger": ("unknown_source",),
}
FLOOD_RATES = (1_000, 5_000, 20_000, 50_000, 100_000, 200_000, 400_000, 800_000, 1_200_000)
CHUNK = 40_000  # flood packets made once and sent over and over (so making them takes no step)
WIDTH = 512  # bytes per slab row: every flood packet is shorter
STRANGER_BASE = 5000  # participant_address index of the first stranger


class Flood:
    """The second generator: its own socket and Loadgen, sending one step's flood."""

    def __init__(self, bench: run.Bench, replays: np.ndarray, replay_lengths: np.ndarray) -> None:
        self.sock = run.sink_socket()
        self.loadgen = _loadgen.Loadgen(self.sock.fileno(), 1)
        self.bench = bench
        self.replays, self.replay_lengths = replays, replay_lengths
        self.sent = dict.fromkeys(KINDS, 0)
        self.presenter_ssrc = bench.cast.ssrcs[0]

    def packets(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        slab = np.zeros((count, WIDTH), np.uint8)
        lengths = np.zeros(count, np.uint32)
        senders = np.zeros(count, np.int32)
        kinds = []
        rng = np.random.default_rng(secrets.randbits(32))
        for i in range(count):
            kind = KINDS[i % len(KINDS)]
            kinds.append(kind)
            if kind == "garbage":
                n = int(rng.integers(12, 400))
                data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
                senders[i] = STRANGER_BASE + i % 1000
            elif kind == "truncated":
                n = int(rng.integers(1, 12))
                data = bytes([0x80]) + rng.integers(0, 256, n - 1, dtype=np.uint8).tobytes()
                senders[i] = 0
            elif kind == "replay":
                row = i % len(self.replay_lengths)
                data = self.replays[row, : self.replay_lengths[row]].tobytes()
                senders[i] = 0
            elif kind == "forged":
                header = struct.pack(
                    "!BBHII", 0x80, 111, int(rng.integers(0, 65536)), 0, self.presenter_ssrc
                )
                data = header + rng.integers(0, 256, 190, dtype=np.uint8).tobytes()
                senders[i] = 0  # from the presenter's own address
            else:
                ssrc = int(rng.integers(1, 1 << 32))
                header = struct.pack("!BBHII", 0x80, 111, i & 0xFFFF, 0, ssrc)
                data = header + rng.integers(0, 256, 190, dtype=np.uint8).tobytes()
                senders[i] = STRANGER_BASE + i % 1000
            slab[i, : len(data)] = np.frombuffer(data, np.uint8)
            lengths[i] = len(data)
        return slab, lengths, senders, kinds

    def send(self, rate: float, seconds: float, start_ns: int) -> int:
        """`rate` packets/s for `seconds` from start_ns, the chunk over and over."""
        if not hasattr(self, "chunk"):
            self.chunk = self.packets(CHUNK)
        slab, lengths, senders, kinds = self.chunk
        total = max(len(KINDS), int(rate * seconds))
        sent = 0
        self.last_ns = start_ns
        while sent < total:
            count = min(CHUNK, total - sent)
            at_ns = (start_ns + (sent + np.arange(count)) * (1e9 / rate)).astype(np.int64)
            sent_ns = np.zeros(count, np.int64)
            done = int(
                self.loadgen.send(
                    slab[:count],
                    lengths[:count],
                    senders[:count],
                    at_ns,
                    sent_ns,
                    "127.0.0.1",
                    self.bench.port,
                )
            )
            for kind in kinds[:done]:
                self.sent[kind] += 1
            if done:
                self.last_ns = max(self.last_ns, int(sent_ns[:done].max()))
            sent += done
            if done < count:
                break
        return sent

    def close(self) -> None:
        self.sock.close()


def _collect(into: list[int], flood: Flood, rate: float, seconds: float, start: int) -> None:
    into.append(flood.send(rate, seconds, start))


def measure(
    receivers: int,
    rate: float,
    duration: float,
    progress: Callable[[str], None],
    flood_rates: tuple[int, ...] = FLOOD_RATES,
) -> dict[str, Any]:
    scenario = run.Scenario("webinar", receivers, rate=rate, duration=duration)
    steps = []
    with tempfile.TemporaryDirectory(prefix="relay-flood-") as tmp:
        bench = run.Bench(scenario, "relay", Path(tmp), progress)
        try:
            baseline = bench.step(rate, duration)  # no flood: what the webinar gets
            # Packets the presenter really sends now, kept to be replayed later.
            replays, replay_lengths, _, _ = bench.source.make(64)
            flood = Flood(bench, replays, replay_lengths)
            valid = np.zeros((len(replay_lengths), WIDTH), np.uint8)
            valid[:, :WIDTH] = replays[:, :WIDTH]
            flood.loadgen.send(  # sent once, valid: the relay takes them
                valid,
                replay_lengths,
                np.zeros(len(replay_lengths), np.int32),
                np.full(len(replay_lengths), time.monotonic_ns(), np.int64),
                np.zeros(len(replay_lengths), np.int64),
                "127.0.0.1",
                bench.port,
            )
            flood.chunk = flood.packets(CHUNK)
            for flood_rate in flood_rates:
                start = time.monotonic_ns() + 250_000_000  # as the webinar step starts
                result: list[int] = []
                sender = threading.Thread(
                    target=_collect, args=(result, flood, flood_rate, duration + 0.5, start)
                )
                sender.start()
                step = bench.step(rate, duration)
                sender.join()
                # What the generator managed (on a shared machine, it may fall behind).
                achieved = result[0] / max((flood.last_ns - start) / 1e9, 1e-3)
                steps.append(
                    {
                        "flood_pps": flood_rate,
                        "achieved_flood_pps": round(achieved),
                        "webinar_out_pps": step.out_pps,
                        "loss_ratio": step.loss_ratio,
                        "relay_cpu": step.relay_cpu,
                        "verified": step.verified,
                    }
                )
                progress(
                    f"flood {flood_rate:>9,} pps (sent {achieved:>9,.0f}/s): attendees lost "
                    f"{step.loss_ratio:.3%} of {step.sent * receivers:,} copies, "
                    f"relay cpu {step.relay_cpu:.2f}"
                )
            flood.close()
        finally:
            counters = bench.close()
    clean = [s["achieved_flood_pps"] for s in steps if s["loss_ratio"] == 0]
    dropped = counters.get("dropped", {})
    return {
        "scenario": "flood",
        "receivers": receivers,
        "rate": rate,
        "duration_per_step": duration,
        "baseline": {"out_pps": baseline.out_pps, "loss_ratio": baseline.loss_ratio},
        "steps": steps,
        "highest_clean_flood_pps": max(clean) if clean else 0,
        "flood_sent": flood.sent,
        "dropped": {k: v for k, v in dropped.items() if v},
        "expected_reasons": {k: list(v) for k, v in EXPECTED.items()},
        "relay_counters": counters,
    }


def print_report(r: dict[str, Any]) -> None:
    print(
        f"\nwebinar 1 -> {r['receivers']} at {r['rate']:g} packets/s while flooded: "
        f"no attendee lost a packet up to {r['highest_clean_flood_pps']:,} flood packets/s"
    )
    print("\nflood sent, by kind:")
    for kind, count in r["flood_sent"].items():
        print(f"  {kind:<10} {count:>12,}  (counted as {' or '.join(EXPECTED[kind])})")
    print("the worker's drops, by reason:")
    for reason, count in sorted(r["dropped"].items()):
        print(f"  {reason:<15} {count:>12,}")


def main(
    receivers: int, rate: float, duration: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")
    report = measure(receivers, rate, duration, progress)
    print_report(report)
    return report
