"""What only the native core has: the batch entry points, status codes, SDES keys, SRTCP with
E = 0, and state after failures in a batch."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC

from relay import _core
from relay.srtp import AuthError, ReplayError, Session, parse_sdes_key
from tests.conftest import key_for, rtcp_sr, rtp
from tests.reference import srtp_ref

STATUS = {name: code for code, name in _core.STATUS_NAMES.items()}


def slab_of(packets: list[bytes], width: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    slab = np.zeros((len(packets), width), np.uint8)
    lengths = np.zeros(len(packets), np.uint32)
    for i, p in enumerate(packets):
        slab[i, : len(p)] = np.frombuffer(p, np.uint8)
        lengths[i] = len(p)
    return slab, lengths


def rows(slab: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    return [slab[i, : lengths[i]].tobytes() for i in range(len(lengths))]


def test_batch_matches_per_packet_calls(suite: str) -> None:
    packets = [rtp(seq, ssrc=1 + seq % 3, payload=bytes(seq % 300)) for seq in range(200)]
    slab, lengths = slab_of(packets)
    status = np.full(len(packets), -1, np.int32)
    tx = Session(suite, key_for(suite))
    assert tx.protect_batch(slab, lengths, status) == len(packets)
    assert (status == 0).all()
    reference = Session(suite, key_for(suite))
    expected = [reference.protect(p) for p in packets]
    assert rows(slab, lengths) == expected

    rx = Session(suite, key_for(suite))
    assert rx.unprotect_batch(slab, lengths, status) == len(packets)
    assert rows(slab, lengths) == packets


def test_batch_reports_a_status_per_packet() -> None:
    suite = "AES_CM_128_HMAC_SHA1_80"
    tx = Session(suite, key_for(suite))
    good = [tx.protect(rtp(seq)) for seq in range(5)]
    forged = bytearray(good[3])
    forged[20] ^= 1
    batch = [good[0], good[1], good[1], bytes(forged), b"\x80\x00", good[4], good[3]]
    slab, lengths = slab_of(batch)
    status = np.full(len(batch), -1, np.int32)
    assert Session(suite, key_for(suite)).unprotect_batch(slab, lengths, status) == 4
    assert [_core.STATUS_NAMES[c] for c in status] == [
        "ok",
        "ok",
        "replay",
        "auth",
        "malformed",
        "ok",
        "ok",
    ]
    assert lengths[3] == len(forged)  # a refused row keeps its length


def test_batch_row_without_room_for_the_tag() -> None:
    suite = "AEAD_AES_128_GCM"
    slab, lengths = slab_of([rtp(1, payload=bytes(100))], width=120)
    status = np.zeros(1, np.int32)
    assert Session(suite, key_for(suite)).protect_batch(slab, lengths, status) == 0
    assert status[0] == STATUS["no_room"]


def test_batch_shape_errors() -> None:
    s = Session("AEAD_AES_128_GCM", key_for("AEAD_AES_128_GCM"))
    with pytest.raises(ValueError, match="rows"):
        s.protect_batch(np.zeros((2, 100), np.uint8), np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="status"):
        s.protect_batch(np.zeros((3, 100), np.uint8), np.zeros(3, np.uint32), np.zeros(2, np.int32))
    assert s.protect_batch(np.zeros((0, 100), np.uint8), np.zeros(0, np.uint32)) == 0


# --- SRTCP with E = 0 (authenticated, not encrypted) -------------------------------------------


def unencrypted_srtcp(suite: str, plain: bytes, index: int) -> bytes:
    """Build SRTCP with E = 0 from the reference's session keys (RFC 3711 3.4, RFC 7714 9.2)."""
    ref = srtp_ref.Session(suite, key_for(suite))
    trailer = struct.pack("!I", index)
    if ref.aead:
        iv = ref._gcm_iv(ref.rtcp, struct.unpack_from("!I", plain, 4)[0], index)
        tag = AESGCM(ref.rtcp.key).encrypt(iv, b"", plain + trailer)
        return plain + tag + trailer
    mac = HMAC(ref.rtcp.auth, hashes.SHA1())
    mac.update(plain + trailer)
    return plain + trailer + mac.finalize()[: ref.rtcp_tag_len]


def test_srtcp_with_e_flag_clear_is_authenticated_not_decrypted(suite: str) -> None:
    plain = rtcp_sr(extra=b"hello world!")
    packet = unencrypted_srtcp(suite, plain, 42)
    assert Session(suite, key_for(suite)).unprotect_rtcp(packet) == plain
    assert srtp_ref.Session(suite, key_for(suite)).unprotect_rtcp(packet) == plain
    forged = bytearray(packet)
    forged[12] ^= 1
    with pytest.raises(AuthError):
        Session(suite, key_for(suite)).unprotect_rtcp(bytes(forged))


# --- SDES keys (RFC 4568 section 6.1) ----------------------------------------------------------


def test_sdes_inline_key_with_and_without_padding() -> None:
    material = bytes(range(1, 29))
    import base64

    padded = base64.b64encode(material).decode()
    assert padded.endswith("=")
    for text in (f"inline:{padded}", padded.rstrip("="), f"inline:{padded}|2^31"):
        assert parse_sdes_key("AEAD_AES_128_GCM", text) == material


@pytest.mark.parametrize(
    ("suite", "text", "message"),
    [
        ("AES_CM_128_HMAC_SHA1_80", "inline:AAAA", "30 bytes"),
        (
            "AES_CM_128_HMAC_SHA1_80",
            "inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm|2^20|1:4",
            "MKI",
        ),
        ("AES_CM_128_HMAC_SHA1_80", "inline:not base64!", "base64"),
        ("NULL_HMAC_SHA1_80", "inline:AAAA", "unknown SRTP suite"),
    ],
)
def test_sdes_errors(suite: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sdes_key(suite, text)


def test_libsrtp_vector_key_through_sdes() -> None:
    material = parse_sdes_key(
        "AES_CM_128_HMAC_SHA1_80", "inline:4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm"
    )
    assert material.hex() == "e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6"


def test_a_string_key_is_refused_with_a_hint() -> None:
    with pytest.raises(TypeError, match="parse_sdes_key"):
        Session("AES_CM_128_HMAC_SHA1_80", "4fl6DT4Bi+DWT6MsBt5BOQ7Gda1Jiv7rtpYLOqvm")


def test_session_repr_names_no_key() -> None:
    s = Session("AES_CM_128_HMAC_SHA1_80", key_for("AES_CM_128_HMAC_SHA1_80"))
    assert repr(s) == "<relay.srtp.Session AES_CM_128_HMAC_SHA1_80 streams=0>"


def test_unprotect_at_a_known_roc_across_a_gap_the_estimate_cannot_bridge(suite: str) -> None:
    tx, rx = Session(suite, key_for(suite)), Session(suite, key_for(suite))
    sent = {}
    for index in [*range(0, 65536, 4096), 65535, *range(65536, 3 * 65536, 4096)]:
        sent[index] = tx.protect(rtp(index & 0xFFFF))
    assert rx.unprotect_at(sent[4096], 0) == rtp(4096)
    # 2 * 65536 packets later: an estimate would take the ROC to be 0; the caller knows it is 2.
    assert rx.unprotect_at(sent[2 * 65536 + 4096], 2) == rtp(4096)
    with pytest.raises(AuthError):
        Session(suite, key_for(suite)).unprotect_at(sent[2 * 65536 + 4096], 1)
    with pytest.raises(ReplayError):
        rx.unprotect_at(sent[2 * 65536 + 4096], 2)
