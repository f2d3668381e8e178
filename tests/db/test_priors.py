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
