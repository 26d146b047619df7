"""The ICE-lite responder (relay/ice.py): unit tests in memory, then a full agent (aioice, as a
browser would be) connecting to it over real UDP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from collections.abc import Iterator
from typing import cast

import aioice
import aioice.ice
import aioice.stun
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay import stun
from relay.ice import (
    CHECK_VALID,
    CONSENT_TIMEOUT,
    DROP_FINGERPRINT,
    DROP_INTEGRITY,
    DROP_MALFORMED,
    DROP_NOT_REQUEST,
    DROP_REMOTE_UFRAG,
    DROP_UNKNOWN_UFRAG,
    OUTCOMES,
    REFUSED_ROLE_CONFLICT,
    REFUSED_UNKNOWN_ATTRIBUTE,
    AddressSelected,
    CheckSucceeded,
    ConsentExpired,
    IceLite,
    IceResult,
)
from relay.stun import AttrType, StunClass

pytestmark = pytest.mark.release_only  # tests/conftest.py: relay/ice.py: Python, not the core

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PID = 7
LOCAL_UFRAG = "rLy7"
LOCAL_PWD = "relayPasswordOf24chars+/"
REMOTE_UFRAG = "Brws"
KEY = LOCAL_PWD.encode()
PEER = ("192.0.2.10", 50000)
OTHER = ("198.51.100.20", 40000)
T0 = 1000.0


@pytest.fixture
def ice() -> IceLite:
    agent = IceLite()
    agent.add(PID, LOCAL_UFRAG, LOCAL_PWD, REMOTE_UFRAG)
    agent.add(8, "othr", "anotherPasswordOf22chr", None)
    return agent


def request(
    *,
    username: str = f"{LOCAL_UFRAG}:{REMOTE_UFRAG}",
    key: bytes | None = KEY,
    use_candidate: bool = False,
    controlled: bool = False,
    extra: tuple[tuple[int, bytes], ...] = (),
    fingerprint: bool = True,
    tid: bytes | None = None,
) -> bytes:
    """A connectivity check as a controlling full agent sends it (RFC 8445 section 7.2.2)."""
    attributes = [
        (AttrType.USERNAME, username.encode()),
        (AttrType.PRIORITY, struct.pack("!I", 0x6E0001FF)),
        (AttrType.ICE_CONTROLLED if controlled else AttrType.ICE_CONTROLLING, b"\x01" * 8),
        *extra,
    ]
    if use_candidate:
        attributes.append((AttrType.USE_CANDIDATE, b""))
    return stun.build(
        stun.BINDING,
        StunClass.REQUEST,
        tid or os.urandom(12),
        attributes,
        integrity_key=key,
        fingerprint=fingerprint,
    )


def counted(ice: IceLite) -> dict[str, int]:
    return {outcome: n for outcome, n in ice.counters.items() if n}


# --- answering -------------------------------------------------------------------------------


def test_valid_check_answered(ice: IceLite) -> None:
    data = request()
    result = ice.receive(data, PEER, T0)
    assert result.outcome == CHECK_VALID
    assert result.check == CheckSucceeded(PID, PEER, nominated=False)
    assert result.selected is None
    assert ice.selected(PID) is None  # a check that does not nominate selects nothing
    assert counted(ice) == {CHECK_VALID: 1}
    assert result.response is not None
    response = stun.parse(result.response)
    assert (response.method, response.message_class) == (stun.BINDING, StunClass.SUCCESS)
    assert response.transaction_id == stun.parse(data).transaction_id
    assert response.xor_mapped_address == PEER
    assert response.check_integrity(KEY) and response.check_fingerprint()
    # aioice, as the requester, takes it too.
    theirs = aioice.stun.parse_message(result.response)
    assert theirs.check_message_integrity(KEY)
    assert theirs.attributes["XOR-MAPPED-ADDRESS"] == PEER


def test_ipv6_source_answered(ice: IceLite) -> None:
    # An IPv6 socket gives (host, port, flowinfo, scope_id): the event and the response use
    # (host, port).
    source = ("2001:db8::77", 6000, 0, 0)
    result = ice.receive(request(use_candidate=True), source, T0)  # type: ignore[arg-type]
    assert result.check == CheckSucceeded(PID, ("2001:db8::77", 6000), True)
    assert ice.selected(PID) == ("2001:db8::77", 6000)
    assert result.response is not None
    assert stun.parse(result.response).xor_mapped_address == ("2001:db8::77", 6000)


def test_any_remote_ufrag_when_none_given(ice: IceLite) -> None:
    result = ice.receive(request(username="othr:whoever", key=b"anotherPasswordOf22chr"), PEER, T0)
    assert result.check == CheckSucceeded(8, PEER, False)


def _wrong_fingerprint() -> bytes:
    data = bytearray(request())
    data[-1] ^= 1
    return bytes(data)


def _tampered() -> bytes:
    # PRIORITY changed after signing, FINGERPRINT made right again: only the HMAC notices.
    data = bytearray(request(fingerprint=False))
    [priority] = [a for a in stun.parse(bytes(data)).attributes if a.type == AttrType.PRIORITY]
    data[priority.offset + 7] ^= 1  # the value's last byte
    assert stun.parse(bytes(data)).priority == 0x6E0001FE
    body = bytes(data[20:])
    head = struct.pack("!HHI", 0x0001, len(body) + 8, stun.MAGIC_COOKIE) + bytes(data[8:20])
    crc = stun.FINGERPRINT_XOR ^ zlib.crc32(head + body)
    return head + body + struct.pack("!HHI", AttrType.FINGERPRINT, 4, crc)


def _indication() -> bytes:
    return stun.build(stun.BINDING, StunClass.INDICATION, os.urandom(12), [])


def _response() -> bytes:
    return stun.build_binding_success(os.urandom(12), PEER, KEY)


def _allocate() -> bytes:
    # A TURN Allocate (RFC 8656), signed as if it were a check.
    return stun.build(
        0x003,
        StunClass.REQUEST,
        os.urandom(12),
        [(AttrType.USERNAME, f"{LOCAL_UFRAG}:{REMOTE_UFRAG}".encode())],
        integrity_key=KEY,
    )


DROPPED = {
    "garbage": (b"\x00\x01hello", DROP_MALFORMED),
    "rtp": (b"\x80" + bytes(171), DROP_MALFORMED),
    "truncated": (request()[:-4], DROP_MALFORMED),
    "indication": (_indication(), DROP_NOT_REQUEST),
    "success response": (_response(), DROP_NOT_REQUEST),
    "allocate": (_allocate(), DROP_NOT_REQUEST),
    "no fingerprint": (request(fingerprint=False), DROP_FINGERPRINT),
    "wrong fingerprint": (_wrong_fingerprint(), DROP_FINGERPRINT),
    "no username": (
        stun.build(stun.BINDING, StunClass.REQUEST, os.urandom(12), [], integrity_key=KEY),
        DROP_UNKNOWN_UFRAG,
    ),
    "username without colon": (request(username=LOCAL_UFRAG), DROP_UNKNOWN_UFRAG),
    "unknown ufrag": (request(username=f"nobody:{REMOTE_UFRAG}"), DROP_UNKNOWN_UFRAG),
    "remote ufrag first": (request(username=f"{REMOTE_UFRAG}:{LOCAL_UFRAG}"), DROP_UNKNOWN_UFRAG),
    "no integrity": (request(key=None), DROP_INTEGRITY),
    "wrong password": (request(key=b"relayPasswordOf24chars+?"), DROP_INTEGRITY),
    "another participant's password": (request(key=b"anotherPasswordOf22chr"), DROP_INTEGRITY),
    "tampered after signing": (_tampered(), DROP_INTEGRITY),
    "wrong remote ufrag": (request(username=f"{LOCAL_UFRAG}:Othr"), DROP_REMOTE_UFRAG),
    "no remote ufrag": (request(username=f"{LOCAL_UFRAG}:"), DROP_REMOTE_UFRAG),
}


@pytest.mark.parametrize(("data", "reason"), list(DROPPED.values()), ids=list(DROPPED))
def test_bad_requests_dropped_counted_not_answered(ice: IceLite, data: bytes, reason: str) -> None:
    result = ice.receive(data, PEER, T0)
    assert result == IceResult(None, None, None, reason)
    assert counted(ice) == {reason: 1}
    # Even when it says USE-CANDIDATE, nothing is selected.
    assert ice.selected(PID) is None and ice.next_expiry() is None


def test_bad_request_with_use_candidate_selects_nothing(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    for data in (
        request(use_candidate=True, key=b"relayPasswordOf24chars+?"),
        request(use_candidate=True, username=f"{LOCAL_UFRAG}:Othr"),
        request(use_candidate=True, fingerprint=False),
    ):
        result = ice.receive(data, OTHER, T0 + 1)
        assert result.response is None and result.selected is None
    assert ice.selected(PID) == PEER


def test_role_conflict_answered_487(ice: IceLite) -> None:
    # The peer says ICE-CONTROLLED: both think they are controlled (RFC 8445 section 7.3.1.1).
    data = request(controlled=True, use_candidate=True)
    result = ice.receive(data, PEER, T0)
    assert result.outcome == REFUSED_ROLE_CONFLICT
    assert result.check is None and result.selected is None
    assert ice.selected(PID) is None
    assert counted(ice) == {REFUSED_ROLE_CONFLICT: 1}
    assert result.response is not None
    response = stun.parse(result.response)
    assert response.message_class == StunClass.ERROR
    assert response.error_code == (487, "Role Conflict")
    assert response.transaction_id == stun.parse(data).transaction_id
    assert response.check_integrity(KEY) and response.check_fingerprint()


def test_role_conflict_not_answered_unauthenticated(ice: IceLite) -> None:
    result = ice.receive(request(controlled=True, key=b"x" * 22), PEER, T0)
    assert result == IceResult(None, None, None, DROP_INTEGRITY)


def test_unknown_comprehension_required_attribute_answered_420(ice: IceLite) -> None:
    data = request(extra=((0x0030, b"\0\0\0\0"), (0x7FF0, b""), (0xC057, b"\0\x01\0\x02")))
    result = ice.receive(data, PEER, T0)
    assert result.outcome == REFUSED_UNKNOWN_ATTRIBUTE and result.check is None
    assert result.response is not None
    response = stun.parse(result.response)
    assert response.error_code == (420, "Unknown Attribute")
    assert response.unknown_attributes == (0x0030, 0x7FF0)  # not the optional 0xC057
    assert response.check_integrity(KEY) and response.check_fingerprint()


def test_unknown_comprehension_optional_attribute_ignored(ice: IceLite) -> None:
    # Chrome's GOOG-NETWORK-INFO (0xC057) and the like.
    result = ice.receive(request(extra=((0xC057, b"\0\x01\0\x02"),)), PEER, T0)
    assert result.outcome == CHECK_VALID


# --- nomination and the selected address -----------------------------------------------------


def test_nomination_selects(ice: IceLite) -> None:
    result = ice.receive(request(use_candidate=True), PEER, T0)
    assert result.check == CheckSucceeded(PID, PEER, nominated=True)
    assert result.selected == AddressSelected(PID, PEER, previous=None)
    assert ice.selected(PID) == PEER
    # Nominating the same address again changes nothing: no event.
    again = ice.receive(request(use_candidate=True), PEER, T0 + 1)
    assert again.check == CheckSucceeded(PID, PEER, True) and again.selected is None


def test_later_nomination_from_another_address_switches(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    # A check without USE-CANDIDATE from elsewhere is answered but moves nothing.
    plain = ice.receive(request(), OTHER, T0 + 1)
    assert plain.check == CheckSucceeded(PID, OTHER, False) and plain.selected is None
    assert ice.selected(PID) == PEER
    moved = ice.receive(request(use_candidate=True), OTHER, T0 + 2)
    assert moved.selected == AddressSelected(PID, OTHER, previous=PEER)
    assert ice.selected(PID) == OTHER
    back = ice.receive(request(use_candidate=True), PEER, T0 + 3)
    assert back.selected == AddressSelected(PID, PEER, previous=OTHER)


def test_participants_kept_apart(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    other = request(username="othr:abcd", key=b"anotherPasswordOf22chr", use_candidate=True)
    assert ice.receive(other, OTHER, T0).selected == AddressSelected(8, OTHER, None)
    assert (ice.selected(PID), ice.selected(8)) == (PEER, OTHER)


# --- consent ---------------------------------------------------------------------------------


def test_consent_expires_after_30_s_and_not_before(ice: IceLite) -> None:
    assert CONSENT_TIMEOUT == 30.0  # RFC 7675 section 5.1
    assert ice.next_expiry() is None
    ice.receive(request(use_candidate=True), PEER, T0)
    assert ice.next_expiry() == T0 + 30
    assert ice.expired(T0 + 29.999) == []
    assert ice.selected(PID) == PEER
    assert ice.expired(T0 + 30) == [ConsentExpired(PID, PEER)]
    assert ice.selected(PID) is None
    assert ice.next_expiry() is None
    assert ice.expired(T0 + 60) == []


def test_consent_refreshed_by_checks_from_the_selected_address_only(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    ice.receive(request(), PEER, T0 + 20)  # a consent check (no USE-CANDIDATE) refreshes
    assert ice.next_expiry() == T0 + 50
    ice.receive(request(), OTHER, T0 + 40)  # from another address: no
    ice.receive(request(key=b"x" * 22), PEER, T0 + 45)  # unauthenticated: no
    ice.receive(_indication(), PEER, T0 + 45)  # a keepalive indication: no
    ice.receive(request(controlled=True), PEER, T0 + 45)  # a refused check: no
    assert ice.expired(T0 + 49.9) == []
    assert ice.expired(T0 + 50) == [ConsentExpired(PID, PEER)]


def test_consent_expires_per_participant(ice: IceLite) -> None:
    ice.add(9, "thrd", "thirdPasswordOf22chars", None)
    ice.receive(request(use_candidate=True), PEER, T0)
    ice.receive(
        request(username="othr:x123", key=b"anotherPasswordOf22chr", use_candidate=True),
        OTHER,
        T0 + 5,
    )
    ice.receive(
        request(username="thrd:x123", key=b"thirdPasswordOf22chars", use_candidate=True),
        ("192.0.2.99", 9),
        T0 + 10,
    )
    ice.receive(request(), PEER, T0 + 12)  # PID refreshed: now the latest
    assert ice.next_expiry() == T0 + 35
    assert ice.expired(T0 + 40) == [
        ConsentExpired(8, OTHER),
        ConsentExpired(9, ("192.0.2.99", 9)),
    ]
    assert ice.next_expiry() == T0 + 42
    assert ice.selected(PID) == PEER


def test_after_expiry_only_a_nomination_selects_again(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    ice.expired(T0 + 30)
    plain = ice.receive(request(), PEER, T0 + 31)
    assert plain.check is not None and plain.selected is None
    assert ice.selected(PID) is None and ice.next_expiry() is None
    again = ice.receive(request(use_candidate=True), PEER, T0 + 32)
    assert again.selected == AddressSelected(PID, PEER, previous=None)
    assert ice.next_expiry() == T0 + 62


# --- participants ----------------------------------------------------------------------------


def test_remove_forgets(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    assert PID in ice and len(ice) == 2
    assert ice.remove(PID) == PEER
    assert PID not in ice and len(ice) == 1
    assert ice.selected(PID) is None
    assert ice.next_expiry() is None and ice.expired(T0 + 100) == []
    assert ice.receive(request(), PEER, T0 + 1).outcome == DROP_UNKNOWN_UFRAG
    assert ice.remove(PID) is None
    # The ufrag is free again.
    ice.add(10, LOCAL_UFRAG, LOCAL_PWD, None)
    assert ice.receive(request(), PEER, T0 + 2).check == CheckSucceeded(10, PEER, False)


def test_add_again_is_an_ice_restart(ice: IceLite) -> None:
    ice.receive(request(use_candidate=True), PEER, T0)
    ice.add(PID, "nEw1", "restartedPasswordOf22c", "Brw2")
    assert ice.receive(request(), PEER, T0 + 1).outcome == DROP_UNKNOWN_UFRAG  # old ufrag
    # Media goes on to the selected address until the peer nominates with the new credentials.
    assert ice.selected(PID) == PEER
    check = request(username="nEw1:Brw2", key=b"restartedPasswordOf22c", use_candidate=True)
    assert ice.receive(check, OTHER, T0 + 2).selected == AddressSelected(PID, OTHER, PEER)


@pytest.mark.parametrize(
    ("ufrag", "pwd", "remote"),
    [
        ("abc", LOCAL_PWD, None),  # ufrag under 4 ice-chars
        ("ab:c", LOCAL_PWD, None),  # ':' is not an ice-char
        ("a" * 257, LOCAL_PWD, None),
        ("abcd", "short", None),  # password under 22
        ("abcd", "p" * 21 + "!", None),
        ("abcd", LOCAL_PWD, "x y z"),
        ("othr", LOCAL_PWD, None),  # participant 8's ufrag
    ],
)
def test_add_refuses(ice: IceLite, ufrag: str, pwd: str, remote: str | None) -> None:
    with pytest.raises(ValueError):
        ice.add(99, ufrag, pwd, remote)
    assert 99 not in ice


def test_many_participants() -> None:
    # One port, thousands of participants: each request is one dict lookup away from its key.
    ice = IceLite()
    for pid in range(3000):
        ice.add(pid, f"u{pid:05d}", f"password{pid:014d}", None)
    check = request(username="u02999:peer", key=b"password00000000002999", use_candidate=True)
    assert ice.receive(check, PEER, T0).selected == AddressSelected(2999, PEER, None)
    assert ice.receive(request(username="u03000:peer"), PEER, T0).outcome == DROP_UNKNOWN_UFRAG


def test_counters_name_every_outcome() -> None:
    assert set(IceLite().counters) == set(OUTCOMES)
    assert len(OUTCOMES) == len(set(OUTCOMES))


# --- properties ------------------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_receive_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    ice = IceLite()
    ice.add(PID, LOCAL_UFRAG, LOCAL_PWD, REMOTE_UFRAG)
    result = ice.receive(data, PEER, T0)
    assert result.response is None  # nothing unauthenticated is answered
    assert result.outcome in OUTCOMES


@SETTINGS
@given(
    use_candidate=st.booleans(),
    controlled=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 7)), min_size=1, max_size=4),
)
def test_damaged_checks_never_answered_unless_authentic(
    use_candidate: bool, controlled: bool, flips: list[tuple[int, int]]
) -> None:
    ice = IceLite()
    ice.add(PID, LOCAL_UFRAG, LOCAL_PWD, REMOTE_UFRAG)
    data = bytearray(request(use_candidate=use_candidate, controlled=controlled))
    for index, bit in flips:
        if index < len(data):
            data[index] ^= 1 << bit
    result = ice.receive(bytes(data), PEER, T0)
    if result.response is not None:
        # Only what still verifies under the participant's password is answered.
        assert stun.parse(bytes(data)).check_integrity(KEY)
    assert sum(ice.counters.values()) == 1


# --- end to end: aioice, a full agent, over UDP on 127.0.0.1 --------------------------------


class LiteServer(asyncio.DatagramProtocol):
    """The worker's part, reduced to a socket: each datagram to IceLite.receive, each response
    back to the sender."""

    def __init__(self, ice: IceLite) -> None:
        self.ice = ice
        self.results: list[IceResult] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        result = self.ice.receive(data, addr, asyncio.get_running_loop().time())
        self.results.append(result)
        if result.response is not None:
            self.transport.sendto(result.response, addr)


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # aioice gathers every interface's address but loopback's; this test wants only loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Give up soon on checks that are not answered: RFC 8489's 500 ms RTO and 7 tries, which
    # aioice follows, take 39.5 s.
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 0.05)
    monkeypatch.setattr(aioice.stun, "RETRY_MAX", 2)
    yield


async def connect_aioice(
    *, ice_controlling: bool, remote_is_lite: bool, password: str
) -> tuple[bool, IceLite, LiteServer, tuple[str, int]]:
    """Run aioice's connect() against an IceLite behind a UDP socket. Returns whether it
    connected, the agent, the server and aioice's own address."""
    loop = asyncio.get_running_loop()
    ice = IceLite()
    transport, server = await loop.create_datagram_endpoint(
        lambda: LiteServer(ice), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    conn = aioice.Connection(ice_controlling=ice_controlling, components=1, use_ipv6=False)
    try:
        ice.add(PID, LOCAL_UFRAG, LOCAL_PWD, conn.local_username)
        await conn.gather_candidates()
        [candidate] = conn.local_candidates
        # What the relay's SDP answer would say: a=ice-lite, its ufrag and pwd, one host
        # candidate, end of candidates.
        conn.remote_is_lite = remote_is_lite
        conn.remote_username = LOCAL_UFRAG
        conn.remote_password = password
        await conn.add_remote_candidate(
            aioice.Candidate(
                foundation="relay",
                component=1,
                transport="udp",
                priority=2130706431,
                host="127.0.0.1",
                port=port,
                type="host",
            )
        )
        await conn.add_remote_candidate(None)
        try:
            await asyncio.wait_for(conn.connect(), timeout=10)
            connected = True
        except ConnectionError:
            connected = False
        return connected, ice, server, (candidate.host, candidate.port)
    finally:
        await conn.close()
        transport.close()


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize("remote_is_lite", [True, False], ids=["regular", "aggressive"])
def test_aioice_connects(remote_is_lite: bool) -> None:
    # remote_is_lite: aioice nominates the regular way (a check, then the same with
    # USE-CANDIDATE), as RFC 8445 section 8.1.1 asks towards a lite agent; otherwise every
    # check nominates.
    connected, ice, server, address = asyncio.run(
        connect_aioice(ice_controlling=True, remote_is_lite=remote_is_lite, password=LOCAL_PWD)
    )
    assert connected
    assert ice.selected(PID) == address
    assert any(r.selected == AddressSelected(PID, address, None) for r in server.results)
    nominated = [r.check.nominated for r in server.results if r.check is not None]
    assert nominated[-1]
    assert all(nominated) != remote_is_lite  # regular: a check first, then the nomination
    assert sum(ice.counters.values()) == ice.counters[CHECK_VALID]


@pytest.mark.usefixtures("loopback", "impatient")
def test_aioice_wrong_password_fails() -> None:
    connected, ice, server, _ = asyncio.run(
        connect_aioice(ice_controlling=True, remote_is_lite=True, password="notTheRelayPassword123")
    )
    assert not connected
    assert ice.selected(PID) is None
    assert server.results and all(r.response is None for r in server.results)
    assert ice.counters[DROP_INTEGRITY] == len(server.results)


@pytest.mark.usefixtures("loopback")
def test_aioice_controlled_switches_role_on_487() -> None:
    # A full agent that starts controlled sends ICE-CONTROLLED: the 487 makes it take the
    # controlling role and check again (RFC 8445 section 7.2.5.1), and it connects.
    connected, ice, server, address = asyncio.run(
        connect_aioice(ice_controlling=False, remote_is_lite=True, password=LOCAL_PWD)
    )
    assert connected
    assert ice.counters[REFUSED_ROLE_CONFLICT] >= 1
    assert ice.selected(PID) == address
