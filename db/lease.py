"""Exactly-once analysis: the worker's lease on a study, and the analysis version a reader sees.

A worker analyses a study only while it holds the study's lease (``study.lease_owner`` with an expiry that a
heartbeat pushes forward). ``acquire_lease`` is one conditional ``UPDATE`` (free, expired, or already ours),
so of two workers exactly one gets it; an expired lease is taken over (audited ``lease_taken_over``), a live
one never. The result is stored only by the lease holder (``finish_lease`` in the same transaction as the
result), which also records the fingerprint of the files analysed and bumps ``analysis_version``; an
identical re-send has the same fingerprint and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from db.models import AnalysisRun, AuditEvent, ReadingSession, Study
from db.types import as_utc, table_of, utcnow

_S = table_of(Study)
_RUN = table_of(AnalysisRun)
_RS = table_of(ReadingSession)
_AUDIT = table_of(AuditEvent)


class LeaseLost(RuntimeError):
    """This worker's lease on the study expired and was taken over: its result must not be stored."""


def acquire_lease(*, session: Session, study_uid: str, owner: str, ttl_s: float, now: datetime | None = None) -> bool:
    """Take the study's lease for ``ttl_s`` seconds if it is free, expired, or already ``owner``'s.

    Returns:
        Whether ``owner`` now holds the lease (False: another worker holds a live one, or no such study).
    """
    now = as_utc(now) or utcnow()
    row = session.execute(sa.select(_S.c.id, _S.c.lease_owner).where(_S.c.study_uid == study_uid)).first()
    if row is None:
        return False
    free = sa.or_(_S.c.lease_owner.is_(None), _S.c.lease_expires_at < now, _S.c.lease_owner == owner)
    moved = session.connection().execute(
        sa.update(_S)
        .where(_S.c.id == row.id, free)
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl_s))
    ).rowcount
    if moved and row.lease_owner not in (None, owner):
        session.execute(
            sa.insert(_AUDIT).values(
                at=now, actor="worker", action="lease_taken_over", study_id=row.id, detail={"from": row.lease_owner}
            )
        )
    session.commit()
    return bool(moved)


def renew_lease(*, session: Session, study_uid: str, owner: str, ttl_s: float) -> bool:
    """Heartbeat: push the expiry of ``owner``'s lease forward. False when the lease is no longer ours."""
    moved = session.connection().execute(
        sa.update(_S)
        .where(_S.c.study_uid == study_uid, _S.c.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=ttl_s))
    ).rowcount
    session.commit()
    return bool(moved)


def release_lease(*, session: Session, study_uid: str, owner: str) -> bool:
    """Give the lease back (no-op when it is not ``owner``'s any more)."""
    moved = session.connection().execute(
        sa.update(_S)
        .where(_S.c.study_uid == study_uid, _S.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    ).rowcount
    session.commit()
    return bool(moved)


def finish_lease(session: Session, study_id: int, owner: str | None) -> None:
    """Inside the caller's transaction: end ``owner``'s lease before its result is stored. No-op without an
    owner (direct calls, tests, the demo).

    Raises:
        LeaseLost: ``owner`` no longer holds the lease (it expired and another worker took it over); the
            transaction is rolled back.
    """
    if owner is None:
        return
    moved = session.connection().execute(
        sa.update(_S)
        .where(_S.c.id == study_id, _S.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    ).rowcount
    if not moved:
        session.rollback()
        raise LeaseLost(f"the lease on study {study_id} was taken over; result discarded")


def expired_leases(*, session: Session, now: datetime | None = None) -> list[str]:
    """UIDs of studies whose lease holder stopped heart-beating (killed worker)."""
    now = as_utc(now) or utcnow()
    rows = session.execute(
        sa.select(_S.c.study_uid).where(_S.c.lease_owner.is_not(None), _S.c.lease_expires_at < now)
    ).all()
    return [uid for (uid,) in rows]


def updated_since_opened(*, session: Session, reading_session_id: int) -> bool:
    """Whether a newer successful analysis of the study was stored after this reading session opened (a
    re-send with new instances): the reader sees "updated since you opened it"."""
    opened = session.execute(sa.select(_RS.c.study_id, _RS.c.opened_at).where(_RS.c.id == reading_session_id)).first()
    if opened is None:
        return False
    newer = session.execute(
        sa.select(sa.func.count())
        .select_from(_RUN)
        .where(_RUN.c.study_id == opened.study_id, _RUN.c.error.is_(None), _RUN.c.finished_at > opened.opened_at)
    ).scalar_one()
    return bool(newer)


def settle_unchanged(*, session: Session, study_uid: str) -> str | None:
    """A message found the study's files unchanged since its stored analysis: if a re-send raced with that
    analysis and left the study ``queued`` / ``analysing``, put back the state of the stored outcome (``ready``
    or ``unsuitable``). Returns the new status, or None when nothing changed."""
    row = session.execute(sa.select(_S.c.id, _S.c.status).where(_S.c.study_uid == study_uid)).first()
    if row is None or row.status not in ("queued", "analysing"):
        return None
    error = session.execute(
        sa.select(_RUN.c.error).where(_RUN.c.study_id == row.id).order_by(_RUN.c.id.desc()).limit(1)
    ).first()
    if error is None:
        return None
    status = "ready" if error.error is None else "unsuitable"
    session.execute(
        sa.update(_S).where(_S.c.id == row.id, _S.c.status.in_(("queued", "analysing"))).values(status=status)
    )
    session.commit()
    return status
