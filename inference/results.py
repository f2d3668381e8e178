"""Result types of the pipeline and their on-disk layout (the contract between worker and dashboard).

``Finding`` and ``CaseResult`` are what ``triage.analyze(volume)`` returns. ``save_case`` writes a case's
arrays and JSON under ``<data_dir>/results/<study_uid>/<run_id>/``; ``load_case`` reads them back
(memory-mapped) for the review viewer::

    result.json      CaseResult as JSON (the `triage analyze --json` shape) + geometry of the arrays
    ct.npy           int16 HU volume (k, j, i) as analysed (the selected series, original grid)
    nodule_mask.npy  uint8 label volume on the same grid: 0 background, n = finding n (1-based index)
    pe_mask.npy      uint8 0/1 region of suspected emboli (same grid), if the PE model ran
    heatmap.npy      uint8 0..255 explanation heatmap on the same grid (max over models), if any

Paths stored in the database (``Finding.mask_path`` / ``heatmap_path``) are relative to the data dir.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.volume import Volume

ARRAY_NAMES = ("ct", "nodule_mask", "pe_mask", "heatmap")


@dataclass
class Finding:
    """One suspected lesion. Positions in LPS mm (patient) and voxel indices (k, j, i) of the analysed grid."""

    kind: str  # "nodule" | "embolism"
    probability: float  # calibrated 0..1
    center_mm: tuple[float, float, float]
    center_voxel: tuple[int, int, int]
    diameter_mm: float | None = None
    volume_ml: float | None = None
    mean_hu: float | None = None
    texture: str | None = None  # solid | part-solid | ground-glass (nodules)
    lung_rads: str | None = None  # suggested Lung-RADS v2022 category (a suggestion, not a read)
    location: str | None = None  # lobe / "central|lobar|segmental, right|left" (emboli)
    label: int | None = None  # value of this finding in the mask volume
    mask_path: str | None = None  # relative to the data directory (set when the case is saved)
    heatmap_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["center_mm"] = [round(float(c), 2) for c in self.center_mm]
        d["center_voxel"] = [int(c) for c in self.center_voxel]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        d = dict(d)
        d["center_mm"] = tuple(d["center_mm"])
        d["center_voxel"] = tuple(d["center_voxel"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class CaseResult:
    """Everything the pipeline concluded about one study."""

    study_uid: str
    series_uid: str
    scores: dict[str, float]  # nodule, embolism, priority
    findings: list[Finding] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=lambda: {"ok": True, "reasons": []})
    model_versions: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    critical: bool = False
    provider: str = ""
    embedding: list[float] | None = None  # case embedding for the domain-shift picture
    more_findings: int = 0  # findings that passed the operating point beyond the display limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "scores": {k: None if v is None else round(float(v), 4) for k, v in self.scores.items()},
            "critical": self.critical,
            "findings": [f.to_dict() for f in self.findings],
            "quality": self.quality,
            "model_versions": self.model_versions,
            "provider": self.provider,
            "timings_ms": {k: round(float(v), 1) for k, v in self.timings_ms.items()},
            "embedding": self.embedding,
            "more_findings": self.more_findings,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseResult:
        return cls(
            study_uid=d["study_uid"],
            series_uid=d["series_uid"],
            scores=dict(d["scores"]),
            findings=[Finding.from_dict(f) for f in d.get("findings", [])],
            quality=d.get("quality", {"ok": True, "reasons": []}),
            model_versions=d.get("model_versions", {}),
            timings_ms=d.get("timings_ms", {}),
            critical=bool(d.get("critical", False)),
            provider=d.get("provider", ""),
            embedding=d.get("embedding"),
            more_findings=int(d.get("more_findings", 0)),
        )


@dataclass
class CaseArrays:
    """A saved case, read back: the result, the geometry and memory-mapped arrays (missing ones are None)."""

    result: CaseResult
    volume: Volume  # hu is memory-mapped
    nodule_mask: np.ndarray | None
    pe_mask: np.ndarray | None
    heatmap: np.ndarray | None
    folder: Path


def case_dir(data_dir: Path, study_uid: str, run_id: str) -> Path:
    return Path(data_dir) / "results" / study_uid / run_id


def save_case(
    data_dir: Path,
    result: CaseResult,
    volume: Volume,
    *,
    nodule_mask: np.ndarray | None = None,
    pe_mask: np.ndarray | None = None,
    heatmap: np.ndarray | None = None,
    run_id: str | None = None,
) -> Path:
    """Write a case's arrays and result JSON; returns the folder. Written to a temp folder, then renamed."""
    run_id = run_id or uuid.uuid4().hex[:12]
    final = case_dir(data_dir, result.study_uid, run_id)
    tmp = final.with_name(f".{run_id}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    arrays = {"ct": volume.hu.astype(np.int16, copy=False), "nodule_mask": nodule_mask, "pe_mask": pe_mask}
    if heatmap is not None:
        h = np.asarray(heatmap, dtype=np.float32)
        arrays["heatmap"] = np.clip(np.rint(h * 255.0 / max(float(h.max()), 1e-6)), 0, 255).astype(np.uint8)
    for name, arr in arrays.items():
        if arr is not None:
            if arr.shape != volume.shape:
                raise ValueError(f"{name} has shape {arr.shape}, volume {volume.shape}")
            np.save(tmp / f"{name}.npy", arr if name == "ct" else np.asarray(arr, dtype=np.uint8))
    doc = result.to_dict()
    doc["geometry"] = {
        "spacing_mm": list(volume.spacing_mm),
        "origin_mm": list(volume.origin_mm),
        "direction": volume.direction.tolist(),
        "meta": {k: v for k, v in volume.meta.items() if isinstance(v, str | int | float | bool | type(None))},
        "warnings": volume.warnings,
    }
    (tmp / "result.json").write_text(json.dumps(doc, indent=2))
    os.replace(tmp, final)
    return final


def load_case(folder: Path) -> CaseArrays:
    """Read a folder written by ``save_case`` (arrays memory-mapped, read-only)."""
    folder = Path(folder)
    doc = json.loads((folder / "result.json").read_text())
    geo = doc["geometry"]
    arrays = {
        n: (np.load(folder / f"{n}.npy", mmap_mode="r") if (folder / f"{n}.npy").exists() else None)
        for n in ARRAY_NAMES
    }
    result = CaseResult.from_dict(doc)
    vol = Volume(
        hu=arrays["ct"],
        spacing_mm=tuple(geo["spacing_mm"]),
        origin_mm=tuple(geo["origin_mm"]),
        direction=np.asarray(geo["direction"]),
        study_uid=result.study_uid,
        series_uid=result.series_uid,
        meta=geo.get("meta", {}),
        warnings=geo.get("warnings", []),
    )
    return CaseArrays(result, vol, arrays["nodule_mask"], arrays["pe_mask"], arrays["heatmap"], folder)


def latest_case(data_dir: Path, study_uid: str) -> Path | None:
    """The newest saved run folder of a study, or None."""
    root = Path(data_dir) / "results" / study_uid
    runs = [p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".") and (p / "result.json").exists()]
    return max(runs, key=lambda p: (p / "result.json").stat().st_mtime) if runs else None
