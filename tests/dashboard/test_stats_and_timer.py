"""Test the reading timer, the arm assignment and the analytics statistics (pure functions)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dashboard import metrics
from dashboard.components import charts
from dashboard.components.heartbeat import new_report
from dashboard.components.timer import ActivityClock, format_seconds, format_wait
from dashboard.reading import assign_arm


def test_clock_counts_gaps_up_to_the_idle_cap():
    """Test that gaps between interactions count fully up to the cap and only the cap beyond it."""
    clock = ActivityClock(idle_cap_s=60)
    for t in (0, 10, 40, 1000, 1005):
        clock.touch(t)
    assert clock.active_s == pytest.approx(10 + 30 + 60 + 5)
    assert clock.total(1010) == pytest.approx(110) and clock.total(5000) == pytest.approx(165)
    assert ActivityClock().total(123) == 0.0


def test_clock_prefers_browser_reports_and_never_exceeds_wall_time():
    """Test that heartbeat reports replace the interaction estimate, that the unreported tail counts up to one
    report interval, and that neither a report nor the total can exceed the wall time since opening."""
    clock = ActivityClock(idle_cap_s=60, report_interval_s=15)
    clock.touch(100.0)  # opened
    clock.touch(130.0)
    assert clock.source == "server" and clock.total(140.0) == pytest.approx(40)
    clock.add_browser(12.0, 115.0)  # 12 active seconds of the first 15
    clock.add_browser(0.0, 130.0)
    clock.add_browser(9.5, 145.0)
    assert clock.source == "browser" and clock.reports == 3 and clock.browser_s == pytest.approx(21.5)
    assert clock.total(145.0) == pytest.approx(21.5)
    assert clock.total(150.0) == pytest.approx(26.5)  # tail since the last report
    assert clock.total(400.0) == pytest.approx(36.5)  # tail capped at one interval
    assert clock.add_browser(500.0, 160.0) == pytest.approx(60.0)  # a report cannot exceed wall time
    assert clock.total(160.0) == pytest.approx(60.0) and clock.total(161.0) <= 61.0


def test_heartbeat_reports_count_once_and_only_for_their_case():
    """Test that a report is counted once (by sequence number) and only for the case it was counted for."""
    seen: dict = {}
    report = {"seq": 1, "case": 7, "active_s": 14.5, "window_s": 15.0}
    assert new_report(report, 7, seen) == 14.5
    assert new_report(report, 7, seen) is None  # the same value again on a later rerun
    assert new_report({**report, "seq": 2}, 8, seen) is None  # counted while another case was open
    assert new_report({**report, "seq": 2, "active_s": -3}, 7, seen) == 0.0
    assert new_report(None, 7, seen) is None and new_report({"case": 7, "active_s": 1}, 7, seen) is None


def test_formats():
    """Test the time formats of the timer and the worklist."""
    assert format_seconds(75.4) == "1:15" and format_seconds(3725) == "1:02:05" and format_seconds(None) == "–"
    assert format_wait(12.9) == "12 min" and format_wait(185) == "3 h 05" and format_wait(60 * 52) == "2 d 4 h"


def test_arm_keeps_the_recorded_arm_and_hides_draws_below_the_fraction():
    """Test that a study keeps its recorded arm and that otherwise its draw decides (hidden below `fraction`)."""
    assert assign_arm(False, 0.99, 0.0) is False and assign_arm(True, 0.01, 1.0) is True
    assert assign_arm(None, 0.29, 0.3) is False and assign_arm(None, 0.3, 0.3) is True
    rng = random.Random(3)
    hidden = sum(not assign_arm(None, rng.random(), 0.3) for _ in range(4000))
    assert 0.27 < hidden / 4000 < 0.33
    assert assign_arm(None, 0.999, 1.0) is False and assign_arm(None, 0.0, 0.0) is True


def test_bootstrap_interval_contains_the_median_and_narrows_with_n():
    """Test the percentile bootstrap of the median."""
    rng = np.random.default_rng(0)
    small = rng.lognormal(5, 0.5, 20)
    big = rng.lognormal(5, 0.5, 2000)
    m, lo, hi = charts.bootstrap_median_ci(small, np.random.default_rng(1))
    assert lo <= m <= hi and m == pytest.approx(np.median(small))
    _, blo, bhi = charts.bootstrap_median_ci(big, np.random.default_rng(1), n_boot=500)
    assert (bhi - blo) < (hi - lo)
    assert charts.bootstrap_median_ci([], rng) == (None, None, None)


def test_relative_change_detects_a_speed_up():
    """Test that reading 20 % faster with AI gives a change near -0.2 with an interval excluding 0."""
    rng = np.random.default_rng(0)
    without = rng.lognormal(np.log(300), 0.3, 300)
    with_ai = rng.lognormal(np.log(240), 0.3, 300)
    point, lo, hi = charts.relative_change_ci(with_ai, without, np.random.default_rng(2), n_boot=500)
    assert point == pytest.approx(np.median(with_ai) / np.median(without) - 1)
    assert -0.3 < point < -0.1 and lo < point < hi < 0
    assert charts.relative_change_ci([], without, rng) == (None, None, None)


def test_embedding_map_separates_two_scanners():
    """Test that the 2-D map (t-SNE with scikit-learn) keeps two well-separated scanner clusters apart."""
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (15, 8)), rng.normal(5, 0.1, (15, 8))])
    xy, method = charts.embed_2d(x)
    assert xy.shape == (30, 2) and method in ("t-SNE", "PCA (fallback, not t-SNE)")
    a, b = xy[:15].mean(axis=0), xy[15:].mean(axis=0)
    spread = max(xy[:15].std(axis=0).max(), xy[15:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 3 * spread
    small, method = charts.embed_2d(x[:3])
    assert small.shape == (3, 2) and "PCA" in method


@pytest.mark.parametrize("n", [7, 8, 51, 60])
def test_order_statistic_bootstrap_matches_resampling(n):
    """Test that the O(n) bootstrap of the median has the distribution of brute-force resampling (odd and
    even n, with ties)."""
    x = np.round(np.random.default_rng(n).lognormal(5, 0.5, n), -1)  # rounding makes ties
    fast = metrics.bootstrap_medians(x, np.random.default_rng(1), n_boot=40_000)
    rng = np.random.default_rng(2)
    brute = np.median(rng.choice(x, size=(40_000, n), replace=True), axis=1)
    support = np.union1d(fast, brute)
    cdf = [np.searchsorted(np.sort(d), support, side="right") / d.size for d in (fast, brute)]
    assert np.abs(cdf[0] - cdf[1]).max() < 0.02  # two-sample KS distance (noise about 0.01 at this size)
    spread = np.quantile(brute, 0.975) - np.quantile(brute, 0.025)
    assert fast.mean() == pytest.approx(brute.mean(), abs=0.02 * spread)
    assert set(np.unique(fast)) <= set(np.unique(brute)) | set(np.unique((np.add.outer(x, x) / 2).ravel()))


def test_reading_time_figure_sends_a_precomputed_box_for_large_arms():
    """Test that an arm above the points cap is sent as five numbers (Tukey box), a small arm as points."""
    rng = np.random.default_rng(0)
    big = rng.lognormal(5, 0.5, charts.POINTS_CAP + 1)
    small = rng.lognormal(5, 0.5, 50)
    fig = charts.reading_time_figure({"ai_shown": big, "ai_hidden": small})
    large, few = fig.data
    assert large.y is None and large.boxpoints is False
    q1, med, q3 = np.quantile(big / 60, [0.25, 0.5, 0.75])
    assert (large.q1[0], large.median[0], large.q3[0]) == pytest.approx((q1, med, q3))
    inside = big[(big >= (q1 - 1.5 * (q3 - q1)) * 60) & (big <= (q3 + 1.5 * (q3 - q1)) * 60)] / 60
    assert large.upperfence[0] == pytest.approx(inside.max()) and large.lowerfence[0] == pytest.approx(inside.min())
    assert len(few.y) == 50 and few.boxpoints == "all"
    assert len(fig.to_json()) < 20_000
