"""Read side of the reading room: claiming a case, reading sessions, verdicts, added findings, sign-off,
users and the audit trail.

Claims use one atomic conditional ``UPDATE ... WHERE claimed_by IS NULL OR claimed_by = :reader`` and the
row count it reports, so two readers opening a study at the same moment cannot both win, on SQLite
(writers are serialised) and on PostgreSQL (the second UPDATE waits for the first and re-checks the
condition). Every function commits its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from db.models import (
    ROLES,
    VERDICTS,
    AuditEvent,
    Finding,
    FindingVerdict,
    ReaderFinding,
    ReadingSession,
    Study,
    StudyReport,
    StudyStatus,
    User,
)
from db.types import as_utc, table_of, utcnow

log = logging.getLogger(__name__)
_STUDY = table_of(Study)
_SIGNED = StudyStatus.signed.value


class ReviewConflict(RuntimeError):
    """The study is held by another reader, or already signed."""


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of ``claim_study``: ``ok`` if ``reader`` now holds the study, else who does (or why not)."""

    ok: bool
    study_id: int
    holder: str | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_event(
    *,
    session: Session,
    actor: str,
    action: str,
    study_id: int | sa.ScalarSelect | None = None,
    detail: dict[str, Any] | None = None,
    commit: bool = True,
) -> None:
    """Append an audit event (``detail`` must not contain patient identifiers)."""
    session.execute(
        sa.insert(table_of(AuditEvent)).values(
            at=utcnow(), actor=actor, action=action, study_id=study_id, detail=detail
        )
    )
    if commit:
        session.commit()


def list_events(*, session: Session, study_id: int | None = None, limit: int = 200) -> list[AuditEvent]:
    """The newest audit events, optionally of one study."""
    query = select(AuditEvent)
    if study_id is not None:
        query = query.where(AuditEvent.study_id == study_id)
    return list(session.exec(query.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit)))


def claim_study(*, session: Session, study_id: int, reader: str, take_over: bool = False) -> ClaimResult:
    """Claim a study for review; exactly one of several simultaneous claimants wins.

    Args:
        session: database session (its pending work is committed).
        study_id: the study.
        reader: username of the claimant; claiming again is a no-op that succeeds.
        take_over: take the study from whoever holds it (an admin freeing a forgotten claim).

    Returns:
        ``ClaimResult(ok=True, holder=reader)`` on success; otherwise ``ok=False`` with the current
        ``holder`` and a ``reason`` (``"claimed"``, ``"signed"`` or ``"not found"``). A ``ready`` study
        becomes ``in_review``.
    """
    condition = [_STUDY.c.id == study_id, _STUDY.c.status != _SIGNED]
    if not take_over:
        condition.append(sa.or_(_STUDY.c.claimed_by.is_(None), _STUDY.c.claimed_by == reader))
    ready = StudyStatus.ready.value
    won = session.connection().execute(
        sa.update(_STUDY)
        .where(*condition)
        .values(
            claimed_by=reader,
            claimed_at=utcnow(),
            status=sa.case((_STUDY.c.status == ready, StudyStatus.in_review.value), else_=_STUDY.c.status),
        )
    ).rowcount
    if won == 1:
        record_event(session=session, actor=reader, action="claim", study_id=study_id, commit=False)
        session.commit()
        log.info("study id %d claimed by %s", study_id, reader)
        return ClaimResult(ok=True, study_id=study_id, holder=reader)
    session.rollback()
    row = session.execute(sa.select(_STUDY.c.claimed_by, _STUDY.c.status).where(_STUDY.c.id == study_id)).first()
    session.commit()
    if row is None:
        return ClaimResult(ok=False, study_id=study_id, holder=None, reason="not found")
    reason = "signed" if row.status == _SIGNED else "claimed"
    return ClaimResult(ok=False, study_id=study_id, holder=row.claimed_by, reason=reason)


def touch_claim(*, session: Session, study_id: int, reader: str) -> bool:
    """The holder is still at work: ``claimed_at`` becomes now, so the claim's age is its idle time (a claim
    idle longer than ``Settings.claim_stale_minutes`` may be taken over). False if ``reader`` does not hold it."""
    touched = session.connection().execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.claimed_by == reader, _STUDY.c.status != _SIGNED)
        .values(claimed_at=utcnow())
    ).rowcount
    session.commit()
    return bool(touched)


def save_reading_progress(*, session: Session, reading_session_id: int, active_seconds: float) -> bool:
    """Store the active seconds so far of an open reading session (a reload resumes from them); False if
    the session is closed."""
    table = table_of(ReadingSession)
    saved = session.connection().execute(
        sa.update(table)
        .where(table.c.id == reading_session_id, table.c.closed_at.is_(None))
        .values(active_seconds=max(0.0, float(active_seconds)))
    ).rowcount
    session.commit()
    return bool(saved)


def unclosed_reading_session(*, session: Session, study_id: int, reader: str) -> ReadingSession | None:
    """The reader's newest reading session on the study that was never closed (a reloaded or closed tab)."""
    query = (
        select(ReadingSession)
        .where(
            ReadingSession.study_id == study_id,
            ReadingSession.reader == reader,
            ReadingSession.closed_at.is_(None),  # type: ignore[union-attr]
        )
        .order_by(col(ReadingSession.opened_at).desc(), col(ReadingSession.id).desc())
        .limit(1)
    )
    return session.exec(query).first()


def release_study(*, session: Session, study_id: int, reader: str) -> bool:
    """Give a claimed study back (only its holder can); ``in_review`` returns to ``ready``."""
    released = session.connection().execute(
        sa.update(_STUDY)
        .where(_STUDY.c.id == study_id, _STUDY.c.claimed_by == reader)
        .values(
            claimed_by=None,
            claimed_at=None,
            status=sa.case(
                (_STUDY.c.status == StudyStatus.in_review.value, StudyStatus.ready.value),
                else_=_STUDY.c.status,
            ),
        )
    ).rowcount
    if released:
        record_event(session=session, actor=reader, action="release", study_id=study_id, commit=False)
    session.commit()
    return bool(released)


def open_reading_session(
    *, session: Session, study_id: int, reader: str, ai_shown: bool, opened_at: datetime | None = None
) -> int:
    """Start timing a reader's work on a study; ``ai_shown`` is the arm. Returns the session id."""
    table = table_of(ReadingSession)
    rid = session.execute(
        sa.insert(table)
        .values(study_id=study_id, reader=reader, ai_shown=ai_shown, opened_at=as_utc(opened_at) or utcnow())
        .returning(table.c.id)
    ).scalar_one()
    record_event(
        session=session, actor=reader, action="open", study_id=study_id, detail={"ai_shown": ai_shown}, commit=False
    )
    session.commit()
    return rid


def close_reading_session(
    *, session: Session, reading_session_id: int, active_seconds: float, closed_at: datetime | None = None
) -> bool:
    """Stop timing (``active_seconds``: time the case was in front of the reader); False if already closed."""
    if active_seconds < 0:
        raise ValueError("active_seconds must not be negative")
    table = table_of(ReadingSession)
    closed = session.connection().execute(
        sa.update(table)
        .where(table.c.id == reading_session_id, table.c.closed_at.is_(None))
        .values(closed_at=as_utc(closed_at) or utcnow(), active_seconds=float(active_seconds))
    ).rowcount
    session.commit()
    return bool(closed)


def set_verdict(
    *,
    session: Session,
    finding_id: int,
    reader: str,
    verdict: str,
    reading_session_id: int | None = None,
) -> None:
    """Record (or change) a reader's verdict on an AI finding: ``confirmed`` or ``rejected``."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    table = table_of(FindingVerdict)
    values = {"verdict": verdict, "at": utcnow(), "reading_session_id": reading_session_id}
    where = (table.c.finding_id == finding_id, table.c.reader == reader)
    if not session.connection().execute(sa.update(table).where(*where).values(**values)).rowcount:
        try:
            with session.begin_nested():
                session.execute(sa.insert(table).values(finding_id=finding_id, reader=reader, **values))
        except IntegrityError:  # a concurrent first verdict by the same reader: last write wins
            session.execute(sa.update(table).where(*where).values(**values))
    findings = table_of(Finding)
    study_id = sa.select(findings.c.study_id).where(findings.c.id == finding_id).scalar_subquery()
    record_event(
        session=session,
        actor=reader,
        action="verdict",
        study_id=study_id,
        detail={"finding_id": finding_id, "verdict": verdict},
        commit=False,
    )
    session.commit()


def add_reader_finding(
    *,
    session: Session,
    study_id: int,
    reader: str,
    kind: str,
    center_mm: Sequence[float] | None = None,
    center_voxel: Sequence[int] | None = None,
    diameter_mm: float | None = None,
    note: str | None = None,
    reading_session_id: int | None = None,
) -> int:
    """Record a finding the AI missed (LPS mm and/or voxel (k, j, i) position). Returns its id."""
    x, y, z = center_mm if center_mm is not None else (None, None, None)
    k, j, i = center_voxel if center_voxel is not None else (None, None, None)
    table = table_of(ReaderFinding)
    fid = session.execute(
        sa.insert(table)
        .values(
            study_id=study_id,
            reader=reader,
            kind=kind,
            center_x_mm=x,
            center_y_mm=y,
            center_z_mm=z,
            center_k=k,
            center_j=j,
            center_i=i,
            diameter_mm=diameter_mm,
            note=note,
            reading_session_id=reading_session_id,
            created_at=utcnow(),
        )
        .returning(table.c.id)
    ).scalar_one()
    record_event(
        session=session, actor=reader, action="add_finding", study_id=study_id, detail={"kind": kind}, commit=False
    )
    session.commit()
    return fid


def list_reader_findings(*, session: Session, study_id: int) -> list[ReaderFinding]:
    """Findings readers added to a study."""
    return list(session.exec(select(ReaderFinding).where(ReaderFinding.study_id == study_id)))


def sign_report(
    *,
    session: Session,
    study_id: int,
    reader: str,
    nodule: bool,
    embolism: bool,
    lung_rads: str | None = None,
    impression: str | None = None,
    signed_at: datetime | None = None,
) -> int:
    """Sign the final impression; the study becomes ``signed`` and its claim is released.

    Raises:
        ReviewConflict: another reader holds the study, or it is already signed.
    """
    when = as_utc(signed_at) or utcnow()
    moved = session.connection().execute(
        sa.update(_STUDY)
        .where(
            _STUDY.c.id == study_id,
            _STUDY.c.status != _SIGNED,
            sa.or_(_STUDY.c.claimed_by.is_(None), _STUDY.c.claimed_by == reader),
        )
        .values(status=_SIGNED, signed_at=when, claimed_by=None, claimed_at=None)
    ).rowcount
    if not moved:
        session.rollback()
        row = session.execute(sa.select(_STUDY.c.claimed_by, _STUDY.c.status).where(_STUDY.c.id == study_id)).first()
        session.commit()
        if row is None:
            raise ReviewConflict(f"study id {study_id} does not exist")
        if row.status == _SIGNED:
            raise ReviewConflict(f"study id {study_id} is already signed")
        raise ReviewConflict(f"study id {study_id} is being read by {row.claimed_by}")
    table = table_of(StudyReport)
    report_id = session.execute(
        sa.insert(table)
        .values(
            study_id=study_id,
            nodule=nodule,
            embolism=embolism,
            lung_rads=lung_rads,
            impression=impression,
            signed_by=reader,
            signed_at=when,
        )
        .returning(table.c.id)
    ).scalar_one()
    record_event(session=session, actor=reader, action="sign", study_id=study_id, commit=False)
    session.commit()
    log.info("study id %d signed by %s", study_id, reader)
    return report_id


def get_report(*, session: Session, study_id: int) -> StudyReport | None:
    """The signed report of a study, if any."""
    return session.exec(select(StudyReport).where(StudyReport.study_id == study_id)).first()


def create_user(*, session: Session, username: str, password_hash: str, role: str = "reader") -> User:
    """Create an account (the caller hashes the password).

    Raises:
        ValueError: unknown role, or the username is taken.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    user = User(username=username, password_hash=password_hash, role=role)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ValueError(f"user {username!r} already exists") from None
    session.refresh(user)
    return user


def get_user(*, session: Session, username: str) -> User | None:
    """The account with that username."""
    return session.exec(select(User).where(User.username == username)).first()


def list_users(*, session: Session) -> list[User]:
    """Every account, by username."""
    return list(session.exec(select(User).order_by(User.username)))


def set_user_password_hash(*, session: Session, username: str, password_hash: str) -> bool:
    """Replace an account's password hash and revoke its sign-in sessions (audited ``password_reset``);
    False when there is no such account."""
    from db.models import AuthSession

    table = table_of(User)
    changed = session.connection().execute(
        sa.update(table).where(table.c.username == username).values(password_hash=password_hash)
    ).rowcount
    if changed:
        auth = table_of(AuthSession)
        session.execute(sa.update(auth).where(auth.c.username == username).values(revoked=True))
        record_event(session=session, actor=username, action="password_reset", commit=False)
    session.commit()
    return bool(changed)


def set_user_active(*, session: Session, username: str, active: bool) -> bool:
    """Enable or disable an account (accounts are never deleted: their readings refer to them)."""
    table = table_of(User)
    query = sa.update(table).where(table.c.username == username).values(active=active)
    changed = session.connection().execute(query).rowcount
    session.commit()
    return bool(changed)
