"""The viewer's data side: NIfTI bytes with the right geometry (LPS → RAS), the inverse matrix the browser
uses, clicks turned into voxels, the keyboard map's press handling, and the report draft."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from dashboard import report
from dashboard.components import keys, volume_viewer
from inference.volume import Volume


def volume() -> Volume:
    hu = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (k, j, i)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, 0.96, -0.28], [0.0, 0.28, 0.96]])  # a tilted gantry
    return Volume(hu=hu, spacing_mm=(2.5, 0.8, 0.7), origin_mm=(-10.0, -20.0, -30.0), direction=tilt)


def test_nifti_has_the_volume_values_and_ras_geometry():
    """Test that voxel (i, j, k) of the NIfTI holds hu[k, j, i] and sits at the LPS point with x, y negated."""
    vol = volume()
    img = nib.Nifti1Image.from_bytes(volume_viewer.nifti_bytes(vol, window=(-600, 1500)))
    data = np.asarray(img.dataobj)
    assert data.shape == (6, 5, 4) and data[3, 2, 1] == vol.hu[1, 2, 3]
    ras = img.affine @ np.array([3, 2, 1, 1.0])
    lps = vol.voxel_to_patient(np.array([1, 2, 3]))
    assert ras[:3] == pytest.approx([-lps[0], -lps[1], lps[2]])
    assert (img.header["cal_min"], img.header["cal_max"]) == (-1350, 150)
    mask = np.zeros(vol.shape, np.uint8)
    mask[1, 2, 3] = 1
    packed = volume_viewer.nifti_bytes(vol, mask, compress=True, slope=1 / 255)
    back = nib.Nifti1Image.from_bytes(gzip.decompress(packed))
    assert back.dataobj.get_unscaled()[3, 2, 1] == 1 and back.dataobj.slope == pytest.approx(1 / 255)


def test_lps_to_ijk_inverts_the_affine_and_clicks_become_voxels():
    """Test the matrix the browser uses for the probe, and that a reported LPS click maps back to (k, j, i)."""
    vol = volume()
    m = np.asarray(volume_viewer.lps_to_ijk(vol))
    lps = vol.voxel_to_patient(np.array([2, 3, 4]))
    assert (m @ np.append(lps, 1.0))[:3] == pytest.approx([4, 3, 2], abs=1e-6)
    seen: dict = {}
    value = {"type": "click", "seq": 1, "at": 5, "lps": list(lps), "plane": "coronal"}
    click = volume_viewer.new_click(value, vol, seen)
    assert click is not None and click.kji == (2, 3, 4) and click.plane == "coronal"
    assert volume_viewer.new_click(value, vol, seen) is None  # the same click is handled once
    assert volume_viewer.new_click({"type": "click", "seq": 2, "lps": "x"}, vol, seen) is None


def test_first_image_is_the_opening_axial_slice_in_the_opening_window():
    """Test that the first image (shown before NiiVue has the study) is axial slice ``k`` windowed like the
    viewer, patient's left on the right (columns along +i for an LPS volume, flipped for a -x one), and that an
    oblique acquisition gets none (the viewer then waits for NiiVue)."""
    hu = np.random.default_rng(0).integers(-1000, 400, (7, 5, 6)).astype(np.int16)
    vol = Volume(hu=hu, spacing_mm=(2.5, 0.8, 0.7), origin_mm=(0.0, 0.0, 0.0))
    k = volume_viewer.first_slice(vol)
    assert k == 3
    png = volume_viewer.first_image_png(vol, k, -600.0, 1500.0)
    assert png is not None
    grey = np.asarray(Image.open(io.BytesIO(png)))
    expected = np.clip((hu[k].astype(np.float32) + 1350.0) * 255.0 / 1500.0, 0, 255).astype(np.uint8)
    assert grey.shape == (5, 6) and np.array_equal(grey, expected)
    flipped = Volume(hu=hu, spacing_mm=(2.5, 0.8, 0.7), origin_mm=(0.0, 0.0, 0.0), direction=np.diag([-1.0, 1, 1]))
    png = volume_viewer.first_image_png(flipped, k, -600.0, 1500.0)
    assert png is not None and np.array_equal(np.asarray(Image.open(io.BytesIO(png))), expected[:, ::-1])
    assert volume_viewer.first_image_png(volume(), 1, -600.0, 1500.0) is None  # the tilted gantry


def test_ctpa_window_and_key_presses():
    """Test the initial window per study type and that a key press counts once."""
    assert volume_viewer.initial_window(True) == ("CTPA", 100.0, 700.0)
    assert volume_viewer.initial_window(False) == ("Lung", -600.0, 1500.0)
    seen: dict = {}
    assert keys.new_press({"key": "j", "seq": 1, "at": 1}, seen) == "j"
    assert keys.new_press({"key": "j", "seq": 1, "at": 1}, seen) is None
    assert keys.new_press({"key": "j", "seq": 2, "at": 2}, seen) == "j"


def test_report_draft_and_contradictions():
    """Test the draft from verdicts (confirmed and added findings only) and what contradicts it."""
    findings = [
        {
            "id": 1,
            "kind": "nodule",
            "texture": "solid",
            "diameter_mm": 27.0,
            "location": "right upper zone",
            "lung_rads": "4B",
        },
        {"id": 2, "kind": "embolism", "diameter_mm": None, "location": "lobar, left", "lung_rads": None},
        {"id": 3, "kind": "nodule", "texture": "solid", "diameter_mm": 5.0, "lung_rads": "2"},
    ]
    d = report.draft(findings, {1: "confirmed", 2: "rejected", 3: "rejected"})
    assert (d.nodule, d.embolism, d.lung_rads) == (True, False, "4B")
    assert d.impression == "Solid nodule, 27 mm, right upper zone, Lung-RADS 4B."
    found = report.contradictions(d, nodule=False, embolism=False, lung_rads=None)
    assert len(found) == 1 and "Nodule is “no”" in found[0]
    assert "Lung-RADS is “none”" in report.contradictions(d, nodule=True, embolism=False, lung_rads="")[0]
    assert report.contradictions(d, nodule=True, embolism=False, lung_rads="4B") == []
    added = report.draft(findings, {}, [{"kind": "embolism", "diameter_mm": None, "note": "segmental RLL"}])
    assert (
        added.embolism
        and not added.nodule
        and added.impression == "Pulmonary embolism (segmental RLL) [added by reader]."
    )
