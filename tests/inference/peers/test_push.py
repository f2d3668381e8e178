"""A site's set-up end to end: Orthanc's routing rule (``docs/orthanc/route-ct-to-triage.lua``: on a stable CT
study, REST ``POST /modalities/triage/store``) pushes a study to `triage receive`, `triage worker` analyses
it, it is ranked on the worklist, and the SEG + SR go back to the PACS by C-STORE and to a DICOMweb archive by
STOW-RS. Real processes, real Orthanc, the real LIDC sample."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pydicom
import sqlalchemy as sa
from pydicom.uid import generate_uid

from db.models import AnalysisRun
from db.peers import list_deliveries
from db.session import session_scope
from db.worklist import worklist
from inference.config import Settings
from inference.intake import open_database
from inference.peers.priors import find_prior
from tests.inference.peers.orthanc import free_port

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "assets" / "samples" / "lidc" / "LIDC-IDRI-0001.zip"
QUIET_PERIOD_S = 3  # the receiver's: a loaded CI machine can pause longer than 1 s between instances
ROUTING_RULE = ROOT / "docs" / "orthanc" / "route-ct-to-triage.lua"


def _start(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inference.cli", *args], env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait(what: str, check, timeout: float, log_path: Path):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; services log:\n{log_path.read_text()[-4000:]}")


def _earlier_copy_on(server, files, study_date: str) -> str:
    """Store on ``server`` a copy of the study as the same patient's CT of a year before (new UIDs)."""
    study_uid = generate_uid(entropy_srcs=["prior", study_date])
    series_uid = generate_uid(entropy_srcs=["prior series", study_date])
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[ds.SOPInstanceUID])
        ds.StudyDate = f"{int(study_date[:4]) - 1}{study_date[4:]}"
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        server.rest.post(f"{server.url}/instances", data=buf.getvalue(), timeout=30).raise_for_status()
    return study_uid


def test_orthanc_push_is_analysed_ranked_and_results_come_back(tmp_path, orthanc_factory, monkeypatch):
    """Test that a study Orthanc routes to `triage receive` is analysed and listed, its prior fetched, and its
    SEG/SR reach both peers."""
    port = free_port()
    pacs = orthanc_factory("pacs", modalities={"triage": {"AET": "TRIAGE", "Host": "127.0.0.1", "Port": port}},
                           lua_scripts=[ROUTING_RULE])  # fmt: skip
    archive = orthanc_factory("archive")
    with zipfile.ZipFile(SAMPLE) as zf:
        files = {n: zf.read(n) for n in zf.namelist() if n.endswith(".dcm")}
    first = pydicom.dcmread(io.BytesIO(next(iter(files.values()))), stop_before_pixels=True)
    study_uid, source_series = first.StudyInstanceUID, first.SeriesInstanceUID
    prior_uid = _earlier_copy_on(archive, files.values(), first.StudyDate)

    peers = [
        {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port,
         "send_results": ["c-store"], "query": True},
        {"name": "archive", "dicomweb_url": archive.dicomweb_url, "send_results": ["stow-rs"], "query": True,
         "retrieve": "wado-rs"},
    ]  # fmt: skip
    env = {
        "TRIAGE_DATA_DIR": str(tmp_path / "data"),
        "TRIAGE_PEERS": json.dumps(peers),
        "TRIAGE_DELIVERY_POLL_S": "0.5",
        "TRIAGE_TASK_RETRY_DELAY_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    log_path = tmp_path / "services.log"
    log = open(log_path, "w")
    receiver = _start(["receive", "--port", str(port), "--quiet-period", str(QUIET_PERIOD_S)], env, log)
    worker = _start(["worker"], env, log)
    try:
        _wait("the receiver to answer C-ECHO", lambda: pacs.rest.post(f"{pacs.url}/modalities/triage/echo", json={},
                                                                      timeout=10).ok, 60, log_path)  # fmt: skip
        # the study reaches the PACS in one request (a ZIP upload), so Orthanc's routing rule sees it stable
        # only once it is complete, as it would after a scanner's push
        pacs.rest.post(f"{pacs.url}/instances", data=SAMPLE.read_bytes(), timeout=60).raise_for_status()

        def ready():
            with session_scope(open_database(settings)) as session:
                return next(
                    (i for i in worklist(session=session) if i.study_uid == study_uid and i.status == "ready"), None
                )

        item = _wait("the study to be analysed", ready, 240, log_path)
        assert item.needs_attention is False and item.priority is not None and item.nodule_score is not None

        def delivered():
            with session_scope(open_database(settings)) as session:
                rows = list_deliveries(session=session, study_uid=study_uid)
                return rows if len(rows) == 2 and all(d.status == "delivered" for d in rows) else None

        _wait("both deliveries", delivered, 90, log_path)
        # our SEG/SR joined the study on the PACS, so its routing rule fires again and re-sends the CT series:
        # the receiver has all of it already, so nothing is queued, analysed or delivered again (no loop)
        _wait("the PACS to route the study again", lambda: log_path.read_text().count("association from PACS") >= 2,
              60, log_path)  # fmt: skip
        time.sleep(QUIET_PERIOD_S + 3)
        with session_scope(open_database(settings)) as session:
            assert session.execute(sa.select(sa.func.count()).select_from(AnalysisRun)).scalar() == 1
            assert len(list_deliveries(session=session, study_uid=study_uid)) == 2
    finally:
        _stop(receiver)
        _stop(worker)
        log.close()
    # the patient's earlier CT, found on the archive (QIDO-RS) when the study arrived, kept and linked
    prior = find_prior(study_uid, settings=settings)
    assert prior == settings.priors_dir / prior_uid and len(list(prior.rglob("*.dcm"))) == len(files)
    # and the study was compared with it (#16: the worker's one prior path, db.priors.find_prior_study)
    with session_scope(open_database(settings)) as session:
        run = session.execute(sa.select(AnalysisRun.prior_study_uid, AnalysisRun.comparison)).one()
    assert run.prior_study_uid == prior_uid and run.comparison["prior_study_uid"] == prior_uid
    results = list((tmp_path / "data" / "results" / study_uid).glob("*/findings_sr.dcm"))
    assert len(results) == 1
    sent_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in results[0].parent.glob("*.dcm")}
    assert len(sent_uids) == 2, "LIDC-IDRI-0001 has a reported nodule: a SEG and an SR"
    for server in (pacs, archive):
        stored = {t["SOPInstanceUID"]: t for t in server.study_instances(study_uid)}
        assert sent_uids <= set(stored), f"{server.aet} lacks our objects"
        for uid in sent_uids:
            ds = pydicom.dcmread(io.BytesIO(server.instance_file(uid)), stop_before_pixels=True)
            assert ds.StudyInstanceUID == study_uid
            if ds.Modality == "SEG":
                assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source_series
            else:
                assert ds.Modality == "SR"
                refs = {s.SeriesInstanceUID for e in ds.CurrentRequestedProcedureEvidenceSequence
                        for s in e.ReferencedSeriesSequence}  # fmt: skip
                assert source_series in refs
