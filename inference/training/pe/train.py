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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Compose, RandAdjustContrast, RandGaussianNoise, RandShiftIntensity

from inference.training.pe import data, sampling
from inference.training.pe.net import PECnnLstm, count_parameters, student


@dataclass
class TrainConfig:
    cache: str = "var/pe-cache-real"
    out: str = "var/pe-runs/main"
    minutes: float = 30.0
    max_steps: int = 100_000
    batch: int = 2
    window: int = 24
    crop: int = 64  # phase 1 patch size
    seq_crop: int = 128  # phase 2 in-plane size (128 = the whole serving crop)
    lr: float = 2e-3
    real_fraction: float = 0.3
    insert_p: float = 0.5
    seed: int = 0
    distill: bool = True
    threads: int = 2
    quick: bool = False
    fixed_batch: bool = False  # reuse the first batch every step (overfitting sanity check in tests)
    resume: str = ""  # checkpoint to continue from (weights only; the schedule restarts)
    init_onnx: str = ""  # warm start from an exported teacher (ONNX); its BatchNorms stay frozen (folded)
    init_onnx_student: str = ""  # the same for the student
    cnn_fraction: float = 0.7  # share of the budget for phase 1 (slice CNN + CAM on clot-centred patches)
    patch_studies: int = 6  # phase 1: studies per batch
    patches: int = 8  # phase 1: patches per study
    # lesion-free sampling and hard negatives (inference.training.pe.sampling); the defaults are the old recipe
    extra_caches: list[str] = field(default_factory=list)  # more study caches (e.g. the other anatomy)
    clean_fraction: float = 0.0  # share of draws that are lesion-free synthetic studies left without insertion
    hard_mix: float = 0.0  # of those, the share drawn by mined hardness (the rest: evenly per profile, anatomy)
    mine_every_s: float = 0.0  # score the lesion-free studies with the teacher this often (0: never)
    mine_top_k: int = 4  # CAM hot spots kept per mined study
    hard_patch_p: float = 0.0  # phase 1: a lesion-free study's patch is centred on a mined hot spot
    hard_window_p: float = 0.0  # phase 2: a lesion-free study's window holds a mined hot slice


def augmentations() -> Compose:
    """MONAI intensity augmentation on a (S, H, W) window (channel-first = slices); the left-right flip is done
    with the clot mask in ``Source.draw``."""
    return Compose([
        RandShiftIntensity(offsets=0.02, prob=0.5),  # ±20 HU calibration shift
        RandAdjustContrast(prob=0.3, gamma=(0.8, 1.25)),
        RandGaussianNoise(prob=0.5, std=0.012),  # ~12 HU extra noise
    ])


def _corner(rng: np.random.Generator, cy: int, cx: int, c: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """Top-left corner (y0, x0) of a ``c`` x ``c`` crop of a (.., H, W) array holding the point (cy, cx) at least
    8 pixels from its edges, at a random place (clipped to the array)."""
    y0 = int(np.clip(cy - rng.integers(8, c - 8), 0, shape[-2] - c))
    x0 = int(np.clip(cx - rng.integers(8, c - 8), 0, shape[-1] - c))
    return y0, x0


class Source:
    """Training examples: cached synthetic studies + the real CTA crop, with on-the-fly insertion."""

    def __init__(self, cfg: TrainConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.samples: list[data.Sample] = []
        self.seen: set[Path] = set()
        self.pool = sampling.NegativePool([], [])
        self.counts = {"real": 0, "clean": 0, "other": 0, "hard_patch": 0, "hard_window": 0}
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
        self.edt: dict[int, np.ndarray] = {}

    def refresh(self) -> int:
        """Load cache files written since the last call (the cache may still be growing), from ``cache`` and
        ``extra_caches``; rebuilds the lesion-free pool (its mined scores start over)."""
        n0 = len(self.samples)
        for cache in [self.cfg.cache, *self.cfg.extra_caches]:
            for p in sorted((Path(cache) / "train").glob("*.npz")):
                if p not in self.seen:
                    try:
                        self.samples.append(data.load_sample(p))
                        self.seen.add(p)
                    except (OSError, ValueError, EOFError):
                        pass  # being written
        if len(self.samples) != n0:
            self.pool = sampling.NegativePool.from_metas([s.meta for s in self.samples])
        return len(self.samples)

    def study(self) -> tuple[np.ndarray, np.ndarray, int | None]:
        """A random study (HU, clot mask, pool entry); negatives get 1-2 inserted emboli with probability
        ``insert_p``. With probability ``clean_fraction`` it is a lesion-free synthetic study from the pool,
        left as it is (its pool entry is returned for hot spots; ``None`` otherwise)."""
        cfg, rng = self.cfg, self.rng
        if cfg.clean_fraction > 0 and len(self.pool) and rng.random() < cfg.clean_fraction:
            j = self.pool.draw(rng, cfg.hard_mix)
            s = self.samples[self.pool.index[j]]
            self.counts["clean"] += 1
            return s.hu, s.clot, j
        use_real = self.real is not None and (rng.random() < cfg.real_fraction or not self.samples)
        s = self.real if use_real else self.samples[int(rng.integers(len(self.samples)))]
        assert s is not None
        self.counts["real" if use_real else "other"] += 1
        hu, clot = s.hu, s.clot
        if not clot.any() and s.arteries.sum() > 20 and rng.random() < cfg.insert_p:
            sp = tuple(data.PREPROCESSING.spacing_mm)
            if id(s) not in self.edt:
                from scipy import ndimage

                self.edt[id(s)] = ndimage.distance_transform_edt(s.arteries, sampling=sp).astype(np.float32)
            hu_f = hu.astype(np.float32)
            clot = np.zeros_like(clot)
            for _ in range(int(rng.integers(1, 3))):
                hu_f, m, _ = data.insert_embolus(hu_f, s.arteries, sp, rng, edt=self.edt[id(s)])
                clot |= m
            hu = hu_f
        return hu, clot, None

    def patch_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Phase 1: single-slice patches (B, 1, 1, c, c), half of them centred near a clot."""
        cfg, rng, c = self.cfg, self.rng, self.cfg.crop
        xs, ms = [], []
        for _ in range(cfg.patch_studies):
            hu, clot, j = self.study()
            ks = np.flatnonzero(clot.reshape(len(clot), -1).sum(1) >= data.MIN_CLOT_VOXELS)
            for _ in range(cfg.patches):
                hot = self.pool.hot_spot(j, rng) if j is not None and cfg.hard_patch_p > 0 else None
                if hot is not None and rng.random() < cfg.hard_patch_p:  # a mined false-positive spot
                    k, cy, cx = hot
                    y0, x0 = _corner(rng, cy, cx, c, hu.shape)
                    self.counts["hard_patch"] += 1
                elif len(ks) and rng.random() < 0.5:
                    k = int(rng.choice(ks))
                    cy, cx = np.argwhere(clot[k])[int(rng.integers(int(clot[k].sum())))]
                    y0, x0 = _corner(rng, cy, cx, c, hu.shape)
                else:
                    k = int(rng.integers(len(hu)))
                    y0, x0 = int(rng.integers(0, hu.shape[1] - c + 1)), int(rng.integers(0, hu.shape[2] - c + 1))
                x = data.window(np.asarray(hu[k:k + 1, y0:y0 + c, x0:x0 + c]))
                m = clot[k:k + 1, y0:y0 + c, x0:x0 + c]
                if rng.random() < 0.5:
                    x, m = x[:, :, ::-1], m[:, :, ::-1]
                xs.append(np.asarray(self.aug(np.ascontiguousarray(x)), np.float32).clip(0.0, 1.0))
                ms.append(np.ascontiguousarray(m))
        m = torch.from_numpy(np.stack(ms).astype(np.float32))
        y = (m.flatten(2).sum(2) >= data.MIN_CLOT_VOXELS).float()
        return torch.from_numpy(np.stack(xs))[:, :, None], y, m

    def draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One example: windowed input (S, H, W) float32, slice labels (S,), clot mask (S, H, W)."""
        cfg, rng = self.cfg, self.rng
        hu, clot, j = self.study()
        labels = (clot.reshape(len(clot), -1).sum(1) >= data.MIN_CLOT_VOXELS).astype(np.float32)
        n, w = len(hu), min(cfg.window, len(hu))
        pos = np.flatnonzero(labels)
        hot = self.pool.hot_spot(j, rng) if j is not None and cfg.hard_window_p > 0 else None
        use_hot = hot is not None and rng.random() < cfg.hard_window_p
        if use_hot and hot is not None:  # a window holding a mined hot slice
            k0 = int(np.clip(hot[0] - rng.integers(0, w), 0, n - w))
            self.counts["hard_window"] += 1
        elif len(pos) and rng.random() < 0.9:
            k = int(rng.choice(pos))
            k0 = int(np.clip(k - rng.integers(0, w), 0, n - w))
        else:
            k0 = int(rng.integers(0, n - w + 1))
        sl = slice(k0, k0 + w)
        c, H = min(cfg.seq_crop, hu.shape[1], hu.shape[2]), hu.shape[1]
        cl = np.argwhere(clot[sl])
        if len(cl):
            cy, cx = cl[int(rng.integers(len(cl)))][1:]
            y0, x0 = _corner(rng, cy, cx, c, hu.shape)
        elif use_hot and hot is not None and c < H:
            y0, x0 = _corner(rng, hot[1], hot[2], c, hu.shape)
        else:
            y0, x0 = int(rng.integers(0, H - c + 1)), int(rng.integers(0, hu.shape[2] - c + 1))
        x = data.window(np.asarray(hu[sl, y0:y0 + c, x0:x0 + c]))
        m = clot[sl, y0:y0 + c, x0:x0 + c]
        lab = (m.reshape(w, -1).sum(1) >= data.MIN_CLOT_VOXELS).astype(np.float32)
        if rng.random() < 0.5:  # left-right flip of image and mask together
            x, m = x[:, :, ::-1], m[:, :, ::-1]
        x = np.asarray(self.aug(np.ascontiguousarray(x)), np.float32).clip(0.0, 1.0)
        return x, lab, np.ascontiguousarray(m)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ys, ms = zip(*(self.draw() for _ in range(self.cfg.batch)))
        w = min(len(x) for x in xs)
        x = torch.from_numpy(np.stack([x[:w] for x in xs]))[:, :, None]
        m = torch.from_numpy(np.stack([m[:w] for m in ms]).astype(np.float32))
        return x, torch.from_numpy(np.stack([y[:w] for y in ys])), m


def cam_target(mask: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """The clot mask (B, S, H, W) max-pooled onto the CAM grid (B, S, h, w)."""
    b, s, h, w = cam.shape
    return F.adaptive_max_pool2d(mask.flatten(0, 1)[:, None], (h, w))[:, 0].view(b, s, h, w)


def cnn_loss(cam: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, model: PECnnLstm) -> torch.Tensor:
    """Phase 1: the CAM against the clot mask on its grid (dense supervision; the synthetic data knows where
    every clot is) + the slice head's logit (spatial max of the CAM) against the slice label."""
    return (F.binary_cross_entropy_with_logits(cam, cam_target(mask, cam), pos_weight=torch.tensor(10.0))
            + 0.5 * F.binary_cross_entropy_with_logits(model.head_logits(cam), y, pos_weight=torch.tensor(3.0)))


def seq_loss(out: tuple[torch.Tensor, ...], y: torch.Tensor) -> torch.Tensor:
    """Phase 2: study BCE + per-slice BCE (positives up-weighted) of the LSTM outputs."""
    return (F.binary_cross_entropy_with_logits(out[0], y.amax(dim=1))
            + F.binary_cross_entropy_with_logits(out[1], y, pos_weight=torch.tensor(3.0)))


def kd_loss(s_out: tuple[torch.Tensor, ...], t_out: tuple[torch.Tensor, ...], phase: int) -> torch.Tensor:
    """Distillation: the teacher's (detached) CAM in phase 1, its study/slice probabilities in phase 2."""
    if phase == 1:
        return F.mse_loss(s_out[2], t_out[2].detach()) * 0.1
    return (F.binary_cross_entropy_with_logits(s_out[0], torch.sigmoid(t_out[0].detach()))
            + F.binary_cross_entropy_with_logits(s_out[1], torch.sigmoid(t_out[1].detach())))


def mine_negatives(model: PECnnLstm, src: Source, device: torch.device) -> dict[str, float]:
    """Score every lesion-free training study (whole crop) with ``model`` and keep its CAM hot spots in
    ``src.pool``; the model's train/eval flags are restored afterwards."""
    flags = {m: m.training for m in model.modules()}
    model.eval()

    def score(x: np.ndarray) -> tuple[float, np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x))[None, :, None].to(device))
        return float(out[0][0]), out[2][0].float().cpu().numpy()

    try:
        return sampling.mine(src.pool, lambda i: data.window(src.samples[i].hu), score, src.cfg.mine_top_k)
    finally:
        for m, f in flags.items():
            m.train(f)


def _phase_params(model: PECnnLstm, phase: int) -> list[torch.nn.Parameter]:
    cnn = list(model.encoder.parameters()) + list(model.cam_head.parameters())
    if phase == 1:
        return cnn
    for p in cnn:  # phase 2: the slice CNN is frozen (and its BatchNorm statistics with it)
        p.requires_grad_(False)
    model.encoder.eval()
    return [p for n, p in model.named_parameters() if not n.startswith(("encoder.", "cam_head."))]


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Two phases within ``cfg.minutes`` (or ``cfg.max_steps``): (1) the slice CNN and its CAM head on
    clot-centred single-slice patches, (2) the bidirectional LSTM and the study/slice heads on slice sequences
    with the CNN frozen. Writes ``out/ckpt.pt`` and ``out/log.jsonl``."""
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
    if cfg.init_onnx or cfg.init_onnx_student:
        from inference.training.pe.warmstart import freeze_batchnorm, load_onnx_weights

        for m, f in ((teacher, cfg.init_onnx), (stud, cfg.init_onnx_student)):
            if m is not None and f:
                load_onnx_weights(m, f)
                freeze_batchnorm(m)  # the export folded them into the convolutions: identity, fixed statistics
    src = Source(cfg, rng)
    t0, step, log = time.time(), 0, (out / "log.jsonl").open("w")
    losses: list[float] = []
    budget = cfg.minutes * 60.0
    timed = cfg.max_steps >= 100_000
    ends = ((cfg.cnn_fraction * budget, int(cfg.cnn_fraction * cfg.max_steps)), (budget, cfg.max_steps))
    last_mine = -math.inf
    for phase, (t_end, s_end) in enumerate(ends, start=1):
        models = [m for m in (teacher, stud) if m is not None]
        params = [p for m in models for p in _phase_params(m, phase)]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
        p_start, s_start = time.time() - t0, step
        while step < s_end and time.time() - t0 < t_end:
            if cfg.mine_every_s > 0 and len(src.pool) and time.time() - last_mine >= cfg.mine_every_s:
                tm = time.time()
                src.refresh()  # the caches may still be growing
                summary = mine_negatives(teacher, src, device)
                last_mine = time.time()
                log.write(json.dumps({"mine": summary, "step": step, "phase": phase,
                                      "seconds": round(last_mine - tm, 1), "t": round(last_mine - t0, 1)}) + "\n")
                if progress:
                    print(f"mined {summary} in {last_mine - tm:.0f}s", flush=True)
            frac = (time.time() - t0 - p_start) / max(1.0, t_end - p_start) if timed else \
                (step - s_start) / max(1, s_end - s_start)
            for g in opt.param_groups:  # linear warm-up, cosine decay over the phase
                g["lr"] = cfg.lr * min(1.0, (step - s_start + 1) / 10) * (0.05 + 0.475 * (1 + math.cos(math.pi * frac)))
            if not cfg.fixed_batch or step == s_start:
                x, y, m = src.patch_batch() if phase == 1 else src.batch()
                x, y, m = x.to(device), y.to(device), m.to(device)
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                t_out = teacher(x)
                loss = cnn_loss(t_out[2], y, m, teacher) if phase == 1 else seq_loss(t_out, y)
                s_loss = torch.zeros(())
                if stud is not None:
                    s_out = stud(x)
                    own = cnn_loss(s_out[2], y, m, stud) if phase == 1 else seq_loss(s_out, y)
                    s_loss = 0.5 * own + 0.5 * kd_loss(s_out, t_out, phase)
            opt.zero_grad()
            (loss + s_loss).backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            losses.append(loss.item())
            rec = {"step": step, "phase": phase, "loss": round(loss.item(), 5), "student_loss": round(s_loss.item(), 5),
                   "pos": int(y.amax(1).sum()), "lr": round(opt.param_groups[0]["lr"], 6),
                   "t": round(time.time() - t0, 1), "n_cached": len(src.samples)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if progress and (step % 10 == 0 or step == s_start + 1):
                avg = float(np.mean(losses[-20:]))
                print(f"phase {phase} step {step} loss {avg:.4f} (last {rec['loss']:.3f}) "
                      f"t={rec['t']:.0f}s/{budget:.0f}s", flush=True)
            if step % 100 == 0:
                save(out / "ckpt.pt", teacher, stud, cfg, base_steps + step, base_seconds + time.time() - t0)
        if phase == 1:
            p1 = losses[:]
    save(out / "ckpt.pt", teacher, stud, cfg, base_steps + step, base_seconds + time.time() - t0)
    log.close()
    return {"steps": step, "seconds": round(time.time() - t0, 1), "first_loss": float(np.mean(p1[:5])),
            "last_loss": float(np.mean(p1[-5:])), "phase2_last_loss": float(np.mean(losses[len(p1):][-5:] or [0])),
            "ckpt": str(out / "ckpt.pt"), "n_synthetic": len(src.samples), "real": src.real is not None,
            "draws": dict(src.counts), "n_lesion_free": len(src.pool)}


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
