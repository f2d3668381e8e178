"""The ``real`` anatomy stages of a synthetic study: template lungs, lobes, lobar vessel and airway trees.

* lungs: ``lungshape`` (a real lung mask, deformed) inside the analytic rib cage, spine and diaphragm;
* lobes and fissures: ``lobes`` (oblique both sides, horizontal right), painted at full resolution;
* pulmonary arteries: one space-colonisation tree per lobe from the hilum (``trees``), Murray radii, joined
  to the pulmonary trunk; the arteries' occupancy goes to ``arteries`` (emboli are inserted there);
* bronchi: companions of the arteries down to ~2 mm calibre, air lumen with a soft-tissue wall, joined to
  the main bronchi at the hila;
* pulmonary veins: their own trees per lobe, grown toward points away from the arteries (veins run between
  the bronchoarterial bundles) and draining to the left atrium.
"""

from __future__ import annotations

import numpy as np

from inference.synth import anatomy as anat
from inference.synth import lobes, trees, vessels
from inference.synth.grid import Grid, capsule_occupancy, paint, paint_max, paint_occupancy, tubes_occupancy

WALL_HU = 30.0
DILATE_MM = 5.0


def lung_sd_fn(p: anat.Patient, rng: np.random.Generator):
    """A ``lung_sd(p, z, y, x)`` replacement: the warped real-lung template inside cage, spine, diaphragm."""
    from inference.synth.lungshape import load_template, lung_template_sd, sample_warp  # runnable as a module

    tmpl = load_template()
    z_low = 0.5 * (p.dome_r + p.dome_l) - 6.0
    warp = sample_warp(p.cav_a, p.cav_b, p.z_apex, z_low, rng, tmpl)

    def fn(p: anat.Patient, z, y, x):
        s = p.scale
        k = anat.cavity_scale(p, z)
        cav = anat._superellipse_sd(x, y - 8.0, (p.cav_a - 1.5) * k, (p.cav_b - 1.5) * k, 2.2)
        spine = 28.0 * s - np.sqrt(x * x + 0.7 * (y - (p.body_b - 0.6 * p.fat - 58.0 * s)) ** 2)
        dia = anat.diaphragm_z(p, x, y) - z
        # the template (grown by DILATE_MM: the analytic heart and great vessels carve the mediastinal side),
        # blended into the analytic lung toward the bases, below the template's last slice
        tm = lung_template_sd(tmpl, warp, z.ravel(), y.ravel(), x.ravel()) - DILATE_MM
        a = np.clip((z_low + 25.0 - z) / 40.0, 0.0, 1.0).astype(np.float32)
        out = tm * (1 - a) + anat.lung_sd(p, z, y, x) * a
        for part in (cav, spine, dia):
            out = np.maximum(out, part)
        return out

    return fn


def lobular_texture(hu_c: np.ndarray, lung_c: np.ndarray, cgrid: Grid, rng: np.random.Generator,
                    amplitude: float = 22.0, scale_mm: float = 12.0) -> None:
    """Low-frequency parenchymal heterogeneity (secondary-lobule scale, ±``amplitude`` HU) in place.

    Real lungs measure a wider parenchymal HU spread than smooth synthetic ones (5th percentile -914..-939 HU on
    lung1 and the LIDC slabs); noise drawn on a grid ``scale_mm / 2`` coarse, smoothed and interpolated.
    """
    from scipy import ndimage as ndi

    f = [max(1, int(round(0.5 * scale_mm / s))) for s in cgrid.spacing]
    shape = [n // k + 2 for n, k in zip(hu_c.shape, f)]
    small = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
    small /= small.std() + 1e-6
    field = ndi.zoom(small, [n / m for n, m in zip(hu_c.shape, shape)], order=1, grid_mode=True,
                     mode="nearest")[: hu_c.shape[0], : hu_c.shape[1], : hu_c.shape[2]]
    hu_c += lung_c * field * np.float32(amplitude)


def _attractors(lung_c: np.ndarray, cgrid: Grid, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Points on a jittered ``spacing_mm`` lattice inside the lungs (coarse occupancy >= 0.5)."""
    steps = [max(1, int(round(spacing_mm / s))) for s in cgrid.spacing]
    off = [int(rng.integers(st)) for st in steps]
    sub = lung_c[off[0] :: steps[0], off[1] :: steps[1], off[2] :: steps[2]] >= 0.5
    kji = np.argwhere(sub) * np.array(steps) + np.array(off)
    xyz = cgrid.to_mm(kji.astype(float))
    cell = np.array([steps[2] * cgrid.spacing[2], steps[1] * cgrid.spacing[1], steps[0] * cgrid.spacing[0]])
    return xyz + rng.uniform(-0.5, 0.5, xyz.shape) * cell


def _tube(hu, grid, a, b, r, value, mask=None) -> None:
    res = capsule_occupancy(grid, np.asarray(a, float), np.asarray(b, float), r, r)
    if res:
        paint(hu, res[0], res[1], value)
        if mask is not None:
            paint_max(mask, res[0], res[1])


def paint_tree(hu: np.ndarray, grid: Grid, tree: vessels.Tree, value: float, buf: np.ndarray, *,
               mask: np.ndarray | None = None, taper_leaf: float = 0.7, min_radius: float = 0.0) -> None:
    """Paint a tree (calibre continuous from segment to largest child; leaves taper) with one value.

    ``buf`` is a uint8 scratch map on the grid (zeroed here); ``mask`` accumulates the occupancy (uint8).
    """
    child_r = np.full(len(tree), np.nan)
    has = tree.parent >= 0
    np.fmax.at(child_r, tree.parent[has], tree.radius[has])
    r0 = tree.radius
    r1 = np.where(tree.leaf, r0 * taper_leaf, np.where(np.isfinite(child_r), child_r, r0))
    keep = r0 >= min_radius
    buf[...] = 0
    tubes_occupancy(grid, tree.start[keep], tree.end[keep], r0[keep], np.maximum(r1[keep], 0.2), out=buf)
    paint_occupancy(hu, buf, value)
    if mask is not None:
        np.maximum(mask, buf, out=mask)


def bronchovascular(hu, grid: Grid, cgrid: Grid, p: anat.Patient, t: dict, lung_c, arteries, rng,
                    fis: lobes.Fissures) -> dict:
    """Trachea, bronchi, pulmonary trunk, lobar arteries (into ``arteries``) and veins, painted into ``hu``.

    Returns:
        ``{"central": Tree (pulmonary trunk and main arteries, fixed layout), "peripheral": [Tree per side],
        "veins": [Tree per side], "bronchi": [Tree per side]}``.
    """
    s = p.scale
    h = 0.5 * (grid.spacing[1] + grid.spacing[2])
    r_min = 0.2 * h  # thinner vessels are invisible on this grid: skip painting them
    carina = np.array([0.0, 16.0, 0.0]) * s
    roots = {-1: np.array([-30.0, 20.0, -20.0]) * s, 1: np.array([36.0, 24.0, -24.0]) * s}
    mid_l = np.array([22.0, 20.0, -10.0]) * s
    central = [(np.array([0, 10.0, p.z_apex + 60]), carina, 9.5 * s), (carina, roots[-1], 7.0 * s),
               (carina, mid_l, 6.2 * s), (mid_l, roots[1], 6.0 * s)]
    for val, extra in ((WALL_HU, 1.6), (-1000.0, 0.0)):
        for a, b, r in central:
            _tube(hu, grid, a, b, r * 0.8 + extra, val)
    bif = np.array([8.0, -4.0, -12.0]) * s
    trunk = [(np.array([16.0, -42.0, -52.0]) * s, np.array([14.0, -22.0, -24.0]) * s, 14.0 * s),
             (np.array([14.0, -22.0, -24.0]) * s, bif, 13.5 * s)]
    pts = _attractors(lung_c, cgrid, 9.0, rng)
    lobe = lobes.lobe_of(fis, pts) if len(pts) else np.zeros(0, int)
    r_leaf = float(rng.uniform(0.38, 0.5))
    out: dict = {"peripheral": [], "veins": [], "bronchi": []}
    buf = np.zeros(grid.shape, np.uint8)
    for side in (-1, 1):
        hilum = roots[side] + np.array([side * 6.0, -14.0, 8.0]) * s  # the artery lies antero-superior
        lobar = []
        for lb in ((1, 2, 3) if side < 0 else (4, 5)):
            sel = pts[lobe == lb]
            if len(sel) < 4:
                continue
            nodes, parent = trees.colonise(hilum, sel, rng, kill=3.5)
            if len(nodes) < 3:
                continue
            lobar.append(trees.to_tree(nodes, parent, trees.murray_radii(parent, r_leaf), depth0=1))
        if not lobar:
            continue
        art = trees.merge(lobar)
        mid = np.array([-12.0, 4.0, -14.0]) * s if side < 0 else np.array([30.0, 4.0, -4.0]) * s
        trunk += [(bif, mid, 12.0 * s), (mid, hilum, 10.5 * s)]
        paint_tree(hu, grid, art, t["pa"], buf, mask=arteries, min_radius=r_min)
        out["peripheral"].append(art)
        # bronchi beside the arteries down to ~1 mm lumen radius: wall, then lumen
        big = trees.subtree(art, art.radius * 0.85 >= max(0.9, 0.45 * h))
        r_lumen = big.radius * 0.85
        br = trees.companion(big, big.radius + r_lumen * 1.3 + 0.5, rng)
        wall = vessels.Tree(br.start, br.end, r_lumen * 1.3 + 0.35, br.parent, br.depth, br.leaf)
        lumen = vessels.Tree(br.start, br.end, r_lumen, br.parent, br.depth, br.leaf)
        for j in np.flatnonzero(wall.parent < 0):  # lobar bronchi join the main bronchus
            _tube(hu, grid, roots[side], wall.start[j], wall.radius[j], WALL_HU)
        paint_tree(hu, grid, wall, WALL_HU, buf, taper_leaf=1.0)
        for j in np.flatnonzero(lumen.parent < 0):
            _tube(hu, grid, roots[side], lumen.start[j], lumen.radius[j], -1000.0)
        paint_tree(hu, grid, lumen, -1000.0, buf, taper_leaf=1.0)
        out["bronchi"].append(lumen)
        # veins: toward points away from the arteries, draining to the left atrium
        vpts = _attractors(lung_c, cgrid, 9.0, rng)
        if len(vpts):
            from scipy.spatial import cKDTree

            far = cKDTree(art.end).query(vpts, distance_upper_bound=4.0)[0]
            vpts = vpts[~np.isfinite(far)]
        vlobe = lobes.lobe_of(fis, vpts) if len(vpts) else np.zeros(0, int)
        vroot = p.heart_c + (np.array([-50.0, 48.0, 28.0]) if side < 0 else np.array([18.0, 56.0, 32.0])) * s
        vtrees = []
        for lb in ((1, 2, 3) if side < 0 else (4, 5)):
            sel = vpts[vlobe == lb]
            if len(sel) < 4:
                continue
            nodes, parent = trees.colonise(vroot, sel, rng)
            if len(nodes) >= 3:
                vtrees.append(trees.to_tree(nodes, parent, trees.murray_radii(parent, r_leaf), depth0=1))
        if vtrees:
            vt = trees.merge(vtrees)
            paint_tree(hu, grid, vt, t["vein"], buf, min_radius=r_min)
            out["veins"].append(vt)
    for a, b, r in trunk:
        _tube(hu, grid, a, b, r, t["pa"], arteries)
    out["central"] = vessels.Tree(np.array([a for a, _, _ in trunk]), np.array([b for _, b, _ in trunk]),
                                  np.array([r for _, _, r in trunk]), np.r_[-1, 0, 1, 2, 1, 4][: len(trunk)],
                                  np.zeros(len(trunk), int), np.zeros(len(trunk), bool))
    return out
