"""What happens after files land in the inbox: register the studies in the database and queue them.

Used by ``triage ingest`` (right after copying) and by the C-STORE receiver (after a study's quiet period).
Nothing here decodes pixels; the worker does that.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from inference.config import Settings
from inference.dicom.inbox import IngestReport
from inference.dicom.scan import scan

log = logging.getLogger(__name__)

STUDY_KEYS = (
    "AccessionNumber", "PatientID", "PatientName", "PatientAge", "PatientSex", "StudyDescription", "StudyDate",
    "StudyTime", "Modality", "Manufacturer", "ManufacturerModelName", "ConvolutionKernel", "BodyPartExamined",
    "KVP", "ContrastBolusAgent",
)  # fmt: skip


def study_header(study_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Study-level header values and one summary per series, from the headers in ``study_dir``."""
    result = scan([study_dir])
    header: dict[str, Any] = {}
    series_rows: list[dict[str, Any]] = []
    for study in result.studies.values():
        for s in study.series.values():
            for key in STUDY_KEYS:
                value = s.first(key)
                if value not in (None, "") and key not in header:
                    header[key] = value
            series_rows.append(
                {
                    "SeriesInstanceUID": s.series_uid,
                    "SeriesNumber": s.first("SeriesNumber"),
                    "SeriesDescription": s.description,
                    "Modality": s.modality,
                    "SliceThickness": None if s.slice_thickness_mm != s.slice_thickness_mm else s.slice_thickness_mm,
                    "ConvolutionKernel": s.kernel,
                    "n_instances": len(s.instances),
                    "path": str(study_dir / s.series_uid),
                }
            )
    if isinstance(header.get("ConvolutionKernel"), list):
        header["ConvolutionKernel"] = "\\".join(header["ConvolutionKernel"])
    return header, series_rows


def scanner_profile(header: dict[str, Any]) -> str | None:
    """A scanner profile name for per-scanner analytics: manufacturer, model and kernel."""
    parts = [str(header.get(k) or "").strip() for k in ("Manufacturer", "ManufacturerModelName", "ConvolutionKernel")]
    return " / ".join(p for p in parts if p) or None


def open_database(settings: Settings) -> Engine:
    """The database engine of ``settings`` (``db.session.open_database``: a fresh embedded SQLite database, no
    ``TRIAGE_DATABASE_URL``, is created on first use).

    Raises:
        db.migrate.SchemaError: a configured (or existing but outdated) database is not at the newest schema.
    """
    from db.session import open_database as open_db
    from inference.private import secure_data_dir

    secure_data_dir(settings.data_dir)  # 0700, also when it already existed with a laxer mode
    return open_db(settings.resolved_database_url, data_dir=settings.data_dir, create=settings.database_url is None)


def register_and_queue(study_uids: Iterable[str], *, settings: Settings, queue: bool = True) -> list[str]:
    """Upsert each inbox study in the database and put it on the analysis queue.

    A study whose inbox files are exactly those of its stored analysis (an identical re-send) is registered
    but neither moved nor queued: nothing changes. New or changed instances queue a new analysis version; a
    study in review or signed keeps its state, claim and report meanwhile.

    Returns:
        The study UIDs queued.
    """
    from db.queries import mark_queued, upsert_study
    from db.session import session_scope
    from inference.dicom.inbox import inbox_fingerprint
    from inference.queue import enqueue_study

    engine = open_database(settings)
    queued = []
    for uid in study_uids:
        study_dir = settings.inbox_dir / uid
        header, series_rows = study_header(study_dir)
        with session_scope(engine) as session:
            study = upsert_study(
                session=session,
                study_uid=uid,
                header=header,
                series=series_rows,
                data_path=str(study_dir),
                scanner_profile=scanner_profile(header),
            )
            if not queue:
                continue
            if study.analysed_fingerprint is not None and study.analysed_fingerprint == inbox_fingerprint(study_dir):
                log.info("study %s: identical re-send, nothing changes", uid)
                continue
            mark_queued(session=session, study_uid=uid)
            queued.append(uid)
        if queue and uid in queued:
            enqueue_study(uid, settings)
    return queued


def register_ingested(report: IngestReport, *, settings: Settings) -> list[str]:
    """Register and queue the studies that an ingest stored (or found already stored)."""
    return register_and_queue(sorted(report.studies), settings=settings)
