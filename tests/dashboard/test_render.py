"""Test the pure-numpy rendering helpers of the review viewer (dashboard/components/render.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard.components import render
from inference.volume import Volume
from tests.factories import make_volume


def test_window_level_maps_window_edges_to_black_and_white():
    """Test that the window's lower edge is 0, its upper edge 255 and the level mid-grey."""
    hu = np.array([-1350, -600, 150, 2000])
    out = render.window_level(hu, level=-600, width=1500)
    assert out.dtype == np.uint8
    assert out.tolist()[0] == 0 and out.tolist()[2] == 255 and out.tolist()[3] == 255
    assert abs(int(out[1]) - 127) <= 1


def test_presets_are_the_documented_windows():
    """Test that the lung, mediastinum and CTPA presets have the agreed level/width."""
    assert render.WINDOW_PRESETS == {"Lung": (-600, 1500), "Mediastinum": (40, 400), "CTPA": (100, 700)}


def test_reformat_keeps_physical_aspect():
    """Test that a coronal image of 2.5 mm slices is stretched to square pixels using the spacing."""
    vol = make_volume(shape=(20, 64, 80), spacing=(2.5, 0.5, 0.5))
    rgb = render.render_plane(vol, "coronal", 10, level=40, width=400, max_px=200)
    h_mm, w_mm = 20 * 2.5, 80 * 0.5
    assert rgb.shape[2] == 3
    assert rgb.shape[0] / rgb.shape[1] == pytest.approx(h_mm / w_mm, rel=0.02)
    axial = render.render_plane(vol, "axial", 3, level=40, width=400, max_px=200)
    assert axial.shape[:2] == (160, 200)  # 32 mm x 40 mm


def test_planes_show_the_right_voxels_and_superior_is_up():
    """Test that each plane samples its own index and reformats put the highest slice (head) on top."""
    vol = make_volume(shape=(12, 48, 40), spacing=(2.0, 0.75, 0.7))
    fingerprint = vol.hu[:, 0, 0]  # HU = 10 * k
    cor = render.extract_plane(vol.hu, "coronal", 0)
    assert cor.shape == (12, 40) and (cor[:, 0] == fingerprint).all()
    grid = render.display_grid("coronal", vol.shape, vol.spacing_mm, vol.direction, max_px=64)
    shown = render.resample(cor, grid)
    assert shown[0, 0] == fingerprint[-1] and shown[-1, 0] == fingerprint[0]
    assert render.extract_plane(vol.hu, "sagittal", 5).shape == (12, 48)


def test_click_maps_back_to_the_voxel_and_lps_position():
    """Test that a click on the shown (browser-scaled) image maps to the voxel drawn there and its LPS mm."""
    vol = make_volume(shape=(12, 48, 40), spacing=(2.0, 0.75, 0.7))
    for plane, kji in (("axial", (7, 30, 21)), ("coronal", (9, 30, 5)), ("sagittal", (2, 11, 33))):
        index = kji[render.plane_axes(plane)[0]]
        x, y = render.voxel_to_display(plane, kji, vol, max_px=256)
        h, w = render.display_grid(plane, vol.shape, vol.spacing_mm, vol.direction, max_px=256).shape
        scale = 1.7  # the browser shows the image 1.7x larger than rendered
        got = render.display_to_voxel(
            plane, index, (x + 0.5) * scale, (y + 0.5) * scale, w * scale, h * scale, vol, max_px=256
        )
        assert got == kji
        assert render.voxel_to_lps(vol, got) == pytest.approx(tuple(vol.voxel_to_patient(np.array(kji))), abs=0.01)


def test_overlays_tint_only_their_pixels():
    """Test that the nodule mask tints amber, the PE mask red, the heatmap only above its floor."""
    grey = np.full((4, 4), 100, np.uint8)
    nodule = np.zeros((4, 4), np.uint8)
    nodule[0, 0] = 1
    pe = np.zeros((4, 4), np.uint8)
    pe[1, 1] = 1
    heat = np.zeros((4, 4), np.uint8)
    heat[2, 2] = 255
    out = render.blend(grey, nodule=nodule, pe=pe, heat=heat, heat_opacity=1.0)
    assert tuple(out[3, 3]) == (100, 100, 100)
    assert out[0, 0, 0] > out[0, 0, 2]  # amber: red > blue
    assert out[1, 1, 0] > 150 and out[1, 1, 1] < 100
    assert tuple(out[2, 2]) != (100, 100, 100)
    assert tuple(render.blend(grey, heat=heat, heat_opacity=0.0)[2, 2]) == (100, 100, 100)


def test_coverage_warning_for_a_short_series():
    """Test that a series shorter than a full chest gets a partial-coverage warning, a full one none."""
    short = make_volume(shape=(12, 8, 8), spacing=(2.0, 1.0, 1.0))
    assert "Partial coverage" in render.coverage_warnings(short, 200.0)[0]
    full = Volume(
        hu=np.zeros((120, 4, 4), np.int16),
        spacing_mm=(2.0, 1.0, 1.0),
        warnings=[{"code": "gap", "message": "one slice gap"}],
    )
    assert render.coverage_warnings(full, 200.0) == ["one slice gap"]


@pytest.mark.parametrize("max_px", [512, 30])  # up- and downsampling
def test_rendering_before_resampling_gives_the_same_pixels(max_px):
    """Test that windowing and blending on the plane's grid, then resampling, equals resampling every input
    first (nearest neighbour commutes with per-pixel operations)."""
    vol = make_volume(shape=(20, 64, 80), spacing=(2.5, 0.5, 0.7))
    rng = np.random.default_rng(0)
    nodule = (rng.random(vol.shape) > 0.9).astype(np.uint8)
    pe = (rng.random(vol.shape) > 0.95).astype(np.uint8)
    heat = rng.integers(0, 256, vol.shape, dtype=np.uint8)
    for plane, index in (("axial", 7), ("coronal", 30), ("sagittal", 41)):
        grid = render.display_grid(plane, vol.shape, vol.spacing_mm, vol.direction, max_px=max_px)

        def cut(arr, plane=plane, index=index, grid=grid):
            return render.extract_plane(arr, plane, index)[np.ix_(grid.rows, grid.cols)]

        expected = render.blend(
            render.window_level(cut(vol.hu), -600, 1500), nodule=cut(nodule), pe=cut(pe), heat=cut(heat)
        )
        got = render.render_plane(
            vol, plane, index, level=-600, width=1500, nodule_mask=nodule, pe_mask=pe, heatmap=heat, max_px=max_px
        )
        np.testing.assert_array_equal(got, expected)
