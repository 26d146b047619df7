"""A worker's files of SRTP state: the ledger (index reservations, a safety matter) and the
stream state (what senders were received up to, a convenience).

The ledger makes a reservation durable before the fast path may use it (ext/table.pxi, "Never
the same index twice"): the worker appends the records `RouteTable.ledger_pending()` gives,
fdatasyncs them, and only then calls `RouteTable.ledger_commit()` (or `ledger_abort()` if
they could not be written); reservations asked for ahead of need are appended by the worker's
ledger thread (`Writer`) while the media goes on, one round at a time, and never beside a
compaction. A worker that starts again (killed, or with the whole server) reads every ledger
file of its directory before its first routing snapshot, so each receiver's streams continue
above anything they may have been sent.
A write is durable once fdatasync returns; a record cut short by a crash was never committed,
so a torn tail is ignored; a write the disk cut short while the worker lives (a full disk) is
cut back at once, so no later round follows a partial record. A damaged record anywhere else
stops the worker: continuing could reuse an index.

The ledger only grows between compactions: once it holds many times the live records, it is
rewritten with `RouteTable.ledger_records()` (a new file, fsync, rename, fsync of the
directory), which keeps only what can still matter.

The stream state (`RouteTable.stream_state()`, every second) lets senders past a sequence
wrap keep authenticating after a restart; losing its last second costs nothing but that.

Both files: an 8-byte magic, then fixed-size records (table.pxi, `_RECORD`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Protocol

log = logging.getLogger("relay.ledger")

LEDGER_MAGIC = b"RLEDGER1"
STATE_MAGIC = b"RSTATE02"
RECORD_SIZE = 32  # relay._core.LEDGER_RECORD_SIZE
COMPACT_FACTOR = 4  # rewrite once the file is this many times its live records
COMPACT_SLACK = 1 << 20  # bytes a file may grow past that before it is worth rewriting


class LedgerError(RuntimeError):
    """A ledger file that cannot be read whole: the worker must not guess what it held."""


class Records(Protocol):
    def ledger_load(self, blob: bytes) -> int: ...


def _body(path: Path, magic: bytes, data: bytes) -> bytes:
    if not data.startswith(magic):
        raise LedgerError(f"{path} is not a relay {magic.decode()} file")
    body = data[len(magic) :]
    torn = len(body) % RECORD_SIZE
    if torn:
        log.warning("%s ends in a record cut short (%d bytes): never committed", path, torn)
    return body[: len(body) - torn]


def load_ledgers(directory: Path, table: Records) -> int:
    """Every ledger file in `directory` (workers that served other participants before, or
    under another worker count, wrote theirs there too) into `table`; the records read."""
    count = 0
    for path in sorted(directory.glob("*.ledger")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LedgerError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not data:
            continue
        try:
            count += table.ledger_load(_body(path, LEDGER_MAGIC, data))
        except ValueError as exc:
            raise LedgerError(
                f"{path} is damaged ({exc}); move it away to start anyway: participants "
                "present then need to join again"
            ) from None
    return count


def load_state(path: Path, table: Records) -> int:
    """The stream state a previous run saved, if any and if readable; the records read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        log.warning("stream state %s not read: %s", path, exc.strerror or exc)
        return 0
    try:
        return table.ledger_load(_body(path, STATE_MAGIC, data))
    except (LedgerError, ValueError) as exc:
        log.warning("stream state %s not used: %s", path, exc)
        return 0


def save_state(path: Path, records: bytes) -> None:
    """Replace the stream state file at once (a reader never sees half of it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(STATE_MAGIC + records)
    partial.replace(path)


class Ledger:
    """One worker's ledger file, open for appending."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.size = 0

    def open(self) -> None:
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.size = os.fstat(self.fd).st_size
        if self.size == 0:
            self.append(b"")

    def append(self, records: bytes) -> None:
        """Write records and return once they are on disk. OSError if they may not be: the
        file is then cut back to what it held before (as far as the disk lets it), so that a
        write cut short (a full disk) never leaves part of a record for the next round to
        follow, which would read as damage at the next start. What was cut was never
        committed, so no index it reserved was used."""
        data = LEDGER_MAGIC + records if self.size == 0 else records
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
            os.fdatasync(self.fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def worth_compacting(self, live_bytes: int) -> bool:
        return self.size > COMPACT_FACTOR * live_bytes + COMPACT_SLACK

    def compact(self, records: bytes) -> None:
        """Replace the file by one holding just `records` (every durable reservation that
        can still matter), atomically and durably."""
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(LEDGER_MAGIC + records)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self.close()
        self.open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Writer:
    """A thread of the ledger's own that appends a round of records (write, fdatasync) while
    the worker's loop goes on, one round at a time. Handing a round over costs the loop some
    15 µs (a queue put); an fdatasync on this project's disk 0.3 to 5 ms."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.busy = False  # a round handed over and not yet taken back (outcome)
        self._rounds: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (records := self._rounds.get()) is not None:
            try:
                self.ledger.append(records)
            except BaseException as exc:  # handed to the loop, which decides
                self._outcomes.put(exc)
            else:
                self._outcomes.put(None)

    def write(self, records: bytes) -> None:
        """Start appending `records`; the round's outcome comes from outcome()."""
        if self.busy:
            raise RuntimeError("a ledger round is already being written")
        self.busy = True
        self._rounds.put(records)

    def outcome(self, wait: bool) -> tuple[bool, OSError | None]:
        """Whether the round is written (waiting for it if `wait`), and the OSError that
        kept it from the disk, if one did. Anything else the write raised is raised here."""
        if not self.busy:
            return True, None
        try:
            error = self._outcomes.get(block=wait)
        except queue.Empty:
            return False, None
        self.busy = False
        if error is None or isinstance(error, OSError):
            return True, error
        raise error

    def close(self) -> None:
        """Once the round being written, if any, is done: the thread ends."""
        if self._thread.is_alive():
            self._rounds.put(None)
            self._thread.join()
