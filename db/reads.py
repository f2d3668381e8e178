"""Read queries of the dashboard pages that are not part of the worklist, review or analytics modules.

Every function takes a keyword-only ``session`` and returns plain data; the dashboard (``dashboard/data.py``)
caches them and never writes SQL itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import AnalysisRun, Finding, FindingVerdict, ReaderFinding, ReadingSession, Study, StudyReport
from db.types import table_of

_F = table_of(Finding)
_RUN = table_of(AnalysisRun)
_RS = table_of(ReadingSession)
_REP = table_of(StudyReport)
_RF = table_of(ReaderFinding)
_FV = table_of(FindingVerdict)
_S = table_of(Study)


def top_findings(*, session: Session, study_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The top AI finding of each study's latest analysis run (kind, probability, size, location, change):
    a growing or new nodule (comparison with a prior, #16) first, else the most probable finding."""
    if not study_ids:
        return {}
    latest = (
        sa.select(_RUN.c.study_id, sa.func.max(_RUN.c.id).label("run_id"))
        .where(_RUN.c.study_id.in_(list(study_ids)))
        .group_by(_RUN.c.study_id)
        .subquery()
    )
    changed = sa.case((_F.c.change.in_(("growing", "new")), 0), else_=1)
    query = (
        sa.select(_F.c.study_id, _F.c.kind, _F.c.probability, _F.c.diameter_mm, _F.c.location, _F.c.change)
        .join(latest, sa.and_(_F.c.study_id == latest.c.study_id, _F.c.run_id == latest.c.run_id))
        .order_by(_F.c.study_id, changed, _F.c.probability.desc(), _F.c.id)
    )
    out: dict[int, dict[str, Any]] = {}
    for row in session.execute(query):
        out.setdefault(row.study_id, row._asdict())
    return out


def study_arm(*, session: Session, study_id: int) -> bool | None:
    """The arm a study was assigned when first opened (``ai_shown`` of its first reading session), or None."""
    return session.execute(
        sa.select(_RS.c.ai_shown).where(_RS.c.study_id == study_id).order_by(_RS.c.opened_at, _RS.c.id).limit(1)
    ).scalar()


def reader_verdicts(*, session: Session, reader: str, finding_ids: Sequence[int]) -> dict[int, str]:
    """This reader's verdicts on the given findings."""
    if not finding_ids:
        return {}
    wanted = sa.and_(_FV.c.reader == reader, _FV.c.finding_id.in_(list(finding_ids)))
    rows = session.execute(sa.select(_FV.c.finding_id, _FV.c.verdict).where(wanted))
    return {fid: verdict for fid, verdict in rows}


def analytics_version(*, session: Session) -> tuple[str, ...]:
    """A cheap fingerprint of everything the analytics page reads: row counts, newest ids and newest
    timestamps of reading sessions, reports, added findings, verdicts and analyses. It changes when a
    reading is opened or closed, a study is analysed or signed, a verdict or a finding is added."""
    f = sa.func
    queries = (
        sa.select(f.count(), f.max(_RS.c.id), f.count(_RS.c.closed_at), f.max(_RS.c.closed_at)),
        sa.select(f.count(), f.max(_REP.c.id)),
        sa.select(f.count(), f.max(_RF.c.id)),
        sa.select(f.count(), f.max(_FV.c.at)),
        sa.select(f.count(_S.c.analysed_at), f.max(_S.c.analysed_at)),
    )
    return tuple(str(v) for q in queries for v in session.execute(q).one())


def score_outcomes(*, session: Session) -> list[dict[str, Any]]:
    """Per signed study: AI scores, the operating points stored with its analysis (the ones that flagged it),
    the signed truth (for calibration and performance), plus the scanner profile."""
    query = sa.select(
        _S.c.nodule_score, _S.c.embolism_score, _S.c.nodule_threshold, _S.c.embolism_threshold,
        _REP.c.nodule, _REP.c.embolism, _S.c.scanner_profile,
    ).select_from(_S.join(_REP, _REP.c.study_id == _S.c.id))
    result = session.execute(query)
    keys = list(result.keys())
    return [dict(zip(keys, row)) for row in result.all()]


def simulated_counts(*, session: Session, prefix: str) -> dict[str, int]:
    """How many reading sessions and signed reports come from simulated readers (usernames ``prefix*``)."""
    like = prefix + "%"
    return {
        "readings": session.execute(sa.select(sa.func.count()).where(_RS.c.reader.like(like))).scalar_one(),
        "readings_total": session.execute(sa.select(sa.func.count()).select_from(_RS)).scalar_one(),
        "reports": session.execute(sa.select(sa.func.count()).where(_REP.c.signed_by.like(like))).scalar_one(),
        "reports_total": session.execute(sa.select(sa.func.count()).select_from(_REP)).scalar_one(),
    }


def analysed_studies(*, session: Session, limit: int) -> list[dict[str, Any]]:
    """The newest analysed studies: ``id``, ``study_uid``, ``scanner_profile``, ``manufacturer``."""
    rows = session.execute(
        sa.select(_S.c.id, _S.c.study_uid, _S.c.scanner_profile, _S.c.manufacturer)
        .where(_S.c.analysed_at.is_not(None))
        .order_by(_S.c.id.desc())
        .limit(limit)
    )
    return [row._asdict() for row in rows]
