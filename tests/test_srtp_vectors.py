"""Known-answer tests. Sources (details in ../shared/reference/srtp-vectors.md):

- RFC 3711 Appendix B.2 (AES-CM keystream) and B.3 (key derivation):
  https://www.rfc-editor.org/rfc/rfc3711#appendix-B
- RFC 7714 section 16 (SRTP) and 17 (SRTCP) AES-GCM packets:
  https://www.rfc-editor.org/rfc/rfc7714
- libsrtp test/srtp_driver.c srtp_validate() / srtp_validate_gcm(): full packets with KDF.
- Generated with libsrtp 2.7.0 (pylibsrtp): the ROC roll-over packets.
"""

from __future__ import annotations

import pytest

from relay import _core
from relay.srtp import AuthError, Session
from tests.reference import srtp_ref


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- RFC 3711 Appendix B.2: AES-CM keystream ---------------------------------------------

B2_KEY = h("2B7E151628AED2A6ABF7158809CF4F3C")
B2_SALT = h("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")


@pytest.mark.parametrize(
    ("counter", "blocks"),
    [
        (
            0x0000,
            [
                "E03EAD0935C95E80E166B16DD92B4EB4",
                "D23513162B02D0F72A43A2FE4A5F97AB",
                "41E95B3BB0A2E8DD477901E4FCA894C0",
            ],
        ),
        (
            0xFEFF,
            [
                "EC8CDF7398607CB0F2D21675EA9EA1E4",
                "362B7C3C6773516318A077D7FC5073AE",
                "6A2CC3787889374FBEB4C81B17BA6C44",
            ],
        ),
    ],
)
def test_rfc3711_b2_aes_cm_keystream(counter: int, blocks: list[str]) -> None:
    # RFC 3711 B.2: SSRC, ROC and SEQ zero, so the first counter block is salt || 0000; the
    # second case starts at FEFF and runs across FF00, where the carry leaves the low byte.
    iv = B2_SALT + counter.to_bytes(2, "big")
    assert _core._aes_cm_keystream(B2_KEY, iv, 48) == h("".join(blocks))


@pytest.mark.parametrize("key_len", [16, 32])
@pytest.mark.parametrize(
    ("start", "length"),
    [
        (0, 1),
        (0xFFFF - 2, 200),  # across the 16-bit boundary SRTP's counters never reach
        (0xFFFFFFFF - 3, 1536),  # across a 32-bit boundary: the carry goes on, as in CTR
        ((1 << 128) - 2, 100),  # across 2^128: back to zero
        (12345, 1536 * 3 + 7),  # several of ext/aes_ctr.h's chunks and a partial block
    ],
)
def test_the_aes_cm_keystream_is_aes_ctr(key_len: int, start: int, length: int) -> None:
    """ext/aes_ctr.h writes counter blocks and encrypts them with AES-ECB: block for block,
    what AES-CTR gives (NIST SP 800-38A 6.5), here from the `cryptography` package's OpenSSL
    CTR mode, with the counter incremented as a 128-bit number wherever it starts."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = bytes(range(key_len))
    iv = start.to_bytes(16, "big")
    ctr = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    assert _core._aes_cm_keystream(key, iv, length) == ctr.update(bytes(length))


# --- RFC 3711 Appendix B.3: key derivation -----------------------------------------------

B3_KEY = h("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_SALT = h("0EC675AD498AFEEBB6960B3AABE6")
B3_AUTH_94 = h("""CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                  E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                  6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2""")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (0x00, h("C61E7A93744F39EE10734AFE3FF7A087")),  # B.3 cipher key
        (0x02, h("30CBBC08863D8C85D49DB34A9AE1")),  # B.3 cipher salt
        (0x01, B3_AUTH_94),  # B.3 auth key, full 94 bytes
        # SRTCP keys: not printed in the RFC; confirmed through the libsrtp SRTCP packet below.
        (0x03, h("4C1AA45A81F73D61C800BBB00FBB1EAA")),
        (0x04, h("8D54534FEB49AE8E7993A6BD0B844FC323A93DFD")),
        (0x05, h("9581C7AD87B3E530BF3E4454A8B3")),
    ],
)
def test_rfc3711_b3_key_derivation(label: int, expected: bytes) -> None:
    assert _core._kdf(B3_KEY, B3_SALT, label, len(expected)) == expected
    assert srtp_ref.kdf(B3_KEY, B3_SALT, label, len(expected)) == expected


# --- libsrtp srtp_validate(): AES_CM_128_HMAC_SHA1_80 with KDF -----------------------------

CM_KEY = B3_KEY + B3_SALT
PLAIN_RTP = h("800f1234 decafbad cafebabe abababab abababab abababab abababab")
PLAIN_RTCP = h("81c8000b cafebabe abababab abababab abababab abababab")
CM80_SRTP = h("""800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402
                 b78d6acc 99ea179b 8dbb""")
CM80_SRTCP_INDEX1 = h("""81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8
                         80000001 993e08cd 54d6c123 0798""")


def test_libsrtp_cm80_rtp_both_ways() -> None:
    assert Session("AES_CM_128_HMAC_SHA1_80", CM_KEY).protect(PLAIN_RTP) == CM80_SRTP
    assert Session("AES_CM_128_HMAC_SHA1_80", CM_KEY).unprotect(CM80_SRTP) == PLAIN_RTP


def test_libsrtp_cm80_rtcp_both_ways() -> None:
    # libsrtp's vector carries SRTCP index 1; relay starts at 0 as RFC 3711 section 3.4 asks,
    # so the vector is the second packet it protects.
    tx = Session("AES_CM_128_HMAC_SHA1_80", CM_KEY)
    first = tx.protect_rtcp(PLAIN_RTCP)
    assert first[-14:-10] == h("80000000")
    assert tx.protect_rtcp(PLAIN_RTCP) == CM80_SRTCP_INDEX1
    assert (
        Session("AES_CM_128_HMAC_SHA1_80", CM_KEY).unprotect_rtcp(CM80_SRTCP_INDEX1) == PLAIN_RTCP
    )


def test_libsrtp_negative_vector_flipped_tag_bit() -> None:
    forged = CM80_SRTP[:-1] + bytes([CM80_SRTP[-1] ^ 1])
    with pytest.raises(AuthError):
        Session("AES_CM_128_HMAC_SHA1_80", CM_KEY).unprotect(forged)


# --- libsrtp srtp_validate_gcm(): AEAD_AES_128_GCM with KDF ----------------------------------

GCM_KEY = h("000102030405060708090a0b0c0d0e0f a0a1a2a3a4a5a6a7a8a9aaab")
GCM_SRTP = h("""800f1234 decafbad cafebabe c5002ede 04cfdd2e b91159e0 880aa06e
                d2976826 f796b201 df3131a1 27e8a392""")
GCM_SRTCP_INDEX1 = h("""81c8000b cafebabe c98b8b5d f0392a55 852b6c21 ac8e7025 c52c6fbe
                        a2b3b446 ea31123b a88ce61e 80000001""")


def test_libsrtp_gcm_rtp_and_rtcp() -> None:
    tx = Session("AEAD_AES_128_GCM", GCM_KEY)
    assert tx.protect(PLAIN_RTP) == GCM_SRTP
    tx.protect_rtcp(PLAIN_RTCP)
    assert tx.protect_rtcp(PLAIN_RTCP) == GCM_SRTCP_INDEX1
    rx = Session("AEAD_AES_128_GCM", GCM_KEY)
    assert rx.unprotect(GCM_SRTP) == PLAIN_RTP
    assert rx.unprotect_rtcp(GCM_SRTCP_INDEX1) == PLAIN_RTCP


# --- RFC 7714 sections 16 and 17: AES-GCM from session keys ----------------------------------

K128 = h("000102030405060708090a0b0c0d0e0f")
K256 = h("000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f")
K_S = h("517569642070726f2071756f")  # "Quid pro quo"
RFC7714_RTP = h("""8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                   20646976 69736120 696e2070 61727465 73207472 6573""")
RFC7714_SRTP = {
    "AEAD_AES_128_GCM": h("""8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
                             be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
                             6a9152cf 765ee439 0cce"""),
    "AEAD_AES_256_GCM": h("""8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa
                             b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff
                             d6b0f9bb 7878d7a7 6c13"""),
}
RFC7714_RTCP = h("""81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                    4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef""")
RFC7714_SRTCP_INDEX_5D4 = {
    "AEAD_AES_128_GCM": h("""81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
                             6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458
                             96cf4d2f c5abf872 45d9eade 800005d4"""),
    "AEAD_AES_256_GCM": h("""81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d
                             bffe0a50 a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c
                             4446839f 57ff6f6c b26ac3be 800005d4"""),
}


def rfc7714_session(suite: str) -> Session:
    key = K128 if suite == "AEAD_AES_128_GCM" else K256
    return _core.Session._from_session_keys(
        suite, rtp_key=key, rtp_salt=K_S, rtcp_key=key, rtcp_salt=K_S
    )


@pytest.mark.parametrize("suite", ["AEAD_AES_128_GCM", "AEAD_AES_256_GCM"])
def test_rfc7714_section16_srtp(suite: str) -> None:
    assert rfc7714_session(suite).protect(RFC7714_RTP) == RFC7714_SRTP[suite]
    assert rfc7714_session(suite).unprotect(RFC7714_SRTP[suite]) == RFC7714_RTP


@pytest.mark.parametrize("suite", ["AEAD_AES_128_GCM", "AEAD_AES_256_GCM"])
def test_rfc7714_section17_srtcp(suite: str) -> None:
    assert rfc7714_session(suite).unprotect_rtcp(RFC7714_SRTCP_INDEX_5D4[suite]) == RFC7714_RTCP
    # The vector's index is 0x5D4: protect that many packets first, then it.
    tx = rfc7714_session(suite)
    for _ in range(0x5D4):
        tx.protect_rtcp(RFC7714_RTCP)
    assert tx.protect_rtcp(RFC7714_RTCP) == RFC7714_SRTCP_INDEX_5D4[suite]


# --- ROC roll-over, SEQ 0xFFFE -> 0x0001 (libsrtp 2.7.0 generated) -------------------------

ROLLOVER = {
    "AES_CM_128_HMAC_SHA1_80": (
        CM_KEY,
        [
            "800ffffedecafbadcafebabe dae8b0de83c8b04e96f24a2425bce81e fd162555e37f4389d3a4",
            "800fffffdecafbadcafebabe f36e96fc87ac01758cea5f94ba171db8 1149c9c49efa93c1b483",
            "800f0000decafbadcafebabe 24ecf92d9c97bf2ac679b796fdfd365a 267beecdc56456590e62",
            "800f0001decafbadcafebabe b6f1f0a458a238ac3d2f55ac6566b25c 051f89495037505c44c7",
        ],
    ),
    "AEAD_AES_128_GCM": (
        GCM_KEY,
        [
            "800ffffedecafbadcafebabe 13c8a0e35de7456ab2d334abd1bf4afb "
            "42d78d9bfac35a2bc71887f7e5c35901",
            "800fffffdecafbadcafebabe d494b10e1dc38bd0aec3fb9c9a45edcc "
            "38f62c226704c0e5d4bd59c18478b33a",
            "800f0000decafbadcafebabe bf6c6dfe17cc151e899f772b46409248 "
            "441b38fe472d11f34b9c6eab595d256f",
            "800f0001decafbadcafebabe ed15014db6b05349ed97792f4c31d438 "
            "d58ed625fb433cf3516c086320a405dc",
        ],
    ),
}


@pytest.mark.parametrize("suite", list(ROLLOVER))
def test_roc_rollover_vectors(suite: str) -> None:
    key, packets = ROLLOVER[suite]
    tx, rx = Session(suite, key), Session(suite, key)
    for seq, expected in zip((0xFFFE, 0xFFFF, 0x0000, 0x0001), packets, strict=True):
        plain = h("800f") + seq.to_bytes(2, "big") + h("decafbad cafebabe") + b"\xab" * 16
        assert tx.protect(plain) == h(expected)
        assert rx.unprotect(h(expected)) == plain
