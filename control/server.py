"""The control plane's process: the HTTP API on uvicorn, on uvloop, over a `ControlPlane`.

`relay serve` (control/serve.py) starts this as a child, `python -m control.server`, with the
resolved settings and the ZeroMQ endpoints in the environment (RELAY_SERVE_SETTINGS,
RELAY_SERVE_ENDPOINTS: JSON; no secrets but what the operator put in the `db` and `smtp_url`
URLs). The operator token, the key box key and the PII key
are read here from RELAY_TOKEN / RELAY_BOX_KEY / RELAY_PII_KEY or the data directory
(control/credentials.py). Once the API listens, the process writes its pid to RELAY_SERVE_READY
(a file), which is how the parent knows the start worked.

SIGTERM or SIGINT: uvicorn stops taking requests and finishes those in flight, then the
control plane closes its sockets and the store (every write already committed). Killed
outright, nothing committed is lost either: the parent starts it again, and it rebuilds the
routing state from the store while the workers keep forwarding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import uvicorn
import uvloop

from control import credentials
from control.api import create_app
from control.mail import Mailer, parse_smtp_url
from control.plane import ControlPlane, Endpoints
from control.ratelimit import SignupThrottle
from control.recordings import Recordings
from control.settings import Settings, SettingsError
from control.store import StoreError, open_store
from relay.logs import log_setup

log = logging.getLogger("control.server")


async def _watch_started(server: uvicorn.Server, ready: Path | None) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    if ready is not None:
        ready.write_text(str(os.getpid()))


def mailer_of(settings: Settings) -> Mailer | None:
    """The mailer of `smtp_url` and `smtp_from` (checked by control/settings.py), or None."""
    if not settings.smtp_url:
        return None
    return Mailer(parse_smtp_url(settings.smtp_url), settings.smtp_from)


async def run(settings: Settings, endpoints: Endpoints, ready: Path | None = None) -> int:
    token, _ = credentials.operator_token(settings.data_dir)
    box_key = credentials.box_key(settings.data_dir)
    pii_key = credentials.pii_key(settings.data_dir)
    store = await open_store(settings.db, data_dir=settings.data_dir)

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
        )

    app = create_app(start)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our logging setup; uvicorn's access log would show client addresses
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
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
    log_setup()
    try:
        settings = Settings.from_json(json.loads(os.environ["RELAY_SERVE_SETTINGS"]))
        endpoints = Endpoints(**json.loads(os.environ["RELAY_SERVE_ENDPOINTS"]))
    except (KeyError, TypeError, ValueError) as exc:
        print(f"control.server: started without valid settings ({exc}); use `relay serve`")
        return 2
    ready = os.environ.get("RELAY_SERVE_READY")
    try:
        return uvloop.run(run(settings, endpoints, Path(ready) if ready else None))
    except (SettingsError, StoreError) as exc:
        print(f"relay serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
