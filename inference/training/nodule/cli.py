"""``triage train|evaluate|export nodule ...``: argument parsing only; the work is in ``api`` / ``evaluate``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from inference.training.nodule.config import NoduleConfig

DEFAULT_MODELS = Path(__file__).resolve().parents[3] / "assets" / "models"


def command_line() -> str:
    """The command as typed (recorded in the model cards)."""
    return "triage " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _config(args: argparse.Namespace) -> NoduleConfig:
    cfg = NoduleConfig.load(args.config)
    if args.quick:
        cfg = cfg.quick()
    if args.work_dir:
        cfg.work_dir = args.work_dir
    return cfg


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON file overriding NoduleConfig fields")
    p.add_argument("--quick", action="store_true", help="a few iterations on tiny patches (tests, smoke runs)")
    p.add_argument("--work-dir", help="checkpoints, patches and logs (default var/nodule)")


def _train(argv: list[str]) -> int:
    from inference.training.nodule import api

    p = argparse.ArgumentParser(prog="triage train nodule", description="Train the nodule models (CPU or CUDA).")
    _common(p)
    p.add_argument("--stage", action="append", choices=api.STAGES,
                   help="stage(s) to run, in order data, teacher, cls, student, vit (default: all)")
    p.add_argument("--minutes", action="append", default=[], metavar="STAGE=MIN",
                   help="wall-clock cap of a stage, e.g. teacher=12 (stops early, recorded in the summary)")
    p.add_argument("--resume", action="store_true", help="continue teacher/vit from their checkpoints")
    p.add_argument("--model-dir", help="models the cls stage mines candidates through (default assets/models; "
                                       "e.g. a scratch folder holding a new nodule_seg)")
    args = p.parse_args(argv)
    cfg = _config(args)
    stages = [s for s in api.STAGES if s in (args.stage or api.STAGES)]
    if args.quick and "vit" in stages and not args.stage:  # the ViT pads crops to 64^3: too slow for --quick
        print("--quick: skipping stage vit (run it with --stage vit)")
        stages.remove("vit")
    minutes = {k: float(v) for k, v in (m.split("=", 1) for m in args.minutes)}
    out = api.train(cfg, stages, minutes=minutes, command=command_line(), resume=args.resume,
                    model_dir=Path(args.model_dir) if args.model_dir else None)
    print(json.dumps(out, indent=2))
    return 0


def _export(argv: list[str]) -> int:
    from inference.training.nodule import api

    p = argparse.ArgumentParser(prog="triage export nodule",
                                description="Export checkpoints to ONNX (+ fp16, INT8 QDQ) and write model cards.")
    _common(p)
    p.add_argument("--out", help="model directory (default assets/models; WORK_DIR/models with --quick)")
    p.add_argument("--which", default="teacher,cls,student,vit", help="comma list of teacher,cls,student,vit")
    args = p.parse_args(argv)
    cfg = _config(args)
    work = Path(cfg.work_dir)
    which = [w for w in args.which.split(",") if (work / ("cls.pt" if w == "cls" else f"seg_{w}.pt")).exists()]
    out = Path(args.out) if args.out else (Path(cfg.work_dir) / "models" if args.quick else DEFAULT_MODELS)
    res = api.export_all(Path(cfg.work_dir), out, which=which, command=command_line())
    print(json.dumps(res, indent=2))
    return 0


def _evaluate(argv: list[str]) -> int:
    from inference.training.nodule import report

    p = argparse.ArgumentParser(prog="triage evaluate nodule",
                                description="Evaluate the exported nodule models through the ONNX serving path "
                                            "(inference.models.nodule) on held-out data; writes the numbers to the "
                                            "model cards.")
    p.add_argument("--model-dir", default=str(DEFAULT_MODELS))
    p.add_argument("--seg", default="nodule_seg", help="segmentation model to evaluate")
    p.add_argument("--calibrate", action="store_true",
                   help="first fit the classifier's calibration (synthetic validation split seeds 20000+ plus the "
                        "real training scans' candidates as hard negatives) and its report threshold (synthetic "
                        "validation, real validation scan lung2): see calibration.py")
    p.add_argument("--splits", default="test,unseen,lidc-inserted,lidc-real",
                   help="comma list of val,test,unseen,lidc-inserted,lidc-real")
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--n-unseen", type=int, default=20)
    p.add_argument("--n-inserted", type=int, default=12)
    p.add_argument("--no-write", action="store_true", help="print only; leave the cards unchanged")
    p.add_argument("--quick", action="store_true", help="2 studies per split (smoke test)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--variants", type=int, default=0, metavar="N",
                   help="also compare fp32 / student / INT8 / fp16 / ViT seg variants on the first N test studies")
    p.add_argument("--cache", help="folder for the validation candidate sets of --calibrate (re-used when present)")
    p.add_argument("--features", choices=("auto", "none", "blob", "blob+tube", "all"), default="auto",
                   help="Hessian features in the calibration: chosen on validation (auto) or this set")
    p.add_argument("--real", action="store_true",
                   help="the real-CT table: LIDC-IDRI-0001..0003, lung1, lung2 (../shared/data), at the report "
                        "threshold")
    p.add_argument("--real-json", help="write the real-CT table as JSON here")
    p.add_argument("--real-md", help="write the real-CT table as Markdown here")
    p.add_argument("--save", help="also write the results to this JSON file")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="compute nothing: merge results saved with --save (e.g. splits run in parallel) into the cards")
    args = p.parse_args(argv)
    res = report.run(args, command_line())
    print(json.dumps(res, indent=2, default=float))
    return 0


def main(command: str, argv: list[str]) -> int:
    """Entry point used by ``inference/training/cli.py``."""
    return {"train": _train, "export": _export, "evaluate": _evaluate}[command](argv)
