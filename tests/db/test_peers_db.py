"""The delivery queue and prior links in the database (``db.peers``), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from db import queries
from db.models import Delivery
from db.peers import (
    claim_due_deliveries,
    create_deliveries,
    earlier_studies,
    get_priors,
    link_prior,
    list_deliveries,
    record_delivery_attempt,
    retry_failed_deliveries,
)
from db.review import list_events
from db.types import utcnow
from tests.db.factories import make_result


def _study(session: Session, uid: str, patient: str = "P1", date: str | None = "20240101"):
    study = queries.upsert_study(session=session, study_uid=uid, header={"PatientID": patient, "StudyDate": date})
    session.commit()
    return study


def _analysed(session: Session, uid: str = "1.2.3") -> int:
    _study(session, uid)
    return queries.store_analysis(session=session, result=make_result(uid, scores={"nodule": 0.5, "embolism": None}))


def test_deliveries_are_created_once_and_claimed_by_one_caller(session: Session) -> None:
    """Test that planning twice makes one delivery per target, and a due delivery is claimed only once."""
    _analysed(session)
    targets = [("pacs", "c-store"), ("archive", "stow-rs")]
    ids = create_deliveries(session=session, study_uid="1.2.3", targets=targets, paths=["a.dcm"], max_attempts=3)
    assert (
        create_deliveries(session=session, study_uid="1.2.3", targets=targets, paths=["a.dcm"], max_attempts=3) == ids
    )
    first = claim_due_deliveries(session=session)
    assert sorted(d.id for d in first) == sorted(ids) and {d.status for d in first} == {"sending"}
    assert claim_due_deliveries(session=session) == []  # already claimed
    later = utcnow() + timedelta(hours=1)  # a claim whose worker died is due again once stale
    assert sorted(d.id for d in claim_due_deliveries(session=session, now=later, stale_after_s=60)) == sorted(ids)


def test_failed_tries_back_off_then_fail_visibly_and_a_success_clears_it(session: Session) -> None:
    """Test that a failed try is due again later, the last one sets the study's delivery error, and success clears."""
    _analysed(session)
    (pacs, archive) = create_deliveries(session=session, study_uid="1.2.3", max_attempts=2, paths=["a.dcm"],
                                        targets=[("pacs", "c-store"), ("archive", "stow-rs")])  # fmt: skip
    claim_due_deliveries(session=session)
    soon = utcnow() + timedelta(seconds=30)
    d = record_delivery_attempt(session=session, delivery_id=pacs, error="pacs unreachable", next_attempt_at=soon)
    assert (d.status, d.attempts, d.last_error) == ("pending", 1, "pacs unreachable")
    assert [x.id for x in claim_due_deliveries(session=session)] == []
    assert [x.id for x in claim_due_deliveries(session=session, now=soon)] == [pacs]
    d = record_delivery_attempt(session=session, delivery_id=pacs, error="pacs unreachable", next_attempt_at=None)
    assert (d.status, d.attempts) == ("failed", 2)
    study = queries.get_study(session=session, study_uid="1.2.3")
    session.refresh(study)
    assert study.delivery_error == "results not delivered: pacs (c-store) after 2 tries: pacs unreachable"
    record_delivery_attempt(session=session, delivery_id=archive, error=None)
    session.refresh(study)
    assert study.delivery_error is not None  # the pacs delivery still failed
    assert {e.action for e in list_events(session=session, study_id=study.id)} >= {
        "results_not_delivered", "results_delivered"}  # fmt: skip
    assert retry_failed_deliveries(session=session, study_uid="1.2.3") == 1
    assert [x.id for x in claim_due_deliveries(session=session)] == [pacs]
    record_delivery_attempt(session=session, delivery_id=pacs, error=None)
    session.refresh(study)
    assert study.delivery_error is None
    assert {d.status for d in list_deliveries(session=session, study_uid="1.2.3")} == {"delivered"}
    assert session.get(Delivery, pacs).attempts == 1  # counted afresh after the manual retry


def test_prior_links_and_earlier_studies_of_the_same_patient(session: Session) -> None:
    """Test that earlier studies are the same patient's older ones, and prior links come newest first."""
    _study(session, "9.1", date="20240301")
    _study(session, "9.0", date="20200101")
    _study(session, "9.2", date="20220101")
    _study(session, "9.3", date="20250101")  # later: not a prior
    _study(session, "8.0", patient="OTHER", date="20210101")
    assert [s.study_uid for s in earlier_studies(session=session, study_uid="9.1")] == ["9.2", "9.0"]
    link_prior(
        session=session, study_uid="9.1", prior_study_uid="9.0", source="local", path="/a", prior_study_date="20200101"
    )
    link_prior(session=session, study_uid="9.1", prior_study_uid="7.7", source="peer:pacs", path="/b",
               prior_series_uid="7.7.1", prior_study_date="20230101")  # fmt: skip
    link_prior(session=session, study_uid="9.1", prior_study_uid="7.7", source="peer:pacs", path="/c")  # update
    links = get_priors(session=session, study_uid="9.1")
    assert [(p.prior_study_uid, p.path, p.prior_series_uid) for p in links] == [
        ("7.7", "/c", "7.7.1"),
        ("9.0", "/a", None),
    ]
    assert links[1].prior_study_id == queries.get_study(session=session, study_uid="9.0").id
    with pytest.raises(LookupError):
        get_priors(session=session, study_uid="no.such")
