"""How fast an expel reaches the fast path, through the whole server: from the moment the
answer to `PATCH /v1/meetings/{id}/participants/{pid} {"expel": true}` arrives to the last
packet that still reaches the expelled participant or leaves it for someone else.

`relay serve`'s parts run on loopback (control plane on SQLite in a temporary directory, one
worker). A presenter streams at a steady rate; a witness listens. In each trial a fresh
participant joins over the API, sends its own stream and receives the presenter's; once both
directions flow, the host expels it over the API. Afterwards the witness must still receive
the presenter, the expelled one must get nothing more, and nothing of its stream may reach the
witness; the times say how long "nothing more" took to hold.

    python -m bench.expel --trials 50 --rate 2000

Delays are clipped at 0 (the last packet arrived before the answer), and their resolution is
one packet interval (0.5 ms at 2,000 packets/s).
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import struct
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

from control.settings import Settings
from node.serve import Server, free_ports
from relay.srtp import Session

PRESENTER_SSRC = 0x5EED
SUITE = "AES_CM_128_HMAC_SHA1_80"


class Peer:
    """A participant: a socket, a thread that timestamps what arrives (by SSRC), and
    optionally a thread that streams its own SSRC at `rate`."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.arrivals: dict[int, list[float]] = defaultdict(list)
        self.running = True
        self.listening = threading.Thread(target=self._listen, daemon=True)
        self.listening.start()
        self.sending: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()
        return f"{host}:{port}"

    def _listen(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) >= 12 and not 200 <= data[1] <= 206:
                self.arrivals[int.from_bytes(data[8:12], "big")].append(time.monotonic())

    def stream(self, answer: dict[str, object], ssrc: int, rate: float) -> None:
        srtp = answer["srtp"]
        relay = answer["relay"]
        assert isinstance(srtp, dict) and isinstance(relay, dict)
        session = Session(SUITE, base64.b64decode(srtp["uplink"]))
        target = (relay["host"], relay["port"])

        def send() -> None:
            seq, next_at = 0, time.monotonic()
            while self.running:
                header = struct.pack("!BBHII", 0x80, 111, seq & 0xFFFF, seq * 960, ssrc)
                try:
                    self.sock.sendto(session.protect(header + bytes(160)), target)
                except OSError:
                    return
                seq += 1
                next_at += 1.0 / rate
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

        self.sending = threading.Thread(target=send, daemon=True)
        self.sending.start()

    def close(self) -> None:
        self.running = False
        self.listening.join()
        if self.sending is not None:
            self.sending.join()
        self.sock.close()


def _ok(r: httpx.Response) -> dict[str, object]:
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.url.path}: {r.status_code} {r.text}")
    body: dict[str, object] = r.json()
    return body


def measure(trials: int, rate: float, workdir: Path) -> dict[str, list[float]]:
    base = free_ports(2)
    server = Server(
        Settings(data_dir=workdir / "data", api_port=base + 2, media_port=base, workers=1)
    )
    server.start()
    results: dict[str, list[float]] = {"to": [], "from": [], "call": []}
    api = httpx.Client(
        base_url=server.api_url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )
    presenter, witness = Peer(), Peer()
    try:
        meeting = _ok(api.post("/v1/meetings", json={"title": "expel", "password": "pw"}))["id"]
        path = f"/v1/meetings/{meeting}"
        answer = _ok(
            api.post(
                f"{path}/join",
                json={"name": "presenter", "password": "pw", "ssrcs": [PRESENTER_SSRC]},
            )
        )
        presenter.stream(answer, PRESENTER_SSRC, rate)
        _ok(
            api.post(
                f"{path}/join",
                json={"name": "witness", "password": "pw", "receive_at": witness.address},
            )
        )
        for trial in range(trials):
            ssrc = 0x100 + trial
            victim = Peer()
            joined = _ok(
                api.post(f"{path}/join", json={"name": "v", "password": "pw", "ssrcs": [ssrc]})
            )
            victim.stream(joined, ssrc, rate / 2)
            deadline = time.monotonic() + 5
            while len(victim.arrivals[PRESENTER_SSRC]) < 20 or len(witness.arrivals[ssrc]) < 5:
                if time.monotonic() > deadline:
                    raise RuntimeError("the new participant's media did not flow both ways")
                time.sleep(0.005)
            before = len(witness.arrivals[PRESENTER_SSRC])
            asked = time.monotonic()
            _ok(api.patch(f"{path}/participants/{joined['participant_id']}", json={"expel": True}))
            answered = time.monotonic()
            time.sleep(0.2)
            victim.close()
            if len(witness.arrivals[PRESENTER_SSRC]) - before < rate * 0.1:
                raise RuntimeError("the witness stopped receiving the presenter")
            results["to"].append(max(0.0, victim.arrivals[PRESENTER_SSRC][-1] - answered) * 1e3)
            results["from"].append(max(0.0, witness.arrivals[ssrc][-1] - answered) * 1e3)
            results["call"].append((answered - asked) * 1e3)
    finally:
        presenter.close()
        witness.close()
        api.close()
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="presenter packets per second: the resolution of the measure",
    )
    args = parser.parse_args()
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="relay-expel-") as tmp:
        results = measure(args.trials, args.rate, Path(tmp))
    print(
        f"expel over the API, {args.trials} trials, presenter at {args.rate:g} packets/s "
        f"(resolution {1000 / args.rate:.1f} ms):"
    )
    for key, what in (
        ("call", "the expel call itself (request to answer)"),
        ("to", "answer -> last packet reaching the expelled"),
        ("from", "answer -> last packet of the expelled reaching another"),
    ):
        ms = np.array(results[key])
        print(
            f"  {what:<56} p50 {np.percentile(ms, 50):6.2f} ms  p99 "
            f"{np.percentile(ms, 99):6.2f} ms  max {ms.max():6.2f} ms  "
            f"mean {statistics.fmean(ms):6.2f} ms"
        )


if __name__ == "__main__":
    main()
