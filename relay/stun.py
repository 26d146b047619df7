"""STUN messages (RFC 8489) as ICE uses them: parse a datagram, build the few that a lite agent
sends.

    from relay import stun

    if stun.is_stun(datagram):                          # RFC 7983 demultiplexing
        message = stun.parse(datagram)                  # StunError when malformed
        message.check_fingerprint()                     # bool
        message.check_integrity(b"the ICE password")    # bool
    response = stun.build_binding_success(message.transaction_id, address, key)

The parser checks the header, the attribute layout and the value of every attribute it knows,
and keeps where MESSAGE-INTEGRITY and FINGERPRINT sit so that a caller holding the key can check
them: it authenticates nothing by itself (relay/ice.py does, in the order RFC 8445 asks).
Pure Python, no I/O; the hashes are the standard library's (`hmac`/`hashlib` on OpenSSL,
`zlib.crc32`).

A message on the wire (RFC 8489 section 5), then its attributes, each padded to 4 bytes:

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0 0|     STUN Message Type     |  Message Length (after header) |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Magic Cookie (0x2112A442)                    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Transaction ID (96 bits)                     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Attribute Type        |  Attribute Length (unpadded)  |
    |                     Value (padded to 32 bits) ...             |
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from relay.errors import StunError

__all__ = [
    "BINDING",
    "FINGERPRINT_XOR",
    "HEADER_LENGTH",
    "MAGIC_COOKIE",
    "AttrType",
    "Message",
    "RawAttribute",
    "StunClass",
    "StunError",
    "build",
    "build_binding_request",
    "build_binding_success",
    "build_error",
    "encode_xor_address",
    "is_stun",
    "parse",
]

MAGIC_COOKIE = 0x2112A442
HEADER_LENGTH = 20
FINGERPRINT_XOR = 0x5354554E  # "STUN" in ASCII (RFC 8489 section 14.7)
BINDING = 0x001  # the one method ICE uses (RFC 8489 section 18.2)

_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
_HMAC_LENGTH = 20  # HMAC-SHA1 (RFC 8489 section 14.5)
_INTEGRITY_SIZE = 4 + _HMAC_LENGTH  # the attribute, header included
_FINGERPRINT_SIZE = 4 + 4
# RFC 8489 section 14.3: a sender's USERNAME has fewer than 509 bytes, a receiver parses up to
# 763 (RFC 5389's limit). ICE's "<ufrag>:<ufrag>" may have 513 (RFC 8839 section 5.4).
_USERNAME_MAX = 763
_REASON_MAX_CHARS = 127  # RFC 8489 section 14.8: fewer than 128 characters


class StunClass(IntEnum):
    """The two class bits of the message type (RFC 8489 section 5)."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class AttrType(IntEnum):
    """The attribute types this module knows (RFC 8489 section 18.3, RFC 8445 section 16.1).
    Below 0x8000 an attribute is comprehension-required, from 0x8000 comprehension-optional
    (RFC 8489 section 14)."""

    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    # Known so that it is not "unknown" (it may follow MESSAGE-INTEGRITY, section 14.6), but not
    # checked: ICE authenticates with MESSAGE-INTEGRITY (RFC 8445 section 7.2.2).
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    XOR_MAPPED_ADDRESS = 0x0020
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    SOFTWARE = 0x8022
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A


_KNOWN_TYPES = frozenset(AttrType)
_COMPREHENSION_OPTIONAL = 0x8000
_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02


@dataclass(frozen=True, slots=True)
class RawAttribute:
    """One attribute as it came: its type, its value without padding, and where its header
    starts in the datagram."""

    type: int
    value: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    """A parsed STUN message. The typed fields hold the first occurrence of each attribute
    (RFC 8489 section 14: later ones need not be processed), None or False when absent."""

    method: int
    message_class: StunClass
    transaction_id: bytes
    #: Every attribute in wire order, except those after MESSAGE-INTEGRITY that RFC 8489
    #: section 14.5 says to ignore (all but MESSAGE-INTEGRITY-SHA256 and FINGERPRINT).
    attributes: tuple[RawAttribute, ...]
    username: str | None
    priority: int | None
    use_candidate: bool
    ice_controlling: int | None  # the sender's tie-breaker (RFC 8445 section 7.1.3)
    ice_controlled: int | None
    xor_mapped_address: tuple[str, int] | None
    error_code: tuple[int, str] | None
    unknown_attributes: tuple[int, ...]  # the UNKNOWN-ATTRIBUTES attribute's list (a 420)
    #: Comprehension-required types this module does not know: a request with any is answered
    #: 420 (Unknown Attribute) once authenticated (RFC 8489 section 6.3.1).
    unknown_required: tuple[int, ...]
    integrity_offset: int | None  # where MESSAGE-INTEGRITY's attribute header starts
    fingerprint_offset: int | None  # where FINGERPRINT's does (the last attribute)
    raw: bytes

    @property
    def message_type(self) -> int:
        return _message_type(self.method, self.message_class)

    def check_integrity(self, key: bytes) -> bool:
        """Whether MESSAGE-INTEGRITY is present and is the HMAC-SHA1 of the message before it
        under `key`. RFC 8489 section 14.5: the hash covers the header and the attributes that
        precede MESSAGE-INTEGRITY, with the header's length set as if MESSAGE-INTEGRITY were
        the last attribute. With short-term credentials (section 9.1.1) the key is the
        password itself; ICE's passwords are ice-chars (RFC 8839 section 5.4), which
        OpaqueString (RFC 8265) leaves as they are, so their ASCII bytes are the key."""
        offset = self.integrity_offset
        if offset is None:
            return False
        data = self.raw
        length = offset + _INTEGRITY_SIZE - HEADER_LENGTH
        signed = data[:2] + length.to_bytes(2, "big") + data[4:offset]
        expected = hmac.new(key, signed, hashlib.sha1).digest()
        return hmac.compare_digest(expected, data[offset + 4 : offset + _INTEGRITY_SIZE])

    def check_fingerprint(self) -> bool:
        """Whether FINGERPRINT is present and is the CRC-32 of the message before it, XOR
        0x5354554E (RFC 8489 section 14.7). The parser made sure it is the last attribute, so
        the header's length already counts it, as the CRC needs."""
        offset = self.fingerprint_offset
        if offset is None:
            return False
        data = self.raw
        crc = zlib.crc32(data[:offset]) ^ FINGERPRINT_XOR
        return crc == int.from_bytes(data[offset + 4 : offset + 8], "big")


def is_stun(datagram: bytes) -> bool:
    """Whether a datagram on a port shared with DTLS and SRTP is STUN: RFC 7983 section 7 gives
    it a first byte of 0 to 3 (DTLS 20 to 63, RTP and RTCP 128 to 191); the magic cookie (RFC
    8489 section 5) tells it from the rest of that range. Cheap: no parsing."""
    return len(datagram) >= HEADER_LENGTH and datagram[0] < 4 and datagram[4:8] == _COOKIE_BYTES


# --- parsing ---------------------------------------------------------------------------------


def _message_type(method: int, message_class: int) -> int:
    # The class bits are interleaved with the method's (RFC 8489 section 5, figure 3):
    # M11..M7 C1 M6..M4 C0 M3..M0.
    return (
        ((method & 0x0F80) << 2)
        | ((method & 0x0070) << 1)
        | (method & 0x000F)
        | ((message_class & 0b10) << 7)
        | ((message_class & 0b01) << 4)
    )


def _split_type(message_type: int) -> tuple[int, StunClass]:
    method = ((message_type & 0x3E00) >> 2) | ((message_type & 0x00E0) >> 1)
    method |= message_type & 0x000F
    message_class = ((message_type & 0x0100) >> 7) | ((message_type & 0x0010) >> 4)
    return method, StunClass(message_class)


def _xor_pad(transaction_id: bytes) -> bytes:
    # X-Port is XORed with the cookie's top 16 bits, an IPv4 address with the cookie, an IPv6
    # address with the cookie and the transaction ID (RFC 8489 section 14.2).
    return _COOKIE_BYTES + transaction_id


def _decode_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    if len(value) < 4:
        raise StunError(f"XOR-MAPPED-ADDRESS of {len(value)} bytes")
    family = value[1]  # value[0] is reserved and ignored
    port = int.from_bytes(value[2:4], "big") ^ (MAGIC_COOKIE >> 16)
    if family == _FAMILY_IPV4 and len(value) == 8:
        host = str(ipaddress.IPv4Address(int.from_bytes(value[4:8], "big") ^ MAGIC_COOKIE))
    elif family == _FAMILY_IPV6 and len(value) == 20:
        pad = int.from_bytes(_xor_pad(transaction_id), "big")
        host = str(ipaddress.IPv6Address(int.from_bytes(value[4:20], "big") ^ pad))
    else:
        raise StunError(f"XOR-MAPPED-ADDRESS of family {family} and {len(value)} bytes")
    return host, port


def _decode_error_code(value: bytes) -> tuple[int, str]:
    # 21 reserved bits, the class (hundreds, 3 to 6) in 3 bits, the number (0 to 99) in 8
    # bits, then a UTF-8 reason phrase (RFC 8489 section 14.8). The phrase is for people:
    # bytes that are not UTF-8 are replaced, not refused.
    if len(value) < 4:
        raise StunError(f"ERROR-CODE of {len(value)} bytes")
    hundreds, number = value[2] & 0x07, value[3]
    if not 3 <= hundreds <= 6 or number > 99:
        raise StunError(f"ERROR-CODE class {hundreds} number {number}")
    return hundreds * 100 + number, value[4:].decode("utf-8", "replace")


def _fixed(attr_type: AttrType, value: bytes, size: int) -> bytes:
    if len(value) != size:
        raise StunError(f"{attr_type.name} of {len(value)} bytes, not {size}")
    return value


def parse(datagram: bytes) -> Message:
    """Parse one datagram as one STUN message (RFC 8489 sections 5, 6.3 and 14).

    Checks nothing that needs a key: call `check_fingerprint` and `check_integrity` on the
    result. Unknown comprehension-optional attributes are kept raw; unknown
    comprehension-required ones are listed in `unknown_required`.

    Raises:
        StunError: shorter than a header, the first two bits not 0, no magic cookie, a length
            that is not a multiple of 4 or not the datagram's, an attribute running past the
            end, FINGERPRINT not last, or a known attribute with a malformed value.
    """
    size = len(datagram)
    if size < HEADER_LENGTH:
        raise StunError(f"a STUN message has a 20-byte header; this datagram has {size} bytes")
    message_type, length = struct.unpack_from("!HH", datagram)
    if message_type & 0xC000:
        raise StunError("the first two bits of a STUN message are 0 (RFC 8489 section 5)")
    if datagram[4:8] != _COOKIE_BYTES:
        raise StunError("no magic cookie 0x2112A442 (RFC 8489 section 5)")
    if length % 4:
        raise StunError(f"message length {length} is not a multiple of 4")
    if HEADER_LENGTH + length != size:
        # Over UDP a datagram holds exactly one message (RFC 8489 section 6.2.1).
        raise StunError(f"message length {length} for a body of {size - HEADER_LENGTH} bytes")
    method, message_class = _split_type(message_type)
    transaction_id = bytes(datagram[8:HEADER_LENGTH])

    attributes: list[RawAttribute] = []
    username: str | None = None
    priority: int | None = None
    use_candidate = False
    controlling: int | None = None
    controlled: int | None = None
    mapped: tuple[str, int] | None = None
    error: tuple[int, str] | None = None
    unknown_list: tuple[int, ...] | None = None
    unknown_required: list[int] = []
    integrity_offset: int | None = None
    fingerprint_offset: int | None = None

    offset = HEADER_LENGTH
    # The body's length is a multiple of 4 and so is every padded attribute: a 4-byte
    # attribute header always fits where the loop looks for one.
    while offset < size:
        if fingerprint_offset is not None:
            raise StunError("FINGERPRINT is not the last attribute (RFC 8489 section 14.7)")
        attr_type, attr_length = struct.unpack_from("!HH", datagram, offset)
        start = offset + 4
        padded_end = start + ((attr_length + 3) & ~3)
        if padded_end > size:
            raise StunError(f"attribute 0x{attr_type:04x} of {attr_length} bytes runs past the end")
        value = bytes(datagram[start : start + attr_length])
        attr_offset, offset = offset, padded_end

        if integrity_offset is not None and attr_type not in (
            AttrType.FINGERPRINT,
            AttrType.MESSAGE_INTEGRITY_SHA256,
        ):
            continue  # not covered by MESSAGE-INTEGRITY: ignored (RFC 8489 section 14.5)
        attributes.append(RawAttribute(attr_type, value, attr_offset))

        if attr_type == AttrType.FINGERPRINT:
            _fixed(AttrType.FINGERPRINT, value, 4)
            fingerprint_offset = attr_offset
        elif attr_type == AttrType.MESSAGE_INTEGRITY:
            _fixed(AttrType.MESSAGE_INTEGRITY, value, _HMAC_LENGTH)
            integrity_offset = attr_offset
        elif attr_type == AttrType.USERNAME:
            if len(value) > _USERNAME_MAX:
                raise StunError(f"USERNAME of {len(value)} bytes")
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise StunError("USERNAME is not UTF-8 (RFC 8489 section 14.3)") from None
            username = text if username is None else username
        elif attr_type == AttrType.PRIORITY:
            number = int.from_bytes(_fixed(AttrType.PRIORITY, value, 4), "big")
            priority = number if priority is None else priority
        elif attr_type == AttrType.USE_CANDIDATE:
            _fixed(AttrType.USE_CANDIDATE, value, 0)
            use_candidate = True
        elif attr_type == AttrType.ICE_CONTROLLING:
            number = int.from_bytes(_fixed(AttrType.ICE_CONTROLLING, value, 8), "big")
            controlling = number if controlling is None else controlling
        elif attr_type == AttrType.ICE_CONTROLLED:
            number = int.from_bytes(_fixed(AttrType.ICE_CONTROLLED, value, 8), "big")
            controlled = number if controlled is None else controlled
        elif attr_type == AttrType.XOR_MAPPED_ADDRESS:
            address = _decode_xor_address(value, transaction_id)
            mapped = address if mapped is None else mapped
        elif attr_type == AttrType.ERROR_CODE:
            code = _decode_error_code(value)
            error = code if error is None else error
        elif attr_type == AttrType.UNKNOWN_ATTRIBUTES:
            if len(value) % 2:
                raise StunError(f"UNKNOWN-ATTRIBUTES of {len(value)} bytes")
            types = struct.unpack(f"!{len(value) // 2}H", value)
            unknown_list = types if unknown_list is None else unknown_list
        elif attr_type < _COMPREHENSION_OPTIONAL and attr_type not in _KNOWN_TYPES:
            unknown_required.append(attr_type)

    return Message(
        method=method,
        message_class=message_class,
        transaction_id=transaction_id,
        attributes=tuple(attributes),
        username=username,
        priority=priority,
        use_candidate=use_candidate,
        ice_controlling=controlling,
        ice_controlled=controlled,
        xor_mapped_address=mapped,
        error_code=error,
        unknown_attributes=unknown_list or (),
        unknown_required=tuple(unknown_required),
        integrity_offset=integrity_offset,
        fingerprint_offset=fingerprint_offset,
        raw=bytes(datagram),
    )


# --- building --------------------------------------------------------------------------------


def encode_xor_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    """The value of an XOR-MAPPED-ADDRESS (RFC 8489 section 14.2) for (host, port); an IPv6
    host's zone (`fe80::1%eth0`) is not sent.

    Raises:
        ValueError: the host is not an IP address or the port not 0..65535.
    """
    host, port = address[0], address[1]
    ip = ipaddress.ip_address(host)
    x_port = struct.pack("!H", port ^ (MAGIC_COOKIE >> 16))
    pad = _xor_pad(transaction_id)
    if ip.version == 4:
        x_address = bytes(a ^ b for a, b in zip(ip.packed, pad[:4], strict=True))
        return bytes((0, _FAMILY_IPV4)) + x_port + x_address
    x_address = bytes(a ^ b for a, b in zip(ip.packed, pad, strict=True))
    return bytes((0, _FAMILY_IPV6)) + x_port + x_address


def _encode_attribute(attr_type: int, value: bytes, padding: int) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"attribute 0x{attr_type:04x} of {len(value)} bytes")
    return struct.pack("!HH", attr_type, len(value)) + value + bytes([padding]) * (-len(value) % 4)


def build(
    method: int,
    message_class: StunClass,
    transaction_id: bytes,
    attributes: Iterable[tuple[int, bytes]],
    *,
    integrity_key: bytes | None = None,
    fingerprint: bool = True,
    padding: int = 0,
) -> bytes:
    """Encode a message: the attributes in order, then MESSAGE-INTEGRITY (HMAC-SHA1 under
    `integrity_key`, when given) and FINGERPRINT (when asked), each computed over what comes
    before it with the header's length counting it (RFC 8489 sections 14.5 and 14.7).

    Args:
        padding: the byte that pads values to 4 bytes. Senders use zero; RFC 5769's test
            vectors use 0x20 to show that receivers ignore it.

    Raises:
        ValueError: a transaction ID not of 12 bytes, a method over 12 bits, or a message over
            64 KiB.
    """
    if len(transaction_id) != 12:
        raise ValueError(f"a transaction ID has 12 bytes, not {len(transaction_id)}")
    if not 0 <= method < 0x1000:
        raise ValueError(f"method 0x{method:x} does not fit in 12 bits")
    body = b"".join(_encode_attribute(t, v, padding) for t, v in attributes)
    message_type = _message_type(method, message_class)
    total = (
        len(body) + _INTEGRITY_SIZE * (integrity_key is not None) + _FINGERPRINT_SIZE * fingerprint
    )
    if total > 0xFFFF:
        raise ValueError(f"a message body of {total} bytes does not fit its length field")
    length = len(body)
    if integrity_key is not None:
        length += _INTEGRITY_SIZE
        header = struct.pack("!HHI", message_type, length, MAGIC_COOKIE) + transaction_id
        mac = hmac.new(integrity_key, header + body, hashlib.sha1).digest()
        body += struct.pack("!HH", AttrType.MESSAGE_INTEGRITY, _HMAC_LENGTH) + mac
    if fingerprint:
        length += _FINGERPRINT_SIZE
        header = struct.pack("!HHI", message_type, length, MAGIC_COOKIE) + transaction_id
        crc = zlib.crc32(header + body) ^ FINGERPRINT_XOR
        body += struct.pack("!HHI", AttrType.FINGERPRINT, 4, crc)
    return struct.pack("!HHI", message_type, length, MAGIC_COOKIE) + transaction_id + body


def build_binding_request(
    transaction_id: bytes,
    *,
    username: str,
    integrity_key: bytes,
    priority: int,
    ice_controlling: int | None = None,
    ice_controlled: int | None = None,
    use_candidate: bool = False,
) -> bytes:
    """An ICE connectivity check (RFC 8445 section 7.2.2): USERNAME, PRIORITY, the role's
    tie-breaker, USE-CANDIDATE when nominating, MESSAGE-INTEGRITY under the peer's password,
    FINGERPRINT. A lite agent sends none (RFC 8445 section 2.5); tests and a future full agent
    do."""
    attributes: list[tuple[int, bytes]] = [
        (AttrType.USERNAME, username.encode("utf-8")),
        (AttrType.PRIORITY, struct.pack("!I", priority)),
    ]
    if ice_controlling is not None:
        attributes.append((AttrType.ICE_CONTROLLING, struct.pack("!Q", ice_controlling)))
    if ice_controlled is not None:
        attributes.append((AttrType.ICE_CONTROLLED, struct.pack("!Q", ice_controlled)))
    if use_candidate:
        attributes.append((AttrType.USE_CANDIDATE, b""))
    return build(
        BINDING, StunClass.REQUEST, transaction_id, attributes, integrity_key=integrity_key
    )


def build_binding_success(
    transaction_id: bytes, mapped_address: tuple[str, int], integrity_key: bytes
) -> bytes:
    """A Binding success response (RFC 8445 section 7.3.1.2, RFC 8489 section 6.3.1.1): the
    request's source as XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY under the password that
    authenticated the request (RFC 8489 section 9.1.3), FINGERPRINT (RFC 8445 section 7.3)."""
    attributes = [(AttrType.XOR_MAPPED_ADDRESS, encode_xor_address(mapped_address, transaction_id))]
    return build(
        BINDING, StunClass.SUCCESS, transaction_id, attributes, integrity_key=integrity_key
    )


def build_error(
    transaction_id: bytes,
    code: int,
    reason: str,
    *,
    integrity_key: bytes | None = None,
    unknown_attributes: Sequence[int] = (),
    method: int = BINDING,
) -> bytes:
    """An error response: ERROR-CODE (RFC 8489 section 14.8), UNKNOWN-ATTRIBUTES for a 420
    (section 14.13, padded the normal way), MESSAGE-INTEGRITY when the request was
    authenticated (section 9.1.3), FINGERPRINT.

    Raises:
        ValueError: a code outside 300..699 or a reason of 128 characters or more.
    """
    if not 300 <= code <= 699:
        raise ValueError(f"error code {code} is not 300..699")
    if len(reason) > _REASON_MAX_CHARS:
        raise ValueError(f"a reason phrase has fewer than 128 characters, not {len(reason)}")
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")
    attributes: list[tuple[int, bytes]] = [(AttrType.ERROR_CODE, value)]
    if unknown_attributes:
        packed = struct.pack(f"!{len(unknown_attributes)}H", *unknown_attributes)
        attributes.append((AttrType.UNKNOWN_ATTRIBUTES, packed))
    return build(method, StunClass.ERROR, transaction_id, attributes, integrity_key=integrity_key)
