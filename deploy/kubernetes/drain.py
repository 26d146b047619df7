"""The relay pod's preStop hook (daemonset.yaml): drain this node, then wait until the
participants on it have left, so that the SIGTERM which follows cuts no meeting short.

    python /etc/relay/hooks/drain.py --wait SECONDS [--every SECONDS] [--log FILE]

1. `POST /v1/nodes/$RELAY_NODE_NAME/drain` with the operator token ($RELAY_TOKEN), as `relay
   drain` does: the node takes no new participants (its joins are answered 503, and the
   Service sends new clients to the other nodes); those present stay.
2. `GET /v1/nodes` every --every seconds (5) until this node's load, the participants present,
   is 0, or --wait seconds have passed, or its API has not answered for a minute. Then the hook
   returns and the kubelet sends relay serve SIGTERM.

It calls this node's own API on the loopback address, at $RELAY_API's port. Over HTTPS
($RELAY_TLS_CERT set) it sends the token only to a server that presents that very certificate,
the first one in the file the pod mounts, and proves it holds its key (the TLS handshake): the
certificate names the host clients use, not 127.0.0.1, so its name is not what is checked.

It logs in relay's format ($RELAY_LOG_FORMAT, relay/logs.py) to --log (default: stderr; the pod
gives relay serve's stderr, so the lines are in the container's log). Exit status 0 once the
node drained, even if participants were still there at the deadline; 1 if it could not drain.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import ssl
import sys
import time
from typing import IO, Any
from urllib.parse import quote

from relay.logs import log_formatter

log = logging.getLogger("relay.drain_hook")

TIMEOUT = 10.0  # seconds for one call
GIVE_UP_AFTER = 60.0  # seconds without an answer while waiting: relay serve is gone
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class HookError(Exception):
    """A call to the API failed; the message says how (never with the token)."""


def pinned_certificate(path: str) -> bytes:
    """The DER of the first certificate in the PEM file `path`: the server's own."""
    with open(path, "rb") as f:
        found = PEM_CERTIFICATE.search(f.read())
    if found is None:
        raise HookError(f"{path} holds no PEM certificate")
    return ssl.PEM_cert_to_DER_cert(found.group().decode("ascii"))


class Api:
    """This node's API on the loopback address, over HTTPS pinned to `certificate` (DER), or
    plain HTTP without one."""

    def __init__(self, port: int, token: str, certificate: bytes | None) -> None:
        self.port = port
        self.token = token
        self.certificate = certificate

    def _connect(self) -> http.client.HTTPConnection:
        if self.certificate is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        # Not the trust store, not the name: the one certificate compared below.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        https = http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=TIMEOUT, context=context
        )
        https.connect()
        assert isinstance(https.sock, ssl.SSLSocket)
        if https.sock.getpeercert(binary_form=True) != self.certificate:
            https.close()
            raise HookError(
                f"the server on 127.0.0.1:{self.port} does not present RELAY_TLS_CERT's "
                "certificate: the token was not sent"
            )
        return https

    def call(self, method: str, path: str) -> Any:
        connection = self._connect()
        try:
            connection.request(method, path, headers={"Authorization": f"Bearer {self.token}"})
            answer = connection.getresponse()
            body = answer.read()
        finally:
            connection.close()
        if answer.status != 200:
            raise HookError(f"{method} {path}: {answer.status} {answer.reason}")
        return json.loads(body)


def wait_for_leavers(api: Api, name: str, load: int, deadline: float, every: float) -> None:
    """Poll this node's load until it is 0, the deadline passes or the API stays silent."""
    silent_since: float | None = None
    while load > 0:
        now = time.monotonic()
        if now >= deadline:
            log.warning("node %s: %d participant(s) still present at the deadline", name, load)
            return
        time.sleep(min(every, deadline - now))
        try:
            nodes = api.call("GET", "/v1/nodes")
        except (OSError, ValueError, HookError) as exc:
            silent_since = silent_since or time.monotonic()
            if time.monotonic() - silent_since >= GIVE_UP_AFTER:
                log.warning("node %s: the API has not answered for a minute: %s", name, exc)
                return
            continue
        silent_since = None
        row = next((n for n in nodes if n.get("name") == name), None)
        left = 0 if row is None else int(row["load"])
        if left != load:
            log.info("node %s: %d participant(s) present", name, left)
        load = left
    log.info("node %s: no participants left", name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drain.py", description="drain this relay node, then wait for its participants"
    )
    parser.add_argument("--wait", type=float, required=True, help="seconds to wait, at most")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--log", help="append the log lines to this file (default: stderr)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    stream: IO[str] = sys.stderr
    if args.log:
        try:
            stream = open(args.log, "a", encoding="utf-8")  # open for the whole run
        except OSError:
            pass
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    name, token = os.environ.get("RELAY_NODE_NAME", ""), os.environ.get("RELAY_TOKEN", "")
    if not name or not token:
        log.error("drain hook: RELAY_NODE_NAME and RELAY_TOKEN must be set; not drained")
        return 1
    try:
        port = int(os.environ.get("RELAY_API", "127.0.0.1:8080").rpartition(":")[2])
        cert = os.environ.get("RELAY_TLS_CERT")
        api = Api(port, token, pinned_certificate(cert) if cert else None)
        node = api.call("POST", f"/v1/nodes/{quote(name, safe='')}/drain")
    except (OSError, ValueError, HookError) as exc:
        log.error("node %s not drained: %s", name, exc)
        return 1
    load = int(node["load"])
    log.info("node %s is draining: %d participant(s) present", name, load)
    wait_for_leavers(api, name, load, deadline, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
