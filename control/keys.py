"""SRTP master keys for participants, and their SDES form (RFC 4568; docs/ARCHITECTURE.md, "The path
of a join").

Each participant gets two keys from the control plane: an uplink key (what it sends) and a
downlink key (what the relay sends to it). A key here is the SRTP master key followed by the
master salt, as `relay.srtp.Session` takes it, with the lengths from `relay.srtp.SUITES`.

In SDP a key travels as an SDES `a=crypto` attribute (RFC 4568 section 9.1):
`a=crypto:<tag> <crypto-suite> inline:<base64 of key || salt>` (section 6.1, "inline" key
method; base64 as in RFC 4648 section 4, with `=` padding). `relay.srtp.parse_sdes_key` reads it
back.
"""

from __future__ import annotations

import base64
import secrets

from relay.srtp import SUITES

__all__ = ["crypto_line", "new_master_key", "sdes_inline"]

# RFC 4568 section 4.1 (the tag identifies one a=crypto line) and 9.1: tag = 1*9DIGIT.
_MAX_TAG = 999_999_999


def _material_length(suite: str) -> int:
    if suite not in SUITES:
        raise ValueError(f"unknown SRTP suite {suite!r}; expected one of: {', '.join(SUITES)}")
    key_len, salt_len, _ = SUITES[suite]
    return key_len + salt_len


def new_master_key(suite: str) -> bytes:
    """A fresh master key || master salt for `suite`, from the OS CSPRNG.

    Raises:
        ValueError: `suite` is not one of `relay.srtp.SUITES`.
    """
    return secrets.token_bytes(_material_length(suite))


def sdes_inline(key_material: bytes) -> str:
    """`inline:<base64>` for master key || salt (RFC 4568 section 6.1), padded base64."""
    if not isinstance(key_material, bytes | bytearray):
        raise ValueError(f"key material must be bytes, not {type(key_material).__name__}")
    if not key_material:
        raise ValueError("key material is empty")
    return "inline:" + base64.b64encode(bytes(key_material)).decode("ascii")


def crypto_line(tag: int, suite: str, key_material: bytes) -> str:
    """`a=crypto:<tag> <suite> inline:<base64>` (RFC 4568 section 9.1), without a line ending.

    Raises:
        ValueError: an unknown suite, a tag outside 1..999999999, or key material whose length
            is not the suite's key + salt length.
    """
    if isinstance(tag, bool) or not isinstance(tag, int) or not 1 <= tag <= _MAX_TAG:
        raise ValueError(f"a=crypto tag must be an integer in 1..{_MAX_TAG}, got {tag!r}")
    expected = _material_length(suite)
    if not isinstance(key_material, bytes | bytearray):
        raise ValueError(f"key material must be bytes, not {type(key_material).__name__}")
    if len(key_material) != expected:
        key_len, salt_len, _ = SUITES[suite]
        raise ValueError(
            f"{suite} needs {expected} bytes of key material ({key_len}-byte key || "
            f"{salt_len}-byte salt), got {len(key_material)}"
        )
    return f"a=crypto:{tag} {suite} {sdes_inline(key_material)}"
