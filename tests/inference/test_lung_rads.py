"""Tests of the suggested Lung-RADS v2022 categories and texture classes."""

from __future__ import annotations

import pytest

from inference.nodules import lung_rads, solid_component_mm


@pytest.mark.parametrize(
    ("d", "texture", "solid", "expected"),
    [
        (4.0, "solid", None, "2"),
        (6.0, "solid", None, "3"),
        (7.9, "solid", None, "3"),
        (8.0, "solid", None, "4A"),
        (14.9, "solid", None, "4A"),
        (15.0, "solid", None, "4B"),
        (5.0, "part-solid", 3.0, "2"),
        (12.0, "part-solid", 4.0, "3"),
        (12.0, "part-solid", 7.0, "4A"),
        (12.0, "part-solid", 9.0, "4B"),
        (25.0, "ground-glass", None, "2"),
        (30.0, "ground-glass", None, "3"),
    ],
)
def test_lung_rads_thresholds(d, texture, solid, expected):
    """Test that each size/texture boundary of Lung-RADS v2022 baseline maps to its category."""
    assert lung_rads(d, texture, solid) == expected


def test_solid_component_size():
    """Test that the solid-component diameter follows the cube root of the solid volume fraction."""
    assert solid_component_mm(20.0, 0.125) == pytest.approx(10.0)
    assert solid_component_mm(20.0, 1.0) == pytest.approx(20.0)
