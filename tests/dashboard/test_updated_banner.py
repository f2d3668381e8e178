"""The reader sees "updated since you opened it" when a new analysis version arrives (#17.4)."""

from __future__ import annotations

from sqlmodel import Session

from db import queries
from db.session import get_engine
from tests.dashboard.conftest import texts
from tests.dashboard.test_pages import _open_review
from tests.db.factories import make_result


def test_new_analysis_version_while_reading_shows_updated_banner_and_keeps_the_claim(seeded):
    """Test that a study re-analysed while a reader has it open shows "Updated since you opened it" on the
    next run, and the reader keeps the claim and the case."""
    at = _open_review(seeded, "routine")
    assert not at.exception and "Updated since you opened it" not in texts(at)
    with Session(get_engine()) as s:
        study = queries.get_study(session=s, study_id=seeded["routine"])
        queries.store_analysis(
            session=s, result=make_result(study.study_uid, scores={"nodule": 0.7, "embolism": 0.05, "priority": 0.7})
        )
    at.run()
    assert not at.exception and "Updated since you opened it" in texts(at)
    with Session(get_engine()) as s:
        study = queries.get_study(session=s, study_id=seeded["routine"])
        assert study.status == "in_review" and study.claimed_by == "reader1"
