"""Tests of the follow-up volumetry on blurred, noisy spheres of known volume."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from inference.volume import Volume
from inference.volumetry import measure_nodule, measure_pair


def sphere_volume(d: float, *, shift=(0.0, 0.0, 0.0), core_hu: float = 30.0, seed: int = 0,
                  spacing=(2.5, 0.7, 0.7), noise: float = 25.0) -> Volume:
    """A lung-like background with one sphere (diameter ``d`` mm, slice profile + in-plane blur, noise)."""
    rng = np.random.default_rng(seed)
    shape = (24, 80, 80)
    axes = [(np.arange(n) - n / 2) * s for n, s in zip(shape, spacing)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    occ = np.zeros(shape)
    for dz in np.linspace(-spacing[0] / 2, spacing[0] / 2, 5):
        occ += np.sqrt((zz + dz - shift[0]) ** 2 + (yy - shift[1]) ** 2 + (xx - shift[2]) ** 2) <= d / 2
    occ = ndi.gaussian_filter(occ / 5, (0, 0.8, 0.8))
    hu = -850 + occ * (core_hu + 850) + rng.normal(0, noise, shape)
    origin = tuple(-(np.array(shape) / 2 * np.array(spacing))[::-1])
    return Volume(hu=hu.astype(np.int16), spacing_mm=spacing, origin_mm=origin)


@pytest.mark.parametrize("d", [5.0, 8.0, 12.0])
def test_sphere_volume_within_ten_percent(d):
    """Test that a blurred, noisy sphere on 2.5 mm slices is measured within 10 % of its true volume."""
    m = measure_nodule(sphere_volume(d), (0.0, 0.0, 0.0), d)
    true = np.pi / 6 * d**3
    assert m.ok
    assert abs(m.volume_mm3 / true - 1) < 0.10
    assert abs(m.diameter_mm - d) < 0.5
    assert 0 < m.sigma_mm3 < 0.5 * m.volume_mm3


def test_measure_pair_recovers_growth_ratio():
    """Test that a 6 → 8 mm sphere measured on two scans (other noise, shifted centre) gives the true ratio."""
    prior = sphere_volume(6.0, seed=1)
    current = sphere_volume(8.0, shift=(0.6, -0.4, 0.3), seed=2)
    mc, mp = measure_pair(current, (0.3, -0.4, 0.6), prior, (0.0, 0.0, 0.0), 7.0)
    ratio = mc.volume_mm3 / mp.volume_mm3
    assert abs(ratio / (8.0 / 6.0) ** 3 - 1) < 0.12
    assert mc.threshold_hu == mp.threshold_hu


def test_no_nodule_is_not_measured():
    """Test that a seed on plain lung background reports no measurement instead of a volume."""
    vol = sphere_volume(6.0)
    m = measure_nodule(vol, (20.0, 20.0, 0.0), 6.0)
    assert not m.ok and m.volume_mm3 == 0.0


def test_ball_opening_is_the_morphological_opening_by_the_voxel_ball():
    """Test that the distance-transform opening keeps exactly the voxels of scipy's opening by ``_ball(r)``
    (outside the array counting as background), on random blobs touching the array border, for r = 1..6."""
    from inference.volumetry import _ball, ball_opening

    rng = np.random.default_rng(1)
    for _ in range(25):
        shape = tuple(int(n) for n in rng.integers(8, 36, 3))
        mask = ndi.gaussian_filter(rng.random(shape), 2.0) > 0.5 + rng.normal(0, 0.02)
        r = int(rng.integers(1, 7))
        assert np.array_equal(ball_opening(mask, r), ndi.binary_opening(mask, structure=_ball(r)))
    assert not ball_opening(np.ones((5, 5, 5), bool), 3).any()  # nothing survives a ball wider than the mask
