"""DICOM in and out: sources, header scan, series selection, quality gate, volume loading, inbox."""

from inference.dicom.load import StudyInspection, inspect_paths, inspect_study, read_volume
from inference.dicom.quality import QualityIssue, UnusableStudy
from inference.dicom.scan import ScanResult, SeriesInfo, StudyInfo, scan

__all__ = [
    "QualityIssue",
    "ScanResult",
    "SeriesInfo",
    "StudyInfo",
    "StudyInspection",
    "UnusableStudy",
    "inspect_paths",
    "inspect_study",
    "read_volume",
    "scan",
]
