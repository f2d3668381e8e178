"""Receiver hardening (#17.2, #17.8): idle connections cannot starve it; a cut transfer is never a result."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import sqlalchemy as sa
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from inference.config import Settings
from inference.dicom.receiver import INCOMPLETE_REASON, Receiver
from tests.dcmtk import require_dcmtk
from tests.factories import write_study
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _storescu(port: int, folder: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require_dcmtk("storescu"), "-aec", "TRIAGE", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _send_part_and_abort(port: int, paths: list[Path], n: int) -> None:
    """A real DICOM peer (pynetdicom SCU) stores ``n`` instances, then aborts the association."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
    assert assoc.is_established
    for p in paths[:n]:
        assert assoc.send_c_store(pydicom.dcmread(p)).Status == 0
    assoc.abort()


def test_idle_connections_do_not_lock_out_a_real_sender(tmp_path):
    """Test that 10 silent TCP connections (more than the association limit) neither stop dcmtk's storescu
    from storing at once nor stay open past the ACSE timeout."""
    settings = Settings(
        data_dir=tmp_path / "data",
        receiver_port=_free_port(),
        receiver_max_associations=3,
        receiver_acse_timeout_s=2.0,
        study_quiet_period_s=30,
    )
    rec = Receiver(settings, on_complete=lambda uid: None, on_first_instance=lambda uid: None)
    rec.start()
    idle = []
    try:
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", settings.receiver_port))
            s.settimeout(10)
            idle.append(s)
        time.sleep(0.3)
        vol, paths = write_study(tmp_path / "send")
        t0 = time.monotonic()
        out = _storescu(settings.receiver_port, tmp_path / "send", timeout=20)
        elapsed = time.monotonic() - t0
        assert out.returncode == 0, out.stderr
        assert elapsed < 5, elapsed
        assert len(list((settings.inbox_dir / vol.study_uid).rglob("*.dcm"))) == len(paths)
        t0 = time.monotonic()
        for s in idle:  # dropped by the receiver: recv returns b"" (closed) well before the 10 s timeout
            assert s.recv(1) == b""
        assert time.monotonic() - t0 < 6
    finally:
        for s in idle:
            s.close()
        rec.stop()


def test_aborted_association_marks_the_study_incomplete_until_a_full_resend(tmp_path):
    """Test that an A-ABORT after 5 of 12 instances marks the study incomplete (never completed or queued, even
    after the quiet period), and that a full re-send that releases normally completes it."""
    settings = Settings(data_dir=tmp_path / "data", receiver_port=_free_port(), study_quiet_period_s=0.5)
    completed, incomplete = [], []
    rec = Receiver(
        settings,
        on_complete=completed.append,
        on_first_instance=lambda uid: None,
        on_incomplete=lambda uid, why: incomplete.append((uid, why)),
    )
    rec.start()
    try:
        vol, paths = write_study(tmp_path / "send")
        _send_part_and_abort(settings.receiver_port, sorted(paths), 5)
        assert wait_until(lambda: incomplete)
        ((uid, why),) = incomplete
        assert uid == vol.study_uid and why.startswith(INCOMPLETE_REASON) and "5 instance(s)" in why
        time.sleep(1.5)  # three quiet periods: still not complete
        assert completed == []
        out = _storescu(settings.receiver_port, tmp_path / "send")
        assert out.returncode == 0, out.stderr
        assert wait_until(lambda: completed == [vol.study_uid])
        assert not [p for p in (settings.data_dir / "transfers").rglob("*") if p.is_file()]
        assert len(incomplete) == 1
    finally:
        rec.stop()


def _receiver_proc(settings_env: dict, port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inference.cli", "receive", "--port", str(port), "--quiet-period", "0.5"],
        cwd=ROOT,
        env={**os.environ, **settings_env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _status(data: Path, uid: str):
    engine = sa.create_engine(f"sqlite:///{data / 'triage.db'}")
    try:
        with engine.connect() as c:
            return c.execute(
                sa.text("SELECT status, attention_reason FROM study WHERE study_uid = :u"), {"u": uid}
            ).first()
    finally:
        engine.dispose()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_receiver_killed_mid_transfer_leaves_an_incomplete_study_not_a_result(tmp_path):
    """Test that when `triage receive` is killed after 5 of 12 instances, the restarted receiver marks the
    study incomplete ("waiting for re-send") and queues nothing; a full re-send queues it."""
    data = tmp_path / "data"
    env = {"TRIAGE_DATA_DIR": str(data)}
    port = _free_port()
    vol, paths = write_study(tmp_path / "send")
    with open(tmp_path / "receiver.log", "w") as log:
        proc = _receiver_proc(env, port, log)
        try:
            assert wait_until(lambda: _listening(port), 60)
            ae = AE(ae_title="MODALITY")
            ae.add_requested_context(CTImageStorage, pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID)
            assoc = ae.associate("127.0.0.1", port, ae_title="TRIAGE")
            for p in sorted(paths)[:5]:
                assert assoc.send_c_store(pydicom.dcmread(p)).Status == 0
            os.killpg(proc.pid, signal.SIGKILL)  # the receiver dies mid-transfer
            proc.wait(timeout=10)
            assoc.abort()
            proc = _receiver_proc(env, port, log)
            assert wait_until(lambda: _listening(port), 60)
            assert wait_until(lambda: (_status(data, vol.study_uid) or ("",))[0] == "incomplete", 30)
            status, reason = _status(data, vol.study_uid)
            assert reason.startswith(INCOMPLETE_REASON)
            time.sleep(1.5)
            assert _status(data, vol.study_uid)[0] == "incomplete"  # never queued
            out = _storescu(port, tmp_path / "send")
            assert out.returncode == 0, out.stderr
            assert wait_until(lambda: _status(data, vol.study_uid)[0] == "queued", 30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
