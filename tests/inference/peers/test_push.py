"""A site's set-up end to end: Orthanc pushes a study to `triage receive` (its REST "store to modality", as a
routing rule would), `triage worker` analyses it, it is ranked on the worklist, and the SEG + SR go back to the
PACS by C-STORE and to a DICOMweb archive by STOW-RS. Real processes, real Orthanc, the real LIDC sample."""

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

from db.peers import list_deliveries
from db.session import session_scope
from db.worklist import worklist
from inference.config import Settings
from inference.intake import open_database
from tests.inference.peers.orthanc import free_port

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "assets" / "samples" / "lidc" / "LIDC-IDRI-0001.zip"


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


def test_orthanc_push_is_analysed_ranked_and_results_come_back(tmp_path, orthanc_factory, monkeypatch):
    """Test that a study Orthanc sends to `triage receive` is analysed, listed, and its SEG/SR reach both peers."""
    port = free_port()
    pacs = orthanc_factory("pacs", modalities={"triage": {"AET": "TRIAGE", "Host": "127.0.0.1", "Port": port}})
    archive = orthanc_factory("archive")
    with zipfile.ZipFile(SAMPLE) as zf:
        files = {n: zf.read(n) for n in zf.namelist() if n.endswith(".dcm")}
    for data in files.values():
        pacs.rest.post(f"{pacs.url}/instances", data=data, timeout=30).raise_for_status()
    first = pydicom.dcmread(io.BytesIO(next(iter(files.values()))), stop_before_pixels=True)
    study_uid, source_series = first.StudyInstanceUID, first.SeriesInstanceUID

    peers = [
        {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port,
         "send_results": ["c-store"], "query": True},
        {"name": "archive", "dicomweb_url": archive.dicomweb_url, "send_results": ["stow-rs"]},
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
    receiver = _start(["receive", "--port", str(port), "--quiet-period", "1"], env, log)
    worker = _start(["worker"], env, log)
    try:
        _wait("the receiver to answer C-ECHO", lambda: pacs.rest.post(f"{pacs.url}/modalities/triage/echo", json={},
                                                                      timeout=10).ok, 60, log_path)  # fmt: skip
        # what a site's Orthanc routing rule (Lua OnStableStudy, or the REST API) does:
        sent = pacs.post("/modalities/triage/store", {"Resources": [pacs.find_study(study_uid)], "Synchronous": True})
        assert sent["InstancesCount"] == len(files) and sent["FailedInstancesCount"] == 0

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

        _wait("both deliveries", delivered, 60, log_path)
    finally:
        _stop(receiver)
        _stop(worker)
        log.close()
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
