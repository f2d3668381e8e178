"""Analytics against numbers computed by hand on a small factory-built data set (both engines).

Data set (thresholds 0.5; times relative to T0 = Monday 2026-01-05 08:00 UTC):

reading cases (closed sessions summed per study, reader and arm):
    R1 alice shown   60 + 30 = 90  (W02)      R2 alice hidden 120 (W02)
    R3 bob   shown   40       (W03)           R4 bob   hidden 200 (W03)
    R5 bob   shown   50       (W03)           R7 alice hidden 100 (Mon 2025-12-29 → 2026-W01)
    an unclosed alice session on R1 is ignored.

signed studies (nodule, PE score → report nodule, PE; minutes to sign; profile):
    A 0.8, 0.9 → yes, yes  30 siemens (critical)   B 0.7, 0.1 → yes, no  60 siemens (high)
    C 0.6, 0.2 → no,  yes 120 siemens (high)       D 0.1, 0.05 → yes, no 240 ge (routine)
    E 0.2, 0.6 → no,  no   10 ge (critical)        F failed    → yes, no 300 unknown (unscored)
    U unsuitable, unsigned (unknown); R1-R7 profile philips, unscored, unsigned.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session

from db import queries
from tests.db.factories import T0, make_finding, make_reading, make_report, make_study, make_user


@pytest.fixture
def dataset(session: Session) -> Session:
    make_user(session, "alice")
    make_user(session, "bob")
    reads = {n: make_study(session, scanner_profile="philips") for n in (1, 2, 3, 4, 5, 7)}
    day = timedelta(days=1)
    make_reading(session, reads[1], "alice", seconds=60, ai_shown=True, opened_at=T0)
    make_reading(session, reads[1], "alice", seconds=30, ai_shown=True, opened_at=T0 + timedelta(hours=1))
    make_reading(session, reads[1], "alice", seconds=999, ai_shown=True, opened_at=T0, closed=False)
    make_reading(session, reads[2], "alice", seconds=120, ai_shown=False, opened_at=T0 + day)
    make_reading(session, reads[3], "bob", seconds=40, ai_shown=True, opened_at=T0 + 7 * day)
    make_reading(session, reads[4], "bob", seconds=200, ai_shown=False, opened_at=T0 + 7 * day)
    make_reading(session, reads[5], "bob", seconds=50, ai_shown=True, opened_at=T0 + 8 * day)
    make_reading(
        session,
        reads[7],
        "alice",
        seconds=100,
        ai_shown=False,
        opened_at=datetime(2025, 12, 29, 10, tzinfo=timezone.utc),
    )

    def signed(nod, pe, truth_nod, truth_pe, minutes, profile, findings=(), status="ready"):
        study = make_study(
            session, nodule=nod, embolism=pe, scanner_profile=profile, findings=list(findings), status=status
        )
        make_report(
            session,
            study,
            "alice",
            nodule=truth_nod,
            embolism=truth_pe,
            signed_at=T0 + timedelta(minutes=minutes),
        )
        return study

    a = signed(0.8, 0.9, True, True, 30, "siemens", [make_finding("nodule", 0.8), make_finding("embolism", 0.9)])
    b = signed(0.7, 0.1, True, False, 60, "siemens", [make_finding("nodule", 0.7)])
    c = signed(0.6, 0.2, False, True, 120, "siemens", [make_finding("nodule", 0.6)])
    d = signed(0.1, 0.05, True, False, 240, "ge")
    e = signed(0.2, 0.6, False, False, 10, "ge", [make_finding("embolism", 0.6)])
    f = signed(None, None, True, False, 300, None, status="failed")
    make_study(session, status="unsuitable")

    def finding(study, kind):
        return next(x.id for x in queries.get_findings(session=session, study_id=study.id) if x.kind == kind)

    verdicts = [
        (finding(a, "nodule"), "alice", "confirmed"),
        (finding(a, "embolism"), "alice", "confirmed"),
        (finding(a, "embolism"), "bob", "confirmed"),
        (finding(b, "nodule"), "bob", "confirmed"),
        (finding(b, "nodule"), "alice", "rejected"),
        (finding(c, "nodule"), "alice", "confirmed"),
        (finding(c, "nodule"), "alice", "rejected"),  # changed her mind: the latest verdict wins
        (finding(e, "embolism"), "bob", "rejected"),
    ]
    for finding_id, reader, verdict in verdicts:
        queries.set_verdict(session=session, finding_id=finding_id, reader=reader, verdict=verdict)
    for study, reader, kind in (
        (d, "alice", "nodule"),
        (f, "bob", "nodule"),
        (c, "alice", "embolism"),
        (c, "bob", "embolism"),
    ):
        queries.add_reader_finding(
            session=session,
            study_id=study.id,
            reader=reader,
            kind=kind,
            center_mm=(1.0, 2.0, 3.0),
            diameter_mm=5.0,
        )
    return session


def test_reading_time_by_arm(dataset: Session) -> None:
    """Test n, median and mean reading time per case for each arm."""
    assert queries.reading_time_by_arm(session=dataset) == [
        {"arm": "ai_shown", "n": 3, "median_s": 50.0, "mean_s": 60.0},
        {"arm": "ai_hidden", "n": 3, "median_s": 120.0, "mean_s": 140.0},
    ]


def test_reading_time_by_reader(dataset: Session) -> None:
    """Test reading time per case per reader and arm."""
    assert queries.reading_time_by_reader(session=dataset) == [
        {"reader": "alice", "arm": "ai_hidden", "n": 2, "median_s": 110.0, "mean_s": 110.0},
        {"reader": "alice", "arm": "ai_shown", "n": 1, "median_s": 90.0, "mean_s": 90.0},
        {"reader": "bob", "arm": "ai_hidden", "n": 1, "median_s": 200.0, "mean_s": 200.0},
        {"reader": "bob", "arm": "ai_shown", "n": 2, "median_s": 45.0, "mean_s": 45.0},
    ]


def test_reading_time_by_iso_week(dataset: Session) -> None:
    """Test reading time per ISO week (2025-12-29 belongs to 2026-W01)."""
    assert queries.reading_time_by_week(session=dataset) == [
        {"week": "2026-W01", "arm": "ai_hidden", "n": 1, "median_s": 100.0, "mean_s": 100.0},
        {"week": "2026-W02", "arm": "ai_hidden", "n": 1, "median_s": 120.0, "mean_s": 120.0},
        {"week": "2026-W02", "arm": "ai_shown", "n": 1, "median_s": 90.0, "mean_s": 90.0},
        {"week": "2026-W03", "arm": "ai_hidden", "n": 1, "median_s": 200.0, "mean_s": 200.0},
        {"week": "2026-W03", "arm": "ai_shown", "n": 2, "median_s": 45.0, "mean_s": 45.0},
    ]
    since = queries.reading_time_by_arm(session=dataset, since=T0 + timedelta(days=7))
    assert [(r["arm"], r["n"]) for r in since] == [("ai_shown", 2), ("ai_hidden", 1)]


def test_turnaround_by_priority_class(dataset: Session) -> None:
    """Test arrival → signed minutes per priority class."""
    assert queries.turnaround_by_priority(session=dataset) == [
        {"priority_class": "critical", "n": 2, "median_min": 20.0, "mean_min": 20.0},
        {"priority_class": "high", "n": 2, "median_min": 90.0, "mean_min": 90.0},
        {"priority_class": "routine", "n": 1, "median_min": 240.0, "mean_min": 240.0},
        {"priority_class": "unscored", "n": 1, "median_min": 300.0, "mean_min": 300.0},
    ]


def test_ai_performance_against_reports(dataset: Session) -> None:
    """Test sensitivity, specificity, PPV and NPV per kind at the decision thresholds."""
    nodule, embolism = queries.ai_performance(session=dataset, nodule_threshold=0.5, embolism_threshold=0.5)
    assert nodule == {
        "kind": "nodule", "threshold": 0.5, "n": 5, "unscored": 1, "tp": 2, "fp": 1, "tn": 1, "fn": 1,
        "sensitivity": 0.6667, "specificity": 0.5, "ppv": 0.6667, "npv": 0.5,
    }  # fmt: skip
    assert embolism == {
        "kind": "embolism", "threshold": 0.5, "n": 5, "unscored": 1, "tp": 1, "fp": 1, "tn": 2, "fn": 1,
        "sensitivity": 0.5, "specificity": 0.6667, "ppv": 0.5, "npv": 0.6667,
    }  # fmt: skip
    # A stricter embolism threshold turns E's 0.6 into a true negative.
    strict = queries.ai_performance(session=dataset, embolism_threshold=0.7)[1]
    assert (strict["tp"], strict["fp"], strict["tn"], strict["fn"]) == (1, 0, 3, 1)


def test_ai_false_negative_rate(dataset: Session) -> None:
    """Test the lesion-level false-negative rate from reader-added findings."""
    assert queries.ai_false_negative_rate(session=dataset) == [
        {"kind": "nodule", "ai_confirmed": 2, "reader_added": 2, "fn_rate": 0.5, "studies_with_missed": 2},
        {"kind": "mass", "ai_confirmed": 0, "reader_added": 0, "fn_rate": None, "studies_with_missed": 0},
        {
            "kind": "embolism",
            "ai_confirmed": 1,
            "reader_added": 2,
            "fn_rate": 0.6667,
            "studies_with_missed": 1,
        },
    ]


def test_scanner_profile_breakdown(dataset: Session) -> None:
    """Test per-profile study counts and embolism performance."""
    rows = {r["scanner_profile"]: r for r in queries.scanner_profile_breakdown(session=dataset, embolism_threshold=0.5)}
    assert list(rows) == ["ge", "philips", "siemens", "unknown"]
    assert rows["siemens"] == {
        "scanner_profile": "siemens", "studies": 3, "analysed": 3, "failed": 0, "unsuitable": 0, "signed": 3,
        "critical": 1, "tp": 1, "fp": 0, "tn": 1, "fn": 1, "sensitivity": 0.5, "specificity": 1.0, "ppv": 1.0,
        "npv": 0.5,
    }  # fmt: skip
    assert (rows["ge"]["tp"], rows["ge"]["fp"], rows["ge"]["tn"], rows["ge"]["fn"]) == (0, 1, 1, 0)
    assert rows["ge"]["sensitivity"] is None and rows["ge"]["ppv"] == 0.0 and rows["ge"]["npv"] == 1.0
    assert (rows["ge"]["studies"], rows["ge"]["critical"], rows["ge"]["signed"]) == (2, 1, 2)
    assert (rows["unknown"]["studies"], rows["unknown"]["unsuitable"], rows["unknown"]["analysed"]) == (
        2,
        1,
        0,
    )
    assert rows["unknown"]["signed"] == 1 and rows["unknown"]["sensitivity"] is None
    assert (rows["philips"]["studies"], rows["philips"]["analysed"], rows["philips"]["signed"]) == (6, 0, 0)


def test_summary_matches_the_single_queries(dataset: Session) -> None:
    """Test that analytics_summary returns the same tables as the individual functions."""
    summary = queries.analytics_summary(session=dataset, embolism_threshold=0.5)
    assert summary["reading_time_by_arm"] == queries.reading_time_by_arm(session=dataset)
    assert summary["reading_time_by_week"] == queries.reading_time_by_week(session=dataset)
    assert summary["reading_time_by_reader"] == queries.reading_time_by_reader(session=dataset)
    assert summary["ai_performance"] == queries.ai_performance(session=dataset, embolism_threshold=0.5)
    assert summary["scanner_profiles"] == queries.scanner_profile_breakdown(session=dataset, embolism_threshold=0.5)


def test_empty_database_gives_empty_figures(session: Session) -> None:
    """Test that analytics on an empty database return zero counts and None ratios, not errors."""
    assert queries.reading_time_by_arm(session=session)[0] == {
        "arm": "ai_shown", "n": 0, "median_s": None, "mean_s": None,
    }  # fmt: skip
    assert queries.turnaround_by_priority(session=session) == []
    assert queries.ai_performance(session=session, embolism_threshold=0.5)[0]["sensitivity"] is None
    assert queries.ai_false_negative_rate(session=session)[0]["fn_rate"] is None
    assert queries.scanner_profile_breakdown(session=session, embolism_threshold=0.5) == []
