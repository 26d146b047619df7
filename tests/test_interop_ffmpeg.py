"""ffmpeg as a real client of `relay serve` (its own SRTP code: libavformat/srtp.c).

An ffmpeg presenter, configured only from its join answer ("ffmpeg" arguments), sends Opus, or
VP8 in packets of up to 1,468 bytes of SRTP, through a real server to three kinds of listener,
each configured from its own join answer: an ffmpeg receiver that opens the answer's SDP as is
(ffprobe counts what it wrote, ffmpeg decodes it without an error), a libsrtp receiver
(pylibsrtp) and the native load generator's sinks. Both 32-bit-tag variants ffmpeg can send are
accepted, SRTCP included (../shared/reference/srtp-interop-notes.md, pitfall 2).

Skipped when ffmpeg is not installed, unless RELAY_REQUIRE_FFMPEG=1 (CI installs it and sets
it).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.libsrtp import session as libsrtp_session
from tests.test_serve import Serve, free_ports, start_serve, stop_serve

pylibsrtp = pytest.importorskip("pylibsrtp")

# Release only (tests/conftest.py): ffmpeg's packets take the paths through the core that the
# GStreamer, rtpengine and WebRTC peers' tests take under the sanitizers.
pytestmark = [pytest.mark.interop, pytest.mark.release_only]

FFMPEG, FFPROBE = shutil.which("ffmpeg"), shutil.which("ffprobe")
SECONDS = 3
OPUS: dict[str, Any] = {
    "ssrc": 0x81234567,
    "kind": "audio",
    "pt": 111,
    "codec": "opus/48000/2",
}  # >= 2^31
VP8: dict[str, Any] = {"ssrc": 0x2468ACE, "kind": "video", "pt": 96, "codec": "VP8/90000"}
AUDIO_IN = ["-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}"]
AUDIO_CODEC = ["-c:a", "libopus", "-b:a", "32k"]
VIDEO_IN = ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={SECONDS}"]
VIDEO_CODEC = ["-c:v", "libvpx", "-b:v", "500k", "-deadline", "realtime", "-cpu-used", "8"]


def tool_env() -> dict[str, str]:
    """The environment for ffmpeg and the other tools: without the debug run's sanitizer
    preload, which is for the relay's own code."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")
    }


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    if FFMPEG is None or FFPROBE is None:
        if os.environ.get("RELAY_REQUIRE_FFMPEG") == "1":
            pytest.fail("ffmpeg is required (RELAY_REQUIRE_FFMPEG=1) but not installed")
        pytest.skip("ffmpeg is not installed (Debian: apt-get install ffmpeg)")
    s = start_serve(tmp_path_factory.mktemp("ffmpeg") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


def ffmpeg_listener(
    answer: dict[str, Any],
    cwd: Path,
    out: Path,
    before_input: tuple[str, ...] = (),
    after_input: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    """ffmpeg playing a listener's join answer as is (its SDP as cwd/join.sdp, its input
    arguments), copying what it gets into `out`; its stderr is piped."""
    assert FFMPEG is not None
    assert answer["ffmpeg"]["input"][-1] == "join.sdp"
    (cwd / "join.sdp").write_text(answer["sdp"])
    return subprocess.Popen(
        [FFMPEG, "-nostdin", "-hide_banner", *answer["ffmpeg"]["input"][:-2], *before_input]
        + ["-i", "join.sdp", *after_input, "-c", "copy", "-y", str(out)],
        cwd=cwd,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def udp_port_pair() -> int:
    """An even port P with P and P + 1 free (ffmpeg binds both for each m= line)."""
    return free_ports(4) & ~1


def wait_bound(port: int, limit: float = 10.0) -> None:
    """Until something has bound UDP `port` on this host (pitfall 14: start receivers first)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return
        finally:
            probe.close()
        time.sleep(0.05)
    raise AssertionError(f"nothing bound UDP port {port}")


def metric(api: httpx.Client, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def drops(api: httpx.Client) -> dict[str, float]:
    found = {}
    for line in api.get("/metrics").text.splitlines():
        m = re.match(r'relay_packets_dropped_total\{reason="(\w+)"\} (\S+)', line)
        if m:
            found[m[1]] = float(m[2])
    return found


class LibsrtpListener:
    """A listener that decrypts with libsrtp, in a thread: RTP on port P, and the sender
    reports on P + 1, where its SDP (receive_at) puts RTCP."""

    def __init__(self) -> None:
        port = udp_port_pair()
        self.socks = []
        for p in (port, port + 1):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", p))
            self.socks.append(sock)
        self.port = port
        self.rtp: list[bytes] = []
        self.rtcp = 0
        self.failures: list[str] = []
        self.session: Any = None
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, answer: dict[str, Any]) -> None:
        srtp = answer["srtp"]
        key = base64.b64decode(srtp["downlink"])
        self.session = libsrtp_session(srtp["suite"], key, outbound=False)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            readable, _, _ = select.select(self.socks, [], [], 0.1)
            for sock in readable:
                data = sock.recv(4096)
                try:
                    if 200 <= data[1] <= 206:
                        self.session.unprotect_rtcp(data)
                        self.rtcp += 1
                    else:
                        self.rtp.append(self.session.unprotect(data))
                except pylibsrtp.Error as exc:
                    self.failures.append(str(exc))

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        for sock in self.socks:
            sock.close()


class Sinks:
    """The load generator's sinks: `count` listeners at 127.x.y.z on one socket."""

    def __init__(self, count: int) -> None:
        from bench import _loadgen
        from bench.run import sink_socket

        self.sock = sink_socket()
        self.count = count
        self.loadgen = _loadgen.Loadgen(self.sock.fileno(), count + 1)
        self.addresses = [
            f"{_loadgen.participant_address(i)}:{self.sock.getsockname()[1]}"
            for i in range(1, count + 1)
        ]
        self.thread = threading.Thread(target=self.loadgen.sink, args=(60.0,), daemon=True)
        self.thread.start()

    def received(self) -> list[int]:
        return [int(c) for c in self.loadgen.counts()[1:]]

    def stop(self) -> None:
        self.loadgen.stop()
        self.thread.join()
        self.sock.close()


def fresh(stream: dict[str, Any], high: bool = False) -> dict[str, Any]:
    """The stream with an SSRC no other test's meeting declared (the relay tries only a few
    senders that share an SSRC when it latches a new one); `high`: one at or above 2^31,
    which ffmpeg must be given as a negative number."""
    return {**stream, "ssrc": (0x80000000 if high else 0x10000) + secrets.randbelow(1 << 30)}


@dataclass
class Run:
    ssrc: int
    sent: int  # RTP packets the presenter's worker took in from ffmpeg
    ffprobe: dict[str, str]
    decode_errors: str
    libsrtp: LibsrtpListener
    sinks: list[int]
    drops: dict[str, float]
    receiver_log: str


def webinar_with_ffmpeg(
    serve: Serve,
    tmp: Path,
    stream: dict[str, Any],
    encoder: list[str],
    suite: str = "AES_CM_128_HMAC_SHA1_80",
    ffmpeg_suite: str | None = None,
    out_name: str = "out.ogg",
    rtcp_to_rtp_port: bool = False,
) -> Run:
    assert FFMPEG is not None and FFPROBE is not None
    stream = fresh(stream, high=stream["ssrc"] >= 1 << 31)
    with serve.api() as api:
        created = api.post(
            "/v1/meetings",
            json={"title": "ffmpeg", "mode": "webinar", "password": "pw", "suite": suite},
        ).json()
        path = f"/v1/meetings/{created['id']}/join"
        presenter = api.post(
            path,
            json={
                "name": "ffmpeg presenter",
                "role": "host",
                "host_key": created["host_key"],
                "streams": [stream],
            },
        ).json()
        # (a) an ffmpeg receiver that plays the answer's SDP as is
        port = udp_port_pair()
        listener = api.post(
            path, json={"name": "ffmpeg", "password": "pw", "receive_at": f"127.0.0.1:{port}"}
        ).json()
        out = tmp / out_name
        receiver = ffmpeg_listener(listener, tmp, out, before_input=("-listen_timeout", "3"))
        # (b) libsrtp
        libsrtp = LibsrtpListener()
        libsrtp.start(
            api.post(
                path, json={"name": "libsrtp", "password": "pw", "receive_at": libsrtp.address}
            ).json()
        )
        # (c) the load generator's sinks
        sinks = Sinks(3)
        for address in sinks.addresses:
            r = api.post(path, json={"name": "sink", "password": "pw", "receive_at": address})
            assert r.status_code == 201, r.text
        wait_bound(port)
        before = drops(api)
        in_before = metric(api, "relay_packets_in_total")
        # The presenter: ffmpeg with the arguments its join answer gave.
        (output,) = presenter["ffmpeg"]["outputs"]
        if ffmpeg_suite is not None:  # the other name ffmpeg has for the 32-bit suite
            output[output.index("-srtp_out_suite") + 1] = ffmpeg_suite
        if rtcp_to_rtp_port:  # SRTCP to the RTP port (rtcp-mux), still from ffmpeg's port + 1
            output[-1] += f"?rtcpport={presenter['relay']['port']}"
        sender = subprocess.run(
            [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-re", *encoder[:4]]
            + encoder[4:]
            + ["-rtpflags", "send_bye", *output],
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sender.returncode == 0, sender.stderr
        try:
            _, receiver_log = receiver.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            receiver.kill()
            _, receiver_log = receiver.communicate()
        time.sleep(1.5)  # the worker reports its counters once a second
        sent = int(metric(api, "relay_packets_in_total") - in_before)
        after = drops(api)
        libsrtp.stop()
        received = sinks.received()
        sinks.stop()
    probe = subprocess.run(
        [
            FFPROBE,
            "-v",
            "error",
            "-count_packets",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_packets,nb_read_frames",
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
    decode = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(out), "-f", "null", "-"],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(
        stream["ssrc"],
        sent,
        fields,
        decode.stderr.strip(),
        libsrtp,
        received,
        {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)},
        receiver_log,
    )


def test_an_ffmpeg_presenter_sends_opus_to_ffmpeg_libsrtp_and_the_sinks(
    serve: Serve, tmp_path: Path
) -> None:
    run = webinar_with_ffmpeg(serve, tmp_path, OPUS, AUDIO_IN + AUDIO_CODEC)
    rtp = len(run.libsrtp.rtp)
    assert rtp >= 0.95 * 50 * SECONDS, run
    assert run.ffprobe.get("codec_name") == "opus", run
    assert int(run.ffprobe["nb_read_packets"]) >= 0.95 * rtp, run
    assert run.decode_errors == "", run.decode_errors
    assert "HMAC mismatch" not in run.receiver_log
    assert run.libsrtp.failures == []
    # ffmpeg's sender report (SRTCP from its port + 1 to the relay's), relayed to port + 1
    assert run.libsrtp.rtcp >= 1
    assert all(count >= rtp for count in run.sinks), run.sinks
    assert {k: v for k, v in run.drops.items() if k in ("auth", "replay", "too_large")} == {}
    assert {p[8:12] for p in run.libsrtp.rtp} == {run.ssrc.to_bytes(4, "big")}
    assert run.ssrc >= 1 << 31  # given to ffmpeg as a negative number


def test_an_ffmpeg_presenter_sends_vp8_in_full_size_packets(serve: Serve, tmp_path: Path) -> None:
    run = webinar_with_ffmpeg(
        serve, tmp_path, VP8, VIDEO_IN + VIDEO_CODEC + ["-g", "25"], out_name="out.webm"
    )
    assert run.ffprobe.get("codec_name") == "vp8", run
    assert int(run.ffprobe["nb_read_frames"]) >= 0.95 * 25 * SECONDS, run
    assert run.decode_errors == "", run.decode_errors
    assert run.libsrtp.failures == []
    assert max(len(p) for p in run.libsrtp.rtp) > 1400  # VP8 fills its packets
    assert all(count >= len(run.libsrtp.rtp) for count in run.sinks), run.sinks
    assert {k: v for k, v in run.drops.items() if k in ("auth", "too_large")} == {}


@pytest.mark.parametrize("ffmpeg_suite", ["AES_CM_128_HMAC_SHA1_32", "SRTP_AES128_CM_HMAC_SHA1_32"])
def test_both_32_bit_tag_variants_of_ffmpeg_are_accepted(
    serve: Serve, tmp_path: Path, ffmpeg_suite: str
) -> None:
    """ffmpeg's SDES name puts a 32-bit tag on SRTCP too, its other name an 80-bit one: the
    relay takes the sender reports of both (no auth drops) and relays the media to libsrtp."""
    run = webinar_with_ffmpeg(
        serve,
        tmp_path,
        OPUS,
        AUDIO_IN + AUDIO_CODEC,
        suite="AES_CM_128_HMAC_SHA1_32",
        ffmpeg_suite=ffmpeg_suite,
    )
    assert len(run.libsrtp.rtp) >= 0.95 * 50 * SECONDS
    assert run.libsrtp.failures == []
    assert run.libsrtp.rtcp >= 1  # the relay re-protects reports with the 80-bit tag
    assert "auth" not in run.drops, run.drops


def test_audio_and_video_from_one_ffmpeg_to_a_two_line_sdp(serve: Serve, tmp_path: Path) -> None:
    """One ffmpeg process sends Opus and VP8 (two outputs); a listener's SDP has one m= line
    per stream, on ports P and P + 2, and ffmpeg plays both from it."""
    assert FFMPEG is not None and FFPROBE is not None
    with serve.api() as api:
        created = api.post(
            "/v1/meetings", json={"title": "av", "mode": "webinar", "password": "pw"}
        ).json()
        path = f"/v1/meetings/{created['id']}/join"
        presenter = api.post(
            path,
            json={
                "name": "av",
                "role": "host",
                "host_key": created["host_key"],
                "streams": [fresh(OPUS), fresh(VP8)],
            },
        ).json()
        port = udp_port_pair()
        while not all(_free(p) for p in range(port, port + 4)):
            port = udp_port_pair()
        listener = api.post(
            path, json={"name": "av", "password": "pw", "receive_at": f"127.0.0.1:{port}"}
        ).json()
    sdp = listener["sdp"]
    assert f"m=audio {port} " in sdp and f"m=video {port + 2} " in sdp
    (tmp_path / "join.sdp").write_text(sdp)
    out = tmp_path / "out.mkv"
    receiver = subprocess.Popen(
        [FFMPEG, "-nostdin", "-hide_banner", *listener["ffmpeg"]["input"][:-2]]
        + ["-listen_timeout", "3", "-i", "join.sdp", "-map", "0", "-c", "copy", "-y", str(out)],
        cwd=tmp_path,
        env=tool_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_bound(port)
    wait_bound(port + 2)
    audio_out, video_out = presenter["ffmpeg"]["outputs"]
    sender = subprocess.run(
        [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error"]
        + ["-re", *AUDIO_IN, "-re", *VIDEO_IN]
        + ["-map", "0:a", *AUDIO_CODEC, *audio_out]
        + ["-map", "1:v", *VIDEO_CODEC, "-g", "25", *video_out],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sender.returncode == 0, sender.stderr
    _, log = receiver.communicate(timeout=30)
    probe = subprocess.run(
        [FFPROBE, "-v", "error", "-count_packets", "-show_entries"]
        + ["stream=codec_name,nb_read_packets", "-of", "compact", str(out)],
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    counts = dict(re.findall(r"codec_name=(\w+)\|nb_read_packets=(\d+)", probe.stdout))
    assert set(counts) == {"opus", "vp8"}, (probe.stdout, log)
    assert int(counts["opus"]) >= 0.95 * 50 * SECONDS, counts
    assert int(counts["vp8"]) >= 0.95 * 25 * SECONDS, counts


def _free(port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("0.0.0.0", port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_ffmpeg_sending_its_rtcp_to_the_rtp_port(serve: Serve, tmp_path: Path) -> None:
    """`srtp://host:P?rtcpport=P`: ffmpeg sends SRTCP to the relay's RTP port from its own
    RTP port + 1; the relay demultiplexes it (RFC 5761) and takes it when it authenticates."""
    run = webinar_with_ffmpeg(serve, tmp_path, OPUS, AUDIO_IN + AUDIO_CODEC, rtcp_to_rtp_port=True)
    assert len(run.libsrtp.rtp) >= 0.95 * 50 * SECONDS
    assert run.libsrtp.rtcp >= 1  # its sender report reached the listener
    assert "auth" not in run.drops and "unknown_source" not in run.drops, run.drops
