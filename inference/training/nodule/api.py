"""Plain functions behind ``triage train nodule`` and ``triage export nodule`` (the CLI only parses;
``triage evaluate nodule`` is ``report.run``).

Work directory (default ``var/nodule``, git-ignored): ``patches_train.npz``, checkpoints ``seg_teacher.pt``,
``seg_student.pt``, ``seg_vit.pt``, ``cls.pt``, JSON-lines logs ``*.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from inference.training.nodule import export as ex
from inference.training.nodule.config import HELD_OUT_PROFILE, TRAIN_PROFILES, NoduleConfig
from inference.training.nodule.data import build_patch_set
from inference.training.nodule.train import load_checkpoint, load_patches, train_cls, train_seg

STAGES = ("data", "teacher", "cls", "student", "vit")
DEFAULT_MODELS = Path(__file__).resolve().parents[3] / "assets" / "models"
SEG_NAMES = {"teacher": "nodule_seg", "student": "nodule_seg_student", "vit": "nodule_seg_vit"}


def _summary(work: Path, key: str, value: dict) -> None:
    p = work / "summary.json"
    d = json.loads(p.read_text()) if p.exists() else {}
    d[key] = value
    p.write_text(json.dumps(d, indent=2))


def train(cfg: NoduleConfig, stages: list[str], *, minutes: dict[str, float] | None = None,
          command: str = "", resume: bool = False, model_dir: Path | None = None) -> dict:
    """Run the training ``stages`` in order; returns the summaries of the stages run."""
    torch.set_num_threads(cfg.threads)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    minutes = minutes or {}
    out = {}
    patches = work / "patches_train.npz"
    needs_patches = any(s != "cls" for s in stages) or cfg.cls_from_patches
    if needs_patches and ("data" in stages or not patches.exists()):
        t0 = time.time()
        build_patch_set(cfg, "train", patches)
        out["data"] = {"seconds": round(time.time() - t0, 1), "studies": cfg.n_train_studies,
                       "real_insertions": cfg.n_real_insertions}
    data = load_patches(patches) if needs_patches else None
    for st in [s for s in stages if s in ("teacher", "vit")]:
        out[st] = train_seg(cfg, data, st, work / f"seg_{st}.pt", max_minutes=minutes.get(st, 1e9), resume=resume)
    if "cls" in stages:
        seg = load_checkpoint(work / "seg_teacher.pt")[0] if (work / "seg_teacher.pt").exists() else None
        mined = None
        if cfg.cls_mine_studies or cfg.cls_mine_real or cfg.cls_mine_backgrounds:
            from inference.training.nodule.candidates import build_candidate_set

            cand = work / "cls_candidates.npz"
            if not cand.exists():  # mined with the exported seg model of this work dir's teacher
                build_candidate_set(cfg, cand, model_dir or DEFAULT_MODELS, workers=cfg.extra.get("mine_workers", 2))
            mined = load_patches(cand)
        out["cls"] = train_cls(cfg, data if cfg.cls_from_patches else None, work / "cls.pt", seg=seg,
                               max_minutes=minutes.get("cls", 1e9), mined=mined)
    if "student" in stages:
        teacher = load_checkpoint(work / "seg_teacher.pt")[0]
        out["student"] = train_seg(cfg, data, "student", work / "seg_student.pt", teacher=teacher,
                                   max_minutes=minutes.get("student", 1e9))
    for k, v in out.items():
        v["command"] = command
        v["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        _summary(work, k, v)
    return out


def _real_input(cfg: NoduleConfig, size: tuple[int, int, int]) -> np.ndarray | None:
    """A real LIDC crop (windowed, model grid) of ``size`` for export parity, or None without the data."""
    from inference.models.nodule_prep import extract_patch, resample, window
    from inference.training.nodule.data import SHARED

    d = SHARED / "lidc-idri-slices" / "LIDC-IDRI-0001"
    if not d.exists():
        return None
    from inference.dicom import read_volume

    v = read_volume(d)
    img = window(resample(v.hu, v.spacing_mm, cfg.spacing_mm, cval=-1024.0), cfg.hu_window)
    c = np.array(img.shape) // 2
    return extract_patch(img, c, size)[None, None].astype(np.float32)


def export_all(work: Path, out_dir: Path, *, which: list[str], command: str = "") -> dict:
    """Export checkpoints in ``work`` to ONNX + cards in ``out_dir`` (fp16 and INT8 variants of the teacher
    next to them); returns parity numbers."""
    res = {}
    summary = json.loads((work / "summary.json").read_text()) if (work / "summary.json").exists() else {}
    rng = np.random.default_rng(0)
    for kind in which:
        try:
            res.update(_export_one(work, out_dir, kind, summary, rng, command))
        except Exception as exc:  # e.g. an exporter limitation of the ViT: reported, the others still exported
            print(f"[export] {kind} failed: {type(exc).__name__}: {exc}", flush=True)
            res[kind] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    return res


def _export_one(work: Path, out_dir: Path, kind: str, summary: dict, rng: np.random.Generator, command: str) -> dict:
    res: dict = {}
    ckpt = work / ("cls.pt" if kind == "cls" else f"seg_{kind}.pt")
    net, ck = load_checkpoint(ckpt)
    cfg = NoduleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["config"].items()})
    is_cls = kind == "cls"
    size = tuple(cfg.cls_patch) if is_cls else ((64, 64, 64) if kind == "vit" else tuple(cfg.patch))
    grow = 32 if kind == "vit" else 8  # SwinUNETR: multiples of 32
    name = "nodule_cls" if is_cls else SEG_NAMES[kind]
    path = out_dir / f"{name}.onnx"
    ex.export_onnx(net, path, "cls" if is_cls else "seg", torch.zeros(1, 1, *size))
    inputs = [rng.random((2, 1, *size), dtype=np.float32),
              rng.random((1, 1, *(s + grow for s in size)), dtype=np.float32)]
    real = _real_input(cfg, size)
    if real is not None:
        inputs.append(real)
    diff = ex.parity(net, path, "cls" if is_cls else "seg", inputs)
    tr = summary.get(kind, {})
    training = {"data": f"{cfg.n_train_studies} synthetic studies (inference.synth, seeds 10000+, scanner "
                        f"profiles {', '.join(TRAIN_PROFILES)}; {HELD_OUT_PROFILE} held out) + "
                        f"{cfg.n_real_insertions} x 2 nodules inserted into the real CTA crops of "
                        "../shared/data/real-cta-crop; patches at the model grid",
                "command": tr.get("command", ""), "git_commit": ex.git_commit(), "time": tr.get("time", ""),
                "hardware": ex.hardware(tr.get("threads")), "iterations": tr.get("iterations"),
                "seconds": tr.get("seconds"),
                "loss_first10": tr.get("loss_first10"), "loss_last10": tr.get("loss_last10"),
                "config": ck["config"]}
    if is_cls and (cfg.cls_mine_backgrounds or cfg.cls_init):
        from inference.training.nodule.real import TRAIN_CASES, VALIDATION_CASES

        training["data"] = (
            (f"fine-tuned from {cfg.cls_init} (its card: the v3 data) on " if cfg.cls_init else "")
            + f"candidates mined through the serving path (detect_nodules, served nodule_seg): "
            f"{cfg.cls_mine_studies} synthetic training studies (seeds {10000 + cfg.n_train_studies}+), "
            f"{cfg.cls_mine_real} CTA-crop insertions, and each real training scan ({', '.join(TRAIN_CASES)}) "
            f"as it is + {cfg.cls_mine_backgrounds} runs with 2 inserted synthetic nodules (free / vessel-attached "
            f"/ pleural); real-scan negatives weighted x{cfg.cls_real_neg_weight:g}"
            + ("" if cfg.cls_from_patches else "; no seg-patch samples"))
        training["real_cases_seen"] = list(TRAIN_CASES)
        training["real_cases_never_seen"] = list(VALIDATION_CASES)
    if tr.get("resumed_from"):  # a --resume run: the earlier run's summary (its iterations add up)
        training["resumed_from"] = tr["resumed_from"]
    if tr.get("samples"):
        training["samples"] = tr["samples"]
    metrics = {"export_parity_max_abs_diff": {"value": diff, "inputs": "random (2 shapes) + real LIDC-IDRI-0001 "
                                              "crop", "command": command}}
    if is_cls:
        card = ex.cls_card(path, net, cfg, training, metrics)
    else:
        arch = ({"type": "SwinUNETR (MONAI), ViT variant", "feature_size": cfg.swin_feature_size,
                 "depths": [1, 1, 1, 1]} if kind == "vit" else
                {"type": "3-D residual U-Net with attention gates (MONAI ResidualUnit + AttentionBlock)",
                 "channels": list(cfg.student_channels if kind == "student" else cfg.channels),
                 "res_subunits": cfg.student_res_units if kind == "student" else cfg.num_res_units,
                 "role": kind})
        card = ex.seg_card(name, path, net, cfg, arch, training, metrics)
    ex.write_card(card, out_dir / f"{name}.json")
    res[name] = {"parity_max_abs_diff": diff, "parameters": card.parameters, "bytes": path.stat().st_size}
    print(f"[export] {name}: {path.stat().st_size / 1e6:.2f} MB, parity {diff:.2e}", flush=True)
    if kind == "teacher":
        res.update(_variants(path, inputs, cfg))
    return res


def _variants(path: Path, inputs: list[np.ndarray], cfg: NoduleConfig) -> dict:
    """fp16 and INT8 QDQ files of the teacher (not committed unless chosen; measured by evaluation/bench)."""
    out = {}
    f16 = path.with_name(path.stem + "_fp16.onnx")
    try:
        ex.to_fp16(path, f16)
        out["fp16"] = {"file": f16.name, "bytes": f16.stat().st_size,
                       "card": ex.fp16_card(path.with_suffix(".json"), f16).name}
    except Exception as exc:  # converter missing or op unsupported: say so in the card
        out["fp16"] = {"error": f"{type(exc).__name__}: {exc}"}
    i8 = path.with_name(path.stem + "_int8.onnx")
    try:
        calib = [x[:1] for x in inputs[:2]] + ([inputs[2]] if len(inputs) > 2 else [])
        ex.to_int8(path, i8, calib)
        out["int8"] = {"file": i8.name, "bytes": i8.stat().st_size}
    except Exception as exc:
        out["int8"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
