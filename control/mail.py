"""Sending email: the confirmation codes of registrations (control/registration.py).

The server is `smtp_url` (control/settings.py), one of:

- `smtps://[user:password@]host[:465]`: implicit TLS from the first byte (RFC 8314, the way
  RFC 8314 section 3 recommends for submission);
- `smtp+starttls://[user:password@]host[:587]`: plain TCP, then STARTTLS (RFC 3207), which
  the server must offer: without it nothing is sent, so a network attacker cannot strip TLS;
- `smtp://host[:25]`: no TLS at all, for a mail server on the same machine or network (a
  local MTA relays it on). Credentials would travel in clear, so `smtp://` takes them only
  for a loopback host.

TLS checks the server's certificate and name against the system's trusted CAs
(`ssl.create_default_context`). User and password are percent-decoded, as in any URL.

Messages follow RFC 5322 (From, To, Date, Message-ID, Subject) and carry
`Auto-Submitted: auto-generated` (RFC 3834) so that auto-responders do not answer them; the
envelope (RFC 5321 MAIL FROM and RCPT TO) is given explicitly: the one recipient the caller
names, never addresses parsed out of the headers.

smtplib blocks, so each message is sent on a small thread pool of the mailer's own (not the
event loop's default executor, where Argon2 runs for joins: a slow mail server must not hold
up joining), with a timeout on every socket operation. A failure is logged with its kind and
the server's reply code only: never the recipient, since smtplib's exceptions name it, and
`MailError` says only that the email was not sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import re
import smtplib
import ssl
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage

__all__ = [
    "MailError",
    "Mailer",
    "SmtpServer",
    "check_sender",
    "confirmation_email",
    "parse_smtp_url",
]

log = logging.getLogger("control.mail")

SECURITY_OF_SCHEME = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
DEFAULT_PORT = {"plain": 25, "starttls": 587, "tls": 465}
SEND_TIMEOUT_S = 10.0  # per socket operation: connect, each command and reply
SENDING_THREADS = 4

# An address as this server sends to: RFC 5321's dot-atom local part (section 4.1.2; no quoted
# strings, no comments) of at most 64 characters (section 4.5.3.1.1), @, a DNS name of
# letters, digits and hyphens; 254 characters in all.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
ADDRESS = re.compile(
    rf"(?=.{{3,254}}$)(?=[^@]{{1,64}}@){_ATEXT}+(\.{_ATEXT}+)*@"
    r"([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


class MailError(Exception):
    """An email was not sent. The message says no more than that: never the recipient."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send (from `parse_smtp_url`)."""

    security: str  # 'plain' | 'starttls' | 'tls'
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """The server without its credentials, for messages and logs."""
        scheme = {v: k for k, v in SECURITY_OF_SCHEME.items()}[self.security]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str) -> SmtpServer:
    """The server `url` names; ValueError saying what is wrong (never with the password)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("must be an smtp://, smtp+starttls:// or smtps:// URL")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a URL with a valid host and port") from None
    security = SECURITY_OF_SCHEME.get(parts.scheme.lower())
    if security is None:
        raise ValueError("must start with smtp://, smtp+starttls:// or smtps://")
    host = parts.hostname or ""
    if not host:
        raise ValueError("names no host, as in smtps://mail.example.org")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("takes no path, query or fragment: smtps://user:password@host:port")
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    if (username is None) != (password is None):
        raise ValueError("gives a user without a password, or a password without a user")
    if username is not None and security == "plain" and not _loopback(host):
        raise ValueError(
            "would send its password in clear over smtp://: use smtps:// or smtp+starttls://"
        )
    return SmtpServer(security, host, port or DEFAULT_PORT[security], username, password)


def check_sender(address: str) -> str:
    """The From address (`smtp_from`), stripped; ValueError if it is not a plain address."""
    if not isinstance(address, str) or not ADDRESS.fullmatch(address.strip()):
        raise ValueError("must be an email address, as in relay@example.org")
    return address.strip()


def confirmation_email(
    *, sender: str, recipient: str, code: str, meeting_id: str, minutes: int, tries: int
) -> EmailMessage:
    """The email that carries a registration's confirmation code (RFC 5322). The subject holds
    no code, so that a notification on a locked screen does not show it."""
    message = EmailMessage()
    message["From"] = Address(addr_spec=sender)
    message["To"] = Address(addr_spec=recipient)
    message["Subject"] = "Confirm your registration"
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 section 5
    message.set_content(
        f"Your confirmation code: {code}\n"
        "\n"
        f"Enter it to confirm your registration for meeting {meeting_id}. It works for "
        f"{minutes} minutes and for {tries} tries; after that, ask for a new one.\n"
        "\n"
        "If you did not register, ignore this email: nothing happens without the code.\n"
    )
    return message


def _failure(exc: BaseException) -> str:
    """What went wrong, for the log: the kind of failure and the server's reply codes, never
    the text (smtplib's exceptions hold the recipient)."""
    codes: list[int] = []
    if isinstance(exc, smtplib.SMTPRecipientsRefused):  # {recipient: (code, text)}
        codes = sorted({code for code, _text in exc.recipients.values()})
    elif isinstance(getattr(exc, "smtp_code", None), int):
        codes = [exc.smtp_code]  # type: ignore[attr-defined]
    replies = ", ".join(str(code) for code in codes)
    return type(exc).__name__ + (f" (reply {replies})" if replies else "")


class Mailer:
    """Sends messages through one SMTP server, from one address."""

    def __init__(self, server: SmtpServer, sender: str, *, timeout: float = SEND_TIMEOUT_S) -> None:
        self.server = server
        self.sender = check_sender(sender)
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(SENDING_THREADS, thread_name_prefix="relay-mail")

    def __repr__(self) -> str:
        return f"Mailer({self.server.describe()}, from {self.sender})"

    async def send(self, message: EmailMessage, recipient: str) -> None:
        """Send `message` to `recipient` (the envelope's only RCPT TO); MailError if it was
        not accepted by the server."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._deliver, message, recipient)

    def _connect(self) -> smtplib.SMTP:
        # EHLO with the sender's domain: smtplib's default looks up this host's FQDN, a DNS
        # query that may hang; RFC 5321 section 4.1.4 lets the client name itself.
        local = self.sender.rpartition("@")[2]
        server = self.server
        if server.security == "tls":
            return smtplib.SMTP_SSL(
                server.host,
                server.port,
                local_hostname=local,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        smtp = smtplib.SMTP(server.host, server.port, local_hostname=local, timeout=self.timeout)
        if server.security == "starttls":
            try:
                smtp.starttls(context=ssl.create_default_context())  # refuses if not offered
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _deliver(self, message: EmailMessage, recipient: str) -> None:
        try:
            with self._connect() as smtp:
                if self.server.username is not None and self.server.password is not None:
                    smtp.login(self.server.username, self.server.password)
                smtp.send_message(message, from_addr=self.sender, to_addrs=[recipient])
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            log.warning("an email was not sent via %s: %s", self.server.describe(), _failure(exc))
            raise MailError("the email could not be sent") from None

    def close(self) -> None:
        """Stop the sending threads (messages not yet started are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
