"""Tests of the C-STORE receiver against a real DICOM peer: dcmtk's echoscu and storescu."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
from pydicom.uid import JPEGLSLossless

from inference.config import Settings
from inference.dicom.receiver import Receiver
from tests.dcmtk import require_dcmtk
from tests.factories import make_volume, write_study
from tests.waiting import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dcmtk(name: str) -> str:
    return require_dcmtk(name)


@pytest.fixture
def receiver(tmp_path):
    """A receiver on a free port with hooks that record completed studies instead of queueing them."""
    settings = Settings(
        data_dir=tmp_path / "data",
        receiver_port=_free_port(),
        receiver_ae_title="TRIAGE",
        study_quiet_period_s=0.6,
    )
    completed: list[str] = []
    rec = Receiver(settings, on_complete=completed.append, on_first_instance=lambda uid: None)
    rec.completed = completed
    rec.start()
    yield rec
    rec.stop()


def _storescu(rec, folder, *extra):
    return subprocess.run(
        [
            _dcmtk("storescu"),
            "-aec",
            "TRIAGE",
            *extra,
            "+sd",
            "+r",
            "127.0.0.1",
            str(rec.settings.receiver_port),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_echoscu_verification(receiver):
    """Test that dcmtk's echoscu gets a successful C-ECHO."""
    out = subprocess.run(
        [_dcmtk("echoscu"), "-aec", "TRIAGE", "127.0.0.1", str(receiver.settings.receiver_port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


def test_storescu_study_lands_in_inbox_once_and_completes_after_quiet_period(receiver, tmp_path):
    """Test that a pushed series is stored byte-identical, completes once, and a re-send stores nothing new."""
    vol, paths = write_study(tmp_path / "send")
    out = _storescu(receiver, tmp_path / "send")
    assert out.returncode == 0, out.stderr
    stored = sorted((receiver.settings.inbox_dir / vol.study_uid / vol.series_uid).glob("*.dcm"))
    assert len(stored) == len(paths)
    import pydicom

    def body(path):  # the dataset as sent (the file meta header is written by each side itself)
        ds = pydicom.dcmread(path)
        return ds.SOPInstanceUID, bytes(ds.PixelData), ds

    sent = {uid: (px, ds) for uid, px, ds in map(body, paths)}
    for uid, px, ds in map(body, stored):
        assert px == sent[uid][0] and ds == sent[uid][1]
    assert wait_until(lambda: receiver.completed == [vol.study_uid])
    out = _storescu(receiver, tmp_path / "send")
    assert out.returncode == 0
    assert receiver.stats["duplicate"] == len(paths)
    assert len(list(receiver.settings.inbox_dir.rglob("*.dcm"))) == len(paths)
    time.sleep(3 * receiver.settings.study_quiet_period_s)
    assert receiver.completed == [vol.study_uid]  # nothing new arrived: not queued again


def test_storescu_compressed_transfer_syntax(receiver, tmp_path):
    """Test that a JPEG-LS lossless series is accepted and kept in its compressed syntax."""
    import pydicom

    vol, paths = write_study(tmp_path / "send", make_volume(uid_tag="jls"), transfer_syntax_uid=JPEGLSLossless)
    out = _storescu(receiver, tmp_path / "send", "-xt")  # -xt: propose JPEG-LS lossless
    assert out.returncode == 0, out.stderr
    stored = list((receiver.settings.inbox_dir / vol.study_uid).rglob("*.dcm"))
    assert len(stored) == len(paths)
    assert pydicom.dcmread(stored[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEGLSLossless


def test_allow_list_rejects_unknown_callers(tmp_path):
    """Test that with an allow-list only the listed calling AE title can store."""
    settings = Settings(
        data_dir=tmp_path / "data",
        receiver_port=_free_port(),
        receiver_allowed_callers=["PACS1"],
        study_quiet_period_s=5,
    )
    rec = Receiver(settings, on_complete=lambda uid: None, on_first_instance=lambda uid: None)
    rec.start()
    try:
        write_study(tmp_path / "send")
        bad = _storescu(rec, tmp_path / "send", "-aet", "INTRUDER")
        assert bad.returncode != 0
        assert not list(settings.data_dir.rglob("*.dcm"))
        good = _storescu(rec, tmp_path / "send", "-aet", "PACS1")
        assert good.returncode == 0, good.stderr
        assert len(list(settings.inbox_dir.rglob("*.dcm"))) == 12
    finally:
        rec.stop()


def test_restarted_receiver_resumes_incomplete_studies(tmp_path):
    """Test that studies in the inbox but never completed are picked up by a new receiver."""
    settings = Settings(data_dir=tmp_path / "data", receiver_port=_free_port(), study_quiet_period_s=0.3)
    vol, paths = write_study(tmp_path / "send")
    target = settings.inbox_dir / vol.study_uid / vol.series_uid
    target.mkdir(parents=True)
    for p in paths:
        shutil.copy(p, target / p.name)
    completed: list[str] = []
    rec = Receiver(settings, on_complete=completed.append, on_first_instance=lambda uid: None)
    rec.start()
    try:
        assert wait_until(lambda: completed == [vol.study_uid])
    finally:
        rec.stop()


def test_restart_recovery_reads_states_from_the_embedded_database(tmp_path, caplog):
    """Test that on restart only inbox studies the database still holds as 'received' are re-tracked: one
    already queued stays alone, one never registered is resumed, and the embedded database needs no set-up."""
    from db.ingest import mark_queued, upsert_study
    from db.session import session_scope
    from inference.intake import open_database

    settings = Settings(data_dir=tmp_path / "data", receiver_port=_free_port(), study_quiet_period_s=0.3)
    queued, new = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"
    for uid in (queued, new):
        (settings.inbox_dir / uid / "series").mkdir(parents=True)
    first = Receiver(settings, on_complete=lambda uid: None, on_first_instance=lambda uid: None)
    with caplog.at_level("WARNING", logger="inference"):  # no database yet: it is created, both resumed
        assert first.resume_incomplete() == [queued, new]
    with session_scope(open_database(settings)) as session:
        upsert_study(session=session, study_uid=queued)
        mark_queued(session=session, study_uid=queued)
    rec = Receiver(settings, on_complete=lambda uid: None, on_first_instance=lambda uid: None)
    with caplog.at_level("WARNING", logger="inference"):
        assert rec.resume_incomplete() == [new]
    assert "cannot read study states" not in caplog.text
