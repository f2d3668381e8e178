"""The reader-study arm before the first opening: keyed draws, the key file, and the worklist that neither
shows nor ranks by the AI output of hidden-arm studies (both engines)."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from db import queries
from db.arms import KEY_FILE, arm_draw, fill_arm_draws, load_key
from db.models import Study
from tests.db.factories import T0, make_study, make_user

NOW = T0 + timedelta(hours=10)


def _set_draw(session: Session, study_id: int, draw: float) -> None:
    session.execute(sa.update(Study.__table__).where(Study.__table__.c.id == study_id).values(arm_draw=draw))
    session.commit()


def test_draw_is_a_keyed_uniform_function_of_the_study_uid(tmp_path: Path) -> None:
    """Test that the draw is fixed per UID and key, differs between keys and hides about `fraction` of studies;
    the key file is made once, private, and read back unchanged."""
    key = load_key(tmp_path)
    assert load_key(tmp_path) == key and len(key) == 64
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    uid = "1.2.826.0.1.3680043.10.999.1"
    assert arm_draw(uid, key) == arm_draw(uid, key) and 0.0 <= arm_draw(uid, key) < 1.0
    assert arm_draw(uid, key) != arm_draw(uid, b"another installation")
    draws = [arm_draw(f"1.2.3.{n}", key) for n in range(4000)]
    assert 0.27 < sum(d < 0.3 for d in draws) / len(draws) < 0.33


def test_fill_arm_draws_fills_only_missing_draws(session: Session) -> None:
    """Test that missing draws are filled from the key and stored draws are kept."""
    a, b = make_study(session, nodule=0.2), make_study(session, nodule=0.3)
    _set_draw(session, a.id, 0.5)
    assert fill_arm_draws(session=session, key=b"k") == 1
    assert fill_arm_draws(session=session, key=b"k") == 0
    draws = dict(session.execute(sa.select(Study.__table__.c.id, Study.__table__.c.arm_draw)).all())
    assert draws == {a.id: 0.5, b.id: arm_draw(b.study_uid, b"k")}


def test_worklist_hides_and_does_not_rank_by_ai_of_the_hidden_arm_before_opening(session: Session) -> None:
    """Test that a never-opened study whose draw is below the fraction shows no AI output and is ranked as
    an unscored routine study (its high score does not lift it), that AI filters leave it out, and that with
    fraction 0 its score ranks it again."""
    hidden_top = make_study(session, received_at=NOW - timedelta(minutes=5), nodule=0.97, embolism=0.3)
    high = make_study(session, received_at=NOW - timedelta(minutes=30), nodule=0.9, embolism=0.1)
    low = make_study(session, received_at=NOW - timedelta(minutes=60), nodule=0.1, embolism=0.05)
    for study, draw in ((hidden_top, 0.05), (high, 0.9), (low, 0.6)):
        _set_draw(session, study.id, draw)

    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120, ai_hidden_fraction=0.2)
    assert [i.id for i in items] == [high.id, low.id, hidden_top.id]
    hidden = items[2]
    assert hidden.ai_hidden and hidden.rank == "routine" and not hidden.critical
    assert hidden.embolism_score is None and hidden.nodule_score is None and hidden.priority is None
    assert not items[0].ai_hidden and items[0].nodule_score == 0.9
    nodule_filter = queries.worklist(session=session, now=NOW, finding="nodule", ai_hidden_fraction=0.2)
    assert high.id in {i.id for i in nodule_filter} and hidden_top.id not in {i.id for i in nodule_filter}

    shown = queries.worklist(session=session, now=NOW, max_wait_minutes=120, ai_hidden_fraction=0.0)
    assert [i.id for i in shown] == [hidden_top.id, high.id, low.id] and not shown[0].ai_hidden


def test_a_critical_study_is_never_drawn_into_the_hidden_arm(session: Session) -> None:
    """Test the safety rule: a critical PE whose draw is below the fraction stays AI-shown, critical and on
    top (the worklist) and is opened AI-shown (``assign_arm``); a non-critical study with the same draw is
    hidden."""
    from dashboard.reading import assign_arm

    critical = make_study(session, received_at=NOW - timedelta(minutes=5), embolism=0.95, nodule=0.2)
    routine = make_study(session, received_at=NOW - timedelta(minutes=30), nodule=0.6, embolism=0.1)
    for study in (critical, routine):
        _set_draw(session, study.id, 0.01)
    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120, ai_hidden_fraction=1.0)
    assert [i.id for i in items] == [critical.id, routine.id]
    assert not items[0].ai_hidden and items[0].rank == "critical" and items[0].embolism_score == 0.95
    assert items[1].ai_hidden and items[1].nodule_score is None
    assert assign_arm(None, 0.01, 1.0, critical=True) is True
    assert assign_arm(None, 0.01, 1.0, critical=False) is False


def test_recorded_arm_wins_over_the_draw(session: Session) -> None:
    """Test that once a study was opened its recorded arm decides, whatever its draw and the fraction."""
    make_user(session, "alice")
    drawn_hidden = make_study(session, received_at=NOW - timedelta(minutes=5), embolism=0.95)
    drawn_shown = make_study(session, received_at=NOW - timedelta(minutes=9), embolism=0.9)
    _set_draw(session, drawn_hidden.id, 0.01)
    _set_draw(session, drawn_shown.id, 0.99)
    queries.open_reading_session(session=session, study_id=drawn_hidden.id, reader="alice", ai_shown=True)
    queries.open_reading_session(session=session, study_id=drawn_shown.id, reader="alice", ai_shown=False)
    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120, ai_hidden_fraction=0.5)
    by_id = {i.id: i for i in items}
    assert not by_id[drawn_hidden.id].ai_hidden and by_id[drawn_hidden.id].rank == "critical"
    assert by_id[drawn_shown.id].ai_hidden and by_id[drawn_shown.id].embolism_score is None
    assert [i.id for i in items] == [drawn_hidden.id, drawn_shown.id]


def test_overdue_and_failed_hidden_studies_keep_their_time_based_rank(session: Session) -> None:
    """Test that the starvation cap and needs-attention still apply to hidden-arm studies."""
    overdue = make_study(session, received_at=NOW - timedelta(minutes=300), nodule=0.01)
    fresh = make_study(session, received_at=NOW - timedelta(minutes=3), nodule=0.8)
    failed = make_study(session, received_at=NOW - timedelta(minutes=10), status="failed")
    for study in (overdue, fresh, failed):
        _set_draw(session, study.id, 0.0)
    items = queries.worklist(session=session, now=NOW, max_wait_minutes=120, ai_hidden_fraction=1.0)
    assert [i.id for i in items] == [overdue.id, failed.id, fresh.id]
    assert [i.rank for i in items] == ["attention", "attention", "routine"] and all(i.ai_hidden for i in items)
    assert items[1].needs_attention and items[1].attention_reason == "model crashed"
