"""Fuzzing the WebRTC SDP reader with atheris: what a WHIP or WHEP client can POST.

One input is read as an offer (its bytes as Latin-1, so every byte sequence is some text and
line structure survives mutation). What parses is answered both ways: as a publisher's offer,
and as a viewer's with an Opus, a VP8 and an H.264 stream to place. OfferError (a ValueError)
is the documented refusal; any other exception is a finding, and so is an answer that is not
clean SDP (CRLF lines of printable ASCII, each <type>=<value>), which would mean something from
the offer broke out of its line.

    python fuzz/fuzz_sdp.py -runs=1000000 "$(mktemp -d)" fuzz/corpus-sdp

The first directory receives new inputs, the second holds the seeds (the sample Chrome,
Firefox and aiortc offers of tests/test_webrtc_sdp.py, and GStreamer webrtcbin's as
tests/gstreamer_webrtc.py makes them); keep new finds out of the seeds unless
they are worth keeping. The parser is pure Python, so atheris follows its coverage as is.
"""

from __future__ import annotations

import re
import sys

import atheris

with atheris.instrument_imports():
    from control.webrtc_sdp import OfferError, answer_publisher, answer_viewer, parse_offer
    from relay.wire import Stream

LOCAL = {
    "ice_ufrag": "RelayUfrag1",
    "ice_pwd": "RelayPassword0123456789ab",
    "fingerprint": "sha-256 " + ":".join(["AB"] * 32),
    "host": "203.0.113.7",
    "port": 40000,
    "session_id": 1,
}
STREAMS = [
    Stream(ssrc=1, kind="audio", pt=111, codec="opus/48000/2"),
    Stream(ssrc=2, kind="video", pt=96, codec="VP8/90000"),
    Stream(ssrc=3, kind="video", pt=102, codec="H264/90000"),
]
FMTP = {3: "packetization-mode=1;profile-level-id=42e01f"}
CLEAN = re.compile(r"(?:[a-z]=[\x20-\x7e]*\r\n)+")


def one_input(data: bytes) -> None:
    try:
        offer = parse_offer(data.decode("latin-1"))
    except OfferError:
        return
    answers = (
        lambda: answer_publisher(offer, **LOCAL).sdp,
        lambda: answer_viewer(offer, **LOCAL, streams=STREAMS, fmtp=FMTP).sdp,
    )
    for answer in answers:
        try:
            sdp = answer()
        except ValueError:  # OfferError, or a ValueError from a check the offer reached
            continue
        if CLEAN.fullmatch(sdp) is None:
            raise AssertionError("an answer is not clean CRLF SDP")


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
