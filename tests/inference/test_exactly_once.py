"""Exactly-once analysis (#17.4): worker lease with expiry, identical re-sends change nothing, new instances
make a new analysis version without touching the reader's claim or signed report."""

from __future__ import annotations

import shutil
import time

import sqlalchemy as sa

from db import queries
from db.lease import acquire_lease, updated_since_opened
from db.models import AnalysisRun, AuditEvent, Study
from db.session import session_scope
from inference.dicom.ct_writer import derived_uid
from inference.dicom.inbox import ingest_paths
from inference.intake import open_database, register_ingested
from inference.queue import get_queue
from inference.worker import process_study, recover_orphans
from tests.factories import make_volume, write_study


def _ingest(path, settings):
    return register_ingested(ingest_paths([path], settings=settings), settings=settings)


def _study(settings, uid) -> Study:
    with session_scope(open_database(settings)) as s:
        study = s.execute(sa.select(Study).where(Study.study_uid == uid)).scalar_one()
        s.expunge(study)
        return study


def _runs(settings, uid) -> list[AnalysisRun]:
    with session_scope(open_database(settings)) as s:
        sid = s.execute(sa.select(Study.id).where(Study.study_uid == uid)).scalar_one()
        runs = list(s.execute(sa.select(AnalysisRun).where(AnalysisRun.study_id == sid)).scalars())
        for r in runs:
            s.expunge(r)
        return runs


def _pending(settings) -> list[str]:
    huey, _ = get_queue(settings)
    return [m.args[0] for m in huey.pending()]


def _drain(settings) -> list[str]:
    """Run every queued message through the real worker function; returns the outcomes."""
    huey, _ = get_queue(settings)
    outcomes = []
    while (msg := huey.dequeue()) is not None:
        outcomes.append(process_study(msg.args[0], settings))
    return outcomes


def _extra_slice(vol, tmp_path):
    """The study re-sent with one more slice at the top (a new SOP instance, same study and series)."""
    bigger = make_volume(shape=(vol.shape[0] + 1, *vol.shape[1:]))
    bigger.study_uid, bigger.series_uid = vol.study_uid, vol.series_uid
    _, paths = write_study(tmp_path / "bigger", bigger)
    new = [p for p in paths if p.name not in {q.name for q in (tmp_path / "s").iterdir()}]
    (tmp_path / "extra").mkdir()
    for p in new:
        shutil.copy(p, tmp_path / "extra" / p.name)
    return tmp_path / "extra"


def test_a_live_lease_is_never_taken_over_and_an_expired_one_is(tmp_path, settings):
    """Test that while worker A holds a live lease, a second worker neither re-queues nor analyses the study;
    once A stops heart-beating the lease expires and the study is analysed exactly once."""
    vol, _ = write_study(tmp_path / "s")
    assert _ingest(tmp_path / "s", settings) == [vol.study_uid]
    huey, _ = get_queue(settings)
    huey.dequeue()  # worker A took the message ...
    with session_scope(open_database(settings)) as s:  # ... and holds the lease while analysing
        assert acquire_lease(session=s, study_uid=vol.study_uid, owner="worker-A", ttl_s=1.5)
        queries.mark_analysing(session=s, study_uid=vol.study_uid)
        assert not acquire_lease(session=s, study_uid=vol.study_uid, owner="worker-B", ttl_s=30)
    assert recover_orphans(settings) == []  # a starting worker leaves the in-progress study alone
    assert process_study(vol.study_uid, settings) == "busy"
    assert _runs(settings, vol.study_uid) == [] and _pending(settings) == []
    time.sleep(1.6)  # A was killed: no heartbeat, the lease expires
    assert recover_orphans(settings) == [vol.study_uid]
    assert _drain(settings) == ["ready"]
    (run,) = _runs(settings, vol.study_uid)
    assert run.error is None and run.started_at is not None and run.started_at <= run.finished_at
    study = _study(settings, vol.study_uid)
    assert study.status == "ready" and study.lease_owner is None and study.analysis_version == 1
    with session_scope(open_database(settings)) as s:
        actions = [e.action for e in s.execute(sa.select(AuditEvent)).scalars()]
    assert actions.count("analysed") == 1 and actions.count("lease_taken_over") == 1


def test_identical_resend_of_a_study_in_review_changes_nothing(tmp_path, settings):
    """Test that re-sending the same instances of a claimed study queues nothing, keeps it in review with
    its claim, and that a duplicate queue message does not analyse it again."""
    vol, _ = write_study(tmp_path / "s")
    _ingest(tmp_path / "s", settings)
    assert _drain(settings) == ["ready"]
    with session_scope(open_database(settings)) as s:
        queries.create_user(session=s, username="reader1", password_hash="x")
        sid = queries.get_study(session=s, study_uid=vol.study_uid).id
        assert queries.claim_study(session=s, study_id=sid, reader="reader1").ok
    assert _ingest(tmp_path / "s", settings) == []
    assert _pending(settings) == []
    assert process_study(vol.study_uid, settings) == "unchanged"  # a stray duplicate message
    study = _study(settings, vol.study_uid)
    assert (study.status, study.claimed_by, study.analysis_version) == ("in_review", "reader1", 1)
    assert len(_runs(settings, vol.study_uid)) == 1


def test_resend_with_a_new_instance_makes_a_new_version_and_keeps_claim_and_report(tmp_path, settings):
    """Test that new instances of a study in review create analysis version 2 without moving the study out of
    review or dropping the claim, that the reader's open session sees it as updated, and that a signed
    study stays signed with its report when more instances arrive."""
    vol, _ = write_study(tmp_path / "s")
    _ingest(tmp_path / "s", settings)
    _drain(settings)
    with session_scope(open_database(settings)) as s:
        queries.create_user(session=s, username="reader1", password_hash="x")
        sid = queries.get_study(session=s, study_uid=vol.study_uid).id
        queries.claim_study(session=s, study_id=sid, reader="reader1")
        reading = queries.open_reading_session(session=s, study_id=sid, reader="reader1", ai_shown=True)
        assert not updated_since_opened(session=s, reading_session_id=reading)
    extra = _extra_slice(vol, tmp_path)
    assert _ingest(extra, settings) == [vol.study_uid]
    assert _study(settings, vol.study_uid).status == "in_review"  # never reset to queued
    assert _drain(settings) == ["ready"]
    study = _study(settings, vol.study_uid)
    assert (study.status, study.claimed_by, study.analysis_version) == ("in_review", "reader1", 2)
    assert [r.error for r in _runs(settings, vol.study_uid)] == [None, None]
    with session_scope(open_database(settings)) as s:
        assert updated_since_opened(session=s, reading_session_id=reading)
        queries.sign_report(session=s, study_id=sid, reader="reader1", nodule=False, embolism=False)
    more = derived_uid(vol.series_uid, "more")
    v3 = make_volume(uid_tag="more")
    v3.study_uid, v3.series_uid = vol.study_uid, more
    write_study(tmp_path / "third", v3)
    assert _ingest(tmp_path / "third", settings) == [vol.study_uid]
    _drain(settings)
    study = _study(settings, vol.study_uid)
    assert study.status == "signed" and study.analysis_version == 3
    with session_scope(open_database(settings)) as s:
        report = queries.get_report(session=s, study_id=sid)
    assert report is not None and report.signed_by == "reader1"


def test_a_resend_racing_the_analysis_does_not_leave_the_study_queued(tmp_path, settings):
    """Test that when a registration marked the study queued just after the analysis of the same files was
    stored, the leftover message puts it back to ready instead of leaving it queued forever."""
    vol, _ = write_study(tmp_path / "s")
    _ingest(tmp_path / "s", settings)
    assert _drain(settings) == ["ready"]
    with session_scope(open_database(settings)) as s:
        queries.mark_queued(session=s, study_uid=vol.study_uid)  # the racing registration
    assert process_study(vol.study_uid, settings) == "unchanged"
    study = _study(settings, vol.study_uid)
    assert study.status == "ready" and study.analysis_version == 1 and len(_runs(settings, vol.study_uid)) == 1
