"""The API safe on the open internet: HTTPS (`relay serve --tls-cert/--tls-key`) verified by the
client and the `relay` commands (RELAY_CA, --ca), plain HTTP refused off loopback unless
--plain-http, and `X-Forwarded-For` believed only from --trusted-proxies.

Real processes throughout the end-to-end tests: `relay serve` with one worker on loopback
ports from `free_ports`, the `relay` commands as subprocesses, real TLS (OpenSSL through
Python's ssl) with a throwaway CA made per module (tests/pki.py). The rules for reading
`X-Forwarded-For` are also checked on their own and against the app in-process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from control.api import create_app
from control.client import RelayClient, RelayClientError, UntrustedCertificate
from control.proxies import TrustedProxies
from control.settings import Settings
from node.serve import free_ports
from tests.pki import Authority, ServerFiles, key_body, server_files
from tests.test_api import Api, relay
from tests.test_api import cheap_argon2 as cheap_argon2  # the fixture, for the in-process tests

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

# Settings and client variables that must not leak in from the environment the tests run in.
OUTSIDE = (
    "RELAY_TOKEN",
    "RELAY_CONFIG",
    "RELAY_URL",
    "RELAY_CA",
    "RELAY_DATA_DIR",
    "RELAY_API",
    "RELAY_TLS_CERT",
    "RELAY_TLS_KEY",
    "RELAY_PLAIN_HTTP",
    "RELAY_TRUSTED_PROXIES",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "FORWARDED_ALLOW_IPS",
)
PROXY = "127.0.0.2"  # the https server's trusted proxy: a second loopback address
UNVERIFIED = "cannot verify the server's TLS certificate"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OUTSIDE:
        monkeypatch.delenv(name, raising=False)


# --- relay serve as a process -----------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    token: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def start_serve(data_dir: Path, scheme: str, *flags: str) -> Served:
    base = free_ports(2)  # one worker: UDP base and base + 1, then the API's TCP port
    api_port = base + 2
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--data-dir", str(data_dir)]
            + ["--api", f"127.0.0.1:{api_port}", "--media-port", str(base), "--workers", "1"]
            + list(flags),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment(),
        )
    deadline = time.monotonic() + 60
    while "relay serve: API on" not in log.read_text():
        if process.poll() is not None:
            raise AssertionError(f"relay serve exited {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"relay serve did not start:\n{log.read_text()}")
        time.sleep(0.05)
    token = (data_dir / "token").read_text().strip()
    return Served(process, f"{scheme}://127.0.0.1:{api_port}", token, log)


def stop_serve(served: Served) -> None:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
    try:
        assert served.process.wait(30) == 143  # 128 + SIGTERM: stopped by the signal, cleanly
    except subprocess.TimeoutExpired:
        served.process.kill()
        raise


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ServerFiles:
    """A private CA, and a certificate it signed for 127.0.0.1 and localhost with its key."""
    return server_files(tmp_path_factory.mktemp("pki"), Authority.new())


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that did not sign the server's certificate."""
    return server_files(tmp_path_factory.mktemp("other-pki"), Authority.new("other CA")).ca


@pytest.fixture(scope="module")
def https_serve(pki: ServerFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`relay serve` over HTTPS that believes X-Forwarded-For from 127.0.0.2 only."""
    served = start_serve(
        tmp_path_factory.mktemp("https") / "data",
        "https",
        *("--tls-cert", str(pki.cert), "--tls-key", str(pki.key), "--trusted-proxies", PROXY),
    )
    try:
        yield served
    finally:
        stop_serve(served)


@pytest.fixture(scope="module")
def plain_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`relay serve` as before: plain HTTP on loopback, no new flag."""
    served = start_serve(tmp_path_factory.mktemp("plain") / "data", "http")
    try:
        yield served
    finally:
        stop_serve(served)


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def relay_command(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(**env),
    )


# --- HTTPS, and clients that verify it ----------------------------------------------------------


def test_relay_serve_speaks_https_only_with_strong_ciphers(
    https_serve: Served, pki: ServerFiles
) -> None:
    port = https_serve.url.rpartition(":")[2]
    output = https_serve.output()
    assert f"relay serve: API on https://127.0.0.1:{port} (OpenAPI at https://" in output
    assert f"TLS: certificate {pki.cert}" in output
    r = httpx.get(f"{https_serve.url}/healthz", verify=trusting(pki.ca))
    assert r.status_code == 200 and r.json()["status"] == "ok"
    with pytest.raises(httpx.HTTPError):  # the port speaks no plain HTTP
        httpx.get(f"http://127.0.0.1:{port}/healthz")

    # TLS 1.2 with only CBC suites and SHA-1 MACs on offer (which uvicorn's own default cipher
    # string would take): refused, RFC 9325 §4.2.
    weak = trusting(pki.ca)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
            weak.wrap_socket(sock, server_hostname="127.0.0.1").close()
    strong = trusting(pki.ca)
    strong.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
        with strong.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            name, version, _bits = tls.cipher() or ("", "", 0)
            assert version == "TLSv1.2" and name.startswith("ECDHE-") and "GCM" in name


def test_relay_client_over_https_with_its_ca(
    https_serve: Served, pki: ServerFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RelayClient(https_serve.url, https_serve.token, ca=pki.ca) as client:
        created = client.create_meeting("Over TLS", password="pw")
        answer = client.join(created["id"], name="Ann", password="pw")
        assert answer["srtp"]["uplink"] and answer["srtp"]["downlink"]  # keys, encrypted
        assert created["id"] in [m["id"] for m in client.list_meetings()]
        assert client.health()["status"] == "ok"
    monkeypatch.setenv("RELAY_CA", str(pki.ca))  # the environment instead of ca=
    with RelayClient(https_serve.url, https_serve.token) as client:
        people = client.list_participants(created["id"])
        assert [p["name"] for p in people] == ["Ann"]


def test_relay_client_refuses_a_certificate_it_cannot_verify(
    https_serve: Served, other_ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for ca in (None, other_ca):  # the default trust store; a CA that did not sign it
        with RelayClient(https_serve.url, https_serve.token, ca=ca) as client:
            with pytest.raises(UntrustedCertificate) as caught:
                client.list_meetings()
        message = str(caught.value)
        assert message.startswith(f"{UNVERIFIED} at {https_serve.url} (")
        assert message.endswith("; set RELAY_CA to your CA bundle")
        assert https_serve.token not in message
    monkeypatch.setenv("RELAY_CA", str(other_ca))
    with RelayClient(https_serve.url, https_serve.token) as client:
        with pytest.raises(UntrustedCertificate):
            client.health()
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("no certificate here\n")
    with pytest.raises(RelayClientError, match="holds no PEM certificate"):
        RelayClient(https_serve.url, ca=not_pem)
    with pytest.raises(RelayClientError, match="cannot read the CA bundle .*No such file"):
        RelayClient(https_serve.url, ca=tmp_path / "missing.pem")


def test_relay_commands_over_https(https_serve: Served, pki: ServerFiles) -> None:
    with RelayClient(https_serve.url, https_serve.token, ca=pki.ca) as client:
        created = client.create_meeting("Commands over TLS", password="pw")
        client.join(created["id"], name="Bea", password="pw")
    env = {"RELAY_URL": https_serve.url, "RELAY_TOKEN": https_serve.token}

    done = relay_command("meetings", "list", RELAY_CA=str(pki.ca), **env)
    assert done.returncode == 0, done.stderr
    assert any(line.startswith(created["id"]) for line in done.stdout.splitlines())
    done = relay_command("participants", "list", created["id"], "--ca", str(pki.ca), **env)
    assert done.returncode == 0, done.stderr
    assert "Bea" in done.stdout and "present" in done.stdout
    done = relay_command("usage", "--json", RELAY_CA=str(pki.ca), **env)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)
    join = ("join", created["id"], "--name", "Cy", "--password", "pw", "--json")
    done = relay_command(*join, "--url", https_serve.url, RELAY_CA=str(pki.ca))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["srtp"]["suite"] == created["suite"]


def test_relay_commands_without_the_ca_fail_in_one_clear_line(
    https_serve: Served, other_ca: Path
) -> None:
    env = {"RELAY_URL": https_serve.url, "RELAY_TOKEN": https_serve.token}
    for argv, extra in (
        (("meetings", "list"), {}),
        (("usage",), {"RELAY_CA": str(other_ca)}),
        (("participants", "list", "some-id", "--ca", str(other_ca)), {}),
        (("join", "some-id", "--name", "Dee", "--password", "pw"), {}),
    ):
        done = relay_command(*argv, **env, **extra)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
        assert done.stderr.startswith(f"relay: {UNVERIFIED} at {https_serve.url} ("), argv
        assert "set RELAY_CA to your CA bundle" in done.stderr
        assert https_serve.token not in done.stderr


def test_plain_http_on_loopback_works_as_before(plain_serve: Served) -> None:
    assert f"relay serve: API on {plain_serve.url} " in plain_serve.output()
    with RelayClient(plain_serve.url, plain_serve.token) as client:
        assert client.health()["status"] == "ok"
    done = relay_command(
        "meetings", "list", RELAY_URL=plain_serve.url, RELAY_TOKEN=plain_serve.token
    )
    assert done.returncode == 0, done.stderr


def test_a_plain_http_client_of_an_https_server_is_told_so(https_serve: Served) -> None:
    plain = https_serve.url.replace("https://", "http://")
    with RelayClient(plain, https_serve.token) as client:
        with pytest.raises(RelayClientError, match="use an https:// URL"):
            client.health()


# --- what relay serve refuses to start with -----------------------------------------------------


@pytest.mark.parametrize("api", ["0.0.0.0", "[::]"])
def test_relay_serve_refuses_plain_http_off_loopback(tmp_path: Path, api: str) -> None:
    data_dir = tmp_path / "data"
    port = free_ports(1) + 1
    done = relay_command("serve", "--data-dir", str(data_dir), "--api", f"{api}:{port}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"relay serve: api (--api) is {api.strip('[]')}, not a loopback")
    assert "give --tls-cert FILE and --tls-key FILE" in done.stderr
    assert "--plain-http if a proxy in front of it terminates TLS" in done.stderr
    assert "Traceback" not in done.stderr
    assert not data_dir.exists()  # refused before anything was made, let alone bound

    # The same from the environment: the message names where it came from.
    done = relay_command("serve", "--data-dir", str(data_dir), RELAY_API=f"{api}:{port}")
    assert done.returncode == 2 and "api (RELAY_API) is" in done.stderr


def test_the_control_plane_process_refuses_plain_http_off_loopback_too(tmp_path: Path) -> None:
    # Settings that did not come through `relay serve`'s checks (the library: Server(settings)).
    settings = Settings(data_dir=tmp_path / "data", api_host="0.0.0.0", api_port=free_ports(1) + 1)
    run = tmp_path / "run"
    endpoints = {k: f"ipc://{run}/{k}.sock" for k in ("routing", "snapshot", "stats")}
    done = subprocess.run(
        [sys.executable, "-m", "control.server"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(
            RELAY_SERVE_SETTINGS=json.dumps(settings.to_json()),
            RELAY_SERVE_ENDPOINTS=json.dumps(endpoints),
        ),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "relay serve: api (as given) is 0.0.0.0, not a loopback address" in done.stderr
    assert "Traceback" not in done.stderr and not settings.data_dir.exists()


def test_relay_serve_refuses_tls_files_that_cannot_serve(
    tmp_path: Path, pki: ServerFiles, other_ca: Path
) -> None:
    other = server_files(tmp_path / "other", Authority.new())
    data_dir = tmp_path / "data"
    cases = [
        (("--tls-cert", str(pki.cert), "--tls-key", str(other.key)), "tls_key (--tls-key): "),
        (("--tls-cert", str(pki.cert)), "tls_cert (--tls-cert) needs tls_key"),
        (("--tls-cert", str(pki.key), "--tls-key", str(pki.key)), "tls_cert (--tls-cert): "),
    ]
    for flags, words in cases:
        done = relay_command("serve", "--data-dir", str(data_dir), *flags)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith(f"relay serve: {words}"), done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        secrets = key_body(pki.key_text) + key_body(other.key_text)
        assert not any(line in done.stderr + done.stdout for line in secrets)
        assert not data_dir.exists()


# --- X-Forwarded-For ----------------------------------------------------------------------------


def wrong_password_joins(
    client: httpx.Client, meeting_id: str, forwarded_for: list[str | None]
) -> list[int]:
    statuses = []
    for value in forwarded_for:
        headers = {} if value is None else {"X-Forwarded-For": value}
        r = client.post(
            f"/v1/meetings/{meeting_id}/join",
            json={"name": "Guess", "password": "wrong"},
            headers=headers,
        )
        statuses.append(r.status_code)
    return statuses


def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_throttle(
    plain_serve: Served,
) -> None:
    # The default: no trusted proxy. A guesser on loopback (where uvicorn on its own believed
    # the header) gives a new address with every guess; the throttle still sees one client.
    with RelayClient(plain_serve.url, plain_serve.token) as relay_api:
        meeting = relay_api.create_meeting("Guess me", password="right")
    with httpx.Client(base_url=plain_serve.url, timeout=10) as client:
        spoofed: list[str | None] = [f"198.51.100.{i}" for i in range(1, 30)]
        statuses = wrong_password_joins(client, meeting["id"], spoofed)
    assert len(statuses) == 29
    assert statuses[:5] == [403] * 5  # control/auth.py: 5 failures, then a lockout
    assert statuses[5] == 429, statuses
    assert statuses[-1] == 429 and statuses.count(403) < 10, statuses


def test_x_forwarded_for_from_a_trusted_proxy_names_the_throttled_client(
    https_serve: Served, pki: ServerFiles
) -> None:
    # Two meetings, each kept under the failures that make a meeting ask for a proof of work
    # (control/auth.py, POW_THRESHOLD): the per-client throttle is what is looked at here.
    with RelayClient(https_serve.url, https_serve.token, ca=pki.ca) as relay_api:
        meeting = relay_api.create_meeting("Behind a proxy", password="right")["id"]
        other = relay_api.create_meeting("Spoofed", password="right")["id"]
    via_proxy = httpx.HTTPTransport(verify=trusting(pki.ca), local_address=PROXY)
    with httpx.Client(base_url=https_serve.url, transport=via_proxy, timeout=10) as proxy:
        ann, bob = "198.51.100.1", "198.51.100.2"
        assert wrong_password_joins(proxy, meeting, [ann] * 5) == [403] * 5
        # Ann is locked out (for 1 s: these come first), also behind a second trusted proxy
        # (the rightmost entry); Bob is not, even with an address of his choosing on the left
        # of his own: the client is the rightmost address that is no trusted proxy.
        assert wrong_password_joins(proxy, meeting, [ann, f"{ann}, {PROXY}"]) == [429, 429]
        assert wrong_password_joins(proxy, meeting, [bob, f"{ann}, {bob}"]) == [403, 403]
        # No header, or one that cannot be read: the proxy itself is the client.
        assert wrong_password_joins(proxy, meeting, [None, "not-an-address"]) == [403, 403]
    # The same header from a peer that is no trusted proxy is ignored: one client, throttled.
    with httpx.Client(base_url=https_serve.url, verify=trusting(pki.ca), timeout=10) as direct:
        spoofed: list[str | None] = [f"203.0.113.{i}" for i in range(1, 7)]
        assert wrong_password_joins(direct, other, spoofed) == [403] * 5 + [429]


CHAINS: list[tuple[str, list[str], str]] = [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # the peer is no trusted proxy
    ("10.0.0.5", [], "10.0.0.5"),  # a trusted proxy that names nobody
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["192.0.2.66, 198.51.100.1"], "198.51.100.1"),  # the left is the client's
    ("10.0.0.5", ["198.51.100.1, 10.0.0.7"], "198.51.100.1"),  # past another trusted proxy
    ("10.0.0.5", ["10.0.0.8, 10.0.0.7"], "10.0.0.8"),  # all trusted: the leftmost
    ("10.0.0.5", ["198.51.100.1", "10.0.0.7"], "198.51.100.1"),  # two lines, one list
    ("10.0.0.5", ["198.51.100.1,, ", ""], "198.51.100.1"),  # empty elements
    ("10.0.0.5", ["198.51.100.1, not-an-ip"], "10.0.0.5"),  # unreadable: the peer
    ("10.0.0.5", ["198.51.100.1, unknown, 10.0.0.7"], "10.0.0.5"),
    ("10.0.0.5", ["garbage, 198.51.100.1"], "198.51.100.1"),  # never read that far
    ("10.0.0.5", ["198.51.100.1:4711"], "198.51.100.1"),
    ("10.0.0.5", ["198.51.100.1:http"], "10.0.0.5"),
    ("10.0.0.5", ["[2001:db8::9]:443"], "2001:db8::9"),
    ("10.0.0.5", ["[2001:db8::9]"], "2001:db8::9"),
    ("10.0.0.5", ["2001:db8::9"], "2001:db8::9"),
    ("10.0.0.5", ["[2001:db8::9"], "10.0.0.5"),
    ("10.0.0.5", ["[2001:db8::9]443"], "10.0.0.5"),
    ("10.0.0.5", ["::ffff:198.51.100.1"], "198.51.100.1"),
    ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),  # a dual-stack socket's peer
    ("2001:db8:1::2", ["198.51.100.1"], "198.51.100.1"),  # an IPv6 proxy
    ("2001:db8:2::2", ["198.51.100.1"], "2001:db8:2::2"),
    ("10.0.0.5", ["198.51.100.1" + ", 10.0.0.7" * 1000], "198.51.100.1"),
    ("10.0.0.5", ["x" * 10_000], "10.0.0.5"),
    ("unix-socket", ["198.51.100.1"], "unix-socket"),
]


@pytest.mark.parametrize(("peer", "lines", "client"), CHAINS)
def test_the_client_address_rules(peer: str, lines: list[str], client: str) -> None:
    proxies = TrustedProxies(["10.0.0.0/24", "2001:db8:1::/48"])
    assert proxies.client(peer, lines) == client


def test_by_default_no_proxy_is_trusted() -> None:
    assert TrustedProxies().client("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"


def test_the_throttle_and_the_access_log_use_the_same_client_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="control.api")

    async def joins(api: Api, meeting_id: str, peer: str, forwarded_for: list[str]) -> list[int]:
        app = create_app(api.plane, trusted_proxies=["10.0.0.0/24"])
        transport = httpx.ASGITransport(app=app, client=(peer, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            statuses = []
            for value in forwarded_for:
                r = await client.post(
                    f"/v1/meetings/{meeting_id}/join",
                    json={"name": "Guess", "password": "wrong"},
                    headers={"X-Forwarded-For": value},
                )
                statuses.append(r.status_code)
            return statuses

    async def body() -> None:
        async with relay(tmp_path) as api:
            meeting = (await api.create(title="m", password="right"))["id"]
            assert await joins(api, meeting, "10.0.0.5", ["198.51.100.1"] * 6) == [403] * 5 + [429]
            assert await joins(api, meeting, "10.0.0.5", ["198.51.100.2"]) == [403]
            # Another meeting: one under more failures would ask for a proof of work.
            other = (await api.create(title="n", password="right"))["id"]
            spoofed = [f"192.0.2.{i}" for i in range(6)]
            assert await joins(api, other, "203.0.113.9", spoofed) == [403] * 5 + [429]

    asyncio.run(body())
    join_line = re.compile(r"POST /v1/meetings/\{meeting_id\}/join \d+ .* client (\w+)")
    who = [m[1] for r in caplog.records if (m := join_line.fullmatch(r.getMessage()))]
    assert len(who) == 13
    ann, bob, spoofer = who[0], who[6], who[7]
    assert who[:6] == [ann] * 6 and who[7:] == [spoofer] * 6
    assert len({ann, bob, spoofer}) == 3


# --- secrets ----------------------------------------------------------------------------------


def test_no_log_line_holds_the_tls_key(https_serve: Served, pki: ServerFiles) -> None:
    with RelayClient(https_serve.url, https_serve.token, ca=pki.ca) as client:
        client.health()
    with RelayClient(https_serve.url, https_serve.token) as client:
        with pytest.raises(UntrustedCertificate):
            client.health()
    output = https_serve.output()
    assert output and not any(line in output for line in key_body(pki.key_text))
    assert "PRIVATE KEY" not in output
