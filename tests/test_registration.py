"""Registration, attendee data and privacy (README, "Attendee data (privacy)"): the form and
its settings, approval, the capacity, one-time join tokens instead of the meeting password,
reading and exporting the registrants, correcting and erasing them (nothing readable left in
the SQLite file or its WAL), the audit log, and logs without personal data or secrets.

Through the HTTP API in-process (the harness of tests/test_api.py: a real control plane on
SQLite in tmp_path, httpx's ASGI transport), plus the PII box, the key file, the JSON log
format, and one `relay serve` run whose every log line is scanned. Automatic and rules approval
confirm the registrant's email: the control plane mails the code to a real SMTP server
(tests/smtp_server.py), and `registered` reads it from there and confirms (the confirmation
itself is tested in tests/test_signup.py).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from control import auth, credentials
from control.audit import check_detail
from control.mail import Mailer, parse_smtp_url
from control.pii import PiiBox, PiiError, normalise_email
from control.registration import Corrections, SignUp
from control.settings import SettingsError
from relay.logs import JsonFormatter, log_formatter
from tests import test_api
from tests.smtp_server import SmtpServer, smtp_server  # noqa: F401 (a fixture)
from tests.test_api import OPERATOR, TOKEN, Api, bearer, error

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

PW = "Meeting-Pw-Sesame-42"
SENDER = "relay@relay-example.org"
SMTP: list[SmtpServer] = []  # the session's server, while a test runs


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "ARGON2_MEMORY_KIB", 1024)


@pytest.fixture(autouse=True)
def mail(smtp_server: SmtpServer) -> Any:  # noqa: F811 (the fixture above)
    """Every test here has the SMTP server, emptied of earlier tests' messages."""
    smtp_server.clear()
    smtp_server.refuse_recipients(False)
    SMTP.append(smtp_server)
    yield smtp_server
    SMTP.remove(smtp_server)


def mailer() -> Mailer:
    return Mailer(parse_smtp_url(SMTP[-1].url), SENDER)


def run(tmp_path: Path, body: Any) -> None:
    """tests/test_api.py's `run`, with a mailer that sends to the test's SMTP server."""
    test_api.run(tmp_path, body, mailer=mailer())


def person(n: int = 0, **extra: Any) -> dict[str, Any]:
    """A registration form with values unique to this test run (to scan files for them)."""
    return {
        "first_name": f"Grace{n}-Zq",
        "last_name": f"Hopper{n}-Xv",
        "email": f"grace{n}.hopper@navy-example.org",
        **extra,
    }


async def webinar(api: Api, **settings: Any) -> dict[str, Any]:
    """A webinar with registration enabled (automatic approval unless `settings` say)."""
    m = await api.create(title="Launch", mode="webinar", password=PW, panelist_password="pan-pw")
    r = await api.client.put(
        f"/v1/meetings/{m['id']}/registration",
        json={"enabled": True, **settings},
        headers=bearer(m["host_key"]),
    )
    assert r.status_code == 200, r.text
    return m


async def register(api: Api, meeting_id: str, form: dict[str, Any]) -> httpx.Response:
    api.now += 1  # registrations are listed in the order they came (by time, then id)
    return await api.client.post(f"/v1/meetings/{meeting_id}/registrations", json=form)


async def registered(api: Api, meeting_id: str, form: dict[str, Any]) -> dict[str, Any]:
    """Register; an unconfirmed registration is confirmed with the code the SMTP server got,
    and the confirmation's answer (with the join token if approved) is returned."""
    r = await register(api, meeting_id, form)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    if answer["status"] != "unconfirmed":
        return answer
    code = SMTP[-1].code_for(form["email"].strip())
    r = await api.client.post(
        f"/v1/meetings/{meeting_id}/registrations/{answer['id']}/confirm", json={"code": code}
    )
    assert r.status_code == 200, r.text
    confirmed: dict[str, Any] = r.json()
    return confirmed


async def registrants(api: Api, m: dict[str, Any]) -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/meetings/{m['id']}/registrations", headers=bearer(m["host_key"]))
    assert r.status_code == 200, r.text
    answer: list[dict[str, Any]] = r.json()
    return answer


async def patch(api: Api, m: dict[str, Any], rid: str, body: Any) -> httpx.Response:
    return await api.client.patch(
        f"/v1/meetings/{m['id']}/registrations/{rid}", json=body, headers=bearer(m["host_key"])
    )


def disk(path: Path) -> bytes:
    """The SQLite file and its WAL, as they are on disk now."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# --- the PII box and its key ------------------------------------------------------------------


def test_pii_box_seals_each_person_under_a_key_of_their_own() -> None:
    box = PiiBox(os.urandom(32))
    fields = {"first_name": "Ada", "email": "ada@example.org", "answers": {"q": "ü"}}
    sealed, wrapped = box.seal("r1", fields)
    assert box.open("r1", sealed, wrapped) == fields
    assert b"Ada" not in sealed + wrapped and b"example" not in sealed + wrapped
    sealed2, wrapped2 = box.seal("r2", fields)
    assert wrapped2 != wrapped and sealed2 != sealed  # another data key, other nonces
    for bad in (
        lambda: box.open("r2", sealed, wrapped),  # the id is bound to both
        lambda: box.open("r1", sealed2, wrapped),  # another person's fields
        lambda: box.open("r1", sealed, wrapped2),  # another person's key
        lambda: PiiBox(os.urandom(32)).open("r1", sealed, wrapped),  # another server
        lambda: box.open("r1", b"", wrapped),
    ):
        with pytest.raises(PiiError):
            bad()
    resealed = box.reseal("r1", wrapped, {**fields, "first_name": "Augusta"})
    assert box.open("r1", resealed, wrapped)["first_name"] == "Augusta"
    # the email tag: normalised, keyed
    assert box.email_tag(" Ada@Example.ORG ") == box.email_tag("ada@example.org")
    assert box.email_tag("ada@example.org") != PiiBox(os.urandom(32)).email_tag("ada@example.org")
    assert normalise_email("  A@B.C ") == "a@b.c"
    assert "sealed" in repr(box) and len(repr(box)) < 30
    with pytest.raises(ValueError, match="32-byte"):
        PiiBox(b"short")


def test_pii_key_is_private_stable_or_from_the_environment(tmp_path: Path) -> None:
    data = credentials.ensure_data_dir(tmp_path / "data")
    key = credentials.pii_key(data, environ={})
    path = data / credentials.PII_KEY_FILE
    assert len(key) == 32 and path.read_bytes() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert credentials.pii_key(data, environ={}) == key
    assert credentials.box_key(data, environ={}) != key  # a key of its own
    path.chmod(0o640)
    with pytest.raises(SettingsError, match="chmod 600"):
        credentials.pii_key(data, environ={})
    given = bytes(range(32))
    encoded = base64.b64encode(given).decode()
    assert credentials.pii_key(data, environ={"RELAY_PII_KEY": encoded}) == given
    with pytest.raises(SettingsError, match="RELAY_PII_KEY must be 32 bytes"):
        credentials.pii_key(data, environ={"RELAY_PII_KEY": encoded[:-4]})


# --- settings and the form: what the request models refuse ----------------------------------

BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"approval": "maybe"}, "approval"),
    ({"approval": "rules"}, "email_domains"),
    ({"approval": "rules", "rules": {"email_domains": []}}, "email_domains"),
    ({"approval": "rules", "rules": {"email_domains": ["not a domain"]}}, "domain"),
    ({"rules": {"domains": ["corp.example"]}}, "unknown field"),
    ({"capacity": 0}, "capacity"),
    ({"capacity": True}, "capacity"),
    ({"capacity": 1_000_001}, "capacity"),
    ({"questions": [{"id": "Diet", "label": "x"}]}, "id"),
    ({"questions": [{"id": "email", "label": "x"}]}, "taken"),
    ({"questions": [{"id": "q", "label": "a"}, {"id": "q", "label": "b"}]}, "taken"),
    ({"questions": [{"id": "q", "label": " "}]}, "label"),
    ({"questions": [{"id": "q", "label": "x" * 201}]}, "label"),
    ({"questions": [{"id": "q", "label": "x", "required": "yes"}]}, "required"),
    ({"questions": [{"id": f"q{i}", "label": "x"} for i in range(21)]}, "questions"),
    ({"optional_fields": ["salary"]}, "optional_fields"),
    ({"enabled": "yes"}, "enabled"),
    ({"colour": "red"}, "unknown"),
    (["approval"], "JSON object"),
]


def test_settings_refused(tmp_path: Path) -> None:
    """Each refused with 422 naming the rule, none echoing what was sent; nothing changes."""

    async def body(api: Api) -> None:
        m = await webinar(api, approval="manual")
        url = f"/v1/meetings/{m['id']}/registration"
        for settings, word in BAD_SETTINGS:
            message = error(
                await api.client.put(url, json=settings, headers=OPERATOR), 422, "invalid", word
            )
            for value in ("maybe", "not a domain", "Diet", "salary", "colour"):
                assert value not in message, (settings, message)
        assert (await api.meeting(m["id"]))["registration"]["approval"] == "manual"

    run(tmp_path, body)


def test_settings_are_trimmed_and_ordered(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(
            api,
            approval="rules",
            rules={"email_domains": [" Corp.Example ", "corp.example", "b.example"]},
            optional_fields=["country", "company", "country"],
            questions=[{"id": "why", "label": "  Why?  ", "required": True}],
        )
        stored = (await api.meeting(m["id"]))["registration"]
        assert stored == {
            "enabled": True,
            "approval": "rules",
            "rules": {"email_domains": ["corp.example", "b.example"]},
            "capacity": None,
            "questions": [{"id": "why", "label": "Why?", "required": True}],
            "optional_fields": ["company", "country"],
        }

    run(tmp_path, body)


def test_the_form_is_trimmed_and_checked_against_the_meetings_form(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(
            api,
            approval="manual",
            optional_fields=["company", "city"],
            questions=[
                {"id": "why", "label": "Why?", "required": True},
                {"id": "diet", "label": "Diet?"},
            ],
        )
        form = person(
            0,
            first_name="  Grace0-Zq ",
            email=" grace0.hopper@navy-example.org ",
            company="  ACME  ",
            city="   ",
            answers={"why": " line one\nline two ", "diet": "  "},
        )
        r = await register(api, m["id"], form)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "pending"
        (one,) = await registrants(api, m)
        assert one["fields"] == {
            "first_name": "Grace0-Zq",
            "last_name": "Hopper0-Xv",
            "email": "grace0.hopper@navy-example.org",
            "company": "ACME",
            "city": None,  # given empty: kept as none
            "answers": {"why": "line one\nline two"},  # an empty answer is none
        }
        good = person(1, answers={"why": "x"})
        for bad, word in (
            ({**good, "city": None, "country": "Norway"}, "does not ask for country"),
            ({**good, "answers": {}}, "question 1 (why) needs an answer"),
            ({**good, "answers": {"why": "   "}}, "needs an answer"),
            ({**good, "answers": {"why": "x", "who": "y"}}, "no such question"),
            ({**good, "answers": {"Not An Id": "y"}}, "answers"),
            ({**good, "first_name": "A\x00"}, "control"),
            ({**good, "first_name": "   "}, "first_name"),
            ({**good, "email": "no-at-sign"}, "email address"),
        ):
            message = error(await register(api, m["id"], bad), 422, "invalid", word)
            for value in ("Norway", "who", "Not An Id", "no-at-sign"):
                assert value not in message, message
        assert len(await registrants(api, m)) == 1

    run(tmp_path, body)


# --- registering and joining ------------------------------------------------------------------


def test_settings_and_the_public_form(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await api.create(title="t", password=PW)
        url = f"/v1/meetings/{m['id']}/registration"
        error(await api.client.get(url), 404, "not_found", "registrations")
        settings = {
            "approval": "manual",
            "capacity": 50,
            "optional_fields": ["company", "job_title"],
            "questions": [{"id": "diet", "label": "Dietary needs?", "required": False}],
        }
        r = await api.client.put(url, json=settings, headers=bearer(m["host_key"]))
        assert r.status_code == 200, r.text
        assert r.json()["enabled"] is True and r.json()["optional_fields"] == [
            "job_title",
            "company",
        ]
        assert (await api.meeting(m["id"]))["registration"]["capacity"] == 50
        form = (await api.client.get(url)).json()  # public: no token
        assert [f["id"] for f in form["fields"]] == [
            "first_name",
            "last_name",
            "email",
            "job_title",
            "company",
        ]
        assert form["questions"][0]["id"] == "diet" and form["full"] is False
        assert form["approval"] == "manual"
        # who may set it, and bad settings
        other = await api.create(title="o")
        error(
            await api.client.put(url, json={}, headers=bearer(other["host_key"])),
            401,
            "unauthorized",
        )
        error(await api.client.put(url, json={}), 401, "unauthorized")
        for bad in (
            {"approval": "rules"},
            {"capacity": 0},
            {"questions": [{"id": "Bad Id", "label": "x"}]},
            {"colour": "red"},
            {"optional_fields": ["salary"]},
        ):
            r = await api.client.put(url, json=bad, headers=OPERATOR)
            error(r, 422, "invalid")
        assert (await api.meeting(m["id"]))["registration"]["approval"] == "manual"
        r = await api.client.put(url, json={"enabled": False}, headers=OPERATOR)
        assert r.status_code == 200
        error(await api.client.get(url), 404, "not_found")
        await api.end(m["id"])
        error(await api.client.put(url, json={}, headers=OPERATOR), 409, "ended")

    run(tmp_path, body)


def test_automatic_approval_gives_a_one_time_token_instead_of_the_password(
    tmp_path: Path,
) -> None:
    async def body(api: Api) -> None:
        m = await webinar(api)
        answer = await registered(api, m["id"], person(1))
        assert answer["status"] == "approved" and len(answer["join_token"]) >= 40
        assert set(answer) == {"id", "meeting_id", "status", "join_token"}
        token = answer["join_token"]
        # the password alone no longer admits an attendee
        message = error(await api.join(m["id"], name="G", password=PW), 403, "forbidden")
        assert "registration" in message
        wrong = await api.join(m["id"], name="G", registration_token="x" * 43)
        error(wrong, 403, "forbidden", "token")
        joined = await api.joined(m["id"], name="Grace", registration_token=token)
        assert joined["role"] == "attendee"
        error(await api.join(m["id"], name="G", registration_token=token), 403, "forbidden")
        # a token admits no host and no panelist; they keep their own credentials
        other = await registered(api, m["id"], person(2))
        r = await api.join(
            m["id"], name="P", role="panelist", registration_token=other["join_token"]
        )
        error(r, 403, "forbidden", "panelist password")
        await api.joined(m["id"], name="P", role="panelist", password="pan-pw")
        await api.joined(m["id"], name="H", role="host", host_key=m["host_key"])
        # the token is another meeting's
        second = await webinar(api)
        r = await api.join(second["id"], name="G", registration_token=other["join_token"])
        error(r, 403, "forbidden")
        await api.joined(m["id"], name="Second", registration_token=other["join_token"])
        people = await registrants(api, m)
        assert [p["joined"] for p in people] == [True, True]
        assert people[0]["participant_id"] == joined["participant_id"]
        assert people[0]["fields"]["first_name"] == "Grace1-Zq"
        # registration switched off: the password admits again
        r = await api.client.put(
            f"/v1/meetings/{m['id']}/registration", json={"enabled": False}, headers=OPERATOR
        )
        assert r.status_code == 200
        await api.joined(m["id"], name="Late", password=PW)

    run(tmp_path, body)


def test_a_token_survives_a_join_that_fails_and_two_joins_race_for_one(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await api.create(title="standup", password=PW)  # a meeting: registrants may send
        await api.client.put(f"/v1/meetings/{m['id']}/registration", json={}, headers=OPERATOR)
        a = (await registered(api, m["id"], person(1)))["join_token"]
        b = (await registered(api, m["id"], person(2)))["join_token"]
        first = await api.joined(m["id"], name="A", registration_token=a, ssrcs=[7])
        assert first["role"] == "panelist"
        clash = await api.join(m["id"], name="B", registration_token=b, ssrcs=[7])
        error(clash, 409, "conflict", "ssrc")
        # the refused join used nothing: the token still admits, once
        joins = await asyncio.gather(
            *(api.join(m["id"], name=f"B{i}", registration_token=b) for i in range(4))
        )
        assert sorted(r.status_code for r in joins) == [201, 403, 403, 403]

    run(tmp_path, body)


def test_manual_approval_and_approval_by_rules(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(api, approval="manual")
        pending = await registered(api, m["id"], person(1))
        assert pending["status"] == "pending" and "join_token" not in pending
        rid = pending["id"]
        approved = await patch(api, m, rid, {"status": "approved"})
        assert approved.status_code == 200, approved.text
        token = approved.json()["join_token"]
        assert approved.json()["status"] == "approved"
        assert "join_token" not in (await registrants(api, m))[0]  # shown once
        rejected = await patch(api, m, rid, {"status": "rejected"})
        assert rejected.json()["status"] == "rejected" and "join_token" not in rejected.json()
        error(await api.join(m["id"], name="G", registration_token=token), 403, "forbidden")
        again = (await patch(api, m, rid, {"status": "approved"})).json()["join_token"]
        fresh = (await patch(api, m, rid, {"new_token": True})).json()["join_token"]
        assert len({token, again, fresh}) == 3
        error(await api.join(m["id"], name="G", registration_token=again), 403, "forbidden")
        await api.joined(m["id"], name="G", registration_token=fresh)
        # a token for a pending one: refused
        other = await registered(api, m["id"], person(2))
        error(await patch(api, m, other["id"], {"new_token": True}), 409, "conflict", "approved")
        error(await patch(api, m, other["id"], {}), 422, "invalid", "nothing to change")
        error(await patch(api, m, other["id"], {"status": "maybe"}), 422, "invalid")

        rules = await webinar(
            api, approval="rules", rules={"email_domains": ["Navy-Example.org", "acme.test"]}
        )
        inside = await registered(api, rules["id"], person(3))
        assert inside["status"] == "approved" and inside["join_token"]
        outside = await registered(api, rules["id"], person(4, email="x@elsewhere.test"))
        assert outside["status"] == "pending" and "join_token" not in outside

    run(tmp_path, body)


def test_capacity(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(api, capacity=2)
        made = [await registered(api, m["id"], person(i)) for i in range(2)]
        message = error(await register(api, m["id"], person(3)), 409, "full")
        assert "full" in message
        assert (await api.client.get(f"/v1/meetings/{m['id']}/registration")).json()["full"]
        assert (await patch(api, m, made[0]["id"], {"status": "rejected"})).status_code == 200
        await registered(api, m["id"], person(3))  # the rejected one's place
        error(await register(api, m["id"], person(4)), 409, "full")
        assert len(await registrants(api, m)) == 3

    run(tmp_path, body)


BAD_FORMS: list[tuple[str, Any, int, str]] = [
    ("no email", {"first_name": "a", "last_name": "b"}, 422, "email"),
    ("bad email", person(0, email="not-an-email"), 422, "email"),
    ("email with space", person(0, email="a b@example.org"), 422, "email"),
    ("email too long", person(0, email="a" * 250 + "@x.org"), 422, "254"),
    ("first name too long", person(0, first_name="x" * 101), 422, "100"),
    ("last name blank", person(0, last_name="   "), 422, "last_name"),
    ("name with a NUL", person(0, first_name="a\x00b"), 422, "control"),
    ("name a number", person(0, first_name=5), 422, "first_name"),
    ("company too long", person(0, company="x" * 201), 422, "200"),
    ("city not asked", person(0, city="Paris"), 422, "city"),
    ("unknown field", person(0, salary="1"), 422, "unknown field"),
    ("answer too long", person(0, answers={"why": "x" * 1001}), 422, "1000"),
    ("unknown question", person(0, answers={"why": "a", "who": "b"}), 422, "no such question"),
    ("required answer missing", person(0), 422, "why"),
    ("answers not an object", person(0, answers=["a"]), 422, "answers"),
    ("not JSON", b"first_name=a", 422, "JSON"),
    ("a JSON array", [person(0)], 422, "JSON object"),
]


@pytest.mark.parametrize(
    ("form", "status", "word"),
    [case[1:] for case in BAD_FORMS],
    ids=[case[0] for case in BAD_FORMS],
)
def test_bad_registrations_are_refused_and_write_nothing(
    tmp_path: Path, form: Any, status: int, word: str
) -> None:
    async def body(api: Api) -> None:
        m = await webinar(
            api,
            optional_fields=["company"],
            questions=[{"id": "why", "label": "Why?", "required": True}],
        )
        url = f"/v1/meetings/{m['id']}/registrations"
        if isinstance(form, bytes):
            r = await api.client.post(
                url, content=form, headers={"content-type": "application/json"}
            )
        else:
            r = await api.client.post(url, json=form)
        message = error(r, status, "invalid", word)
        for value in ("x" * 100, "not-an-email", "Paris"):
            assert value not in message  # no echo of what was sent
        assert await registrants(api, m) == []

    run(tmp_path, body)


def test_registration_refusals_that_depend_on_the_meeting(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(api)
        await registered(api, m["id"], person(1))
        error(
            await register(api, m["id"], person(1, email="GRACE1.Hopper@Navy-Example.org ")),
            409,
            "conflict",
            "registered",
        )
        error(await register(api, "no-such-meeting", person(2)), 404, "not_found")
        plain = await api.create(title="no registration")
        error(await register(api, plain["id"], person(2)), 409, "conflict", "registrations")
        await api.end(m["id"])
        error(await register(api, m["id"], person(2)), 409, "ended")
        assert len(await registrants(api, m)) == 1
        # the registrants stay readable after the end; unknown ones are 404
        url = f"/v1/meetings/{m['id']}/registrations"
        error(await api.client.get(f"{url}/nope", headers=OPERATOR), 404, "not_found")
        error(await api.client.delete(f"{url}/nope", headers=OPERATOR), 404, "not_found")
        error(
            await api.client.patch(f"{url}/nope", json={"status": "approved"}, headers=OPERATOR),
            404,
            "not_found",
        )
        error(await api.client.get(url), 401, "unauthorized")
        error(await api.client.get(url, headers=bearer(plain["host_key"])), 401, "unauthorized")

    run(tmp_path, body)


def test_read_and_export_registrants(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(
            api,
            optional_fields=["company", "country"],
            questions=[{"id": "why", "label": "Why?"}],
        )
        a = await registered(api, m["id"], person(1, company="=HYPERLINK(1)", answers={"why": "x"}))
        b = await registered(api, m["id"], person(2, country="Norway"))
        people = await registrants(api, m)
        assert [p["id"] for p in people] == [a["id"], b["id"]]
        assert people[0]["fields"] == {
            "first_name": "Grace1-Zq",
            "last_name": "Hopper1-Xv",
            "email": "grace1.hopper@navy-example.org",
            "company": "=HYPERLINK(1)",
            "answers": {"why": "x"},
        }
        one = await api.client.get(
            f"/v1/meetings/{m['id']}/registrations/{b['id']}", headers=OPERATOR
        )
        assert one.json()["fields"]["country"] == "Norway"
        r = await api.client.get(
            f"/v1/meetings/{m['id']}/registrations?format=csv", headers=bearer(m["host_key"])
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert r.headers["cache-control"] == "no-store"
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["id"] for row in rows] == [a["id"], b["id"]]
        assert rows[0]["company"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
        assert rows[0]["answer:why"] == "x" and rows[1]["country"] == "Norway"
        assert rows[0]["status"] == "approved" and rows[0]["erased"] == "False"
        # erased: listed, without fields
        assert (
            await api.client.delete(
                f"/v1/meetings/{m['id']}/registrations/{a['id']}", headers=OPERATOR
            )
        ).status_code == 204
        people = await registrants(api, m)
        assert people[0]["erased"] is True and people[0]["fields"] is None
        r = await api.client.get(
            f"/v1/meetings/{m['id']}/registrations?format=csv", headers=OPERATOR
        )
        row = next(csv.DictReader(io.StringIO(r.text)))
        assert row["erased"] == "True" and row["email"] == row["first_name"] == ""

    run(tmp_path, body)


def test_correct_a_registrant(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(
            api, optional_fields=["company", "city"], questions=[{"id": "why", "label": "Why?"}]
        )
        a = await registered(
            api, m["id"], person(1, company="ACME", city="Oslo", answers={"why": "x"})
        )
        rid = a["id"]
        r = await patch(
            api,
            m,
            rid,
            {"fields": {"last_name": "Murray-Hopper", "city": None, "answers": {"why": "y"}}},
        )
        assert r.status_code == 200, r.text
        fields = r.json()["fields"]
        assert fields["last_name"] == "Murray-Hopper" and "city" not in fields
        assert fields["company"] == "ACME" and fields["answers"] == {"why": "y"}
        assert fields["first_name"] == "Grace1-Zq"
        # trimmed; an empty value or null removes an optional field or an answer, and a
        # question the form no longer has may still have its answer removed
        r = await patch(
            api,
            m,
            rid,
            {"fields": {"first_name": " Grace ", "company": " ", "answers": {"why": None}}},
        )
        fields = r.json()["fields"]
        assert fields["first_name"] == "Grace" and "company" not in fields
        assert fields["answers"] == {}
        r = await patch(api, m, rid, {"fields": {"city": "Bergen", "answers": {"gone": None}}})
        assert r.json()["fields"]["city"] == "Bergen"
        for bad, word in (
            ({"fields": {"email": "nope"}}, "email address"),
            ({"fields": {"first_name": None}}, "first_name"),
            ({"fields": {"first_name": ""}}, "first_name"),
            ({"fields": {"last_name": "  "}}, "last_name"),
            ({"fields": {"company": "x" * 201}}, "200"),
            ({"fields": {"salary": "1"}}, "unknown field"),
            ({"fields": {"answers": {"Not An Id": "y"}}}, "answers"),
            ({"fields": "x"}, "fields"),
            ({"fields": {}}, "nothing to change"),
            ({"new_token": False}, "nothing to change"),
            ({"status": "unconfirmed"}, "status"),
        ):
            message = error(await patch(api, m, rid, bad), 422, "invalid", word)
            assert "nope" not in message and "Not An Id" not in message
        # a new email: the old one finds nobody, the new one does
        other = await registered(api, m["id"], person(2))
        error(
            await patch(api, m, rid, {"fields": {"email": "GRACE2.hopper@navy-example.org"}}),
            409,
            "conflict",
        )
        r = await patch(api, m, rid, {"fields": {"email": "amazing.grace@navy-example.org"}})
        assert r.json()["fields"]["email"] == "amazing.grace@navy-example.org"
        old = await api.client.post(
            "/v1/registrations/erase", json={"email": person(1)["email"]}, headers=OPERATOR
        )
        error(old, 404, "not_found")
        new = await api.client.post(
            "/v1/registrations/erase",
            json={"email": "Amazing.Grace@navy-example.org"},
            headers=OPERATOR,
        )
        assert new.json()["erased"] == 1
        error(await patch(api, m, rid, {"fields": {"city": "Bergen"}}), 410, "erased")
        error(await patch(api, m, rid, {"status": "approved"}), 410, "erased")
        assert (await registrants(api, m))[1]["id"] == other["id"]

    run(tmp_path, body)


def test_erase_leaves_no_personal_data_in_the_file_or_the_wal(tmp_path: Path) -> None:
    """The whole life of a registration, then its erasure: the SQLite file and its WAL hold
    none of the registrant's values, neither the name they joined with, nor the wrapped data
    key or the sealed fields; the usage record has not changed; erasing again is 410."""

    async def body(api: Api) -> None:
        m = await webinar(
            api, optional_fields=["company"], questions=[{"id": "why", "label": "Why?"}]
        )
        form = person(7, company="Zx-Navy-Lab-Qw", answers={"why": "Secret-Answer-Kx"})
        keep = await registered(api, m["id"], person(8))
        a = await registered(api, m["id"], form)
        joined = await api.joined(m["id"], name="Joined-As-Gq", registration_token=a["join_token"])
        await patch(api, m, a["id"], {"fields": {"company": "Zx-Navy-Lab-Edited"}})
        row = await api.plane.store.get_registration(a["id"])
        assert row is not None and row.wrapped_key is not None
        wrapped, sealed = row.wrapped_key, row.sealed
        ended = await api.end(m["id"])
        usage = (await api.client.get("/v1/reports/usage", headers=OPERATOR)).json()
        assert usage == [ended["usage"]]
        db = tmp_path / "r.db"
        assert wrapped in disk(db) and b"Joined-As-Gq" in disk(db)

        url = f"/v1/meetings/{m['id']}/registrations/{a['id']}"
        r = await api.client.delete(url, headers=bearer(m["host_key"]))
        assert r.status_code == 204 and r.content == b""
        on_disk = disk(db)
        values = [
            *form.values(),
            "Zx-Navy-Lab-Edited",
            "Secret-Answer-Kx",
            "Joined-As-Gq",
            a["join_token"],
        ]
        for value in values:
            if isinstance(value, str):
                assert value.encode() not in on_disk, value
                assert value.lower().encode() not in on_disk, value
        assert wrapped not in on_disk and sealed not in on_disk
        # the other registrant is untouched, the erased one is listed as erased
        people = await registrants(api, m)
        assert people[0]["id"] == keep["id"] and people[0]["fields"]["first_name"] == "Grace8-Zq"
        assert people[1]["erased"] is True and people[1]["fields"] is None
        participants = await api.participants(m["id"])
        named = {p["id"]: p["name"] for p in participants}
        assert named[joined["participant_id"]] == ""
        # the usage record, which never held PII, is unchanged
        assert (await api.client.get("/v1/reports/usage", headers=OPERATOR)).json() == usage
        error(await api.client.delete(url, headers=OPERATOR), 410, "erased", "already")
        error(
            await api.client.get(url.replace(a["id"], "nope"), headers=OPERATOR), 404, "not_found"
        )

    run(tmp_path, body)


def test_erase_a_person_by_email_across_meetings(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        one, two = await webinar(api), await webinar(api, approval="manual")
        a1 = await registered(api, one["id"], person(1))
        a2 = await registered(api, two["id"], person(1, email="  GRACE1.HOPPER@navy-example.ORG"))
        b = await registered(api, two["id"], person(2))
        url = "/v1/registrations/erase"
        error(
            await api.client.post(
                url, json={"email": person(1)["email"]}, headers=bearer(one["host_key"])
            ),
            401,
            "unauthorized",
        )
        error(
            await api.client.post(url, json={"email": "not an email"}, headers=OPERATOR),
            422,
            "invalid",
        )
        error(
            await api.client.post(url, json={"email": "x" * 255}, headers=OPERATOR), 422, "invalid"
        )
        error(await api.client.post(url, json={}, headers=OPERATOR), 422, "invalid")
        r = await api.client.post(url, json={"email": person(1)["email"]}, headers=OPERATOR)
        assert r.status_code == 200, r.text
        assert r.json()["erased"] == 2
        assert {x["id"] for x in r.json()["registrations"]} == {a1["id"], a2["id"]}
        assert r.json()["registrations"][0].keys() == {"id", "meeting_id"}
        again = await api.client.post(url, json={"email": person(1)["email"]}, headers=OPERATOR)
        error(again, 404, "not_found", "erased already")
        assert [p["erased"] for p in await registrants(api, one)] == [True]
        left = await registrants(api, two)
        assert [p["erased"] for p in left] == [True, False]
        assert left[1]["id"] == b["id"] and left[1]["fields"]["email"] == person(2)["email"]
        error(
            await api.join(one["id"], name="G", registration_token=a1["join_token"]),
            403,
            "forbidden",
        )
        # the person may register again
        await registered(api, one["id"], person(1))
        # each erasure is in its meeting's audit
        for m, rid in ((one, a1["id"]), (two, a2["id"])):
            r = await api.client.get(f"/v1/meetings/{m['id']}/audit", headers=bearer(m["host_key"]))
            erased = [e for e in r.json() if e["action"] == "registration.erase"]
            assert erased == [
                {**erased[0], "actor": "operator", "target": rid, "detail": {"by": "email"}}
            ]

    run(tmp_path, body)


def test_deleting_a_meeting_deletes_its_registrations(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(api)
        a = await registered(api, m["id"], person(1))
        wrapped = (await api.plane.store.get_registration(a["id"])).wrapped_key  # type: ignore[union-attr]
        assert wrapped is not None and wrapped in disk(tmp_path / "r.db")
        assert (
            await api.client.delete(f"/v1/meetings/{m['id']}", headers=OPERATOR)
        ).status_code == 204
        assert await api.plane.store.get_registration(a["id"]) is None
        assert wrapped not in disk(tmp_path / "r.db")

    run(tmp_path, body)


def test_registrations_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    """The PII key is stable (here derived from the box key, in `relay serve` read from
    pii.key): a restarted control plane opens what it sealed, and a token still admits."""

    async def main() -> None:
        api = await Api.start(tmp_path, mailer=mailer())
        try:
            m = await webinar(api, optional_fields=["city"])
            a = await registered(api, m["id"], person(1, city="Oslo"))
        finally:
            await api.close()
        api = await Api.start(tmp_path, mailer=mailer())
        try:
            assert (await registrants(api, m))[0]["fields"]["city"] == "Oslo"
            await api.joined(m["id"], name="G", registration_token=a["join_token"])
        finally:
            await api.close()

    asyncio.run(main())


# --- the audit log ----------------------------------------------------------------------------


def test_audit_log_of_host_and_operator_actions(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        m = await webinar(api, approval="manual")
        host = bearer(m["host_key"])
        mid = m["id"]
        await api.client.put(f"/v1/meetings/{mid}/controls", json={"locked": True}, headers=host)
        await api.client.put(f"/v1/meetings/{mid}/controls", json={"locked": True}, headers=host)
        await api.client.put(
            f"/v1/meetings/{mid}/controls",
            json={"locked": False, "recording": True},
            headers=OPERATOR,
        )
        await api.client.put(
            f"/v1/meetings/{mid}/controls", json={"recording": False}, headers=host
        )
        await api.client.patch(f"/v1/meetings/{mid}", json={"title": "New title"}, headers=host)
        a = await registered(api, mid, person(1))
        await patch(api, m, a["id"], {"status": "approved"})
        joined = await api.joined(
            mid,
            name="Att",
            registration_token=(await patch(api, m, a["id"], {"new_token": True})).json()[
                "join_token"
            ],
        )
        pid = joined["participant_id"]
        await api.patch_participant(mid, pid, {"role": "panelist"}, headers=host)
        await api.patch_participant(mid, pid, {"muted": True}, headers=host)
        await api.patch_participant(mid, pid, {"expel": True}, headers=OPERATOR)
        b = await registered(api, mid, person(2))
        await patch(api, m, b["id"], {"status": "rejected"})
        await patch(api, m, b["id"], {"fields": {"last_name": "Else"}})
        await registrants(api, m)
        await api.client.delete(f"/v1/meetings/{mid}/registrations/{b['id']}", headers=host)
        await api.end(mid)

        r = await api.client.get(f"/v1/meetings/{mid}/audit", headers=host)
        assert r.status_code == 200, r.text
        entries = r.json()
        assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
            ("operator", "meeting.create", None),
            ("host", "registration.settings", None),
            ("host", "meeting.lock", None),
            ("operator", "meeting.unlock", None),
            ("operator", "meeting.recording_on", None),
            ("host", "meeting.recording_off", None),
            ("host", "meeting.update", None),
            ("host", "registration.approve", a["id"]),
            ("host", "registration.new_token", a["id"]),
            ("host", "participant.role", pid),
            ("host", "participant.mute", pid),
            ("operator", "participant.expel", pid),
            ("host", "registration.reject", b["id"]),
            ("host", "registration.edit", b["id"]),
            ("host", "registration.read", None),
            ("host", "registration.erase", b["id"]),
            ("operator", "meeting.end", None),
        ]
        assert all(e["meeting_id"] == mid for e in entries)
        assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
        assert entries[9]["detail"] == {"from": "attendee", "to": "panelist"}
        assert entries[13]["detail"] == {"fields": ["last_name"]}
        assert entries[1]["detail"]["approval"] == "manual"
        assert entries[14]["detail"] == {"format": "json", "count": 2}
        # no personal data and no secret anywhere in it
        text = r.text
        for value in (*person(1).values(), *person(2).values(), "Else", "Att", "New title"):
            assert value not in text, value
        assert m["host_key"] not in text and PW not in text

        # the operator reads everything, or one meeting's; a host only its own
        other = await api.create(title="other")
        everything = (await api.client.get("/v1/audit", headers=OPERATOR)).json()
        assert [e["id"] for e in everything][: len(entries)] == [e["id"] for e in entries]
        assert everything[-1]["meeting_id"] == other["id"]
        only = (await api.client.get(f"/v1/audit?meeting={mid}", headers=OPERATOR)).json()
        assert only == entries
        paged = (await api.client.get("/v1/audit?limit=2&offset=1", headers=OPERATOR)).json()
        assert paged == everything[1:3]
        error(await api.client.get("/v1/audit", headers=host), 401, "unauthorized")
        error(
            await api.client.get(f"/v1/meetings/{mid}/audit", headers=bearer(other["host_key"])),
            401,
            "unauthorized",
        )
        error(await api.client.get("/v1/audit?limit=0", headers=OPERATOR), 422, "invalid")
        error(await api.client.get("/v1/meetings/nope/audit", headers=OPERATOR), 404, "not_found")
        # deleted meetings keep their audit (the operator reads it)
        assert (await api.client.delete(f"/v1/meetings/{mid}", headers=OPERATOR)).status_code == 204
        after = (await api.client.get(f"/v1/audit?meeting={mid}", headers=OPERATOR)).json()
        assert after[:-1] == entries and after[-1]["action"] == "meeting.delete"

    run(tmp_path, body)


def test_the_registration_service_audits_what_it_does(tmp_path: Path) -> None:
    """The service takes typed values (what the request models build) and appends its own
    audit entries: a hold, an approval with corrections, a read of one, an export, an
    erasure by email."""

    async def body(api: Api) -> None:
        m = await webinar(
            api,
            approval="manual",
            optional_fields=["city"],
            questions=[{"id": "why", "label": "Why?"}],
        )
        mid = m["id"]
        service = api.plane.registrations
        assert service is not None
        form = SignUp("Ada", "Lovelace", "ada@corp.example", {"city": "London"}, {"why": "x"})
        made = await service.register(mid, form, now=api.now)
        rid = made["id"]
        assert made == {"id": rid, "meeting_id": mid, "status": "pending"}
        fix = Corrections(fields={"city": None}, answers={"why": None})
        view = await service.update(
            mid, rid, by="host", now=api.now, status="approved", corrections=fix
        )
        assert view["status"] == "approved" and view["join_token"]
        assert view["fields"] == {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@corp.example",
            "answers": {},
        }
        await service.update(mid, rid, by="operator", now=api.now, status="pending")
        assert (await service.get(mid, rid, by="operator", now=api.now))["status"] == "pending"
        assert "Lovelace" in await service.export_csv(mid, by="host", now=api.now)
        erased = await service.erase_by_email("Ada@Corp.Example", by="operator", now=api.now)
        assert erased == {"erased": 1, "registrations": [{"id": rid, "meeting_id": mid}]}
        r = await api.client.get(f"/v1/meetings/{mid}/audit", headers=OPERATOR)
        entries = [(e["actor"], e["action"], e["target"], e["detail"]) for e in r.json()]
        assert entries[2:] == [
            ("host", "registration.approve", rid, {}),
            ("host", "registration.edit", rid, {"fields": ["answers", "city"]}),
            ("operator", "registration.hold", rid, {}),
            ("operator", "registration.read", rid, {}),
            ("host", "registration.export", None, {"format": "csv", "count": 1}),
            ("operator", "registration.erase", rid, {"by": "email"}),
        ]

    run(tmp_path, body)


def test_audit_detail_takes_ids_and_flags_only() -> None:
    assert json.loads(check_detail({"fields": ["email", "city"], "count": 2, "on": True})) == {
        "count": 2,
        "fields": ["email", "city"],
        "on": True,
    }
    assert check_detail(None) == "{}"
    for bad in (
        {"email": "ada@example.org"},
        {"name": "Ada Lovelace"},
        {"x": ["fine", "not fine"]},
        {"x": {"nested": 1}},
        {"x": [["nested"]]},
        {"bad key": 1},
        {"x": b"bytes"},
        {"x": "y" * 65},
    ):
        with pytest.raises(ValueError):
            check_detail(bad)


# --- logs -------------------------------------------------------------------------------------


def test_json_log_format() -> None:
    formatter = log_formatter("json")
    assert isinstance(formatter, JsonFormatter)
    record = logging.LogRecord("control.x", logging.INFO, __file__, 1, "hi %s\nthere", ("ü",), None)
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "control.x"
    assert entry["message"] == "hi ü\nthere" and entry["time"].endswith("Z")
    assert set(entry) == {"time", "level", "logger", "message", "pid"}
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "RuntimeError: boom" in json.loads(formatter.format(record))["exception"]
    assert not isinstance(log_formatter("text"), JsonFormatter)
    # log_setup in a fresh process, as `relay serve`'s children run it
    code = (
        "import logging; from relay.logs import log_setup; log_setup(); "
        "logging.getLogger('t').warning('w %d', 1)"
    )
    for fmt, json_out in (("json", True), ("text", False)):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "RELAY_LOG_FORMAT": fmt},
            timeout=30,
        )
        if json_out:
            assert json.loads(done.stderr)["message"] == "w 1"
        else:
            assert done.stderr.strip().endswith("WARNING t: w 1")


def test_a_full_session_logs_no_secret_and_no_personal_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Create, register, approve, join with the token, promote, expel, end, erase, with every
    logger at DEBUG: no log line holds a token, key, password, registrant value or client
    address, in the text format or the JSON one."""
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [TOKEN]

    async def body(api: Api) -> None:
        m = await api.create(title="session", mode="webinar", panelist_password="Panel-Pw-Lk")
        secrets.extend([m["host_key"], m["password"], "Panel-Pw-Lk"])
        host = bearer(m["host_key"])
        r = await api.client.put(
            f"/v1/meetings/{m['id']}/registration",
            json={"approval": "manual", "optional_fields": ["company"]},
            headers=host,
        )
        assert r.status_code == 200
        forms = [person(i, company=f"Company-{i}-Wz") for i in (1, 2)]
        for form in forms:
            secrets.extend(v for v in form.values() if isinstance(v, str))
        async with api.client_at("203.0.113.77") as client:
            made = []
            for form in forms:
                r = await client.post(f"/v1/meetings/{m['id']}/registrations", json=form)
                assert r.status_code == 201
                made.append(r.json())
            tokens = []
            for reg in made:
                r = await patch(api, m, reg["id"], {"status": "approved"})
                tokens.append(r.json()["join_token"])
            secrets.extend(tokens)
            answers = []
            for i, token in enumerate(tokens):
                r = await client.post(
                    f"/v1/meetings/{m['id']}/join",
                    json={"name": f"Joiner-{i}-Yt", "registration_token": token},
                )
                assert r.status_code == 201, r.text
                answers.append(r.json())
                secrets.append(f"Joiner-{i}-Yt")
            r = await client.post(
                f"/v1/meetings/{m['id']}/join",
                json={"name": "x", "registration_token": "Guessed-Token-0123456789"},
            )
            assert r.status_code == 403
            secrets.append("Guessed-Token-0123456789")
            r = await api.patch_participant(
                m["id"], answers[0]["participant_id"], {"role": "panelist"}, headers=host
            )
            answers.append(r.json())
            await api.patch_participant(m["id"], answers[1]["participant_id"], {"expel": True})
        for answer in answers:
            for direction in ("uplink", "downlink"):
                key = answer["srtp"][direction]
                secrets.extend([key, base64.b64decode(key).hex()])
        await api.client.get(f"/v1/meetings/{m['id']}/registrations?format=csv", headers=host)
        await api.end(m["id"])
        r = await api.client.post(
            "/v1/registrations/erase", json={"email": forms[0]["email"]}, headers=OPERATOR
        )
        assert r.json()["erased"] == 1
        await api.client.delete(
            f"/v1/meetings/{m['id']}/registrations/{made[1]['id']}", headers=host
        )
        await api.client.get("/metrics")
        await api.client.get("/v1/audit", headers=OPERATOR)

    run(tmp_path, body)
    assert "POST /v1/meetings/{meeting_id}/registrations 201" in caplog.text
    assert "POST /v1/registrations/erase 200" in caplog.text
    formatter = JsonFormatter()
    as_json = "\n".join(formatter.format(r) for r in caplog.records)
    for text in (caplog.text, as_json):
        for secret in secrets:
            assert secret not in text, secret
        assert "203.0.113.77" not in text


def test_relay_serve_logs_json_without_secrets_or_personal_data(
    tmp_path: Path, mail: SmtpServer
) -> None:
    """The real `relay serve`: every line its processes log is a JSON object, and none holds
    a secret handed out, a registrant's value, a confirmation code or a client address. Its
    mail server comes from the --smtp-url and --smtp-from flags."""
    from tests.test_serve import start_serve, stop_serve

    flags = ("--smtp-url", mail.url, "--smtp-from", SENDER)
    serve = start_serve(tmp_path / "data", 1, *flags)
    secrets = [serve.token]
    try:
        with serve.api() as api:
            m = api.post("/v1/meetings", json={"title": "t", "mode": "webinar"}).json()
            secrets += [m["host_key"], m["password"]]
            assert (tmp_path / "data" / "pii.key").stat().st_mode & 0o777 == 0o600
            r = api.put(f"/v1/meetings/{m['id']}/registration", json={"approval": "automatic"})
            assert r.status_code == 200, r.text
            form = person(5)
            secrets += list(form.values())
            reg = api.post(f"/v1/meetings/{m['id']}/registrations", json=form).json()
            assert reg["status"] == "unconfirmed", reg
            code = mail.code_for(form["email"])
            secrets.append(code)
            url = f"/v1/meetings/{m['id']}/registrations/{reg['id']}/confirm"
            reg = api.post(url, json={"code": code}).json()
            secrets.append(reg["join_token"])
            r = api.post(
                f"/v1/meetings/{m['id']}/join",
                json={"name": "Serve-Joiner-Pq", "registration_token": reg["join_token"]},
            )
            assert r.status_code == 201, r.text
            secrets.append("Serve-Joiner-Pq")
            for direction in ("uplink", "downlink"):
                key = r.json()["srtp"][direction]
                secrets += [key, base64.b64decode(key).hex()]
            api.post(f"/v1/meetings/{m['id']}/end")
            assert (
                api.delete(f"/v1/meetings/{m['id']}/registrations/{reg['id']}").status_code == 204
            )
    finally:
        assert stop_serve(serve) == 143  # 128 + SIGTERM: stopped by the signal, cleanly
    output = serve.output()
    logged = [line for line in output.splitlines() if line.startswith("{")]
    assert len(logged) >= 3, output
    for line in logged:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
    loggers = {json.loads(line)["logger"] for line in logged}
    assert "control.api" in loggers, loggers
    for secret in secrets:
        assert secret not in output, secret
