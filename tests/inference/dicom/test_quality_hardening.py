"""Quality-gate hardening (#17): one patient per study, even slice spacing, instance-count evidence."""

from __future__ import annotations

import pydicom
import pytest

from inference.dicom import UnusableStudy, read_volume
from inference.dicom.ct_writer import derived_uid
from inference.dicom.load import inspect_paths
from tests.factories import make_volume, write_study


def _edit(paths, fn):
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        fn(k, ds)
        ds.save_as(p)


def _codes(path):
    with pytest.raises(UnusableStudy) as exc:
        read_volume(path)
    for issue in exc.value.issues:
        assert issue.message and issue.advice
    return exc.value


def _z(ds):
    return float(ds.ImagePositionPatient[2])


def test_series_with_two_patient_ids_is_refused_before_analysis(tmp_path, settings):
    """Test that slices 6-10 carrying another PatientID make the study unusable as mixed_patients, with no
    volume read and no patient ID in the message."""
    _, paths = write_study(tmp_path / "s")
    _edit(paths, lambda k, ds: setattr(ds, "PatientID", "OTHER-PATIENT-77") if 5 <= k <= 9 else None)
    exc = _codes(tmp_path / "s")
    assert exc.codes == ["mixed_patients"]
    assert "OTHER-PATIENT-77" not in str(exc) and "SYN-TEST-0001" not in str(exc)
    _, (report,) = inspect_paths([tmp_path / "s"])
    assert report.volume is None and report.selected_series_uid is None


def test_second_series_of_another_patient_is_refused(tmp_path, settings):
    """Test that a study whose second series belongs to another patient is refused too."""
    vol = make_volume()
    write_study(tmp_path / "s" / "a", vol)
    other = vol.with_array(vol.hu)
    other.series_uid = derived_uid(vol.series_uid, "other")
    write_study(tmp_path / "s" / "b", other, headers={"PatientID": "SOMEONE-ELSE"})
    assert _codes(tmp_path / "s").codes == ["mixed_patients"]


def test_one_patient_id_passes(tmp_path, settings):
    """Test that the same study with one PatientID throughout is read (the check does not over-fire)."""
    write_study(tmp_path / "s")
    assert read_volume(tmp_path / "s").shape[0] == 12


def test_two_slices_moved_on_the_grid_are_uneven_spacing(tmp_path, settings):
    """Test that two slices moved by 1.1 mm on a 2.5 mm grid make the series unusable as uneven_spacing (the
    gap rule alone let this through: 3.6 mm < 1.5 x 2.5 mm)."""
    vol = make_volume(shape=(16, 40, 40), spacing=(2.5, 0.7, 0.7))
    _, paths = write_study(tmp_path / "s", vol)

    def move(k, ds):
        if k in (4, 11):
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], _z(ds) + 1.1]

    _edit(paths, move)
    exc = _codes(tmp_path / "s")
    assert exc.codes == ["uneven_spacing"]
    assert "4 slice step(s)" in str(exc) and "2.50 mm" in str(exc)


def test_rounding_noise_in_positions_is_not_uneven(tmp_path, settings):
    """Test that position noise of a few hundredths of a millimetre (scanner rounding) still reads."""
    vol = make_volume(shape=(16, 40, 40), spacing=(2.5, 0.7, 0.7))
    _, paths = write_study(tmp_path / "s", vol)
    _edit(
        paths,
        lambda k, ds: setattr(ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], _z(ds) + 0.03 * (k % 2)]),
    )
    assert read_volume(tmp_path / "s").spacing_mm[0] == pytest.approx(2.5, abs=0.05)


def test_fewer_images_than_announced_is_incomplete_series(tmp_path, settings):
    """Test that a series whose headers announce 40 images in the acquisition but hold 12 is refused as
    incomplete_series (a transfer cut mid-way with no gap), and one that holds them all reads."""
    _, paths = write_study(tmp_path / "s")
    _edit(paths, lambda k, ds: setattr(ds, "ImagesInAcquisition", 40))
    exc = _codes(tmp_path / "s")
    assert exc.codes == ["incomplete_series"] and "announce 40 images" in str(exc) and "12 arrived" in str(exc)
    _edit(paths, lambda k, ds: setattr(ds, "ImagesInAcquisition", 12))
    assert read_volume(tmp_path / "s").shape[0] == 12
