"""Tissue HU ranges and anatomical plausibility of the procedural chest."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi


def _patch(study, xyz_body, r=1):
    """Mean HU of a small neighbourhood around a body-frame point."""
    shift = np.asarray(study.extra["body_to_patient_mm"])
    k, j, i = np.round(study.volume.patient_to_voxel(np.asarray(xyz_body) + shift)).astype(int)
    return float(study.volume.hu[k - r : k + r + 1, j - r : j + r + 1, i - r : i + r + 1].mean())


@pytest.mark.parametrize("fixture", ["ctpa_study", "plain_study"])
def test_tissue_hu_ranges(fixture, request):
    """Test that lung, fat, muscle and bone have realistic HU at known anatomical points."""
    s = request.getfixturevalue(fixture)
    p = s.extra["patient"]
    hu, lung = s.volume.hu, s.lung
    parenchyma = hu[lung & (hu < -600)]
    assert -900 <= np.median(parenchyma) <= -700
    z = -50.0  # mid chest, below the carina
    fat = _patch(s, (p.body_a - 2.5 - p.fat / 2, 0.0, z))
    assert -120 <= fat <= -60, fat
    # lateral chest wall muscle, just inside the fat, outside the ribs (median over levels)
    x_m = p.body_a - 2.5 - 1.35 * p.fat - 2.0
    muscle = np.median([_patch(s, (x_m, -5.0, zz), r=0) for zz in np.arange(-90.0, 10.0, 2.5)])
    assert 20 <= muscle <= 80, muscle
    # bone: the vertebral column has cortical bone > 300 HU on every level
    spine_y = p.body_b - 0.6 * p.fat - 58.0 * p.scale
    shift = np.asarray(s.extra["body_to_patient_mm"])
    k, j, i = np.round(s.volume.patient_to_voxel(np.array([0.0, spine_y, z]) + shift)).astype(int)
    column = hu[k - 10 : k + 10, j - 8 : j + 9, i - 8 : i + 9]
    assert column.max() > 300
    assert (hu > 300).sum() > 0.002 * hu.size  # ribs, sternum, spine, scapulae


def test_pulmonary_arteries_opacified_in_ctpa_only(ctpa_study, plain_study):
    """Test that pulmonary arteries are 250..500 HU in CTPA and blood density without contrast."""
    for s, lo, hi in ((ctpa_study, 250, 500), (plain_study, 25, 65)):
        core = ndi.binary_erosion(s.arteries, iterations=2) & (s.labels == 0)
        assert core.sum() > 200
        assert lo <= np.median(s.volume.hu[core]) <= hi


def test_lungs_airways_and_body_in_place(ctpa_study):
    """Test that both lungs exist left and right of the midline, with air in the trachea and outside."""
    s = ctpa_study
    vol = s.volume
    xyz = vol.voxel_to_patient(np.argwhere(s.lung[::4, ::4, ::4]) * 4.0)
    assert (xyz[:, 0] < -20).sum() > 100 and (xyz[:, 0] > 20).sum() > 100
    assert 0.05 < s.lung.mean() < 0.45
    assert np.median(vol.hu[:, :3, :3]) < -900  # air in the FOV corners
    shift = np.asarray(s.extra["body_to_patient_mm"])
    k, j, i = np.round(vol.patient_to_voxel(np.array([0.0, 12.0, 40.0]) + shift)).astype(int)
    assert vol.hu[k, j - 1 : j + 2, i - 1 : i + 2].mean() < -700  # tracheal lumen above the carina
