"""Scan DICOM sources: read headers only, group instances into studies and series.

Nothing here decodes pixel data; ``load.py`` does that for the one series that is selected.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from inference.dicom.sources import Source, iter_sources

log = logging.getLogger(__name__)

HEADER_TAGS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "ImageType",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "ConvolutionKernel",
    "SeriesDescription",
    "StudyDescription",
    "BodyPartExamined",
    "NumberOfFrames",
    "Manufacturer",
    "ManufacturerModelName",
    "KVP",
    "ContrastBolusAgent",
    "GantryDetectorTilt",
    "SeriesNumber",
    "InstanceNumber",
    "AcquisitionTime",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "BitsAllocated",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "PatientID",
    "PatientName",
    "PatientAge",
    "PatientSex",
    "SeriesDate",
    "SeriesTime",
    "ImagesInAcquisition",
    "AcquisitionNumber",
)


@dataclass
class Instance:
    """Header facts of one DICOM file (no pixels)."""

    source: Source
    sop_uid: str
    study_uid: str
    series_uid: str
    sop_class_uid: str
    modality: str
    transfer_syntax_uid: str
    header: dict[str, Any]

    @property
    def orientation(self) -> np.ndarray | None:
        iop = self.header.get("ImageOrientationPatient")
        return None if iop is None or len(iop) != 6 else np.asarray(iop, dtype=float)

    @property
    def position(self) -> np.ndarray | None:
        ipp = self.header.get("ImagePositionPatient")
        return None if ipp is None or len(ipp) != 3 else np.asarray(ipp, dtype=float)

    @property
    def n_frames(self) -> int:
        try:
            return int(self.header.get("NumberOfFrames") or 1)
        except (TypeError, ValueError):
            return 1


@dataclass
class SeriesInfo:
    """The instances of one series plus the facts used to select and check it."""

    series_uid: str
    study_uid: str
    instances: list[Instance] = field(default_factory=list)

    def first(self, key: str, default: Any = None) -> Any:
        for inst in self.instances:
            value = inst.header.get(key)
            if value not in (None, ""):
                return value
        return default

    @property
    def modality(self) -> str:
        return str(self.first("Modality", ""))

    @property
    def description(self) -> str:
        return str(self.first("SeriesDescription", ""))

    @property
    def kernel(self) -> str:
        k = self.first("ConvolutionKernel", "")
        return "\\".join(k) if isinstance(k, list | tuple) else str(k)

    @property
    def slice_count(self) -> int:
        return sum(i.n_frames for i in self.instances)

    @property
    def slice_thickness_mm(self) -> float:
        try:
            return float(self.first("SliceThickness", np.nan))
        except (TypeError, ValueError):
            return float("nan")

    @property
    def is_multiframe(self) -> bool:
        return any(i.n_frames > 1 or i.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2.1" for i in self.instances)

    def summary(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "modality": self.modality,
            "description": self.description,
            "instances": len(self.instances),
            "slices": self.slice_count,
            "slice_thickness_mm": None if np.isnan(self.slice_thickness_mm) else self.slice_thickness_mm,
            "kernel": self.kernel,
            "manufacturer": str(self.first("Manufacturer", "")),
        }


@dataclass
class StudyInfo:
    study_uid: str
    series: dict[str, SeriesInfo] = field(default_factory=dict)

    def first(self, key: str, default: Any = None) -> Any:
        for s in self.series.values():
            value = s.first(key)
            if value not in (None, ""):
                return value
        return default


@dataclass
class ScanResult:
    """Everything found under some paths: studies by UID and files that are not usable DICOM."""

    studies: dict[str, StudyInfo] = field(default_factory=dict)
    unreadable: list[tuple[Source, str]] = field(default_factory=list)

    @property
    def n_instances(self) -> int:
        return sum(len(s.instances) for st in self.studies.values() for s in st.series.values())


def _plain(value: Any) -> Any:
    """DICOM element value → plain Python (lists of floats/str), JSON-friendly."""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, pydicom.valuerep.DSfloat | pydicom.valuerep.IS | float | int):
        return float(value) if isinstance(value, pydicom.valuerep.DSfloat | float) else int(value)
    if isinstance(value, pydicom.valuerep.PersonName):
        return str(value)
    return str(value) if value is not None else None


def read_header(source: Source) -> Instance:
    """Read one source's header.

    Raises:
        InvalidDicomError: not a DICOM file, or missing the UIDs that identify it.
    """
    with source.open() as fp:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except InvalidDicomError:
            raise
        except Exception as exc:  # pydicom raises many types for damaged files
            raise InvalidDicomError(f"cannot parse DICOM header ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID") if k not in ds]
    if missing:
        raise InvalidDicomError(f"missing {', '.join(missing)}")
    header = {}
    for key in HEADER_TAGS:
        if key in ds:
            try:
                header[key] = _plain(ds[key].value)
            except Exception:  # a malformed value must not hide the rest
                header[key] = None
    header["GantryDetectorTilt"] = header.get("GantryDetectorTilt")
    tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    return Instance(
        source=source,
        sop_uid=str(ds.SOPInstanceUID),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        modality=str(ds.get("Modality", "")),
        transfer_syntax_uid=tsyntax,
        header=header,
    )


def scan(paths: Iterable[Path | str]) -> ScanResult:
    """Read the headers of every file under ``paths`` and group them by study and series.

    Duplicate SOP Instance UIDs (the same file twice) are kept once. Files that are not DICOM are listed in
    ``unreadable`` with the reason.

    Raises:
        FileNotFoundError: if a path does not exist.
    """
    result = ScanResult()
    seen: set[str] = set()
    grouped: dict[str, dict[str, SeriesInfo]] = defaultdict(dict)
    for source in iter_sources(paths):
        try:
            inst = read_header(source)
        except (InvalidDicomError, OSError, ValueError) as exc:
            result.unreadable.append((source, str(exc) or type(exc).__name__))
            continue
        if inst.sop_uid in seen:
            continue
        seen.add(inst.sop_uid)
        series = grouped[inst.study_uid].setdefault(
            inst.series_uid, SeriesInfo(series_uid=inst.series_uid, study_uid=inst.study_uid)
        )
        series.instances.append(inst)
    for study_uid, by_series in grouped.items():
        result.studies[study_uid] = StudyInfo(study_uid=study_uid, series=by_series)
    log.debug("scanned %d instances in %d studies", result.n_instances, len(result.studies))
    return result
