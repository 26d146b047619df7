"""What an attacker sends, and what comes back (README, "Attendee data (privacy)";
docs/SECURITY.md, "Hidden characters"):

- control and invisible characters (CR/LF, NUL, escape sequences, C1, bidirectional
  overrides and isolates, zero-width characters, tag characters, line separators) are refused
  with 422 in every name and displayed field by the API's request models, the one place input
  is checked (one rule: control/text.py), with a message that names the field and does not
  echo it;
- no error message, of any status, holds a value the client sent: a sweep puts marker strings
  and numbers into every path parameter, query parameter, body field, unknown field and
  `answers` key of every /v1 endpoint, and reads every error body;
- downloading a recording is in the audit log.

The control plane is tests/test_api.py's harness (SQLite in tmp_path, httpx's ASGI transport).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control import auth
from control.mail import Mailer, parse_smtp_url
from control.recordings import Recordings
from control.text import has_hidden_characters, printable
from control.throttle import FailureThrottle
from relay import recording
from tests.smtp_server import SmtpServer as MailSink
from tests.smtp_server import smtp_server  # noqa: F401 (a fixture)
from tests.test_api import OPERATOR, Api, bearer, error, run

pytestmark = pytest.mark.release_only  # tests/conftest.py: API input checks, no packets

PW = "Meeting-Pw-Sesame-42"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "ARGON2_MEMORY_KIB", 1024)


# --- control and invisible characters ---------------------------------------------------------

HIDDEN = {
    "CR LF": "Ada\r\nX-Injected: yes",
    "NUL": "Ada\x00",
    "ESC": "Ada\x1b[2J\x1b[31mred",
    "C1 CSI": "Ada\x9b31m",
    "NEL": "Ada\x85Lovelace",
    "RLO": "Ada\u202egnp.exe",
    "LRE": "Ada\u202a",
    "RLI": "Ada\u2067x\u2069",
    "ZWSP": "Ad\u200ba",
    "LRM": "Ada\u200e",
    "BOM": "\ufeffAda",
    "line separator": "Ada\u2028Lovelace",
    "tag characters": "Ada\U000e0041\U000e0042",
    "soft hyphen": "Ada\u00adLovelace",
}


def hidden_cases() -> list[Any]:
    return [pytest.param(value, id=label) for label, value in HIDDEN.items()]


async def world(api: Api) -> dict[str, Any]:
    """A meeting to join and a webinar taking registrations (manual approval, one question)."""
    m = await api.create(title="Standup", password=PW)
    w = await api.create(title="Launch", mode="webinar", password=PW)
    settings = {
        "approval": "manual",
        "optional_fields": ["job_title", "company", "city", "country"],
        "questions": [{"id": "why", "label": "Why?"}],
    }
    url = f"/v1/meetings/{w['id']}/registration"
    assert (await api.client.put(url, json=settings, headers=OPERATOR)).status_code == 200
    r = await api.client.post(
        f"/v1/meetings/{w['id']}/registrations",
        json={"first_name": "Ada", "last_name": "L", "email": "ada@corp.example"},
    )
    assert r.status_code == 201, r.text
    return {"m": m, "w": w, "rid": r.json()["id"], "settings": settings}


def refused(r: httpx.Response, field: str, value: str) -> None:
    """422 `invalid`, naming the field and the rule, without the value or any part of it."""
    message = error(r, 422, "invalid", field, "control or invisible")
    assert value not in message and not has_hidden_characters(message)
    for part in ("Ada", "Injected", "gnp", "Lovelace", "red"):
        assert part not in message, message


@pytest.mark.parametrize("value", hidden_cases())
def test_names_and_displayed_fields_refuse_hidden_characters(tmp_path: Path, value: str) -> None:
    async def body(api: Api) -> None:
        w = await world(api)
        mid, wid = w["m"]["id"], w["w"]["id"]
        r = await api.client.post("/v1/meetings", json={"title": value}, headers=OPERATOR)
        refused(r, "title", value)
        r = await api.client.patch(f"/v1/meetings/{mid}", json={"title": value}, headers=OPERATOR)
        refused(r, "title", value)
        refused(await api.join(mid, name=value, password=PW), "name", value)
        base = {"first_name": "Ada", "last_name": "L", "email": "ada2@corp.example"}
        url = f"/v1/meetings/{wid}/registrations"
        for field in ("first_name", "last_name", "email", "job_title", "company", "city"):
            r = await api.client.post(url, json={**base, field: value})
            refused(r, field, value)
        r = await api.client.post(url, json={**base, "country": value})
        refused(r, "country", value)
        # an answer is free text: line breaks are fine there, the rest is not
        in_answer = has_hidden_characters(value, line_breaks=True)
        r = await api.client.post(url, json={**base, "answers": {"why": value}})
        if in_answer:
            refused(r, "answers", value)
        else:
            assert r.status_code == 201, r.text
        settings = {**w["settings"], "questions": [{"id": "why", "label": value}]}
        r = await api.client.put(
            f"/v1/meetings/{wid}/registration", json=settings, headers=OPERATOR
        )
        refused(r, "label", value)
        patch_url = f"{url}/{w['rid']}"
        for fields in ({"company": value}, {"last_name": value}):
            r = await api.client.patch(patch_url, json={"fields": fields}, headers=OPERATOR)
            refused(r, next(iter(fields)), value)
        if in_answer:
            fields = {"answers": {"why": value}}
            r = await api.client.patch(patch_url, json={"fields": fields}, headers=OPERATOR)
            refused(r, "answers", value)
        # nothing else was written: the meeting's title, the registrant, the participants
        assert (await api.meeting(mid))["title"] == "Standup"
        assert await api.participants(mid) == []
        people = (await api.client.get(url, headers=OPERATOR)).json()
        assert len(people) == (1 if in_answer else 2)
        assert people[0]["fields"]["last_name"] == "L"

    run(tmp_path, body)


def test_text_people_write_is_still_taken(tmp_path: Path) -> None:
    """Scripts, accents, emoji (joined with U+200D), Persian with U+200C, and line breaks in
    answers pass."""
    names = [
        "Ada Lovelace",
        "Zoë Ångström",
        "李小龍",
        "می\u200cخواهم",
        "👩\u200d💻 Ada",
        "Ada-Lou O'Neil",
    ]

    async def body(api: Api) -> None:
        w = await world(api)
        for name in names:
            api.now += 1  # listed in the order they joined
            await api.joined(w["m"]["id"], name=name, password=PW)
        assert [p["name"] for p in await api.participants(w["m"]["id"])] == names
        form = {
            "first_name": names[3],
            "last_name": names[2],
            "email": "x@corp.example",
            "answers": {"why": "line one\r\nline two\n\ttabbed"},
        }
        r = await api.client.post(f"/v1/meetings/{w['w']['id']}/registrations", json=form)
        assert r.status_code == 201, r.text

    run(tmp_path, body)


def test_printable_escapes_what_a_terminal_would_obey() -> None:
    for value in HIDDEN.values():
        shown = printable(value)
        assert shown.isprintable() and not has_hidden_characters(shown)
    assert printable("Ada\x1b[31m\u202ex") == "Ada\\x1b[31m\\u202ex"
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("Zoë 李 👩") == "Zoë 李 👩"
    assert printable(5) == "5"


# --- no error echoes what was sent ------------------------------------------------------------

MARK = "zqxmarker"  # lower case letters: a valid question id, so it reaches the services
MARK_EMAIL = "zqxmarker@zqxmarker-mail.example"  # a valid address: it reaches them too
MARK_NUMBER = 3141592653  # a valid SSRC: an ssrc clash or a range check could quote it
MARKS = (MARK, str(MARK_NUMBER))


def mutations(value: Any) -> Iterator[Any]:
    """Copies of a JSON value with a marker in one place each: every leaf replaced by the
    string, the address and the number, every object given an unknown key, every list an
    extra item."""
    if isinstance(value, dict):
        yield {**value, MARK: "x"}
        for key, item in value.items():
            for changed in mutations(item):
                yield {**value, key: changed}
    elif isinstance(value, list):
        yield [*value, MARK]
        for index, item in enumerate(value):
            for changed in mutations(item):
                yield [*value[:index], changed, *value[index + 1 :]]
    else:
        yield MARK
        yield MARK_EMAIL
        yield MARK_NUMBER


def uplink_key() -> str:
    return base64.b64encode(os.urandom(30)).decode()


# method, path (placeholders filled from the sweep's world), valid bodies, query parameters
ENDPOINTS: list[tuple[str, str, list[dict[str, Any]] | None, dict[str, Any] | None]] = [
    (
        "POST",
        "/v1/meetings",
        [
            {
                "title": "t",
                "mode": "webinar",
                "password": "pw-123456",
                "panelist_password": "pp-123456",
                "suite": "AES_CM_128_HMAC_SHA1_80",
            }
        ],
        None,
    ),
    ("GET", "/v1/meetings", None, {"state": "open", "limit": 5, "offset": 0}),
    ("GET", "/v1/meetings/{m}", None, None),
    ("PATCH", "/v1/meetings/{m}", [{"title": "t2"}], None),
    ("DELETE", "/v1/meetings/{m}", None, None),
    ("PUT", "/v1/meetings/{m}/controls", [{"locked": False, "recording": False}], None),
    ("POST", "/v1/meetings/{m}/end", None, None),
    (
        "POST",
        "/v1/meetings/{m}/join",
        [
            {
                "password": PW,
                "name": "n",
                "role": "panelist",
                "streams": [{"ssrc": 5, "kind": "audio", "pt": 111, "codec": "opus/48000/2"}],
                "uplink": "{uplink}",
            },
            {"password": PW, "name": "n", "ssrcs": [6], "receive_at": "192.0.2.1:5004"},
            {"name": "h", "role": "host", "host_key": "{host_key}"},
        ],
        None,
    ),
    ("GET", "/v1/meetings/{m}/participants", None, None),
    (
        "PATCH",
        "/v1/meetings/{m}/participants/{p}",
        [{"muted": True, "role": "panelist", "expel": False}],
        None,
    ),
    (
        "PUT",
        "/v1/meetings/{w}/registration",
        [
            {
                "enabled": True,
                "approval": "manual",
                "rules": {"email_domains": ["corp.example"]},
                "capacity": 100,
                "questions": [{"id": "why", "label": "Why?", "required": False}],
                "optional_fields": ["company"],
            }
        ],
        None,
    ),
    ("GET", "/v1/meetings/{w}/registration", None, None),
    (
        "POST",
        "/v1/meetings/{w}/registrations",
        [
            {
                "first_name": "a",
                "last_name": "b",
                "email": "e@corp.example",
                "company": "c",
                "answers": {"why": "w"},
            }
        ],
        None,
    ),
    ("GET", "/v1/meetings/{w}/registrations", None, {"format": "json"}),
    ("GET", "/v1/meetings/{w}/registrations/{r}", None, None),
    (
        "PATCH",
        "/v1/meetings/{w}/registrations/{r}",
        [
            {
                "status": "approved",
                "fields": {"first_name": "a", "company": "c", "answers": {"why": "w"}},
                "new_token": False,
            }
        ],
        None,
    ),
    ("DELETE", "/v1/meetings/{w}/registrations/{r}", None, None),
    ("POST", "/v1/meetings/{a}/registrations/{u}/confirm", [{"code": "12345678"}], None),
    ("POST", "/v1/meetings/{a}/registrations/{u}/resend", None, None),
    ("POST", "/v1/registrations/erase", [{"email": "e@corp.example"}], None),
    ("GET", "/v1/meetings/{m}/recordings", None, None),
    ("GET", "/v1/meetings/{m}/recordings/{name}", None, None),
    ("GET", "/v1/reports/usage", None, {"format": "json", "meeting": "{m}"}),
    ("GET", "/v1/audit", None, {"meeting": "{m}", "limit": 5, "offset": 0}),
    ("GET", "/v1/meetings/{m}/audit", None, {"limit": 5, "offset": 0}),
]


async def sweep_world(api: Api, tmp_path: Path) -> dict[str, str]:
    """A meeting with a participant (SSRC MARK_NUMBER, so that a join declaring it clashes),
    a webinar taking registrations by hand with one registration, a webinar with automatic
    approval and an unconfirmed registration, and a recording."""
    api.plane.service.admission.throttle = FailureThrottle(client_threshold=10**6)
    m = await api.create(title="Standup", password=PW)
    p = await api.joined(m["id"], name="P", password=PW, ssrcs=[MARK_NUMBER])
    w = await api.create(title="Launch", mode="webinar", password=PW)
    settings = {"approval": "manual", "questions": [{"id": "why", "label": "Why?"}]}
    r = await api.client.put(
        f"/v1/meetings/{w['id']}/registration", json=settings, headers=OPERATOR
    )
    assert r.status_code == 200, r.text
    form = {"first_name": "a", "last_name": "b", "email": "first@corp.example"}
    reg = await api.client.post(f"/v1/meetings/{w['id']}/registrations", json=form)
    assert reg.status_code == 201, reg.text
    a = await api.create(title="Auto", mode="webinar", password=PW)
    r = await api.client.put(f"/v1/meetings/{a['id']}/registration", json={}, headers=OPERATOR)
    assert r.status_code == 200, r.text
    form = {"first_name": "a", "last_name": "b", "email": "auto@corp.example"}
    u = await api.client.post(f"/v1/meetings/{a['id']}/registrations", json=form)
    assert u.status_code == 201, u.text  # unconfirmed: its code is in the SMTP server
    key_file = tmp_path / "recording.key"
    key_file.write_bytes(secrets.token_bytes(32))
    api.plane.recordings = Recordings(tmp_path / "recordings", key_file, 30)
    rec = recording.Recorder(
        tmp_path / "recordings", key_file.read_bytes(), await api.meeting_wire_id(m["id"]), 0
    )
    rec.close()
    return {
        "m": m["id"],
        "p": p["participant_id"],
        "w": w["id"],
        "r": reg.json()["id"],
        "a": a["id"],
        "u": u.json()["id"],
        "name": rec.path.name,
        "host_key": m["host_key"],
        "uplink": uplink_key(),
    }


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names) if "{" in value else value
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


def requests_of(
    endpoint: tuple[str, str, list[dict[str, Any]] | None, dict[str, Any] | None],
    names: dict[str, str],
) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any] | None, dict[str, str]]]:
    """(path, body, query, headers) of every request the sweep sends to one endpoint: a marker
    in each path parameter (with the operator token and with a host key), in each query
    parameter, in each place of each valid body, and in the Authorization header."""
    method, template, bodies, query = endpoint
    base_path = template.format(**names)
    base_query = fill(query, names)
    base_bodies = [fill(b, names) for b in bodies] if bodies else [None]
    for placeholder in ("m", "p", "w", "r", "a", "u", "name"):
        if "{" + placeholder + "}" in template:
            path = template.format(**{**names, placeholder: MARK})
            for headers in (OPERATOR, bearer(names["host_key"])):
                yield path, base_bodies[0], base_query, headers
    for name in base_query or {}:
        yield base_path, base_bodies[0], {**(base_query or {}), name: MARK}, OPERATOR
    for body in base_bodies:
        if body is None:
            continue
        for changed in mutations(body):
            yield base_path, changed, base_query, OPERATOR
    yield base_path, base_bodies[0], base_query, bearer(MARK)


@pytest.mark.parametrize(
    "endpoint", ENDPOINTS, ids=[f"{method} {path}" for method, path, _, _ in ENDPOINTS]
)
def test_no_error_repeats_what_was_sent(
    tmp_path: Path,
    smtp_server: MailSink,  # noqa: F811 (the fixture above)
    endpoint: tuple[str, str, list[dict[str, Any]] | None, dict[str, Any] | None],
) -> None:
    method = endpoint[0]
    seen: list[tuple[int, str]] = []

    async def body(api: Api) -> None:
        names = await sweep_world(api, tmp_path)
        for path, payload, query, headers in requests_of(endpoint, names):
            r = await api.client.request(method, path, params=query, headers=headers, json=payload)
            seen.append((r.status_code, path))
            assert r.status_code < 500, (path, payload, r.status_code, r.text)
            if r.status_code < 400:
                continue
            for mark in MARKS:
                assert mark not in r.text, (path, query, payload, r.status_code, r.text)

    mailer = Mailer(parse_smtp_url(smtp_server.url), "relay@relay-example.org")
    run(tmp_path, body, mailer=mailer)
    assert len(seen) >= 3 and any(status >= 400 for status, _ in seen)


# --- recording downloads are audited ----------------------------------------------------------


def test_a_recording_download_is_in_the_audit_log(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        key_file = tmp_path / "recording.key"
        key_file.write_bytes(secrets.token_bytes(32))
        api.plane.recordings = Recordings(tmp_path / "recordings", key_file, 30)
        m = await api.create(title="Recorded", password=PW)
        wire_id = await api.meeting_wire_id(m["id"])
        rec = recording.Recorder(tmp_path / "recordings", key_file.read_bytes(), wire_id, 1)
        rec.write(b"\x00" * 40)
        rec.close()
        url = f"/v1/meetings/{m['id']}/recordings/{rec.path.name}"
        host = bearer(m["host_key"])
        sizes = []
        for headers in (host, OPERATOR):
            r = await api.client.get(url, headers=headers)
            assert r.status_code == 200 and r.content
            sizes.append(len(r.content))
        # refused downloads are not downloads
        error(await api.client.get(url), 401, "unauthorized")
        nope = f"/v1/meetings/{m['id']}/recordings/m{wire_id}-w9-1.rec"
        error(await api.client.get(nope, headers=host), 404, "not_found")

        mine = (await api.client.get(f"/v1/meetings/{m['id']}/audit", headers=host)).json()
        downloads = [e for e in mine if e["action"] == "recording.download"]
        assert [(e["actor"], e["target"], e["detail"]) for e in downloads] == [
            ("host", rec.path.name, {"bytes": sizes[0]}),
            ("operator", rec.path.name, {"bytes": sizes[1]}),
        ]
        assert all(e["meeting_id"] == m["id"] for e in downloads)
        everything = (await api.client.get("/v1/audit", headers=OPERATOR)).json()
        assert [e for e in everything if e["action"] == "recording.download"] == downloads
        one = (await api.client.get(f"/v1/audit?meeting={m['id']}", headers=OPERATOR)).json()
        assert [e for e in one if e["action"] == "recording.download"] == downloads

    run(tmp_path, body)
