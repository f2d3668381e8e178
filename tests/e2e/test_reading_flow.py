"""Playwright in Chromium against the real dashboard server: sign in, read a case end to end, bad input."""

from __future__ import annotations

import re
import time

import sqlalchemy as sa
from playwright.sync_api import Page, expect
from sqlmodel import Session

from db import queries
from db.models import ReadingSession
from db.session import create_db_engine
from tests.dashboard.seed import HTML_NAME, PASSWORD
from tests.e2e.conftest import ARTIFACTS, Server

T = 30_000  # first renders take 4-5 s on this machine; be generous


def sign_in(page: Page, server: Server, user: str = "reader1", path: str = "") -> None:
    page.goto(f"{server.url}/{path}")
    page.get_by_label("Username").fill(user, timeout=T)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in-as")).to_contain_text(user, timeout=T)


def db(server: Server) -> Session:
    return Session(create_db_engine(server.db_url()), expire_on_commit=False)


def test_worklist_after_sign_in_puts_critical_pe_first(page: Page, server: Server):
    """Test that after sign-in the worklist shows the critical PE first, attention reasons and names as text."""
    sign_in(page, server)
    badges = page.get_by_test_id("wl-badge")
    expect(badges.first).to_have_text("CRITICAL PE", timeout=T)
    expect(page.get_by_text("NEEDS ATTENTION")).to_be_visible()
    expect(page.get_by_text("model crashed")).to_be_visible()
    expect(page.get_by_text(HTML_NAME)).to_be_visible()  # rendered as literal text, not as markup
    assert page.locator("b", has_text="Bold").count() == 0
    expect(page.get_by_test_id("research-banner")).to_contain_text("not a medical device")
    page.screenshot(path=str(ARTIFACTS / "worklist.png"))


def viewer_ready(page: Page) -> None:
    frame = page.frame_locator("iframe[title*='triage_volume_viewer']")
    expect(frame.locator("body[data-ready='1']")).to_have_count(1, timeout=3 * T)  # WebGL in software: slow here


def test_read_a_critical_case_end_to_end(page: Page, server: Server):
    """Test open → verdicts → the report follows them → a contradicting report is refused without a reason →
    signed with a reason (audited) → analytics counts the reading."""
    pe = server.ids["pe"]
    sign_in(page, server)
    page.locator(f".st-key-wl_row_{pe}").get_by_role("button", name="Open").click()
    viewer_ready(page)
    expect(page.get_by_test_id("reading-timer")).to_be_visible()
    with db(server) as s:
        findings = queries.get_findings(session=s, study_id=pe)
    page.locator(f".st-key-confirmed_{findings[0].id} button").first.click()
    expect(page.locator(".st-key-rep_pe").get_by_role("radio", name="yes")).to_be_checked(timeout=T)
    page.locator(f".st-key-rejected_{findings[1].id} button").first.click()
    impression = page.locator(".st-key-rep_impression textarea")
    expect(impression).to_have_value(re.compile("Pulmonary embolism"), timeout=T)
    page.screenshot(path=str(ARTIFACTS / "viewer.png"), timeout=3 * T)

    page.locator(".st-key-rep_nodule").get_by_text("no", exact=True).click()
    page.locator(".st-key-rep_pe").get_by_text("no", exact=True).click()  # contradicts the confirmed PE
    expect(page.get_by_text("This report contradicts your verdicts")).to_be_visible(timeout=T)
    impression.press("Control+Enter")  # a keystroke never signs
    page.get_by_role("button", name="Sign report").click()
    expect(page.get_by_text("Not signed: the report contradicts your verdicts")).to_be_visible(timeout=T)
    with db(server) as s:
        assert queries.get_report(session=s, study_id=pe) is None
    page.get_by_label("Reason for signing it anyway (required)").fill("clot is a mixing artefact on review")
    page.get_by_label("Reason for signing it anyway (required)").press("Tab")
    page.get_by_role("button", name="Sign report").click()
    expect(page.get_by_text("Signed. Active reading time")).to_be_visible(timeout=T)

    with db(server) as s:
        report = queries.get_report(session=s, study_id=pe)
        events = queries.list_events(session=s, study_id=pe)
    assert not report.embolism and not report.nodule and report.signed_by == "reader1"
    actions = [e.action for e in events]
    assert actions.count("verdict") == 2 and "open" in actions and "sign" in actions
    (override,) = [e for e in events if e.action == "sign_contradiction"]
    assert override.detail["reason"] == "clot is a mixing artefact on review"

    page.get_by_role("link", name="Analytics").click()
    expect(page.get_by_test_id("stMetric").first).to_contain_text("1", timeout=T)
    expect(page.get_by_test_id("stMetric").first).to_contain_text("Readings (cases)")
    page.screenshot(path=str(ARTIFACTS / "analytics.png"), timeout=3 * T)


def test_deep_link_opens_its_case_after_sign_in(page: Page, server: Server):
    """Test that a link to a case, opened before sign-in, shows that case right after signing in."""
    html = server.ids["html"]
    page.goto(f"{server.url}/review?study={html}")
    page.get_by_label("Username").fill("reader1", timeout=T)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(HTML_NAME)).to_be_visible(timeout=T)  # the case's header
    expect(page.get_by_role("button", name="Sign report")).to_be_visible(timeout=T)
    assert f"study={html}" in page.url


def test_browser_heartbeat_times_the_reading(page: Page, server: Server):
    """Test that the heartbeat component loads on the case page and that its reports of active seconds reach
    the server: the reading is timed from browser activity, more than 0 s and not more than the wall time."""
    routine = server.ids["routine"]
    sign_in(page, server)
    start = time.monotonic()
    page.locator(f".st-key-wl_row_{routine}").get_by_role("button", name="Open").click()
    viewer_ready(page)
    timer = page.get_by_test_id("reading-timer")
    first = timer.get_attribute("data-seconds")
    expect(timer).not_to_have_attribute("data-seconds", first, timeout=T)  # the timer ticks in the browser
    beat = page.locator('iframe[title$="triage_heartbeat"]')
    expect(beat).to_be_attached(timeout=T)
    expect(beat.content_frame.locator("script")).to_have_count(1)  # the component's page loaded
    for n in range(14):  # the reader moves the mouse over the images for about 7 s
        page.mouse.move(300 + 20 * (n % 5), 400 + 10 * (n % 3))
        page.wait_for_timeout(500)
    page.locator(".st-key-rep_nodule").get_by_text("no", exact=True).click()
    page.locator(".st-key-rep_pe").get_by_text("no", exact=True).click()
    page.get_by_role("button", name="Sign report").click()
    expect(page.get_by_text("from browser activity")).to_be_visible(timeout=T)
    wall = time.monotonic() - start
    with db(server) as s:
        (active,) = s.exec(sa.select(ReadingSession.active_seconds).where(ReadingSession.study_id == routine)).one()
    assert 0 < active <= wall, (active, wall)


def test_case_url_without_sign_in_shows_no_patient_data(page: Page, server: Server):
    """Test that asking for a case by URL without signing in shows only the sign-in form."""
    page.goto(f"{server.url}/review?study={server.ids['routine']}")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=T)
    body = page.locator("body").inner_text()
    assert "Routine^Ron" not in body and "PID-ROUT" not in body and "Axial" not in body


def test_stale_claim_can_be_taken_over(page: Page, server: Server):
    """Test that a study held by another reader names the holder and a stale claim can be taken over."""
    held = server.ids["held"]
    sign_in(page, server)
    page.locator(f".st-key-wl_row_{held}").get_by_role("button", name="Open").click()
    expect(page.get_by_text("In review by reader2 since")).to_be_visible(timeout=T)
    page.get_by_role("button", name="Take over this study").click()
    expect(page.get_by_test_id("signed-in-as")).to_contain_text(f"reading study #{held}", timeout=T)
    with db(server) as s:
        assert queries.get_study(session=s, study_id=held).claimed_by == "reader1"


def test_sign_in_survives_reload_until_sign_out(page: Page, server: Server):
    """Test that a reload keeps the reader signed in, and that after sign-out a reload (even replaying the
    old cookie) shows only the sign-in form."""
    has_cookie = "() => document.cookie.includes('triage_session=')"
    sign_in(page, server)
    page.wait_for_function(has_cookie, timeout=T)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "triage_session"]
    assert cookie["sameSite"] == "Strict" and cookie["expires"] > time.time() + 3600
    page.reload()
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("reader1", timeout=T)
    expect(page.get_by_test_id("wl-badge").first).to_be_visible(timeout=T)
    expect(page.get_by_text("Held^Hank")).to_be_visible()  # patient data again, without a new sign-in

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=T)
    page.wait_for_function(f"() => !({has_cookie})()", timeout=T)
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=T)
    page.context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path")}])  # replay: revoked
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=T)
    body = page.locator("body").inner_text()
    assert "Held^Hank" not in body and "PID-" not in body
    with db(server) as s:
        actions = [e.action for e in queries.list_events(session=s, limit=10)]
    assert "session_resumed" in actions and "sign_out" in actions
