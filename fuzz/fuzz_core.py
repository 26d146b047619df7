"""Fuzzing the native core with atheris: every way untrusted bytes reach it.

One input drives, in turn: SRTP and SRTCP unprotect (the suite from its first byte), the
forwarding loop (up to four datagrams from one input, through a routing table with a webinar
in it, from a known and an unknown address, STUN and DTLS set aside or not, then its
reservations committed and what waited for them released), the input as the RTCP compound of
an attendee, authenticated (what only an authenticated packet reaches: NACKs answered from
the retransmission cache, receiver reports, keyframe requests), a record message from another
worker, the saved ledger and stream state, and SDES key parsing. Exceptions the API documents
(SrtpError, ValueError) are expected; anything else, a crash, a sanitizer report or a packet
that does not survive protect then unprotect, is a finding.

    python fuzz/fuzz_core.py -runs=10000000 fuzz/corpus        # new inputs go to the corpus
    RELAY_CORE_DIR=build/debug-lib LD_PRELOAD="$(cc -print-file-name=libasan.so)" \
        ASAN_OPTIONS=detect_leaks=0 python fuzz/fuzz_core.py -runs=... fuzz/corpus

RELAY_CORE_DIR=build/fuzz-lib (setup.py's RELAY_FUZZ=1 build, with clang) makes the search
follow the native code's coverage. scripts/test runs a short pass on the release build with
the corpus; the long runs and their figures are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import atheris

if os.environ.get("RELAY_CORE_DIR"):  # another build of the core: debug (ASan) or fuzzing
    import relay

    relay.__path__.insert(0, str(Path(os.environ["RELAY_CORE_DIR"]).resolve() / "relay"))

with atheris.instrument_imports():
    from relay import _core
    from relay.srtp import SUITES, SrtpError, parse_sdes_key

CORE = _core.__file__  # which build is being fuzzed (printed at start)

NAMES = list(SUITES)
KEYS = {suite: bytes(range(1, 1 + sum(SUITES[suite][:2]))) for suite in NAMES}
SENDER = 0x0A0A0A0A
KNOWN = ("10.0.0.1", 5000)
STRANGER = ("10.9.9.9", 6000)


def _table() -> tuple[_core.RouteTable, _core.Forwarder, _core.SendBatch]:
    # Durable, as a worker's is: copies park until their reservations are committed.
    table = _core.RouteTable(durable=True)
    table.open_meeting(1, "webinar")
    suite = NAMES[0]
    table.join(
        1, 1, "host", suite, KEYS[suite], KEYS[suite], ssrcs=[SENDER], address=KNOWN,
        video_ssrcs=[SENDER],
    )  # fmt: skip
    for pid in range(2, 6):
        table.join(
            pid,
            1,
            "attendee",
            suite,
            KEYS[suite],
            KEYS[suite],
            address=(f"10.0.1.{pid}", 7000),
            local=pid % 2 == 0,
            receive_ports=[(SENDER, 7000)] if pid == 4 else (),
        )
    return table, _core.Forwarder(table), _core.SendBatch(1024)


TABLE, FORWARDER, TX = _table()
# The host's and attendee 2's clients (all keys are KEYS[suite] here): what they send
# authenticates, so the input reaches what lies behind that.
HOST = _core.Session(NAMES[0], KEYS[NAMES[0]])
ATTENDEE = _core.Session(NAMES[0], KEYS[NAMES[0]])
ATTENDEE_AT = ("10.0.1.2", 7000)
SEQ = [0]


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    suite = NAMES[data[0] % len(NAMES)]
    body = data[1:]
    session = _core.Session(suite, KEYS[suite])
    for call in (session.unprotect, session.unprotect_rtcp):
        try:
            call(body)
        except SrtpError:
            pass
    # The input as a plaintext: whatever header it has (CSRCs, extension, padding), what
    # protect accepts, unprotect gives back exactly.
    for protect, unprotect in (
        (session.protect, _core.Session(suite, KEYS[suite]).unprotect),
        (session.protect_rtcp, _core.Session(suite, KEYS[suite]).unprotect_rtcp),
    ):
        try:
            sealed = protect(body)
        except SrtpError:
            continue
        if unprotect(sealed) != body:
            raise AssertionError(f"{suite}: a protected packet did not come back")
    # The forwarding loop: up to four datagrams, split at the second byte's count.
    rx = _core.RecvBatch()
    parts = [body[i::4] for i in range(1 + data[1] % 4)] if data[1] & 0x80 else [body]
    for i, part in enumerate(parts):
        if len(part) <= 2048:
            rx.push(part, KNOWN if i % 2 == 0 else STRANGER)
    FORWARDER.set_aside = bool(data[0] & 1)  # STUN and DTLS kept for a WebRTC worker, or not
    FORWARDER.budget = data[0] >> 5  # and within a budget, or past it
    FORWARDER.process(rx, TX, 1000.0 + data[0])
    for datagram, _source in FORWARDER.take_aside():
        if len(datagram) < 13 or not (datagram[0] <= 3 or 20 <= datagram[0] <= 63):
            raise AssertionError("set aside a datagram that is neither STUN nor DTLS")
    TABLE.ledger_pending()  # as relay/worker.py does after each batch, the file aside
    TABLE.ledger_commit()
    FORWARDER.process_release(TX)
    TX.clear()
    # A packet of the host's (the video stream's cache keeps it), then the input as an
    # attendee's RTCP: its first subpacket a version-2 RTCP header of types 200..206.
    if len(body) >= 8:
        SEQ[0] += 1
        media = bytes([0x80, 96]) + (SEQ[0] & 0xFFFF).to_bytes(2, "big") + bytes(4)
        media += SENDER.to_bytes(4, "big") + body[:64]
        compound = bytes([0x80 | (body[0] & 0x3F), 200 + body[1] % 7]) + body[2:]
        rx = _core.RecvBatch()
        rx.push(HOST.protect(media), KNOWN)
        rx.push(ATTENDEE.protect_rtcp(compound), ATTENDEE_AT)
        FORWARDER.process(rx, TX, 1000.0 + data[0])
        FORWARDER.process_keyframes_due(TX, 1001.0 + data[0])
        TABLE.ledger_pending()
        TABLE.ledger_commit()
        FORWARDER.process_release(TX)
        TX.clear()
        TABLE.take_reception()
    FORWARDER.take_exports()
    FORWARDER.process_import(body, TX)
    TX.clear()
    try:
        _core.RouteTable().ledger_load(body)
    except ValueError:
        pass
    _core.records_to_pcap(body, 1.0)
    try:
        parse_sdes_key(suite, body.decode("latin-1"))
    except ValueError:
        pass


def main() -> None:
    print(f"fuzzing {CORE}", file=sys.stderr)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
