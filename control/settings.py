"""`relay serve`'s configuration: flags, a TOML file and environment variables.

Each setting comes from the first of these that gives it: a command-line flag, an environment
variable (`RELAY_` and the setting's name in capitals), the TOML file (`--config FILE` or
`RELAY_CONFIG`), the default. The TOML file uses the settings' names as keys:

    data_dir = "/var/lib/relay"
    api = "0.0.0.0:8443"
    tls_cert = "/etc/relay/cert.pem"  # PEM: the server's certificate, then any intermediates
    tls_key = "/etc/relay/key.pem"    # PEM: its private key, unencrypted
    media_host = "0.0.0.0"
    media_port = 40000
    public_host = "203.0.113.7"   # what join answers and SDP tell participants
    workers = 4
    db = "postgresql://relay@db.internal/relay"
    recording_retention_days = 30
    keyframe_interval = 0.5       # seconds between keyframe requests passed to a stream's sender
    # plain_http = true                   # only behind a proxy that terminates TLS
    # trusted_proxies = ["10.0.0.0/24"]   # whose X-Forwarded-For is believed ("A,B" in flags)
    max_participants = 100000     # present participants per meeting
    listeners_per_address = 64    # participants whose receive_at names one address (or /64)
    joins_per_minute = 600        # joins per client address (or /64), the operator's aside
    smtp_url = "smtps://relay%40example.org:app-password@mail.example.org"
    smtp_from = "relay@example.org"
    signup_client_per_minute = 5
    signup_meeting_per_minute = 120
    node_name = "relay-1"         # this node among those on one database (default: host name)
    node_capacity = 20000         # participants it takes (default: 5,000 per worker)
    connected_sockets = 0         # receivers per worker sent to from a socket connected to each
    xdp = "eth0"                  # copies to receivers through eth0 as AF_XDP frames ("": off)
    xdp_checksum = "auto"         # who computes their UDP checksums: auto, offload, relay, kernel
    busy_poll = 500               # microseconds a worker polls without sleeping after media

The API carries tokens, host keys, passwords and participants' SRTP keys, so it is served over
HTTPS (`tls_cert` and `tls_key`, both or neither; control/tls.py checks them) or on a loopback
address. Any other `api` without TLS is refused unless `plain_http` says a proxy in front
terminates TLS. `X-Forwarded-For` is believed only from a TCP peer inside `trusted_proxies`
(default: none); the client address is otherwise the peer's (control/proxies.py).

`smtp_url` and `smtp_from` are the mail server that sends registrants their confirmation
codes and the address those come from (control/mail.py: smtps://, smtp+starttls:// or, for a
local server, smtp://); give both or neither. Without them the server still takes
registrations approved by hand (`approval: manual`), and refuses automatic and rules
approval, which need the registrant's email confirmed. The URL may hold the mail account's
password: like `db`, keep it in RELAY_SMTP_URL or a config file of mode 0600 rather than on a
command line (where `ps` shows it); no message ever shows it. `signup_client_per_minute` and
`signup_meeting_per_minute` throttle sign-ups (control/ratelimit.py): per client address (an
IPv6 /64) and per meeting, each a burst of that many and then that many a minute.

The operator token is not a setting: it is a secret and never sits in a config file or on a
command line (where `ps` shows it). It comes from `RELAY_TOKEN` or from `DATA_DIR/token`,
generated with mode 0600 on first start (control/credentials.py). The TLS key is a file, named
by `tls_key`; its contents never reach a message or a log.

Everything is checked before anything starts: a bad value is a `SettingsError` naming the
setting and where it came from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control import proxies
from control.mail import check_sender, parse_smtp_url
from relay.errors import RelayError
from relay.worker import BUSY_POLL_MAX_US, CONNECTED_SOCKETS, CONNECTED_SOCKETS_MAX, XDP_CHECKSUMS

__all__ = ["DEFAULT_DATA_DIR", "Settings", "SettingsError", "check_api", "resolve"]


class SettingsError(RelayError, ValueError):
    """A setting is missing or wrong; the message says which and where it came from."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "relay"


DEFAULT_DATA_DIR = _default_data_dir()


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    media_host: str = "127.0.0.1"  # the address the workers bind
    media_port: int = 40000  # worker i: PORT + 2i (rtcp-mux) and PORT + 2i + 1 (RTCP)
    public_host: str | None = None  # told to participants; default: media_host
    workers: int = max(1, os.cpu_count() or 1)
    db: str = ""  # empty: SQLite file relay.db in data_dir
    recording_retention_days: float = 30.0  # recordings older than this are deleted
    keyframe_interval: float = 0.5  # seconds between PLI/FIR passed to one stream's sender
    tls_cert: Path | None = None  # PEM certificate (chain) the API serves HTTPS with
    tls_key: Path | None = None  # PEM private key of tls_cert, unencrypted
    plain_http: bool = False  # plain HTTP off loopback: a proxy in front terminates TLS
    trusted_proxies: tuple[str, ...] = ()  # networks whose X-Forwarded-For is believed
    max_participants: int = 100_000  # per meeting (control/limits.py)
    listeners_per_address: int = 64  # receive_at targets per address, over all meetings
    joins_per_minute: int = 600  # per client address; joins with the operator token aside
    smtp_url: str = field(default="", repr=False)  # empty: no email (may hold a password)
    smtp_from: str = ""  # the From address of confirmation codes
    signup_client_per_minute: int = 5  # sign-ups per client address (IPv6: per /64)
    signup_meeting_per_minute: int = 120  # sign-ups per meeting, from everyone
    node_name: str = ""  # this node on a shared database (control/nodes.py); "": the host name
    node_capacity: int = 0  # participants this node takes; 0: NODE_CAPACITY_PER_WORKER each
    # Receivers per worker sent to from a socket connected to each (ext/connected.pxi); 0: all
    # from the media socket.
    connected_sockets: int = CONNECTED_SOCKETS
    # The interface whose receivers get their copies as AF_XDP frames (ext/xdp.pxi), each
    # worker on the queue of its index; "": off.
    xdp: str = ""
    # Who computes those frames' UDP checksums (relay/worker.py, xdp_checksum_for): "auto",
    # "offload" (the device), "relay" (the worker) or "kernel" (in software).
    xdp_checksum: str = "auto"
    # Microseconds a worker keeps polling its sockets without sleeping after a batch of media
    # (relay/worker.py); 0: it sleeps at once.
    busy_poll: int = 0

    @property
    def node(self) -> str:
        """This node's name: `node_name`, or the host's name made a valid one."""
        return self.node_name or host_node_name()

    @property
    def capacity(self) -> int:
        return self.node_capacity or NODE_CAPACITY_PER_WORKER * self.workers

    @property
    def advertised_host(self) -> str:
        return self.public_host or self.media_host

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def to_json(self) -> dict[str, Any]:
        """The settings as plain JSON values (they travel to the control plane's process;
        the TLS key as its path, never its contents)."""
        body = dataclasses.asdict(self)
        for name in ("data_dir", "tls_cert", "tls_key"):
            body[name] = None if body[name] is None else str(body[name])
        body["trusted_proxies"] = list(self.trusted_proxies)
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Settings:
        values = dict(body)
        for name in ("data_dir", "tls_cert", "tls_key"):
            values[name] = None if values.get(name) is None else Path(values[name])
        values["trusted_proxies"] = tuple(values.get("trusted_proxies", ()))
        return cls(**values)


# The settings as their sources name them; "api" is host:port, split into two fields.
NAMES = (
    "data_dir",
    "api",
    "media_host",
    "media_port",
    "public_host",
    "workers",
    "db",
    "recording_retention_days",
    "keyframe_interval",
    "tls_cert",
    "tls_key",
    "plain_http",
    "trusted_proxies",
    "max_participants",
    "listeners_per_address",
    "joins_per_minute",
    "smtp_url",
    "smtp_from",
    "signup_client_per_minute",
    "signup_meeting_per_minute",
    "node_name",
    "node_capacity",
    "connected_sockets",
    "xdp",
    "xdp_checksum",
    "busy_poll",
)
SIGNUP_RATE_MAX = 100_000  # a minute: above this, a throttle is no throttle

# Limits on joining (control/limits.py): name -> the largest value that makes sense.
LIMITS = {
    "max_participants": 10_000_000,
    "listeners_per_address": 1_000_000,
    "joins_per_minute": 1_000_000,
}

NODE_CAPACITY_PER_WORKER = 5_000  # participants a worker takes unless node_capacity says
NODE_CAPACITY_MAX = 10_000_000
# A node's name: what `relay nodes` lists and `relay drain NAME` takes (DNS-label-like).
NODE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def host_node_name() -> str:
    """The host's name as a node name: its first label, characters a name may not hold
    dropped ("relay" if nothing is left)."""
    label = socket.gethostname().split(".", 1)[0]
    name = re.sub(r"[^A-Za-z0-9_-]", "", label)[:63].strip("_-")
    return name or "relay"


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _host(value: object, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{name} ({where}) must be an IP address, got {value!r}")
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise SettingsError(f"{name} ({where}) must be an IP address, got {value!r}") from None


def _integer(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _up_to(name: str, value: object, where: str, top: int, zero: str, unit: str = "") -> int:
    """A whole number 0..top, or a SettingsError naming the setting, where it came from and
    what 0 means."""
    number = _integer(value)
    if number is None or not 0 <= number <= top:
        raise SettingsError(f"{name} ({where}) must be {unit}0..{top} (0: {zero}), got {value!r}")
    return number


def _port(value: object, where: str, name: str, top: int = 65535) -> int:
    port = _integer(value) or -1
    if not 1 <= port <= top:
        raise SettingsError(f"{name} ({where}) must be a port number 1..{top}, got {value!r}")
    return port


def _api(value: object, where: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise SettingsError(f"api ({where}) must be HOST:PORT, as in 127.0.0.1:8080")
    host, _, port = value.rpartition(":")
    return _host(host, where, "api host"), _port(port, where, "api port")


def _path(value: object, where: str, name: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise SettingsError(f"{name} ({where}) must be a file path")
    return Path(value).expanduser().absolute()


def _boolean(value: object, where: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    raise SettingsError(f"{name} ({where}) must be true or false, got {value!r}")


def _networks(value: object, where: str) -> tuple[str, ...]:
    """CIDR networks or addresses: "A,B" (a flag or variable) or a TOML list of strings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise SettingsError(
            f"trusted_proxies ({where}) must be networks or addresses, as in "
            '"10.0.0.0/24,192.0.2.7" or a TOML list of them'
        )
    networks = []
    for item in items:
        if not item.strip():
            continue  # "A,B," or "A,,B": an empty element says nothing
        try:
            networks.append(str(proxies.parse_network(item.strip())))
        except ValueError as exc:
            raise SettingsError(f"trusted_proxies ({where}): {exc}") from None
    return tuple(networks)


def _check(name: str, value: object, where: str) -> dict[str, Any]:
    """One source's value of one setting, checked, as Settings fields."""
    if name == "api":
        host, port = _api(value, where)
        return {"api_host": host, "api_port": port}
    if name in ("media_host", "public_host"):
        host = _host(value, where, name)
        if name == "public_host" and ipaddress.ip_address(host).is_unspecified:
            raise SettingsError(
                f"public_host ({where}) is {host}: it must be the address participants send "
                "to, not a wildcard"
            )
        return {name: host}
    if name == "media_port":
        return {name: _port(value, where, name)}
    if name == "workers":
        count = _integer(value) or 0
        if not 1 <= count <= 256:
            raise SettingsError(f"workers ({where}) must be 1..256, got {value!r}")
        return {name: count}
    if name == "data_dir":
        if not isinstance(value, str | os.PathLike) or not str(value):
            raise SettingsError(f"data_dir ({where}) must be a directory path")
        return {name: Path(value).expanduser().absolute()}
    if name == "recording_retention_days":
        try:
            days = float(value) if isinstance(value, str | int | float) else -1.0
        except ValueError:
            days = -1.0
        if isinstance(value, bool) or not 0 < days <= 3650:
            raise SettingsError(
                f"recording_retention_days ({where}) must be a number of days, 0 < days <= 3650,"
                f" got {value!r}"
            )
        return {name: days}
    if name == "keyframe_interval":
        try:
            seconds = float(value) if isinstance(value, str | int | float) else -1.0
        except ValueError:
            seconds = -1.0
        if isinstance(value, bool) or not 0.05 <= seconds <= 10:
            raise SettingsError(
                f"keyframe_interval ({where}) must be seconds, 0.05..10, got {value!r}"
            )
        return {name: seconds}
    if name == "db":
        if not isinstance(value, str):
            raise SettingsError(f"db ({where}) must be a database URL or an SQLite file path")
        return {name: value}
    if name in ("tls_cert", "tls_key"):
        return {name: _path(value, where, name)}
    if name == "plain_http":
        return {name: _boolean(value, where, name)}
    if name == "trusted_proxies":
        return {name: _networks(value, where)}
    if name in LIMITS:
        count = _integer(value) or 0
        if not 1 <= count <= LIMITS[name]:
            raise SettingsError(f"{name} ({where}) must be 1..{LIMITS[name]}, got {value!r}")
        return {name: count}
    if name == "smtp_url":
        try:
            parse_smtp_url(value if isinstance(value, str) else "")
        except ValueError as exc:  # the message never holds the URL: it may hold a password
            raise SettingsError(f"smtp_url ({where}) {exc}") from None
        assert isinstance(value, str)
        return {name: value.strip()}
    if name == "smtp_from":
        try:
            return {name: check_sender(value if isinstance(value, str) else "")}
        except ValueError as exc:
            raise SettingsError(f"smtp_from ({where}) {exc}") from None
    if name in ("signup_client_per_minute", "signup_meeting_per_minute"):
        rate = _integer(value) or 0
        if not 1 <= rate <= SIGNUP_RATE_MAX:
            raise SettingsError(
                f"{name} ({where}) must be a whole number of sign-ups a minute, "
                f"1..{SIGNUP_RATE_MAX}, got {value!r}"
            )
        return {name: rate}
    if name == "node_name":
        if not isinstance(value, str) or not NODE_NAME.fullmatch(value):
            raise SettingsError(
                f"node_name ({where}) must be 1..63 letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        return {name: value}
    if name == "connected_sockets":
        return {name: _up_to(name, value, where, CONNECTED_SOCKETS_MAX, zero="none")}
    if name == "xdp":
        # An interface name as Linux allows one (IFNAMSIZ less its terminator; no '/', ':' or
        # space); whether it exists here, the workers find at start, with a clear error.
        if not isinstance(value, str) or not re.fullmatch(r"[^/:\s]{0,15}", value):
            raise SettingsError(
                f"xdp ({where}) must be an interface name of at most 15 characters, or empty "
                "for off"
            )
        return {name: value}
    if name == "xdp_checksum":
        if value not in XDP_CHECKSUMS:
            raise SettingsError(
                f"xdp_checksum ({where}) must be one of {', '.join(XDP_CHECKSUMS)}, not {value!r}"
            )
        return {name: value}
    if name == "busy_poll":
        return {
            name: _up_to(name, value, where, BUSY_POLL_MAX_US, zero="off", unit="microseconds, ")
        }
    if name == "node_capacity":
        count = _integer(value) or 0
        if not 1 <= count <= NODE_CAPACITY_MAX:
            raise SettingsError(f"node_capacity ({where}) must be 1..{NODE_CAPACITY_MAX}")
        return {name: count}
    raise SettingsError(f"unknown setting {name!r} ({where}); known: {', '.join(NAMES)}")


def _from_file(path: Path) -> dict[str, Any]:
    """The file's settings by name, unchecked (`resolve` checks them in order)."""
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); TOML files must be"
        ) from None
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in NAMES:
            raise SettingsError(
                f"config file {path}: unknown setting {key!r}; known: {', '.join(NAMES)}"
            )
        values[name] = value
    return values


def _given(flags: Mapping[str, Any], env: Mapping[str, str]) -> list[tuple[str, object, str]]:
    """(setting, value, where it came from) for every value given, lowest precedence first."""
    given: list[tuple[str, object, str]] = []
    config = flags.get("config") or env.get("RELAY_CONFIG")
    if config:
        path = Path(config)
        given += [(n, v, f"config file {path}") for n, v in _from_file(path).items()]
    for name in NAMES:
        value = env.get(f"RELAY_{name.upper()}")
        if value:
            given.append((name, value, f"RELAY_{name.upper()}"))
    for name in NAMES:
        value = flags.get(name)
        if value is not None:
            given.append((name, value, f"--{name.replace('_', '-')}"))
    return given


def _source(origin: Mapping[str, str], name: str) -> str:
    """Where a setting came from, for a message (`check_api` may be given no origins)."""
    return origin.get(name, "as given")


def _check_tls(settings: Settings, origin: Mapping[str, str]) -> None:
    """Both files or neither, and a pair that can serve HTTPS (control/tls.py)."""
    from control import tls  # cryptography loads only when there is TLS to check

    cert, key = settings.tls_cert, settings.tls_key
    if cert is None and key is None:
        return
    if cert is None or key is None:
        given, missing = ("tls_key", "tls_cert") if cert is None else ("tls_cert", "tls_key")
        raise SettingsError(
            f"{given} ({_source(origin, given)}) needs {missing} too: give both "
            "--tls-cert FILE and --tls-key FILE, or neither"
        )
    try:
        tls.check_server_files(cert, key)
    except tls.TlsFileError as exc:
        name = f"tls_{exc.which}"
        raise SettingsError(f"{name} ({_source(origin, name)}): {exc}") from None


def _loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _check_exposure(settings: Settings, origin: Mapping[str, str]) -> None:
    """Plain HTTP only on loopback, unless `plain_http` says a TLS proxy sits in front."""
    if settings.tls and settings.plain_http:
        raise SettingsError(
            f"plain_http ({_source(origin, 'plain_http')}) and tls_cert "
            f"({_source(origin, 'tls_cert')}) contradict each other: give --tls-cert and "
            "--tls-key to serve HTTPS, or --plain-http behind a proxy that terminates TLS"
        )
    if settings.tls or settings.plain_http or _loopback(settings.api_host):
        return
    raise SettingsError(
        f"api ({_source(origin, 'api')}) is {settings.api_host}, not a loopback address, "
        "and the API would be plain HTTP, which carries tokens, passwords and SRTP keys in "
        "clear: give --tls-cert FILE and --tls-key FILE (or RELAY_TLS_CERT and RELAY_TLS_KEY) "
        "to serve HTTPS, or --plain-http if a proxy in front of it terminates TLS"
    )


def check_api(settings: Settings, origin: Mapping[str, str] | None = None) -> None:
    """Refuse an API that cannot be served safely: TLS files that cannot serve HTTPS, or plain
    HTTP off loopback without `plain_http`. `origin` names where each setting came from.
    (`resolve` calls it; the control plane's process calls it again before it listens.)"""
    _check_tls(settings, origin or {})
    _check_exposure(settings, origin or {})


def resolve(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from flags (None where not given), the environment and the config file."""
    env = os.environ if environ is None else environ
    fields: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, value, where in _given(flags, env):
        fields.update(_check(name, value, where))
        origin[name] = where
    settings = Settings(**fields)
    if settings.media_port + 2 * settings.workers - 1 > 65535:
        raise SettingsError(
            f"media ports {settings.media_port}..{settings.media_port + 2 * settings.workers - 1}"
            f" for {settings.workers} workers run past 65535"
        )
    if ipaddress.ip_address(settings.advertised_host).is_unspecified:
        raise SettingsError(
            f"media_host is {settings.media_host}: give public_host, the address participants "
            "should send to"
        )
    check_api(settings, origin)
    if bool(settings.smtp_url) != bool(settings.smtp_from):
        raise SettingsError(
            "smtp_url and smtp_from go together: the mail server, and the address "
            "confirmation codes come from; give both or neither"
        )
    return settings
