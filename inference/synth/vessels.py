"""Space-filling bronchovascular trees: bronchi with their companion arteries, and pulmonary veins.

Growth follows the volume-filling algorithm used for lung airway models (Tawhai et al., 2000): a branch
heads from its parent's end toward the centroid of its territory (points sampled in the lung), the
territory is split in two by a plane through the centroid, and each half seeds a child. Radii follow
Murray's law from the number of territory points each branch feeds, so vessels taper from the hila to the
periphery and end-on cross-sections of all calibres appear in axial slices (the classic nodule mimic).
Arteries run alongside the bronchi (offset by the two radii); veins form a separate tree draining to the
left atrium and run between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.synth.grid import Grid, capsule_occupancy, paint, paint_max


@dataclass
class Tree:
    """Segments of a tree: ``start``/``end`` (N, 3) mm, ``radius`` (N,) mm at the start, ``parent`` (N,)
    index (-1 for the root), ``depth`` (N,) generation, ``leaf`` (N,) bool."""

    start: np.ndarray
    end: np.ndarray
    radius: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    leaf: np.ndarray

    def __len__(self) -> int:
        return len(self.radius)


def grow_tree(
    root: np.ndarray,
    first_dir: np.ndarray,
    points: np.ndarray,
    r_root: float,
    rng: np.random.Generator,
    *,
    n_leaf: int = 2,
    fraction: float = 0.42,
    murray: float = 2.7,
) -> Tree:
    """Grow a tree from ``root`` into the territory ``points`` ((M, 3) mm).

    Args:
        root: Start of the first segment (the hilum).
        first_dir: Direction the root segment leaves in (used to orient the first split).
        points: Territory samples (uniform in the lung this tree feeds).
        r_root: Radius of the root segment (mm).
        n_leaf: Territories with at most this many points become terminal branches.
        fraction: Branch length as a fraction of the distance to the territory centroid.
        murray: Exponent of Murray's law (radius ∝ territory size ^ (1 / murray)).
    """
    total = len(points)
    starts, ends, radii, parents, depths, leaves = [], [], [], [], [], []
    stack = [(np.asarray(root, float), np.asarray(first_dir, float), points, -1, 0)]
    while stack:
        p0, pdir, pts, parent, depth = stack.pop()
        n = len(pts)
        c = pts.mean(axis=0)
        v = c - p0
        dist = float(np.linalg.norm(v)) + 1e-6
        leaf = n <= n_leaf or depth > 22
        if depth == 0:
            end = p0 + v * 0.35
        else:
            d = v / dist
            # limit the branching angle to ~65 degrees from the parent direction
            cosang = float(d @ pdir)
            if cosang < 0.42:
                d = d + (0.42 - cosang) * 1.5 * pdir
                d /= np.linalg.norm(d)
            length = dist if leaf else max(fraction * dist, 1.5)
            end = p0 + d * length * float(rng.uniform(0.85, 1.1))
        r = max(r_root * (n / total) ** (1.0 / murray), 0.5)
        idx = len(radii)
        starts.append(p0)
        ends.append(end)
        radii.append(r)
        parents.append(parent)
        depths.append(depth)
        leaves.append(leaf)
        if leaf:
            continue
        seg = end - p0
        seg /= np.linalg.norm(seg) + 1e-9
        q = pts - c
        q_perp = q - np.outer(q @ seg, seg)
        cov = q_perp.T @ q_perp
        axis = np.linalg.eigh(cov)[1][:, -1]
        side = q_perp @ axis > 0
        if side.all() or not side.any():
            side = np.arange(n) % 2 == 0
        for sub in (pts[side], pts[~side]):
            stack.append((end, seg, sub, idx, depth + 1))
    return Tree(
        np.array(starts), np.array(ends), np.array(radii), np.array(parents), np.array(depths), np.array(leaves)
    )


def offset_tree(tree: Tree, gap: np.ndarray, up: np.ndarray) -> Tree:
    """A companion tree displaced sideways by ``gap`` (N,) mm per segment (arteries beside bronchi).

    The displacement at a node is perpendicular to the segment ending there, so children join their parent.
    """
    d = tree.end - tree.start
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-9
    side = np.cross(d, up)
    bad = np.linalg.norm(side, axis=1) < 0.2
    side[bad] = np.cross(d[bad], np.array([1.0, 0.0, 0.0]))
    side /= np.linalg.norm(side, axis=1, keepdims=True) + 1e-9
    end_off = side * gap[:, None]
    start_off = np.where(tree.parent[:, None] >= 0, end_off[np.maximum(tree.parent, 0)], end_off)
    return Tree(tree.start + start_off, tree.end + end_off, tree.radius.copy(), tree.parent, tree.depth, tree.leaf)


def render_tree(
    hu: np.ndarray,
    grid: Grid,
    tree: Tree,
    value: float,
    *,
    radius_scale: float = 1.0,
    min_radius: float = 0.0,
    taper_leaf: float = 0.45,
    mask: np.ndarray | None = None,
    value_fn=None,
) -> None:
    """Paint the tree's segments into ``hu`` (in place); optionally accumulate occupancy into ``mask``.

    Args:
        value: HU inside the tubes (or ``value_fn(radius) -> HU`` when given).
        radius_scale: Multiplier of all radii (bronchial lumen vs wall).
        min_radius: Segments thinner than this are skipped.
        taper_leaf: Terminal segments narrow to this fraction of their radius.
    """
    child_r = np.full(len(tree), np.nan)
    has_parent = tree.parent >= 0
    # end radius of a segment = radius of its largest child (smooth calibre along the path)
    np.fmax.at(child_r, tree.parent[has_parent], tree.radius[has_parent])
    for i in range(len(tree)):
        r0 = tree.radius[i] * radius_scale
        if r0 < min_radius:
            continue
        r1 = r0 * taper_leaf if tree.leaf[i] else (child_r[i] * radius_scale if np.isfinite(child_r[i]) else r0)
        res = capsule_occupancy(grid, tree.start[i], tree.end[i], r0, max(r1, 0.2))
        if res is None:
            continue
        box, occ = res
        paint(hu, box, occ, value_fn(r0) if value_fn else value)
        if mask is not None:
            paint_max(mask, box, occ)


def territory_points(lung: np.ndarray, grid: Grid, side: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform in one lung (``side`` -1 right / +1 left) from a lung occupancy map on ``grid``."""
    _, _, x = grid.axes()
    step = max(1, int(round(6.0 / max(grid.spacing))))
    sub = lung[::step, ::step, ::step] > 0.5
    kji = np.argwhere(sub) * step
    xyz = grid.to_mm(kji.astype(float))
    xyz = xyz[np.sign(xyz[:, 0] - 6.0) == side]
    if len(xyz) == 0:
        return xyz
    pick = rng.choice(len(xyz), size=min(n, len(xyz)), replace=len(xyz) < n)
    jitter = rng.uniform(-0.5, 0.5, (len(pick), 3)) * step * np.asarray(grid.spacing[::-1])
    _ = x
    return xyz[pick] + jitter
