"""Training data (numpy only): synthetic studies and nodules inserted into real CT, as model-grid patches.

Every study goes through the serving preprocessing (``inference.models.nodule_prep``: resample to the model
spacing, lung mask, HU window), so patches look exactly like what the ONNX model sees at inference time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from inference.models.nodule_prep import extract_patch, lung_mask, resample, window
from inference.synth import lesions as synth_lesions
from inference.synth.grid import Grid
from inference.synth.nodules import load_library
from inference.synth.study import LesionRequest, generate_study
from inference.training.nodule.config import HELD_OUT_PROFILE, SEEDS, TRAIN_PROFILES, NoduleConfig
from inference.volume import Volume

SHARED = Path(os.environ.get("TRIAGE_SHARED_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"))
REAL_TRAIN_BACKGROUNDS = ("real-cta-crop/aorta_report_ct_cropped.nii.gz",
                          "real-cta-crop/pulmonary_report_ct_cropped.nii.gz")


@dataclass
class Case:
    """One study with its truth: volume, nodule label volume (0/1 per voxel) and lesion records."""

    volume: Volume
    labels: np.ndarray  # uint8, 1 = nodule
    lesions: list[dict]
    name: str
    profile: str = ""


def study_geometry(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """A random acquisition grid (~300 mm field of view, 200-240 mm in z) that is quick to generate."""
    sz = float(rng.choice([1.0, 1.25, 2.0, 2.5]))
    sxy = float(rng.uniform(0.95, 1.35))
    n = int(round(300.0 / sxy / 2)) * 2
    return (int(round(float(rng.uniform(200, 240)) / sz)), n, n), (sz, sxy, sxy)


def synthetic_case(split: str, index: int, *, profile: str | None = None, lesions: str = "auto",
                   size: str = "random", extra_small: int = 0,
                   small_mm: tuple[float, float] = (3.0, 6.0)) -> Case:
    """Study ``index`` of ``split`` (train | val | test | unseen); profiles drawn from the training ones
    except for ``unseen``, which uses the held-out profile. ``extra_small``: that many more nodules of
    ``small_mm`` diameter (uniform) on top of the random ones (``lesions`` ``auto`` or ``nodule``)."""
    seed = SEEDS[split] + index
    rng = np.random.default_rng(seed + 7)
    shape, spacing = study_geometry(rng) if size == "random" else ((64, 128, 128), (2.0, 2.2, 2.2))
    if profile is None:
        profile = TRAIN_PROFILES[index % len(TRAIN_PROFILES)]
    req: str | list = lesions
    if extra_small:
        r2 = np.random.default_rng(seed + 11)
        n = int(r2.integers(1, 4)) if lesions == "nodule" else int(r2.choice([0, 1, 1, 2, 3]))
        req = [LesionRequest("nodule") for _ in range(n)]
        req += [LesionRequest("nodule", diameter_mm=float(r2.uniform(*small_mm))) for _ in range(extra_small)]
    s = generate_study(seed, profile=profile, contrast="mixed", size=None, shape=shape, spacing=spacing,
                       lesions=req, case_number=index)
    labels = (s.labels == 1).astype(np.uint8)
    les = [d for d in s.lesions if d.get("kind") == "nodule" and not d.get("empty")]
    return Case(s.volume, labels, les, f"{split}-{seed}", s.profile.name)


def load_nifti_hu(path: Path) -> Volume:
    """A NIfTI CT as a ``Volume`` (axes reordered to (z, y, x); orientation is irrelevant for insertion)."""
    import nibabel as nib

    im = nib.load(str(path))
    arr = np.asarray(im.dataobj).astype(np.float32)
    zooms = im.header.get_zooms()[:3]
    hu = np.transpose(arr, (2, 1, 0))[::-1].copy()
    return Volume(hu=np.clip(np.rint(hu), -1024, 3071).astype(np.int16),
                  spacing_mm=(float(zooms[2]), float(zooms[1]), float(zooms[0])))


def insert_nodules(volume: Volume, rng: np.random.Generator, n: int = 1, *, exclude_mm: list[np.ndarray] | None = None,
                   diameter_range: tuple[float, float] = (4.0, 25.0), textures: tuple[str, ...] | None = None,
                   lung: np.ndarray | None = None) -> Case:
    """Insert ``n`` nodules (real LIDC shapes, synthetic texture) into a real CT ``volume``.

    Sites are inside the lung mask at least half a diameter + 3 mm from the pleura and at least 30 mm from
    each point of ``exclude_mm`` (voxel-frame mm, e.g. the real nodules); local noise is matched.

    Returns:
        A ``Case`` whose lesions carry ``center_voxel``, ``diameter_mm`` (target), ``type``.
    """
    lib = load_library()
    hu = volume.hu.astype(np.float32)
    lung = lung_mask(volume) if lung is None else lung
    grid = Grid(volume.shape, volume.spacing_mm, (0.0, 0.0, 0.0), float(volume.spacing_mm[0]))
    sites = synth_lesions.LungSites(lung, grid, step_mm=2.0)
    labels = np.zeros(volume.shape, np.uint8)
    resid = hu - ndi.gaussian_filter(hu, 1.0)
    noise_sd = float(np.std(resid[lung])) if lung.any() else 10.0
    found = []
    for _ in range(n):
        d = float(np.exp(rng.uniform(np.log(diameter_range[0]), np.log(diameter_range[1]))))
        for _try in range(20):
            c = sites.pick(rng, d / 2 + 3.0, 1e9)
            if c is None or not exclude_mm or min(np.linalg.norm(c - e) for e in exclude_mm) > 30.0:
                break
        if c is None:
            continue
        tex = str(rng.choice(textures or synth_lesions.TEXTURES, p=None if textures else [0.6, 0.2, 0.2]))
        morph = str(rng.choice(synth_lesions.MORPHOLOGIES))
        idx = lib.pick(rng, morph)
        res = synth_lesions.nodule_occupancy(grid, c, d, lib, idx, rng, spiculated=morph == "spiculated")
        if res is None:
            continue
        box, occ, sdf = res
        occ *= lung[box]
        val, _ = synth_lesions.nodule_hu(tex, sdf, d, rng)
        val = val + rng.normal(0, noise_sd * 0.8, size=occ.shape).astype(np.float32)
        synth_lesions.blend_max(hu, box, occ, val)
        m = occ >= 0.5
        if not m.any():
            continue
        labels[box][m] = 1
        kji = np.argwhere(m) + [b.start for b in box]
        found.append({"kind": "nodule", "type": tex, "morphology": morph, "location": "inserted",
                      "center_voxel": kji.mean(0).round(3).tolist(), "diameter_mm": round(d, 2)})
        exclude_mm = (exclude_mm or []) + [c]
    vol = volume.with_array(np.clip(np.rint(hu), -1024, 3071).astype(np.int16))
    return Case(vol, labels, found, "inserted")


def to_model_grid(case: Case, cfg: NoduleConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windowed image float32, label uint8, lung bool) on the model grid, as serving prepares them."""
    sp = tuple(cfg.spacing_mm)
    hu = resample(case.volume.hu, case.volume.spacing_mm, sp, order=1, cval=-1024.0)
    lab = resample(case.labels.astype(np.float32), case.volume.spacing_mm, sp, order=1) >= 0.5
    lung = lung_mask(Volume(hu=hu.astype(np.int16), spacing_mm=sp))
    return window(hu, cfg.hu_window), lab.astype(np.uint8), lung


def patches_from(image: np.ndarray, lab: np.ndarray, lung: np.ndarray, cfg: NoduleConfig,
                 rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Positive patches (two per nodule, jittered) and negatives (random lung / dense lung voxels)."""
    size = tuple(cfg.patch)
    out = []
    comps, n = ndi.label(lab)
    sizes = ndi.sum_labels(lab, comps, range(1, n + 1)) if n else []
    for c, nv in zip(ndi.center_of_mass(lab, comps, range(1, n + 1)), sizes):
        if nv < cfg.min_pos_voxels:  # spicule fragments and partial-volume crumbs
            continue
        for _ in range(2):
            ctr = np.asarray(c) + rng.integers(-size[0] // 5, size[0] // 5 + 1, 3)
            out.append((extract_patch(image, ctr, size), extract_patch(lab, ctr, size)))
    lung_idx = np.argwhere(lung[::4, ::4, ::4]) * 4
    dense = np.argwhere((image[::2, ::2, ::2] > 0.45) & lung[::2, ::2, ::2]) * 2
    for k in range(cfg.neg_patches_per_study):
        pool = dense if (k % 2 and len(dense)) else lung_idx
        if len(pool) == 0:
            break
        ctr = pool[int(rng.integers(len(pool)))]
        out.append((extract_patch(image, ctr, size), extract_patch(lab, ctr, size)))
    return out


def build_patch_set(cfg: NoduleConfig, split: str, out: Path, *, log=print) -> Path:
    """Generate ``split`` studies (+ real-background insertions for ``train``), write ``out`` (npz)."""
    rng = np.random.default_rng(cfg.seed + (0 if split == "train" else 1))
    n = cfg.n_train_studies if split == "train" else cfg.n_val_studies
    imgs, labs, srcs = [], [], []
    t0 = time.time()
    for i in range(n):
        case = synthetic_case(split, i, lesions="nodule" if i % 6 else "auto", size=cfg.study_size,
                              extra_small=cfg.n_small_nodules if split == "train" else 0,
                              small_mm=tuple(cfg.small_nodule_mm))
        img, lab, lung = to_model_grid(case, cfg)
        for p, q in patches_from(img, lab, lung, cfg, rng):
            imgs.append(p.astype(np.float16))
            labs.append(q)
            srcs.append(0)
        log(f"[data {split}] study {i + 1}/{n} ({case.profile}, {len(case.lesions)} nodules) "
            f"{len(imgs)} patches, {time.time() - t0:.0f}s")
    if split == "train" and cfg.n_real_insertions:
        backgrounds = [load_nifti_hu(SHARED / p) for p in REAL_TRAIN_BACKGROUNDS if (SHARED / p).exists()]
        lungs = [lung_mask(v) for v in backgrounds]
        for j in range(cfg.n_real_insertions if backgrounds else 0):
            b = j % len(backgrounds)
            case = insert_nodules(backgrounds[b], rng, n=2, lung=lungs[b])
            img, lab, lung = to_model_grid(case, cfg)
            for p, q in patches_from(img, lab, lung, cfg, rng):
                imgs.append(p.astype(np.float16))
                labs.append(q)
                srcs.append(1)
            log(f"[data real] insertion {j + 1}/{cfg.n_real_insertions} {len(imgs)} patches")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, image=np.stack(imgs), label=np.stack(labs), source=np.asarray(srcs, np.uint8),
                        spacing=np.asarray(cfg.spacing_mm, float))
    return out


def gt_lesions(case: Case) -> list[dict]:
    """Truth lesions with their mask (component of the label volume holding the lesion centre)."""
    comps, _ = ndi.label(case.labels > 0)
    out = []
    for les in case.lesions:
        c = np.round(np.asarray(les["center_voxel"])).astype(int).clip(0, np.array(case.labels.shape) - 1)
        lab = comps[tuple(c)]
        if lab == 0:  # centre outside its own mask (crescent shapes): nearest labelled voxel
            idx = np.argwhere(comps > 0)
            if len(idx) == 0:
                continue
            lab = comps[tuple(idx[np.argmin(((idx - c) ** 2).sum(1))])]
        out.append({**les, "mask": comps == lab})
    return out


def lidc_cases(n: int, seed: int = 50000) -> list[Case]:
    """``n`` LIDC stacks (cycling over the three) with 1-2 nodules inserted away from the real ones."""
    from inference.dicom import read_volume
    from inference.training.nodule.lidc import LIDC, nodules

    base = []
    for case_dir, xml in LIDC.items():
        v = read_volume(SHARED / "lidc-idri-slices" / case_dir)
        real = nodules(SHARED / "lidc-idri-slices" / "xml" / xml, v)
        base.append((case_dir, v, [r["center_voxel"][::-1] * np.asarray(v.spacing_mm[::-1]) for r in real]))
    out = []
    for i in range(n):
        name, v, excl = base[i % len(base)]
        c = insert_nodules(v, np.random.default_rng(seed + i), n=1 + i % 2, exclude_mm=excl, diameter_range=(5, 20))
        c.name = f"{name}+inserted-{i}"
        out.append(c)
    return out


def eval_cases(split: str, n: int) -> Iterator[Case]:
    """The first ``n`` cases of an evaluation split: ``val``, ``test``, ``unseen`` (synthetic) or
    ``lidc-inserted`` (see ``lidc_cases``)."""
    if split == "lidc-inserted":
        yield from lidc_cases(n)
        return
    for i in range(n):
        prof = HELD_OUT_PROFILE if split == "unseen" else TRAIN_PROFILES[i % len(TRAIN_PROFILES)]
        yield synthetic_case(split, i, profile=prof, lesions="auto")
