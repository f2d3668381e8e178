"""``triage evaluate nodule``: held-out evaluation THROUGH THE SERVING PATH (``inference.models.nodule``, ONNX
Runtime), so the card's numbers are the numbers of the served models. numpy only (no torch).

Splits (none used in training): ``val`` (seeds 20000+, calibration only: ``calibration.py``), ``test``
(seeds 30000+, training profiles), ``unseen`` (seeds 40000+, the held-out scanner profile), ``lidc-inserted``
(nodules inserted into the real LIDC stacks), ``lidc-real`` (the readers' nodules).
"""

from __future__ import annotations

import time

import numpy as np

from inference.engine import Engine
from inference.models.nodule import CLS_MODEL, detect_nodules
from inference.models.nodule_prep import extract_patch, resample
from inference.training.nodule import metrics as M
from inference.training.nodule.data import SHARED, Case, gt_lesions
from inference.training.nodule.lidc import LIDC

SIZE_BINS = ((0, 6), (6, 10), (10, 20), (20, 1e9))


def evaluate_cases(cases, engine: Engine, seg: str, *, log=print) -> dict:
    """Run detection on each case and collect the raw per-candidate / per-lesion records."""
    cand, les_rec, times = [], [], []
    cls_model = engine.model(CLS_MODEL)
    n_scans = 0
    for case in cases:
        t0 = time.perf_counter()
        r = detect_nodules(case.volume, engine, seg_name=seg)
        times.append(time.perf_counter() - t0)
        n_scans += 1
        lesions = gt_lesions(case)
        hits = M.match(r.candidates, lesions, case.volume.spacing_mm)
        base = len(les_rec)
        for c, h in zip(r.candidates, hits):
            cand.append({"p": c.probability, "raw": c.score_raw, "seg": c.seg_max,
                         "hit": base + h if h >= 0 else -1, "label": c.label})
        for i, les in enumerate(lesions):
            mine = [c for c, h in zip(r.candidates, hits) if h == i]
            best = max(mine, key=lambda c: c.probability, default=None)
            rec = {"diameter_mm": float(les.get("long_axis_mm") or les.get("diameter_mm") or 0),
                   "type": les.get("type", ""), "location": les.get("location", ""),
                   "p": best.probability if best else 0.0,
                   "dice": M.dice(r.mask == best.label, les["mask"]) if best else 0.0,
                   "iou": M.iou(r.mask == best.label, les["mask"]) if best else 0.0}
            rec.update(_pointing(r, les, case, cls_model))
            les_rec.append(rec)
        log(f"[eval] {case.name}: {len(r.candidates)} candidates, {len(lesions)} lesions, "
            f"hits {sum(h >= 0 for h in hits)}, {times[-1]:.1f}s")
    return {"cand": cand, "lesions": les_rec, "n_scans": n_scans, "seconds_per_scan": float(np.mean(times))}


def _pointing(r, les: dict, case: Case, cls_model) -> dict:
    """Pointing game on the model grid: peak of the heatmap (box of +-12 mm around the lesion) and peak of the
    classifier CAM (patch centred 0-3 voxels off the lesion centre) inside the lesion (1-voxel tolerance)."""
    prep = r.prepared
    sp_o, sp_m = case.volume.spacing_mm, prep.spacing
    m = resample(les["mask"].astype(np.float32), sp_o, sp_m, order=1, out_shape=prep.image.shape) >= 0.5
    if not m.any():
        return {}
    idx = np.argwhere(m)
    pad = int(round(12 / sp_m[0]))
    sl = tuple(slice(max(0, a - pad), b + pad + 1) for a, b in zip(idx.min(0), idx.max(0)))
    out = {"point_heatmap": M.pointing_hit(r.heat_model[sl], m[sl])}
    rng = np.random.default_rng(len(idx))
    ctr = idx.mean(0) + rng.integers(-3, 4, 3)
    size = tuple(cls_model.card.preprocessing.patch_size)
    patch = extract_patch(prep.image, ctr, size)[None, None]
    cam = cls_model.run({cls_model.input_names[0]: patch.astype(np.float32)})[cls_model.card.output_index("cam")]
    out["point_cam"] = M.pointing_hit(cam[0, 0], extract_patch(m.astype(np.uint8), ctr, size))
    return out


def summarise(raw: dict) -> dict:
    """FROC / CPM, candidate AUC, ECE (raw and calibrated), Dice/IoU of detected lesions, pointing game,
    sensitivity by size / texture / location at the 1-FP-per-scan operating point."""
    c, les = raw["cand"], raw["lesions"]
    p = np.array([x["p"] for x in c])
    raw_p = np.array([x["raw"] for x in c])
    hit = np.array([x["hit"] for x in c], int)
    y = hit >= 0
    fr = M.froc(p, hit, len(les), raw["n_scans"])
    thr, _ = M.threshold_at_fp(p, y, raw["n_scans"])
    thr = 1.0 if thr is None else thr
    det = [x for x in les if x["p"] >= thr and x["p"] > 0]
    groups: dict[str, dict] = {}
    for key, fn in (("size_mm", _size_bin), ("texture", lambda x: x["type"]), ("location", lambda x: x["location"])):
        g: dict[str, list[int]] = {}
        for x in les:
            g.setdefault(fn(x), [0, 0])[0] += int(x["p"] >= thr and x["p"] > 0)
            g[fn(x)][1] += 1
        groups[key] = {k: {"sensitivity": round(a / b, 3), "n": b} for k, (a, b) in sorted(g.items())}
    pts = [x for x in les if "point_heatmap" in x]
    return {
        "scans": raw["n_scans"], "lesions": len(les), "candidates": len(c),
        "sensitivity_at_1fp": fr["sens@1"], "cpm": fr["cpm"], "froc": fr,
        "threshold_at_1fp": thr, "candidate_auc": M.auc(p, y),
        "ece_raw": M.ece(raw_p, y), "ece_calibrated": M.ece(p, y),
        "dice_detected": float(np.mean([x["dice"] for x in det])) if det else None,
        "iou_detected": float(np.mean([x["iou"] for x in det])) if det else None,
        "pointing_game_heatmap": float(np.mean([x["point_heatmap"] for x in pts])) if pts else None,
        "pointing_game_cls_cam": float(np.mean([x["point_cam"] for x in pts])) if pts else None,
        "by_group_at_1fp": groups, "seconds_per_scan": round(raw["seconds_per_scan"], 2),
    }


def _size_bin(x: dict) -> str:
    for lo, hi in SIZE_BINS:
        if lo <= x["diameter_mm"] < hi:
            return f"{lo}-{hi:g}" if hi < 1e9 else f">={lo}"
    return "?"


def lidc_real(engine: Engine, seg: str) -> dict:
    """The readers' nodules in the real LIDC stacks: found or not, probability, IoU with the 50% consensus."""
    from inference.dicom import read_volume
    from inference.training.nodule.lidc import nodules

    out = {}
    for case_dir, xml in LIDC.items():
        v = read_volume(SHARED / "lidc-idri-slices" / case_dir)
        r = detect_nodules(v, engine, seg_name=seg)
        for j, nod in enumerate(nodules(SHARED / "lidc-idri-slices" / "xml" / xml, v)):
            les = {"center_voxel": nod["center_voxel"], "mask": nod["consensus"],
                   "long_axis_mm": float(np.ptp(np.argwhere(nod["consensus"])[:, 2]) * v.spacing_mm[2])}
            hits = M.match(r.candidates, [les], v.spacing_mm)
            mine = [c for c, h in zip(r.candidates, hits) if h == 0]
            best = max(mine, key=lambda c: c.probability, default=None)
            out[f"{case_dir}/nodule{j + 1}"] = {
                "found": best is not None, "probability": round(best.probability, 4) if best else None,
                "rank": (r.candidates.index(best) + 1) if best else None,
                "iou_vs_consensus": round(M.iou(r.mask == best.label, nod["consensus"]), 3) if best else 0.0,
                "inter_reader_iou": round(nod["inter_reader_iou"], 3), "readers": nod["n_readers"],
                "other_candidates": len(r.candidates) - len(mine),
            }
    return out
