"""Claiming a study for review: one winner among simultaneous readers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from db import queries
from db.models import FindingVerdict, ReadingSession, Study
from tests.db.factories import make_study, make_user

READERS = ["alice", "bob", "carol", "dave"]


@pytest.fixture
def readers(session: Session) -> list[str]:
    for name in READERS:
        make_user(session, name)
    return READERS


def _race(engine: Engine, study_id: int, names: list[str]) -> list[queries.ClaimResult]:
    """Every reader claims ``study_id`` at the same instant, each on its own connection and thread."""
    barrier = threading.Barrier(len(names))

    def claim(name: str) -> queries.ClaimResult:
        with Session(engine) as own:
            own.execute(sa.select(1))  # connect before the barrier so the UPDATEs really overlap
            barrier.wait()
            return queries.claim_study(session=own, study_id=study_id, reader=name)

    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(claim, names))


def test_concurrent_claims_have_exactly_one_winner(engine: Engine, session: Session, readers: list[str]) -> None:
    """Test that simultaneous claims by several readers leave exactly one holder, whom the others see."""
    for _ in range(8):
        study = make_study(session, nodule=0.4, embolism=0.1)
        results = _race(engine, study.id, readers)
        winners = [r for r in results if r.ok]
        assert len(winners) == 1, results
        holder = winners[0].holder
        assert all(r.holder == holder and r.reason == "claimed" for r in results if not r.ok)
        session.expire_all()
        stored = session.get(Study, study.id)
        assert stored.claimed_by == holder and stored.status == "in_review"
        claims = [e for e in queries.list_events(session=session, study_id=study.id) if e.action == "claim"]
        assert [e.actor for e in claims] == [holder]


def test_claim_waits_for_a_competitor_in_flight(engine: Engine, session: Session, readers: list[str]) -> None:
    """Test that a claim issued while another reader's claim is uncommitted sees that reader afterwards
    (no lost update): the competitor's transaction holds the row until it commits."""
    study = make_study(session, nodule=0.4, embolism=0.1)
    table = Study.__table__
    competitor = Session(engine)
    competitor.execute(
        sa.update(table)
        .where(table.c.id == study.id, table.c.claimed_by.is_(None))
        .values(claimed_by="alice", status="in_review")
    )
    result: list[queries.ClaimResult] = []
    thread = threading.Thread(
        target=lambda: result.append(queries.claim_study(session=Session(engine), study_id=study.id, reader="bob"))
    )
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive(), "bob's claim must wait while alice's transaction holds the row"
    competitor.commit()
    competitor.close()
    thread.join(timeout=30)
    assert result == [queries.ClaimResult(ok=False, study_id=study.id, holder="alice", reason="claimed")]


def test_reclaim_release_take_over_and_sign(session: Session, readers: list[str]) -> None:
    """Test claim idempotence, release, admin take-over, and that signing needs the claim."""
    study = make_study(session, nodule=0.4, embolism=0.1)
    assert queries.claim_study(session=session, study_id=study.id, reader="alice").ok
    assert queries.claim_study(session=session, study_id=study.id, reader="alice").ok
    assert not queries.release_study(session=session, study_id=study.id, reader="bob")
    with pytest.raises(queries.ReviewConflict, match="being read by alice"):
        queries.sign_report(session=session, study_id=study.id, reader="bob", nodule=False, embolism=False)

    assert queries.release_study(session=session, study_id=study.id, reader="alice")
    session.expire_all()
    assert session.get(Study, study.id).status == "ready"
    assert queries.claim_study(session=session, study_id=study.id, reader="bob").ok
    taken = queries.claim_study(session=session, study_id=study.id, reader="carol", take_over=True)
    assert taken.ok and taken.holder == "carol"

    queries.sign_report(session=session, study_id=study.id, reader="carol", nodule=True, embolism=False)
    session.expire_all()
    signed = session.get(Study, study.id)
    assert signed.status == "signed" and signed.claimed_by is None and signed.signed_at is not None
    late = queries.claim_study(session=session, study_id=study.id, reader="dave")
    assert not late.ok and late.reason == "signed"
    with pytest.raises(queries.ReviewConflict, match="already signed"):
        queries.sign_report(session=session, study_id=study.id, reader="carol", nodule=True, embolism=False)
    actions = [(e.actor, e.action) for e in queries.list_events(session=session, study_id=study.id)]
    assert actions[:2] == [("carol", "sign"), ("carol", "claim")] and ("alice", "release") in actions
    missing = queries.claim_study(session=session, study_id=10**9, reader="dave")
    assert not missing.ok and missing.reason == "not found"


def test_claiming_failed_study_keeps_its_state(session: Session, readers: list[str]) -> None:
    """Test that claiming a failed study does not hide its failure."""
    study = make_study(session, status="failed")
    assert queries.claim_study(session=session, study_id=study.id, reader="alice").ok
    session.expire_all()
    assert session.get(Study, study.id).status == "failed"


def test_reading_session_verdicts_and_audit(session: Session, readers: list[str]) -> None:
    """Test reading-session timing, verdict changes (latest wins) and the audit trail of a reading."""
    from tests.db.factories import make_finding

    study = make_study(session, nodule=0.8, embolism=0.1, findings=[make_finding("nodule", 0.8)])
    (finding,) = queries.get_findings(session=session, study_id=study.id)
    rid = queries.open_reading_session(session=session, study_id=study.id, reader="alice", ai_shown=False)
    queries.set_verdict(
        session=session, finding_id=finding.id, reader="alice", verdict="confirmed", reading_session_id=rid
    )
    queries.set_verdict(
        session=session, finding_id=finding.id, reader="alice", verdict="rejected", reading_session_id=rid
    )
    queries.add_reader_finding(
        session=session, study_id=study.id, reader="alice", kind="embolism", center_voxel=(1, 2, 3)
    )
    assert queries.close_reading_session(session=session, reading_session_id=rid, active_seconds=42.5)
    assert not queries.close_reading_session(session=session, reading_session_id=rid, active_seconds=99)
    with pytest.raises(ValueError):
        queries.set_verdict(session=session, finding_id=finding.id, reader="alice", verdict="maybe")

    (verdict,) = session.exec(select(FindingVerdict)).all()
    assert verdict.verdict == "rejected" and verdict.reading_session_id == rid
    reading = session.get(ReadingSession, rid)
    assert reading.active_seconds == 42.5 and not reading.ai_shown and reading.closed_at is not None
    (added,) = queries.list_reader_findings(session=session, study_id=study.id)
    assert (added.kind, added.center_k, added.center_j, added.center_i) == ("embolism", 1, 2, 3)
    actions = [e.action for e in reversed(queries.list_events(session=session, study_id=study.id))]
    assert actions[-4:] == ["open", "verdict", "verdict", "add_finding"]
