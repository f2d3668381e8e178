"""Train the PE CNN-LSTM (teacher) and its distilled student together on the CPU (fp32) or CUDA (torch.amp).

Each step draws studies from the cache (synthetic CTPA, half with emboli from the generator) and the real
CTA crop; negatives get emboli inserted on the fly (``data.insert_embolus``) half of the time, so the network
sees the same background with and without a clot. A random window of slices and an in-plane crop keep a
step cheap; serving runs the full crop. The student learns from the labels and from the teacher's detached
outputs (online distillation). A JSON-lines log records every step.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, RandAdjustContrast, RandFlip, RandGaussianNoise, RandShiftIntensity

from inference.training.pe import data
from inference.training.pe.net import PECnnLstm, count_parameters, student


@dataclass
class TrainConfig:
    cache: str = "var/pe-cache"
    out: str = "var/pe-runs/main"
    minutes: float = 30.0
    max_steps: int = 100_000
    batch: int = 2
    window: int = 32
    crop: int = 96
    lr: float = 2e-3
    real_fraction: float = 0.3
    insert_p: float = 0.5
    seed: int = 0
    distill: bool = True
    threads: int = 2
    quick: bool = False
    fixed_batch: bool = False  # reuse the first batch every step (overfitting sanity check in tests)
    resume: str = ""  # checkpoint to continue from (weights only; the schedule restarts)


def augmentations() -> Compose:
    """MONAI intensity/flip augmentation on a (S, H, W) window (channel-first = slices)."""
    return Compose([
        RandFlip(prob=0.5, spatial_axis=1),  # left-right (x)
        RandShiftIntensity(offsets=0.02, prob=0.5),  # ±20 HU calibration shift
        RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
        RandGaussianNoise(prob=0.5, std=0.012),  # ~12 HU extra noise
    ])


class Source:
    """Training examples: cached synthetic studies + the real CTA crop, with on-the-fly insertion."""

    def __init__(self, cfg: TrainConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.samples: list[data.Sample] = []
        self.seen: set[Path] = set()
        self.real: data.Sample | None = None
        self.refresh()
        try:
            from inference.training.pe.realcta import load_real_cta

            vol, pa = load_real_cta()
            self.real = data.volume_sample(vol, pa, np.zeros(vol.shape, bool), {"source": "real-cta-crop"})
        except FileNotFoundError:
            self.real = None
        self.aug = augmentations()
        self.aug.set_random_state(seed=cfg.seed)

    def refresh(self) -> int:
        """Load cache files written since the last call (the cache may still be growing)."""
        for p in sorted((Path(self.cfg.cache) / "train").glob("*.npz")):
            if p not in self.seen:
                try:
                    self.samples.append(data.load_sample(p))
                    self.seen.add(p)
                except (OSError, ValueError, EOFError):
                    pass  # being written
        return len(self.samples)

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """One example: windowed input (S, H, W) float32 and slice labels (S,)."""
        cfg, rng = self.cfg, self.rng
        use_real = self.real is not None and (rng.random() < cfg.real_fraction or not self.samples)
        s = self.real if use_real else self.samples[int(rng.integers(len(self.samples)))]
        assert s is not None
        hu, clot = s.hu, s.clot
        if not clot.any() and s.arteries.sum() > 20 and rng.random() < cfg.insert_p:
            hu_f = hu.astype(np.float32)
            clot = np.zeros_like(clot)
            for _ in range(int(rng.integers(1, 3))):
                hu_f, m, _ = data.insert_embolus(hu_f, s.arteries, tuple(data.PREPROCESSING.spacing_mm), rng)
                clot |= m
            hu = hu_f
        labels = (clot.reshape(len(clot), -1).sum(1) >= data.MIN_CLOT_VOXELS).astype(np.float32)
        n, w = len(hu), min(cfg.window, len(hu))
        pos = np.flatnonzero(labels)
        if len(pos) and rng.random() < 0.9:
            k = int(rng.choice(pos))
            k0 = int(np.clip(k - rng.integers(0, w), 0, n - w))
        else:
            k0 = int(rng.integers(0, n - w + 1))
        sl = slice(k0, k0 + w)
        c, H = cfg.crop, hu.shape[1]
        cl = np.argwhere(clot[sl])
        if len(cl):
            cy, cx = cl[int(rng.integers(len(cl)))][1:]
            y0 = int(np.clip(cy - rng.integers(8, c - 8), 0, H - c))
            x0 = int(np.clip(cx - rng.integers(8, c - 8), 0, hu.shape[2] - c))
        else:
            y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, hu.shape[2] - c + 1))
        x = data.window(np.asarray(hu[sl, y0:y0 + c, x0:x0 + c]))
        lab = (clot[sl, y0:y0 + c, x0:x0 + c].reshape(w, -1).sum(1) >= data.MIN_CLOT_VOXELS).astype(np.float32)
        x = np.asarray(self.aug(x), np.float32).clip(0.0, 1.0)
        return x, lab

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(self.draw() for _ in range(self.cfg.batch)))
        w = min(len(x) for x in xs)
        x = torch.from_numpy(np.stack([x[:w] for x in xs]))[:, :, None]
        return x, torch.from_numpy(np.stack([y[:w] for y in ys]))


def pe_loss(out: tuple[torch.Tensor, ...], y: torch.Tensor, model: PECnnLstm) -> torch.Tensor:
    """Study BCE + slice BCE (positives up-weighted) + the slice head's own BCE (deep supervision)."""
    study, slices, cam = out
    y_study = y.amax(dim=1)
    pw = torch.tensor(3.0)
    head = model.head_logits(cam)
    return (F.binary_cross_entropy_with_logits(study, y_study)
            + F.binary_cross_entropy_with_logits(slices, y, pos_weight=pw)
            + 0.5 * F.binary_cross_entropy_with_logits(head, y, pos_weight=pw))


def distill_loss(s_out: tuple[torch.Tensor, ...], t_out: tuple[torch.Tensor, ...], y: torch.Tensor,
                 model: PECnnLstm) -> torch.Tensor:
    """Half the labels, half the teacher: its study/slice probabilities and its normalised CAM."""
    kd = (F.binary_cross_entropy_with_logits(s_out[0], torch.sigmoid(t_out[0].detach()))
          + F.binary_cross_entropy_with_logits(s_out[1], torch.sigmoid(t_out[1].detach()))
          + F.mse_loss(s_out[2], t_out[2].detach()) * 0.1)
    return 0.5 * pe_loss(s_out, y, model) + 0.5 * kd


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train until ``cfg.minutes`` or ``cfg.max_steps``; writes ``out/ckpt.pt`` and ``out/log.jsonl``."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher = PECnnLstm().to(device)
    stud = student().to(device) if cfg.distill else None
    base_steps, base_seconds = 0, 0.0
    if cfg.resume:
        ck = torch.load(cfg.resume, map_location="cpu", weights_only=False)
        base_steps, base_seconds = int(ck.get("steps", 0)), float(ck.get("seconds", 0.0))
        teacher.load_state_dict(ck["teacher"])
        if stud is not None and ck.get("student"):
            stud.load_state_dict(ck["student"])
    params = list(teacher.parameters()) + (list(stud.parameters()) if stud else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    src = Source(cfg, rng)
    t0, step, log = time.time(), 0, (out / "log.jsonl").open("w")
    losses: list[float] = []
    budget = cfg.minutes * 60.0
    while step < cfg.max_steps and time.time() - t0 < budget:
        if step % 50 == 0:
            src.refresh()
        frac = min(1.0, (time.time() - t0) / budget) if cfg.max_steps >= 100_000 else step / cfg.max_steps
        for g in opt.param_groups:  # linear warm-up, cosine decay over the time budget
            g["lr"] = cfg.lr * min(1.0, (step + 1) / 20) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        if not cfg.fixed_batch or step == 0:
            x, y = src.batch()
            x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            t_out = teacher(x)
            loss = pe_loss(t_out, y, teacher)
            s_loss = distill_loss(stud(x), t_out, y, stud) if stud else torch.zeros(())
        opt.zero_grad()
        (loss + s_loss).backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        losses.append(loss.item())
        rec = {"step": step, "loss": round(loss.item(), 5), "student_loss": round(s_loss.item(), 5),
               "pos": int(y.amax(1).sum()), "lr": round(opt.param_groups[0]["lr"], 6),
               "t": round(time.time() - t0, 1), "n_cached": len(src.samples)}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if progress and (step % 10 == 0 or step == 1):
            avg = float(np.mean(losses[-50:]))
            print(f"step {step} loss {avg:.4f} (last {rec['loss']:.3f}) t={rec['t']:.0f}s/{budget:.0f}s "
                  f"cache={len(src.samples)}", flush=True)
        if step % 100 == 0:
            save(out / "ckpt.pt", teacher, stud, cfg, base_steps + step, base_seconds + time.time() - t0)
    save(out / "ckpt.pt", teacher, stud, cfg, base_steps + step, base_seconds + time.time() - t0)
    log.close()
    return {"steps": step, "seconds": round(time.time() - t0, 1), "first_loss": float(np.mean(losses[:5])),
            "last_loss": float(np.mean(losses[-5:])), "ckpt": str(out / "ckpt.pt"),
            "n_synthetic": len(src.samples), "real": src.real is not None}


def save(path: Path, teacher: PECnnLstm, stud: PECnnLstm | None, cfg: TrainConfig, step: int, seconds: float) -> None:
    torch.save({"teacher": teacher.state_dict(), "teacher_config": teacher.config,
                "student": stud.state_dict() if stud else None, "student_config": stud.config if stud else None,
                "train_config": asdict(cfg), "steps": step, "seconds": seconds,
                "parameters": {"teacher": count_parameters(teacher), "student": count_parameters(stud) if stud else 0},
                "device": "cuda" if torch.cuda.is_available() else "cpu"}, path)


def load(path: Path | str, which: str = "teacher") -> tuple[PECnnLstm, dict[str, Any]]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = PECnnLstm(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck[f"{which}_config"].items()})
    model.load_state_dict(ck[which])
    model.eval()
    return model, ck
