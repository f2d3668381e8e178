"""Tests of the Lung-RADS v2022 categories with a comparison (new / growing / stable)."""

from __future__ import annotations

import pytest

from inference.nodules import lung_rads, lung_rads_followup


@pytest.mark.parametrize(
    ("d", "texture", "solid", "change", "days", "expected"),
    [
        (3.5, "solid", None, "new", 365, "2"),
        (5.0, "solid", None, "new", 365, "3"),
        (7.0, "solid", None, "new", 365, "4A"),
        (9.0, "solid", None, "new", 365, "4B"),
        (5.0, "solid", None, "growing", 365, "4A"),
        (9.0, "solid", None, "growing", 365, "4B"),
        (16.0, "solid", None, "growing", 365, "4B"),
        (7.0, "solid", None, "stable", 30, "3"),
        (7.0, "solid", None, "stable", 200, "2"),
        (10.0, "solid", None, "stable", 100, "3"),
        (10.0, "solid", None, "stable", 400, "2"),
        (16.0, "solid", None, "stable", 800, "4B"),
        (5.0, "part-solid", 2.0, "new", 365, "3"),
        (10.0, "part-solid", 3.0, "new", 365, "4A"),
        (10.0, "part-solid", 5.0, "growing", 365, "4B"),
        (20.0, "ground-glass", None, "new", 365, "2"),
        (32.0, "ground-glass", None, "new", 365, "3"),
        (32.0, "ground-glass", None, "stable", 365, "2"),
    ],
)
def test_followup_rules(d, texture, solid, change, days, expected):
    """Test that each comparison rule of Lung-RADS v2022 gives its category."""
    assert lung_rads_followup(d, texture, solid, change=change, interval_days=days) == expected


@pytest.mark.parametrize(("d", "texture"), [(4.0, "solid"), (7.0, "solid"), (12.0, "solid"), (31.0, "ground-glass")])
def test_without_prior_the_baseline_rules_apply(d, texture):
    """Test that no comparison (change None) gives the baseline category."""
    assert lung_rads_followup(d, texture, change=None) == lung_rads(d, texture)

