"""TLS for the HTTP API on the server's side: the certificate and key that `relay serve
--tls-cert FILE --tls-key FILE` serves HTTPS with (the client's side is in control/client.py).

The API carries the operator token, host keys, meeting passwords and, in every join answer, a
participant's SRTP master keys, so off loopback it must not be plain HTTP (README, "Serve it").

The files are checked before anything starts (control/settings.py) and again by the control
plane's process before uvicorn loads them (control/server.py), so a bad file is one clear
message instead of a traceback: both must be PEM, the key unencrypted (nobody is there to type
a passphrase when the control plane is started again) and the private half of the first
certificate's public key, and OpenSSL must accept the pair as uvicorn will load it. Messages
name the file and what is wrong with it, never what it holds.

TLS 1.2 is the oldest version served (Python's default minimum for a server context) and, for
TLS 1.2, only ECDHE key exchange with AEAD ciphers, as RFC 9325 (BCP 195) §4.2 recommends;
every TLS 1.3 suite is AEAD with forward secrecy already. uvicorn's own default cipher string
("TLSv1") would also allow CBC suites with SHA-1 MACs.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = ["SERVER_CIPHERS", "TlsFileError", "check_server_files"]

SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
PEM_MAX_BYTES = 1 << 20  # a certificate chain is a few KiB; this stops a read of /dev/zero


class TlsFileError(ValueError):
    """The certificate (`which` = "cert") or the key ("key") cannot be served; the message
    names the file and says why, without its contents."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


def _read(path: Path, which: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(PEM_MAX_BYTES + 1)
    except OSError as exc:
        raise TlsFileError(
            which, f"cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(data) > PEM_MAX_BYTES:
        raise TlsFileError(which, f"{path} is over {PEM_MAX_BYTES} bytes: not a PEM file")
    return data


def _certificate(path: Path) -> x509.Certificate:
    """The first certificate in the file: the server's (intermediates may follow it)."""
    data = _read(path, "cert")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise TlsFileError("cert", f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return chain[0]


def _private_key(path: Path) -> PrivateKeyTypes:
    data = _read(path, "key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # what cryptography raises for an encrypted key and no password
        raise TlsFileError(
            "key",
            f"{path} is encrypted; relay serve takes an unencrypted PEM key "
            "(keep it readable by this user only, mode 0600)",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's own message is not repeated: it should say nothing of the contents,
        # but this one certainly does not.
        raise TlsFileError("key", f"{path} holds no PEM private key that can be read") from None


def _public_key_info(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _openssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The pair loaded as uvicorn loads it, with our cipher string; ssl.SSLError if OpenSSL
    refuses them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_ciphers(SERVER_CIPHERS)
    return context


def check_server_files(cert: Path, key: Path) -> None:
    """Raise TlsFileError unless `cert` and `key` can serve HTTPS together."""
    certificate = _certificate(cert)
    private_key = _private_key(key)
    if _public_key_info(certificate.public_key()) != _public_key_info(private_key.public_key()):
        raise TlsFileError(
            "key",
            f"{key} is not the private key of the certificate in {cert} (the first "
            "certificate in that file must be the server's own)",
        )
    try:
        _openssl_context(cert, key)
    except ssl.SSLError as exc:  # a key too weak for OpenSSL's security level, say
        raise TlsFileError(
            "cert", f"OpenSSL refuses {cert} with {key}: {exc.reason or exc.__class__.__name__}"
        ) from None
