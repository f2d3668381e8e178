"""Results back to the PACS: each analysis's SEG and SR to every peer with ``send_results``, retried with
exponential backoff, never silently dropped.

``plan_deliveries`` (called by the worker after an analysis) records one pending delivery per peer and
method in the database; ``deliver_due`` (run by the worker's ``DeliveryLoop`` every ``delivery_poll_s``, or by
``triage deliver``) claims the due ones, sends them by C-STORE or STOW-RS and records the outcome. A failed
try is due again after ``delivery_backoff_s × 2^(tries-1)`` (capped at ``delivery_backoff_max_s``); after
``delivery_max_attempts`` tries the delivery is ``failed`` and the study shows "results not delivered:
<reason>" on the worklist. Because the state lives in the database, a restarted worker resumes it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path

from inference.config import Peer, Settings
from inference.peers import PeerError

log = logging.getLogger(__name__)


def backoff_s(attempts: int, settings: Settings) -> float:
    """Seconds to wait after the ``attempts``-th failed try (1, 2, …): base × 2^(attempts-1), capped."""
    return min(settings.delivery_backoff_max_s, settings.delivery_backoff_s * 2 ** max(0, attempts - 1))


def result_targets(settings: Settings) -> list[tuple[str, str]]:
    """``(peer name, method)`` for every configured way our results go out."""
    return [(p.name, m) for p in settings.all_peers() for m in p.send_results]


def plan_deliveries(study_uid: str, outputs: dict[str, Path | None], *, settings: Settings) -> list[int]:
    """Record pending deliveries of an analysis's DICOM outputs (SEG, SR) to every result peer.

    Returns the delivery ids (none when no peer takes results or there is nothing to send).
    """
    from db.peers import create_deliveries
    from db.session import session_scope
    from inference.intake import open_database

    targets = result_targets(settings)
    files = [Path(p) for p in outputs.values() if p is not None]
    if not targets or not files:
        return []
    rel = [str(p.resolve().relative_to(settings.data_dir.resolve())) for p in files]
    with session_scope(open_database(settings)) as session:
        ids = create_deliveries(
            session=session,
            study_uid=study_uid,
            targets=targets,
            paths=rel,
            max_attempts=settings.delivery_max_attempts,
        )
    log.info("study %s: %d result delivery(ies) planned", study_uid, len(ids))
    return ids


def send(peer: Peer, method: str, paths: list[Path], settings: Settings) -> None:
    """Send ``paths`` to ``peer`` by ``method`` (``c-store`` or ``stow-rs``).

    Raises:
        PeerError: the peer refused or could not be reached.
    """
    from inference.peers import dimse, web

    if method == "c-store":
        dimse.store(peer, paths, settings)
    elif method == "stow-rs":
        web.stow(peer, paths, settings)
    else:
        raise PeerError(f"unknown delivery method {method!r}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PeerError):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]


def deliver_due(settings: Settings, *, now: datetime | None = None) -> list[dict]:
    """Try every due delivery once. Returns one summary per try: id, study, peer, method, status, error."""
    from db.peers import claim_due_deliveries, record_delivery_attempt
    from db.session import session_scope
    from db.types import utcnow
    from inference.intake import open_database

    engine = open_database(settings)
    with session_scope(engine) as session:
        claimed = [
            (int(d.id or 0), d.study_id, d.peer, d.method, list(d.paths), d.attempts, d.max_attempts)
            for d in claim_due_deliveries(
                session=session, now=now, stale_after_s=max(900.0, 4 * settings.dimse_timeout_s)
            )
        ]
    out = []
    for delivery_id, study_id, peer_name, method, rel_paths, attempts, max_attempts in claimed:
        error = None
        try:
            peer = settings.peer(peer_name)
            paths = [settings.data_dir / p for p in rel_paths]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"output file missing: {missing[0]}")
            send(peer, method, paths, settings)
        except Exception as exc:  # every failure is recorded; nothing is dropped
            error = _reason(exc)
        tries = attempts + 1
        next_at = None
        if error is not None and tries < max_attempts:
            next_at = (now or utcnow()) + timedelta(seconds=backoff_s(tries, settings))
        with session_scope(engine) as session:
            d = record_delivery_attempt(session=session, delivery_id=delivery_id, error=error, next_attempt_at=next_at)
            status = d.status
        if error is None:
            log.info("delivery %d (%s, %s) delivered after %d try(ies)", delivery_id, peer_name, method, tries)
        elif status == "failed":
            log.error("delivery %d (%s, %s) FAILED after %d tries: %s", delivery_id, peer_name, method, tries, error)
        else:
            log.warning("delivery %d (%s, %s) try %d failed, next at %s: %s", delivery_id, peer_name, method, tries,
                        next_at.isoformat() if next_at else "-", error)  # fmt: skip
        out.append(
            {"id": delivery_id, "study_id": study_id, "peer": peer_name, "method": method, "status": status,
             "attempts": tries, "error": error}
        )  # fmt: skip
    return out


class DeliveryLoop:
    """A background thread that runs ``deliver_due`` every ``delivery_poll_s`` (started by the worker)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-delivery", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deliver_due(self.settings)
            except Exception as exc:  # keep the loop alive; the state stays in the database
                log.error("result delivery loop: %s", _reason(exc))
            self._stop.wait(self.settings.delivery_poll_s)

    def start(self) -> DeliveryLoop:
        if self.settings.all_peers():  # deliveries only exist where peers are configured
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.dimse_timeout_s + 5)
