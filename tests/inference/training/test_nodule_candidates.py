"""Test of the classifier data mined through the serving path (``inference.training.nodule.candidates``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.training.nodule.candidates import _mine_one
from inference.training.nodule.config import NoduleConfig

MODELS = Path(__file__).resolve().parents[3] / "assets" / "models"


def test_mined_study_gives_serving_candidates_with_truth_and_true_nodule_patches():
    """Test that one mined study yields classifier-size patches of the served candidates labelled against the
    study's truth, plus two jittered positives per true nodule of >= 4 mm, centred on the nodule."""
    from inference.training.nodule import data as D

    cfg = NoduleConfig().quick()
    cfg.n_train_studies = 0
    x, y, line = _mine_one((cfg.to_dict(), "synthetic", 1, str(MODELS)))
    case = D.synthetic_case("train", 1, lesions="nodule", size=cfg.study_size)
    big = [les for les in case.lesions if float(les.get("diameter_mm") or 0) >= 4.0]
    assert big and x.shape[1:] == tuple(cfg.cls_patch) and len(x) == len(y)
    n_cand = int(line.split(": ")[1].split(" candidates")[0])
    assert len(y) == n_cand + 2 * len(big)
    assert y[n_cand:].all()  # the true-nodule patches
    c = np.asarray(cfg.cls_patch) // 2
    for k, les in enumerate(big):  # two patches per nodule, in order; solid tissue (HU > -370) at the centre
        if les["type"] == "ground-glass":
            continue
        for patch in x[n_cand + 2 * k : n_cand + 2 * k + 2].astype(np.float32):
            assert patch[c[0] - 2 : c[0] + 3, c[1] - 2 : c[1] + 3, c[2] - 2 : c[2] + 3].max() > 0.45
