"""Write side of the pipeline: register studies from DICOM headers, track their state, store results.

Called by the importer / receiver (``upsert_study``, ``mark_queued``) and by the worker (``mark_analysing``,
``store_analysis`` with the pipeline's typed ``CaseResult``, ``mark_failed``, ``mark_unsuitable``). Each
function commits its own transaction. Log lines name studies by UID only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.lease import finish_lease
from db.models import AnalysisRun, AuditEvent, Finding, Series, Study, StudyStatus
from db.types import as_utc, table_of, utcnow
from inference.findings import get_kind
from inference.schema import CaseResult, QualityReason
from inference.schema import Finding as FindingResult

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
_STUDY = table_of(Study)
_SERIES = table_of(Series)
_RUN = table_of(AnalysisRun)
_FINDING = table_of(Finding)
_AUDIT = table_of(AuditEvent)


class StudyNotFound(LookupError):
    """No study with that UID (or id) is in the database."""


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
    assert study is not None  # inserted or found above, in this transaction
    session.refresh(study)
    return study


def _upsert_series(session: Session, study_id: int, item: Mapping[str, Any]) -> None:
    values = _normalise(item, SERIES_FIELDS, _SERIES)
    uid = values.pop("series_uid", None)
    if not uid:
        raise ValueError("each series needs a SeriesInstanceUID (series_uid)")
    if "path" in item and item["path"] is not None:
        values["path"] = str(item["path"])
    updated = session.connection().execute(
        sa.update(_SERIES).where(_SERIES.c.series_uid == uid).values(study_id=study_id, **values)
    ).rowcount
    if not updated:
        values.setdefault("selected", False)
        session.execute(sa.insert(_SERIES).values(series_uid=uid, study_id=study_id, **values))


#: States a new analysis never changes: the reader's claim and the signed report stay as they are.
READING_STATES = (StudyStatus.in_review.value, StudyStatus.signed.value)


def _set_status(session: Session, study_uid: str, status: StudyStatus, **values: Any) -> bool:
    """Move a study to ``status`` unless it is in review or signed. Returns whether it moved."""
    study_id = _study_id(session, study_uid)
    moved = session.connection().execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.status.not_in(READING_STATES))
        .values(status=status.value, **values)
    ).rowcount
    session.commit()
    log.info("study %s -> %s%s", study_uid, status.value, "" if moved else " (kept: in review or signed)")
    return bool(moved)


def mark_queued(*, session: Session, study_uid: str) -> bool:
    """The study is complete and waits for analysis. Returns False if it is in review or signed (it keeps
    that state; a new analysis version is stored beside it)."""
    return _set_status(session, study_uid, StudyStatus.queued, queued_at=utcnow())


def mark_analysing(*, session: Session, study_uid: str) -> bool:
    """The worker picked the study up. Returns False if it is in review or signed (state kept)."""
    return _set_status(session, study_uid, StudyStatus.analysing)


def mark_incomplete(*, session: Session, study_uid: str, reason: str) -> bool:
    """The transfer stopped mid-way (aborted association, receiver killed): ``incomplete``, waiting for a
    re-send, never analysed as it is. A study in review or signed keeps its state. Audited."""
    study_id = _study_id(session, study_uid)
    moved = session.connection().execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.status.not_in(READING_STATES))
        .values(status=StudyStatus.incomplete.value, attention_reason=reason, critical=False)
    ).rowcount
    if moved:
        _audit(session, "incomplete_transfer", study_id, actor="receiver")
    session.commit()
    log.warning("study %s: %s", study_uid, reason)
    return bool(moved)


def _run_row(
    study_id: int,
    *,
    result: CaseResult | None = None,
    started_at: datetime | None = None,
    error: str | None = None,
    reasons: Sequence[QualityReason] = (),
) -> dict[str, Any]:
    """The ``analysis_run`` row of one pass: models, operating points, provider, timings, quality reasons."""
    return {
        "study_id": study_id,
        "series_uid": result.series_uid if result else None,
        "started_at": as_utc(started_at),
        "finished_at": utcnow(),
        "provider": (result.provider or None) if result else None,
        "models": dict(result.model_versions) if result else {},
        "thresholds": {k: dict(v) for k, v in result.thresholds.items()} if result else None,
        "quality": [r.model_dump(mode="json") for r in reasons] or None,
        "timings_ms": result.model_dump(mode="json")["timings_ms"] if result else {},
        "error": error,
        # comparison with a prior (#16): the block of ``CaseResult.comparison`` and the prior it names
        "prior_study_uid": _prior_uid(result),
        "comparison": result.comparison if result else None,
    }


def finding_row(finding: FindingResult, *, study_id: int, run_id: int) -> dict[str, Any]:
    """Column values for one finding of a ``CaseResult``."""
    x, y, z = finding.center_mm
    k, j, i = finding.center_voxel
    return {
        "study_id": study_id,
        "run_id": run_id,
        "kind": get_kind(finding.kind).name,
        "probability": float(finding.probability),
        "center_x_mm": float(x),
        "center_y_mm": float(y),
        "center_z_mm": float(z),
        "center_k": int(k),
        "center_j": int(j),
        "center_i": int(i),
        "diameter_mm": finding.diameter_mm,
        "volume_ml": finding.volume_ml,
        "mean_hu": finding.mean_hu,
        "texture": finding.texture,
        "lung_rads": finding.lung_rads,
        "location": finding.location,
        "mask_path": finding.mask_path,
        "heatmap_path": finding.heatmap_path,
        **_change_values(finding),
    }


def _prior_uid(result: CaseResult | None) -> str | None:
    """The prior study a result was compared with (``comparison.prior_study_uid``), or None."""
    if result is None or not result.comparison:
        return None
    uid = result.comparison.get("prior_study_uid")
    return str(uid)[:64] if uid else None


def _change_values(finding: FindingResult) -> dict[str, Any]:
    """The comparison-with-prior columns of a finding (from ``Finding.extra``, written by
    ``inference.compare.annotate_findings``; all None without a prior)."""
    extra = finding.extra

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
    result: CaseResult,
    started_at: datetime | None = None,
    lease_owner: str | None = None,
    fingerprint: str | None = None,
) -> int:
    """Store one analysis: the run (models, operating points, timings), its findings and the study's scores,
    in one transaction.

    The study keeps the operating points the analysis used (``nodule_threshold``: ``thresholds.nodule.
    suspected``; ``embolism_threshold``: ``thresholds.embolism.critical``), so the worklist badge and filters
    and analytics read the values that flagged it. A result whose ``quality.ok`` is false is stored with
    ``mark_unsuitable`` instead.

    Args:
        session: database session.
        result: the pipeline's ``CaseResult`` (the study must exist).
        started_at: when the analysis started.
        lease_owner: the worker's lease (``db.lease``); the result is stored only while it holds it.
        fingerprint: of the inbox files analysed (``analysed_fingerprint``; an identical re-send is a no-op).

    Returns:
        The id of the new ``AnalysisRun``. The study becomes ``ready`` (a study already in review or
        signed keeps its state, claim and report), its critical flag and scores are replaced and its
        ``analysis_version`` goes up by one.

    Raises:
        db.lease.LeaseLost: ``lease_owner`` lost its lease; nothing is stored.
    """
    if not result.quality.ok:
        return mark_unsuitable(
            session=session,
            study_uid=result.study_uid,
            reason=result.quality.summary() or "input unsuitable",
            reasons=result.quality.reasons,
            started_at=started_at,
            lease_owner=lease_owner,
            fingerprint=fingerprint,
        )
    study_id = _study_id(session, result.study_uid)
    scores = result.scores
    nodule, embolism = scores.get("nodule"), scores.get("embolism")
    priority = scores.get("priority")
    if priority is None:
        known = [s for s in (nodule, embolism) if s is not None]
        priority = max(known) if known else None
    finish_lease(session, study_id, lease_owner)
    run = _run_row(study_id, result=result, started_at=started_at, reasons=result.quality.reasons)
    run_id = session.execute(sa.insert(_RUN).values(**run).returning(_RUN.c.id)).scalar_one()
    rows = [finding_row(f, study_id=study_id, run_id=run_id) for f in result.findings]
    if rows:
        session.execute(sa.insert(_FINDING), rows)
    keep = READING_STATES
    extra: dict[str, Any] = {} if fingerprint is None else {"analysed_fingerprint": fingerprint}
    session.execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id)
        .values(
            **extra,
            analysis_version=_STUDY.c.analysis_version + 1,
            nodule_score=nodule,
            embolism_score=embolism,
            priority=priority,
            critical=result.critical,
            nodule_threshold=result.operating_point("nodule", "suspected"),
            embolism_threshold=result.operating_point("embolism", "critical"),
            analysed_at=utcnow(),
            attention_reason=None,
            status=sa.case((_STUDY.c.status.in_(keep), _STUDY.c.status), else_=StudyStatus.ready.value),
        )
    )
    _audit(session, "analysed", study_id, run_id=run_id, findings=len(rows))
    session.commit()
    log.info("study %s analysed: run %d, %d findings", result.study_uid, run_id, len(rows))
    return run_id


def _mark_attention(
    session: Session,
    study_uid: str,
    status: StudyStatus,
    reason: str,
    reasons: Sequence[QualityReason],
    started_at: datetime | None,
    lease_owner: str | None = None,
    fingerprint: str | None = None,
) -> int:
    study_id = _study_id(session, study_uid)
    finish_lease(session, study_id, lease_owner)
    if fingerprint is not None:
        session.execute(sa.update(_STUDY).where(_STUDY.c.id == study_id).values(analysed_fingerprint=fingerprint))
    run = _run_row(study_id, started_at=started_at, error=reason, reasons=reasons)
    run_id = session.execute(sa.insert(_RUN).values(**run).returning(_RUN.c.id)).scalar_one()
    session.execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.status.not_in(READING_STATES))
        .values(
            status=status.value,
            attention_reason=reason,
            nodule_score=None,
            embolism_score=None,
            priority=None,
            critical=False,
            nodule_threshold=None,
            embolism_threshold=None,
            analysed_at=utcnow(),
        )
    )
    _audit(session, status.value, study_id, run_id=run_id)
    session.commit()
    log.warning("study %s %s: %s", study_uid, status.value, reason)
    return run_id


def mark_failed(*, session: Session, study_uid: str, reason: str, started_at: datetime | None = None) -> int:
    """The analysis crashed: the study needs attention (never shown as negative). Returns the run id."""
    return _mark_attention(session, study_uid, StudyStatus.failed, reason, (), started_at)


def mark_unsuitable(
    *,
    session: Session,
    study_uid: str,
    reason: str,
    reasons: Sequence[QualityReason] = (),
    started_at: datetime | None = None,
    lease_owner: str | None = None,
    fingerprint: str | None = None,
) -> int:
    """The input failed the quality gate: the study needs attention with ``reason`` (one line); ``reasons``
    (code, severity, message, advice each) are kept on the run for the review page. Returns the run id.
    ``lease_owner`` / ``fingerprint`` as in ``store_analysis`` (an identical re-send is not re-checked)."""
    return _mark_attention(
        session, study_uid, StudyStatus.unsuitable, reason, reasons, started_at, lease_owner, fingerprint
    )


def latest_run(*, session: Session, study_id: int) -> AnalysisRun | None:
    """The newest analysis run of a study (models, operating points, quality reasons, error), or None."""
    query = select(AnalysisRun).where(AnalysisRun.study_id == study_id).order_by(_RUN.c.id.desc()).limit(1)
    return session.exec(query).first()


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
    return list(session.exec(query.order_by(col(Finding.probability).desc(), col(Finding.id))))


def get_series(*, session: Session, study_id: int) -> list[Series]:
    """Series of a study, by series number."""
    return list(session.exec(select(Series).where(Series.study_id == study_id).order_by(col(Series.series_number))))
