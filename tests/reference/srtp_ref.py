"""A pure-Python SRTP (RFC 3711, RFC 7714) on the `cryptography` package: the twin of
ext/srtp.pxi that the behaviour tests run against as well.

Written for clarity, not speed, and independently of the native code: the same contract
(relay.srtp.Session), the same exceptions, the same rules for ROC, replay and SRTCP.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC

from relay.errors import AuthError, ReplayError, SrtpError

# name -> (key length, salt length, SRTP tag length, SRTCP tag length, AEAD)
SPECS = {
    "AES_CM_128_HMAC_SHA1_80": (16, 14, 10, 10, False),
    "AES_CM_128_HMAC_SHA1_32": (16, 14, 4, 10, False),
    "AEAD_AES_128_GCM": (16, 12, 16, 16, True),
    "AEAD_AES_256_GCM": (32, 12, 16, 16, True),
}
SUITES = {name: spec[:3] for name, spec in SPECS.items()}
MAX_PACKET = 65535


def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def kdf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """RFC 3711 section 4.3.1, key_derivation_rate 0: AES-CM keystream from (label<<48)^salt."""
    x = int.from_bytes(master_salt.ljust(14, b"\0"), "big") ^ (label << 48)
    return aes_ctr(master_key, x.to_bytes(14, "big") + b"\0\0", bytes(length))


def rtp_header_len(pkt: bytes) -> int:
    if len(pkt) < 12 or pkt[0] >> 6 != 2:
        raise SrtpError("malformed RTP packet")
    n = 12 + 4 * (pkt[0] & 0x0F)
    if pkt[0] & 0x10:
        if n + 4 > len(pkt):
            raise SrtpError("malformed RTP packet")
        n += 4 + 4 * struct.unpack_from("!H", pkt, n + 2)[0]
    if n > len(pkt):
        raise SrtpError("malformed RTP packet")
    return n


@dataclass
class IndexState:
    """Highest index accepted and the set of indexes within the window (RFC 3711 3.3)."""

    highest: int | None = None
    seen: set[int] = field(default_factory=set)

    def estimate(self, seq: int) -> int:
        if self.highest is None:
            return seq
        roc, s_l = self.highest >> 16, self.highest & 0xFFFF
        if s_l < 32768:
            v = roc - 1 if seq - s_l > 32768 else roc
        else:
            v = roc + 1 if s_l - 32768 > seq else roc
        return (v << 16) | seq  # negative when v == -1: older than anything

    def check(self, index: int, window: int) -> None:
        if index < 0:
            raise ReplayError("packet index is older than the replay window")
        if self.highest is None or index > self.highest:
            return
        if self.highest - index >= window:
            raise ReplayError("packet index is older than the replay window")
        if index in self.seen:
            raise ReplayError("packet index already received (replay)")

    def accept(self, index: int, window: int) -> None:
        if self.highest is None or index > self.highest:
            self.highest = index
        self.seen.add(index)
        self.seen = {i for i in self.seen if self.highest - i < window}


@dataclass
class Stream:
    rtp_tx: IndexState = field(default_factory=IndexState)
    rtp_rx: IndexState = field(default_factory=IndexState)
    rtcp_rx: IndexState = field(default_factory=IndexState)
    rtcp_tx_next: int = 0


@dataclass
class Keys:
    key: bytes
    salt: bytes
    auth: bytes


class Session:
    """relay.srtp.Session, in Python."""

    def __init__(
        self, suite: str, key_material: bytes, *, replay_window: int = 128, mki: None = None
    ) -> None:
        if suite not in SPECS:
            raise ValueError(f"unknown SRTP suite {suite!r}")
        if mki is not None:
            raise ValueError("MKI is not supported")
        if not 64 <= replay_window <= 1024:
            raise ValueError("replay_window must be between 64 and 1024")
        self.key_len, self.salt_len, self.tag_len, self.rtcp_tag_len, self.aead = SPECS[suite]
        if len(key_material) != self.key_len + self.salt_len:
            raise ValueError(f"{suite} needs {self.key_len + self.salt_len} bytes")
        mk, ms = bytes(key_material[: self.key_len]), bytes(key_material[self.key_len :])
        auth_len = 0 if self.aead else 20
        self.rtp = Keys(
            kdf(mk, ms, 0, self.key_len), kdf(mk, ms, 2, self.salt_len), kdf(mk, ms, 1, auth_len)
        )
        self.rtcp = Keys(
            kdf(mk, ms, 3, self.key_len), kdf(mk, ms, 5, self.salt_len), kdf(mk, ms, 4, auth_len)
        )
        self.window = replay_window
        self.streams: dict[int, Stream] = {}

    def _stream(self, ssrc: int) -> Stream:
        return self.streams.get(ssrc) or Stream()

    def _keep(self, ssrc: int, st: Stream) -> None:
        self.streams.setdefault(ssrc, st)

    def _mac(self, keys: Keys, data: bytes, tag_len: int) -> bytes:
        h = HMAC(keys.auth, hashes.SHA1())
        h.update(data)
        return h.finalize()[:tag_len]

    def _cm_iv(self, keys: Keys, ssrc: int, index: int) -> bytes:
        iv = int.from_bytes(keys.salt, "big") << 16 ^ ssrc << 64 ^ index << 16
        return iv.to_bytes(16, "big")

    def _gcm_iv(self, keys: Keys, ssrc: int, index: int) -> bytes:
        iv = (ssrc << 48 | index) ^ int.from_bytes(keys.salt, "big")
        return iv.to_bytes(12, "big")

    @staticmethod
    def _size(pkt: bytes) -> bytes:
        pkt = bytes(pkt)
        if len(pkt) > MAX_PACKET:
            raise SrtpError("packet too large")
        return pkt

    def protect(self, rtp: bytes) -> bytes:
        rtp = self._size(rtp)
        h = rtp_header_len(rtp)
        seq, ssrc = struct.unpack_from("!H", rtp, 2)[0], struct.unpack_from("!I", rtp, 8)[0]
        st = self._stream(ssrc)
        index = st.rtp_tx.estimate(seq)
        st.rtp_tx.check(index, self.window)
        if index >> 48:
            raise SrtpError("packet index limit reached")
        if self.aead:
            sealed = AESGCM(self.rtp.key).encrypt(
                self._gcm_iv(self.rtp, ssrc, index), rtp[h:], rtp[:h]
            )
            out = rtp[:h] + sealed
        else:
            body = rtp[:h] + aes_ctr(self.rtp.key, self._cm_iv(self.rtp, ssrc, index), rtp[h:])
            roc = struct.pack("!I", index >> 16)
            out = body + self._mac(self.rtp, body + roc, self.tag_len)
        st.rtp_tx.accept(index, self.window)
        self._keep(ssrc, st)
        return out

    def unprotect(self, srtp: bytes) -> bytes:
        srtp = self._size(srtp)
        if len(srtp) < self.tag_len:
            raise SrtpError("malformed SRTP packet")
        body, tag = srtp[: len(srtp) - self.tag_len], srtp[len(srtp) - self.tag_len :]
        h = rtp_header_len(body)
        seq, ssrc = struct.unpack_from("!H", body, 2)[0], struct.unpack_from("!I", body, 8)[0]
        st = self._stream(ssrc)
        index = st.rtp_rx.estimate(seq)
        st.rtp_rx.check(index, self.window)
        if index >> 48:
            raise SrtpError("packet index limit reached")
        if self.aead:
            try:
                plain = AESGCM(self.rtp.key).decrypt(
                    self._gcm_iv(self.rtp, ssrc, index), body[h:] + tag, body[:h]
                )
            except Exception:
                raise AuthError("authentication tag mismatch") from None
        else:
            roc = struct.pack("!I", index >> 16)
            if not hmac.compare_digest(self._mac(self.rtp, body + roc, self.tag_len), tag):
                raise AuthError("authentication tag mismatch")
            plain = aes_ctr(self.rtp.key, self._cm_iv(self.rtp, ssrc, index), body[h:])
        st.rtp_rx.accept(index, self.window)
        self._keep(ssrc, st)
        return body[:h] + plain

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        rtcp = self._size(rtcp)
        if len(rtcp) < 8 or rtcp[0] >> 6 != 2:
            raise SrtpError("malformed RTCP packet")
        ssrc = struct.unpack_from("!I", rtcp, 4)[0]
        st = self._stream(ssrc)
        index = st.rtcp_tx_next
        if index > 0x7FFFFFFF:
            raise SrtpError("SRTCP index limit reached")
        trailer = struct.pack("!I", 0x80000000 | index)
        if self.aead:
            sealed = AESGCM(self.rtcp.key).encrypt(
                self._gcm_iv(self.rtcp, ssrc, index), rtcp[8:], rtcp[:8] + trailer
            )
            out = rtcp[:8] + sealed + trailer
        else:
            body = (
                rtcp[:8]
                + aes_ctr(self.rtcp.key, self._cm_iv(self.rtcp, ssrc, index), rtcp[8:])
                + trailer
            )
            out = body + self._mac(self.rtcp, body, self.rtcp_tag_len)
        st.rtcp_tx_next = index + 1
        self._keep(ssrc, st)
        return out

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        srtcp = self._size(srtcp)
        tag_len = self.rtcp_tag_len
        if len(srtcp) < 8 + 4 + tag_len:
            raise SrtpError("malformed SRTCP packet")
        body_len = len(srtcp) - 4 - tag_len
        if srtcp[0] >> 6 != 2:
            raise SrtpError("malformed SRTCP packet")
        if self.aead:
            body, tag, trailer = (
                srtcp[:body_len],
                srtcp[body_len : body_len + tag_len],
                srtcp[-4:],
            )
        else:
            body, trailer, tag = srtcp[:body_len], srtcp[body_len : body_len + 4], srtcp[-tag_len:]
        word = struct.unpack("!I", trailer)[0]
        encrypted, index = word >> 31, word & 0x7FFFFFFF
        ssrc = struct.unpack_from("!I", body, 4)[0]
        st = self._stream(ssrc)
        st.rtcp_rx.check(index, self.window)
        if self.aead:
            iv = self._gcm_iv(self.rtcp, ssrc, index)
            try:
                if encrypted:
                    plain = body[:8] + AESGCM(self.rtcp.key).decrypt(
                        iv, body[8:] + tag, body[:8] + trailer
                    )
                else:
                    AESGCM(self.rtcp.key).decrypt(iv, tag, body + trailer)
                    plain = body
            except Exception:
                raise AuthError("authentication tag mismatch") from None
        else:
            if not hmac.compare_digest(self._mac(self.rtcp, body + trailer, tag_len), tag):
                raise AuthError("authentication tag mismatch")
            plain = body
            if encrypted:
                plain = body[:8] + aes_ctr(
                    self.rtcp.key, self._cm_iv(self.rtcp, ssrc, index), body[8:]
                )
        st.rtcp_rx.accept(index, self.window)
        self._keep(ssrc, st)
        return plain
