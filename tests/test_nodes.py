"""The nodes sharing one database (control/nodes.py): registered at start, a heartbeat every
2 s, gone once silent for 5 s, drained and taken back; `relay nodes` and `relay drain`.

Several `relay serve` processes on one throwaway PostgreSQL (tests/pg_server.py), each with
a data directory of its own and the same box key (README.md: nodes on one database share
it); and one on SQLite, where it is the only node."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pg_server import PostgresServer, postgres_server  # noqa: F401 (the fixture)
from tests.test_serve import Serve, create_webinar, start_serve, stop_serve

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

BOX_KEY = base64.b64encode(bytes(range(32))).decode()


def nodes_of(serve: Serve) -> dict[str, dict[str, Any]]:
    with serve.api() as api:
        r = api.get("/v1/nodes")
    assert r.status_code == 200, r.text
    return {n["name"]: n for n in r.json()}


def until(check: Any, limit: float) -> float:
    """Poll `check()` until true; how long that took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit, f"not within {limit} s"
        time.sleep(0.1)
    return time.monotonic() - started


def relay(serve: Serve, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELAY_URL": serve.url, "RELAY_TOKEN": serve.token}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def shared_db(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    monkeypatch.setenv("RELAY_BOX_KEY", BOX_KEY)
    return postgres_server.new_database("relay_nodes")


@pytest.fixture
def two_nodes(tmp_path: Path, shared_db: str) -> Iterator[tuple[Serve, Serve]]:
    a = start_serve(tmp_path / "a", 1, "--db", shared_db, "--node-name", "node-a")
    try:
        b = start_serve(tmp_path / "b", 1, "--db", shared_db, "--node-name", "node-b")
        try:
            yield a, b
        finally:
            stop_serve(b)
    finally:
        stop_serve(a)


def test_nodes_on_one_database_see_each_other_and_a_killed_one_goes(
    two_nodes: tuple[Serve, Serve], tmp_path: Path, shared_db: str
) -> None:
    a, b = two_nodes
    seen = nodes_of(a)
    assert set(seen) == {"node-a", "node-b"}, seen
    assert seen["node-b"]["state"] == "up" and seen["node-b"]["workers"] == 1
    assert seen["node-b"]["capacity"] == 5000 and seen["node-b"]["api_url"] == b.url
    assert seen["node-b"]["media"] == {"host": "127.0.0.1", "port": b.media_port}
    listed = relay(a, "nodes")
    assert listed.returncode == 0 and "node-b" in listed.stdout and "up" in listed.stdout

    # A node's load is what it has present, written with its heartbeat (every 2 s).
    meeting, _ = create_webinar(b)
    with httpx.Client(base_url=b.url, timeout=10) as api:
        r = api.post(
            f"/v1/meetings/{meeting}/join",
            json={"name": "ann", "password": "pw", "receive_at": "127.0.0.1:5000"},
        )
        assert r.status_code == 201, r.text
    until(lambda: nodes_of(a)["node-b"]["load"] == 1, 5)

    # kill -9: its heartbeat stops, and within 5 s (plus a beat) it is gone.
    os.kill(b.process.pid, signal.SIGKILL)
    b.process.wait()
    took = until(lambda: nodes_of(a)["node-b"]["state"] == "gone", 10)
    assert took < 7.5, took

    # Started again on its data directory, it is the same node: it takes its row back.
    again = start_serve(tmp_path / "b", 1, "--db", shared_db, "--node-name", "node-b")
    try:
        assert nodes_of(a)["node-b"]["state"] == "up"
    finally:
        stop_serve(again)
    # A node that stops cleanly takes its row away.
    assert set(nodes_of(a)) == {"node-a"}


def test_a_second_node_under_a_running_ones_name_is_refused(
    two_nodes: tuple[Serve, Serve], tmp_path: Path, shared_db: str
) -> None:
    with pytest.raises(AssertionError) as refused:
        start_serve(tmp_path / "c", 1, "--db", shared_db, "--node-name", "node-a")
    assert "node 'node-a' is running elsewhere" in str(refused.value)
    a, _ = two_nodes
    assert nodes_of(a)["node-a"]["state"] == "up"


def test_a_drained_node_takes_no_new_participant_and_keeps_those_present(
    two_nodes: tuple[Serve, Serve],
) -> None:
    a, b = two_nodes
    meeting, _ = create_webinar(b)

    def join_b() -> httpx.Response:
        return httpx.post(
            f"{b.url}/v1/meetings/{meeting}/join",
            json={"name": "ann", "password": "pw", "receive_at": "127.0.0.1:5000"},
            timeout=10,
        )

    first = join_b()
    assert first.status_code == 201
    # Drained through another node's API: node-b reads it with its next heartbeat, and
    # placement reads it at once (control/placement.py).
    drained = relay(a, "drain", "node-b")
    assert drained.returncode == 0 and "is draining" in drained.stdout, drained
    assert nodes_of(a)["node-b"]["state"] == "draining"
    # A join through node-b's API is homed on node-a: the answer names node-a's media port.
    placed = join_b()
    assert placed.status_code == 201, placed.text
    assert placed.json()["node"] == "node-a"
    assert placed.json()["relay"]["port"] == nodes_of(a)["node-a"]["media"]["port"]
    # With every node draining, nobody new is taken.
    assert relay(a, "drain", "node-a").returncode == 0
    refused = join_b()
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
    with b.api() as api:
        present = api.get(f"/v1/meetings/{meeting}/participants").json()
    # Those present stay.
    assert len(present) == 2
    assert all(p["left_at"] is None and not p["expelled"] for p in present)
    assert relay(a, "drain", "--undo", "node-b").returncode == 0
    again = join_b()
    assert again.status_code == 201 and again.json()["node"] == "node-b"
    with a.api() as api:
        actions = [(e["action"], e["target"]) for e in api.get("/v1/audit").json()]
    assert ("node.drain", "node-b") in actions and ("node.undrain", "node-b") in actions
    unknown = relay(a, "drain", "no-such-node")
    assert unknown.returncode == 1 and "no such node" in unknown.stderr


def test_one_node_on_sqlite_lists_itself_and_drains_at_once(tmp_path: Path) -> None:
    s = start_serve(tmp_path / "data", 1, "--node-name", "solo", "--node-capacity", "300")
    try:
        assert nodes_of(s)["solo"]["capacity"] == 300
        assert relay(s, "drain", "solo").returncode == 0
        meeting, _ = create_webinar(s)
        r = httpx.post(
            f"{s.url}/v1/meetings/{meeting}/join",
            json={"name": "ann", "password": "pw", "receive_at": "127.0.0.1:5000"},
        )
        assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
        with s.api() as api:
            metrics = api.get("/metrics").text
        assert 'relay_join_failures_total{reason="draining"} 1.0' in metrics
    finally:
        stop_serve(s)
