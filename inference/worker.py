"""The queue worker: one analysis per message, with retries, recovery and honest failure states.

``triage worker`` runs a Huey consumer on the configured queue. Each task takes a study UID, reads its inbox
folder, runs the pipeline, saves arrays + DICOM SEG/SR under ``results/``, compares it with the patient's
prior (#16: the prior ``db.priors.find_prior_study`` names, among our analysed studies and the priors
``inference.peers.priors.fetch_priors`` linked before the analysis) and stores the result in the database.
Unusable input → ``unsuitable`` with the reason (no retry). Any other error is retried
(``TRIAGE_TASK_RETRIES``); after the last retry the study is ``failed`` with the reason. Exactly once: a
worker analyses a study only while it holds the study's lease (``db.lease``, renewed by a heartbeat); a second
worker leaves a study with a live lease alone and takes over only an expired one. The files analysed are
fingerprinted: a message for a study whose files are those of its stored analysis does nothing (an identical
re-send, a duplicate message). A worker killed mid-analysis (SIGKILL) loses its in-flight message and stops
heart-beating; every worker re-queues, at start and then every lease TTL, studies whose lease expired (and
``queued`` ones whose message is gone) — nothing received is ever dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference.config import Settings, get_settings

if TYPE_CHECKING:
    from inference.schema import CaseResult

log = logging.getLogger(__name__)


def _engine(settings: Settings):
    from db.session import open_database

    embedded = settings.database_url is None  # the embedded SQLite database gets its schema on first use
    return open_database(settings.resolved_database_url, data_dir=settings.data_dir, create=embedded)


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500]


def worker_id() -> str:
    """A lease owner name unique to this analysis: host, process, and a random part (no patient data)."""
    return f"{socket.gethostname()[:24]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Heartbeat:
    """Renews a lease every third of its TTL until stopped (a killed worker stops renewing: it expires)."""

    def __init__(self, engine, study_uid: str, owner: str, ttl_s: float):
        self.engine, self.study_uid, self.owner, self.ttl_s = engine, study_uid, owner, ttl_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def _run(self) -> None:
        from db.lease import renew_lease
        from db.session import session_scope

        while not self._stop.wait(self.ttl_s / 3):
            try:
                with session_scope(self.engine) as session:
                    if not renew_lease(session=session, study_uid=self.study_uid, owner=self.owner, ttl_s=self.ttl_s):
                        self.lost = True
                        log.warning("lease on study %s lost; its result will be discarded", self.study_uid)
                        return
            except Exception as exc:  # a database hiccup: try again at the next beat
                log.warning("lease heartbeat for study %s failed: %s", self.study_uid, type(exc).__name__)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def process_study(study_uid: str, settings: Settings | None = None) -> str:
    """Analyse one inbox study end to end, exactly once per content, and store the outcome.

    The study's lease is taken first; a study another worker holds a live lease on is left alone
    (``"busy"``), an expired lease is taken over. When the inbox files are those of the stored analysis
    (same fingerprint) nothing runs (``"unchanged"``). The result is stored only while the lease is held.

    Returns:
        The final status, or ``"busy"`` / ``"unchanged"`` / ``"lease_lost"``.

    Raises:
        Exception: anything unexpected (the queue retries, then ``analyze_task`` marks the study failed).
    """
    from db.lease import LeaseLost, acquire_lease, release_lease, settle_unchanged
    from db.queries import get_study, mark_analysing, mark_unsuitable, store_analysis
    from db.session import session_scope
    from inference.dicom.inbox import inbox_fingerprint
    from inference.dicom.quality import UnusableStudy
    from inference.schema import QualityReason
    from inference.triage import analyze_study_dir

    settings = settings or get_settings()
    engine = _engine(settings)
    owner = worker_id()
    ttl = settings.lease_ttl_s
    study_dir = settings.inbox_dir / study_uid
    stored = False
    with session_scope(engine) as session:
        if not acquire_lease(session=session, study_uid=study_uid, owner=owner, ttl_s=ttl):
            log.info("study %s is being analysed by another worker (or unknown); left alone", study_uid)
            return "busy"
    try:
        fingerprint = inbox_fingerprint(study_dir)
        with session_scope(engine) as session:
            study = get_study(session=session, study_uid=study_uid)
            if study is not None and fingerprint is not None and study.analysed_fingerprint == fingerprint:
                log.info("study %s: same files as its stored analysis; nothing to do", study_uid)
                settle_unchanged(session=session, study_uid=study_uid)
                return "unchanged"
            mark_analysing(session=session, study_uid=study_uid)
        started = datetime.now(timezone.utc)
        _fetch_priors(study_uid, settings)
        with _Heartbeat(engine, study_uid, owner, ttl):
            try:
                outcome = analyze_study_dir(study_dir, settings=settings)
            except UnusableStudy as exc:
                reasons = [QualityReason.model_validate(r) for r in exc.reasons]
                reason = "; ".join(f"{i.code}: {i.message}. {i.advice}" for i in exc.issues)
                with session_scope(engine) as session:
                    mark_unsuitable(
                        session=session,
                        study_uid=study_uid,
                        reason=reason,
                        reasons=reasons,
                        started_at=started,
                        lease_owner=owner,
                        fingerprint=fingerprint,
                    )
                stored = True
                return "unsuitable"
            # the comparison with the patient's prior (#16): the result carries it (``CaseResult.comparison``,
            # each finding's ``extra['change']``) into the database; the saved case and its SR are rewritten
            result = _compare_with_prior(engine, settings, study_uid, outcome.folder) or outcome.result
            with session_scope(engine) as session:
                store_analysis(
                    session=session,
                    result=result,
                    started_at=started,
                    lease_owner=owner,
                    fingerprint=fingerprint,
                )
                stored = True
        if outcome.outputs:
            from inference.peers.delivery import plan_deliveries

            plan_deliveries(study_uid, outcome.outputs, settings=settings)
        log.info("study %s ready (%d findings)", study_uid, len(result.findings))
        return "ready"
    except LeaseLost:
        log.warning("study %s: lease taken over by another worker; this result is discarded", study_uid)
        return "lease_lost"
    finally:
        with session_scope(engine) as session:
            release_lease(session=session, study_uid=study_uid, owner=owner)
        if stored:
            _requeue_if_changed(study_uid, settings, engine)


def _requeue_if_changed(study_uid: str, settings: Settings, engine) -> None:
    """Files that arrived while the study was analysed (their queue message found it busy): queue it again."""
    from db.queries import get_study
    from db.session import session_scope
    from inference.dicom.inbox import inbox_fingerprint
    from inference.queue import enqueue_study

    try:
        with session_scope(engine) as session:
            study = get_study(session=session, study_uid=study_uid)
        now = inbox_fingerprint(settings.inbox_dir / study_uid)
        if study is not None and study.analysed_fingerprint and now and now != study.analysed_fingerprint:
            log.info("study %s changed during its analysis; queued again", study_uid)
            enqueue_study(study_uid, settings)
    except Exception as exc:  # the periodic recovery catches it later
        log.warning("could not re-check study %s: %s", study_uid, type(exc).__name__)


def _compare_with_prior(engine, settings: Settings, study_uid: str, folder: Path | None) -> CaseResult | None:
    """The saved case compared with the prior ``db.priors.find_prior_study`` names (an analysed study of ours
    or a prior ``_fetch_priors`` linked): the annotated ``CaseResult``, or None (no prior; never fatal)."""
    if not settings.priors_enabled:
        return None
    try:
        from inference.priors import compare_with_db_prior

        return compare_with_db_prior(engine, settings, study_uid, folder)
    except Exception as exc:  # e.g. SimpleITK missing: the analysis is stored without the comparison
        log.warning("study %s: not compared with a prior: %s", study_uid, _short_reason(exc))
        return None


def _fetch_priors(study_uid: str, settings: Settings) -> None:
    """Look for the patient's earlier CT (own database, then query peers) before analysing; never fatal."""
    if not settings.priors_enabled:
        return
    try:
        from inference.peers.priors import fetch_priors

        fetch_priors(study_uid, settings=settings)
    except Exception as exc:
        log.warning("study %s: prior studies not fetched: %s", study_uid, _short_reason(exc))


def analyze_task(study_uid: str, task: Any = None) -> str:
    """The ``analyze_study`` task body (installed on the queue by ``consumer``): process, or mark failed
    after the last retry."""
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


def recover_orphans(settings: Settings | None = None, *, min_age_s: float = 0.0) -> list[str]:
    """Re-queue studies whose analysis was interrupted: a lease that expired (its worker was killed), or
    ``queued`` / ``analysing`` with no lease and no queue message (the message was lost).

    A live lease is never touched: its worker is still analysing. ``min_age_s`` leaves alone ``queued``
    studies queued more recently than that (their message may be in a worker's hands right now).
    """
    import sqlalchemy as sa

    from db.lease import expired_leases
    from db.models import Study
    from db.session import session_scope
    from db.types import table_of
    from inference.queue import enqueue_study, get_queue

    settings = settings or get_settings()
    huey, _ = get_queue(settings)
    waiting = set()
    for msg in huey.pending():
        args = getattr(msg, "args", None) or ()
        if args:
            waiting.add(args[0])
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=min_age_s)
    with session_scope(_engine(settings)) as session:
        expired = expired_leases(session=session)
        st = table_of(Study)
        rows = session.execute(
            sa.select(st.c.study_uid).where(
                st.c.status.in_(["analysing", "queued"]),
                st.c.lease_owner.is_(None),
                sa.or_(st.c.queued_at.is_(None), st.c.queued_at <= cutoff),
            )
        ).all()
    requeued = sorted({uid for uid in expired if uid not in waiting} | {uid for (uid,) in rows if uid not in waiting})
    for uid in requeued:
        enqueue_study(uid, settings)
    if requeued:
        log.warning("re-queued %d interrupted study analyses", len(requeued))
    return requeued


def _recovery_loop(settings: Settings, stop: threading.Event) -> None:
    """Every lease TTL: re-queue studies whose worker died (expired lease) or whose message was lost."""
    while not stop.wait(settings.lease_ttl_s):
        try:
            recover_orphans(settings, min_age_s=2 * settings.lease_ttl_s)
        except Exception as exc:  # keep the worker alive; try again next round
            log.warning("recovery check failed: %s", type(exc).__name__)


def make_consumer(settings: Settings, *, workers: int = 1):
    """A Huey consumer of the configured queue that runs ``analyze_task``, after re-queueing interrupted
    analyses (``recover_orphans``). Refuses an outdated database schema."""
    from inference.queue import get_queue, set_analysis_handler

    _engine(settings)  # refuse to start on an outdated schema
    set_analysis_handler(analyze_task)
    huey, _ = get_queue(settings)
    recover_orphans(settings)
    return huey.create_consumer(workers=workers, worker_type="thread", periodic=False, check_worker_health=True)


def run_worker(settings: Settings | None = None, *, workers: int = 1, max_seconds: float | None = None) -> None:
    """Run the consumer until interrupted (or for ``max_seconds``, for tests and demos)."""
    settings = settings or get_settings()
    from inference.peers.delivery import DeliveryLoop

    consumer = make_consumer(settings, workers=workers)
    deliveries = DeliveryLoop(settings).start()  # results to the PACS peers, with retries (state in the db)
    stop = threading.Event()  # expired leases (killed workers) are taken over every lease TTL
    threading.Thread(target=_recovery_loop, args=(settings, stop), name="recovery", daemon=True).start()
    try:
        if max_seconds is None:
            consumer.run()
            return
        consumer.start()  # worker threads without signal handlers (callable off the main thread)
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            time.sleep(0.2)
        consumer.stop(graceful=True)
    finally:
        stop.set()
        deliveries.stop()
