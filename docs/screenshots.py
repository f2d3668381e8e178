"""Take the README screenshots from the demo: worklist, review viewer of the top case, analytics.

Usage (after ``triage demo --no-serve`` built ``var/demo``)::

    .venv/bin/python docs/screenshots.py [--data-dir var/demo] [--out docs/images]

A throw-away reader account is added to the demo database for the session and disabled afterwards; the
dashboard is served on a free localhost port and driven by Playwright in Chromium (``/usr/bin/chromium`` or
``TRIAGE_TEST_CHROMIUM`` if present, else Playwright's own browser).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T = 60_000


def _triage(env: dict, *args: str, stdin: str | None = None) -> None:
    out = subprocess.run([sys.executable, "-m", "inference.cli", *args], input=stdin, env=env, text=True,
                         capture_output=True, timeout=120)
    if out.returncode:
        raise SystemExit(f"triage {' '.join(args)} failed: {out.stderr[-1500:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT / "var" / "demo"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = ap.parse_args()
    data = Path(args.data_dir).resolve()
    if not (data / "triage.db").exists():
        raise SystemExit(f"no demo database in {data}: run `triage demo --no-serve` first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TRIAGE_DATA_DIR": str(data), "TRIAGE_DEMO_MODE": "1", "TRIAGE_AI_HIDDEN_FRACTION": "0"}
    user, password = f"screenshots-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    _triage(env, "user", "add", user, "--role", "radiologist", "--password-stdin", stdin=password + "\n")

    from playwright.sync_api import expect, sync_playwright

    from dashboard.harness import CHROMIUM_ARGS, chromium_path, running_server

    try:
        with running_server(env, timeout=90) as (url, _), sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{url}/")
            page.get_by_label("Username").fill(user, timeout=T)
            page.get_by_role("textbox", name="Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_test_id("wl-badge").first).to_be_visible(timeout=T)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "dashboard-worklist.png"))
            page.locator("[class*='st-key-wl_row_']").first.get_by_role("button", name="Open").click()
            viewer = page.frame_locator("iframe[title*='triage_volume_viewer']")
            expect(viewer.locator("body[data-ready='1']")).to_have_count(1, timeout=3 * T)
            goto = page.get_by_role("button", name=re.compile("^Go$"))
            if goto.count():  # the top finding, with the heatmap shown
                slices = viewer.locator("#slices")
                before = slices.inner_text()
                goto.first.click()
                expect(slices).not_to_have_text(before, timeout=T)
                viewer.locator("input[data-overlay='heatmap']").check()
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / "dashboard-viewer.png"))
            page.get_by_role("link", name="Analytics").click()
            expect(page.get_by_test_id("stMetric").first).to_be_visible(timeout=T)
            page.wait_for_timeout(4000)
            page.screenshot(path=str(out / "dashboard-analytics.png"), full_page=True)
            browser.close()
    finally:
        _triage(env, "user", "disable", user)
    print(f"screenshots written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
