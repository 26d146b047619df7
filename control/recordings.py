"""The control plane's side of recordings: which files a meeting has, their contents for the
host or operator, and the retention period after which they are deleted.

The workers write the files (relay/recording.py): DATA_DIR/recordings/m<wire id>-w<worker>-<unix
time>.rec, each encrypted under its own data key wrapped by DATA_DIR/recording.key. A download
decrypts in memory and answers a pcap; nothing decrypted is written to disk. Files older than
the retention period (days, `recording_retention_days`) are deleted by `sweep`, which the
control plane runs every hour; deleting a meeting deletes its recordings at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

from control.answers import Actor, Recording
from control.audit import Audit
from control.errors import NotFound
from control.store import MeetingRow
from relay import recording

log = logging.getLogger("control.recordings")

_NAME = re.compile(r"m(\d+)-w(\d+)-(\d+)\.rec")
SWEEP_INTERVAL_S = 3600.0


class Recordings:
    def __init__(self, directory: Path, key_file: Path, retention_days: float) -> None:
        self.directory = directory
        self.key_file = key_file
        self.retention_s = retention_days * 86400.0

    def _files(self, wire_id: int | None = None) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.iterdir()):
            m = _NAME.fullmatch(path.name)
            if m and (wire_id is None or int(m[1]) == wire_id):
                found.append(path)
        return found

    def of_meeting(self, wire_id: int) -> list[Recording]:
        out: list[Recording] = []
        for path in self._files(wire_id):
            m = _NAME.fullmatch(path.name)
            assert m is not None
            info = path.stat()
            out.append(
                {
                    "name": path.name,
                    "worker": int(m[2]),
                    "started_at": float(m[3]),
                    "bytes": info.st_size,
                    "deleted_after": info.st_mtime + self.retention_s,
                }
            )
        return out

    async def download(
        self, meeting: MeetingRow, name: str, *, audit: Audit, by: Actor, now: float
    ) -> bytes:
        """The pcap of one of the meeting's recordings (decrypted in a thread); each download
        is in the audit log, with the file's name and size."""
        pcap = await asyncio.to_thread(self.pcap, meeting.wire_id, name)
        # `name` is a recording's own file name here (pcap found it): an id, not input.
        detail = {"bytes": len(pcap)}
        await audit.append(by, "recording.download", meeting.id, name, detail, now=now)
        return pcap

    def pcap(self, wire_id: int, name: str) -> bytes:
        """The pcap a recording of this meeting holds; NotFound for any other name."""
        for path in self._files(wire_id):
            if path.name == name:
                try:
                    return recording.decrypt(path, self.key_file.read_bytes())
                except (OSError, recording.RecordingError) as exc:
                    log.error("recording %s does not open: %s", name, exc)
                    raise NotFound("this recording cannot be read") from None
        raise NotFound("no such recording of this meeting")

    def delete_meeting(self, wire_id: int) -> int:
        removed = 0
        for path in self._files(wire_id):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def sweep(self, now: float | None = None) -> int:
        """Delete the recordings older than the retention period; how many."""
        limit = (time.time() if now is None else now) - self.retention_s
        removed = 0
        for path in self._files():
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("retention: %d recordings deleted", removed)
        return removed
