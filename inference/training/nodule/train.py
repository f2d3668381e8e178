"""Training loops: segmentation (teacher / ViT), distillation (student), candidate classifier.

fp32 on CPU (bf16 autocast is 25x slower on this machine); ``torch.autocast("cuda", float16)`` with a
``GradScaler`` when CUDA is available. Each loop logs JSON lines (iteration, loss, seconds) and stops at
``iters`` or ``max_minutes``, whichever comes first; the checkpoint records both.
"""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceFocalLoss, FocalLoss
from scipy import ndimage as ndi

from inference.models.nodule_prep import extract_patch
from inference.training.nodule.config import NoduleConfig
from inference.training.nodule.networks import (
    CandidateClassifier,
    build_seg,
    load_onnx_seg_weights,
    load_onnx_weights,
    n_params,
)
from inference.training.nodule.transforms import apply, cls_augment, seg_augment


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _amp(dev: torch.device):
    return torch.autocast("cuda", dtype=torch.float16) if dev.type == "cuda" else nullcontext()


def load_patches(path: Path) -> dict[str, np.ndarray]:
    z = np.load(path)
    return {k: z[k] for k in z.files}


def _batch(data: dict, idx: np.ndarray, aug) -> tuple[torch.Tensor, torch.Tensor]:
    imgs, labs = [], []
    for i in idx:
        s = apply(aug, {"image": data["image"][i][None].astype(np.float32), "label": data["label"][i][None]})
        imgs.append(torch.as_tensor(np.asarray(s["image"]), dtype=torch.float32))
        labs.append(torch.as_tensor(np.asarray(s["label"]), dtype=torch.float32))
    return torch.stack(imgs), torch.stack(labs)


def positive_weights(label: np.ndarray, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the patches holding nodule voxels and their sampling probabilities: uniform for ``power`` 0,
    else proportional to (voxels of the nodule component nearest the patch centre, the one the patch was cut
    for) ** -power, so that patches of small nodules are drawn more often."""
    pos = np.flatnonzero(label.reshape(len(label), -1).max(1) > 0)
    if power == 0 or len(pos) == 0:
        return pos, np.full(len(pos), 1.0 / max(len(pos), 1))
    centre = (np.asarray(label.shape[1:]) - 1) / 2.0
    size = np.empty(len(pos))
    for j, i in enumerate(pos):
        comps, n = ndi.label(label[i])
        nv = ndi.sum_labels(label[i] > 0, comps, range(1, n + 1))
        com = np.asarray(ndi.center_of_mass(label[i] > 0, comps, range(1, n + 1)), float).reshape(n, -1)
        size[j] = nv[np.argmin(((com - centre) ** 2).sum(1))]
    w = np.maximum(size, 1.0) ** -float(power)
    return pos, w / w.sum()


class SegLoss(torch.nn.Module):
    """Segmentation loss. Defaults (``seg_dice_batch`` True, ``seg_bce_pos_weight`` 0): MONAI's
    ``DiceFocalLoss(batch=True)`` (the v2 recipe). ``seg_dice_batch`` False: focal loss + soft Dice computed
    per sample over the samples that hold nodule voxels (a 2-voxel nodule counts as much as a mass);
    ``seg_bce_pos_weight`` w > 0: + BCE with nodule voxels weighted w (recall before precision)."""

    def __init__(self, cfg: NoduleConfig):
        super().__init__()
        self.batch_dice = bool(cfg.seg_dice_batch)
        self.pos_weight = float(cfg.seg_bce_pos_weight)
        self.dicefocal = DiceFocalLoss(sigmoid=True, batch=True, gamma=2.0, lambda_focal=1.0)
        self.focal = FocalLoss(gamma=2.0)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.batch_dice:
            loss = self.dicefocal(logits, y)
        else:
            p = torch.sigmoid(logits.float()).flatten(1)
            t = y.float().flatten(1)
            has = t.sum(1) > 0
            loss = self.focal(logits, y)
            if has.any():
                inter, den = (p * t).sum(1)[has], (p + t).sum(1)[has]
                loss = loss + (1.0 - (2.0 * inter + 1.0) / (den + 1.0)).mean()
        if self.pos_weight > 0:
            loss = loss + F.binary_cross_entropy_with_logits(
                logits.float(), y.float(), pos_weight=torch.tensor(self.pos_weight, device=logits.device))
        return loss


class Logger:
    """JSON-lines training log plus a one-line progress print every ``every`` iterations."""

    def __init__(self, path: Path, name: str, total: int, every: int = 10):
        self.fh = open(path, "a")
        self.name, self.total, self.every, self.t0 = name, total, every, time.time()

    def __call__(self, it: int, **vals: float) -> None:
        rec = {"model": self.name, "iter": it, "sec": round(time.time() - self.t0, 1), **vals}
        self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()
        if it % self.every == 0 or it == self.total:
            txt = " ".join(f"{k}={v:.4f}" for k, v in vals.items())
            print(f"[{self.name}] {it}/{self.total} {txt} ({rec['sec']:.0f}s)", flush=True)


def train_seg(cfg: NoduleConfig, data: dict, kind: str, out: Path, *, max_minutes: float = 1e9,
              teacher: torch.nn.Module | None = None, log_path: Path | None = None, resume: bool = False) -> dict:
    """Train a segmentation net (``teacher``, ``vit``; ``student`` distils from ``teacher``).

    Returns:
        Summary dict (iterations, seconds, first/last mean loss, parameters); writes the checkpoint ``out``.
    """
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = device()
    net = build_seg(cfg, kind)
    previous = {}
    init = None
    if cfg.seg_init and kind == "teacher" and not (resume and out.exists()):  # fine-tune an exported teacher
        init = str(init_onnx(cfg.seg_init, out.parent))
        n = len(data["image"])
        pick = np.random.default_rng(cfg.seed + 3).choice(n, min(32, n), replace=False)
        calib = torch.as_tensor(data["image"][np.sort(pick)].astype(np.float32))[:, None]
        load_onnx_seg_weights(net, init, calib)
    net = net.to(dev)
    if resume and out.exists():  # continue from the checkpoint (a fresh schedule of ``iters``)
        ck = torch.load(out, map_location=dev, weights_only=False)
        net.load_state_dict(ck["state_dict"])
        previous = ck.get("summary", {})
    iters = {"teacher": cfg.seg_iters, "student": cfg.student_iters, "vit": cfg.vit_iters}[kind]
    # SwinUNETR needs sides that are multiples of 32 and >= 64 (instance norm at the bottleneck): pad crops
    aug = seg_augment(cfg, cfg.seed, pad_to=(64, 64, 64) if kind == "vit" else None)
    loss_fn = SegLoss(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(iters, 2), pct_start=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda")
    if teacher is not None:
        teacher = teacher.to(dev).eval()
    pos, w_pos = positive_weights(data["label"], cfg.seg_size_power)
    allidx = np.arange(len(data["label"]))
    log = Logger(log_path or out.with_suffix(".jsonl"), f"seg-{kind}", iters)
    losses: list[float] = []
    t0 = time.time()
    it = 0
    for it in range(1, iters + 1):
        n_pos = max(1, (2 * cfg.batch) // 3)
        first = rng.choice(pos, n_pos) if cfg.seg_size_power == 0 else rng.choice(pos, n_pos, p=w_pos)
        idx = np.concatenate([first, rng.choice(allidx, cfg.batch - n_pos)])
        x, y = _batch(data, idx, aug)
        x, y = x.to(dev), y.to(dev)
        net.train()
        with _amp(dev):
            logits, _ = net(x)
            loss = loss_fn(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    t_prob = torch.sigmoid(teacher(x)[0])
                loss = loss + F.binary_cross_entropy_with_logits(logits, t_prob)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        losses.append(loss.item())
        log(it, loss=losses[-1], lr=float(sched.get_last_lr()[0]))
        if time.time() - t0 > max_minutes * 60:
            break
    summary = {
        "kind": kind, "iterations": it, "seconds": round(time.time() - t0, 1), "parameters": n_params(net),
        "loss_first10": float(np.mean(losses[:10])), "loss_last10": float(np.mean(losses[-10:])),
        "device": str(dev), "amp": dev.type == "cuda", "threads": torch.get_num_threads(),
    }
    if previous:
        summary["resumed_from"] = previous
    if init:
        summary["init"] = cfg.seg_init
    torch.save({"state_dict": net.state_dict(), "config": cfg.to_dict(), "kind": kind, "summary": summary}, out)
    return summary


def cls_samples(cfg: NoduleConfig, data: dict, seg: torch.nn.Module | None, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classifier patches from the stored seg patches: nodule centres (jittered) are positives; dense lung
    voxels and the seg net's false-positive components (hard negatives) are negatives.

    Returns:
        ``(patches (N, d, h, w) float32, labels (N,), lesion masks (N, d, h, w) uint8)``.
    """
    size = tuple(cfg.cls_patch)
    half = np.asarray(cfg.patch) // 2
    xs, ys, ms = [], [], []
    hard = _hard_negatives(seg, data) if seg is not None else None
    for i in range(len(data["image"])):
        img = data["image"][i].astype(np.float32)
        lab = data["label"][i]
        comps, n = ndi.label(lab)
        centres = []
        for c, nv in zip(ndi.center_of_mass(lab, comps, range(1, n + 1)), ndi.sum_labels(lab, comps, range(1, n + 1))):
            if nv >= 8 and np.all(np.abs(np.asarray(c) - half) < half - size[0] // 2 + 4):
                centres.append(np.asarray(c))
        for c in centres:
            for _ in range(2):
                cc = c + rng.integers(-3, 4, 3)
                xs.append(extract_patch(img, cc, size))
                ms.append(extract_patch(lab, cc, size))
                ys.append(1)
        negs = []
        dense = np.argwhere((img > 0.45) & ~ndi.binary_dilation(lab > 0, iterations=3))
        dense = dense[np.all(np.abs(dense - half) < half - size[0] // 4, axis=1)]
        for _ in range(2):
            if len(dense):
                negs.append(dense[int(rng.integers(len(dense)))])
        far = np.argwhere(~ndi.binary_dilation(lab > 0, iterations=3)[::4, ::4, ::4]) * 4
        far = far[np.all(np.abs(far - half) < half - size[0] // 4, axis=1)]
        if len(far):  # one random background point per patch
            negs.append(far[int(rng.integers(len(far)))])
        if hard is not None:
            negs.extend(hard[i])
        for c in negs:
            xs.append(extract_patch(img, c, size))
            ms.append(extract_patch(lab, c, size))
            ys.append(0)
    return np.stack(xs), np.asarray(ys, np.float32), np.stack(ms)


def _hard_negatives(seg: torch.nn.Module, data: dict, batch: int = 16, per_patch: int = 4) -> list[list[np.ndarray]]:
    """Centres of the seg net's false-positive components in each stored patch (at most ``per_patch``).

    Batched under ``inference_mode``: the earlier loop (one forward per patch) grew the process to 22 GB on
    1,656 patches and was killed by the OOM killer; batched, 200 patches peak at 1.2 GB.
    """
    out: list[list[np.ndarray]] = []
    n = len(data["image"])
    with torch.inference_mode():
        for b in range(0, n, batch):
            x = torch.as_tensor(data["image"][b : b + batch].astype(np.float32))[:, None]
            prob = torch.sigmoid(seg(x)[0])[:, 0].numpy()
            for p, lab in zip(prob, data["label"][b : b + batch]):
                fp, k = ndi.label((p > 0.5) & ~ndi.binary_dilation(lab > 0, iterations=2))
                out.append([np.asarray(c) for c in ndi.center_of_mass(p, fp, range(1, k + 1))[:per_patch]])
    return out


def train_cls(cfg: NoduleConfig, data: dict | None, out: Path, *, seg: torch.nn.Module | None = None,
              max_minutes: float = 1e9, log_path: Path | None = None, mined: dict | None = None) -> dict:
    """Train the candidate classifier (BCE, class-balanced batches); writes checkpoint ``out``.

    ``mined``: candidate patches mined through the serving path (``candidates.build_candidate_set``), added to
    the samples drawn from the segmentation patches (``data``; None: mined candidates only). Negatives mined
    from real scans (source 2) are drawn ``cfg.cls_real_neg_weight`` times as often as the others. With
    ``cfg.cls_init`` the network starts from that exported classifier (fine-tune).
    """
    torch.manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    if seg is not None:
        seg = seg.eval()
    size = tuple(cfg.cls_patch)
    xs, ys = np.zeros((0, *size), np.float32), np.zeros(0, np.float32)
    if data is not None:
        xs, ys, _ = cls_samples(cfg, data, seg, rng)
    src = np.zeros(len(ys), np.uint8)
    n_mined = 0
    if mined is not None and len(mined["label"]):
        xs = np.concatenate([xs, mined["image"].astype(np.float32)])
        ys = np.concatenate([ys, mined["label"].astype(np.float32)])
        src = np.concatenate([src, mined["source"].astype(np.uint8)])
        n_mined = len(mined["label"])
    dev = device()
    net = CandidateClassifier(tuple(cfg.cls_channels))
    if cfg.cls_init:
        load_onnx_weights(net, str(init_onnx(cfg.cls_init, out.parent)))
    net = net.to(dev)
    aug = cls_augment(cfg, cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.cls_iters, 2), pct_start=0.1)
    pos, neg = np.flatnonzero(ys == 1), np.flatnonzero(ys == 0)
    w_neg = np.where(src[neg] == 2, float(cfg.cls_real_neg_weight), 1.0)
    w_neg /= w_neg.sum()
    bs = max(4, 2 * cfg.batch)
    log = Logger(log_path or out.with_suffix(".jsonl"), "cls", cfg.cls_iters)
    losses, t0, it = [], time.time(), 0
    for it in range(1, cfg.cls_iters + 1):
        idx = np.concatenate([rng.choice(pos, bs // 2), rng.choice(neg, bs - bs // 2, p=w_neg)])
        x = torch.stack([torch.as_tensor(np.asarray(apply(aug, {"image": xs[i][None]})["image"]), dtype=torch.float32)
                         for i in idx]).to(dev)
        y = torch.as_tensor(ys[idx])[:, None].to(dev)
        net.train()
        with _amp(dev):
            logit, _ = net(x)
            loss = F.binary_cross_entropy_with_logits(logit.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        log(it, loss=losses[-1])
        if time.time() - t0 > max_minutes * 60:
            break
    summary = {"kind": "cls", "iterations": it, "seconds": round(time.time() - t0, 1), "parameters": n_params(net),
               "samples": {"positive": int(len(pos)), "negative": int(len(neg)), "mined_candidates": n_mined,
                           "real_scan_negatives": int((src[neg] == 2).sum()),
                           "real_scan_positives": int((src[pos] == 2).sum()),
                           "real_neg_weight": float(cfg.cls_real_neg_weight)},
               "init": cfg.cls_init or None,
               "loss_first10": float(np.mean(losses[:10])), "loss_last10": float(np.mean(losses[-10:])),
               "device": str(dev), "threads": torch.get_num_threads()}
    torch.save({"state_dict": net.state_dict(), "config": cfg.to_dict(), "kind": "cls", "summary": summary}, out)
    return summary


def init_onnx(spec: str, work: Path) -> Path:
    """The ONNX file of a warm start: a path, or ``COMMIT:PATH`` (a committed model, read with ``git show`` into
    ``work``, so that the run can be repeated after the model file has been replaced)."""
    if Path(spec).exists():
        return Path(spec)
    commit, _, path = spec.partition(":")
    dst = work / f"init_{commit}_{Path(path).name}"
    if not dst.exists():
        blob = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, check=True).stdout
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(blob)
    return dst


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict]:
    """The network of a checkpoint (eval mode, CPU) and its saved dict."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = NoduleConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["config"].items()})
    net = CandidateClassifier(tuple(cfg.cls_channels)) if ck["kind"] == "cls" else build_seg(cfg, ck["kind"])
    net.load_state_dict(ck["state_dict"])
    return net.eval(), ck
