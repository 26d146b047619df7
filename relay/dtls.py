"""DTLS-SRTP (RFC 5763, RFC 5764) for WebRTC peers: the handshake as a sans-IO endpoint.

A WebRTC peer does not hand the relay SRTP keys in its SDP (as SDES, RFC 4568, does): both
sides run a DTLS 1.2 handshake (RFC 6347) on the media 5-tuple, agree on an SRTP protection
profile in the `use_srtp` extension (RFC 5764 section 4.1.2), and export the SRTP master keys
and salts from the DTLS master secret (RFC 5764 section 4.2). Certificates are self-signed;
each side is authenticated by the fingerprint the other signalled in SDP (RFC 8122), which the
handshake checks (RFC 5763 section 5).

    endpoint = DtlsEndpoint(certificate, DtlsRole.for_offer("actpass"),
                            ["AES_CM_128_HMAC_SHA1_80"], "sha-256 AB:CD:...")
    for datagram in endpoint.receive(data, now):   # a datagram whose first byte is 20..63
        send(datagram)
    endpoint.handle_timeout(now) at endpoint.next_timeout(); start(now) first as a client
    endpoint.keys      # SrtpKeys(suite, local, remote) once endpoint.state is CONNECTED

One endpoint per peer. Like the rest of the data plane it does no I/O and reads no clock: the
caller passes datagrams and `now` in, and sends what comes back. OpenSSL (through pyOpenSSL)
does the handshake and all its cryptography over memory BIOs; this module frames what OpenSSL
writes into datagrams, checks what it reads, and decides what the result means.

The state machine lives in `DtlsEndpoint` and nowhere else:

    HANDSHAKING --handshake done, fingerprint and profile right--> CONNECTED
    HANDSHAKING --refused, peer's alert, or HANDSHAKE_TIMEOUT_S--> FAILED    (failure says why)
    CONNECTED   --peer's close_notify, or close()----------------> CLOSED
    CONNECTED   --peer's fatal alert-----------------------------> FAILED
    FAILED, CLOSED: final; datagrams are dropped as "after_close"

Hostile input never raises: a datagram that is not DTLS, malformed, or refused by OpenSSL is
dropped and counted in `drops` under a `Reason`; a refused handshake also ends the endpoint.

No HelloVerifyRequest cookie exchange (RFC 6347 section 4.2.1) by default. Cookies keep a
server from sending its large first flight to a spoofed source address; the worker only
passes DTLS from an address that has already answered an ICE connectivity check
authenticated with MESSAGE-INTEGRITY (RFC 8445 section 7.2.5, RFC 5389 section 15.4), so the
source is not spoofed, and the extra round trip would only slow every join. `cookie_exchange=
True` turns it on for a server endpoint used elsewhere.

DTLS 1.3 (RFC 9147): the endpoint speaks DTLS 1.2 only (min and max version pinned; the
bundled OpenSSL has no DTLS 1.3 either). A client that offers 1.3 and 1.2 in supported_versions,
as browsers do, gets 1.2; one that offers only 1.3 is refused with a protocol_version alert
(failure "handshake"), and 1.3's unified-header records are dropped as "malformed".
"""

from __future__ import annotations

import hmac
import secrets
from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple, cast

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from relay.certificate import Certificate, Fingerprint
from relay.errors import DtlsError
from relay.vocabulary import Suite

__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "MAX_DATAGRAM",
    "MTU",
    "PROFILES",
    "DtlsEndpoint",
    "DtlsRole",
    "DtlsState",
    "Reason",
    "SrtpKeys",
]

# Each handshake datagram fits in 1200 bytes: IPv6's minimum link MTU (1280) less its 40-byte
# header and UDP's 8 leaves 1232, and 1200 also leaves room for a TURN relay's ChannelData
# header (RFC 8656 section 12.4). It is what WebRTC stacks and QUIC (RFC 9000 section 14)
# assume works everywhere; OpenSSL fragments handshake messages to fit (RFC 6347 4.2.3).
MTU = 1200
MIN_MTU = 256  # OpenSSL refuses MTUs a little under its smallest probable path MTU, 256

# The largest datagram passed to OpenSSL. Real ones are a path MTU (1500 or a jumbo 9000); the
# bound keeps each datagram within one read of OpenSSL's record buffer (16 KiB of plaintext
# plus overhead), so no leftover of one datagram is parsed as the start of the next.
MAX_DATAGRAM = 16384

# How long a handshake may take, from start() or the first datagram, before the endpoint
# gives up. OpenSSL retransmits a flight after 1 s and doubles the wait each time (RFC 6347
# section 4.2.4.1), so by 30 s it has sent four retransmissions (at 1, 3, 7 and 15 s): a
# peer that has answered none of them is gone, or is holding the endpoint open on purpose.
# 30 s is also when ICE consent expires (RFC 7675 section 5.1), after which the worker would
# stop sending to the peer anyway.
HANDSHAKE_TIMEOUT_S = 30.0

# RFC 5764 section 4.2: the keying material exporter's label (RFC 5705), no context.
EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"

#: relay's suite -> OpenSSL's name for the DTLS-SRTP protection profile that carries it
#: (RFC 5764 section 4.1.2 for AES-CM, RFC 7714 section 14.2 for AES-GCM).
PROFILES: dict[Suite, bytes] = {
    Suite.AES_CM_128_HMAC_SHA1_80: b"SRTP_AES128_CM_SHA1_80",
    Suite.AES_CM_128_HMAC_SHA1_32: b"SRTP_AES128_CM_SHA1_32",
    Suite.AEAD_AES_128_GCM: b"SRTP_AEAD_AES_128_GCM",
    Suite.AEAD_AES_256_GCM: b"SRTP_AEAD_AES_256_GCM",
}
_SUITE_OF = {profile: suite for suite, profile in PROFILES.items()}

DTLS1_2_VERSION = 0xFEFD  # not exported by pyOpenSSL

# Ephemeral ECDHE only, AEAD first: the SRTP keys come from this handshake, so it must have
# forward secrecy (no RSA key transport). ECDHE-ECDSA for relay's own certificate; ECDHE-RSA
# too, for a peer whose certificate is RSA when relay is the client. The CBC suites are there
# for older stacks; both browsers' first choices are the AES-GCM ones.
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES"

# DTLS record header (RFC 6347 section 4.1): type, version (2), epoch (2), sequence (6),
# length (2).
_HEADER = 13
_CONTENT_TYPES = frozenset((20, 21, 22, 23))  # change_cipher_spec, alert, handshake, data


class DtlsRole(StrEnum):
    """Which side of the DTLS handshake relay takes (RFC 5763 section 5, RFC 8842)."""

    SERVER = "server"  # answers `a=setup:passive`: waits for the peer's ClientHello
    CLIENT = "client"  # answers `a=setup:active`: sends the ClientHello

    @classmethod
    def for_offer(cls, setup: str) -> DtlsRole:
        """relay's role for an offer's `a=setup:` value (RFC 8842 section 5.3, RFC 4145
        section 4). An offer says `actpass` (RFC 8842 section 5.2 requires it of an initial
        offer): the answerer chooses, and relay chooses passive, the DTLS server, so that
        the browser's ClientHello is what opens the handshake and relay sends nothing to an
        address until the peer has spoken DTLS from it. `active` leaves relay passive too;
        `passive` makes relay the client.

        Raises:
            DtlsError: `holdconn` or anything else.
        """
        value = setup.strip().lower()
        if value in ("actpass", "active"):
            return cls.SERVER
        if value == "passive":
            return cls.CLIENT
        raise DtlsError(f"a=setup:{setup} is not one relay can answer (actpass, active, passive)")

    @property
    def setup(self) -> str:
        """The answer's `a=setup:` value for this role."""
        return "passive" if self is DtlsRole.SERVER else "active"


class DtlsState(StrEnum):
    """Where an endpoint is (the transitions are in the module's docstring)."""

    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class Reason(StrEnum):
    """Why a datagram was dropped (`drops`) or the endpoint failed (`failure`)."""

    NOT_DTLS = "not_dtls"  # first byte outside 20..63 (RFC 7983 section 7)
    OVERSIZED = "oversized"  # longer than MAX_DATAGRAM
    MALFORMED = "malformed"  # not a whole number of DTLS 1.x records
    HANDSHAKE = "handshake"  # OpenSSL refused the handshake (version, cipher, a bad message)
    ALERT = "alert"  # the peer sent a fatal alert
    NO_CERTIFICATE = "no_certificate"  # the peer sent no certificate (RFC 5763 section 5)
    FINGERPRINT = "fingerprint"  # its certificate is not the one its SDP names
    PROFILE = "profile"  # no SRTP profile both accept (RFC 5764 section 4.1.2)
    TIMEOUT = "timeout"  # not done within HANDSHAKE_TIMEOUT_S
    APPLICATION_DATA = "application_data"  # WebRTC media uses none (no data channels here)
    AFTER_CLOSE = "after_close"  # the endpoint has failed or closed


class SrtpKeys(NamedTuple):
    """What the handshake yields (RFC 5764 section 4.2): the suite, and two master key ||
    master salt strings in the form `relay.srtp.Session` takes."""

    suite: Suite
    local: bytes  # protects what relay sends (its own write key: server's if it is the server)
    remote: bytes  # unprotects what the peer sends (the peer's write key)


class _Peer:
    """What OpenSSL's callbacks need of one connection (its app data): kept apart from the
    endpoint so that the connection does not point back at it (no reference cycle)."""

    __slots__ = ("cookie", "expected", "mismatch")

    def __init__(self, expected: Fingerprint) -> None:
        self.expected = expected
        self.mismatch = False
        self.cookie = secrets.token_bytes(16)


def _verify(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    """OpenSSL's certificate check, replaced: any chain is fine (self-signed is the norm,
    RFC 5763 section 5), but the end-entity certificate must have the signalled fingerprint.
    Checking it here, and not only once the handshake is done, stops the handshake with an
    alert before either side has keys."""
    if depth != 0:
        return True
    peer = cast(_Peer, conn.get_app_data())
    if peer.expected.matches(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)):
        return True
    peer.mismatch = True
    return False


def _cookie(conn: SSL.Connection) -> bytes:
    # One endpoint per peer address, so a per-endpoint random cookie proves what a keyed hash
    # of the address would: that the ClientHello's source receives what relay sends to it.
    return cast(_Peer, conn.get_app_data()).cookie


def _cookie_ok(conn: SSL.Connection, cookie: bytes) -> bool:
    return hmac.compare_digest(cookie, cast(_Peer, conn.get_app_data()).cookie)


@lru_cache(maxsize=64)
def _context(
    certificate: Certificate, role: DtlsRole, suites: tuple[Suite, ...], cookies: bool
) -> SSL.Context:
    """One OpenSSL context per configuration, shared by the endpoints that use it (making
    one costs more than a handshake's Python work)."""
    method = SSL.DTLS_SERVER_METHOD if role is DtlsRole.SERVER else SSL.DTLS_CLIENT_METHOD
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(DTLS1_2_VERSION)  # RFC 8827 section 6.5; DTLS 1.0 is RFC 8996's
    ctx.set_max_proto_version(DTLS1_2_VERSION)
    ctx.use_certificate(certificate.x509)
    ctx.use_privatekey(certificate.private_key)
    ctx.check_privatekey()
    ctx.set_cipher_list(CIPHERS)
    # Both sides must present a certificate (RFC 5763 section 5): as a server, ask for the
    # client's with CertificateRequest and refuse a handshake without one.
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify)
    # In preference order; a server picks the first of its own the client also offers.
    ctx.set_tlsext_use_srtp(b":".join(PROFILES[s] for s in suites))
    # OP_NO_QUERY_MTU: the MTU is ours (a memory BIO has none to query; without the flag,
    # OpenSSL would ask it after two timeouts and shrink the MTU to nothing).
    # No renegotiation: it would change the keys under the SRTP sessions, and WebRTC never
    # renegotiates. No tickets or session cache: every WebRTC association is a full handshake.
    ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if cookies:
        if SSL.OP_COOKIE_EXCHANGE is None:  # pragma: no cover - every OpenSSL 1.1.1+ has it
            raise DtlsError("this OpenSSL build has no DTLS cookie exchange")
        ctx.set_options(SSL.OP_COOKIE_EXCHANGE)
        ctx.set_cookie_generate_callback(_cookie)
        ctx.set_cookie_verify_callback(_cookie_ok)
    return ctx


def _framing(datagram: bytes) -> Reason | None:
    """Why `datagram` is not a whole number of DTLS 1.0/1.2 records, or None if it is.
    OpenSSL discards bad records silently (RFC 6347 section 4.1.2.7); checking first lets the
    drop be counted under a name."""
    size = len(datagram)
    if size == 0 or not 20 <= datagram[0] <= 63:
        return Reason.NOT_DTLS
    if size > MAX_DATAGRAM:
        return Reason.OVERSIZED
    at = 0
    while at < size:
        if size - at < _HEADER or datagram[at] not in _CONTENT_TYPES or datagram[at + 1] != 0xFE:
            return Reason.MALFORMED
        at += _HEADER + int.from_bytes(datagram[at + 11 : at + 13], "big")
    return None if at == size else Reason.MALFORMED


def _datagrams(data: bytes, mtu: int) -> list[bytes]:
    """OpenSSL's output, cut into datagrams of at most `mtu` bytes.

    A memory BIO is a byte stream, so the record boundaries OpenSSL meant as datagram
    boundaries are lost; records are self-delimiting, and several may share a datagram
    (RFC 6347 section 4.1.1), so consecutive records are packed while they fit. OpenSSL has
    already cut each handshake message into records that fit the MTU."""
    out: list[bytes] = []
    start = at = 0
    while at + _HEADER <= len(data):
        end = at + _HEADER + int.from_bytes(data[at + 11 : at + 13], "big")
        if end - start > mtu and at > start:
            out.append(data[start:at])
            start = at
        at = end
    if start < len(data):
        out.append(data[start:])
    return out


def _error_text(exc: SSL.Error) -> str:
    """The reasons in OpenSSL's error queue, as one lower-case string."""
    queue = exc.args[0] if exc.args else ()
    if not isinstance(queue, list):
        return str(queue).lower()
    return " ".join(str(entry[-1]) for entry in queue if isinstance(entry, tuple)).lower()


class DtlsEndpoint:
    """One DTLS-SRTP association with one peer: sans-IO, driven by `receive`, `start` and
    `handle_timeout`, each returning the datagrams to send to the peer.

    Args:
        certificate: the node's certificate (what relay's SDP fingerprint names).
        role: `DtlsRole.SERVER` (relay answered `a=setup:passive`) or `CLIENT`.
        suites: the SRTP suites relay accepts, in preference order (a meeting's one suite);
            each must be one of PROFILES.
        fingerprint: the peer's SDP `a=fingerprint:` value (`"sha-256 AB:..."`) or parsed.
        mtu: the largest datagram to send.
        cookie_exchange: a server endpoint answers a ClientHello without a cookie with a
            HelloVerifyRequest first (see the module's docstring for why it is off).

    Raises:
        DtlsError: an unknown role or suite, no suites, a fingerprint that does not parse, an
            MTU outside MIN_MTU..MAX_DATAGRAM, or cookies asked of a client.
    """

    def __init__(
        self,
        certificate: Certificate,
        role: DtlsRole | str,
        suites: Iterable[Suite | str],
        fingerprint: Fingerprint | str,
        *,
        mtu: int = MTU,
        cookie_exchange: bool = False,
    ) -> None:
        try:
            self.role = DtlsRole(role)
            chosen = tuple(dict.fromkeys(Suite(s) for s in suites))
        except ValueError as exc:
            raise DtlsError(str(exc)) from None
        if not chosen or any(s not in PROFILES for s in chosen):
            raise DtlsError(f"DTLS-SRTP suites must be some of {', '.join(PROFILES)}")
        if not MIN_MTU <= mtu <= MAX_DATAGRAM:
            raise DtlsError(f"the DTLS MTU must be {MIN_MTU}..{MAX_DATAGRAM} bytes")
        if cookie_exchange and self.role is DtlsRole.CLIENT:
            raise DtlsError("only a DTLS server sends cookies")
        self.suites = chosen
        self.remote_fingerprint = (
            fingerprint if isinstance(fingerprint, Fingerprint) else Fingerprint.parse(fingerprint)
        )
        self.state = DtlsState.HANDSHAKING
        self.failure: Reason | None = None  # why FAILED
        self.keys: SrtpKeys | None = None  # set on CONNECTED, kept after CLOSED
        self.drops: Counter[str] = Counter()
        self._mtu = mtu
        self._peer = _Peer(self.remote_fingerprint)
        self._started: float | None = None  # `now` of start() or the first datagram
        self._retransmit_at: float | None = None  # OpenSSL's next retransmission, in `now` time
        conn = SSL.Connection(_context(certificate, self.role, chosen, cookie_exchange), None)
        conn.set_app_data(self._peer)
        if self.role is DtlsRole.SERVER:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
        conn.set_ciphertext_mtu(mtu)
        self._conn = conn

    # -- the caller's side ---------------------------------------------------------------

    def start(self, now: float) -> list[bytes]:
        """Begin: a client's first flight (its ClientHello); a server only starts the
        HANDSHAKE_TIMEOUT_S clock, which otherwise starts at its first datagram."""
        if self._started is not None or self.state is not DtlsState.HANDSHAKING:
            return []
        self._started = now
        if self.role is DtlsRole.SERVER:
            return []
        return self._handshake(now)

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        """Take one datagram from the peer; return the datagrams to send back.

        Never raises for what the datagram holds: a bad one is dropped and counted in
        `drops`, and one that makes the handshake fail ends the endpoint (`failure`)."""
        reason = _framing(datagram)
        if reason is not None:
            self.drops[reason] += 1
            return []
        if self.state is DtlsState.FAILED or self.state is DtlsState.CLOSED:
            self.drops[Reason.AFTER_CLOSE] += 1
            return []
        if self._started is None:
            self._started = now
        if self.state is DtlsState.HANDSHAKING and now >= self._started + HANDSHAKE_TIMEOUT_S:
            self._fail(Reason.TIMEOUT)
            self.drops[Reason.TIMEOUT] += 1
            return []
        try:
            self._conn.bio_write(datagram)
        except SSL.Error:  # pragma: no cover - a memory BIO takes any size
            self.drops[Reason.MALFORMED] += 1
            return []
        if self.state is DtlsState.HANDSHAKING:
            return self._handshake(now)
        self._read()
        return self._flush()

    def next_timeout(self) -> float | None:
        """When (in `now`'s time) `handle_timeout` must next be called; None: not needed."""
        if self.state is not DtlsState.HANDSHAKING or self._started is None:
            return None
        give_up = self._started + HANDSHAKE_TIMEOUT_S
        if self._retransmit_at is None:
            return give_up
        return min(self._retransmit_at, give_up)

    def handle_timeout(self, now: float) -> list[bytes]:
        """Retransmit the last flight if its timer has run out (RFC 6347 section 4.2.4), or
        give up once HANDSHAKE_TIMEOUT_S has passed; return the datagrams to send.

        OpenSSL keeps its retransmission timer on its own clock (pyOpenSSL gives no way to
        pass it `now`): `next_timeout` is OpenSSL's remaining time added to the `now` of the
        last call, and OpenSSL retransmits when its clock agrees. With `now` from the
        monotonic clock the two coincide; a simulated `now` that runs ahead of real time
        moves the give-up deadline but not the retransmissions."""
        deadline = self.next_timeout()
        if deadline is None or now < deadline:
            return []
        assert self._started is not None  # next_timeout is None until then
        if now >= self._started + HANDSHAKE_TIMEOUT_S:
            self._fail(Reason.TIMEOUT)
            return []
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error:  # OpenSSL's own limit on retransmissions (12)
            self._fail(Reason.TIMEOUT)
            return self._flush()
        out = self._flush()
        self._arm(now)
        return out

    def close(self) -> list[bytes]:
        """End the association (relay is done with the peer): a close_notify alert to send
        if it was connected (RFC 5246 section 7.2.1). The keys stay readable."""
        if self.state is DtlsState.CONNECTED:
            self.state = DtlsState.CLOSED
            try:
                self._conn.shutdown()
            except SSL.Error:  # pragma: no cover - a memory BIO does not refuse the alert
                return []
            return self._flush()
        if self.state is DtlsState.HANDSHAKING:
            self.state = DtlsState.CLOSED
        return []

    # -- inside --------------------------------------------------------------------------

    def _handshake(self, now: float) -> list[bytes]:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:  # needs more of the peer's flight
            out = self._flush()
            self._arm(now)
            return out
        except SSL.Error as exc:
            self._fail(self._refusal(exc))
            self.drops[self.failure or Reason.HANDSHAKE] += 1
            return self._flush()  # the fatal alert OpenSSL wrote, if any
        self._established()
        if self.state is DtlsState.CONNECTED:
            self._read()  # records after the Finished in the same datagram
        return self._flush()

    def _refusal(self, exc: SSL.Error) -> Reason:
        """Name what OpenSSL refused."""
        if self._peer.mismatch:
            return Reason.FINGERPRINT
        text = _error_text(exc)
        if "peer did not return a certificate" in text:
            return Reason.NO_CERTIFICATE
        if "alert" in text:  # "sslv3 alert handshake failure", "tlsv1 alert ..."
            return Reason.ALERT
        return Reason.HANDSHAKE

    def _established(self) -> None:
        """The handshake is done: check who the peer is and what it agreed to, then export
        the keys."""
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if cert is None:  # a server always sends one; the client's is required above
            self._close_refused(Reason.NO_CERTIFICATE)
            return
        # Already checked by _verify during the handshake; checked again here on the
        # certificate the handshake actually used, as the one that decides.
        if not self.remote_fingerprint.matches(cert.public_bytes(Encoding.DER)):
            self._close_refused(Reason.FINGERPRINT)
            return
        # RFC 5764 section 4.1.2: a server with no profile in common answers without use_srtp
        # and the handshake completes; without a profile there are no SRTP keys.
        suite = _SUITE_OF.get(self._conn.get_selected_srtp_profile())
        if suite is None or suite not in self.suites:
            self._close_refused(Reason.PROFILE)
            return
        key_len, salt_len = suite.key_len, suite.salt_len
        material = self._conn.export_keying_material(EXPORTER_LABEL, 2 * (key_len + salt_len))
        # RFC 5764 section 4.2: client key | server key | client salt | server salt.
        keys, salts = material[: 2 * key_len], material[2 * key_len :]
        client = keys[:key_len] + salts[:salt_len]
        server = keys[key_len:] + salts[salt_len:]
        if self.role is DtlsRole.SERVER:
            self.keys = SrtpKeys(suite, local=server, remote=client)
        else:
            self.keys = SrtpKeys(suite, local=client, remote=server)
        self.state = DtlsState.CONNECTED
        self._retransmit_at = None

    def _close_refused(self, reason: Reason) -> None:
        """A handshake that OpenSSL completed but relay refuses: no keys; a close_notify
        tells the peer (pyOpenSSL cannot send a fatal alert of our choosing)."""
        self._fail(reason)
        self.drops[reason] += 1
        try:
            self._conn.shutdown()
        except SSL.Error:  # pragma: no cover - a memory BIO does not refuse the alert
            pass

    def _read(self) -> None:
        """After the handshake: let OpenSSL see the records (a retransmitted Finished makes
        it resend its own), drop application data, and notice alerts."""
        while True:
            try:
                self._conn.recv(16384)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:  # close_notify (RFC 5246 section 7.2.1): answer it
                self.state = DtlsState.CLOSED
                try:
                    self._conn.shutdown()
                except SSL.Error:
                    pass
                return
            except SSL.Error as exc:
                self._fail(Reason.ALERT if "alert" in _error_text(exc) else Reason.HANDSHAKE)
                self.drops[self.failure or Reason.ALERT] += 1
                return
            else:
                self.drops[Reason.APPLICATION_DATA] += 1

    def _fail(self, reason: Reason) -> None:
        self.state = DtlsState.FAILED
        self.failure = reason
        self._retransmit_at = None

    def _arm(self, now: float) -> None:
        """Note when OpenSSL's retransmission timer runs out, in `now`'s time."""
        left = self._conn.DTLSv1_get_timeout() if self.state is DtlsState.HANDSHAKING else None
        self._retransmit_at = None if left is None else now + left

    def _flush(self) -> list[bytes]:
        """Everything OpenSSL has written, as datagrams."""
        data = b""
        while True:
            try:
                data += self._conn.bio_read(65536)
            except SSL.WantReadError:
                break
        return _datagrams(data, self._mtu) if data else []
