"""Tests of the nodule evaluation metrics on hand-made cases (numpy only, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training.nodule import metrics as M


def test_ece_known_values():
    """Test that ECE is 0 for perfect calibration and equals the known gap otherwise."""
    y = np.array([1, 1, 0, 0] * 25)
    assert M.ece(np.full(100, 0.5), y) == pytest.approx(0.0)
    # all predictions 0.9 while half are positive: gap 0.4
    assert M.ece(np.full(100, 0.9), y) == pytest.approx(0.4)
    # two bins: p=0.1 (10% positive) and p=0.8 (50% positive) -> 0.5*0 + 0.5*0.3
    p = np.r_[np.full(50, 0.1), np.full(50, 0.8)]
    yy = np.r_[np.ones(5), np.zeros(45), np.ones(25), np.zeros(25)]
    assert M.ece(p, yy) == pytest.approx(0.15)


def test_platt_recovers_known_parameters_and_lowers_ece():
    """Test that Platt fitting recovers a known logistic map and reduces ECE of miscalibrated scores."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))
    a, b = M.fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)
    before = M.ece(1 / (1 + np.exp(-z)), y)
    after = M.ece(1 / (1 + np.exp(-(a * z + b))), y)
    assert before > 0.1 and after < 0.02


def test_two_feature_logistic_recovers_weights_and_serving_applies_them():
    """Test that the logistic calibration (classifier logit + seg logit) recovers known weights and that the
    serving ``calibrate`` applies the fitted map exactly (and refuses to run without seg_max)."""
    from inference.models.nodule import calibrate, seg_logit

    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, 20000)
    seg = rng.uniform(0.02, 0.98, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-(0.7 * z + 1.5 * seg_logit(seg) - 0.5)))
    w, b = M.fit_logistic(np.stack([z, seg_logit(seg)], 1), y)
    assert w[0] == pytest.approx(0.7, abs=0.07) and w[1] == pytest.approx(1.5, abs=0.12)
    assert b == pytest.approx(-0.5, abs=0.1)
    cal = {"method": "logistic", "params": {"w_cls": w[0], "w_seg": w[1], "b": b}}
    p = calibrate(z[:5], cal, seg[:5])
    assert np.allclose(p, 1 / (1 + np.exp(-(w[0] * z[:5] + w[1] * seg_logit(seg[:5]) + b))))
    with pytest.raises(ValueError, match="segmentation"):
        calibrate(z[:5], cal)


def test_operating_point_at_one_fp_per_scan():
    """Test the 1-FP/scan operating point on a hand-computed ranking: 2 scans allow 2 false positives."""
    score = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    true = [1, 0, 1, 0, 0, 1]  # FPs at 0.8, 0.6 (2 = 1 per scan), the third at 0.5
    assert M.threshold_at_fp(score, true, 2) == (0.6, 4)
    assert M.threshold_at_fp(score, true, 1) == (0.7, 3)
    assert M.threshold_at_fp([0.9, 0.8], [0, 0], 1, fp_per_scan=0.5) == (None, 0)


def test_auc_and_froc_on_hand_made_candidates():
    """Test AUC (ties half) and FROC sensitivities / CPM on a hand-computed example."""
    assert M.auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert M.auc([0.5, 0.5], [1, 0]) == 0.5
    # 2 scans, 3 lesions; candidates by score: TP(l0) FP TP(l1) dup(l1) FP FP
    scores = [0.9, 0.8, 0.7, 0.65, 0.6, 0.5]
    hits = [0, -1, 1, 1, -1, -1]
    fr = M.froc(scores, hits, n_lesions=3, n_scans=2)
    assert fr["sens@0.125"] == pytest.approx(1 / 3)  # before the first FP (0.5 FP/scan)
    assert fr["sens@0.5"] == pytest.approx(2 / 3)
    assert fr["sens@1"] == pytest.approx(2 / 3)
    assert fr["sens@8"] == pytest.approx(2 / 3)  # lesion 2 never found
    assert fr["cpm"] == pytest.approx(np.mean([1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3]))


def test_pointing_game_hit_and_miss():
    """Test that the pointing game counts a peak inside the lesion and rejects one outside."""
    lesion = np.zeros((20, 20, 20), bool)
    lesion[8:12, 8:12, 8:12] = True
    heat = np.zeros(lesion.shape)
    heat[10, 10, 10] = 1.0
    assert M.pointing_hit(heat, lesion)
    heat[2, 2, 2] = 2.0
    assert not M.pointing_hit(heat, lesion)
    heat[:] = 0
    heat[12, 10, 10] = 1.0  # one voxel outside: inside with 1-voxel tolerance only
    assert M.pointing_hit(heat, lesion, tolerance_vox=1) and not M.pointing_hit(heat, lesion, tolerance_vox=0)


def test_dice_and_iou():
    """Test Dice/IoU on overlapping boxes."""
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[:5] = True
    b[2:7] = True
    assert M.dice(a, b) == pytest.approx(0.6)
    assert M.iou(a, b) == pytest.approx(3 / 7)
