"""The node's DTLS certificate and SDP fingerprints (RFC 8122, RFC 5763).

WebRTC peers do not use a PKI: each side's certificate is self-signed, and what makes it
trusted is its fingerprint, carried in the signalled SDP (`a=fingerprint:sha-256 AB:CD:...`,
RFC 8122 section 5) over a channel the peer already trusts (HTTPS for WHIP/WHEP). The DTLS
handshake then only has to prove that the peer holds the key of a certificate with that
fingerprint (RFC 5763 section 5), which relay/dtls.py checks.

    cert = Certificate.load_or_create(data_dir / "dtls.pem")
    cert.fingerprint            # "sha-256 AB:CD:...", for the SDP answer
    Fingerprint.parse("sha-256 AB:CD:...")   # the peer's, from its offer

The certificate lives in one PEM file (private key, then certificate), mode 0600, so that a
restarted node keeps its fingerprint. Unlike relay/dtls.py this module touches files and the
clock: it runs once, when a node starts, off the media path.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.errors import DtlsError

__all__ = ["HASHES", "Certificate", "Fingerprint"]

#: RFC 8122 section 5's hash function names (from RFC 3279) that relay accepts -> hashlib's.
#: MD2 and MD5, also in that list, are refused: collisions in them are practical.
HASHES: dict[str, str] = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}

# Browsers compare a certificate's notBefore with their own clock and some stacks refuse one
# that is "not yet valid"; a day before now covers any clock skew between peers. One year
# after: WebRTC peers check the fingerprint, not the dates, but a stack that did check would
# fail every handshake once a long-running node's certificate expired, and a year is far
# longer than any node runs between restarts. At start, a certificate with less than RENEW
# left (or not yet valid by this clock) is replaced: the fingerprint is signalled per
# session, so a new one only changes what new sessions are told.
BACKDATE = datetime.timedelta(days=1)
VALIDITY = datetime.timedelta(days=365)
RENEW = datetime.timedelta(days=30)

_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*")


class Fingerprint(NamedTuple):
    """A certificate fingerprint as SDP carries it (RFC 8122 section 5): a hash function's
    name and the digest of the certificate's DER encoding."""

    algorithm: str  # one of HASHES, lower case
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        """`"sha-256 AB:CD:..."`, the value of an `a=fingerprint:` attribute.

        The hash name is case-insensitive and the hex digits may be either case (RFC 8122
        section 5 asks for upper case; lower case costs nothing to accept).

        Raises:
            DtlsError: an unknown or refused hash function, or a digest that is not colon-
                separated hex pairs of that function's length.
        """
        algorithm, _, value = text.strip().partition(" ")
        algorithm = algorithm.lower()
        if algorithm not in HASHES:
            raise DtlsError(
                f"fingerprint hash {algorithm!r} is not supported; expected one of "
                f"{', '.join(HASHES)}"
            )
        value = value.strip()
        if not _HEX_PAIRS.fullmatch(value):
            raise DtlsError("a fingerprint is hex pairs separated by colons, as in AB:CD:EF")
        digest = bytes.fromhex(value.replace(":", ""))
        if len(digest) != hashlib.new(HASHES[algorithm]).digest_size:
            raise DtlsError(f"a {algorithm} fingerprint has the wrong length ({len(digest)})")
        return cls(algorithm, digest)

    @classmethod
    def of(cls, der: bytes, algorithm: str = "sha-256") -> Fingerprint:
        """The fingerprint of a DER-encoded certificate under `algorithm` (one of HASHES)."""
        return cls(algorithm, hashlib.new(HASHES[algorithm], der).digest())

    def matches(self, der: bytes) -> bool:
        """Whether the DER-encoded certificate has this fingerprint, compared in constant time
        (a timing difference must not tell a forger how many leading bytes are right)."""
        actual = hashlib.new(HASHES[self.algorithm], der).digest()
        return hmac.compare_digest(actual, self.digest)

    def __str__(self) -> str:
        return f"{self.algorithm} {self.digest.hex(':').upper()}"


@dataclass(frozen=True, eq=False)
class Certificate:
    """The node's ECDSA P-256 key and its self-signed certificate.

    P-256 because every browser accepts it (WebRTC's RTCCertificate default) and ECDSA
    handshakes cost a fraction of RSA's. Identity-compared and hashed, so relay/dtls.py can
    key its cached OpenSSL contexts on it.
    """

    private_key: ec.EllipticCurvePrivateKey
    x509: x509.Certificate

    @classmethod
    def generate(cls, now: datetime.datetime | None = None) -> Certificate:
        """A new key and certificate, valid from a day before `now` (default: the clock)."""
        now = now or datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        # The name means nothing to a peer (RFC 5763 section 5: only the fingerprint is
        # checked); a fixed one reveals nothing about the node.
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, data: bytes) -> Certificate:
        """A key and certificate from PEM (key first or last, one of each).

        Raises:
            DtlsError: not PEM, not a P-256 key, or a certificate for another key.
        """
        try:
            key = serialization.load_pem_private_key(data, password=None)
            cert = x509.load_pem_x509_certificate(data)
        except (ValueError, TypeError) as exc:
            raise DtlsError(f"not a PEM private key and certificate: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise DtlsError("the DTLS key must be ECDSA P-256")
        if cert.public_key() != key.public_key():
            raise DtlsError("the DTLS certificate is for another key")
        return cls(key, cert)

    @classmethod
    def load_or_create(
        cls, path: str | os.PathLike[str], now: datetime.datetime | None = None
    ) -> Certificate:
        """The certificate kept at `path`, made there (mode 0600) if missing or expiring.

        Creation is atomic (a complete file is linked into place), so processes that start
        together all end up with the one that got there first. A file readable by other
        users is refused, as control/credentials.py refuses the node's other secrets.

        Raises:
            DtlsError: the file is not private, or does not hold a P-256 key and its
                certificate.
            OSError: the file cannot be read or written.
        """
        path = Path(path)
        now = now or datetime.datetime.now(datetime.UTC)
        if not path.exists():
            created = cls.generate(now)
            if _write_new(path, created.to_pem()):
                return created
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise DtlsError(
                f"{path} holds a private key and may be read by other users (mode "
                f"{stat.S_IMODE(mode):04o}); make it private with: chmod 600 {path}"
            )
        loaded = cls.from_pem(path.read_bytes())
        valid = loaded.x509.not_valid_before_utc <= now < loaded.x509.not_valid_after_utc - RENEW
        if valid:
            return loaded
        renewed = cls.generate(now)
        _write_new(path, renewed.to_pem(), replace=True)
        return renewed

    def to_pem(self) -> bytes:
        """The private key (unencrypted PKCS#8) then the certificate, as PEM."""
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return key + self.x509.public_bytes(serialization.Encoding.PEM)

    @cached_property
    def der(self) -> bytes:
        """The certificate's DER encoding: what fingerprints are computed over."""
        return self.x509.public_bytes(serialization.Encoding.DER)

    def fingerprint_with(self, algorithm: str = "sha-256") -> Fingerprint:
        return Fingerprint.of(self.der, algorithm)

    @property
    def fingerprint(self) -> str:
        """`"sha-256 AB:CD:..."`: the value of the SDP answer's `a=fingerprint:` attribute
        (SHA-256, the hash every WebRTC stack uses; RFC 8122 section 5)."""
        return str(self.fingerprint_with("sha-256"))


def _write_new(path: Path, data: bytes, *, replace: bool = False) -> bool:
    """Put `data` at `path` with mode 0600, all at once: written to a temporary file beside
    it, then linked (or, with `replace`, renamed) into place. False if `path` appeared in
    the meantime (another process made it first: use that one)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(temporary):
            os.unlink(temporary)
