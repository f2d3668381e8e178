"""Playwright in Chromium: text from DICOM headers never becomes a link (#17.11)."""

from __future__ import annotations

import sqlalchemy as sa
from playwright.sync_api import Page, expect

from db.models import Study
from tests.e2e.conftest import Server
from tests.e2e.test_reading_flow import T, db, sign_in

URL = "https://evil.example/phish"


def test_urls_in_header_text_are_not_clickable(page: Page, server: Server):
    """Test that a URL, a www name and an e-mail address in patient, description and quality-reason text (all
    from DICOM headers) show as plain text on the worklist and in the review page, with no link to them."""
    failed = server.ids["failed"]
    with db(server) as s:
        s.execute(
            sa.update(Study)
            .where(Study.id == failed)
            .values(
                patient_name=f"Fay {URL}",
                description="see www.evil.example",
                attention_reason=f"no_axial_series: description '{URL}' matches 'scout'; mail help@evil.example",
            )
        )
        s.commit()
    sign_in(page, server)
    row = page.locator(f".st-key-wl_row_{failed}")
    expect(row).to_contain_text("evil.example/phish", timeout=T)
    assert URL in row.inner_text().replace("\u2060", "")
    links = page.locator("a[href*='evil']")
    assert links.count() == 0, [links.nth(i).evaluate("e => e.outerHTML") for i in range(links.count())]
    row.get_by_role("button", name="Open").click()
    expect(page.get_by_text("AI did not assess this study").first).to_be_visible(timeout=T)
    expect(page.get_by_text("evil.example").first).to_be_visible()
    body = page.locator("body").inner_text().replace("\u2060", "")  # the invisible joiner that defuses links
    assert URL in body and "help@evil.example" in body and "www.evil.example" in body
    links = page.locator("a[href*='evil']:not([href^='#']), a[href^='mailto']")  # '#...': a heading anchor
    assert links.count() == 0, [links.nth(i).evaluate("e => e.outerHTML") for i in range(links.count())]
