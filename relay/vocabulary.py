"""The words every layer shares: roles, meeting modes, SRTP suites, addresses.

The HTTP API's schemas, the services, the store, the wire messages and the client all take
these, so that each word is defined once (docs/ARCHITECTURE.md, "One vocabulary"). They are
`StrEnum`s: a member is its own string, so JSON, SQL and the native core see plain text.

The native core is the authority on what it implements: `Suite` and `Role` are checked
against it when this module loads, so that a suite added to the core and not here (or the
other way round) stops the program at once instead of failing at a join. Adding a suite is the
core plus one line here.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import NamedTuple

from relay import _core

__all__ = ["DEFAULT_SUITE", "Address", "Kind", "Mode", "Role", "Suite"]


class Role(StrEnum):
    """What a participant may do: a host (its meeting's host key) and a panelist send; an
    attendee of a webinar only receives (in a meeting, everyone may send)."""

    HOST = "host"
    PANELIST = "panelist"
    ATTENDEE = "attendee"


class Mode(StrEnum):
    """A meeting, where everyone may send, or a webinar, where attendees receive only."""

    MEETING = "meeting"
    WEBINAR = "webinar"


class Kind(StrEnum):
    """What a participant's stream carries (its SDP m= line, RFC 4566 section 5.14)."""

    AUDIO = "audio"
    VIDEO = "video"


class Suite(StrEnum):
    """The SRTP protection profiles (RFC 3711, RFC 7714) the core implements."""

    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
    AEAD_AES_128_GCM = "AEAD_AES_128_GCM"
    AEAD_AES_256_GCM = "AEAD_AES_256_GCM"

    @property
    def key_len(self) -> int:
        return _core.SUITES[self.value][0]

    @property
    def salt_len(self) -> int:
        return _core.SUITES[self.value][1]

    @property
    def tag_len(self) -> int:
        return _core.SUITES[self.value][2]


DEFAULT_SUITE = Suite.AES_CM_128_HMAC_SHA1_80  # what ffmpeg and every SDES client speak

if {s.value for s in Suite} != set(_core.SUITES):
    raise ImportError(
        "relay/vocabulary.py's Suite and the native core's suites differ: "
        f"{sorted({s.value for s in Suite} ^ set(_core.SUITES))}"
    )
if tuple(Role) != tuple(_core.ROLE_NAMES):
    raise ImportError("relay/vocabulary.py's Role and the native core's ROLE_NAMES differ")


class Address(NamedTuple):
    """A UDP address, "ip:port" or "[v6]:port" as text. A tuple (host, port), as sockets
    take them; `parse` is the one place text becomes one."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """ValueError (naming no part of the text) unless it is ip:port with a valid IP and a
        port 1..65535."""
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError("an address is ip:port")
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
            number = int(port)
        except ValueError:
            raise ValueError("an address is ip:port, as in 192.0.2.1:5004") from None
        if not 0 < number < 65536:
            raise ValueError("a port is 1..65535")
        return cls(str(ip), number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
