"""DICOM C-STORE receiver (pynetdicom SCP): PACS and scanners push studies here.

* Verification (C-ECHO) and storage of CT / Enhanced CT (plus the other objects a study push carries: MR,
  secondary captures, dose reports, SR — kept, and skipped later by series selection) in the common
  uncompressed and compressed transfer syntaxes.
* Optional allow-list of calling AE titles (``TRIAGE_RECEIVER_ALLOWED_CALLERS``).
* Each instance goes through ``inbox.store_bytes``: the bytes as received, written atomically, stored once
  per SOP Instance UID; unparseable ones go to quarantine with a reason (status 0xC000 to the sender).
* A study is complete after ``study_quiet_period_s`` without a new instance; then it is registered and
  queued. A restarted receiver picks up studies that arrived but were never queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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
from pynetdicom.sop_class import Verification

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


def build_ae(ae_title: str) -> AE:
    """An application entity with the presentation contexts above."""
    ae = AE(ae_title=ae_title)
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

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def pending(self) -> list[str]:
        with self._lock:
            return list(self._last)


class Receiver:
    """The C-STORE SCP and its study tracker. ``start()`` returns at once; ``stop()`` shuts both down."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        on_complete: Callable[[str], None] | None = None,
        on_first_instance: Callable[[str], None] | None = None,
    ):
        self.settings = settings or get_settings()
        self.ae = build_ae(self.settings.receiver_ae_title)
        if self.settings.receiver_allowed_callers:
            self.ae.require_calling_aet = list(self.settings.receiver_allowed_callers)
        self.on_first_instance = on_first_instance if on_first_instance is not None else self._register
        self.tracker = StudyTracker(self.settings.study_quiet_period_s, on_complete or self._queue)
        self.server = None
        self.stats = {"stored": 0, "duplicate": 0, "replaced": 0, "quarantined": 0, "refused": 0}

    # --- default hooks: database + queue ---------------------------------------------------------------
    def _register(self, study_uid: str) -> None:
        from inference.intake import register_and_queue

        register_and_queue([study_uid], settings=self.settings, queue=False)

    def _queue(self, study_uid: str) -> None:
        from inference.intake import register_and_queue

        register_and_queue([study_uid], settings=self.settings)

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
        if outcome.study_uid and self.tracker.touch(outcome.study_uid):
            try:
                self.on_first_instance(outcome.study_uid)
            except Exception as exc:
                log.error("could not register study %s: %s: %s", outcome.study_uid, type(exc).__name__, exc)
        return STATUS_OK

    def _on_echo(self, event) -> int:
        return STATUS_OK

    def _on_assoc(self, event) -> None:
        log.info("association from %s", event.assoc.requestor.ae_title)

    # --- life cycle --------------------------------------------------------------------------------------
    def resume_incomplete(self) -> list[str]:
        """Track inbox studies that were received but never queued (e.g. the receiver was restarted)."""
        resumed = []
        inbox = self.settings.inbox_dir
        if not inbox.is_dir():
            return resumed
        known: dict[str, str] = {}
        try:
            import sqlalchemy as sa

            from db.models import Study
            from db.session import session_scope
            from inference.intake import open_database

            with session_scope(open_database(self.settings)) as session:
                known = dict(session.execute(sa.select(Study.study_uid, Study.status)).all())
        except Exception as exc:
            log.warning("cannot read study states (%s); re-checking every inbox study", type(exc).__name__)
        for study_dir in sorted(p for p in inbox.iterdir() if p.is_dir()):
            if known.get(study_dir.name, "received") == "received":
                self.tracker.touch(study_dir.name)
                resumed.append(study_dir.name)
        return resumed

    def start(self) -> None:
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_ACCEPTED, self._on_assoc),
        ]
        from inference.private import private_dir, secure_data_dir

        secure_data_dir(self.settings.data_dir)
        private_dir(self.settings.inbox_dir)
        self.resume_incomplete()
        self.tracker.start()
        self.server = self.ae.start_server(
            (self.settings.receiver_host, self.settings.receiver_port), block=False, evt_handlers=handlers
        )
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
