"""The meeting service (control/meetings.py): its rules with their status codes, keys that
decrypt, throttling, host controls, usage records, the audit entries and the restart path. The
service takes typed values: what the HTTP API refuses before calling it is tested in
tests/test_api.py."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control import auth
from control.answers import Media
from control.errors import (
    ApiError,
    Conflict,
    Ended,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    Throttled,
    Unauthorized,
)
from control.meetings import KeyBox, MeetingService
from control.routing import RoutingState
from control.store import SqliteStore
from control.store.schema import SCHEMA_VERSION
from control.usage import usage_figures
from relay import wire
from relay.srtp import Session
from relay.vocabulary import Address, Mode, Role, Suite
from relay.wire import Stream

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

BOX = KeyBox(b"k" * 32)
RTP = bytes([0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0x30, 0x39]) + b"payload!" * 4


class Harness:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.updates: list[wire.Update] = []
        self.state = RoutingState()
        self.service = MeetingService(
            store,
            self.publish,
            relay_host="127.0.0.1",
            media_port=40000,
            workers=2,
            key_box=BOX,
        )

    async def publish(self, update: wire.Update) -> int:
        self.updates.append(update)
        return self.state.apply(update)


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with await SqliteStore.open(tmp_path / "relay.db") as store:
            await body(Harness(store))

    asyncio.run(main())


def no_media(wire_id: int) -> Media:
    return {
        "address_known_at": None,
        "packets_in": 0,
        "bytes_in": 0,
        "packets_out": 0,
        "bytes_out": 0,
    }


def ssrcs(*numbers: int) -> list[Stream]:
    return [Stream(n) for n in numbers]


def raises(cls: type[ApiError], status: int, match: str) -> Any:
    assert cls.status == status
    return pytest.raises(cls, match=match)


# --- key box, usage arithmetic -------------------------------------------------------------


def test_key_box_binds_participant_and_hides_itself() -> None:
    sealed = BOX.seal(b"secret-key", "p1")
    assert b"secret-key" not in sealed
    assert BOX.unseal(sealed, "p1") == b"secret-key"
    with pytest.raises(ValueError, match="does not open"):
        BOX.unseal(sealed, "p2")
    with pytest.raises(ValueError, match="does not open"):
        KeyBox(b"x" * 32).unseal(sealed, "p1")
    assert "k" * 32 not in repr(BOX)
    with pytest.raises(ValueError):
        KeyBox(b"short")


def test_usage_figures_exact() -> None:
    # joins at 0, 10, 20; leaves at 30, (end), 40; end at 60
    total, peak, minutes = usage_figures([(0, 30), (10, None), (20, 40)], 0, 60)
    assert (total, peak) == (3, 3)
    assert minutes == pytest.approx((30 + 50 + 20) / 60)
    # back to back: a leave and a join at the same instant do not overlap
    assert usage_figures([(0, 10), (10, 20)], 0, 20)[1] == 1


# --- meetings ------------------------------------------------------------------------------


def test_create_validates_and_publishes(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        created = await svc.create_meeting("Town hall", Mode.WEBINAR, now=5)
        assert created.password and len(created.password) == 19  # generated, shown once
        assert created.host_key not in repr(created) and created.password not in repr(created)
        m = created.meeting
        assert m.wire_id == 1 and m.suite == "AES_CM_128_HMAC_SHA1_80" and m.state == "open"
        assert auth.verify_password(created.password, m.password_hash)
        assert auth.secret_matches(created.host_key, m.host_key_digest)
        assert h.updates == [wire.MeetingOpened(1, "webinar")]
        given = await svc.create_meeting("b", password="pw", now=6)
        assert given.password is None and given.meeting.wire_id == 2
        assert [x.id for x in await svc.list_meetings()] == [given.meeting.id, m.id]
        assert (await svc.update_meeting(m.id, title="New", now=0, by="host")).title == "New"
        with raises(NotFound, 404, "no such meeting"):
            await svc.get_meeting("nope")
        assert await svc.set_controls(m.id, locked=True, now=0, by="host") == {
            "locked": True,
            "recording": False,
        }
        await svc.delete_meeting(given.meeting.id, now=7)
        assert isinstance(h.updates[-1], wire.MeetingEnded)
        with raises(NotFound, 404, "no such meeting"):
            await svc.get_meeting(given.meeting.id)
        # wire ids are never reused after a delete
        third = await svc.create_meeting("c", password="pw", now=8)
        assert third.meeting.wire_id == 3

    run(tmp_path, body)


def test_authorize(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        operator = auth.new_secret()
        digest = auth.secret_digest(operator)
        a = await svc.create_meeting("a", password="pw", now=0)
        b = await svc.create_meeting("b", password="pw", now=0)
        assert await svc.admission.authorize(operator, None, digest) == "operator"
        assert await svc.admission.authorize(operator, a.meeting.id, digest) == "operator"
        assert await svc.admission.authorize(a.host_key, a.meeting.id, digest) == "host"
        with raises(Unauthorized, 401, "neither the operator token nor this meeting's host"):
            await svc.admission.authorize(a.host_key, b.meeting.id, digest)
        with raises(Unauthorized, 401, "not the operator token"):
            await svc.admission.authorize(a.host_key, None, digest)
        with raises(Unauthorized, 401, "missing token"):
            await svc.admission.authorize("", a.meeting.id, digest)

    run(tmp_path, body)


# --- joining -------------------------------------------------------------------------------


def test_join_answer_keys_decrypt_and_sdp(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        m = (await svc.create_meeting("m", password="pw", now=0)).meeting
        streams = [Stream(12345, "audio", 111, "opus/48000/2")]
        answer = await svc.join(
            m.id, password="pw", name="Ann", client_address="10.0.0.1", now=1, streams=streams
        )
        assert set(answer) == {
            "participant_id",
            "role",
            "relay",
            "srtp",
            "sdp",
            "recording",
            "ffmpeg",
            "node",
            "apis",
        }
        assert answer["node"] == "" and answer["apis"] == []  # a plane of its own
        assert answer["role"] == "panelist"  # the default in a meeting
        assert answer["relay"] == {"host": "127.0.0.1", "port": 40000}
        srtp = answer["srtp"]
        uplink = base64.b64decode(srtp["uplink"])
        downlink = base64.b64decode(srtp["downlink"])
        joined = h.updates[-1]
        assert isinstance(joined, wire.ParticipantJoined)
        assert joined.uplink == uplink and joined.downlink == downlink
        assert joined.meeting == m.wire_id and joined.participant == 1
        assert joined.streams == (wire.Stream(12345),)
        # what the participant protects, the relay (with the published key) unprotects
        packet = Session(srtp["suite"], uplink).protect(RTP)
        assert Session(joined.suite, joined.uplink).unprotect(packet) == RTP
        assert f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{srtp['downlink']}" in answer["sdp"]
        assert "c=IN IP4 127.0.0.1" in answer["sdp"] and "m=audio 40000 " in answer["sdp"]
        # keys are sealed in the store, never in clear
        row = await h.store.get_participant(answer["participant_id"])
        assert row is not None and uplink not in row.uplink_sealed
        assert srtp["uplink"] not in repr(row)
        # a listener: homed on the meeting's worker, its SDP lists the meeting's stream
        listener = await svc.join(
            m.id,
            password="pw",
            name="Bo",
            client_address="10.0.0.2",
            now=2,
            receive_at=Address.parse("127.0.0.1:5000"),
        )
        assert listener["relay"]["port"] == answer["relay"]["port"] == 40000
        assert "c=IN IP4 127.0.0.1" in listener["sdp"] and "m=audio 5000 " in listener["sdp"]
        assert "a=ssrc:12345" in listener["sdp"]
        assert listener["srtp"]["downlink"] in listener["sdp"]
        assert listener["srtp"]["uplink"] != srtp["uplink"]
        people = await svc.participants.list(m.id, media=no_media)
        assert [p["name"] for p in people] == ["Ann", "Bo"]
        text = repr(people)
        assert srtp["uplink"] not in text and "sealed" not in text

    run(tmp_path, body)


def test_join_rules(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        created = await svc.create_meeting(
            "w", Mode.WEBINAR, password="att", panelist_password="pan", now=0
        )
        mid, key = created.meeting.id, created.host_key

        async def join(**kw: Any) -> dict[str, Any]:
            args: dict[str, Any] = {"password": "att", "name": "n", "client_address": "1.1.1.1"}
            args.update(kw)
            return await svc.join(mid, now=1, **args)

        with raises(NotFound, 404, "no such meeting"):
            await svc.join("nope", password="x", name="n", client_address="1.1.1.1", now=1)
        # attendee by default in a webinar; may not send
        assert (await join())["role"] == "attendee"
        with raises(Forbidden, 403, "receive only"):
            await join(streams=ssrcs(7))
        # escalation: the attendee password never grants panelist or host
        with raises(Forbidden, 403, "wrong panelist password"):
            await join(role=Role.PANELIST)
        with raises(Forbidden, 403, "host key"):
            await join(role=Role.HOST)
        with raises(Forbidden, 403, "host key"):
            await join(role=Role.HOST, host_key="guess")
        assert (await join(role=Role.PANELIST, password="pan", streams=ssrcs(7)))[
            "role"
        ] == "panelist"
        with raises(Conflict, 409, "ssrc given is already used"):
            await join(role=Role.PANELIST, password="pan", streams=ssrcs(7))
        assert (await join(role=Role.HOST, host_key=key, password=None))["role"] == "host"
        # locked: 423 for everyone but the host with its key
        await svc.set_controls(mid, locked=True, now=0, by="host")
        with raises(Locked, 423, "locked"):
            await join()
        assert (await join(role=Role.HOST, host_key=key))["role"] == "host"
        # ended: 409
        await svc.end_meeting(mid, now=10, by="host")
        with raises(Ended, 409, "has ended"):
            await join()

    run(tmp_path, body)


def test_throttle_per_client(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        mid = (await svc.create_meeting("m", password="right", now=0)).meeting.id

        async def join(password: str, client: str, now: float) -> dict[str, Any]:
            return await svc.join(mid, password=password, name="n", client_address=client, now=now)

        for i in range(5):
            with raises(Forbidden, 403, "wrong meeting password"):
                await join("wrong", "10.0.0.9", 1 + i * 0.1)
        with raises(Throttled, 429, "from your address; try again") as info:
            await join("right", "10.0.0.9", 2)  # even the right password: locked out
        assert info.value.retry_after > 0
        with raises(Forbidden, 403, "wrong"):
            await join("wrong", "10.0.0.10", 2)
        assert (await join("right", "10.0.0.10", 2))["participant_id"]
        # after the lockout the client may try again
        assert (await join("right", "10.0.0.9", 2 + info.value.retry_after + 1))["role"]

    run(tmp_path, body)


def test_a_success_does_not_reset_the_failures(tmp_path: Path) -> None:
    """The attacker's review: an attendee who knows the attendee password guessed the panelist
    password, joining successfully between guesses to reset its count."""

    async def body(h: Harness) -> None:
        svc = h.service
        created = await svc.create_meeting(
            "w", Mode.WEBINAR, password="att", panelist_password="pan", now=0
        )
        mid = created.meeting.id

        async def join(address: str = "2001:db8::1", **kw: Any) -> dict[str, Any]:
            return await svc.join(mid, name="n", client_address=address, now=1, **kw)

        for i in range(4):
            with raises(Forbidden, 403, "wrong panelist password"):
                await join(role=Role.PANELIST, password=f"guess-{i}")
            assert (await join(password="att"))["role"] == "attendee"  # between guesses
        with raises(Forbidden, 403, "wrong panelist password"):
            await join(role=Role.PANELIST, password="guess-4")  # the fifth counts all the same
        with raises(Throttled, 429, "from your address; try again"):
            await join(role=Role.PANELIST, password="pan")
        with raises(Throttled, 429, "from your address"):  # the same /64 is the same client
            await join("2001:db8::ffff:2", password="att")
        assert (await join("2001:db8:0:1::1", password="att"))["role"] == "attendee"

    run(tmp_path, body)


def test_guesses_sent_all_at_once_are_counted_before_they_are_checked(tmp_path: Path) -> None:
    """Argon2 runs in a thread, so without counting the checks in flight a burst of guesses
    would all be checked before the first failure was counted."""

    async def body(h: Harness) -> None:
        svc = h.service
        mid = (await svc.create_meeting("m", password="right", now=0)).meeting.id

        async def outcomes(addresses: list[str]) -> dict[str, int]:
            results = await asyncio.gather(
                *(
                    svc.join(mid, password="wrong", name="n", client_address=a, now=1)
                    for a in addresses
                ),
                return_exceptions=True,
            )
            counts: dict[str, int] = {}
            for result in results:
                counts[type(result).__name__] = counts.get(type(result).__name__, 0) + 1
            return counts

        # 30 at once from one /64: 5 are checked, as if they had come one by one
        one_64 = [f"2001:db8::{i + 1:x}" for i in range(30)]
        assert await outcomes(one_64) == {"Forbidden": 5, "Throttled": 25}
        # 30 at once from 30 addresses: 10 more are checked without a proof of work (the
        # 5 above and 5 in flight reach the threshold), the rest are asked for one
        many = [f"10.1.0.{i}" for i in range(30)]
        assert await outcomes(many) == {"Forbidden": 5, "ProofOfWorkRequired": 25}
        assert svc.admission.join_throttle(mid, 1)["recent_failures"] == 10
        assert svc.admission.throttle._in_flight == {} and svc.admission.puzzles._in_flight == {}

    run(tmp_path, body)


def test_wrong_keys_and_tokens_throttle_only_their_client(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        created = await svc.create_meeting("m", password="pw", now=0)
        mid, key = created.meeting.id, created.host_key
        operator = auth.new_secret()
        digest = auth.secret_digest(operator)

        async def as_host(host_key: str, address: str) -> dict[str, Any]:
            return await svc.join(
                mid,
                password=None,
                name="h",
                role=Role.HOST,
                host_key=host_key,
                client_address=address,
                now=1,
            )

        for _ in range(5):
            with raises(Forbidden, 403, "host key"):
                await as_host("guess-" * 8, "10.0.0.1")
        with raises(Throttled, 429, "too many wrong keys or tokens from your address") as info:
            await as_host("guess-" * 8, "10.0.0.1")
        assert info.value.retry_after >= 1
        # The right key is checked first: it admits even this client.
        assert (await as_host(key, "10.0.0.1"))["role"] == "host"
        # Another client's wrong key is a plain 403, its right one admits.
        with raises(Forbidden, 403, "host key"):
            await as_host("guess-" * 8, "10.0.0.2")
        assert (await as_host(key, "10.0.0.2"))["role"] == "host"
        # Wrong keys are no password failures: the meeting is not under attack for them.
        assert svc.admission.join_throttle(mid, 1)["recent_failures"] == 0
        joined = await svc.join(mid, password="pw", name="a", client_address="10.0.0.3", now=1)
        assert joined["role"] == "panelist"
        # Asking to join as host without any key checks no secret: not counted.
        for _ in range(6):
            with raises(Forbidden, 403, "host key"):
                await svc.join(
                    mid, password=None, name="h", role=Role.HOST, client_address="10.0.0.4", now=1
                )

        # Bearer tokens: the same, per client.
        for _ in range(5):
            with raises(Unauthorized, 401, "neither the operator token"):
                await svc.admission.authorize(
                    "wrong", mid, digest, client_address="10.0.0.5", now=1
                )
        with raises(Throttled, 429, "wrong keys or tokens"):
            await svc.admission.authorize("wrong", mid, digest, client_address="10.0.0.5", now=1)
        assert await svc.admission.authorize(
            operator, mid, digest, client_address="10.0.0.5", now=1
        ) == ("operator")
        assert (
            await svc.admission.authorize(key, mid, digest, client_address="10.0.0.5", now=1)
            == "host"
        )
        with raises(Unauthorized, 401, "not the operator token"):
            await svc.admission.authorize("wrong", None, digest, client_address="10.0.0.6", now=1)

    run(tmp_path, body)


# --- host controls -------------------------------------------------------------------------


def test_mute_expel_promote(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        mid = (await svc.create_meeting("w", Mode.WEBINAR, password="att", now=0)).meeting.id
        a = await svc.join(mid, password="att", name="a", client_address="1.1.1.1", now=1)
        pid = a["participant_id"]
        row = await h.store.get_participant(pid)
        assert row is not None
        wid = row.wire_id

        await svc.participants.update(mid, pid, muted=True, now=2, by="host")
        assert h.updates[-1] == wire.ParticipantMuted(wid, True)

        before = len(h.updates)
        promoted = await svc.participants.update(mid, pid, role=Role.PANELIST, now=3, by="host")
        assert promoted["role"] == "panelist"
        new_up = base64.b64decode(promoted["srtp"]["uplink"])
        assert promoted["srtp"]["uplink"] != a["srtp"]["uplink"]
        assert promoted["srtp"]["downlink"] != a["srtp"]["downlink"]
        assert promoted["srtp"]["downlink"] in promoted["sdp"]
        left, joined, muted = h.updates[before:]
        assert left == wire.ParticipantLeft(wid)
        assert isinstance(joined, wire.ParticipantJoined)
        assert joined.participant == wid and joined.role == "panelist" and joined.uplink == new_up
        assert muted == wire.ParticipantMuted(wid, True)  # still muted after the re-join

        with raises(NotFound, 404, "no such participant"):
            await svc.participants.update(mid, "nope", muted=True, now=3, by="host")

        await svc.participants.update(mid, pid, expel=True, now=4, by="host")
        assert h.updates[-1] == wire.ParticipantEjected(wid)
        with raises(Conflict, 409, "expelled"):
            await svc.participants.update(mid, pid, muted=False, now=5, by="host")
        assert h.state.snapshot().ejected == (wid,)
        # rejoining as a new participant is allowed, until the host locks
        again = await svc.join(mid, password="att", name="a", client_address="1.1.1.1", now=6)
        assert again["participant_id"] != pid
        await svc.set_controls(mid, locked=True, now=0, by="host")
        with raises(Locked, 423, "locked"):
            await svc.join(mid, password="att", name="a", client_address="1.1.1.1", now=7)

    run(tmp_path, body)


# --- usage ---------------------------------------------------------------------------------


def test_end_meeting_writes_one_usage_record(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        mid = (await svc.create_meeting("w", Mode.WEBINAR, password="pw", now=0)).meeting.id
        await svc.set_controls(mid, recording=True, now=0, by="host")
        await svc.set_controls(mid, recording=False, now=0, by="host")
        ids = []
        for t in (0, 10, 20):
            answer = await svc.join(mid, password="pw", name="n", client_address="2.2.2.2", now=t)
            ids.append(answer["participant_id"])
        await svc.participants.leave(mid, ids[0], now=30)
        await svc.participants.update(mid, ids[2], expel=True, now=40, by="host")
        totals = {"packets_in": 7, "bytes_in": 900}
        record = await svc.end_meeting(mid, now=60, totals=lambda ids: totals, by="host")
        assert isinstance(h.updates[-1], wire.MeetingEnded)
        assert (record.started_at, record.ended_at, record.duration_s) == (0, 60, 60)
        assert (record.total_participants, record.peak_participants) == (3, 3)
        assert record.participant_minutes == pytest.approx((30 + 50 + 20) / 60)
        assert record.features == ("recording", "webinar")
        assert (record.packets_in, record.bytes_in, record.packets_out) == (7, 900, 0)
        assert await svc.list_usage(mid) == [record]
        with raises(Ended, 409, "has ended"):
            await svc.end_meeting(mid, now=61, by="host")
        with raises(Ended, 409, "has ended"):
            await svc.set_controls(mid, locked=True, now=0, by="host")

    run(tmp_path, body)


def test_features_used_survive_a_restart(tmp_path: Path) -> None:
    """Recording or locking switched on and off again is billed even when the control plane
    restarts in between: the features are in the store, not in the service's memory."""
    path = tmp_path / "relay.db"

    async def before() -> dict[str, str]:
        async with await SqliteStore.open(path) as store:
            svc = Harness(store).service
            made = {
                name: (await svc.create_meeting(name, password="pw", now=0)).meeting.id
                for name in ("recorded", "locked", "both", "plain", "still_locked")
            }
            await svc.set_controls(made["recorded"], recording=True, now=0, by="host")
            await svc.set_controls(made["recorded"], recording=False, now=0, by="host")
            await svc.set_controls(made["locked"], locked=True, now=0, by="host")
            await svc.set_controls(made["locked"], locked=False, now=0, by="host")
            await svc.set_controls(made["both"], locked=True, recording=True, now=0, by="host")
            await svc.set_controls(made["both"], locked=False, recording=False, now=0, by="host")
            await svc.set_controls(made["plain"], locked=False, recording=False, now=0, by="host")
            await svc.set_controls(made["still_locked"], locked=True, now=0, by="host")
            stored = await store.get_meeting(made["both"])
            assert stored is not None and stored.features == ("locked", "recording")
            assert not stored.locked and not stored.recording
            return made

    async def after(made: dict[str, str]) -> None:
        async with await SqliteStore.open(path) as store:
            svc = Harness(store).service  # a new service: nothing in memory
            features = {
                name: (await svc.end_meeting(mid, now=60, by="host")).features
                for name, mid in made.items()
            }
            assert features == {
                "recorded": ("recording",),
                "locked": ("locked",),
                "both": ("locked", "recording"),
                "plain": (),
                "still_locked": ("locked",),
            }
            assert [u.features for u in await svc.list_usage(made["recorded"])] == [("recording",)]

    made = asyncio.run(before())
    asyncio.run(after(made))


# --- restart -------------------------------------------------------------------------------


def test_restart_rebuilds_the_routing_state(tmp_path: Path) -> None:
    async def main() -> None:
        async with await SqliteStore.open(tmp_path / "relay.db") as store:
            h = Harness(store)
            svc = h.service
            m1 = (await svc.create_meeting("a", password="pw", now=0)).meeting.id
            m2 = (await svc.create_meeting("b", Mode.WEBINAR, password="pw", now=0)).meeting.id
            m3 = (await svc.create_meeting("c", password="pw", now=0)).meeting.id
            a = await svc.join(
                m1, password="pw", name="a", client_address="1.1.1.1", now=1, streams=ssrcs(11, 12)
            )
            await svc.join(
                m1,
                password="pw",
                name="b",
                client_address="1.1.1.1",
                now=1,
                receive_at=Address.parse("127.0.0.1:6000"),
            )
            c = await svc.join(m2, password="pw", name="c", client_address="1.1.1.1", now=1)
            d = await svc.join(m2, password="pw", name="d", client_address="1.1.1.1", now=1)
            await svc.participants.update(m1, a["participant_id"], muted=True, now=2, by="host")
            await svc.participants.update(m2, c["participant_id"], expel=True, now=2, by="host")
            await svc.participants.update(
                m2, d["participant_id"], role=Role.PANELIST, now=2, by="host"
            )
            await svc.end_meeting(m3, now=3, by="host")
            old = h.state.snapshot()
        async with await SqliteStore.open(tmp_path / "relay.db") as store:
            svc2 = MeetingService(
                store,
                Harness(store).publish,
                relay_host="127.0.0.1",
                media_port=40000,
                workers=2,
                key_box=KeyBox(b"k" * 32),
            )
            new = (await svc2.routing_snapshot_state(seq=old.seq)).snapshot()
        # ended meetings carry no media and are left out; everything else is identical
        open_meetings = tuple(m for m in old.meetings if m.meeting not in old.ended)
        assert sorted(new.meetings, key=lambda m: m.meeting) == sorted(
            open_meetings, key=lambda m: m.meeting
        )
        key = lambda p: p.participant  # noqa: E731
        # What the store does not keep: a join's consent and the IP it came from (workers
        # remember a consent in their ledger, relay/ledger.py).
        unstored = {"address_confirmed": False, "source_hint": None}
        before = [dataclasses.replace(p, **unstored) for p in old.participants]
        assert sorted(new.participants, key=key) == sorted(before, key=key)
        assert (new.muted, new.ejected, new.seq) == (old.muted, old.ejected, old.seq)
        assert len(new.participants) == 4

    asyncio.run(main())


def test_schema_v1_database_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.executescript(
        """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE meetings (id TEXT PRIMARY KEY, title TEXT NOT NULL, mode TEXT NOT NULL,
            suite TEXT NOT NULL, password_hash TEXT NOT NULL, panelist_password_hash TEXT,
            host_key_digest TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'open',
            locked BOOLEAN NOT NULL DEFAULT FALSE, recording BOOLEAN NOT NULL DEFAULT FALSE,
            created_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION);
        CREATE TABLE participants (id TEXT PRIMARY KEY, meeting_id TEXT NOT NULL
            REFERENCES meetings (id) ON DELETE CASCADE, name TEXT NOT NULL, role TEXT NOT NULL,
            streams TEXT NOT NULL DEFAULT '[]', receive_at TEXT, uplink_sealed BLOB NOT NULL,
            downlink_sealed BLOB NOT NULL, worker INTEGER NOT NULL,
            muted BOOLEAN NOT NULL DEFAULT FALSE, expelled BOOLEAN NOT NULL DEFAULT FALSE,
            joined_at DOUBLE PRECISION NOT NULL, left_at DOUBLE PRECISION);
        INSERT INTO meetings (id, title, mode, suite, password_hash, host_key_digest, created_at)
            VALUES ('m1', 't', 'meeting', 'AEAD_AES_128_GCM', 'h', 'd', 1.0),
            ('m2', 't', 'meeting', 'AEAD_AES_128_GCM', 'h', 'd', 2.0);
        INSERT INTO participants (id, meeting_id, name, role, uplink_sealed, downlink_sealed,
            worker, joined_at) VALUES ('p1', 'm2', 'n', 'host', x'01', x'02', 0, 3.0);
        """
    )
    raw.commit()
    raw.close()

    async def main() -> None:
        async with await SqliteStore.open(path) as store:
            m1, m2 = await store.get_meeting("m1"), await store.get_meeting("m2")
            p1 = await store.get_participant("p1")
            assert m1 is not None and m2 is not None and p1 is not None
            assert (m1.wire_id, m2.wire_id, p1.wire_id) == (1, 2, 1)
            assert m1.features == m2.features == ()
            assert m1.registration is None and await store.list_registrations("m1") == []
            m3 = await store.create_meeting(
                title="t",
                mode=Mode.MEETING,
                suite=Suite.AEAD_AES_128_GCM,
                password_hash="h",
                host_key_digest="d",
            )
            assert m3.wire_id == 3

    asyncio.run(main())
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    raw.close()


def test_a_listener_gets_each_described_stream_on_its_own_port_also_after_restart(
    tmp_path: Path,
) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        m = (await svc.create_meeting("av", Mode.MEETING, password="pw", now=0)).meeting
        audio = Stream(0xA0, "audio", 111, "opus/48000/2")
        video = Stream(0xB0, "video", 96, "VP8/90000")
        await svc.join(m.id, password="pw", name="A", client_address="1", now=1, streams=[audio])
        await svc.join(m.id, password="pw", name="V", client_address="1", now=2, streams=[video])
        answer = await svc.join(
            m.id,
            password="pw",
            name="L",
            client_address="1",
            now=3,
            receive_at=Address.parse("127.0.0.1:7000"),
        )
        await svc.join(
            m.id, password="pw", name="X", client_address="1", now=4, streams=ssrcs(0xC0)
        )
        sdp = answer["sdp"]
        assert "m=audio 7000 " in sdp and "m=video 7002 " in sdp and "7004" not in sdp
        listener = next(u for u in h.updates if isinstance(u, wire.ParticipantJoined) and u.address)
        assert listener.receive_ports == ((0xA0, 7000), (0xB0, 7002))
        # A restarted control plane rebuilds the same routing from the store.
        rebuilt = await svc.routing_snapshot_state()
        assert rebuilt.participants[listener.participant].receive_ports == (
            (0xA0, 7000),
            (0xB0, 7002),
        )
        assert wire.decode(wire.encode(listener)) == listener

    run(tmp_path, body)


def test_a_participant_may_bring_its_own_sending_key(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        svc = h.service
        m = (await svc.create_meeting("sdes", Mode.MEETING, password="pw", now=0)).meeting
        own = bytes(range(1, 31))
        text = base64.b64encode(own).decode().rstrip("=")  # rtpengine omits the padding
        answer = await svc.join(
            m.id, password="pw", name="E", client_address="1", now=1, streams=ssrcs(5), uplink=text
        )
        assert base64.b64decode(answer["srtp"]["uplink"]) == own
        joined = h.updates[-1]
        assert isinstance(joined, wire.ParticipantJoined) and joined.uplink == own
        assert joined.downlink != own  # what it receives with is always generated
        for bad, why in (
            (base64.b64encode(bytes(range(20))).decode(), "needs 30 bytes"),
            (base64.b64encode(bytes(30)).decode(), "not a random key"),
            ("%%%", "base64"),
            (text + "|1:4", "MKI"),
        ):
            with raises(Invalid, 422, why):
                await svc.join(m.id, password="pw", name="E", client_address="1", now=2, uplink=bad)

    run(tmp_path, body)
