"""Where lesions and mimics go in a synthetic study, and painting them with their labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from inference.synth import emboli, lesions
from inference.synth.grid import Grid
from inference.synth.nodules import ShapeLibrary

LABEL_NODULE = 1
LABEL_EMBOLISM = 2


def _diameter(rng: np.random.Generator) -> float:
    """Nodule diameter 3..30 mm, skewed to small (as in screening)."""
    return float(np.clip(np.exp(rng.uniform(np.log(3.5), np.log(30.0))), 3.0, 30.0))


def _juxtavascular_site(trees, rng: np.random.Generator, d: float) -> np.ndarray | None:
    cands = []
    for t in trees["peripheral"]:
        ok = np.flatnonzero((t.radius > 1.2) & (t.radius < 4.0) & (t.depth >= 2))
        cands += [(t, i) for i in ok]
    if not cands:
        return None
    t, i = cands[int(rng.integers(len(cands)))]
    p = t.start[i] + rng.uniform(0.2, 0.8) * (t.end[i] - t.start[i])
    axis = t.end[i] - t.start[i]
    axis /= np.linalg.norm(axis) + 1e-9
    perp = rng.normal(size=3)
    perp -= (perp @ axis) * axis
    perp /= np.linalg.norm(perp) + 1e-9
    return p + perp * (t.radius[i] + 0.4 * d)


def _perifissural_site(sites, fis, lung, grid: Grid, rng: np.random.Generator, d: float) -> np.ndarray | None:
    """A centre ``0.3 d`` from a fissure (so the nodule straddles it), away from the pleura."""
    from inference.synth import lobes

    for _ in range(40):
        p = sites.pick(rng, 0.5 * d + 4.0, 1e9)
        if p is None:
            return None
        side = int(p[0] >= lobes.MIDLINE_X)
        zs = [float(lobes.oblique_z(fis, side, p[0], p[1]))]
        if side == 0:
            zh = float(lobes.horizontal_z(fis, p[0], p[1]))
            if zh > zs[0]:
                zs.append(zh)
        z = zs[int(rng.integers(len(zs)))]
        c = np.array([p[0], p[1], z + float(rng.choice([-1.0, 1.0])) * 0.3 * d])
        if all(_inside(lung, grid, c + [0, 0, dz]) for dz in (0.0, 0.6 * d, -0.6 * d)):
            return c
    return None


def place_nodules(hu, labels, lung, grid: Grid, reqs, trees, lib: ShapeLibrary, rng) -> list[tuple]:
    """Paint requested nodules; returns ``(info, box, mask)`` per placed nodule (labels set to 1)."""
    if not reqs:
        return []
    sites = lesions.LungSites(lung, grid)
    out = []
    for n, req in enumerate(reqs):
        texture = req.texture or str(rng.choice(lesions.TEXTURES, p=[0.6, 0.2, 0.2]))
        morph = req.morphology or str(rng.choice(lesions.MORPHOLOGIES, p=[0.45, 0.3, 0.25]))
        fis = trees.get("fissures")
        if req.location:
            loc = req.location
        elif fis is None:
            loc = str(rng.choice(lesions.LOCATIONS[:3], p=[0.5, 0.25, 0.25]))
        else:
            loc = str(rng.choice(lesions.LOCATIONS, p=[0.45, 0.22, 0.22, 0.11]))
        d = float(req.diameter_mm or _diameter(rng))
        centre = None
        if loc == "juxtavascular":
            centre = _juxtavascular_site(trees, rng, d)
            if centre is not None and not _inside(lung, grid, centre):
                centre = None
        elif loc == "juxtapleural":
            centre = sites.pick(rng, 0.3 * d, 0.55 * d + 1.5)
        elif loc == "perifissural" and fis is not None:
            centre = _perifissural_site(sites, fis, lung, grid, rng, d)
        if centre is None:
            loc = "isolated"
            centre = sites.pick(rng, d / 2 + 5.0, 1e9)
            if centre is None:
                centre = sites.pick(rng, 0.0, 1e9)
        if centre is None:
            continue
        idx = lib.pick(rng, morph)
        res = lesions.nodule_occupancy(grid, centre, d, lib, idx, rng, spiculated=morph == "spiculated")
        if res is None:
            continue
        box, occ, sdf = res
        occ *= lung[box]  # nodules live in the lung; juxtapleural ones flatten against the pleura
        val, core = lesions.nodule_hu(texture, sdf, d, rng)
        lesions.blend_max(hu, box, occ, val)
        mask = occ >= 0.5
        labels[box][mask] = LABEL_NODULE
        info: dict[str, Any] = {
            "id": f"N{n + 1}", "kind": "nodule", "label": LABEL_NODULE, "type": texture, "morphology": morph,
            "location": loc, "target_diameter_mm": round(d, 2), "solid_fraction": round(core, 2),
            "shape_source": f"LIDC annotation {int(lib.meta[idx, 5])}" if lib.meta[idx, 5] >= 0 else "procedural",
        }
        out.append((info, box, mask))
    return out


def place_emboli(hu, labels, arteries, grid: Grid, reqs, trees, rng) -> list[tuple]:
    """Paint requested emboli (filling defects) in the opacified arteries; labels set to 2."""
    out = []
    for n, req in enumerate(reqs):
        level = req.level or str(rng.choice(emboli.LEVELS, p=[0.25, 0.35, 0.4]))
        occlusive = bool(req.occlusive) if req.occlusive is not None else bool(rng.random() < 0.4)
        if level == "central":
            c = trees["central"]
            saddle = rng.random() < 0.5
            if saddle:  # straddle the bifurcation: both proximal main arteries
                bif = c.end[1]
                path = [(c.end[2] * 0.5 + bif * 0.5, bif, c.radius[2]), (bif, c.end[4] * 0.5 + bif * 0.5, c.radius[4])]
                occlusive = False
            else:
                j = int(rng.choice([3, 5]))  # a main artery toward one hilum
                path = [(c.start[j], c.end[j], c.radius[j])]
        else:
            tree = trees["peripheral"][int(rng.integers(len(trees["peripheral"])))]
            length = float(rng.uniform(10.0, 35.0) if level == "lobar" else rng.uniform(6.0, 20.0))
            path = emboli.embolus_path(tree, rng, level, length)
        res = emboli.embolus_occupancy(grid, path, arteries, occlusive, rng)
        if res is None:
            continue
        box, occ = res
        val = emboli.clot_texture(occ.shape, rng)
        view = hu[box]
        view += occ * (val - view)
        mask = occ >= 0.5
        if not mask.any():
            continue
        labels[box][mask] = LABEL_EMBOLISM
        kind = "saddle" if level == "central" and len(path) == 2 else level
        info = {"id": f"E{n + 1}", "kind": "embolism", "label": LABEL_EMBOLISM, "type": kind,
                "level": level, "occlusive": occlusive}
        out.append((info, box, mask))
    return out


def place_mimics(hu, lung, grid: Grid, rng) -> list[dict[str, Any]]:
    """Calcified granulomas and scars (no label)."""
    sites = lesions.LungSites(lung, grid)
    out = []
    for n in range(int(rng.integers(0, 4))):
        kind = "calcified_granuloma" if rng.random() < 0.55 else "scar"
        c = sites.pick(rng, 3.0, 1e9) if kind == "calcified_granuloma" else sites.pick(rng, 1.0, 8.0)
        if c is None:
            continue
        make = lesions.granuloma if kind == "calcified_granuloma" else lesions.scar
        res, value, size = make(grid, c, rng)
        if res is None:
            continue
        box, occ = res
        lesions.blend_max(hu, box, occ * lung[box], value)
        out.append({"id": f"M{n + 1}", "kind": "mimic", "type": kind, "label": None,
                    "center_mm_body": [round(float(v), 2) for v in c], "size_mm": round(size, 2)})
    return out


def _inside(lung, grid: Grid, xyz: np.ndarray) -> bool:
    k, j, i = np.round(grid.to_voxel(xyz)).astype(int)
    nz, ny, nx = lung.shape
    return 0 <= k < nz and 0 <= j < ny and 0 <= i < nx and bool(lung[k, j, i])
