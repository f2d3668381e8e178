"""Evaluation metrics (numpy only): calibration, FROC / CPM, AUC, Dice, pointing game, Platt fitting."""

from __future__ import annotations

import numpy as np

FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # LUNA16 CPM operating points


def ece(prob: np.ndarray, label: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins: sum_b |B|/N * |mean(y_b) - mean(p_b)|."""
    p = np.asarray(prob, float).ravel()
    y = np.asarray(label, float).ravel()
    if len(p) == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.sum() / len(p) * abs(y[m].mean() - p[m].mean())
    return float(total)


def fit_logistic(features: np.ndarray, label: np.ndarray, iters: int = 100,
                 l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """Logistic regression ``sigmoid(features @ w + b)`` by Newton's method with a tiny L2 (weights, bias)."""
    F = np.asarray(features, float).reshape(len(label), -1)
    y = np.asarray(label, float).ravel()
    X = np.concatenate([F, np.ones((len(y), 1))], 1)
    w = np.zeros(X.shape[1])  # Newton from zero converges for logistic regression; from (1, 0) it can oscillate
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        g = X.T @ (p - y) + l2 * w
        H = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w[:-1].copy(), float(w[-1])


def fit_platt(logit: np.ndarray, label: np.ndarray, iters: int = 100, l2: float = 1e-3) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` minimising the log loss of ``sigmoid(a * logit + b)``."""
    w, b = fit_logistic(np.asarray(logit, float).reshape(-1, 1), label, iters, l2)
    return float(w[0]), b


def threshold_at_fp(score: np.ndarray, is_true: np.ndarray, n_scans: int,
                    fp_per_scan: float = 1.0) -> tuple[float | None, int]:
    """The operating point at ``fp_per_scan`` false positives per scan: the lowest score still kept when
    candidates are taken best first, and how many are kept; ``(None, 0)`` when even the best is too many."""
    score, is_true = np.asarray(score, float), np.asarray(is_true, bool)
    order = np.argsort(-score)
    ok = np.flatnonzero(np.cumsum(~is_true[order]) / max(n_scans, 1) <= fp_per_scan)
    if not len(ok):
        return None, 0
    return float(score[order][ok[-1]]), int(ok[-1] + 1)


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    s = np.asarray(score, float).ravel()
    y = np.asarray(label).ravel().astype(bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    r = np.arange(1, len(order) + 1, dtype=float)
    # average ranks of ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=r)
    ranks[order] = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def froc(cand_scores: np.ndarray, cand_hit: np.ndarray, n_lesions: int, n_scans: int,
         fp_rates: tuple[float, ...] = FROC_FP_RATES) -> dict[str, float]:
    """Sensitivity at each average number of false positives per scan, and their mean (CPM).

    Args:
        cand_scores: score of every candidate over all scans.
        cand_hit: index of the lesion each candidate hits (unique lesion id), or -1 for a false positive.
        n_lesions: lesions in all scans; n_scans: scans.

    Returns:
        ``{"sens@<r>": ..., "cpm": ...}``; a lesion counts once, at its best-scoring hit.
    """
    s = np.asarray(cand_scores, float)
    h = np.asarray(cand_hit, int)
    order = np.argsort(-s, kind="stable")
    s, h = s[order], h[order]
    seen: set[int] = set()
    tp_curve, fp_curve = [], []
    tp = fp = 0
    for hit in h:
        if hit < 0:
            fp += 1
        elif hit not in seen:
            seen.add(int(hit))
            tp += 1
        tp_curve.append(tp)
        fp_curve.append(fp)
    tp_a = np.asarray(tp_curve, float)
    fp_a = np.asarray(fp_curve, float) / max(n_scans, 1)
    out = {}
    for r in fp_rates:
        ok = fp_a <= r
        out[f"sens@{r:g}"] = float(tp_a[ok].max() / n_lesions) if ok.any() and n_lesions else 0.0
    out["cpm"] = float(np.mean([out[f"sens@{r:g}"] for r in fp_rates]))
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else 1.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 1.0


def pointing_hit(heatmap: np.ndarray, lesion: np.ndarray, tolerance_vox: int = 1) -> bool:
    """Pointing game: is the heatmap's maximum inside the lesion (dilated by ``tolerance_vox``)?"""
    from scipy import ndimage as ndi

    peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    m = np.asarray(lesion, bool)
    if tolerance_vox:
        m = ndi.binary_dilation(m, iterations=tolerance_vox)
    return bool(m[peak])


def match(cands: list, lesions: list[dict], spacing: tuple[float, ...]) -> list[int]:
    """Index of the lesion each candidate hits (centre inside the dilated lesion mask or within its radius
    of the lesion centre, at least 4 mm), else -1."""
    hits = []
    sp = np.asarray(spacing)
    for c in cands:
        v = np.asarray(c.center_voxel)
        best, bd = -1, 1e9
        for i, les in enumerate(lesions):
            d = float(np.linalg.norm((v - np.asarray(les["center_voxel"])) * sp))
            r = max(4.0, float(les.get("long_axis_mm") or les.get("diameter_mm") or 8.0) / 2)
            inside = les["mask"][tuple(np.clip(v, 0, np.array(les["mask"].shape) - 1))]
            if (inside or d <= r) and d < bd:
                best, bd = i, d
        hits.append(best)
    return hits
