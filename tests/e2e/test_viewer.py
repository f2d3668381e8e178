"""Playwright in Chromium (WebGL2 through SwiftShader) against the real dashboard: the client-side volume
viewer answers the wheel, arrow keys, drag (window/level), presets, the caliper and a click that marks a
missed finding. One page, opened once for the module (each opening loads the study into WebGL)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, FrameLocator, Page, expect
from sqlmodel import Session

from db import queries
from db.session import create_db_engine
from tests.dashboard.seed import PASSWORD, SPACING
from tests.e2e.conftest import ARTIFACTS, Server

T = 60_000


@pytest.fixture(scope="module")
def viewer_page(browser: Browser, server: Server) -> Iterator[Page]:
    """reader1 signed in at 1920×1080 with the routine case open and its viewer loaded."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.goto(server.url)
    page.get_by_label("Username").fill("reader1", timeout=T)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.locator(f".st-key-wl_row_{server.ids['routine']}").get_by_role("button", name="Open").click(timeout=T)
    expect(frame(page).locator("body[data-ready='1']")).to_have_count(1, timeout=T)
    yield page
    context.close()


def frame(page: Page) -> FrameLocator:
    return page.frame_locator("iframe[title*='triage_volume_viewer']")


def axial_point(page: Page, fx: float = 0.3, fy: float = 0.5) -> tuple[float, float]:
    """A point inside the axial (large, left) tile, as page coordinates."""
    box = frame(page).locator("#gl").bounding_box()
    assert box is not None and box["height"] > 300
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def slice_k(page: Page) -> int:
    return int(frame(page).locator("#slices").get_attribute("data-k"))


# NiiVue's hero axial tile and the first image (first.js), sampled on a grid at the same page points: grey levels.
_COMPARE_JS = """() => {
  const v = window.triageViewer, nv = v.nv, gl = nv.gl;
  v.settle();
  nv.drawScene();
  const W = gl.drawingBufferWidth, H = gl.drawingBufferHeight;
  const px = new Uint8Array(W * H * 4);
  gl.readPixels(0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, px);
  const tile = nv.screenSlices[0].leftTopWidthHeight;
  const first = document.getElementById("first");
  const fd = first.getContext("2d").getImageData(0, 0, first.width, first.height).data;
  const out = [];
  for (let a = 0; a < 24; a++) for (let b = 0; b < 24; b++) {
    const x = tile[0] + tile[2] * (0.1 + 0.8 * (a + 0.5) / 24), y = tile[1] + tile[3] * (0.1 + 0.8 * (b + 0.5) / 24);
    const gi = 4 * (Math.round(x) + W * (H - 1 - Math.round(y)));
    const fx = Math.round(x * first.width / W), fy = Math.round(y * first.height / H);
    out.push([px[gi], fd[4 * (fx + first.width * fy)]]);
  }
  return { grey: out, k: first.dataset.k, renderer: document.body.dataset.renderer };
}"""


def test_first_image_is_the_opening_slice_the_viewer_then_draws(viewer_page: Page):
    """Test that the first image (the server's PNG of the opening axial slice, on screen before NiiVue has the
    study) is the slice NiiVue opens on, in the same window, where NiiVue draws it: the same grey levels at the
    same points of NiiVue's axial tile (not a flipped or shifted image, not a placeholder)."""
    page = viewer_page
    f = frame(page)
    assert f.locator("body").get_attribute("data-first-image") == "1"
    assert f.locator("#first").get_attribute("data-k") == f.locator("#slices").get_attribute("data-k")
    handle = next(fr for fr in page.frames if "triage_volume_viewer" in (fr.url or ""))
    got = handle.evaluate(_COMPARE_JS)
    pairs = [(int(a), int(b)) for a, b in got["grey"]]
    niivue = [a for a, _ in pairs]
    first = [b for _, b in pairs]
    assert max(niivue) - min(niivue) > 60  # the tile shows an image, not a blank
    diffs = sorted(abs(a - b) for a, b in pairs)
    assert diffs[len(diffs) // 2] <= 12, diffs[len(diffs) // 2]  # median difference in grey levels
    assert sum(d > 40 for d in diffs) <= len(diffs) // 10
    for mirrored in (
        [first[(23 - a) * 24 + b] for a in range(24) for b in range(24)],  # left-right
        [first[a * 24 + 23 - b] for a in range(24) for b in range(24)],  # front-back
    ):
        assert sum(abs(x - y) for x, y in zip(niivue, mirrored)) > 2 * sum(diffs)


def test_scrolling_draws_at_low_resolution_in_software_then_full(viewer_page: Page):
    """Test that with a software renderer the canvas is backed by fewer pixels (the viewer's scroll scale, 0.4
    per side) while the slice changes and goes back to full resolution when scrolling stops (a hardware renderer
    keeps full resolution)."""
    page = viewer_page
    handle = next(fr for fr in page.frames if "triage_volume_viewer" in (fr.url or ""))
    full_w = handle.evaluate("() => window.triageViewer.nv.gl.canvas.width")
    during = handle.evaluate(
        "() => { const v = window.triageViewer; v.timedStep(1); const w = v.nv.gl.canvas.width;"
        " v.timedStep(-1); return w; }"
    )
    if frame(page).locator("body").get_attribute("data-renderer") == "software":
        scale = handle.evaluate("() => window.triageViewer.scrollRes.scale")
        assert 0 < scale < 1 and abs(during - full_w * scale) <= 1, (during, full_w, scale)
    else:
        assert during == full_w
    handle.wait_for_function("() => !window.triageViewer.scrollRes.low", timeout=T)
    assert handle.evaluate("() => window.triageViewer.nv.gl.canvas.width") == full_w


def test_wheel_and_arrow_keys_over_the_image_change_the_slice(viewer_page: Page):
    """Test that the mouse wheel and the arrow keys over the axial image change the axial slice in the browser."""
    page = viewer_page
    x, y = axial_point(page)
    page.mouse.move(x, y)
    before = slice_k(page)
    page.mouse.wheel(0, -120)
    expect(frame(page).locator("#slices")).not_to_have_attribute("data-k", str(before), timeout=T)
    after_wheel = slice_k(page)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(frame(page).locator("#slices")).to_have_attribute("data-k", str(after_wheel - 2), timeout=T)
    assert re.match(r"Axial \d+/24 · Coronal \d+/128 · Sagittal \d+/128", frame(page).locator("#slices").inner_text())


def test_drag_changes_the_level_and_keys_set_presets(viewer_page: Page):
    """Test that a study the PE model assessed (a CTPA) opens in the CTPA window, that a left-drag over the
    image changes window/level and that keys 1 and 2 set the lung and mediastinal windows."""
    page = viewer_page
    wl = frame(page).locator("#wl")
    expect(wl).to_have_text("W 700 L 100", timeout=T)
    x, y = axial_point(page)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 60, steps=8)
    page.mouse.up()
    expect(wl).not_to_have_text("W 700 L 100", timeout=T)
    assert wl.get_attribute("data-level") != "100"
    page.mouse.move(x, y)
    page.keyboard.press("1")
    expect(wl).to_have_text("W 1500 L -600", timeout=T)
    page.keyboard.press("2")
    expect(wl).to_have_text("W 400 L 40", timeout=T)


def test_caliper_reports_mm(viewer_page: Page):
    """Test that the caliper (key M, then drag) reports the distance in mm between the voxels under its ends."""
    page = viewer_page
    f = frame(page)
    x0, y = axial_point(page, 0.15, 0.5)
    x1, _ = axial_point(page, 0.4, 0.5)
    ends = []
    for x in (x0, x1):  # the HU probe names the voxel under the pointer
        page.mouse.move(x, y)
        expect(f.locator("#probe")).to_contain_text("HU", timeout=T)
        k, j, i = map(int, re.search(r"k (\d+), j (\d+), i (\d+)", f.locator("#probe").inner_text()).groups())
        ends.append((k, j, i))
    page.mouse.move(x0, y)
    page.keyboard.press("m")
    expect(f.locator("#tool-measure")).to_have_class("on", timeout=T)
    page.mouse.down()
    page.mouse.move(x1, y, steps=10)
    page.mouse.up()
    expect(f.locator("#measure")).to_contain_text("mm", timeout=T)
    mm = float(f.locator("#measure").get_attribute("data-mm"))
    expected = abs(ends[1][2] - ends[0][2]) * SPACING[2]  # same row: the distance along i
    assert ends[0][:2] == ends[1][:2] and expected > 10
    assert abs(mm - expected) <= 2 * SPACING[2], (mm, expected)
    page.keyboard.press("w")  # back to window/level


def test_click_on_the_image_adds_a_missed_finding(viewer_page: Page, server: Server):
    """Test that a click (no drag) on the axial image marks that voxel and the form adds it as a finding."""
    page = viewer_page
    x, y = axial_point(page, 0.25, 0.4)
    page.mouse.click(x, y)
    form = page.locator(".st-key-add_finding")
    expect(form).to_contain_text("Add a missed finding", timeout=T)
    k = slice_k(page)
    marked = re.search(r"voxel \((\d+), (\d+), (\d+)\)", form.inner_text())
    assert marked and int(marked.group(1)) == k
    form.get_by_role("button", name="Add").click()
    expect(page.get_by_text("Finding added")).to_be_visible(timeout=T)
    page.screenshot(path=str(ARTIFACTS / "viewer-1920.png"), timeout=T)
    with Session(create_db_engine(server.db_url()), expire_on_commit=False) as s:
        added = queries.list_reader_findings(session=s, study_id=server.ids["routine"])
    assert len(added) == 1 and added[0].center_k == k and added[0].reader == "reader1"
