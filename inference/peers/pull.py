"""Pull mode: ask a PACS for chest CT studies and fetch the new ones, for sites that cannot push.

``pull(settings, peer=...)`` queries the peer for studies (C-FIND at study level with ``ModalitiesInStudy``
and a ``StudyDate`` range, or QIDO-RS), then lists each study's series (C-FIND / QIDO-RS at series level) and
keeps those of the modality and body part asked for (``BodyPartExamined``; a series without one is kept, the
series rules decide later). A study already in our database or inbox is not fetched again. The others are
retrieved by the peer's ``retrieve`` method:

* ``c-get`` and ``wado-rs``: the objects come back on our own connection, go into the inbox
  (``inbox.store_bytes``) and the study is registered and queued at once;
* ``c-move``: the peer sends them to ``TRIAGE_RECEIVER_AE_TITLE`` (the peer must know that AE's address, and
  ``triage receive`` must be running there), which registers the study on its first instance and queues it
  after the quiet period.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from inference.config import Peer, Settings
from inference.peers import PeerError

log = logging.getLogger(__name__)


@dataclass
class PullReport:
    """What one pull did: studies matched, fetched (with instance counts), skipped as present, failed."""

    matched: list[str] = field(default_factory=list)
    fetched: dict[str, int] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    queued: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "fetched": self.fetched, "already_present": self.present,
                "failed": self.failed, "queued": self.queued}  # fmt: skip


def parse_date(text: str) -> str:
    """``YYYYMMDD`` from ``YYYY-MM-DD`` / ``YYYYMMDD`` / ``today`` / ``Nd`` or ``-Nd`` (N days ago).

    Raises:
        ValueError: anything else.
    """
    text = text.strip().lower()
    if text == "today":
        return date.today().strftime("%Y%m%d")
    m = re.fullmatch(r"-?(\d+)d", text)
    if m:
        return (date.today() - timedelta(days=int(m.group(1)))).strftime("%Y%m%d")
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            pass
    raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD, YYYYMMDD, today or 7d for 7 days ago)")


def date_range(since: str | None, until: str | None) -> str:
    """A DICOM date range (``A-B``, ``A-``, ``-B``) or '' for any date."""
    if not since and not until:
        return ""
    return f"{parse_date(since) if since else ''}-{parse_date(until) if until else ''}"


def _series_ok(row: dict[str, Any], modality: str, body_part: str | None) -> bool:
    if str(row.get("Modality") or "").upper() != modality.upper():
        return False
    body = str(row.get("BodyPartExamined") or "").upper().replace(" ", "")
    return not body_part or not body or body == body_part.upper().replace(" ", "")


def find_studies(
    peer: Peer, settings: Settings, *, modality: str, body_part: str | None, dates: str
) -> dict[str, list[str]]:
    """``{study UID: [matching series UIDs]}`` on the peer (DIMSE unless it retrieves by WADO-RS)."""
    from inference.peers import dimse, web

    out: dict[str, list[str]] = {}
    if peer.retrieve == "wado-rs":
        filters = {"ModalitiesInStudy": modality}
        if dates:
            filters["StudyDate"] = dates
        for row in web.search_studies(peer, settings, filters):
            uid = row.get("StudyInstanceUID")
            if uid:
                out[uid] = [s["SeriesInstanceUID"] for s in web.search_series(peer, settings, uid)
                            if _series_ok(s, modality, body_part)]  # fmt: skip
    else:
        query = {"StudyInstanceUID": "", "StudyDate": dates, "ModalitiesInStudy": modality}
        for ds in dimse.find(peer, settings, "STUDY", query):
            uid = str(ds.StudyInstanceUID)
            keys = {"StudyInstanceUID": uid, "SeriesInstanceUID": "", "Modality": "", "BodyPartExamined": ""}
            rows = [
                {"SeriesInstanceUID": str(s.SeriesInstanceUID), "Modality": s.get("Modality"),
                 "BodyPartExamined": s.get("BodyPartExamined")}
                for s in dimse.find(peer, settings, "SERIES", keys)
            ]  # fmt: skip
            out[uid] = [r["SeriesInstanceUID"] for r in rows if _series_ok(r, modality, body_part)]
    return {uid: series for uid, series in out.items() if series}


def is_present(study_uid: str, settings: Settings) -> bool:
    """The study is already in our database or inbox."""
    from db.queries import get_study
    from db.session import session_scope
    from inference.intake import open_database

    study_dir = settings.inbox_dir / study_uid
    if study_dir.is_dir() and any(study_dir.iterdir()):
        return True
    with session_scope(open_database(settings)) as session:
        return get_study(session=session, study_uid=study_uid) is not None


def pull(
    settings: Settings,
    *,
    peer: str,
    since: str | None = None,
    until: str | None = None,
    modality: str = "CT",
    body_part: str | None = "CHEST",
    limit: int | None = None,
) -> PullReport:
    """Query ``peer`` for matching studies and fetch the ones we do not have.

    Raises:
        KeyError: no such peer. PeerError: the query itself failed (a failed retrieval is in the report).
        ValueError: a bad date.
    """
    from inference.dicom.inbox import store_bytes
    from inference.intake import register_and_queue
    from inference.peers import dimse, web

    p = settings.peer(peer)
    matches = find_studies(p, settings, modality=modality, body_part=body_part, dates=date_range(since, until))
    report = PullReport(matched=sorted(matches))
    for uid in sorted(matches)[: limit if limit else None]:
        if is_present(uid, settings):
            report.present.append(uid)
            continue
        count = 0

        def keep(data: bytes) -> None:
            nonlocal count
            outcome = store_bytes(data, name="pulled.dcm", origin=f"pull from {p.name}", settings=settings)
            if outcome.status == "quarantined":
                raise ValueError(outcome.reason)
            count += 1

        try:
            for series_uid in matches[uid]:
                if p.retrieve == "c-move":
                    count += dimse.move(p, settings, uid, settings.receiver_ae_title, series_uid=series_uid)
                elif p.retrieve == "c-get":
                    dimse.get(p, settings, uid, keep, series_uid=series_uid)
                else:
                    web.retrieve_series(p, settings, uid, series_uid, keep)
        except PeerError as exc:
            report.failed[uid] = str(exc)
            log.error("pull of study %s from %s failed: %s", uid, p.name, exc)
            continue
        report.fetched[uid] = count
        if p.retrieve != "c-move":  # C-MOVE: the receiver registers and queues what it got
            report.queued += register_and_queue([uid], settings=settings)
    return report
