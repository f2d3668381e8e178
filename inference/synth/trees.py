"""Lobar vessel and airway trees grown by space colonisation, with Murray's-law radii.

Growth (Runions et al., 2007, as used for vascular and airway models): attraction points are sampled in a
lobe; each step, every attraction point pulls the tree node nearest to it (within ``influence`` mm); a
pulled node sprouts one new node ``step`` mm along the mean pull direction (plus a little tortuosity);
attraction points closer than ``kill`` mm to the tree are consumed. Trees therefore start at the hilum,
curve, bifurcate where the attraction splits, and stop within a few mm of the pleura and the fissures.

Radii follow Murray's law from the leaves inward (``r_parent ** gamma = sum r_child ** gamma``, gamma ~ 2.8,
leaves ~0.5 mm), so calibre falls smoothly from ~5-7 mm in lobar arteries to sub-millimetre at the
periphery. The result is a ``vessels.Tree`` of short segments (``depth`` = bifurcation generation, counted
from 1 at the lobar root), which the emboli and nodule placement code use unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from inference.synth.vessels import Tree


def colonise(
    root: np.ndarray,
    attractors: np.ndarray,
    rng: np.random.Generator,
    *,
    step: float = 3.0,
    influence: float = 22.0,
    kill: float = 4.5,
    max_iter: int = 160,
    tortuosity: float = 0.08,
) -> tuple[np.ndarray, np.ndarray]:
    """Grow nodes from ``root`` toward ``attractors`` ((M, 3) mm).

    Returns:
        ``(nodes (N, 3), parent (N,))`` with ``parent[0] == -1`` and parents before children.
    """
    cap = 4096
    nodes = np.zeros((cap, 3))
    parent = np.full(cap, -1)
    nodes[0] = root
    n = 1
    pts = np.asarray(attractors, float)
    for _ in range(max_iter):
        if len(pts) == 0:
            break
        tree = cKDTree(nodes[:n])
        dist, idx = tree.query(pts, distance_upper_bound=influence)
        near = np.isfinite(dist)
        if not near.any():
            # nothing in reach: extend the node closest to any attraction point straight toward it
            d2, i2 = tree.query(pts)
            j = int(np.argmin(d2))
            src = np.array([i2[j]])
            pull = (pts[j] - nodes[i2[j]])[None]
        else:
            v = pts[near] - nodes[idx[near]]
            v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-9
            src, inv = np.unique(idx[near], return_inverse=True)
            pull = np.zeros((len(src), 3))
            np.add.at(pull, inv, v)
        pull /= np.linalg.norm(pull, axis=1, keepdims=True) + 1e-9
        pull += rng.normal(0.0, tortuosity, pull.shape)
        pull /= np.linalg.norm(pull, axis=1, keepdims=True) + 1e-9
        cand = nodes[src] + step * pull
        dd, _ = tree.query(cand)
        ok = dd >= 0.55 * step  # else it would duplicate an existing branch
        if not ok.any():
            break
        cand, src = cand[ok], src[ok]
        if n + len(cand) > cap:
            cap = 2 * (n + len(cand))
            nodes = np.resize(nodes, (cap, 3))
            parent = np.resize(parent, cap)
        nodes[n : n + len(cand)] = cand
        parent[n : n + len(cand)] = src
        n += len(cand)
        kd, _ = cKDTree(cand).query(pts, distance_upper_bound=kill)
        pts = pts[~np.isfinite(kd)]
    return nodes[:n].copy(), parent[:n].copy()


def murray_radii(parent: np.ndarray, r_leaf: float, gamma: float = 2.8) -> np.ndarray:
    """Node radii: leaves ``r_leaf``, inner nodes ``(sum child r ** gamma) ** (1 / gamma)``."""
    n = len(parent)
    acc = np.zeros(n)
    has_child = np.zeros(n, bool)
    has_child[parent[parent >= 0]] = True
    acc[~has_child] = r_leaf**gamma
    for i in range(n - 1, 0, -1):  # children come after their parents
        acc[parent[i]] += acc[i]
    return acc ** (1.0 / gamma)


def to_tree(nodes: np.ndarray, parent: np.ndarray, radius: np.ndarray, depth0: int = 1) -> Tree:
    """Segments parent → node (radius of the node's subtree), generation counted at bifurcations."""
    n = len(nodes)
    kids = np.bincount(parent[parent >= 0], minlength=n)
    gen = np.zeros(n, int)
    gen[0] = depth0
    for i in range(1, n):
        p = parent[i]
        gen[i] = gen[p] + (1 if kids[p] >= 2 else 0)
    seg = np.arange(1, n)
    # segment index of each node's parent segment (node p's segment is p - 1; root has none)
    seg_parent = np.where(parent[seg] > 0, parent[seg] - 1, -1)
    return Tree(nodes[parent[seg]], nodes[seg], radius[seg], seg_parent, gen[seg], kids[seg] == 0)


def merge(trees: list[Tree]) -> Tree:
    """One ``Tree`` from several (parent indices shifted)."""
    off, parts = 0, []
    for t in trees:
        parts.append((t, off))
        off += len(t)
    return Tree(
        np.concatenate([t.start for t, _ in parts]), np.concatenate([t.end for t, _ in parts]),
        np.concatenate([t.radius for t, _ in parts]),
        np.concatenate([np.where(t.parent >= 0, t.parent + o, -1) for t, o in parts]),
        np.concatenate([t.depth for t, _ in parts]), np.concatenate([t.leaf for t, _ in parts]),
    )


def companion(tree: Tree, gap: np.ndarray, rng: np.random.Generator) -> Tree:
    """A tree running alongside ``tree`` at ``gap`` (N,) mm, on a side that turns slowly along the paths
    (bronchi beside their arteries). Children start where their parent ends."""
    n = len(tree)
    ref = np.zeros((n, 3))
    base = rng.normal(size=3)
    base /= np.linalg.norm(base)
    for i in range(n):
        p = tree.parent[i]
        prev = ref[p] if p >= 0 else base
        d = tree.end[i] - tree.start[i]
        d /= np.linalg.norm(d) + 1e-9
        side = prev - (prev @ d) * d
        nn = np.linalg.norm(side)
        if nn < 1e-3:
            side = np.cross(d, [0.0, 0.0, 1.0])
            nn = np.linalg.norm(side) + 1e-9
        ref[i] = side / nn
    end_off = ref * gap[:, None]
    start_off = np.where(tree.parent[:, None] >= 0, end_off[np.maximum(tree.parent, 0)], end_off)
    return Tree(tree.start + start_off, tree.end + end_off, tree.radius.copy(), tree.parent, tree.depth, tree.leaf)


def subtree(tree: Tree, keep: np.ndarray) -> Tree:
    """Segments where ``keep`` (N,) holds, with parents re-indexed (dropped parents become roots)."""
    idx = np.flatnonzero(keep)
    remap = np.full(len(tree), -1)
    remap[idx] = np.arange(len(idx))
    par = tree.parent[idx]
    newp = np.where(par >= 0, remap[np.maximum(par, 0)], -1)
    return Tree(tree.start[idx], tree.end[idx], tree.radius[idx], newp, tree.depth[idx], tree.leaf[idx])
