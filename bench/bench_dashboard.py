"""Browser-measured dashboard benchmark (Playwright + Chromium against a real `streamlit run` server).

Data: 10,000 studies and 100,000 reading sessions bulk-loaded (``bench/bench_db.py``'s loader) plus the
seeded review cases of the UI tests (``tests/dashboard/seed.py``). Measures, in the browser:

* first render of the worklist after sign-in (target <= 2 s);
* slice change in the viewer: arrow key on the axial slider until the new slice label and image are on
  screen, p95 over 30 changes (target <= 200 ms);
* the analytics page with 100,000 readings until its first figures are on screen (target <= 3 s).

Usage: ``.venv/bin/python bench/bench_dashboard.py [--studies 10000] [--sessions 100000]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
T = 60_000


def _bench_db():
    spec = importlib.util.spec_from_file_location("bench_db", ROOT / "bench" / "bench_db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def build(data_dir: Path, n_studies: int, n_sessions: int) -> dict:
    """Bulk rows (``n_studies`` may be 0) plus the UI seed (users, a few studies with images)."""
    from db.migrate import upgrade
    from db.session import create_db_engine
    from tests.dashboard.seed import seed

    engine = create_db_engine(f"sqlite:///{data_dir / 'triage.db'}")
    upgrade(engine)
    t = time.perf_counter()
    counts = _bench_db().load(engine, n_studies, n_sessions) if n_studies else {}
    engine.dispose()
    ids = seed(data_dir)
    print(f"loaded {counts} + UI seed in {time.perf_counter() - t:.1f} s")
    return ids


def _env(data_dir: Path) -> dict:
    return {**os.environ, "TRIAGE_DATA_DIR": str(data_dir), "TRIAGE_DEMO_MODE": "1"}


def sign_in(page, url: str) -> float:
    """Sign in as reader1; returns seconds from the click until the first worklist row is on screen."""
    from playwright.sync_api import expect

    from tests.dashboard.seed import PASSWORD

    page.goto(f"{url}/")
    page.get_by_label("Username").fill("reader1", timeout=T)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    t = time.perf_counter()
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("wl-badge").first).to_be_visible(timeout=T)
    return time.perf_counter() - t


def slice_changes(page, study_id: int, n: int) -> np.ndarray:
    """Milliseconds per axial slice change (arrow key until the new label and images are on screen)."""
    from playwright.sync_api import expect

    page.locator(f".st-key-wl_row_{study_id}").get_by_role("button", name="Open").click()
    label = page.get_by_test_id("vw-label-axial")
    expect(label).to_contain_text("AXIAL", timeout=T)
    slider = page.locator(".st-key-vw_k").get_by_role("slider")
    slider.focus()
    out = []
    for k in range(n):
        before = label.inner_text()
        t = time.perf_counter()
        slider.press("ArrowRight" if k % 20 < 10 else "ArrowLeft")
        expect(label).not_to_have_text(before, timeout=T)
        page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => i.complete)", timeout=T)
        out.append((time.perf_counter() - t) * 1000)
    return np.array(out)


def analytics(page) -> float:
    from playwright.sync_api import expect

    t = time.perf_counter()
    page.get_by_role("link", name="Analytics").click()
    expect(page.get_by_test_id("stMetric").first).to_be_visible(timeout=T)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=T)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--changes", type=int, default=30)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from dashboard.harness import CHROMIUM_ARGS, chromium_path, running_server

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        big.mkdir()
        small.mkdir()
        build(big, args.studies, args.sessions)
        with running_server(_env(big)) as (url, _):
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            worklist_s = sign_in(page, url)
            analytics_s = analytics(page)
        ids = build(small, 0, 0)  # slice speed does not depend on the database size
        with running_server(_env(small)) as (url, _):
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            sign_in(page, url)
            ch = slice_changes(page, ids["pe"], args.changes)
        browser.close()

    print(f"{'measure':<48}{'value':>10}{'target':>10}{'ratio':>8}")
    name = f"worklist first render, {args.studies} studies"
    print(f"{name:<48}{worklist_s:>9.2f}s{2.0:>9.1f}s{2.0 / worklist_s:>7.2f}x")
    p95 = float(np.percentile(ch, 95))
    name = f"slice change p95 (median {np.median(ch):.0f} ms, n={len(ch)})"
    print(f"{name:<48}{p95:>8.0f}ms{200:>8d}ms{200 / p95:>7.2f}x")
    name = f"analytics page, {args.sessions} readings"
    print(f"{name:<48}{analytics_s:>9.2f}s{3.0:>9.1f}s{3.0 / analytics_s:>7.2f}x")
    print("(ratio > 1.00x meets the target)")


if __name__ == "__main__":
    main()
