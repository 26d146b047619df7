"""A WHIP publisher or a WHEP viewer built on GStreamer's webrtcbin (its own ICE with libnice,
DTLS-SRTP with OpenSSL and libsrtp, its own SDP): an independent WebRTC peer for
tests/test_gstreamer_webrtc.py.

It runs under the system Python (PyGObject and GStreamer's introspection data come from Debian:
python3-gi, gir1.2-gst-plugins-bad-1.0), not the project's virtual environment, so it uses the
standard library only. Usage:

    python3 tests/gstreamer_webrtc.py whip|whep URL CREDENTIAL SECONDS

It offers (candidates gathered first: the relay takes no trickle), POSTs the offer, applies the
answer, runs for SECONDS, DELETEs its session and prints one JSON line: the HTTP status, the
answer's Location, and for a viewer the decoded audio buffers, their peak sample and the
decoded video frames; for a publisher the connection state. A refused POST prints its status
and body and exits 0: the caller decides what it expected.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from array import array
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

# A presenter: a sine at 440 Hz as Opus and a test pattern as VP8, as a WHIP client sends them.
PUBLISHER = (
    "webrtcbin name=peer bundle-policy=max-bundle "
    "audiotestsrc is-live=true wave=sine freq=440 volume=0.5 ! audioconvert ! audioresample "
    "! opusenc ! rtpopuspay pt=111 "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! peer. "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 "
    "! videoconvert ! vp8enc deadline=1 keyframe-max-dist=15 ! rtpvp8pay pt=96 "
    "! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! peer."
)
VIEWER = "webrtcbin name=peer bundle-policy=max-bundle fakesrc num-buffers=0 ! fakesink"
RECEIVE = (
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000",
    "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
)


class Peer:
    def __init__(self, mode: str, url: str, credential: str) -> None:
        self.mode, self.url, self.credential = mode, url, credential
        self.pipeline = Gst.parse_launch(PUBLISHER if mode == "whip" else VIEWER)
        self.webrtc = self.pipeline.get_by_name("peer")
        self.loop = GLib.MainLoop()
        self.result: dict[str, Any] = {"status": None}
        self.audio_buffers = 0
        self.audio_peak = 0
        self.video_frames = 0
        self.lock = threading.Lock()
        self.offered = False
        if mode == "whep":
            for caps in RECEIVE:
                self.webrtc.emit(
                    "add-transceiver",
                    GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                    Gst.Caps.from_string(caps),
                )
            self.webrtc.connect("pad-added", self.on_pad)
        if urllib.parse.urlsplit(url).hostname in ("127.0.0.1", "localhost"):
            # libnice leaves loopback out of its candidates unless it is the only address.
            # The agent is held for the peer's life: webrtcbin 1.22's getter gives no reference
            # of its own, and Python dropping its wrapper would free the agent.
            self.ice = self.webrtc.get_property("ice-agent")
            self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)

    def start(self) -> None:
        self.pipeline.set_state(Gst.State.PLAYING)

    def on_negotiation_needed(self, _webrtc: Gst.Element) -> None:
        # Asked once per transceiver: offer once, from the main loop, when all are there.
        if not self.offered:
            self.offered = True
            GLib.timeout_add(100, self.offer)

    def offer(self) -> bool:
        if self.mode == "whip":  # sendonly, as a WHIP publisher's offer says
            for index in range(2):
                transceiver = self.webrtc.emit("get-transceiver", index)
                transceiver.set_property(
                    "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY
                )
        created = Gst.Promise.new()
        self.webrtc.emit("create-offer", None, created)
        created.wait()
        # The description belongs to the reply's structure (not copied): hold both.
        reply = created.get_reply()
        offer = reply.get_value("offer")
        applied = Gst.Promise.new()
        self.webrtc.emit("set-local-description", offer, applied)
        applied.wait()
        return False

    def on_gathering(self, webrtc: Gst.Element, _spec: object) -> None:
        if webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post)

    def post(self) -> bool:
        if self.result["status"] is not None:
            return False
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            self.url,
            data=offer.encode(),
            method="POST",
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {self.credential}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.result["status"] = response.status
                self.result["location"] = response.headers["Location"]
                answer = response.read().decode()
        except urllib.error.HTTPError as refused:
            self.result["status"] = refused.code
            self.result["error"] = refused.read().decode()
            self.loop.quit()
            return False
        _, sdp = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def on_pad(self, _webrtc: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded(self, _decode: Gst.Element, pad: Gst.Pad) -> None:
        kind = pad.get_current_caps().get_structure(0).get_name()
        if kind.startswith("audio"):
            chain = "audioconvert ! audio/x-raw,format=S16LE ! fakesink name=sink sync=false"
            count = self.on_audio
        else:
            chain = "videoconvert ! fakesink name=sink sync=false"
            count = self.on_video
        sink_bin = Gst.parse_bin_from_description(chain, True)
        sink = sink_bin.get_by_name("sink")
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", count)
        self.pipeline.add(sink_bin)
        sink_bin.sync_state_with_parent()
        pad.link(sink_bin.get_static_pad("sink"))

    def on_audio(self, _sink: Gst.Element, buffer: Gst.Buffer, _pad: Gst.Pad) -> None:
        samples = array("h", buffer.extract_dup(0, buffer.get_size()))
        with self.lock:
            self.audio_buffers += 1
            self.audio_peak = max(self.audio_peak, max((abs(s) for s in samples), default=0))

    def on_video(self, _sink: Gst.Element, _buffer: Gst.Buffer, _pad: Gst.Pad) -> None:
        with self.lock:
            self.video_frames += 1

    def finish(self) -> bool:
        state = self.webrtc.get_property("connection-state")
        self.result["connection"] = state.value_nick
        with self.lock:
            self.result["audio_buffers"] = self.audio_buffers
            self.result["audio_peak"] = self.audio_peak
            self.result["video_frames"] = self.video_frames
        location = self.result.get("location")
        if location:
            base = self.url.split("/v1/", 1)[0]
            request = urllib.request.Request(base + location, method="DELETE")
            with urllib.request.urlopen(request, timeout=10) as response:
                self.result["deleted"] = response.status
        self.loop.quit()
        return False


def main() -> int:
    mode, url, credential, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if mode not in ("whip", "whep"):
        print(f"mode must be whip or whep, not {mode!r}", file=sys.stderr)
        return 2
    Gst.init(None)
    peer = Peer(mode, url, credential)
    peer.start()
    GLib.timeout_add(int(seconds * 1000), peer.finish)
    peer.loop.run()
    peer.pipeline.set_state(Gst.State.NULL)
    print(json.dumps(peer.result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
