"""Pulmonary emboli: filling defects (10..60 HU) inside opacified pulmonary arteries.

An embolus is a chain of capsules along an artery's centreline (following the largest child at branch
points), clipped to the artery lumen:

* ``occlusive``: the clot fills the lumen over its length (abrupt cut-off of the contrast column);
* ``partial``: a central clot with a rim of contrast around it ("polo mint" end-on, "railway track" in
  profile) or an eccentric mural clot touching one wall;
* ``saddle``: a partial clot straddling the bifurcation of the pulmonary trunk into both main arteries.
"""

from __future__ import annotations

import numpy as np

from inference.synth.grid import Grid, capsule_occupancy
from inference.synth.vessels import Tree

LEVELS = ("central", "lobar", "segmental")


def embolus_path(tree: Tree, rng: np.random.Generator, level: str, length_mm: float) -> list[tuple]:
    """Capsules ``(a, b, r_vessel)`` along the tree from a random segment of the requested level."""
    r, d = tree.radius, tree.depth
    if level == "lobar":
        ok = (d >= 1) & (d <= 3) & (r >= 3.0)
    elif level == "segmental":
        ok = (d >= 3) & (r >= 1.6) & (r < 3.2)
    else:
        ok = d <= 1
    cand = np.flatnonzero(ok & ~tree.leaf)
    if len(cand) == 0:
        cand = np.flatnonzero(~tree.leaf)
    i = int(rng.choice(cand))
    children = {}
    for c, p in enumerate(tree.parent):
        if p >= 0:
            children.setdefault(int(p), []).append(c)
    path, total = [], 0.0
    t0 = float(rng.uniform(0.0, 0.4))
    while i >= 0 and total < length_mm:
        a, b = tree.start[i], tree.end[i]
        a = a + t0 * (b - a)
        t0 = 0.0
        seg = float(np.linalg.norm(b - a))
        if total + seg > length_mm:
            b = a + (b - a) * (length_mm - total) / max(seg, 1e-6)
        path.append((a, b, float(tree.radius[i])))
        total += seg
        kids = children.get(i, [])
        i = max(kids, key=lambda c: tree.radius[c]) if kids else -1
    return path


def embolus_occupancy(
    grid: Grid, path: list[tuple], artery: np.ndarray, occlusive: bool, rng: np.random.Generator
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Clot occupancy (0..1) over a box, limited to the artery lumen (``artery`` uint8 occupancy 0..255)."""
    pieces = []
    side = rng.normal(size=3)
    eccentric = (not occlusive) and rng.random() < 0.4
    for a, b, rv in path:
        if occlusive:
            ra = rb = rv * 1.3
            off = np.zeros(3)
        else:
            ra = rb = rv * float(rng.uniform(0.45, 0.65))
            d = (b - a) / (np.linalg.norm(b - a) + 1e-9)
            perp = side - (side @ d) * d
            perp /= np.linalg.norm(perp) + 1e-9
            off = perp * rv * 0.45 if eccentric else np.zeros(3)
        res = capsule_occupancy(grid, a + off, b + off, ra, rb * 0.8)
        if res is not None:
            pieces.append(res)
    if not pieces:
        return None
    lo = [min(p[0][ax].start for p in pieces) for ax in range(3)]
    hi = [max(p[0][ax].stop for p in pieces) for ax in range(3)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    occ = np.zeros([b - a for a, b in zip(lo, hi)], np.float32)
    for pbox, pocc in pieces:
        sub = tuple(slice(pb.start - a, pb.stop - a) for pb, a in zip(pbox, lo))
        np.maximum(occ[sub], pocc, out=occ[sub])
    np.minimum(occ, artery[box].astype(np.float32) / 255.0, out=occ)
    return box, occ  # type: ignore[return-value]


def clot_texture(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Clot HU: 10..60 with mild heterogeneity (fresher clot denser)."""
    base = float(rng.uniform(22.0, 50.0))
    return (base + rng.normal(0.0, 5.0, shape)).clip(10.0, 60.0).astype(np.float32)
