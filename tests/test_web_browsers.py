"""The web console in real browsers against `relay serve`: Debian's Chromium driven by
Playwright, and Firefox ESR over WebDriver BiDi (tests/browsers/join_page.mjs, puppeteer-core).

The story an operator and a host live: the operator view creates a webinar and shows its
links; the host console opens with the host key; a presenter page publishes its (fake) camera
and microphone; an attendee page joins with the password and plays it, its sound level meter
showing energy (a WebAudio analyser); the host expels the attendee, whose page says so within
a second; the host locks the webinar, and a new attendee is told it is locked; the operator
view shows the packets moving. Registration in the page: a registrant signs up on the join
page, the host approves in the console, and the join token it shows lets the registrant in.
Each page's screenshot is saved (RELAY_ARTIFACTS, default build/artifacts/web).

Skipped like tests/test_browsers.py where the browsers are missing, unless
RELAY_REQUIRE_BROWSERS=1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_browsers import CHROMIUM, FIREFOX_DRIVER, NODE, SANITIZER, browser, routable
from tests.test_serve import Serve, start_serve, stop_serve

if CHROMIUM is None:  # pragma: no cover - tests/test_browsers.py skips the module first
    pytest.skip("chromium is not installed", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

__all__ = ["browser", "routable"]  # module-scoped fixtures, shared

PASSWORD = "town-hall-pw"
ARTIFACTS = (
    Path(os.environ.get("RELAY_ARTIFACTS", Path(__file__).parent.parent / "build" / "artifacts"))
    / "web"
)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    s = start_serve(tmp_path_factory.mktemp("web-browsers") / "data", 1)
    try:
        yield s
    finally:
        stop_serve(s)


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def new_page(browser: Browser) -> Page:
    # A context of its own per person: its own sessionStorage, as separate browsers would have.
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "End the meeting for everyone?"
    return page


def town_hall(serve: Serve) -> dict[str, str]:
    """A webinar made over the API: its id, host key and the rest of the creation's answer."""
    with serve.api() as api:
        r = api.post(
            "/v1/meetings", json={"title": "Town hall", "mode": "webinar", "password": PASSWORD}
        )
    assert r.status_code == 201, r.text
    created: dict[str, str] = r.json()
    return created


def until(page: Page, predicate: str, limit: float = 10.0) -> None:
    """Poll `predicate` (a JavaScript function) in the page until it is true. Not Playwright's
    wait_for_function: that evaluates a string, which the pages' Content-Security-Policy
    forbids (no 'unsafe-eval'), as it should."""
    deadline = time.monotonic() + limit
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"not within {limit} s: {predicate}"
        time.sleep(0.02)


def operator_creates_a_webinar(browser: Browser, serve: Serve) -> tuple[Page, str, str]:
    """The operator view: sign in, create a webinar; its join link and host key."""
    admin = new_page(browser)
    admin.goto(serve.url + "/admin")
    admin.fill("#token", serve.token)
    admin.click("#sign-in-form button")
    expect(admin.locator("#console")).to_be_visible()
    admin.fill("#c-title", "Town hall")
    admin.select_option("#c-mode", "webinar")
    admin.fill("#c-password", PASSWORD)
    admin.click("#create-form button")
    expect(admin.locator("#created")).to_be_visible()
    join_link = admin.locator("#created-join").get_attribute("href")
    host_key = admin.locator("#created-key").inner_text()
    assert join_link and join_link.startswith("/m/") and len(host_key) > 20
    assert host_key not in admin.url and serve.token not in admin.url
    return admin, join_link, host_key


def host_console(browser: Browser, serve: Serve, meeting: str, host_key: str) -> Page:
    host = new_page(browser)
    host.goto(f"{serve.url}/host/{meeting}")
    host.fill("#key", host_key)
    host.click("#sign-in-form button")
    expect(host.locator("#console")).to_be_visible()
    return host


def presents(browser: Browser, serve: Serve, meeting: str, host_key: str) -> Page:
    """A presenter page: the join page's "Start presenting" with the host key (fake camera
    and microphone), once it says so."""
    page = new_page(browser)
    page.goto(f"{serve.url}/m/{meeting}")
    page.fill("#name", "Presenter")
    page.fill("#publish-secret", host_key)
    page.click("#publish-button")
    expect(page.locator("#publish-notice")).to_have_text("You are presenting.")
    return page


def attendee_joins(browser: Browser, serve: Serve, join_link: str, name: str) -> Page:
    page = new_page(browser)
    page.goto(serve.url + join_link)
    expect(page.locator("#title")).to_have_text("Town hall")
    page.fill("#name", name)
    page.fill("#secret", PASSWORD)
    page.click("#join-button")
    return page


def test_a_host_runs_a_webinar_an_attendee_hears_and_is_expelled(
    browser: Browser, serve: Serve
) -> None:
    admin, join_link, host_key = operator_creates_a_webinar(browser, serve)
    screenshot(admin, "operator-created")
    meeting = join_link.removeprefix("/m/")
    host = host_console(browser, serve, meeting, host_key)

    # The presenter publishes from the join page with the host key.
    presenter = presents(browser, serve, meeting, host_key)

    # An attendee plays it: packets arrive and the analyser shows energy.
    ada = attendee_joins(browser, serve, join_link, "Ada")
    expect(ada.locator("#player")).to_be_visible()
    until(ada, "() => Number(document.getElementById('level').dataset.level) > 0.001", 20)
    assert ada.locator("#level").get_attribute("data-source") == "analyser"
    until(ada, "() => Number(document.getElementById('health').dataset.packets) > 50")
    screenshot(ada, "join-playing")

    # The operator view shows the packets moving, per worker, while the attendee plays,
    # and the webinar with its two people.
    until(
        admin,
        "() => [...document.querySelectorAll('#workers tr[data-worker]')]"
        ".some((r) => Number(r.dataset.ppsOut) > 0)",
    )
    expect(admin.locator(f'#meetings tr[data-meeting="{meeting}"] td').nth(2)).to_have_text("2")
    screenshot(admin, "operator-live")

    # The host sees both, with their roles, and expels the attendee.
    row = host.locator('#people tr[data-name="Ada"]')
    expect(row).to_have_attribute("data-state", "present")
    expect(host.locator('#people tr[data-name="Presenter"] td').nth(1)).to_have_text("host")
    screenshot(host, "host-console")
    asked = time.monotonic()
    row.locator('button[data-action="expel"]').click()
    until(ada, "() => document.getElementById('notice').textContent.includes('removed')", 3)
    told = time.monotonic() - asked
    print(f"the expelled attendee's page said so after {told:.2f} s")
    assert told < 1.0, f"the expelled attendee's page said so after {told:.2f} s"
    expect(ada.locator("#player")).to_be_hidden()
    screenshot(ada, "join-expelled")
    expect(row).to_have_attribute("data-state", "expelled")

    # Locked: a new attendee is told so.
    host.click("#lock")
    expect(host.locator("#lock")).to_have_text("Unlock")
    bob = attendee_joins(browser, serve, join_link, "Bob")
    expect(bob.locator("#notice")).to_contain_text("locked")
    expect(bob.locator("#player")).to_be_hidden()
    screenshot(bob, "join-locked")

    # The audit log in the console has the expulsion and the lock.
    expect(host.locator("#audit")).to_contain_text("participant.expel")
    expect(host.locator("#audit")).to_contain_text("meeting.lock")
    host.click("#end")
    expect(host.locator("#summary")).to_contain_text("ended")
    expect(admin.locator(f'#ended tr[data-meeting="{meeting}"]')).to_contain_text("Town hall")
    # The node, drained from the operator view and taken back (control/nodes.py).
    node = admin.locator("#nodes tr[data-node]")
    expect(node).to_have_attribute("data-state", "up")
    node.locator('button[data-action="drain"]').click()
    expect(node).to_have_attribute("data-state", "draining")
    node.locator('button[data-action="undrain"]').click()
    expect(node).to_have_attribute("data-state", "up")
    expect(presenter.locator("#publish-notice")).to_have_text("This meeting has ended.")
    screenshot(host, "host-ended")
    for page in (admin, host, presenter, ada, bob):
        page.context.close()


def test_registration_in_the_page(browser: Browser, serve: Serve) -> None:
    created = town_hall(serve)
    meeting, host_key = created["id"], created["host_key"]
    host = host_console(browser, serve, meeting, host_key)
    # The host requires registration, approved by hand.
    host.check("#reg-enabled")
    host.select_option("#reg-approval", "manual")
    # The meeting's live updates (here: locked, then unlocked) leave a form the host has
    # not saved as the host left it.
    host.click("#lock")
    expect(host.locator("#lock")).to_have_text("Unlock")
    host.click("#lock")
    expect(host.locator("#lock")).to_have_text("Lock")
    expect(host.locator("#reg-enabled")).to_be_checked()
    host.click("#registration-settings button")
    expect(host.locator("#reg-notice")).to_contain_text("Registration is required")

    page = new_page(browser)
    page.goto(f"{serve.url}/m/{meeting}")
    expect(page.locator("#register")).to_be_visible()
    expect(page.locator("#secret-label")).to_have_text("Join token")
    page.fill("#r-first_name", "Grace")
    page.fill("#r-last_name", "Hopper")
    page.fill("#r-email", "grace@example.org")
    page.click("#register-button")
    expect(page.locator("#register-notice")).to_contain_text("The host approves")
    screenshot(page, "join-registered")

    host.click("#reg-refresh")
    row = host.locator('#registrants tr[data-status="pending"]')
    expect(row).to_contain_text("Grace Hopper")
    row.locator('button[data-action="approve"]').click()
    notice = host.locator("#reg-notice")
    expect(notice).to_contain_text("join token")
    token = notice.get_attribute("data-token")
    assert token
    screenshot(host, "host-registrants")

    page.fill("#name", "Grace")
    page.fill("#secret", token)
    page.click("#join-button")
    expect(page.locator("#player")).to_be_visible()
    host.click("#reg-refresh")
    expect(host.locator('#registrants tr[data-status="approved"] td').nth(3)).to_have_text("yes")
    # The password is not the way in once registration is on.
    other = new_page(browser)
    other.goto(f"{serve.url}/m/{meeting}")
    other.fill("#name", "Mallory")
    other.fill("#secret", PASSWORD)
    other.click("#join-button")
    expect(other.locator("#notice")).to_contain_text("Refused")
    for p in (host, page, other):
        p.context.close()


def test_a_wrong_password_and_an_ended_meeting_are_told(browser: Browser, serve: Serve) -> None:
    created = town_hall(serve)
    meeting = created["id"]
    page = new_page(browser)
    page.goto(f"{serve.url}/m/{meeting}")
    page.fill("#name", "Eve")
    page.fill("#secret", "not the password")
    page.click("#join-button")
    expect(page.locator("#notice")).to_contain_text("Refused")
    expect(page.locator("#player")).to_be_hidden()
    with serve.api() as api:
        api.post(f"/v1/meetings/{meeting}/end")
    page.reload()
    expect(page.locator("#notice")).to_have_text("This meeting has ended.")
    expect(page.locator("#join")).to_be_hidden()
    page.goto(f"{serve.url}/m/no-such-meeting")
    expect(page.locator("#notice")).to_contain_text("no such meeting")
    page.context.close()


def test_firefox_plays_the_join_page_is_expelled_and_told_locked(
    browser: Browser, routable: Serve
) -> None:
    """Firefox uses no loopback candidate: the relay listens on every address and answers
    with the host's own (tests/test_browsers.py's `routable`). Its join page plays a Chromium
    presenter; the host expels it, and the page says so within a second; the host locks, and
    joining again is told the meeting is locked."""
    serve = routable
    created = town_hall(serve)
    meeting, host_key = created["id"], created["host_key"]
    presenter = presents(browser, serve, meeting, host_key)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in SANITIZER}
    firefox = subprocess.Popen(
        [
            str(NODE),
            str(FIREFOX_DRIVER.parent / "join_page.mjs"),
            f"{serve.url}/m/{meeting}",
            "Firefox attendee",
            PASSWORD,
            "30",
            str(ARTIFACTS / "join-firefox.png"),
            "then-removed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert firefox.stdout is not None
    try:
        seen = json.loads(firefox.stdout.readline() or "{}")
        print("firefox saw", seen)
        assert seen.get("player") and seen["level"] > 0.001 and seen["packets"] > 50, seen
        with httpx.Client(
            base_url=serve.url, headers={"Authorization": f"Bearer {host_key}"}
        ) as api:
            people = api.get(f"/v1/meetings/{meeting}/participants").json()
            attendee = next(p["id"] for p in people if p["name"] == "Firefox attendee")
            asked = time.monotonic()
            r = api.patch(f"/v1/meetings/{meeting}/participants/{attendee}", json={"expel": True})
            assert r.status_code == 200, r.text
            r = api.put(f"/v1/meetings/{meeting}/controls", json={"locked": True})
            assert r.status_code == 200, r.text
        removed = json.loads(firefox.stdout.readline() or "{}")
        told = time.monotonic() - asked
        print(f"Firefox's page said so after {told:.2f} s")
        assert "removed from this meeting" in removed.get("removed", ""), removed
        assert told < 1.0, f"Firefox's page said it was expelled after {told:.2f} s"
        again = json.loads(firefox.stdout.readline() or "{}")
        assert "locked" in again.get("again", ""), again
        assert firefox.wait(30) == 0, firefox.stderr.read() if firefox.stderr else ""
    finally:
        if firefox.poll() is None:
            firefox.kill()
            firefox.wait()
    presenter.context.close()


def test_a_newcomer_hears_relay_demo_in_a_browser(browser: Browser) -> None:
    """`relay demo --listen` prints the join page of the webinar it runs; a browser that opens
    it and joins with the printed password hears the chime (the analyser shows energy), and
    the demo counts it among its listeners."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "cli", "demo", "--attendees", "5", "--seconds", "1"]
        + ["--listen", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        found = None
        while found is None:
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            found = re.search(r"join page:\s+(\S+)\s+\(password (\S+);", line)
        url, password = found.group(1), found.group(2)
        while "the chime plays now" not in lines[-1]:
            lines.append(demo.stdout.readline())
            assert lines[-1], "".join(lines)
        page = new_page(browser)
        page.goto(url)
        page.fill("#name", "Newcomer")
        page.fill("#secret", password)
        page.click("#join-button")
        expect(page.locator("#player")).to_be_visible()
        until(page, "() => Number(document.getElementById('level').dataset.level) > 0.01", 15)
        assert page.locator("#level").get_attribute("data-source") == "analyser"
        screenshot(page, "demo-join")
        rest, _ = demo.communicate(timeout=60)
        lines.append(rest)
        page.context.close()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = "".join(lines)
    assert demo.returncode == 0, output
    assert re.search(r"s: 1 listening in a browser", output), output


def test_an_attendee_who_came_early_plays_the_presenter_once_they_start(
    browser: Browser, serve: Serve
) -> None:
    """Attendees often wait before the presenter starts. The relay answers a viewer once; its
    session's events name the presenter's streams when they start, and the page joins again
    to take them, then leaves the old session."""
    created = town_hall(serve)
    meeting, host_key = created["id"], created["host_key"]
    early = attendee_joins(browser, serve, f"/m/{meeting}", "Early")
    expect(early.locator("#player")).to_be_visible()
    expect(early.locator("#waiting")).to_contain_text("Nobody is presenting yet")
    presenter = presents(browser, serve, meeting, host_key)
    started = time.monotonic()
    until(early, "() => Number(document.getElementById('level').dataset.level) > 0.001", 20)
    print(f"the early attendee heard the presenter {time.monotonic() - started:.1f} s after")
    until(early, "() => document.querySelectorAll('#stage video:not([hidden])').length === 1")
    expect(early.locator("#waiting")).to_be_hidden()
    with serve.api() as api:
        people = api.get(f"/v1/meetings/{meeting}/participants").json()
    early_sessions = [p for p in people if p["name"] == "Early"]
    # The first session left once the second played: one present, one gone.
    assert sorted(p["left_at"] is None for p in early_sessions) == [False, True], early_sessions
    for page in (early, presenter):
        page.context.close()


AXE = FIREFOX_DRIVER.parent / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
  .filter((v) => v.impact === "serious" || v.impact === "critical")
  .map((v) => ({id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(" "))}))"""
FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"


def accessibility_problems(page: Page) -> list[dict[str, object]]:
    """axe-core's serious and critical violations of the page as it is now (WCAG 2 A and AA
    rules and best practices). Evaluated through the browser's debugging protocol, which the
    page's Content-Security-Policy does not govern, as an extension would be."""
    page.evaluate(AXE.read_text() + "\n;0")
    problems: list[dict[str, object]] = page.evaluate(SERIOUS)
    return problems


@pytest.mark.skipif(not AXE.exists(), reason="axe-core is not installed (npm ci in tests/browsers)")
def test_the_pages_are_accessible_keyboard_usable_and_fit_a_phone(
    browser: Browser, serve: Serve
) -> None:
    created, registering = town_hall(serve), town_hall(serve)
    with serve.api() as api:
        r = api.put(
            f"/v1/meetings/{registering['id']}/registration",
            json={"enabled": True, "approval": "manual", "optional_fields": ["company"]},
        )
        assert r.status_code == 200, r.text
    meeting, host_key = created["id"], created["host_key"]
    seen: dict[str, list[dict[str, object]]] = {}
    for width, height in ((1100, 900), (390, 844)):  # a laptop, a phone
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        for name, path, sign_in in (
            ("operator", "/admin", ("#token", serve.token)),
            ("host", f"/host/{meeting}", ("#key", host_key)),
            ("join", f"/m/{meeting}", None),
            ("register", f"/m/{registering['id']}", None),
        ):
            page.goto(serve.url + path)
            expect(page.locator("h1")).not_to_have_text("")
            seen[f"{name} {width}px"] = accessibility_problems(page)
            assert page.evaluate(FITS), f"{name} scrolls sideways at {width} px"
            if sign_in:
                page.fill(*sign_in)
                page.keyboard.press("Enter")  # a form submits from the keyboard
                expect(page.locator("#console")).to_be_visible()
                seen[f"{name} console {width}px"] = accessibility_problems(page)
                assert page.evaluate(FITS), f"{name} console scrolls sideways at {width} px"
            screenshot(page, f"{name}-{width}px")
        context.close()
    assert not any(seen.values()), seen

    # Joining from the keyboard alone: Tab to the name, type, Tab, type, Enter.
    page = new_page(browser)
    page.goto(f"{serve.url}/m/{meeting}")
    expect(page.locator("#join")).to_be_visible()
    for _ in range(10):
        if page.evaluate("() => document.activeElement.id") == "name":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "name"
    page.keyboard.type("Keyboard user")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "secret"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#player")).to_be_visible()
    seen_playing = accessibility_problems(page)
    assert not seen_playing, seen_playing
    page.context.close()


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """`relay serve` that believes X-Forwarded-For from loopback, so that a test can guess
    passwords from other addresses than the browser's."""
    s = start_serve(tmp_path_factory.mktemp("pow") / "data", 1, "--trusted-proxies", "127.0.0.1/32")
    try:
        yield s
    finally:
        stop_serve(s)


def test_a_browser_joins_a_meeting_under_attack(browser: Browser, behind_proxy: Serve) -> None:
    """Ten wrong passwords from other addresses: every password join must now carry a proof of
    work. The join page gets the challenge in its 428, solves it in a Web Worker with the
    browser's own SHA-256, and joins."""
    serve = behind_proxy
    created = town_hall(serve)
    meeting = created["id"]
    for i in range(10):
        r = httpx.post(
            f"{serve.url}/v1/meetings/{meeting}/join",
            json={"name": "guesser", "password": f"guess {i}"},
            headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
        )
        assert r.status_code == 403, r.text
    with serve.api() as api:
        assert api.get(f"/v1/meetings/{meeting}").json()["join_throttle"]["proof_of_work"]
    page = new_page(browser)
    page.goto(f"{serve.url}/m/{meeting}")
    page.fill("#name", "Patient")
    page.fill("#secret", PASSWORD)
    started = time.monotonic()
    page.click("#join-button")
    expect(page.locator("#player")).to_be_visible(timeout=60_000)
    took = time.monotonic() - started
    with serve.api() as api:
        names = [p["name"] for p in api.get(f"/v1/meetings/{meeting}/participants").json()]
        metrics = api.get("/metrics").text
    assert "Patient" in names
    # It was asked (a 428 counted as a failed join), then it proved and joined.
    assert 'relay_join_failures_total{reason="proof_of_work_required"} 1.0' in metrics, metrics
    print(f"joined under attack in {took:.1f} s")
    page.context.close()
