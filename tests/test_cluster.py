"""One webinar over several nodes (control/cluster.py, control/placement.py, control/trunks.py):
three `relay serve` processes on one throwaway PostgreSQL, each on a loopback address of its
own (127.0.0.2, .3, .4: media and API), with real UDP participants that decrypt what they get
with their own keys.

- Joins through any node's API are placed by load against capacity, the presenter's node
  first, and every attendee hears the presenter, whatever node it is on: the presenter's
  node sends each edge the stream once, over a trunk.
- Packets sent to a trunk's edge end that did not come from its origin (a stranger's, a
  tampered copy, a replay of a real trunk packet) are dropped and counted.
- A webinar of 3,000 attendees over the three nodes (bench/nodes.py, without its baseline).
- kill -9 of an edge node: the others let its participants go, its attendees join again
  through another node's API and hear the presenter again within 10 s, and the attendees of
  the other nodes lose nothing meanwhile. kill -9 of the presenter's node: the presenter
  joins again elsewhere and the webinar goes on. Nothing stored is lost.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from bench import nodes as nodes_bench
from control.client import JoinAnswer, RelayClient
from control.nodes import HEARTBEAT_S
from node.serve import free_ports
from tests.pg_server import PostgresServer, postgres_server  # noqa: F401 (the fixture)
from tests.test_serve import Participant, Serve, settle, start_serve, stop_serve

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

BOX_KEY = base64.b64encode(bytes(range(32))).decode()
NODES = {"n1": "127.0.0.2", "n2": "127.0.0.3", "n3": "127.0.0.4"}
PRESENTER_SSRC = 0x5EED_0001


def start_node(tmp_path: Path, name: str, db: str) -> Serve:
    ip = NODES[name]
    base = free_ports(3)
    serve = start_serve(
        tmp_path / name,
        1,
        "--db",
        db,
        "--node-name",
        name,
        "--api",
        f"{ip}:{base + 2}",
        "--media-host",
        ip,
        base=base,
    )
    serve.url = f"http://{ip}:{base + 2}"
    return serve


@pytest.fixture
def three_nodes(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Serve]]:
    monkeypatch.setenv("RELAY_BOX_KEY", BOX_KEY)
    db = postgres_server.new_database("relay_cluster")
    nodes: dict[str, Serve] = {}
    try:
        with ThreadPoolExecutor(len(NODES)) as pool:  # they start side by side
            started = {name: pool.submit(start_node, tmp_path, name, db) for name in NODES}
            for name, future in started.items():
                nodes[name] = future.result()
        # Each node reads the others every HEARTBEAT_S: until then one that started first
        # places everyone on itself (it is alone, as far as it knows).
        time.sleep(HEARTBEAT_S + 0.5)
        yield nodes
    finally:
        for serve in nodes.values():
            if serve.process.poll() is None:
                stop_serve(serve)


def bound(ip: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    return sock


def rejoin(
    url: str, meeting: str, answer: dict[str, Any], name: str
) -> tuple[Participant, dict[str, Any]]:
    """An attendee whose node stopped answering joins again with the Python client, through
    the API it knew and then those its answer listed (control/client.py `join_again`)."""
    sock = bound()
    host, port = sock.getsockname()
    with RelayClient(url, timeout=2) as client:
        fresh = client.join_again(
            meeting, cast(JoinAnswer, answer), name=name, password="pw", receive_at=f"{host}:{port}"
        )
    return Participant(dict(fresh), None, sock), dict(fresh)


def join(url: str, meeting: str, name: str, **body: Any) -> tuple[Participant, dict[str, Any]]:
    """A participant joined through the API at `url`: a presenter (with `ssrcs`) sends from
    its socket; an attendee gives the address it listens on."""
    sock = bound()
    payload: dict[str, Any] = {"name": name, "password": "pw", **body}
    if "ssrcs" not in payload:
        host, port = sock.getsockname()
        payload["receive_at"] = f"{host}:{port}"
    r = httpx.post(f"{url}/v1/meetings/{meeting}/join", json=payload, timeout=10)
    assert r.status_code == 201, r.text
    answer = r.json()
    ssrcs = payload.get("ssrcs")
    return Participant(answer, ssrcs[0] if ssrcs else None, sock), answer


def dropped(serve: Serve, reason: str) -> float:
    with serve.api() as api:
        text = api.get("/metrics").text
    prefix = f'relay_packets_dropped_total{{reason="{reason}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def until(check: Any, limit: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < limit, f"{what}: not within {limit} s"
        time.sleep(0.05)
    return time.monotonic() - started


def keyframe_asked(presenter: Participant) -> bool:
    """Whether the presenter got a PLI for its stream (from its node, with its keys)."""
    while True:
        try:
            data = presenter.sock.recv(2048)
        except BlockingIOError:
            return False
        if len(data) < 2 or data[1] != 206:
            continue
        plain = presenter.rx.unprotect_rtcp(data)
        if plain[0] & 0x1F == 1 and int.from_bytes(plain[8:12], "big") == PRESENTER_SSRC:
            return True


def gone_from(serve: Serve, meeting: str) -> int:
    """How many of the meeting's participants have left."""
    with serve.api() as api:
        people = api.get(f"/v1/meetings/{meeting}/participants").json()
    return sum(1 for p in people if p["left_at"] is not None)


class Audience:
    """The attendees, by the node they are homed on, and the presenter's packets."""

    def __init__(self) -> None:
        self.people: dict[str, tuple[Participant, str]] = {}  # id -> (participant, node)
        self.answers: dict[str, dict[str, Any]] = {}

    def add(self, participant: Participant, answer: dict[str, Any]) -> None:
        self.people[participant.id] = (participant, answer["node"])
        self.answers[participant.id] = answer

    def on(self, node: str) -> list[Participant]:
        return [p for p, n in self.people.values() if n == node]

    def everyone(self) -> list[Participant]:
        return [p for p, _ in self.people.values()]


def play(presenter: Participant, audience: list[Participant], packets: int) -> None:
    for i in range(packets):
        presenter.send(b"frame %d" % i)
        if i % 10 == 9:
            settle(audience, 0.01)
    settle(audience, 0.3)


def heard(p: Participant) -> int:
    return sum(1 for ssrc, _ in p.received if ssrc == PRESENTER_SSRC)


SOL_PACKET = 263  # <linux/socket.h>
PACKET_VNET_HDR = 15  # <linux/if_packet.h>: each frame comes after a virtio_net_hdr
VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, offset


def sniff_one(dst: tuple[str, int], src_ip: str, limit: float, send: Any) -> bytes:
    """One RTP packet (payload type 111) sent to `dst` from `src_ip`, read off the loopback
    device (AF_PACKET: root only), calling `send()` until one is seen. A message of several
    segments (UDP GSO: a receiver's copies of a burst, ext/batch.pxi) crosses loopback whole,
    to be split where it is received: the frame's virtio_net_hdr gives the segments' size,
    and the first segment is the packet."""
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    raw.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    raw.bind(("lo", 0))
    raw.settimeout(0.05)
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            send()
            try:
                frame = raw.recv(65536 + VNET_HDR.size)
            except TimeoutError:
                continue
            _, gso_type, _, gso_size, _, _ = VNET_HDR.unpack_from(frame)
            ip = frame[VNET_HDR.size + 14 :]
            if ip[9] != 17:  # UDP
                continue
            ihl = (ip[0] & 0x0F) * 4
            source, target = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            dport = struct.unpack("!H", ip[ihl + 2 : ihl + 4])[0]
            payload = bytes(ip[ihl + 8 :])
            if gso_type:
                payload = payload[:gso_size]
            rtp = len(payload) > 12 and payload[1] & 0x7F == 111  # not RTCP
            if source == src_ip and (target, dport) == dst and rtp:
                return payload
    finally:
        raw.close()
    raise AssertionError("no trunk packet seen")


def test_a_webinar_over_three_nodes_survives_losing_an_edge_and_the_presenters_node(
    three_nodes: dict[str, Serve],
) -> None:
    n1, n2, n3 = three_nodes["n1"], three_nodes["n2"], three_nodes["n3"]
    with n1.api() as api:
        r = api.post("/v1/meetings", json={"title": "w", "password": "pw", "mode": "webinar"})
        assert r.status_code == 201, r.text
    meeting, host_key = r.json()["id"], r.json()["host_key"]

    presenter, answer = join(
        n2.url, meeting, "presenter", role="host", host_key=host_key, ssrcs=[PRESENTER_SSRC]
    )
    assert answer["node"] == "n2"  # through n2's API, with nobody anywhere: n2 itself
    # The audience joins through every node's API in turn; placement spreads it.
    audience = Audience()
    urls = [n1.url, n2.url, n3.url]
    started = time.monotonic()
    for i in range(30):
        attendee, answer = join(urls[i % 3], meeting, f"a{i}")
        assert answer["relay"]["host"] == NODES[answer["node"]]
        audience.add(attendee, answer)
    placing = (time.monotonic() - started) / 30
    counts = {n: len(audience.on(n)) for n in NODES}
    # The first 7 share the presenter's node (a small webinar); then each node by its load.
    assert counts["n2"] >= 7 and counts["n1"] >= 5 and counts["n3"] >= 5, counts
    for p in audience.everyone():
        p.hello()

    def everyone_hears() -> bool:
        presenter.send(b"probe")
        settle(audience.everyone(), 0.05)
        return all(heard(p) > 0 for p in audience.everyone())

    until(everyone_hears, 10, "every attendee on every node hears the presenter")
    before = {p.id: heard(p) for p in audience.everyone()}
    play(presenter, audience.everyone(), 100)
    for p in audience.everyone():
        assert heard(p) - before[p.id] == 100, (audience.people[p.id][1], heard(p) - before[p.id])
        assert p.bad == 0

    # --- feedback flows back over the trunk: an edge attendee's keyframe request (PLI,
    # RFC 4585 section 6.3.1) reaches the presenter, protected with the presenter's keys ---
    asking = audience.on("n3")[0]
    # From the SSRC its receiver report came from (tests/test_serve.py `hello`): SRTCP
    # indexes count per SSRC.
    reporter = 0x7000_0000 + (hash(asking.id) & 0xFFFF)
    pli = struct.pack("!BBHII", 0x81, 206, 2, reporter, PRESENTER_SSRC)
    asking.sock.sendto(asking.tx.protect_rtcp(pli), asking.relay)
    until(lambda: keyframe_asked(presenter), 5, "the PLI reaches the presenter")

    # --- a trunk's edge end takes packets from its origin only ---
    trunk_target = (NODES["n3"], n3.media_port)
    stranger = bound(NODES["n3"])
    auth_before, replay_before = dropped(n3, "auth"), dropped(n3, "replay")
    if os.geteuid() == 0:  # a real trunk packet, read off the loopback device
        captured = sniff_one(
            trunk_target, NODES["n2"], 3.0, lambda: presenter.send(b"seen on the trunk")
        )
        # Sequence numbers ahead of the trunk's: an old one is dropped as a replay before its
        # authentication is checked (RFC 3711 section 3.3).
        # (What was seen may be a retransmission the edge asked for: its number is older.)
        ahead = (max(struct.unpack("!H", captured[2:4])[0], presenter.seq) + 100) & 0xFFFF
        ssrc = captured[8:12]
        assert int.from_bytes(ssrc, "big") == PRESENTER_SSRC
        forged = captured[:2] + struct.pack("!H", ahead) + captured[4:12] + os.urandom(40)
        stranger.sendto(forged, trunk_target)  # a stranger's, with the stream's SSRC
        tampered = bytearray(captured)
        tampered[2:4] = struct.pack("!H", (ahead + 1) & 0xFFFF)
        stranger.sendto(bytes(tampered), trunk_target)
        stranger.sendto(captured, trunk_target)  # a replay of what n2 sent
        until(lambda: dropped(n3, "replay") >= replay_before + 1, 5, "the replay counted")
        until(lambda: dropped(n3, "auth") >= auth_before + 2, 5, "forgeries counted")
    else:
        forged = struct.pack("!BBHII", 0x80, 111, 7, 9, PRESENTER_SSRC) + os.urandom(40)
        stranger.sendto(forged, trunk_target)

        def counted() -> bool:
            return dropped(n3, "auth") + dropped(n3, "replay") > auth_before + replay_before

        until(counted, 5, "the forgery counted")
    stranger.close()
    settle(audience.everyone(), 0.3)

    # --- kill -9 an edge node ---
    lost = audience.on("n3")
    os.kill(n3.process.pid, signal.SIGKILL)
    n3.process.wait(10)
    killed_at = time.monotonic()
    others = [p for p in audience.everyone() if p not in lost]
    before = {p.id: heard(p) for p in others}
    # The others hear every packet meanwhile; n3's attendees hear nothing, notice, and join
    # again through the API they know that still answers (a load balancer's job).
    sent = 0
    rejoined: list[Participant] = []
    while time.monotonic() - killed_at < 4.0:
        presenter.send(b"during %d" % sent)
        sent += 1
        settle(others, 0.02)
    for old in lost:
        del audience.people[old.id]
        fresh, answer = rejoin(n3.url, meeting, audience.answers[old.id], f"again-{old.id}")
        assert answer["node"] in ("n1", "n2"), answer["node"]
        fresh.hello()
        audience.add(fresh, answer)
        rejoined.append(fresh)
        old.close()

    def rejoined_hear() -> bool:
        nonlocal sent
        presenter.send(b"after %d" % sent)
        sent += 1
        settle(audience.everyone(), 0.02)
        return all(heard(p) > 0 for p in rejoined)

    until(rejoined_hear, 10, "n3's attendees, placed again, hear the presenter")
    back_after = time.monotonic() - killed_at
    assert back_after < 10, back_after
    settle(others, 0.3)
    for p in others:
        assert heard(p) - before[p.id] == sent, (audience.people[p.id][1], heard(p), sent)
    # Those homed on n3 leave once it is found gone (5 s silent); nothing stored is lost.
    until(lambda: gone_from(n1, meeting) == len(lost), 10, "n3's participants let go")
    with n1.api() as api:
        nodes = {n["name"]: n for n in api.get("/v1/nodes").json()}
        people = api.get(f"/v1/meetings/{meeting}/participants").json()
    assert nodes["n3"]["state"] == "gone"
    assert len(people) == 1 + 30 + len(lost)

    # --- kill -9 the presenter's node ---
    os.kill(n2.process.pid, signal.SIGKILL)
    n2.process.wait(10)
    presenter.close()
    # The presenter's SSRC is its own again once n2 is found gone and its participants let go.
    on_n2 = len(audience.on("n2"))
    until(lambda: gone_from(n1, meeting) == len(lost) + 1 + on_n2, 10, "n2 let go")
    resumed = time.monotonic()
    presenter, answer = join(
        n1.url, meeting, "presenter again", role="host", host_key=host_key, ssrcs=[PRESENTER_SSRC]
    )
    assert answer["node"] == "n1"
    for old in audience.on("n2"):
        del audience.people[old.id]
        fresh, answer = rejoin(n2.url, meeting, audience.answers[old.id], f"again-{old.id}")
        assert answer["node"] in ("n1", "n3") and answer["node"] != "n2"
        fresh.hello()
        audience.add(fresh, answer)
        old.close()
    # `relay join` too, given the nodes' APIs: the dead one's is passed over.
    joined = subprocess.run(
        [sys.executable, "-m", "cli", "join", meeting, "--name", "late", "--password", "pw"]
        + ["--receive-at", "127.0.0.1:40999", "--json", "--url", f"{n2.url},{n1.url}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["node"] == "n1"
    until(everyone_hears, 10, "the webinar resumes with the presenter on n1")
    resumed = time.monotonic() - resumed
    with n1.api() as api:
        assert api.get(f"/v1/meetings/{meeting}").json()["state"] == "open"
    print(
        f"placement: {placing * 1000:.1f} ms a join; edge lost -> heard again "
        f"{back_after:.1f} s; presenter's node gone -> resumed {resumed:.1f} s after"
    )
    for p in audience.everyone():
        p.close()
    presenter.close()


def test_a_webinar_of_three_thousand_attendees_over_three_nodes(
    postgres_server: PostgresServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1 presenter and 3,000 attendees, joined through the three nodes' APIs in turn: each node
    gets about a third, every attendee gets every packet (the presenter's node sends each other
    node the stream once), and samples decrypt with each attendee's own keys on both hops."""
    monkeypatch.setenv("RELAY_BOX_KEY", BOX_KEY)
    lines: list[str] = []
    report = nodes_bench.run_nodes(
        3000,
        3,
        rate=50.0,
        duration=1.0,
        db=postgres_server.new_database("relay_cluster_3000"),
        progress=lines.append,
        kill=False,
        baseline=False,
        runs=1,
    )
    many = report["many_nodes"]
    assert sum(many["placed"].values()) == 3000
    assert all(900 <= n <= 1100 for n in many["placed"].values()), many["placed"]
    assert many["out_pps"] == 150_000 and many["loss_ratio"] == 0.0, lines
    assert many["latency"]["origin"]["samples"] > 0 and many["latency"]["other"]["samples"] > 0
    print(
        f"3,000 over 3 nodes: joined at {many['placement']['joins_per_s']:.0f}/s; latency p50 "
        f"origin {many['latency']['origin']['p50_us']:.0f} µs, "
        f"other {many['latency']['other']['p50_us']:.0f} µs"
    )


def test_a_look_that_comes_late_judges_no_node_gone() -> None:
    """A watcher held up itself (its loop busy, the whole host stalled) sees every other
    node's heartbeat as old as its own delay: such a look reads the nodes but lets nobody go;
    a look on time lets go of a node that is really silent (control/cluster.py, `_watch`)."""
    import asyncio

    from control.cluster import Cluster
    from control.nodes import GONE_AFTER_S
    from control.store.rows import NodeRow

    silent = NodeRow("n2", "token", "http://n2", "10.0.0.2", 40000, 1, 5000, 0, 0.0, 100.0, False)
    marked: list[str] = []

    class Store:
        async def list_nodes(self) -> list[NodeRow]:
            return [silent]

        async def mark_node_gone(self, node: str, left_at: float) -> int:
            marked.append(node)
            return 0

    class Rooms:
        def rosters(self) -> dict[str, Any]:
            return {}

    clock = 100.0 + GONE_AFTER_S + 1
    cluster = Cluster(
        cast(Any, Store()),
        cast(Any, Rooms()),
        cast(Any, None),
        cast(Any, None),
        "n1",
        clock=lambda: clock,
    )
    asyncio.run(cluster.look(judge=False))
    assert cluster.nodes == {"n2": silent} and marked == []
    asyncio.run(cluster.look())
    assert marked == ["n2"]
