"""Insertion into real CT: a nodule into LIDC slices, an embolus into the real CTA pulmonary arteries."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from inference.synth.insert import insert_embolus, insert_nodule, load_dicom_folder, load_nifti


def _highpass_sd(hu: np.ndarray, region: np.ndarray) -> float:
    f = hu.astype(np.float32)
    resid = f - ndi.gaussian_filter(f, (0, 1.5, 1.5))
    return float(1.4826 * np.median(np.abs(resid[region] - np.median(resid[region]))))


def _lung_site(vol, d_mm):
    lung = ndi.binary_opening(vol.hu < -500, iterations=2)
    lab, n = ndi.label(lung)
    border = set(np.unique(np.r_[lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
    lung = np.isin(lab, [i for i in range(1, n + 1) if i not in border])
    dist = ndi.distance_transform_edt(lung, sampling=vol.spacing_mm)
    dist[[0, -1]] = 0
    k, j, i = np.unravel_index(np.argmax(dist * (dist < d_mm + 12)), dist.shape)
    return lung, (k, j, i)


def test_nodule_in_real_lidc_slices(shared_data):
    """Test that a nodule inserted in real LIDC lung has nodule HU, a ramped edge and the local noise."""
    folder = shared_data("lidc-idri-slices/LIDC-IDRI-0003")
    vol = load_dicom_folder(folder)
    lung, (k, j, i) = _lung_site(vol, 16.0)
    centre = vol.voxel_to_patient((k, j, i))
    new, mask, info = insert_nodule(vol, centre, 16.0, texture="solid", morphology="round", lung_mask=lung, seed=3)
    assert info["kind"] == "nodule" and np.allclose(info["center_mm"], centre, atol=3.0)
    assert mask.sum() > 30 and lung[mask].mean() > 0.99
    core = ndi.binary_erosion(mask, iterations=2, structure=np.ones((1, 3, 3)))
    assert -40 <= new.hu[core].mean() <= 100
    # edge: along rows through the centre, HU rises over several voxels, with intermediate values
    row = new.hu[k, j, i - 14 : i + 15].astype(float)
    steps = np.abs(np.diff(row))
    assert steps.max() < 0.8 * (row.max() - row.min())  # no single-voxel hard step
    assert ((row > -600) & (row < -150)).sum() >= 2  # partial-volume voxels on the edges
    # noise: the scan's own noise continues through the nodule (not smoothed away, not doubled), and is of
    # the same order as in the surrounding parenchyma
    core3 = ndi.binary_erosion(ndi.binary_erosion(mask), iterations=2, structure=np.ones((1, 3, 3)))
    assert core3.sum() > 10
    inside, before = _highpass_sd(new.hu, core3), _highpass_sd(vol.hu, core3)
    assert 0.75 < inside / before < 1.5, (inside, before)
    far = lung & ~ndi.binary_dilation(mask, iterations=10) & (vol.hu < -700)
    assert 0.4 < inside / _highpass_sd(vol.hu, far) < 1.6
    # outside the lesion box the scan is untouched
    far = ~ndi.binary_dilation(mask, iterations=8)
    assert np.array_equal(new.hu[far][::7], vol.hu[far][::7]) or np.mean(new.hu[far] == vol.hu[far]) > 0.99


def test_embolus_in_real_cta(shared_data):
    """Test that an embolus inserted in the real CTA pulmonary artery is a filling defect inside the mask."""
    root = shared_data("real-cta-crop")
    vol, art = load_nifti(root / "pulmonary_report_ct_cropped.nii.gz",
                          root / "pulmonary_report_pulmonary_artery.nii.gz")
    assert art.sum() > 1000 and np.median(vol.hu[art]) > 250
    new, mask, info = insert_embolus(vol, art, occlusive=False, length_mm=18.0, seed=2)
    assert mask.sum() > 10
    assert art[mask].mean() > 0.98
    assert np.median(new.hu[mask]) < 120
    assert np.median(new.hu[art & ~ndi.binary_dilation(mask, iterations=3)]) > 250
    assert info["kind"] == "embolism"
