"""Nodules and label-free mimics rendered onto a synthetic study's grid.

Nodule types (by CT texture): ``solid`` (0..60 HU), ``part-solid`` (ground glass with a solid core),
``ground-glass`` (-750..-400 HU). Morphology (``round``, ``lobulated``, ``spiculated``) picks a LIDC reader
shape with matching ratings; spiculated ones get extra thin spicules (outlines lose them). Location:
``isolated`` (≥ 4 mm from pleura), ``juxtapleural`` (touching the pleura, flattened against it: the shape is
clipped to the lung), ``juxtavascular`` (abutting a pulmonary artery) and ``perifissural`` (on a fissure; only
with the ``real`` anatomy, which has fissures). Blending takes the maximum of
lesion and background so vessels stay visible through ground glass, as in real GGOs.

Mimics carry no label: calcified granulomas (> 200 HU), small linear scars, and (inherently) vessels
seen end-on.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from inference.synth.grid import Grid, capsule_occupancy
from inference.synth.nodules import ShapeLibrary, random_rotation, sample_sdf

TEXTURES = ("solid", "part-solid", "ground-glass")
MORPHOLOGIES = ("round", "lobulated", "spiculated")
LOCATIONS = ("isolated", "juxtapleural", "juxtavascular", "perifissural")


class LungSites:
    """Candidate positions inside the lungs with their distance to the pleura (mm)."""

    def __init__(self, lung: np.ndarray, grid: Grid, step_mm: float = 3.0):
        steps = [max(1, int(round(step_mm / s))) for s in grid.spacing]
        sub = lung[:: steps[0], :: steps[1], :: steps[2]] > 0.5
        sampling = [s * st for s, st in zip(grid.spacing, steps)]
        dist = ndi.distance_transform_edt(sub, sampling=sampling)
        kji = np.argwhere(sub)
        self.xyz = grid.to_mm(kji * np.array(steps, float))
        self.dist = dist[sub]

    def pick(self, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray | None:
        """A random site whose pleural distance lies in ``[lo, hi]``, jittered within a voxel."""
        idx = np.flatnonzero((self.dist >= lo) & (self.dist <= hi))
        if len(idx) == 0:
            return None
        return self.xyz[int(rng.choice(idx))] + rng.uniform(-1.0, 1.0, 3)


def nodule_occupancy(
    grid: Grid, center: np.ndarray, diameter: float, lib: ShapeLibrary, idx: int, rng: np.random.Generator,
    spiculated: bool = False,
) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray] | None:
    """Partial-volume occupancy and signed distance (mm) of a nodule over its box.

    The shape is sampled on sub-planes spanning each slice's thickness and averaged (partial volume along
    z); in plane the edge is a one-pixel linear ramp.
    """
    r = diameter / 2.0
    rot = random_rotation(rng)
    stretch = rng.uniform(0.9, 1.1, 3)
    ext = max(lib.extent(idx) * 1.1, 1.9 if spiculated else 0.0) * r + grid.thickness + max(grid.spacing)
    box = grid.bbox(center - ext, center + ext)
    if box is None:
        return None
    z, y, x = grid.local_axes(box)
    shape = (len(z), y.shape[1], x.shape[2])
    nsub = max(1, int(np.ceil(grid.thickness / (0.5 * grid.spacing[2]))))
    offs = (np.arange(nsub) + 0.5) / nsub - 0.5
    h = 0.5 * (grid.spacing[1] + grid.spacing[2])
    occ = np.zeros(shape, np.float32)
    sdf_mid = None
    for o in offs:
        pts = np.stack(np.broadcast_arrays(x - center[0], y - center[1], z + o * grid.thickness - center[2]), -1)
        sdf = sample_sdf(lib, idx, pts, r, rot, stretch)
        occ += np.clip(0.5 - sdf / h, 0, 1)
        if sdf_mid is None or abs(o) < 1e-9 or (nsub % 2 == 0 and o == offs[nsub // 2]):
            sdf_mid = sdf
    occ /= nsub
    if spiculated:
        for _ in range(int(rng.integers(5, 12))):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            a = center + d * r * 0.6
            b = center + d * r * float(rng.uniform(1.3, 1.9))
            res = capsule_occupancy(grid, a, b, float(rng.uniform(0.5, 0.9)), 0.25)
            if res is None:
                continue
            sbox, socc = res
            sub = tuple(slice(max(s.start, bb.start) - bb.start, min(s.stop, bb.stop) - bb.start)
                        for s, bb in zip(sbox, box))
            src = tuple(slice(max(s.start, bb.start) - s.start, min(s.stop, bb.stop) - s.start)
                        for s, bb in zip(sbox, box))
            np.maximum(occ[sub], socc[src], out=occ[sub])
    return box, occ, sdf_mid.astype(np.float32)


def nodule_hu(texture: str, sdf: np.ndarray, diameter: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Lesion HU over the box for ``texture``; returns ``(hu, solid_core_fraction)``."""
    smooth = ndi.gaussian_filter(rng.normal(size=sdf.shape).astype(np.float32), 1.5)
    smooth /= smooth.std() + 1e-6
    solid = float(rng.uniform(15.0, 55.0)) + 8.0 * smooth
    if texture == "solid":
        return solid, 1.0
    ggo = float(rng.uniform(-700.0, -450.0)) + 30.0 * smooth
    if texture == "ground-glass":
        return ggo, 0.0
    frac = float(rng.uniform(0.3, 0.65))
    core = np.clip(0.5 - (sdf + (1 - frac) * diameter / 2) / 1.0, 0, 1)
    return ggo + core * (solid - ggo), frac


def granuloma(grid: Grid, center: np.ndarray, rng: np.random.Generator):
    """A calcified granuloma (dense, 2..6 mm): ``(box, occupancy, HU)``."""
    d = float(rng.uniform(2.0, 6.0))
    res = capsule_occupancy(grid, center, center + 0.01, d / 2, d / 2)
    return res, float(rng.uniform(350.0, 1000.0)), d


def scar(grid: Grid, center: np.ndarray, rng: np.random.Generator):
    """A thin linear scar (fibrotic band): ``(box, occupancy, HU)``."""
    d = rng.normal(size=3)
    d[2] *= 0.3
    d /= np.linalg.norm(d)
    length = float(rng.uniform(8.0, 25.0))
    res = capsule_occupancy(grid, center - d * length / 2, center + d * length / 2,
                            float(rng.uniform(0.6, 1.3)), float(rng.uniform(0.3, 0.8)))
    return res, float(rng.uniform(-250.0, 20.0)), length


def blend_max(hu: np.ndarray, box, occ: np.ndarray, value: np.ndarray | float) -> None:
    """Composite a lesion: ``hu += occ * (max(value, hu) - hu)`` so denser background (vessels) remains."""
    view = hu[box]
    view += occ * (np.maximum(value, view) - view)
