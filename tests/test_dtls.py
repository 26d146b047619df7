"""DTLS-SRTP (relay/dtls.py, relay/certificate.py): the handshake, its keys and its refusals.

Two endpoints wired together in memory, then the `openssl` command (s_client and s_server,
an implementation nobody here wrote) over real UDP on loopback, whose exported keying
material must equal ours (RFC 5764 section 4.2's split checked against OpenSSL's own export),
then libsrtp (pylibsrtp) keyed from that export against relay's SRTP with ours. Then what
must be refused, what must time out, and arbitrary bytes.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from bench.libsrtp import profile as libsrtp_profile
from bench.libsrtp import session as libsrtp_session
from relay.certificate import Certificate, Fingerprint
from relay.dtls import (
    HANDSHAKE_TIMEOUT_S,
    MTU,
    PROFILES,
    DtlsEndpoint,
    DtlsRole,
    DtlsState,
    Reason,
)
from relay.errors import DtlsError
from relay.srtp import Session
from relay.vocabulary import Suite
from tests.conftest import rtcp_sr, rtp

SERVER_CERT = Certificate.generate()
CLIENT_CERT = Certificate.generate()
OPENSSL = shutil.which("openssl")
TWO = [Suite.AES_CM_128_HMAC_SHA1_80, Suite.AEAD_AES_128_GCM]  # what browsers offer


def endpoints(
    suite: Suite = Suite.AES_CM_128_HMAC_SHA1_80,
    *,
    client_suites: list[Suite] | None = None,
    server_expects: str | None = None,
    client_expects: str | None = None,
    **options: object,
) -> tuple[DtlsEndpoint, DtlsEndpoint]:
    server = DtlsEndpoint(
        SERVER_CERT, "server", [suite], server_expects or CLIENT_CERT.fingerprint, **options
    )
    client = DtlsEndpoint(
        CLIENT_CERT, "client", client_suites or [suite], client_expects or SERVER_CERT.fingerprint
    )
    return server, client


class Wire:
    """Two endpoints in memory: every datagram either sends is delivered to the other,
    unless `lose` says otherwise; all of them are kept for inspection."""

    def __init__(self, server: DtlsEndpoint, client: DtlsEndpoint) -> None:
        self.server, self.client = server, client
        self.sent: list[tuple[str, bytes]] = []

    def run(
        self, now: float = 0.0, lose: Callable[[str, bytes], bool] = lambda who, d: False
    ) -> None:
        queue = [("client", d) for d in self.client.start(now)]
        while queue:
            who, datagram = queue.pop(0)
            self.sent.append((who, datagram))
            if lose(who, datagram):
                continue
            if who == "client":
                queue += [("server", d) for d in self.server.receive(datagram, now)]
            else:
                queue += [("client", d) for d in self.client.receive(datagram, now)]


def handshake(server: DtlsEndpoint, client: DtlsEndpoint) -> Wire:
    wire = Wire(server, client)
    wire.run()
    return wire


# -- in memory ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(PROFILES))
def test_two_endpoints_agree_on_keys_and_srtp_flows(suite: Suite) -> None:
    server, client = endpoints(suite)
    wire = handshake(server, client)
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED
    assert server.keys is not None and client.keys is not None
    assert server.keys.suite is suite and client.keys.suite is suite
    assert server.keys.local == client.keys.remote and server.keys.remote == client.keys.local
    assert server.keys.local != server.keys.remote
    assert len(server.keys.local) == suite.key_len + suite.salt_len
    assert not server.drops and not client.drops
    assert server.next_timeout() is None and client.next_timeout() is None
    assert max(len(d) for _, d in wire.sent) <= MTU
    # The keys work as relay's SRTP keys, both ways, RTP and RTCP.
    for tx_keys, rx_keys in ((server.keys, client.keys), (client.keys, server.keys)):
        tx, rx = Session(suite, tx_keys.local), Session(suite, rx_keys.remote)
        for seq in range(5):
            assert rx.unprotect(tx.protect(rtp(seq))) == rtp(seq)
        assert rx.unprotect_rtcp(tx.protect_rtcp(rtcp_sr())) == rtcp_sr()


def test_handshake_datagrams_fit_the_mtu_and_a_small_one_fragments() -> None:
    server, client = endpoints()
    wire = handshake(server, client)
    sizes = [len(d) for _, d in wire.sent]
    # The server's first flight (ServerHello .. ServerHelloDone, P-256 certificate) is the
    # largest; it is packed into one datagram.
    assert max(sizes) <= MTU
    print(f"largest handshake datagram at MTU {MTU}: {max(sizes)} bytes; all: {sizes}")
    server, client = endpoints(mtu=300)
    wire = handshake(server, client)
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED
    from_server = [d for who, d in wire.sent if who == "server"]
    assert max(len(d) for d in from_server) <= 300 and len(from_server) > 3


@pytest.mark.parametrize("algorithm", ["sha-1", "sha-256", "sha-384", "sha-512"])
def test_fingerprint_hash_functions(algorithm: str) -> None:
    server, client = endpoints(
        server_expects=str(CLIENT_CERT.fingerprint_with(algorithm)),
        client_expects=str(SERVER_CERT.fingerprint_with(algorithm)),
    )
    handshake(server, client)
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED


def test_cookie_exchange_when_asked() -> None:
    server, client = endpoints(cookie_exchange=True)
    wire = handshake(server, client)
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED
    # The server's first answer is a HelloVerifyRequest (handshake type 3, RFC 6347 4.2.1).
    first = next(d for who, d in wire.sent if who == "server")
    assert first[0] == 22 and first[13] == 3
    assert server.keys is not None and client.keys is not None
    assert server.keys.local == client.keys.remote


def test_close_notify_closes_and_keys_stay() -> None:
    server, client = endpoints()
    handshake(server, client)
    keys = server.keys
    (alert,) = client.close()
    assert client.state is DtlsState.CLOSED
    answer = server.receive(alert, 1.0)
    assert server.state is DtlsState.CLOSED and server.keys == keys
    assert client.receive(answer[0], 1.0) == [] and client.drops == {"after_close": 1}
    assert server.receive(alert, 2.0) == [] and server.drops == {"after_close": 1}


def test_application_data_is_dropped_counted() -> None:
    server, client = endpoints()
    handshake(server, client)
    client._conn.send(b"not media")  # WebRTC media sends none; a data channel would
    (record,) = client._flush()
    assert server.receive(record, 1.0) == []
    assert server.drops == {"application_data": 1} and server.state is DtlsState.CONNECTED


def test_lost_final_flight_is_answered_again() -> None:
    """The server's Finished flight is lost: the client retransmits its own last flight and
    the connected server answers it (RFC 6347 section 4.2.4)."""
    server, client = endpoints()
    wire = Wire(server, client)
    t0 = time.monotonic()
    wire.run(t0, lose=lambda who, d: who == "server" and d[0] == 20)  # CCS + Finished
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.HANDSHAKING
    deadline = client.next_timeout()
    assert deadline is not None and deadline <= t0 + 1.01
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.02)  # OpenSSL's own clock
    again = client.handle_timeout(time.monotonic())
    assert again, "the client retransmits its Finished flight"
    for datagram in again:
        for answer in server.receive(datagram, time.monotonic()):
            client.receive(answer, time.monotonic())
    assert client.state is DtlsState.CONNECTED
    assert client.keys is not None and server.keys is not None
    assert client.keys.local == server.keys.remote and client.keys.remote == server.keys.local


# -- refused -----------------------------------------------------------------------------


def test_wrong_fingerprint_refused_by_the_server() -> None:
    server, client = endpoints(server_expects=str(Fingerprint("sha-256", bytes(32))))
    handshake(server, client)
    assert server.state is DtlsState.FAILED and server.failure is Reason.FINGERPRINT
    assert server.keys is None and server.drops == {"fingerprint": 1}
    # The server's alert reached the client before its Finished: the client has no keys.
    assert client.state is DtlsState.FAILED and client.keys is None


def test_wrong_fingerprint_refused_by_the_client() -> None:
    other = Certificate.generate()
    server, client = endpoints(client_expects=other.fingerprint)
    handshake(server, client)
    assert client.state is DtlsState.FAILED and client.failure is Reason.FINGERPRINT
    assert client.keys is None and server.keys is None
    assert server.state is DtlsState.FAILED and server.failure is Reason.ALERT


def test_no_common_profile() -> None:
    """The client offers only AES-GCM, the meeting's suite is AES-CM: the server answers
    without use_srtp (RFC 5764 section 4.1.2), the handshake completes, neither has keys."""
    server, client = endpoints(
        Suite.AES_CM_128_HMAC_SHA1_80, client_suites=[Suite.AEAD_AES_128_GCM]
    )
    handshake(server, client)
    assert server.state is DtlsState.FAILED and server.failure is Reason.PROFILE
    assert client.state is DtlsState.FAILED and client.failure is Reason.PROFILE
    assert server.keys is None and client.keys is None


def raw_client(
    *, certificate: Certificate | None, profiles: bytes = b"SRTP_AES128_CM_SHA1_80"
) -> SSL.Connection:
    """A plain pyOpenSSL DTLS client over memory BIOs, for what DtlsEndpoint never does."""
    ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
    if certificate is not None:
        ctx.use_certificate(certificate.x509)
        ctx.use_privatekey(certificate.private_key)
    ctx.set_tlsext_use_srtp(profiles)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


def drive_raw(conn: SSL.Connection, server: DtlsEndpoint) -> None:
    for _ in range(6):
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            pass
        except SSL.Error:
            return
        data = b""
        while True:
            try:
                data += conn.bio_read(65536)
            except SSL.WantReadError:
                break
        if not data:
            return
        for answer in server.receive(data, 0.0):
            conn.bio_write(answer)


def test_client_without_certificate_refused() -> None:
    server = DtlsEndpoint(SERVER_CERT, "server", TWO[:1], CLIENT_CERT.fingerprint)
    drive_raw(raw_client(certificate=None), server)
    assert server.state is DtlsState.FAILED and server.failure is Reason.NO_CERTIFICATE
    assert server.keys is None


def test_client_without_use_srtp_refused() -> None:
    server = DtlsEndpoint(SERVER_CERT, "server", TWO[:1], CLIENT_CERT.fingerprint)
    client = raw_client(certificate=CLIENT_CERT, profiles=b"SRTP_AEAD_AES_256_GCM")
    drive_raw(client, server)
    assert server.state is DtlsState.FAILED and server.failure is Reason.PROFILE


def client_hello() -> bytes:
    (hello,) = endpoints()[1].start(0.0)
    return hello


GARBAGE = {
    "not_dtls": [b"", b"\x00", b"\x80\x60" + bytes(30), b"\x01\x01" + bytes(20), b"\xff" * 50],
    "malformed": [
        b"\x16",
        b"\x16\xfe\xfd" + bytes(9),  # a header cut short
        b"\x18\xfe\xfd" + bytes(10),  # heartbeat: not negotiated
        b"\x2f\xfe\xfd" + bytes(30),  # DTLS 1.3 unified header (RFC 9147 section 4)
        b"\x16\x03\x03" + bytes(10) + b"\x00\x00",  # a TLS version, not DTLS
        b"\x16\xfe\xfd" + bytes(8) + b"\x00\x10" + bytes(4),  # longer than the datagram
    ],
    "oversized": [b"\x16\xfe\xfd" + bytes(8) + b"\x00\x00" + bytes(20000)],
}


@pytest.mark.parametrize("reason", list(GARBAGE))
def test_garbage_dropped_by_name(reason: str) -> None:
    server, client = endpoints()
    for datagram in GARBAGE[reason]:
        assert server.receive(datagram, 0.0) == []
    assert server.drops == {reason: len(GARBAGE[reason])}
    assert server.state is DtlsState.HANDSHAKING and server.next_timeout() is None
    handshake(server, client)  # none of it got in the way
    assert server.state is DtlsState.CONNECTED


def test_truncated_datagram_then_whole() -> None:
    server, _ = endpoints()
    hello = client_hello()
    for cut in (5, 13, 20, len(hello) - 1):
        assert server.receive(hello[:cut], 0.0) == []
    assert server.drops == {"malformed": 4}
    assert server.receive(hello, 0.0), "the whole ClientHello is answered"


def test_handshake_record_with_garbage_inside_fails_the_handshake() -> None:
    server, _ = endpoints()
    body = b"\x01" + bytes(11) + b"\xee" * 40  # a "ClientHello" of nonsense
    record = b"\x16\xfe\xfd" + bytes(8) + len(body).to_bytes(2, "big") + body
    server.receive(record, 0.0)
    assert server.state is DtlsState.FAILED and server.failure is Reason.HANDSHAKE
    assert server.drops == {"handshake": 1}


def test_truncated_flight_waits_for_the_rest() -> None:
    """The server's first flight in several datagrams (a small MTU); the client gets only
    the first ones: no answer, still handshaking; then the rest: it goes on."""
    server, client = endpoints(mtu=300)
    (hello,) = client.start(0.0)
    flight = server.receive(hello, 0.0)
    assert len(flight) >= 3
    for datagram in flight[:-1]:
        assert client.receive(datagram, 0.0) == []
    assert client.state is DtlsState.HANDSHAKING and not client.drops
    answer = client.receive(flight[-1], 0.0)
    assert answer
    for datagram in answer:
        for back in server.receive(datagram, 0.0):
            client.receive(back, 0.0)
    assert client.state is DtlsState.CONNECTED and server.state is DtlsState.CONNECTED


def test_retransmission_on_openssls_clock() -> None:
    """The ClientHello is lost; after OpenSSL's initial 1 s (RFC 6347 section 4.2.4.1) the
    client sends it again. This one waits a real second: OpenSSL reads its own clock."""
    _, client = endpoints()
    t0 = time.monotonic()
    (hello,) = client.start(t0)
    deadline = client.next_timeout()
    assert deadline is not None and t0 + 0.9 < deadline <= t0 + 1.01
    assert client.handle_timeout(t0 + 0.5) == []  # too early
    time.sleep(max(0.0, deadline - time.monotonic()) + 0.02)
    (again,) = client.handle_timeout(time.monotonic())
    assert again[:3] == hello[:3] and again[13:] == hello[13:]  # same message, next sequence
    assert again[3:11] != hello[3:11]
    later = client.next_timeout()
    assert later is not None and later - time.monotonic() > 1.2  # doubled (RFC 6347 4.2.4.1)


@pytest.mark.parametrize("role", ["client", "server"])
def test_handshake_that_never_completes_gives_up(role: str) -> None:
    """Nothing more ever arrives; driven by `now` alone (simulated: OpenSSL's clock does not
    move, so no retransmissions), the endpoint gives up at HANDSHAKE_TIMEOUT_S."""
    server, client = endpoints()
    hello = client.start(100.0)
    endpoint = client if role == "client" else server
    if role == "server":
        assert server.receive(hello[0], 100.0)
    calls = 0
    while endpoint.state is DtlsState.HANDSHAKING:
        when = endpoint.next_timeout()
        assert when is not None and when <= 100.0 + HANDSHAKE_TIMEOUT_S
        endpoint.handle_timeout(when)
        calls += 1
        assert calls < 100
    assert endpoint.failure is Reason.TIMEOUT and endpoint.keys is None
    assert endpoint.next_timeout() is None
    assert endpoint.receive(hello[0], 200.0) == [] and endpoint.drops["after_close"] == 1


def test_late_datagram_after_the_bound_fails() -> None:
    server, client = endpoints()
    (hello,) = client.start(0.0)
    flight = server.receive(hello, 0.0)
    assert client.receive(flight[0], HANDSHAKE_TIMEOUT_S + 1) == []
    assert client.failure is Reason.TIMEOUT and client.drops == {"timeout": 1}


def test_forged_alert_after_connect_is_ignored() -> None:
    """A plaintext (epoch 0) fatal alert after the handshake is not the peer's: OpenSSL
    discards it (RFC 6347 section 4.1.2.7) and the association stays up."""
    server, client = endpoints()
    handshake(server, client)
    forged = b"\x15\xfe\xfd\x00\x00" + bytes(5) + b"\x09\x00\x02\x02\x28"
    assert server.receive(forged, 1.0) == [] and server.state is DtlsState.CONNECTED


# -- arbitrary bytes ---------------------------------------------------------------------

_CONNECTED = endpoints()
handshake(*_CONNECTED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            # past the framing check: one record of any content
            st.tuples(st.sampled_from([20, 21, 22, 23]), st.binary(max_size=200)).map(
                lambda t: bytes([t[0], 0xFE, 0xFD]) + bytes(8) + len(t[1]).to_bytes(2, "big") + t[1]
            ),
        ),
        max_size=4,
    )
)
def test_receive_never_raises(datagrams: list[bytes]) -> None:
    fresh, started = endpoints()
    started.start(0.0)
    for datagram in datagrams:
        for endpoint in (fresh, started, *_CONNECTED):
            endpoint.receive(datagram, 1.0)
            endpoint.handle_timeout(2.0)


def test_hostile_record_after_a_real_client_hello() -> None:
    server, _ = endpoints()
    hello = client_hello()
    assert server.receive(hello, 0.0)
    for n in range(1, 40):
        tampered = bytearray(hello)
        tampered[-n] ^= 0x5A
        server.receive(bytes(tampered), 0.0)
    assert server.state in (DtlsState.HANDSHAKING, DtlsState.FAILED)


# -- parameters --------------------------------------------------------------------------


def test_roles_for_offers() -> None:
    assert DtlsRole.for_offer("actpass") is DtlsRole.SERVER
    assert DtlsRole.for_offer(" ACTIVE ") is DtlsRole.SERVER
    assert DtlsRole.for_offer("passive") is DtlsRole.CLIENT
    assert DtlsRole.SERVER.setup == "passive" and DtlsRole.CLIENT.setup == "active"
    with pytest.raises(DtlsError):
        DtlsRole.for_offer("holdconn")


@pytest.mark.parametrize(
    "bad",
    [
        "md5 " + ":".join(["AB"] * 16),
        "sha-256 " + ":".join(["AB"] * 31),
        "sha-256 ABCD",
        "sha-256 " + ":".join(["ZZ"] * 32),
        "sha-256",
        "",
    ],
)
def test_fingerprints_refused(bad: str) -> None:
    with pytest.raises(DtlsError):
        Fingerprint.parse(bad)


def test_fingerprint_form() -> None:
    text = SERVER_CERT.fingerprint
    assert re.fullmatch(r"sha-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}", text)
    assert Fingerprint.parse(text.lower().replace("sha-256", "SHA-256")) == Fingerprint.parse(text)
    assert str(Fingerprint.parse(text)) == text


def test_endpoint_parameters_refused() -> None:
    for kwargs in (
        {"role": "both"},
        {"suites": []},
        {"suites": ["AES_CM_128_NULL"]},
        {"fingerprint": "sha-256 00"},
        {"mtu": 100},
        {"role": "client", "cookie_exchange": True},
    ):
        args: dict[str, object] = {
            "certificate": SERVER_CERT,
            "role": "server",
            "suites": ["AEAD_AES_128_GCM"],
            "fingerprint": CLIENT_CERT.fingerprint,
        } | kwargs
        with pytest.raises(DtlsError):
            DtlsEndpoint(**args)


# -- the certificate ---------------------------------------------------------------------


def test_certificate_kept_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "dtls.pem"
    first = Certificate.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Certificate.load_or_create(path).fingerprint == first.fingerprint
    assert first.x509.public_key().curve.name == "secp256r1"
    assert first.x509.signature_hash_algorithm is not None
    now = datetime.datetime.now(datetime.UTC)
    assert first.x509.not_valid_before_utc < now - datetime.timedelta(hours=23)
    assert first.x509.not_valid_after_utc > now + datetime.timedelta(days=300)
    assert not [p for p in tmp_path.iterdir() if p != path]  # no temporary file left


def test_certificate_renewed_near_expiry_and_refused_when_public(tmp_path: Path) -> None:
    path = tmp_path / "dtls.pem"
    first = Certificate.load_or_create(path)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=340)
    renewed = Certificate.load_or_create(path, now=later)
    assert renewed.fingerprint != first.fingerprint
    assert Certificate.load_or_create(path, now=later).fingerprint == renewed.fingerprint
    os.chmod(path, 0o644)
    with pytest.raises(DtlsError, match="chmod 600"):
        Certificate.load_or_create(path)
    os.chmod(path, 0o600)
    path.write_bytes(b"not pem")
    with pytest.raises(DtlsError):
        Certificate.load_or_create(path)


def test_certificate_of_another_key_refused() -> None:
    pem = SERVER_CERT.to_pem().split(b"-----BEGIN CERTIFICATE")[0]
    pem += b"-----BEGIN CERTIFICATE" + CLIENT_CERT.to_pem().split(b"-----BEGIN CERTIFICATE")[1]
    with pytest.raises(DtlsError, match="another key"):
        Certificate.from_pem(pem)


# -- against the openssl command over UDP ------------------------------------------------

needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="no openssl command")
OPENSSL_PROFILES = {s: PROFILES[s].decode() for s in TWO}


@pytest.fixture(scope="module")
def openssl_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A P-256 key and self-signed certificate made by the openssl command, and its
    fingerprint as the openssl command computes it, in SDP form."""
    assert OPENSSL is not None
    where = tmp_path_factory.mktemp("openssl")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=peer"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [OPENSSL, "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return cert, key, "sha-256 " + out.strip().split("=", 1)[1]


def keying_material(output: str) -> bytes:
    found = re.search(r"Keying material: ([0-9A-Fa-f]+)", output)
    assert found, output
    return bytes.fromhex(found.group(1))


def pump(
    endpoint: DtlsEndpoint,
    sock: socket.socket,
    proc: subprocess.Popen[str],
    peer: tuple[str, int] | None = None,
    seconds: float = 10.0,
) -> list[int]:
    """A tiny event loop for one endpoint on a UDP socket: datagrams in, datagrams out,
    timeouts on the monotonic clock; until the endpoint is done and the command has
    exited. Returns the sizes of the datagrams received."""
    sizes: list[int] = []
    if peer is not None:
        for datagram in endpoint.start(time.monotonic()):
            sock.sendto(datagram, peer)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        if endpoint.state is not DtlsState.HANDSHAKING and proc.poll() is not None:
            break
        wake = endpoint.next_timeout()
        sock.settimeout(0.05 if wake is None else min(0.05, max(0.001, wake - time.monotonic())))
        try:
            datagram, peer = sock.recvfrom(65536)
        except TimeoutError:
            out = endpoint.handle_timeout(time.monotonic())
        else:
            sizes.append(len(datagram))
            out = endpoint.receive(datagram, time.monotonic())
        for answer in out:
            assert peer is not None
            sock.sendto(answer, peer)
    return sizes


@needs_openssl
@pytest.mark.interop
@pytest.mark.parametrize("suite", TWO)
def test_openssl_s_client_against_our_server(
    suite: Suite, openssl_cert: tuple[Path, Path, str]
) -> None:
    cert, key, fingerprint = openssl_cert
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    assert Fingerprint.parse(fingerprint).matches(der)  # the command's digest is ours
    server = DtlsEndpoint(SERVER_CERT, "server", [suite], fingerprint)
    length = 2 * (suite.key_len + suite.salt_len)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [OPENSSL, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}"]
            + ["-use_srtp", OPENSSL_PROFILES[suite], "-keymatexport", "EXTRACTOR-dtls_srtp"]
            + ["-keymatexportlen", str(length), "-cert", str(cert), "-key", str(key)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            sizes = pump(server, sock, proc)
            output = proc.communicate(timeout=10)[0]
        finally:
            proc.kill()
    assert server.keys is not None, (server.state, server.failure, server.drops, output)
    assert server.keys.suite is suite
    assert f"SRTP Extension negotiated, profile={OPENSSL_PROFILES[suite]}" in output
    # s_client saw relay's certificate.
    shown = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", output, re.S)
    assert shown and x509.load_pem_x509_certificate(shown.group(0).encode()) == SERVER_CERT.x509
    material = keying_material(output)
    assert len(material) == length
    k, s = suite.key_len, suite.salt_len
    client_write = material[:k] + material[2 * k : 2 * k + s]
    server_write = material[k : 2 * k] + material[2 * k + s :]
    assert server.keys.remote == client_write and server.keys.local == server_write
    assert server.state is DtlsState.CLOSED  # s_client's close_notify at stdin's end
    print(f"s_client datagram sizes: {sizes}")
    if libsrtp_profile(suite) is None:
        pytest.skip("no pylibsrtp, or libsrtp without this profile")
    # SRTP with libsrtp, keyed from s_client's export, both directions.
    from_peer = libsrtp_session(suite, client_write, outbound=True)
    relay_rx = Session(suite, server.keys.remote)
    relay_tx = Session(suite, server.keys.local)
    to_peer = libsrtp_session(suite, server_write, outbound=False)
    for seq in range(10):
        assert relay_rx.unprotect(from_peer.protect(rtp(seq))) == rtp(seq)
        assert to_peer.unprotect(relay_tx.protect(rtp(seq, ssrc=7))) == rtp(seq, ssrc=7)
    assert relay_rx.unprotect_rtcp(from_peer.protect_rtcp(rtcp_sr())) == rtcp_sr()
    assert to_peer.unprotect_rtcp(relay_tx.protect_rtcp(rtcp_sr(7))) == rtcp_sr(7)


@needs_openssl
@pytest.mark.interop
@pytest.mark.parametrize("refusal", ["fingerprint", "profile", "no_certificate"])
def test_openssl_s_client_refused(refusal: str, openssl_cert: tuple[Path, Path, str]) -> None:
    """s_client with a certificate other than the SDP's, offering only a profile the
    meeting's suite is not, or with no certificate: no keys, the reason counted."""
    cert, key, fingerprint = openssl_cert
    expected = CLIENT_CERT.fingerprint if refusal == "fingerprint" else fingerprint
    server = DtlsEndpoint(SERVER_CERT, "server", [Suite.AES_CM_128_HMAC_SHA1_80], expected)
    profile = "SRTP_AEAD_AES_128_GCM" if refusal == "profile" else "SRTP_AES128_CM_SHA1_80"
    identity = [] if refusal == "no_certificate" else ["-cert", str(cert), "-key", str(key)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        proc = subprocess.Popen(
            [OPENSSL, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{sock.getsockname()[1]}"]
            + ["-use_srtp", profile, *identity],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            pump(server, sock, proc)
            output = proc.communicate(timeout=10)[0]
        finally:
            proc.kill()
    assert server.state is DtlsState.FAILED and server.keys is None, output
    assert server.failure == refusal and server.drops[refusal] == 1


@needs_openssl
@pytest.mark.interop
@pytest.mark.parametrize("suite", TWO)
def test_our_client_against_openssl_s_server(
    suite: Suite, openssl_cert: tuple[Path, Path, str]
) -> None:
    cert, key, fingerprint = openssl_cert
    client = DtlsEndpoint(CLIENT_CERT, "client", [suite], fingerprint)
    length = 2 * (suite.key_len + suite.salt_len)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [OPENSSL, "s_server", "-dtls1_2", "-accept", f"127.0.0.1:{port}", "-naccept", "1"]
        + ["-use_srtp", OPENSSL_PROFILES[suite], "-keymatexport", "EXTRACTOR-dtls_srtp"]
        + ["-keymatexportlen", str(length), "-cert", str(cert), "-key", str(key), "-Verify", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        while "ACCEPT" not in (line := proc.stdout.readline()):
            assert line, "".join(lines)
            lines.append(line)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            stop = time.monotonic() + 10
            pump(client, sock, proc, peer=("127.0.0.1", port), seconds=0.0)
            while client.state is DtlsState.HANDSHAKING and time.monotonic() < stop:
                pump(client, sock, proc, seconds=0.2)
            assert client.keys is not None, (client.state, client.failure, client.drops)
            proc.stdin.close()  # s_server closes at its stdin's end
            pump(client, sock, proc, seconds=5.0)
        proc.wait(timeout=10)
        output = "".join(lines) + proc.stdout.read()
    finally:
        proc.kill()
    assert client.keys.suite is suite
    material = keying_material(output)
    k, s = suite.key_len, suite.salt_len
    client_write = material[:k] + material[2 * k : 2 * k + s]
    server_write = material[k : 2 * k] + material[2 * k + s :]
    assert client.keys.local == client_write and client.keys.remote == server_write
    # s_server saw relay's certificate as the client's.
    shown = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", output, re.S)
    assert shown and x509.load_pem_x509_certificate(shown.group(0).encode()) == CLIENT_CERT.x509
    if libsrtp_profile(suite) is None:
        pytest.skip("no pylibsrtp, or libsrtp without this profile")
    from_peer = libsrtp_session(suite, server_write, outbound=True)
    to_peer = libsrtp_session(suite, client_write, outbound=False)
    relay_rx, relay_tx = Session(suite, client.keys.remote), Session(suite, client.keys.local)
    for seq in range(10):
        assert relay_rx.unprotect(from_peer.protect(rtp(seq))) == rtp(seq)
        assert to_peer.unprotect(relay_tx.protect(rtp(seq, ssrc=9))) == rtp(seq, ssrc=9)
