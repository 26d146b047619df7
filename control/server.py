"""The control plane's process: the HTTP API on uvicorn, on uvloop, over a `ControlPlane`.

`relay serve` (node/serve.py) starts this as a child, `python -m control.server`, with the
resolved settings and the ZeroMQ endpoints in the environment (RELAY_SERVE_SETTINGS,
RELAY_SERVE_ENDPOINTS: JSON; no secrets but what the operator put in the `db` and `smtp_url`
URLs). The operator token, the key box key and the PII key
are read here from RELAY_TOKEN / RELAY_BOX_KEY / RELAY_PII_KEY or the data directory
(control/credentials.py). Once the API listens, the process writes its pid to RELAY_SERVE_READY
(a file), which is how the parent knows the start worked.

HTTPS: with `tls_cert` and `tls_key` uvicorn serves TLS with them (control/tls.py: checked again
here before uvicorn loads them, since a file may have changed since `relay serve` started; a
renewed certificate is loaded when this process starts again). Off loopback without TLS it
refuses to start unless `plain_http` (control/settings.py). uvicorn's own proxy header handling
is off (it believes X-Forwarded-For from 127.0.0.1 by default): which address a request comes
from is decided by control/proxies.py alone, from `trusted_proxies`.

SIGTERM: uvicorn stops taking requests and finishes those in flight, then the control plane
closes its sockets and the store (every write already committed). Started by `relay serve`,
the process ignores SIGINT (Ctrl-C is for its parent, which stops it in order) and ends within
a second of its parent's death (relay/lifecycle.py): without a parent, requests in flight are
not waited for. Killed
outright, nothing committed is lost either: the parent starts it again, and it rebuilds the
routing state from the store while the workers keep forwarding.
"""

# ruff: noqa: E402 (the imports after the binding below, on purpose)
from __future__ import annotations

# Bound to `relay serve` before the imports below, which take a second or more on a loaded
# host: a server killed while this process is still importing must not leave it running on
# for that long (relay/lifecycle.py). relay.lifecycle itself imports only the standard library.
from relay import lifecycle

_MANAGED = lifecycle.bind_to_parent() if __name__ == "__main__" else False

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
import uvloop

from control import credentials, tls
from control.api import create_app
from control.limits import JoinLimits
from control.mail import Mailer, parse_smtp_url
from control.nodes import GONE_AFTER_S, this_node
from control.plane import ControlPlane, Endpoints
from control.ratelimit import SignupThrottle
from control.recordings import Recordings
from control.settings import Settings, SettingsError, check_api
from control.store import StoreError, open_store
from relay.logs import log_setup

log = logging.getLogger("control.server")


class _Server(uvicorn.Server):
    """uvicorn's server. Started by `relay serve`, it leaves SIGINT to its parent, which
    stops its children itself (the control plane last), and once orphaned it stops without
    waiting for the requests in flight."""

    managed = False
    parent = 0  # the pid of the `relay serve` that started this process
    stopping: Callable[[], None] | None = None  # called when told to stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.managed and sig == signal.SIGINT:
            return
        if self.managed and os.getppid() != self.parent:
            self.force_exit = True  # orphaned: nobody waits for the requests in flight
        if self.stopping is not None:
            self.stopping()  # end the event streams, which would hold the stop up
        super().handle_exit(sig, frame)


async def _watch_started(server: uvicorn.Server, ready: Path | None) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    if ready is not None:
        ready.write_text(str(os.getpid()))


def _tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options: none for plain HTTP."""
    if settings.tls_cert is None or settings.tls_key is None:
        return {}
    return {
        "ssl_certfile": str(settings.tls_cert),
        "ssl_keyfile": str(settings.tls_key),
        "ssl_ciphers": tls.SERVER_CIPHERS,
    }


def mailer_of(settings: Settings) -> Mailer | None:
    """The mailer of `smtp_url` and `smtp_from` (checked by control/settings.py), or None."""
    if not settings.smtp_url:
        return None
    return Mailer(parse_smtp_url(settings.smtp_url), settings.smtp_from)


async def run(
    settings: Settings, endpoints: Endpoints, ready: Path | None = None, managed: bool = False
) -> int:
    check_api(settings)
    token, _ = credentials.operator_token(settings.data_dir)
    box_key = credentials.box_key(settings.data_dir)
    pii_key = credentials.pii_key(settings.data_dir)
    _, certificate = credentials.dtls_certificate(settings.data_dir)
    store = await open_store(settings.db, data_dir=settings.data_dir)
    node = this_node(settings, credentials.node_instance(settings.data_dir), time.time())
    try:
        # Registered once, before anything listens: a running node's name is refused here,
        # with its reason as the one line `relay serve` shows (NodeNameTaken is a StoreError:
        # main() says it). The control plane then keeps the row fresh (control/nodes.py).
        node = await store.register_node(node, gone_after=GONE_AFTER_S)
    except BaseException:
        await store.close()
        raise

    async def start() -> ControlPlane:
        return await ControlPlane.start(
            store,
            endpoints,
            token=token,
            box_key=box_key,
            pii_key=pii_key,
            relay_host=settings.advertised_host,
            media_port=settings.media_port,
            workers=settings.workers,
            limits=JoinLimits(
                max_participants=settings.max_participants,
                listeners_per_address=settings.listeners_per_address,
                joins_per_minute=settings.joins_per_minute,
            ),
            recordings=Recordings(
                settings.data_dir / "recordings",
                credentials.recording_key_file(settings.data_dir),
                settings.recording_retention_days,
            ),
            mailer=mailer_of(settings),
            signup=SignupThrottle(
                client_per_minute=settings.signup_client_per_minute,
                meeting_per_minute=settings.signup_meeting_per_minute,
            ),
            dtls_fingerprint=certificate.fingerprint,
            node=node,
        )

    app = create_app(start, trusted_proxies=settings.trusted_proxies)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our logging setup; uvicorn's access log would show client addresses
        access_log=False,
        proxy_headers=False,  # control/proxies.py decides whom X-Forwarded-For is believed from
        **_tls_options(settings),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    server.managed, server.parent = managed, os.getppid()

    def end_streams() -> None:
        # The live pages' event streams never end by themselves (control/live.py).
        if app.state.plane is not None:
            app.state.plane.changes.close()

    server.stopping = end_streams
    watcher = asyncio.create_task(_watch_started(server, ready))
    try:
        await server.serve()
    finally:
        watcher.cancel()
        await store.close()
    if not server.started:
        return 1  # uvicorn has logged why (the port is taken, say)
    return 0


def main() -> int:
    managed = _MANAGED or lifecycle.bind_to_parent()  # never outlive `relay serve`
    log_setup()
    try:
        settings = Settings.from_json(json.loads(os.environ["RELAY_SERVE_SETTINGS"]))
        endpoints = Endpoints(**json.loads(os.environ["RELAY_SERVE_ENDPOINTS"]))
    except (KeyError, TypeError, ValueError) as exc:
        print(f"control.server: started without valid settings ({exc}); use `relay serve`")
        return 2
    ready = os.environ.get("RELAY_SERVE_READY")
    try:
        return uvloop.run(run(settings, endpoints, Path(ready) if ready else None, managed))
    except (SettingsError, StoreError) as exc:
        print(f"relay serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
