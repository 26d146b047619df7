"""Recordings: a recorded meeting's decrypted media as a pcap file, encrypted at rest.

Nothing is recorded unless the host switches recording on (docs/ARCHITECTURE.md, "The processes": no
meeting content is kept otherwise). While it is on, each worker writes the packets that enter it for
that meeting (the fast path hands them out as export records; ext/fanout.pxi turns them into pcap
records) to a file of its own:

    DIR/m<meeting wire id>-w<worker>-<unix time>.rec

File format, every integer big-endian:

    b"RELAYREC" b"\\x01"                                 magic and version
    12-byte nonce || AES-256-GCM(recording key, data key)  the file's own 32-byte data key,
                                                           wrapped; associated data: the magic
    then chunks: u32 length || 12-byte nonce || AES-256-GCM(data key, pcap bytes)
                                                           associated data: the chunk number

Decrypted and joined, the chunks are a pcap file (relay._core.PCAP_HEADER first), which
Wireshark opens and plays. The chunk number as associated data keeps chunks from being
reordered or spliced between files; each file has its own data key, so deleting a file (the
retention period, or an operator) leaves nothing, and the recording key alone opens nothing
without the files. The recording key (32 bytes) lives in the data directory with mode 0600.
"""

from __future__ import annotations

import os
import secrets
import struct
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay import _core

MAGIC = b"RELAYREC\x01"
NONCE = 12
KEY_BYTES = 32
WRAPPED = NONCE + KEY_BYTES + 16
SUFFIX = ".rec"


class RecordingError(ValueError):
    """A recording file that does not open: another key, or damaged."""


def file_name(meeting: int, worker: int, started: float) -> str:
    return f"m{meeting}-w{worker}-{int(started)}{SUFFIX}"


def meeting_of(path: Path) -> int | None:
    """The meeting wire id a recording file belongs to (None: not a recording file)."""
    name = path.name
    if not name.startswith("m") or not name.endswith(SUFFIX):
        return None
    head = name[1:].split("-", 1)[0]
    return int(head) if head.isdigit() else None


class Recorder:
    """One recording file being written."""

    def __init__(self, directory: Path, key: bytes, meeting: int, worker: int) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("the recording key must be 32 bytes")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = directory / file_name(meeting, worker, time.time())
        data_key = secrets.token_bytes(KEY_BYTES)
        self._aead = AESGCM(data_key)
        nonce = secrets.token_bytes(NONCE)
        wrapped = nonce + AESGCM(key).encrypt(nonce, data_key, MAGIC)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._file.write(MAGIC + wrapped)
        self._chunks = 0
        self.packets_bytes = 0
        self.write(_core.PCAP_HEADER)

    def write(self, pcap: bytes) -> None:
        if not pcap:
            return
        nonce = secrets.token_bytes(NONCE)
        sealed = nonce + self._aead.encrypt(nonce, pcap, struct.pack(">Q", self._chunks))
        self._file.write(struct.pack(">I", len(sealed)) + sealed)
        self._file.flush()
        self._chunks += 1
        self.packets_bytes += len(pcap)

    def close(self) -> None:
        self._file.close()


def decrypt(path: Path, key: bytes) -> bytes:
    """The pcap file a recording holds."""
    data = path.read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + WRAPPED:
        raise RecordingError(f"{path.name} is not a relay recording")
    at = len(MAGIC)
    wrapped = data[at : at + WRAPPED]
    at += WRAPPED
    try:
        data_key = AESGCM(key).decrypt(wrapped[:NONCE], wrapped[NONCE:], MAGIC)
    except InvalidTag:
        raise RecordingError(f"{path.name} does not open with this recording key") from None
    aead = AESGCM(data_key)
    parts = []
    number = 0
    while at < len(data):
        if at + 4 > len(data):
            raise RecordingError(f"{path.name} is cut off")
        (length,) = struct.unpack_from(">I", data, at)
        sealed = data[at + 4 : at + 4 + length]
        if len(sealed) != length or length < NONCE + 16:
            raise RecordingError(f"{path.name} is cut off")
        try:
            parts.append(aead.decrypt(sealed[:NONCE], sealed[NONCE:], struct.pack(">Q", number)))
        except InvalidTag:
            raise RecordingError(f"{path.name} is damaged at chunk {number}") from None
        at += 4 + length
        number += 1
    return b"".join(parts)
