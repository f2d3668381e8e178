"""Nodule reporting helpers: suggested Lung-RADS v2022 category from size and texture.

(The texture class itself, and the HU above which a voxel counts as solid, come from
``inference.models.nodule_prep``: ``texture_of`` and ``SOLID_HU``.)

The category is a **suggestion** for the reader (baseline screening rules, size = mean/long-axis diameter
as measured by the pipeline), never a final read. Lung-RADS v2022 (ACR), baseline:

* solid: < 6 mm → 2; 6 to < 8 → 3; 8 to < 15 → 4A; ≥ 15 → 4B
* part-solid: < 6 mm total → 2; ≥ 6 total with solid component < 6 → 3; solid 6 to < 8 → 4A; solid ≥ 8 → 4B
* ground-glass (non-solid): < 30 mm → 2; ≥ 30 → 3
"""

from __future__ import annotations

import numpy as np


def solid_component_mm(diameter_mm: float, solid_fraction: float) -> float:
    """Diameter of the solid component, assuming it is a compact region holding ``solid_fraction`` of the volume."""
    return float(diameter_mm * np.cbrt(max(0.0, min(1.0, solid_fraction))))


def lung_rads(diameter_mm: float, texture: str, solid_mm: float | None = None) -> str:
    """Suggested Lung-RADS v2022 baseline category (``"2"``, ``"3"``, ``"4A"``, ``"4B"``).

    Args:
        diameter_mm: long-axis (or mean) diameter of the whole nodule.
        texture: ``solid``, ``part-solid`` or ``ground-glass``.
        solid_mm: solid-component diameter for part-solid nodules (defaults to the whole diameter).
    """
    d = float(diameter_mm)
    if texture == "ground-glass":
        return "2" if d < 30 else "3"
    if texture == "part-solid":
        s = d if solid_mm is None else float(solid_mm)
        if d < 6:
            return "2"
        if s < 6:
            return "3"
        return "4A" if s < 8 else "4B"
    if d < 6:
        return "2"
    if d < 8:
        return "3"
    return "4A" if d < 15 else "4B"
