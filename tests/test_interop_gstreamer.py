"""GStreamer (srtpenc/srtpdec, Debian's libsrtp2) as a client of `relay serve`, with GCM and
AES-CM: a GStreamer presenter sends Opus protected with the uplink key of its join answer; a
GStreamer receiver (srtpdec, key and SSRC in its caps) and a pylibsrtp receiver decrypt what
the relay protected for each with its own downlink key. ffprobe counts what GStreamer wrote.

Skipped unless gst-launch-1.0 with srtpenc is installed (Debian: gstreamer1.0-tools,
gstreamer1.0-plugins-base/-good/-bad), or required with RELAY_REQUIRE_GSTREAMER=1.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_interop_ffmpeg import (
    FFPROBE,
    LibsrtpListener,
    tool_env,
    udp_port_pair,
    wait_bound,
)
from tests.test_serve import Serve, start_serve, stop_serve

pytestmark = pytest.mark.interop

GST = shutil.which("gst-launch-1.0")
CIPHERS = {  # srtpenc/srtpdec names: (cipher, auth) for RTP and RTCP
    "AEAD_AES_128_GCM": ("aes-128-gcm", "null"),
    "AES_CM_128_HMAC_SHA1_80": ("aes-128-icm", "hmac-sha1-80"),
}
BUFFERS = 150  # audiotestsrc buffers of 1,024 samples at 48 kHz: 3.2 s


def _has_srtp() -> bool:
    inspect = shutil.which("gst-inspect-1.0")
    if GST is None or inspect is None:
        return False
    done = subprocess.run([inspect, "srtpenc"], capture_output=True, timeout=30, env=tool_env())
    return done.returncode == 0


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    if not _has_srtp() or FFPROBE is None:
        if os.environ.get("RELAY_REQUIRE_GSTREAMER") == "1":
            pytest.fail("GStreamer's srtpenc is required (RELAY_REQUIRE_GSTREAMER=1)")
        pytest.skip("GStreamer with srtpenc (gstreamer1.0-plugins-bad) or ffprobe missing")
    s = start_serve(tmp_path_factory.mktemp("gst") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


def _srtp_caps(suite: str, key: bytes) -> str:
    cipher, auth = CIPHERS[suite]
    return (
        f"srtp-key=(buffer){key.hex()},srtp-cipher=(string){cipher},srtp-auth=(string){auth},"
        f"srtcp-cipher=(string){cipher},srtcp-auth=(string){auth}"
    )


@pytest.mark.parametrize("suite", list(CIPHERS))
def test_gstreamer_sends_and_receives_through_the_relay(
    serve: Serve, tmp_path: Path, suite: str
) -> None:
    assert GST is not None and FFPROBE is not None
    cipher, auth = CIPHERS[suite]
    ssrc = 0x10000 + secrets.randbelow(1 << 30)  # no other meeting of this server uses it
    with serve.api() as api:
        created = api.post(
            "/v1/meetings",
            json={"title": "gst", "mode": "webinar", "password": "pw", "suite": suite},
        ).json()
        path = f"/v1/meetings/{created['id']}/join"
        presenter = api.post(
            path,
            json={
                "name": "gst presenter",
                "role": "host",
                "host_key": created["host_key"],
                "streams": [{"ssrc": ssrc, "kind": "audio", "pt": 111}],
            },
        ).json()
        port = udp_port_pair()
        listener = api.post(
            path, json={"name": "gst", "password": "pw", "receive_at": f"127.0.0.1:{port}"}
        ).json()
        downlink = base64.b64decode(listener["srtp"]["downlink"])
        out = tmp_path / "out.ogg"
        caps = (
            "application/x-srtp,media=(string)audio,clock-rate=(int)48000,"
            f"encoding-name=(string)OPUS,payload=(int)111,ssrc=(uint){ssrc},"
            + _srtp_caps(suite, downlink)
        )
        receiver = subprocess.Popen(
            [GST, "-e", "udpsrc", "address=127.0.0.1", f"port={port}", f"caps={caps}", "!"]
            + ["srtpdec", "!", "rtpopusdepay", "!", "opusparse", "!", "oggmux", "!", "filesink"]
            + [f"location={out}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=tool_env(),
        )
        libsrtp = LibsrtpListener()
        libsrtp.start(
            api.post(
                path, json={"name": "libsrtp", "password": "pw", "receive_at": libsrtp.address}
            ).json()
        )
        wait_bound(port)
        uplink = base64.b64decode(presenter["srtp"]["uplink"])
        relay_port = presenter["relay"]["port"]
        sender = subprocess.run(
            [GST, "-q", "audiotestsrc", f"num-buffers={BUFFERS}", "is-live=true", "!"]
            + ["audio/x-raw,rate=48000,channels=2", "!", "opusenc", "!"]
            + ["rtpopuspay", "pt=111", f"ssrc={ssrc}", "!", "srtpenc", f"key={uplink.hex()}"]
            + [f"rtp-cipher={cipher}", f"rtp-auth={auth}", f"rtcp-cipher={cipher}"]
            + [f"rtcp-auth={auth}", "!", "udpsink", "host=127.0.0.1", f"port={relay_port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env=tool_env(),
        )
        assert sender.returncode == 0, sender.stdout + sender.stderr
        time.sleep(0.5)
        receiver.send_signal(signal.SIGINT)  # -e: EOS, so oggmux finishes the file
        log, _ = receiver.communicate(timeout=30)
        libsrtp.stop()
    probe = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,nb_read_packets",
            "-of",
            "default=nw=1",
            str(out),
        ],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    fields = dict(line.split("=", 1) for line in probe.stdout.split() if "=" in line)
    expected = BUFFERS * 1024 / 48000 / 0.02  # 20 ms Opus frames
    assert libsrtp.failures == []
    assert len(libsrtp.rtp) >= 0.95 * expected, (len(libsrtp.rtp), expected)
    assert fields.get("codec_name") == "opus", (probe.stdout, probe.stderr, log)
    assert int(fields["nb_read_packets"]) >= 0.95 * len(libsrtp.rtp), (fields, log)
