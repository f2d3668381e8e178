"""From scanned series to a checked ``Volume``: selection, quality gate, pixel decoding.

Stages (each a small function): ``slice_records`` (geometry per slice or frame) → ``check_stack``
(quality gate, sort along the normal) → ``load_pixels`` (decode, rescale to HU) → ``Volume``.
``inspect_study`` runs them for one study and records every decision; ``read_volume`` is the short form.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.pixels import pixel_array

from inference.config import QualityLimits, Settings, get_settings
from inference.dicom.quality import ADVICE, Geometry, QualityIssue, SliceRecord, UnusableStudy, check_stack
from inference.dicom.scan import ScanResult, SeriesInfo, StudyInfo, scan
from inference.dicom.select import Candidate, SelectionRules, load_rules, rank_series
from inference.dicom.sources import Source
from inference.volume import Volume

log = logging.getLogger(__name__)

HU_MIN, HU_MAX = -1024, 3071
ADVICE.setdefault("multiple_studies", "Give one study at a time (or its StudyInstanceUID).")


class PixelDataError(Exception):
    """Pixel data of a file is truncated or cannot be decoded."""


def _seq_item(ds: Any, *names: str) -> Any:
    """``ds.A[0].B[0]...`` or None when any level is missing."""
    cur = ds
    for name in names:
        seq = getattr(cur, name, None)
        if not seq:
            return None
        cur = seq[0]
    return cur


def _multiframe_records(series: SeriesInfo) -> tuple[list[SliceRecord], list[tuple[float, float]]]:
    """Slice records and (slope, intercept) per frame of an Enhanced CT instance."""
    if len(series.instances) != 1:
        raise ValueError(f"{len(series.instances)} multi-frame instances in one series are not supported")
    inst = series.instances[0]
    with inst.source.open() as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    n = int(getattr(ds, "NumberOfFrames", 1))
    if per_frame is None or len(per_frame) != n:
        raise ValueError("multi-frame file without per-frame functional groups")
    records, rescale = [], []
    for f, group in enumerate(per_frame):

        def get(*names: str, group: Any = group) -> Any:
            item = _seq_item(group, *names)
            return item if item is not None else _seq_item(shared, *names)

        pos, ori, meas = get("PlanePositionSequence"), get("PlaneOrientationSequence"), get("PixelMeasuresSequence")
        if pos is None or ori is None or meas is None:
            raise ValueError(f"frame {f + 1} lacks plane position, orientation or pixel measures")
        pvt = get("PixelValueTransformationSequence")
        slope = float(getattr(pvt, "RescaleSlope", 1) or 1) if pvt is not None else 1.0
        inter = float(getattr(pvt, "RescaleIntercept", 0) or 0) if pvt is not None else 0.0
        records.append(
            SliceRecord(
                position=np.asarray(pos.ImagePositionPatient, dtype=float),
                orientation=np.asarray(ori.ImageOrientationPatient, dtype=float),
                pixel_spacing=(float(meas.PixelSpacing[0]), float(meas.PixelSpacing[1])),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                source_index=0,
                frame=f,
            )
        )
        rescale.append((slope, inter))
    return records, rescale


def slice_records(series: SeriesInfo) -> tuple[list[SliceRecord], list[tuple[float, float]] | None]:
    """Geometry of every slice of ``series`` (frames of an Enhanced CT file included).

    Returns:
        ``(records, rescale)``; ``rescale`` is per-record (slope, intercept) for multi-frame files, else None
        (single-frame files carry their own, read with the pixels).

    Raises:
        ValueError: geometry tags are missing or the layout is unsupported.
    """
    if series.is_multiframe:
        return _multiframe_records(series)
    records = []
    for idx, inst in enumerate(series.instances):
        h = inst.header
        if inst.position is None or inst.orientation is None or not h.get("PixelSpacing"):
            raise ValueError(f"{inst.source.name} lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing")
        records.append(
            SliceRecord(
                position=inst.position,
                orientation=inst.orientation,
                pixel_spacing=(float(h["PixelSpacing"][0]), float(h["PixelSpacing"][1])),
                rows=int(h.get("Rows") or 0),
                columns=int(h.get("Columns") or 0),
                source_index=idx,
            )
        )
    return records, None


def _to_hu(arr: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> None:
    if slope == 1.0 and float(intercept).is_integer():
        np.clip(arr.astype(np.int32, copy=False) + int(intercept), HU_MIN, HU_MAX, out=out, casting="unsafe")
    else:
        np.clip(np.rint(arr * np.float32(slope) + np.float32(intercept)), HU_MIN, HU_MAX, out=out, casting="unsafe")


# Fastest installed decoder per compressed transfer syntax (measured in bench/bench_read.py: pyjpegls
# decodes JPEG-LS ~4x faster than pylibjpeg-libjpeg). Others use pydicom's default order.
PREFERRED_DECODER = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.5": "pylibjpeg",  # RLE lossless
}
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
PARALLEL_MIN_SLICES = 48


def _decode_slice(source: Source, transfer_syntax: str) -> tuple[np.ndarray, float, float]:
    """Decode one single-frame file: (stored pixel array, slope, intercept). Runs in worker processes too."""
    with source.open() as fp:
        ds = pydicom.dcmread(fp)
    plugin = PREFERRED_DECODER.get(transfer_syntax, "")
    try:
        arr = ds.pixel_array if not plugin else pixel_array(ds, decoding_plugin=plugin)
    except (RuntimeError, ValueError, ImportError):
        if not plugin:
            raise
        arr = ds.pixel_array  # preferred plugin missing or unable: fall back to pydicom's choice
    return arr, float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def _decode_or_error(source: Source, transfer_syntax: str) -> tuple[np.ndarray, float, float] | str:
    try:
        return _decode_slice(source, transfer_syntax)
    except Exception as exc:  # reported per file, never as a crash
        return f"{source.name}: {type(exc).__name__}: {exc}"


def _decoded(series: SeriesInfo, geometry: Geometry):
    """Yield (k, array, slope, intercept) in slice order; compressed series decode in worker processes."""
    jobs = [
        (series.instances[r.source_index].source, series.instances[r.source_index].transfer_syntax_uid)
        for r in geometry.slices
    ]
    compressed = any(ts not in UNCOMPRESSED for _, ts in jobs)
    workers = min(os.cpu_count() or 1, 8)
    if compressed and workers > 1 and len(jobs) >= PARALLEL_MIN_SLICES:
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = pool.map(_decode_or_error, *zip(*jobs), chunksize=8)
            for k, res in enumerate(results):
                yield k, res
    else:
        for k, (src, ts) in enumerate(jobs):
            yield k, _decode_or_error(src, ts)


def load_pixels(series: SeriesInfo, geometry: Geometry, rescale: list[tuple[float, float]] | None) -> np.ndarray:
    """Decode the pixels of ``geometry.slices`` into an int16 HU array (k, j, i).

    Raises:
        PixelDataError: naming the file whose pixel data is truncated or undecodable.
    """
    first = geometry.slices[0]
    hu = np.empty((len(geometry.slices), first.rows, first.columns), dtype=np.int16)
    if series.is_multiframe:
        inst = series.instances[0]
        try:
            with inst.source.open() as fp:
                frames = pydicom.dcmread(fp).pixel_array
        except Exception as exc:
            raise PixelDataError(f"{inst.source.name}: {type(exc).__name__}: {exc}") from exc
        for k, rec in enumerate(geometry.slices):
            slope, inter = rescale[rec.frame or 0] if rescale else (1.0, 0.0)
            _to_hu(frames[rec.frame or 0], slope, inter, hu[k])
        return hu
    for k, res in _decoded(series, geometry):
        if isinstance(res, str):
            raise PixelDataError(res)
        arr, slope, inter = res
        rec = geometry.slices[k]
        if arr.shape != (rec.rows, rec.columns):
            name = series.instances[rec.source_index].source.name
            raise PixelDataError(f"{name}: pixel array {arr.shape} != {rec.rows}x{rec.columns}")
        _to_hu(arr, slope, inter, hu[k])
    return hu


def series_meta(series: SeriesInfo) -> dict[str, Any]:
    """Acquisition facts that travel with the volume (no patient identifiers)."""
    contrast = series.first("ContrastBolusAgent", "")
    return {
        "modality": series.modality,
        "manufacturer": str(series.first("Manufacturer", "")),
        "model": str(series.first("ManufacturerModelName", "")),
        "kvp": series.first("KVP"),
        "kernel": series.kernel,
        "slice_thickness_mm": series.first("SliceThickness"),
        "contrast": bool(contrast and str(contrast).strip()),
        "contrast_agent": str(contrast or ""),
        "body_part": str(series.first("BodyPartExamined", "")),
        "series_description": series.description,
        "study_description": str(series.first("StudyDescription", "")),
        "acquisition_time": str(series.first("AcquisitionTime", "")),
        "study_date": str(series.first("StudyDate", "") or ""),  # the interval of a comparison with a prior
        "transfer_syntax": series.instances[0].transfer_syntax_uid if series.instances else "",
        "multiframe": series.is_multiframe,
    }


@dataclass
class StudyInspection:
    """Every decision made for one study: candidates, skips, the series used, the verdict."""

    study_uid: str
    series: list[dict[str, Any]] = field(default_factory=list)
    selected_series_uid: str | None = None
    selection_reason: str = ""
    issues: list[QualityIssue] = field(default_factory=list)
    volume: Volume | None = None

    @property
    def ok(self) -> bool:
        return self.volume is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_uid": self.study_uid,
            "series": self.series,
            "selected_series_uid": self.selected_series_uid,
            "selection_reason": self.selection_reason,
            "volume": self.volume.summary() if self.volume is not None else None,
            "quality": {"ok": self.ok, "reasons": [i.to_dict() for i in self.issues]},
        }


def patient_ids(study: StudyInfo) -> set[str]:
    """The distinct non-empty PatientID values of every instance of ``study``."""
    ids = set()
    for s in study.series.values():
        for inst in s.instances:
            value = str(inst.header.get("PatientID") or "").strip()
            if value:
                ids.add(value)
    return ids


def mixed_patients_issue(study: StudyInfo) -> QualityIssue | None:
    """A ``mixed_patients`` error when the study's instances carry more than one PatientID (names no ID)."""
    ids = patient_ids(study)
    if len(ids) < 2:
        return None
    where = [
        s.series_uid
        for s in study.series.values()
        if len({str(i.header.get("PatientID") or "").strip() for i in s.instances} - {""}) > 1
    ]
    scope = f"within series {', '.join(w[-12:] for w in where)}" if where else "across its series"
    return QualityIssue(
        "mixed_patients",
        f"the study's images carry {len(ids)} different Patient IDs ({scope}); it is not analysed, so no result "
        "can be filed under the wrong patient",
        where[0] if len(where) == 1 else None,
    )


def incomplete_series_issue(series: SeriesInfo, n_slices: int) -> QualityIssue | None:
    """An ``incomplete_series`` error when every instance announces (ImagesInAcquisition) more images of its
    acquisition than the series holds (single-frame series, one acquisition)."""
    if series.is_multiframe:
        return None
    announced = {inst.header.get("ImagesInAcquisition") for inst in series.instances}
    acquisitions = {inst.header.get("AcquisitionNumber") for inst in series.instances}
    if len(announced) != 1 or len(acquisitions) > 1:
        return None
    value = next(iter(announced))
    if not isinstance(value, int | float) or value <= n_slices:
        return None
    return QualityIssue(
        "incomplete_series",
        f"the headers announce {int(value)} images in the acquisition, {n_slices} arrived",
        series.series_uid,
    )


def _try_candidate(cand: Candidate, limits: QualityLimits) -> tuple[Volume | None, list[QualityIssue]]:
    series = cand.series
    try:
        records, rescale = slice_records(series)
    except ValueError as exc:
        return None, [QualityIssue("unsupported", str(exc), series.series_uid)]
    incomplete = incomplete_series_issue(series, len(records))
    if incomplete is not None:
        return None, [incomplete]
    tilt = series.first("GantryDetectorTilt")
    geom, issues = check_stack(
        records,
        series_uid=series.series_uid,
        limits=limits,
        slice_thickness_mm=series.slice_thickness_mm if not np.isnan(series.slice_thickness_mm) else None,
        gantry_tilt_deg=float(tilt) if isinstance(tilt, int | float) else None,
    )
    if geom is None:
        return None, issues
    try:
        hu = load_pixels(series, geom, rescale)
    except PixelDataError as exc:
        return None, [*issues, QualityIssue("pixel_data_unreadable", str(exc), series.series_uid)]
    origin = geom.slices[0].position
    vol = Volume(
        hu=hu,
        spacing_mm=geom.spacing_mm,
        origin_mm=tuple(origin),
        direction=geom.direction,
        study_uid=series.study_uid,
        series_uid=series.series_uid,
        meta=series_meta(series),
        warnings=[i.to_dict() for i in issues if i.severity == "warning"],
    )
    return vol, issues


def inspect_study(
    study: StudyInfo, *, settings: Settings | None = None, rules: SelectionRules | None = None
) -> StudyInspection:
    """Select the series of ``study``, run the quality gate and load its volume.

    Candidates are tried best first; the first one that passes the gate is used, and the issues of those
    that failed are kept (as warnings when a later candidate succeeds).
    """
    settings = settings or get_settings()
    rules = rules or load_rules(str(settings.series_rules) if settings.series_rules else None)
    report = StudyInspection(study_uid=study.study_uid)
    candidates, skipped = rank_series(study, rules)
    for s in study.series.values():
        row = s.summary()
        code_reason = skipped.get(s.series_uid)
        row["candidate"] = code_reason is None
        row["skip_reason"] = code_reason[1] if code_reason else None
        report.series.append(row)
    mixed = mixed_patients_issue(study)
    if mixed is not None:  # before any series is chosen or decoded: nothing is analysed
        report.issues.append(mixed)
        return report
    if not candidates:
        codes = [c for c, _ in skipped.values()]
        for code in ("no_axial_series", "not_chest", "unsupported", "not_ct", "skipped"):
            if code in codes:
                break
        if code == "skipped":
            code = "no_axial_series"
        details = "; ".join(f"{uid[-12:]}: {why}" for uid, (_, why) in skipped.items())
        msg = {
            "not_ct": "the study holds no CT images",
            "not_chest": "no CT series of the chest",
            "no_axial_series": "no axial CT series (only scouts, reformats or derived images)",
            "unsupported": "no CT image series in a supported format",
        }[code]
        report.issues.append(QualityIssue(code, f"{msg} ({details})"))
        return report
    failed: list[QualityIssue] = []
    for cand in candidates:
        vol, issues = _try_candidate(cand, settings.quality)
        if vol is not None:
            report.volume = vol
            report.selected_series_uid = cand.series.series_uid
            others = len(candidates) - 1
            report.selection_reason = (
                f"{cand.describe()}; ranked first of {len(candidates)} candidate(s) by {', '.join(rules.sort_keys)}"
                if not failed
                else f"{cand.describe()}; used because better-ranked series failed the quality gate"
            )
            del others
            for issue in failed:
                issue.severity = "warning"
            report.issues = failed + issues
            if failed:
                vol.warnings = [i.to_dict() for i in report.issues if i.severity == "warning"]
            return report
        failed.extend(issues)
    report.issues = failed
    return report


def inspect_paths(
    paths: list[Path | str], *, settings: Settings | None = None
) -> tuple[ScanResult, list[StudyInspection]]:
    """Scan ``paths`` and inspect every study found."""
    result = scan(paths)
    return result, [inspect_study(st, settings=settings) for st in result.studies.values()]


def read_volume(path: Path | str, *, study_uid: str | None = None, settings: Settings | None = None) -> Volume:
    """Read the selected, quality-checked series of the one study under ``path`` as a ``Volume``.

    Raises:
        UnusableStudy: nothing usable (with machine-readable ``codes`` and plain ``issues``).
        FileNotFoundError: ``path`` does not exist.
    """
    result = scan([path])
    studies = result.studies
    if study_uid is not None:
        studies = {k: v for k, v in studies.items() if k == study_uid}
    if not studies:
        why = (
            f"; {len(result.unreadable)} file(s) unreadable, e.g. {result.unreadable[0][1]}"
            if result.unreadable
            else ""
        )
        raise UnusableStudy([QualityIssue("no_dicom", f"no DICOM study found under {path}{why}")])
    if len(studies) > 1:
        raise UnusableStudy(
            [QualityIssue("multiple_studies", f"{len(studies)} studies found under {path}; pass study_uid")]
        )
    report = inspect_study(next(iter(studies.values())), settings=settings)
    if report.volume is None:
        raise UnusableStudy(report.issues)
    log.info("read series %s: shape %s", report.volume.series_uid, report.volume.shape)
    return report.volume
