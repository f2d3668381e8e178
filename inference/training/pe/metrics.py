"""Metrics without torch: ROC AUC, sensitivity/specificity, expected calibration error, Platt scaling,
the pointing game."""

from __future__ import annotations

import numpy as np
from scipy import optimize


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction); NaN with one class only."""
    y, s = np.asarray(y, bool), np.asarray(score, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks of ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def sens_spec(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``p >= threshold``."""
    y, pred = np.asarray(y, bool), np.asarray(p) >= threshold
    sens = float((pred & y).sum() / max(1, y.sum()))
    spec = float((~pred & ~y).sum() / max(1, (~y).sum()))
    return sens, spec


def threshold_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float = 0.9) -> float:
    """The lowest threshold whose specificity on (y, p) is at least ``specificity``."""
    y, p = np.asarray(y, bool), np.asarray(p, np.float64)
    neg = np.sort(p[~y])
    if len(neg) == 0:
        return 0.5
    k = int(np.ceil(specificity * len(neg))) - 1  # this many negatives must fall below the threshold
    t = neg[min(max(k, 0), len(neg) - 1)]
    return float(np.nextafter(t, np.inf))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with ``bins`` equal-width probability bins (weighted |accuracy - confidence|)."""
    y, p = np.asarray(y, np.float64), np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return float(total)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def fit_platt(logits: np.ndarray, y: np.ndarray, reg: float = 1e-3) -> tuple[float, float]:
    """Platt scaling: (a, b) minimising the log loss of sigmoid(a * logit + b) (slightly L2-regularised)."""
    z, t = np.asarray(logits, np.float64), np.asarray(y, np.float64)

    def nll(ab: np.ndarray) -> float:
        q = np.clip(sigmoid(ab[0] * z + ab[1]), 1e-9, 1 - 1e-9)
        return float(-(t * np.log(q) + (1 - t) * np.log(1 - q)).mean() + reg * (ab[0] - 1) ** 2)

    res = optimize.minimize(nll, np.array([1.0, 0.0]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
    return float(res.x[0]), float(res.x[1])


def pointing_hit(peak_kji: tuple[int, int, int] | np.ndarray, lesion: np.ndarray, tolerance_vox: int = 0) -> bool:
    """Pointing game: is the heatmap peak inside the lesion mask (optionally within ``tolerance_vox``)?"""
    k, j, i = (int(v) for v in peak_kji)
    t = int(tolerance_vox)
    box = lesion[max(0, k - t):k + t + 1, max(0, j - t):j + t + 1, max(0, i - t):i + t + 1]
    return bool(box.any())
