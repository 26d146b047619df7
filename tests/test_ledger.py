"""relay/ledger.py's file and its writing thread, on a real file: what the worker relies on
to make index reservations durable (ext/table.pxi, "Never the same index twice")."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from relay import ledger


def test_a_round_handed_to_the_writer_reaches_the_file_and_reports_back(tmp_path: Path) -> None:
    book = ledger.Ledger(tmp_path / "w.ledger")
    book.open()
    writer = ledger.Writer(book)
    try:
        assert writer.outcome(wait=False) == (True, None)  # nothing handed over
        writer.write(b"r" * ledger.RECORD_SIZE)
        assert writer.busy
        with pytest.raises(RuntimeError, match="already being written"):
            writer.write(b"s" * ledger.RECORD_SIZE)  # one round at a time
        assert writer.outcome(wait=True) == (True, None)
        assert not writer.busy
        data = (tmp_path / "w.ledger").read_bytes()
        assert data == ledger.LEDGER_MAGIC + b"r" * ledger.RECORD_SIZE
    finally:
        writer.close()
        book.close()


def test_a_round_the_disk_refuses_comes_back_as_its_error(tmp_path: Path) -> None:
    """The loop learns of it (and aborts the round: nothing it held rises); the next round
    is written as usual."""
    book = ledger.Ledger(tmp_path / "w.ledger")
    book.open()
    append = book.append
    refusals = [OSError(28, "No space left on device")]

    def disk(records: bytes) -> None:
        if refusals:
            raise refusals.pop()
        append(records)

    book.append = disk  # type: ignore[method-assign]
    writer = ledger.Writer(book)
    try:
        writer.write(b"r" * ledger.RECORD_SIZE)
        written, error = writer.outcome(wait=True)
        assert written and isinstance(error, OSError) and error.errno == 28
        writer.write(b"r" * ledger.RECORD_SIZE)
        assert writer.outcome(wait=True) == (True, None)
        assert os.path.getsize(tmp_path / "w.ledger") == len(ledger.LEDGER_MAGIC) + 32
    finally:
        writer.close()
        book.close()


def test_the_loop_need_not_wait_and_closing_waits_for_the_round(tmp_path: Path) -> None:
    book = ledger.Ledger(tmp_path / "w.ledger")
    book.open()
    disk = threading.Event()
    append = book.append

    def slow(records: bytes) -> None:
        assert disk.wait(10)
        append(records)

    book.append = slow  # type: ignore[method-assign]
    writer = ledger.Writer(book)
    writer.write(b"r" * ledger.RECORD_SIZE)
    assert writer.outcome(wait=False) == (False, None)  # still on its way to the disk
    assert writer.busy
    disk.set()
    writer.close()  # returns once the round is on disk
    assert os.path.getsize(tmp_path / "w.ledger") == len(ledger.LEDGER_MAGIC) + 32
    book.close()


def test_a_write_the_disk_cuts_short_leaves_no_part_of_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk takes part of a round and refuses the rest: the file is cut back, so the
    next round's records follow whole ones and the next start reads every record (a partial
    one in the middle would read as damage and stop the worker)."""
    book = ledger.Ledger(tmp_path / "w.ledger")
    book.open()
    book.append(b"a" * ledger.RECORD_SIZE)
    write = os.write
    calls = []

    def full_disk(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return write(fd, bytes(data)[:10])  # part of a record, then no space
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger.os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        book.append(b"b" * ledger.RECORD_SIZE)
    monkeypatch.undo()
    book.append(b"c" * ledger.RECORD_SIZE)
    book.close()

    class Loaded:
        blob = b""

        def ledger_load(self, blob: bytes) -> int:
            self.blob = blob
            return len(blob) // ledger.RECORD_SIZE

    loaded = Loaded()
    assert ledger.load_ledgers(tmp_path, loaded) == 2
    assert loaded.blob == b"a" * ledger.RECORD_SIZE + b"c" * ledger.RECORD_SIZE
