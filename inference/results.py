"""The on-disk layout of a case (the contract between worker and dashboard), and the result types.

``Finding`` and ``CaseResult`` (``inference.schema``: pydantic, schema-versioned) are what
``triage.analyze(volume)`` returns. ``save_case`` writes a case's
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.config import RESULTS_DIRNAME
from inference.findings import get_kind
from inference.schema import SCHEMA_VERSION, CaseResult, Finding, Quality, QualityReason
from inference.volume import Volume

__all__ = [
    "ARRAY_NAMES", "SCHEMA_VERSION", "CaseArrays", "CaseResult", "Finding", "Quality", "QualityReason",
    "case_dir", "latest_case", "load_case", "save_case",
]  # fmt: skip

ARRAY_NAMES = ("ct", "nodule_mask", "pe_mask", "heatmap")


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
    return Path(data_dir) / RESULTS_DIRNAME / study_uid / run_id


def save_case(
    data_dir: Path,
    result: CaseResult,
    volume: Volume,
    *,
    nodule_mask: np.ndarray | None = None,
    pe_mask: np.ndarray | None = None,
    heatmap: np.ndarray | None = None,
    run_id: str | None = None,
    outputs: Callable[[Path], None] | None = None,
) -> Path:
    """Write a case's arrays and its result JSON (once); returns the folder.

    Everything goes into a temporary folder that is renamed at the end, so a reader never sees half a case.
    Each finding's ``mask_path`` (its kind's mask, ``inference.findings``) and ``heatmap_path`` are set,
    relative to ``data_dir``, before the JSON is written.

    Args:
        outputs: called with the temporary folder after the arrays are written and before ``result.json``
            (the DICOM SEG/SR writer); it may still change ``result`` (timings).
    """
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
    rel = final.relative_to(data_dir)
    for f in result.findings:
        f.mask_path = str(rel / f"{get_kind(f.kind).mask}.npy")
        f.heatmap_path = str(rel / "heatmap.npy") if heatmap is not None else None
    if outputs is not None:
        outputs(tmp)
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
    hu = arrays["ct"]
    if hu is None:
        raise FileNotFoundError(f"{folder} has no ct.npy")
    vol = Volume(
        hu=hu,
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
    root = Path(data_dir) / RESULTS_DIRNAME / study_uid
    runs = [p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".") and (p / "result.json").exists()]
    return max(runs, key=lambda p: (p / "result.json").stat().st_mtime) if runs else None
