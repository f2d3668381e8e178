"""Series selection driven by data (``series_rules.json``), not by code.

``rank_series`` says, for every series of a study, whether it is a candidate and why not; candidates come
back best first according to the rules' ``sort_keys``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from inference.dicom.scan import SeriesInfo, StudyInfo

DEFAULT_RULES = Path(__file__).with_name("series_rules.json")


@dataclass(frozen=True)
class SelectionRules:
    """The parsed rules file."""

    modalities: tuple[str, ...]
    image_sop_classes: dict[str, str]
    skip_sop_classes: dict[str, str]
    skip_image_type_values: tuple[str, ...]
    skip_description_patterns: tuple[re.Pattern, ...]
    non_chest_body_parts: tuple[str, ...]
    kernel_preferences: tuple[tuple[re.Pattern, int, str], ...]
    axial_tolerance_deg: float
    sort_keys: tuple[str, ...]

    @classmethod
    def from_file(cls, path: Path | str) -> SelectionRules:
        data: dict[str, Any] = json.loads(Path(path).read_text())
        return cls(
            modalities=tuple(m.upper() for m in data["modalities"]),
            image_sop_classes=dict(data["image_sop_classes"]),
            skip_sop_classes=dict(data["skip_sop_classes"]),
            skip_image_type_values=tuple(v.upper() for v in data["skip_image_type_values"]),
            skip_description_patterns=tuple(re.compile(p, re.I) for p in data["skip_description_patterns"]),
            non_chest_body_parts=tuple(v.upper() for v in data.get("non_chest_body_parts", [])),
            kernel_preferences=tuple(
                (re.compile(k["pattern"], re.I), int(k["score"]), k["name"]) for k in data["kernel_preferences"]
            ),
            axial_tolerance_deg=float(data.get("axial_tolerance_deg", 15.0)),
            sort_keys=tuple(data["sort_keys"]),
        )


@lru_cache(maxsize=8)
def load_rules(path: str | None = None) -> SelectionRules:
    """Rules from ``path`` (``Settings.series_rules``) or the packaged default."""
    return SelectionRules.from_file(path or DEFAULT_RULES)


@dataclass
class Candidate:
    series: SeriesInfo
    kernel_score: int
    kernel_class: str
    keys: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        thick = self.series.slice_thickness_mm
        thick_s = "unknown thickness" if np.isnan(thick) else f"{thick:g} mm slices"
        kernel = f"kernel {self.series.kernel or 'unknown'} ({self.kernel_class})"
        return f"axial CT, {self.series.slice_count} slices, {thick_s}, {kernel}"


def kernel_score(kernel: str, rules: SelectionRules) -> tuple[int, str]:
    for pattern, score, name in rules.kernel_preferences:
        if kernel and pattern.search(kernel):
            return score, name
    return 0, "unrecognised"


def skip_reason(series: SeriesInfo, rules: SelectionRules) -> tuple[str, str] | None:
    """``(code, reason)`` why ``series`` is not a candidate, or None if it is one."""
    modality = series.modality.upper()
    if modality not in rules.modalities:
        return "not_ct", f"modality {modality or 'missing'}"
    sop_classes = {i.sop_class_uid for i in series.instances}
    for uid in sop_classes:
        if uid in rules.skip_sop_classes:
            return "skipped", rules.skip_sop_classes[uid]
    if not sop_classes & set(rules.image_sop_classes):
        return "unsupported", f"SOP class {', '.join(sorted(sop_classes))} is not a CT image class"
    image_type = series.first("ImageType", []) or []
    image_type = [image_type] if isinstance(image_type, str) else image_type
    hit = [v for v in image_type if str(v).upper() in rules.skip_image_type_values]
    if hit:
        return "skipped", f"ImageType {hit[0]} (localizer / derived image)"
    desc = series.description
    for pattern in rules.skip_description_patterns:
        if desc and pattern.search(desc):
            return "skipped", f"description '{desc}' matches '{pattern.pattern}'"
    body = str(series.first("BodyPartExamined", "")).upper().replace(" ", "")
    if body and body in rules.non_chest_body_parts:
        return "not_chest", f"BodyPartExamined is {body}"
    iop = next((i.orientation for i in series.instances if i.orientation is not None), None)
    if iop is None and not series.is_multiframe:
        return "unsupported", "no ImageOrientationPatient"
    if iop is not None:
        normal = np.cross(iop[:3], iop[3:])
        n = np.linalg.norm(normal)
        angle = np.degrees(np.arccos(min(1.0, abs(normal[2]) / n))) if n > 0 else 90.0
        if angle > rules.axial_tolerance_deg:
            return "no_axial_series", f"not axial (slice normal {angle:.0f}° from the body axis; a reformat?)"
    return None


def rank_series(study: StudyInfo, rules: SelectionRules) -> tuple[list[Candidate], dict[str, tuple[str, str]]]:
    """Candidates best first, and ``{series_uid: (code, reason)}`` for every series that is not one."""
    skipped: dict[str, tuple[str, str]] = {}
    candidates: list[Candidate] = []
    for series in study.series.values():
        reason = skip_reason(series, rules)
        if reason:
            skipped[series.series_uid] = reason
            continue
        score, name = kernel_score(series.kernel, rules)
        thick = series.slice_thickness_mm
        keys = {
            "slice_count": float(series.slice_count),
            "slice_thickness_mm": float(thick) if not np.isnan(thick) else 99.0,
            "kernel_score": float(score),
        }
        candidates.append(Candidate(series, score, name, keys))

    def sort_key(c: Candidate) -> tuple:
        out = []
        for key in rules.sort_keys:
            sign = -1.0 if key.startswith("-") else 1.0
            out.append(sign * c.keys[key.lstrip("-")])
        return (*out, c.series.series_uid)

    candidates.sort(key=sort_key)
    return candidates, skipped
