"""Randomised: the native core and the reference agree byte for byte on every packet shape,
and no input, however broken, crashes the native core or reads outside its buffers (the debug
build runs this under AddressSanitizer)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import _core
from relay.srtp import SrtpError
from tests.conftest import ALL_SUITES, key_for, rtcp_sr
from tests.reference import srtp_ref

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    """RTP packets of 12 to 1,400 bytes with CSRCs, header extensions and padding."""
    csrcs = draw(st.lists(st.integers(0, 2**32 - 1), max_size=15))
    ext_words = draw(st.none() | st.integers(0, 16))
    padding = draw(st.integers(0, 255))
    header = 12 + 4 * len(csrcs) + (4 + 4 * ext_words if ext_words is not None else 0)
    room = 1400 - header - padding
    payload = draw(st.binary(max_size=max(room, 0)))
    b0 = 0x80 | len(csrcs) | (0x10 if ext_words is not None else 0) | (0x20 if padding else 0)
    pkt = struct.pack(
        "!BBHII",
        b0,
        draw(st.integers(0, 255)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)),
    )
    pkt += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext_words is not None:
        pkt += struct.pack("!HH", 0xBEDE, ext_words) + draw(
            st.binary(min_size=4 * ext_words, max_size=4 * ext_words)
        )
    pkt += payload
    if padding:
        pkt += bytes(padding - 1) + bytes([padding])
    assert 12 <= len(pkt) <= 1400
    return pkt


@SETTINGS
@given(suite=st.sampled_from(ALL_SUITES), packet=rtp_packets())
def test_native_and_reference_agree_on_rtp(suite: str, packet: bytes) -> None:
    native = _core.Session(suite, key_for(suite))
    reference = srtp_ref.Session(suite, key_for(suite))
    srtp = native.protect(packet)
    assert srtp == reference.protect(packet)
    assert _core.Session(suite, key_for(suite)).unprotect(srtp) == packet
    assert srtp_ref.Session(suite, key_for(suite)).unprotect(srtp) == packet


@SETTINGS
@given(suite=st.sampled_from(ALL_SUITES), extra=st.binary(max_size=1400))
def test_native_and_reference_agree_on_rtcp(suite: str, extra: bytes) -> None:
    packet = rtcp_sr(extra=extra)
    srtcp = _core.Session(suite, key_for(suite)).protect_rtcp(packet)
    assert srtcp == srtp_ref.Session(suite, key_for(suite)).protect_rtcp(packet)
    assert _core.Session(suite, key_for(suite)).unprotect_rtcp(srtcp) == packet


@SETTINGS
@given(suite=st.sampled_from(ALL_SUITES), data=st.binary(max_size=1600))
def test_random_input_never_crashes(suite: str, data: bytes) -> None:
    session = _core.Session(suite, key_for(suite))
    for call in (session.unprotect, session.unprotect_rtcp, session.protect, session.protect_rtcp):
        try:
            call(data)
        except SrtpError:
            pass


@SETTINGS
@given(suite=st.sampled_from(ALL_SUITES), packet=rtp_packets(), data=st.data())
def test_truncated_and_bit_flipped_srtp_is_refused(
    suite: str, packet: bytes, data: st.DataObject
) -> None:
    srtp = _core.Session(suite, key_for(suite)).protect(packet)
    cut = data.draw(st.integers(0, len(srtp) - 1))
    flip = data.draw(st.integers(0, len(srtp) * 8 - 1))
    mangled = bytearray(srtp)
    mangled[flip // 8] ^= 1 << (flip % 8)
    for bad in (srtp[:cut], bytes(mangled)):
        rx = _core.Session(suite, key_for(suite))
        try:
            rx.unprotect(bad)
        except SrtpError:
            continue
        raise AssertionError("a truncated or modified packet was accepted")
