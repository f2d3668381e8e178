"""Tests of series reading: ordering, HU, zips, compressed syntaxes, Enhanced CT, series selection."""

from __future__ import annotations

import subprocess
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from inference.dicom import inspect_paths, read_volume, scan
from inference.dicom.ct_writer import derived_uid
from tests.dcmtk import require_dcmtk
from tests.factories import make_volume, write_study


def test_shuffled_series_comes_back_sorted_along_the_normal(tmp_path, settings):
    """Test that slices written in shuffled order and names are sorted by position, not name/InstanceNumber."""
    vol, paths = write_study(tmp_path / "s", shuffle_seed=3)
    for p in paths:  # make InstanceNumber lie too
        ds = pydicom.dcmread(p)
        ds.InstanceNumber = 1000 - int(ds.InstanceNumber)
        ds.save_as(p)
    back = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.spacing_mm, vol.spacing_mm)
    np.testing.assert_allclose(back.origin_mm, vol.origin_mm, atol=1e-4)
    np.testing.assert_array_equal(back.hu[:, 0, 0], np.arange(vol.shape[0]) * 10)


def test_descending_slices_and_oblique_in_plane_direction(tmp_path, settings):
    """Test that a stack whose normal points feet-ward still maps the sphere to the same patient position."""
    flip = np.diag([1.0, -1.0, -1.0])  # rows go anterior, slices go downwards
    vol = make_volume(direction=flip)
    write_study(tmp_path / "s", vol)
    back = read_volume(tmp_path / "s")
    c = vol.meta["sphere_kji"]
    np.testing.assert_allclose(
        back.voxel_to_patient(back.patient_to_voxel(vol.voxel_to_patient(c))), vol.voxel_to_patient(c), atol=1e-3
    )
    k, j, i = np.round(back.patient_to_voxel(vol.voxel_to_patient(c))).astype(int)
    assert back.hu[k, j, i] > 600


def test_per_slice_rescale_slope_and_intercept_are_applied(tmp_path, settings):
    """Test that each slice's own RescaleSlope/Intercept is used (here: different on every slice)."""
    vol, paths = write_study(tmp_path / "s")
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        slope, inter = (2.0, -2048.0) if k % 2 else (1.0, -1024.0)
        hu = vol.hu[k].astype(np.float64)
        ds.PixelData = np.round((hu - inter) / slope).astype(np.uint16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{inter:g}"
        ds.save_as(p)
    back = read_volume(tmp_path / "s")
    assert np.abs(back.hu.astype(int) - vol.hu).max() <= 1


def test_zip_archive_reads_like_a_folder(tmp_path, settings):
    """Test that a zip of the series gives the same volume as the folder."""
    vol, paths = write_study(tmp_path / "s")
    z = tmp_path / "study.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in paths:
            zf.write(p, f"nested/dir/{p.name}")
        zf.writestr("README.txt", "not dicom")
    back = read_volume(z)
    np.testing.assert_array_equal(back.hu, vol.hu)
    result = scan([z])
    assert len(result.unreadable) == 1 and result.unreadable[0][0].member == "README.txt"


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_transfer_syntax_round_trip(tmp_path, settings, syntax):
    """Test that RLE, JPEG-LS and JPEG 2000 lossless series decode to the exact HU written."""
    vol, paths = write_study(tmp_path / "s", transfer_syntax_uid=syntax)
    assert pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    back = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(back.hu, vol.hu)
    assert back.meta["transfer_syntax"] == syntax


def test_jpeg_lossless_from_dcmtk_decodes(tmp_path, settings):
    """Test that a series JPEG-lossless-compressed by a real peer (dcmtk dcmcjpeg) decodes exactly."""
    exe = require_dcmtk("dcmcjpeg")
    vol, paths = write_study(tmp_path / "raw")
    out = tmp_path / "jpeg"
    out.mkdir()
    for p in paths:
        subprocess.run([exe, "+e1", str(p), str(out / p.name)], check=True, capture_output=True)
    ts = pydicom.dcmread(next(out.iterdir()), stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts == "1.2.840.10008.1.2.4.70"  # JPEG Lossless SV1
    np.testing.assert_array_equal(read_volume(out).hu, vol.hu)


def test_selection_prefers_most_slices_thinnest_and_skips_localizer(tmp_path, settings):
    """Test that the thin axial series is chosen over a thick one, and scouts/dose reports are skipped."""
    thin = make_volume(shape=(20, 32, 32), spacing=(1.0, 0.7, 0.7), uid_tag="x")
    thick = thin.with_array(thin.hu[::2].copy(), spacing_mm=(2.0, 0.7, 0.7), series_uid=derived_uid(thin.series_uid, 2))
    scout = thin.with_array(thin.hu[:10].copy(), series_uid=derived_uid(thin.series_uid, 3))
    write_study(tmp_path / "a", thin, headers={"SliceThickness": "1.0", "SeriesDescription": "Lung 1.0"})
    write_study(tmp_path / "b", thick, headers={"SliceThickness": "2.0"})
    write_study(tmp_path / "c", scout, headers={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    _, (rep,) = inspect_paths([tmp_path])
    assert rep.ok and rep.selected_series_uid == thin.series_uid
    reasons = {s["series_uid"]: s["skip_reason"] for s in rep.series}
    assert "LOCALIZER" in reasons[scout.series_uid]
    assert reasons[thick.series_uid] is None  # a candidate, just ranked lower
    assert "20 slices" in rep.selection_reason


def test_kernel_preference_breaks_ties(tmp_path, settings):
    """Test that between equal series the soft-tissue kernel is preferred over the sharp lung kernel."""
    a = make_volume(uid_tag="k")
    b = a.with_array(a.hu.copy(), series_uid=derived_uid(a.series_uid, 9))
    write_study(tmp_path / "a", a, headers={"ConvolutionKernel": "B70f"})
    write_study(tmp_path / "b", b, headers={"ConvolutionKernel": "B30f"})
    _, (rep,) = inspect_paths([tmp_path])
    assert rep.selected_series_uid == b.series_uid
    assert "soft tissue" in rep.selection_reason


def test_fallback_to_next_series_when_best_fails_the_gate(tmp_path, settings):
    """Test that a usable second series is used when the best-ranked one has missing slices, with a warning."""
    a = make_volume(shape=(20, 32, 32), spacing=(1.0, 0.7, 0.7), uid_tag="f")
    b = a.with_array(a.hu[::2].copy(), spacing_mm=(2.0, 0.7, 0.7), series_uid=derived_uid(a.series_uid, 2))
    _, paths = write_study(tmp_path / "a", a, headers={"SliceThickness": "1.0"})
    paths[10].unlink()
    paths[11].unlink()
    write_study(tmp_path / "b", b, headers={"SliceThickness": "2.0"})
    _, (rep,) = inspect_paths([tmp_path])
    assert rep.ok and rep.selected_series_uid == b.series_uid
    assert any(i.code == "missing_slices" and i.severity == "warning" for i in rep.issues)


def _enhanced_ct(vol, path):
    """Write ``vol`` as one Enhanced CT multi-frame file (shared + per-frame functional groups)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = vol.study_uid, vol.series_uid
    ds.Modality, ds.BodyPartExamined = "CT", "CHEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = vol.shape[0]
    pm = Dataset()
    pm.PixelSpacing = [vol.spacing_mm[1], vol.spacing_mm[2]]
    pm.SliceThickness = vol.spacing_mm[0]
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, -1024, "HU"
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([pm])
    shared.PlaneOrientationSequence = Sequence([po])
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    order = list(reversed(range(vol.shape[0])))  # frames stored in reverse slice order
    for k in order:
        pp = Dataset()
        pp.ImagePositionPatient = list(vol.voxel_to_patient((k, 0, 0)))
        fg = Dataset()
        fg.PlanePositionSequence = Sequence([pp])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(
        (vol.hu[order].astype(np.int32) + 1024).astype(np.uint16), "MONOCHROME2", 16, generate_instance_uid=False
    )
    ds.save_as(path, enforce_file_format=True)


def test_enhanced_ct_multiframe_is_read(tmp_path, settings):
    """Test that an Enhanced CT multi-frame file (frames out of order) gives the same volume as single frames."""
    vol = make_volume(uid_tag="mf")
    (tmp_path / "mf").mkdir()
    _enhanced_ct(vol, tmp_path / "mf" / "enhanced.dcm")
    back = read_volume(tmp_path / "mf")
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.spacing_mm, vol.spacing_mm)
    assert back.meta["multiframe"] is True
