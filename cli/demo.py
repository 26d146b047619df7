"""`relay demo`: the whole relay on one machine, in a few seconds.

A server (node/serve.py, `relay serve`'s processes: the control plane on SQLite in a temporary
directory, one worker) starts on loopback; a webinar is created over the HTTP API; a presenter
joins as host and N attendees join with the webinar's password and the addresses they listen
on (bench/served.py); the native load generator (bench/_loadgen.pyx) then plays the
presenter, sending Opus-sized SRTP with the uplink key from its join answer, and every
attendee, receiving. Each second prints the participants the control plane sees, the packets
per second in and out, the loss, how many sampled copies the attendees decrypted with their
own downlink keys, and the added latency. At the end the host ends the webinar, and its usage
record is printed as the billing report would show it.

Ctrl-C or SIGTERM at any moment (starting, joining, measuring, ending) stops it quietly
(relay/lifecycle.py): the server's processes are stopped, the temporary directory is removed,
one line says what was stopped, and the exit status is 130 or 143.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import httpx
import numpy as np

from bench.served import check, open_webinar
from control.settings import Settings
from node.serve import Server, free_ports
from relay import lifecycle


class _Phase:
    """What the demo is doing, for the line that reports an interruption."""

    now = "starting the server"

    @classmethod
    def set(cls, now: str) -> None:
        cls.now = now


def main(
    attendees: int = 200, seconds: int = 5, rate: float = 50.0, out: TextIO = sys.stdout
) -> int:
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")  # the workers' and API's own logs
    _Phase.now = "starting the server"
    with lifecycle.stop_on_signals():
        try:
            with tempfile.TemporaryDirectory(prefix="relay-demo-") as tmp:
                base = free_ports(2)
                settings = Settings(
                    data_dir=Path(tmp) / "data", api_port=base + 2, media_port=base, workers=1
                )
                server = Server(settings)
                try:
                    server.start()
                    return _webinar(server, Path(tmp), attendees, seconds, rate, out)
                finally:
                    server.stop()
        except lifecycle.Interrupted as stop:
            print(
                f"relay demo: stopped by {stop.signal_name} while {_Phase.now}: the server "
                "(control plane and worker) has exited and its temporary directory is removed",
                file=sys.stderr,
                flush=True,
            )
            return stop.exit_status


def _webinar(
    server: Server,
    tmp: Path,
    attendees: int,
    seconds: int,
    rate: float,
    out: TextIO,
) -> int:
    s = server.settings
    print(
        f"relay demo: a server on {server.api_url} (SQLite in a temporary directory, "
        f"{s.workers} worker on 127.0.0.1:{s.media_port})",
        file=out,
    )
    api = httpx.Client(
        base_url=server.api_url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
    )
    with api:
        meeting, bench = open_webinar(server, api, attendees, rate, tmp, out, _Phase.set)
        print(
            f"{'second':>6} {'present':>8} {'in pps':>7} {'out pps':>8} {'loss':>7} "
            f"{'verified':>9} {'p50 ms':>7} {'p99 ms':>7}",
            file=out,
            flush=True,
        )
        sent = delivered = verified = 0
        try:
            for second in range(1, seconds + 1):
                _Phase.now = f"measuring (second {second} of {seconds})"
                step = bench.step(rate, 1.0, keep_latency=True)
                lat = np.array(step.latencies_us or [np.nan]) / 1000
                present = check(api.get("/healthz"))["participants"]
                sent, delivered = sent + step.sent, delivered + step.received
                verified += step.verified
                print(
                    f"{second:>6} {present:>8} {step.in_pps:>7,.0f} {step.out_pps:>8,.0f} "
                    f"{step.loss_ratio:>7.2%} {step.verified:>9,} "
                    f"{np.percentile(lat, 50):>7.2f} {np.percentile(lat, 99):>7.2f}",
                    file=out,
                    flush=True,
                )
        finally:
            bench.close()
        expected = sent * attendees
        print(
            f"\n{sent} packets from the presenter, {delivered:,} of {expected:,} copies "
            f"delivered ({1 - delivered / max(expected, 1):.3%} lost); {verified:,} sampled "
            "copies decrypted and checked by the attendees.",
            file=out,
        )
        _Phase.now = "ending the webinar"
        time.sleep(1.2)  # the worker reports its counters once a second
        ended = check(api.post(f"/v1/meetings/{meeting}/end"))
        usage = ended["usage"]
        print("\nthe host ended the webinar; its usage record:", file=out)
        for name in (
            "duration_s",
            "total_participants",
            "peak_participants",
            "participant_minutes",
            "features",
            "packets_in",
            "packets_out",
            "bytes_in",
            "bytes_out",
        ):
            value = usage[name]
            shown = (
                ", ".join(value)
                if isinstance(value, list)
                else f"{value:,.2f}"
                if isinstance(value, float)
                else f"{value:,}"
            )
            print(f"  {name:<20} {shown}", file=out)
    return 0 if delivered and delivered == expected else 1
