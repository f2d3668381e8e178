"""Write side of the pipeline: register studies from DICOM headers, track their state, store results.

Called by the importer / receiver (``upsert_study``, ``mark_queued``) and by the worker (``mark_analysing``,
``store_analysis``, ``store_case_result``, ``mark_failed``, ``mark_unsuitable``). Each function commits its
own transaction. Log lines name studies by UID only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from db.models import AnalysisRun, AuditEvent, Finding, Series, Study, StudyStatus
from db.types import as_utc, utcnow

log = logging.getLogger(__name__)

#: DICOM keywords accepted in ``upsert_study(header=...)`` and the Study column each one fills.
HEADER_FIELDS = {
    "AccessionNumber": "accession",
    "PatientID": "patient_id",
    "PatientName": "patient_name",
    "PatientAge": "patient_age",
    "PatientSex": "patient_sex",
    "StudyDescription": "description",
    "StudyDate": "study_date",
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "scanner_model",
    "ConvolutionKernel": "kernel",
}
SERIES_FIELDS = {
    "SeriesInstanceUID": "series_uid",
    "SeriesNumber": "series_number",
    "SeriesDescription": "description",
    "Modality": "modality",
    "ConvolutionKernel": "kernel",
    "SliceThickness": "slice_thickness_mm",
}
_STUDY = Study.__table__
_SERIES = Series.__table__
_RUN = AnalysisRun.__table__
_FINDING = Finding.__table__
_AUDIT = AuditEvent.__table__


class StudyNotFound(LookupError):
    """No study with that UID (or id) is in the database."""


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """``obj[key]`` for mappings, ``obj.key`` otherwise."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _text(value: Any, column: sa.Column) -> str | None:
    """DICOM value → text fitting ``column`` (multi-values joined with backslashes)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    if not text:
        return None
    length = getattr(column.type, "length", None)
    return text[:length] if length else text


def _normalise(raw: Mapping[str, Any], aliases: Mapping[str, str], table: sa.Table) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        if name not in table.c or name in ("id", "study_id") or value is None:
            continue
        column = table.c[name]
        if isinstance(column.type, sa.String):
            value = _text(value, column)
        elif isinstance(column.type, sa.Float):
            value = float(value)
        elif isinstance(column.type, sa.Integer):
            value = int(value)
        if value is not None:
            values[name] = value
    return values


def _study_id(session: Session, study_uid: str) -> int:
    study_id = session.execute(sa.select(_STUDY.c.id).where(_STUDY.c.study_uid == study_uid)).scalar()
    if study_id is None:
        raise StudyNotFound(f"no study with UID {study_uid}")
    return study_id


def _audit(session: Session, action: str, study_id: int | None, actor: str = "worker", **detail: Any) -> None:
    session.execute(
        sa.insert(_AUDIT).values(at=utcnow(), actor=actor, action=action, study_id=study_id, detail=detail or None)
    )


def upsert_study(
    *,
    session: Session,
    study_uid: str,
    header: Mapping[str, Any] | None = None,
    series: Sequence[Mapping[str, Any]] = (),
    scanner_profile: str | None = None,
    data_path: str | None = None,
    received_at: datetime | None = None,
) -> Study:
    """Create or update a study (and its series) from DICOM header values.

    Args:
        session: database session.
        study_uid: StudyInstanceUID.
        header: DICOM keywords (``PatientID``, ``AccessionNumber``, ...) or Study column names. Values that
            are missing or empty never overwrite what is stored.
        series: one mapping per series (``SeriesInstanceUID`` / ``series_uid`` required, plus
            ``SeriesNumber``, ``SliceThickness``, ``n_instances``, ``path``, ``selected``...).
        scanner_profile: name of the scanner profile the study matched, if any.
        data_path: where the files of the study are kept.
        received_at: arrival time (default now); only used when the study is new.

    Returns:
        The stored study. New studies start in status ``received``.
    """
    values = _normalise(header or {}, HEADER_FIELDS, _STUDY)
    for key in ("status", "received_at", "claimed_by", "claimed_at", "study_uid"):
        values.pop(key, None)
    if scanner_profile:
        values["scanner_profile"] = scanner_profile
    if data_path:
        values["data_path"] = str(data_path)
    study_id = session.execute(sa.select(_STUDY.c.id).where(_STUDY.c.study_uid == study_uid)).scalar()
    if study_id is None:
        try:
            with session.begin_nested():
                study_id = session.execute(
                    sa.insert(_STUDY)
                    .values(
                        study_uid=study_uid,
                        received_at=as_utc(received_at) or utcnow(),
                        status=StudyStatus.received.value,
                        critical=False,
                        **values,
                    )
                    .returning(_STUDY.c.id)
                ).scalar_one()
            log.info("study %s registered", study_uid)
        except IntegrityError:  # another importer registered it at the same moment
            study_id = _study_id(session, study_uid)
    if values and study_id is not None:
        session.execute(sa.update(_STUDY).where(_STUDY.c.id == study_id).values(**values))
    for item in series:
        _upsert_series(session, study_id, item)
    session.commit()
    study = session.get(Study, study_id)
    session.refresh(study)
    return study


def _upsert_series(session: Session, study_id: int, item: Mapping[str, Any]) -> None:
    values = _normalise(item, SERIES_FIELDS, _SERIES)
    uid = values.pop("series_uid", None)
    if not uid:
        raise ValueError("each series needs a SeriesInstanceUID (series_uid)")
    if "path" in item and item["path"] is not None:
        values["path"] = str(item["path"])
    updated = session.execute(
        sa.update(_SERIES).where(_SERIES.c.series_uid == uid).values(study_id=study_id, **values)
    ).rowcount
    if not updated:
        values.setdefault("selected", False)
        session.execute(sa.insert(_SERIES).values(series_uid=uid, study_id=study_id, **values))


def _set_status(session: Session, study_uid: str, status: StudyStatus, **values: Any) -> bool:
    """Move a study to ``status`` unless it is signed. Returns whether it moved."""
    study_id = _study_id(session, study_uid)
    moved = session.execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.status != StudyStatus.signed.value)
        .values(status=status.value, **values)
    ).rowcount
    session.commit()
    log.info("study %s -> %s%s", study_uid, status.value, "" if moved else " (refused: signed)")
    return bool(moved)


def mark_queued(*, session: Session, study_uid: str) -> bool:
    """The study is complete and waits for analysis. Returns False if it was already signed."""
    return _set_status(session, study_uid, StudyStatus.queued, queued_at=utcnow())


def mark_analysing(*, session: Session, study_uid: str) -> bool:
    """The worker picked the study up. Returns False if it was already signed."""
    return _set_status(session, study_uid, StudyStatus.analysing)


def _run_values(study_id: int, run: Any, error: str | None = None) -> dict[str, Any]:
    run = run or {}
    return {
        "study_id": study_id,
        "series_uid": _get(run, "series_uid"),
        "started_at": as_utc(_get(run, "started_at")),
        "finished_at": as_utc(_get(run, "finished_at")) or utcnow(),
        "provider": _get(run, "provider"),
        "models": dict(_get(run, "models") or _get(run, "model_versions") or {}),
        "timings_ms": dict(_get(run, "timings_ms") or {}),
        "error": error if error is not None else _get(run, "error"),
        "prior_study_uid": _get(run, "prior_study_uid"),
        "comparison": _get(run, "comparison"),
    }


def _xyz(finding: Any, vector_key: str, names: Sequence[str]) -> list[Any]:
    vector = _get(finding, vector_key)
    if vector is not None:
        return [None if v is None else v for v in list(vector)[:3]]
    return [_get(finding, name) for name in names]


def finding_row(finding: Any, *, study_id: int, run_id: int) -> dict[str, Any]:
    """Column values for one finding given as a mapping (``triage analyze --json``) or an object."""
    x, y, z = _xyz(finding, "center_mm", ("center_x_mm", "center_y_mm", "center_z_mm"))
    k, j, i = _xyz(finding, "center_voxel", ("center_k", "center_j", "center_i"))
    kind = str(_get(finding, "kind"))
    if kind not in ("nodule", "embolism"):
        raise ValueError(f"finding kind must be 'nodule' or 'embolism', got {kind!r}")

    def num(value: Any, cast: type) -> Any:
        return None if value is None else cast(value)

    def ref(*keys: str) -> str | None:
        for key in keys:
            value = _get(finding, key)
            if value is not None:
                return str(value)
        return None

    return {
        "study_id": study_id,
        "run_id": run_id,
        "kind": kind,
        "probability": float(_get(finding, "probability")),
        "center_x_mm": num(x, float),
        "center_y_mm": num(y, float),
        "center_z_mm": num(z, float),
        "center_k": num(k, int),
        "center_j": num(j, int),
        "center_i": num(i, int),
        "diameter_mm": num(_get(finding, "diameter_mm"), float),
        "volume_ml": num(_get(finding, "volume_ml"), float),
        "mean_hu": num(_get(finding, "mean_hu"), float),
        "texture": _get(finding, "texture"),
        "lung_rads": num(_get(finding, "lung_rads"), str),
        "location": _get(finding, "location"),
        "mask_path": ref("mask_path", "mask"),
        "heatmap_path": ref("heatmap_path", "heatmap"),
        **_change_values(finding),
    }


def _change_values(finding: Any) -> dict[str, Any]:
    """The comparison-with-prior columns of a finding (from its ``extra``; all None without a prior)."""
    extra = _get(finding, "extra") or {}

    def num(key: str) -> float | None:
        value = extra.get(key)
        return None if value is None else float(value)

    change = extra.get("change")
    return {
        "change": str(change)[:16] if change else None,
        "prior_diameter_mm": num("prior_diameter_mm"),
        "volume_change_pct": num("volume_change_pct"),
        "vdt_days": num("vdt_days"),
    }


def store_analysis(
    *,
    session: Session,
    study_uid: str,
    scores: Mapping[str, float | None],
    findings: Sequence[Any] = (),
    run: Any = None,
    pe_threshold: float | None = None,
) -> int:
    """Store one successful analysis: the run, its findings and the study's scores, in one transaction.

    Args:
        session: database session.
        study_uid: the analysed study (must exist).
        scores: ``nodule``, ``embolism`` and ``priority`` (calibrated 0..1); ``priority`` defaults to the
            larger of the other two.
        findings: mappings shaped like ``triage analyze --json`` findings, or objects with those attributes.
        run: ``series_uid``, ``started_at``, ``finished_at``, ``provider``, ``models`` (or
            ``model_versions``), ``timings_ms``; a mapping or an object.
        pe_threshold: embolism score at or above which the study is critical (default: settings).

    Returns:
        The id of the new ``AnalysisRun``. The study becomes ``ready`` (a study already in review or
        signed keeps its state) and its critical flag and scores are replaced.
    """
    if pe_threshold is None:
        from inference.config import get_settings

        pe_threshold = get_settings().pe_critical_threshold
    study_id = _study_id(session, study_uid)
    nodule, embolism = scores.get("nodule"), scores.get("embolism")
    priority = scores.get("priority")
    if priority is None:
        known = [s for s in (nodule, embolism) if s is not None]
        priority = max(known) if known else None
    run_id = session.execute(sa.insert(_RUN).values(**_run_values(study_id, run)).returning(_RUN.c.id)).scalar_one()
    rows = [finding_row(f, study_id=study_id, run_id=run_id) for f in findings]
    if rows:
        session.execute(sa.insert(_FINDING), rows)
    now = utcnow()
    keep = (StudyStatus.in_review.value, StudyStatus.signed.value)
    session.execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id)
        .values(
            nodule_score=nodule,
            embolism_score=embolism,
            priority=priority,
            critical=embolism is not None and embolism >= pe_threshold,
            analysed_at=now,
            attention_reason=None,
            status=sa.case((_STUDY.c.status.in_(keep), _STUDY.c.status), else_=StudyStatus.ready.value),
        )
    )
    _audit(session, "analysed", study_id, run_id=run_id, findings=len(rows))
    session.commit()
    log.info("study %s analysed: run %d, %d findings", study_uid, run_id, len(rows))
    return run_id


def store_case_result(*, session: Session, result: Mapping[str, Any], pe_threshold: float | None = None) -> int:
    """``store_analysis`` for a ``CaseResult`` dict as printed by ``triage analyze --json``.

    A result whose ``quality.ok`` is false is stored with ``mark_unsuitable`` instead (returns the run id).
    """
    run = {
        "series_uid": result.get("series_uid"),
        "models": result.get("model_versions") or {},
        "timings_ms": result.get("timings_ms") or {},
        "provider": result.get("provider"),
    }
    comparison = result.get("comparison")
    if comparison:
        run["comparison"] = comparison
        run["prior_study_uid"] = comparison.get("prior_study_uid")
    quality = result.get("quality") or {}
    if quality and not quality.get("ok", True):
        reason = "; ".join(quality.get("reasons") or []) or "input unsuitable"
        return mark_unsuitable(session=session, study_uid=result["study_uid"], reason=reason, run=run)
    return store_analysis(
        session=session,
        study_uid=result["study_uid"],
        scores=result.get("scores") or {},
        findings=result.get("findings") or [],
        run=run,
        pe_threshold=pe_threshold,
    )


def _mark_attention(session: Session, study_uid: str, status: StudyStatus, reason: str, run: Any) -> int:
    study_id = _study_id(session, study_uid)
    run_id = session.execute(
        sa.insert(_RUN).values(**_run_values(study_id, run, error=reason)).returning(_RUN.c.id)
    ).scalar_one()
    session.execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.status != StudyStatus.signed.value)
        .values(
            status=status.value,
            attention_reason=reason,
            nodule_score=None,
            embolism_score=None,
            priority=None,
            critical=False,
            analysed_at=utcnow(),
        )
    )
    _audit(session, status.value, study_id, run_id=run_id)
    session.commit()
    log.warning("study %s %s: %s", study_uid, status.value, reason)
    return run_id


def mark_failed(*, session: Session, study_uid: str, reason: str, run: Any = None) -> int:
    """The analysis crashed: the study needs attention (never shown as negative). Returns the run id."""
    return _mark_attention(session, study_uid, StudyStatus.failed, reason, run)


def mark_unsuitable(*, session: Session, study_uid: str, reason: str, run: Any = None) -> int:
    """The input failed the quality gate: the study needs attention with ``reason``. Returns the run id."""
    return _mark_attention(session, study_uid, StudyStatus.unsuitable, reason, run)


def get_study(*, session: Session, study_id: int | None = None, study_uid: str | None = None) -> Study | None:
    """One study by id or UID."""
    if study_id is not None:
        return session.get(Study, study_id)
    return session.exec(select(Study).where(Study.study_uid == study_uid)).first()


def get_findings(*, session: Session, study_id: int, all_runs: bool = False) -> list[Finding]:
    """AI findings of a study: those of its latest analysis run (or of every run), by probability."""
    query = select(Finding).where(Finding.study_id == study_id)
    if not all_runs:
        latest = sa.select(sa.func.max(_RUN.c.id)).where(_RUN.c.study_id == study_id).scalar_subquery()
        query = query.where(Finding.run_id == latest)
    return list(session.exec(query.order_by(Finding.probability.desc(), Finding.id)))


def get_series(*, session: Session, study_id: int) -> list[Series]:
    """Series of a study, by series number."""
    return list(session.exec(select(Series).where(Series.study_id == study_id).order_by(Series.series_number)))
