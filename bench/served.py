"""A webinar on a running server (node.serve.Server), for `relay demo` and the soak.

The webinar is created over the HTTP API; a presenter joins as host and N attendees join with
its password and the addresses the native load generator's sinks listen on; the returned
`bench.run.Bench` then plays all of them, with the SRTP keys of their join answers.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import httpx

from bench import _loadgen, run
from node.serve import Server

PRESENTER_SSRC = 0x10000


def check(r: httpx.Response) -> dict[str, Any]:
    """The answer's JSON; RuntimeError naming the call for an error status."""
    if r.status_code >= 400:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    body: dict[str, Any] = r.json()
    return body


def join_presenter(api: httpx.Client, meeting: str, host_key: str, ssrc: int) -> dict[str, Any]:
    """The presenter joins as host, with one Opus stream; its join answer."""
    return check(
        api.post(
            f"/v1/meetings/{meeting}/join",
            json={
                "name": "presenter",
                "role": "host",
                "host_key": host_key,
                "streams": [{"ssrc": ssrc, "kind": "audio", "pt": 111}],
            },
        )
    )


def open_webinar(
    server: Server,
    api: httpx.Client,
    attendees: int,
    rate: float,
    tmp: Path,
    out: TextIO,
    phase: Callable[[str], None] = lambda _now: None,
    first: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[str, run.Bench]:
    """Create a webinar over the API, join a presenter and `attendees` attendees (the load
    generator's sinks, at 127.x.y.z, joined with the operator token as a service joins
    listeners on their behalf, which consents for their addresses), and return (meeting id, a
    bench.run.Bench that plays them with the keys from their join answers). `phase` is told
    what it does next, for a line that reports an interruption. `first` is given the created
    meeting (its id, host key and password) before anyone joins."""
    created = check(
        api.post("/v1/meetings", json={"title": "relay demo webinar", "mode": "webinar"})
    )
    meeting = created["id"]
    print(f"webinar {meeting} created; its password was generated and shown once", file=out)
    if first is not None:
        first(created)

    sock = run.sink_socket()
    sink_port = sock.getsockname()[1]
    started = time.monotonic()
    phase("joining the attendees")
    presenter = join_presenter(api, meeting, created["host_key"], PRESENTER_SSRC)
    answers = [presenter]
    for i in range(1, attendees + 1):
        answers.append(
            check(
                api.post(
                    f"/v1/meetings/{meeting}/join",
                    json={
                        "name": f"attendee {i}",
                        "password": created["password"],
                        "receive_at": f"{_loadgen.participant_address(i)}:{sink_port}",
                    },
                )
            )
        )
    print(
        f"1 presenter and {attendees} attendees joined over the API in "
        f"{time.monotonic() - started:.1f} s, each with its own SRTP keys "
        f"({presenter['srtp']['suite']})\n",
        file=out,
    )

    scenario = run.Scenario("webinar", attendees, size=200, rate=rate, duration=1.0)
    cast = run.Cast(
        scenario,
        sink_port,
        [_key(a["srtp"]["uplink"]) for a in answers],
        [_key(a["srtp"]["downlink"]) for a in answers],
        [PRESENTER_SSRC + i for i in range(len(answers))],
    )
    attach = run.Attached(sock, cast, presenter["relay"]["port"], server.supervisor.pids())
    bench = run.Bench(scenario, "relay", tmp, lambda _line: None, attach=attach)
    return meeting, bench


def _key(text: str) -> bytes:
    return base64.b64decode(text)
