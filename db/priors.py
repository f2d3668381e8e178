"""Which prior a study is compared with (#16), and the stored comparisons.

``find_prior_study`` is the one answer the worker uses (``inference.priors.compare_with_db_prior``). Its
candidates are

* the analysed studies of our database (``ready``, ``in_review`` or ``signed``) of the same ``patient_id``
  with an earlier ``study_date`` (DICOM DA strings compare in date order), or, where either date is missing,
  received earlier: their saved case is compared;
* the prior links of the study (``study_prior``, written by ``inference.peers.priors.fetch_priors`` before the
  analysis: a peer's earlier CT kept under ``priors/``, or an earlier local study): their DICOM folder is
  analysed for the comparison.

The newest candidate is the one compared with (the standard reading comparison); on the same date an
analysed study of ours wins (its stored findings are the ones the reader saw). Patient IDs are only compared
in SQL, never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import AnalysisRun, Study, StudyPrior, StudyStatus
from db.types import table_of

_S = table_of(Study)
_R = table_of(AnalysisRun)
_P = table_of(StudyPrior)
ANALYSED = (StudyStatus.ready.value, StudyStatus.in_review.value, StudyStatus.signed.value)


@dataclass(frozen=True)
class PriorStudy:
    """The prior chosen for a study: its UID and both study dates (DICOM DA strings, or None).

    ``source`` is ``database`` for an analysed study of ours (compare its saved case), else the link's source
    (``local`` / ``peer:<name>``) with ``path``, the folder of the prior's series.
    """

    study_uid: str
    study_date: str | None
    current_date: str | None
    source: str = "database"
    path: str | None = None


def find_prior_study(*, session: Session, study_uid: str) -> PriorStudy | None:
    """The newest earlier study of the same patient: analysed in our database or linked as a prior; or None
    (no patient ID, no earlier study)."""
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
    analysed = None
    if row is not None:
        analysed = PriorStudy(study_uid=row.study_uid, study_date=row.study_date, current_date=cur.study_date)
    link = session.execute(
        sa.select(_P.c.prior_study_uid, _P.c.prior_study_date, _P.c.source, _P.c.path)
        .where(_P.c.study_id == cur.id, _P.c.path.is_not(None), _P.c.prior_study_uid != study_uid)
        .order_by(sa.func.coalesce(_P.c.prior_study_date, "").desc(), _P.c.id.desc())
        .limit(1)
    ).first()
    if link is None or (analysed is not None and link.prior_study_uid == analysed.study_uid):
        return analysed
    if analysed is not None and (link.prior_study_date or "") <= (analysed.study_date or ""):
        return analysed
    return PriorStudy(
        study_uid=link.prior_study_uid,
        study_date=link.prior_study_date,
        current_date=cur.study_date,
        source=link.source,
        path=link.path,
    )


def latest_comparison(*, session: Session, study_id: int) -> dict[str, Any] | None:
    """The comparison block of a study's latest analysis run (None when it was not compared)."""
    row = session.execute(
        sa.select(_R.c.comparison).where(_R.c.study_id == study_id).order_by(_R.c.id.desc()).limit(1)
    ).first()
    return None if row is None else row.comparison
