"""PACS peers in the database: the result-delivery queue with its retry state, and prior-study links.

Delivery life cycle (``Delivery.status``): ``pending`` (due at ``next_attempt_at``) → ``sending`` (claimed by
one worker with a conditional UPDATE, so two workers never send the same delivery) → ``delivered``; a failed
try goes back to ``pending`` with the next due time, or to ``failed`` after the last try, which sets
``Study.delivery_error`` to "results not delivered: <reason>" (shown on the worklist). A ``sending`` row
older than ``stale_after_s`` (its worker died) is due again. Nothing is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from db.models import AnalysisRun, Delivery, Study, StudyPrior
from db.review import record_event
from db.types import as_utc, table_of, utcnow

_D = table_of(Delivery)
_S = table_of(Study)
NOT_DELIVERED = "results not delivered"


def _study(session: Session, study_uid: str) -> Study:
    study = session.exec(select(Study).where(Study.study_uid == study_uid)).first()
    if study is None:
        raise LookupError(f"study {study_uid} is not in the database")
    return study


def create_deliveries(
    *,
    session: Session,
    study_uid: str,
    targets: list[tuple[str, str]],
    paths: list[str],
    max_attempts: int,
    run_id: int | None = None,
) -> list[int]:
    """One pending delivery per ``(peer, method)`` of ``paths`` (relative to the data directory), due now.

    ``run_id`` defaults to the study's latest analysis run; a delivery that already exists for that run, peer
    and method is kept as it is (idempotent). Returns the ids of the deliveries of this run to these targets.
    """
    study = _study(session, study_uid)
    if run_id is None:
        run_id = session.execute(
            sa.select(sa.func.max(table_of(AnalysisRun).c.id)).where(table_of(AnalysisRun).c.study_id == study.id)
        ).scalar()
    ids = []
    now = utcnow()
    for peer, method in targets:
        existing = session.execute(
            sa.select(_D.c.id).where(_D.c.run_id == run_id, _D.c.peer == peer, _D.c.method == method)
        ).scalar()
        if existing is None:
            existing = session.execute(
                sa.insert(_D)
                .values(
                    study_id=study.id,
                    run_id=run_id,
                    peer=peer,
                    method=method,
                    paths=list(paths),
                    status="pending",
                    attempts=0,
                    max_attempts=max_attempts,
                    next_attempt_at=now,
                    created_at=now,
                )
                .returning(_D.c.id)
            ).scalar_one()
        ids.append(int(existing))
    session.commit()
    return ids


def claim_due_deliveries(
    *, session: Session, now: datetime | None = None, limit: int = 20, stale_after_s: float = 900.0
) -> list[Delivery]:
    """Claim deliveries that are due (``pending`` and due, or ``sending`` but stale) for this caller.

    Each is claimed by one conditional UPDATE (``status`` and ``last_attempt_at`` as read), so of two workers
    only one gets a given delivery. Returns the claimed rows (now ``sending``).
    """
    now = as_utc(now) or utcnow()
    stale = now - timedelta(seconds=stale_after_s)
    due = sa.or_(
        sa.and_(_D.c.status == "pending", sa.or_(_D.c.next_attempt_at.is_(None), _D.c.next_attempt_at <= now)),
        sa.and_(_D.c.status == "sending", _D.c.last_attempt_at <= stale),
    )
    rows = session.execute(
        sa.select(_D.c.id, _D.c.status, _D.c.last_attempt_at)
        .where(due)
        .order_by(_D.c.next_attempt_at, _D.c.id)
        .limit(limit)
    ).all()
    claimed = []
    for row_id, status, last in rows:
        cond = [_D.c.id == row_id, _D.c.status == status]
        cond.append(_D.c.last_attempt_at.is_(None) if last is None else _D.c.last_attempt_at == last)
        claim = sa.update(_D).where(*cond).values(status="sending", last_attempt_at=now)
        if session.connection().execute(claim).rowcount:
            claimed.append(row_id)
    session.commit()
    found = [session.get(Delivery, i, populate_existing=True) for i in claimed]
    return [d for d in found if d is not None]


def record_delivery_attempt(
    *, session: Session, delivery_id: int, error: str | None, next_attempt_at: datetime | None = None
) -> Delivery:
    """Store the outcome of one try of a claimed delivery.

    ``error`` None: delivered (and the study's ``delivery_error`` is cleared when nothing else failed). With an
    error: ``pending`` again, due at ``next_attempt_at``, or ``failed`` when that is None (the last try), which
    sets the study's ``delivery_error``. Each outcome is also an audit event.
    """
    d = session.get(Delivery, delivery_id, populate_existing=True)  # rows change by core UPDATEs too
    if d is None:
        raise LookupError(f"delivery {delivery_id} not found")
    d.attempts += 1
    d.last_attempt_at = utcnow()
    if error is None:
        d.status, d.delivered_at, d.last_error, d.next_attempt_at = "delivered", utcnow(), None, None
    else:
        d.last_error = error[:2000]
        d.status = "pending" if next_attempt_at is not None else "failed"
        d.next_attempt_at = as_utc(next_attempt_at)
    session.add(d)
    session.flush()
    if d.status == "failed":
        note = f"{NOT_DELIVERED}: {d.peer} ({d.method}) after {d.attempts} tries: {d.last_error}"
        session.execute(sa.update(_S).where(_S.c.id == d.study_id).values(delivery_error=note[:2000]))
    elif d.status == "delivered":
        others = session.execute(
            sa.select(sa.func.count()).where(_D.c.study_id == d.study_id, _D.c.status == "failed")
        ).scalar()
        if not others:
            session.execute(sa.update(_S).where(_S.c.id == d.study_id).values(delivery_error=None))
    if d.status in ("delivered", "failed"):
        action = "results_delivered" if d.status == "delivered" else "results_not_delivered"
        detail: dict[str, Any] = {"peer": d.peer, "method": d.method, "attempts": d.attempts}
        if d.last_error:
            detail["error"] = d.last_error[:300]
        record_event(session=session, actor="worker", action=action, study_id=d.study_id, detail=detail, commit=False)
    session.commit()
    session.refresh(d)
    return d


def list_deliveries(*, session: Session, study_uid: str | None = None, status: str | None = None) -> list[Delivery]:
    """Deliveries, newest first, optionally of one study and/or in one state."""
    query = select(Delivery).order_by(Delivery.id.desc())  # type: ignore[union-attr]
    if study_uid is not None:
        query = query.where(Delivery.study_id == _study(session, study_uid).id)
    if status is not None:
        query = query.where(Delivery.status == status)
    return list(session.exec(query).all())


def retry_failed_deliveries(*, session: Session, study_uid: str | None = None) -> int:
    """Put ``failed`` deliveries back to ``pending`` (due now, tries counted afresh). Returns how many."""
    cond = [_D.c.status == "failed"]
    if study_uid is not None:
        cond.append(_D.c.study_id == _study(session, study_uid).id)
    n = session.connection().execute(
        sa.update(_D).where(*cond).values(status="pending", attempts=0, next_attempt_at=utcnow())
    ).rowcount
    session.commit()
    return int(n or 0)


# --- priors ------------------------------------------------------------------------------------------------
def link_prior(
    *,
    session: Session,
    study_uid: str,
    prior_study_uid: str,
    source: str,
    path: str | None,
    prior_series_uid: str | None = None,
    prior_study_date: str | None = None,
) -> StudyPrior:
    """Record (or update) that ``prior_study_uid`` is an earlier study of the same patient as ``study_uid``."""
    study = _study(session, study_uid)
    prior_local = session.exec(select(Study.id).where(Study.study_uid == prior_study_uid)).first()
    link = session.exec(
        select(StudyPrior).where(StudyPrior.study_id == study.id, StudyPrior.prior_study_uid == prior_study_uid)
    ).first()
    link = link or StudyPrior(study_id=study.id, prior_study_uid=prior_study_uid, source=source)
    link.source, link.path = source, path
    link.prior_series_uid = prior_series_uid or link.prior_series_uid
    link.prior_study_date = prior_study_date or link.prior_study_date
    link.prior_study_id = prior_local
    session.add(link)
    session.commit()
    session.refresh(link)
    return link


def get_priors(*, session: Session, study_uid: str) -> list[StudyPrior]:
    """Prior-study links of a study, most recent prior first (by study date, then when linked)."""
    study = _study(session, study_uid)
    query = (
        select(StudyPrior)
        .where(StudyPrior.study_id == study.id)
        .order_by(sa.func.coalesce(StudyPrior.prior_study_date, "").desc(), StudyPrior.id.desc())  # type: ignore[union-attr]
    )
    return list(session.exec(query).all())


def earlier_studies(*, session: Session, study_uid: str) -> list[Study]:
    """Studies in our database of the same patient (``patient_id``) dated before this one, newest first.

    Without study dates, "before" falls back to arrival time. Failed and unsuitable studies are left out.
    """
    study = _study(session, study_uid)
    if not study.patient_id:
        return []
    before: sa.ColumnElement[bool]
    if study.study_date:
        before = sa.and_(col(Study.study_date).is_not(None), col(Study.study_date) < study.study_date)
    else:
        before = col(Study.received_at) < study.received_at
    query = (
        select(Study)
        .where(
            Study.patient_id == study.patient_id,
            Study.id != study.id,
            before,
            Study.status.not_in(("failed", "unsuitable")),  # type: ignore[attr-defined]
        )
        .order_by(sa.func.coalesce(Study.study_date, "").desc(), Study.received_at.desc())  # type: ignore[attr-defined]
    )
    return list(session.exec(query).all())
