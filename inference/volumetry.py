"""Nodule volumetry for follow-up: the same semi-automatic segmentation on both scans of a comparison.

``measure_nodule(volume, center_mm, diameter_hint_mm)`` segments the nodule around a seed point:

1. A cube around the seed is resampled to a fine isotropic grid (``fine_mm``: a tenth of the nodule size,
   0.35 to 0.8 mm), with linear interpolation and a light Gaussian (noise).
2. **Adaptive half-maximum threshold**: halfway between the lung background (median of the cube's voxels
   below -600 HU) and the nodule core (the 75th percentile within a sphere of a third of the hint). On a
   blurred edge, the half-maximum surface is where the true boundary was, so the volume is unbiased for
   slice thickness and kernel, within noise.
3. The connected component at the seed, within a sphere of ``CLIP_FACTOR`` × the size hint; vessels and the
   chest wall are cut off by an opening with a ball of a quarter of the hint (a third, then 0.42, when the
   nodule is still attached) and a geodesic reconstruction of the nodule body. A segmentation whose surface
   lies largely on that sphere ran into a neighbour: ``ok`` is False and the comparison does not call growth
   from it.
4. A first-order correction of the curvature bias (the half-maximum surface of a blurred sphere lies inside
   the true one by about ``blur variance / radius``, saturating below ~5 blur sigmas).

The **uncertainty** ``sigma_mm3`` is a repeatability model: relative SD ``hypot(REL_FLOOR, PV_K × voxel /
diameter)`` (voxel = geometric mean spacing), calibrated on synthetic stable pairs; ``compare.growth`` calls
a change significant only beyond 1.96 times the combined sigma of both measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from inference.volume import Volume

PSF_VAR_MM2 = 0.3  # in-plane reconstruction blur (variance, mm^2) assumed for the curvature correction
# Repeatability model of one measurement (relative SD): a floor plus a partial-volume term that grows with
# the voxel size over the diameter. Calibrated on synthetic stable pairs so that about 5 % of unchanged
# nodules are called growing at Z = 1.96 (bench/bench_compare.py prints the false-growth rate).
REL_FLOOR = 0.03
PV_K = 0.15
CLIP_FACTOR = 0.65  # the segmentation stays within CLIP_FACTOR x hint + CLIP_MARGIN_MM of the seed
CLIP_MARGIN_MM = 2.5
MAX_RIM_SHARE = 0.2  # more of the surface than this on that limit: it ran into a neighbour (not ok)
MAX_CUBE = 80  # voxels along a side of the measuring cube at most
OPENING_FACTORS = (0.25, 0.33, 0.42)  # opening ball radius / hint, tried in turn against attached structures


@dataclass
class Measurement:
    """A nodule's size on one scan: volume, volume-equivalent and long-axis diameters, their uncertainty."""

    volume_mm3: float
    diameter_mm: float  # volume-equivalent sphere diameter
    long_axis_mm: float
    sigma_mm3: float
    threshold_hu: float
    core_hu: float
    voxels: int
    ok: bool = True
    reason: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("volume_mm3", "diameter_mm", "long_axis_mm", "sigma_mm3", "threshold_hu", "core_hu"):
            d[k] = round(float(d[k]), 2)
        return d


def _fine_cube(volume: Volume, center_mm: np.ndarray, half_mm: float, fine_mm: float) -> np.ndarray:
    """Resample a cube of half-side ``half_mm`` centred on ``center_mm`` (LPS) to ``fine_mm`` voxels (z, y, x
    of the volume's own axes)."""
    n = int(np.ceil(half_mm / fine_mm))
    offs = np.arange(-n, n + 1) * fine_mm
    c = volume.patient_to_voxel(center_mm)
    sp = np.asarray(volume.spacing_mm)
    grids = [c[a] + offs / sp[a] for a in range(3)]
    lo = [max(0, int(np.floor(g.min())) - 1) for g in grids]
    hi = [min(n_, int(np.ceil(g.max())) + 2) for g, n_ in zip(grids, volume.shape)]
    sub = np.asarray(volume.hu[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
    sig = [max(0.0, 0.5 * (0.8 / s) if s < 0.8 else 0.0) for s in sp]
    if max(sig) > 0:
        sub = ndi.gaussian_filter(sub, sig)
    coords = np.meshgrid(*[g - lo_ for g, lo_ in zip(grids, lo)], indexing="ij")
    return ndi.map_coordinates(sub, coords, order=1, mode="nearest")


def _ball(r: int) -> np.ndarray:
    z, y, x = np.ogrid[-r : r + 1, -r : r + 1, -r : r + 1]
    return x * x + y * y + z * z <= r * r


def ball_opening(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary opening of ``mask`` by the voxel ball of radius ``r`` (``_ball(r)``; outside the array counts as
    background, as in ``ndi.binary_opening``), through two Euclidean distance transforms: the same voxels as the
    morphological opening, at a cost that does not grow with ``r`` (a 10-voxel ball holds 4,169 voxels)."""
    if r < 1 or not mask.any():
        return mask.copy()
    padded = np.pad(mask, 1)  # the zero rim stands for the outside of the array
    # erosion: voxels whose nearest background voxel is farther than r (squared distances are integers)
    eroded = np.rint(ndi.distance_transform_edt(padded) ** 2) > r * r
    if not eroded.any():
        return np.zeros_like(mask)
    # dilation of the eroded set: voxels within r of it
    opened = np.rint(ndi.distance_transform_edt(~eroded) ** 2) <= r * r
    return opened[1:-1, 1:-1, 1:-1] & mask


def _segment(cube: np.ndarray, threshold: float, seed: np.ndarray, open_r: int, clip: np.ndarray) -> np.ndarray:
    """The component at ``seed`` above ``threshold``, vessels cut by an opening, limited to ``clip``."""
    fg = (cube >= threshold) & clip
    lab, n = ndi.label(fg)
    if n == 0:
        return fg
    s = tuple(seed)
    if lab[s] == 0:  # seed off the nodule (small shift): nearest foreground voxel within the central ball
        idx = np.argwhere(lab > 0)
        d = np.linalg.norm(idx - seed, axis=1)
        if d.min() > max(3, open_r * 2):
            return np.zeros_like(fg)
        s = tuple(idx[int(np.argmin(d))])
    comp = lab == lab[s]
    if open_r >= 1:
        body = ball_opening(comp, open_r)
        lab2, n2 = ndi.label(body)
        if n2 and lab2[s]:
            core = lab2 == lab2[s]
            # geodesic reconstruction: grow the opened body back by open_r voxels inside the component
            comp = ndi.binary_dilation(core, structure=_ball(1), iterations=open_r + 1, mask=comp)
    return comp


def _long_axis(mask: np.ndarray, fine_mm: float) -> float:
    pts = np.argwhere(mask).astype(np.float64) * fine_mm
    if len(pts) < 2:
        return fine_mm
    pts -= pts.mean(0)
    ev = np.linalg.eigvalsh(np.cov(pts.T))
    return float(2.0 * np.sqrt(5.0 * max(ev.max(), 0.0)))  # solid ellipsoid: semi-axis^2 = 5 variance


def measure_nodule(
    volume: Volume,
    center_mm: np.ndarray | tuple | list,
    diameter_hint_mm: float,
    *,
    texture: str = "solid",
    threshold_hu: float | None = None,
) -> Measurement:
    """Segment and measure the nodule at ``center_mm`` (LPS) on ``volume`` (see the module docstring).

    Args:
        threshold_hu: use this threshold instead of the adaptive half-maximum (``measure_pair`` passes the
            same one for both scans of a comparison).
    """
    hint = float(max(diameter_hint_mm or 6.0, 3.0))
    half = max(1.4 * hint, hint / 2 + 8.0)
    fine = max(float(np.clip(hint / 10.0, 0.35, 0.8)), 2.0 * half / MAX_CUBE)  # masses: coarser, same cost
    center = np.asarray(center_mm, float)
    cube = _fine_cube(volume, center, half, fine)
    n = cube.shape[0] // 2
    seed = np.array([n, n, n])
    zz, yy, xx = np.ogrid[: cube.shape[0], : cube.shape[1], : cube.shape[2]]
    r2 = ((zz - n) ** 2 + (yy - n) ** 2 + (xx - n) ** 2) * fine**2
    central = cube[r2 <= (max(hint / 3.0, 1.2)) ** 2]
    low = cube[cube < -600]
    bg = float(np.median(low)) if low.size > 50 else -850.0
    core = float(np.percentile(central, 75))
    if texture == "ground-glass":
        core = min(core, -300.0)
    contrast = core - bg
    if contrast < 120:
        return Measurement(0.0, 0.0, 0.0, 0.0, bg, core, 0, ok=False, reason="no nodule contrast at this point")
    # the seed itself: the densest voxel near the centre (the centre may sit on a shifted point)
    near = r2 <= (max(hint / 4.0, 1.0)) ** 2
    masked = np.where(near, cube, -np.inf)
    seed = np.array(np.unravel_index(int(np.argmax(masked)), cube.shape))
    mid = bg + 0.5 * contrast if threshold_hu is None else float(threshold_hu)
    clip_r = CLIP_FACTOR * hint + CLIP_MARGIN_MM
    clip = r2 <= clip_r**2
    rim = r2 > (clip_r - 1.5 * fine) ** 2
    leak = 1.0
    for factor in OPENING_FACTORS:  # stronger openings until the nodule comes off its neighbour
        open_r = int(np.clip(round(hint * factor / fine), 1, 10))
        mask = _segment(cube, mid, seed, open_r, clip)
        leak = float((mask & rim).sum()) / max(1.0, float((mask & ~ndi.binary_erosion(mask)).sum()))
        if leak <= MAX_RIM_SHARE:
            break
    if not mask.any():
        return Measurement(0.0, 0.0, 0.0, 0.0, mid, core, 0, ok=False, reason="empty segmentation")
    touches = leak > MAX_RIM_SHARE
    # curvature bias: the half-maximum surface of a blurred convex object lies inside the true surface by
    # about blur_variance / radius (first order); blur = native voxel box + interpolation + scanner PSF
    blur_var = float(np.mean(np.square(volume.spacing_mm))) / 4.0 + PSF_VAR_MM2
    v = float(mask.sum()) * fine**3
    r_m = (3.0 * v / (4.0 * np.pi)) ** (1.0 / 3.0)
    # (first order only for radii above ~5 blur sigmas; below, the shift saturates: measured on spheres)
    shift = blur_var / max(r_m, 5.0 * np.sqrt(blur_var))
    gain = ((r_m + shift) / r_m) ** 3 if r_m > 0 else 1.0
    v *= gain
    d_eq = float((6.0 * v / np.pi) ** (1.0 / 3.0))
    native = float(np.prod(volume.spacing_mm)) ** (1.0 / 3.0)
    sigma = v * float(np.hypot(REL_FLOOR, PV_K * native / max(d_eq, 1.0)))
    return Measurement(
        volume_mm3=v, diameter_mm=d_eq, long_axis_mm=_long_axis(mask, fine), sigma_mm3=sigma,
        threshold_hu=mid, core_hu=core, voxels=int(mask.sum()),
        ok=not touches, reason="the segmentation runs into a neighbouring structure" if touches else "",
    )


def measure_pair(
    current: Volume,
    current_mm: np.ndarray | tuple | list,
    prior: Volume,
    prior_mm: np.ndarray | tuple | list,
    diameter_hint_mm: float,
    *,
    texture: str = "solid",
) -> tuple[Measurement, Measurement]:
    """Measure one nodule on both scans with **one** threshold (the mean of the two adaptive ones).

    A nodule's density changes as it grows; a threshold that follows each scan's own core would then
    measure the two edges at different levels and bias the growth. Returns ``(current, prior)``.
    """
    first_c = measure_nodule(current, current_mm, diameter_hint_mm, texture=texture)
    first_p = measure_nodule(prior, prior_mm, diameter_hint_mm, texture=texture)
    if first_c.voxels == 0 or first_p.voxels == 0:
        return first_c, first_p
    thr = 0.5 * (first_c.threshold_hu + first_p.threshold_hu)
    mc = measure_nodule(current, current_mm, diameter_hint_mm, texture=texture, threshold_hu=thr)
    mp = measure_nodule(prior, prior_mm, diameter_hint_mm, texture=texture, threshold_hu=thr)
    if not (mc.ok and mp.ok):  # the common level leaked into a neighbour on one scan: each its own level
        return first_c, first_p
    return mc, mp
