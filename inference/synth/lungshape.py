"""Lung shapes taken from a real chest CT, randomly deformed per synthetic patient.

The template is the lung mask of ``lung1`` (pyradiomics test data, a full-thorax CT: apex to just above the
posterior recesses; development data, never serving): right and left lung signed distances (mm, int8,
negative inside) on a 3 mm grid, committed as ``assets/synth/lung_template.npz`` (~40 KB). ``lung2`` is
validation data and is never used. Rebuild it with ``python -m inference.synth.lungshape`` (needs pynrrd, in
the ``[dev]``/``[train]`` extras, and ``../shared/data``).

Per patient the template is scaled into the thoracic cavity (lateral and AP extent, apex height), each lung
gets its own scale jitter and a smooth random displacement field (a few low-frequency sine waves, ~5 mm),
and the result is intersected with the analytic rib cage, spine and diaphragm so that the lungs and the
rest of the procedural chest always agree. Below the template's last slice the lowest slice is extended
and the diaphragm cuts it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

TEMPLATE_MM = 3.0
SD_CLIP = 24


@dataclass
class LungTemplate:
    """Signed distances (mm, negative inside) of the right and left lung on an isotropic grid.

    ``sd``: (2, nz, ny, nx) int8, index 0 right, 1 left; voxel (k, j, i) at ``origin + (i, j, k) * step``
    in a frame whose x = 0 is the midline between the lungs, y = 0 their AP centre and z = 0 the template's
    last (lowest) slice; ``extent``: (x_lateral, y_half, z_top) mm of the lungs in that frame.
    """

    sd: np.ndarray
    origin: np.ndarray
    step: float
    extent: np.ndarray
    source: str


def template_path() -> Path:
    from inference.config import PROJECT_ROOT

    return PROJECT_ROOT / "assets" / "synth" / "lung_template.npz"


def build_template(data: Path | None = None) -> LungTemplate:
    """The template from ``lung1`` (HU lung mask, split into its two largest components)."""
    from inference.synth.measure import DATA, load_real, lung_mask

    vol = load_real("lung1", data or DATA)
    lung = lung_mask(vol.hu, vol.spacing_mm)
    lab, n = ndi.label(lung)
    sizes = ndi.sum_labels(lung, lab, np.arange(1, n + 1))
    two = np.argsort(sizes)[::-1][:2] + 1
    sz, sy, sx = vol.spacing_mm
    zoom = (sz / TEMPLATE_MM, sy / TEMPLATE_MM, sx / TEMPLATE_MM)
    ball = ((np.indices((5, 5, 5)) - 2.0) ** 2).sum(axis=0) <= 4.0
    masks = [ndi.zoom((lab == c).astype(np.float32), zoom, order=1) > 0.5 for c in two]
    # close over the hilar vessels and fill holes (vessels belong to the lung shape)
    masks = [ndi.binary_fill_holes(ndi.binary_closing(np.pad(m, 3), ball)[3:-3, 3:-3, 3:-3]) for m in masks]
    # LPS: the right lung has the smaller x
    xs = [np.argwhere(m)[:, 2].mean() for m in masks]
    masks = [masks[int(np.argmin(xs))], masks[int(np.argmax(xs))]]
    both = masks[0] | masks[1]
    kji = np.argwhere(both)
    lo, hi = kji.min(axis=0), kji.max(axis=0)
    pad = 6
    masks = [np.pad(m[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1], pad) for m in masks]
    sd = np.stack([_signed_distance(m) for m in masks])
    # frame: x midline between the lungs' medial surfaces, y AP centre, z = 0 at the lowest lung slice
    inner_r = np.argwhere(masks[0])[:, 2].max()
    inner_l = np.argwhere(masks[1])[:, 2].min()
    mid_i = 0.5 * (inner_r + inner_l)
    kk, jj, ii = np.nonzero(masks[0] | masks[1])
    mid_j = 0.5 * (jj.min() + jj.max())
    origin = np.array([-mid_i, -mid_j, -kk.min()]) * TEMPLATE_MM
    extent = np.array([max(mid_i - ii.min(), ii.max() - mid_i), 0.5 * (jj.max() - jj.min()),
                       kk.max() - kk.min()]) * TEMPLATE_MM
    return LungTemplate(np.clip(np.round(sd), -SD_CLIP, SD_CLIP).astype(np.int8), origin, TEMPLATE_MM, extent,
                        "lung1 (pyradiomics test data)")


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    inside = ndi.distance_transform_edt(mask, sampling=TEMPLATE_MM)
    outside = ndi.distance_transform_edt(~mask, sampling=TEMPLATE_MM)
    return np.where(mask, -inside + 0.5 * TEMPLATE_MM, outside - 0.5 * TEMPLATE_MM)


_CACHE: dict[str, LungTemplate] = {}


def load_template() -> LungTemplate:
    """The committed template (built from ``../shared/data`` and cached when the asset is missing)."""
    if "t" not in _CACHE:
        path = template_path()
        if path.is_file():
            z = np.load(path)
            _CACHE["t"] = LungTemplate(z["sd"], z["origin"], float(z["step"]), z["extent"], str(z["source"]))
        else:
            _CACHE["t"] = build_template()
    return _CACHE["t"]


@dataclass
class LungWarp:
    """Per-patient placement of the template: scales, centre and a smooth displacement field."""

    scale: np.ndarray  # (2, 3): per lung, x/y/z scale template mm → body mm
    centre: np.ndarray  # (3,) body position of the template frame origin
    waves: np.ndarray  # (n, 8): kx, ky, kz (1/mm), phase, ax, ay, az amplitude (mm), unused


def sample_warp(cav_a: float, cav_b: float, z_apex: float, z_low: float, rng: np.random.Generator,
                t: LungTemplate) -> LungWarp:
    """Fit the template into a cavity of half-width ``cav_a``, half-depth ``cav_b``, from ``z_low`` to the
    apex, with random per-lung scale jitter and 4 displacement waves."""
    # per lung: lateral and AP extent of the template fitted slightly beyond the cavity (the rib cage shapes
    # the costal surface, the template the apex, the mediastinal surface and the lobes)
    scale = np.zeros((2, 3))
    for side in (0, 1):
        kji = np.argwhere(t.sd[side] < 0)
        xs = t.origin[0] + kji[:, 2] * t.step
        ys = t.origin[1] + kji[:, 1] * t.step
        lateral = -xs.min() if side == 0 else xs.max()
        half_ap = 0.5 * (ys.max() - ys.min())
        base = np.array([(cav_a + 6.0) / lateral, (cav_b + 2.0) / half_ap, (z_apex - z_low) / t.extent[2]])
        scale[side] = base * rng.uniform(0.95, 1.04, 3)
    centre = np.array([float(rng.normal(0, 3.0)), 8.0 + float(rng.normal(0, 3.0)), z_low])
    n = 4
    waves = np.zeros((n, 8))
    k = rng.normal(size=(n, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    waves[:, :3] = k * (2 * np.pi / rng.uniform(120.0, 260.0, (n, 1)))
    waves[:, 3] = rng.uniform(0, 2 * np.pi, n)
    waves[:, 4:7] = rng.normal(0, 3.0, (n, 3))
    return LungWarp(scale, centre, waves)


def lung_template_sd(t: LungTemplate, w: LungWarp, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Signed distance (mm, approximately; negative inside) of the warped template lungs on a grid.

    ``z``, ``y``, ``x`` are the 1-D voxel-centre coordinates of the grid's axes. The field is smooth, so it
    is evaluated on every second voxel along each axis and interpolated linearly.
    """
    sub = [np.r_[np.arange(0, len(c) - 1, 2), len(c) - 1] for c in (z, y, x)]
    zc, yc, xc = (np.asarray(c, np.float32)[i] for c, i in zip((z, y, x), sub))
    pz, py, px = np.broadcast_arrays(zc[:, None, None], yc[None, :, None], xc[None, None, :])
    pz, py, px = pz.copy(), py.copy(), px.copy()
    for kx, ky, kz, ph, ax, ay, az, _ in w.waves:
        s = np.sin(kx * px + ky * py + kz * pz + ph).astype(np.float32)
        px += ax * s
        py += ay * s
        pz += az * s
    out = np.full(px.shape, np.float32(SD_CLIP), np.float32)
    for side in (0, 1):
        sc = w.scale[side]
        tx = (px - w.centre[0]) / sc[0]
        ty = (py - w.centre[1]) / sc[1]
        tz = np.maximum((pz - w.centre[2]) / sc[2], 0.0)  # below the last slice: extend it (diaphragm cuts)
        coords = [(tz - t.origin[2]) / t.step, (ty - t.origin[1]) / t.step, (tx - t.origin[0]) / t.step]
        v = ndi.map_coordinates(t.sd[side].astype(np.float32), coords, order=1, mode="nearest")
        np.minimum(out, v * float(sc.mean()), out=out)
    for axis, (full, idx) in enumerate(zip((z, y, x), sub)):
        out = _interp_axis(out, idx, len(full), axis)
    return out


def _interp_axis(arr: np.ndarray, idx: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from samples at integer positions ``idx`` to ``0..n-1``."""
    pos = np.arange(n)
    hi = np.clip(np.searchsorted(idx, pos), 1, max(len(idx) - 1, 1)) if len(idx) > 1 else np.zeros(n, int)
    lo = np.maximum(hi - 1, 0)
    span = np.maximum(idx[hi] - idx[lo], 1)
    f = np.clip((pos - idx[lo]) / span, 0.0, 1.0).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = n
    f = f.reshape(shape)
    return np.take(arr, lo, axis=axis) * (1 - f) + np.take(arr, hi, axis=axis) * f


def main(argv: list[str] | None = None) -> int:
    """Rebuild ``assets/synth/lung_template.npz`` from ``../shared/data`` (lung1)."""
    p = argparse.ArgumentParser(prog="python -m inference.synth.lungshape", description=main.__doc__)
    p.add_argument("--out", type=Path, default=None, help="output .npz (default: the committed asset path)")
    args = p.parse_args(argv)
    t = build_template()
    out = args.out or template_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, sd=t.sd, origin=t.origin, step=t.step, extent=t.extent, source=t.source)
    print(f"{out}: {t.sd.shape} int8, extent {np.round(t.extent, 1)} mm, {out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
