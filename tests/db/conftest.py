"""Database fixtures: every test that uses ``engine`` runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``TRIAGE_TEST_POSTGRES_URL`` (a server URL such as
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; ``source .ci/postgres.sh`` starts one). A fresh
database is created on that server for each test session and dropped afterwards; without the variable the
PostgreSQL variants skip. Each test gets empty tables (rows are deleted before it runs), so tests do not
depend on each other or on their order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel

import db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from db.migrate import upgrade
from db.session import create_db_engine

PG_ENV = "TRIAGE_TEST_POSTGRES_URL"
PG_SKIP = (
    f"set {PG_ENV}=postgresql+psycopg://USER@HOST:PORT/postgres (e.g. `source .ci/postgres.sh`) "
    "to run the PostgreSQL variant"
)
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


class PgServer:
    """Creates and drops throw-away databases on the test PostgreSQL server."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = create_db_engine(url).execution_options(isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def new_database(self, label: str) -> str:
        name = f"triage_test_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(PG_SKIP)
    server = PgServer(url)
    try:
        with server.admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        pytest.fail(f"{PG_ENV} is set but the server cannot be reached: {exc.orig}")
    yield server
    server.drop_all()


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of a brand-new empty database of the engine kind named by ``request.param``."""
    kind = getattr(request, "param", "sqlite")
    if kind == "postgresql":
        return request.getfixturevalue("pg_server").new_database("empty")
    return f"sqlite:///{tmp_path_factory.mktemp('empty') / 'triage.db'}"


@pytest.fixture(scope="session", params=ENGINES)
def migrated_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated database per engine kind for the whole test session."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_server").new_database("main")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'triage.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    """The migrated database of this parameter, emptied before the test."""
    with migrated_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(SQLModel.metadata.sorted_tables):
                conn.execute(table.delete())
    return migrated_engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[None]:
    """Settings pointing at a temporary data directory, re-read for this test."""
    from inference.config import get_settings

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
