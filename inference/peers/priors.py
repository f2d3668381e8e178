"""Prior studies: the same patient's earlier chest CT, kept for comparison (issue 16 builds on this).

When a study is analysed, the worker calls ``fetch_priors``: it looks in our own database for earlier studies
of the same patient (``PatientID``) and asks every peer with ``query: true`` for earlier CT studies (C-FIND,
or QIDO-RS for ``retrieve: wado-rs`` peers). The most recent prior found is retrieved (C-GET, or WADO-RS)
into a staging folder, its best series is chosen by the same series rules as for analysis
(``series_rules.json`` through ``inference.dicom.select``) and kept as ``DATA_DIR/priors/<prior study
UID>/<series UID>/``; the other series are dropped. The link (study → prior study, series, date, source,
folder) goes into the ``study_prior`` table. A prior already kept is not fetched again.

``find_prior(study_uid, settings=...)`` returns the folder of the most recent prior of a study (a folder
``read_volume`` reads), or None. Nothing here is fatal for the analysis: the worker logs and goes on.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from inference.config import Peer, Settings, get_settings
from inference.peers import PeerError

log = logging.getLogger(__name__)


@dataclass
class PriorCandidate:
    """An earlier study found on a peer or in our database."""

    study_uid: str
    study_date: str | None
    source: str  # "local" or "peer:<name>"
    peer: Peer | None = None
    path: Path | None = None  # local studies: their inbox folder


def _day_before(study_date: str | None) -> str | None:
    try:
        d = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))  # type: ignore[index]
    except (TypeError, ValueError):
        return None
    return (d - timedelta(days=1)).strftime("%Y%m%d")


def query_peer(peer: Peer, settings: Settings, patient_id: str, before: str | None) -> list[PriorCandidate]:
    """Earlier CT studies of ``patient_id`` on ``peer`` (dated up to ``before``, YYYYMMDD, when given)."""
    from inference.peers import dimse, web

    date_range = f"-{before}" if before else ""
    if peer.retrieve == "wado-rs":
        filters = {"PatientID": patient_id, "ModalitiesInStudy": "CT"}
        if date_range:
            filters["StudyDate"] = date_range
        rows = web.search_studies(peer, settings, filters)
        found = [(r.get("StudyInstanceUID"), r.get("StudyDate")) for r in rows]
    else:
        query = {"PatientID": patient_id, "StudyInstanceUID": "", "StudyDate": date_range, "ModalitiesInStudy": "CT"}
        found = [
            (str(ds.StudyInstanceUID), str(ds.get("StudyDate", "") or ""))
            for ds in dimse.find(peer, settings, "STUDY", query)
        ]
    return [PriorCandidate(uid, d or None, f"peer:{peer.name}", peer) for uid, d in found if uid]


def retrieve_best_series(candidate: PriorCandidate, settings: Settings) -> tuple[Path, str]:
    """Retrieve the candidate's study from its peer, keep its best series (series rules) under ``priors/``.

    Returns:
        ``(folder, series_uid)``; ``folder`` holds exactly that series.

    Raises:
        PeerError: retrieval failed. LookupError: no series of the prior passes the series rules.
    """
    from inference.dicom.inbox import validate_bytes
    from inference.dicom.scan import scan
    from inference.dicom.select import load_rules, rank_series
    from inference.peers import dimse, web

    peer = candidate.peer
    assert peer is not None
    target = settings.priors_dir / candidate.study_uid
    if target.is_dir() and any(target.rglob("*.dcm")):
        series_dirs = [p for p in target.iterdir() if p.is_dir()]
        if series_dirs:
            return target, series_dirs[0].name
    staging = settings.priors_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    count = 0

    def keep(data: bytes) -> None:
        nonlocal count
        ds = validate_bytes(data)
        count += 1
        (staging / f"{ds.SOPInstanceUID}.dcm").write_bytes(data)

    try:
        if peer.retrieve == "wado-rs":
            for s in web.search_series(peer, settings, candidate.study_uid):
                if str(s.get("Modality") or "").upper() == "CT":
                    web.retrieve_series(peer, settings, candidate.study_uid, s["SeriesInstanceUID"], keep)
        else:  # C-GET (a C-MOVE would send the prior to our receiver, which would queue it as a new study)
            dimse.get(peer, settings, candidate.study_uid, keep)
        study = scan([staging]).studies.get(candidate.study_uid)
        if study is None:
            raise PeerError(f"{peer.describe()}: the prior study {candidate.study_uid} came back empty")
        ranked, skipped = rank_series(study, load_rules(str(settings.series_rules) if settings.series_rules else None))
        if not ranked:
            why = "; ".join(f"{r[1]}" for r in skipped.values()) or "no series"
            raise LookupError(f"prior study {candidate.study_uid}: no usable series ({why})")
        best = ranked[0].series
        dest = target / best.series_uid
        dest.mkdir(parents=True, exist_ok=True)
        for inst in best.instances:
            shutil.move(str(inst.source.path), dest / inst.source.path.name)
        log.info("prior %s: kept series %s (%d of %d instances)", candidate.study_uid, best.series_uid,
                 len(best.instances), count)  # fmt: skip
        return target, best.series_uid
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_priors(study_uid: str, *, settings: Settings | None = None) -> Path | None:
    """Find, retrieve and link the most recent earlier CT of the study's patient. Returns its folder or None.

    Looks in our database first, then on every ``query`` peer; a peer prior more recent than the local one is
    retrieved. Peer errors are logged and skipped (the next peer is asked).
    """
    from db.peers import earlier_studies, link_prior
    from db.queries import get_study
    from db.session import session_scope
    from inference.intake import open_database

    settings = settings or get_settings()
    engine = open_database(settings)
    with session_scope(engine) as session:
        study = get_study(session=session, study_uid=study_uid)
        if study is None or not study.patient_id:
            return None
        patient_id, study_date = study.patient_id, study.study_date
        local = [
            PriorCandidate(s.study_uid, s.study_date, "local", path=Path(s.data_path) if s.data_path else None)
            for s in earlier_studies(session=session, study_uid=study_uid)
        ]
    candidates = [c for c in local if c.path is not None and c.path.is_dir()]
    known = {c.study_uid for c in local} | {study_uid}
    for peer in (p for p in settings.all_peers() if p.query):
        try:
            found = query_peer(peer, settings, patient_id, _day_before(study_date))
        except PeerError as exc:
            log.warning("study %s: prior query to %s failed: %s", study_uid, peer.name, exc)
            continue
        candidates += [c for c in found if c.study_uid not in known]
        known |= {c.study_uid for c in found}
    if study_date:
        candidates = [c for c in candidates if c.study_date and c.study_date < study_date]
    candidates.sort(key=lambda c: (c.study_date or "", c.source == "local"), reverse=True)
    for cand in candidates:
        series_uid = None
        try:
            if cand.source == "local":
                path = cand.path
            else:
                path, series_uid = retrieve_best_series(cand, settings)
        except (PeerError, LookupError, OSError) as exc:
            log.warning("study %s: prior %s not retrieved: %s", study_uid, cand.study_uid, exc)
            continue
        with session_scope(engine) as session:
            link_prior(
                session=session,
                study_uid=study_uid,
                prior_study_uid=cand.study_uid,
                source=cand.source,
                path=str(path),
                prior_series_uid=series_uid,
                prior_study_date=cand.study_date,
            )
        log.info("study %s: prior %s (%s) linked", study_uid, cand.study_uid, cand.source)
        return path
    return None


def find_prior(study_uid: str, *, settings: Settings | None = None) -> Path | None:
    """The folder of the most recent linked prior study of ``study_uid`` (None if there is none).

    The folder holds the prior's chosen series (peer priors) or the prior's inbox folder (our own studies);
    ``inference.dicom.read_volume(folder)`` reads it. Priors are linked by ``fetch_priors``, which the worker
    runs when a study arrives; this function only reads the database.
    """
    from db.peers import get_priors
    from db.session import session_scope
    from inference.intake import open_database

    settings = settings or get_settings()
    with session_scope(open_database(settings)) as session:
        try:
            links = get_priors(session=session, study_uid=study_uid)
        except LookupError:
            return None
        paths = [Path(link.path) for link in links if link.path]
    return next((p for p in paths if p.is_dir()), None)
