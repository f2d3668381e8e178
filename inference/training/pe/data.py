"""PE training/evaluation data: synthetic CTPA studies and emboli inserted into the real CTA crop.

Every study is cut to the model grid by the *serving* code (``inference.models.pe.find_pa_region`` +
``prepare_input``), so training sees exactly what serving feeds the network. The cache holds, per study,
the crop in HU (int16, (S, H, W)), the artery mask and the clot mask on the same grid, and the ground truth.
This module imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from inference.model_card import Preprocessing
from inference.models.pe import ModelGrid, PARegion, find_pa_region, prepare_input
from inference.volume import Volume

PREPROCESSING = Preprocessing(
    spacing_mm=[2.5, 1.5, 1.5], hu_window=[-200.0, 800.0], patch_size=[128, 128], overlap=0.0, multiple_of=4,
    crop="pulmonary_arteries",
)
HELD_OUT_PROFILE = "canon_aquilion_fc52"  # never seen in training (domain-shift test)
TRAIN_PROFILES = ("ge_lightspeed16_standard", "ge_vct_lung", "siemens_flash_b30f", "siemens_force_br64_lowdose",
                  "philips_ingenuity_b")
SPLITS: dict[str, dict[str, Any]] = {  # seed ranges never overlap
    "train": {"seed0": 100_000, "profiles": TRAIN_PROFILES},
    "val": {"seed0": 200_000, "profiles": TRAIN_PROFILES},
    "test": {"seed0": 300_000, "profiles": TRAIN_PROFILES},
    "unseen": {"seed0": 400_000, "profiles": (HELD_OUT_PROFILE,)},
}
SYNTH_SHAPE = (72, 256, 256)  # 180 x 371 x 371 mm: the slab around the heart and pulmonary arteries
SYNTH_SPACING = (2.5, 1.45, 1.45)
MIN_CLOT_VOXELS = 3  # model-grid voxels that make a slice positive
ANATOMY = "real"  # synthetic anatomy: lobar artery/vein trees with Murray radii (``legacy``: the older one)


@dataclass
class Sample:
    """One study on the model grid."""

    hu: np.ndarray  # int16 (S, H, W)
    arteries: np.ndarray  # bool (S, H, W)
    clot: np.ndarray  # bool (S, H, W)
    meta: dict[str, Any]


def to_grid(arr: np.ndarray, grid: ModelGrid, order: int = 0, cval: float = 0.0) -> np.ndarray:
    """Resample an original-grid array onto the model grid (nearest for masks)."""
    s, h, w = grid.shape
    t, y, x = np.meshgrid(np.arange(s), np.arange(h), np.arange(w), indexing="ij")
    pts = grid.start_kji[:, None] + np.stack([t.ravel(), y.ravel(), x.ravel()]) * grid.step_kji[:, None]
    return ndimage.map_coordinates(arr.astype(np.float32), pts, order=order, cval=cval).reshape(s, h, w)


def grid_hu(grid: ModelGrid, pre: Preprocessing = PREPROCESSING) -> np.ndarray:
    """The model input back in HU (int16), for caching and augmentation."""
    a, b = pre.hu_window
    return np.rint(grid.x[0, :, 0] * (b - a) + a).astype(np.int16)


def window(hu: np.ndarray, pre: Preprocessing = PREPROCESSING) -> np.ndarray:
    a, b = pre.hu_window
    return np.clip((hu.astype(np.float32) - a) / (b - a), 0.0, 1.0)


def volume_sample(vol: Volume, arteries: np.ndarray, clot: np.ndarray, meta: dict[str, Any],
                  pre: Preprocessing = PREPROCESSING) -> Sample | None:
    """Cut a study to the model grid with the serving region finder; ``None`` if it finds no CTPA."""
    region: PARegion = find_pa_region(vol, pre)
    if not region.is_ctpa:
        return None
    grid = prepare_input(vol, region, pre)
    art = to_grid(arteries, grid) > 0.5
    cl = to_grid(clot, grid) > 0.5
    return Sample(grid_hu(grid, pre), art, cl, {**meta, "shape": list(grid.shape)})


def synthetic_sample(seed: int, profile: str, positive: bool, anatomy: str = ANATOMY) -> tuple[Sample | None, Any]:
    """One synthetic CTPA slab (``SYNTH_SHAPE`` at ``SYNTH_SPACING``, the thorax around the heart) cut to the
    model grid."""
    from inference.synth.study import generate_study

    st = generate_study(seed, profile=profile, contrast="ctpa", shape=SYNTH_SHAPE, spacing=SYNTH_SPACING,
                        lesions="embolism" if positive else [], anatomy=anatomy)
    clot = st.labels == 2
    meta = {"source": "synthetic", "seed": seed, "profile": profile, "anatomy": anatomy, "positive": bool(clot.any()),
            "emboli": [{k: e.get(k) for k in ("type", "level", "occlusive", "center_voxel", "volume_ml")}
                       for e in st.lesions if e.get("kind") == "embolism"]}
    return volume_sample(st.volume, st.arteries, clot, meta), st


def insert_embolus(hu: np.ndarray, arteries: np.ndarray, spacing_mm: tuple[float, float, float],
                   rng: np.random.Generator, *, occlusive: bool | None = None, length_mm: float | None = None,
                   min_radius_mm: float = 1.5, edt: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Insert one filling defect (10..60 HU clot) into the opacified lumen ``arteries``.

    Occlusive clots fill the lumen over a ball of radius ``length/2``; partial ones leave a contrast rim
    (central "polo mint") or sit against the wall (eccentric). Edges are blended over ~0.6 voxel.

    Returns:
        (new HU as float32, clot mask bool, description).
    """
    sp = np.asarray(spacing_mm, np.float64)
    if edt is None:  # lumen radius map (mm); callers inserting often into one study pass it precomputed
        edt = ndimage.distance_transform_edt(arteries, sampling=sp)
    cand = np.argwhere(edt >= min_radius_mm)
    if len(cand) == 0:
        cand = np.argwhere(arteries)
    c = cand[int(rng.integers(len(cand)))]
    r_lumen = float(edt[tuple(c)])
    occlusive = bool(rng.random() < 0.4) if occlusive is None else occlusive
    length = float(rng.uniform(8.0, 30.0)) if length_mm is None else float(length_mm)
    half = length / 2 + 2 * r_lumen
    lo = np.maximum(0, c - np.ceil(half / sp).astype(int))
    hi = np.minimum(hu.shape, c + np.ceil(half / sp).astype(int) + 1)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    zz, yy, xx = np.meshgrid(*[(np.arange(a, b) - ci) * s for a, b, ci, s in zip(lo, hi, c, sp)], indexing="ij")
    ball = zz**2 + yy**2 + xx**2 <= (length / 2) ** 2
    lumen = arteries[box]
    if occlusive:
        occ = ball & lumen
        kind = "occlusive"
    elif rng.random() < 0.6:
        occ = ball & (edt[box] >= r_lumen * float(rng.uniform(0.3, 0.5)))
        kind = "partial-central"
    else:
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)  # mural clot: the part of the lumen beyond a plane, against one wall
        occ = ball & lumen & (zz * d[0] + yy * d[1] + xx * d[2] > r_lumen * float(rng.uniform(-0.3, 0.2)))
        kind = "partial-eccentric"
    if occ.sum() < 2:
        occ = ball & lumen
        kind = "occlusive"
    soft = np.maximum(occ, ndimage.gaussian_filter(occ.astype(np.float32), 0.6)) * lumen  # blur outward only
    clot_hu = float(rng.uniform(15.0, 55.0)) + rng.normal(0.0, 8.0, occ.shape).astype(np.float32)
    out = hu.astype(np.float32, copy=True)
    view = out[box]
    view += soft * (np.clip(clot_hu, 10.0, 60.0) - view)
    mask = np.zeros(hu.shape, bool)
    mask[box] = occ
    desc = {"type": kind, "center_voxel": [int(v) for v in c], "lumen_radius_mm": round(r_lumen, 2),
            "length_mm": round(length, 1), "n_voxels": int(mask.sum())}
    return out, mask, desc


def real_inserted(vol: Volume, pa: np.ndarray, seed: int, n: int | None = None) -> tuple[Volume, np.ndarray, list]:
    """The real CTA crop with ``n`` (1..2) emboli inserted into its pulmonary-artery mask (original grid)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3)) if n is None else n
    hu, clot, descs = vol.hu.astype(np.float32), np.zeros(vol.shape, bool), []
    for _ in range(n):
        hu, m, d = insert_embolus(hu, pa, vol.spacing_mm, rng)
        clot |= m
        descs.append(d)
    return vol.with_array(np.rint(hu).astype(np.int16), study_uid=f"real-cta-crop+pe{seed}"), clot, descs


def save_sample(path: Path, s: Sample) -> None:
    np.savez(path, hu=s.hu, arteries=np.packbits(s.arteries), clot=np.packbits(s.clot),
             shape=np.array(s.hu.shape), meta=json.dumps(s.meta))


def load_sample(path: Path) -> Sample:
    z = np.load(path)
    shape = tuple(int(v) for v in z["shape"])
    n = int(np.prod(shape))
    unpack = lambda a: np.unpackbits(a)[:n].reshape(shape).astype(bool)  # noqa: E731
    return Sample(z["hu"], unpack(z["arteries"]), unpack(z["clot"]), json.loads(str(z["meta"])))


def build_split(out_dir: Path, split: str, n: int, *, start: int = 0, progress: bool = True,
                anatomy: str = ANATOMY) -> list[Path]:
    """Generate ``n`` synthetic studies of ``split`` (half positive) into ``out_dir/split`` (skips existing).

    One cache folder holds one anatomy: a cache written with another anatomy is refused, not mixed in."""
    cfg = SPLITS[split]
    d = Path(out_dir) / split
    d.mkdir(parents=True, exist_ok=True)
    _check_anatomy(d, anatomy)
    paths = []
    for i in range(start, start + n):
        p = d / f"{split}_{i:04d}.npz"
        paths.append(p)
        if p.exists():
            continue
        profile = cfg["profiles"][i % len(cfg["profiles"])]
        s, _ = synthetic_sample(cfg["seed0"] + i, profile, positive=(i % 2 == 1), anatomy=anatomy)
        if s is None:
            continue
        save_sample(p, s)
        if progress:
            print(f"[{split}] {i + 1 - start}/{n} {p.name} S={s.hu.shape[0]} pos={s.meta['positive']} "
                  f"clot_in_crop={int(s.clot.sum())}", flush=True)
    return [p for p in paths if p.exists()]


def _check_anatomy(d: Path, anatomy: str) -> None:
    """Refuse a cache folder whose studies were generated with another anatomy (caches before the ``anatomy``
    field are legacy)."""
    first = next(iter(sorted(d.glob("*.npz"))), None)
    if first is None:
        return
    with np.load(first) as z:
        found = json.loads(str(z["meta"])).get("anatomy", "legacy")
    if found != anatomy:
        raise ValueError(f"{d} holds {found!r}-anatomy studies, not {anatomy!r}: use another --cache")


def eval_study(out_dir: Path, split: str, i: int, anatomy: str = ANATOMY) -> tuple[Volume, np.ndarray, dict[str, Any]]:
    """Held-out study ``i`` of ``split`` on its original grid (volume, clot mask, truth), cached as .npz.

    The cache only saves time: the same seed always regenerates the same voxels.
    """
    cfg = SPLITS[split]
    p = Path(out_dir) / "volumes" / f"{split}_{i:04d}.npz"
    if p.exists():
        z = np.load(p)
        meta = json.loads(str(z["meta"]))
        if meta.get("anatomy", "legacy") != anatomy:
            raise ValueError(f"{p} is a {meta.get('anatomy', 'legacy')!r}-anatomy study, not {anatomy!r}: "
                             "use another --cache")
        vol = Volume(z["hu"], tuple(z["spacing"]), tuple(z["origin"]), z["direction"], study_uid=meta["study_uid"],
                     meta={"synthetic": True, "profile": meta["profile"]})
        return vol, z["clot"], meta
    from inference.synth.study import generate_study

    profile = cfg["profiles"][i % len(cfg["profiles"])]
    seed = cfg["seed0"] + i
    st = generate_study(seed, profile=profile, contrast="ctpa", shape=SYNTH_SHAPE, spacing=SYNTH_SPACING,
                        lesions="embolism" if i % 2 == 1 else [], anatomy=anatomy)
    clot = st.labels == 2
    meta = {"source": "synthetic", "split": split, "seed": seed, "profile": profile, "anatomy": anatomy,
            "positive": bool(clot.any()),
            "study_uid": st.volume.study_uid,
            "emboli": [{k: e.get(k) for k in ("type", "level", "occlusive", "center_voxel", "center_mm", "volume_ml")}
                       for e in st.lesions if e.get("kind") == "embolism"]}
    p.parent.mkdir(parents=True, exist_ok=True)
    v = st.volume
    np.savez(p, hu=v.hu, clot=clot, spacing=np.array(v.spacing_mm), origin=np.array(v.origin_mm),
             direction=v.direction, meta=json.dumps(meta))
    return v, clot, meta
