"""Tests of the candidates' geometric features (``inference.models.nodule_features``) and their use in the
served calibration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from inference.models.nodule import calibrate, seg_logit
from inference.models.nodule_features import FEATURES, candidate_features, feature_term, uses_features


def _shape(kind: str, radius_mm: float = 4.0) -> np.ndarray:
    """A bright structure (50 HU) in lung (-850 HU) on a 2 mm grid, centred at voxel (20, 20, 20)."""
    z, y, x = np.mgrid[:40, :40, :40] * 2.0 - 40.0
    inside = {"ball": z**2 + y**2 + x**2, "tube": y**2 + x**2, "plate": z**2}[kind] <= radius_mm**2
    return ndi.gaussian_filter(np.where(inside, 50.0, -850.0), 0.7)


def test_ball_is_a_blob_tube_is_a_tube_plate_is_neither():
    """Test that a sphere scores blob ~1, a cylinder tube ~1 (blob ~0), a slab neither, at a scale near the
    structure's radius."""
    c = [np.array([20.0, 20.0, 20.0])]
    ball, tube, plate = (dict(zip(FEATURES, candidate_features(_shape(k), c, (2.0, 2.0, 2.0))[0]))
                         for k in ("ball", "tube", "plate"))
    assert ball["blob"] > 0.8 and ball["tube"] < 0.2
    assert tube["tube"] > 0.8 and tube["blob"] < 0.2
    assert plate["blob"] < 0.2 and plate["tube"] < 0.2
    assert 2.0 <= ball["scale_mm"] <= 4.5 and ball["strength"] > 50


def test_dark_background_has_no_bright_structure():
    """Test that a uniform lung patch gives zero blob/tube/strength."""
    f = candidate_features(np.full((30, 30, 30), -850.0), [np.array([15.0, 15.0, 15.0])], (2.0, 2.0, 2.0))
    assert f[0, FEATURES.index("blob")] == 0 and f[0, FEATURES.index("strength")] == pytest.approx(0, abs=1e-3)


def test_served_calibration_adds_the_standardised_feature_term():
    """Test that a card calibration with feature weights adds ``w * (x - center) / scale`` to the logistic
    logit, and that serving refuses to calibrate without the features it weights."""
    params = {"w_cls": 1.0, "w_seg": 0.5, "b": -2.0, "features": {"blob": 3.0, "tube": -1.0},
              "feature_center": {"blob": 0.2, "tube": 0.5}, "feature_scale": {"blob": 0.25, "tube": 0.2}}
    cal = {"method": "logistic", "params": params}
    z, seg = np.array([0.5, -1.0]), np.array([0.9, 0.6])
    f = np.array([[0.7, 0.1, 3.0, 100.0], [0.0, 0.9, 2.0, 80.0]])
    expect = 1.0 * z + 0.5 * seg_logit(seg) - 2.0 + 3.0 * (f[:, 0] - 0.2) / 0.25 - 1.0 * (f[:, 1] - 0.5) / 0.2
    assert uses_features(cal) and not uses_features({"params": {"w_cls": 1.0}})
    assert np.allclose(feature_term(params, f), expect - (z + 0.5 * seg_logit(seg) - 2.0))
    assert np.allclose(calibrate(z, cal, seg, f), 1 / (1 + np.exp(-expect)))
    with pytest.raises(ValueError, match="features"):
        calibrate(z, cal, seg)
