"""Fuzzing STUN (relay/stun.py) and the ICE-lite responder (relay/ice.py) with atheris.

One input goes, as it is, to `stun.parse` (StunError is the one exception it may raise) and to
an IceLite with two participants, as if from a peer's address, from a stranger's and from an
IPv6 one: `receive` must never raise, and must answer nothing that does not verify under a
participant's password. Random bytes never pass MESSAGE-INTEGRITY, so the input is then also
used as the attributes of a Binding request signed with the first participant's password: that
reaches what only authenticated checks reach (420, 487, nominations, consent). Last, the clock
moves on by up to a minute (from the input's last byte) and consent is expired.

    mkdir -p /tmp/stun-inputs        # libFuzzer adds what it finds to the first directory
    python fuzz/fuzz_stun.py -runs=20000 /tmp/stun-inputs fuzz/corpus-stun        # 1 to 2 s
    python fuzz/fuzz_stun.py -max_total_time=600 /tmp/stun-inputs fuzz/corpus-stun

(From the repository root; from a checkout that is not the one installed in the environment,
with PYTHONPATH=. so that its relay/ is the one fuzzed.)

The seeds in fuzz/corpus-stun are RFC 5769's three messages, a signed check as a browser sends
it, and attribute lists for the signed path (a nomination, a role conflict, an unknown
comprehension-required attribute).
"""

from __future__ import annotations

import hmac
import struct
import sys
import zlib

import atheris

with atheris.instrument_imports():
    from relay import stun
    from relay.errors import StunError
    from relay.ice import OUTCOMES, IceLite

PARTICIPANTS = {
    1: ("fz01", "fuzzPasswordNumberOne1", "peer"),
    2: ("fz02", "fuzzPasswordNumberTwo2", None),
}
KEYS = [pwd.encode() for _, pwd, _ in PARTICIPANTS.values()]
SOURCES = [("192.0.2.1", 5000), ("203.0.113.9", 6000), ("2001:db8::1", 7000)]

ICE = IceLite()
for _pid, (_ufrag, _pwd, _remote) in PARTICIPANTS.items():
    ICE.add(_pid, _ufrag, _pwd, _remote)
USERNAME = b"fz01:peer"
CLOCK = [1000.0]  # monotonic, as the worker's is
SERIAL = [0]


def _parse(data: bytes) -> None:
    try:
        message = stun.parse(data)
    except StunError:
        return
    message.check_fingerprint()
    for key in KEYS:
        message.check_integrity(key)


def _receive(data: bytes, source: tuple[str, int]) -> None:
    result = ICE.receive(data, source, CLOCK[0])
    if result.outcome not in OUTCOMES:
        raise AssertionError(f"outcome {result.outcome!r} is not in the vocabulary")
    if result.response is not None:
        # Answered: the request must be authentic.
        message = stun.parse(data)
        if not any(message.check_integrity(key) for key in KEYS):
            raise AssertionError("answered a request that no participant's password signs")
        stun.parse(result.response)  # and what it sends parses


def _signed(attributes: bytes) -> bytes:
    # A Binding request: USERNAME, the input as attributes (padded to 4 bytes), then
    # MESSAGE-INTEGRITY and FINGERPRINT as RFC 8489 sections 14.5 and 14.7 compute them. Built
    # here, not with stun.build, which would not take attributes that are not well formed.
    SERIAL[0] += 1
    tid = SERIAL[0].to_bytes(12, "big")
    # One in four from the right password and the wrong remote ufrag (an old ICE generation).
    name = USERNAME if len(attributes) % 4 else b"fz01:gen0"
    username = struct.pack("!HH", 0x0006, len(name)) + name + b"\0" * 3
    body = username + attributes + b"\0" * (-len(attributes) % 4)
    if len(body) + 32 > 0xFFFF:
        return b""
    header = struct.pack("!HHI", 0x0001, len(body) + 24, stun.MAGIC_COOKIE) + tid
    body += struct.pack("!HH", 0x0008, 20) + hmac.new(KEYS[0], header + body, "sha1").digest()
    header = struct.pack("!HHI", 0x0001, len(body) + 8, stun.MAGIC_COOKIE) + tid
    crc = zlib.crc32(header + body) ^ stun.FINGERPRINT_XOR
    return header + body + struct.pack("!HHI", 0x8028, 4, crc)


def one_input(data: bytes) -> None:
    _parse(data)
    stun.is_stun(data)
    for source in SOURCES:
        _receive(data, source)
    signed = _signed(data)
    if signed:
        _parse(signed)
        _receive(signed, SOURCES[len(data) % len(SOURCES)])
    CLOCK[0] += (data[-1] if data else 0) / 4
    now = CLOCK[0]
    ICE.expired(now)
    deadline = ICE.next_expiry()
    if deadline is not None and deadline <= now:
        raise AssertionError("consent left to expire after expired()")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
