"""Lesion-free study sampling for PE training: balanced draws per stratum and hard-negative mining.

The 2026-11-29 retrain showed why this exists: its training draws were mostly positives, negatives with an
inserted clot and the one real CTA crop, so lesion-free synthetic CTPA made up about a sixth of the draws and
the study logits of its own lesion-free training studies stayed near 0 (positives ~6-7); the steep Platt fit
then scored some lesion-free studies 0.94-0.99, the CAM peak on the partial-volume edge of a small enhanced
lung vessel. ``NegativePool`` draws lesion-free studies evenly over (scanner profile, anatomy) strata and,
once ``mine`` has scored them with the current network, in proportion to how PE-like the network finds them;
it keeps each study's CAM hot spots so the caller can centre patches and windows on them.
This module imports no torch: ``mine`` takes a scoring function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CAM_STRIDE = 4  # model-grid voxels per CAM cell (in-plane)
ScoreFn = Callable[[np.ndarray], tuple[float, np.ndarray]]  # windowed (S, H, W) -> (study logit, CAM (S, h, w))


@dataclass
class NegativePool:
    """The lesion-free studies among ``metas`` (indices into the caller's sample list) and what mining found.

    Attributes:
        index: sample indices of the lesion-free studies.
        strata: stratum key per entry of ``index`` (profile, anatomy).
        logits: last mined study logit per entry (``nan`` before mining).
        hot: last mined hot spots per entry, model-grid (slice, row, column) voxels.
    """

    index: list[int]
    strata: list[tuple[str, str]]
    logits: np.ndarray = field(init=False)
    hot: list[list[tuple[int, int, int]]] = field(init=False)

    def __post_init__(self) -> None:
        self.logits = np.full(len(self.index), np.nan)
        self.hot = [[] for _ in self.index]

    @classmethod
    def from_metas(cls, metas: Sequence[dict[str, Any]]) -> NegativePool:
        """The lesion-free synthetic studies of ``metas`` (``positive`` false, a ``profile``)."""
        idx = [i for i, m in enumerate(metas) if not m.get("positive") and m.get("source", "synthetic") == "synthetic"]
        return cls(idx, [(str(metas[i].get("profile")), str(metas[i].get("anatomy", "legacy"))) for i in idx])

    def __len__(self) -> int:
        return len(self.index)

    def weights(self, hard_mix: float) -> np.ndarray:
        """Draw probabilities over the pool: ``1 - hard_mix`` spread evenly over strata (then evenly within a
        stratum), ``hard_mix`` in proportion to sigmoid(mined logit). Unmined studies count as logit 0."""
        n = len(self.index)
        if n == 0:
            return np.zeros(0)
        keys = {k: c for k, c in zip(*np.unique(np.array([f"{a}|{b}" for a, b in self.strata]), return_counts=True))}
        bal = np.array([1.0 / (len(keys) * keys[f"{a}|{b}"]) for a, b in self.strata])
        z = np.nan_to_num(self.logits, nan=0.0)
        hard = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
        hard = hard / hard.sum()
        w = (1.0 - hard_mix) * bal + hard_mix * hard
        return w / w.sum()

    def draw(self, rng: np.random.Generator, hard_mix: float = 0.0) -> int:
        """One pool entry (position in ``index``), balanced per stratum and weighted by hardness."""
        return int(rng.choice(len(self.index), p=self.weights(hard_mix)))

    def hot_spot(self, j: int, rng: np.random.Generator) -> tuple[int, int, int] | None:
        """A random mined hot spot of entry ``j`` (``None`` before mining)."""
        h = self.hot[j]
        return h[int(rng.integers(len(h)))] if h else None

    def update(self, j: int, logit: float, cam: np.ndarray, top_k: int = 4) -> None:
        """Record entry ``j``'s study logit and the ``top_k`` hottest CAM cells (one per slice at most) as
        model-grid voxels (cell centres)."""
        self.logits[j] = float(logit)
        s, h, w = cam.shape
        per_slice = cam.reshape(s, -1)
        best = per_slice.argmax(1)
        order = np.argsort(per_slice[np.arange(s), best])[::-1][:top_k]
        self.hot[j] = [(int(k), int(best[k] // w) * CAM_STRIDE + CAM_STRIDE // 2,
                        int(best[k] % w) * CAM_STRIDE + CAM_STRIDE // 2) for k in order]


def mine(pool: NegativePool, windowed: Callable[[int], np.ndarray], score: ScoreFn, top_k: int = 4) -> dict[str, float]:
    """Score every pool study with the current network (``windowed(i)``: the whole windowed crop of sample
    ``i``); returns a summary (mean logit, share above 0, the highest)."""
    for j, i in enumerate(pool.index):
        z, cam = score(windowed(i))
        pool.update(j, z, cam, top_k)
    z = pool.logits
    return {"n": len(z), "mean_logit": round(float(np.mean(z)), 3) if len(z) else 0.0,
            "share_above_0": round(float(np.mean(z > 0)), 3) if len(z) else 0.0,
            "max_logit": round(float(np.max(z)), 3) if len(z) else 0.0}
