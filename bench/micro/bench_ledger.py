"""How long a round of index reservations holds a worker's loop (relay/worker.py): a
thousand receivers' next reservations, falling due together as a webinar's stream passes half
its margin (ext/table.pxi, "Never the same index twice"), written there and then (the records
appended and fdatasynced in the loop, the baseline) against handed to the ledger's own thread
(`ledger.Writer`, `_reserve_ahead`), in the same run, on the disk of pytest's temporary
directory. Each round is on disk and committed before the next begins, outside the timing.

In the test suite these run once each as correctness checks (timing off). To measure:

    python -m pytest bench/micro/bench_ledger.py --benchmark-enable \
        --benchmark-columns=min,median,max,rounds
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from relay import _core, ledger
from relay.srtp import Session
from tests.conftest import rtp

SUITE = "AES_CM_128_HMAC_SHA1_80"
RECEIVERS = 1000
ROUNDS = 30
MEETING = 7
SENDER = 1
SSRC = 0x1111


class Webinar:
    """A durable table of one sender and RECEIVERS listeners, its forwarder and a ledger
    file, driven as the worker drives them."""

    def __init__(self, directory: Path) -> None:
        self.table = _core.RouteTable(durable=True)
        self.table.open_meeting(MEETING, "webinar")
        uplink = os.urandom(30)
        self.table.join(SENDER, MEETING, "host", SUITE, uplink, os.urandom(30), ssrcs=[SSRC])
        for pid in range(2, RECEIVERS + 2):
            address = (f"10.9.{pid >> 8}.{pid & 255}", 5000)
            self.table.join(
                pid, MEETING, "attendee", SUITE, os.urandom(30), os.urandom(30), address=address
            )
        self.forwarder = _core.Forwarder(self.table)
        self.tx = _core.SendBatch(4096)
        self.sender = Session(SUITE, uplink)
        self.seq = 1000
        self.book = ledger.Ledger(directory / "worker.ledger")
        self.book.open()
        self.writer = ledger.Writer(self.book)
        self.rounds = 0
        self.send()  # the streams' first packet waits for their first reservations
        self.write_now()

    def send(self) -> None:
        rx = _core.RecvBatch()
        rx.push(self.sender.protect(rtp(self.seq & 0xFFFF, SSRC)), ("10.9.0.1", 5000))
        self.seq += 1
        self.forwarder.process(rx, self.tx, 1.0)
        self.tx.clear()

    def past_half(self) -> None:
        """A packet past half every receiver's margin: each asks for its next reservation."""
        self.land()
        self.seq += _core.INDEX_RESERVE // 2
        self.send()
        assert self.table.reservations_waiting()

    def write_now(self) -> None:
        """The round written in the loop: append, fdatasync, commit."""
        self.book.append(self.table.ledger_pending())
        self.table.ledger_commit()
        self.forwarder.process_release(self.tx)
        self.tx.clear()
        self.rounds += 1

    def hand_over(self) -> None:
        """The round handed to the ledger's thread: its records, and the thread told."""
        self.writer.write(self.table.ledger_pending())

    def land(self) -> None:
        if self.writer.busy:
            assert self.writer.outcome(wait=True) == (True, None)
            self.table.ledger_commit()
            self.rounds += 1

    def close(self) -> None:
        self.land()
        self.writer.close()
        self.book.close()


@pytest.mark.parametrize("way", ["in the loop", "on the ledger's thread"])
def test_a_round_of_reservations_holds_the_loop(benchmark: Any, tmp_path: Path, way: str) -> None:
    benchmark.group = f"a round of {RECEIVERS} receivers' index reservations"
    webinar = Webinar(tmp_path)
    held = webinar.write_now if way == "in the loop" else webinar.hand_over
    benchmark.pedantic(held, setup=webinar.past_half, rounds=ROUNDS)
    webinar.close()
    # Every round reached the file: the first reservations' and each timed one's, a record
    # for each receiver's stream and one for its SRTCP at first, one for its stream after.
    rounds = webinar.rounds
    assert rounds >= 2
    records = (os.path.getsize(tmp_path / "worker.ledger") - 8) // ledger.RECORD_SIZE
    assert records >= RECEIVERS * (rounds + 1)
