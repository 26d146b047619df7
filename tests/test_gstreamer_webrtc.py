"""GStreamer's webrtcbin as an independent WebRTC peer of `relay serve` (its own ICE with
libnice, DTLS-SRTP with OpenSSL and libsrtp, its own SDP): a webrtcbin presenter publishes Opus
and VP8 over WHIP; a webrtcbin viewer plays them over WHEP and decodes audio with energy and
video frames; an ffmpeg listener (SDES) of the same meeting records both streams, which ffprobe
counts and ffmpeg decodes. One meeting, mixed transports, real processes and real UDP.

The peers are tests/gstreamer_webrtc.py run by the system Python (PyGObject). Skipped unless
Debian's python3-gi, gir1.2-gst-plugins-bad-1.0, gstreamer1.0-nice, the GStreamer plugins and
ffmpeg are installed; required with RELAY_REQUIRE_GSTREAMER=1 (scripts/setup installs them).

Debian 12's `simple-whip-client` (whip-client) is not used: it links libsoup 2 while
GStreamer's webrtc and nice plugins link libsoup 3, and it aborts at its first offer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_interop_ffmpeg import (
    FFMPEG,
    FFPROBE,
    ffmpeg_listener,
    tool_env,
    udp_port_pair,
    wait_bound,
)
from tests.test_serve import Serve, create_webinar, start_serve, stop_serve

pytestmark = pytest.mark.interop

SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin")
PEER = Path(__file__).parent / "gstreamer_webrtc.py"
ELEMENTS = ("webrtcbin", "nicesrc", "opusenc", "vp8enc", "rtpvp8pay", "decodebin")
PROBE = (
    "import sys, gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
    "from gi.repository import Gst; Gst.init(None);"
    "missing = [e for e in sys.argv[1:] if Gst.ElementFactory.find(e) is None];"
    "print(' '.join(missing)); raise SystemExit(bool(missing))"
)
PASSWORD = "pw"


def _missing() -> str | None:
    if SYSTEM_PYTHON is None or FFMPEG is None or FFPROBE is None:
        return "the system python3, ffmpeg or ffprobe"
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", PROBE, *ELEMENTS],
        capture_output=True,
        text=True,
        timeout=60,
        env=tool_env(),
    )
    if done.returncode != 0:
        return f"PyGObject with GStreamer's webrtcbin ({done.stdout.strip() or done.stderr[-200:]})"
    return None


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    missing = _missing()
    if missing is not None:
        if os.environ.get("RELAY_REQUIRE_GSTREAMER") == "1":
            pytest.fail(f"missing: {missing} (RELAY_REQUIRE_GSTREAMER=1)")
        pytest.skip(f"missing: {missing}")
    s = start_serve(tmp_path_factory.mktemp("gst-webrtc") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


def peer(serve: Serve, mode: str, meeting: str, credential: str, seconds: float) -> Any:
    """tests/gstreamer_webrtc.py, started; its JSON line comes from `result`."""
    assert SYSTEM_PYTHON is not None
    url = f"{serve.url}/v1/meetings/{meeting}/{mode}"
    return subprocess.Popen(
        [SYSTEM_PYTHON, str(PEER), mode, url, credential, str(seconds)],
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(process: Any, limit: float = 60.0) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    lines = out.strip().splitlines()
    assert process.returncode == 0 and lines, f"rc {process.returncode}: {err[-2000:]}"
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def test_webrtcbin_publishes_to_a_webrtcbin_viewer_and_an_ffmpeg_listener(
    serve: Serve, tmp_path: Path
) -> None:
    assert FFMPEG is not None and FFPROBE is not None
    meeting, host_key = create_webinar(serve, PASSWORD)
    presenter = peer(serve, "whip", meeting, host_key, 12)
    # The presenter's streams are in the meeting once its WHIP POST is answered.
    with serve.api() as api:
        deadline = time.monotonic() + 20
        while not (roster := api.get(f"/v1/meetings/{meeting}/participants").json()):
            assert presenter.poll() is None, result(presenter)
            assert time.monotonic() < deadline, "the GStreamer presenter never joined"
            time.sleep(0.2)
        assert roster[0]["role"] == "host"
        port = udp_port_pair()
        listener = api.post(
            f"/v1/meetings/{meeting}/join",
            json={"name": "ffmpeg", "password": PASSWORD, "receive_at": f"127.0.0.1:{port}"},
        ).json()
    assert listener["sdp"].count("m=") == 2, listener["sdp"]  # Opus and VP8, as published
    recorded = tmp_path / "out.mkv"
    ffmpeg = ffmpeg_listener(listener, tmp_path, recorded, after_input=("-t", "5"))
    wait_bound(port)
    viewer = result(peer(serve, "whep", meeting, PASSWORD, 6))
    try:
        _, ffmpeg_log = ffmpeg.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        ffmpeg.kill()
        _, ffmpeg_log = ffmpeg.communicate()
    published = result(presenter)

    assert published["status"] == 201 and published["connection"] == "connected", published
    assert published["deleted"] == 204
    assert viewer["status"] == 201 and viewer["connection"] == "connected", viewer
    # About 5 s of 20 ms Opus frames and 15 fps video, decoded by GStreamer: what arrived is
    # the presenter's sine (peak of a 0.5 volume sine is about 16,000 of 32,767).
    assert viewer["audio_buffers"] > 100, viewer
    assert viewer["audio_peak"] > 8000, viewer
    assert viewer["video_frames"] > 30, viewer

    # Decoded by ffmpeg's own decoders (ffprobe -count_frames): a frame that fails to decode
    # is an error line. The recording is `-c copy` of what the relay protected for ffmpeg.
    probe = subprocess.run(
        [FFPROBE, "-v", "error", "-count_frames", "-show_entries"]
        + ["stream=codec_name,nb_read_frames", "-of", "csv=p=0", str(recorded)],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not probe.stderr.strip(), probe.stderr[-2000:]
    decoded = dict(line.split(",", 1) for line in probe.stdout.split())
    assert set(decoded) == {"opus", "vp8"}, (probe.stdout, ffmpeg_log[-2000:])
    assert int(decoded["opus"]) > 150 and int(decoded["vp8"]) > 30, decoded
