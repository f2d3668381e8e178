"""Timer and claims: a reload resumes the reading session with its seconds; a claim idle longer than the
configured time has expired, another reader sees "in review by X since …" and can take it over."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session

from db import queries
from db.models import ReadingSession, Study
from db.session import get_engine
from db.types import utcnow
from tests.dashboard.conftest import app, texts


def _open(study_id: int, user: str = "reader1"):
    at = app(user)
    at.query_params["study"] = str(study_id)
    at.switch_page("views/review.py")
    at.run()
    assert not at.exception, at.exception
    return at


def test_reload_resumes_the_reading_session_and_its_seconds(seeded):
    """Test that opening the case again (a reload: a new browser session) continues the unclosed reading
    session from its saved seconds instead of starting at zero."""
    _open(seeded["routine"])
    with Session(get_engine()) as s:
        (rs,) = s.exec(sa.select(ReadingSession).where(ReadingSession.study_id == seeded["routine"])).scalars()
        assert queries.save_reading_progress(session=s, reading_session_id=rs.id, active_seconds=42.0)
    at = _open(seeded["routine"])  # a fresh AppTest is a fresh browser session
    seconds = [int(m) for m in re.findall(r'data-testid="reading-timer" data-seconds="(\d+)"', texts(at))]
    assert seconds and 42 <= seconds[0] < 60
    with Session(get_engine()) as s:
        sessions = s.exec(sa.select(ReadingSession).where(ReadingSession.study_id == seeded["routine"])).all()
    assert len(sessions) == 1



def _age_claim(study_id: int, *, minutes: int) -> None:
    """Move the study's claim back in time, as if its holder had been idle for ``minutes``."""
    with Session(get_engine()) as s:
        s.execute(
            sa.update(Study.__table__)
            .where(Study.__table__.c.id == study_id)
            .values(claimed_at=utcnow() - timedelta(minutes=minutes))
        )
        s.commit()

def test_idle_claim_expires_and_another_reader_takes_it_over(seeded, monkeypatch):
    """Test that a claim in use says "in review by X since …", that one idle past the limit has expired and
    can be taken over, and that the holder's activity (touch_claim) keeps it alive."""
    monkeypatch.setenv("TRIAGE_CLAIM_STALE_MINUTES", "30")
    _open(seeded["routine"], "reader2")
    at = _open(seeded["routine"], "reader1")
    page = texts(at)
    assert "In review by reader2 since" in page and "expired" not in page
    _age_claim(seeded["routine"], minutes=45)
    at = _open(seeded["routine"], "reader1")
    assert "last activity 45 min ago" in texts(at) and "The claim has expired" in texts(at)
    with Session(get_engine()) as s:
        assert queries.touch_claim(session=s, study_id=seeded["routine"], reader="reader2")
        assert not queries.touch_claim(session=s, study_id=seeded["routine"], reader="reader1")
    at = _open(seeded["routine"], "reader1")
    assert "expired" not in texts(at)  # reader2 was active again
    _age_claim(seeded["routine"], minutes=45)
    at = _open(seeded["routine"], "reader1")
    at.button(key="take_over").click().run()
    assert not at.exception
    with Session(get_engine()) as s:
        assert queries.get_study(session=s, study_id=seeded["routine"]).claimed_by == "reader1"
