"""Sealing SRTP master keys for the store: the store never holds a key in clear.

AES-256-GCM (via `cryptography`, over OpenSSL) under the server's 32-byte box key
(control/credentials.py keeps it). Sealed form: a 12-byte random nonce || ciphertext and tag;
the associated data is the participant id, so a sealed key copied onto another participant's
row does not open.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KeyBox"]


class KeyBox:
    """Seals and opens SRTP master keys; shows nothing of its key in a repr."""

    NONCE_BYTES = 12

    def __init__(self, box_key: bytes) -> None:
        if not isinstance(box_key, bytes | bytearray) or len(box_key) != 32:
            raise ValueError("the key box needs a 32-byte key")
        self._aead = AESGCM(bytes(box_key))

    def __repr__(self) -> str:
        return "KeyBox(<sealed>)"

    def seal(self, key: bytes, participant_id: str) -> bytes:
        nonce = os.urandom(self.NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, participant_id.encode())

    def unseal(self, sealed: bytes, participant_id: str) -> bytes:
        """The key; ValueError if `sealed` was not made by this box for this participant."""
        nonce, body = sealed[: self.NONCE_BYTES], sealed[self.NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, participant_id.encode())
        except (InvalidTag, ValueError):
            raise ValueError("a sealed key does not open with this key box") from None
