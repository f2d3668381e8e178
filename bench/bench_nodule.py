"""CPU latency of the nodule segmentation variants: fp32 teacher, distilled student, INT8 QDQ, fp16, ViT.

Per variant: one ROI window (median of N runs, ONNX Runtime CPUExecutionProvider) and a whole-volume sliding
window (the serving ``segment`` on a synthetic study), printed with ratios to the fp32 teacher. Files that
are absent (e.g. the ViT ONNX) are reported as such. Compare numbers within one run only (VM jitter).

    .venv/bin/python bench/bench_nodule.py [--threads 2] [--runs 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"
VARIANTS = {
    "fp32 teacher": "nodule_seg.onnx",
    "student fp32": "nodule_seg_student.onnx",
    "INT8 QDQ": "nodule_seg_int8.onnx",
    "fp16": "nodule_seg_fp16.onnx",
    "ViT (SwinUNETR)": "nodule_seg_vit.onnx",
}


def session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model-dir", default=str(MODELS))
    ap.add_argument("--no-volume", action="store_true", help="skip the whole-volume sliding window")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    from inference.engine import sliding_window
    from inference.model_card import ModelCard
    from inference.models.nodule import prepare
    from inference.synth.study import generate_study

    mdir = Path(args.model_dir)
    card = ModelCard.load(mdir / "nodule_seg.json")
    roi = tuple(card.preprocessing.patch_size)
    rng = np.random.default_rng(0)
    x = rng.random((1, 1, *roi), dtype=np.float32)
    prep = None
    if not args.no_volume:
        s = generate_study(7, profile="siemens_flash_b30f", size=None, shape=(120, 256, 256), spacing=(2.0, 1.2, 1.2),
                           lesions="nodule")
        prep = prepare(s.volume, card)
        crop = prep.image[prep.box].shape
        print(f"volume {s.volume.shape} -> model grid crop {crop} at {card.preprocessing.spacing_mm} mm")
    rows = {}
    for name, fname in VARIANTS.items():
        p = mdir / fname
        if not p.exists():
            print(f"{name:18s} absent ({fname})")
            continue
        sess = session(p, args.threads)
        iname = sess.get_inputs()[0].name
        feed_roi = roi if "ViT" not in name else tuple(max(32, r // 32 * 32) for r in roi)
        xx = x if feed_roi == roi else rng.random((1, 1, *feed_roi), dtype=np.float32)
        sess.run(None, {iname: xx})
        ts = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            sess.run(None, {iname: xx})
            ts.append(time.perf_counter() - t0)
        row = {"window_s": statistics.median(ts), "roi": list(feed_roi), "mb": p.stat().st_size / 1e6}
        if prep is not None:
            t0 = time.perf_counter()
            sliding_window(np.ascontiguousarray(prep.image[prep.box]), feed_roi,
                           lambda b, s=sess, n=iname: s.run(None, {n: b}), overlap=card.preprocessing.overlap,
                           batch_size=1)
            row["volume_s"] = time.perf_counter() - t0
        rows[name] = row
    base = rows.get("fp32 teacher")
    print(f"\n{'variant':18s} {'MB':>6s} {'window s':>9s} {'x fp32':>7s} {'volume s':>9s} {'x fp32':>7s}")
    for name, r in rows.items():
        rw = r["window_s"] / base["window_s"] if base else float("nan")
        vol = r.get("volume_s", float("nan"))
        rv = vol / base["volume_s"] if base and "volume_s" in base else float("nan")
        print(f"{name:18s} {r['mb']:6.2f} {r['window_s']:9.3f} {rw:7.2f} {vol:9.2f} {rv:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
