"""Tests of the suggested Lung-RADS v2022 categories and texture classes."""

from __future__ import annotations

import numpy as np
import pytest

from inference.nodules import lung_rads, solid_component_mm, texture_from_hu


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


def test_texture_classes_from_hu():
    """Test that solid, part-solid and ground-glass HU mixtures are told apart and the solid size follows."""
    assert texture_from_hu(np.full(100, 40.0))[0] == "solid"
    assert texture_from_hu(np.full(100, -600.0))[0] == "ground-glass"
    kind, frac = texture_from_hu(np.r_[np.full(30, 20.0), np.full(70, -650.0)])
    assert kind == "part-solid" and frac == pytest.approx(0.3)
    assert solid_component_mm(20.0, 0.125) == pytest.approx(10.0)
