"""One source for each threshold: the PE operating point stored with an analysis drives the critical flag, the
worklist badge, the PE filter and the analytics operating point alike (both engines)."""

from __future__ import annotations

from sqlmodel import Session

from dashboard.views.worklist import priority_badge
from db import queries
from inference.config import Settings
from inference.engine import get_engine
from inference.model_card import ModelCard
from inference.triage import operating_points
from tests.conftest import PROJECT_ROOT
from tests.db.factories import T0, make_report, make_study, make_user

PE_CARD = ModelCard.load(PROJECT_ROOT / "assets" / "models" / "pe_cnnlstm.json")


def _one_source(session: Session, point: float) -> None:
    make_user(session, "alice")
    above = make_study(session, embolism=round(point + 0.02, 4), nodule=0.1, pe_threshold=point)
    below = make_study(session, embolism=round(point - 0.02, 4), nodule=0.1, pe_threshold=point)
    for study, truth in ((above, True), (below, False)):
        make_report(session, study, "alice", embolism=truth, signed_at=T0)
    items = {i.id: i for i in queries.worklist(session=session, statuses=["signed"], now=T0)}
    # the flag stored at analysis
    assert items[above.id].critical and not items[below.id].critical
    assert items[above.id].embolism_threshold == point == items[below.id].embolism_threshold
    # the badge
    assert "CRITICAL PE" in priority_badge(items[above.id])
    assert "CRITICAL PE" not in priority_badge(items[below.id])
    # the PE filter
    pe_ids = [i.id for i in queries.worklist(session=session, statuses=["signed"], now=T0, finding="pe")]
    assert pe_ids == [above.id]
    # the analytics operating point and its confusion counts
    embolism = next(r for r in queries.ai_performance(session=session) if r["kind"] == "embolism")
    assert embolism["threshold"] == point
    assert (embolism["tp"], embolism["fp"], embolism["tn"], embolism["fn"]) == (1, 0, 1, 0)
    (profile,) = queries.scanner_profile_breakdown(session=session)
    assert (profile["tp"], profile["tn"], profile["critical"]) == (1, 1, 1)


def test_critical_flag_badge_filter_and_analytics_share_the_card_value(session: Session) -> None:
    """Test that the PE card's critical point, stored with the analysis, is what the flag, badge, filter and
    analytics use (0.3955 today, where the old setting said 0.5 and the pipeline reported from 0.3)."""
    _one_source(session, PE_CARD.threshold("critical"))


def test_a_settings_override_is_stored_and_used_the_same_way(session: Session) -> None:
    """Test that a settings override replaces the card value in the analysis and is then used everywhere."""
    settings = Settings(threshold_overrides={"pe_cnnlstm": {"critical": 0.62}})
    points = operating_points(get_engine(settings), "embolism")
    assert points == {"report": PE_CARD.threshold("report"), "critical": 0.62}
    assert operating_points(get_engine(Settings()), "embolism")["critical"] == PE_CARD.threshold("critical")
    _one_source(session, points["critical"])
