"""The demo's audible presenter: a chime a browser on the join page can hear.

The demo's measured presenter sends the load generator's packets, whose payload is a number
the attendees check, not sound. This one sends real Opus: `demo_chime.bin` holds two seconds
of a chime (660 and 990 Hz, decaying once a second) encoded once with libopus (48 kHz,
mono, 20 ms frames, 32 kbit/s) and stored as its packets, each a 16-bit big-endian length
and the packet. It is played in a loop as RTP (payload type 111, 960 samples a packet),
protected with the uplink key of the chime's own join answer (relay.srtp), so nothing needs
an encoder or ffmpeg at run time.
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from relay.srtp import Session

CHIME = Path(__file__).with_name("demo_chime.bin")
SSRC = 0x43484D45  # "CHME": apart from the load generator's SSRCs (bench/served.py)
PAYLOAD_TYPE = 111
SAMPLES = 960  # 20 ms at 48 kHz
STREAM = {"ssrc": SSRC, "kind": "audio", "pt": PAYLOAD_TYPE, "codec": "opus/48000/2"}


def packets() -> list[bytes]:
    """The chime's Opus packets, in order."""
    data = CHIME.read_bytes()
    found: list[bytes] = []
    at = 0
    while at < len(data):
        (length,) = struct.unpack_from(">H", data, at)
        found.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    if at != len(data) or not found:
        raise ValueError(f"{CHIME} is not a list of Opus packets")
    return found


class Chime(threading.Thread):
    """Sends the chime every 20 ms to the relay from the join answer, until `stop()`."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(name="chime", daemon=True)
        srtp = answer["srtp"]
        self.session = Session(srtp["suite"], base64.b64decode(srtp["uplink"]))
        self.relay = (answer["relay"]["host"], int(answer["relay"]["port"]))
        self.frames = packets()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stopping = threading.Event()

    def run(self) -> None:
        seq = 0
        started = time.monotonic()
        while not self._stopping.is_set():
            frame = self.frames[seq % len(self.frames)]
            header = struct.pack(
                ">BBHII", 0x80, PAYLOAD_TYPE, seq & 0xFFFF, (seq * SAMPLES) & 0xFFFFFFFF, SSRC
            )
            try:
                self.sock.sendto(self.session.protect(header + frame), self.relay)
            except OSError:
                pass  # the relay is going away: the demo is ending
            seq += 1
            self._stopping.wait(max(0.0, started + seq * 0.02 - time.monotonic()))

    def stop(self) -> None:
        self._stopping.set()
        self.join(2)
        self.sock.close()
