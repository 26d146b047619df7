"""Credentials of the control plane: meeting passwords, host keys, join tokens and the
operator token (README.md, "Serve it"). Sans-IO: nothing here reads a clock or touches the
network or the disk.

Meeting passwords are what people choose or are shown once, so they can be weak and get
guessed offline if the store leaks. They are stored only as Argon2id hashes (RFC 9106): a
memory-hard KDF, so each guess costs tens of MiB of memory as well as time, which blunts GPU and
ASIC guessing far better than a fast hash; the "id" variant resists both side channels and
time-memory trade-offs, and it is the choice of RFC 9106 and OWASP. The stored form is the
self-describing PHC string `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>` (standard
base64 without padding, the same form `cryptography`'s `derive_phc_encoded` writes), so
verification re-derives with the parameters of the stored string and the defaults can be raised
later without invalidating existing meetings. Each hash has its own random 16-byte salt, so two
meetings with the same password store different strings. Passwords are NFKC-normalised first
(NIST SP 800-63B) so the same text typed on different systems matches.

Host keys, join tokens and the operator token are generated here (256 random bits each), shown
once, and stored only as their SHA-256 digest. A fast hash is right for them: with 256 bits of
entropy there is nothing to guess, and every authenticated API call checks one. All
comparisons of secrets go through `hmac.compare_digest` (constant time).

How guessing is bounded: control/throttle.py (per client) and control/proof_of_work.py (per
meeting under attack); the order of the checks at a join: control/admission.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from control.errors import Invalid

# --- meeting passwords ---------------------------------------------------------------------

# Argon2id cost. Measured on the development machine (2-core Intel Xeon, cryptography 50):
# m=47104 KiB (46 MiB), t=1, p=1 takes about 43-46 ms per hash, inside the 20-60 ms aimed for;
# it is also the first of OWASP's recommended Argon2id settings. One lane keeps one hash on
# one core. `derive` releases the GIL (2 threads hash twice as fast), so the API should run it
# in a thread pool.
ARGON2_MEMORY_KIB = 47104
ARGON2_ITERATIONS = 1
ARGON2_LANES = 1
ARGON2_SALT_BYTES = 16
ARGON2_HASH_BYTES = 32
ARGON2_VERSION = 19  # 0x13, the only version the library implements

PASSWORD_MIN_CHARS = 1
PASSWORD_MAX_CHARS = 256

# Limits on parameters read from a stored string: anything outside is not one of ours and
# would only let a corrupted record cost unbounded memory or time.
_MAX_MEMORY_KIB = 1 << 21  # 2 GiB
_MAX_ITERATIONS = 64
_MAX_LANES = 16

_PHC = re.compile(
    r"\$argon2id\$v=(?P<v>[0-9]+)\$m=(?P<m>[0-9]+),t=(?P<t>[0-9]+),p=(?P<p>[0-9]+)"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    """Strict standard base64 without padding, as PHC strings use; ValueError otherwise."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise ValueError("bad base64 in stored password hash") from exc
    if _b64encode(data) != text:  # a length or trailing bits no encoder writes
        raise ValueError("non-canonical base64 in stored password hash")
    return data


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str):
        raise Invalid("password must be a string")
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise Invalid(
            f"password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long "
            f"(got {len(password)})"
        )
    # surrogatepass: a lone surrogate cannot fail here; it simply hashes as itself.
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def _derive(password: bytes, salt: bytes, length: int, m: int, t: int, p: int) -> bytes:
    kdf = Argon2id(salt=salt, length=length, iterations=t, lanes=p, memory_cost=m)
    return kdf.derive(password)


def hash_password(password: str) -> str:
    """The PHC string to store for `password`; Invalid if it is not 1..256 characters."""
    secret = _password_bytes(password)
    salt = secrets.token_bytes(ARGON2_SALT_BYTES)
    m, t, p = ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES
    digest = _derive(secret, salt, ARGON2_HASH_BYTES, m, t, p)
    return f"$argon2id$v={ARGON2_VERSION}$m={m},t={t},p={p}${_b64encode(salt)}${_b64encode(digest)}"


@dataclass(frozen=True)
class _Stored:
    memory_kib: int
    iterations: int
    lanes: int
    salt: bytes
    digest: bytes


def _parse(stored: str) -> _Stored:
    match = _PHC.fullmatch(stored) if isinstance(stored, str) else None
    if match is None:
        raise ValueError("stored password hash is not an $argon2id$ PHC string")
    fields = [match[k] for k in ("v", "m", "t", "p")]
    if any(len(f) > 10 or (len(f) > 1 and f[0] == "0") for f in fields):
        raise ValueError("bad number in stored password hash")
    v, m, t, p = (int(f) for f in fields)
    if v != ARGON2_VERSION:
        raise ValueError(f"unsupported Argon2 version {v} in stored password hash")
    if not 1 <= p <= _MAX_LANES:
        raise ValueError(f"Argon2 lanes {p} out of range in stored password hash")
    if not 1 <= t <= _MAX_ITERATIONS:
        raise ValueError(f"Argon2 iterations {t} out of range in stored password hash")
    if not 8 * p <= m <= _MAX_MEMORY_KIB:
        raise ValueError(f"Argon2 memory {m} KiB out of range in stored password hash")
    salt = _b64decode(match["salt"])
    digest = _b64decode(match["hash"])
    if not 8 <= len(salt) <= 64:
        raise ValueError("salt length out of range in stored password hash")
    if not 16 <= len(digest) <= 64:
        raise ValueError("hash length out of range in stored password hash")
    return _Stored(m, t, p, salt, digest)


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` is the one `stored` was made from, re-derived with the stored
    parameters and compared in constant time. Invalid if the password is not 1..256
    characters (no stored hash can match such a password); ValueError if `stored` is not a
    well-formed string from `hash_password`."""
    record = _parse(stored)
    secret = _password_bytes(password)
    candidate = _derive(
        secret, record.salt, len(record.digest), record.memory_kib, record.iterations, record.lanes
    )
    return hmac.compare_digest(candidate, record.digest)


# 32 symbols without the look-alikes 0/O/o, 1/l/I: 5 bits each, lower case so it is easy to type
# on a phone. 16 symbols in 4 groups of 4 give 80 bits of entropy.
PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_GROUPS = 4
_GROUP_CHARS = 4


def generate_password() -> str:
    """A strong password to show once, like `k7wd-m2xq-9fha-tr4e` (80 bits)."""
    return "-".join(
        "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(_GROUP_CHARS))
        for _ in range(_GROUPS)
    )


# --- host keys and the operator token ------------------------------------------------------


def new_secret() -> str:
    """A new host key or operator token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """What is stored for a secret: its SHA-256, lower-case hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def secret_matches(secret: str, digest: str) -> bool:
    """Whether `secret` is the one `digest` was made from, in constant time. ValueError if
    `digest` is not 64 lower-case hex characters (a corrupted record, never a match)."""
    if not isinstance(digest, str) or _HEX_DIGEST.fullmatch(digest) is None:
        raise ValueError("stored secret digest is not 64 lower-case hex characters")
    if not isinstance(secret, str):
        return False
    return hmac.compare_digest(secret_digest(secret).encode("ascii"), digest.encode("ascii"))


class VerifiedPasswords:
    """Passwords that verified against a stored hash, remembered as HMAC-SHA256 under a key
    that exists only in this process's memory, so a repeat join with the same password is
    one HMAC instead of one Argon2 derivation. Only passwords that matched are remembered,
    and a mismatch says nothing (the caller then runs the full verification), so this gives a
    guesser no shortcut. At most `max_entries`, the least recently used dropped first; keyed
    by the stored hash too, so a changed password is never matched against an old entry."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._tags: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.max_entries = max_entries

    def _tag(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), "sha256").digest()

    def matches(self, scope: str, stored: str, password: str) -> bool:
        tag = self._tags.get((scope, stored))
        if tag is None:
            return False
        self._tags.move_to_end((scope, stored))
        return hmac.compare_digest(tag, self._tag(password))

    def add(self, scope: str, stored: str, password: str) -> None:
        self._tags[(scope, stored)] = self._tag(password)
        self._tags.move_to_end((scope, stored))
        while len(self._tags) > self.max_entries:
            self._tags.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tags)

    def __repr__(self) -> str:
        return f"VerifiedPasswords({len(self._tags)} remembered)"
