"""Tests of the Volume type's voxel <-> patient (LPS mm) transforms."""

from __future__ import annotations

import numpy as np
import pytest

from inference.volume import Volume


def _rotation(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def test_voxel_to_patient_follows_spacing_origin_and_axis_order():
    """Test that (k, j, i) maps to origin + i*sx along x, j*sy along y, k*sz along z."""
    v = Volume(np.zeros((4, 5, 6), np.int16), spacing_mm=(2.5, 0.7, 0.6), origin_mm=(-100, -50, 20))
    np.testing.assert_allclose(v.voxel_to_patient((0, 0, 0)), [-100, -50, 20])
    np.testing.assert_allclose(v.voxel_to_patient((3, 4, 5)), [-100 + 5 * 0.6, -50 + 4 * 0.7, 20 + 3 * 2.5])


@pytest.mark.parametrize("deg", [0.0, 17.0, 90.0])
def test_round_trip_with_rotated_direction(deg):
    """Test that patient_to_voxel inverts voxel_to_patient for rotated directions, for single and many points."""
    v = Volume(np.zeros((3, 3, 3), np.int16), (1.25, 0.8, 0.9), (10, 20, 30), direction=_rotation(deg))
    pts = np.random.default_rng(1).uniform(-5, 50, (20, 3))
    np.testing.assert_allclose(v.patient_to_voxel(v.voxel_to_patient(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(v.patient_to_voxel(v.voxel_to_patient(pts[0])), pts[0], atol=1e-9)


def test_rejects_bad_shapes_and_spacing():
    """Test that a 2-D array or non-positive spacing is refused."""
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3), np.int16), (1, 1, 1))
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3, 3), np.int16), (0, 1, 1))
