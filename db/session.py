"""Engine and session creation: SQLite (WAL, foreign keys on) by default, PostgreSQL by URL.

``get_engine()`` is what the dashboard and the worker call: it builds the engine for the configured URL
once per process and refuses to hand it out when the schema is not at the newest migration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

from db.migrate import SchemaError, check_schema

__all__ = ["SchemaError", "create_db_engine", "get_engine", "open_database", "session_scope", "reset_engines"]

log = logging.getLogger(__name__)
_engines: dict[str, Engine] = {}
_lock = threading.Lock()

#: Seconds a SQLite writer waits for another writer before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "memory":
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def create_db_engine(url: str | None = None, *, echo: bool = False) -> Engine:
    """A new engine for ``url`` (default: the configured database), without any schema check.

    SQLite files get WAL journaling, ``synchronous=NORMAL``, foreign keys and a busy timeout; their parent
    directory is created. PostgreSQL URLs (``postgresql+psycopg://...``) get pre-ping on checkout.
    """
    if url is None:
        from inference.config import get_settings

        url = get_settings().resolved_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        kwargs: dict[str, Any] = {"connect_args": connect_args}
        if in_memory:
            kwargs["poolclass"] = StaticPool
        else:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def get_engine(url: str | None = None, *, check: bool = True) -> Engine:
    """The shared engine for ``url`` (default: the configured database), created once per process.

    Raises:
        SchemaError: when ``check`` and the schema is missing or outdated (message names
            ``triage db upgrade``).
    """
    if url is None:
        from inference.config import get_settings

        url = get_settings().resolved_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = create_db_engine(url)
    if check:
        check_schema(engine)
    return engine


def reset_engines() -> None:
    """Dispose of every shared engine (tests, or after changing the settings)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that is rolled back if the block raises and always closed."""
    session = Session(engine or get_engine(), expire_on_commit=False)
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_database(url: str, *, data_dir: Path, create: bool) -> Engine:
    """The engine for ``url``; with ``create`` (the embedded SQLite database, no ``TRIAGE_DATABASE_URL``) an
    empty database gets the schema on first use.

    The receiver, the worker and the dashboard may all start on a fresh data directory at once: one of them
    creates the schema while the others wait on a lock file (``data_dir/.schema.lock``), then find it there.

    Raises:
        SchemaError: a configured (or existing but outdated) database is not at the newest schema; the message
            names ``triage db upgrade``.
    """
    from db.migrate import current_revision, upgrade

    try:
        return get_engine(url)
    except SchemaError:
        if not create:
            raise
    with _schema_lock(data_dir):
        try:
            return get_engine(url)
        except SchemaError:
            pass
        fresh = create_db_engine(url)
        try:
            if current_revision(fresh) is not None:
                raise
            upgrade(fresh)
            log.info("created the embedded database schema")
        finally:
            fresh.dispose()
    return get_engine(url)


@contextmanager
def _schema_lock(data_dir: Path) -> Iterator[None]:
    """An exclusive lock across processes (``fcntl.flock`` on ``data_dir/.schema.lock``; POSIX)."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".schema.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
