"""AppTest of every page against a factory-built database (headless, no browser)."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from sqlmodel import Session

from dashboard.simulate import simulate_reading_history
from db import queries
from db.models import ReadingSession
from db.session import get_engine
from tests.dashboard.conftest import app, texts
from tests.dashboard.seed import HTML_NAME, PASSWORD


def _session() -> Session:
    return Session(get_engine(), expire_on_commit=False)


def queries_report(study_id: int):
    with _session() as s:
        return queries.get_report(session=s, study_id=study_id)


def test_nothing_with_patient_data_before_sign_in(seeded):
    """Test that without sign-in only the sign-in form shows, even when a case is asked for by URL."""
    at = app()
    at.query_params["study"] = str(seeded["pe"])
    at.run()
    assert not at.exception
    page = texts(at)
    assert "Critical^Pat" not in page and "PID-CRIT" not in page and "Research software" in page
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    with _session() as s:
        assert queries.get_study(session=s, study_id=seeded["pe"]).claimed_by is None


def test_wrong_password_is_refused_and_audited(seeded):
    """Test that a wrong password shows a message, not the worklist, and leaves an audit event."""
    at = app()
    at.run()
    at.text_input(key="signin_username").input("reader1")
    at.text_input(key="signin_password").input("wrong-password")
    at.button[0].click().run()
    assert "wrong password" in texts(at) and "user" not in at.session_state
    with _session() as s:
        assert [e.action for e in queries.list_events(session=s, limit=1)] == ["sign_in_failed"]


def test_sign_in_shows_ranked_worklist_with_attention_and_safe_names(seeded):
    """Test that signing in lands on the worklist: critical PE first, failed study with its reason, names as text."""
    at = app()
    at.run()
    at.text_input(key="signin_username").input("reader1")
    at.text_input(key="signin_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and at.session_state["user"].username == "reader1"
    badges = [h.value for h in at.get("html") if "wl-badge" in str(h.value)]
    assert "CRITICAL PE" in badges[0] and any("NEEDS ATTENTION" in b for b in badges)
    page = texts(at)
    assert page.index("Critical^Pat") < page.index("Routine^Ron")
    assert "model crashed" in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # escaped, so shown as text
    assert "reader2" in page  # who holds the claimed study


def test_sign_in_session_ends_when_its_token_is_revoked(seeded):
    """Test that signing in stores a sign-in token and that once it is revoked (sign-out elsewhere) the next
    run shows only the sign-in form."""
    at = app()
    at.run()
    at.text_input(key="signin_username").input("reader1")
    at.text_input(key="signin_password").input(PASSWORD)
    at.button[0].click().run()
    token = at.session_state["auth_token"]
    assert "Critical^Pat" in texts(at)
    at.run()
    assert "Critical^Pat" in texts(at)  # still valid on the next run
    with _session() as s:
        assert queries.validate_auth_session(session=s, token=token).username == "reader1"
        queries.revoke_auth_session(session=s, token=token)
    at.run()
    assert not at.exception, at.exception
    assert "Critical^Pat" not in texts(at) and [t.label for t in at.text_input] == ["Username", "Password"]


def test_open_claims_and_audits_and_held_case_names_holder(seeded):
    """Test that Open claims the study and audits the opening; a study held by another reader says who."""
    at = app("reader1")
    at.run()
    at.button(key=f"open_{seeded['held']}").click().run()
    assert "In review by reader2 since" in texts(at)
    at.button(key=f"open_{seeded['pe']}").click().run()
    assert not at.exception
    with _session() as s:
        assert queries.get_study(session=s, study_id=seeded["pe"]).claimed_by == "reader1"
        actions = [e.action for e in queries.list_events(session=s, study_id=seeded["pe"])]
    assert "open" in actions and "claim" in actions


def test_worklist_hides_ai_output_of_ai_hidden_arm_and_filters_in_sql(seeded):
    """Test that a study recorded in the AI-hidden arm shows no scores, badge or top finding on the worklist and
    is not ranked by them, and that the finding filter (in SQL) neither lists it nor drops the others."""
    with _session() as s:
        queries.open_reading_session(session=s, study_id=seeded["pe"], reader="reader2", ai_shown=False)
    at = app("reader1")
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    badges = [h.value for h in at.get("html") if "wl-badge" in str(h.value)]
    assert any("AI HIDDEN" in b for b in badges) and not any("CRITICAL PE" in b for b in badges)
    assert "NEEDS ATTENTION" in badges[0]  # the hidden critical PE is not ranked first either
    assert page.count("hidden (reader study)") == 3  # PE, nodule, top finding of that row
    assert "Critical^Pat" in page and "93%" not in page and "71%" not in page and "lobar" not in page
    assert "62%" in page and "Routine^Ron" in page  # other rows keep their AI output
    at.selectbox(key="wl_finding").set_value("Nodule suspected").run()
    page = texts(at)
    assert "Routine^Ron" in page and "Critical^Pat" not in page and "Held^Hank" not in page
    at.selectbox(key="wl_finding").set_value("PE suspected").run()
    assert "No studies match these filters." in texts(at)
    at.selectbox(key="wl_finding").set_value("Needs attention").run()
    page = texts(at)
    assert "Failed^Fay" in page and "Routine^Ron" not in page


def test_hidden_arm_is_known_on_the_worklist_before_the_first_opening(seeded, monkeypatch):
    """Test that with every study drawn into the AI-hidden arm the worklist shows no AI output for the
    non-critical studies before anyone opened one, keeps the critical PE (never withheld) first with its
    alert, and that opening records that same arm."""
    from inference.config import get_settings

    monkeypatch.setenv("TRIAGE_AI_HIDDEN_FRACTION", "1")
    get_settings.cache_clear()
    at = app("reader1")
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    badges = [h.value for h in at.get("html") if "wl-badge" in str(h.value)]
    assert "CRITICAL PE" in badges[0] and "93%" in page  # safety: a critical alert is never hidden
    assert "NEEDS ATTENTION" in badges[1] and "model crashed" in page  # attention is not an AI result
    assert sum("AI HIDDEN" in b for b in badges) >= 2 and "62%" not in page  # routine nodule score hidden
    at.button(key=f"open_{seeded['routine']}").click().run()
    with _session() as s:
        rows = s.exec(sa.select(ReadingSession.ai_shown).where(ReadingSession.study_id == seeded["routine"])).all()
    assert rows == [(False,)]


def _open_review(seeded, key: str = "pe"):
    at = app("reader1")
    at.query_params["study"] = str(seeded[key])
    at.switch_page("views/review.py")
    at.run()
    assert not at.exception, at.exception
    return at


def test_review_verdicts_missed_finding_and_sign(seeded):
    """Test confirm/reject, adding a missed finding at a marked point, and signing (timer closed, claim released)."""
    at = _open_review(seeded)
    page = texts(at)
    assert "Critical^Pat" in page and "Partial coverage" in page and "AI findings" in page
    with _session() as s:
        findings = queries.get_findings(session=s, study_id=seeded["pe"])
    at.button(key=f"confirmed_{findings[0].id}").click().run()
    at.button(key=f"rejected_{findings[1].id}").click().run()
    assert at.radio(key="rep_pe").value == "yes"  # drafted from the confirmed PE
    assert at.radio(key="rep_nodule").value is None  # the rejected nodule drafts nothing: not answered yet
    assert "Pulmonary embolism, 6 mm, lobar, right." in at.text_area(key="rep_impression").value
    at.button(key="sign").click().run()
    assert "answer Nodule" in texts(at) and not queries_report(seeded["pe"])  # an unanswered form is not signed
    from dashboard.components.volume_viewer import Click

    at.session_state["vw_pending"] = Click(1, (4.8, -3.2, -275.0), (10, 60, 70), "axial")
    at.run()
    assert "(10, 60, 70)" in texts(at)
    at.selectbox(key="add_kind").set_value("nodule")
    at.button(key="add_submit").click().run()
    assert at.radio(key="rep_nodule").value == "yes"  # the added nodule now answers it
    at.radio(key="rep_nodule").set_value("no").run()
    at.button(key="sign").click().run()
    assert "contradicts your verdicts" in texts(at) and not queries_report(seeded["pe"])
    at.radio(key="rep_nodule").set_value("yes").run()
    at.button(key="sign").click().run()
    assert not at.exception and "Signed" in texts(at)
    with _session() as s:
        verdicts = {v: queries.list_events(session=s, study_id=seeded["pe"]) for v in ("x",)}["x"]
        report = queries.get_report(session=s, study_id=seeded["pe"])
        added = queries.list_reader_findings(session=s, study_id=seeded["pe"])
        rs = s.exec(sa.select(ReadingSession).where(ReadingSession.study_id == seeded["pe"])).scalars().all()
        study = queries.get_study(session=s, study_id=seeded["pe"])
    assert [(e.detail["finding_id"], e.detail["verdict"]) for e in verdicts if e.action == "verdict"] == [
        (findings[1].id, "rejected"),
        (findings[0].id, "confirmed"),
    ]
    assert report.embolism is True and report.nodule is True and report.signed_by == "reader1"
    assert "Pulmonary embolism, 6 mm, lobar, right." in report.impression
    assert (added[0].center_k, added[0].center_j, added[0].center_i, added[0].center_z_mm) == (10, 60, 70, -275.0)
    assert len(rs) == 1 and rs[0].closed_at is not None and rs[0].active_seconds >= 0 and rs[0].ai_shown
    assert study.status == "signed" and study.claimed_by is None


def test_ai_hidden_arm_hides_scores_findings_and_overlays(seeded, monkeypatch):
    """Test that a non-critical case drawn into the AI-hidden arm shows no AI output and the arm is recorded,
    while the critical PE case opens with its AI output (critical alerts are never withheld)."""
    from inference.config import get_settings

    monkeypatch.setenv("TRIAGE_AI_HIDDEN_FRACTION", "1")
    get_settings.cache_clear()
    at = _open_review(seeded, "routine")
    page = texts(at)
    assert "AI-hidden study arm" in page and "AI findings" not in page and "62%" not in page
    assert not [t for t in at.toggle if t.label in ("Nodules", "PE", "Heatmap")]
    at = _open_review(seeded)
    page = texts(at)
    assert "AI-hidden study arm" not in page and "AI findings" in page
    with _session() as s:
        arms = dict(s.exec(sa.select(ReadingSession.study_id, ReadingSession.ai_shown)).all())
    assert arms == {seeded["routine"]: False, seeded["pe"]: True}


def test_failed_study_opens_with_its_reason(seeded):
    """Test that a failed study opens with its reason and "read on PACS, AI did not assess", nothing about arms
    or AI findings, and that its report starts unanswered (an untouched form cannot be signed)."""
    at = _open_review(seeded, "failed")
    page = texts(at)
    assert "model crashed" in page and "Read on PACS, AI did not assess" in page
    assert "arm" not in page.lower() and "AI findings" not in page and "AI HIDDEN" not in page
    assert at.radio(key="rep_nodule").value is None and at.radio(key="rep_pe").value is None
    at.button(key="sign").click().run()
    assert "answer Nodule" in texts(at) and not queries_report(seeded["failed"])


def test_analytics_labels_simulated_data_and_counts_readings(seeded):
    """Test that the analytics page labels simulated readings and counts every reading case."""
    with _session() as s:
        counts = simulate_reading_history(session=s, rng=np.random.default_rng(0), n_studies=30)
    at = app("reader1")
    at.switch_page("views/analytics.py")
    at.run()
    assert not at.exception, at.exception
    page = texts(at)
    assert "SIMULATED" in page and f"{counts['readings']} of {counts['readings']} reading sessions" in page
    assert f"Readings (cases) {counts['readings']}" in page
    downloads = len(at.get("download_button"))
    assert downloads == 2 and "Calibration" not in page  # only the open tab runs
    for label in ("Turnaround", "AI performance", "Scanners"):
        at.session_state["an_tab"] = label
        at.run()
        assert not at.exception, at.exception
        downloads += len(at.get("download_button"))
        if label == "AI performance":
            assert "AI against signed reports" in texts(at)
        if label == "Scanners":
            assert "Case embeddings by scanner" in texts(at) and "Readings (cases)" not in texts(at)
    assert downloads >= 6


def test_users_page_is_for_admins(seeded):
    """Test that an admin sees the accounts and a reader does not get the page."""
    at = app("admin", role="admin")
    at.switch_page("views/users.py")
    at.run()
    assert not at.exception and "Audit trail" in texts(at)
    names = at.dataframe[0].value["username"].tolist()
    assert {"reader1", "reader2", "admin"} <= set(names)


def test_outdated_schema_is_a_message_not_a_traceback(data_dir):
    """Test that a database without the schema shows the `triage db upgrade` message."""
    data_dir.mkdir(parents=True)
    at = app("reader1")
    at.run()
    assert not at.exception
    assert "triage db upgrade" in texts(at)


def test_html_name_in_review_header_is_text(seeded):
    """Test that a patient name with HTML is escaped in the viewer header too."""
    at = _open_review(seeded, "html")
    page = texts(at)
    assert HTML_NAME not in page and "&lt;script&gt;" in page
