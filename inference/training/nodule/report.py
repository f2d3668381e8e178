"""``triage evaluate nodule``: runs the evaluations (``evaluate``: synthetic and LIDC splits; ``calibration``;
``variants``: seg variants; ``realtable``: the real-CT table) and writes their numbers into the model cards.
numpy / ONNX Runtime only, except for writing the cards (``export.update_card``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from inference.engine import Engine
from inference.models.nodule import CLS_MODEL
from inference.training.nodule import evaluate as E
from inference.training.nodule.calibration import calibrate
from inference.training.nodule.config import HELD_OUT_PROFILE
from inference.training.nodule.data import eval_cases
from inference.training.nodule.realtable import real_table
from inference.training.nodule.realtable import write as write_table
from inference.training.nodule.variants import compare


def run(args: argparse.Namespace, command: str) -> dict:
    """The whole ``triage evaluate nodule`` (see the CLI for the arguments); ``command`` is recorded in the cards."""
    from inference.training.nodule.export import update_card

    model_dir = Path(args.model_dir)
    engine = Engine(model_dir, ["CPUExecutionProvider"], threads=args.threads)
    cmd = command
    res: dict = {}
    if args.merge:
        cmds = []
        for f in args.merge:
            d = json.loads(Path(f).read_text())
            cmds.append(d.pop("_command"))
            res.update(d)
        cmd = " && ".join(cmds) + " && " + cmd
        args.splits = ""
    if args.calibrate:
        n_val = 2 if args.quick else args.n_val
        card = model_dir / f"{CLS_MODEL}.json"
        res["calibration"] = calibrate(engine, args.seg, n_val, card, write=not args.no_write,
                                       cache=Path(args.cache) if args.cache else None, features=args.features)
        engine = Engine(model_dir, ["CPUExecutionProvider"], threads=args.threads)
    sizes = {"val": args.n_val, "test": args.n_test, "unseen": args.n_unseen, "lidc-inserted": args.n_inserted}
    for split in [s for s in args.splits.split(",") if s]:
        t0 = time.time()
        if split == "lidc-real":
            res[split] = E.lidc_real(engine, args.seg)
        else:
            n = 2 if args.quick else sizes[split]
            res[split] = E.summarise(E.evaluate_cases(eval_cases(split, n), engine, args.seg))
        res[split]["seconds"] = round(time.time() - t0, 1)
    if args.real:
        res["real_ct"] = real_table(engine, seg=args.seg)
        write_table(res["real_ct"], Path(args.real_json) if args.real_json else None,
                    Path(args.real_md) if args.real_md else None, cmd)
    if getattr(args, "variants", 0):
        res["variants"] = compare(model_dir, 2 if args.quick else args.variants, args.threads)
    if "test" in res and "unseen" in res:
        res["unseen_profile_drop"] = {
            "sensitivity_at_1fp_points": round(100 * (res["test"]["sensitivity_at_1fp"]
                                                      - res["unseen"]["sensitivity_at_1fp"]), 1),
            "cpm_points": round(100 * (res["test"]["cpm"] - res["unseen"]["cpm"]), 1)}
    if args.save:
        Path(args.save).write_text(json.dumps({**res, "_command": cmd}, indent=2, default=float))
    meta = {"command": cmd, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "path": "inference.models.nodule "
            "(ONNX Runtime, CPUExecutionProvider)", "synthetic": "test/unseen/val are SYNTHETIC studies; "
            "lidc-inserted are real LIDC backgrounds with synthetic inserted nodules; no clinical performance "
            "is claimed", "held_out_profile": HELD_OUT_PROFILE}
    if not args.no_write:
        for name in (args.seg, CLS_MODEL):
            p = model_dir / f"{name}.json"
            if p.exists():
                d = json.loads(p.read_text()).get("metrics", {})
                split_res = {k: v for k, v in res.items() if k not in ("calibration", "real_ct")}
                if split_res:  # the block of one evaluation run: replaced as a whole, never mixed
                    d[f"evaluation_{args.seg}"] = {**meta, **split_res}
                if "real_ct" in res:
                    d[f"real_ct_{args.seg}"] = {**meta, "synthetic": "REAL scans (not synthetic); see roles",
                                                **res["real_ct"]}
                update_card(p, metrics=d)
        if "variants" in res and args.seg == "nodule_seg":
            compression, default = compression_section(model_dir, res["variants"], cmd)
            update_card(model_dir / "nodule_seg.json", compression=compression, default_choice=default)
            student = model_dir / "nodule_seg_student.json"
            if student.exists() and "student" in compression:
                update_card(student, compression={
                    "teacher": "nodule_seg", "parameter_ratio": compression["student"].get("parameter_ratio"),
                    "loss": "Dice + focal against the labels + BCE against the teacher's probabilities (distillation)",
                    "student": compression["student"], "fp32_teacher": compression.get("fp32"),
                    "command": compression["command"], "data": compression["data"]})
            vit = model_dir / "nodule_seg_vit.json"
            if vit.exists() and "comparison" in json.loads(vit.read_text()) and "fp32" in compression:
                comp = json.loads(vit.read_text())["comparison"]
                update_card(vit, comparison={**comp, "resattunet_teacher": compression["fp32"]})
    return res


def compression_section(model_dir: Path, variants: dict, command: str) -> tuple[dict, dict]:
    """The card's ``compression`` block (accuracy and seconds per scan of each variant on the same test
    studies) and the default choice made from those numbers: the fastest variant that keeps the fp32
    teacher's sensitivity at 1 FP/scan and CPM (within 0.02) wins; otherwise the teacher stays."""
    params = {n: json.loads((model_dir / f"{n}.json").read_text()).get("parameters")
              for n in ("nodule_seg", "nodule_seg_student") if (model_dir / f"{n}.json").exists()}
    files = {"fp32": "nodule_seg.onnx", "student": "nodule_seg_student.onnx", "int8_qdq": "nodule_seg_int8.onnx",
             "fp16": "nodule_seg_fp16.onnx"}
    block: dict = {"command": command, "data": "the first test-split studies (SYNTHETIC, seeds 30000+), the same "
                   "studies for every variant; seconds per scan = the whole serving path on this CPU (1 thread)"}
    for k, v in variants.items():
        block[k] = {**v, "file": files.get(k, "")}
    if params.get("nodule_seg_student") and params.get("nodule_seg"):
        block["student"]["parameter_ratio"] = round(params["nodule_seg_student"] / params["nodule_seg"], 3)
    block["fp16"] = {**block.get("fp16", {}), "how": "onnxruntime.transformers.float16.convert_float_to_float16("
                     "keep_io_types=True), BatchNormalization kept in fp32; meant for GPUs (on this CPU ORT runs "
                     "fp16 convolutions without a speed-up)"}
    block["int8_qdq"] = {**block.get("int8_qdq", {}), "how": "onnxruntime.quantization.quantize_static, QDQ, "
                         "per-channel int8, calibrated on 3 inputs; not committed"}
    ref = variants.get("fp32", {})
    keeps = [k for k, v in variants.items() if k != "fp32" and "error" not in v
             and (v.get("sensitivity_at_1fp") or 0) >= (ref.get("sensitivity_at_1fp") or 0) - 0.02
             and (v.get("cpm") or 0) >= (ref.get("cpm") or 0) - 0.02
             and (v.get("seconds_per_scan") or 1e9) < (ref.get("seconds_per_scan") or 0)]
    best = min(keeps, key=lambda k: variants[k]["seconds_per_scan"], default="fp32")
    summary = "; ".join(f"{k}: sens@1FP {v.get('sensitivity_at_1fp', 0):.2f}, CPM {v.get('cpm', 0):.2f}, "
                        f"{v.get('seconds_per_scan', float('nan')):.2f} s/scan" for k, v in variants.items()
                        if "error" not in v)
    default = {"default": files.get(best, best) if best != "fp32" else "nodule_seg (fp32 teacher)",
               "rule": "fastest variant keeping the fp32 sensitivity at 1 FP/scan and CPM within 0.02",
               "why": summary}
    return block, default
