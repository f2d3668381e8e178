"""Worklist order, the starvation cap, needs-attention studies, filters and paging (both engines)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlmodel import Session

from db import queries
from tests.db.factories import T0, make_finding, make_result, make_study, make_user

NOW = T0 + timedelta(hours=10)


def _minutes_ago(minutes: float):
    return NOW - timedelta(minutes=minutes)


def test_order_critical_then_priority_then_arrival(session: Session) -> None:
    """Test that critical studies come first, then higher priority, then older arrivals."""
    low_old = make_study(session, received_at=_minutes_ago(50), nodule=0.1, embolism=0.05)
    high_new = make_study(session, received_at=_minutes_ago(5), nodule=0.9, embolism=0.1)
    mid_a = make_study(session, received_at=_minutes_ago(40), nodule=0.4, embolism=0.1)
    mid_b = make_study(session, received_at=_minutes_ago(30), nodule=0.4, embolism=0.1)
    pe_new = make_study(session, received_at=_minutes_ago(1), nodule=0.1, embolism=0.6)
    pe_strong = make_study(session, received_at=_minutes_ago(2), nodule=0.1, embolism=0.95)

    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120)
    assert [i.id for i in items] == [pe_strong.id, pe_new.id, high_new.id, mid_a.id, mid_b.id, low_old.id]
    assert [i.rank for i in items[:3]] == ["critical", "critical", "routine"]
    assert items[0].critical and not items[2].critical
    assert not any(i.overdue or i.needs_attention for i in items)
    assert items[-1].waited_minutes == 50.0


def test_starvation_cap_promotes_overdue_study(session: Session) -> None:
    """Test that an AI-negative study past the maximum wait moves above higher-scored newer studies,
    oldest first, but stays below critical ones; before the cap it ranks last."""
    negative = make_study(session, received_at=_minutes_ago(130), nodule=0.01, embolism=0.01)
    older_negative = make_study(session, received_at=_minutes_ago(200), nodule=0.02, embolism=0.0)
    suspicious = make_study(session, received_at=_minutes_ago(10), nodule=0.95, embolism=0.2)
    critical = make_study(session, received_at=_minutes_ago(3), embolism=0.7, nodule=0.0)

    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120)
    assert [i.id for i in items] == [critical.id, older_negative.id, negative.id, suspicious.id]
    assert [i.overdue for i in items] == [False, True, True, False]
    assert items[1].rank == "attention"

    # With a longer cap nobody is overdue and the negatives fall back to score order.
    items = queries.worklist(session=session, now=NOW, max_wait_minutes=240)
    assert [i.id for i in items] == [critical.id, suspicious.id, older_negative.id, negative.id]

    # The cap comes from the settings by default.
    later = queries.worklist(session=session, now=NOW + timedelta(days=1))
    assert [i.id for i in later][:2] == [critical.id, older_negative.id]


def test_failed_and_unsuitable_need_attention_not_negative(session: Session) -> None:
    """Test that failed / unsuitable studies are flagged with their reason and rank above routine ones."""
    routine = make_study(session, received_at=_minutes_ago(60), nodule=0.8, embolism=0.3)
    failed = make_study(session, received_at=_minutes_ago(5), status="failed")
    unsuitable = make_study(session, received_at=_minutes_ago(20), status="unsuitable")
    critical = make_study(session, received_at=_minutes_ago(1), embolism=0.9)

    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120)
    assert [i.id for i in items] == [critical.id, unsuitable.id, failed.id, routine.id]
    by_id = {i.id: i for i in items}
    assert by_id[failed.id].needs_attention and by_id[failed.id].attention_reason == "model crashed"
    assert by_id[unsuitable.id].needs_attention and "slice thickness" in by_id[unsuitable.id].attention_reason
    for item in (by_id[failed.id], by_id[unsuitable.id]):
        assert item.rank == "attention"
        assert item.nodule_score is None and item.embolism_score is None and not item.critical
    assert not by_id[routine.id].needs_attention


def test_failed_after_success_clears_scores(session: Session) -> None:
    """Test that a re-analysis failure does not leave old scores that look like a result."""
    study = make_study(session, received_at=_minutes_ago(5), nodule=0.01, embolism=0.01)
    queries.mark_failed(session=session, study_uid=study.study_uid, reason="GPU out of memory")
    (item,) = queries.worklist(session=session, now=NOW)
    assert item.status == "failed" and item.needs_attention and item.priority is None
    assert item.attention_reason == "GPU out of memory"


def test_status_filter_default_excludes_signed(session: Session) -> None:
    """Test the status filter: signed studies are hidden by default and can be asked for."""
    queued = make_study(session, status="queued")
    ready = make_study(session, nodule=0.3, embolism=0.1)
    signed = make_study(session, status="signed")

    assert {i.id for i in queries.worklist(session=session, now=NOW)} == {queued.id, ready.id}
    assert [i.id for i in queries.worklist(session=session, statuses=["signed"], now=NOW)] == [signed.id]
    assert queries.count_worklist(session=session) == 2
    assert queries.count_worklist(session=session, statuses=["queued", "signed"]) == 2
    counts = queries.worklist_counts(session=session)
    assert counts["queued"] == counts["ready"] == counts["signed"] == 1 and counts["failed"] == 0


def test_unscored_studies_rank_as_zero_priority(session: Session) -> None:
    """Test that a study without a score sorts after scored ones (no NULLS FIRST surprises)."""
    unscored = make_study(session, received_at=_minutes_ago(30), status="queued")
    scored = make_study(session, received_at=_minutes_ago(10), nodule=0.2, embolism=0.1)
    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120)
    assert [i.id for i in items] == [scored.id, unscored.id]


def _reference_order(studies, max_wait: float) -> list[int]:
    """The documented order, computed in Python from the study rows."""

    def key(st):
        if st.critical:
            return (0, -(st.priority or 0.0), st.received_at, st.id)
        if st.status in ("failed", "unsuitable") or NOW - st.received_at > timedelta(minutes=max_wait):
            return (1, 0.0, st.received_at, st.id)
        return (2, -(st.priority or 0.0), st.received_at, st.id)

    return [st.id for st in sorted((st for st in studies if st.status != "signed"), key=key)]


def test_order_and_pages_match_reference_on_random_mix(session: Session) -> None:
    """Test that the SQL ranking equals the documented rules on a random mix of every kind of study,
    and that limit/offset pages (crossing rank boundaries) concatenate to it without gaps or repeats."""
    rnd = random.Random(4)
    studies = []
    for _ in range(40):
        roll = rnd.random()
        when = _minutes_ago(rnd.choice([1, 30, 90, 119, 121, 200, 400, 30]))
        if roll < 0.15:
            studies.append(make_study(session, received_at=when, status=rnd.choice(["failed", "unsuitable"])))
        elif roll < 0.25:
            studies.append(make_study(session, received_at=when, status=rnd.choice(["queued", "signed"])))
        else:
            pe = rnd.choice([0.05, 0.3, 0.5, 0.8])
            studies.append(make_study(session, received_at=when, nodule=rnd.choice([0.1, 0.4, 0.9]), embolism=pe))
    expected = _reference_order(studies, 120)
    full = [i.id for i in queries.worklist(session=session, now=NOW, max_wait_minutes=120, limit=100)]
    assert full == expected
    for size in (3, 7):
        pages = [
            i.id
            for offset in range(0, len(expected), size)
            for i in queries.worklist(session=session, now=NOW, max_wait_minutes=120, limit=size, offset=offset)
        ]
        assert pages == expected
    assert queries.worklist(session=session, now=NOW, offset=len(expected)) == []


def test_item_serialisation_and_privacy(session: Session) -> None:
    """Test that items serialise to JSON-friendly dicts and can leave patient identifiers out."""
    make_study(session, nodule=0.3, embolism=0.1, PatientName="Secret^Name", PatientID="PID-77")
    (item,) = queries.worklist(session=session, now=NOW)
    assert item.received_at.tzinfo is not None and item.received_at == T0
    full = item.to_dict()
    assert full["patient_name"] == "Secret^Name" and full["received_at"].startswith("2026-01-05T08:00:00")
    redacted = item.to_dict(identifiers=False)
    assert "patient_name" not in redacted and "patient_id" not in redacted


def test_arrival_window_is_filtered_in_sql_across_ranks(session: Session) -> None:
    """Test that received_from/received_before keep only studies that arrived in the window, whatever their rank."""
    old_critical = make_study(session, received_at=T0 - timedelta(days=40), embolism=0.9)
    old_overdue = make_study(session, received_at=T0 - timedelta(days=35), nodule=0.1)
    recent = [make_study(session, received_at=T0 - timedelta(days=d), nodule=0.2 + d / 100) for d in (1, 2, 3)]
    window = {"received_from": T0 - timedelta(days=7), "received_before": T0}
    got = queries.worklist(session=session, now=NOW, limit=2, **window)
    assert [i.id for i in got] == [recent[2].id, recent[1].id]  # priority order, the old ranks left out
    everything = {i.id for i in queries.worklist(session=session, now=NOW, limit=50)}
    assert {old_critical.id, old_overdue.id} <= everything


def test_finding_filter_runs_in_sql_and_spares_the_ai_hidden_arm(session: Session) -> None:
    """Test the finding filters (PE, nodule, attention, no AI finding of the latest run) across ranks and
    pages, and that AI-based filters leave out studies in the AI-hidden arm."""
    make_user(session, "alice")
    pe = make_study(session, embolism=0.9, nodule=0.1, findings=[make_finding("embolism", 0.9)])
    nodules = [make_study(session, nodule=0.6 + k / 100, findings=[make_finding("nodule", 0.7)]) for k in range(3)]
    clean = make_study(session, nodule=0.1, embolism=0.1)
    redone = make_study(session, nodule=0.7, findings=[make_finding("nodule", 0.7)])
    queries.store_analysis(  # a newer run without findings: "no AI finding" looks at the latest run
        session=session, result=make_result(redone.study_uid, scores={"nodule": 0.2})
    )
    failed = make_study(session, status="failed")
    unread = make_study(session)  # not analysed yet
    hidden = make_study(session, nodule=0.95, embolism=0.8, findings=[make_finding("nodule", 0.95)])
    queries.open_reading_session(session=session, study_id=hidden.id, reader="alice", ai_shown=False)
    shown = make_study(session, nodule=0.9, findings=[make_finding("nodule", 0.9)])
    queries.open_reading_session(session=session, study_id=shown.id, reader="alice", ai_shown=True)

    def ids(finding: str, **kw) -> list[int]:
        return [i.id for i in queries.worklist(session=session, now=NOW, finding=finding, **kw)]

    assert ids("pe") == [pe.id]  # the hidden-arm study has a critical score but is left out
    assert set(ids("nodule")) == {n.id for n in nodules} | {shown.id}
    assert ids("nodule", limit=2, offset=2) == ids("nodule")[2:4]  # pages of the filtered list
    assert ids("attention") == [failed.id]
    assert set(ids("none")) == {clean.id, redone.id}
    assert unread.id not in ids("none") and hidden.id not in ids("none")
    low_pe = make_study(session, embolism=0.4)  # below the operating point stored at analysis: not critical
    low_point = make_study(session, embolism=0.4, pe_threshold=0.3)  # analysed at 0.3: critical
    assert set(ids("pe")) == {pe.id, low_point.id} and low_pe.id not in ids("pe")
    strict = make_study(session, nodule=0.7, nodule_threshold=0.8)  # nodule point stored at 0.8: not suspected
    assert strict.id not in ids("nodule")
    with pytest.raises(ValueError, match="finding filter"):
        ids("tumour")
