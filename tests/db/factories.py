"""Factories for database tests: small, explicit rows with sensible defaults.

Each ``make_*`` function inserts through the public query functions where one exists (so the tests
exercise them) and returns the new row or id. Pass any column as a keyword to override a default.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlmodel import Session

from db import queries
from db.models import Study, User
from inference.schema import CaseResult, Finding

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)  # a Monday (ISO week 2026-W02)
_seq = itertools.count(1)


def uid(prefix: str = "1.2.826.0.1.3680043.10.999") -> str:
    """A fresh, valid-looking DICOM UID."""
    return f"{prefix}.{next(_seq)}"


def make_user(session: Session, username: str | None = None, *, role: str = "reader") -> User:
    """A user with a dummy password hash."""
    return queries.create_user(
        session=session, username=username or f"reader{next(_seq)}", password_hash="x" * 20, role=role
    )


def make_study(
    session: Session,
    *,
    received_at: datetime = T0,
    status: str = "ready",
    nodule: float | None = None,
    embolism: float | None = None,
    priority: float | None = None,
    scanner_profile: str | None = None,
    findings: list[dict[str, Any]] | None = None,
    pe_threshold: float = 0.5,
    nodule_threshold: float = 0.5,
    **header: Any,
) -> Study:
    """A study in ``status``; scores given → stored through ``store_analysis`` (status ``ready``) with the
    operating points ``pe_threshold`` (critical) and ``nodule_threshold`` (suspected).

    ``status="failed"``/``"unsuitable"`` go through ``mark_failed``/``mark_unsuitable``; other statuses
    are set directly.
    """
    header = {
        "PatientID": f"PID{next(_seq)}",
        "PatientName": "Doe^Jane",
        "AccessionNumber": f"A{next(_seq)}",
    } | header
    study_uid = header.pop("study_uid", None) or uid()
    study = queries.upsert_study(
        session=session,
        study_uid=study_uid,
        header=header,
        scanner_profile=scanner_profile,
        received_at=received_at,
    )
    if nodule is not None or embolism is not None or priority is not None or findings:
        queries.store_analysis(
            session=session,
            result=make_result(
                study_uid,
                scores={"nodule": nodule, "embolism": embolism, "priority": priority},
                findings=findings or [],
                pe_threshold=pe_threshold,
                nodule_threshold=nodule_threshold,
            ),
        )
    if status == "failed":
        queries.mark_failed(session=session, study_uid=study_uid, reason="model crashed")
    elif status == "unsuitable":
        queries.mark_unsuitable(session=session, study_uid=study_uid, reason="slice thickness 5 mm > 3 mm")
    elif status != "ready" or (nodule is None and embolism is None and priority is None and not findings):
        study = session.get(Study, study.id)
        study.status = status
        session.add(study)
        session.commit()
    session.refresh(study)
    return study


def make_finding(kind: str = "nodule", probability: float = 0.8, **overrides: Any) -> dict[str, Any]:
    """One finding shaped like ``triage analyze --json`` output."""
    finding = {
        "kind": kind,
        "probability": probability,
        "center_mm": [-80.5, 20.25, -150.0],
        "center_voxel": [40, 200, 120],
        "diameter_mm": 8.5 if kind == "nodule" else 4.0,
        "volume_ml": 0.32,
        "mean_hu": -20.0 if kind == "nodule" else 45.0,
        "texture": "solid" if kind == "nodule" else None,
        "lung_rads": "4A" if kind == "nodule" else None,
        "location": "RUL" if kind == "nodule" else "segmental",
        "mask_path": "results/mask.nii.gz",
        "heatmap_path": "results/heat.nii.gz",
    }
    return finding | overrides


def make_result(
    study_uid: str,
    *,
    scores: dict[str, float | None],
    findings: Sequence[dict[str, Any]] = (),
    pe_threshold: float | None = 0.5,
    nodule_threshold: float | None = 0.5,
    **fields: Any,
) -> CaseResult:
    """A pipeline ``CaseResult`` for ``study_uid`` with the given operating points (None: not stored)."""
    thresholds: dict[str, dict[str, float]] = {}
    if pe_threshold is not None:
        thresholds["embolism"] = {"report": 0.3, "critical": pe_threshold}
    if nodule_threshold is not None:
        thresholds["nodule"] = {"report": 0.25, "suspected": nodule_threshold}
    values: dict[str, Any] = {
        "series_uid": f"{study_uid}.1",
        "provider": "CPUExecutionProvider",
        "model_versions": {"nodule": "test-1"},
        "thresholds": thresholds,
    }
    return CaseResult(
        study_uid=study_uid, scores=scores, findings=[Finding.model_validate(f) for f in findings], **(values | fields)
    )


def make_reading(
    session: Session,
    study: Study,
    reader: str,
    *,
    seconds: float,
    ai_shown: bool = True,
    opened_at: datetime = T0,
    closed: bool = True,
) -> int:
    """A reading session of ``seconds`` active time (closed unless ``closed=False``)."""
    rid = queries.open_reading_session(
        session=session, study_id=study.id, reader=reader, ai_shown=ai_shown, opened_at=opened_at
    )
    if closed:
        queries.close_reading_session(
            session=session,
            reading_session_id=rid,
            active_seconds=seconds,
            closed_at=opened_at + timedelta(seconds=seconds),
        )
    return rid


def make_report(
    session: Session,
    study: Study,
    reader: str,
    *,
    nodule: bool = False,
    embolism: bool = False,
    signed_at: datetime | None = None,
) -> int:
    """Sign ``study`` with the given impression."""
    return queries.sign_report(
        session=session,
        study_id=study.id,
        reader=reader,
        nodule=nodule,
        embolism=embolism,
        signed_at=signed_at,
    )
