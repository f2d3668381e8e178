"""Geometric features of nodule candidates: multi-scale Hessian blob vs tube vs plate (numpy/scipy/skimage).

A nodule is a bright blob (three strongly negative Hessian eigenvalues of similar size), a vessel a bright tube
(two strongly negative, one near zero), the pleura or a fissure a plate (one). On the model grid (isotropic,
2 mm), for each candidate centre and each scale ``sigma`` (mm), the eigenvalues ``|l1| <= |l2| <= |l3|`` of the
scale-normalised Hessian ``sigma^2 H`` of the HU image (clipped to the lung window) are read in a 3x3x3
neighbourhood of the centre, at the voxel of strongest bright curvature (``-l3`` largest). The scale with the
strongest response wins, and the features are:

* ``blob``: ``l1 / l3`` (1 for a sphere, 0 for a tube or a plate; 0 when ``l1`` is not negative)
* ``tube``: ``l2 / l3 * (1 - blob)`` (1 for a tube)
* ``scale_mm``: the winning scale (about the structure's radius)
* ``strength``: ``-l3`` at that scale (HU; contrast of the structure)

The candidate calibration (``nodule.calibrate``, method ``logistic``) may weight them: the card's
``calibration.params.features`` maps feature name to weight, and ``feature_center`` / ``feature_scale`` give
the standardisation fitted with the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from skimage.feature import hessian_matrix

from inference.models.nodule_prep import extract_patch

FEATURES = ("blob", "tube", "scale_mm", "strength")
SCALES_MM = (2.0, 3.0, 4.5, 6.5)
HU_CLIP = (-1000.0, 400.0)


def _center_eigs(patch: np.ndarray, sigma_vox: float, half: int) -> np.ndarray:
    """Eigenvalues (3, 27) of the scale-normalised Hessian in the 3x3x3 centre of ``patch``, sorted by
    increasing absolute value."""
    h = hessian_matrix(patch, sigma=sigma_vox, order="rc", use_gaussian_derivatives=False)
    c = slice(half - 1, half + 2)
    hrr, hrc, hrp, hcc, hcp, hpp = (x[c, c, c].reshape(-1) for x in h)
    mats = np.stack([np.stack([hrr, hrc, hrp], -1), np.stack([hrc, hcc, hcp], -1),
                     np.stack([hrp, hcp, hpp], -1)], -2)
    ev = np.linalg.eigvalsh(mats).T * sigma_vox**2
    order = np.argsort(np.abs(ev), axis=0)
    return np.take_along_axis(ev, order, axis=0)


def candidate_features(hu: np.ndarray, centers: Sequence[np.ndarray], spacing: Sequence[float],
                       scales_mm: Sequence[float] = SCALES_MM) -> np.ndarray:
    """Features (N, len(FEATURES)) of the candidates at ``centers`` (model-grid k, j, i) of ``hu``.

    Args:
        hu: HU volume on the model grid (isotropic ``spacing``).
        centers: candidate centres (fractional voxel indices).
        spacing: the grid spacing (mm); the smallest axis converts scales to voxels.
    """
    out = np.zeros((len(centers), len(FEATURES)), np.float32)
    if not len(centers):
        return out
    sp = float(min(spacing))
    half = int(np.ceil(3 * max(scales_mm) / sp)) + 2
    size = (2 * half + 1,) * 3
    for n, c in enumerate(centers):
        patch = np.clip(extract_patch(np.asarray(hu, np.float32), np.asarray(c), size, pad_value=HU_CLIP[0]),
                        *HU_CLIP)
        best = None
        for s in scales_mm:
            ev = _center_eigs(patch, s / sp, half)
            k = int(np.argmin(ev[2]))  # most negative l3: strongest bright curvature
            l1, l2, l3 = ev[:, k]
            if best is None or -l3 > best[0]:
                best = (-l3, l1, l2, l3, s)
        strength, l1, l2, l3, s = best  # type: ignore[misc]
        if l3 >= 0:  # nothing bright here
            out[n] = (0.0, 0.0, s, 0.0)
            continue
        blob = float(l1 / l3) if l1 < 0 else 0.0
        tube = float(l2 / l3) * (1.0 - blob) if l2 < 0 else 0.0
        out[n] = (blob, tube, s, strength)
    return out


def uses_features(calibration: Any) -> bool:
    """Does a card calibration weight the geometric features?"""
    params = calibration.params if hasattr(calibration, "params") else calibration.get("params", {})
    return bool(params.get("features"))


def feature_term(params: Mapping[str, Any], features: np.ndarray) -> np.ndarray:
    """``sum_f w_f * (x_f - center_f) / scale_f`` for the card's ``features`` weights (N,)."""
    w = params.get("features") or {}
    center = params.get("feature_center") or {}
    scale = params.get("feature_scale") or {}
    x = np.asarray(features, np.float64).reshape(-1, len(FEATURES))
    z = np.zeros(len(x))
    for name, weight in w.items():
        i = FEATURES.index(name)
        z += float(weight) * (x[:, i] - float(center.get(name, 0.0))) / float(scale.get(name, 1.0))
    return z
