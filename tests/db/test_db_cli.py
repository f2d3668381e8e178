"""`triage db upgrade|current` and `triage worklist` through the real command-line entry point."""

from __future__ import annotations

import json

import pytest

from db import queries
from db.migrate import head_revision
from db.session import create_db_engine, reset_engines, session_scope
from inference.cli import main
from tests.db.conftest import ENGINES
from tests.db.factories import make_result


@pytest.fixture
def db_env(empty_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    from inference.config import get_settings

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRIAGE_DATABASE_URL", empty_db_url)
    get_settings.cache_clear()
    reset_engines()
    yield empty_db_url
    reset_engines()
    get_settings.cache_clear()


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_upgrade_current_and_worklist(db_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Test that the worklist refuses an empty database, `db upgrade` fixes it and the worklist prints."""
    assert main(["worklist"]) == 2
    err = capsys.readouterr().err
    assert "triage db upgrade" in err and "Traceback" not in err
    assert main(["db", "current"]) == 1
    assert "outdated" in capsys.readouterr().out

    assert main(["db", "upgrade"]) == 0
    assert f"upgraded from empty to {head_revision()} (head)" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert f"already at {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out

    engine = create_db_engine(db_env)
    with session_scope(engine) as session:
        queries.upsert_study(session=session, study_uid="1.2.3.4", header={"PatientName": "Secret^Person"})
        queries.store_analysis(session=session, result=make_result("1.2.3.4", scores={"nodule": 0.2, "embolism": 0.9}))
        queries.upsert_study(session=session, study_uid="1.2.3.5", header={"AccessionNumber": "ACC5"})
        queries.mark_failed(session=session, study_uid="1.2.3.5", reason="no lung series")
    engine.dispose()

    assert main(["worklist", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["total"] == 2
    first, second = payload["items"]
    assert first["study_uid"] == "1.2.3.4" and first["rank"] == "critical" and "patient_name" not in first
    assert second["needs_attention"] and second["attention_reason"] == "no lung series"

    assert main(["worklist"]) == 0
    out = capsys.readouterr().out
    assert "NEEDS ATTENTION: no lung series" in out and "2 of 2 studies" in out and "Secret" not in out
    assert main(["worklist", "--show-patient"]) == 0
    assert "Secret^Person" in capsys.readouterr().out


def test_unreachable_database_is_a_message(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Test that an unreachable PostgreSQL server gives a one-line error, not a traceback."""
    reset_engines()
    code = main(["worklist", "--url", "postgresql+psycopg://nobody@127.0.0.1:1/none"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("triage: cannot use the database") and "Traceback" not in err
    reset_engines()


def test_db_without_action_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Test that `triage db` alone shows its actions."""
    assert main(["db"]) == 1
    assert "upgrade" in capsys.readouterr().out


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_worklist_cli_applies_the_reader_study_arm(db_env: str, monkeypatch, capsys) -> None:
    """Test that `triage worklist` draws the arms of new studies as the dashboard does: with every study in
    the AI-hidden arm a non-critical study shows no scores, while a critical PE keeps its alert."""
    from inference.config import get_settings

    monkeypatch.setenv("TRIAGE_AI_HIDDEN_FRACTION", "1.0")
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    engine = create_db_engine(db_env)
    with session_scope(engine) as session:
        queries.upsert_study(session=session, study_uid="1.2.3.4", header={})
        queries.store_analysis(session=session, result=make_result("1.2.3.4", scores={"nodule": 0.2, "embolism": 0.9}))
        queries.upsert_study(session=session, study_uid="1.2.3.6", header={})
        queries.store_analysis(session=session, result=make_result("1.2.3.6", scores={"nodule": 0.8, "embolism": 0.1}))
    engine.dispose()
    capsys.readouterr()
    assert main(["worklist", "--json"]) == 0
    items = {i["study_uid"]: i for i in json.loads(capsys.readouterr().out)["items"]}
    assert items["1.2.3.4"]["rank"] == "critical" and items["1.2.3.4"]["embolism_score"] == 0.9
    assert items["1.2.3.6"]["nodule_score"] is None and items["1.2.3.6"].get("ai_hidden") is True
