"""ONNX export of the PE CNN-LSTM (teacher and distilled student), parity check against torch, calibration on
the validation split and the model card.

The legacy TorchScript exporter (opset 17, ``dynamic_axes``) is used: it handles the LSTM and is 5-10x
faster than the dynamo path on this CPU. Batch, sequence length and both spatial sizes are dynamic.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.model_card import ModelCard, sha256_file
from inference.models.pe import REGION_DEFAULTS
from inference.training.pe import data, metrics
from inference.training.pe.net import PECnnLstm, count_parameters

OPSET = 17
INPUT = "slices"
OUTPUTS = ("study_logit", "slice_logits", "cam")


def export_onnx(model: PECnnLstm, path: Path | str, opset: int = OPSET) -> Path:
    """Write ``model`` as a single-file ONNX with dynamic (batch, slices, height, width)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = torch.rand(1, 12, 1, 64, 64)
    torch.onnx.export(
        model, (x,), str(path), dynamo=False, opset_version=opset, input_names=[INPUT], output_names=list(OUTPUTS),
        dynamic_axes={INPUT: {0: "B", 1: "S", 3: "H", 4: "W"}, "study_logit": {0: "B"},
                      "slice_logits": {0: "B", 1: "S"}, "cam": {0: "B", 1: "S", 2: "h", 3: "w"}},
        do_constant_folding=True,
    )
    return path


def ort_session(path: Path | str, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity(model: PECnnLstm, path: Path | str, x: np.ndarray) -> float:
    """Max abs difference over all outputs between torch and ONNX Runtime (CPU) on input ``x``."""
    sess = ort_session(path)
    with torch.no_grad():
        ref = [t.numpy() for t in model.eval()(torch.from_numpy(x))]
    got = sess.run(None, {INPUT: x.astype(np.float32)})
    return float(max(np.abs(a - b).max() for a, b in zip(ref, got)))


def val_logits(path: Path | str, cache: Path | str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Study logits (ONNX Runtime) and study truth of the cached validation split (model-grid inputs)."""
    sess = ort_session(path)
    zs, ys = [], []
    for p in sorted((Path(cache) / "val").glob("*.npz"))[:limit]:
        s = data.load_sample(p)
        x = data.window(s.hu)[None, :, None]
        zs.append(float(sess.run(["study_logit"], {INPUT: x})[0][0]))
        ys.append(bool(s.meta["positive"]))
    return np.array(zs), np.array(ys)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_card(name: str, onnx_path: Path, model: PECnnLstm, ck: dict[str, Any], *, logits: np.ndarray,
               y: np.ndarray, parity_random: float, parity_real: float | None, role: str,
               command: str, train_command: str = "") -> ModelCard:
    """The model card: spec, calibration (Platt on validation) and critical threshold (90 % val specificity)."""
    a, b = metrics.fit_platt(logits, y)
    p_raw, p_cal = metrics.sigmoid(logits), metrics.sigmoid(a * logits + b)
    thr = metrics.threshold_at_specificity(y, p_cal, 0.9)
    pre = data.PREPROCESSING.model_dump()
    pre["region"] = dict(REGION_DEFAULTS)
    h = "H/4"
    cfg = ck.get("train_config", {})
    return ModelCard(
        name=name, version=dt.date.today().isoformat() + "-" + git_commit()[:7], task="pe_slice_sequence",
        file=onnx_path.name, sha256=sha256_file(onnx_path), opset=OPSET,
        architecture={"type": "CNN-LSTM", "role": role, "slice_encoder": "MONAI Convolution + 3 ResidualUnit (2-D)",
                      "channels": model.config["channels"], "lstm_hidden_per_direction": model.config["hidden"],
                      "bidirectional": True, "cam_stride": 4, "explanation": "CAM of the slice head (1x1 conv on "
                      "the features before global average pooling), ONNX output 'cam'"},
        parameters=count_parameters(model),
        inputs=[{"name": INPUT, "shape": ["B", "S", 1, "H", "W"], "description": "axial slices of the "
                 "pulmonary-artery crop, HU windowed to [0, 1]; H, W multiples of 4"}],
        outputs=[{"name": "study_logit", "shape": ["B"], "description": "raw study PE logit (calibrate with the "
                  "card)"},
                 {"name": "slice_logits", "shape": ["B", "S"], "description": "per-slice PE logits"},
                 {"name": "cam", "shape": ["B", "S", h, "W/4"], "description": "class activation map per slice"}],
        preprocessing=pre,
        thresholds={"critical": round(thr, 4), "report": 0.3},  # report: a PE finding is listed from here
        calibration={"method": "platt", "params": {"a": a, "b": b},
                     "ece_before": round(metrics.ece(y, p_raw), 4), "ece_after": round(metrics.ece(y, p_cal), 4),
                     "data": f"validation split: {len(y)} synthetic CTPA (seeds {data.SPLITS['val']['seed0']}+, "
                             f"{int(y.sum())} with emboli), ONNX Runtime on the serving crop"},
        training={"data": f"synthetic CTPA slabs (inference.synth, anatomy={data.ANATOMY!r}, profiles "
                          + ", ".join(data.TRAIN_PROFILES)
                          + f"; seeds {data.SPLITS['train']['seed0']}+, {cfg.get('n_synthetic', '?')} studies) with "
                          "their own emboli plus emboli inserted on the fly into negatives and into the real CTA "
                          "crop (TotalSegmentator test data, treated as PE-free background: an assumption, it has "
                          "no PE label)",
                  "real_cases_seen": "only real-cta-crop/pulmonary_report_ct_cropped.nii.gz (with its automatic "
                                     "pulmonary-artery mask) as background for inserted emboli; never lung1, lung2 "
                                     "(validation only), the LIDC-IDRI slabs or the aorta crop",
                  "warm_start": (f"{ws} (the file as it was before this training; weights read back with "
                                 "inference.training.pe.warmstart, BatchNorm folded and frozen)"
                                 if (ws := cfg.get("init_onnx_student" if role == "student" else "init_onnx"))
                                 else None),
                  "method": "phase 1: slice CNN + CAM head on clot-centred single-slice 64x64 patches (CAM "
                            "supervised with the clot mask on its 1/4 grid, slice-head BCE); phase 2: CNN frozen, "
                            "bidirectional LSTM + study/slice heads on 24-slice windows of the full 128x128 crop; "
                            "the student learns jointly from labels and the teacher's detached outputs (online "
                            "distillation); AdamW, cosine schedule per phase, fp32",
                  "command": train_command or command, "export_command": command, "git_commit": git_commit(),
                  "steps": ck.get("steps"),
                  "seconds": round(float(ck.get("seconds", 0))), "hardware": f"{ck.get('device', 'cpu')} "
                  f"({platform.processor() or platform.machine()}, {cfg.get('threads', 2)} threads), fp32",
                  "config": cfg, "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
        metrics={"export_parity_max_abs_diff": {"random": parity_random, "real_cta_crop": parity_real}},
        intended_use="Research only; not a medical device. Trained and evaluated on synthetic CTPA and synthetic "
                     "emboli inserted into one real CTA; no clinical performance is claimed.",
    )


def write_card(card: ModelCard, path: Path | str) -> Path:
    path = Path(path)
    path.write_text(json.dumps(card.model_dump(mode="json", exclude={"path"}), indent=2) + "\n")
    return path
