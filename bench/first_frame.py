"""How long a new viewer waits for its first picture: from its WHEP POST to its first decoded
video frame, through `relay serve`.

    python -m bench.first_frame [--viewers 10] [--keyframe-interval 0.5] [--json PATH]

A `relay serve` on this machine (one worker, SQLite in a temporary directory) and a webinar;
aiortc publishes a test pattern as VP8 over WHIP, and keeps sending. Then, one after another
at random moments, `--viewers` aiortc viewers join over WHEP and wait for their first decoded
frame. A viewer's decoder needs a keyframe to start; the presenter's encoder makes one
seldom by itself (libvpx: every 3,000 frames at most), so what a newcomer waits for is the
keyframe the relay asks for at its first packet (ext/forward.pxi, "Keyframe requests"),
merged with other newcomers' within `--keyframe-interval`. The time includes the viewer's ICE
and DTLS. Reported: each viewer's wait, their median and largest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack

from control.settings import Settings
from node.serve import Server, free_ports


async def _offer(pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def _post(url: str, sdp: str, credential: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            url,
            content=sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {credential}"},
        )
    r.raise_for_status()
    return r.text


async def _one_viewer(base: str, meeting: str, password: str) -> float:
    viewer = RTCPeerConnection()
    viewer.addTransceiver("video", direction="recvonly")
    sdp = await _offer(viewer)
    started = time.monotonic()
    answer = await _post(f"{base}/v1/meetings/{meeting}/whep", sdp, password)
    await viewer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    track = viewer.getReceivers()[0].track
    await asyncio.wait_for(track.recv(), 30)  # the first frame the decoder gives
    waited = time.monotonic() - started
    await viewer.close()
    return waited


async def _measure(
    base: str, meeting: str, host_key: str, password: str, viewers: int
) -> list[float]:
    presenter = RTCPeerConnection()
    presenter.addTrack(VideoStreamTrack())
    answer = await _post(f"{base}/v1/meetings/{meeting}/whip", await _offer(presenter), host_key)
    await presenter.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await asyncio.sleep(2.0)  # well past the presenter's first keyframe
    waits = []
    rng = random.Random(6)
    for i in range(viewers):
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        waits.append(await _one_viewer(base, meeting, password))
        print(f"viewer {i + 1}/{viewers}: first frame after {waits[-1] * 1000:.0f} ms", flush=True)
    await presenter.close()
    return waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--keyframe-interval", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if args.viewers < 1:
        parser.error("--viewers must be at least 1")
    # aioice leaves loopback out of its candidates; the relay here is on loopback.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    with tempfile.TemporaryDirectory(prefix="relay-first-frame-") as tmp:
        base = free_ports(2)
        server = Server(
            Settings(
                data_dir=Path(tmp) / "data",
                api_port=base + 2,
                media_port=base,
                workers=1,
                keyframe_interval=args.keyframe_interval,
            )
        )
        server.start()
        try:
            created = httpx.post(
                f"{server.api_url}/v1/meetings",
                json={"title": "first frame", "mode": "webinar", "password": "pw"},
                headers={"Authorization": f"Bearer {server.token}"},
                timeout=30,
            ).json()
            waits = asyncio.run(
                _measure(server.api_url, created["id"], created["host_key"], "pw", args.viewers)
            )
        finally:
            server.stop()
    report: dict[str, Any] = {
        "benchmark": "first_frame",
        "viewers": args.viewers,
        "keyframe_interval_s": args.keyframe_interval,
        "waits_ms": [round(w * 1000, 1) for w in waits],
        "median_ms": round(statistics.median(waits) * 1000, 1),
        "max_ms": round(max(waits) * 1000, 1),
    }
    print(
        f"join to first decoded frame: median {report['median_ms']} ms, max {report['max_ms']} ms"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
