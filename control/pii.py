"""Personal data at rest (README.md, "Attendee data (privacy)": registrant PII is encrypted, each
person under their own data key; erasing a person deletes that key).

`PiiBox` holds the server's PII key (32 bytes: `DATA_DIR/pii.key`, mode 0600, or `RELAY_PII_KEY`
in base64; control/credentials.py) and does everything the store must not see in clear:

- `seal(registration_id, fields)`: a fresh random 32-byte data key per registrant encrypts the
  fields (a JSON object) with AES-256-GCM; the data key is itself encrypted ("wrapped") with
  AES-256-GCM under the PII key. Both use a 12-byte random nonce prepended to the ciphertext,
  and the registration id as associated data, so a sealed blob or a wrapped key copied onto
  another registration does not open. The store keeps the two blobs; nothing else.
- `reseal`: new fields under the same data key (a correction), with a fresh nonce.
- `open`: the fields back, given both blobs; `PiiError` if either was not made for this
  registration under this PII key.
- `email_tag(email)`: HMAC-SHA256 of the normalised email (stripped, lower case) under a key
  derived from the PII key, hex. Equal emails give equal tags, so a person can be found (and
  erased) across meetings, and the store can refuse a second registration with one email;
  without the PII key the tag says nothing (no dictionary of emails can be hashed against it).
- `code_digest(registration_id, code)`: HMAC-SHA256 of a registration's confirmation code
  (control/registration.py) and its id, under another key derived from the PII key, hex: all
  the store keeps of a code. A code has few digits, so an unkeyed hash would be reversed by
  trying them all; without the key a leaked digest cannot even be tested.

Erasure is crypto-shredding plus overwriting: the store drops the wrapped key (and the sealed
fields, the tag and the token digest) in place (control/store/registrations.py).
Without the wrapped key nobody, not even the server, can open what may linger elsewhere.

Nothing here ever shows a key or a field in a repr, an exception or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["PII_KEY_BYTES", "PiiBox", "PiiError", "derived_pii_key", "normalise_email"]

PII_KEY_BYTES = 32
DATA_KEY_BYTES = 32
NONCE_BYTES = 12


class PiiError(ValueError):
    """A sealed blob or wrapped key that does not open (not this registration's, or not made
    under this PII key). The message never holds the data."""


def normalise_email(email: str) -> str:
    """What two spellings of one email have in common: no surrounding spaces, lower case."""
    return email.strip().lower()


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


def derived_pii_key(box_key: bytes) -> bytes:
    """A PII key derived from the key box key, for a control plane started without one of its
    own (tests, embedding): stable across restarts like the box key, and not the box key."""
    return _derive(box_key, b"relay pii key v1")


def _seal(aead: AESGCM, data: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, data, associated)


def _open(aead: AESGCM, sealed: bytes, associated: bytes) -> bytes:
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return aead.decrypt(nonce, body, associated)
    except (InvalidTag, ValueError):
        raise PiiError("sealed personal data does not open with this key") from None


class PiiBox:
    """Seals registrants' fields under per-person data keys wrapped by the server's PII key."""

    def __init__(self, pii_key: bytes) -> None:
        if not isinstance(pii_key, bytes | bytearray) or len(pii_key) != PII_KEY_BYTES:
            raise ValueError(f"the PII box needs a {PII_KEY_BYTES}-byte key")
        self._wrap = AESGCM(bytes(pii_key))
        self._tag_key = _derive(bytes(pii_key), b"relay pii email tag v1")
        self._code_key = _derive(bytes(pii_key), b"relay registration code v1")

    def __repr__(self) -> str:
        return "PiiBox(<sealed>)"

    def seal(self, registration_id: str, fields: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """(sealed fields, wrapped data key) for a new registrant: a data key of its own."""
        data_key = AESGCM.generate_key(bit_length=8 * DATA_KEY_BYTES)
        associated = registration_id.encode()
        sealed = _seal(AESGCM(data_key), _json(fields), associated)
        return sealed, _seal(self._wrap, data_key, associated)

    def reseal(self, registration_id: str, wrapped_key: bytes, fields: Mapping[str, Any]) -> bytes:
        """New sealed fields under the registrant's data key (a fresh nonce)."""
        associated = registration_id.encode()
        data_key = _open(self._wrap, wrapped_key, associated)
        return _seal(AESGCM(data_key), _json(fields), associated)

    def open(self, registration_id: str, sealed: bytes, wrapped_key: bytes) -> dict[str, Any]:
        associated = registration_id.encode()
        data_key = _open(self._wrap, wrapped_key, associated)
        fields = json.loads(_open(AESGCM(data_key), sealed, associated))
        if not isinstance(fields, dict):
            raise PiiError("sealed personal data is not a JSON object")
        return fields

    def email_tag(self, email: str) -> str:
        normalised = normalise_email(email).encode()
        return hmac.new(self._tag_key, normalised, hashlib.sha256).hexdigest()

    def code_digest(self, registration_id: str, code: str) -> str:
        """What the store keeps of a confirmation code: bound to its registration, keyed."""
        message = f"{registration_id}\n{code}".encode()
        return hmac.new(self._code_key, message, hashlib.sha256).hexdigest()


def _json(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(fields), ensure_ascii=False, separators=(",", ":")).encode()
