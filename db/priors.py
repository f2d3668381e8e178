"""Earlier studies of the same patient (the priors of a comparison, #16) and the stored comparisons.

A prior is an analysed study (``ready``, ``in_review`` or ``signed``) of the same ``patient_id`` with an
earlier ``study_date`` (DICOM DA strings compare in date order), or, where either date is missing, received
earlier. The newest such study is the one compared with: it is the standard reading comparison. Patient IDs
are only compared in SQL, never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import AnalysisRun, Study, StudyStatus

_S = Study.__table__
_R = AnalysisRun.__table__
ANALYSED = (StudyStatus.ready.value, StudyStatus.in_review.value, StudyStatus.signed.value)


@dataclass(frozen=True)
class PriorStudy:
    """The prior chosen for a study: its UID and both study dates (DICOM DA strings, or None)."""

    study_uid: str
    study_date: str | None
    current_date: str | None


def find_prior_study(*, session: Session, study_uid: str) -> PriorStudy | None:
    """The newest analysed earlier study of the same patient, or None (no patient ID, no earlier study)."""
    cur = session.execute(
        sa.select(_S.c.id, _S.c.patient_id, _S.c.study_date, _S.c.received_at).where(_S.c.study_uid == study_uid)
    ).first()
    if cur is None or not (cur.patient_id or "").strip():
        return None
    if cur.study_date:
        earlier = sa.or_(
            _S.c.study_date < cur.study_date,
            sa.and_(sa.or_(_S.c.study_date.is_(None), _S.c.study_date == ""), _S.c.received_at < cur.received_at),
        )
    else:
        earlier = _S.c.received_at < cur.received_at
    row = session.execute(
        sa.select(_S.c.study_uid, _S.c.study_date)
        .where(_S.c.patient_id == cur.patient_id, _S.c.id != cur.id, _S.c.status.in_(ANALYSED), earlier)
        .order_by(sa.func.coalesce(_S.c.study_date, "").desc(), _S.c.received_at.desc(), _S.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return PriorStudy(study_uid=row.study_uid, study_date=row.study_date, current_date=cur.study_date)


def latest_comparison(*, session: Session, study_id: int) -> dict[str, Any] | None:
    """The comparison block of a study's latest analysis run (None when it was not compared)."""
    row = session.execute(
        sa.select(_R.c.comparison).where(_R.c.study_id == study_id).order_by(_R.c.id.desc()).limit(1)
    ).first()
    return None if row is None else row.comparison
