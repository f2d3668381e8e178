"""Nodule reporting helpers: suggested Lung-RADS v2022 category from size and texture.

(The texture class itself, and the HU above which a voxel counts as solid, come from
``inference.models.nodule_prep``: ``texture_of`` and ``SOLID_HU``.)

The category is a **suggestion** for the reader (baseline screening rules, size = mean/long-axis diameter
as measured by the pipeline), never a final read. Lung-RADS v2022 (ACR), baseline:

* solid: < 6 mm → 2; 6 to < 8 → 3; 8 to < 15 → 4A; ≥ 15 → 4B
* part-solid: < 6 mm total → 2; ≥ 6 total with solid component < 6 → 3; solid 6 to < 8 → 4A; solid ≥ 8 → 4B
* ground-glass (non-solid): < 30 mm → 2; ≥ 30 → 3

With a prior (``change`` given; ``lung_rads_followup``), the v2022 comparison rules:

* new solid: < 4 mm → 2; 4 to < 6 → 3; 6 to < 8 → 4A; ≥ 8 → 4B
* growing solid (mean diameter up by > 1.5 mm within 12 months): < 8 mm → 4A; ≥ 8 → 4B
* new part-solid: < 6 mm total → 3; otherwise solid component < 4 mm → 4A, ≥ 4 → 4B; growing part-solid
  (growth of the nodule taken as growth of its solid component): solid < 4 mm → 4A, ≥ 4 → 4B
* ground-glass: < 30 mm → 2; ≥ 30 mm new → 3, stable or slowly growing → 2, growing faster → 3
* stable (or smaller): the size category, then v2022's stepped management: a 4A stable for ≥ 3 months → 3;
  a 3 stable for ≥ 6 months → 2, a 4A stable for ≥ 9 months (both steps) → 2; 4B is never stepped down.
* a nodule that crossed a size threshold without meeting the growth definition is categorised by its size.
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


#: Minimum intervals (days) for v2022 stepped management of stable nodules.
STEP_4A_TO_3_DAYS = 80  # "3-month follow-up"
STEP_3_TO_2_DAYS = 160  # "6-month follow-up"
STEP_4A_TO_2_DAYS = 250  # both steps
_ORDER = ("2", "3", "4A", "4B")


def _max(*cats: str) -> str:
    return max(cats, key=_ORDER.index)


def lung_rads_followup(
    diameter_mm: float,
    texture: str,
    solid_mm: float | None = None,
    *,
    change: str | None,
    interval_days: float | None = None,
) -> str:
    """Suggested Lung-RADS v2022 category using the comparison with a prior (see the module docstring).

    Args:
        diameter_mm: current mean/long-axis diameter.
        texture: ``solid``, ``part-solid`` or ``ground-glass``.
        solid_mm: current solid-component diameter (part-solid).
        change: ``None`` (no prior: baseline rules), ``new``, ``growing``, ``stable`` or ``shrinking``.
        interval_days: days between the prior and the current study (for stepped management).
    """
    base = lung_rads(diameter_mm, texture, solid_mm)
    if change is None:
        return base
    d = float(diameter_mm)
    s = d if solid_mm is None else float(solid_mm)
    if texture == "ground-glass":
        if d < 30:
            return "2"
        return "2" if change in ("stable", "shrinking") else "3"
    if change == "new":
        if texture == "part-solid":
            if d < 6:
                return "3"
            return "4A" if s < 4 else "4B"
        if d < 4:
            return "2"
        if d < 6:
            return "3"
        return "4A" if d < 8 else "4B"
    if change == "growing":
        if texture == "part-solid":
            return _max(base, "4A" if s < 4 else "4B")
        return _max(base, "4A" if d < 8 else "4B")
    # stable or shrinking: size category, stepped down when stable long enough
    days = float(interval_days or 0.0)
    if base == "4A" and days >= STEP_4A_TO_2_DAYS:
        return "2"
    if base == "4A" and days >= STEP_4A_TO_3_DAYS:
        return "3"
    if base == "3" and days >= STEP_3_TO_2_DAYS:
        return "2"
    return base
