"""The dashboard's data access: one cached engine, short-lived cached reads, and the few queries the pages
need that ``db.queries`` does not have (read-only, SQLModel/SQLAlchemy, no patient identifiers logged).

Pages call these functions and ``db.queries`` (through ``session()``); they never write SQL themselves.
Cached reads are keyed by the database URL so two data directories never share a cache entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import streamlit as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard.simulate import SIMULATED_PREFIX
from db import arms, queries, reads
from db.session import SchemaError, get_engine
from db.worklist import WorklistItem
from inference.config import Settings, get_settings
from inference.results import CaseArrays, QualityReason, latest_case, load_case


def settings() -> Settings:
    """The process settings."""
    return get_settings()


def db_url() -> str:
    return settings().resolved_database_url


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    return get_engine(url)


def engine_or_error() -> tuple[Engine | None, str | None]:
    """The database engine, or a message for the reader (schema missing/outdated, unreachable server)."""
    try:
        return _engine(db_url()), None
    except SchemaError as exc:
        return None, f"The database is not ready: {exc}"
    except sa.exc.OperationalError:
        return None, "The database cannot be reached. Check TRIAGE_DATABASE_URL and that the server is running."


@contextmanager
def session() -> Iterator[Session]:
    """A database session on the cached engine (closed afterwards)."""
    with Session(_engine(db_url()), expire_on_commit=False) as s:
        yield s


# --- sign-in session -----------------------------------------------------------------------------------
TOKEN_KEY = "auth_token"  # session_state key of the browser session's sign-in token (set by app.py)


@st.cache_data(ttl=10, show_spinner=False, max_entries=1000)
def _token_valid(url: str, token: str) -> bool:
    with session() as s:
        return queries.validate_auth_session(session=s, token=token) is not None


def require_valid_session() -> None:
    """For fragments, whose reruns skip ``app.py``'s check: when the sign-in token has expired or was
    revoked (checked at most every 10 s), rerun the whole app, which then shows only the sign-in form."""
    token = st.session_state.get(TOKEN_KEY)
    if token is not None and not _token_valid(db_url(), token):
        st.rerun(scope="app")


# --- worklist ----------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def arm_key(data_dir: str) -> bytes:
    """The installation's reader-study key (``db.arms.load_key``: ``reader_study.key`` in the data directory)."""
    return arms.load_key(Path(data_dir))


@st.cache_data(ttl=5, show_spinner=False)
def worklist_rows(
    url: str,
    statuses: tuple[str, ...],
    limit: int,
    day_range: tuple[date, date] | None = None,
    finding: str | None = None,
) -> list[WorklistItem]:
    """The ranked worklist (``db.queries.worklist``) for ``statuses``, an optional arrival-day range (local
    days) and an optional finding filter (``db.worklist.FINDING_FILTERS``), all filtered in SQL; cached for a
    few seconds. New studies get their reader-study draw first, so a hidden-arm study never shows its AI
    output or AI-based rank, not even before its first opening."""
    window: dict[str, Any] = {}
    if day_range:
        start = datetime.combine(day_range[0], time.min).astimezone()
        end = datetime.combine(day_range[1] + timedelta(days=1), time.min).astimezone()
        window = {"received_from": start, "received_before": end}
    with session() as s:
        if settings().ai_hidden_fraction > 0:  # no AI-hidden arm configured: no draws to store on every read
            arms.fill_arm_draws(session=s, key=arm_key(str(settings().data_dir)))
        return queries.worklist(
            session=s,
            statuses=list(statuses) or None,
            limit=limit,
            finding=finding,
            ai_hidden_fraction=settings().ai_hidden_fraction,
            **window,
        )


@st.cache_data(ttl=5, show_spinner=False)
def status_counts(url: str) -> dict[str, int]:
    with session() as s:
        return queries.worklist_counts(session=s)


def top_findings(s: Session, study_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The top AI finding of each study's latest analysis run, a growing or new nodule first
    (``db.reads.top_findings``)."""
    return reads.top_findings(session=s, study_ids=study_ids)


@st.cache_data(ttl=5, show_spinner=False)
def top_findings_cached(url: str, study_ids: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    with session() as s:
        return top_findings(s, study_ids)


def clear_worklist_cache() -> None:
    """Forget cached worklist reads (after a claim, release or signature)."""
    worklist_rows.clear()
    status_counts.clear()
    top_findings_cached.clear()


# --- the case being read -------------------------------------------------------------------------------
def study_draw(s: Session, study_id: int, study_uid: str) -> float:
    """The study's reader-study draw (``db.arms.study_draw`` with this installation's key)."""
    return arms.study_draw(session=s, study_id=study_id, study_uid=study_uid, key=arm_key(str(settings().data_dir)))


def study_arm(s: Session, study_id: int) -> bool | None:
    """The arm a study was assigned when first opened, or None (``db.reads.study_arm``)."""
    return reads.study_arm(session=s, study_id=study_id)


def reader_verdicts(s: Session, reader: str, finding_ids: Sequence[int]) -> dict[int, str]:
    """This reader's verdicts on the given findings."""
    return reads.reader_verdicts(session=s, reader=reader, finding_ids=finding_ids)


def quality_reasons(study_id: int) -> list[QualityReason]:
    """The quality reasons (code, severity, message, advice) of a study's latest analysis run."""
    with session() as s:
        run = queries.latest_run(session=s, study_id=study_id)
    return [QualityReason.model_validate(r) for r in (run.quality or [])] if run is not None else []


def case_folder(study_uid: str) -> Path | None:
    """The newest saved result folder of a study (images, masks, heatmap), or None."""
    return latest_case(settings().data_dir, study_uid)


@st.cache_resource(max_entries=8, show_spinner=False)
def case_arrays(folder: str) -> CaseArrays:
    """The saved case (arrays memory-mapped), loaded once per folder."""
    return load_case(Path(folder))


# --- analytics ----------------------------------------------------------------------------------------
def analytics_version(s: Session) -> tuple[Any, ...]:
    """A cheap fingerprint of everything the analytics page reads (``db.reads.analytics_version``)."""
    return reads.analytics_version(session=s)


@st.cache_data(ttl=5, show_spinner=False)
def analytics_version_cached(url: str) -> tuple[Any, ...]:
    with session() as s:
        return analytics_version(s)


@st.cache_data(ttl=600, max_entries=4, show_spinner=False)
def analytics_tables(url: str, version: tuple[Any, ...]) -> dict[str, Any]:
    """The small tables of the analytics page (summary, simulated counts), cached per data version
    (``analytics_version``)."""
    with session() as s:
        # The page computes reading-time figures itself from the cases (views/analytics.py), so not
        # ``analytics_summary``, which would read every reading case a second time.
        summary = {
            "turnaround_by_priority": queries.turnaround_by_priority(session=s),
            "ai_performance": queries.ai_performance(session=s),
            "ai_false_negative_rate": queries.ai_false_negative_rate(session=s),
            "scanner_profiles": queries.scanner_profile_breakdown(session=s),
        }
        simulated = simulated_counts(s)
    return {"summary": summary, "simulated": simulated}


def clear_analytics_cache() -> None:
    """Forget cached analytics reads (after a signature)."""
    analytics_version_cached.clear()
    analytics_tables.clear()


def score_outcomes(s: Session) -> list[dict[str, Any]]:
    """Per signed study: AI scores and the signed truth (for calibration), plus the scanner profile."""
    return reads.score_outcomes(session=s)


def simulated_counts(s: Session) -> dict[str, int]:
    """How many reading sessions and signed reports come from simulated readers (``sim-*``)."""
    return reads.simulated_counts(session=s, prefix=SIMULATED_PREFIX)


@st.cache_data(ttl=300, show_spinner=False)
def case_embeddings(url: str, limit: int = 2000) -> list[dict[str, Any]]:
    """Case embeddings written by the worker (``embedding`` in result.json) with each study's scanner profile."""
    with session() as s:
        rows = reads.analysed_studies(session=s, limit=limit)
    out = []
    for row in rows:
        folder = case_folder(row["study_uid"])
        if folder is None:
            continue
        try:
            embedding = json.loads((folder / "result.json").read_text()).get("embedding")
        except (OSError, ValueError):
            continue
        if embedding:
            scanner = row["scanner_profile"] or row["manufacturer"] or "unknown"
            out.append({"study_id": row["id"], "scanner": scanner, "embedding": [float(v) for v in embedding]})
    return out
