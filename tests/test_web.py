"""The web console's server side, over HTTP against `relay serve`: the pages and their headers
(Content-Security-Policy, no inline script, nothing of the request written into a page), the
calls they make that are new (the lobby, a meeting's usage so far, the node's status), and the
event streams (control/api/live.py): what they send, that a change reaches them within a
second, that they refuse without the credential, and that they do not hold up a stop.
Browsers drive the pages themselves in tests/test_web_browsers.py."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection

from control import puzzle
from control.web.pages import ASSETS
from relay._core import DROP_NAMES
from tests.test_serve import Serve, create_webinar, join, start_serve, stop_serve
from tests.test_whip import loopback, offer, post  # noqa: F401 (loopback: an autouse fixture)

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

PASSWORD = "pw"
PAGES = ["/m/some-meeting", "/host/some-meeting", "/admin"]


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = start_serve(tmp_path_factory.mktemp("web") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


# -- the pages --


@pytest.mark.parametrize("path", PAGES)
def test_a_page_is_served_with_its_security_headers(serve: Serve, path: str) -> None:
    r = httpx.get(serve.url + path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "worker-src 'self'" in policy
    assert "unsafe-eval" not in policy
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in r.headers  # nothing a cross-site request could ride on
    # A static file: the id in the address is read by the page's script, never written into
    # the page by the server.
    assert "some-meeting" not in r.text


def test_pages_hold_no_inline_script_or_style() -> None:
    """What the policy forbids, the pages must not need: every script is a file of the page's
    origin, no element has an event handler attribute or a style attribute."""
    for page in ASSETS.glob("*.html"):
        text = page.read_text()
        scripts = re.findall(r"<script([^>]*)>", text)
        assert scripts and all('src="/assets/' in s for s in scripts), page.name
        assert not re.search(r"\son[a-z]+=", text), page.name
        assert " style=" not in text, page.name
        assert '<html lang="en">' in text and 'name="viewport"' in text, page.name


def test_scripts_never_parse_markup_or_put_credentials_in_addresses() -> None:
    for script in ASSETS.glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, script.name
        assert "document.write" not in text and "eval(" not in text, script.name
        assert "localStorage" not in text, script.name  # credentials live for the tab only
        # A credential travels in the Authorization header, never in a query string.
        assert not re.search(r"[?&](token|key|password|host_key)=", text), script.name


def test_assets_are_served_and_nothing_else(serve: Serve) -> None:
    r = httpx.get(serve.url + "/assets/relay.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "relay.call" in r.text
    assert httpx.get(serve.url + "/assets/style.css").headers["content-type"].startswith("text/css")
    for name in ("pages.py", "..%2Fpages.py", "missing.js", "..%2F__init__.py"):
        r = httpx.get(serve.url + "/assets/" + name)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", name


# -- the calls the pages make --


def test_the_lobby_says_what_a_joiner_must_know(serve: Serve) -> None:
    meeting, host_key = create_webinar(serve, PASSWORD)
    lobby = httpx.get(f"{serve.url}/v1/meetings/{meeting}/lobby").json()  # no credential
    assert lobby == {
        "id": meeting,
        "title": "webinar",
        "mode": "webinar",
        "state": "open",
        "locked": False,
        "recording": False,
        "registration": False,
    }
    host = {"Authorization": f"Bearer {host_key}"}
    controls = {"locked": True, "recording": True}
    r = httpx.put(f"{serve.url}/v1/meetings/{meeting}/controls", json=controls, headers=host)
    assert r.status_code == 200, r.text
    r = httpx.put(
        f"{serve.url}/v1/meetings/{meeting}/registration",
        json={"enabled": True, "approval": "manual"},
        headers=host,
    )
    assert r.status_code == 200, r.text
    lobby = httpx.get(f"{serve.url}/v1/meetings/{meeting}/lobby").json()
    assert lobby["locked"] and lobby["recording"] and lobby["registration"]
    assert "host_key" not in json.dumps(lobby) and "password" not in json.dumps(lobby)
    httpx.post(f"{serve.url}/v1/meetings/{meeting}/end", headers=host)
    assert httpx.get(f"{serve.url}/v1/meetings/{meeting}/lobby").json()["state"] == "ended"
    r = httpx.get(f"{serve.url}/v1/meetings/no-such-meeting/lobby")
    assert r.status_code == 404 and "no-such" not in r.text


def test_a_meetings_usage_so_far_then_its_record(serve: Serve) -> None:
    meeting, host_key = create_webinar(serve, PASSWORD)
    host = {"Authorization": f"Bearer {host_key}"}
    with serve.api() as api:
        people = [join(api, meeting, name, None) for name in ("ada", "bob")]
    assert httpx.get(f"{serve.url}/v1/meetings/{meeting}/usage").status_code == 401
    usage = httpx.get(f"{serve.url}/v1/meetings/{meeting}/usage", headers=host).json()
    assert usage["final"] is False
    assert usage["present"] == 2 and usage["total_participants"] == 2
    assert usage["peak_participants"] == 2 and "webinar" in usage["features"]
    assert usage["duration_s"] >= 0
    ended = httpx.post(f"{serve.url}/v1/meetings/{meeting}/end", headers=host).json()
    usage = httpx.get(f"{serve.url}/v1/meetings/{meeting}/usage", headers=host).json()
    assert usage["final"] is True and usage["present"] == 0
    assert len(people) == 2
    record = ended["usage"]
    for field in ("total_participants", "peak_participants", "duration_s", "packets_out"):
        assert usage[field] == record[field], field


def test_the_status_is_for_the_operator_alone(serve: Serve) -> None:
    meeting, host_key = create_webinar(serve, PASSWORD)
    assert httpx.get(f"{serve.url}/v1/status").status_code == 401
    refused = httpx.get(f"{serve.url}/v1/status", headers={"Authorization": f"Bearer {host_key}"})
    assert refused.status_code == 401
    deadline = time.monotonic() + 5
    with serve.api() as api:
        status = api.get("/v1/status").json()
        while not status["workers"]:  # a worker reports once a second from its start
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = api.get("/v1/status").json()
    assert [w["worker"] for w in status["workers"]] == [0]
    assert status["workers"][0]["up"] is True
    assert meeting in [m["id"] for m in status["meetings"]]
    assert status["present"][meeting] == 0
    assert all(m["state"] == "ended" for m in status["ended"])
    assert status["health"]["workers_expected"] == 1
    assert set(status["drops"]) == set(DROP_NAMES)  # every reason, in the fast path's words


# -- event streams --


class Events(threading.Thread):
    """An event stream read in the background: each (event, data, when) as it arrives."""

    def __init__(self, url: str, token: str | None) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.received: list[tuple[str, Any, float]] = []
        self.status = 0
        self.ended = threading.Event()

    def run(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=30) as r:
                self.status = r.status_code
                assert r.headers["content-type"].startswith("text/event-stream")
                event = ""
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.received.append((event, json.loads(line[6:]), time.monotonic()))
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_for(self, event: str, ok: Any = lambda data: True, limit: float = 5.0) -> float:
        """When the first `event` whose data satisfies `ok` arrived."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for name, data, at in list(self.received):
                if name == event and ok(data):
                    return at
            time.sleep(0.02)
        raise AssertionError(f"no {event} event: {[e[:2] for e in self.received]}")


def streamed(url: str, token: str | None) -> Events:
    events = Events(url, token)
    events.start()
    return events


def test_a_meetings_stream_sends_changes_within_a_second(serve: Serve) -> None:
    meeting, host_key = create_webinar(serve, PASSWORD)
    events = streamed(f"{serve.url}/v1/meetings/{meeting}/events", host_key)
    events.wait_for("meeting", lambda m: m["id"] == meeting and not m["locked"])
    events.wait_for("participants", lambda p: p["count"] == 0)
    events.wait_for("usage", lambda u: u["present"] == 0)

    host = {"Authorization": f"Bearer {host_key}"}
    asked = time.monotonic()
    httpx.put(f"{serve.url}/v1/meetings/{meeting}/controls", json={"locked": True}, headers=host)
    assert events.wait_for("meeting", lambda m: m["locked"]) - asked < 1.0
    httpx.put(f"{serve.url}/v1/meetings/{meeting}/controls", json={"locked": False}, headers=host)
    asked = time.monotonic()
    with serve.api() as api:
        ada = join(api, meeting, "ada", None)
    arrived = events.wait_for("participants", lambda p: [i["name"] for i in p["items"]] == ["ada"])
    assert arrived - asked < 1.0 and ada.id
    # Sent again only when something changed: one `meeting` event per change, not per tick.
    time.sleep(1.5)
    meetings = [e for e in events.received if e[0] == "meeting"]
    assert len(meetings) == 3, meetings
    httpx.post(f"{serve.url}/v1/meetings/{meeting}/end", headers=host)
    events.wait_for("meeting", lambda m: m["state"] == "ended")
    events.wait_for("usage", lambda u: u["final"])


def test_streams_refuse_without_their_credential(serve: Serve) -> None:
    meeting, host_key = create_webinar(serve, PASSWORD)
    other, _ = create_webinar(serve, PASSWORD)
    for url, token, status in (
        (f"/v1/meetings/{meeting}/events", None, 401),
        (f"/v1/meetings/{meeting}/events", PASSWORD, 401),  # the password is no host key
        (f"/v1/meetings/{other}/events", host_key, 401),  # another meeting's key
        ("/v1/events", host_key, 401),
        (f"/v1/meetings/{meeting}/webrtc/1/{'0' * 36}/events", None, 404),
    ):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.get(serve.url + url, headers=headers)
        assert r.status_code == status, (url, r.text)
        assert r.headers["content-type"] == "application/json"


def test_the_operators_stream_shows_packets_moving(serve: Serve) -> None:
    meeting, _ = create_webinar(serve, PASSWORD)
    events = streamed(f"{serve.url}/v1/events", serve.token)
    first = events.wait_for("status", lambda s: meeting in s["present"])
    assert events.wait_for("status", lambda s: s["at"] > 0) <= first
    # One status a second: the packet totals move by themselves.
    time.sleep(2.2)
    statuses = [d for e, d, _ in events.received if e == "status"]
    assert len(statuses) >= 2
    assert statuses[-1]["at"] > statuses[0]["at"]


def test_a_webrtc_sessions_stream_says_expelled_within_a_second(serve: Serve) -> None:
    """The WHEP answer names the session's event stream (Link, WHEP's server-sent events
    extension); its `state` turns to expelled within a second of the host's call, and the
    stream ends."""
    meeting, host_key = create_webinar(serve, PASSWORD)

    async def whep() -> httpx.Response:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="recvonly")
        try:
            return await post(serve, f"/v1/meetings/{meeting}/whep", await offer(pc), PASSWORD)
        finally:
            await pc.close()

    answer = asyncio.run(whep())
    assert answer.status_code == 201, answer.text
    location = answer.headers["location"]
    link = answer.headers["link"]
    assert link == (
        f'<{location}/events>; rel="urn:ietf:params:whep:ext:core:server-sent-events"; '
        'events="state"'
    )
    events = streamed(f"{serve.url}{location}/events", None)
    events.wait_for(
        "state",
        lambda s: (
            s
            == {
                "state": "present",
                "role": "attendee",
                "muted": False,
                "recording": False,
                "streams": [],
            }
        ),
    )
    # A presenter starts: the viewer is told of its stream (its answer could not hold it).
    with serve.api() as api:
        presenter = join(api, meeting, "presenter", 0x5EED, role="host", host_key=host_key)
    assert events.wait_for("state", lambda s: s["streams"] == [{"ssrc": 0x5EED, "kind": "audio"}])
    assert presenter.id
    participant = location.split("/")[-2]
    asked = time.monotonic()
    r = httpx.patch(
        f"{serve.url}/v1/meetings/{meeting}/participants/{participant}",
        json={"expel": True},
        headers={"Authorization": f"Bearer {host_key}"},
    )
    assert r.status_code == 200, r.text
    assert events.wait_for("state", lambda s: s["state"] == "expelled") - asked < 1.0
    assert events.ended.wait(2), "the stream did not end after saying expelled"
    # A token of another session opens nothing.
    other = location.rsplit("/", 1)[0] + "/" + "0" * 36
    assert httpx.get(f"{serve.url}{other}/events").status_code == 404


def test_open_streams_do_not_hold_up_a_stop(tmp_path: Path) -> None:
    s = start_serve(tmp_path / "data", 1)
    try:
        meeting, host_key = create_webinar(s, PASSWORD)
        streams = [
            streamed(f"{s.url}/v1/meetings/{meeting}/events", host_key),
            streamed(f"{s.url}/v1/events", s.token),
        ]
        streams[0].wait_for("meeting")
        streams[1].wait_for("status")
    finally:
        asked = time.monotonic()
        assert stop_serve(s) == 143  # 128 + SIGTERM: stopped by the signal, cleanly
    assert time.monotonic() - asked < 5.0
    for stream in streams:
        assert stream.ended.wait(2)


def test_a_whep_join_under_attack_carries_its_proof_in_a_header(tmp_path: Path) -> None:
    """A meeting that saw 10 wrong passwords asks every password join for a proof of work; a
    WHEP POST gets the challenge in its 428 and sends the proof in Relay-Proof-Of-Work (the
    join page does this in a Web Worker: tests/test_web_browsers.py)."""
    s = start_serve(tmp_path / "data", 1, "--trusted-proxies", "127.0.0.1/32")
    try:
        meeting, _ = create_webinar(s, PASSWORD)
        for i in range(10):  # guesses from ten other addresses, through the trusted proxy
            r = httpx.post(
                f"{s.url}/v1/meetings/{meeting}/join",
                json={"name": "guesser", "password": f"guess {i}"},
                headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
            )
            assert r.status_code == 403, r.text

        async def whep(proof: str | None) -> httpx.Response:
            pc = RTCPeerConnection()
            pc.addTransceiver("audio", direction="recvonly")
            headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {PASSWORD}"}
            if proof is not None:
                headers["Relay-Proof-Of-Work"] = proof
            try:
                async with httpx.AsyncClient(base_url=s.url, timeout=10) as client:
                    return await client.post(
                        f"/v1/meetings/{meeting}/whep", content=await offer(pc), headers=headers
                    )
            finally:
                await pc.close()

        asked = asyncio.run(whep(None))
        assert asked.status_code == 428, asked.text
        puzzle_ = asked.json()["error"]
        assert puzzle_["code"] == "proof_of_work_required" and puzzle_["difficulty"] >= 12
        for bad in ("no-nonces", f"{puzzle_['challenge']} 1,x", f"{puzzle_['challenge']} -1"):
            r = asyncio.run(whep(bad))
            assert r.status_code == 422 and "Relay-Proof-Of-Work" in r.json()["error"]["message"]
        # A wrong proof is answered with a fresh challenge, as a JSON join's is.
        r = asyncio.run(whep(f"{puzzle_['challenge']} 1,2,3"))
        assert r.status_code == 428, r.text
        fresh = r.json()["error"]
        nonces = puzzle.solve(fresh["challenge"], fresh["difficulty"], fresh["solutions"])
        r = asyncio.run(whep(f"{fresh['challenge']} {','.join(map(str, nonces))}"))
        assert r.status_code == 201, r.text
    finally:
        stop_serve(s)


def test_a_change_wakes_the_streams_of_its_meeting_alone() -> None:
    """A join in one webinar wakes that webinar's streams (and the operator's), not every
    viewer on the node; streams woken by one change share one read."""
    from control.live import NODE, Changes, meeting_subjects

    async def scenario() -> None:
        changes = Changes()
        a, b = meeting_subjects("A", 1), meeting_subjects("B", 2)

        async def woken(subjects: tuple[object, ...], timeout: float = 0.5) -> float:
            started = time.monotonic()
            await changes.wait(subjects, changes.version_of(subjects), timeout)
            return time.monotonic() - started

        waiting = [asyncio.create_task(woken(s)) for s in (a, b, (NODE,))]
        await asyncio.sleep(0.05)
        changes.wire_changed(1)  # a routing update of meeting A (wire id 1)
        took_a, took_b, took_node = await asyncio.gather(*waiting)
        assert took_a < 0.1 and took_node < 0.1
        assert took_b >= 0.45  # B's viewers slept to their tick
        waiting = [asyncio.create_task(woken(s)) for s in (a, b)]
        await asyncio.sleep(0.05)
        changes.meeting_changed("B")  # an audit entry of meeting B (locked, say)
        took_a, took_b = await asyncio.gather(*waiting)
        assert took_b < 0.1 and took_a >= 0.45

        reads = 0

        async def read() -> int:
            nonlocal reads
            reads += 1
            await asyncio.sleep(0.01)
            return reads

        version = changes.version_of(a)
        shared = await asyncio.gather(*(changes.read("room A", version, read) for _ in range(50)))
        assert shared == [1] * 50 and reads == 1
        changes.wire_changed(2)  # B changed: A's read stands
        assert await changes.read("room A", changes.version_of(a), read) == 1
        changes.wire_changed(1)
        assert await changes.read("room A", changes.version_of(a), read) == 2

    asyncio.run(scenario())
