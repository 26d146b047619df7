"""ffmpeg as a client: the arguments a join answer gives it (README.md, "Join a webinar with
ffmpeg").

ffmpeg has its own SRTP code (libavformat/srtp.c) and speaks AES_CM_128_HMAC_SHA1_80 and _32
only: no GCM, no AES-256. So a meeting on another suite gets no ffmpeg arguments.

- To send, each stream the participant declared is one ffmpeg RTP output: `-ssrc` (ffmpeg
  parses it as a signed 32-bit integer, so SSRCs from 2^31 up are written negative),
  `-payload_type`, the suite and the uplink key, and the relay's address. ffmpeg sends SRTCP
  to the relay's port + 1, which every worker also listens on.
- To receive, a listener that gave receive_at writes the answer's `sdp` to a file and opens
  it: `-protocol_whitelist file,udp,rtp,srtp -i join.sdp` (ffmpeg 5 needs the SDP to receive
  SRTP; it reads one stream per m= line, which is why the SDP puts stream k on port + 2k).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from control.answers import FfmpegArguments
from relay import wire
from relay.vocabulary import Suite

SUITES = (Suite.AES_CM_128_HMAC_SHA1_80, Suite.AES_CM_128_HMAC_SHA1_32)
INPUT = ["-protocol_whitelist", "file,udp,rtp,srtp", "-i", "join.sdp"]


def signed_ssrc(ssrc: int) -> int:
    """An SSRC as ffmpeg's -ssrc option takes it (a signed 32-bit integer)."""
    return ssrc - (1 << 32) if ssrc >= 1 << 31 else ssrc


def output_arguments(
    stream: wire.Stream, suite: str, uplink: bytes, relay_host: str, relay_port: int
) -> list[str]:
    host = f"[{relay_host}]" if ":" in relay_host else relay_host
    return [
        "-f",
        "rtp",
        "-ssrc",
        str(signed_ssrc(stream.ssrc)),
        "-payload_type",
        str(stream.pt),
        "-srtp_out_suite",
        suite,
        "-srtp_out_params",
        base64.b64encode(uplink).decode("ascii"),
        f"srtp://{host}:{relay_port}",
    ]


def arguments(
    suite: str,
    uplink: bytes,
    relay_host: str,
    relay_port: int,
    declared: Sequence[wire.Stream],
    listener: bool,
) -> FfmpegArguments | None:
    """What the join answer says under "ffmpeg": `outputs` (one argument list per declared
    stream, to follow that stream's encoder options) and, for a listener, `input`; None when
    ffmpeg cannot speak the meeting's suite."""
    if suite not in SUITES:
        return None
    answer: FfmpegArguments = {
        "outputs": [output_arguments(s, suite, uplink, relay_host, relay_port) for s in declared]
    }
    if listener:
        answer["input"] = list(INPUT)
    return answer
