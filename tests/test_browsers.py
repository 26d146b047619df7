"""Real browsers as WebRTC peers of `relay serve`: Debian's Chromium, driven by Playwright with
fake camera and microphone, publishes over WHIP; two more pages play over WHEP and their
getStats() must show packets, audio energy and decoded frames; an expelled viewer stops
receiving within a second; a browser plays an ffmpeg presenter (mixed transports). Firefox
ESR (driven over WebDriver BiDi by tests/browsers/firefox.mjs, puppeteer-core) plays a Chromium
presenter, and Chromium plays a Firefox one. Every page runs tests/browsers/webrtc.js.

The pages run at the API's own origin (a page of it is opened first), so their fetch() calls
are same-origin, as the web pages the relay will serve will be. Chromium leaves loopback out of
its ICE candidates unless told (`--allow-loopback-in-peer-connection`): the relay here listens
on 127.0.0.1.

Skipped where Chromium or Playwright (or, for its test, Firefox, node and the driver's
node_modules) is missing, unless RELAY_REQUIRE_BROWSERS=1 (CI as root installs them all:
scripts/setup)."""

from __future__ import annotations

import heapq
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_serve import Serve, create_webinar, start_serve, stop_serve

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

if CHROMIUM is None or sync_playwright is None:
    if os.environ.get("RELAY_REQUIRE_BROWSERS"):
        raise RuntimeError("RELAY_REQUIRE_BROWSERS is set but chromium or playwright is missing")
    pytest.skip("chromium or playwright is not installed", allow_module_level=True)

PASSWORD = "pw"
FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
]

# What the pages run (shared with firefox.mjs): window.relayConnect and window.relayStats.
STATS = "() => window.relayStats()"
PAGE_SCRIPT = (Path(__file__).parent / "browsers" / "webrtc.js").read_text()
FIREFOX = shutil.which("firefox-esr")
NODE = shutil.which("node")
FIREFOX_DRIVER = Path(__file__).parent / "browsers" / "firefox.mjs"


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = start_serve(tmp_path_factory.mktemp("browsers") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


SANITIZER = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, and Playwright's driver, without the debug run's sanitizer preload (it is for
    the relay's own code, which `relay serve` still runs under)."""
    assert sync_playwright is not None and CHROMIUM is not None
    kept = {name: os.environ.pop(name) for name in SANITIZER if name in os.environ}
    try:
        manager = sync_playwright().start()
    finally:
        os.environ.update(kept)
    clean = {k: v for k, v in os.environ.items() if k not in SANITIZER}
    try:
        launched = manager.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS, headless=True, env=clean
        )
        try:
            yield launched
        finally:
            launched.close()
    finally:
        manager.stop()


def page_at(browser: Browser, serve: Serve) -> Page:
    page = browser.new_page()
    page.goto(serve.url + "/healthz")  # the API's origin: fetch() to /v1 is same-origin
    page.add_script_tag(content=PAGE_SCRIPT)
    return page


def connect(
    page: Page, path: str, credential: str, publish: bool, **network: Any
) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "(args) => window.relayConnect(args)",
        {"path": path, "credential": credential, "publish": publish, **network},
    )
    assert result["status"] == 201, result
    return result


def stats_until(page: Page, ok: Any, limit: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        stats: dict[str, Any] = page.evaluate(STATS)
        if ok(stats):
            return stats
        assert time.monotonic() < deadline, stats
        time.sleep(0.25)


def playing(stats: dict[str, Any]) -> bool:
    audio, video = stats.get("audio"), stats.get("video")
    return bool(
        audio and video and audio["packets"] > 20 and audio["energy"] > 0 and video["frames"] > 5
    )


def webinar(serve: Serve) -> tuple[str, str]:
    return create_webinar(serve, PASSWORD)


def test_a_browser_publishes_and_two_browsers_play_it(browser: Browser, serve: Serve) -> None:
    meeting, host_key = webinar(serve)
    presenter = page_at(browser, serve)
    connect(presenter, f"/v1/meetings/{meeting}/whip", host_key, publish=True)
    sent = stats_until(presenter, lambda s: s["state"] == "connected" and s.get("sent_video"))
    assert sent["sent_audio"] > 0
    viewers = [page_at(browser, serve) for _ in range(2)]
    sessions = [connect(v, f"/v1/meetings/{meeting}/whep", PASSWORD, False) for v in viewers]
    for viewer in viewers:
        stats = stats_until(viewer, playing)
        assert stats["state"] == "connected"

    # Expel the first viewer: within a second it receives nothing more.
    participant = sessions[0]["location"].split("/")[-2]
    with serve.api() as api:
        r = api.patch(f"/v1/meetings/{meeting}/participants/{participant}", json={"expel": True})
        assert r.status_code == 200, r.text
    time.sleep(1.0)
    after_a_second = viewers[0].evaluate(STATS)["audio"]["packets"]
    time.sleep(1.0)
    assert viewers[0].evaluate(STATS)["audio"]["packets"] == after_a_second
    # The other one plays on.
    before = viewers[1].evaluate(STATS)["audio"]["packets"]
    stats_until(viewers[1], lambda s: s["audio"]["packets"] > before + 20)
    for page in (presenter, *viewers):
        page.close()


class LossyProxy(threading.Thread):
    """Between a browser and the relay: everything the browser sends goes to the relay, and
    everything the relay sends goes back to it, each way 10 ms later; 5 % of the relay's RTP
    is dropped at random (STUN, DTLS and RTCP pass, so the loss is the media's alone)."""

    def __init__(self, relay: tuple[str, int], seed: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.01)
        self.port: int = self.sock.getsockname()[1]
        self.relay = relay
        self.browser: tuple[str, int] | None = None
        self.rng = random.Random(seed)
        self.queue: list[tuple[float, int, bytes, tuple[str, int]]] = []
        self.running = True
        self.dropped = 0

    def run(self) -> None:
        serial = 0
        while self.running:
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                _, _, data, to = heapq.heappop(self.queue)
                self.sock.sendto(data, to)
            try:
                data, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            serial += 1
            if source != self.relay:
                self.browser = source
                heapq.heappush(self.queue, (now + 0.01, serial, data, self.relay))
            elif self.browser is not None:
                rtp = data[0] >> 6 == 2 and not 192 <= data[1] <= 223
                if rtp and self.rng.random() < 0.05:
                    self.dropped += 1
                    continue
                heapq.heappush(self.queue, (now + 0.01, serial, data, self.browser))

    def stop(self) -> None:
        self.running = False
        self.join(timeout=5)
        self.sock.close()


def watch(viewer: Page, seconds: float, step: float = 0.25) -> dict[str, Any]:
    """The viewer's video stats after `seconds` of watching, with `stalled`: the seconds of
    `step`-long slots in which it decoded no new frame. Chromium's own totalFreezesDuration is
    kept, but not judged: it measures against the recent mean frame interval, so a viewer that
    barely plays (a few frames after each keyframe) has a long mean and counts almost no
    freeze."""
    stalled = 0
    frames = viewer.evaluate(STATS)["video"]["frames"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(step)
        now = viewer.evaluate(STATS)["video"]["frames"]
        stalled += now == frames
        frames = now
    return viewer.evaluate(STATS)["video"] | {"stalled": stalled * step}


# The core's path here (NACKs answered from the cache, keyframe requests merged) runs under
# ASan in tests/test_video_loss.py, with ffmpeg and a lossy proxy; this browser's twenty
# seconds of video add nothing there but CI minutes.
@pytest.mark.release_only
def test_retransmission_spares_a_viewer_behind_loss(browser: Browser, serve: Serve) -> None:
    """A Chromium viewer behind a path that loses 5 % of its video, watching a Chromium
    presenter for ten seconds, twice: asking the relay for what it lost (the generic NACK
    offered and answered), then not (struck from its offer). getStats() must show its NACKs
    answered: far fewer packets lost for good, less time without a new frame and more frames
    decoded than without."""
    meeting, host_key = webinar(serve)
    presenter = page_at(browser, serve)
    connect(presenter, f"/v1/meetings/{meeting}/whip", host_key, publish=True)
    stats_until(presenter, lambda s: s["state"] == "connected" and s.get("sent_video"))
    seen = {}
    for run, without_nack in (("with retransmission", False), ("without", True)):
        proxy = LossyProxy(("127.0.0.1", serve.media_port), seed=len(seen))
        proxy.start()
        viewer = page_at(browser, serve)
        try:
            connect(
                viewer,
                f"/v1/meetings/{meeting}/whep",
                PASSWORD,
                False,
                via=f"127.0.0.1:{proxy.port}",
                withoutNack=without_nack,
            )
            stats_until(viewer, playing)
            seen[run] = watch(viewer, 10.0)
        finally:
            viewer.close()
            proxy.stop()
        assert proxy.dropped > 0, "the path lost nothing"
    kept, lost = seen["with retransmission"], seen["without"]
    assert kept["nacks"] > 0 and lost["nacks"] == 0, seen
    assert kept["lost"] < 0.5 * lost["lost"], seen
    assert kept["frames"] > 2 * lost["frames"], seen
    assert kept["stalled"] < lost["stalled"], seen
    print(f"\nChromium behind 5 % loss, 10 s: {seen}")
    presenter.close()


def test_a_browser_plays_an_ffmpeg_presenter(browser: Browser, serve: Serve) -> None:
    """Mixed transports: ffmpeg sends SDES SRTP (Opus at payload type 109, VP8 at 100, numbers
    Chromium gives other codecs or none), a Chromium viewer gets both under its own numbers."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    meeting, host_key = webinar(serve)
    streams = [
        {"ssrc": 0x81234567, "kind": "audio", "pt": 109, "codec": "opus/48000/2"},
        {"ssrc": 0x2468ACE, "kind": "video", "pt": 100, "codec": "VP8/90000"},
    ]
    with serve.api() as api:
        r = api.post(
            f"/v1/meetings/{meeting}/join",
            json={"name": "ffmpeg", "role": "host", "host_key": host_key, "streams": streams},
        )
        assert r.status_code == 201, r.text
        audio_out, video_out = r.json()["ffmpeg"]["outputs"]
    viewer = page_at(browser, serve)
    connect(viewer, f"/v1/meetings/{meeting}/whep", PASSWORD, False)
    seconds = 8
    sender = subprocess.Popen(
        [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-re"]
        + ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-re"]
        + ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}"]
        + ["-map", "0:a", "-c:a", "libopus", "-b:a", "32k", *audio_out]
        + ["-map", "1:v", "-c:v", "libvpx", "-b:v", "500k", "-deadline", "realtime"]
        + ["-cpu-used", "8", "-g", "25", *video_out],
        env={k: v for k, v in os.environ.items() if k not in SANITIZER},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stats = stats_until(viewer, playing, limit=seconds)
    finally:
        sender.kill()
        sender.wait()
    assert stats["state"] == "connected"
    viewer.close()


def firefox(serve: Serve, path: str, credential: str, mode: str, seconds: int) -> Any:
    """Firefox ESR, driven by tests/browsers/firefox.mjs over WebDriver BiDi: what it saw."""
    assert NODE is not None and FIREFOX is not None
    done = subprocess.run(
        [NODE, str(FIREFOX_DRIVER), serve.url, path, credential, mode, str(seconds)],
        env={**{k: v for k, v in os.environ.items() if k not in SANITIZER}, "FIREFOX": FIREFOX},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def host_address() -> str:
    """This host's own address on its default route. Firefox gathers no loopback candidates
    (its loopback preference is not honoured in this build), and checks from its interface
    addresses reach the relay only on one of them."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("203.0.113.1", 9))  # no packet is sent: only the route is looked up
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


@pytest.fixture(scope="module")
def routable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """`relay serve` with its media on every address and the host's own in its answers."""
    if FIREFOX is None or NODE is None or not (FIREFOX_DRIVER.parent / "node_modules").is_dir():
        if os.environ.get("RELAY_REQUIRE_BROWSERS"):
            raise RuntimeError("RELAY_REQUIRE_BROWSERS is set but Firefox or its driver is missing")
        pytest.skip("firefox-esr, node or tests/browsers/node_modules (npm ci) is missing")
    address = host_address()
    if address.startswith("127."):
        pytest.skip("this host has no address but loopback, which Firefox will not use")
    data = tmp_path_factory.mktemp("firefox") / "data"
    s = start_serve(data, 1, "--media-host", "0.0.0.0", "--public-host", address)
    try:
        yield s
    finally:
        stop_serve(s)


@pytest.mark.release_only  # Chromium's tests take the same path through the core under ASan
def test_firefox_plays_a_chromium_presenter_and_chromium_plays_a_firefox_one(
    browser: Browser, routable: Serve
) -> None:
    serve = routable
    meeting, host_key = webinar(serve)
    presenter = page_at(browser, serve)
    connect(presenter, f"/v1/meetings/{meeting}/whip", host_key, publish=True)
    stats_until(presenter, lambda s: s["state"] == "connected" and s.get("sent_video"))
    seen = firefox(serve, f"/v1/meetings/{meeting}/whep", PASSWORD, "play", 20)
    assert seen["stats"]["state"] == "connected" and playing(seen["stats"]), seen
    presenter.close()

    # The other way round: Firefox publishes (for 12 s, in the background), Chromium plays.
    other, other_key = webinar(serve)
    published: list[Any] = []
    thread = threading.Thread(
        target=lambda: published.append(
            firefox(serve, f"/v1/meetings/{other}/whip", other_key, "publish", 12)
        )
    )
    thread.start()
    try:
        viewer = page_at(browser, serve)
        deadline = time.monotonic() + 15
        while True:  # until Firefox's publisher has joined: its streams go in the answer
            with serve.api() as api:
                if api.get(f"/v1/meetings/{other}/participants").json():
                    break
            assert time.monotonic() < deadline, "Firefox never joined"
            time.sleep(0.2)
        connect(viewer, f"/v1/meetings/{other}/whep", PASSWORD, False)
        stats_until(viewer, playing)
        viewer.close()
    finally:
        thread.join()
    assert published and published[0]["stats"]["sent_audio"] > 0, published
