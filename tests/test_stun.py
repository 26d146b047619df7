"""STUN messages (relay/stun.py): RFC 5769's test vectors, both ways with aioice (an
implementation nobody here wrote), refusal of malformed input, and properties.

Vectors: RFC 5769 section 2.1 (sample request), 2.2 (IPv4 response), 2.3 (IPv6 response),
https://www.rfc-editor.org/rfc/rfc5769. The bytes were checked against the RFC's listings and
verify with the standard library's HMAC-SHA1 and CRC-32 on their own (test_vectors_self_check).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib

import aioice.stun as aioice_stun
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import stun
from relay.errors import RelayError, StunError
from relay.stun import AttrType, StunClass

pytestmark = pytest.mark.release_only  # tests/conftest.py: relay/stun.py: Python, not the core

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- RFC 5769 --------------------------------------------------------------------------------

PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
TID = h("b7e7a701 bc34d686 fa87dfae")

# Section 2.1: USERNAME "evtj:h6vY", SOFTWARE "STUN test client"; padding is 0x20 on purpose.
SAMPLE_REQUEST = h(
    """
    00010058 2112a442 b7e7a701 bc34d686 fa87dfae
    80220010 5354554e 20746573 7420636c 69656e74
    00240004 6e0001ff
    80290008 932ff9b1 51263b36
    00060009 6576746a 3a683676 59202020
    00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
    80280004 e57a3bcf
    """
)
# Section 2.2: SOFTWARE "test vector", mapped address 192.0.2.1 port 32853.
SAMPLE_IPV4_RESPONSE = h(
    """
    0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
    8022000b 74657374 20766563 746f7220
    00200008 0001a147 e112a643
    00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
    80280004 c07d4c96
    """
)
# Section 2.3: mapped address 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
SAMPLE_IPV6_RESPONSE = h(
    """
    01010048 2112a442 b7e7a701 bc34d686 fa87dfae
    8022000b 74657374 20766563 746f7220
    00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
    00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
    80280004 c8fb0b4c
    """
)
VECTORS = [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE]
IPV4_MAPPED = ("192.0.2.1", 32853)
IPV6_MAPPED = ("2001:db8:1234:5678:11:2233:4455:6677", 32853)


@pytest.mark.parametrize("vector", VECTORS, ids=["request", "ipv4", "ipv6"])
def test_vectors_self_check(vector: bytes) -> None:
    # The transcription, checked without relay/stun.py: the HMAC over the header (its length
    # ending at MESSAGE-INTEGRITY) and the attributes before it, and the CRC over all but the
    # FINGERPRINT attribute (RFC 8489 sections 14.5 and 14.7).
    integrity_at = len(vector) - 8 - 24
    signed = vector[:2] + struct.pack("!H", integrity_at + 24 - 20) + vector[4:integrity_at]
    mac = hmac.new(PASSWORD, signed, hashlib.sha1).digest()
    assert mac == vector[integrity_at + 4 : integrity_at + 24]
    assert zlib.crc32(vector[:-8]) ^ 0x5354554E == int.from_bytes(vector[-4:], "big")


def test_rfc5769_sample_request() -> None:
    message = stun.parse(SAMPLE_REQUEST)
    assert (message.method, message.message_class) == (stun.BINDING, StunClass.REQUEST)
    assert message.transaction_id == TID
    assert message.username == "evtj:h6vY"
    assert message.priority == 0x6E0001FF
    assert message.ice_controlled == 0x932FF9B151263B36
    assert message.ice_controlling is None and not message.use_candidate
    assert [a.type for a in message.attributes] == [
        AttrType.SOFTWARE,
        AttrType.PRIORITY,
        AttrType.ICE_CONTROLLED,
        AttrType.USERNAME,
        AttrType.MESSAGE_INTEGRITY,
        AttrType.FINGERPRINT,
    ]
    assert message.attributes[0].value == b"STUN test client"
    assert message.unknown_required == ()
    assert message.check_integrity(PASSWORD)
    assert message.check_fingerprint()
    assert not message.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBT")


@pytest.mark.parametrize(
    ("vector", "mapped"),
    [(SAMPLE_IPV4_RESPONSE, IPV4_MAPPED), (SAMPLE_IPV6_RESPONSE, IPV6_MAPPED)],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_sample_responses(vector: bytes, mapped: tuple[str, int]) -> None:
    message = stun.parse(vector)
    assert (message.method, message.message_class) == (stun.BINDING, StunClass.SUCCESS)
    assert message.transaction_id == TID
    assert message.xor_mapped_address == mapped
    assert message.attributes[0].value == b"test vector"
    assert message.check_integrity(PASSWORD)
    assert message.check_fingerprint()
    # The encoder gives the vector's XOR-MAPPED-ADDRESS value (section 2.2's, 2.3's).
    assert stun.encode_xor_address(mapped, TID) == message.attributes[1].value


def test_rfc5769_vectors_built_exactly() -> None:
    # The same attributes through `build`, with the vectors' 0x20 padding: every byte,
    # MESSAGE-INTEGRITY and FINGERPRINT included, comes out as in the RFC.
    request = stun.build(
        stun.BINDING,
        StunClass.REQUEST,
        TID,
        [
            (AttrType.SOFTWARE, b"STUN test client"),
            (AttrType.PRIORITY, h("6e0001ff")),
            (AttrType.ICE_CONTROLLED, h("932ff9b151263b36")),
            (AttrType.USERNAME, b"evtj:h6vY"),
        ],
        integrity_key=PASSWORD,
        padding=0x20,
    )
    assert request == SAMPLE_REQUEST
    for vector, mapped in (
        (SAMPLE_IPV4_RESPONSE, IPV4_MAPPED),
        (SAMPLE_IPV6_RESPONSE, IPV6_MAPPED),
    ):
        response = stun.build(
            stun.BINDING,
            StunClass.SUCCESS,
            TID,
            [
                (AttrType.SOFTWARE, b"test vector"),
                (AttrType.XOR_MAPPED_ADDRESS, stun.encode_xor_address(mapped, TID)),
            ],
            integrity_key=PASSWORD,
            padding=0x20,
        )
        assert response == vector


def test_rfc5769_request_every_bit_matters() -> None:
    # Flip each bit of the sample request: it no longer parses, or its MESSAGE-INTEGRITY or its
    # FINGERPRINT no longer verifies. Padding too: both hashes run over the bytes as sent.
    for bit in range(len(SAMPLE_REQUEST) * 8):
        damaged = bytearray(SAMPLE_REQUEST)
        damaged[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            message = stun.parse(bytes(damaged))
        except StunError:
            continue
        assert not (message.check_integrity(PASSWORD) and message.check_fingerprint()), bit


# --- aioice, both ways -----------------------------------------------------------------------

KEY = b"s3cretPasswordOf22Char"


def test_aioice_request_parsed_by_us() -> None:
    request = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.REQUEST)
    request.attributes["USERNAME"] = "locl:peer"
    request.attributes["PRIORITY"] = 1853824767
    request.attributes["ICE-CONTROLLING"] = 0x1122334455667788
    request.attributes["USE-CANDIDATE"] = None
    request.add_message_integrity(KEY)  # also adds FINGERPRINT
    message = stun.parse(bytes(request))
    assert (message.method, message.message_class) == (stun.BINDING, StunClass.REQUEST)
    assert message.transaction_id == request.transaction_id
    assert message.username == "locl:peer"
    assert message.priority == 1853824767
    assert message.ice_controlling == 0x1122334455667788
    assert message.use_candidate
    assert message.check_integrity(KEY) and message.check_fingerprint()
    assert not message.check_integrity(b"another password, wrong")


@pytest.mark.parametrize("mapped", [("203.0.113.9", 61000), ("2001:db8::5", 1)])
def test_aioice_response_parsed_by_us(mapped: tuple[str, int]) -> None:
    response = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.RESPONSE)
    response.attributes["XOR-MAPPED-ADDRESS"] = mapped
    response.add_message_integrity(KEY)
    message = stun.parse(bytes(response))
    assert message.message_class == StunClass.SUCCESS
    assert message.xor_mapped_address == mapped
    assert message.check_integrity(KEY) and message.check_fingerprint()


def test_aioice_error_parsed_by_us() -> None:
    error = aioice_stun.Message(aioice_stun.Method.BINDING, aioice_stun.Class.ERROR)
    error.attributes["ERROR-CODE"] = (487, "Role Conflict")
    error.add_message_integrity(KEY)
    message = stun.parse(bytes(error))
    assert message.message_class == StunClass.ERROR
    assert message.error_code == (487, "Role Conflict")
    assert message.check_integrity(KEY) and message.check_fingerprint()


def _aioice_parse(data: bytes, key: bytes) -> aioice_stun.Message:
    # aioice checks FINGERPRINT while parsing (a ValueError if wrong) and MESSAGE-INTEGRITY on
    # request.
    message = aioice_stun.parse_message(data)
    assert "FINGERPRINT" in message.attributes
    assert message.check_message_integrity(key)
    assert not message.check_message_integrity(key + b"x")
    return message


def test_our_request_parsed_by_aioice() -> None:
    tid = bytes(range(12))
    data = stun.build_binding_request(
        tid,
        username="locl:peer",
        integrity_key=KEY,
        priority=0x6E0001FF,
        ice_controlling=0xFEDCBA9876543210,
        use_candidate=True,
    )
    message = _aioice_parse(data, KEY)
    assert message.message_method == aioice_stun.Method.BINDING
    assert message.message_class == aioice_stun.Class.REQUEST
    assert message.transaction_id == tid
    assert message.attributes["USERNAME"] == "locl:peer"
    assert message.attributes["PRIORITY"] == 0x6E0001FF
    assert message.attributes["ICE-CONTROLLING"] == 0xFEDCBA9876543210
    assert "USE-CANDIDATE" in message.attributes


@pytest.mark.parametrize(
    "mapped", [("198.51.100.7", 5004), ("2001:db8:1234:5678:11:2233:4455:6677", 65535)]
)
def test_our_success_parsed_by_aioice(mapped: tuple[str, int]) -> None:
    tid = b"\xa5" * 12
    message = _aioice_parse(stun.build_binding_success(tid, mapped, KEY), KEY)
    assert message.message_class == aioice_stun.Class.RESPONSE
    assert message.transaction_id == tid
    assert message.attributes["XOR-MAPPED-ADDRESS"] == mapped


def test_our_error_parsed_by_aioice() -> None:
    tid = b"\x01" * 12
    message = _aioice_parse(stun.build_error(tid, 487, "Role Conflict", integrity_key=KEY), KEY)
    assert message.message_class == aioice_stun.Class.ERROR
    assert message.attributes["ERROR-CODE"] == (487, "Role Conflict")
    # A 420 with UNKNOWN-ATTRIBUTES, which aioice does not decode but must step over.
    data = stun.build_error(
        tid, 420, "Unknown Attribute", integrity_key=KEY, unknown_attributes=[7]
    )
    assert _aioice_parse(data, KEY).error_code == 420
    assert stun.parse(data).unknown_attributes == (7,)


# --- malformed input -------------------------------------------------------------------------


def attr(attr_type: int, value: bytes, pad: bool = True) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + (b"\0" * (-len(value) % 4) * pad)


def message(body: bytes = b"", *, first: int = 0x0001, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return struct.pack("!HHI", first, size, stun.MAGIC_COOKIE) + TID + body


def fingerprinted(body: bytes) -> bytes:
    # A FINGERPRINT that verifies, followed by whatever `body` holds after it.
    head = message(b"", length=8)
    crc = zlib.crc32(head) ^ stun.FINGERPRINT_XOR
    return message(attr(AttrType.FINGERPRINT, crc.to_bytes(4, "big")) + body)


MALFORMED = {
    "empty": b"",
    "short header": message()[:19],
    "first bit set": message(first=0x8001),
    "second bit set": message(first=0x4001),
    "bad cookie": message()[:4] + b"\x21\x12\xa4\x43" + TID,
    "length not multiple of 4": message(b"\0" * 4, length=2),
    "length past datagram": message(b"\0" * 4, length=8),
    "bytes after the message": message(attr(AttrType.PRIORITY, b"\0" * 4), length=0),
    "attribute past end": message(struct.pack("!HH", AttrType.SOFTWARE, 9) + b"\0" * 8),
    "padding past end": message(struct.pack("!HH", AttrType.SOFTWARE, 5) + b"\0" * 4),
    "fingerprint not last": fingerprinted(attr(AttrType.SOFTWARE, b"late")),
    "fingerprint of 8 bytes": message(attr(AttrType.FINGERPRINT, b"\0" * 8)),
    "integrity of 16 bytes": message(attr(AttrType.MESSAGE_INTEGRITY, b"\0" * 16)),
    "username not utf-8": message(attr(AttrType.USERNAME, b"ab\xff\xfe")),
    "username of 764 bytes": message(attr(AttrType.USERNAME, b"a" * 764)),
    "priority of 2 bytes": message(attr(AttrType.PRIORITY, b"\0\0")),
    "use-candidate with a value": message(attr(AttrType.USE_CANDIDATE, b"\0" * 4)),
    "ice-controlling of 4 bytes": message(attr(AttrType.ICE_CONTROLLING, b"\0" * 4)),
    "ice-controlled of 12 bytes": message(attr(AttrType.ICE_CONTROLLED, b"\0" * 12)),
    "xor-mapped family 3": message(attr(AttrType.XOR_MAPPED_ADDRESS, h("0003a147e112a643"))),
    "xor-mapped ipv4 of 20 bytes": message(
        attr(AttrType.XOR_MAPPED_ADDRESS, h("0001a147") + b"\0" * 16)
    ),
    "xor-mapped ipv6 of 8 bytes": message(attr(AttrType.XOR_MAPPED_ADDRESS, h("0002a147e112a643"))),
    "xor-mapped of 2 bytes": message(attr(AttrType.XOR_MAPPED_ADDRESS, h("0001"))),
    "error-code class 2": message(attr(AttrType.ERROR_CODE, h("00000201"))),
    "error-code class 7": message(attr(AttrType.ERROR_CODE, h("00000701"))),
    "error-code number 100": message(attr(AttrType.ERROR_CODE, h("00000464"))),
    "error-code of 3 bytes": message(attr(AttrType.ERROR_CODE, h("000004"))),
    "unknown-attributes odd": message(attr(AttrType.UNKNOWN_ATTRIBUTES, h("000700"))),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_refused(data: bytes) -> None:
    with pytest.raises(StunError):
        stun.parse(data)


def test_stun_error_in_the_hierarchy() -> None:
    assert issubclass(StunError, RelayError) and issubclass(StunError, ValueError)


# --- what is parsed, what is ignored ---------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "method", "message_class"),
    [
        (0x0001, stun.BINDING, StunClass.REQUEST),
        (0x0011, stun.BINDING, StunClass.INDICATION),
        (0x0101, stun.BINDING, StunClass.SUCCESS),
        (0x0111, stun.BINDING, StunClass.ERROR),
        (0x0003, 0x003, StunClass.REQUEST),  # TURN Allocate (RFC 8656)
        (0x3EEF, 0xFFF, StunClass.REQUEST),  # every method bit
        (0x0113, 0x003, StunClass.ERROR),
    ],
)
def test_method_and_class(first: int, method: int, message_class: StunClass) -> None:
    parsed = stun.parse(message(first=first))
    assert (parsed.method, parsed.message_class, parsed.message_type) == (
        method,
        message_class,
        first,
    )
    assert stun.build(method, message_class, TID, [], fingerprint=False)[:2] == first.to_bytes(
        2, "big"
    )


def test_attributes_after_integrity_ignored_except_fingerprint() -> None:
    # RFC 8489 section 14.5: what follows MESSAGE-INTEGRITY is not covered by it and is ignored,
    # FINGERPRINT (and MESSAGE-INTEGRITY-SHA256) apart.
    signed = stun.build(
        stun.BINDING,
        StunClass.REQUEST,
        TID,
        [(AttrType.USERNAME, b"a:b")],
        integrity_key=KEY,
        fingerprint=False,
    )
    late = attr(AttrType.USE_CANDIDATE, b"") + attr(AttrType.PRIORITY, b"\0\0\0\x01")
    late += attr(0x0777, b"unknown, comprehension-required")
    body = signed[20:] + late
    head = message(b"", length=len(body) + 8)
    crc = zlib.crc32(head + body) ^ stun.FINGERPRINT_XOR
    data = head + body + attr(AttrType.FINGERPRINT, crc.to_bytes(4, "big"))
    parsed = stun.parse(data)
    assert not parsed.use_candidate and parsed.priority is None
    assert parsed.unknown_required == ()
    assert [a.type for a in parsed.attributes] == [
        AttrType.USERNAME,
        AttrType.MESSAGE_INTEGRITY,
        AttrType.FINGERPRINT,
    ]
    assert parsed.check_fingerprint()
    # The header's length no longer ends at MESSAGE-INTEGRITY: the check adjusts it.
    assert parsed.check_integrity(KEY)


def test_unknown_attributes_sorted_by_comprehension() -> None:
    parsed = stun.parse(
        message(
            attr(0xC057, b"\0\x01\0\x02")  # GOOG-NETWORK-INFO: comprehension-optional
            + attr(0x0030, b"")  # comprehension-required, unknown
            + attr(0x7FFF, b"x")
            + attr(AttrType.MESSAGE_INTEGRITY_SHA256, b"\0" * 32)  # known
        )
    )
    assert parsed.unknown_required == (0x0030, 0x7FFF)
    assert [a.type for a in parsed.attributes][0] == 0xC057


def test_first_occurrence_wins_and_padding_ignored() -> None:
    parsed = stun.parse(
        message(
            attr(AttrType.USERNAME, b"first")[:-3]
            + b"\xff\xff\xff"  # padding is ignored whatever it holds (RFC 8489 section 14)
            + attr(AttrType.USERNAME, b"second")
            + attr(AttrType.PRIORITY, b"\0\0\0\x01")
            + attr(AttrType.PRIORITY, b"\0\0\0\x02")
        )
    )
    assert parsed.username == "first"
    assert parsed.priority == 1
    assert parsed.attributes[0].value == b"first"
    assert [a.offset for a in parsed.attributes] == [20, 32, 44, 52]


def test_missing_integrity_and_fingerprint_do_not_verify() -> None:
    parsed = stun.parse(message(attr(AttrType.USERNAME, b"a:b")))
    assert parsed.integrity_offset is None and parsed.fingerprint_offset is None
    assert not parsed.check_integrity(KEY)
    assert not parsed.check_fingerprint()


def test_is_stun() -> None:
    assert stun.is_stun(SAMPLE_REQUEST)
    assert stun.is_stun(message(first=0x0101))
    assert not stun.is_stun(SAMPLE_REQUEST[:19])
    rtp = b"\x80\x6f" + SAMPLE_REQUEST[2:]  # RTP/RTCP: first byte 128..191 (RFC 7983)
    dtls = b"\x16\xfe\xfd" + SAMPLE_REQUEST[3:]  # DTLS handshake: 20..63
    assert not stun.is_stun(rtp)
    assert not stun.is_stun(dtls)
    assert not stun.is_stun(b"\x04" + SAMPLE_REQUEST[1:])
    assert not stun.is_stun(SAMPLE_REQUEST[:4] + b"\0\0\0\0" + SAMPLE_REQUEST[8:])


def test_builder_refusals() -> None:
    with pytest.raises(ValueError):
        stun.build_binding_success(b"short", ("192.0.2.1", 1), KEY)
    with pytest.raises(ValueError):
        stun.build_error(TID, 200, "OK")
    with pytest.raises(ValueError):
        stun.build_error(TID, 400, "x" * 128)
    with pytest.raises(ValueError):
        stun.build(0x1000, StunClass.REQUEST, TID, [])
    with pytest.raises(ValueError):
        stun.build(stun.BINDING, StunClass.REQUEST, TID, [(0x8022, b"x" * 0xFFF0)] * 2)


# --- properties ------------------------------------------------------------------------------


def _parse_or_refuse(data: bytes) -> None:
    try:
        parsed = stun.parse(data)
    except StunError:
        return
    parsed.check_fingerprint()
    parsed.check_integrity(KEY)


@SETTINGS
@given(st.binary(max_size=600))
def test_parse_arbitrary_bytes_only_stun_error(data: bytes) -> None:
    _parse_or_refuse(data)


@SETTINGS
@given(
    first=st.integers(0, 0x3FFF),
    body=st.lists(
        st.tuples(
            st.sampled_from([*AttrType, 0x0001, 0x0030, 0xC057, 0x8000]),
            st.binary(max_size=40),
        ),
        max_size=8,
    ),
    cut=st.integers(0, 3),
)
def test_parse_attribute_soup_only_stun_error(
    first: int, body: list[tuple[int, bytes]], cut: int
) -> None:
    # A valid header over attributes of every known type with values of any length: what
    # arbitrary bytes rarely reach.
    raw = b"".join(attr(t, v) for t, v in body)
    _parse_or_refuse(message(raw, first=first))
    _parse_or_refuse(message(raw, first=first)[: -cut or None])


ice_chars = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", min_size=4)
addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)).flatmap(
    lambda host: st.tuples(st.just(host), st.integers(0, 65535))
)


@SETTINGS
@given(
    tid=st.binary(min_size=12, max_size=12),
    local=ice_chars,
    remote=ice_chars,
    key=st.binary(min_size=1, max_size=64),
    priority=st.integers(0, 2**32 - 1),
    tie_breaker=st.integers(0, 2**64 - 1),
    controlling=st.booleans(),
    use_candidate=st.booleans(),
)
def test_request_round_trip(
    tid: bytes,
    local: str,
    remote: str,
    key: bytes,
    priority: int,
    tie_breaker: int,
    controlling: bool,
    use_candidate: bool,
) -> None:
    data = stun.build_binding_request(
        tid,
        username=f"{local}:{remote}",
        integrity_key=key,
        priority=priority,
        ice_controlling=tie_breaker if controlling else None,
        ice_controlled=None if controlling else tie_breaker,
        use_candidate=use_candidate,
    )
    parsed = stun.parse(data)
    assert parsed.transaction_id == tid
    assert parsed.username == f"{local}:{remote}"
    assert parsed.priority == priority
    assert (parsed.ice_controlling, parsed.ice_controlled) == (
        (tie_breaker, None) if controlling else (None, tie_breaker)
    )
    assert parsed.use_candidate == use_candidate
    assert parsed.check_integrity(key) and parsed.check_fingerprint()
    assert stun.is_stun(data)


@SETTINGS
@given(tid=st.binary(min_size=12, max_size=12), mapped=addresses, key=st.binary(max_size=64))
def test_success_round_trip(tid: bytes, mapped: tuple[str, int], key: bytes) -> None:
    parsed = stun.parse(stun.build_binding_success(tid, mapped, key))
    assert parsed.message_class == StunClass.SUCCESS
    assert parsed.xor_mapped_address == mapped
    assert parsed.check_integrity(key) and parsed.check_fingerprint()


@SETTINGS
@given(
    tid=st.binary(min_size=12, max_size=12),
    code=st.integers(300, 699),
    reason=st.text(max_size=127),
    unknown=st.lists(st.integers(0, 0x7FFF), max_size=5),
    key=st.one_of(st.none(), st.binary(min_size=1, max_size=32)),
)
def test_error_round_trip(
    tid: bytes, code: int, reason: str, unknown: list[int], key: bytes | None
) -> None:
    data = stun.build_error(tid, code, reason, integrity_key=key, unknown_attributes=unknown)
    parsed = stun.parse(data)
    assert parsed.message_class == StunClass.ERROR
    assert parsed.error_code == (code, reason)
    assert parsed.unknown_attributes == tuple(unknown)
    assert parsed.check_fingerprint()
    assert parsed.check_integrity(key) if key is not None else parsed.integrity_offset is None
