"""Geometry helpers of the nodule models (numpy/scipy only): resampling, HU window, lung mask, measurements.

Training (``inference/training/nodule``) and serving (``inference/models/nodule.py``) both call these, so
the network sees identically prepared voxels in both places.

Grids: a volume with spacing ``s`` (z, y, x) is resampled to the model spacing ``m`` so that voxel centre 0
stays voxel centre 0: model voxel ``q`` sits at original fractional index ``q * m / s``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from inference.volume import Volume

AIR_HU = -320.0  # lung parenchyma / air threshold
SOLID_HU = -250.0  # voxels denser than this count as solid for the texture class


def model_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...]) -> tuple[int, ...]:
    """Shape of ``shape`` voxels at ``spacing`` resampled to ``target`` (centre-0 aligned)."""
    return tuple(max(1, int(np.floor((n - 1) * s / t)) + 1) for n, s, t in zip(shape, spacing, target))


def resample(
    arr: np.ndarray,
    spacing: tuple[float, ...],
    target: tuple[float, ...],
    *,
    order: int = 1,
    out_shape: tuple[int, ...] | None = None,
    cval: float = 0.0,
) -> np.ndarray:
    """Resample ``arr`` (at ``spacing``) onto the grid with spacing ``target`` (voxel 0 centres aligned).

    Args:
        arr: 3-D array.
        spacing: its spacing (z, y, x) mm.
        target: the new spacing (z, y, x) mm.
        order: spline order (0 nearest, 1 linear).
        out_shape: output shape (default: as many voxels as fit, ``model_shape``).
        cval: value outside the input.

    Returns:
        float32 array (``order`` > 0) or an array of ``arr``'s dtype (``order`` 0).
    """
    scale = np.asarray(target, float) / np.asarray(spacing, float)
    shape = out_shape or model_shape(arr.shape, spacing, target)
    dtype = arr.dtype if order == 0 else np.float32
    src = arr if order == 0 or arr.dtype == np.float32 else arr.astype(np.float32)
    if np.allclose(scale, 1.0) and tuple(shape) == arr.shape:
        return src.astype(dtype, copy=True)
    out = np.empty(shape, dtype)
    step = 48  # z chunks bound the temporary memory of affine_transform
    for z0 in range(0, shape[0], step):
        z1 = min(shape[0], z0 + step)
        ndi.affine_transform(
            src, scale, offset=(z0 * scale[0], 0.0, 0.0), output_shape=(z1 - z0, *shape[1:]),
            output=out[z0:z1], order=order, mode="constant", cval=cval, prefilter=False,
        )
    return out


def window(hu: np.ndarray, hu_window: tuple[float, float] | list[float]) -> np.ndarray:
    """Clip HU to the window and scale to [0, 1] (float32)."""
    lo, hi = float(hu_window[0]), float(hu_window[1])
    out = (np.asarray(hu, np.float32) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def lung_mask(volume: Volume, *, min_ml: float = 30.0) -> np.ndarray:
    """A robust lung mask (HU threshold + morphology) on the volume's own grid.

    Air below -320 HU that does not touch the border of its axial slice (outside air) and belongs to a
    3-D component of at least ``min_ml`` millilitres; holes (vessels, nodules) are filled slice by slice
    and the surface is closed with a ~6 mm ball so that juxtapleural nodules lie inside.

    Args:
        volume: the CT volume.
        min_ml: smallest air component kept (removes bowel gas and small bubbles).

    Returns:
        bool array of ``volume.shape``; all False when no lung is found.
    """
    hu = volume.hu
    air = hu < AIR_HU
    body_air = np.zeros_like(air)
    for k in range(air.shape[0]):
        lab, n = ndi.label(air[k])
        if n == 0:
            continue
        border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        inside = np.ones(n + 1, bool)
        inside[border] = False
        inside[0] = False
        body_air[k] = inside[lab]
    lab, n = ndi.label(body_air)
    if n == 0:
        return body_air
    vox_ml = float(np.prod(volume.spacing_mm)) / 1000.0
    sizes = np.bincount(lab.ravel())[1:] * vox_ml
    keep = np.zeros(n + 1, bool)
    keep[1:] = sizes >= min(min_ml, sizes.max())
    mask = keep[lab]
    closed = mask | _coarse_closing(mask, volume.spacing_mm, 6.0)
    for k in range(closed.shape[0]):
        closed[k] = ndi.binary_fill_holes(closed[k])
    return closed


def _coarse_closing(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Binary closing with a ball of ``radius_mm``, computed on a 2x coarser grid (8x fewer voxels)."""
    f = 2 if min(mask.shape) >= 16 else 1
    pad = [(0, (-n) % f) for n in mask.shape]
    m = np.pad(mask, pad)
    nz, ny, nx = (n // f for n in m.shape)
    coarse = m.reshape(nz, f, ny, f, nx, f).any(axis=(1, 3, 5))
    r = [max(1, int(round(radius_mm / (s * f)))) for s in spacing]
    zz, yy, xx = np.ogrid[-r[0] : r[0] + 1, -r[1] : r[1] + 1, -r[2] : r[2] + 1]
    ball = (zz / r[0]) ** 2 + (yy / r[1]) ** 2 + (xx / r[2]) ** 2 <= 1.0
    padded = np.pad(coarse, [(x, x) for x in r], mode="edge")
    c = ndi.binary_closing(padded, structure=ball)[r[0] : -r[0], r[1] : -r[1], r[2] : -r[2]]
    up = c.repeat(f, 0).repeat(f, 1).repeat(f, 2)
    return up[: mask.shape[0], : mask.shape[1], : mask.shape[2]]


def crop_box(mask: np.ndarray, spacing: tuple[float, ...], margin_mm: float, multiple: int = 1) -> tuple[slice, ...]:
    """Bounding box of ``mask`` plus ``margin_mm`` (the whole array when empty), sides rounded up to
    ``multiple`` where the array allows."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    idx = np.argwhere(mask)
    out = []
    for ax, n in enumerate(mask.shape):
        m = int(np.ceil(margin_mm / spacing[ax]))
        lo, hi = max(0, int(idx[:, ax].min()) - m), min(n, int(idx[:, ax].max()) + m + 1)
        extra = (-(hi - lo)) % multiple
        hi = min(n, hi + extra)
        lo = max(0, lo - ((-(hi - lo)) % multiple))
        out.append(slice(lo, hi))
    return tuple(out)


def long_axis_mm(kji: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Longest in-plane diameter (mm) on the axial slice where the lesion is largest (Lung-RADS style)."""
    if len(kji) == 0:
        return 0.0
    ks, counts = np.unique(kji[:, 0], return_counts=True)
    pixel = np.asarray(spacing[1:], float)
    pts = kji[kji[:, 0] == ks[np.argmax(counts)], 1:] * pixel
    if len(pts) > 1500:
        pts = pts[:: len(pts) // 1500 + 1]
    d = float(np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max()) if len(pts) > 1 else 0.0
    return d + float(pixel.mean())


def texture_of(hu_values: np.ndarray) -> str:
    """``solid`` / ``part-solid`` / ``ground-glass`` from the fraction of voxels denser than -250 HU."""
    if hu_values.size == 0:
        return "solid"
    frac = float((hu_values > SOLID_HU).mean())
    if frac >= 0.55:
        return "solid"
    if frac <= 0.08:
        return "ground-glass"
    return "part-solid"


def extract_patch(image: np.ndarray, center: tuple[int, int, int] | np.ndarray, size: tuple[int, ...],
                  pad_value: float = 0.0) -> np.ndarray:
    """A ``size`` patch of ``image`` centred on ``center`` (padded with ``pad_value`` outside)."""
    c = np.round(np.asarray(center)).astype(int)
    lo = c - np.asarray(size) // 2
    out = np.full(size, pad_value, dtype=image.dtype)
    src, dst = [], []
    for a, n in enumerate(image.shape):
        s0, s1 = max(0, lo[a]), min(n, lo[a] + size[a])
        if s1 <= s0:
            return out
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo[a], s1 - lo[a]))
    out[tuple(dst)] = image[tuple(src)]
    return out
