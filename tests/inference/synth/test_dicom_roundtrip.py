"""Write synthetic studies as DICOM, read them back with the project's reader, compare geometry and bytes."""

from __future__ import annotations

import json

import numpy as np

from inference.dicom import read_volume
from inference.synth.output import write_study
from inference.synth.study import generate_study


def test_ground_truth_centres_match_reader_geometry(ctpa_study, tmp_path):
    """Test that ground-truth centres (mm) equal the reader's mapping of the centre voxels, and HU survive."""
    write_study(ctpa_study, tmp_path / "case", case_number=3, preview=False)
    gt = json.loads((tmp_path / "case" / "ground_truth.json").read_text())
    vol = read_volume(tmp_path / "case" / "dicom")
    assert vol.shape == ctpa_study.volume.shape
    assert np.array_equal(vol.hu, ctpa_study.volume.hu)
    labels = np.load(tmp_path / "case" / "labels.npz")["labels"]
    assert gt["lesions"]
    for les in gt["lesions"]:
        from_reader = vol.voxel_to_patient(les["center_voxel"])
        assert np.allclose(from_reader, les["center_mm"], atol=0.01)
        back = vol.patient_to_voxel(les["center_mm"])
        assert np.allclose(back, les["center_voxel"], atol=0.01)
        # the lesion's label occupies the neighbourhood of its centre
        k, j, i = np.round(back).astype(int)
        assert (labels[k - 2 : k + 3, j - 3 : j + 4, i - 3 : i + 4] == les["label"]).any()


def test_headers_realistic_and_synthetic(ctpa_study, tmp_path):
    """Test that DICOM headers carry the scanner profile, CTPA contrast and clearly synthetic identity."""
    import pydicom

    write_study(ctpa_study, tmp_path / "c", case_number=7, preview=False)
    ds = pydicom.dcmread(sorted((tmp_path / "c" / "dicom").glob("*.dcm"))[0])
    assert str(ds.PatientName) == "SYNTHETIC^CASE0007"
    assert ds.PatientID.startswith("SYN") and ds.AccessionNumber.startswith("SYN")
    assert ds.Manufacturer == "SIEMENS" and ds.ConvolutionKernel == "B30f" and float(ds.KVP) == 120
    assert ds.BodyPartExamined == "CHEST" and ds.ContrastBolusAgent
    assert float(ds.SliceThickness) == ctpa_study.volume.meta["slice_thickness"]


def test_same_seed_same_bytes(tmp_path):
    """Test that the same seed gives byte-identical volumes, labels and DICOM files; another seed differs."""
    a = generate_study(5, size="small", contrast="mixed", lesions="auto")
    b = generate_study(5, size="small", contrast="mixed", lesions="auto")
    c = generate_study(6, size="small", contrast="mixed", lesions="auto")
    assert a.volume.hu.tobytes() == b.volume.hu.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.lesions == b.lesions
    assert a.volume.hu.tobytes() != c.volume.hu.tobytes()
    write_study(a, tmp_path / "a", preview=False)
    write_study(b, tmp_path / "b", preview=False)
    fa = sorted((tmp_path / "a" / "dicom").glob("*.dcm"))
    fb = sorted((tmp_path / "b" / "dicom").glob("*.dcm"))
    assert len(fa) == a.volume.shape[0]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    assert (tmp_path / "a" / "ground_truth.json").read_bytes() == (tmp_path / "b" / "ground_truth.json").read_bytes()
