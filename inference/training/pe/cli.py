"""``triage train|evaluate|export pe``: thin argparse wrappers over ``train``, ``export`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[3] / "assets" / "models"
TEACHER, STUDENT = "pe_cnnlstm", "pe_cnnlstm_student"


def _train(argv: list[str]) -> int:
    from inference.training.pe import data
    from inference.training.pe.train import TrainConfig, train

    ap = argparse.ArgumentParser(prog="triage train pe", description="Train the PE CNN-LSTM (+ distilled student).")
    ap.add_argument("--cache", default="var/pe-cache-real", help="study cache (built here when empty)")
    ap.add_argument("--out", default="var/pe-runs/main", help="run folder: ckpt.pt, log.jsonl")
    ap.add_argument("--minutes", type=float, default=32.0, help="wall-clock training budget")
    ap.add_argument("--steps", type=int, default=100_000, help="maximum steps")
    ap.add_argument("--n-train", type=int, default=96, help="synthetic training studies to cache first")
    ap.add_argument("--resume", default="", help="continue from this checkpoint (weights; schedule restarts)")
    ap.add_argument("--init-onnx", default="", help="warm start the teacher from this exported ONNX file")
    ap.add_argument("--init-onnx-student", default="", help="warm start the student from this exported ONNX file")
    ap.add_argument("--cnn-fraction", type=float, default=0.7, help="share of the budget for phase 1 (slice CNN)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--config", help="JSON file with TrainConfig fields (overrides the options)")
    ap.add_argument("--quick", action="store_true", help="a few tiny steps (tests): 6 studies, 8-slice windows")
    a = ap.parse_args(argv)
    cfg = TrainConfig(cache=a.cache, out=a.out, minutes=a.minutes, max_steps=a.steps, resume=a.resume,
                      cnn_fraction=a.cnn_fraction, lr=a.lr,
                      init_onnx=a.init_onnx, init_onnx_student=a.init_onnx_student)
    if a.config:
        cfg = TrainConfig(**{**cfg.__dict__, **json.loads(Path(a.config).read_text())})
    n_train = a.n_train
    if a.quick:
        cfg.max_steps, cfg.window, cfg.crop, cfg.batch, cfg.quick = min(cfg.max_steps, 8), 8, 64, 2, True
        n_train = min(n_train, 4)
    data.build_split(Path(cfg.cache), "train", n_train)
    res = train(cfg)
    print(json.dumps(res))
    return 0


def _export(argv: list[str]) -> int:
    import numpy as np

    from inference.training.pe import data, export
    from inference.training.pe.train import load

    ap = argparse.ArgumentParser(prog="triage export pe", description="Export teacher and student to ONNX, "
                                 "check parity, calibrate on validation data, write the model cards.")
    ap.add_argument("--ckpt", default="var/pe-runs/main/ckpt.pt")
    ap.add_argument("--cache", default="var/pe-cache-real")
    ap.add_argument("--out", default=str(ASSETS), help="model directory")
    ap.add_argument("--n-val", type=int, default=32, help="validation studies for calibration")
    ap.add_argument("--no-student", action="store_true")
    ap.add_argument("--train-command", default="triage train pe --minutes 22 --out var/pe-runs/main",
                    help="the command that trained the checkpoint (recorded in the card)")
    a = ap.parse_args(argv)
    data.build_split(Path(a.cache), "val", a.n_val)
    out = Path(a.out)
    real_x = None
    try:
        from inference.models.pe import find_pa_region, prepare_input
        from inference.training.pe.realcta import load_real_cta

        vol, _ = load_real_cta()
        real_x = prepare_input(vol, find_pa_region(vol, data.PREPROCESSING), data.PREPROCESSING).x
    except FileNotFoundError:
        print("warning: real CTA crop not found; parity on random input only", file=sys.stderr)
    command = "triage export pe " + shlex.join(argv)
    for which, name in (("teacher", TEACHER), ("student", STUDENT)):
        if which == "student" and a.no_student:
            continue
        model, ck = load(a.ckpt, which)
        ck["train_config"]["n_synthetic"] = len(list((Path(a.cache) / "train").glob("*.npz")))
        onnx_path = export.export_onnx(model, out / f"{name}.onnx")
        rnd = np.random.default_rng(0).random((1, 20, 1, 96, 112), dtype=np.float32)
        p_rand = export.parity(model, onnx_path, rnd)
        p_real = export.parity(model, onnx_path, real_x) if real_x is not None else None
        z, y = export.val_logits(onnx_path, a.cache, a.n_val)
        card = export.build_card(name, onnx_path, model, ck, logits=z, y=y, parity_random=p_rand,
                                 parity_real=p_real, role=which, command=command, train_command=a.train_command)
        export.write_card(card, out / f"{name}.json")
        print(f"{name}: {onnx_path.stat().st_size / 1e6:.2f} MB, {card.parameters} parameters, parity "
              f"random {p_rand:.2e} real {p_real}, Platt {card.calibration.params}, ECE "
              f"{card.calibration.ece_before} -> {card.calibration.ece_after}, critical {card.thresholds}")
    return 0


def _evaluate(argv: list[str]) -> int:
    from inference.training.pe.evaluate import evaluate, write_metrics

    ap = argparse.ArgumentParser(prog="triage evaluate pe", description="Evaluate a PE model through the serving "
                                 "path (ONNX Runtime) on held-out data; writes the numbers into its card.")
    ap.add_argument("--model", default=TEACHER, help=f"card name ({TEACHER} or {STUDENT})")
    ap.add_argument("--models-dir", default=str(ASSETS))
    ap.add_argument("--cache", default="var/pe-cache-real", help="where held-out volumes are cached (regenerated "
                    "from their seeds when missing)")
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--n-unseen", type=int, default=24)
    ap.add_argument("--n-real", type=int, default=20)
    ap.add_argument("--anatomy", default=None, choices=("real", "legacy"), help="anatomy of the synthetic test "
                    "studies (default: the training anatomy, data.ANATOMY); give each anatomy its own --cache")
    ap.add_argument("--no-write", action="store_true", help="print only, leave the card alone")
    ap.add_argument("--cases", help="write per-case rows (JSON) here")
    a = ap.parse_args(argv)
    from inference.training.pe import data

    res = evaluate(a.models_dir, a.model, a.cache, n_test=a.n_test, n_unseen=a.n_unseen, n_real=a.n_real,
                   anatomy=a.anatomy or data.ANATOMY)
    if a.cases:
        Path(a.cases).write_text(json.dumps(res["cases"], indent=1, default=str))
    print(json.dumps({k: v for k, v in res.items() if k != "cases"}, indent=2))
    if not a.no_write:
        write_metrics(Path(a.models_dir) / f"{a.model}.json", res, "triage evaluate pe " + shlex.join(argv))
    return 0


def main(command: str, argv: list[str]) -> int:
    """Entry point used by ``inference.training.cli``."""
    handlers = {"train": _train, "export": _export, "evaluate": _evaluate}
    if command not in handlers:
        print(f"unknown command {command!r}; expected one of {', '.join(handlers)}", file=sys.stderr)
        return 2
    return handlers[command](argv)
