"""SRTP behaviour, run on the native core and on the pure-Python reference alike."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from relay.srtp import SUITES, AuthError, ReplayError, Session, SrtpError
from tests.conftest import key_for, rtcp_sr, rtp

SessionType = Callable[..., Any]


def pair(impl: SessionType, suite: str, **kw: Any) -> tuple[Any, Any]:
    return impl(suite, key_for(suite), **kw), impl(suite, key_for(suite), **kw)


def test_suites_table() -> None:
    assert dict(SUITES) == {
        "AES_CM_128_HMAC_SHA1_80": (16, 14, 10),
        "AES_CM_128_HMAC_SHA1_32": (16, 14, 4),
        "AEAD_AES_128_GCM": (16, 12, 16),
        "AEAD_AES_256_GCM": (32, 12, 16),
    }


def test_round_trip_rtp(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    for seq in range(100, 110):
        plain = rtp(seq, payload=bytes(range(seq % 50, seq % 50 + 150)))
        srtp = tx.protect(plain)
        assert len(srtp) == len(plain) + SUITES[suite][2]
        assert srtp[:12] == plain[:12]  # the header stays in the clear
        assert srtp[12 : len(plain)] != plain[12:]  # the payload does not
        assert rx.unprotect(srtp) == plain


def test_round_trip_rtcp(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    for i in range(5):
        plain = rtcp_sr(extra=bytes([i]) * 8)
        srtcp = tx.protect_rtcp(plain)
        tag = 16 if "GCM" in suite else 10
        assert len(srtcp) == len(plain) + 4 + tag
        trailer = srtcp[-4:] if "GCM" in suite else srtcp[len(plain) : len(plain) + 4]
        assert struct.unpack("!I", trailer)[0] == 0x80000000 | i  # E = 1, index counts from 0
        assert rx.unprotect_rtcp(srtcp) == plain


def test_accepts_any_bytes_like(impl: SessionType) -> None:
    tx, rx = pair(impl, "AES_CM_128_HMAC_SHA1_80")
    a = tx.protect(bytearray(rtp(1)))
    b = tx.protect(memoryview(rtp(2)))
    assert rx.unprotect(memoryview(a)) == rtp(1)
    assert rx.unprotect(bytearray(b)) == rtp(2)


@pytest.mark.parametrize(
    "shape",
    [
        {"csrcs": (1, 2, 3)},
        {"ext": b"\x10\xaa\x00\x00"},
        {"padding": 7},
        {"csrcs": (9,) * 15, "ext": bytes(40), "padding": 255},
        {"payload": b""},
    ],
)
def test_csrcs_extensions_and_padding_carried_unchanged(
    impl: SessionType, suite: str, shape: dict[str, Any]
) -> None:
    tx, rx = pair(impl, suite)
    plain = rtp(7, **shape)
    srtp = tx.protect(plain)
    header_len = len(rtp(7, **{**shape, "payload": b"", "padding": 0}))
    assert srtp[:header_len] == plain[:header_len]
    assert rx.unprotect(srtp) == plain


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("where", [1, 5, 20, -1])
def test_tampering_raises_auth_error(impl: SessionType, suite: str, where: int) -> None:
    tx, rx = pair(impl, suite)
    srtp = bytearray(tx.protect(rtp(1000)))
    srtp[where] ^= 0x04
    with pytest.raises(AuthError):
        rx.unprotect(bytes(srtp))


def test_tampered_rtcp_raises_auth_error(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    srtcp = bytearray(tx.protect_rtcp(rtcp_sr()))
    srtcp[10] ^= 0x80
    with pytest.raises(AuthError):
        rx.unprotect_rtcp(bytes(srtcp))


def test_wrong_key_raises_auth_error(impl: SessionType, suite: str) -> None:
    tx = impl(suite, key_for(suite, seed=1))
    rx = impl(suite, key_for(suite, seed=2))
    with pytest.raises(AuthError):
        rx.unprotect(tx.protect(rtp(5)))
    with pytest.raises(AuthError):
        rx.unprotect_rtcp(tx.protect_rtcp(rtcp_sr()))


def test_failed_packet_changes_no_state(impl: SessionType, suite: str) -> None:
    """A forged packet far ahead must not move the ROC or the window (RFC 3711 3.3)."""
    tx, rx = pair(impl, suite)
    rx.unprotect(tx.protect(rtp(10)))
    forged = bytearray(impl(suite, key_for(suite)).protect(rtp(30000)))
    forged[-1] ^= 1
    with pytest.raises(AuthError):
        rx.unprotect(bytes(forged))
    # Had the forgery been accepted, packet 11 would now be a late packet far behind it.
    assert rx.unprotect(tx.protect(rtp(11))) == rtp(11)


# --- replay -------------------------------------------------------------------------------


def test_replay_raises(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    srtp = tx.protect(rtp(1))
    rx.unprotect(srtp)
    with pytest.raises(ReplayError):
        rx.unprotect(srtp)
    srtcp = tx.protect_rtcp(rtcp_sr())
    rx.unprotect_rtcp(srtcp)
    with pytest.raises(ReplayError):
        rx.unprotect_rtcp(srtcp)


def test_too_old_raises_and_window_edge(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite, replay_window=64)
    packets = {seq: tx.protect(rtp(seq)) for seq in range(1, 200)}
    rx.unprotect(packets[199])
    assert rx.unprotect(packets[199 - 63]) == rtp(199 - 63)  # last index inside the window
    with pytest.raises(ReplayError):
        rx.unprotect(packets[199 - 64])  # first one behind it
    with pytest.raises(ReplayError):
        rx.unprotect(packets[1])


def test_late_packets_within_window_accepted_once(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    packets = [tx.protect(rtp(seq)) for seq in range(0, 300)]
    order = list(range(0, 300, 2)) + list(range(299, 171, -2))  # odd ones late, newest first
    for seq in order:
        assert rx.unprotect(packets[seq]) == rtp(seq)
    for seq in (171, 1):
        with pytest.raises(ReplayError):
            rx.unprotect(packets[seq])


def test_protecting_an_index_twice_is_refused(impl: SessionType, suite: str) -> None:
    """The same SSRC and index twice would reuse keystream (a two-time pad)."""
    tx = impl(suite, key_for(suite))
    tx.protect(rtp(5))
    with pytest.raises(ReplayError):
        tx.protect(rtp(5, payload=b"different"))
    tx.protect(rtp(4))  # out of order but never used: allowed


def test_ssrcs_keep_separate_state(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    for ssrc in (1, 2, 0xFFFFFFFF):
        assert rx.unprotect(tx.protect(rtp(77, ssrc=ssrc))) == rtp(77, ssrc=ssrc)
    # Many SSRCs (the table grows), each with its own window.
    for ssrc in range(1000, 1100):
        assert rx.unprotect(tx.protect(rtp(1, ssrc=ssrc))) == rtp(1, ssrc=ssrc)
    for ssrc in (1, 1050):
        with pytest.raises(ReplayError):
            tx.protect(rtp(77 if ssrc == 1 else 1, ssrc=ssrc))


# --- ROC ----------------------------------------------------------------------------------


def test_roc_rolls_over_across_many_wraps(impl: SessionType, suite: str) -> None:
    """Gaps under 2^15 keep the ROC estimate right (RFC 3711 3.3.1): step 1000 at a time,
    one at a time around each wrap, over three wraps."""
    tx, rx = pair(impl, suite)
    index = 65000
    while index < 3 * 65536 + 100:
        seq = index & 0xFFFF
        srtp = tx.protect(rtp(seq))
        assert rx.unprotect(srtp) == rtp(seq)
        index += 1 if seq > 65530 or seq < 5 else 1000
    # The ROC is in the tag (AES-CM) or the IV (GCM): a fresh receiver at ROC 0 cannot
    # authenticate a packet from ROC 3.
    with pytest.raises(AuthError):
        impl(suite, key_for(suite)).unprotect(tx.protect(rtp(200)))


def test_reordering_around_the_wrap(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    seqs = list(range(65500, 65536)) + list(range(0, 40))
    packets = {s: tx.protect(rtp(s)) for s in seqs}
    order = [65530, 65531, 2, 65532, 0, 65535, 1, 65533, 3, 65534, 65500] + list(range(4, 40))
    for s in order:
        assert rx.unprotect(packets[s]) == rtp(s), s
    with pytest.raises(ReplayError):
        rx.unprotect(packets[65535])


def test_packet_before_the_stream_began_is_too_old(impl: SessionType, suite: str) -> None:
    """At ROC 0 a SEQ far 'behind' the first one would need ROC -1: refused."""
    tx, rx = pair(impl, suite)
    early = tx.protect(rtp(60000))
    tx2 = impl(suite, key_for(suite))
    rx.unprotect(tx2.protect(rtp(100)))
    with pytest.raises(ReplayError):
        rx.unprotect(early)


# --- SRTCP ----------------------------------------------------------------------------------


def test_srtcp_reordering_and_replay(impl: SessionType, suite: str) -> None:
    tx, rx = pair(impl, suite)
    packets = [tx.protect_rtcp(rtcp_sr(extra=bytes([i]) * 4)) for i in range(10)]
    for i in (3, 1, 2, 0, 9, 5):
        assert rx.unprotect_rtcp(packets[i]) == rtcp_sr(extra=bytes([i]) * 4)
    with pytest.raises(ReplayError):
        rx.unprotect_rtcp(packets[5])


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"\x80",
        bytes(11),  # shorter than the fixed header
        b"\x40" + bytes(30),  # version 1
        b"\x8f" + bytes(30),  # 15 CSRCs announced, 30 bytes present
        b"\x90" + bytes(11) + b"\xbe\xde\x00\xff",  # extension of 255 words, none present
    ],
)
def test_malformed_rtp_raises_srtp_error(impl: SessionType, suite: str, packet: bytes) -> None:
    tx, rx = pair(impl, suite)
    with pytest.raises(SrtpError) as exc:
        tx.protect(packet)
    assert not isinstance(exc.value, AuthError | ReplayError)
    with pytest.raises(SrtpError) as exc:
        rx.unprotect(packet + bytes(SUITES[suite][2]))
    assert not isinstance(exc.value, AuthError | ReplayError)


@pytest.mark.parametrize("packet", [b"", bytes(7), b"\x00" * 40])
def test_malformed_rtcp_raises_srtp_error(impl: SessionType, suite: str, packet: bytes) -> None:
    tx, rx = pair(impl, suite)
    with pytest.raises(SrtpError):
        tx.protect_rtcp(packet)
    with pytest.raises(SrtpError):
        rx.unprotect_rtcp(packet)


def test_oversized_packets_are_refused(impl: SessionType) -> None:
    tx, rx = pair(impl, "AES_CM_128_HMAC_SHA1_80")
    huge = rtp(1, payload=bytes(70000))
    for call in (tx.protect, rx.unprotect, tx.protect_rtcp, rx.unprotect_rtcp):
        with pytest.raises(SrtpError):
            call(huge)
    # The largest UDP payload still works.
    big = rtp(2, payload=bytes(65535 - 12 - 10))
    assert rx.unprotect(tx.protect(big)) == big


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("AES_CM_256_HMAC_SHA1_80", bytes(46)), {}, "unknown SRTP suite"),
        (("AES_CM_128_HMAC_SHA1_80", bytes(29)), {}, "30"),
        (("AES_CM_128_HMAC_SHA1_80", bytes(32)), {}, "30"),
        (("AEAD_AES_256_GCM", bytes(28)), {}, "44"),
        (("AES_CM_128_HMAC_SHA1_80", bytes(30)), {"mki": b"\x01"}, "MKI"),
        (("AES_CM_128_HMAC_SHA1_80", bytes(30)), {"replay_window": 16}, "replay_window"),
    ],
)
def test_bad_parameters_raise_value_error(
    impl: SessionType, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        impl(*args, **kwargs)


def test_srtcp_of_the_32_bit_suite_with_either_tag_length() -> None:
    """AES_CM_128_HMAC_SHA1_32 has an 80-bit SRTCP tag (libsrtp, RFC 4568); ffmpeg sends a
    32-bit one when asked for the suite by that name. Both authenticate; a short tag that is
    wrong does not, and the 80-bit suite takes no short tag."""
    key = bytes(range(30))
    report = bytes([0x80, 200, 0, 6]) + bytes(range(24))
    sender = Session("AES_CM_128_HMAC_SHA1_32", key)
    long_tag = sender.protect_rtcp(report)
    short_tag = sender.protect_rtcp(report)[:-6]  # the same HMAC, cut at 32 bits
    receiver = Session("AES_CM_128_HMAC_SHA1_32", key)
    assert receiver.unprotect_rtcp(long_tag) == report
    assert receiver.unprotect_rtcp(short_tag) == report
    forged = short_tag[:-1] + bytes([short_tag[-1] ^ 1])
    with pytest.raises(AuthError):
        Session("AES_CM_128_HMAC_SHA1_32", key).unprotect_rtcp(forged)
    with pytest.raises(SrtpError):
        Session("AES_CM_128_HMAC_SHA1_80", key).unprotect_rtcp(
            Session("AES_CM_128_HMAC_SHA1_80", key).protect_rtcp(report)[:-6]
        )


def test_sdes_lifetimes() -> None:
    from relay.srtp import parse_sdes_key

    key = "inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e"
    suite = "AES_CM_128_HMAC_SHA1_80"
    assert parse_sdes_key(suite, key + "|2^31") == bytes(range(1, 31))
    assert parse_sdes_key(suite, key + "|2^48") == bytes(range(1, 31))
    assert parse_sdes_key(suite, key + "|4294967296") == bytes(range(1, 31))
    with pytest.raises(ValueError, match="shorter than this relay supports"):
        parse_sdes_key(suite, key + "|2^20")
    with pytest.raises(ValueError, match="not '2\\^N' or a number"):
        parse_sdes_key(suite, key + "|forever")
    with pytest.raises(ValueError, match="MKI is not supported"):
        parse_sdes_key(suite, key + "|2^31|1:4")
