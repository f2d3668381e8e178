"""``triage db upgrade|current`` and ``triage worklist``: thin wrappers over ``db.migrate`` and
``db.queries``. User-facing failures (no schema, unreachable server) are one-line messages, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from db.migrate import SchemaError

EXIT_ERROR = 2


def _url(args: argparse.Namespace) -> str:
    if getattr(args, "url", None):
        return args.url
    from inference.config import get_settings

    return get_settings().resolved_database_url


def _safe(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a user can cause into a message on stderr."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except SchemaError as exc:
            print(f"triage: {exc}", file=sys.stderr)
        except OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            print(f"triage: cannot use the database: {reason}", file=sys.stderr)
        except (SQLAlchemyError, ModuleNotFoundError, ValueError) as exc:
            print(f"triage: database error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return EXIT_ERROR

    return wrapper


@_safe
def cmd_upgrade(args: argparse.Namespace) -> int:
    from db.migrate import current_revision, head_revision, upgrade
    from db.session import create_db_engine

    engine = create_db_engine(_url(args))
    try:
        before = current_revision(engine)
        after = upgrade(engine, args.revision)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    state = "already at" if before == after else f"upgraded from {before or 'empty'} to"
    print(f"database {where}: {state} {after}" + (" (head)" if after == head_revision() else ""))
    return 0


@_safe
def cmd_current(args: argparse.Namespace) -> int:
    from db.migrate import current_revision, head_revision
    from db.session import create_db_engine

    engine = create_db_engine(_url(args))
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    where = engine.url.render_as_string(hide_password=True)
    note = "up to date" if current == head else "outdated: run `triage db upgrade`"
    print(f"database {where}: revision {current or 'none (empty)'}; this software: {head} ({note})")
    return 0 if current == head else 1


def _fmt(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.2f}"


@_safe
def cmd_worklist(args: argparse.Namespace) -> int:
    from db.arms import fill_arm_draws, load_key
    from db.queries import count_worklist, worklist
    from db.session import get_engine, session_scope
    from inference.config import get_settings

    engine = get_engine(_url(args))
    with session_scope(engine) as session:
        settings = get_settings()
        if settings.ai_hidden_fraction > 0:  # as the dashboard: hidden-arm studies never show their AI output
            fill_arm_draws(session=session, key=load_key(settings.data_dir))
        items = worklist(session=session, statuses=args.status, limit=args.limit, offset=args.offset)
        total = count_worklist(session=session, statuses=args.status)
    if args.json:
        payload: dict[str, Any] = {
            "total": total,
            "offset": args.offset,
            "items": [item.to_dict(identifiers=args.show_patient) for item in items],
        }
        json.dump(payload, sys.stdout, indent=2)
        print()
        return 0
    header = f"{'#':>4} {'rank':<9} {'status':<10} {'PE':>4} {'nod':>4} {'prio':>4} {'wait min':>8}  study / note"
    print(header)
    for n, item in enumerate(items, start=args.offset + 1):
        name = f" {item.patient_name}" if args.show_patient and item.patient_name else ""
        note = f"  NEEDS ATTENTION: {item.attention_reason or item.status}" if item.needs_attention else ""
        held = f"  [reading: {item.claimed_by}]" if item.claimed_by else ""
        held += f"  ({item.delivery_error})" if item.delivery_error else ""
        print(
            f"{n:>4} {item.rank:<9} {item.status:<10} {_fmt(item.embolism_score)} {_fmt(item.nodule_score)} "
            f"{_fmt(item.priority)} {item.waited_minutes:>8.0f}  {item.accession or item.study_uid}{name}"
            f"{note}{held}"
        )
    print(f"{len(items)} of {total} studies")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``db`` (``upgrade``, ``current``) and ``worklist`` to the ``triage`` command line."""
    db = subparsers.add_parser("db", help="database schema: upgrade / current revision")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="apply migrations (creates the schema on an empty database)")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    up.add_argument("--url", help="database URL (default: TRIAGE_DATABASE_URL / the data directory)")
    up.set_defaults(func=cmd_upgrade)
    cur = db_sub.add_parser("current", help="show the schema revision of the database (exit 1 if outdated)")
    cur.add_argument("--url", help="database URL (default: TRIAGE_DATABASE_URL / the data directory)")
    cur.set_defaults(func=cmd_current)
    db.set_defaults(func=lambda _args: (db.print_help(), 1)[1])

    wl = subparsers.add_parser("worklist", help="the ranked worklist from the database")
    wl.add_argument("--json", action="store_true", help="print one JSON object")
    wl.add_argument("--status", action="append", metavar="S", help="only this status (repeatable)")
    wl.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    wl.add_argument("--offset", type=int, default=0, help="rows to skip")
    wl.add_argument("--show-patient", action="store_true", help="include patient name / ID")
    wl.add_argument("--url", help="database URL (default: TRIAGE_DATABASE_URL / the data directory)")
    wl.set_defaults(func=cmd_worklist)
