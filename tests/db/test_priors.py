"""Tests of the prior lookup: the newest analysed earlier study of the same patient."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from db.priors import find_prior_study
from tests.db.factories import T0, make_study


def test_newest_earlier_analysed_study_of_the_patient(session: Session) -> None:
    """Test that the prior is the newest earlier analysed study of the same patient, never another patient's."""
    old = make_study(session, PatientID="P1", StudyDate="20220105", nodule=0.4)
    mid = make_study(session, PatientID="P1", StudyDate="20230110", nodule=0.5)
    make_study(session, PatientID="P1", StudyDate="20230601", status="failed")  # not analysed
    make_study(session, PatientID="P2", StudyDate="20231201", nodule=0.9)  # another patient
    cur = make_study(session, PatientID="P1", StudyDate="20240115", status="analysing")
    later = make_study(session, PatientID="P1", StudyDate="20250101", nodule=0.3)  # after the current one
    prior = find_prior_study(session=session, study_uid=cur.study_uid)
    assert prior is not None and prior.study_uid == mid.study_uid
    assert (prior.study_date, prior.current_date) == ("20230110", "20240115")
    assert find_prior_study(session=session, study_uid=old.study_uid) is None
    # the current study is still analysing: the later one is compared with the newest analysed one
    assert find_prior_study(session=session, study_uid=later.study_uid).study_uid == mid.study_uid


def test_no_patient_id_or_no_date(session: Session) -> None:
    """Test that a study without a patient ID has no prior, and missing dates fall back to arrival order."""
    make_study(session, PatientID="", StudyDate="20220105", nodule=0.4)
    lone = make_study(session, PatientID="", StudyDate="20240105", status="analysing")
    assert find_prior_study(session=session, study_uid=lone.study_uid) is None
    first = make_study(session, PatientID="P3", received_at=T0, nodule=0.4)
    second = make_study(session, PatientID="P3", received_at=T0 + timedelta(days=200), status="analysing")
    assert find_prior_study(session=session, study_uid=second.study_uid).study_uid == first.study_uid


def test_a_newer_linked_prior_wins_over_an_older_analysed_study(session: Session) -> None:
    """Test that a prior linked by ``fetch_priors`` (a peer's study with a folder) is the one compared when it
    is newer than the newest analysed study of ours, and that an older or same-day link leaves ours chosen."""
    from db.peers import link_prior

    ours = make_study(session, PatientID="P5", StudyDate="20230110", nodule=0.4)
    cur = make_study(session, PatientID="P5", StudyDate="20240115", status="analysing")
    link_prior(session=session, study_uid=cur.study_uid, prior_study_uid="7.7.1", source="peer:pacs",
               path="/priors/7.7.1", prior_study_date="20221201")  # fmt: skip
    prior = find_prior_study(session=session, study_uid=cur.study_uid)
    assert (prior.study_uid, prior.source, prior.path) == (ours.study_uid, "database", None)

    link_prior(session=session, study_uid=cur.study_uid, prior_study_uid="7.7.2", source="peer:pacs",
               path="/priors/7.7.2", prior_study_date="20231001")  # fmt: skip
    prior = find_prior_study(session=session, study_uid=cur.study_uid)
    assert (prior.study_uid, prior.source, prior.path) == ("7.7.2", "peer:pacs", "/priors/7.7.2")
    assert (prior.study_date, prior.current_date) == ("20231001", "20240115")

    # a link to our own analysed study (fetch_priors links local studies too) is that study
    other = make_study(session, PatientID="P6", StudyDate="20230110", nodule=0.4)
    cur2 = make_study(session, PatientID="P6", StudyDate="20240115", status="analysing")
    link_prior(session=session, study_uid=cur2.study_uid, prior_study_uid=other.study_uid, source="local",
               path="/inbox/x", prior_study_date="20230110")  # fmt: skip
    assert find_prior_study(session=session, study_uid=cur2.study_uid).source == "database"


def test_the_typed_comparison_is_stored_and_a_growing_nodule_tops_the_worklist(session: Session) -> None:
    """Test that ``CaseResult.comparison`` and each finding's ``extra`` change reach the run and finding
    columns through ``store_analysis``, and that ``db.reads.top_findings`` puts a growing nodule first."""
    from db import queries, reads
    from db.models import AnalysisRun, Finding
    from db.priors import latest_comparison
    from tests.db.factories import make_finding, make_result

    study = make_study(session, PatientID="P7", StudyDate="20240115")
    block = {"prior_study_uid": "7.8.9", "summary": {"growing": 1, "pairs": 1}}
    findings = [
        make_finding("nodule", 0.9),
        make_finding("nodule", 0.4, diameter_mm=9.0,
                     extra={"change": "growing", "prior_diameter_mm": 7.0, "volume_change_pct": 72.5,
                            "vdt_days": 190.0}),
    ]  # fmt: skip
    result = make_result(study.study_uid, scores={"nodule": 0.9, "embolism": None, "priority": 0.95},
                         findings=findings, comparison=block)  # fmt: skip
    run_id = queries.store_analysis(session=session, result=result)
    run = session.get(AnalysisRun, run_id)
    assert run.prior_study_uid == "7.8.9" and run.comparison == block
    assert latest_comparison(session=session, study_id=study.id) == block
    rows = session.exec(Finding.__table__.select().where(Finding.run_id == run_id).order_by(Finding.id)).all()
    assert [(r.change, r.prior_diameter_mm, r.volume_change_pct, r.vdt_days) for r in rows] == [
        (None, None, None, None),
        ("growing", 7.0, 72.5, 190.0),
    ]
    top = reads.top_findings(session=session, study_ids=[study.id])[study.id]
    assert (top["change"], top["probability"]) == ("growing", 0.4)  # before the more probable stable one

    plain = make_study(session, PatientID="P8", nodule=0.6, findings=[make_finding("nodule", 0.6)])
    run = queries.latest_run(session=session, study_id=plain.id)
    assert run.prior_study_uid is None and run.comparison is None
    assert reads.top_findings(session=session, study_ids=[plain.id])[plain.id]["change"] is None
