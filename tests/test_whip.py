"""WHIP and WHEP through `relay serve`, with aiortc (an independent WebRTC implementation: its
own ICE, DTLS-SRTP and SDP) as the browser: a WebRTC presenter heard by an SDES listener, a
WebRTC viewer playing it, one meeting with mixed transports; and each refusal the API names.
Real processes, real UDP, real DTLS handshakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from tests.test_serve import Serve, create_webinar, join, settle, start_serve, stop_serve

PASSWORD = "pw"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = start_serve(tmp_path_factory.mktemp("whip") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


@pytest.fixture(autouse=True)
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # aioice gathers every interface's address but loopback's; the relay here is on loopback.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def webinar(serve: Serve) -> tuple[str, str]:
    return create_webinar(serve, PASSWORD)


async def offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def post(serve: Serve, path: str, sdp: str, credential: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
        return await client.post(
            path,
            content=sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {credential}"},
        )


async def publish(serve: Serve, meeting: str, host_key: str, *tracks: Any) -> RTCPeerConnection:
    """An aiortc presenter of these tracks over WHIP, the relay's answer applied."""
    pc = RTCPeerConnection()
    for track in tracks:
        pc.addTrack(track)
    r = await post(serve, f"/v1/meetings/{meeting}/whip", await offer(pc), host_key)
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    return pc


async def view(serve: Serve, meeting: str, *kinds: str) -> tuple[RTCPeerConnection, str]:
    """An aiortc viewer of these kinds over WHEP, connected; and its session's Location."""
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind, direction="recvonly")
    w = await post(serve, f"/v1/meetings/{meeting}/whep", await offer(pc), PASSWORD)
    assert w.status_code == 201, w.text
    await pc.setRemoteDescription(RTCSessionDescription(w.text, "answer"))
    await connected(pc)
    return pc, w.headers["location"]


async def connected(pc: RTCPeerConnection, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while pc.connectionState != "connected":
        assert pc.connectionState not in ("failed", "closed"), pc.connectionState
        assert time.monotonic() < deadline, f"not connected: {pc.connectionState}"
        await asyncio.sleep(0.05)


def test_a_webrtc_presenter_is_heard_by_an_sdes_listener_and_a_webrtc_viewer(serve: Serve) -> None:
    meeting, host_key = webinar(serve)
    with serve.api() as api:
        listener = join(api, meeting, "sdes listener", None)

    async def scenario() -> tuple[int, int, dict[str, str]]:
        presenter = RTCPeerConnection()
        presenter.addTrack(AudioStreamTrack())
        presenter.addTrack(VideoStreamTrack())
        r = await post(serve, f"/v1/meetings/{meeting}/whip", await offer(presenter), host_key)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/sdp")
        assert "a=ice-lite" in r.text and "a=setup:passive" in r.text
        await presenter.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await connected(presenter)

        viewer = RTCPeerConnection()
        viewer.addTransceiver("audio", direction="recvonly")
        viewer.addTransceiver("video", direction="recvonly")
        w = await post(serve, f"/v1/meetings/{meeting}/whep", await offer(viewer), PASSWORD)
        assert w.status_code == 201, w.text
        await viewer.setRemoteDescription(RTCSessionDescription(w.text, "answer"))
        await connected(viewer)
        frames = {"audio": 0, "video": 0}
        for receiver in viewer.getReceivers():
            track = receiver.track
            for _ in range(3):  # decoded frames: the presenter's media, under DTLS keys
                try:
                    await asyncio.wait_for(track.recv(), 5)
                except MediaStreamError:
                    break
                frames[track.kind] += 1
        headers = dict(w.headers)
        await viewer.close()
        await presenter.close()
        return frames["audio"], frames["video"], headers

    audio, video, headers = asyncio.run(scenario())
    assert audio == 3 and video == 3
    with serve.api() as api:  # the workers' next report counts both handshakes
        deadline = time.monotonic() + 5
        while "relay_dtls_handshakes_total 2.0" not in (text := api.get("/metrics").text):
            assert time.monotonic() < deadline, "no DTLS handshakes counted"
            time.sleep(0.2)
        assert 'relay_ice_checks_total{outcome="valid"}' in text
    assert headers["location"].startswith(f"/v1/meetings/{meeting}/webrtc/")
    assert headers["etag"] and headers["relay-recording"] == "off"
    settle([listener], 0.5)
    assert listener.received, "the SDES listener heard nothing of the WebRTC presenter"
    listener.close()


def test_a_viewers_receiver_reports_reach_the_participants_list(serve: Serve) -> None:
    """aiortc's viewer reports on what it receives (RTCP RR, RFC 3550 section 6.4) and its
    presenter sends sender reports: the viewer's loss, jitter and round-trip time to the relay
    (from the SR the relay forwarded it) show in the participants list."""
    meeting, host_key = webinar(serve)

    async def scenario() -> dict[str, Any]:
        presenter = await publish(serve, meeting, host_key, VideoStreamTrack())
        viewer, _ = await view(serve, meeting, "video")
        track = viewer.getReceivers()[0].track
        deadline = time.monotonic() + 8  # aiortc reports every second or so
        async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
            while True:
                await asyncio.wait_for(track.recv(), 5)  # keep decoding, as a player does
                people = (
                    await client.get(
                        f"/v1/meetings/{meeting}/participants",
                        headers={"Authorization": f"Bearer {host_key}"},
                    )
                ).json()
                (seen,) = [p for p in people if p["role"] == "attendee"]
                reception = seen["media"]["reception"]
                if reception is not None and reception["rtt_ms"] is not None:
                    break
                assert time.monotonic() < deadline, seen["media"]
        await viewer.close()
        await presenter.close()
        found: dict[str, Any] = reception
        return found

    reception = asyncio.run(scenario())
    assert reception["loss"] == 0.0  # loopback
    assert 0 <= reception["rtt_ms"] < 100 and reception["jitter_ms"] >= 0


def test_whep_session_ends_with_delete_and_its_url_cannot_be_guessed(serve: Serve) -> None:
    meeting, _ = webinar(serve)

    async def scenario() -> tuple[str, int]:
        viewer = RTCPeerConnection()
        viewer.addTransceiver("audio", direction="recvonly")
        w = await post(serve, f"/v1/meetings/{meeting}/whep", await offer(viewer), PASSWORD)
        assert w.status_code == 201, w.text
        await viewer.close()
        return w.headers["location"], 0

    location, _ = asyncio.run(scenario())
    with serve.api() as api:
        assert len(api.get(f"/v1/meetings/{meeting}/participants").json()) == 1
        forged = location.rsplit("/", 1)[0] + "/" + "0" * 36
        assert httpx.delete(serve.url + forged).status_code == 404
        patch = httpx.patch(
            serve.url + location,
            content="a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
            headers={"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": "*"},
        )
        assert patch.status_code == 204
        stale = httpx.patch(
            serve.url + location,
            content="a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n",
            headers={"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": '"x"'},
        )
        assert stale.status_code == 412
        assert httpx.delete(serve.url + location).status_code == 204
        (gone,) = api.get(f"/v1/meetings/{meeting}/participants").json()
        assert gone["left_at"] is not None
        assert httpx.delete(serve.url + location).status_code in (404, 409)


def test_a_viewer_that_closes_without_delete_leaves(serve: Serve) -> None:
    """A browser closing its RTCPeerConnection (or its tab) seldom sends the DELETE; its DTLS
    close_notify reaches the worker, which reports it, and the participant leaves."""
    meeting, host_key = webinar(serve)
    with serve.api() as api:
        before = closed_total(api)

    async def scenario() -> None:
        presenter = await publish(serve, meeting, host_key, AudioStreamTrack())
        viewer, _ = await view(serve, meeting, "audio")
        await connected(presenter)
        await viewer.close()  # no DELETE
        await asyncio.sleep(0.1)
        await presenter.close()

    asyncio.run(scenario())
    with serve.api() as api:
        deadline = time.monotonic() + 5
        while True:
            people = api.get(f"/v1/meetings/{meeting}/participants").json()
            if all(p["left_at"] is not None for p in people):
                break
            assert time.monotonic() < deadline, people
            time.sleep(0.1)
        assert len(people) == 2
        while closed_total(api) < before + 2:  # the worker's next report counts them
            assert time.monotonic() < deadline + 3, "relay_webrtc_ended_total did not count"
            time.sleep(0.2)


def closed_total(api: httpx.Client) -> float:
    prefix = 'relay_webrtc_ended_total{reason="closed"} '
    lines = [line for line in api.get("/metrics").text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


@pytest.mark.parametrize("how", ["expel", "end the meeting"])
def test_expel_ends_a_webrtc_viewers_session_within_a_second(serve: Serve, how: str) -> None:
    """Expelled, or its meeting ended: the worker closes the viewer's DTLS (close_notify),
    and the browser knows at once."""
    meeting, host_key = webinar(serve)

    async def scenario() -> float:
        presenter = await publish(serve, meeting, host_key, AudioStreamTrack())
        viewer, location = await view(serve, meeting, "audio")
        await asyncio.wait_for(viewer.getReceivers()[0].track.recv(), 5)
        participant = location.split("/")[-2]
        async with httpx.AsyncClient(base_url=serve.url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {host_key}"}
            if how == "expel":
                done = await client.patch(
                    f"/v1/meetings/{meeting}/participants/{participant}",
                    json={"expel": True},
                    headers=auth,
                )
            else:
                done = await client.post(f"/v1/meetings/{meeting}/end", headers=auth)
        assert done.status_code == 200, done.text
        started = time.monotonic()
        while viewer.connectionState not in ("closed", "failed"):
            assert time.monotonic() - started < 5, viewer.connectionState
            await asyncio.sleep(0.02)
        took = time.monotonic() - started
        await viewer.close()
        await presenter.close()
        return took

    assert asyncio.run(scenario()) < 1.0


@pytest.mark.parametrize(
    ("path", "body", "content_type", "credential", "status", "says"),
    [
        ("whep", "v=0\r\n", "text/plain", "pw", 415, "sdp"),
        ("whep", "v=0\r\n", "application/sdp", None, 401, "Bearer"),
        ("whep", "nonsense", "application/sdp", "pw", 422, ""),
        ("whip", "OFFER", "application/sdp", "pw", 403, "panelist"),  # webinar: not the password
        ("whep", "OFFER", "application/sdp", "nope", 403, "wrong"),
    ],
)
def test_refusals(
    serve: Serve,
    path: str,
    body: str,
    content_type: str,
    credential: str | None,
    status: int,
    says: str,
) -> None:
    meeting, _ = webinar(serve)
    headers = {"Content-Type": content_type}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"

    async def real_offer() -> str:
        pc = RTCPeerConnection()
        pc.addTrack(AudioStreamTrack())
        text = await offer(pc)
        await pc.close()
        return text

    if body == "OFFER":
        body = asyncio.run(real_offer())
    r = httpx.post(f"{serve.url}/v1/meetings/{meeting}/{path}", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert says.lower() in r.json()["error"]["message"].lower()


def test_a_viewer_that_cannot_play_the_presenters_codec_is_told_which(serve: Serve) -> None:
    meeting, host_key = webinar(serve)

    async def scenario() -> httpx.Response:
        presenter = RTCPeerConnection()
        presenter.addTrack(VideoStreamTrack())
        for t in presenter.getTransceivers():
            t.setCodecPreferences([c for c in _codecs("video") if c.mimeType == "video/VP8"])
        r = await post(serve, f"/v1/meetings/{meeting}/whip", await offer(presenter), host_key)
        assert r.status_code == 201, r.text
        viewer = RTCPeerConnection()
        t = viewer.addTransceiver("video", direction="recvonly")
        t.setCodecPreferences([c for c in _codecs("video") if c.mimeType == "video/H264"])
        refused = await post(serve, f"/v1/meetings/{meeting}/whep", await offer(viewer), PASSWORD)
        await viewer.close()
        await presenter.close()
        return refused

    refused = asyncio.run(scenario())
    assert refused.status_code == 422, refused.text
    message = refused.json()["error"]["message"]
    assert "VP8" in message and "H264" in message


def _codecs(kind: str):  # type: ignore[no-untyped-def]
    from aiortc.rtcrtpsender import RTCRtpSender

    return RTCRtpSender.getCapabilities(kind).codecs


def test_the_api_documents_whip_and_whep(serve: Serve) -> None:
    spec = httpx.get(serve.url + "/openapi.json").json()
    assert "/v1/meetings/{meeting_id}/whip" in spec["paths"]
    assert "/v1/meetings/{meeting_id}/whep" in spec["paths"]


def test_viewers_on_both_workers_play_a_presenter_homed_on_one(tmp_path: Path) -> None:
    """Two workers: each viewer is connected by the worker it is homed on (its answer's
    candidate is that worker's port), and the presenter's packets reach the other worker's
    viewer through the fan-out, under that viewer's own payload types and keys."""
    two = start_serve(tmp_path / "data", 2)
    try:
        meeting, host_key = webinar(two)

        listeners: list[Any] = []

        async def scenario() -> tuple[set[str], list[int]]:
            presenter = RTCPeerConnection()
            presenter.addTrack(AudioStreamTrack())
            r = await post(two, f"/v1/meetings/{meeting}/whip", await offer(presenter), host_key)
            assert r.status_code == 201, r.text
            await presenter.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
            await connected(presenter)
            ports: set[str] = set()
            decoded: list[int] = []
            viewers = []
            for n in range(2):
                if n == 1:
                    # A meeting's first 8 members share its worker (control/rooms.py): with 6
                    # more, the next viewer goes to the other worker.
                    with two.api() as api:
                        listeners.extend(join(api, meeting, f"l{i}", None) for i in range(6))
                viewer = RTCPeerConnection()
                viewer.addTransceiver("audio", direction="recvonly")
                w = await post(two, f"/v1/meetings/{meeting}/whep", await offer(viewer), PASSWORD)
                assert w.status_code == 201, w.text
                ports |= {line.split()[5] for line in w.text.splitlines() if "typ host" in line}
                await viewer.setRemoteDescription(RTCSessionDescription(w.text, "answer"))
                viewers.append(viewer)
            for viewer in viewers:
                await connected(viewer)
                track = viewer.getReceivers()[0].track
                for _ in range(3):
                    await asyncio.wait_for(track.recv(), 5)
                decoded.append(3)
                await viewer.close()
            await presenter.close()
            return ports, decoded

        ports, decoded = asyncio.run(scenario())
        assert ports == {str(two.media_port), str(two.media_port + 2)}  # one on each worker
        assert decoded == [3, 3]
        for listener in listeners:
            listener.close()
    finally:
        stop_serve(two)


def test_a_display_name_follows_the_joins_rules(serve: Serve) -> None:
    """?name= is checked as a join's name is (control/text.py): no hidden characters, no
    blanks, at most 100 characters; refused before anything else is looked at."""
    meeting, _ = webinar(serve)
    for name in ("\u202eevil", "   ", "x" * 101):
        r = httpx.post(
            f"{serve.url}/v1/meetings/{meeting}/whep",
            params={"name": name},
            content="v=0\r\n",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {PASSWORD}"},
        )
        assert r.status_code == 422, (name, r.text)
        assert "name" in r.json()["error"]["message"]
