"""A join costs the same at N = 10 and N = 1,000 (control/roster.py): it reads no row of the
participants already there, and neither do leaving, an expulsion or a role change. Counted as
the store hands rows back, so that any query over everyone shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control import auth
from control.limits import JoinLimits
from control.meetings import MeetingService
from control.store import SqliteStore
from relay.vocabulary import Address, Mode, Role
from relay.wire import Stream
from tests.test_meetings import Harness

pytestmark = pytest.mark.release_only  # tests/conftest.py: the store only, no packets

NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "ARGON2_MEMORY_KIB", 1024)


class CountingStore:
    """Counts the rows a store reads, however the service asks for them: every statement of
    every operation goes through its executor's fetch methods (in a transaction too)."""

    def __init__(self, store: SqliteStore) -> None:
        self.rows = 0
        executor = store._executor
        fetch_one, fetch_all = executor.fetch_one, executor.fetch_all

        async def counted_one(*args: Any, **kwargs: Any) -> Any:
            row = await fetch_one(*args, **kwargs)
            self.rows += row is not None
            return row

        async def counted_all(*args: Any, **kwargs: Any) -> Any:
            rows = await fetch_all(*args, **kwargs)
            self.rows += len(rows)
            return rows

        executor.fetch_one = counted_one  # type: ignore[method-assign]
        executor.fetch_all = counted_all  # type: ignore[method-assign]

    async def rows_read(self, action: Callable[[], Awaitable[object]]) -> int:
        before = self.rows
        await action()
        return self.rows - before


def service_at(store: SqliteStore) -> MeetingService:
    service = Harness(store).service
    service.rooms.limits = JoinLimits(joins_per_minute=1_000_000)
    return service


async def crowd(service: MeetingService, meeting_id: str, size: int) -> list[str]:
    """A webinar's crowd: `size` attendees, each with an address of its own."""
    ids = []
    for i in range(size):
        answer = await service.join(
            meeting_id,
            password="pw",
            name=f"a{i}",
            client_address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            now=NOW,
            receive_at=Address.parse(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5004"),
        )
        ids.append(answer["participant_id"])
    return ids


async def costs_at(tmp_path: Path, size: int) -> dict[str, int]:
    """Rows read by a join, a leave, an expulsion and a role change in a webinar of `size`."""
    async with await SqliteStore.open(tmp_path / f"r{size}.db") as store:
        counting = CountingStore(store)
        service = service_at(store)
        created = await service.create_meeting(
            "w", Mode.WEBINAR, password="pw", panelist_password="pp", now=NOW
        )
        meeting = created.meeting.id
        await service.join(
            meeting,
            password=None,
            name="host",
            client_address="10.255.0.1",
            now=NOW,
            role=Role.HOST,
            host_key=created.host_key,
            streams=[Stream(7, "audio")],
        )
        ids = await crowd(service, meeting, size)

        async def one_more() -> None:
            await service.join(
                meeting,
                password="pw",
                name="late",
                client_address="10.255.0.2",
                now=NOW,
                receive_at=Address.parse("10.255.0.2:5004"),
            )

        return {
            "join": await counting.rows_read(one_more),
            "leave": await counting.rows_read(
                lambda: service.participants.leave(meeting, ids[0], now=NOW + 1)
            ),
            "expel": await counting.rows_read(
                lambda: service.participants.update(
                    meeting, ids[1], now=NOW + 1, by="host", expel=True
                )
            ),
            "role change": await counting.rows_read(
                lambda: service.participants.update(
                    meeting, ids[2], now=NOW + 1, by="host", role=Role.PANELIST
                )
            ),
        }


def test_a_join_reads_the_same_rows_at_10_and_at_1000(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, int], dict[str, int]]:
        small = await costs_at(tmp_path, 10)
        large = await costs_at(tmp_path, 1000)
        return small, large

    small, large = asyncio.run(main())
    assert large == small, f"rows read at N = 10: {small}; at N = 1000: {large}"
    assert all(rows < 10 for rows in large.values()), large


def test_participants_are_listed_a_page_at_a_time(tmp_path: Path) -> None:
    """At 100,000 a list must come in pages: `limit` and `offset`, and a `Link` to the next
    page while pages come full (RFC 8288)."""
    from tests.test_api import OPERATOR, Api, run

    async def body(api: Api) -> None:
        m = await api.create(title="m", password="pw")
        ids = []
        for i in range(7):
            api.now += 1  # one after the other
            answer = await api.joined(m["id"], name=f"n{i}", password="pw", ssrcs=[i + 1])
            ids.append(answer["participant_id"])
        url = f"/v1/meetings/{m['id']}/participants"
        seen: list[str] = []
        links = []
        for offset in (0, 3, 6):
            r = await api.client.get(url, params={"limit": 3, "offset": offset}, headers=OPERATOR)
            assert r.status_code == 200, r.text
            seen += [p["id"] for p in r.json()]
            links.append(r.headers.get("link"))
        assert seen == ids  # in the order they joined, each once
        assert links[0] == f'<{url}?limit=3&offset=3>; rel="next"'
        assert links[2] is None  # the last page is not full
        everyone = await api.client.get(url, headers=OPERATOR)
        assert [p["id"] for p in everyone.json()] == ids
        r = await api.client.get(url, params={"limit": 1001}, headers=OPERATOR)
        assert r.status_code == 422

    run(tmp_path, body)


def test_registrants_are_listed_a_page_at_a_time(tmp_path: Path) -> None:
    from tests.test_api import OPERATOR, Api, run

    async def body(api: Api) -> None:
        w = await api.create(title="w", mode="webinar", password="pw")
        r = await api.client.put(
            f"/v1/meetings/{w['id']}/registration", json={"approval": "manual"}, headers=OPERATOR
        )
        assert r.status_code == 200, r.text
        url = f"/v1/meetings/{w['id']}/registrations"
        for i in range(5):
            api.now += 1
            form = {"first_name": f"F{i}", "last_name": "L", "email": f"p{i}@corp.example"}
            assert (await api.client.post(url, json=form)).status_code == 201
        pages = []
        for offset in (0, 2, 4):
            r = await api.client.get(url, params={"limit": 2, "offset": offset}, headers=OPERATOR)
            assert r.status_code == 200, r.text
            pages.append(([p["fields"]["first_name"] for p in r.json()], r.headers.get("link")))
        assert [names for names, _ in pages] == [["F0", "F1"], ["F2", "F3"], ["F4"]]
        assert pages[0][1] == f'<{url}?limit=2&offset=2>; rel="next"' and pages[2][1] is None

    run(tmp_path, body)
