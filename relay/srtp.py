"""SRTP and SRTCP for relay: the stable public face of the native core.

    from relay.srtp import Session, SUITES, SrtpError, AuthError, ReplayError

    s = Session("AES_CM_128_HMAC_SHA1_80", key_material)  # master key || master salt
    srtp = s.protect(rtp)
    rtp = s.unprotect(srtp)          # AuthError / ReplayError / SrtpError
    srtcp = s.protect_rtcp(rtcp)
    rtcp = s.unprotect_rtcp(srtcp)

A Session keeps per-SSRC send state (for protect) and receive state (ROC estimate, replay
window) apart, like libsrtp. Suites: RFC 3711 AES-CM with HMAC-SHA1 (80- and 32-bit tags) and
RFC 7714 AES-GCM (128 and 256), each for SRTP and SRTCP.
"""

from __future__ import annotations

import base64
import binascii
from types import MappingProxyType

from relay._core import SUITES as _SUITES
from relay._core import Session
from relay.errors import AuthError, ReplayError, SrtpError

#: suite name -> (master key length, master salt length, SRTP tag length), in bytes.
SUITES: MappingProxyType[str, tuple[int, int, int]] = MappingProxyType(dict(_SUITES))

__all__ = ["SUITES", "AuthError", "ReplayError", "Session", "SrtpError", "parse_sdes_key"]


MIN_LIFETIME = 1 << 31  # packets: the SRTCP index limit; this relay never rekeys


def _check_lifetime(param: str) -> None:
    """A key lifetime (RFC 4568 section 6.1: "2^N" or a decimal number of packets) is taken
    when it is at least 2^31: the relay never rekeys, so a shorter one is a promise it could
    not keep."""
    text = param.strip()
    try:
        if text.startswith("2^"):
            packets = 1 << min(int(text[2:]), 64)  # no huge shift for "2^999999999"
        else:
            packets = int(text)
    except (ValueError, OverflowError):
        raise ValueError(f"SDES key lifetime {param!r} is not '2^N' or a number") from None
    if packets < MIN_LIFETIME:
        raise ValueError(
            f"SDES key lifetime {param!r} is shorter than this relay supports (it does not "
            "rekey): give 2^31 or more, or none"
        )


def parse_sdes_key(suite: str, key_params: str) -> bytes:
    """Decode an SDES key (RFC 4568 section 6.1) into key material for `Session`.

    Accepts `inline:<base64>[|lifetime][|MKI:length]` or the bare base64, with or without
    `=` padding (rtpengine omits it).

    Raises:
        ValueError: unknown suite, bad base64, the wrong length for the suite, an MKI, or a
            lifetime under 2^31 packets (the relay does not rekey).
    """
    if suite not in SUITES:
        raise ValueError(f"unknown SRTP suite {suite!r}; expected one of: {', '.join(SUITES)}")
    text = key_params.strip()
    if text.startswith("inline:"):
        text = text[len("inline:") :]
    encoded, *params = text.split("|")
    for param in params:
        if ":" in param:
            raise ValueError(
                f"MKI is not supported (key parameter {param!r}); expected "
                "'inline:<base64>' with at most a lifetime after '|'"
            )
    for param in params:
        _check_lifetime(param)
    encoded += "=" * (-len(encoded) % 4)
    try:
        material = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"SDES key is not valid base64: {exc}") from None
    key_len, salt_len, _ = SUITES[suite]
    if len(material) != key_len + salt_len:
        raise ValueError(
            f"{suite} needs {key_len + salt_len} bytes of key material "
            f"({key_len}-byte key || {salt_len}-byte salt), the SDES key holds {len(material)}"
        )
    return material
