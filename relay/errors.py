"""The one exception hierarchy of relay's data plane."""


class RelayError(Exception):
    """Base of every error relay raises on purpose."""


class SrtpError(RelayError, ValueError):
    """An SRTP or SRTCP packet (or key) was refused: malformed, too large, exhausted index."""


class AuthError(SrtpError):
    """The packet's authentication tag does not match: forged, corrupted or the wrong key."""


class ReplayError(SrtpError):
    """The packet index was seen before, lies behind the replay window, or (when sending)
    was already used, which would reuse keystream."""


class StunError(RelayError, ValueError):
    """A STUN message (RFC 8489) was refused: malformed header, attribute or value."""


class DtlsError(RelayError, ValueError):
    """A DTLS-SRTP parameter was refused: a fingerprint, setup role or suite from signalling,
    or the node's certificate file. Hostile datagrams never raise it: they are dropped."""
