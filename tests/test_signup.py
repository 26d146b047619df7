"""Signing up on the open internet (README, "Attendee data (privacy)"): automatic and rules
approval wait for the registrant to confirm the email with a code mailed to it, codes are kept
as digests, expire and allow a few tries, new codes are limited, a server without a mail
server refuses these approvals, a mail server that fails is a 503 that keeps nothing, and
sign-ups are throttled per client address (IPv6: per /64) and per meeting.

The control plane is tests/test_api.py's harness (SQLite in tmp_path, httpx's ASGI transport);
its mailer speaks SMTP over TCP to a real server on loopback (aiosmtpd, tests/smtp_server.py),
and every code here is read out of the message that server received.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from control import auth
from control.mail import Mailer, SmtpServer, check_sender, parse_smtp_url
from control.ratelimit import SignupThrottle, TokenBuckets
from tests.smtp_server import SmtpServer as MailSink
from tests.smtp_server import smtp_server  # noqa: F401 (a fixture)
from tests.test_api import OPERATOR, Api, bearer, error, run

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

SENDER = "relay@relay-example.org"
PW = "Meeting-Pw-Sesame-42"
# What README ("Attendee data (privacy)") promises registrants and operators.
CODE_TTL_S = 15 * 60  # a code works for 15 minutes...
CODE_TRIES = 5  # ...and 5 tries
CODE_RESEND_AFTER_S = 60  # a new code at most once a minute...
CODES_PER_REGISTRATION = 5  # ...and 5 in all
UNCONFIRMED_KEPT_S = 24 * 3600  # nobody confirmed it within a day: deleted


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "ARGON2_MEMORY_KIB", 1024)


@pytest.fixture
def smtp(smtp_server: MailSink) -> MailSink:  # noqa: F811 (the fixture above)
    smtp_server.clear()
    smtp_server.refuse_recipients(False)
    return smtp_server


def mailer_for(smtp: MailSink) -> Mailer:
    return Mailer(parse_smtp_url(smtp.url), SENDER)


def person(n: int, email: str | None = None) -> dict[str, Any]:
    return {
        "first_name": f"Ada{n}-Qx",
        "last_name": f"Lovelace{n}-Zw",
        "email": email or f"ada{n}.lovelace@corp.example",
    }


async def meeting_with(api: Api, **settings: Any) -> dict[str, Any]:
    m = await api.create(title="Launch", mode="webinar", password=PW)
    r = await api.client.put(
        f"/v1/meetings/{m['id']}/registration", json=settings, headers=bearer(m["host_key"])
    )
    assert r.status_code == 200, r.text
    return m


async def register(
    api: Api, meeting_id: str, form: dict[str, Any], client: httpx.AsyncClient | None = None
) -> httpx.Response:
    return await (client or api.client).post(f"/v1/meetings/{meeting_id}/registrations", json=form)


async def confirm(api: Api, meeting_id: str, rid: str, code: str) -> httpx.Response:
    return await api.client.post(
        f"/v1/meetings/{meeting_id}/registrations/{rid}/confirm", json={"code": code}
    )


async def resend(api: Api, meeting_id: str, rid: str) -> httpx.Response:
    return await api.client.post(f"/v1/meetings/{meeting_id}/registrations/{rid}/resend")


async def registrants(api: Api, m: dict[str, Any]) -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/meetings/{m['id']}/registrations", headers=bearer(m["host_key"]))
    assert r.status_code == 200, r.text
    answer: list[dict[str, Any]] = r.json()
    return answer


def disk(path: Path) -> bytes:
    """The SQLite file and its WAL, as they are on disk now."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def relay_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the relay's own loggers wrote (not the test SMTP server's)."""
    return "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if r.name.startswith(("control", "relay", "uvicorn", "fastapi"))
    )


# --- confirmation -----------------------------------------------------------------------------


def test_automatic_approval_waits_for_the_code_mailed_to_the_address(
    tmp_path: Path, smtp: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    form = person(1)

    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic")
        r = await register(api, m["id"], form)
        assert r.status_code == 201, r.text
        answer = r.json()
        assert answer["status"] == "unconfirmed" and "join_token" not in answer
        assert set(answer) == {"id", "meeting_id", "status", "code_expires_at"}
        assert answer["code_expires_at"] == api.now + CODE_TTL_S
        # the message: to that address only, from smtp_from, RFC 5322 headers, the code
        mail = smtp.last_to(form["email"])
        assert mail.rcpt_tos == (form["email"],) and mail.mail_from == SENDER
        headers = mail.message
        assert headers["From"] == SENDER and headers["To"] == form["email"]
        for name in ("Date", "Message-ID", "Subject"):
            assert headers[name], name
        assert headers["Auto-Submitted"] == "auto-generated"
        code = mail.code
        assert re.fullmatch(r"[0-9]{8}", code) and code not in headers["Subject"]
        assert m["id"] in mail.text
        # until confirmed: no token, not counted, listed to the host as unconfirmed
        people = await registrants(api, m)
        assert [p["status"] for p in people] == ["unconfirmed"]
        assert not (await api.client.get(f"/v1/meetings/{m['id']}/registration")).json()["full"]
        # a wrong code is refused and counted; the right one confirms and gives the token
        wrong = "00000000" if code != "00000000" else "11111111"
        message = error(await confirm(api, m["id"], answer["id"], wrong), 403, "forbidden")
        assert f"{CODE_TRIES - 1} more tries" in message and wrong not in message
        r = await confirm(api, m["id"], answer["id"], code)
        assert r.status_code == 200, r.text
        confirmed = r.json()
        assert set(confirmed) == {"id", "meeting_id", "status", "join_token"}
        assert confirmed["status"] == "approved" and len(confirmed["join_token"]) >= 40
        joined = await api.joined(m["id"], name="Ada", registration_token=confirmed["join_token"])
        assert joined["role"] == "attendee"
        # once: the code does not confirm twice, and the token is shown nowhere else
        error(await confirm(api, m["id"], answer["id"], code), 409, "conflict", "confirmed")
        people = await registrants(api, m)
        assert people[0]["status"] == "approved" and "join_token" not in people[0]
        # unknown ids, other meetings' ids and malformed codes
        error(await confirm(api, m["id"], "nope", code), 404, "not_found")
        other = await meeting_with(api, approval="manual")
        error(await confirm(api, other["id"], answer["id"], code), 404, "not_found")
        for bad in ("1234567", "123456789", "abcdefgh", "１２３４５６７８"):
            error(await confirm(api, m["id"], answer["id"], bad), 422, "invalid", "code")

    run(tmp_path, body, mailer=mailer_for(smtp))
    logged = relay_logs(caplog)
    assert "registration" in logged  # the relay did log: just not the address
    for value in form.values():
        assert value not in logged
    assert smtp.last_to(form["email"]).code not in logged


def test_rules_approval_confirms_the_email_before_its_domain_counts(
    tmp_path: Path, smtp: MailSink
) -> None:
    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="rules", rules={"email_domains": ["corp.example"]})
        # anyone typing an address at corp.example used to be approved at once
        r = await register(api, m["id"], person(1, "ceo@corp.example"))
        assert r.status_code == 201, r.text
        inside = r.json()
        assert inside["status"] == "unconfirmed" and "join_token" not in inside
        error(await api.join(m["id"], name="x", password=PW), 403, "forbidden")
        r = await confirm(api, m["id"], inside["id"], smtp.code_for("ceo@corp.example"))
        assert r.status_code == 200 and r.json()["status"] == "approved"
        await api.joined(m["id"], name="CEO", registration_token=r.json()["join_token"])
        # another domain: confirmed, then pending for the host
        r = await register(api, m["id"], person(2, "x@elsewhere.example"))
        outside = r.json()
        assert outside["status"] == "unconfirmed"
        r = await confirm(api, m["id"], outside["id"], smtp.code_for("x@elsewhere.example"))
        assert r.json() == {"id": outside["id"], "meeting_id": m["id"], "status": "pending"}
        host = bearer(m["host_key"])
        url = f"/v1/meetings/{m['id']}/registrations/{outside['id']}"
        r = await api.client.patch(url, json={"status": "approved"}, headers=host)
        assert r.status_code == 200 and r.json()["join_token"]

    run(tmp_path, body, mailer=mailer_for(smtp))


def test_codes_are_digests_that_expire_allow_few_tries_and_are_renewed_sparingly(
    tmp_path: Path, smtp: MailSink
) -> None:
    form = person(3)

    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic")
        rid = (await register(api, m["id"], form)).json()["id"]
        first = smtp.code_for(form["email"])
        # stored as a keyed digest: not the code, not its plain SHA-256
        row = await api.plane.store.get_registration(rid)
        assert row is not None and row.confirm_digest is not None
        assert first not in row.confirm_digest
        assert row.confirm_digest != auth.secret_digest(first)
        assert first.encode() not in disk(tmp_path / "r.db")
        # a new code: not within a minute of the last one (429, Retry-After), then yes
        r = await resend(api, m["id"], rid)
        error(r, 429, "throttled")
        assert 1 <= int(r.headers["Retry-After"]) <= CODE_RESEND_AFTER_S
        api.now += CODE_RESEND_AFTER_S
        r = await resend(api, m["id"], rid)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "unconfirmed"
        assert r.json()["code_expires_at"] == api.now + CODE_TTL_S
        second = smtp.code_for(form["email"])
        assert len(smtp.messages_to(form["email"])) == 2
        if second != first:  # the old code stopped working
            error(await confirm(api, m["id"], rid, first), 403, "forbidden")
        # the tries: the last wrong one uses the code up, and then even the right one is late
        wrong = "99999999" if second != "99999999" else "88888888"
        for _ in range(CODE_TRIES - (2 if second != first else 1)):
            error(await confirm(api, m["id"], rid, wrong), 403, "forbidden", "more tries")
        error(await confirm(api, m["id"], rid, wrong), 403, "forbidden", "last try")
        error(await confirm(api, m["id"], rid, second), 409, "code_expired", "new one")
        # a new code works again; one left to expire: 15 minutes
        api.now += CODE_RESEND_AFTER_S
        assert (await resend(api, m["id"], rid)).status_code == 200
        third = smtp.code_for(form["email"])
        api.now += CODE_TTL_S
        error(await confirm(api, m["id"], rid, third), 409, "code_expired")
        # at most CODES_PER_REGISTRATION codes; then registering again starts over
        for _ in range(CODES_PER_REGISTRATION - 3):
            api.now += CODE_RESEND_AFTER_S
            assert (await resend(api, m["id"], rid)).status_code == 200
        api.now += CODE_RESEND_AFTER_S
        error(await resend(api, m["id"], rid), 409, "conflict", "register again")
        again = (await register(api, m["id"], form)).json()
        assert again["id"] != rid and again["status"] == "unconfirmed"
        error(await resend(api, m["id"], rid), 404, "not_found")  # replaced
        r = await confirm(api, m["id"], again["id"], smtp.code_for(form["email"]))
        assert r.status_code == 200 and r.json()["join_token"]
        error(await resend(api, m["id"], again["id"]), 409, "conflict", "confirmed already")

    run(tmp_path, body, mailer=mailer_for(smtp))


def test_unconfirmed_registrations_take_no_place_and_cannot_hold_an_address(
    tmp_path: Path, smtp: MailSink
) -> None:
    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic", capacity=1)
        a = (await register(api, m["id"], person(1))).json()
        b = (await register(api, m["id"], person(2))).json()
        assert a["status"] == b["status"] == "unconfirmed"  # neither takes the place
        r = await confirm(api, m["id"], b["id"], smtp.code_for(person(2)["email"]))
        assert r.status_code == 200
        message = error(
            await confirm(api, m["id"], a["id"], smtp.code_for(person(1)["email"])), 409, "full"
        )
        assert "full" in message
        error(await register(api, m["id"], person(3)), 409, "full")
        # someone registers an address they cannot read: its owner registers anyway
        other = await meeting_with(api, approval="automatic")
        squatter = (await register(api, other["id"], person(4))).json()
        owner = (await register(api, other["id"], person(4))).json()
        assert owner["id"] != squatter["id"]
        code = smtp.code_for(person(4)["email"])
        error(await confirm(api, other["id"], squatter["id"], code), 404, "not_found")
        assert (await confirm(api, other["id"], owner["id"], code)).status_code == 200
        error(await register(api, other["id"], person(4)), 409, "conflict", "registered")

    run(tmp_path, body, mailer=mailer_for(smtp))


def test_the_host_may_reject_or_erase_an_unconfirmed_registration_not_approve_it(
    tmp_path: Path, smtp: MailSink
) -> None:
    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic")
        rid = (await register(api, m["id"], person(1))).json()["id"]
        url = f"/v1/meetings/{m['id']}/registrations/{rid}"
        host = bearer(m["host_key"])
        for status in ("approved", "pending"):
            r = await api.client.patch(url, json={"status": status}, headers=host)
            error(r, 409, "conflict", "not confirmed")
        r = await api.client.patch(url, json={"status": "rejected"}, headers=host)
        assert r.status_code == 200 and r.json()["status"] == "rejected"
        code = smtp.code_for(person(1)["email"])
        error(await confirm(api, m["id"], rid, code), 409, "conflict")
        assert (await api.client.delete(url, headers=host)).status_code == 204
        error(await confirm(api, m["id"], rid, code), 410, "erased")

    run(tmp_path, body, mailer=mailer_for(smtp))


def test_unconfirmed_registrations_are_deleted_after_a_day(tmp_path: Path, smtp: MailSink) -> None:
    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic")
        old = (await register(api, m["id"], person(1))).json()["id"]
        api.now += UNCONFIRMED_KEPT_S / 2
        new = (await register(api, m["id"], person(2))).json()["id"]
        kept = (await register(api, m["id"], person(3))).json()["id"]
        code = smtp.code_for(person(3)["email"])
        assert (await confirm(api, m["id"], kept, code)).status_code == 200
        wrapped = (await api.plane.store.get_registration(old)).wrapped_key  # type: ignore[union-attr]
        assert wrapped is not None and wrapped in disk(tmp_path / "r.db")
        api.now += UNCONFIRMED_KEPT_S / 2 + 1
        assert api.plane.registrations is not None
        assert await api.plane.registrations.purge_unconfirmed(now=api.now) == 1
        assert sorted(p["id"] for p in await registrants(api, m)) == sorted([new, kept])
        assert wrapped not in disk(tmp_path / "r.db")

    run(tmp_path, body, mailer=mailer_for(smtp))


# --- without a mail server, or with one that fails --------------------------------------------


def test_a_server_without_smtp_refuses_approval_that_needs_email(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await api.create(title="t", password=PW)
        url = f"/v1/meetings/{m['id']}/registration"
        for settings in (
            {},  # automatic is the default
            {"approval": "automatic"},
            {"approval": "rules", "rules": {"email_domains": ["corp.example"]}},
        ):
            r = await api.client.put(url, json=settings, headers=OPERATOR)
            error(r, 422, "invalid", "smtp_url")
        assert (await api.meeting(m["id"]))["registration"] is None
        r = await api.client.put(url, json={"approval": "manual"}, headers=OPERATOR)
        assert r.status_code == 200
        r = await register(api, m["id"], person(1))
        assert r.status_code == 201 and r.json()["status"] == "pending"
        r = await api.client.put(url, json={"enabled": False}, headers=OPERATOR)
        assert r.status_code == 200  # switching it off needs no email
        # a meeting set to automatic approval before: its sign-ups are refused, not approved
        settings = '{"enabled": true, "approval": "automatic"}'
        await api.plane.store.update_meeting(m["id"], registration=settings)
        error(await register(api, m["id"], person(2)), 503, "email_unavailable", "smtp_url")
        assert len(await registrants(api, m)) == 1

    run(tmp_path, body)


def test_an_email_that_cannot_be_sent_is_a_503_and_keeps_nothing(
    tmp_path: Path, smtp: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    forms = [person(1), person(2)]

    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic")
        smtp.refuse_recipients(True)  # 550 to RCPT TO
        error(await register(api, m["id"], forms[0]), 503, "email_unavailable", "not be sent")
        assert await registrants(api, m) == []
        smtp.refuse_recipients(False)
        r = await register(api, m["id"], forms[0])  # nothing was kept: it may register again
        assert r.status_code == 201
        rid = r.json()["id"]
        # the mail server goes away: a new code cannot be sent either
        assert api.plane.registrations is not None
        api.plane.registrations.mailer = Mailer(
            SmtpServer("plain", "127.0.0.1", dead), SENDER, timeout=2.0
        )
        api.now += CODE_RESEND_AFTER_S
        error(await resend(api, m["id"], rid), 503, "email_unavailable")
        error(await register(api, m["id"], forms[1]), 503, "email_unavailable")
        assert [p["id"] for p in await registrants(api, m)] == [rid]

    run(tmp_path, body, mailer=mailer_for(smtp))
    logged = relay_logs(caplog)
    assert "not sent" in logged and "reply 550" in logged  # the reason, without the address
    for form in forms:
        for value in form.values():
            assert value not in logged


# --- the throttle -----------------------------------------------------------------------------


def test_sign_ups_are_throttled_per_address_and_per_meeting(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="manual")
        n = iter(range(1000))

        async def sign_up(host: str, meeting: dict[str, Any] = m) -> httpx.Response:
            async with api.client_at(host) as client:
                return await register(api, meeting["id"], person(next(n)), client)

        for _ in range(3):
            assert (await sign_up("203.0.113.5")).status_code == 201
        r = await sign_up("203.0.113.5")
        message = error(r, 429, "throttled", "your address")
        assert 1 <= int(r.headers["Retry-After"]) <= 20 and "203.0.113.5" not in message
        # IPv6 by its /64: another address in it is the same client, another /64 is not
        assert (await sign_up("2001:db8:1:2::1")).status_code == 201
        assert (await sign_up("2001:db8:1:2::1")).status_code == 201
        assert (await sign_up("2001:db8:1:2::1")).status_code == 201
        error(await sign_up("2001:db8:1:2:ffff::9"), 429, "throttled")
        # the meeting: 7 sign-ups a minute; the 8th and more wait, from anywhere
        assert (await sign_up("198.51.100.1")).status_code == 201
        error(await sign_up("198.51.100.2"), 429, "throttled", "this meeting")
        error(await sign_up("198.51.100.3"), 429, "throttled", "this meeting")
        # ... but not another meeting's, nor after a while
        other = await meeting_with(api, approval="manual")
        assert (await sign_up("198.51.100.2", other)).status_code == 201
        api.now += 60
        assert (await sign_up("203.0.113.5")).status_code == 201
        assert len(await registrants(api, m)) == 8  # nothing written by a throttled one
        # a body the request model refuses (a bad email too) is no sign-up; a form the
        # meeting's form refuses (a field it does not ask for) is one
        async with api.client_at("192.0.2.77") as client:
            url = f"/v1/meetings/{m['id']}/registrations"
            for _ in range(5):
                error(await client.post(url, json={"first_name": "x"}), 422, "invalid")
                r = await client.post(url, json={**person(999), "email": "not-an-email"})
                error(r, 422, "invalid", "email")
            for _ in range(3):
                r = await client.post(url, json={**person(999), "city": "Paris"})
                error(r, 422, "invalid", "city")
            error(await client.post(url, json=person(1000)), 429, "throttled", "your address")

    run(tmp_path, body, signup=SignupThrottle(client_per_minute=3, meeting_per_minute=7))


def test_new_codes_are_throttled_as_sign_ups(tmp_path: Path, smtp: MailSink) -> None:
    async def body(api: Api) -> None:
        m = await meeting_with(api, approval="automatic")
        ids = [(await register(api, m["id"], person(i))).json()["id"] for i in range(2)]
        error(await resend(api, m["id"], ids[0]), 429, "throttled", "your address")
        api.now += max(60, CODE_RESEND_AFTER_S)
        assert (await resend(api, m["id"], ids[0])).status_code == 200

    run(
        tmp_path,
        body,
        mailer=mailer_for(smtp),
        signup=SignupThrottle(client_per_minute=2, meeting_per_minute=100),
    )


def test_token_buckets() -> None:
    buckets = TokenBuckets(3, period=60.0, max_entries=2)
    for _ in range(3):
        assert buckets.wait("a", 0.0) == 0.0
        buckets.take("a", 0.0)
    assert buckets.wait("a", 0.0) == pytest.approx(20.0)  # one token every 20 s
    assert buckets.wait("a", 10.0) == pytest.approx(10.0)
    assert buckets.wait("a", 20.0) == 0.0
    buckets.take("b", 0.0)
    buckets.take("c", 0.0)  # the least recently used ("a") goes: memory stays bounded
    assert len(buckets) == 2
    throttle = SignupThrottle(client_per_minute=1, meeting_per_minute=2)
    throttle.take("m", "x", 0.0)
    with pytest.raises(Exception, match="your address"):
        throttle.take("m", "x", 1.0)
    throttle.take("m", "y", 1.0)  # the refused one took none of the meeting's tokens
    with pytest.raises(Exception, match="this meeting"):
        throttle.take("m", "z", 1.0)
    with pytest.raises(ValueError):
        TokenBuckets(0)


# --- the mail server's URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:2525", ("plain", "127.0.0.1", 2525, None, None)),
        ("smtp://localhost", ("plain", "localhost", 25, None, None)),
        ("smtp+starttls://mail.example.org", ("starttls", "mail.example.org", 587, None, None)),
        (
            "smtps://relay%40example.org:p%3Ass@mail.example.org",
            ("tls", "mail.example.org", 465, "relay@example.org", "p:ss"),
        ),
        ("SMTPS://[2001:db8::25]:4650", ("tls", "2001:db8::25", 4650, None, None)),
        ("smtp://u:p@127.0.0.1:25", ("plain", "127.0.0.1", 25, "u", "p")),
    ],
)
def test_smtp_urls(url: str, expected: tuple[Any, ...]) -> None:
    server = parse_smtp_url(url)
    assert (server.security, server.host, server.port, server.username, server.password) == (
        expected
    )
    assert "p:ss" not in repr(server) and "p:ss" not in server.describe()


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("", "smtp://"),
        ("http://mail.example.org", "smtp://"),
        ("smtps://", "host"),
        ("smtps://mail.example.org:99999", "port"),
        ("smtps://mail.example.org/path", "path"),
        ("smtps://mail.example.org?x=1", "query"),
        ("smtps://user@mail.example.org", "password"),
        ("smtp://user:Secret-Pw-77@mail.example.org", "in clear"),
    ],
)
def test_bad_smtp_urls(url: str, word: str) -> None:
    with pytest.raises(ValueError, match=word) as refused:
        parse_smtp_url(url)
    assert "Secret-Pw-77" not in str(refused.value)


def test_sender_addresses() -> None:
    assert check_sender(" relay@example.org ") == "relay@example.org"
    for bad in ("relay", "a b@example.org", "a@b@example.org", '"x"@example.org', "a,b@x.org"):
        with pytest.raises(ValueError, match="email address"):
            check_sender(bad)


def test_a_mail_server_that_does_not_offer_starttls_gets_nothing(
    smtp: MailSink, caplog: pytest.LogCaptureFixture
) -> None:
    """smtp+starttls:// insists on TLS: a server without STARTTLS (the test server offers
    none) is not sent the message in clear."""
    from control.mail import MailError, confirmation_email

    server = SmtpServer("starttls", "127.0.0.1", smtp.port)
    mailer = Mailer(server, SENDER, timeout=5.0)
    message = confirmation_email(
        sender=SENDER,
        recipient="ada@corp.example",
        code="12345678",
        meeting_id="m",
        minutes=15,
        tries=5,
    )
    try:
        with pytest.raises(MailError):
            asyncio.run(mailer.send(message, "ada@corp.example"))
    finally:
        mailer.close()
    assert smtp.messages_to("ada@corp.example") == []
    assert "SMTPNotSupportedError" in caplog.text and "ada@corp.example" not in caplog.text
