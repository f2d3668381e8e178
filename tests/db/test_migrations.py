"""Migrations: empty → head on both engines, models match the migrated schema, outdated schemas refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from db.migrate import SchemaError, check_schema, current_revision, downgrade, head_revision, upgrade
from db.session import create_db_engine, get_engine, reset_engines
from tests.db.conftest import ENGINES

EXPECTED_TABLES = {
    "app_user",
    "auth_session",
    "study",
    "series",
    "analysis_run",
    "finding",
    "reading_session",
    "finding_verdict",
    "reader_finding",
    "study_report",
    "audit_event",
    "delivery",
    "study_prior",
}


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_upgrade_from_empty_to_head_matches_models(empty_db_url: str) -> None:
    """Test that upgrading an empty database creates exactly the schema the models describe."""
    engine = create_db_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        assert upgrade(engine) == head_revision()
        tables = set(sa.inspect(engine).get_table_names())
        assert EXPECTED_TABLES <= tables
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
        assert diff == [], f"models and migrations differ (write a migration): {diff}"
        check_schema(engine)
        indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("study")}
        assert {"ix_study_worklist", "ix_study_status_received"} <= indexes
    finally:
        engine.dispose()


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_downgrade_to_base_and_back(empty_db_url: str) -> None:
    """Test that the initial migration can be reverted and re-applied."""
    engine = create_db_engine(empty_db_url)
    try:
        upgrade(engine)
        assert downgrade(engine, "base") is None
        assert not EXPECTED_TABLES & set(sa.inspect(engine).get_table_names())
        assert upgrade(engine) == head_revision()
    finally:
        engine.dispose()


def test_forgotten_migration_is_detected(tmp_path) -> None:
    """Test that compare_metadata reports a column that exists in the models but not in the migrations."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 't.db'}")
    try:
        upgrade(engine)
        meta = sa.MetaData()
        for table in SQLModel.metadata.sorted_tables:
            table.to_metadata(meta)
        meta.tables["study"].append_column(sa.Column("forgotten", sa.Integer))
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), meta)
        assert any(op[0] == "add_column" and op[3].name == "forgotten" for op in diff)
    finally:
        engine.dispose()


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_empty_database_is_refused_with_upgrade_hint(empty_db_url: str) -> None:
    """Test that an empty database is refused with a message naming `triage db upgrade`."""
    reset_engines()
    try:
        with pytest.raises(SchemaError, match="triage db upgrade"):
            get_engine(empty_db_url)
    finally:
        reset_engines()


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_outdated_schema_is_refused(empty_db_url: str) -> None:
    """Test that a database behind head (here: at base after a downgrade) is refused, naming the command."""
    engine = create_db_engine(empty_db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:  # simulate a database left at an older revision
            conn.execute(sa.text("UPDATE alembic_version SET version_num = 'base_fake'"))
        with pytest.raises(SchemaError, match="does not know"):
            check_schema(engine)
        downgrade_engine = create_db_engine(empty_db_url)
        with downgrade_engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE alembic_version SET version_num = '{head_revision()}'"))
        downgrade(downgrade_engine, "base")
        downgrade_engine.dispose()
        with pytest.raises(SchemaError, match=r"no triage schema yet; run `triage db upgrade`"):
            check_schema(engine)
    finally:
        engine.dispose()


def test_outdated_revision_message(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that a database at an older known revision gets the upgrade message with both revisions."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(engine, "0001_initial")
        # Pretend this software ships a newer head than the database has.
        monkeypatch.setattr("db.migrate.head_revision", lambda: "0002_future")
        with pytest.raises(SchemaError) as info:
            check_schema(engine)
        message = str(info.value)
        assert "0001_initial" in message and "0002_future" in message and "triage db upgrade" in message
    finally:
        engine.dispose()


def test_sqlite_pragmas(tmp_path) -> None:
    """Test that SQLite connections use WAL and enforce foreign keys."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'p.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_default_engine_is_sqlite_in_data_dir(settings_env: None, tmp_path) -> None:
    """Test that without TRIAGE_DATABASE_URL the database is a SQLite file in the data directory."""
    from inference.config import get_settings

    reset_engines()
    try:
        url = get_settings().resolved_database_url
        assert url == f"sqlite:///{tmp_path / 'data' / 'triage.db'}"
        with pytest.raises(SchemaError, match="triage db upgrade"):
            get_engine()
        upgrade(create_db_engine())
        engine = get_engine()
        assert engine is get_engine() and (tmp_path / "data" / "triage.db").exists()
    finally:
        reset_engines()


def test_migrations_run_from_any_directory(tmp_path) -> None:
    """Test that migrations are found from another working directory (as from an installed package)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from db.session import create_db_engine; from db.migrate import upgrade;"
        "print(upgrade(create_db_engine(sys.argv[2])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(repo), f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == head_revision()
