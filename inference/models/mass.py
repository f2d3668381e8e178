"""Lung masses (lesions over 30 mm), serving side: numpy/scipy/scikit-image rules, no network.

The nodule segmentation network was trained on lesions up to ~30 mm and gives no response inside a 5 cm
mass (lung2: peak probability 0.73 on 2 voxels of 48 mL), so masses get their own detector, run on the
model grid of the nodule pipeline (``nodule.Prepared``):

1. **Tissue in the lung hulls**: soft tissue (``tissue_hu``) inside the per-slice hulls of the lungs
   (``lung_region.lesion_region``), outside aerated lung and bone.
2. **Cores**: opening with a ball of ``core_radius_mm`` removes vessels and thin septa; a watershed on the
   distance map splits cores joined by narrow necks (a mass leaning on the mediastinum).
3. **Rules** (``mass_rules.json``): volume and long axis over the mass limits; mean HU of soft tissue; the
   aerated lung hugs it (the sphere fitted to its lung-contact surface is centred on it: the lung wraps round a
   mass, whereas the heart, the liver dome and the great vessels only push a shallow cap into it); it does not
   cross the midline between two lungs (the mediastinum does); with one lung in view (a hemithorax
   reconstruction) the lung's medial edge stands in for the midline (``medial_line``), and soft tissue must
   not run on medially out of the lung's hull over much of its surface (``_medial_cut``: the heart and the
   hilum, cut off from the mediastinum by the field of view, do).
4. **Whole lesion**: the core grown back by the opening radius within the tissue, so the mass is one
   segmentation and one finding, measured on the original grid by the caller.

These are hand-set rules checked on the real scans (see ``mass_rules.json`` and the README's real-CT table),
not a trained model; the probability is the rule set's fixed confidence from that file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from inference.models.lung_region import BONE_HU

RULES_PATH = Path(__file__).with_name("mass_rules.json")


@lru_cache(maxsize=1)
def load_rules(path: str | None = None) -> dict[str, Any]:
    """The detector's parameters (``mass_rules.json``)."""
    return json.loads(Path(path or RULES_PATH).read_text())


@dataclass
class MassCandidate:
    """One mass on the model grid: its voxels, rule features and the rule set's probability."""

    mask: np.ndarray  # bool, model grid
    probability: float
    features: dict[str, float]


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through ``points`` (N, 3) mm: centre, radius."""
    a = np.c_[2 * points, np.ones(len(points))]
    b = (points**2).sum(1)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    c = x[:3]
    return c, float(np.sqrt(max(1e-6, x[3] + (c**2).sum())))


def _long_axis_mm(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Longest in-plane extent (mm) over the axial slices of ``mask`` (max Feret on a subsample)."""
    best = 0.0
    px = np.asarray(spacing[1:], float)
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        pts = np.argwhere(mask[k]) * px
        if len(pts) > 600:
            pts = pts[:: len(pts) // 600 + 1]
        if len(pts) > 1:
            best = max(best, float(np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).max()))
    return best + float(px.mean())


def _midline(lung: np.ndarray) -> float | None:
    """The column (i) of the mediastinum between two lungs, or None when the field of view shows one lung.

    The lung voxel count per column has two humps (right and left lung); the midline is the deepest point of the
    valley between them, when that valley is deep (a hemithorax crop has a single hump).
    """
    prof = ndi.uniform_filter1d(lung.sum(axis=(0, 1)).astype(np.float64), 5)
    if prof.max() <= 0:
        return None
    n = len(prof)
    a = int(np.argmax(prof[: n // 2])) if n >= 4 else 0
    b = n // 2 + int(np.argmax(prof[n // 2 :])) if n >= 4 else n - 1
    if b - a < 3:
        return None
    v = a + int(np.argmin(prof[a : b + 1]))
    if prof[v] > 0.3 * min(prof[a], prof[b]):
        return None
    return float(v)


def medial_line(lung: np.ndarray, medial: int) -> float | None:
    """A stand-in midline for a field of view that shows one lung: the lung's most medial columns (its 1st
    percentile column towards the medial side ``medial``: +1 = higher i, -1 = lower i). The anterior and
    posterior junction lines bring each lung within a centimetre or two of the midline, so the heart, the great
    vessels and the spine cross this line where a lung mass does not."""
    if medial == 0 or not lung.any():
        return None
    lab, n = ndi.label(lung)
    if n > 1:  # the lung in view, not a sliver of the other one at the edge of the field of view
        lung = lab == 1 + int(np.argmax(ndi.sum_labels(lung, lab, index=np.arange(1, n + 1))))
    cols = np.nonzero(lung.any(axis=(0, 1)))[0]
    weights = lung.sum(axis=(0, 1))[cols].astype(np.float64)
    cdf = np.cumsum(weights) / weights.sum()
    if medial > 0:
        return float(cols[min(int(np.searchsorted(cdf, 0.99)), cols.size - 1)])
    return float(cols[int(np.searchsorted(cdf, 0.01))])


def detect_masses(hu: np.ndarray, lung: np.ndarray, hull: np.ndarray, spacing: tuple[float, ...],
                  rules: dict[str, Any] | None = None, region: np.ndarray | None = None,
                  medial: int = 0) -> list[MassCandidate]:
    """Masses in a model-grid volume (see the module docstring for the stages).

    Args:
        hu: HU (float) on the model grid.
        lung: aerated-lung mask (same grid).
        hull: per-slice lung hulls minus bone (``lesion_region``'s second output).
        region: the lesion region (``lesion_region``'s first output); a mass's outline stays inside it.
        spacing: grid spacing (z, y, x) mm.
        rules: parameters (default ``mass_rules.json``).
        medial: where the patient's midline lies when the field of view shows one lung only (+1: towards
            higher column index i, -1: lower, 0: unknown); the caller knows it from the patient coordinates.

    Returns:
        Masses, largest first.
    """
    r = rules or load_rules()
    sp = tuple(float(s) for s in spacing)
    lo, hi = r["tissue_hu"]
    tissue = (hull | lung) & (hu > lo) & (hu < min(hi, BONE_HU))  # the lung mask's filled holes included
    lung = lung & (hu <= lo)  # aerated lung: what hugs a mass
    if not tissue.any():
        return []
    it = max(1, int(round(r["core_radius_mm"] / min(sp))))
    core = ndi.binary_opening(tissue, structure=ndi.generate_binary_structure(3, 1), iterations=it)
    if not core.any():
        return []
    edt = ndi.distance_transform_edt(core, sampling=sp)
    min_dist = max(1, int(round(r["peak_separation_mm"] / min(sp))))
    peaks = peak_local_max(edt, min_distance=min_dist, threshold_abs=r["min_core_radius_mm"],
                           labels=ndi.label(core)[0], exclude_border=False)
    if len(peaks) == 0:
        return []
    markers = np.zeros(core.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-edt, markers, mask=core)
    mid = _midline(lung)
    one_lung = mid is None and medial != 0
    if mid is None:  # one lung in view (a hemithorax reconstruction): its medial edge stands in
        mid = medial_line(lung, medial)
    vox_ml = float(np.prod(sp)) / 1000.0
    out = []
    for idx, sl in enumerate(ndi.find_objects(regions), start=1):
        if sl is None:
            continue
        vol = float(np.count_nonzero(regions[sl] == idx)) * vox_ml
        if vol < r["min_volume_ml"]:
            continue
        box = tuple(slice(max(0, s.start - 3), min(n, s.stop + 3)) for s, n in zip(sl, regions.shape))
        off = np.array([b.start for b in box])
        mb = regions[box] == idx
        feats = _features(mb, hu[box], lung[box], sp, None if mid is None else mid - off[2], vox_ml,
                          cut=(hull[box], medial, r["tissue_hu"][0]) if one_lung else None)
        if not _passes(feats, r):
            continue
        for a, o in zip("kji", off):
            feats[f"sphere_centre_{a}"] += float(o)
        m = np.zeros_like(core)
        m[box] = mb
        whole = _whole_lesion(tissue if region is None else tissue & region, m, feats, sp, r)
        out.append(MassCandidate(mask=whole, probability=float(r["probability"]), features=feats))
    out.sort(key=lambda c: -int(c.mask.sum()))
    return out


def _features(m: np.ndarray, hu: np.ndarray, lung: np.ndarray, sp: tuple[float, ...], mid: float | None,
              vox_ml: float, cut: tuple[np.ndarray, int, float] | None = None) -> dict[str, float]:
    """Rule features of one region (arrays cropped to its box plus a margin; ``mid`` in that box's columns).
    ``cut``: (hull, medial side, tissue HU floor) when one lung is in view, for ``medial_cut``."""
    sl = ndi.find_objects(m.astype(np.uint8))[0]
    ring = ndi.binary_dilation(m, iterations=2) & ~m
    contact = np.argwhere(ring & lung) * np.asarray(sp)
    feats = {
        "volume_ml": float(m.sum() * vox_ml),
        "mean_hu": float(hu[m].mean()),
        "lung_contact": float((ring & lung).sum() / max(1, ring.sum())),
        "midline_share": _midline_share(m, sl, mid),
        "long_axis_mm": _long_axis_mm(m[sl], sp),
        "z_extent_mm": float((sl[0].stop - sl[0].start) * sp[0]),
        "medial_cut": 0.0 if cut is None else _medial_cut(m, ring, hu, lung, *cut),
    }
    if len(contact) >= 20:
        centre, radius = _fit_sphere(contact)
        cm = np.asarray(ndi.center_of_mass(m)) * np.asarray(sp)
        d = (contact - centre) / np.maximum(np.linalg.norm(contact - centre, axis=1, keepdims=True), 1e-6)
        feats.update(sphere_radius_mm=radius, sphere_offset_mm=float(np.linalg.norm(centre - cm)),
                     **{f"sphere_centre_{a}": float(v) for a, v in zip("kji", centre / np.asarray(sp))},
                     cap_concentration=float(np.linalg.norm(d.mean(0))))
    else:
        feats.update(sphere_radius_mm=0.0, sphere_offset_mm=1e9, cap_concentration=1.0)
    return feats


def _medial_cut(m: np.ndarray, ring: np.ndarray, hu: np.ndarray, lung: np.ndarray, hull: np.ndarray, medial: int,
                tissue_floor: float) -> float:
    """With one lung in view: the share of the region's outer surface (``ring``) where soft tissue runs on,
    medially, out of the lung's hull (arrays cropped to the region's box plus a margin).

    The lung's hull cuts the heart and the hilum off from the rest of the mediastinum, which the field of view
    of one hemithorax does not show, so their medial face is such a cut (lung1's left hemithorax: 0.22 and 0.25);
    a lung mass is wrapped by lung and chest wall (lung2's paravertebral mass in the same crop: 0.11, with the
    aorta on its medial side). Cuts on the lateral side (chest wall) do not count.
    """
    cut = ring & ~hull & ~lung & (hu > tissue_floor) & (hu < BONE_HU)
    cols = np.arange(m.shape[2])[None, None, :]
    centre_i = float(np.nonzero(m)[2].mean())
    medial_side = (cols - centre_i) * medial > 0
    return float((cut & medial_side).sum() / max(1, ring.sum()))


def _whole_lesion(tissue: np.ndarray, core: np.ndarray, feats: dict[str, float], sp: tuple[float, ...],
                  r: dict[str, Any]) -> np.ndarray:
    """The mass as one segmentation: tissue inside the sphere fitted to its lung-contact surface (plus a margin),
    the part connected to the core. The lung side of a mass is its one well-defined border; the sphere carries it
    across the pleural or mediastinal side, where the lesion meets tissue of the same density."""
    centre = np.array([feats[f"sphere_centre_{a}"] for a in "kji"])
    rad = feats["sphere_radius_mm"] + r["sphere_margin_mm"]
    ext = np.ceil(rad / np.asarray(sp)).astype(int) + 1
    lo = np.maximum(0, np.floor(centre).astype(int) - ext)
    hi = np.minimum(tissue.shape, np.ceil(centre).astype(int) + ext + 1)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grid = np.ogrid[box]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, sp))
    inside = np.zeros_like(tissue)
    inside[box] = tissue[box] & (d2 <= rad**2)
    lab, _ = ndi.label(inside)
    ids = np.unique(lab[core & inside])
    ids = ids[ids > 0]
    return np.isin(lab, ids) if ids.size else core


def _midline_share(m: np.ndarray, sl: tuple[slice, ...], mid: float | None) -> float:
    """The share of the region lying on its smaller side of the midline (0 for a one-sided region)."""
    if mid is None:
        return 0.0
    cols = np.nonzero(m[sl])[2] + sl[2].start
    left = float((cols < mid).mean()) if len(cols) else 0.0
    return min(left, 1.0 - left)


def _passes(f: dict[str, float], r: dict[str, Any]) -> bool:
    return (f["volume_ml"] >= r["min_volume_ml"] and f["long_axis_mm"] >= r["min_long_axis_mm"]
            and f["mean_hu"] >= r["min_mean_hu"] and f["midline_share"] <= r["max_midline_share"]
            and f["lung_contact"] >= r["min_lung_contact"]
            and f["sphere_offset_mm"] <= r["max_sphere_offset_mm"]
            and f["sphere_radius_mm"] <= r["max_sphere_radius_mm"]
            and f["cap_concentration"] <= r["max_cap_concentration"]
            and f["z_extent_mm"] <= r["max_z_extent_factor"] * f["long_axis_mm"]
            and f["medial_cut"] <= r.get("max_medial_cut", 1.0))
