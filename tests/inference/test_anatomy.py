"""Anatomy of findings on hand-built masks: lung zones by side and height, PE level / side / region volume."""

from __future__ import annotations

import numpy as np
import pytest

from inference import anatomy
from inference.results import Finding
from inference.volume import Volume


def two_lungs(shape=(100, 40, 60)) -> np.ndarray:
    """Two box lungs (i 5..24 and 35..54), slices 10..89 (80 slices)."""
    lung = np.zeros(shape, bool)
    lung[10:90, 5:35, 5:25] = True
    lung[10:90, 5:35, 35:55] = True
    return lung


@pytest.mark.parametrize(
    ("point", "label"),
    [
        ((85, 20, 10), "right upper zone"),  # LPS: low i is the patient's right, high k is superior
        ((50, 20, 10), "right middle zone"),
        ((12, 20, 50), "left lower zone"),
        ((75, 20, 45), "left upper zone"),
    ],
)
def test_lung_zone_by_side_and_thirds_of_height(point, label):
    """Test that the zone is the side against the lungs' midline and the third of that lung's height."""
    zone = anatomy.lung_zone(point, two_lungs(), (2.5, 1.0, 1.0))
    assert zone is not None and zone.label == label


def test_lung_zone_follows_the_direction_matrix_and_coverage():
    """Test that flipped axes flip side and height, and that a short lung gives only the side."""
    flipped = np.diag([-1.0, 1.0, -1.0])  # i to the patient's right, slices stacked downwards
    zone = anatomy.lung_zone((85, 20, 10), two_lungs(), (2.5, 1.0, 1.0), flipped)
    assert zone.label == "left lower zone"
    short = anatomy.lung_zone((85, 20, 10), two_lungs(), (1.0, 1.0, 1.0))  # 80 mm of lung: partial coverage
    assert short.zone is None and short.label == "right lung (zone unknown: partial coverage)"
    assert anatomy.lung_zone((1, 1, 1), np.zeros((4, 4, 4), bool), (1, 1, 1)) is None


def test_pe_extent_level_side_and_burden():
    """Test the most proximal level (most medial voxel), bilateral side and region volume in ml."""
    hu = np.full((20, 50, 200), -1000, np.int16)
    hu[:, 5:45, 20:180] = 40  # body from i=20 to 179: midline at i=99.5 → x = 99.5 mm
    vol = Volume(hu=hu, spacing_mm=(2.0, 1.0, 1.0))
    mask = np.zeros(hu.shape, np.uint8)
    mask[8:10, 20:25, 40:45] = 1  # right, 55..60 mm from the midline: lobar
    mask[8:10, 20:25, 170:175] = 1  # left, 70..75 mm: lobar
    out = anatomy.pe_extent(mask, vol)
    assert out["level"] == "lobar" and out["side"] == "bilateral" and out["components"] == 2
    assert out["burden_ml"] == pytest.approx(2 * 2 * 5 * 5 * 2.0 / 1000)
    mask[8:10, 20:25, 105:110] = 1  # 5..10 mm left of the midline: main
    assert anatomy.pe_extent(mask, vol)["level"] == "main"
    assert anatomy.pe_level(120.0) == "subsegmental" and anatomy.pe_extent(np.zeros_like(mask), vol) is None


def test_annotate_sets_locations_of_findings():
    """Test that annotate gives nodules their zone (by model-grid point) and PE its extent."""
    hu = np.full((100, 40, 60), -1000, np.int16)
    hu[:, :, 2:58] = 40
    vol = Volume(hu=hu, spacing_mm=(2.5, 1.0, 1.0))
    origin = (0.0, 0.0, 0.0)
    nod = Finding(kind="nodule", probability=0.8, center_mm=origin, center_voxel=(85, 20, 10), label=1)
    other = Finding(
        kind="nodule", probability=0.5, center_mm=origin, center_voxel=(85, 20, 10), label=2, location="RUL"
    )
    pe = Finding(kind="embolism", probability=0.9, center_mm=origin, center_voxel=(50, 20, 30))
    mask = np.zeros(hu.shape, np.uint8)
    mask[50, 20, 29:31] = 1
    anatomy.annotate(
        [nod, other, pe],
        vol,
        lung=two_lungs(),
        lung_spacing=(2.5, 1.0, 1.0),
        model_points={1: (85.0, 20.0, 10.0)},
        pe_mask=mask,
    )
    assert nod.location == "right upper zone" and nod.extra["anatomy"]["side"] == "right"
    assert other.location == "RUL"  # no point on the lung grid: left as it was
    assert pe.location.startswith("main, ") and pe.extra["anatomy"]["burden_ml"] == pytest.approx(0.005)
