"""The ranked worklist, computed in SQL.

Order (``rank`` in the returned items):

1. **critical**: the embolism score reached the critical threshold when the study was analysed (the
   stored ``Study.critical`` flag); by priority score (high first), then arrival (oldest first).
2. **attention / overdue**: studies the AI could not vouch for (``failed``, ``unsuitable``) and studies
   that have waited longer than ``max_wait_minutes`` since arrival, whatever their score; oldest first.
3. **routine**: everything else by priority score (high first, no score counts as 0), then arrival.

**AI-hidden reading arm** (``db.arms``; the recorded arm of an opened study, else the study's keyed draw
against ``ai_hidden_fraction``; a study the AI flags critical is never drawn into it, so critical alerts are
never withheld): the order must not reveal what the arm hides, so its AI priority counts as 0 (it sorts
with the unscored studies, by arrival). Needs attention (failed / unsuitable: the AI did not assess it) and
overdue (waiting time) still apply. Its item carries ``ai_hidden=True`` and no AI output (scores, priority
and the critical flag are blanked).

Rule 2 is the starvation cap: once a study has waited ``max_wait_minutes`` only critical studies and
studies that have waited even longer rank above it, so an AI-negative study is never pushed back
indefinitely by a stream of higher-scored arrivals. Failed and unsuitable studies carry
``needs_attention=True`` and their reason; they never look like negatives.

Finding filter (``finding=``, in SQL like the status and arrival filters): ``pe`` (the critical flag: the
embolism score reached the PE operating point stored with the analysis), ``nodule`` (nodule score at the
stored ``nodule_threshold``, the nodule card's ``suspected`` point), ``attention``
(failed / unsuitable), ``none`` (analysed, not needing attention, no finding in the latest analysis run).
The AI-based filters (``pe``, ``nodule``, ``none``) leave out studies in the AI-hidden reading arm, so a
filter cannot reveal what the arm hides.

Ties are broken by study id, so pages are stable. Each rank is one query that the indexes on
``(received_at, id)`` and ``(status, critical, priority, received_at)`` serve without sorting the whole
table; a page needs at most ``offset + limit`` rows from each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.arms import ai_hidden_sql
from db.models import ATTENTION_STATUSES, OPEN_STATUSES, AnalysisRun, Finding, Study
from db.types import as_utc, table_of, utcnow

_S = table_of(Study)
_F = table_of(Finding)
_R = table_of(AnalysisRun)
RANK_NAMES = {0: "critical", 1: "attention", 2: "routine"}
#: Values of ``worklist(finding=...)``.
FINDING_FILTERS = ("pe", "nodule", "attention", "none")
#: Priority from which a routine study is badged "high" (and counts as high priority in the analytics).
HIGH_PRIORITY = 0.5
_COLUMNS = (
    "id", "study_uid", "accession", "patient_id", "patient_name", "description", "modality",
    "manufacturer", "scanner_model", "scanner_profile", "status", "received_at", "analysed_at",
    "nodule_score", "embolism_score", "priority", "critical", "attention_reason", "claimed_by", "claimed_at",
    "nodule_threshold", "embolism_threshold", "delivery_error",
)  # fmt: skip


@dataclass(frozen=True)
class WorklistItem:
    """One row of the worklist (plain data, safe to cache or serialise)."""

    id: int
    study_uid: str
    accession: str | None
    patient_id: str | None
    patient_name: str | None
    description: str | None
    modality: str | None
    manufacturer: str | None
    scanner_model: str | None
    scanner_profile: str | None
    status: str
    received_at: datetime
    analysed_at: datetime | None
    nodule_score: float | None
    embolism_score: float | None
    priority: float | None
    critical: bool
    attention_reason: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    nodule_threshold: float | None  # the operating points stored with the latest analysis
    embolism_threshold: float | None
    rank: str
    overdue: bool
    needs_attention: bool
    waited_minutes: float
    ai_hidden: bool = False
    #: "results not delivered: <reason>" when the SEG/SR could not be sent to a PACS peer (``db.peers``).
    delivery_error: str | None = None

    def to_dict(self, *, identifiers: bool = True) -> dict[str, Any]:
        """JSON-friendly dict (ISO timestamps); ``identifiers=False`` drops patient ID and name."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        if not identifiers:
            data.pop("patient_id")
            data.pop("patient_name")
        return data


def _settings_defaults(max_wait_minutes: float | None) -> float:
    if max_wait_minutes is None:
        from inference.config import get_settings

        max_wait_minutes = get_settings().max_wait_minutes
    return float(max_wait_minutes)


def _hidden_fraction(fraction: float | None) -> float:
    if fraction is None:
        from inference.config import get_settings

        fraction = get_settings().ai_hidden_fraction
    return float(fraction)


#: What a hidden-arm item carries instead of the AI output.
_WITHHELD = {"nodule_score": None, "embolism_score": None, "priority": None, "critical": False}


def _filter(statuses: Sequence[str] | None) -> sa.ColumnElement[bool]:
    wanted = tuple(statuses) if statuses else OPEN_STATUSES
    return _S.c.status.in_(wanted)


def _finding_filter(finding: str, hidden: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """The SQL condition of a finding filter (see the module docstring).

    Raises:
        ValueError: ``finding`` is not one of ``FINDING_FILTERS``.
    """
    attention = _S.c.status.in_(ATTENTION_STATUSES)
    if finding == "attention":
        return attention
    ai_shown = sa.not_(hidden)
    if finding == "pe":
        return sa.and_(_S.c.critical, ai_shown)
    if finding == "nodule":
        return sa.and_(_S.c.nodule_score >= _S.c.nodule_threshold, ai_shown)
    if finding == "none":
        latest_run = sa.select(sa.func.max(_R.c.id)).where(_R.c.study_id == _S.c.id).correlate(_S).scalar_subquery()
        findings = sa.exists().where(_F.c.study_id == _S.c.id, _F.c.run_id == latest_run)
        return sa.and_(_S.c.analysed_at.is_not(None), sa.not_(attention), ~findings, ai_shown)
    raise ValueError(f"finding filter must be one of {FINDING_FILTERS}, got {finding!r}")


def worklist(
    *,
    session: Session,
    statuses: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    max_wait_minutes: float | None = None,
    now: datetime | None = None,
    received_from: datetime | None = None,
    received_before: datetime | None = None,
    finding: str | None = None,
    ai_hidden_fraction: float | None = None,
) -> list[WorklistItem]:
    """One page of the ranked worklist (see the module docstring for the order).

    Args:
        session: database session.
        statuses: study states to include (default: every state but ``signed``).
        limit: page size.
        offset: rows to skip.
        max_wait_minutes: starvation cap (default: ``Settings.max_wait_minutes``).
        now: the reference time for waiting (default: now; tests pass a fixed time).
        received_from: only studies received at or after this time (filtered in SQL).
        received_before: only studies received before this time.
        finding: one of ``FINDING_FILTERS`` (see the module docstring), or None for every study.
        ai_hidden_fraction: share of never-opened studies in the AI-hidden arm (default:
            ``Settings.ai_hidden_fraction``); studies without a stored draw count as shown.

    Returns:
        The items of the page, best first.

    Raises:
        ValueError: unknown ``finding``.
    """
    now = as_utc(now) or utcnow()
    cutoff = now - timedelta(minutes=_settings_defaults(max_wait_minutes))
    attention = _S.c.status.in_(ATTENTION_STATUSES)
    overdue = _S.c.received_at < cutoff
    hidden = ai_hidden_sql(_hidden_fraction(ai_hidden_fraction))
    critical = sa.and_(_S.c.critical, sa.not_(hidden))
    score = sa.case((hidden, 0.0), else_=sa.func.coalesce(_S.c.priority, 0.0)).desc()
    # One query per rank, each cut at offset + limit rows; the ranks are disjoint and already ordered, so
    # the page is a slice of their concatenation.
    tiers = (
        (0, [critical], [score, _S.c.received_at, _S.c.id]),
        (1, [sa.not_(critical), sa.or_(attention, overdue)], [_S.c.received_at, _S.c.id]),
        (2, [sa.not_(critical), sa.not_(attention), sa.not_(overdue)], [score, _S.c.received_at, _S.c.id]),
    )
    window = []
    if received_from is not None:
        window.append(_S.c.received_at >= as_utc(received_from))
    if received_before is not None:
        window.append(_S.c.received_at < as_utc(received_before))
    if finding is not None:
        window.append(_finding_filter(finding, hidden))
    needed = offset + limit
    ranked: list[tuple[int, Any]] = []
    for rank, where, order in tiers:
        query = (
            sa.select(*(_S.c[name] for name in _COLUMNS), overdue.label("overdue"), hidden.label("ai_hidden"))
            .where(_filter(statuses), *where, *window)
            .order_by(*order)
            .limit(needed - len(ranked))
        )
        ranked.extend((rank, row) for row in session.execute(query))
        if len(ranked) >= needed:
            break
    items = []
    for rank, row in ranked[offset:needed]:
        data = row._asdict()
        received = as_utc(data["received_at"]) or now
        values = {name: data[name] for name in _COLUMNS} | (_WITHHELD if data["ai_hidden"] else {})
        items.append(
            WorklistItem(
                **values,
                rank=RANK_NAMES[rank],
                overdue=bool(data["overdue"]),
                needs_attention=data["status"] in ATTENTION_STATUSES,
                waited_minutes=round((now - received).total_seconds() / 60.0, 1),
                ai_hidden=bool(data["ai_hidden"]),
            )
        )
    return items


def count_worklist(*, session: Session, statuses: Sequence[str] | None = None) -> int:
    """How many studies the worklist holds for ``statuses`` (for pagination)."""
    return session.execute(sa.select(sa.func.count()).select_from(_S).where(_filter(statuses))).scalar_one()


def worklist_counts(*, session: Session) -> dict[str, int]:
    """Number of studies per status (every status present, zero included)."""
    from db.models import StudyStatus

    counts = {s.value: 0 for s in StudyStatus}
    for status, n in session.execute(sa.select(_S.c.status, sa.func.count()).group_by(_S.c.status)):
        counts[status] = n
    return counts
