"""Real CT without a nodule: the served nodule models must report nothing there (issue #12, "a vessel-only real
patch is not reported"). Real data from ``../shared/data``; the report threshold is the card's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.engine import Engine
from inference.model_card import ModelCard
from inference.models.nodule import detect_nodules
from inference.volume import Volume

MODELS = Path(__file__).resolve().parents[3] / "assets" / "models"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(MODELS, ["CPUExecutionProvider"], threads=2)


def _crop(vol: Volume, sl: tuple[slice, slice, slice]) -> Volume:
    start = [s.start or 0 for s in sl]
    return vol.with_array(np.ascontiguousarray(vol.hu[sl]), origin_mm=tuple(vol.voxel_to_patient(start)))


def _hemithorax_without_lesion(shared: Path, name: str) -> tuple[Volume, np.ndarray]:
    """The half of a pyradiomics scan (split at the middle column) that holds none of its labelled lesion."""
    pytest.importorskip("nrrd", reason="pynrrd (dev extra) reads the real NRRD scans")
    from inference.training.nodule.real import load_nrrd

    vol, lab = load_nrrd(shared / "pyradiomics-lung" / f"{name}_image.nrrd",
                         shared / "pyradiomics-lung" / f"{name}_label.nrrd")
    mid = vol.shape[2] // 2
    lesion_i = np.argwhere(lab > 0)[:, 2]
    sl = (slice(None), slice(None), slice(mid, None) if lesion_i.max() < mid else slice(0, mid))
    assert not lab[sl].any()
    return _crop(vol, sl), lab


def _report(engine: Engine) -> float:
    return float(ModelCard.load(MODELS / "nodule_cls.json").thresholds["report"])


@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_lesion_free_real_hemithorax_is_not_reported(engine, shared_data, name):
    """Test that the half of a real full-thorax CT without its labelled lesion (lung vessels, hilum, heart,
    airways, chest wall) yields no nodule candidate at or above the report threshold and no mass, so its study
    nodule score stays under the report threshold (neither scan's nodule network saw it; lung2 is the real
    validation scan that bounds the report threshold). lung1's left half once gave two 0.9 "masses": the heart
    and the hilum, cut off from the mediastinum by the field of view."""
    from inference import triage

    vol, _ = _hemithorax_without_lesion(shared_data, name)
    r = detect_nodules(vol, engine, maps=False)
    lung_ml = r.prepared.lung.sum() * np.prod(r.prepared.spacing) / 1000 if r.prepared is not None else 0.0
    assert lung_ml > 100  # a real lung was analysed
    reported = [(round(c.probability, 3), c.diameter_mm) for c in r.candidates if c.probability >= _report(engine)]
    assert reported == [], f"vessels reported as nodules: {reported}"
    assert [(m.diameter_mm, m.center_voxel) for m in r.masses] == []
    findings, _ = triage._nodule_findings(r, vol, _report(engine))
    assert triage.study_nodule_score(findings) < _report(engine)


def test_real_cta_crop_is_not_reported(engine, shared_data):
    """Test that the real contrast CT crop (opacified pulmonary arteries and their branches, no known nodule)
    yields no nodule candidate at or above the report threshold."""
    from inference.synth.insert import load_nifti

    vol, _ = load_nifti(shared_data / "real-cta-crop" / "aorta_report_ct_cropped.nii.gz")
    r = detect_nodules(vol, engine, maps=False)
    assert max((c.probability for c in r.candidates), default=0.0) < _report(engine)
