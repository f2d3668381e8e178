"""Analytics for the dashboard: plain lists of dicts, ready for a table or a Plotly chart.

Definitions (the tests check each against hand-computed numbers):

- **Reading time per case**: the sum of ``active_seconds`` of a reader's *closed* reading sessions on one
  study in one arm (``ai_shown`` true = "ai_shown", false = "ai_hidden"). The week of a case is the ISO
  week (UTC) of its first session. Figures: ``n`` cases, ``median_s``, ``mean_s``.
- **Turnaround**: arrival (``received_at``) to signature (``signed_at``) of signed studies, in minutes, by
  priority class: ``critical`` (critical flag), ``high`` (priority ≥ ``high_priority``), ``routine``
  (scored, below that) and ``unscored`` (no AI score: failed, unsuitable or never analysed).
- **AI performance** per study score against signed ``StudyReport``\\ s: the AI calls a study positive when
  its score is ≥ the operating point stored with its analysis (embolism: the PE critical point, the one that
  flagged it critical; nodule: the nodule card's ``suspected`` point), or a what-if threshold passed in.
  Studies without a score (or analysed before operating points were stored) are counted in ``unscored``.
  Sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), PPV = TP/(TP+FP), NPV = TN/(TN+FN); ``None`` when the
  denominator is 0.
- **AI false-negative rate** per kind, lesion level: reader-added findings / (AI findings confirmed by a
  reader + reader-added findings).
- **Scanner profiles**: per ``scanner_profile`` (``"unknown"`` when unset) the study counts by outcome
  and the embolism performance figures above.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import Finding, FindingVerdict, ReaderFinding, ReadingSession, Study, StudyReport
from db.types import epoch_week, seconds_between, table_of, week_label
from db.worklist import HIGH_PRIORITY
from inference.findings import KIND_NAMES, SCORE_KEYS

_S = table_of(Study)
_R = table_of(StudyReport)
_RS = table_of(ReadingSession)


def _summary(values: list[float], scale: float = 1.0, suffix: str = "s") -> dict[str, Any]:
    return {
        "n": len(values),
        f"median_{suffix}": round(statistics.median(values) / scale, 3) if values else None,
        f"mean_{suffix}": round(statistics.fmean(values) / scale, 3) if values else None,
    }


def _arm(ai_shown: Any) -> str:
    return "ai_shown" if ai_shown else "ai_hidden"


def _cases_query(since: datetime | None, until: datetime | None) -> sa.Select:
    first = sa.func.min(_RS.c.opened_at)
    query = (
        sa.select(
            _RS.c.reader.label("reader"),
            _RS.c.ai_shown.label("ai_shown"),
            epoch_week(first).label("week"),
            sa.func.sum(_RS.c.active_seconds).label("seconds"),
        )
        .where(_RS.c.closed_at.is_not(None), _RS.c.active_seconds.is_not(None))
        .group_by(_RS.c.study_id, _RS.c.reader, _RS.c.ai_shown)
    )
    if since is not None:
        query = query.where(_RS.c.opened_at >= since)
    if until is not None:
        query = query.where(_RS.c.opened_at < until)
    return query


def reading_cases(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[tuple[str, str, str, float]]:
    """Every reading case as ``(reader, arm, ISO week label, seconds)`` (see the module docstring)."""
    labels: dict[int, str] = {}
    cases = []
    for reader, shown, week, seconds in session.execute(_cases_query(since, until)):
        label = labels.get(week)
        if label is None:
            label = labels[week] = week_label(week)
        cases.append((reader, _arm(shown), label, float(seconds)))
    return cases


def _grouped(cases: Iterable[tuple[str, str, str, float]], key: Any) -> dict[tuple, list[float]]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for case in cases:
        groups[key(case)].append(case[3])
    return groups


def _reading_tables_python(cases: list[tuple[str, str, str, float]]) -> dict[str, list[dict[str, Any]]]:
    by_arm = _grouped(cases, lambda c: (c[1],))
    return {
        "reading_time_by_arm": [{"arm": arm, **_summary(by_arm.get((arm,), []))} for arm in ("ai_shown", "ai_hidden")],
        "reading_time_by_reader": [
            {"reader": r, "arm": a, **_summary(v)}
            for (r, a), v in sorted(_grouped(cases, lambda c: (c[0], c[1])).items())
        ],
        "reading_time_by_week": [
            {"week": w, "arm": a, **_summary(v)}
            for (w, a), v in sorted(_grouped(cases, lambda c: (c[2], c[1])).items())
        ],
    }


def _reading_tables_postgres(session: Session, cases: sa.Subquery) -> dict[str, list[dict[str, Any]]]:
    """The same tables with medians computed by PostgreSQL (``percentile_cont``, grouping sets)."""
    query = sa.select(
        cases.c.reader,
        cases.c.week,
        cases.c.ai_shown,
        sa.func.count(),
        sa.func.percentile_cont(0.5).within_group(cases.c.seconds),
        sa.func.avg(cases.c.seconds),
        sa.func.grouping(cases.c.reader),
        sa.func.grouping(cases.c.week),
    ).group_by(
        sa.func.grouping_sets(
            sa.tuple_(cases.c.ai_shown),
            sa.tuple_(cases.c.reader, cases.c.ai_shown),
            sa.tuple_(cases.c.week, cases.c.ai_shown),
        )
    )
    by_arm: dict[str, dict[str, Any]] = {}
    by_reader, by_week = [], []
    for reader, week, shown, n, median, mean, no_reader, no_week in session.execute(query):
        stats = {"n": int(n), "median_s": round(float(median), 3), "mean_s": round(float(mean), 3)}
        if not no_reader:
            by_reader.append({"reader": reader, "arm": _arm(shown), **stats})
        elif not no_week:
            by_week.append({"week": week_label(week), "arm": _arm(shown), **stats})
        else:
            by_arm[_arm(shown)] = {"arm": _arm(shown), **stats}
    empty = {"n": 0, "median_s": None, "mean_s": None}
    return {
        "reading_time_by_arm": [by_arm.get(a, {"arm": a, **empty}) for a in ("ai_shown", "ai_hidden")],
        "reading_time_by_reader": sorted(by_reader, key=lambda r: (r["reader"], r["arm"])),
        "reading_time_by_week": sorted(by_week, key=lambda r: (r["week"], r["arm"])),
    }


def reading_time_tables(
    *, session: Session, since: datetime | None = None, until: datetime | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Reading time per case by arm, by reader and arm, and by ISO week and arm, in one pass.

    PostgreSQL computes the medians itself; on SQLite (no median aggregate) the per-case totals are
    fetched and summarised in Python. Both give identical numbers.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _reading_tables_postgres(session, _cases_query(since, until).subquery("cases"))
    return _reading_tables_python(reading_cases(session=session, since=since, until=until))


def reading_time_by_arm(*, session: Session, **window: Any) -> list[dict[str, Any]]:
    """Reading time per case by arm: ``[{"arm", "n", "median_s", "mean_s"}]`` (both arms always listed)."""
    return reading_time_tables(session=session, **window)["reading_time_by_arm"]


def reading_time_by_reader(*, session: Session, **window: Any) -> list[dict[str, Any]]:
    """Reading time per case by reader and arm: ``[{"reader", "arm", "n", "median_s", "mean_s"}]``."""
    return reading_time_tables(session=session, **window)["reading_time_by_reader"]


def reading_time_by_week(*, session: Session, **window: Any) -> list[dict[str, Any]]:
    """Reading time per case by ISO week and arm: ``[{"week", "arm", "n", "median_s", "mean_s"}]``."""
    return reading_time_tables(session=session, **window)["reading_time_by_week"]


def _priority_class(high_priority: float) -> sa.ColumnElement[str]:
    return sa.case(
        (_S.c.critical, "critical"),
        (_S.c.priority.is_(None), "unscored"),
        (_S.c.priority >= high_priority, "high"),
        else_="routine",
    )


def turnaround_by_priority(*, session: Session, high_priority: float = HIGH_PRIORITY) -> list[dict[str, Any]]:
    """Arrival → signed, in minutes, per priority class: ``[{"priority_class", "n", "median_min",
    "mean_min"}]`` in the order critical, high, routine, unscored (classes without studies omitted)."""
    cls = _priority_class(high_priority).label("cls")
    seconds = seconds_between(_S.c.received_at, _S.c.signed_at)
    order = ("critical", "high", "routine", "unscored")
    signed = _S.c.signed_at.is_not(None)
    if session.get_bind().dialect.name == "postgresql":  # medians in the database
        stats = sa.select(
            cls, sa.func.count(), sa.func.percentile_cont(0.5).within_group(seconds), sa.func.avg(seconds)
        )
        rows = {
            c: {"n": int(n), "median_min": round(float(med) / 60, 3), "mean_min": round(float(mean) / 60, 3)}
            for c, n, med, mean in session.execute(stats.where(signed).group_by(cls))
        }
        return [{"priority_class": c, **rows[c]} for c in order if c in rows]
    groups: dict[str, list[float]] = defaultdict(list)
    for c, secs in session.execute(sa.select(cls, seconds).where(signed)):
        groups[c].append(float(secs))
    return [{"priority_class": c, **_summary(groups[c], scale=60.0, suffix="min")} for c in order if c in groups]


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _confusion(tp: int, fp: int, tn: int, fn: int) -> dict[str, Any]:
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


def _confusion_columns(score: sa.Column, truth: sa.Column, threshold: Any) -> list[Any]:
    """TP, FP, TN, FN and unscored counts; ``threshold`` is a number or a column (the stored operating
    point: a study without one counts as unscored)."""
    pos, neg = score >= threshold, score < threshold

    def count(*cond: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*cond), 1), else_=0)), 0)

    true, false = truth.is_(True), truth.is_(False)
    return [
        count(pos, true),
        count(pos, false),
        count(neg, false),
        count(neg, true),
        count(score.is_(None) if isinstance(threshold, float) else sa.or_(score.is_(None), threshold.is_(None))),
    ]


def _operating_point(key: str, override: float | None) -> Any:
    """The threshold of study score ``key``: ``override`` (a what-if), else the value stored with each study's
    analysis (``study.<key>_threshold``: the one that flagged it)."""
    return float(override) if override is not None else _S.c[f"{key}_threshold"]


def _stored_points(session: Session, key: str) -> float | list[float] | None:
    """The operating point(s) of ``key`` stored with the signed studies: one value, or every distinct one."""
    column = _S.c[f"{key}_threshold"]
    values = sorted(
        v
        for (v,) in session.execute(
            sa.select(column).distinct().select_from(_S.join(_R, _R.c.study_id == _S.c.id)).where(column.is_not(None))
        )
    )
    return values[0] if len(values) == 1 else (values or None)


def ai_performance(
    *, session: Session, nodule_threshold: float | None = None, embolism_threshold: float | None = None
) -> list[dict[str, Any]]:
    """Sensitivity, specificity, PPV and NPV of the AI per study score against signed reports, at the
    operating points stored with each analysis (or at the given what-if thresholds).

    Returns:
        ``[{"kind", "threshold", "n", "unscored", "tp", "fp", "tn", "fn", "sensitivity", "specificity",
        "ppv", "npv"}]`` for ``nodule`` and ``embolism`` (``inference.findings.SCORE_KEYS``); ``threshold`` is
        the operating point used (a list when the analyses used several).
    """
    overrides = {"nodule": nodule_threshold, "embolism": embolism_threshold}
    kinds = [(key, _S.c[f"{key}_score"], _R.c[key], _operating_point(key, overrides.get(key))) for key in SCORE_KEYS]
    columns = [col for _key, score, truth, point in kinds for col in _confusion_columns(score, truth, point)]
    row = session.execute(sa.select(*columns).select_from(_S.join(_R, _R.c.study_id == _S.c.id))).one()
    out = []
    for n, (key, _score, _truth, _point) in enumerate(kinds):
        tp, fp, tn, fn, unscored = (int(v) for v in row[5 * n : 5 * n + 5])
        given = overrides.get(key)
        threshold = float(given) if given is not None else _stored_points(session, key)
        out.append(
            {"kind": key, "threshold": threshold, "n": tp + fp + tn + fn, "unscored": unscored}
            | _confusion(tp, fp, tn, fn)
        )
    return out


def ai_false_negative_rate(*, session: Session) -> list[dict[str, Any]]:
    """Lesion-level AI false-negative rate per kind from reader-added findings.

    Returns:
        ``[{"kind", "ai_confirmed", "reader_added", "fn_rate", "studies_with_missed"}]``; an AI finding
        counts as confirmed once any reader confirmed it.
    """
    f, v, rf = table_of(Finding), table_of(FindingVerdict), table_of(ReaderFinding)
    confirmed = dict(
        session.execute(
            sa.select(f.c.kind, sa.func.count(sa.distinct(f.c.id)))
            .select_from(f.join(v, v.c.finding_id == f.c.id))
            .where(v.c.verdict == "confirmed")
            .group_by(f.c.kind)
        ).all()
    )
    added = {
        kind: (n, studies)
        for kind, n, studies in session.execute(
            sa.select(rf.c.kind, sa.func.count(), sa.func.count(sa.distinct(rf.c.study_id))).group_by(rf.c.kind)
        )
    }
    out = []
    for kind in KIND_NAMES:
        n_conf = int(confirmed.get(kind, 0))
        n_added, n_studies = (int(x) for x in added.get(kind, (0, 0)))
        out.append(
            {
                "kind": kind,
                "ai_confirmed": n_conf,
                "reader_added": n_added,
                "fn_rate": _ratio(n_added, n_conf + n_added),
                "studies_with_missed": n_studies,
            }
        )
    return out


def scanner_profile_breakdown(*, session: Session, embolism_threshold: float | None = None) -> list[dict[str, Any]]:
    """Per scanner profile: ``{"scanner_profile", "studies", "analysed", "failed", "unsuitable", "signed",
    "critical"}`` plus embolism ``tp/fp/tn/fn``, ``sensitivity``, ``specificity``, ``ppv``, ``npv`` (at the
    stored operating points, or at ``embolism_threshold``)."""
    threshold = _operating_point("embolism", embolism_threshold)
    profile = sa.func.coalesce(_S.c.scanner_profile, "unknown").label("profile")

    def count(cond: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    counts = sa.select(
        profile,
        sa.func.count(),
        count(_S.c.embolism_score.is_not(None) | _S.c.nodule_score.is_not(None)),
        count(_S.c.status == "failed"),
        count(_S.c.status == "unsuitable"),
        count(_S.c.status == "signed"),
        count(_S.c.critical),
    ).group_by(profile)
    perf = (
        sa.select(profile, *_confusion_columns(_S.c.embolism_score, _R.c.embolism, threshold))
        .select_from(_S.join(_R, _R.c.study_id == _S.c.id))
        .group_by(profile)
    )
    confusion = {row[0]: [int(x) for x in row[1:5]] for row in session.execute(perf)}
    out = []
    for name, studies, analysed, failed, unsuitable, signed, critical in session.execute(counts):
        out.append(
            {
                "scanner_profile": name,
                "studies": int(studies),
                "analysed": int(analysed),
                "failed": int(failed),
                "unsuitable": int(unsuitable),
                "signed": int(signed),
                "critical": int(critical),
            }
            | _confusion(*confusion.get(name, [0, 0, 0, 0]))
        )
    return sorted(out, key=lambda row: row["scanner_profile"])


def analytics_summary(
    *,
    session: Session,
    nodule_threshold: float | None = None,
    embolism_threshold: float | None = None,
    high_priority: float = HIGH_PRIORITY,
) -> dict[str, list[dict[str, Any]]]:
    """Every analytics table in one dict (one pass over the reading cases)."""
    return reading_time_tables(session=session) | {
        "turnaround_by_priority": turnaround_by_priority(session=session, high_priority=high_priority),
        "ai_performance": ai_performance(
            session=session, nodule_threshold=nodule_threshold, embolism_threshold=embolism_threshold
        ),
        "ai_false_negative_rate": ai_false_negative_rate(session=session),
        "scanner_profiles": scanner_profile_breakdown(session=session, embolism_threshold=embolism_threshold),
    }
