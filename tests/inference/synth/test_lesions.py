"""Lesion masks: nodules inside the lungs, emboli inside the arteries, HU and ground-truth records."""

from __future__ import annotations

import numpy as np


def test_nodule_masks_inside_lungs(ctpa_study, plain_study):
    """Test that every nodule voxel lies in the lung mask and each requested nodule was placed."""
    for s in (ctpa_study, plain_study):
        nod = s.labels == 1
        assert nod.sum() > 50
        assert np.all(s.lung[nod])
        kinds = sorted(les["type"] for les in s.lesions if les["kind"] == "nodule")
        assert kinds == ["ground-glass", "part-solid", "solid"]


def test_nodule_hu_depends_on_texture(plain_study):
    """Test that solid nodules are soft-tissue dense and ground-glass ones are not."""
    by_type = {les["type"]: les for les in plain_study.lesions if les["kind"] == "nodule"}
    assert -150 <= by_type["solid"]["mean_hu"] <= 80
    assert -800 <= by_type["ground-glass"]["mean_hu"] <= -300
    assert -750 <= by_type["part-solid"]["mean_hu"] < by_type["solid"]["mean_hu"]
    assert 0.25 <= by_type["part-solid"]["solid_fraction"] <= 0.7 and by_type["ground-glass"]["solid_fraction"] == 0


def test_emboli_inside_arteries_and_dark(ctpa_study):
    """Test that emboli are inside the opacified arteries and are filling defects (10..60 HU range)."""
    s = ctpa_study
    emb = s.labels == 2
    assert emb.sum() > 20
    assert s.arteries[emb].mean() > 0.98
    emboli = [les for les in s.lesions if les["kind"] == "embolism"]
    assert len(emboli) == 3
    assert np.median(s.volume.hu[emb]) < 130  # blurred against 300+ HU contrast, still a clear defect
    opac = s.volume.hu[s.arteries & (s.labels == 0)]
    assert np.median(opac) - np.median(s.volume.hu[emb]) > 150


def test_no_emboli_without_contrast(plain_study):
    """Test that non-contrast studies never receive emboli, even when asked."""
    assert not (plain_study.labels == 2).any()
    assert all(les["kind"] == "nodule" for les in plain_study.lesions)


def test_ground_truth_records(ctpa_study):
    """Test that each lesion has kind, type, centre (mm and voxel), diameter and volume consistent with its mask."""
    s = ctpa_study
    vox_ml = np.prod(s.volume.spacing_mm) / 1000
    for les in s.lesions:
        for key in ("kind", "type", "center_mm", "center_voxel", "diameter_mm", "volume_ml"):
            assert key in les
        assert np.allclose(s.volume.voxel_to_patient(les["center_voxel"]), les["center_mm"], atol=0.01)
        assert abs(les["volume_ml"] - les["n_voxels"] * vox_ml) < 1e-3
        if les["kind"] == "nodule":
            assert 3.0 <= les["diameter_mm"] <= 35.0
            assert abs(les["diameter_mm"] - les["target_diameter_mm"]) < 0.35 * les["target_diameter_mm"]
    assert all(m["label"] is None for m in s.mimics)
