"""Hard negatives from real scans, mined through the serving path (``detect_nodules`` + the served seg model).

For each real training background (``real.TRAIN_CASES``: the LIDC slabs, lung1, the CTA crops; never lung2):

* run 0 is the scan as it is: every candidate outside the annotated lesions (mask grown by a margin) and away
  from other reader marks is a **negative** (vessels, bifurcations, the hila, airway walls...; label noise:
  an unannotated finding would be a wrong negative); candidates on an annotated lesion are positives;
* runs 1..K insert 2 synthetic nodules each (``inference.synth.insert.insert_nodule``: LIDC-shaped, noise
  matched) into the same scan, at sites of three kinds in turn: free in the parenchyma, **attached to a
  vessel** and **against the pleura** (clipped by the lung mask, so they flatten); candidates on them are
  positives, the others negatives as above.

Each candidate's classifier patch is kept, and its Hessian features (``inference.models.nodule_features``),
so that the calibration can use them. Jittered patches on every lesion ≥ 4 mm add positives.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from inference.models.nodule_prep import extract_patch, lung_mask
from inference.training.nodule.real import RealCase, lesion_record, load_case
from inference.training.nodule.realtable import label_candidates
from inference.volume import Volume

SITES = ("free", "vessel", "pleura")
JITTER = 2


def pick_site(vol: Volume, lung: np.ndarray, dist_mm: np.ndarray, kind: str, d: float, rng: np.random.Generator,
              avoid_mm: list[np.ndarray]) -> np.ndarray | None:
    """An LPS centre for a nodule of diameter ``d`` at a site of ``kind`` (free | vessel | pleura), at least
    ``d`` + 20 mm from every point of ``avoid_mm``; None when the scan has no such site."""
    r = d / 2
    if kind == "pleura":  # centre inside the lung, closer to the wall than the radius: the nodule touches it
        cand = lung & (dist_mm > 0.4 * r) & (dist_mm < 0.9 * r)
    elif kind == "vessel":  # a vessel voxel deep in the lung, the centre pushed off it by ~the radius
        cand = lung & (vol.hu > -150) & (dist_mm > r + 6.0)
    else:
        cand = lung & (vol.hu < -700) & (dist_mm > r + 4.0)
    idx = np.argwhere(cand[:, ::2, ::2]) * [1, 2, 2]
    if not len(idx):
        return None
    sp = np.asarray(vol.spacing_mm)
    for _ in range(40):
        c = idx[int(rng.integers(len(idx)))].astype(float)
        if kind == "vessel":
            u = rng.normal(size=3)
            c = c + u / np.linalg.norm(u) * (0.8 * r) / sp
            k = tuple(np.clip(np.round(c).astype(int), 0, np.array(vol.shape) - 1))
            if not lung[k] or dist_mm[k] < r + 2:
                continue
        xyz = vol.voxel_to_patient(c)
        if all(np.linalg.norm(xyz - a) > d + 20.0 for a in avoid_mm):
            return xyz
    return None


def insert_site_nodules(case: RealCase, lung: np.ndarray, rng: np.random.Generator, run: int,
                        n: int = 2) -> tuple[Volume, list[dict]]:
    """``n`` synthetic nodules inserted into ``case`` (site kinds cycle with ``run``); their truth records."""
    from inference.synth.insert import insert_nodule

    vol = case.volume
    sp = np.asarray(vol.spacing_mm)
    dist_mm = ndi.distance_transform_edt(lung, sampling=sp)
    avoid = [vol.voxel_to_patient(les["center_voxel"]) for les in case.lesions] + list(case.exclude_mm)
    out = []
    for m in range(n):
        kind = SITES[(run + m) % len(SITES)]
        d = float(np.exp(rng.uniform(np.log(5.0), np.log(28.0))))
        xyz = pick_site(vol, lung, dist_mm, kind, d, rng, avoid)
        if xyz is None:
            continue
        tex = str(rng.choice(["solid", "part-solid", "ground-glass"], p=[0.6, 0.2, 0.2]))
        morph = str(rng.choice(["round", "lobulated", "spiculated"]))
        try:
            vol, mask, _info = insert_nodule(vol, xyz, d, texture=tex, morphology=morph, lung_mask=lung,
                                             seed=int(rng.integers(1 << 30)))
        except ValueError:
            continue
        if mask.sum() < 5:
            continue
        out.append(lesion_record(mask, vol, kind="nodule", site=kind, type=tex, diameter_mm=d))
        avoid.append(xyz)
    return vol, out


def mine_background(name: str, run: int, model_dir: str, patch: tuple[int, int, int], seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """One mining run (see the module docstring).

    Returns:
        ``(patches (n, d, h, w) float16, labels (n,) uint8, is_candidate (n,) bool, features (n, F) float32,
        log line)``; jittered lesion patches have ``is_candidate`` False and NaN features.
    """
    from pathlib import Path

    from inference.engine import Engine
    from inference.models.nodule import detect_nodules

    case = load_case(name)
    if case.role != "train":
        raise RuntimeError(f"{name} is not a training case: it is never mined")
    rng = np.random.default_rng(seed + 7919 * run + sum(map(ord, name)))
    inserted: list[dict] = []
    if run > 0:
        lung = lung_mask(case.volume)
        vol, inserted = insert_site_nodules(case, lung, rng, run)
        case = RealCase(case.name, case.role, vol, case.lesions + inserted, case.exclude_mm)
    engine = Engine(Path(model_dir), ["CPUExecutionProvider"], threads=1, verify=False)
    r = detect_nodules(case.volume, engine, maps=False)
    tags = label_candidates(case, [c.center_voxel for c in r.candidates])
    keep = [(c, t) for c, t in zip(r.candidates, tags) if t != "exclude"]
    xs = [extract_patch(r.prepared.image, np.asarray(c.center_model), patch) for c, _ in keep]
    ys = [int(t.startswith("lesion")) for _, t in keep]
    feats = [list(c.features.values()) if getattr(c, "features", None) else [] for c, _ in keep]
    is_cand = [True] * len(keep)
    scale = np.asarray(case.volume.spacing_mm) / np.asarray(r.prepared.spacing)
    for les in case.lesions:
        if les["long_axis_mm"] < 4.0:
            continue
        for _ in range(2):
            ctr = np.asarray(les["center_voxel"]) * scale + rng.integers(-JITTER, JITTER + 1, 3)
            xs.append(extract_patch(r.prepared.image, ctr, patch))
            ys.append(1)
            feats.append([])
            is_cand.append(False)
    nf = max((len(f) for f in feats), default=0)
    fa = np.full((len(feats), nf), np.nan, np.float32)
    for i, f in enumerate(feats):
        fa[i, : len(f)] = f
    found = sum(1 for t in tags if t.startswith("lesion"))
    line = (f"[mine real] {name} run {run}: {len(r.candidates)} candidates, {found} on lesions "
            f"({len(case.lesions)} lesions, {len(inserted)} inserted: "
            f"{','.join(les['site'] for les in inserted)}), {sum(t == 'negative' for t in tags)} negatives")
    empty = np.zeros((0, *patch), np.float16)
    return (np.stack(xs).astype(np.float16) if xs else empty, np.asarray(ys, np.uint8), np.asarray(is_cand, bool),
            fa, line)
