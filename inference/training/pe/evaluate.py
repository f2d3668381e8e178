"""Evaluate a committed PE model through the serving path (``inference.models.pe.analyze_pe``, ONNX Runtime).

Sets (never used in training): the synthetic CTPA test split (own seeds, the training profiles), a held-out
scanner profile (domain shift), emboli inserted into the real CTA crop with insertion seeds of their own,
and the real crop without insertion (PE-unknown: its score is reported, not scored). Synthetic numbers are
synthetic numbers: no clinical performance is claimed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.engine import Engine
from inference.models.pe import analyze_pe
from inference.training.pe import data, metrics
from inference.volume import Volume

REAL_SEED0 = 700_000  # insertion seeds for evaluation (training draws from its own generator stream)
TOLERANCE_VOX = 2  # lenient pointing game: peak within 2 voxels of the clot


def _truth_location(meta: dict[str, Any], peak_mm: tuple[float, float, float]) -> dict[str, str] | None:
    """Level and side of the synthetic embolus nearest to the peak (synthetic midline: x = 0 mm)."""
    emb = [e for e in meta.get("emboli", []) if e.get("center_mm")]
    if not emb:
        return None
    e = min(emb, key=lambda e: np.linalg.norm(np.asarray(e["center_mm"]) - np.asarray(peak_mm)))
    level = "saddle" if e.get("type") == "saddle" else str(e.get("level"))
    return {"level": level, "side": "midline" if level == "saddle" else ("left" if e["center_mm"][0] > 0 else "right")}


def analyse_case(vol: Volume, clot: np.ndarray, meta: dict[str, Any], engine: Engine, model: str) -> dict[str, Any]:
    """One study through the serving path, with the pointing game and location check."""
    r = analyze_pe(vol, engine=engine, model_name=model)
    rec: dict[str, Any] = {"study": meta.get("study_uid", ""), "seed": meta.get("seed"), "profile": meta.get("profile"),
                           "positive": bool(meta.get("positive")), "is_ctpa": r.is_ctpa,
                           "probability": r.probability, "location": r.location, "peak_voxel": r.peak_voxel,
                           "ms": round(sum(r.timings_ms.values()), 1)}
    if rec["positive"] and r.peak_voxel is not None:
        rec["clot_in_region"] = bool((clot & r.region_mask).any())
        rec["hit"] = metrics.pointing_hit(r.peak_voxel, clot)
        rec["hit_tol"] = metrics.pointing_hit(r.peak_voxel, clot, TOLERANCE_VOX)
        truth = _truth_location(meta, r.peak_mm) if r.peak_mm else None
        if truth:
            grp = {"saddle": "central"}
            rec["truth_location"] = truth
            rec["level_ok"] = grp.get(r.location["level"], r.location["level"]) == grp.get(truth["level"],
                                                                                             truth["level"])
            rec["side_ok"] = truth["side"] == "midline" or r.location["side"] == truth["side"]
    return rec


def summarise(recs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """AUC, sensitivity/specificity at the critical threshold, sensitivity at 90% specificity (a point of the ROC),
    ECE, pointing game, location accuracy."""
    ok = [r for r in recs if r["probability"] is not None]
    y = np.array([r["positive"] for r in ok])
    p = np.array([r["probability"] for r in ok])
    sens, spec = metrics.sens_spec(y, p, threshold)
    sens90, spec90 = metrics.sens_spec(y, p, metrics.threshold_at_specificity(y, p, 0.9))  # a point of the ROC
    pos = [r for r in ok if r["positive"] and r.get("clot_in_region")]
    out = {"n": len(recs), "n_positive": int(y.sum()), "n_not_ctpa": len(recs) - len(ok),
           "auc": round(metrics.roc_auc(y, p), 4), "sensitivity_at_critical": round(sens, 4),
           "specificity_at_critical": round(spec, 4), "ece": round(metrics.ece(y, p), 4),
           "sensitivity_at_90_specificity": round(sens90, 4), "specificity_of_that_point": round(spec90, 4),
           "pointing_game": {"n": len(pos), "hit_rate": round(float(np.mean([r["hit"] for r in pos])), 4) if pos
                             else None,
                             f"hit_rate_within_{TOLERANCE_VOX}_voxels": round(float(np.mean([r["hit_tol"] for r in
                                                                                             pos])), 4) if pos
                             else None,
                             "cases": "positives whose clot lies inside the analysed crop"},
           "mean_ms_per_study": round(float(np.mean([r["ms"] for r in recs])), 1)}
    loc = [r for r in pos if "level_ok" in r]
    if loc:
        out["location_accuracy"] = {"n": len(loc), "level": round(float(np.mean([r["level_ok"] for r in loc])), 4),
                                    "side": round(float(np.mean([r["side_ok"] for r in loc])), 4)}
    return out


def real_scans() -> list[tuple[str, str, Volume]]:
    """Every real scan of ``../shared/data`` (name, kind, volume): the two CTA crops (contrast-enhanced,
    PE-unknown) and the non-CTPA scans (lung1, lung2, the three LIDC-IDRI slabs). None has a known PE."""
    from inference.dicom import read_volume
    from inference.training.pe.realcta import REAL_CTA_DIR, nifti_to_volume
    from inference.training.realdata import read_nrrd_volume

    shared = REAL_CTA_DIR.parent
    out = [(f"cta_{n}", "real CTA crop (PE-unknown)", nifti_to_volume(REAL_CTA_DIR / f"{n}_report_ct_cropped.nii.gz",
                                                                      study_uid=f"real-cta-{n}"))
           for n in ("pulmonary", "aorta")]
    for n in ("lung1", "lung2"):  # lung2 is validation data: scored here, never trained on
        vol, _ = read_nrrd_volume(shared / "pyradiomics-lung" / f"{n}_image.nrrd", uid=f"2.25.{100 + int(n[-1])}")
        out.append((n, "real full-thorax CT, non-contrast", vol))
    for n in ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"):
        out.append((n, "real LIDC-IDRI slab (15-40 mm)", read_volume(shared / "lidc-idri-slices" / n)))
    return out


def real_scan_safety(engine: Engine, model: str, threshold: float) -> dict[str, Any]:
    """The served model on every real scan without a known PE: probability, CTPA or not, critical or not."""
    rows = []
    for name, kind, vol in real_scans():
        r = analyze_pe(vol, engine=engine, model_name=model)
        rows.append({"scan": name, "kind": kind, "is_ctpa": r.is_ctpa, "probability": None if r.probability is None
                     else round(float(r.probability), 4), "critical": bool(r.critical)})
    return {"scans": rows, "n_critical": sum(r["critical"] for r in rows), "critical_threshold": threshold,
            "note": "no PE is known on any of these scans (the CTA crops have no PE label); a critical flag here "
                    "would be a false alarm. lung2 is validation data, never trained on"}


def evaluate(model_dir: Path | str, model: str, cache: Path | str, *, n_test: int = 60, n_unseen: int = 24,
             n_real: int = 20, progress: bool = True, anatomy: str = data.ANATOMY) -> dict[str, Any]:
    """Run every evaluation set through ``analyze_pe``; returns the metrics block for the card."""
    engine = Engine(Path(model_dir), ["CPUExecutionProvider"], threads=1)
    card = engine.cards[model]
    thr = float(card.thresholds.get("critical", 0.5))
    t0 = time.time()
    sets: dict[str, list[dict[str, Any]]] = {}
    for split, n in (("test", n_test), ("unseen", n_unseen)):
        sets[split] = []
        for i in range(n):
            vol, clot, meta = data.eval_study(Path(cache), split, i, anatomy)
            sets[split].append(analyse_case(vol, clot, meta, engine, model))
            if progress:
                r = sets[split][-1]
                print(f"[{split} {i + 1}/{n}] pos={r['positive']} p={r['probability']} hit={r.get('hit')} "
                      f"({time.time() - t0:.0f}s)", flush=True)
    from inference.training.pe.realcta import load_real_cta

    vol, pa = load_real_cta()
    base = analyze_pe(vol, engine=engine, model_name=model)
    sets["real_inserted"] = []
    for i in range(n_real):
        v2, clot, descs = data.real_inserted(vol, pa, REAL_SEED0 + i)
        meta = {"study_uid": v2.study_uid, "seed": REAL_SEED0 + i, "positive": True, "profile": "real-cta-crop"}
        sets["real_inserted"].append(analyse_case(v2, clot, meta, engine, model))
        if progress:
            print(f"[real+insert {i + 1}/{n_real}] p={sets['real_inserted'][-1]['probability']}", flush=True)
    res: dict[str, Any] = {}
    for k in ("test", "unseen"):
        res[f"synthetic_{k}"] = summarise(sets[k], thr)
    ri = sets["real_inserted"]
    p_ins = np.array([r["probability"] for r in ri], np.float64)
    pos = [r for r in ri if r.get("clot_in_region")]
    res["real_cta_inserted"] = {
        "n": len(ri), "sensitivity_at_critical": round(float((p_ins >= thr).mean()), 4),
        "fraction_above_uninserted_score": round(float((p_ins > (base.probability or 0.0)).mean()), 4),
        "median_probability": round(float(np.median(p_ins)), 4),
        "pointing_game": {"n": len(pos), "hit_rate": round(float(np.mean([r["hit"] for r in pos])), 4) if pos else None,
                          f"hit_rate_within_{TOLERANCE_VOX}_voxels": round(float(np.mean([r["hit_tol"] for r in pos])),
                                                                           4) if pos else None},
        "note": "synthetic emboli inserted into one real CTA (insertion seeds 700000+); one background only",
    }
    res["real_cta_uninserted"] = {"probability": base.probability, "is_ctpa": base.is_ctpa,
                                  "note": "PE-unknown (no label); used as PE-free background in training, so a low "
                                          "score here is expected and is not evidence of specificity"}
    a, b = res["synthetic_test"]["auc"], res["synthetic_unseen"]["auc"]
    res["unseen_profile"] = {"profile": data.HELD_OUT_PROFILE, "auc_drop_points": round(100 * (a - b), 2)}
    res["real_scans"] = real_scan_safety(engine, model, thr)
    res["synthetic_anatomy"] = anatomy
    res["critical_threshold"] = thr
    res["seconds"] = round(time.time() - t0, 1)
    res["cases"] = sets
    return res


def write_metrics(card_path: Path | str, res: dict[str, Any], command: str) -> None:
    """Put ``res`` (without per-case rows) into the card's ``metrics`` with the command; rows go beside it."""
    p = Path(card_path)
    card = json.loads(p.read_text())
    keep = {k: v for k, v in res.items() if k != "cases"}
    card.setdefault("metrics", {}).update({**keep, "command": command, "evaluated": time.strftime("%Y-%m-%d"),
                                           "label": "synthetic data / synthetic insertions; not clinical"})
    p.write_text(json.dumps(card, indent=2) + "\n")
