"""A real SMTP server for the tests (aiosmtpd, on a free loopback port, in a thread of its own):
the relay's mailer (control/mail.py) talks SMTP to it over TCP like to any mail server, and the
tests read what it received: the envelope and the message, as RFC 5322 text.

    with SmtpServer() as smtp:        # or the `smtp_server` fixture
        url = smtp.url                # smtp://127.0.0.1:PORT
        ... register ...
        code = smtp.code_for("ada@example.org")

`refuse_recipients(True)` makes it answer RCPT TO with 550, as a server that will not take a
message does.
"""

from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

__all__ = ["Received", "SmtpServer", "smtp_server"]

CODE_LINE = re.compile(r"^Your confirmation code: ([0-9]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Received:
    """One message as the server took it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None, "no text/plain part"
        content: str = body.get_content()
        return content

    @property
    def code(self) -> str:
        match = CODE_LINE.search(self.text)
        assert match is not None, self.text
        return match.group(1)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any
    ) -> str:
        if self.server.refusing:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, _server: Any, _session: Any, envelope: Any
    ) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.server.lock:
            self.server.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), message)
            )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SmtpServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.refusing = False
        self.port = _free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()

    def refuse_recipients(self, refusing: bool) -> None:
        self.refusing = refusing

    def messages_to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]

    def last_to(self, address: str, timeout: float = 5.0) -> Received:
        """The last message to `address` (waiting a little for it)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_to(address)
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no message to {address}"
            time.sleep(0.01)

    def code_for(self, address: str) -> str:
        """The confirmation code of the last message to `address`."""
        return self.last_to(address).code

    def clear(self) -> None:
        with self.lock:
            self.received.clear()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server
