"""Reader-study metrics with one definition each, their bootstrap intervals and the counts they rest on.

Pure numpy over plain values (the analytics page feeds them from ``db``); the tests check each against
hand-computed numbers.

* **AI performance** (study level, per kind): the AI calls a signed study positive when its score is ≥ the
  operating point; the signed report is the truth. Sensitivity = TP/(TP+FN), specificity = TN/(TN+FP),
  PPV = TP/(TP+FP), NPV = TN/(TN+FN), **false-negative rate = FN/(TP+FN) = 1 − sensitivity** (the same
  definition, so the two always agree). Each comes with its count ("9/12") and a 95 % percentile bootstrap
  interval over studies (2,000 resamples, fixed seed). A figure whose denominator is below ``MIN_COUNT``
  is not given ("too few").
* **Missed findings** (lesion level) are a count, not a rate: findings readers added that the AI did not
  report, with the studies they are on.
* **Calibration**: binned reliability (equal-width bins of the AI score), each bin with its count, mean
  score and observed positive rate; fewer than ``MIN_CALIBRATION`` scored studies: "too few".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_COUNT = 5  # smallest denominator for which a proportion is shown
MIN_CALIBRATION = 20  # smallest number of scored studies for a calibration curve
MIN_MAP_POINTS = 30  # smallest number of cases for an embedding map
N_BOOT = 2000
METRICS = (
    ("sensitivity", "Sensitivity", "tp", ("tp", "fn")),
    ("specificity", "Specificity", "tn", ("tn", "fp")),
    ("ppv", "PPV", "tp", ("tp", "fp")),
    ("npv", "NPV", "tn", ("tn", "fn")),
    ("fn_rate", "False-negative rate (1 − sensitivity)", "fn", ("tp", "fn")),
)

#: Human column labels for the analytics tables.
LABELS: dict[str, str] = {
    "arm": "Arm",
    "cases": "Cases",
    "n": "Cases",
    "median_s": "Median (s)",
    "ci95_low_s": "95 % CI low (s)",
    "ci95_high_s": "95 % CI high (s)",
    "week": "Week",
    "kind": "Finding",
    "metric": "Measure",
    "value": "Value",
    "count": "Count",
    "ci95": "95 % CI",
    "threshold": "Operating point",
    "unscored": "Not scored",
    "priority_class": "Priority class",
    "median_min": "Median (min)",
    "mean_min": "Mean (min)",
    "bin": "AI score bin",
    "mean_score": "Mean AI score",
    "observed": "Observed positive rate",
    "reader_added": "Findings added by readers",
    "studies_with_missed": "Studies with an added finding",
    "ai_confirmed": "AI findings confirmed",
    "scanner_profile": "Scanner profile",
    "studies": "Studies",
    "signed": "Signed",
}


def human(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with human column labels and "–" for missing values."""
    return [
        {LABELS.get(k, k.replace("_", " ").capitalize()): ("–" if v is None else v) for k, v in r.items()} for r in rows
    ]


def confusion(scores: Sequence[float] | np.ndarray, truth: Sequence[bool] | np.ndarray,
              threshold: float | Sequence[float] | np.ndarray) -> dict[str, int]:
    """TP, FP, TN, FN counts of ``score >= threshold`` against ``truth`` (one threshold, or one per study)."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    pos = s >= np.asarray(threshold, dtype=np.float64)
    return {
        "tp": int((pos & t).sum()),
        "fp": int((pos & ~t).sum()),
        "tn": int((~pos & ~t).sum()),
        "fn": int((~pos & t).sum()),
    }


def _value(c: Mapping[str, np.ndarray | int], num: str, den: tuple[str, str]) -> np.ndarray:
    d = np.asarray(c[den[0]], dtype=np.float64) + np.asarray(c[den[1]], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d > 0, np.asarray(c[num], dtype=np.float64) / np.where(d > 0, d, 1), np.nan)


def performance(
    scores: Sequence[float], truth: Sequence[bool], threshold: float | Sequence[float], *, seed: int = 0,
    n_boot: int = N_BOOT,
) -> list[dict[str, Any]]:
    """Each metric of ``METRICS`` with its count, value and 95 % bootstrap interval (None when too few).

    ``threshold`` is one operating point or one per study (the point stored with each study's analysis).

    Returns:
        ``[{"metric", "count", "value", "ci95"}]``: ``count`` as ``"num/den"``, ``value`` rounded to 3
        places, ``ci95`` as ``"lo–hi"``; ``value`` and ``ci95`` are None below ``MIN_COUNT``.
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=bool)
    thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), s.shape)
    c = confusion(s, t, thr)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(s), size=(n_boot, len(s))) if len(s) else np.zeros((0, 0), int)
    pos = s[idx] >= thr[idx] if len(s) else np.zeros((0, 0), bool)
    tt = t[idx] if len(s) else np.zeros((0, 0), bool)
    boot = {
        "tp": (pos & tt).sum(axis=1),
        "fp": (pos & ~tt).sum(axis=1),
        "tn": (~pos & ~tt).sum(axis=1),
        "fn": (~pos & tt).sum(axis=1),
    }
    rows = []
    for key, label, num, den in METRICS:
        n_den = c[den[0]] + c[den[1]]
        row: dict[str, Any] = {"metric": label, "count": f"{c[num]}/{n_den}", "value": None, "ci95": None, "key": key}
        if n_den >= MIN_COUNT:
            row["value"] = round(float(_value(c, num, den)), 3)
            draws = _value(boot, num, den)
            draws = draws[~np.isnan(draws)]
            if draws.size:
                lo, hi = np.percentile(draws, [2.5, 97.5])
                row["ci95"] = f"{lo:.2f}–{hi:.2f}"
        rows.append(row)
    return rows


def calibration(scores: Sequence[float], truth: Sequence[bool], n_bins: int = 5) -> list[dict[str, Any]] | None:
    """Binned reliability: per non-empty score bin its count, mean score and observed positive rate; None
    when fewer than ``MIN_CALIBRATION`` scored studies."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if len(s) < MIN_CALIBRATION:
        return None
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            rows.append(
                {
                    "bin": f"{edges[b]:.1f}–{edges[b + 1]:.1f}",
                    "n": int(m.sum()),
                    "mean_score": round(float(s[m].mean()), 3),
                    "observed": round(float(t[m].mean()), 3),
                }
            )
    return rows


def bootstrap_medians(values: Sequence[float] | np.ndarray, rng: np.random.Generator, n_boot: int = 2000) -> np.ndarray:
    """``n_boot`` draws of the median of a bootstrap resample (n values with replacement) of ``values``.

    Exact and O(n log n + n_boot) instead of O(n_boot * n): a resample is ``sorted[floor(n * U)]`` for n
    uniform U, so its k-th smallest value is ``sorted[floor(n * U_(k))]`` with ``U_(k) ~ Beta(k, n + 1 - k)``
    (the k-th order statistic of n uniforms); for even n the next order statistic is ``U_(k)`` plus
    ``(1 - U_(k)) * Beta(1, n - k)`` (the smallest of the other n - k uniforms above it).
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        return np.empty(0)
    k = (n + 1) // 2 if n % 2 else n // 2
    u = rng.beta(k, n + 1 - k, n_boot)
    lower = x[np.minimum((u * n).astype(np.int64), n - 1)]
    if n % 2:
        return lower
    u2 = u + (1 - u) * rng.beta(1, n - k, n_boot)
    return (lower + x[np.minimum((u2 * n).astype(np.int64), n - 1)]) / 2


def median_ci(values: Sequence[float], *, seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float, float] | None:
    """Median and its 95 % percentile bootstrap interval (``bootstrap_medians``: exact draws, not n_boot x n
    resamples); None for fewer than 3 values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 3:
        return None
    draws = bootstrap_medians(v, np.random.default_rng(seed), n_boot)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(np.median(v)), float(lo), float(hi)
