"""The queue worker: one analysis per message, with retries, recovery and honest failure states.

``triage worker`` runs a Huey consumer on the configured queue. Each task takes a study UID, reads its
inbox folder, runs the pipeline, saves arrays + DICOM SEG/SR under ``results/`` and stores the result in
the database. Unusable input → ``unsuitable`` with the reason (no retry). Any other error is retried
(``TRIAGE_TASK_RETRIES``); after the last retry the study is ``failed`` with the reason. A worker killed
mid-analysis (SIGKILL) loses its in-flight message, so a starting worker re-queues studies left in
``analysing`` (and ``queued`` studies whose message is gone) — nothing received is ever dropped.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any

from inference.config import Settings, get_settings

log = logging.getLogger(__name__)


def _engine(settings: Settings):
    from inference.intake import open_database

    return open_database(settings)


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]


def process_study(study_uid: str, settings: Settings | None = None) -> str:
    """Analyse one inbox study end to end and store the outcome. Returns the final status.

    Raises:
        Exception: anything unexpected (the queue retries, then ``analyze_task`` marks the study failed).
    """
    from db.queries import mark_analysing, mark_unsuitable, store_case_result
    from db.session import session_scope
    from inference.dicom.quality import UnusableStudy
    from inference.triage import analyze_study_dir

    settings = settings or get_settings()
    engine = _engine(settings)
    with session_scope(engine) as session:
        if not mark_analysing(session=session, study_uid=study_uid):
            log.info("study %s already signed; not analysed again", study_uid)
            return "signed"
    started = datetime.now(timezone.utc)
    try:
        outcome = analyze_study_dir(settings.inbox_dir / study_uid, settings=settings)
    except UnusableStudy as exc:
        reason = "; ".join(f"{i.code}: {i.message}. {i.advice}" for i in exc.issues)
        with session_scope(engine) as session:
            mark_unsuitable(
                session=session,
                study_uid=study_uid,
                reason=reason,
                run={"started_at": started, "error": reason},
            )
        return "unsuitable"
    from inference.priors import compare_with_db_prior  # an earlier study of the patient in the db (#16)

    doc = compare_with_db_prior(engine, settings, study_uid, outcome.folder) or outcome.result.to_dict()
    with session_scope(engine) as session:
        store_case_result(session=session, result=doc, pe_threshold=outcome.pe_threshold)
    log.info("study %s ready (%d findings)", study_uid, len(outcome.result.findings))
    return "ready"


def analyze_task(study_uid: str, task: Any = None) -> str:
    """Huey task body (registered in ``inference.queue``): process, or mark failed after the last retry."""
    settings = get_settings()
    try:
        return process_study(study_uid, settings)
    except Exception as exc:
        retries_left = getattr(task, "retries", 0) if task is not None else 0
        log.error("analysis of study %s failed (%d retries left): %s", study_uid, retries_left, _short_reason(exc))
        if not retries_left:
            from db.queries import mark_failed
            from db.session import session_scope

            with session_scope(_engine(settings)) as session:
                mark_failed(session=session, study_uid=study_uid, reason=f"analysis failed: {_short_reason(exc)}")
        raise


def recover_orphans(settings: Settings | None = None) -> list[str]:
    """Re-queue studies whose analysis was interrupted (``analysing``) or whose message is gone (``queued``)."""
    import sqlalchemy as sa

    from db.models import Study
    from db.session import session_scope
    from inference.queue import enqueue_study, get_queue

    settings = settings or get_settings()
    huey, _ = get_queue(settings)
    waiting = set()
    for msg in huey.pending():
        args = getattr(msg, "args", None) or ()
        if args:
            waiting.add(args[0])
    with session_scope(_engine(settings)) as session:
        rows = session.execute(
            sa.select(Study.study_uid).where(Study.status.in_(["analysing", "queued"]))  # type: ignore[attr-defined]
        ).all()
    requeued = [uid for (uid,) in rows if uid not in waiting]
    for uid in requeued:
        enqueue_study(uid, settings)
    if requeued:
        log.warning("re-queued %d interrupted study analyses", len(requeued))
    return requeued


def run_worker(settings: Settings | None = None, *, workers: int = 1, max_seconds: float | None = None) -> None:
    """Run the consumer until interrupted (or for ``max_seconds``, for tests and demos)."""
    settings = settings or get_settings()
    from inference.queue import get_queue

    _engine(settings)  # refuse to start on an outdated schema
    huey, _ = get_queue(settings)
    recover_orphans(settings)
    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False, check_worker_health=True)
    if max_seconds is None:
        consumer.run()
        return
    consumer.start()  # worker threads without signal handlers (callable off the main thread)
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
    consumer.stop(graceful=True)
