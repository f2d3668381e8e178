"""End-to-end pipeline tests with the committed models: analyze CLI, receiver -> worker -> worklist,
worker SIGKILL recovery, unusable and failing studies. Real processes, real dcmtk peer, real queue."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from inference.synth.output import write_study
from inference.synth.study import generate_study
from tests.dcmtk import require_dcmtk

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Two synthetic studies with known truth: a solid nodule (non-contrast) and a central PE (CTPA)."""
    root = tmp_path_factory.mktemp("studies")
    out = {}
    for name, seed, contrast, lesions in (
        ("nodule", 7301, "none", [{"kind": "nodule", "texture": "solid", "diameter_mm": 14.0, "location": "isolated"}]),
        ("pe", 7302, "ctpa", [{"kind": "embolism", "level": "central", "occlusive": False}]),
    ):
        study = generate_study(seed, contrast=contrast, size="medium", lesions=lesions, mimics=False)
        write_study(study, root / name, preview=False)
        out[name] = (root / name / "dicom", study.ground_truth())
    return out


def cli(*args, env=None, timeout=600):
    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "inference.cli", *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout
    )


@pytest.fixture(scope="module")
def nodule_result(studies, tmp_path_factory):
    path, truth = studies["nodule"]
    out = cli("analyze", "--json", path, env={"TRIAGE_DATA_DIR": str(tmp_path_factory.mktemp("analyze"))})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout), truth


def test_analyze_json_shape_and_non_contrast_study_has_no_pe_score(nodule_result):
    """Test that `triage analyze --json` prints the documented object and a non-contrast study gets no PE score."""
    res, truth = nodule_result
    assert set(res) >= {"study_uid", "series_uid", "scores", "findings", "quality", "model_versions", "timings_ms"}
    assert res["study_uid"] == truth["study_uid"] and res["series_uid"] == truth["series_uid"]
    assert set(res["scores"]) == {"nodule", "embolism", "priority"}
    assert res["scores"]["embolism"] is None  # non-contrast: PE not assessed, never "negative"
    assert any(r["code"] == "pe_not_assessable" for r in res["quality"]["reasons"])
    assert {"nodule_seg", "nodule_cls", "pe_cnnlstm"} <= set(res["model_versions"])
    for f in res["findings"]:
        assert len(f["center_mm"]) == 3 and len(f["center_voxel"]) == 3


def test_analyze_finds_the_synthetic_nodule_within_5_mm(nodule_result):
    """Test that `triage analyze --json` reports the inserted nodule within 5 mm of its true centre."""
    res, truth = nodule_result
    true_c = np.array(truth["lesions"][0]["center_mm"])
    nodules = [f for f in res["findings"] if f["kind"] == "nodule"]
    assert nodules, res["scores"]
    best = min(nodules, key=lambda f: np.linalg.norm(np.array(f["center_mm"]) - true_c))
    assert np.linalg.norm(np.array(best["center_mm"]) - true_c) <= 5.0
    assert best["lung_rads"] in ("3", "4A", "4B") and best["diameter_mm"] > 6


def test_analyze_finds_the_synthetic_embolism(studies, tmp_path):
    """Test that a central PE on a synthetic CTPA is reported as a critical embolism finding."""
    path, truth = studies["pe"]
    out = cli("analyze", "--json", path, env={"TRIAGE_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    assert res["critical"] is True and res["scores"]["embolism"] >= 0.5
    emb = [f for f in res["findings"] if f["kind"] == "embolism"]
    assert len(emb) == 1 and emb[0]["location"]


def test_analyze_unusable_input_exits_2_with_reason(tmp_path):
    """Test that a study with missing slices is refused with exit 2 and the reason on stderr."""
    from tests.factories import write_study as write_factory_study

    _, paths = write_factory_study(tmp_path / "s")
    paths[5].unlink()
    out = cli("analyze", "--json", tmp_path / "s", env={"TRIAGE_DATA_DIR": str(tmp_path / "d")})
    assert out.returncode == 2
    assert "missing_slices" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(out.stdout)["quality"]["ok"] is False


def _service_env(tmp_path, backend):
    env = {
        "TRIAGE_DATA_DIR": str(tmp_path / "data"),
        "TRIAGE_TASK_RETRY_DELAY_S": "1",
        "TRIAGE_LEASE_TTL_S": "3",  # a killed worker's lease expires quickly
        "PYTHONUNBUFFERED": "1",
    }
    if backend == "postgres+redis":
        pg, rd = os.environ.get("TRIAGE_TEST_POSTGRES_URL"), os.environ.get("TRIAGE_TEST_REDIS_URL")
        if not (pg and rd):
            pytest.skip("set TRIAGE_TEST_POSTGRES_URL and TRIAGE_TEST_REDIS_URL (source .ci/postgres.sh .ci/redis.sh)")
        import sqlalchemy as sa

        name = f"e2e_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
        admin = sa.create_engine(pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        env["TRIAGE_DATABASE_URL"] = pg.rsplit("/", 1)[0] + "/" + name
        env["TRIAGE_QUEUE_URL"] = rd.rsplit("/", 1)[0] + "/" + str(os.getpid() % 15 + 1)
        import redis

        redis.Redis.from_url(env["TRIAGE_QUEUE_URL"]).flushdb()
        assert cli("db", "upgrade", env=env).returncode == 0
    return env


def _worklist(env):
    out = cli("worklist", "--json", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["items"]


def _wait_status(env, study_uid, statuses, timeout=300.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for row in _worklist(env):
            if row["study_uid"] == study_uid and row["status"] in statuses:
                return row
        time.sleep(1.0)
    raise AssertionError(f"study {study_uid} never reached {statuses}: {_worklist(env)}")


def _start(args, env, log):
    return subprocess.Popen(
        [sys.executable, "-m", "inference.cli", *args],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"])
def test_storescu_to_receiver_to_worker_to_worklist(studies, tmp_path, backend):
    """Test that a study pushed with storescu is received, analysed and ranked with findings, SEG and SR."""
    storescu = require_dcmtk("storescu")
    env = _service_env(tmp_path, backend)
    port = _free_port()
    log = open(tmp_path / "services.log", "w")
    receiver = _start(["receive", "--port", str(port), "--quiet-period", "1"], env, log)
    worker = _start(["worker"], env, log)
    try:
        deadline = time.monotonic() + 60  # a loaded 2-core machine can take many seconds to import and bind
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert receiver.poll() is None, (tmp_path / "services.log").read_text()[-2000:]
            time.sleep(0.2)
        path, truth = studies["pe"]
        sent = subprocess.run(
            [storescu, "-aec", "TRIAGE", "+sd", "+r", "127.0.0.1", str(port), str(path)], capture_output=True, text=True
        )
        assert sent.returncode == 0, sent.stderr
        row = _wait_status(env, truth["study_uid"], {"ready"})
        assert row["critical"] is True
        assert row["rank"] == "critical" and _worklist(env)[0]["study_uid"] == truth["study_uid"]
        results = list((tmp_path / "data" / "results" / truth["study_uid"]).glob("*/findings_sr.dcm"))
        assert len(results) == 1
    finally:
        _stop(receiver)
        _stop(worker)
        log.close()


def test_worker_killed_mid_analysis_is_recovered(studies, tmp_path):
    """Test that SIGKILL of the worker during an analysis loses nothing: a new worker analyses it once."""
    env = _service_env(tmp_path, "sqlite")
    path, truth = studies["nodule"]
    assert cli("ingest", path, env=env).returncode == 0
    log = open(tmp_path / "worker.log", "w")
    worker = _start(["worker"], env, log)
    try:
        _wait_status(env, truth["study_uid"], {"analysing"}, timeout=120)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert _wait_status(env, truth["study_uid"], {"analysing"}, timeout=5)
        worker = _start(["worker"], env, log)
        row = _wait_status(env, truth["study_uid"], {"ready"})
        assert row["needs_attention"] is False
    finally:
        _stop(worker)
        log.close()
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'triage.db'}")
    with engine.connect() as c:
        runs = c.execute(sa.text("SELECT error FROM analysis_run")).all()
    assert len(runs) == 1 and runs[0][0] is None  # analysed exactly once, successfully


def test_model_failure_ends_as_failed_with_reason(studies, tmp_path):
    """Test that a study whose analysis keeps failing (a tampered model) is listed as failed with the reason."""
    env = _service_env(tmp_path, "sqlite")
    models = tmp_path / "models"
    shutil.copytree(ROOT / "assets" / "models", models)
    onnx_file = next(models.glob("pe_cnnlstm.onnx"))
    onnx_file.write_bytes(onnx_file.read_bytes() + b"tampered")
    env.update({"TRIAGE_MODEL_DIR": str(models), "TRIAGE_TASK_RETRIES": "1"})
    path, truth = studies["pe"]
    assert cli("ingest", path, env=env).returncode == 0
    log = open(tmp_path / "worker.log", "w")
    worker = _start(["worker"], env, log)
    try:
        row = _wait_status(env, truth["study_uid"], {"failed"}, timeout=120)
    finally:
        _stop(worker)
        log.close()
    assert row["needs_attention"] is True and "sha256" in row["attention_reason"]


def test_analyze_reports_the_annotated_nodule_on_real_lidc_0001(shared_data, tmp_path):
    """Test that on the real LIDC-IDRI-0001 slices a nodule is reported where the four readers outlined it."""
    import xml.etree.ElementTree as ET

    from inference.dicom import read_volume

    case = shared_data / "lidc-idri-slices" / "LIDC-IDRI-0001"
    ns = {"l": "http://www.nih.gov"}
    root = ET.parse(shared_data / "lidc-idri-slices" / "xml" / "LIDC-IDRI-0001_69.xml").getroot()
    pts = []  # (x_px, y_px, z_mm) of every contour point of nodules outlined on >= 5 slices
    for nod in root.iter("{http://www.nih.gov}unblindedReadNodule"):
        rois = nod.findall("l:roi", ns)
        if len(rois) < 5:
            continue
        for roi in rois:
            z = float(roi.findtext("l:imageZposition", namespaces=ns))
            for e in roi.findall("l:edgeMap", ns):
                pts.append(
                    (float(e.findtext("l:xCoord", namespaces=ns)), float(e.findtext("l:yCoord", namespaces=ns)), z)
                )
    x_px, y_px, z_mm = np.mean(pts, axis=0)
    vol = read_volume(case)
    truth_mm = vol.voxel_to_patient((0, y_px, x_px))
    truth_mm[2] = z_mm
    out = cli("analyze", "--json", case, env={"TRIAGE_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    nodules = [f for f in res["findings"] if f["kind"] == "nodule"]
    assert nodules, f"no nodule reported; scores {res['scores']}"
    dist = min(np.linalg.norm(np.array(f["center_mm"]) - truth_mm) for f in nodules)
    assert dist <= 10.0, f"nearest reported nodule is {dist:.1f} mm from the readers' centroid"
