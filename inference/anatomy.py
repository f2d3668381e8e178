"""Where a finding is, said as precisely as the evidence allows (pure numpy; no model).

* **Nodules and masses**: without fissure or airway segmentation the lobe is not known, so the honest answer
  is a *zone*: the side (the finding's position against the midline of the lung mask, in patient
  coordinates) and upper / middle / lower thirds of that lung's cranio-caudal extent ("right upper zone").
  Zones are not lobes (the right middle lobe and the lingula are anterior, not a height band); the label
  says "zone" so nobody reads it as a lobe. When the series does not cover the whole lung height the zone is
  left out and only the side is given.
* **Pulmonary embolism**: the most proximal level the suspected-clot region reaches (main / lobar /
  segmental / subsegmental, from the lateral distance of its most medial voxel to the body midline, the same
  proxy ``inference.models.pe.locate`` uses), the side(s) it covers, and a clot-burden measure: the volume
  of the suspected region in ml (not a Qanadli index, which needs per-artery occlusion grades).

All positions follow ``inference.volume``: arrays are ``(k, j, i)``, patient coordinates are LPS mm
(``+x`` = patient's left, ``+z`` = superior).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from inference.volume import Volume

ZONES = ("lower", "middle", "upper")  # thirds from inferior to superior
#: Lateral distance (mm) from the body midline below which a clot is at that level (PE heuristics, as
#: ``inference.models.pe.PE_REGION``: central 38, lobar 75; beyond 110 mm: subsegmental).
PE_LEVELS_MM = (("main", 38.0), ("lobar", 75.0), ("segmental", 110.0))
MIN_LUNG_HEIGHT_MM = 150.0  # a lung shorter than this in the series is taken as partly covered: no zone


@dataclass(frozen=True)
class Zone:
    """Side and height zone of a point in the lungs."""

    side: str  # "right" | "left"
    zone: str | None  # "upper" | "middle" | "lower", None when the lung height is not fully covered
    label: str  # e.g. "right upper zone", "left lung (zone unknown: partial coverage)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _side(dx_patient: float) -> str:
    return "left" if dx_patient > 0 else "right"  # LPS: +x is the patient's left


def lung_zone(
    point_kji: tuple[float, float, float],
    lung: np.ndarray,
    spacing_mm: tuple[float, float, float],
    direction: np.ndarray | None = None,
) -> Zone | None:
    """The side and height zone of ``point_kji`` given a lung mask on the same grid (None without lungs).

    Args:
        point_kji: the point (voxel indices, fractional allowed).
        lung: boolean lung mask ``(k, j, i)``.
        spacing_mm: voxel spacing ``(k, j, i)`` in mm.
        direction: the grid's 3x3 LPS direction matrix (columns: i, j, k axes); identity if None.
    """
    lung = np.asarray(lung, dtype=bool)
    if not lung.any():
        return None
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
    kk, _, ii = np.nonzero(lung)
    mid_i = 0.5 * (float(ii.min()) + float(ii.max()))  # between the outer edges of the two lungs
    high_i = float(point_kji[2]) > mid_i
    # patient x grows with i when the i axis points to the patient's left (d[0, 0] > 0, the usual case)
    side = _side((1.0 if high_i else -1.0) * float(np.sign(d[0, 0]) or 1.0))
    same = (ii > mid_i) if high_i else (ii <= mid_i)
    ks = kk[same] if same.any() else kk
    lo, hi = float(ks.min()), float(ks.max())
    height_mm = (hi - lo + 1) * float(spacing_mm[0])
    if height_mm < MIN_LUNG_HEIGHT_MM:
        return Zone(side, None, f"{side} lung (zone unknown: partial coverage)")
    frac = (float(point_kji[0]) - lo) / max(hi - lo, 1.0)
    if np.sign(d[2, 2]) < 0:  # slices stacked from superior to inferior
        frac = 1.0 - frac
    zone = ZONES[int(np.clip(frac * 3, 0, 2.999))]
    return Zone(side, zone, f"{side} {zone} zone")


def body_midline_x(volume: Volume, k: int) -> float:
    """LPS x (mm) of the body's midline on slice ``k``: the middle of the body's left-right extent."""
    sl = np.asarray(volume.hu[int(np.clip(k, 0, volume.shape[0] - 1))]) > -500
    cols = np.nonzero(sl.any(axis=0))[0]
    if cols.size == 0:
        i_mid = (volume.shape[2] - 1) / 2
    else:
        i_mid = 0.5 * (cols.min() + cols.max())
    return float(volume.voxel_to_patient(np.array([k, volume.shape[1] / 2, i_mid]))[0])


def pe_level(dx_mm: float) -> str:
    """Artery level from the lateral distance to the midline (see ``PE_LEVELS_MM``)."""
    for name, limit in PE_LEVELS_MM:
        if abs(dx_mm) < limit:
            return name
    return "subsegmental"


def pe_extent(mask: np.ndarray, volume: Volume) -> dict[str, Any] | None:
    """Most proximal level, side(s) and region volume of a suspected-clot mask (None when it is empty).

    Returns:
        ``{"level", "side", "burden_ml", "components", "label"}``; ``side`` is ``right``, ``left`` or
        ``bilateral``; ``burden_ml`` is the volume of the suspected region.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    labels, n = ndimage.label(mask)
    voxel_ml = float(np.prod(volume.spacing_mm)) / 1000.0
    best: tuple[float, str] | None = None
    sides: set[str] = set()
    for lab in range(1, n + 1):
        pts = np.argwhere(labels == lab)
        mm = volume.voxel_to_patient(pts.astype(np.float64))
        mid = body_midline_x(volume, int(np.median(pts[:, 0])))
        dx = mm[:, 0] - mid
        sides.update(_side(v) for v in (dx.min(), dx.max()) if abs(v) >= PE_LEVELS_MM[0][1] / 3)
        nearest = float(dx[np.argmin(np.abs(dx))])
        if best is None or abs(nearest) < abs(best[0]):
            best = (nearest, _side(nearest))
    assert best is not None
    level = pe_level(best[0])
    side = "bilateral" if len(sides) == 2 else (sides.pop() if sides else best[1])
    burden = round(float(mask.sum()) * voxel_ml, 3)
    return {
        "level": level,
        "side": side,
        "burden_ml": burden,
        "components": int(n),
        "label": f"{level}, {side} (region {burden:g} ml)",
    }


def annotate(
    findings: list,
    volume: Volume,
    *,
    lung: np.ndarray | None = None,
    lung_spacing: tuple[float, float, float] | None = None,
    model_points: dict[int, tuple[float, float, float]] | None = None,
    pe_mask: np.ndarray | None = None,
) -> None:
    """Fill ``location`` (and ``extra["anatomy"]``) of pipeline ``Finding`` objects in place.

    Nodules and masses get a zone from ``lung``, a lung mask on the nodule model's grid (spacing
    ``lung_spacing``), at the finding's point on that grid (``model_points[finding.label]``); emboli get the
    extent of ``pe_mask`` (original grid). Findings whose anatomy cannot be said keep what they had.
    """
    points = model_points or {}
    for f in findings:
        if f.kind in ("nodule", "mass") and lung is not None and f.label in points:
            zone = lung_zone(points[f.label], lung, lung_spacing or volume.spacing_mm, volume.direction)
            if zone is not None:
                f.location = zone.label
                f.extra["anatomy"] = zone.to_dict()
        elif f.kind == "embolism" and pe_mask is not None:
            extent = pe_extent(pe_mask, volume)
            if extent is not None:
                f.location = extent["label"]
                f.extra["anatomy"] = extent
