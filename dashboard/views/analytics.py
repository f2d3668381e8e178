"""Analytics: reading time with vs without AI, turnaround by priority, AI performance against signed
reports, missed findings, calibration, scanner profiles and the embedding map. Every table has a CSV export.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

import numpy as np
import streamlit as st

from dashboard import data, metrics
from dashboard.components import charts
from dashboard.components.timer import format_seconds
from db import queries

TABS = ("Reading time", "Turnaround", "AI performance", "Scanners")
#: Most case embeddings put through t-SNE (the newest analysed cases); t-SNE time grows fast with n.
EMBED_CAP = 500


def table(rows: list[dict[str, Any]], name: str, key: str) -> None:
    """A table (human column labels, "–" for missing values) with its CSV download."""
    if not rows:
        st.caption("No data yet.")
        return
    rows = metrics.human(rows)
    st.dataframe(rows, hide_index=True, width="stretch")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    st.download_button(
        "CSV", buf.getvalue(), file_name=f"{name}.csv", mime="text/csv", key=f"csv_{key}", icon=":material/download:"
    )


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.0f}%"


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def reading_summary(url: str, version: tuple[Any, ...]) -> dict[str, Any]:
    """Medians with bootstrap CIs, the relative change, weekly medians and both figures, computed once per
    data version (``data.analytics_version``) from every reading case."""
    with data.session() as s:
        cases = queries.reading_cases(session=s)
    arms = np.asarray([c[1] for c in cases], dtype=object)
    seconds = np.asarray([c[3] for c in cases], dtype=np.float64)
    by_arm = {arm: seconds[arms == arm] for arm in charts.ARM_LABEL}
    rng = np.random.default_rng(0)
    rows = []
    for arm, values in by_arm.items():
        median, lo, hi = charts.bootstrap_median_ci(values, rng)
        rows.append(
            {
                "arm": charts.ARM_LABEL[arm],
                "cases": len(values),
                "median_s": median and round(median, 1),
                "ci95_low_s": lo and round(lo, 1),
                "ci95_high_s": hi and round(hi, 1),
            }
        )
    change = charts.relative_change_ci(by_arm["ai_shown"], by_arm["ai_hidden"], rng)
    weekly: dict[tuple[str, str], list[float]] = defaultdict(list)
    for _, arm, week, secs in cases:
        weekly[(week, arm)].append(secs)
    weekly_rows = []
    for (w, a), v in sorted(weekly.items()):
        ci = metrics.median_ci(v)
        weekly_rows.append(
            {
                "week": w,
                "arm": a,
                "n": len(v),
                "median_s": round(float(np.median(v)), 1),
                "ci95_low_s": None if ci is None else round(ci[1], 1),
                "ci95_high_s": None if ci is None else round(ci[2], 1),
            }
        )
    return {
        "n": len(cases),
        "rows": rows,
        "change": change,
        "weekly": weekly_rows,
        "box": charts.reading_time_figure(by_arm),
        "trend": charts.weekly_figure(weekly_rows),
        "points_drawn": all(len(v) <= charts.POINTS_CAP for v in by_arm.values()),
    }


def reading_time(summary: dict[str, Any]) -> None:
    rows = summary["rows"]
    change, c_lo, c_hi = summary["change"]
    m = st.columns(4)
    m[0].metric("Readings (cases)", summary["n"])
    for col, row, label in ((m[1], rows[0], "Median with AI"), (m[2], rows[1], "Median without AI")):
        ci = f"{format_seconds(row['ci95_low_s'])}–{format_seconds(row['ci95_high_s'])}"
        col.metric(label, format_seconds(row["median_s"]), help=f"95% bootstrap CI {ci}")
    m[3].metric("Relative change with AI", pct(change), help=f"95% bootstrap CI {pct(c_lo)} to {pct(c_hi)}")
    left, right = st.columns(2)
    left.plotly_chart(summary["box"], width="stretch")
    if not summary["points_drawn"]:
        left.caption(
            f"Boxes from every reading; individual readings are drawn only for an arm with at most "
            f"{charts.POINTS_CAP:,} cases."
        )
    right.plotly_chart(summary["trend"], width="stretch")
    table(
        rows
        + [
            {
                "arm": "relative change (with/without − 1)",
                "cases": None,
                "median_s": change,
                "ci95_low_s": c_lo,
                "ci95_high_s": c_hi,
            }
        ],
        "reading_time_by_arm",
        "arm",
    )
    with st.expander("Per week and per reader"):
        table(
            [r | {"arm": charts.ARM_LABEL.get(r["arm"], r["arm"])} for r in summary["weekly"]],
            "reading_time_by_week",
            "week",
        )


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def calibration_summary(url: str, version: tuple[Any, ...]) -> tuple[dict[str, list[dict[str, Any]] | None], Any]:
    """Calibration tables (PE, nodule) from every signed study and their figure, once per data version."""
    with data.session() as s:
        outcomes = data.score_outcomes(s)
    cal: dict[str, list[dict[str, Any]] | None] = {}
    for kind, score_key, truth_key in KINDS:
        pairs = [(o[score_key], bool(o[truth_key])) for o in outcomes if o[score_key] is not None]
        cal[kind] = metrics.calibration([p[0] for p in pairs], [p[1] for p in pairs])
    drawn = {k: rows for k, rows in cal.items() if rows}
    return cal, charts.calibration_figure(drawn) if drawn else None


KINDS = (("PE", "embolism_score", "embolism"), ("Nodule", "nodule_score", "nodule"))


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def performance_tables(url: str, version: tuple[Any, ...]) -> dict[str, Any]:
    """Per kind: the operating point, signed studies with and without a score, and ``metrics.performance``
    (one definition per metric, counts and bootstrap intervals), once per data version."""
    with data.session() as s:
        outcomes = data.score_outcomes(s)
    out = {}
    for kind, score_key, truth_key in KINDS:
        thr_key = score_key.replace("_score", "_threshold")  # the operating point stored with each analysis
        rows = [o for o in outcomes if o[score_key] is not None and o[thr_key] is not None]
        points = sorted({float(o[thr_key]) for o in rows})
        out[kind] = {
            "threshold": points[0] if len(points) == 1 else None,
            "thresholds": points,
            "scored": len(rows),
            "unscored": len(outcomes) - len(rows),
            "rows": metrics.performance([o[score_key] for o in rows], [bool(o[truth_key]) for o in rows],
                                        [float(o[thr_key]) for o in rows]),
        }
    return out


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def turnaround_figure(url: str, version: tuple[Any, ...]) -> Any:
    rows = data.analytics_tables(url, version)["summary"]["turnaround_by_priority"]
    return charts.bar_figure(
        [r["priority_class"] for r in rows],
        [r["median_min"] for r in rows],
        "Median arrival → signed (min) by priority class",
    )


def _points_text(points: list[float]) -> str:
    if not points:
        return "–"
    return f"{points[0]:.3f}" if len(points) == 1 else "per study (" + ", ".join(f"{p:.3f}" for p in points) + ")"


def performance(summary: dict[str, Any], url: str, version: tuple[Any, ...]) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown("##### AI against signed reports (per study)")
        st.caption(
            "The AI calls a study positive when its score reaches the operating point; the signed report is the "
            f"truth. Counts are numerator/denominator; 95 % intervals from {metrics.N_BOOT:,} bootstrap resamples "
            f"of studies; a figure resting on fewer than {metrics.MIN_COUNT} studies is not given."
        )
        for kind, perf in performance_tables(url, version).items():
            st.markdown(
                f"**{kind}** · operating point {_points_text(perf['thresholds'])} (stored with each analysis) · "
                f"{perf['scored']} signed studies scored"
                + (f", {perf['unscored']} not scored (left out)" if perf["unscored"] else "")
            )
            rows = [{k: v for k, v in r.items() if k != "key"} for r in perf["rows"]]
            for r in rows:  # one type per column: text
                r["value"] = "too few" if r["value"] is None else f"{r['value']:.3f}"
            table(rows, f"ai_performance_{kind.lower()}", f"perf_{kind}")
        st.markdown("##### Findings added by readers (the AI did not report them)")
        table(
            [
                {k: v for k, v in r.items() if k != "fn_rate"} | {"kind": "PE" if r["kind"] == "embolism" else "Nodule"}
                for r in summary["ai_false_negative_rate"]
            ],
            "reader_added_findings",
            "fnr",
        )
    with right:
        cal, figure = calibration_summary(url, version)
        if figure is not None:
            st.plotly_chart(figure, width="stretch")
        for kind, cal_rows in cal.items():
            if cal_rows is None:
                st.info(
                    f"{kind}: too few signed studies with a score for a calibration curve "
                    f"(needs {metrics.MIN_CALIBRATION}).",
                    icon=":material/info:",
                )
        table([{"kind": k, **r} for k, kind_rows in cal.items() for r in kind_rows or []], "calibration", "cal")


def turnaround(summary: dict[str, Any], url: str, version: tuple[Any, ...]) -> None:
    st.plotly_chart(turnaround_figure(url, version), width="stretch")
    table(summary["turnaround_by_priority"], "turnaround_by_priority", "tat")


def scanners(summary: dict[str, Any], url: str) -> None:
    table(summary["scanner_profiles"], "scanner_profiles", "scan")
    points = data.case_embeddings(url, limit=EMBED_CAP)
    st.markdown("##### Case embeddings by scanner (domain shift)")
    if not points:
        st.info(
            "No case embeddings found: the worker writes them into result.json (CaseResult.embedding); "
            "none of the analysed cases has one yet."
        )
        return
    if len(points) < metrics.MIN_MAP_POINTS:
        st.info(
            f"Too few cases for a map: {len(points)} case embedding(s); a map of fewer than "
            f"{metrics.MIN_MAP_POINTS} would show noise."
        )
        return
    x = np.asarray([p["embedding"] for p in points])
    xy, method = _embed(x.tobytes(), x.shape)
    st.plotly_chart(
        charts.scatter_figure(xy, [p["scanner"] for p in points], f"{method} of case embeddings"), width="stretch"
    )
    st.caption(f"{len(points)} cases (the newest analysed cases, at most {EMBED_CAP}); method: {method}.")


@st.cache_data(ttl=300, show_spinner=False)
def _embed(raw: bytes, shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    return charts.embed_2d(np.frombuffer(raw, dtype=np.float64).reshape(shape))


def render() -> None:
    st.subheader("Analytics")
    url = data.db_url()
    version = data.analytics_version_cached(url)
    tables = data.analytics_tables(url, version)
    sim = tables["simulated"]
    if sim["readings"] or sim["reports"]:
        st.warning(
            f"Includes SIMULATED demo data: {sim['readings']} of {sim['readings_total']} reading sessions and "
            f"{sim['reports']} of {sim['reports_total']} signed reports come from simulated readers "
            f"({data.SIMULATED_PREFIX}*), not from real reading.",
            icon=":material/science:",
        )
    summary = tables["summary"]
    # Lazy tabs: only the open tab runs and is sent to the browser (switching tabs reruns the page).
    tabs = st.tabs(TABS, key="an_tab", on_change="rerun")
    sections = (
        lambda: reading_time(reading_summary(url, version)),
        lambda: turnaround(summary, url, version),
        lambda: performance(summary, url, version),
        lambda: scanners(summary, url),
    )
    for tab, section in zip(tabs, sections):
        if tab.open:
            with tab:
                section()


render()
