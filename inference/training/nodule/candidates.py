"""Classifier training data mined through the serving path.

The candidate classifier decides between the components the segmentation model proposes, so it should learn
from exactly those: fresh training-split studies (seeds after the ones the segmentation patches came from, so
the seg net has not memorised them), nodules inserted into the real CTA crops and the real training scans
with and without inserted nodules (``hardneg``: hard negatives from real backgrounds) go through
``inference.models.nodule.detect_nodules`` with the exported ``nodule_seg``; every candidate's classifier
patch is kept with its truth (hit a true nodule or not), plus jittered patches on each true nodule. Hard
negatives mined from the seg net's own training patches are rare, because it has learnt those patches.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from inference.models.nodule_prep import extract_patch
from inference.training.nodule.config import NoduleConfig

JITTER = 2  # model voxels of jitter on the extra true-nodule patches


def _mine_one(job: tuple[dict, str, int, str]) -> tuple[np.ndarray, np.ndarray, str]:
    """One study: ``(patches (n, d, h, w) float16, labels (n,), log line)``."""
    from inference.engine import Engine
    from inference.models.nodule import detect_nodules
    from inference.training.nodule import data as D
    from inference.training.nodule.metrics import match

    cfg_dict, kind, index, model_dir = job
    cfg = NoduleConfig(**cfg_dict)
    rng = np.random.default_rng(cfg.seed + 5000 + index + (100_000 if kind == "real" else 0))
    if kind == "synthetic":
        case = D.synthetic_case("train", cfg.n_train_studies + index, lesions="nodule" if index % 6 else "auto",
                                size=cfg.study_size)
    else:
        bg = D.load_nifti_hu(D.SHARED / D.REAL_TRAIN_BACKGROUNDS[index % len(D.REAL_TRAIN_BACKGROUNDS)])
        case = D.insert_nodules(bg, rng, n=2)
    engine = Engine(Path(model_dir), ["CPUExecutionProvider"], threads=1, verify=False)
    r = detect_nodules(case.volume, engine)
    size = tuple(cfg.cls_patch)
    lesions = D.gt_lesions(case)
    hits = match(r.candidates, lesions, case.volume.spacing_mm)
    xs = [extract_patch(r.prepared.image, np.asarray(c.center_model), size) for c in r.candidates]
    ys = [int(h >= 0) for h in hits]
    scale = np.asarray(case.volume.spacing_mm) / np.asarray(r.prepared.spacing)
    for les in lesions:
        if float(les.get("diameter_mm") or 0) < 4.0:
            continue
        centre = np.asarray(les["center_voxel"], float) * scale
        for _ in range(2):
            xs.append(extract_patch(r.prepared.image, centre + rng.integers(-JITTER, JITTER + 1, 3), size))
            ys.append(1)
    n_true = sum(h >= 0 for h in hits)
    line = (f"[mine {kind}] {index}: {len(r.candidates)} candidates ({n_true} true), {len(lesions)} nodules")
    empty = np.zeros((0, *size), np.float16)
    return (np.stack(xs).astype(np.float16) if xs else empty), np.asarray(ys, np.uint8), line


def _mine_bg(job: tuple[dict, str, int, str]) -> tuple[np.ndarray, np.ndarray, str]:
    from inference.training.nodule.hardneg import mine_background

    cfg_dict, name, run, model_dir = job
    x, y, _, _, line = mine_background(name, run, model_dir, tuple(cfg_dict["cls_patch"]), seed=cfg_dict["seed"])
    return x, y, line


SOURCES = {"synthetic": 0, "real": 1, "background": 2}  # ``source`` codes of the candidate set


def build_candidate_set(cfg: NoduleConfig, out: Path, model_dir: Path, *, workers: int = 2, log=print) -> Path:
    """Mine ``cfg.cls_mine_studies`` synthetic studies, ``cfg.cls_mine_real`` real-background insertions and
    ``1 + cfg.cls_mine_backgrounds`` runs on each real training scan (``hardneg``) through the served models
    in ``model_dir``; writes ``out`` (npz: image, label, source (``SOURCES``), case)."""
    from inference.training.nodule.real import TRAIN_CASES, available

    jobs = [(cfg.to_dict(), "synthetic", i, str(model_dir)) for i in range(cfg.cls_mine_studies)]
    jobs += [(cfg.to_dict(), "real", j, str(model_dir)) for j in range(cfg.cls_mine_real)]
    if cfg.cls_mine_backgrounds and available():
        jobs += [(cfg.to_dict(), f"background:{name}", run, str(model_dir))
                 for name in TRAIN_CASES for run in range(cfg.cls_mine_backgrounds + 1)]
    imgs, labs, srcs, names = [], [], [], []
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(_dispatch, jobs)
        for job, (x, y, line) in zip(jobs, results):
            imgs.append(x)
            labs.append(y)
            kind = job[1].split(":")[0]
            srcs.append(np.full(len(y), SOURCES[kind], np.uint8))
            names.append(np.full(len(y), job[1].split(":")[-1] if kind == "background" else kind))
            log(f"{line} ({time.time() - t0:.0f}s)")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, image=np.concatenate(imgs), label=np.concatenate(labs), source=np.concatenate(srcs),
                        case=np.concatenate(names))
    return out


def _dispatch(job: tuple[dict, str, int, str]) -> tuple[np.ndarray, np.ndarray, str]:
    if job[1].startswith("background:"):
        return _mine_bg((job[0], job[1].split(":", 1)[1], job[2], job[3]))
    return _mine_one(job)
