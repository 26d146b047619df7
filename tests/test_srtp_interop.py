"""Interop with libsrtp (through pylibsrtp), an SRTP implementation nobody here wrote.

Every suite, both directions, RTP and RTCP, sizes up to pylibsrtp's 1,356-byte limit, and a
stream that crosses the 16-bit sequence wrap.
"""

from __future__ import annotations

import pytest

pylibsrtp = pytest.importorskip("pylibsrtp")

from bench.libsrtp import profile as libsrtp_profile  # noqa: E402
from bench.libsrtp import session as libsrtp_session  # noqa: E402
from relay.srtp import AuthError, Session  # noqa: E402
from tests.conftest import key_for, rtcp_sr, rtp  # noqa: E402

pytestmark = pytest.mark.interop

SIZES = [0, 1, 160, 1000, 1356 - 12 - 16]  # payload bytes; pylibsrtp stops at 1,356 in all


def libsrtp(suite: str, outbound: bool) -> pylibsrtp.Session:
    if libsrtp_profile(suite) is None:
        pytest.skip(f"libsrtp has no profile for {suite}")
    return libsrtp_session(suite, key_for(suite), outbound=outbound)


def stream(start: int, count: int) -> list[bytes]:
    """Packets of several sizes, with CSRCs and an extension, across the wrap when asked."""
    out = []
    for i in range(count):
        size = SIZES[i % len(SIZES)]
        extras = {"csrcs": (7, 8)} if i % 3 == 1 else {"ext": b"\x10\x01\x02\x03"} if i % 3 else {}
        out.append(
            rtp((start + i) & 0xFFFF, payload=bytes((i + j) & 0xFF for j in range(size)), **extras)
        )
    return out


@pytest.mark.parametrize("start", [1000, 65500])
def test_relay_protects_libsrtp_unprotects(suite: str, start: int) -> None:
    tx, rx = Session(suite, key_for(suite)), libsrtp(suite, outbound=False)
    for plain in stream(start, 80):
        assert rx.unprotect(tx.protect(plain)) == plain
    for i in range(4):
        plain = rtcp_sr(extra=bytes([i]) * 12)
        assert rx.unprotect_rtcp(tx.protect_rtcp(plain)) == plain


@pytest.mark.parametrize("start", [1000, 65500])
def test_libsrtp_protects_relay_unprotects(suite: str, start: int) -> None:
    tx, rx = libsrtp(suite, outbound=True), Session(suite, key_for(suite))
    for plain in stream(start, 80):
        assert rx.unprotect(tx.protect(plain)) == plain
    for i in range(4):
        plain = rtcp_sr(extra=bytes([i]) * 12)
        assert rx.unprotect_rtcp(tx.protect_rtcp(plain)) == plain


def test_outputs_are_byte_identical(suite: str) -> None:
    ours, theirs = Session(suite, key_for(suite)), libsrtp(suite, outbound=True)
    for plain in stream(65530, 12):
        assert ours.protect(plain) == theirs.protect(plain)


def test_libsrtp_refuses_our_forgeries_and_we_refuse_its(suite: str) -> None:
    srtp = bytearray(Session(suite, key_for(suite)).protect(rtp(9)))
    srtp[-2] ^= 0x10
    with pytest.raises(pylibsrtp.Error):
        libsrtp(suite, outbound=False).unprotect(bytes(srtp))
    srtp = bytearray(libsrtp(suite, outbound=True).protect(rtp(9)))
    srtp[14] ^= 0x10
    with pytest.raises(AuthError):
        Session(suite, key_for(suite)).unprotect(bytes(srtp))
