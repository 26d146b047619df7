"""`relay serve`'s settings (control/settings.py) and its secrets (control/credentials.py):
precedence flag > environment > TOML file > default, every setting from every source, refusals
that name the setting and where it came from, and secret files that nobody else may read."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from control import credentials
from control.settings import DEFAULT_DATA_DIR, Settings, SettingsError, resolve
from tests.pki import Authority, ServerFiles, key_body, key_pem, server_files, weak_rsa_pair

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

ALL_SETTINGS = (
    "data_dir",
    "api",
    "media_host",
    "media_port",
    "public_host",
    "workers",
    "db",
    "tls_cert",
    "tls_key",
    "plain_http",
    "trusted_proxies",
)


def toml_file(tmp_path: Path, text: str, name: str = "relay.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- sources and precedence -------------------------------------------------------------------


def test_defaults_with_no_source() -> None:
    settings = resolve({}, environ={})
    assert settings == Settings()
    assert settings.data_dir == DEFAULT_DATA_DIR
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert (settings.media_host, settings.media_port) == ("127.0.0.1", 40000)
    assert settings.public_host is None and settings.advertised_host == "127.0.0.1"
    assert settings.workers >= 1 and settings.db == ""


def test_flags_that_are_not_settings_and_unset_flags_are_ignored() -> None:
    flags: dict[str, Any] = {name: None for name in ALL_SETTINGS}
    flags.update(config=None, command="serve", func=print)
    assert resolve(flags, environ={}) == Settings()


def _expected(tmp_path: Path, tag: str, port: int) -> Settings:
    return Settings(
        data_dir=tmp_path / tag,
        api_host="10.0.0.1",
        api_port=port,
        media_host="10.0.0.2",
        media_port=port + 100,
        public_host="203.0.113.9",
        workers=3,
        db=f"postgresql://relay@db/{tag}",
        plain_http=True,  # 10.0.0.1 is no loopback address: a TLS proxy is in front
        trusted_proxies=("10.0.0.0/24", "2001:db8::7/128"),
    )


def test_every_setting_from_a_flag(tmp_path: Path) -> None:
    flags = {
        "data_dir": str(tmp_path / "flag"),
        "api": "10.0.0.1:9001",
        "media_host": "10.0.0.2",
        "media_port": "9101",
        "public_host": "203.0.113.9",
        "workers": "3",
        "db": "postgresql://relay@db/flag",
        "plain_http": True,
        "trusted_proxies": "10.0.0.0/24,2001:db8::7",
    }
    assert resolve(flags, environ={}) == _expected(tmp_path, "flag", 9001)


def test_every_setting_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "RELAY_DATA_DIR": str(tmp_path / "env"),
        "RELAY_API": "10.0.0.1:9002",
        "RELAY_MEDIA_HOST": "10.0.0.2",
        "RELAY_MEDIA_PORT": "9102",
        "RELAY_PUBLIC_HOST": "203.0.113.9",
        "RELAY_WORKERS": "3",
        "RELAY_DB": "postgresql://relay@db/env",
        "RELAY_PLAIN_HTTP": "yes",
        "RELAY_TRUSTED_PROXIES": " 10.0.0.0/24 , 2001:db8::7 ",
    }
    assert resolve({}, environ=environ) == _expected(tmp_path, "env", 9002)


def test_every_setting_from_the_toml_file(tmp_path: Path) -> None:
    config = toml_file(
        tmp_path,
        f"""
        # the settings' names as keys
        data_dir = "{tmp_path / "file"}"
        api = "10.0.0.1:9003"
        media_host = "10.0.0.2"
        media_port = 9103
        public_host = "203.0.113.9"
        workers = 3
        db = "postgresql://relay@db/file"
        plain_http = true
        trusted_proxies = ["10.0.0.0/24", "2001:db8::7"]
        """,
    )
    expected = _expected(tmp_path, "file", 9003)
    assert resolve({"config": str(config)}, environ={}) == expected
    assert resolve({}, environ={"RELAY_CONFIG": str(config)}) == expected
    # dashes work as well as underscores in the file's keys
    dashed = toml_file(tmp_path, f'data-dir = "{tmp_path / "d"}"\nmedia-port = 9200\n', "d.toml")
    settings = resolve({"config": str(dashed)}, environ={})
    assert (settings.data_dir, settings.media_port) == (tmp_path / "d", 9200)


def test_precedence_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    config = toml_file(
        tmp_path,
        'api = "127.0.0.1:1001"\nworkers = 2\nmedia_port = 30000\ndb = "file.db"\n',
    )
    environ = {"RELAY_API": "127.0.0.1:2002", "RELAY_WORKERS": "3"}
    flags = {"config": str(config), "api": "127.0.0.1:3003"}

    settings = resolve(flags, environ=environ)
    assert settings.api_port == 3003  # flag over environment and file
    assert settings.workers == 3  # environment over file
    assert (settings.media_port, settings.db) == (30000, "file.db")  # file over default
    assert settings.media_host == "127.0.0.1"  # default: nobody gave it

    settings = resolve({"config": str(config)}, environ=environ)
    assert (settings.api_port, settings.workers) == (2002, 3)
    settings = resolve({"config": str(config)}, environ={})
    assert (settings.api_port, settings.workers) == (1001, 2)
    settings = resolve({}, environ={})
    assert (settings.api_port, settings.media_port, settings.db) == (8080, 40000, "")


def test_config_flag_wins_over_relay_config(tmp_path: Path) -> None:
    by_flag = toml_file(tmp_path, "workers = 5\n", "flag.toml")
    by_env = toml_file(tmp_path, "workers = 6\n", "env.toml")
    assert resolve({"config": str(by_flag)}, environ={"RELAY_CONFIG": str(by_env)}).workers == 5
    assert resolve({}, environ={"RELAY_CONFIG": str(by_env)}).workers == 6


def test_an_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    config = toml_file(tmp_path, "workers = 4\n")
    settings = resolve({"config": str(config)}, environ={"RELAY_WORKERS": "", "RELAY_API": ""})
    assert settings.workers == 4 and settings.api_port == 8080


# --- api, hosts, directories ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "host", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:80", "0.0.0.0", 80),
        ("[::1]:9000", "::1", 9000),
        ("[::]:65535", "::", 65535),
        ("[2001:DB8::1]:1", "2001:db8::1", 1),
    ],
)
def test_api_splits_into_host_and_port(api: str, host: str, port: int) -> None:
    flag, env = {"api": api, "plain_http": True}, {"RELAY_API": api, "RELAY_PLAIN_HTTP": "1"}
    for settings in (resolve(flag, environ={}), resolve({}, environ=env)):
        assert (settings.api_host, settings.api_port) == (host, port)


def test_ipv6_media_and_public_hosts() -> None:
    settings = resolve({"media_host": "::1"}, environ={})
    assert settings.media_host == "::1" and settings.advertised_host == "::1"
    settings = resolve({"media_host": "::", "public_host": "2001:db8::7"}, environ={})
    assert settings.advertised_host == "2001:db8::7"


def test_data_dir_is_made_absolute_and_expands_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve({"data_dir": "rel"}, environ={}).data_dir == tmp_path / "rel"
    assert resolve({}, environ={"RELAY_DATA_DIR": "~/x"}).data_dir == Path.home() / "x"


def test_an_unspecified_media_host_needs_a_public_host() -> None:
    for host in ("0.0.0.0", "::"):
        with pytest.raises(SettingsError, match="public_host") as caught:
            resolve({"media_host": host}, environ={})
        assert "media_host" in str(caught.value)
        settings = resolve({"media_host": host, "public_host": "203.0.113.7"}, environ={})
        assert settings.media_host == host and settings.advertised_host == "203.0.113.7"
    environ = {"RELAY_MEDIA_HOST": "0.0.0.0", "RELAY_PUBLIC_HOST": "198.51.100.1"}
    assert resolve({}, environ=environ).advertised_host == "198.51.100.1"


def test_an_unspecified_public_host_is_refused_as_the_public_host() -> None:
    with pytest.raises(SettingsError) as caught:
        resolve({"public_host": "0.0.0.0"}, environ={})
    message = str(caught.value)
    assert "public_host" in message and "0.0.0.0" in message and "--public-host" in message
    assert "media_host is 127.0.0.1" not in message


# --- media ports and workers ------------------------------------------------------------------


def test_media_ports_must_fit_below_65536_for_every_worker() -> None:
    # worker i uses PORT + 2i and PORT + 2i + 1: 4 workers from 65528 end exactly at 65535
    assert resolve({"media_port": "65528", "workers": "4"}, environ={}).media_port == 65528
    with pytest.raises(SettingsError, match=r"65529\.\.65536 for 4 workers run past 65535"):
        resolve({"media_port": "65529", "workers": "4"}, environ={})
    with pytest.raises(SettingsError, match="256 workers run past 65535"):
        resolve({}, environ={"RELAY_MEDIA_PORT": "65100", "RELAY_WORKERS": "256"})
    assert resolve({"media_port": "1", "workers": "256"}, environ={}).workers == 256


# --- bad values, from each source ---------------------------------------------------------------

BAD_VALUES: list[tuple[str, Any, str]] = [
    ("api", "127.0.0.1", "HOST:PORT"),
    ("api", "127.0.0.1:99999", "api port"),
    ("api", "127.0.0.1:0", "api port"),
    ("api", "127.0.0.1:http", "api port"),
    ("api", "localhost:8080", "api host"),
    ("media_port", "0", "media_port"),
    ("media_port", "65536", "media_port"),
    ("media_port", "-1", "media_port"),
    ("media_port", "forty", "media_port"),
    ("media_host", "relay.example", "media_host"),
    ("media_host", "300.1.1.1", "media_host"),
    ("public_host", "localhost", "public_host"),
    ("workers", "0", "workers"),
    ("workers", "257", "workers"),
    ("workers", "-3", "workers"),
    ("workers", "many", "workers"),
    ("plain_http", "maybe", "true or false"),
    ("trusted_proxies", "proxy.example", "not an IP address"),
    ("trusted_proxies", "10.0.0.1/8", "host bits set: the network is 10.0.0.0/8"),
    ("trusted_proxies", "0.0.0.0/0", "would trust every address"),
    ("trusted_proxies", "10.0.0.0/8,::/0", "would trust every address"),
    ("xdp", "a-name-too-long-for-linux", "interface name of at most 15"),
    ("xdp", "eth0/1", "interface name"),
    ("xdp", "eth 0", "interface name"),
]


@pytest.mark.parametrize(
    ("name", "value", "word"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES]
)
def test_bad_values_name_the_setting_and_the_source(
    tmp_path: Path, name: str, value: str, word: str
) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SettingsError, match=word) as caught:
        resolve({name: value}, environ={})
    assert flag in str(caught.value)

    variable = f"RELAY_{name.upper()}"
    with pytest.raises(SettingsError, match=word) as caught:
        resolve({}, environ={variable: value})
    assert variable in str(caught.value)

    config = toml_file(tmp_path, f"{name} = {json.dumps(value)}\n")
    with pytest.raises(SettingsError, match=word) as caught:
        resolve({"config": str(config)}, environ={})
    assert f"config file {config}" in str(caught.value)


BAD_TOML_TYPES: list[tuple[str, str]] = [
    ("workers = 0", "workers"),
    ("workers = true", "workers"),
    ("workers = 2.5", "workers"),
    ("media_port = 70000", "media_port"),
    ("media_port = 40000.0", "media_port"),
    ("api = 8080", "api"),
    ('api = ["127.0.0.1", 8080]', "api"),
    ("media_host = 127", "media_host"),
    ("db = 5", "db"),
    ("data_dir = 1", "data_dir"),
    ('data_dir = ""', "data_dir"),
    ("plain_http = 1", "plain_http"),
    ("trusted_proxies = 10", "trusted_proxies"),
    ("trusted_proxies = [10]", "trusted_proxies"),
    ("tls_cert = 5", "tls_cert"),
    ('tls_key = ""', "tls_key"),
]


@pytest.mark.parametrize(("line", "word"), BAD_TOML_TYPES, ids=[c[0] for c in BAD_TOML_TYPES])
def test_toml_values_of_the_wrong_type(tmp_path: Path, line: str, word: str) -> None:
    config = toml_file(tmp_path, line + "\n")
    with pytest.raises(SettingsError, match=word) as caught:
        resolve({"config": str(config)}, environ={})
    assert str(config) in str(caught.value)


def test_bad_flag_types_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"workers \(--workers\)"):
        resolve({"workers": 0}, environ={})
    with pytest.raises(SettingsError, match=r"data_dir \(--data-dir\)"):
        resolve({"data_dir": ""}, environ={})
    with pytest.raises(SettingsError, match=r"media_port \(--media-port\)"):
        resolve({"media_port": True}, environ={})


def test_unknown_toml_key(tmp_path: Path) -> None:
    for text, key in (
        ("workers = 2\nwrokers = 3\n", "wrokers"),
        ('api_host = "127.0.0.1"\n', "api_host"),
        ("token = 'secret-in-a-file'\n", "token"),  # the token is never a setting
        ("[serve]\nworkers = 2\n", "serve"),
    ):
        config = toml_file(tmp_path, text)
        with pytest.raises(SettingsError, match=f"unknown setting '{key}'") as caught:
            resolve({"config": str(config)}, environ={})
        assert str(config) in str(caught.value) and "known: data_dir" in str(caught.value)


def test_toml_syntax_error(tmp_path: Path) -> None:
    config = toml_file(tmp_path, "workers = = 3\n")
    with pytest.raises(SettingsError, match="not valid TOML") as caught:
        resolve({"config": str(config)}, environ={})
    assert str(config) in str(caught.value) and "line 1" in str(caught.value)


@pytest.mark.parametrize("content", [b"# caf\xe9\nworkers = 2\n", b"\xff\xfe\x00workers = 1"])
def test_a_config_file_that_is_not_utf8(tmp_path: Path, content: bytes) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes(content)
    with pytest.raises(SettingsError) as caught:
        resolve({"config": str(config)}, environ={})
    assert str(config) in str(caught.value)


def test_missing_or_unreadable_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SettingsError, match="No such file") as caught:
        resolve({"config": str(missing)}, environ={})
    assert str(missing) in str(caught.value)
    with pytest.raises(SettingsError, match="No such file"):
        resolve({}, environ={"RELAY_CONFIG": str(missing)})
    with pytest.raises(SettingsError, match=str(tmp_path)):
        resolve({"config": str(tmp_path)}, environ={})  # a directory


def test_settings_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        resolve({"workers": "0"}, environ={})


# --- TLS, plain HTTP off loopback, trusted proxies ---------------------------------------------


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.new()


@pytest.fixture(scope="module")
def tls_files(authority: Authority, tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    return server_files(tmp_path_factory.mktemp("tls"), authority)


def test_tls_files_from_every_source(tmp_path: Path, tls_files: ServerFiles) -> None:
    cert, key = str(tls_files.cert), str(tls_files.key)
    config = toml_file(tmp_path, f'tls_cert = "{cert}"\ntls-key = "{key}"\napi = "0.0.0.0:8443"\n')
    for settings in (
        resolve({"tls_cert": cert, "tls_key": key, "api": "0.0.0.0:8443"}, environ={}),
        resolve({"api": "[::]:8443"}, environ={"RELAY_TLS_CERT": cert, "RELAY_TLS_KEY": key}),
        resolve({"config": str(config)}, environ={}),
        resolve({"tls_key": key}, environ={"RELAY_TLS_CERT": cert}),  # two sources, one pair
    ):
        assert (settings.tls_cert, settings.tls_key) == (tls_files.cert, tls_files.key)
        assert settings.tls and not settings.plain_http


def test_tls_takes_both_files_or_neither(tls_files: ServerFiles) -> None:
    with pytest.raises(SettingsError) as caught:
        resolve({"tls_cert": str(tls_files.cert)}, environ={})
    assert "tls_cert (--tls-cert) needs tls_key" in str(caught.value)
    assert "--tls-key FILE" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        resolve({}, environ={"RELAY_TLS_KEY": str(tls_files.key)})
    assert "tls_key (RELAY_TLS_KEY) needs tls_cert" in str(caught.value)
    assert resolve({}, environ={}).tls is False


def _bad_tls_pairs(
    directory: Path, authority: Authority, good: ServerFiles
) -> list[tuple[str, Path, Path, str, str]]:
    """(case, cert, key, the setting named, words of the message)"""
    other = server_files(directory / "other", authority)
    garbage = directory / "garbage.pem"
    garbage.write_text("this is no certificate\n")
    secret_key = directory / "secret.pem"  # PEM armour around something that is no key
    secret_key.write_text(
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVUU0VDUkVUc2VjcmV0\n-----END PRIVATE KEY-----\n"
    )
    encrypted = directory / "encrypted.pem"
    private = load_pem_private_key(good.key.read_bytes(), password=None)
    encrypted.write_bytes(key_pem(private, passphrase=b"a passphrase"))
    weak_cert, weak_key = weak_rsa_pair(directory, authority)
    missing = directory / "missing.pem"
    return [
        ("missing cert", missing, good.key, "tls_cert", "No such file"),
        ("missing key", good.cert, missing, "tls_key", "No such file"),
        ("cert is a directory", directory, good.key, "tls_cert", "Is a directory"),
        ("cert is not PEM", garbage, good.key, "tls_cert", "holds no PEM certificate"),
        ("cert file holds a key", good.key, good.key, "tls_cert", "holds no PEM certificate"),
        ("key file holds a cert", good.cert, good.cert, "tls_key", "holds no PEM private key"),
        ("key is not a key", good.cert, secret_key, "tls_key", "holds no PEM private key"),
        ("key of another cert", good.cert, other.key, "tls_key", "is not the private key of"),
        ("encrypted key", good.cert, encrypted, "tls_key", "is encrypted"),
        ("key too weak", weak_cert, weak_key, "tls_cert", "OpenSSL refuses"),
    ]


def test_tls_files_that_cannot_serve_https_are_named_without_their_contents(
    tmp_path: Path, authority: Authority, tls_files: ServerFiles
) -> None:
    secrets = [*key_body(tls_files.key_text), "U0VDUkVU"]
    for case, cert, key, name, words in _bad_tls_pairs(tmp_path, authority, tls_files):
        for flags, environ, source in (
            ({"tls_cert": str(cert), "tls_key": str(key)}, {}, f"--{name.replace('_', '-')}"),
            ({}, {"RELAY_TLS_CERT": str(cert), "RELAY_TLS_KEY": str(key)}, f"RELAY_{name.upper()}"),
        ):
            with pytest.raises(SettingsError) as caught:
                resolve(flags, environ=environ)
            message = str(caught.value)
            assert message.startswith(f"{name} ({source}): "), (case, message)
            assert words in message, (case, message)
            path = key if name == "tls_key" else cert
            assert str(path) in message, (case, message)
            assert not any(s in message for s in secrets), (case, message)
            assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("api", ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:80", "[2001:db8::1]:1"])
def test_plain_http_off_loopback_is_refused_and_says_what_to_pass(
    tmp_path: Path, api: str, tls_files: ServerFiles
) -> None:
    config = toml_file(tmp_path, f'api = "{api}"\n')
    for flags, environ, source in (
        ({"api": api}, {}, "--api"),
        ({}, {"RELAY_API": api}, "RELAY_API"),
        ({"config": str(config)}, {}, f"config file {config}"),
    ):
        with pytest.raises(SettingsError) as caught:
            resolve(flags, environ=environ)
        message = str(caught.value)
        assert message.startswith(f"api ({source}) is {api.rpartition(':')[0].strip('[]')}")
        for words in ("not a loopback address", "--tls-cert FILE", "--tls-key FILE"):
            assert words in message
        assert "--plain-http if a proxy in front of it terminates TLS" in message
        # --plain-http (from any source) or TLS lets it start
        assert resolve({**flags, "plain_http": True}, environ=environ).plain_http is True
        assert resolve(flags, environ={**environ, "RELAY_PLAIN_HTTP": "true"}).plain_http is True
        pair = {"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key)}
        assert resolve({**flags, **pair}, environ=environ).tls is True
    file_says = toml_file(tmp_path, f'api = "{api}"\nplain_http = true\n', "plain.toml")
    assert resolve({"config": str(file_says)}, environ={}).plain_http is True


@pytest.mark.parametrize("api", ["127.0.0.1:8080", "127.0.0.2:8080", "[::1]:8080"])
def test_plain_http_on_loopback_needs_nothing(api: str) -> None:
    settings = resolve({"api": api}, environ={})
    assert not settings.tls and not settings.plain_http


def test_plain_http_and_tls_together_are_refused(tls_files: ServerFiles) -> None:
    pair = {"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key)}
    with pytest.raises(SettingsError) as caught:
        resolve(pair, environ={"RELAY_PLAIN_HTTP": "on"})
    message = str(caught.value)
    assert "plain_http (RELAY_PLAIN_HTTP) and tls_cert (--tls-cert) contradict" in message


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("true", True), ("Yes", True), ("ON", True), ("0", False), ("off", False)],
)
def test_plain_http_words(text: str, value: bool) -> None:
    environ = {"RELAY_PLAIN_HTTP": text}
    assert resolve({}, environ=environ).plain_http is value
    assert resolve({"plain_http": False}, environ={"RELAY_PLAIN_HTTP": "1"}).plain_http is False


@pytest.mark.parametrize(
    ("given", "networks"),
    [
        ("192.0.2.7", ("192.0.2.7/32",)),
        ("10.0.0.0/8,192.0.2.7", ("10.0.0.0/8", "192.0.2.7/32")),
        ("10.0.0.0/8,,192.0.2.7,", ("10.0.0.0/8", "192.0.2.7/32")),  # empty elements
        ("2001:DB8::/32, ::1", ("2001:db8::/32", "::1/128")),
        ("", ()),  # given empty: none
    ],
)
def test_trusted_proxies_are_networks(given: str, networks: tuple[str, ...]) -> None:
    assert resolve({"trusted_proxies": given}, environ={}).trusted_proxies == networks
    assert resolve({}, environ={}).trusted_proxies == ()  # the default: nobody


def test_serve_flags_reach_the_settings(tls_files: ServerFiles) -> None:
    from cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["serve", "--api", "0.0.0.0:8080", "--plain-http", "--trusted-proxies", "10.1.0.0/16"]
    )
    settings = resolve(vars(args), environ={})
    assert settings.plain_http is True and settings.trusted_proxies == ("10.1.0.0/16",)
    tls_args = ["--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)]
    args = parser.parse_args(["serve", "--api", "0.0.0.0:8443", *tls_args])
    assert args.plain_http is None  # not given: the environment or the file may still say
    settings = resolve(vars(args), environ={})
    assert (settings.tls_cert, settings.tls_key) == (tls_files.cert, tls_files.key)
    args = parser.parse_args(["serve", "--api", "0.0.0.0:8080"])
    with pytest.raises(SettingsError, match="not a loopback address"):
        resolve(vars(args), environ={})


def test_the_af_xdp_interface_reaches_every_worker() -> None:
    """`relay serve --xdp IFACE` (or xdp = "IFACE"): each worker on the queue of its index."""
    from cli.main import build_parser
    from relay.supervisor import Supervisor, SupervisorConfig

    args = build_parser().parse_args(["serve", "--xdp", "eth1", "--workers", "2"])
    settings = resolve(vars(args), environ={})
    assert settings.xdp == "eth1"
    assert resolve({}, environ={}).xdp == ""  # off unless asked
    assert settings.xdp_checksum == "auto"
    supervisor = Supervisor(SupervisorConfig(workers=2, xdp=settings.xdp))
    for index in range(2):
        command = supervisor.command(index)
        at = command.index("--xdp")
        assert command[at : at + 6] == [
            *("--xdp", "eth1", "--xdp-queue", str(index)),
            *("--xdp-checksum", "auto"),
        ]
    assert "--xdp" not in Supervisor(SupervisorConfig(workers=1)).command(0)


def test_who_computes_the_af_xdp_checksums_reaches_every_worker() -> None:
    """`relay serve --xdp-checksum WHO` (or xdp_checksum, RELAY_XDP_CHECKSUM): said to each
    worker; anything but auto, offload, relay or kernel names the setting."""
    from cli.main import build_parser
    from relay.supervisor import Supervisor, SupervisorConfig

    args = build_parser().parse_args(["serve", "--xdp", "eth1", "--xdp-checksum", "relay"])
    settings = resolve(vars(args), environ={})
    assert settings.xdp_checksum == "relay"
    assert resolve({}, environ={"RELAY_XDP_CHECKSUM": "kernel"}).xdp_checksum == "kernel"
    command = Supervisor(
        SupervisorConfig(workers=1, xdp="eth1", xdp_checksum=settings.xdp_checksum)
    ).command(0)
    at = command.index("--xdp-checksum")
    assert command[at : at + 2] == ["--xdp-checksum", "relay"]
    with pytest.raises(SettingsError, match=r"xdp_checksum \(RELAY_XDP_CHECKSUM\) must be one"):
        resolve({}, environ={"RELAY_XDP_CHECKSUM": "nic"})


def test_busy_poll_reaches_every_worker_and_bad_values_are_refused() -> None:
    """`relay serve --busy-poll US` (or busy_poll = US, RELAY_BUSY_POLL): each worker gets
    it; off unless asked; a value that is not whole microseconds in range names the setting."""
    from cli.main import build_parser
    from relay.supervisor import Supervisor, SupervisorConfig

    args = build_parser().parse_args(["serve", "--busy-poll", "1000", "--workers", "2"])
    settings = resolve(vars(args), environ={})
    assert settings.busy_poll == 1000
    assert resolve({}, environ={}).busy_poll == 0
    assert resolve({}, environ={"RELAY_BUSY_POLL": "250"}).busy_poll == 250
    supervisor = Supervisor(SupervisorConfig(workers=2, busy_poll=settings.busy_poll))
    for index in range(2):
        command = supervisor.command(index)
        at = command.index("--busy-poll")
        assert command[at : at + 2] == ["--busy-poll", "1000"]
    command = Supervisor(SupervisorConfig(workers=1)).command(0)
    assert command[command.index("--busy-poll") + 1] == "0"  # said, whatever the environment
    for bad in ("-1", "100001", "1.5", "soon"):
        with pytest.raises(SettingsError, match=r"busy_poll \(RELAY_BUSY_POLL\) must be"):
            resolve({}, environ={"RELAY_BUSY_POLL": bad})


# --- the mail server and the sign-up throttle ---------------------------------------------------

SMTP_URL = "smtps://relay%40example.org:Mail-Secret-Pw-91@mail.example.org:465"


def test_mail_and_sign_up_settings_from_every_source(tmp_path: Path) -> None:
    defaults = resolve({}, environ={})
    assert (defaults.smtp_url, defaults.smtp_from) == ("", "")
    assert (defaults.signup_client_per_minute, defaults.signup_meeting_per_minute) == (5, 120)
    given = {
        "smtp_url": SMTP_URL,
        "smtp_from": "relay@example.org",
        "signup_client_per_minute": "7",
        "signup_meeting_per_minute": "300",
    }
    expected = (SMTP_URL, "relay@example.org", 7, 300)

    def values(settings: Settings) -> tuple[Any, ...]:
        return (
            settings.smtp_url,
            settings.smtp_from,
            settings.signup_client_per_minute,
            settings.signup_meeting_per_minute,
        )

    assert values(resolve(given, environ={})) == expected
    environ = {f"RELAY_{name.upper()}": value for name, value in given.items()}
    assert values(resolve({}, environ=environ)) == expected
    config = toml_file(
        tmp_path,
        f'smtp-url = "{SMTP_URL}"\nsmtp_from = "relay@example.org"\n'
        "signup_client_per_minute = 7\nsignup_meeting_per_minute = 300\n",
    )
    settings = resolve({"config": str(config)}, environ={})
    assert values(settings) == expected
    # the password is in no repr and survives the trip to the control plane's process
    assert "Mail-Secret-Pw-91" not in repr(settings)
    assert Settings.from_json(json.loads(json.dumps(settings.to_json()))) == settings


@pytest.mark.parametrize(
    ("given", "word"),
    [
        ({"smtp_url": "https://mail.example.org"}, "smtp_url .* smtp://"),
        ({"smtp_url": "smtp://u:Mail-Secret-Pw-91@mail.example.org"}, "in clear"),
        ({"smtp_url": "smtps://u@mail.example.org"}, "password"),
        ({"smtp_url": SMTP_URL}, "smtp_from go together"),
        ({"smtp_from": "relay@example.org"}, "smtp_from go together"),
        ({"smtp_url": SMTP_URL, "smtp_from": "not an address"}, "smtp_from .* email address"),
        ({"signup_client_per_minute": "0"}, "signup_client_per_minute"),
        ({"signup_meeting_per_minute": "many"}, "signup_meeting_per_minute"),
        ({"signup_meeting_per_minute": "100001"}, "signup_meeting_per_minute"),
    ],
)
def test_bad_mail_and_sign_up_settings(given: dict[str, str], word: str) -> None:
    with pytest.raises(SettingsError, match=word) as caught:
        resolve(given, environ={})
    assert "Mail-Secret-Pw-91" not in str(caught.value)


def test_relay_serve_has_flags_for_the_mail_server_and_the_throttle() -> None:
    from cli.main import build_parser

    args = build_parser().parse_args(
        ["serve", "--smtp-url", SMTP_URL, "--smtp-from", "relay@example.org"]
        + ["--signup-client-per-minute", "9", "--signup-meeting-per-minute", "99"]
    )
    settings = resolve(vars(args), environ={})
    assert (settings.smtp_url, settings.smtp_from) == (SMTP_URL, "relay@example.org")
    assert (settings.signup_client_per_minute, settings.signup_meeting_per_minute) == (9, 99)


# --- Settings as JSON -------------------------------------------------------------------------


def test_settings_round_trip_through_json(tmp_path: Path, tls_files: ServerFiles) -> None:
    for settings in (
        Settings(),
        resolve(
            {
                "api": "0.0.0.0:8443",
                "tls_cert": str(tls_files.cert),
                "tls_key": str(tls_files.key),
                "trusted_proxies": "10.0.0.0/24,2001:db8::/64",
            },
            environ={},
        ),
        resolve(
            {
                "data_dir": str(tmp_path),
                "api": "[::1]:9000",
                "media_host": "0.0.0.0",
                "public_host": "203.0.113.7",
                "workers": "7",
                "db": "postgresql://u@h/d",
            },
            environ={},
        ),
    ):
        body = settings.to_json()
        text = json.dumps(body)  # plain JSON values only
        assert body["data_dir"] == str(settings.data_dir)
        again = Settings.from_json(json.loads(text))
        assert again == settings and isinstance(again.data_dir, Path)
        assert tls_files.key_text not in text  # the key's path travels, never its contents


# --- credentials ------------------------------------------------------------------------------


def test_ensure_data_dir_creates_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "relay"
    assert credentials.ensure_data_dir(path) == path
    assert path.is_dir() and mode(path) == 0o700
    assert credentials.ensure_data_dir(path) == path  # already there: fine
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SettingsError, match="data directory"):
        credentials.ensure_data_dir(a_file)
    with pytest.raises(SettingsError, match="data directory"):
        credentials.ensure_data_dir(a_file / "below")


def test_operator_token_is_generated_private_then_read_back(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    token, created = credentials.operator_token(data, environ={})
    assert created is True and len(token) >= credentials.TOKEN_MIN_CHARS
    path = data / credentials.TOKEN_FILE
    assert mode(path) == 0o600
    assert path.read_text().strip() == token
    again, created = credentials.operator_token(data, environ={})
    assert (again, created) == (token, False)
    other = credentials.ensure_data_dir(tmp_path / "other")
    assert credentials.operator_token(other, environ={})[0] != token


def test_relay_token_from_the_environment_wins_and_is_checked(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    given = "an-operator-token-from-the-environment"
    assert credentials.operator_token(data, environ={"RELAY_TOKEN": given}) == (given, False)
    assert not (data / credentials.TOKEN_FILE).exists()
    credentials.operator_token(data, environ={})
    assert credentials.operator_token(data, environ={"RELAY_TOKEN": given}) == (given, False)
    for bad in ("short", "", " " + "x" * 20, "x" * 20 + "\n", "x" * 10 + "\x00" + "x" * 10):
        with pytest.raises(SettingsError, match="RELAY_TOKEN") as caught:
            credentials.operator_token(data, environ={"RELAY_TOKEN": bad})
        if bad.strip():
            assert bad.strip() not in str(caught.value)  # a refused secret is not echoed


def test_a_token_file_others_may_read_is_refused(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    token, _ = credentials.operator_token(data, environ={})
    path = data / credentials.TOKEN_FILE
    for loose in (0o644, 0o640, 0o604, 0o660):
        path.chmod(loose)
        with pytest.raises(SettingsError, match="chmod 600") as caught:
            credentials.operator_token(data, environ={})
        assert f"{loose:04o}" in str(caught.value) and token not in str(caught.value)
    path.chmod(0o600)
    assert credentials.operator_token(data, environ={}) == (token, False)


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    path = data / credentials.TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(SettingsError, match="no usable token"):
        credentials.operator_token(data, environ={})


def test_box_key_is_32_bytes_private_and_stable(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    key = credentials.box_key(data, environ={})
    assert isinstance(key, bytes) and len(key) == credentials.BOX_KEY_BYTES == 32
    path = data / credentials.BOX_KEY_FILE
    assert mode(path) == 0o600 and path.read_bytes() == key
    assert credentials.box_key(data, environ={}) == key
    other = credentials.ensure_data_dir(tmp_path / "other")
    assert credentials.box_key(other, environ={}) != key

    path.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        credentials.box_key(data, environ={})
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(SettingsError, match="32-byte key"):
        credentials.box_key(data, environ={})


def test_relay_box_key_from_the_environment(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    key = bytes(range(32))
    encoded = base64.b64encode(key).decode()
    assert credentials.box_key(data, environ={"RELAY_BOX_KEY": encoded}) == key
    assert not (data / credentials.BOX_KEY_FILE).exists()
    for bad in (
        base64.b64encode(key[:31]).decode(),
        base64.b64encode(key + b"x").decode(),
        "",
        "not base64 at all!",
        encoded[:-1],
    ):
        with pytest.raises(SettingsError, match="RELAY_BOX_KEY must be 32 bytes"):
            credentials.box_key(data, environ={"RELAY_BOX_KEY": bad})
