"""Tests of the lesion-keeping lung region and the mass detector, on crafted phantoms and the real scans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.models.lung_region import lesion_region
from inference.models.mass import detect_masses
from inference.models.nodule_prep import lung_mask, resample
from inference.volume import Volume
from tests.conftest import require_shared_data

SP = (2.0, 2.0, 2.0)
PYRAD = "pyradiomics-lung"


def _phantom(shape=(80, 150, 200)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chest phantom on a 2 mm grid: body, two lungs (-850 HU) around a mediastinum, a spine (bone).

    Returns (hu, right_lung, left_lung) with the lungs as ellipsoid masks.
    """
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    hu = np.full(shape, -1000.0, np.float32)
    body = ((j - 75) / 70.0) ** 2 + ((i - 100) / 97.0) ** 2 <= 1
    hu[np.broadcast_to(body, shape)] = 30.0
    zc = ((k - 40) / 38.0) ** 2
    right = zc + ((j - 75) / 52.0) ** 2 + ((i - 45) / 32.0) ** 2 <= 1  # lungs 46 voxels (92 mm) apart
    left = zc + ((j - 75) / 52.0) ** 2 + ((i - 155) / 32.0) ** 2 <= 1
    hu[right | left] = -850.0
    spine = ((j - 128) / 9.0) ** 2 + ((i - 100) / 9.0) ** 2 <= 1
    hu[np.broadcast_to(spine, shape)] = 700.0
    return hu, right, left


def _ball(shape, centre, radius_vox) -> np.ndarray:
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius_vox**2


def _region(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lung = lung_mask(Volume(hu=hu.astype(np.int16), spacing_mm=SP))
    region, hull = lesion_region(hu, lung, SP)
    return lung, region, hull


@pytest.mark.parametrize("where,centre,radius", [
    ("juxta-pleural (lateral wall)", (40, 75, 16), 7),        # 28 mm nodule on the right lateral pleura
    ("juxta-mediastinal", (40, 75, 126), 6),                  # 24 mm on the left lung's mediastinal side
    ("paravertebral", (40, 118, 130), 8),                     # 32 mm in the left posterior gutter
    ("juxta-diaphragmatic", (8, 75, 22), 6),                  # at the base of the right lung, lateral
])
def test_lesions_touching_pleura_or_mediastinum_lie_inside_the_region(where, centre, radius):
    """Test that a crafted lesion against the pleura, mediastinum, spine or diaphragm lies >= 95 % inside the
    lesion region while the air-threshold lung mask cuts part of it away."""
    hu, right, left = _phantom()
    lesion = _ball(hu.shape, centre, radius) & (right | left)  # flattened against the lung's border
    hu[lesion] = 40.0
    lung, region, _ = _region(hu)
    inside = (region & lesion).sum() / lesion.sum()
    assert inside >= 0.95, f"{where}: {inside:.2f} inside"
    assert (lung & lesion).sum() / lesion.sum() < 0.95  # the air-threshold mask alone cuts it
    # the region is not the whole thorax: the mediastinum between the lungs stays out
    assert not region[40, 75, 100]


def test_hemithorax_crop_keeps_its_juxta_pleural_lesion():
    """Test that a crop holding one lung only still gets its pleural-based lesion into the region."""
    hu, right, left = _phantom()
    lesion = _ball(hu.shape, (40, 115, 30), 9) & right
    hu[lesion] = 40.0
    crop = np.ascontiguousarray(hu[:, :, :95])
    _, region, _ = _region(crop)
    les = lesion[:, :, :95]
    assert (region & les).sum() / les.sum() >= 0.95


def test_hemithorax_crop_reports_its_lateral_mass_once():
    """Test that a 36 mm mass against the lateral pleura of a one-lung crop is one mass: the one-lung rule
    against tissue running on medially out of the lung's hull (the heart and hilum of a hemithorax crop) looks
    at the medial side only, so the chest wall behind a pleural mass does not count against it."""
    hu, _, left = _phantom()
    hu[_ball(hu.shape, (45, 75, 180), 9) & left] = 40.0
    crop = np.ascontiguousarray(hu[:, :, 100:])
    lung, region, hull = _region(crop)
    masses = detect_masses(crop, lung, hull, SP, region=region, medial=-1)
    assert len(masses) == 1 and masses[0].features["medial_cut"] < 0.05


def test_no_mass_without_a_lesion():
    """Test that the phantom's mediastinum, spine and lung bases alone give no mass."""
    hu, _, _ = _phantom()
    lung, region, hull = _region(hu)
    assert detect_masses(hu, lung, hull, SP, region=region) == []


# --- real scans ------------------------------------------------------------------------------------------

def _real(name: str):
    from inference.training.realdata import read_nrrd_volume

    d = require_shared_data() / PYRAD
    vol, label = read_nrrd_volume(d / f"{name}_image.nrrd", d / f"{name}_label.nrrd")
    hu = resample(vol.hu, vol.spacing_mm, SP, order=1, cval=-1024.0)
    lab = resample(label.astype(np.uint8), vol.spacing_mm, SP, order=0).astype(bool)
    return vol, hu, lab


@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_real_annotated_lesions_lie_inside_the_region(name):
    """Test that the annotated lesion of each real full-thorax scan (lung1 nodule, lung2 paravertebral mass)
    lies >= 95 % inside the region (lung2's mass was 46 % inside the air-threshold lung mask)."""
    _, hu, lab = _real(name)
    lung, region, _ = _region(hu)
    assert (region & lab).sum() / lab.sum() >= 0.95


def test_real_lidc_reader_outlines_lie_inside_the_region(shared_data):
    """Test that every LIDC reader outline of the three real slabs lies >= 95 % inside the region."""
    from inference.dicom import read_volume
    from inference.training.nodule.lidc import reader_masks

    for case in ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"):
        vol = read_volume(shared_data / "lidc-idri-slices" / case)
        (xml,) = (shared_data / "lidc-idri-slices" / "xml").glob(f"{case}_*.xml")
        masks = reader_masks(xml, vol)
        assert masks, case
        truth = np.any(masks, axis=0)
        hu = vol.hu.astype(np.float32)
        lung = lung_mask(vol)
        region, _ = lesion_region(hu, lung, vol.spacing_mm)
        assert (region & truth).sum() / truth.sum() >= 0.95, case


def test_cli_analyze_reports_the_lung2_mass(tmp_path):
    """Test that `triage analyze --json` on the real lung2 scan (written as a DICOM series) reports its 5 cm
    paravertebral mass as one finding of kind mass near the label's centroid, with the size within 30 %."""
    from inference.dicom.ct_writer import write_ct_series

    vol, _, _ = _real("lung2")
    write_ct_series(vol, tmp_path / "lung2", headers={"BodyPartExamined": "CHEST"})
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path / "data"),
           "TRIAGE_QUALITY__MAX_SLICE_THICKNESS_MM": "5.5"}
    out = subprocess.run([sys.executable, "-m", "inference.cli", "analyze", str(tmp_path / "lung2"), "--json"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout)
    masses = [f for f in res["findings"] if f["kind"] == "mass"]
    assert len(masses) == 1
    m = masses[0]
    assert np.linalg.norm(np.asarray(m["center_mm"]) - [52.6, -95.9, -256.5]) < 20.0
    assert 35.0 <= m["diameter_mm"] <= 65.0  # the mass is about 5 cm
    assert m["location"].split()[0] == "left"  # the side, then the zone (inference.anatomy)
    others = [f for f in res["findings"] if f is not m and f["kind"] != "embolism"]
    assert all(np.linalg.norm(np.asarray(f["center_mm"]) - m["center_mm"]) > 30.0 for f in others)  # not split
    assert res["scores"]["nodule"] >= 0.8  # a mass ranks the study high


@pytest.mark.parametrize("seed,contrast", [(7302, "ctpa"), (12, "ctpa")])
def test_no_mass_on_lesion_free_synthetic_studies(seed, contrast):
    """Test that lesion-free synthetic studies (whose heart and liver dome once passed the rules) give no mass."""
    from inference.synth.study import generate_study

    v = generate_study(seed, contrast=contrast, size="medium", lesions="none", mimics=False).volume
    hu = resample(v.hu, v.spacing_mm, SP, order=1, cval=-1024.0)
    lung, region, hull = _region(hu)
    assert detect_masses(hu, lung, hull, SP, region=region) == []


def test_left_hemithorax_crop_of_lung2_reports_only_its_mass(shared_data):
    """Test the mass detector on a crop of the left hemithorax of lung2 (one lung in view, so the two-lung
    midline cannot be found): the labelled mass is the one mass, and the aorta beside the spine, which the
    rules passed before the lung's medial edge stood in for the midline, is not reported."""
    from inference.engine import Engine
    from inference.models.nodule import detect_nodules, medial_side, prepare

    vol, _, _ = _real("lung2")
    n = vol.shape[2]
    origin = np.asarray(vol.origin_mm) + np.asarray(vol.direction)[:, 0] * vol.spacing_mm[2] * (n // 2)
    half = Volume(hu=np.ascontiguousarray(vol.hu[:, :, n // 2:]), spacing_mm=vol.spacing_mm,
                  origin_mm=tuple(origin), direction=vol.direction)
    engine = Engine(Path(__file__).resolve().parents[3] / "assets" / "models", ["CPUExecutionProvider"], threads=2)
    prep = prepare(half, engine.cards["nodule_seg"])
    assert medial_side(half, prep) == -1  # the left lung: the midline lies towards lower i (patient right)
    res = detect_nodules(half, engine, maps=False)
    assert len(res.masses) == 1
    assert np.linalg.norm(np.asarray(res.masses[0].center_mm) - [52.6, -95.9, -256.5]) < 20.0
