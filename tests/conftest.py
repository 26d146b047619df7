"""Shared fixtures: every SRTP behaviour test runs on the native core and on the reference."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

# RELAY_CORE_DIR=build/debug-lib runs the suite on the debug build (scripts/test does):
# relay/__init__.py puts its relay/_core first, in this process and every one it starts.
from relay import _core
from tests.reference import srtp_ref  # noqa: E402

ALL_SUITES = list(_core.SUITES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On the debug build, tests marked `release_only` are skipped. The debug pass is for the
    core's memory safety (AddressSanitizer, UBSan): it runs every test that sends packets
    through the core or calls it. Tests of the control plane alone (HTTP, storage, settings,
    TLS, SDP, the client, process lifecycles, placement, join limits, hostile input), of
    relay/stun.py and relay/ice.py (Python), the web console and the dashboards, a second
    browser on a path a first one already takes through the core, ffmpeg (its packets take the
    paths GStreamer's, rtpengine's and the WebRTC peers' do) and the video-loss run (its
    paths run packet by packet in test_rtx and test_keyframes), run once, on the release
    build: again under the sanitizers they find nothing new, and cost CI minutes it must keep
    under 20. The debug pass also runs every worker with connected per-receiver sockets
    (RELAY_CONNECTED_SOCKETS, scripts/test), the release pass with its default, none: each
    test runs on both ways of sending."""
    _longest_first(items)
    for item in items:
        if item.nodeid.split("::", 1)[0] in TIMED:
            item.add_marker(pytest.mark.timed)
    if not _core.DEBUG_BUILD:
        return
    skip = pytest.mark.skip(reason="release_only: the release pass runs it (tests/conftest.py)")
    for item in items:
        if item.get_closest_marker("release_only") is not None:
            item.add_marker(skip)


# Modules that take longest (a minute or so each: a compile, three nodes, two browsers, a
# thousand generated requests): scripts/test runs the suite on two pytest-xdist workers, a
# module to a worker at a time (`--dist loadfile`), which start them first, so that neither
# worker is left with one of them at the end while the other idles.
LONGEST_FIRST = (
    "tests/test_packaging.py",
    "tests/test_cluster.py",
    "tests/test_browsers.py",
    "tests/test_schemathesis.py",
    "tests/test_web_browsers.py",
)


# Modules whose tests hold the relay to a deadline or a rate measured on the wall clock (an
# expel's effect within a second, a worker's restart gap, a stream's event, a browser's frames
# under loss, a bench's steps, three nodes' 150,000 packets a second), or whose own traffic
# would disturb those that do: marked `timed`, they run one test at a time (scripts/test),
# never beside another test's processes on the same two cores.
TIMED = (
    "tests/test_bench.py",
    "tests/test_browsers.py",
    "tests/test_cluster.py",
    "tests/test_lifecycle.py",
    "tests/test_nodes.py",
    "tests/test_serve.py",
    "tests/test_serve_continuity.py",
    "tests/test_supervisor.py",
    "tests/test_video_loss.py",
    "tests/test_web.py",
    "tests/test_web_browsers.py",
    "tests/test_whip.py",
    "tests/test_worker.py",
)


def _longest_first(items: list[pytest.Item]) -> None:
    """LONGEST_FIRST's modules ahead of the rest, each in its order (a stable sort: the same
    on every worker, as pytest-xdist requires)."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def pytest_report_header(config: pytest.Config) -> str:
    build = "debug (RELAY_DEBUG=1)" if _core.DEBUG_BUILD else "release"
    return f"relay._core: {build} build, {_core.OPENSSL_VERSION}"


@pytest.fixture(params=["native", "reference"])
def impl(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """The Session class under test."""
    return _core.Session if request.param == "native" else srtp_ref.Session


@pytest.fixture(params=ALL_SUITES)
def suite(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def key_for(suite: str, seed: int = 1) -> bytes:
    key_len, salt_len, _ = _core.SUITES[suite]
    return bytes((seed * 37 + i) & 0xFF for i in range(key_len + salt_len))


def rtp(
    seq: int,
    ssrc: int = 0x11223344,
    payload: bytes = b"\xab" * 160,
    *,
    pt: int = 111,
    ts: int = 0,
    csrcs: tuple[int, ...] = (),
    ext: bytes | None = None,
    padding: int = 0,
    marker: bool = False,
) -> bytes:
    """Build an RTP packet (RFC 3550 section 5.1)."""
    b0 = 0x80 | len(csrcs) | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    b1 = pt | (0x80 if marker else 0)
    out = struct.pack("!BBHII", b0, b1, seq & 0xFFFF, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        assert len(ext) % 4 == 0
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def rtcp_sr(ssrc: int = 0x11223344, extra: bytes = b"") -> bytes:
    """An RTCP sender report with no report blocks (RFC 3550 section 6.4.1)."""
    body = struct.pack("!IIIII", ssrc, 0x83AA7E80, 0, 1234, 10) + struct.pack("!I", 1600)
    pkt = struct.pack("!BBH", 0x80, 200, len(body) // 4) + body + extra
    return pkt
