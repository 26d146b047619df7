"""libsrtp (through pylibsrtp) as an independent SRTP peer: the profile libsrtp gives each of
the relay's suites, and sessions keyed as the relay keys its own.

libsrtp names its profiles after RFC 4568's and RFC 7714's suites, with the AES-CM ones
shortened (`AES_CM_128_HMAC_SHA1_80` is `SRTP_PROFILE_AES128_CM_SHA1_80`), so the profile is
derived from the suite's name, and a suite libsrtp does not have gets None: the comparisons
that need libsrtp skip it. pylibsrtp is a test dependency (pyproject.toml, `test`)."""

from __future__ import annotations

from typing import Any

__all__ = ["profile", "session"]


def profile(suite: str) -> int | None:
    """libsrtp's profile for `suite`; None if pylibsrtp is missing or libsrtp lacks it."""
    try:
        import pylibsrtp
    except ImportError:
        return None
    name = "SRTP_PROFILE_" + suite.replace("AES_CM_128_HMAC_SHA1_", "AES128_CM_SHA1_")
    value = getattr(pylibsrtp.Policy, name, None)
    return value if isinstance(value, int) else None


def session(suite: str, key: bytes, *, outbound: bool) -> Any:
    """A libsrtp session for any SSRC, sending (`outbound`) or receiving, under master key ||
    salt `key`; ValueError if libsrtp cannot speak `suite`."""
    import pylibsrtp

    chosen = profile(suite)
    if chosen is None:
        raise ValueError(f"libsrtp has no profile for {suite}")
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=chosen))
