"""Tests of the PE metric code (AUC, ECE, Platt scaling, thresholds, pointing game) on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training.pe import metrics


def test_auc_on_known_orderings():
    """Test that AUC is 1 for perfect ranking, 0 for reversed, 0.5 for all ties, and counts ties as half."""
    y = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert metrics.roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert metrics.roc_auc(y, np.full(4, 0.3)) == 0.5
    # one positive tied with one negative, the other positive above both: (1 + 1 + 0.5 + 1) / 4
    assert metrics.roc_auc(y, np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(0.875)
    assert np.isnan(metrics.roc_auc(np.ones(3), np.arange(3)))


def test_ece_on_known_inputs():
    """Test that ECE is 0 for perfectly calibrated bins and |accuracy - confidence| otherwise."""
    assert metrics.ece(np.array([1, 0, 0, 0, 0]), np.full(5, 0.2)) == pytest.approx(0.0)
    assert metrics.ece(np.array([1] * 5 + [0] * 5), np.full(10, 0.9)) == pytest.approx(0.4)
    # two bins, each half of the data: |1 - 0.75| and |0 - 0.15|
    y = np.array([1, 1, 0, 0])
    p = np.array([0.75, 0.75, 0.15, 0.15])
    assert metrics.ece(y, p) == pytest.approx(0.5 * 0.25 + 0.5 * 0.15)


def test_platt_recovers_known_parameters_and_lowers_ece():
    """Test that Platt scaling recovers (a, b) of data drawn from sigmoid(a z + b) and reduces the ECE."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 4000)
    y = rng.random(4000) < metrics.sigmoid(0.5 * z - 1.0)
    a, b = metrics.fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.08) and b == pytest.approx(-1.0, abs=0.15)
    assert metrics.ece(y, metrics.sigmoid(a * z + b)) < 0.5 * metrics.ece(y, metrics.sigmoid(z))


def test_threshold_at_specificity_and_sens_spec():
    """Test that the chosen threshold gives at least the asked specificity, and sens/spec are counted right."""
    y = np.array([0] * 10 + [1] * 4)
    p = np.r_[np.linspace(0.0, 0.9, 10), [0.5, 0.85, 0.95, 0.99]]
    t = metrics.threshold_at_specificity(y, p, 0.9)
    sens, spec = metrics.sens_spec(y, p, t)
    assert spec >= 0.9 and spec == pytest.approx(0.9)
    assert 0.8 < t < 0.85  # just above the 9th of 10 negatives (0.8)
    assert sens == pytest.approx(0.75)  # 0.85, 0.95, 0.99 above; 0.5 below
    assert metrics.sens_spec(y, p, 0.0) == (1.0, 0.0)


def test_pointing_hit_strict_and_tolerant():
    """Test that the pointing game hits only inside the lesion, or within the stated tolerance."""
    m = np.zeros((10, 10, 10), bool)
    m[4:6, 4:6, 4:6] = True
    assert metrics.pointing_hit((5, 5, 5), m)
    assert not metrics.pointing_hit((5, 5, 7), m)
    assert metrics.pointing_hit((5, 5, 7), m, tolerance_vox=2)
    assert not metrics.pointing_hit((0, 0, 0), m, tolerance_vox=2)
