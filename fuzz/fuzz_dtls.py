"""Fuzzing the DTLS-SRTP endpoint (relay/dtls.py) with atheris: every way a peer's datagrams
reach it.

An input is a run of datagrams, each a 2-byte big-endian length and that many bytes (what is
left at the end is one more datagram), so a seed can be real handshake datagrams
(fuzz/corpus-dtls/, recorded from two endpoints in memory). They go, in turn, to a fresh
server endpoint, to a client endpoint that has sent its ClientHello, and to a server that
has completed a handshake in memory, with `now` advancing and timeouts handled between them.
Then the input's text as an SDP fingerprint and a setup value. Nothing may escape but the
DtlsError that parameter parsing documents; an output datagram over the MTU, or keys in a
state that should have none, is a finding too.

    python fuzz/fuzz_dtls.py -runs=2000 "$(mktemp -d)" fuzz/corpus-dtls   # new inputs: 1st dir
    python fuzz/fuzz_dtls.py -runs=1000000 fuzz/corpus-dtls

OpenSSL is compiled code that atheris does not see; the coverage that guides the search is
relay/dtls.py's and relay/certificate.py's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's relay

with atheris.instrument_imports():
    from relay.certificate import Certificate, Fingerprint
    from relay.dtls import MTU, DtlsEndpoint, DtlsRole, DtlsState
    from relay.errors import DtlsError

SUITES = ["AES_CM_128_HMAC_SHA1_80"]
SERVER = Certificate.generate()
CLIENT = Certificate.generate()


def datagrams(data: bytes) -> list[bytes]:
    out = []
    at = 0
    while at + 2 <= len(data) and len(out) < 8:
        size = int.from_bytes(data[at : at + 2], "big")
        out.append(data[at + 2 : at + 2 + size])
        at += 2 + size
    if at < len(data):
        out.append(data[at:])
    return out


def server() -> DtlsEndpoint:
    return DtlsEndpoint(SERVER, DtlsRole.SERVER, SUITES, CLIENT.fingerprint)


def client() -> DtlsEndpoint:
    return DtlsEndpoint(CLIENT, DtlsRole.CLIENT, SUITES, SERVER.fingerprint)


def connected() -> DtlsEndpoint:
    """A server that has completed a handshake with a client endpoint in memory."""
    srv, cli = server(), client()
    queue = [(srv, d) for d in cli.start(0.0)]
    while queue:
        to, datagram = queue.pop(0)
        other = cli if to is srv else srv
        queue += [(other, d) for d in to.receive(datagram, 0.0)]
    assert srv.state is DtlsState.CONNECTED
    return srv


def check(endpoint: DtlsEndpoint, sent: list[bytes]) -> None:
    if any(len(d) > MTU for d in sent):
        raise AssertionError(f"a datagram over the MTU: {[len(d) for d in sent]}")
    if endpoint.keys is not None and endpoint.state not in (
        DtlsState.CONNECTED,
        DtlsState.CLOSED,
    ):
        raise AssertionError(f"keys in state {endpoint.state}")
    if endpoint.state is DtlsState.FAILED and endpoint.failure is None:
        raise AssertionError("failed without a reason")


def one_input(data: bytes) -> None:
    parts = datagrams(data)
    started = client()
    started.start(0.0)
    for endpoint in (server(), started, connected()):
        now = 0.0
        for datagram in parts:
            now += 0.5
            check(endpoint, endpoint.receive(datagram, now))
            check(endpoint, endpoint.handle_timeout(now))
        check(endpoint, endpoint.close())
    text = data.decode("latin-1")
    for parse in (Fingerprint.parse, DtlsRole.for_offer):
        try:
            parse(text)
        except DtlsError:
            pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
