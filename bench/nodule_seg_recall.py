"""Candidate recall of a nodule segmentation model on the synthetic VALIDATION split (seeds 20000+).

Recall = share of truth lesions hit by any candidate of the serving path (``detect_nodules``, the classifier's
probability ignored), by long-axis size band, plus candidates per scan; and the FROC / CPM of the calibrated
candidate probabilities, on all studies and on those from ``--held-out-from`` on (the studies after the ones
``triage evaluate nodule --calibrate --n-val N`` fitted the calibration on). For choosing between segmentation
models (never run it on the test split). numpy + ONNX Runtime only.

    OMP_NUM_THREADS=1 .venv/bin/python bench/nodule_seg_recall.py --model-dir DIR [--n-val 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BANDS = ((0, 6), (6, 10), (10, 20), (20, 30), (30, 1e9))


def band(d: float) -> str:
    for lo, hi in BANDS:
        if lo <= d < hi:
            return f"{lo}-{hi:g}" if hi < 1e9 else f">={lo}"
    return "?"


def recall(model_dir: Path, n_val: int, threads: int = 1, seg: str = "nodule_seg", held_out_from: int = 16,
           start: int = 0) -> dict:
    """Per-band candidate recall, candidates per scan and the per-lesion records on ``n_val`` val studies."""
    from inference.engine import Engine
    from inference.models.nodule import detect_nodules
    from inference.training.nodule import metrics as M
    from inference.training.nodule.config import TRAIN_PROFILES
    from inference.training.nodule.data import gt_lesions, synthetic_case

    engine = Engine(model_dir, ["CPUExecutionProvider"], threads=threads, verify=False)
    recs, cands, n_cand, t0 = [], [], [], time.time()
    for k in range(start, n_val):  # the cases of data.eval_cases("val", n_val), from ``start`` on
        case = synthetic_case("val", k, profile=TRAIN_PROFILES[k % len(TRAIN_PROFILES)], lesions="auto")
        r = detect_nodules(case.volume, engine, seg_name=seg)
        lesions = gt_lesions(case)
        hits = M.match(r.candidates, lesions, case.volume.spacing_mm)
        n_cand.append(len(r.candidates))
        cands += [{"study": k, "p": c.probability, "hit": len(recs) + h if h >= 0 else -1}
                  for c, h in zip(r.candidates, hits)]
        for i, les in enumerate(lesions):
            d = float(les.get("long_axis_mm") or les.get("diameter_mm") or 0)
            ps = [c.probability for c, h in zip(r.candidates, hits) if h == i]
            recs.append({"case": case.name, "study": k, "diameter_mm": d, "hit": bool(ps), "p": max(ps, default=0.0)})
        print(f"[recall] {case.name}: {len(r.candidates)} candidates, {len(lesions)} lesions, "
              f"hit {sum(x['hit'] for x in recs[-len(lesions):]) if lesions else 0}", flush=True)
    by: dict[str, list[int]] = {}
    for x in recs:
        by.setdefault(band(x["diameter_mm"]), [0, 0])
        by[band(x["diameter_mm"])][0] += int(x["hit"])
        by[band(x["diameter_mm"])][1] += 1
    order = [band((lo + min(hi, 60)) / 2) for lo, hi in BANDS]
    froc = {}
    for name, lo in (("all", start), (f"studies {held_out_from}+", max(start, held_out_from))):
        keep = [c for c in cands if c["study"] >= lo]
        les = {i for i, x in enumerate(recs) if x["study"] >= lo}
        if les:
            remap = {i: j for j, i in enumerate(sorted(les))}
            fr = M.froc(np.array([c["p"] for c in keep]), np.array([remap.get(c["hit"], -1) for c in keep]),
                        len(les), n_val - lo)
            froc[name] = {k: round(v, 3) for k, v in fr.items()}
    return {"model_dir": str(model_dir), "scans": n_val - start, "first_study": start, "lesions": len(recs),
            "froc": froc,
            "recall": round(float(np.mean([x["hit"] for x in recs])), 3) if recs else None,
            "by_size_mm": {k: {"recall": round(by[k][0] / by[k][1], 3), "n": by[k][1]} for k in order if k in by},
            "candidates_per_scan": round(float(np.mean(n_cand)), 2), "seconds": round(time.time() - t0, 1),
            "lesion_records": recs, "candidates": cands}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--n-val", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--held-out-from", type=int, default=16)
    ap.add_argument("--start", type=int, default=0, help="first validation study (default 0)")
    ap.add_argument("--json")
    a = ap.parse_args()
    res = recall(Path(a.model_dir), a.n_val, a.threads, held_out_from=a.held_out_from, start=a.start)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k not in ("lesion_records", "candidates")}, indent=2))


if __name__ == "__main__":
    main()
