"""Statistics and Plotly figures for the analytics page (statistics are pure numpy and unit-tested)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

ARM_LABEL = {"ai_shown": "with AI", "ai_hidden": "without AI"}
ARM_COLOUR = {"ai_shown": "#3d8bfd", "ai_hidden": "#f0a030"}
LAYOUT = {
    "template": "plotly_dark",
    "height": 320,
    "margin": {"l": 40, "r": 10, "t": 40, "b": 40},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
}


def bootstrap_median_ci(
    values: Sequence[float], rng: np.random.Generator, n_boot: int = 2000, level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """Median and percentile-bootstrap ``level`` interval of the median (None for no data)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None, None, None
    if x.size == 1:
        return float(x[0]), float(x[0]), float(x[0])
    boots = np.median(rng.choice(x, size=(n_boot, x.size), replace=True), axis=1)
    a = (1 - level) / 2
    return float(np.median(x)), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


def relative_change_ci(
    with_ai: Sequence[float],
    without_ai: Sequence[float],
    rng: np.random.Generator,
    n_boot: int = 2000,
    level: float = 0.95,
) -> tuple[float | None, float | None, float | None]:
    """Relative change of the median reading time with AI vs without (``-0.2`` = 20 % faster) and its
    bootstrap interval (both arms resampled independently); None when an arm is empty."""
    a, b = np.asarray(with_ai, dtype=np.float64), np.asarray(without_ai, dtype=np.float64)
    if a.size == 0 or b.size == 0 or np.median(b) <= 0:
        return None, None, None
    point = float(np.median(a) / np.median(b) - 1)
    ma = np.median(rng.choice(a, size=(n_boot, a.size), replace=True), axis=1)
    mb = np.median(rng.choice(b, size=(n_boot, b.size), replace=True), axis=1)
    ratio = ma / np.where(mb > 0, mb, np.nan) - 1
    ratio = ratio[np.isfinite(ratio)]
    q = (1 - level) / 2
    return point, float(np.quantile(ratio, q)), float(np.quantile(ratio, 1 - q))


def calibration_bins(scores: Sequence[float], truth: Sequence[bool], n_bins: int = 10) -> list[dict[str, Any]]:
    """Reliability table: per score bin [lo, hi) (last bin closed) the count, mean score and observed rate."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        if m.any():
            rows.append(
                {
                    "bin": f"{edges[b]:.1f}–{edges[b + 1]:.1f}",
                    "n": int(m.sum()),
                    "mean_score": round(float(s[m].mean()), 4),
                    "observed": round(float(t[m].mean()), 4),
                }
            )
    return rows


def embed_2d(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D map of embeddings: t-SNE (scikit-learn) when available and n ≥ 5, else PCA. Returns (xy, method)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] >= 5:
        try:
            from sklearn.manifold import TSNE

            perplexity = float(min(30, max(2, (x.shape[0] - 1) // 3)))
            xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
            return xy, "t-SNE"
        except ImportError:
            pass
    centred = x - x.mean(axis=0)
    if x.shape[1] < 2:
        return np.c_[centred[:, 0], np.zeros(len(x))], "PCA (fallback, not t-SNE)"
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "PCA (fallback, not t-SNE)"


def reading_time_figure(by_arm: dict[str, list[float]]) -> go.Figure:
    fig = go.Figure()
    for arm, values in by_arm.items():
        fig.add_trace(
            go.Box(
                y=[v / 60 for v in values],
                name=ARM_LABEL[arm],
                marker_color=ARM_COLOUR[arm],
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 4, "opacity": 0.5},
            )
        )
    fig.update_layout(**LAYOUT, title="Reading time per case (min)", showlegend=False)
    return fig


def weekly_figure(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm in ("ai_shown", "ai_hidden"):
        pts = [r for r in rows if r["arm"] == arm]
        fig.add_trace(
            go.Scatter(
                x=[r["week"] for r in pts],
                y=[(r["median_s"] or 0) / 60 for r in pts],
                mode="lines+markers",
                name=ARM_LABEL[arm],
                line={"color": ARM_COLOUR[arm]},
            )
        )
    fig.update_layout(**LAYOUT, title="Median reading time per week (min)")
    return fig


def bar_figure(x: list[Any], y: list[Any], title: str, colour: str = "#3d8bfd") -> go.Figure:
    fig = go.Figure(go.Bar(x=x, y=y, marker_color=colour))
    fig.update_layout(**LAYOUT, title=title)
    return fig


def calibration_figure(tables: dict[str, list[dict[str, Any]]]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="ideal", line={"dash": "dot", "color": "#667"}))
    for (kind, rows), colour in zip(tables.items(), ("#e6394f", "#ffc34d")):
        fig.add_trace(
            go.Scatter(
                x=[r["mean_score"] for r in rows],
                y=[r["observed"] for r in rows],
                mode="lines+markers",
                name=kind,
                line={"color": colour},
                text=[f"n={r['n']}" for r in rows],
            )
        )
    fig.update_layout(
        **LAYOUT,
        title="Calibration: AI score vs signed report",
        xaxis_title="mean AI score",
        yaxis_title="observed positive rate",
    )
    return fig


def scatter_figure(xy: np.ndarray, groups: list[str], title: str) -> go.Figure:
    fig = go.Figure()
    for g in sorted(set(groups)):
        m = np.asarray([x == g for x in groups])
        fig.add_trace(go.Scatter(x=xy[m, 0], y=xy[m, 1], mode="markers", name=g, marker={"size": 8}))
    fig.update_layout(**LAYOUT, title=title, xaxis={"showticklabels": False}, yaxis={"showticklabels": False})
    return fig
