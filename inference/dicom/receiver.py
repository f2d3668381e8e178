"""DICOM C-STORE receiver (pynetdicom SCP): PACS and scanners push studies here.

* Verification (C-ECHO) and storage of CT / Enhanced CT (plus the other objects a study push carries: MR,
  secondary captures, dose reports, SR — kept, and skipped later by series selection) in the common
  uncompressed and compressed transfer syntaxes.
* Optional allow-list of calling AE titles (``TRIAGE_RECEIVER_ALLOWED_CALLERS``).
* Each instance goes through ``inbox.store_bytes``: the bytes as received, written atomically, stored once
  per SOP Instance UID; unparseable ones go to quarantine with a reason (status 0xC000 to the sender).
* A study is complete after ``study_quiet_period_s`` without a new instance; then it is registered and
  queued. A restarted receiver picks up studies that arrived but were never queued.
* Completeness: while an association delivers a study, a marker file (``transfers/<study>/<association>``)
  says so. An association that ends without a release (A-ABORT, dropped connection) or a receiver killed
  mid-transfer leaves it behind: the study becomes ``incomplete`` ("incomplete transfer, waiting for
  re-send") and is never queued; a later association that delivers the study and releases normally clears
  the markers and the study is queued as usual.
* Limits: a TCP connection that sends no association request within ``receiver_acse_timeout_s`` is
  dropped, and such idle connections do not count against ``receiver_max_associations`` (so a handful of
  silent sockets cannot lock senders out); at most ``receiver_max_pending`` may wait at once; an
  association silent for ``receiver_network_timeout_s`` is aborted.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import

from inference.config import Settings, get_settings
from inference.dicom.inbox import store_bytes

log = logging.getLogger(__name__)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
COMPRESSED = [
    JPEGLosslessSV1, JPEGLossless, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless,
    JPEGBaseline8Bit, JPEGExtended12Bit,
]  # fmt: skip
IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
OTHER_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
}

STATUS_OK = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700


INCOMPLETE_REASON = "incomplete transfer, waiting for re-send"


class ReceiverAE(AE):
    """An AE whose association limit counts only connections that sent an association request: idle TCP
    connections (no A-ASSOCIATE-RQ yet) wait out the ACSE timeout without locking real senders out."""

    @property
    def active_associations(self) -> list:
        return [a for a in super().active_associations if not (a.is_acceptor and a.requestor.primitive is None)]

    def pending_connections(self) -> int:
        """Accepted TCP connections still waiting for their association request."""
        return sum(a.is_acceptor and a.requestor.primitive is None for a in AE.active_associations.fget(self))  # type: ignore[attr-defined]  # the base property


def build_ae(ae_title: str) -> ReceiverAE:
    """An application entity with the presentation contexts above."""
    ae = ReceiverAE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    for uid in IMAGE_CLASSES:
        ae.add_supported_context(uid, UNCOMPRESSED + COMPRESSED)
    for uid in OTHER_CLASSES:
        ae.add_supported_context(uid, UNCOMPRESSED)
    ae.maximum_pdu_size = 0  # no limit
    return ae


class StudyTracker:
    """Remembers when each study last received an instance; calls ``on_complete`` after the quiet period."""

    def __init__(self, quiet_period_s: float, on_complete: Callable[[str], None]):
        self.quiet_period_s = quiet_period_s
        self.on_complete = on_complete
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="study-quiet-period", daemon=True)

    def touch(self, study_uid: str) -> bool:
        """Record an arrival; True if the study was not being tracked yet."""
        with self._lock:
            new = study_uid not in self._last
            self._last[study_uid] = time.monotonic()
            return new

    def due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            ready = [uid for uid, t in self._last.items() if now - t >= self.quiet_period_s]
            for uid in ready:
                del self._last[uid]
        return ready

    def _loop(self) -> None:
        while not self._stop.wait(min(1.0, max(0.05, self.quiet_period_s / 4))):
            for uid in self.due():
                try:
                    self.on_complete(uid)
                except Exception as exc:  # keep receiving; the study stays in the inbox and is retried
                    log.error("could not queue study %s: %s: %s", uid, type(exc).__name__, exc)
                    self.touch(uid)

    def forget(self, study_uid: str) -> None:
        """Stop tracking a study (it will not complete by itself)."""
        with self._lock:
            self._last.pop(study_uid, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def pending(self) -> list[str]:
        with self._lock:
            return list(self._last)


@dataclass
class _Transfer:
    """What one association delivered so far."""

    token: str
    studies: dict[str, int] = field(default_factory=dict)  # study UID -> instances received
    released: bool = False


class Receiver:
    """The C-STORE SCP and its study tracker. ``start()`` returns at once; ``stop()`` shuts both down."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        on_complete: Callable[[str], None] | None = None,
        on_first_instance: Callable[[str], None] | None = None,
        on_incomplete: Callable[[str, str], None] | None = None,
    ):
        self.settings = settings or get_settings()
        self.ae = build_ae(self.settings.receiver_ae_title)
        self.ae.maximum_associations = self.settings.receiver_max_associations
        self.ae.acse_timeout = self.settings.receiver_acse_timeout_s
        self.ae.network_timeout = self.settings.receiver_network_timeout_s
        if self.settings.receiver_allowed_callers:
            self.ae.require_calling_aet = list(self.settings.receiver_allowed_callers)
        self.on_first_instance = on_first_instance if on_first_instance is not None else self._register
        self.on_incomplete = on_incomplete if on_incomplete is not None else self._mark_incomplete
        self._on_complete = on_complete or self._queue
        self.tracker = StudyTracker(self.settings.study_quiet_period_s, self._complete)
        self._transfers: dict[int, _Transfer] = {}
        self._lock = threading.Lock()
        self.server: Any = None  # pynetdicom ThreadedAssociationServer once started
        self.stats = {"stored": 0, "duplicate": 0, "replaced": 0, "quarantined": 0, "refused": 0}

    # --- default hooks: database + queue ---------------------------------------------------------------
    def _register(self, study_uid: str) -> None:
        from inference.intake import register_and_queue

        register_and_queue([study_uid], settings=self.settings, queue=False)

    def _queue(self, study_uid: str) -> None:
        from inference.intake import register_and_queue

        register_and_queue([study_uid], settings=self.settings)

    def _mark_incomplete(self, study_uid: str, reason: str) -> None:
        from db.queries import mark_incomplete
        from db.session import session_scope
        from inference.intake import open_database, register_and_queue

        register_and_queue([study_uid], settings=self.settings, queue=False)
        with session_scope(open_database(self.settings)) as session:
            mark_incomplete(session=session, study_uid=study_uid, reason=reason)

    # --- transfer markers ------------------------------------------------------------------------------
    @property
    def transfers_dir(self) -> Path:
        return self.settings.data_dir / "transfers"

    def _marker(self, study_uid: str, token: str) -> Path:
        return self.transfers_dir / study_uid / token

    def _live_tokens(self) -> set[str]:
        with self._lock:
            return {t.token for t in self._transfers.values() if not t.released}

    def _complete(self, study_uid: str) -> None:
        """Quiet period over: queue the study, unless a transfer of it is still running or was cut."""
        folder = self.transfers_dir / study_uid
        markers = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if markers & self._live_tokens():
            self.tracker.touch(study_uid)  # an association is still sending it: wait
            return
        if markers:
            self.on_incomplete(study_uid, self._reason(study_uid))
            return
        self._on_complete(study_uid)

    def _reason(self, study_uid: str) -> str:
        n = sum(1 for _ in (self.settings.inbox_dir / study_uid).rglob("*.dcm"))
        return f"{INCOMPLETE_REASON} ({n} instance(s) received; the sender stopped before the end of the transfer)"

    # --- handlers ----------------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        caller = event.assoc.requestor.ae_title
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:
            log.error("C-STORE from %s: cannot encode dataset: %s", caller, type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        sop = getattr(event.request, "AffectedSOPInstanceUID", "") or "unknown"
        try:
            outcome = store_bytes(data, name=f"{sop}.dcm", origin=f"C-STORE from {caller}", settings=self.settings)
        except OSError as exc:
            log.error("C-STORE from %s: cannot write: %s", caller, exc)
            return STATUS_OUT_OF_RESOURCES
        self.stats[outcome.status] += 1
        if outcome.status == "quarantined":
            return STATUS_CANNOT_UNDERSTAND
        if outcome.study_uid:
            self._note_instance(event.assoc, outcome.study_uid)
        # only new or changed instances (re)start a study's quiet period: a PACS re-sending what we have (its
        # routing rule firing again once our results joined the study) must not queue the study again
        new = outcome.status in ("stored", "replaced")
        if new and outcome.study_uid and self.tracker.touch(outcome.study_uid):
            try:
                self.on_first_instance(outcome.study_uid)
            except Exception as exc:
                log.error("could not register study %s: %s: %s", outcome.study_uid, type(exc).__name__, exc)
        return STATUS_OK

    def _on_echo(self, event) -> int:
        return STATUS_OK

    def _on_assoc(self, event) -> None:
        log.info("association from %s", event.assoc.requestor.ae_title)

    def _note_instance(self, assoc, study_uid: str) -> None:
        with self._lock:
            transfer = self._transfers.setdefault(id(assoc), _Transfer(uuid.uuid4().hex))
            first = study_uid not in transfer.studies
            transfer.studies[study_uid] = transfer.studies.get(study_uid, 0) + 1
        if first:
            from inference.private import private_dir

            marker = self._marker(study_uid, transfer.token)
            private_dir(marker.parent)
            marker.touch(mode=0o600)

    def _on_released(self, event) -> None:
        with self._lock:
            transfer = self._transfers.get(id(event.assoc))
            if transfer is not None:
                transfer.released = True

    def _on_conn_close(self, event) -> None:
        """End of a connection: a released transfer clears its studies' markers (a complete re-send clears
        those an earlier, cut transfer left); any other end keeps them and marks the studies incomplete."""
        with self._lock:
            transfer = self._transfers.pop(id(event.assoc), None)
        if transfer is None:
            return
        for study_uid in transfer.studies:
            folder = self.transfers_dir / study_uid
            if transfer.released:
                live = self._live_tokens()
                cut_before = False
                for marker in folder.glob("*") if folder.is_dir() else []:
                    if marker.name not in live:
                        cut_before = cut_before or marker.name != transfer.token
                        marker.unlink(missing_ok=True)
                if cut_before:  # a complete re-send of a cut transfer, even of instances all kept: queue it
                    self.tracker.touch(study_uid)
                continue
            log.warning("association ended without release during study %s: incomplete transfer", study_uid)
            self.tracker.forget(study_uid)
            try:
                self.on_incomplete(study_uid, self._reason(study_uid))
            except Exception as exc:
                log.error("could not mark study %s incomplete: %s: %s", study_uid, type(exc).__name__, exc)

    def _verify_request(self, request, client_address) -> bool:
        """Refuse a new TCP connection while too many accepted ones still wait for their association request."""
        if self.ae.pending_connections() >= self.settings.receiver_max_pending:
            log.warning(
                "refused a connection: %d connections wait for an association request",
                self.settings.receiver_max_pending,
            )
            return False
        return True

    # --- life cycle --------------------------------------------------------------------------------------
    def resume_incomplete(self) -> list[str]:
        """Track inbox studies that were received but never queued (e.g. the receiver was restarted)."""
        resumed: list[str] = []
        inbox = self.settings.inbox_dir
        if not inbox.is_dir():
            return resumed
        known: dict[str, str] = {}
        try:
            import sqlalchemy as sa
            from sqlmodel import col

            from db.models import Study
            from db.session import session_scope
            from inference.intake import open_database

            with session_scope(open_database(self.settings)) as session:
                known = dict(session.execute(sa.select(col(Study.study_uid), col(Study.status))).all())
        except Exception as exc:
            log.warning("cannot read study states (%s); re-checking every inbox study", type(exc).__name__)
        for study_dir in sorted(p for p in inbox.iterdir() if p.is_dir()):
            if known.get(study_dir.name, "received") != "received":
                continue
            if (self.transfers_dir / study_dir.name).is_dir() and any((self.transfers_dir / study_dir.name).iterdir()):
                # the receiver stopped while this study was arriving: never analyse the part that came
                try:
                    self.on_incomplete(study_dir.name, self._reason(study_dir.name))
                except Exception as exc:
                    log.error("could not mark study %s incomplete: %s", study_dir.name, type(exc).__name__)
                continue
            self.tracker.touch(study_dir.name)
            resumed.append(study_dir.name)
        return resumed

    def start(self) -> None:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_ACCEPTED, self._on_assoc),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_conn_close),
        ]
        from inference.private import private_dir, secure_data_dir

        secure_data_dir(self.settings.data_dir)
        private_dir(self.settings.inbox_dir)
        self.resume_incomplete()
        self.tracker.start()
        self.server = self.ae.start_server(
            (self.settings.receiver_host, self.settings.receiver_port), block=False, evt_handlers=handlers
        )
        self.server.verify_request = self._verify_request
        log.info(
            "receiver %s listening on %s:%d (quiet period %.0f s)",
            self.settings.receiver_ae_title,
            self.settings.receiver_host,
            self.settings.receiver_port,
            self.settings.study_quiet_period_s,
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        self.tracker.stop()


def run_receiver(settings: Settings | None = None) -> None:
    """Run the receiver until interrupted."""
    rec = Receiver(settings)
    rec.start()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        rec.stop()
