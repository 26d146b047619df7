"""`relay serve`, the command (README.md, "Serve it"): the settings, the logs, the banner,
and a signal's one line; the processes themselves are node/serve.py's `Server`.

Settings come from the flags, then RELAY_* environment variables, then the --config TOML file
(control/settings.py); a bad one is named and the command exits with status 2.

Logs: every process logs one JSON object per line (time, level, logger, message; relay/logs.py):
`run` sets RELAY_LOG_FORMAT=json for itself and its children unless the user set it (`text` gives
the plain format). No log line carries personal data or a secret (README.md, "Attendee data
(privacy)").

If anything fails before the server is ready, everything started so far is stopped, the reason
is printed and the command exits with status 1. SIGTERM or SIGINT, at any moment from the first
line on, stops the workers and the control plane, prints one line saying so and exits with
128 + the signal (143, 130); the store has committed every write as it happened, so nothing is
lost.
"""

from __future__ import annotations

import argparse
import os
import sys

from control import credentials
from control.settings import Settings, SettingsError, resolve
from node.serve import ServeError, Server
from relay import lifecycle
from relay.logs import log_setup


def main(args: argparse.Namespace) -> int:
    """`relay serve` with its parsed flags (cli/main.py)."""
    try:
        settings = resolve(vars(args))
    except SettingsError as exc:
        print(f"relay serve: {exc}", file=sys.stderr)
        return 2
    return run(settings)


def banner(server: Server) -> str:
    s = server.settings
    token_line = (
        f"generated into {server.data_dir / credentials.TOKEN_FILE} (mode 0600)"
        if server.token_created
        else "from RELAY_TOKEN"
        if "RELAY_TOKEN" in os.environ
        else f"in {server.data_dir / credentials.TOKEN_FILE}"
    )
    ports = ", ".join(str(s.media_port + 2 * i) for i in range(s.workers))
    store = s.db.split("@")[-1] if s.db else str(server.data_dir / "relay.db")
    tls_line = (
        f"certificate {s.tls_cert}"
        if s.tls
        else "none: plain HTTP, for a proxy in front that terminates TLS"
        if s.plain_http
        else "none: plain HTTP on loopback"
    )
    proxies = ", ".join(s.trusted_proxies) or "none (the TCP peer is the client)"
    return (
        f"relay serve: API on {server.api_url} (OpenAPI at {server.api_url}/docs)\n"
        f"  TLS: {tls_line}; X-Forwarded-For believed from: {proxies}\n"
        f"  operator token: {token_line}\n"
        f"  {s.workers} worker(s) on {s.media_host}, media ports {ports} (RTCP also on +1); "
        f"participants are told {s.advertised_host}\n"
        f"  store: {store}\n"
        "  stop with Ctrl-C or SIGTERM"
    )


def run(settings: Settings) -> int:
    # Every process `relay serve` starts logs one JSON object per line (relay/logs.py) unless
    # the user chose otherwise: the children inherit the environment.
    os.environ.setdefault("RELAY_LOG_FORMAT", "json")
    log_setup()
    server: Server | None = None
    # From here on a signal stops whatever has started, in any phase (relay/lifecycle.py).
    with lifecycle.stop_on_signals():
        try:
            server = Server(settings)
            server.start()
            print(banner(server), flush=True)
            server.run()
        except lifecycle.Interrupted as stop:
            what = server.describe() if server is not None else "nothing had started yet"
            print(
                f"relay serve: stopped by {stop.signal_name}: {what}; everything stored is kept",
                file=sys.stderr,
                flush=True,
            )
            return stop.exit_status
        except (ServeError, SettingsError, OSError, ValueError) as exc:
            print(f"relay serve: {exc}", file=sys.stderr)
            return 1
    return 0
