"""The inbox: received files kept as received, atomically and idempotently; bad files quarantined.

Layout under the data directory::

    inbox/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    quarantine/<sha256-16>-<original name>            (the bytes as received)
    quarantine/<sha256-16>-<original name>.reason.json (why, from where, when)

Nothing here deletes a file. The receiver (C-STORE) and ``triage ingest`` both call ``store_bytes``.
A changed instance (same SOP Instance UID, other bytes: a corrected re-send) replaces the inbox copy; the
previous bytes are kept in quarantine with the reason ``superseded``.

Limits (``Settings.intake``): files and zip members above the per-file size, zips above the member count,
ratio or total size are refused before they are read (``refused``, with the limit in the reason); beyond the
quarantine quota only the reason file is kept. Links inside an ingested folder are not followed. Every
folder is created 0700 and every file 0600 (``inference.private``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from inference.config import Settings, get_settings
from inference.dicom.sources import Skipped, TooLarge, iter_sources
from inference.private import secure_data_dir, write_private

log = logging.getLogger(__name__)

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


@dataclass
class StoreOutcome:
    """What happened to one file: ``stored``, ``duplicate``, ``replaced`` (a changed instance), ``quarantined``
    or ``refused`` (not read: a link, or above an intake limit; ``reason`` says which)."""

    status: str
    path: Path
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    reason: str | None = None


@dataclass
class IngestReport:
    """Counts and details of one ingest run."""

    outcomes: list[StoreOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def studies(self) -> dict[str, set[str]]:
        """``{study_uid: {series_uid, ...}}`` of files stored or already present."""
        out: dict[str, set[str]] = {}
        for o in self.outcomes:
            if o.status in ("stored", "duplicate", "replaced") and o.study_uid:
                out.setdefault(o.study_uid, set()).add(o.series_uid or "")
        return out

    def to_dict(self) -> dict:
        return {
            "stored": self.count("stored"),
            "duplicates": self.count("duplicate"),
            "replaced": self.count("replaced"),
            "quarantined": [
                {"file": str(o.path), "reason": o.reason} for o in self.outcomes if o.status == "quarantined"
            ],
            "refused": [{"file": str(o.path), "reason": o.reason} for o in self.outcomes if o.status == "refused"],
            "studies": {k: sorted(v) for k, v in self.studies.items()},
        }


class RejectedFile(Exception):
    """A received file that cannot go into the inbox (the message says why)."""


def _atomic_write(target: Path, data: bytes) -> None:
    write_private(target, data)


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(e.stat().st_size for e in os.scandir(folder) if e.is_file(follow_symlinks=False))


def _check_uid(ds: pydicom.Dataset, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    if not value:
        raise RejectedFile(f"missing {keyword}")
    if len(value) > 64 or not UID_RE.match(value):
        raise RejectedFile(f"{keyword} is not a valid UID")
    return value


def validate_bytes(data: bytes) -> pydicom.Dataset:
    """Parse ``data`` as DICOM and check what the inbox relies on.

    Raises:
        RejectedFile: not DICOM, missing or invalid UIDs, no or truncated pixel data.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        except Exception as exc:
            raise RejectedFile(f"not a DICOM file ({type(exc).__name__})") from exc
        if "SOPInstanceUID" not in ds:
            raise RejectedFile("not a DICOM file (no DICOM preamble and no SOP Instance UID)") from None
    except Exception as exc:
        raise RejectedFile(f"unreadable DICOM ({type(exc).__name__}: {exc})") from exc
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        _check_uid(ds, keyword)
    if "PixelData" in ds:
        tsyntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
        if tsyntax in UNCOMPRESSED:
            try:
                frames = int(ds.get("NumberOfFrames", 1) or 1)
                expected = (
                    int(ds.Rows)
                    * int(ds.Columns)
                    * frames
                    * int(ds.get("SamplesPerPixel", 1))
                    * (int(ds.BitsAllocated) // 8)
                )
                actual = len(ds.PixelData)
            except Exception as exc:
                raise RejectedFile(f"pixel data unreadable ({type(exc).__name__}: {exc})") from exc
            if actual < expected:
                raise RejectedFile(f"truncated pixel data ({actual} of {expected} bytes)")
    return ds


def quarantine_bytes(data: bytes, *, name: str, origin: str, reason: str, settings: Settings) -> Path:
    """Keep ``data`` in quarantine with a reason file beside it (idempotent by content hash). Beyond the
    quarantine quota only the reason file is written (it says so)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "file"
    target = settings.quarantine_dir / f"{digest}-{safe}"
    reason_file = target.with_name(target.name + ".reason.json")
    if not target.exists() and not reason_file.exists():
        quota = settings.intake.quarantine_quota_bytes
        keep = _folder_bytes(settings.quarantine_dir) + len(data) <= quota
        info = {
            "reason": reason,
            "origin": origin,
            "received_at": datetime.now(timezone.utc).isoformat(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "kept": keep,
        }
        if keep:
            _atomic_write(target, data)
        else:
            info["not_kept_because"] = (
                f"the quarantine quota of {quota} bytes is reached (TRIAGE_INTAKE__QUARANTINE_QUOTA_BYTES)"
            )
        _atomic_write(reason_file, json.dumps(info, indent=2).encode())
    log.warning("quarantined %s: %s", target.name, reason)
    return target


def record_refusal(skipped: Skipped, *, settings: Settings) -> StoreOutcome:
    """A refused input (link, above a limit): a reason file in quarantine, no bytes read or kept."""
    digest = hashlib.sha256(skipped.label.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(skipped.label.split("!")[-1]).name)[:80] or "file"
    reason_file = settings.quarantine_dir / f"refused-{digest}-{safe}.reason.json"
    info = {
        "reason": skipped.reason,
        "origin": skipped.label,
        "received_at": datetime.now(timezone.utc).isoformat(),
        "kept": False,
    }
    _atomic_write(reason_file, json.dumps(info, indent=2).encode())
    log.warning("refused %s: %s", safe, skipped.reason)
    return StoreOutcome("refused", Path(skipped.label), reason=skipped.reason)


def store_bytes(data: bytes, *, name: str, origin: str, settings: Settings | None = None) -> StoreOutcome:
    """Store one received file in the inbox, or in quarantine when it is unusable.

    Args:
        data: The file's bytes exactly as received.
        name: Original file name (used for quarantine only).
        origin: Where it came from (a path, ``storescu@AE``), recorded with a quarantined file.
    """
    settings = settings or get_settings()
    try:
        ds = validate_bytes(data)
    except RejectedFile as exc:
        path = quarantine_bytes(data, name=name, origin=origin, reason=str(exc), settings=settings)
        return StoreOutcome("quarantined", path, reason=str(exc))
    study, series, sop = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    target = settings.inbox_dir / study / series / f"{sop}.dcm"
    if target.exists():
        old = target.read_bytes()
        if hashlib.sha256(old).digest() == hashlib.sha256(data).digest():
            return StoreOutcome("duplicate", target, study, series, sop)
        reason = f"superseded: a changed instance with the same SOP Instance UID arrived from {origin}"
        quarantine_bytes(old, name=f"superseded-{target.name}", origin=str(target), reason=reason, settings=settings)
        _atomic_write(target, data)
        return StoreOutcome("replaced", target, study, series, sop, reason)
    _atomic_write(target, data)
    return StoreOutcome("stored", target, study, series, sop)


def inbox_fingerprint(study_dir: Path) -> str | None:
    """A fingerprint of the files a study holds in the inbox (names, sizes, modification times): equal for an
    identical re-send (nothing new is written), different once an instance is added or replaced. None when
    the folder does not exist."""
    if not study_dir.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(study_dir.rglob("*.dcm")):
        if path.name.startswith("."):
            continue
        st = path.stat()
        digest.update(f"{path.relative_to(study_dir).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def ingest_paths(paths: Iterable[Path | str], *, settings: Settings | None = None) -> IngestReport:
    """Copy every file under ``paths`` (files, folders, zips) into the inbox or quarantine.

    Raises:
        FileNotFoundError: a path does not exist.
    """
    settings = settings or get_settings()
    secure_data_dir(settings.data_dir)
    limits = settings.intake
    report = IngestReport()
    skipped: list[Skipped] = []

    def drain_skipped() -> None:
        while skipped:
            report.outcomes.append(record_refusal(skipped.pop(0), settings=settings))

    for source in iter_sources(paths, limits=limits, skipped=skipped):
        drain_skipped()
        try:
            if source.member is None and source.path.stat().st_size > limits.max_file_bytes:
                raise TooLarge(
                    f"{source.path.stat().st_size} bytes, above the per-file limit of {limits.max_file_bytes} "
                    "(TRIAGE_INTAKE__MAX_FILE_BYTES)"
                )
            data = source.read_bytes(limit=limits.max_file_bytes)
        except TooLarge as exc:
            report.outcomes.append(record_refusal(Skipped(source.label, f"refused: {exc}"), settings=settings))
            continue
        except (OSError, zipfile.BadZipFile) as exc:
            log.warning("cannot read %s: %s", source.name, type(exc).__name__)
            report.outcomes.append(StoreOutcome("refused", source.path, reason=f"cannot read: {exc}"))
            continue
        report.outcomes.append(store_bytes(data, name=source.name, origin=source.label, settings=settings))
    drain_skipped()
    log.info(
        "ingest: %d stored, %d already present, %d replaced, %d quarantined, %d refused",
        report.count("stored"),
        report.count("duplicate"),
        report.count("replaced"),
        report.count("quarantined"),
        report.count("refused"),
    )
    return report
