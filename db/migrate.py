"""Alembic, driven from Python: upgrade, current and head revisions, and the schema check.

Alembic is configured in code (``script_location`` points inside this package), so migrations work from an
installed wheel and from any working directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

# Alembic logs "Context impl ..." at INFO on every connection; the CLI reports what happened itself.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_HINT = "run `triage db upgrade`"


class SchemaError(RuntimeError):
    """The database schema does not match this version of the software."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` pointing at ``db/migrations``, optionally bound to an open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this software."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; returns the revision the database is at afterwards."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    return current_revision(engine)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Revert migrations down to ``revision`` (``"base"`` empties the database)."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
    return current_revision(engine)


def check_schema(engine: Engine) -> None:
    """Refuse an empty, outdated or unknown schema.

    Raises:
        SchemaError: with a message naming ``triage db upgrade`` when the database is behind.
    """
    head = head_revision()
    current = current_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    if current == head:
        return
    if current is None:
        raise SchemaError(f"the database at {where} has no triage schema yet; {UPGRADE_HINT}.")
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current in known:
        raise SchemaError(
            f"the database at {where} is at schema revision {current} but this software needs {head}; {UPGRADE_HINT}."
        )
    raise SchemaError(
        f"the database at {where} is at schema revision {current}, which this software does not know "
        "(it was probably written by a newer version); upgrade the software."
    )
