"""Joining cannot turn the relay into a traffic cannon (docs/SECURITY.md, "Reflection"):
`receive_at` refuses what is not one listener's unicast address, a listener's address is
consented only by a caller at that address (or the operator's own service), and joins are
limited per meeting, per target address and per client (control/limits.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from control.limits import JoinLimits
from tests.test_api import OPERATOR, Api, run

pytestmark = pytest.mark.release_only  # tests/conftest.py: control plane only, no packets

REFUSED = [
    ("224.0.0.251:5004", "multicast"),
    ("[ff02::1]:5004", "multicast"),
    ("255.255.255.255:5004", "broadcast"),
    ("0.0.0.0:5004", "unspecified"),
    ("[::]:5004", "unspecified"),
    ("169.254.169.254:5004", "link-local"),  # where cloud metadata services answer
    ("[fe80::1]:5004", "link-local"),
    ("[::ffff:169.254.169.254]:5004", "link-local"),
    ("240.0.0.1:5004", "reserved"),
    ("127.0.0.1:80", "1024..65535"),
    ("127.0.0.1:1023", "1024..65535"),
]


@pytest.mark.parametrize(("receive_at", "word"), REFUSED)
def test_receive_at_refuses_what_is_not_one_listeners_address(
    tmp_path: Path, receive_at: str, word: str
) -> None:
    async def body(api: Api) -> None:
        m = await api.create(title="m", password="pw")
        r = await api.join(m["id"], name="n", password="pw", receive_at=receive_at)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid" and word in error["message"]
        assert receive_at.rpartition(":")[0].strip("[]") not in error["message"]  # not echoed

    run(tmp_path, body)


def test_only_a_caller_at_the_address_or_the_operator_consents_for_it(tmp_path: Path) -> None:
    """The routing update a worker gets says whether the address asked for media; a worker
    sends nothing to one that did not until an authenticated packet from it says so
    (tests/test_consent_and_squatting.py)."""

    async def body(api: Api) -> None:
        m = await api.create(title="m", password="pw")

        async def confirmed(client_ip: str, receive_at: str, **headers: str) -> bool:
            async with api.client_at(client_ip) as client:
                r = await client.post(
                    f"/v1/meetings/{m['id']}/join",
                    json={"name": "n", "password": "pw", "receive_at": receive_at},
                    headers=headers,
                )
            assert r.status_code == 201, r.text
            wire_id = await api.wire_id(r.json()["participant_id"])
            joined = api.plane.routing.state.participants[wire_id]
            assert joined.source_hint == client_ip
            return joined.address_confirmed

        assert await confirmed("198.51.100.7", "198.51.100.7:5004")
        assert await confirmed("198.51.100.7", "[::ffff:198.51.100.7]:5006")
        assert not await confirmed("198.51.100.7", "192.0.2.1:5004")  # someone else's
        assert not await confirmed("198.51.100.7", "127.0.0.1:5004")  # the relay's own host
        assert await confirmed("198.51.100.7", "192.0.2.1:5008", **OPERATOR)

    run(tmp_path, body)


def test_participants_per_meeting_are_limited(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        api.plane.service.rooms.limits = JoinLimits(max_participants=3)
        m = await api.create(title="m", password="pw")
        ids = [
            (await api.joined(m["id"], name=f"n{i}", password="pw"))["participant_id"]
            for i in range(3)
        ]
        r = await api.join(m["id"], name="four", password="pw")
        assert r.status_code == 409 and r.json()["error"]["code"] == "full"
        assert "3" in r.json()["error"]["message"]
        # One leaves (expelled): there is room again.
        path = f"/v1/meetings/{m['id']}/participants/{ids[0]}"
        assert (await api.client.patch(path, json={"expel": True}, headers=OPERATOR)).is_success
        assert (await api.join(m["id"], name="four", password="pw")).status_code == 201

    run(tmp_path, body)


def test_listeners_per_address_are_limited_over_all_meetings(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        api.plane.service.rooms.limits = JoinLimits(listeners_per_address=2)
        a = await api.create(title="a", password="pw")
        b = await api.create(title="b", password="pw")
        first = await api.joined(a["id"], name="1", password="pw", receive_at="127.0.0.1:5004")
        await api.joined(b["id"], name="2", password="pw", receive_at="127.0.0.1:6004")
        r = await api.join(b["id"], name="3", password="pw", receive_at="127.0.0.1:7004")
        assert r.status_code == 409 and r.json()["error"]["code"] == "too_many_listeners"
        # Another address is another count; an IPv6 /64 is one address.
        assert (
            await api.join(b["id"], name="4", password="pw", receive_at="127.0.0.2:7004")
        ).status_code == 201
        for host in ("2001:db8::1", "2001:db8::2"):
            r = await api.join(b["id"], name=host, password="pw", receive_at=f"[{host}]:5004")
            assert r.status_code == 201
        r = await api.join(b["id"], name="v6", password="pw", receive_at="[2001:db8::3]:5004")
        assert r.status_code == 409
        # A listener that leaves frees its place; so does the end of a meeting.
        path = f"/v1/meetings/{a['id']}/participants/{first['participant_id']}"
        assert (await api.client.patch(path, json={"expel": True}, headers=OPERATOR)).is_success
        assert (
            await api.join(b["id"], name="5", password="pw", receive_at="127.0.0.1:7004")
        ).status_code == 201
        assert (await api.client.post(f"/v1/meetings/{b['id']}/end", headers=OPERATOR)).is_success
        c = await api.create(title="c", password="pw")
        for port in (5004, 5006):
            await api.joined(c["id"], name=str(port), password="pw", receive_at=f"127.0.0.1:{port}")

    run(tmp_path, body)


def test_joins_per_client_are_limited_but_not_the_operators(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        api.plane.service.rooms.limits = JoinLimits(joins_per_minute=5)
        m = await api.create(title="m", password="pw")
        async with api.client_at("203.0.113.5") as client:
            url = f"/v1/meetings/{m['id']}/join"
            codes = [
                (await client.post(url, json={"name": "n", "password": "pw"})).status_code
                for _ in range(6)
            ]
            assert codes == [201] * 5 + [429]
            r = await client.post(url, json={"name": "n", "password": "pw"})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
            # The operator's service joining its users is not counted...
            for _ in range(3):
                r = await client.post(url, json={"name": "n", "password": "pw"}, headers=OPERATOR)
                assert r.status_code == 201
            # ...and the bucket refills: one join every 12 s at 5 a minute.
            api.now += 12.5
            assert (await client.post(url, json={"name": "n", "password": "pw"})).status_code == 201
        async with api.client_at("203.0.113.6") as other:  # another client, its own bucket
            assert (await other.post(url, json={"name": "n", "password": "pw"})).status_code == 201

    run(tmp_path, body)


def test_the_operators_service_joining_many_at_once_is_not_taken_for_a_guesser(
    tmp_path: Path,
) -> None:
    """Password checks in flight count as failures until they finish (so that guesses sent
    at once are throttled): a service with the operator token joining its users at once,
    which could change the password anyway, is not throttled for it."""
    import asyncio

    async def body(api: Api) -> None:
        async def at_once(password: str, **headers: str) -> list[int]:
            m = await api.create(title="m", password=password)  # nothing remembered of it
            url = f"/v1/meetings/{m['id']}/join"

            async def join(i: int) -> int:
                body = {"name": f"n{i}", "password": password}
                return (await api.client.post(url, json=body, headers=headers)).status_code

            return list(await asyncio.gather(*(join(i) for i in range(20))))

        assert await at_once("pw", **OPERATOR) == [201] * 20
        assert 429 in await at_once("pw2")  # from one address, unproven: throttled

    run(tmp_path, body)
