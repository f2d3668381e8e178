"""The sampling grid of a synthetic study and partial-volume rasterisation of tubes (capsules).

Body coordinates are LPS millimetres (x to the patient's left, y posterior, z superior) with the carina at
z = 0 and the body centre at x = y = 0. The grid is axis-aligned (identity direction), voxel ``(k, j, i)``
centre at ``origin + (i*sx, j*sy, k*sz)``.

Partial volume: a voxel's occupancy is ``clip(0.5 - signed_distance / w, 0, 1)`` where ``w`` is the voxel's
extent along the surface normal (pixel size in plane, slice thickness along z), the linear approximation
of the box average of the voxel over the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Axis-aligned voxel grid in body millimetres."""

    shape: tuple[int, int, int]  # (nz, ny, nx)
    spacing: tuple[float, float, float]  # (sz, sy, sx) mm
    origin: tuple[float, float, float]  # (x, y, z) mm of voxel (0, 0, 0)
    thickness: float  # reconstructed slice thickness (>= sz means no gap)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D float32 coordinates (z, y, x) of voxel centres."""
        nz, ny, nx = self.shape
        sz, sy, sx = self.spacing
        ox, oy, oz = self.origin
        return (
            (oz + sz * np.arange(nz)).astype(np.float32),
            (oy + sy * np.arange(ny)).astype(np.float32),
            (ox + sx * np.arange(nx)).astype(np.float32),
        )

    def to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Body mm ``(x, y, z)`` → fractional ``(k, j, i)``."""
        p = np.asarray(xyz, dtype=np.float64)
        o = np.asarray(self.origin)
        s = np.asarray(self.spacing[::-1])
        return ((p - o) / s)[..., ::-1]

    def to_mm(self, kji: np.ndarray) -> np.ndarray:
        """Fractional ``(k, j, i)`` → body mm ``(x, y, z)``."""
        v = np.asarray(kji, dtype=np.float64)[..., ::-1]
        return np.asarray(self.origin) + v * np.asarray(self.spacing[::-1])

    def bbox(self, lo_xyz: np.ndarray, hi_xyz: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Voxel slices covering the mm box, or ``None`` when it misses the grid."""
        lo = np.floor(self.to_voxel(lo_xyz)).astype(int)
        hi = np.ceil(self.to_voxel(hi_xyz)).astype(int) + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.shape)
        if np.any(hi <= lo):
            return None
        return tuple(slice(a, b) for a, b in zip(lo, hi))  # type: ignore[return-value]

    def local_axes(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable mm coordinates ``(z[:,None,None], y[None,:,None], x[None,None,:])`` of a box."""
        z, y, x = self.axes()
        return z[box[0], None, None], y[None, box[1], None], x[None, None, box[2]]


def capsule_occupancy(
    grid: Grid, a: np.ndarray, b: np.ndarray, ra: float, rb: float, margin: float = 0.0
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Partial-volume occupancy of a tapered tube from ``a`` to ``b`` (mm) with radii ``ra`` → ``rb``.

    Returns:
        ``(box, occupancy)`` with float32 occupancy in 0..1 over ``box``, or ``None`` off-grid.
    """
    r = max(ra, rb)
    pad = r + grid.thickness + margin + 1.0
    box = grid.bbox(np.minimum(a, b) - pad, np.maximum(a, b) + pad)
    if box is None:
        return None
    z, y, x = grid.local_axes(box)
    d = (b - a).astype(np.float32)
    ll = float(d @ d) or 1e-6
    t = ((x - a[0]) * d[0] + (y - a[1]) * d[1] + (z - a[2]) * d[2]) * (1.0 / ll)
    np.clip(t, 0.0, 1.0, out=t)
    dx = x - (a[0] + t * d[0])
    dy = y - (a[1] + t * d[1])
    dz = z - (a[2] + t * d[2])
    dxy2 = dx * dx + dy * dy
    dz2 = dz * dz
    dist = np.sqrt(dxy2 + dz2) + 1e-6
    sz, sy, sx = grid.spacing
    h = 0.5 * (sx + sy)
    # voxel extent along the normal: in-plane pixel size and slice thickness, weighted by the normal
    w = np.sqrt((dxy2 * (h * h) + dz2 * (grid.thickness**2)) / (dist * dist)) + 0.05
    rad = ra + (rb - ra) * t
    occ = 0.5 - (dist - rad) / w
    np.clip(occ, 0.0, 1.0, out=occ)
    return box, occ.astype(np.float32, copy=False)


def paint(target: np.ndarray, box: tuple[slice, slice, slice], occ: np.ndarray, value: float | np.ndarray) -> None:
    """Composite ``value`` over ``target[box]`` with opacity ``occ`` (in place)."""
    view = target[box]
    view += occ * (value - view)


def paint_max(target: np.ndarray, box: tuple[slice, slice, slice], occ: np.ndarray) -> None:
    """``target[box] = max(target[box], occ)`` for occupancy accumulators (uint8 0..255 or float)."""
    view = target[box]
    if view.dtype == np.uint8:
        np.maximum(view, (occ * 255.0 + 0.5).astype(np.uint8), out=view)
    else:
        np.maximum(view, occ, out=view)


def _col(v: np.ndarray, i: int) -> np.ndarray:
    """Column ``i`` of ``v`` (N, 3) shaped (N, 1, 1, 1) for broadcasting over boxes."""
    return v[:, i, None, None, None]


_BUCKETS = np.array([3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 384, 512, 1024])


def tubes_occupancy(
    grid: Grid, a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Partial-volume occupancy of many tapered tubes at once, combined by maximum into a uint8 map.

    The same occupancy as ``capsule_occupancy`` per tube (a ``(N, 3)`` mm, ``ra``/``rb`` ``(N,)`` mm), but
    evaluated in batches of equally sized boxes (tens of thousands of small vessel segments in well under a
    second).

    Args:
        out: uint8 map on the grid to accumulate into (0..255), created when ``None``.

    Returns:
        The uint8 occupancy map (``out``).
    """
    if out is None:
        out = np.zeros(grid.shape, np.uint8)
    if len(a) == 0:
        return out
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    ra = np.asarray(ra, np.float64)
    rb = np.asarray(rb, np.float64)
    pad = np.maximum(ra, rb)[:, None] + grid.thickness + 1.0
    lo = np.floor(grid.to_voxel(np.minimum(a, b) - pad)).astype(int)
    hi = np.ceil(grid.to_voxel(np.maximum(a, b) + pad)).astype(int) + 1
    shape = np.asarray(grid.shape)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shape)
    ok = np.all(hi > lo, axis=1)
    size = _BUCKETS[np.searchsorted(_BUCKETS, hi - lo)]
    keys = size[:, 0] * 1_000_000 + size[:, 1] * 1000 + size[:, 2]
    z0, y0, x0 = grid.origin[2], grid.origin[1], grid.origin[0]
    sz, sy, sx = grid.spacing
    h = 0.5 * (sx + sy)
    flat = out.reshape(-1)
    for key in np.unique(keys[ok]):
        sel = np.flatnonzero(ok & (keys == key))
        pz, py, px = size[sel[0]]
        per = max(1, int(3_000_000 // (pz * py * px)))
        for c in range(0, len(sel), per):
            s = sel[c : c + per]
            kz = lo[s, 0, None] + np.arange(pz)
            jy = lo[s, 1, None] + np.arange(py)
            ix = lo[s, 2, None] + np.arange(px)
            z = (z0 + sz * kz).astype(np.float32)[:, :, None, None]
            y = (y0 + sy * jy).astype(np.float32)[:, None, :, None]
            x = (x0 + sx * ix).astype(np.float32)[:, None, None, :]
            A = a[s].astype(np.float32)
            d = (b[s] - a[s]).astype(np.float32)
            ll = np.maximum((d * d).sum(1), 1e-6)
            t = ((x - _col(A, 0)) * _col(d, 0) + (y - _col(A, 1)) * _col(d, 1) + (z - _col(A, 2)) * _col(d, 2)) / ll[
                :, None, None, None]
            np.clip(t, 0.0, 1.0, out=t)
            dx = x - (_col(A, 0) + t * _col(d, 0))
            dy = y - (_col(A, 1) + t * _col(d, 1))
            dz = z - (_col(A, 2) + t * _col(d, 2))
            dxy2 = dx * dx + dy * dy
            dz2 = dz * dz
            dist2 = dxy2 + dz2 + 1e-12
            dist = np.sqrt(dist2)
            w = np.sqrt((dxy2 * (h * h) + dz2 * (grid.thickness**2)) / dist2) + 0.05
            rad = ra[s].astype(np.float32)[:, None, None, None] + (rb[s] - ra[s]).astype(np.float32)[
                :, None, None, None] * t
            occ = np.clip(0.5 - (dist - rad) / w, 0.0, 1.0)
            valid = ((kz < shape[0])[:, :, None, None] & (jy < shape[1])[:, None, :, None]
                     & (ix < shape[2])[:, None, None, :])
            occ *= valid
            nz_ = occ > 0.002
            if not nz_.any():
                continue
            idx = ((np.minimum(kz, shape[0] - 1)[:, :, None, None] * shape[1]
                    + np.minimum(jy, shape[1] - 1)[:, None, :, None]) * shape[2]
                   + np.minimum(ix, shape[2] - 1)[:, None, None, :])
            idx = np.broadcast_to(idx, occ.shape)[nz_]
            val = (occ[nz_] * 255.0 + 0.5).astype(np.uint8)
            np.maximum.at(flat, idx, val)
    return out


def paint_occupancy(target: np.ndarray, occ: np.ndarray, value: float) -> np.ndarray:
    """Composite ``value`` over ``target`` where the uint8 occupancy ``occ`` is non-zero (in place).

    Returns:
        The flat indices painted.
    """
    idx = np.flatnonzero(occ)
    tf = target.reshape(-1)
    o = occ.reshape(-1)[idx].astype(np.float32) / 255.0
    tf[idx] += o * (value - tf[idx])
    return idx
