"""control.client and the `relay meetings|participants|usage` commands against a real control
plane behind a real uvicorn server on loopback."""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from cli import client as client_cli
from cli import join as join_cli
from cli.main import glue_secrets
from control import proof_of_work, settings
from control.api import create_app
from control.client import (
    ApiError,
    Conflict,
    Ended,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    ProofOfWorkRequired,
    RelayClient,
    RelayClientError,
    ServerError,
    Throttled,
    Unauthorized,
)
from control.errors import ApiError as ApiErrorOfServer
from control.plane import ControlPlane, Endpoints
from control.proof_of_work import Proof
from control.store import SqliteStore
from relay.srtp import SUITES

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

Api = tuple[str, str]  # (base URL, operator token)
PLANES: list[ControlPlane] = []  # the served control plane, for tests that stage an attack
DATABASE: list[Path] = []  # the module's control plane's SQLite file, while it runs


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    """A control plane (SQLite, no workers) served by uvicorn on 127.0.0.1, in a thread."""
    tmp = Path(tempfile.mkdtemp(prefix="relay-client-", dir="/tmp"))  # short: ipc:// paths
    token = secrets.token_urlsafe(32)

    async def start() -> ControlPlane:
        store = await SqliteStore.open(tmp / "relay.db")
        plane = await ControlPlane.start(
            store,
            Endpoints(routing=f"ipc://{tmp}/r", snapshot=f"ipc://{tmp}/s", stats=f"ipc://{tmp}/st"),
            token=token,
            box_key=os.urandom(32),
            relay_host="127.0.0.1",
            media_port=40000,
            workers=2,
        )
        PLANES[:] = [plane]
        return plane

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(start), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the API server did not start"
        assert time.monotonic() < deadline, "the API server took too long to start"
        time.sleep(0.01)
    DATABASE.append(tmp / "relay.db")
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        DATABASE.remove(tmp / "relay.db")
        server.should_exit = True
        thread.join(10)
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def client(api: Api) -> Iterator[RelayClient]:
    url, token = api
    with RelayClient(url, token) as relay:
        yield relay


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connections are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def key_length(suite: str) -> int:
    key, salt, _tag = SUITES[suite]
    return int(key + salt)


# --- the client: every call -------------------------------------------------------------------


def test_meeting_calls_round_trip(client: RelayClient) -> None:
    created = client.create_meeting("Weekly sync", password="correct horse")
    assert "password" not in created  # given, so not echoed
    assert created["title"] == "Weekly sync"
    assert created["mode"] == "meeting"
    assert created["suite"] == "AES_CM_128_HMAC_SHA1_80"
    assert created["state"] == "open"
    assert created["locked"] is False and created["recording"] is False
    assert created["ended_at"] is None
    assert len(created["host_key"]) >= 32
    meeting_id = created["id"]

    shown = client.get_meeting(meeting_id)
    assert {k: v for k, v in shown.items() if k != "join_throttle"} == {
        k: v for k, v in created.items() if k != "host_key"
    }
    assert shown["join_throttle"] == {
        "locked_out": False,
        "retry_after": 0.0,
        "recent_failures": 0,
        "proof_of_work": False,
        "difficulty": 0,
        "solutions": 0,
    }

    renamed = client.update_meeting(meeting_id, "Monthly sync")
    assert renamed["title"] == "Monthly sync"
    assert client.get_meeting(meeting_id)["title"] == "Monthly sync"

    assert meeting_id in [m["id"] for m in client.list_meetings(state="open", limit=1000)]
    assert meeting_id not in [m["id"] for m in client.list_meetings(state="ended", limit=1000)]
    assert len(client.list_meetings(limit=1)) == 1
    assert client.list_meetings(limit=0) == []

    assert client.lock(meeting_id) == {"locked": True, "recording": False}
    assert client.get_meeting(meeting_id)["locked"] is True
    assert client.unlock(meeting_id) == {"locked": False, "recording": False}
    assert client.set_controls(meeting_id, recording=True) == {"locked": False, "recording": True}
    assert client.set_controls(meeting_id) == {"locked": False, "recording": True}  # no change

    assert client.delete_meeting(meeting_id) is None
    with pytest.raises(NotFound):
        client.get_meeting(meeting_id)
    assert [u["meeting_id"] for u in client.usage(meeting_id)] == [meeting_id]  # it stays


def test_join_answers_keys_of_the_suites_length(client: RelayClient) -> None:
    for suite in ("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM"):
        created = client.create_meeting(f"suite {suite}", suite=suite)  # type: ignore[arg-type]
        password = created["password"]  # generated: shown once
        assert len(password) >= 8
        answer = client.join(created["id"], name="Ada", password=password, ssrcs=[1111])
        assert answer["role"] == "panelist"  # a meeting's default
        assert answer["relay"]["host"] == "127.0.0.1"
        assert answer["relay"]["port"] in (40000, 40002)
        assert answer["srtp"]["suite"] == suite
        uplink = base64.b64decode(answer["srtp"]["uplink"], validate=True)
        downlink = base64.b64decode(answer["srtp"]["downlink"], validate=True)
        assert len(uplink) == len(downlink) == key_length(suite)
        assert uplink != downlink
        assert answer["sdp"].startswith("v=0")
        assert "a=crypto:" in answer["sdp"]


def test_join_with_streams_receive_at_roles_and_participants(client: RelayClient) -> None:
    created = client.create_meeting("Launch", mode="webinar", panelist_password="panel pass")
    meeting_id, password = created["id"], created["password"]
    host = client.join(meeting_id, name="Host", role="host", host_key=created["host_key"])
    assert host["role"] == "host"
    panelist = client.join(
        meeting_id,
        name="Grace",
        role="panelist",
        password="panel pass",
        streams=[{"ssrc": 42, "kind": "video", "pt": 96, "codec": "VP8/90000"}, {"ssrc": 43}],
    )
    assert panelist["role"] == "panelist"
    listener = client.join(meeting_id, name="Lin", password=password, receive_at="127.0.0.1:50000")
    assert listener["role"] == "attendee"  # a webinar's default
    assert "c=IN IP4 127.0.0.1" in listener["sdp"] and "m=video 50000" in listener["sdp"]

    people = {p["id"]: p for p in client.list_participants(meeting_id)}
    assert set(people) == {host["participant_id"], panelist["participant_id"]} | {
        listener["participant_id"]
    }
    grace = people[panelist["participant_id"]]
    assert grace["name"] == "Grace" and grace["role"] == "panelist"
    assert grace["muted"] is False and grace["expelled"] is False and grace["left_at"] is None
    assert grace["streams"] == [
        {"ssrc": 42, "kind": "video", "pt": 96, "codec": "VP8/90000"},
        {"ssrc": 43, "kind": "audio", "pt": 111, "codec": "opus/48000/2"},
    ]

    pid = panelist["participant_id"]
    assert client.mute(meeting_id, pid) == {
        "id": pid,
        "role": "panelist",
        "muted": True,
        "expelled": False,
    }
    assert next(p for p in client.list_participants(meeting_id) if p["id"] == pid)["muted"]
    assert client.unmute(meeting_id, pid)["muted"] is False

    promoted = client.update_participant(meeting_id, listener["participant_id"], role="panelist")
    assert promoted["role"] == "panelist"
    assert "srtp" in promoted and "sdp" in promoted and "relay" in promoted  # fresh send keys
    assert promoted["srtp"]["uplink"] != listener["srtp"]["uplink"]

    assert client.expel(meeting_id, pid) == {"id": pid, "expelled": True}
    assert next(p for p in client.list_participants(meeting_id) if p["id"] == pid)["expelled"]
    with pytest.raises(Conflict) as expelled:
        client.mute(meeting_id, pid)
    assert expelled.value.code == "conflict" and not isinstance(expelled.value, Ended)


def test_end_usage_csv_metrics_health(client: RelayClient) -> None:
    created = client.create_meeting("Ends", mode="webinar", password="pw")
    meeting_id = created["id"]
    client.join(meeting_id, name="A", password="pw")
    client.lock(meeting_id)
    ended = client.end_meeting(meeting_id)
    assert ended["id"] == meeting_id and ended["state"] == "ended"
    record = ended["usage"]
    assert record["meeting_id"] == meeting_id
    assert record["total_participants"] == 1
    assert record["features"] == ["locked", "webinar"]
    assert client.get_meeting(meeting_id)["state"] == "ended"
    assert meeting_id in [m["id"] for m in client.list_meetings(state="ended", limit=1000)]

    assert client.usage(meeting_id) == [record]
    assert any(u["meeting_id"] == meeting_id for u in client.usage())
    rows = list(csv.DictReader(io.StringIO(client.usage_csv(meeting_id))))
    assert [r["meeting_id"] for r in rows] == [meeting_id]
    assert rows[0]["features"] == "locked webinar"
    assert rows[0]["total_participants"] == "1"
    assert client.usage_csv("nothing-here").startswith("id,meeting_id,")

    metrics = client.metrics()
    assert "relay_joins_total" in metrics and "relay_meetings" in metrics
    health = client.health()
    assert health["status"] == "ok"
    assert health["workers_expected"] == 2
    assert isinstance(health["routing_seq"], int)


def test_a_host_key_works_on_its_meeting_only(api: Api, client: RelayClient) -> None:
    created = client.create_meeting("Hosted", password="pw")
    other = client.create_meeting("Other", password="pw")
    with RelayClient(api[0], created["host_key"]) as host:
        assert host.get_meeting(created["id"])["title"] == "Hosted"
        assert host.lock(created["id"])["locked"] is True
        assert host.update_meeting(created["id"], "Renamed")["title"] == "Renamed"
        assert host.list_participants(created["id"]) == []
        with pytest.raises(Unauthorized):
            host.get_meeting(other["id"])
        with pytest.raises(Unauthorized):
            host.list_meetings()
        with pytest.raises(Forbidden) as refused:
            host.delete_meeting(created["id"])
        assert refused.value.status == 403 and refused.value.code == "forbidden"
        assert host.end_meeting(created["id"])["state"] == "ended"


# --- the client: errors -----------------------------------------------------------------------


def test_every_error_class(api: Api, client: RelayClient) -> None:
    url, token = api
    with RelayClient(url) as anonymous, pytest.raises(Unauthorized) as missing:
        anonymous.list_meetings()
    assert (missing.value.status, missing.value.code) == (401, "unauthorized")
    assert "missing token" in missing.value.message
    wrong_token = secrets.token_urlsafe(32)
    with RelayClient(url, wrong_token) as wrong, pytest.raises(Unauthorized) as bad:
        wrong.usage()
    assert wrong_token not in str(bad.value) and wrong_token not in repr(bad.value)

    created = client.create_meeting("Errors", password="right")
    meeting_id = created["id"]
    with pytest.raises(Forbidden) as forbidden:
        client.join(meeting_id, name="Eve", password="wrong")
    assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
    assert str(forbidden.value) == forbidden.value.message == "wrong meeting password"

    with pytest.raises(NotFound) as unknown:
        client.get_meeting("no-such-meeting")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")
    with pytest.raises(NotFound):
        client.mute(meeting_id, "no-such-participant")

    with pytest.raises(Invalid) as invalid:
        client.create_meeting("")
    assert (invalid.value.status, invalid.value.code) == (422, "invalid")
    assert "title" in invalid.value.message
    with pytest.raises(Invalid):
        client.join(meeting_id, name="Ada", password="right", receive_at="nowhere")
    with pytest.raises(Invalid):
        client.list_meetings(limit=5000)

    joined = client.join(meeting_id, name="Ada", password="right", ssrcs=[7])
    with pytest.raises(Conflict) as clash:
        client.join(meeting_id, name="Bob", password="right", ssrcs=[7])
    assert (clash.value.status, clash.value.code) == (409, "conflict")

    client.lock(meeting_id)
    with pytest.raises(Locked) as locked:
        client.join(meeting_id, name="Bob", password="right")
    assert (locked.value.status, locked.value.code) == (423, "locked")
    host = client.join(meeting_id, name="Host", role="host", host_key=created["host_key"])
    assert host["role"] == "host"  # the host gets in even so

    client.end_meeting(meeting_id)
    with pytest.raises(Ended) as ended:
        client.join(meeting_id, name="Bob", password="right")
    assert (ended.value.status, ended.value.code) == (409, "ended")
    assert isinstance(ended.value, Conflict)
    with pytest.raises(Ended):
        client.end_meeting(meeting_id)
    with pytest.raises(Ended):
        client.mute(meeting_id, joined["participant_id"])
    for error in (missing, bad, forbidden, unknown, invalid, clash, locked, ended):
        assert isinstance(error.value, ApiError) and isinstance(error.value, RelayClientError)
        assert token not in str(error.value)


def test_repeated_wrong_passwords_are_throttled_with_retry_after(client: RelayClient) -> None:
    meeting_id = client.create_meeting("Guessed", password="right")["id"]
    for _ in range(5):  # the throttle locks a client out after 5 failures within 60 s
        with pytest.raises(Forbidden):
            client.join(meeting_id, name="Eve", password="guess")
    with pytest.raises(Throttled) as throttled:
        client.join(meeting_id, name="Eve", password="right")  # even the right one, for now
    assert (throttled.value.status, throttled.value.code) == (429, "throttled")
    assert throttled.value.retry_after is not None and 1.0 <= throttled.value.retry_after <= 300
    assert "try again" in throttled.value.message
    throttle = client.get_meeting(meeting_id)["join_throttle"]
    assert throttle["recent_failures"] == 5


def at(url: str, address: str, token: str | None = None) -> RelayClient:
    """A client whose requests come from `address` (any of 127.0.0.0/8 on loopback), so the
    server sees another client."""
    return RelayClient(url, token, transport=httpx.HTTPTransport(local_address=address))


def attack(url: str, meeting_id: str, failures: int) -> None:
    """`failures` wrong passwords, up to 5 from each of 127.0.0.20, .21, ...: real joins the
    server answers 403 (solving the proof of work whenever it is asked for one)."""
    for i in range(0, failures, 5):
        with at(url, f"127.0.0.{20 + i // 5}") as attacker:
            for _ in range(min(5, failures - i)):
                with pytest.raises(Forbidden, match="wrong meeting password"):
                    attacker.join(meeting_id, name="Eve", password="guess")


def test_join_solves_the_hardest_proof_of_work_by_itself(api: Api, client: RelayClient) -> None:
    """A correct password during an attack, at the hardest proof of work the server asks:
    a real server on loopback, real Argon2, the Python client solving (how long that takes
    is measured by bench.guessing, not here: docs/RELIABILITY.md). The host key is checked
    first and asks no proof at all."""
    url, _token = api
    created = client.create_meeting("Under attack", password="right")
    meeting_id = created["id"]
    attack(url, meeting_id, 10)  # from two addresses: the meeting is now under attack
    assert client.get_meeting(meeting_id)["join_throttle"]["proof_of_work"] is True
    # More failures than the cap needs, counted as the join counts them (a real attack of
    # this size would take minutes to stage here).
    plane = PLANES[0]
    for _ in range(200):
        plane.service.admission.puzzles.failure(meeting_id, plane.clock())
    shown = client.get_meeting(meeting_id)["join_throttle"]
    assert (
        shown["difficulty"] == proof_of_work.POW_MAX_BITS
        and shown["solutions"] == proof_of_work.POW_SOLUTIONS
    )

    asked: list[ProofOfWorkRequired] = []
    with at(url, "127.0.0.99") as attendee:
        answer = attendee.join(
            meeting_id, name="Ann", password="right", on_proof_of_work=asked.append
        )
        assert answer["role"] == "panelist"
        assert [(a.status, a.code, a.difficulty) for a in asked] == [
            (428, "proof_of_work_required", proof_of_work.POW_MAX_BITS)
        ]

        with pytest.raises(ProofOfWorkRequired) as required:
            attendee.join(meeting_id, name="Bo", password="right", solve_proof_of_work=False)
        assert required.value.solutions == proof_of_work.POW_SOLUTIONS
        assert 0 < required.value.expires_in <= proof_of_work.POW_TTL
        assert "many failed joins" in required.value.message

    with at(url, "127.0.0.20") as attacker:  # an attacking address, with the host key
        host = attacker.join(
            meeting_id,
            name="Host",
            role="host",
            host_key=created["host_key"],
            solve_proof_of_work=False,
        )
        assert host["role"] == "host"


def test_a_client_solves_what_the_server_checks_and_gives_up_on_absurd_puzzles() -> None:
    """The client against the server's own checking (control.proof_of_work.JoinPuzzles), and
    against a hostile server: one that asks for too much work, one that never accepts."""
    puzzles = proof_of_work.JoinPuzzles(min_bits=8, max_bits=8, solutions=8)
    for _ in range(10):
        puzzles.failure("m1", 0.0)
    sent: list[Any] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        given = body.get("proof_of_work")
        sent.append(given)
        proof = None if given is None else Proof(given["challenge"], tuple(given["nonces"]))
        try:
            puzzles.require("m1", proof, 1.0)
        except ApiErrorOfServer as exc:
            return httpx.Response(exc.status, json=exc.body())
        return httpx.Response(201, json={"participant_id": "p1"})

    with mock(httpx.MockTransport(server)) as relay:
        assert relay.join("m1", name="x", password="pw")["participant_id"] == "p1"
    assert sent[0] is None and len(sent) == 2 and len(sent[1]["nonces"]) == 8

    absurd = {
        "code": "proof_of_work_required",
        "message": "solve this",
        "algorithm": "sha256-k-nonces",
        "challenge": "x" * 58,
        "difficulty": 40,
        "solutions": 32,
        "expires_in": 60,
    }
    with mock(httpx.MockTransport(lambda _: httpx.Response(428, json={"error": absurd}))) as relay:
        with pytest.raises(RelayClientError, match="does not solve") as too_hard:
            relay.join("m1", name="x", password="pw")
        assert not isinstance(too_hard.value, ApiError)

    count = []

    def never(request: httpx.Request) -> httpx.Response:
        count.append(request)
        return httpx.Response(428, json={"error": {**absurd, "difficulty": 1, "solutions": 1}})

    with mock(httpx.MockTransport(never)) as relay, pytest.raises(ProofOfWorkRequired):
        relay.join("m1", name="x", password="pw")
    assert len(count) == 3  # no endless loop


def test_an_unreachable_relay_says_where_it_looked(dead_url: str) -> None:
    token = secrets.token_urlsafe(32)
    with RelayClient(dead_url, token, timeout=2) as relay, pytest.raises(RelayClientError) as e:
        relay.health()
    assert not isinstance(e.value, ApiError)
    assert str(e.value).startswith(f"cannot reach the relay API at {dead_url}: ")
    assert token not in str(e.value)


def test_the_token_is_never_shown(api: Api) -> None:
    url, token = api
    with RelayClient(url, token) as relay:
        assert token not in repr(relay) and token not in str(relay)
        assert "<hidden>" in repr(relay) and url in repr(relay)
    with pytest.raises(ValueError) as bad:
        RelayClient(url, "has a space\n")
    assert "has a space" not in str(bad.value)
    with pytest.raises(ValueError, match="http"):
        RelayClient("ftp://example.org")
    assert "None" in repr(RelayClient(url))


# --- the client, on a mock transport: what is sent, odd answers -------------------------------


def mock(handler: httpx.MockTransport) -> RelayClient:
    return RelayClient("http://relay.test/prefix/", "secret-token-1234", transport=handler)


def test_what_goes_on_the_wire() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/v1/meetings"):
            return httpx.Response(200, json=[])
        return httpx.Response(201 if request.method == "POST" else 200, json={})

    with mock(httpx.MockTransport(handler)) as relay:
        relay.join("m1", name="Ada", password="pw", ssrcs=(1, 2))
        relay.update_participant("m1", "p/1", muted=True)
        relay.get_meeting("..")
        relay.set_controls("m1", locked=False)
        relay.list_meetings(state="ended")
        with pytest.raises(ValueError):
            relay.get_meeting("")
    join, patch, dots, controls, listing = seen
    assert "authorization" not in join.headers  # the password is the credential
    assert json.loads(join.content) == {"name": "Ada", "password": "pw", "ssrcs": [1, 2]}
    assert join.url.raw_path == b"/prefix/v1/meetings/m1/join"
    assert patch.headers["authorization"] == "Bearer secret-token-1234"
    assert json.loads(patch.content) == {"muted": True}  # only what is not None
    assert patch.url.raw_path == b"/prefix/v1/meetings/m1/participants/p%2F1"
    assert dots.url.raw_path == b"/prefix/v1/meetings/%2E%2E"
    assert json.loads(controls.content) == {"locked": False}
    assert listing.url.params == httpx.QueryParams({"state": "ended", "limit": 50, "offset": 0})


def test_answers_that_are_not_the_relays() -> None:
    answers = {
        "/prefix/healthz": httpx.Response(200, text="<html>hello</html>"),
        "/prefix/v1/meetings": httpx.Response(
            502, text="<html>Bad Gateway secret-token-1234</html>"
        ),
        "/prefix/v1/meetings/m1": httpx.Response(200, json=["not", "an", "object"]),
        "/prefix/v1/meetings/m1/join": httpx.Response(
            429,
            json={"error": {"code": "throttled", "message": "slow down"}},
            headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
        ),
        "/prefix/v1/meetings/m1/end": httpx.Response(418, json={"error": "teapot"}),
    }
    with mock(httpx.MockTransport(lambda request: answers[request.url.path])) as relay:
        with pytest.raises(RelayClientError, match="not JSON") as not_json:
            relay.health()
        assert not isinstance(not_json.value, ApiError)
        with pytest.raises(ServerError) as gateway:
            relay.list_meetings()
        assert gateway.value.status == 502 and gateway.value.code == "http_502"
        assert "Bad Gateway" in gateway.value.message
        assert "secret-token-1234" not in gateway.value.message
        with pytest.raises(RelayClientError, match="not an object"):
            relay.get_meeting("m1")
        with pytest.raises(Throttled) as throttled:
            relay.join("m1", name="x")
        assert throttled.value.retry_after == 0.0  # a date in the past
        with pytest.raises(ApiError) as teapot:
            relay.end_meeting("m1")
        assert type(teapot.value) is ApiError and teapot.value.status == 418


# --- the command line -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_relay_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELAY_URL", "RELAY_TOKEN", "RELAY_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)


def relay(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="relay")
    commands = parser.add_subparsers(dest="command", required=True)
    client_cli.register(commands)
    join_cli.register(commands)
    args = parser.parse_args(glue_secrets(argv))  # as cli/main.py parses them
    status: int = args.run(args)
    return status


@pytest.fixture
def data_dir(api: Api, tmp_path: Path) -> Path:
    """A data directory holding the operator token, as `relay serve` writes it."""
    (tmp_path / "token").write_text(api[1] + "\n")
    (tmp_path / "token").chmod(0o600)
    return tmp_path


def test_cli_meetings(api: Api, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, token = api
    common = ("--url", url, "--data-dir", str(data_dir))
    argv = ["CLI webinar", "--webinar", "--suite", "AEAD_AES_128_GCM", "--panelist-password", "p"]
    assert relay("meetings", "create", *argv, *common) == 0
    out = capsys.readouterr().out
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    meeting_id = fields["id"].strip()
    assert fields["mode"].strip() == "webinar"
    assert fields["suite"].strip() == "AEAD_AES_128_GCM"
    assert len(fields["host key"].strip()) >= 32 and fields["password"].strip()
    assert "shown only this once" in out

    assert relay("meetings", "create", "Given", "--password", "pw", *common) == 0
    out = capsys.readouterr().out
    assert "password:" not in out and "host key:" in out
    assert out.endswith("The host key is shown only this once: keep it now.\n")

    assert relay("meetings", "list", "--state", "open", "--limit", "1000", *common) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "TITLE", "MODE", "STATE", "LOCKED", "RECORDING", "CREATED"]
    assert any(row.startswith(meeting_id) and "CLI webinar" in row for row in rows)

    assert relay("meetings", "list", "--json", "--limit", "1", *common) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1

    assert relay("meetings", "lock", meeting_id, *common) == 0
    assert capsys.readouterr().out == f"meeting {meeting_id}: locked\n"
    assert relay("meetings", "show", meeting_id, *common) == 0
    out = capsys.readouterr().out
    assert f"id:        {meeting_id}" in out
    assert "locked:    yes" in out
    assert "joins:     open (0 recent failures)" in out
    assert relay("meetings", "unlock", meeting_id, "--json", *common) == 0
    assert json.loads(capsys.readouterr().out) == {"locked": False, "recording": False}
    assert relay("meetings", "show", meeting_id, "--json", *common) == 0
    assert json.loads(capsys.readouterr().out)["locked"] is False

    assert relay("meetings", "end", meeting_id, *common) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"meeting {meeting_id}: ended\n")
    assert "features:" in out and "webinar" in out
    assert relay("meetings", "delete", meeting_id, *common) == 0
    assert capsys.readouterr().out == f"meeting {meeting_id}: deleted\n"

    assert relay("meetings", "show", meeting_id, *common) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "relay: no such meeting (404 not_found)\n"
    assert token not in captured.out + captured.err


def test_cli_participants(
    api: Api, client: RelayClient, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _token = api
    common = ("--url", url, "--data-dir", str(data_dir))
    created = client.create_meeting("CLI people", password="pw")
    meeting_id = created["id"]
    assert relay("participants", "list", meeting_id, *common) == 0
    assert capsys.readouterr().out == "no participants\n"
    pid = client.join(meeting_id, name="Ada Lovelace", password="pw", ssrcs=[5, 6])[
        "participant_id"
    ]

    assert relay("participants", "list", meeting_id, *common) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "NAME", "ROLE", "WORKER", "MUTED", "STATE", "JOINED", "SSRCS"]
    assert row.startswith(pid) and "Ada Lovelace" in row and "present" in row
    assert row.endswith("5,6")
    assert header.index("NAME") == row.index("Ada Lovelace")  # aligned

    assert relay("participants", "mute", meeting_id, pid, *common) == 0
    assert capsys.readouterr().out == f"participant {pid}: muted\n"
    assert relay("participants", "list", meeting_id, "--json", *common) == 0
    assert json.loads(capsys.readouterr().out)[0]["muted"] is True
    assert relay("participants", "unmute", meeting_id, pid, "--json", *common) == 0
    assert json.loads(capsys.readouterr().out)["muted"] is False
    assert relay("participants", "expel", meeting_id, pid, *common) == 0
    assert capsys.readouterr().out == f"participant {pid}: expelled\n"
    assert relay("participants", "mute", meeting_id, pid, *common) == 1
    assert "was expelled (409 conflict)" in capsys.readouterr().err


def test_cli_prints_server_strings_safely(
    api: Api, client: RelayClient, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows written before the server refused control and invisible characters may hold
    them: the commands show them escaped, in tables, in fields and in --json, never raw."""
    import asyncio

    url, _token = api
    common = ("--url", url, "--data-dir", str(data_dir))
    created = client.create_meeting("Old meeting", password="pw")
    meeting_id = created["id"]
    hostile_name = "Eve\x1b[2J\x1b[31m\u202egnp.exe\r\nroot\x07"
    hostile_title = "Board\u2066 \x9b31m\u200b\U000e0041"

    async def old_rows() -> None:  # as another program, or an older relay, wrote them
        store = await SqliteStore.open(DATABASE[-1])
        try:
            await store.update_meeting(meeting_id, title=hostile_title)
            await store.add_participant(
                meeting_id=meeting_id,
                name=hostile_name,
                role="panelist",
                uplink_sealed=b"\x01" * 40,
                downlink_sealed=b"\x02" * 40,
                worker=0,
                joined_at=time.time(),
            )
        finally:
            await store.close()

    asyncio.run(old_rows())
    raw = ("\x1b", "\u202e", "\r", "\x07", "\u2066", "\x9b", "\u200b", "\U000e0041")
    for argv in (
        ("participants", "list", meeting_id),
        ("meetings", "list", "--limit", "1000"),
        ("meetings", "show", meeting_id),
        ("participants", "list", meeting_id, "--json"),
        ("meetings", "show", meeting_id, "--json"),
    ):
        assert relay(*argv, *common) == 0
        out = capsys.readouterr().out
        for char in raw:
            assert char not in out, (argv, char)
        if "--json" in argv:
            data = json.loads(out)  # the same data, escaped as JSON escapes it
            shown = data[0]["name"] if isinstance(data, list) else data["title"]
            assert shown in (hostile_name, hostile_title)
    assert relay("participants", "list", meeting_id, *common) == 0
    out = capsys.readouterr().out
    assert "Eve\\x1b[2J\\x1b[31m\\u202egnp.exe\\x0d\\x0aroot\\x07" in out
    assert len(out.splitlines()) == 2  # the header and one row: no line was forged


def test_cli_usage(
    api: Api,
    client: RelayClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, token = api
    monkeypatch.setenv("RELAY_URL", url)  # the environment instead of options
    monkeypatch.setenv("RELAY_TOKEN", token)
    meeting_id = client.create_meeting("CLI usage", password="pw")["id"]
    client.join(meeting_id, name="A", password="pw")
    client.end_meeting(meeting_id)

    assert relay("usage", "--meeting", meeting_id) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["MEETING", "STARTED", "DURATION"]
    assert row.startswith(meeting_id)
    assert relay("usage", "--meeting", meeting_id, "--csv") == 0
    out = capsys.readouterr().out
    assert out.startswith("id,meeting_id,")
    assert [r["meeting_id"] for r in csv.DictReader(io.StringIO(out))] == [meeting_id]
    assert relay("usage", "--meeting", meeting_id, "--json") == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["meeting_id"] == meeting_id and record["total_participants"] == 1
    assert relay("usage", "--meeting", "none-such") == 0
    assert capsys.readouterr().out == "no usage records\n"
    assert relay("usage", "--csv", "--json") == 2
    assert capsys.readouterr().err == "relay: give --csv or --json, not both\n"


def test_cli_credentials_and_connection_errors(
    api: Api,
    tmp_path: Path,
    dead_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, token = api
    empty = tmp_path / "empty"
    empty.mkdir()
    assert relay("meetings", "list", "--url", url, "--data-dir", str(empty)) == 1
    err = capsys.readouterr().err
    assert err.startswith("relay: no token: ") and str(empty / "token") in err

    monkeypatch.setenv("RELAY_DATA_DIR", str(empty))  # the environment names the data dir
    assert relay("usage", "--url", url) == 1
    assert str(empty / "token") in capsys.readouterr().err
    (empty / "token").write_text("")
    assert relay("usage", "--url", url) == 1
    assert "is empty" in capsys.readouterr().err

    assert relay("meetings", "list", "--url", url, "--token", "not-the-token") == 1
    assert "(401 unauthorized)" in capsys.readouterr().err
    # A token (host key, password) may begin with "-": still the option's value.
    assert relay("meetings", "list", "--url", url, "--token", "-HhYp8vNotTheToken") == 1
    assert "(401 unauthorized)" in capsys.readouterr().err
    assert relay("meetings", "list", "--url", url, "--token", token, "--limit", "0") == 0
    assert capsys.readouterr().out == "no meetings\n"

    assert relay("meetings", "list", "--url", dead_url, "--token", token) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"relay: cannot reach the relay API at {dead_url}: ")
    assert token not in captured.err + captured.out
    assert relay("meetings", "list", "--url", "localhost:8080", "--token", token) == 2
    assert "http" in capsys.readouterr().err

    monkeypatch.delenv("RELAY_DATA_DIR")
    monkeypatch.setattr(settings, "DEFAULT_DATA_DIR", tmp_path / "default")
    assert relay("usage", "--url", url) == 1  # the server's default data directory
    assert str(tmp_path / "default" / "token") in capsys.readouterr().err

    with pytest.raises(SystemExit) as usage_error:
        relay("meetings", "list", "--limit", "5000")
    assert usage_error.value.code == 2
    assert "must be 0..1000" in capsys.readouterr().err


def test_cli_join_solves_the_proof_of_work_quietly(
    api: Api, client: RelayClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _token = api
    meeting_id = client.create_meeting("CLI under attack", password="right")["id"]
    attack(url, meeting_id, 10)
    assert client.get_meeting(meeting_id)["join_throttle"]["proof_of_work"] is True
    argv = ["join", meeting_id, "--name", "Ann", "--password", "right", "--url", url]
    assert relay(*argv, "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["role"] == "panelist"
    assert captured.err == ""  # not a terminal: nothing to say
    assert relay("meetings", "show", meeting_id, "--url", url, "--token", api[1]) == 0
    assert "joins:     open, with a proof of work (32 x 12 bits) for passwords" in (
        capsys.readouterr().out
    )


def test_registering_the_commands_loads_no_http_client() -> None:
    assert set(client_cli.SUITES) == set(SUITES)  # the core's
    code = "import sys, cli.client, cli.join; assert 'httpx' not in sys.modules, 'httpx loaded'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
