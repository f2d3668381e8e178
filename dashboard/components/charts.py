"""Statistics and Plotly figures for the analytics page (statistics are pure numpy and unit-tested)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard.metrics import bootstrap_medians

ARM_LABEL = {"ai_shown": "with AI", "ai_hidden": "without AI"}
#: Largest number of individual points a chart sends to the browser (box plot points, embedding map).
POINTS_CAP = 2000
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
    boots = bootstrap_medians(x, rng, n_boot)
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
    ma = bootstrap_medians(a, rng, n_boot)
    mb = bootstrap_medians(b, rng, n_boot)
    ratio = ma / np.where(mb > 0, mb, np.nan) - 1
    ratio = ratio[np.isfinite(ratio)]
    q = (1 - level) / 2
    return point, float(np.quantile(ratio, q)), float(np.quantile(ratio, 1 - q))


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


def box_stats(values: Sequence[float]) -> dict[str, float]:
    """Tukey box of ``values``: quartiles (linear interpolation, as Plotly) and whiskers at the most extreme
    values within 1.5 IQR of the box."""
    x = np.asarray(values, dtype=np.float64)
    q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    inside = x[(x >= q1 - 1.5 * iqr) & (x <= q3 + 1.5 * iqr)]
    return {
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "lowerfence": float(inside.min()),
        "upperfence": float(inside.max()),
    }


def reading_time_figure(by_arm: dict[str, list[float]], points_cap: int = POINTS_CAP) -> go.Figure:
    """Box plot of reading time per arm. An arm with at most ``points_cap`` cases also shows every case as a
    point; a larger arm is sent as its precomputed box only (five numbers instead of every reading)."""
    fig = go.Figure()
    for arm, values in by_arm.items():
        style = {"name": ARM_LABEL[arm], "marker_color": ARM_COLOUR[arm]}
        if len(values) == 0:
            continue
        if len(values) <= points_cap:
            box = go.Box(
                y=[v / 60 for v in values],
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 4, "opacity": 0.5},
                **style,
            )
        else:
            stats = {key: [v / 60] for key, v in box_stats(values).items()}
            box = go.Box(x=[ARM_LABEL[arm]], boxpoints=False, **stats, **style)
        fig.add_trace(box)
    fig.update_layout(**LAYOUT, title="Reading time per case (min)", showlegend=False)
    return fig


def weekly_figure(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    for arm in ("ai_shown", "ai_hidden"):
        pts = [r for r in rows if r["arm"] == arm]
        med = [(r["median_s"] or 0) / 60 for r in pts]
        hi = [None if r.get("ci95_high_s") is None else r["ci95_high_s"] / 60 - m for r, m in zip(pts, med)]
        lo = [None if r.get("ci95_low_s") is None else m - r["ci95_low_s"] / 60 for r, m in zip(pts, med)]
        fig.add_trace(
            go.Scatter(
                x=[r["week"] for r in pts],
                y=med,
                mode="lines+markers",
                name=ARM_LABEL[arm],
                line={"color": ARM_COLOUR[arm]},
                error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": True},
                text=[f"n={r['n']}" for r in pts],
            )
        )
    fig.update_layout(
        **LAYOUT,
        title="Median reading time per week (min), 95 % bootstrap CI (weeks with ≥ 3 cases)",
        xaxis_title="ISO week",
        yaxis_title="median reading time (min)",
    )
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
                mode="lines+markers+text",
                name=kind,
                line={"color": colour},
                marker={"size": [6 + min(14, r["n"]) for r in rows]},
                text=[f"n={r['n']}" for r in rows],
                textposition="top center",
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
    fig.update_layout(
        **LAYOUT,
        title=title,
        xaxis={"showticklabels": False, "title": "component 1 (no unit: distances only)"},
        yaxis={"showticklabels": False, "title": "component 2"},
    )
    return fig
