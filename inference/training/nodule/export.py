"""ONNX export of the nodule models, torch-vs-ORT parity, fp16 / INT8 QDQ variants and model cards.

Export uses the legacy TorchScript exporter (``dynamo=False``, opset 17, ``dynamic_axes`` on batch and
spatial axes; 5-10x faster than the dynamo exporter here). Spatial sizes must be multiples of 8.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.model_card import ModelCard, sha256_file
from inference.training.nodule.config import NoduleConfig
from inference.training.nodule.networks import ClsExport, SegExport, n_params

OPSET = 17
SEG_IO = (["image"], ["prob", "attention"])
CLS_IO = (["patch"], ["logit", "cam"])


def export_onnx(net: torch.nn.Module, path: Path, kind: str, example: torch.Tensor) -> None:
    """Write ``net`` (a seg or cls network) to ``path`` with dynamic batch and spatial axes."""
    wrapper = (SegExport(net) if kind == "seg" else ClsExport(net)).eval()
    ins, outs = SEG_IO if kind == "seg" else CLS_IO
    spatial = {0: "B", 2: "D", 3: "H", 4: "W"}
    axes = {ins[0]: spatial, outs[1]: spatial, outs[0]: spatial if kind == "seg" else {0: "B"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=OPSET, input_names=ins,
                          output_names=outs, dynamic_axes=axes, do_constant_folding=True)


def ort_session(path: Path, threads: int = 2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def parity(net: torch.nn.Module, path: Path, kind: str, inputs: list[np.ndarray]) -> float:
    """Max |torch - ONNX Runtime| over all outputs and ``inputs`` (each (B, 1, D, H, W) float32)."""
    wrapper = (SegExport(net) if kind == "seg" else ClsExport(net)).eval()
    sess = ort_session(path)
    name = sess.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(torch.as_tensor(x))]
        got = sess.run(None, {name: x.astype(np.float32)})
        worst = max(worst, *(float(np.abs(a - b).max()) for a, b in zip(ref, got)))
    return worst


FP16_KEEP_FP32 = ("BatchNormalization",)


def to_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and compute with fp32 inputs/outputs (for GPUs) via onnxruntime's converter.

    The attention gates' ``BatchNormalization`` stays fp32: converted, ONNX Runtime's fp16 batch norm turned the
    whole output wrong (max abs difference 1.0 against fp32); kept in fp32 the difference is ~1e-5.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    m = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=list(FP16_KEEP_FP32))
    onnx.save(m, str(dst))


def to_int8(src: Path, dst: Path, calib: list[np.ndarray]) -> None:
    """Static INT8 QDQ quantisation (per-channel weights) calibrated on ``calib`` inputs."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    name = ort_session(src).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{name: x.astype(np.float32)} for x in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    pre.unlink(missing_ok=True)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware(threads: int | None = None) -> str:
    """This machine, torch and the thread count (``threads``: the training run's, when its summary has it;
    else this process's)."""
    dev = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
    return f"{dev}; {platform.processor() or platform.machine()}; torch {torch.__version__}; " \
           f"{threads or torch.get_num_threads()} threads"


def seg_card(name: str, onnx_path: Path, net: torch.nn.Module, cfg: NoduleConfig, arch: dict[str, Any],
             training: dict[str, Any], metrics: dict[str, Any]) -> ModelCard:
    """The card of a segmentation model (prob + attention outputs)."""
    sp = ["B", 1, "D", "H", "W"]
    return ModelCard(
        name=name, version=time.strftime("%Y.%m.%d"), task="nodule_segmentation", file=onnx_path.name,
        sha256=sha256_file(onnx_path), opset=OPSET, architecture=arch, parameters=n_params(net),
        inputs=[{"name": "image", "shape": sp, "description": "HU window scaled to [0, 1] at spacing_mm"}],
        outputs=[{"name": "prob", "shape": sp, "description": "nodule probability per voxel (sigmoid)"},
                 {"name": "attention", "shape": sp, "description": "finest attention-gate coefficients"}],
        preprocessing={"spacing_mm": list(cfg.spacing_mm), "hu_window": list(cfg.hu_window),
                       "patch_size": list(cfg.roi), "train_crop": list(cfg.train_crop), "overlap": cfg.overlap,
                       "multiple_of": 8, "crop": "lungs",
                       "crop_margin_mm": cfg.crop_margin_mm, "resample": "linear (scipy), voxel-0 centres aligned",
                       "lung_mask": "inference.models.nodule_prep.lung_mask"},
        thresholds={"segmentation": 0.5, "min_volume_mm3": 10.0, "max_candidates": 100},
        training=training, metrics=metrics,
        explanation={"output": "prob", "method": "the segmentation probability map is the explanation "
                     "(where the model sees nodule tissue); 'attention' holds the finest attention gate"},
    )


def cls_card(onnx_path: Path, net: torch.nn.Module, cfg: NoduleConfig, training: dict[str, Any],
             metrics: dict[str, Any]) -> ModelCard:
    """The card of the candidate classifier (logit + CAM outputs; calibration filled in by evaluation)."""
    pp = ["B", 1, "D", "H", "W"]
    return ModelCard(
        name="nodule_cls", version=time.strftime("%Y.%m.%d"), task="nodule_candidate", file=onnx_path.name,
        sha256=sha256_file(onnx_path), opset=OPSET, parameters=n_params(net),
        architecture={"type": "residual 3-D CNN + global average pool + linear (CAM-exact)",
                      "blocks": "monai ResidualUnit", "channels": list(cfg.cls_channels)},
        inputs=[{"name": "patch", "shape": pp, "description": "patch centred on a candidate, same window/spacing"}],
        outputs=[{"name": "logit", "shape": ["B", 1], "description": "nodule logit (uncalibrated)"},
                 {"name": "cam", "shape": pp, "description": "class activation map; its mean equals the logit"}],
        preprocessing={"spacing_mm": list(cfg.spacing_mm), "hu_window": list(cfg.hu_window),
                       "patch_size": list(cfg.cls_patch), "overlap": 0.0, "multiple_of": 4, "crop": "none"},
        thresholds={"report": 0.5, "suspected": 0.5}, training=training, metrics=metrics,
        explanation={"output": "cam", "method": "CAM of the global-average-pooled linear head (= Grad-CAM here)"},
    )


def fp16_card(fp32_card: Path, fp16_onnx: Path) -> Path:
    """The card of the fp16 variant: the fp32 card with its own name, file and sha256 (same preprocessing,
    thresholds and training); selectable as ``seg_name="nodule_seg_fp16"``. Returns the card path."""
    d = json.loads(fp32_card.read_text())
    name = fp16_onnx.stem
    d.update(name=name, file=fp16_onnx.name, sha256=sha256_file(fp16_onnx))
    d["architecture"] = {**d.get("architecture", {}), "precision": "fp16 weights and compute, fp32 inputs/outputs; "
                         f"BatchNormalization kept fp32 ({', '.join(FP16_KEEP_FP32)})", "role": "fp16 variant"}
    d["intended_use"] = (d.get("intended_use", "") + " fp16 variant for GPUs (CUDA / TensorRT providers); on a CPU "
                         "use the fp32 model.").strip()
    for k in ("metrics", "compression", "default_choice"):
        d.pop(k, None)
    d["metrics"] = {"note": f"evaluated next to the fp32 model: see compression.fp16 in {fp32_card.name}"}
    ModelCard.model_validate(d)
    out = fp16_onnx.with_suffix(".json")
    out.write_text(json.dumps(d, indent=2) + "\n")
    return out


def write_card(card: ModelCard, path: Path) -> None:
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")


def update_card(path: Path, **fields: Any) -> None:
    """Merge ``fields`` into the JSON card at ``path`` (dicts merged one level deep) and re-validate it."""
    d = json.loads(path.read_text())
    for k, v in fields.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    ModelCard.model_validate(d)
    path.write_text(json.dumps(d, indent=2) + "\n")
