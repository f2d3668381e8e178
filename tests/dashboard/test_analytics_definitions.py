"""The analytics definitions on hand-computed data: one definition per metric (the false-negative rate is
1 − sensitivity), counts, bootstrap intervals, "too few" below the minimum, binned calibration with counts,
human column labels; and the analytics page showing them (AppTest)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import Session

from dashboard import metrics
from db import queries
from db.session import get_engine
from tests.dashboard.conftest import app, texts
from tests.db.factories import make_study

# 10 studies: scores and signed truth. At 0.5: TP 4 (0.9 0.8 0.7 0.6), FN 2 (0.3 0.1 true),
# FP 1 (0.55 false), TN 3 (0.4 0.2 0.05 false).
SCORES = [0.9, 0.8, 0.7, 0.6, 0.3, 0.1, 0.55, 0.4, 0.2, 0.05]
TRUTH = [True, True, True, True, True, True, False, False, False, False]


def by_key(rows):
    return {r["key"]: r for r in rows}


def test_performance_counts_values_and_one_definition():
    """Test sensitivity 4/6, specificity 3/4, PPV 4/5, NPV 3/5 and FN rate 2/6 = 1 − sensitivity."""
    rows = by_key(metrics.performance(SCORES, TRUTH, 0.5))
    assert metrics.confusion(SCORES, TRUTH, 0.5) == {"tp": 4, "fp": 1, "tn": 3, "fn": 2}
    assert (rows["sensitivity"]["count"], rows["sensitivity"]["value"]) == ("4/6", 0.667)
    assert rows["specificity"]["count"] == "3/4" and rows["specificity"]["value"] is None  # 4 < MIN_COUNT
    assert (rows["ppv"]["count"], rows["ppv"]["value"]) == ("4/5", 0.8)
    assert (rows["npv"]["count"], rows["npv"]["value"]) == ("3/5", 0.6)
    assert (rows["fn_rate"]["count"], rows["fn_rate"]["value"]) == ("2/6", 0.333)
    assert rows["fn_rate"]["value"] == pytest.approx(1 - rows["sensitivity"]["value"], abs=0.001)


def test_bootstrap_interval_brackets_the_value_and_is_reproducible():
    """Test that the 95 % interval contains the point value, stays in [0, 1] and is the same for a seed."""
    scores, truth = SCORES * 4, TRUTH * 4  # 40 studies: every denominator is large enough
    rows = by_key(metrics.performance(scores, truth, 0.5))
    for key in ("sensitivity", "specificity", "ppv", "npv", "fn_rate"):
        lo, hi = (float(x) for x in rows[key]["ci95"].split("–"))
        assert 0 <= lo <= rows[key]["value"] <= hi <= 1, (key, rows[key])
    assert metrics.performance(scores, truth, 0.5) == metrics.performance(scores, truth, 0.5)
    assert rows["sensitivity"]["count"] == "16/24"


def test_calibration_bins_with_counts_and_too_few():
    """Test equal-width reliability bins (count, mean score, observed rate) and None below the minimum."""
    assert metrics.calibration(SCORES, TRUTH) is None  # 10 < MIN_CALIBRATION
    scores = [0.1] * 10 + [0.9] * 10 + [0.5] * 4
    truth = [False] * 9 + [True] + [True] * 8 + [False] * 2 + [True, False, True, False]
    rows = metrics.calibration(scores, truth)
    assert rows == [
        {"bin": "0.0–0.2", "n": 10, "mean_score": 0.1, "observed": 0.1},
        {"bin": "0.4–0.6", "n": 4, "mean_score": 0.5, "observed": 0.5},
        {"bin": "0.8–1.0", "n": 10, "mean_score": 0.9, "observed": 0.8},
    ]


def test_median_ci_and_human_labels():
    """Test the median interval (None under 3 values) and the human column labels with "–" for None."""
    med, lo, hi = metrics.median_ci([10, 20, 30, 40, 50])
    assert med == 30 and 10 <= lo <= med <= hi <= 50
    assert metrics.median_ci([1, 2]) is None
    # one definition of the median's bootstrap (exact order-statistic draws) for the weekly rows and the arms
    v = np.random.default_rng(5).lognormal(4, 0.4, 801)
    draws = metrics.bootstrap_medians(v, np.random.default_rng(0), metrics.N_BOOT)
    assert metrics.median_ci(v) == (float(np.median(v)), *np.percentile(draws, [2.5, 97.5]))
    assert metrics.human([{"median_s": 12.5, "ci95_low_s": None, "fancy_thing": 1}]) == [
        {"Median (s)": 12.5, "95 % CI low (s)": "–", "Fancy thing": 1}
    ]


def test_analytics_page_shows_counts_and_too_few(seeded):
    """Test that the AI performance tab shows each PE figure with its count from the signed studies, the FN
    rate as 1 − sensitivity, and says "too few" instead of drawing a calibration curve."""
    with Session(get_engine(), expire_on_commit=False) as s:
        for score, truth in zip(SCORES, TRUTH):
            study = make_study(s, nodule=0.1, embolism=score, priority=score)
            queries.sign_report(session=s, study_id=study.id, reader="reader1", nodule=False, embolism=truth)
    at = app("reader1")
    at.switch_page("views/analytics.py")
    at.session_state["an_tab"] = "AI performance"
    at.run()
    assert not at.exception, at.exception
    frames = [df.value for df in at.dataframe]
    pe = next(f for f in frames if "Measure" in f.columns and "4/6" in set(f["Count"]))
    rows = dict(zip(pe["Measure"], zip(pe["Count"], pe["Value"])))
    assert rows["Sensitivity"] == ("4/6", "0.667")
    assert rows["False-negative rate (1 − sensitivity)"][0] == "2/6"
    assert rows["Specificity"][1] == "too few"
    page = texts(at)
    assert "operating point 0.500" in page and "10 signed studies scored" in page
    assert "too few signed studies with a score for a calibration curve" in page
