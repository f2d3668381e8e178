"""Tests of the quality gate: one crafted bad series per rejection code, and the partial-coverage warning."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from inference.dicom import UnusableStudy, read_volume
from tests.factories import make_volume, write_study


def _edit(paths, fn):
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        fn(k, ds)
        ds.save_as(p)


def _reject(path, code):
    with pytest.raises(UnusableStudy) as exc:
        read_volume(path)
    assert code in exc.value.codes, exc.value.codes
    issue = next(i for i in exc.value.issues if i.code == code)
    assert issue.message and issue.advice  # what is wrong and what to do
    return issue


def test_not_ct(tmp_path, settings):
    """Test that an MR series is rejected as not_ct."""
    _, paths = write_study(tmp_path / "s")
    _edit(paths, lambda k, ds: setattr(ds, "Modality", "MR"))
    _reject(tmp_path / "s", "not_ct")


def test_not_chest(tmp_path, settings):
    """Test that a CT labelled as a head scan is rejected as not_chest."""
    write_study(tmp_path / "s", headers={"BodyPartExamined": "HEAD"})
    _reject(tmp_path / "s", "not_chest")


def test_no_axial_series(tmp_path, settings):
    """Test that a coronal reformat alone is rejected as no_axial_series."""
    coronal = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float)  # columns: i, j, k axes in LPS
    write_study(tmp_path / "s", make_volume(direction=coronal))
    issue = _reject(tmp_path / "s", "no_axial_series")
    assert "axial" in issue.message


def test_localizer_only_is_no_axial_series(tmp_path, settings):
    """Test that a study with only a scout is rejected, not analysed."""
    write_study(tmp_path / "s", headers={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    _reject(tmp_path / "s", "no_axial_series")


def test_too_few_slices(tmp_path, settings):
    """Test that a 3-slice series is rejected as too_few_slices."""
    write_study(tmp_path / "s", make_volume(shape=(3, 32, 32)))
    issue = _reject(tmp_path / "s", "too_few_slices")
    assert "3 slice" in issue.message


def test_slice_too_thick(tmp_path, settings):
    """Test that 5 mm slices are rejected with the limit named."""
    write_study(tmp_path / "s", make_volume(spacing=(5.0, 0.7, 0.7)), headers={"SliceThickness": "5"})
    issue = _reject(tmp_path / "s", "slice_too_thick")
    assert "5 mm" in issue.message and "3 mm" in issue.message


def test_missing_slice(tmp_path, settings):
    """Test that one missing slice in the middle (gap 2x the spacing) is rejected as missing_slices."""
    _, paths = write_study(tmp_path / "s")
    paths[5].unlink()
    _reject(tmp_path / "s", "missing_slices")


def test_duplicate_positions(tmp_path, settings):
    """Test that two different slices at the same position are rejected."""
    _, paths = write_study(tmp_path / "s")
    vol = make_volume()
    pos = [str(v) for v in vol.voxel_to_patient((4, 0, 0))]
    _edit(paths[5:6], lambda k, ds: setattr(ds, "ImagePositionPatient", pos))
    _reject(tmp_path / "s", "duplicate_positions")


def test_inconsistent_rows_columns(tmp_path, settings):
    """Test that one slice with another matrix size makes the series inconsistent."""
    _, paths = write_study(tmp_path / "s")

    def shrink(k, ds):
        ds.set_pixel_data(np.zeros((40, 40), np.uint16), "MONOCHROME2", 16, generate_instance_uid=False)

    _edit(paths[3:4], shrink)
    _reject(tmp_path / "s", "inconsistent_geometry")


def test_gantry_tilt(tmp_path, settings):
    """Test that slices sheared along y by a 10 degree tilt are rejected as gantry_tilt."""
    vol, paths = write_study(tmp_path / "s")
    shift = np.tan(np.radians(10)) * vol.spacing_mm[0]

    def tilt(k, ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.4f}", f"{y + (ds.InstanceNumber - 1) * shift:.4f}", f"{z:.4f}"]

    _edit(paths, tilt)
    issue = _reject(tmp_path / "s", "gantry_tilt")
    assert "10.0°" in issue.message


def test_truncated_pixel_data(tmp_path, settings):
    """Test that a slice whose pixel data is cut short is rejected as pixel_data_unreadable, naming the file."""
    _, paths = write_study(tmp_path / "s")
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[: len(data) - 500])
    issue = _reject(tmp_path / "s", "pixel_data_unreadable")
    assert paths[4].name in issue.message


def test_partial_coverage_is_a_warning_not_a_rejection(tmp_path, settings):
    """Test that a short but clean series is analysable and carries a partial_coverage warning."""
    write_study(tmp_path / "s")
    vol = read_volume(tmp_path / "s")
    assert [w["code"] for w in vol.warnings] == ["partial_coverage"]


def test_limits_come_from_settings(tmp_path, monkeypatch):
    """Test that TRIAGE_QUALITY__MAX_SLICE_THICKNESS_MM changes the verdict."""
    from inference.config import get_settings

    write_study(tmp_path / "s", make_volume(spacing=(5.0, 0.7, 0.7)), headers={"SliceThickness": "5"})
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("TRIAGE_QUALITY__MAX_SLICE_THICKNESS_MM", "6")
    get_settings.cache_clear()
    try:
        assert read_volume(tmp_path / "s").shape[0] == 12
    finally:
        get_settings.cache_clear()


def test_no_dicom_at_all(tmp_path, settings):
    """Test that a folder of non-DICOM files is rejected as no_dicom."""
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.txt").write_text("hello")
    _reject(tmp_path / "s", "no_dicom")
