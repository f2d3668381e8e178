"""Compare the segmentation variants (fp32 teacher, student, INT8 QDQ, fp16, ViT) through the serving path on
the same held-out synthetic test studies: Dice of detected nodules, sensitivity at 1 FP/scan, CPM, seconds
per scan (CPU). Used by ``triage evaluate nodule --variants``; numpy / ONNX Runtime only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from inference.engine import Engine
from inference.model_card import sha256_file
from inference.models.nodule import CLS_MODEL, SEG_MODEL
from inference.training.nodule.data import eval_cases
from inference.training.nodule.evaluate import evaluate_cases, summarise

VARIANT_FILES = {
    "fp32": "nodule_seg.onnx",
    "student": "nodule_seg_student.onnx",
    "int8_qdq": "nodule_seg_int8.onnx",
    "fp16": "nodule_seg_fp16.onnx",
    "vit": "nodule_seg_vit.onnx",
}


def _model_dir(model_dir: Path, onnx_name: str, tmp: Path) -> Path:
    """A model directory where ``nodule_seg`` is ``onnx_name`` (card copied from the fp32 one or its own)."""
    own = model_dir / onnx_name.replace(".onnx", ".json")
    card = json.loads((own if own.exists() else model_dir / f"{SEG_MODEL}.json").read_text())
    shutil.copy(model_dir / onnx_name, tmp / onnx_name)
    card.update(name=SEG_MODEL, file=onnx_name, sha256=sha256_file(tmp / onnx_name))
    (tmp / f"{SEG_MODEL}.json").write_text(json.dumps(card))
    for f in (f"{CLS_MODEL}.onnx", f"{CLS_MODEL}.json"):
        shutil.copy(model_dir / f, tmp / f)
    return tmp


def compare(model_dir: Path, n: int, threads: int = 2, log=print) -> dict:
    """Each available variant on the first ``n`` studies of the synthetic test split."""
    out = {}
    for key, fname in VARIANT_FILES.items():
        if not (model_dir / fname).exists():
            out[key] = {"error": f"{fname} absent"}
            continue
        with tempfile.TemporaryDirectory() as t:
            try:
                eng = Engine(_model_dir(model_dir, fname, Path(t)), ["CPUExecutionProvider"], threads=threads)
                s = summarise(evaluate_cases(eval_cases("test", n), eng, SEG_MODEL, log=log))
            except Exception as exc:  # e.g. an op without a CPU kernel in fp16
                out[key] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                continue
        out[key] = {k: s[k] for k in ("sensitivity_at_1fp", "cpm", "dice_detected", "candidate_auc",
                                      "seconds_per_scan")}
        out[key]["mb"] = round((model_dir / fname).stat().st_size / 1e6, 3)
        log(f"[variants] {key}: {out[key]}")
    return out
