"""The server's own secrets, kept in its data directory: the operator token, the key box key,
the PII key and the recording key.

- The operator token (README.md, "Serve it") comes from `RELAY_TOKEN`, or from
  `DATA_DIR/token`, generated on first start: 256 random bits, written with mode 0600 before
  any byte of it is, so no other user can ever read it. Only its digest stays in memory.
- The key box key (32 bytes) seals the participants' SRTP keys in the store
  (control.meetings.KeyBox). It lives in `DATA_DIR/box.key` (mode 0600), or comes from
  `RELAY_BOX_KEY` (base64): several nodes on one PostgreSQL database must share it. A database
  copied without it holds no usable key.
- The PII key (32 bytes) wraps each registrant's own data key (control.pii.PiiBox) and keys the
  email tags. It lives in `DATA_DIR/pii.key` (mode 0600), or comes from `RELAY_PII_KEY`
  (base64), shared by every node of one database like the box key. Keep it out of database
  backups: a backup without it holds no readable personal data.

A secret file that others may read is refused, not silently used: it may have leaked.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from control import auth
from control.settings import SettingsError
from relay.certificate import Certificate
from relay.errors import DtlsError

TOKEN_FILE = "token"
BOX_KEY_FILE = "box.key"
TOKEN_MIN_CHARS = 16
BOX_KEY_BYTES = 32


def ensure_data_dir(path: Path) -> Path:
    """Create the data directory (mode 0700) if it is missing."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"data directory {path}: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise SettingsError(f"data directory {path} is not a directory")
    return path


def _read_private(path: Path) -> bytes:
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            f"{path} may be read by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"make it private with: chmod 600 {path}"
        )
    return path.read_bytes()


def _write_private(path: Path, data: bytes) -> bool:
    """Create `path` with mode 0600 holding `data`; False if it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def operator_token(data_dir: Path, environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(the operator token, whether it was generated just now)."""
    env = os.environ if environ is None else environ
    given = env.get("RELAY_TOKEN")
    if given is not None:
        if len(given) < TOKEN_MIN_CHARS or not given.isprintable() or given.strip() != given:
            raise SettingsError(
                f"RELAY_TOKEN must be at least {TOKEN_MIN_CHARS} printable characters "
                "without surrounding spaces"
            )
        return given, False
    path = data_dir / TOKEN_FILE
    token = auth.new_secret()
    created = _write_private(path, (token + "\n").encode())
    if not created:
        token = _read_private(path).decode("utf-8", "replace").strip()
        if len(token) < TOKEN_MIN_CHARS:
            raise SettingsError(f"{path} holds no usable token; delete it to make a new one")
    return token, created


NODE_ID_FILE = "node.id"


def node_instance(data_dir: Path) -> str:
    """This data directory's node identity (control/nodes.py): made on first start, kept in
    DATA_DIR/node.id. `relay serve` on the same directory (one at a time: its lock) is the
    same node when it starts again; another directory under the same node name is not."""
    path = data_dir / NODE_ID_FILE
    made = secrets.token_hex(8)
    if _write_private(path, (made + "\n").encode()):
        return made
    kept = _read_private(path).decode("ascii", "replace").strip()
    if len(kept) != 16 or any(c not in "0123456789abcdef" for c in kept):
        raise SettingsError(f"{path} holds no node identity; delete it to make a new one")
    return kept


def _key(data_dir: Path, environ: Mapping[str, str] | None, variable: str, file: str) -> bytes:
    """A 32-byte key from `variable` (base64) or `DATA_DIR/file`, made on first use."""
    env = os.environ if environ is None else environ
    given = env.get(variable)
    if given is not None:
        try:
            key = base64.b64decode(given, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != BOX_KEY_BYTES:
            raise SettingsError(f"{variable} must be {BOX_KEY_BYTES} bytes in base64")
        return key
    path = data_dir / file
    _write_private(path, secrets.token_bytes(BOX_KEY_BYTES))
    key = _read_private(path)
    if len(key) != BOX_KEY_BYTES:
        raise SettingsError(f"{path} is not a {BOX_KEY_BYTES}-byte key")
    return key


def box_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    return _key(data_dir, environ, "RELAY_BOX_KEY", BOX_KEY_FILE)


PII_KEY_FILE = "pii.key"


def pii_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The PII key: `RELAY_PII_KEY` (base64 of 32 bytes), or `DATA_DIR/pii.key` (mode 0600,
    32 random bytes written on first use; refused if others may read it)."""
    return _key(data_dir, environ, "RELAY_PII_KEY", PII_KEY_FILE)


RECORDING_KEY_FILE = "recording.key"


def recording_key_file(data_dir: Path) -> Path:
    """DATA_DIR/recording.key (32 random bytes, mode 0600, made on first use): the key that
    wraps each recording file's own key (relay/recording.py). The workers read it from there
    when a meeting starts recording; it never travels in an environment or on a command line."""
    path = data_dir / RECORDING_KEY_FILE
    _write_private(path, secrets.token_bytes(32))
    if len(_read_private(path)) != 32:
        raise SettingsError(f"{path} is not a 32-byte key")
    return path


DTLS_CERTIFICATE_FILE = "dtls.pem"


def dtls_certificate(data_dir: Path) -> tuple[Path, Certificate]:
    """DATA_DIR/dtls.pem, the node's DTLS certificate and key (relay/certificate.py: made on
    first use, mode 0600, renewed before it expires): the workers connect WebRTC peers with
    it, and its fingerprint is in every WHIP and WHEP answer."""
    path = data_dir / DTLS_CERTIFICATE_FILE
    try:
        return path, Certificate.load_or_create(path)
    except (DtlsError, OSError) as exc:
        raise SettingsError(f"DTLS certificate {path}: {exc}") from None
