"""The quality gate: machine-readable codes with plain-language messages.

Every rejection names what is wrong, which series, and what to do. Warnings (partial coverage) travel with
the volume and do not stop analysis. All limits come from ``Settings.quality``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from inference.config import QualityLimits

# code -> what a person should do about it
ADVICE = {
    "no_dicom": "Send the DICOM files of a chest CT series.",
    "not_ct": "Send a CT series; other modalities are not analysed.",
    "not_chest": "Send a chest CT; this series is labelled as another body part.",
    "no_axial_series": "Send the axial (transverse) reconstruction of the chest CT, not only reformats or scouts.",
    "too_few_slices": "Send the full series; it may still be arriving from the scanner or PACS.",
    "slice_too_thick": "Send a thinner reconstruction (the thin-slice series of the same study).",
    "missing_slices": "Re-send the series from the scanner or PACS; some slices did not arrive.",
    "uneven_spacing": (
        "Send a reconstruction with evenly spaced slices; some slices are displaced from the series' own grid."
    ),
    "incomplete_series": "Re-send the series from the scanner or PACS; fewer images arrived than its headers announce.",
    "mixed_patients": (
        "Check the study at the source: its images carry more than one Patient ID. Re-send each patient's "
        "images as their own study."
    ),
    "incomplete_transfer": "The sender stopped mid-transfer; re-send the study from the scanner or PACS.",
    "duplicate_positions": (
        "Check the series: two slices share a position (mixed acquisitions?). Re-send one clean series."
    ),
    "inconsistent_geometry": (
        "Check the series: its slices differ in size, spacing or orientation. Send one consistent series."
    ),
    "gantry_tilt": "Send a reconstruction without gantry tilt (or a tilt-corrected series).",
    "pixel_data_unreadable": "Re-send the file(s); the pixel data is truncated or cannot be decoded.",
    "unsupported": "Send a standard CT Image Storage series from the scanner.",
    "partial_coverage": "The series does not cover a whole chest; findings outside it cannot be seen.",
}


@dataclass
class QualityIssue:
    """One quality finding. ``severity`` is ``error`` (study unusable) or ``warning`` (analysable)."""

    code: str
    message: str
    series_uid: str | None = None
    severity: str = "error"

    @property
    def advice(self) -> str:
        return ADVICE.get(self.code, "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["advice"] = self.advice
        return d

    def __str__(self) -> str:
        where = f" (series {self.series_uid})" if self.series_uid else ""
        return f"{self.code}: {self.message}{where}. {self.advice}".strip()


class UnusableStudy(Exception):
    """Raised when no series of a study passes the quality gate. ``issues`` say why."""

    def __init__(self, issues: list[QualityIssue]):
        self.issues = [i for i in issues if i.severity == "error"] or issues
        super().__init__("; ".join(str(i) for i in self.issues))

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.issues]

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.issues]


@dataclass
class SliceRecord:
    """Geometry of one 2-D slice (a single-frame file, or one frame of a multi-frame file)."""

    position: np.ndarray  # LPS mm of the first pixel's centre
    orientation: np.ndarray  # 6 direction cosines
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    rows: int
    columns: int
    source_index: int  # index into the series' instances
    frame: int | None = None  # frame number (0-based) in a multi-frame file


@dataclass
class Geometry:
    """A checked, sorted stack: slice records in order along the normal, spacing and direction."""

    slices: list[SliceRecord]
    spacing_mm: tuple[float, float, float]
    direction: np.ndarray
    extent_z_mm: float


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = abs(float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return float(np.degrees(np.arccos(min(1.0, float(c)))))


def check_stack(
    records: list[SliceRecord],
    *,
    series_uid: str,
    limits: QualityLimits,
    slice_thickness_mm: float | None = None,
    gantry_tilt_deg: float | None = None,
) -> tuple[Geometry | None, list[QualityIssue]]:
    """Check a series' slice geometry and sort it along the slice normal.

    Returns:
        ``(geometry, issues)``; ``geometry`` is None when an error makes a volume impossible.
    """
    issues: list[QualityIssue] = []

    def err(code: str, msg: str) -> None:
        issues.append(QualityIssue(code, msg, series_uid))

    if len(records) < limits.min_slices:
        err("too_few_slices", f"the series has {len(records)} slice(s); at least {limits.min_slices} are needed")
        if len(records) < 2:
            return None, issues
    sizes = {(r.rows, r.columns) for r in records}
    spacings = {tuple(np.round(r.pixel_spacing, 4)) for r in records}
    orients = np.array([r.orientation for r in records])
    if len(sizes) > 1 or len(spacings) > 1 or np.abs(orients - orients[0]).max() > 1e-3:
        err(
            "inconsistent_geometry",
            f"slices differ in matrix size {sorted(sizes)} / pixel spacing {sorted(spacings)} or orientation",
        )
        return None, issues
    row_dir, col_dir = orients[0][:3], orients[0][3:]
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 0.5:
        err("inconsistent_geometry", "ImageOrientationPatient does not describe two perpendicular axes")
        return None, issues
    normal /= np.linalg.norm(normal)
    tilt_from_axial = _angle_deg(normal, np.array([0.0, 0.0, 1.0]))
    if tilt_from_axial > limits.axial_tolerance_deg:
        err("no_axial_series", f"the slices are not axial (normal {tilt_from_axial:.0f}° from the body axis)")
        return None, issues

    dist = np.array([float(np.dot(r.position, normal)) for r in records])
    order = np.argsort(dist, kind="stable")
    dist = dist[order]
    ordered = [records[i] for i in order]
    diffs = np.diff(dist)
    dup = np.flatnonzero(diffs < limits.position_tolerance_mm)
    if dup.size:
        err("duplicate_positions", f"{dup.size} slice position(s) occur twice, first at {dist[dup[0]]:.2f} mm")
        return None, issues
    median = float(np.median(diffs))
    gaps = np.flatnonzero(diffs > limits.gap_factor * median)
    if gaps.size:
        where = ", ".join(f"{dist[g]:.2f}..{dist[g + 1]:.2f} mm" for g in gaps[:3])
        err(
            "missing_slices",
            f"{gaps.size} gap(s) larger than {limits.gap_factor}× the usual {median:.2f} mm spacing ({where})",
        )
    gap_set = set(gaps.tolist())
    tolerance = limits.spacing_tolerance * median
    uneven = [g for g in range(diffs.size) if g not in gap_set and abs(diffs[g] - median) > tolerance]
    if uneven:
        worst = max(uneven, key=lambda g: abs(diffs[g] - median))
        err(
            "uneven_spacing",
            f"{len(uneven)} slice step(s) differ from the usual {median:.2f} mm by more than {tolerance:.2f} mm "
            f"(largest: {diffs[worst]:.2f} mm at {dist[worst]:.2f}..{dist[worst + 1]:.2f} mm); the volume would "
            "assume an even grid, so the series is not analysed",
        )
    # Gantry tilt: positions step along a direction that is not the slice normal.
    steps = ordered[-1].position - ordered[0].position
    stack_angle = _angle_deg(steps, normal) if np.linalg.norm(steps) > 0 else 0.0
    tilt = max(stack_angle, abs(gantry_tilt_deg or 0.0))
    if tilt > limits.max_gantry_tilt_deg:
        err("gantry_tilt", f"the slices are sheared by a gantry tilt of {tilt:.1f}°")
    thickness = slice_thickness_mm if slice_thickness_mm and slice_thickness_mm > 0 else median
    if thickness > limits.max_slice_thickness_mm:
        err(
            "slice_too_thick",
            f"slice thickness {thickness:g} mm is above the {limits.max_slice_thickness_mm:g} mm limit",
        )
    if any(i.severity == "error" for i in issues):
        return None, issues
    extent = float(dist[-1] - dist[0]) + median
    if extent < limits.full_chest_extent_mm:
        issues.append(
            QualityIssue(
                "partial_coverage",
                f"the series covers {extent:.0f} mm along the body axis; a full chest is about "
                f"{limits.full_chest_extent_mm:.0f} mm or more",
                series_uid,
                severity="warning",
            )
        )
    direction = np.column_stack([row_dir, col_dir, normal])
    ps = ordered[0].pixel_spacing
    geom = Geometry(ordered, (median, float(ps[0]), float(ps[1])), direction, extent)
    return geom, issues
