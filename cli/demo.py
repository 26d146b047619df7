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

The webinar's join page and host console (control/web/) are printed with its password and host
key as it starts. With `--listen S` a chime (cli/chime.py: real Opus) joins too, as a second
presenter, so a browser that opens the join page is given its stream (the page offers a
section per presenter); it is muted while the attendees' copies are counted, then the demo
mutes the measured presenter and unmutes the chime for S seconds, so whoever opened the join
page hears it, before the webinar ends.
With `--listen` the media ports listen on every address and the answers name this host's own
(a browser leaves loopback out of its ICE candidates); the API stays on loopback.

Ctrl-C or SIGTERM at any moment (starting, joining, measuring, ending) stops it quietly
(relay/lifecycle.py): the server's processes are stopped, the temporary directory is removed,
one line says what was stopped, and the exit status is 130 or 143.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np

from bench.served import check, open_webinar
from cli.chime import STREAM as CHIME_STREAM
from cli.chime import Chime
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
    attendees: int = 200,
    seconds: int = 5,
    rate: float = 50.0,
    out: TextIO = sys.stdout,
    listen: int = 0,
) -> int:
    os.environ.setdefault("RELAY_LOG_LEVEL", "WARNING")  # the workers' and API's own logs
    _Phase.now = "starting the server"
    with lifecycle.stop_on_signals():
        try:
            with tempfile.TemporaryDirectory(prefix="relay-demo-") as tmp:
                base = free_ports(2)
                settings = Settings(
                    data_dir=Path(tmp) / "data",
                    api_port=base + 2,
                    media_port=base,
                    workers=1,
                    media_host="0.0.0.0" if listen else "127.0.0.1",
                    public_host=host_address() if listen else None,
                )
                server = Server(settings)
                try:
                    server.start()
                    return _webinar(server, Path(tmp), attendees, seconds, rate, out, listen)
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
    listen: int = 0,
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
        created: list[dict[str, Any]] = []

        def pages(meeting: dict[str, Any]) -> None:
            _show_pages(server.api_url, meeting, listen, out)
            created.append(meeting)

        meeting, bench = open_webinar(
            server, api, attendees, rate, tmp, out, _Phase.set, first=pages
        )
        chime = [_join_chime(api, created[0])] if listen else []
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
            if listen:
                _listen(api, meeting, chime[0], listen, out)
        finally:
            bench.close()
            for sender in chime:
                sender.stop()
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


def host_address() -> str:
    """This host's own address on its default route, which a browser on it can reach (no
    packet is sent: connect() on UDP only looks the route up); loopback without one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("203.0.113.1", 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _show_pages(api_url: str, created: dict[str, Any], listen: int, out: TextIO) -> None:
    meeting = created["id"]
    when = (
        f"the chime plays for {listen} s after the measurement"
        if listen
        else "run `relay demo --listen 60` to hear a chime there"
    )
    print(
        f"  join page:    {api_url}/m/{meeting}  (password {created['password']}; {when})\n"
        f"  host console: {api_url}/host/{meeting}  (host key {created['host_key']})",
        file=out,
        flush=True,
    )


def _join_chime(api: httpx.Client, created: dict[str, Any]) -> Chime:
    """The chime joins after the measured presenter (whose stream stays the attendees' first,
    where the load generator's sinks listen) and is muted until `_listen`, so they count the
    presenter's copies alone. The join page offers a section per presenter: a browser gets
    both streams and hears the chime once it is unmuted."""
    answer = check(
        api.post(
            f"/v1/meetings/{created['id']}/join",
            json={
                "name": "chime",
                "role": "host",
                "host_key": created["host_key"],
                "streams": [CHIME_STREAM],
            },
        )
    )
    mute(api, created["id"], answer["participant_id"], True)
    sender = Chime(answer)
    sender.start()
    return sender


def mute(api: httpx.Client, meeting: str, participant: str, muted: bool) -> None:
    check(api.patch(f"/v1/meetings/{meeting}/participants/{participant}", json={"muted": muted}))


def _listen(api: httpx.Client, meeting: str, chime: Chime, seconds: int, out: TextIO) -> None:
    """The measured presenter muted, the chime heard, for `seconds`."""
    _Phase.now = "playing the chime"
    people = check(api.get(f"/v1/meetings/{meeting}/participants"))
    ids = {p["name"]: p["id"] for p in people}
    mute(api, meeting, ids["presenter"], True)
    mute(api, meeting, ids["chime"], False)
    print(f"\nthe chime plays now for {seconds} s: open the join page to hear it", file=out)
    for second in range(1, seconds + 1):
        time.sleep(1.0)
        if second % 5 == 0 or second == seconds:
            browsers = sum(
                1
                for p in check(api.get(f"/v1/meetings/{meeting}/participants"))
                if p["left_at"] is None and p["name"] not in ids
            )
            print(f"  {second:>4} s: {browsers} listening in a browser", file=out, flush=True)
