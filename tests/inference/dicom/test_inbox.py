"""Tests of the inbox: atomic, idempotent storage; quarantine with reasons; nothing deleted."""

from __future__ import annotations

import json
import zipfile

from inference.dicom.inbox import ingest_paths
from tests.factories import make_volume, write_study


def _files(root):
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_ingest_stores_by_study_series_sop(tmp_path, settings):
    """Test that files land at inbox/<study>/<series>/<sop>.dcm with the bytes as received."""
    vol, paths = write_study(tmp_path / "s")
    report = ingest_paths([tmp_path / "s"], settings=settings)
    assert report.count("stored") == len(paths)
    stored = _files(settings.inbox_dir)
    assert len(stored) == len(paths)
    for p in stored:
        assert p.relative_to(settings.inbox_dir).parts[:2] == (vol.study_uid, vol.series_uid)
    assert {p.read_bytes() for p in stored} == {p.read_bytes() for p in paths}
    assert not list(settings.inbox_dir.rglob("*.tmp"))


def test_reingest_stores_nothing_twice(tmp_path, settings):
    """Test that ingesting the same files again (and via a zip) adds no file."""
    _, paths = write_study(tmp_path / "s")
    ingest_paths([tmp_path / "s"], settings=settings)
    before = _files(settings.data_dir)
    z = tmp_path / "again.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
    report = ingest_paths([tmp_path / "s", z], settings=settings)
    assert report.count("stored") == 0 and report.count("duplicate") == 2 * len(paths)
    assert _files(settings.data_dir) == before


def test_truncated_and_non_dicom_files_go_to_quarantine_with_reason(tmp_path, settings):
    """Test that a truncated DICOM and a text file are kept in quarantine with a reason file each."""
    _, paths = write_study(tmp_path / "s")
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) - 1000])
    (tmp_path / "s" / "notes.txt").write_text("this is not DICOM")
    (tmp_path / "s" / "half_header.dcm").write_bytes(data[:300])
    report = ingest_paths([tmp_path / "s"], settings=settings)
    assert report.count("quarantined") == 3
    assert report.count("stored") == len(paths) - 1
    reasons = {}
    for r in settings.quarantine_dir.glob("*.reason.json"):
        info = json.loads(r.read_text())
        reasons[info["origin"].split("/")[-1]] = info["reason"]
        kept = r.with_name(r.name[: -len(".reason.json")])
        assert kept.exists() and len(kept.read_bytes()) == info["bytes"]
    assert "truncated pixel data" in reasons[paths[0].name]
    assert "not a DICOM file" in reasons["notes.txt"]
    assert reasons["half_header.dcm"]
    assert paths[0].exists()  # the source is never deleted


def test_changed_instance_replaces_the_inbox_copy_and_the_old_bytes_stay_in_quarantine(tmp_path, settings):
    """Test that a different file reusing a stored SOP Instance UID (a corrected re-send) replaces the inbox
    copy, and the previous bytes are kept in quarantine as superseded (nothing is deleted)."""
    vol, paths = write_study(tmp_path / "a")
    ingest_paths([paths[0]], settings=settings)
    altered = vol.with_array(vol.hu + 1)
    _, paths_b = write_study(tmp_path / "b", altered)
    report = ingest_paths([paths_b[0]], settings=settings)
    assert report.outcomes[0].status == "replaced"
    assert "same SOP Instance UID" in report.outcomes[0].reason
    stored = _files(settings.inbox_dir)
    assert [p.read_bytes() for p in stored] == [paths_b[0].read_bytes()]
    kept = [p for p in _files(settings.quarantine_dir) if not p.name.endswith(".reason.json")]
    assert [p.read_bytes() for p in kept] == [paths[0].read_bytes()]
    assert "superseded" in json.loads(next(settings.quarantine_dir.glob("*.reason.json")).read_text())["reason"]


def test_unsafe_uid_cannot_escape_the_inbox(tmp_path, settings):
    """Test that a file whose UID is not a valid UID (e.g. a path) is quarantined, not written elsewhere."""
    import pydicom

    _, paths = write_study(tmp_path / "s", make_volume(shape=(2, 16, 16)))
    ds = pydicom.dcmread(paths[0])
    ds.SeriesInstanceUID = "../../../../etc"
    ds.save_as(paths[0])
    report = ingest_paths([paths[0]], settings=settings)
    assert report.outcomes[0].status == "quarantined"
    assert "SeriesInstanceUID" in report.outcomes[0].reason
    assert not (settings.data_dir.parent / "etc").exists()
