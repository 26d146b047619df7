"""Throwaway certificates for the TLS tests, made with `cryptography`: a private CA and server
certificates it signs, written as PEM files like an operator would hold them."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = CertificateIssuerPrivateKeyTypes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=2)
    )


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Authority:
    """A CA: its key and self-signed certificate."""

    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def new(cls, name: str = "relay test CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            _validity(x509.CertificateBuilder())
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        return cls(key, builder.sign(key, hashes.SHA256()))

    def issue(
        self, key: PrivateKey, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    ) -> x509.Certificate:
        """A server certificate for `hosts` (IP addresses and DNS names) with `key`."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = (
            _validity(x509.CertificateBuilder())
            .subject_name(_name(hosts[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        return builder.sign(self.key, hashes.SHA256())


@dataclass
class ServerFiles:
    """A CA's bundle and a server's certificate and key, as files."""

    ca: Path
    cert: Path
    key: Path
    key_text: str  # to search logs and messages for


def server_files(
    directory: Path, authority: Authority, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> ServerFiles:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    ca = directory / "ca.pem"
    ca.write_bytes(cert_pem(authority.cert))
    cert = directory / "cert.pem"
    cert.write_bytes(cert_pem(authority.issue(key, hosts)))
    key_file = directory / "key.pem"
    key_file.write_bytes(key_pem(key))
    key_file.chmod(0o600)
    return ServerFiles(ca, cert, key_file, key_file.read_text())


def weak_rsa_pair(directory: Path, authority: Authority) -> tuple[Path, Path]:
    """A certificate with a 1024-bit RSA key: parses, matches, and OpenSSL's default security
    level refuses it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert, key_file = directory / "weak-cert.pem", directory / "weak-key.pem"
    cert.write_bytes(cert_pem(authority.issue(key)))
    key_file.write_bytes(key_pem(key))
    return cert, key_file


def key_body(key_text: str) -> list[str]:
    """The base64 lines of a PEM key: what must never appear in a message or a log."""
    return [line for line in key_text.splitlines() if line and not line.startswith("-----")]
