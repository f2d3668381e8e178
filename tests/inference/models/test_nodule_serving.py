"""Tests of the torch-free nodule serving path with the committed models (assets/models)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.engine import Engine
from inference.model_card import ModelCard, sha256_file
from inference.models import nodule_prep as P
from inference.models.nodule import detect_nodules
from inference.synth.study import LesionRequest, generate_study
from inference.volume import Volume

MODELS = Path(__file__).resolve().parents[3] / "assets" / "models"
NAMES = ("nodule_seg", "nodule_cls", "nodule_seg_student")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(MODELS, ["CPUExecutionProvider"], threads=2)


@pytest.mark.parametrize("name", NAMES)
def test_card_sha256_matches_committed_onnx(name):
    """Test that each committed nodule card's sha256 is the sha256 of its committed ONNX file."""
    card = ModelCard.load(MODELS / f"{name}.json")
    assert card.onnx_path.stat().st_size < 5_000_000
    assert sha256_file(card.onnx_path) == card.sha256
    assert card.preprocessing.spacing_mm and card.preprocessing.hu_window
    assert card.opset >= 17


def test_calibration_is_fitted_and_reported():
    """Test that the classifier card carries the fitted calibration (classifier + segmentation logits) with ECE
    before/after, and that its report threshold is the validation operating point recorded with it."""
    card = ModelCard.load(MODELS / "nodule_cls.json")
    cal = card.calibration
    assert cal.method == "logistic" and {"w_cls", "w_seg", "b"} <= set(cal.params)
    assert cal.ece_before is not None and cal.ece_after is not None and cal.ece_after < cal.ece_before
    report = cal.model_extra["report_threshold"] if cal.model_extra else None
    assert report and card.thresholds["report"] == report["value"] and 0 < report["value"] < 1


def test_resample_keeps_voxel_zero_and_spacing():
    """Test that resampling aligns voxel-0 centres and maps an impulse to the expected model voxel."""
    arr = np.zeros((20, 30, 30), np.float32)
    arr[10, 12, 18] = 1000.0
    out = P.resample(arr, (2.5, 0.7, 0.7), (1.25, 1.4, 1.4), order=1)
    assert out.shape == P.model_shape(arr.shape, (2.5, 0.7, 0.7), (1.25, 1.4, 1.4)) == (39, 15, 15)
    k, j, i = np.unravel_index(np.argmax(out), out.shape)
    assert (k, j, i) == (20, 6, 9)


def test_lung_mask_on_real_lidc(shared_data):
    """Test that the lung mask of a real LIDC stack covers the lungs but not outside air or the body wall."""
    from inference.dicom import read_volume

    v = read_volume(shared_data / "lidc-idri-slices" / "LIDC-IDRI-0003")
    m = P.lung_mask(v)
    ml = m.sum() * np.prod(v.spacing_mm) / 1000
    assert 100 < ml < 2000
    assert not m[:, :5, :].any() and not m[:, :, :5].any()  # outside air at the border
    assert (v.hu[m] < -300).mean() > 0.8


def _study(lesions):
    return generate_study(4242, profile="siemens_flash_b30f", contrast="none", size=None, shape=(56, 160, 160),
                          spacing=(2.0, 2.2, 2.2), lesions=lesions, mimics=False)


@pytest.fixture(scope="module")
def nodule_case(engine):
    s = _study([LesionRequest("nodule", texture="solid", morphology="round", location="isolated", diameter_mm=12)])
    return s, detect_nodules(s.volume, engine)


def _nearest(s, r):
    truth = np.asarray(s.lesions[0]["center_mm"])
    best = min(r.candidates, key=lambda c: np.linalg.norm(np.asarray(c.center_mm) - truth))
    return best, float(np.linalg.norm(np.asarray(best.center_mm) - truth))


def test_finds_a_synthetic_nodule_at_the_right_place(nodule_case):
    """Test that the committed models put a candidate within 5 mm of a 12 mm solid nodule's centre, measure it
    plausibly, and return the label volume and heatmap on the original grid."""
    s, r = nodule_case
    assert r.candidates, "no candidate found"
    best, dist = _nearest(s, r)
    assert dist < 5.0
    assert best.seg_max >= 0.5
    assert 8.0 < best.diameter_mm < 18.0 and best.texture == "solid"
    assert r.mask.shape == s.volume.shape and r.heatmap.shape == s.volume.shape and r.heatmap.dtype == np.uint8
    assert (r.mask == best.label).sum() == best.n_voxels
    assert np.allclose(s.volume.voxel_to_patient(best.center_voxel), best.center_mm, atol=2.5)
    k, j, i = best.center_voxel
    assert r.heatmap[k, j, i] >= 128  # the explanation is hot on the nodule


def test_clean_study_scores_low(engine):
    """Test that no candidate of a nodule-free synthetic study is called more likely a nodule than not (< 0.5).
    (The report threshold is the 1-FP-per-scan operating point, so a few low candidates may pass it.)"""
    clean = detect_nodules(_study("none").volume, engine, maps=False)
    assert clean.score < 0.5


def test_nodule_is_the_most_probable_candidate(nodule_case):
    """Test that the nodule is the top candidate with calibrated probability >= 0.5 and its volume within 40%."""
    s, r = nodule_case
    best, _ = _nearest(s, r)
    assert best is r.candidates[0] and best.probability >= 0.5
    assert abs(best.volume_ml - s.lesions[0]["volume_ml"]) < 0.4 * s.lesions[0]["volume_ml"]


def test_serving_module_does_not_import_torch():
    """Test that importing and using the serving nodule module leaves torch out of sys.modules."""
    code = ("import sys, inference.models.nodule as n, inference.models.nodule_prep; "
            "assert 'torch' not in sys.modules and 'monai' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]


def test_volume_geometry_respected_for_flipped_direction(engine):
    """Test that a nodule's LPS centre is reported correctly when the rows run anterior (flipped direction)."""
    s = _study([LesionRequest("nodule", texture="solid", morphology="round", location="isolated", diameter_mm=12)])
    v = s.volume
    flipped = Volume(hu=v.hu[:, ::-1].copy(), spacing_mm=v.spacing_mm,
                     origin_mm=tuple(v.voxel_to_patient((0, v.shape[1] - 1, 0))),
                     direction=v.direction @ np.diag([1.0, -1.0, 1.0]))
    r = detect_nodules(flipped, engine, maps=False)
    truth = np.asarray(s.lesions[0]["center_mm"])
    assert r.candidates and min(np.linalg.norm(np.asarray(c.center_mm) - truth) for c in r.candidates) < 5.0
