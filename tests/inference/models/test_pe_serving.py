"""Tests of the torch-free PE serving path (``inference.models.pe``) and the committed CNN-LSTM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.engine import Engine
from inference.model_card import ModelCard, sha256_file
from inference.models.pe import analyze_pe, find_pa_region
from inference.synth.study import LesionRequest, generate_study
from inference.training.pe import data
from inference.training.pe.realcta import load_real_cta
from tests.conftest import PROJECT_ROOT, require_shared_data

MODELS = PROJECT_ROOT / "assets" / "models"
PE_CARDS = ("pe_cnnlstm", "pe_cnnlstm_student")


@pytest.fixture(scope="module")
def real():
    require_shared_data()
    return load_real_cta()


@pytest.fixture(scope="module")
def engine():
    return Engine(MODELS, ["CPUExecutionProvider"], threads=2, verify=False)


def test_serving_module_does_not_import_torch():
    """Test that importing and running the region finder leaves torch and monai out of sys.modules."""
    code = ("import sys, numpy as np; import inference.models.pe as pe; from inference.volume import Volume; "
            "print('torch' in sys.modules or 'monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", PE_CARDS)
def test_card_sha256_matches_committed_onnx(name):
    """Test that each PE card loads, names its ONNX file and records that file's sha256 and the critical threshold."""
    card = ModelCard.load(MODELS / f"{name}.json")
    assert card.onnx_path.exists() and card.onnx_path.stat().st_size < 5_000_000
    assert sha256_file(card.onnx_path) == card.sha256
    assert card.preprocessing.crop == "pulmonary_arteries" and card.opset >= 14
    assert 0.0 < card.thresholds["critical"] < 1.0
    assert card.calibration.method == "platt" and card.calibration.ece_after is not None
    assert card.metrics["export_parity_max_abs_diff"]["random"] <= 1e-3
    assert card.metrics["export_parity_max_abs_diff"]["real_cta_crop"] <= 1e-3


def test_region_covers_the_real_pulmonary_arteries(real):
    """Test that the model-free region finder calls the real CTA a CTPA and its crop holds ≥ 95 % of the PA mask."""
    vol, pa = real
    r = find_pa_region(vol, data.PREPROCESSING)
    assert r.is_ctpa and r.blood_hu > 300
    k0, k1 = r.z_range
    half = data.PREPROCESSING.patch_size[0] * data.PREPROCESSING.spacing_mm[1] / vol.spacing_mm[1] / 2
    kji = np.argwhere(pa)
    inside = ((kji[:, 0] >= k0) & (kji[:, 0] <= k1) & (np.abs(kji[:, 1] - r.center_ji[0]) <= half)
              & (np.abs(kji[:, 2] - r.center_ji[1]) <= half))
    assert inside.mean() >= 0.95


def test_non_contrast_study_is_not_assessable(engine):
    """Test that a non-contrast chest CT is reported as 'not a CTPA' with no probability, never as critical."""
    st = generate_study(21, contrast="none", size="small", lesions="none", mimics=False)
    r = analyze_pe(st.volume, engine=engine)
    assert not r.is_ctpa and r.probability is None and not r.critical
    assert r.confidence == "low" and "not a CTPA" in r.reason
    assert r.heatmap.shape == st.volume.shape and r.heatmap.max() == 0.0


def test_short_slab_of_a_ctpa_is_not_assessable(real, engine):
    """Test that a 40 mm slab of a real CTA (like the LIDC sample stacks) gets no PE probability and says why,
    while the full study is assessed."""
    vol, _ = real
    assert analyze_pe(vol, engine=engine).probability is not None
    k = vol.shape[0] // 2
    n = int(40 / vol.spacing_mm[0])
    slab = vol.with_array(vol.hu[k : k + n].copy())
    r = analyze_pe(slab, engine=engine)
    assert r.probability is None and not r.critical and r.confidence == "low"
    assert "craniocaudally" in r.reason and "80 mm" in r.reason


def _central_clot(vol, pa, seed):
    """A central (pulmonary trunk / main artery) occlusive embolus inserted into the real CTA."""
    rng = np.random.default_rng(seed)
    hu, clot, _ = data.insert_embolus(vol.hu, pa, vol.spacing_mm, rng, occlusive=True, length_mm=24.0,
                                      min_radius_mm=8.0)
    return vol.with_array(np.rint(hu).astype(np.int16)), clot


def test_committed_model_scores_inserted_central_embolus_higher_and_points_at_it(real, engine):
    """Test that the committed model scores the real CTA with a central embolus clearly above the same study
    without it, and that the heatmap peak falls inside the clot (pointing game, 3 insertions)."""
    vol, pa = real
    base = analyze_pe(vol, engine=engine)
    hits = 0
    for seed in (1, 2, 3):
        v2, clot = _central_clot(vol, pa, seed)
        r = analyze_pe(v2, engine=engine)
        assert r.probability > base.probability + 0.2, (seed, r.probability, base.probability)
        hits += bool(clot[r.peak_voxel])
        # outputs live on the original grid
        assert r.heatmap.shape == vol.shape and r.heatmap.dtype == np.float32
        assert 0.0 <= r.heatmap.min() and r.heatmap.max() <= 1.0 and r.heatmap[r.peak_voxel] == r.heatmap.max()
        assert np.allclose(r.peak_mm, v2.voxel_to_patient(np.array(r.peak_voxel, float)))
        assert r.region_mask.shape == vol.shape and r.region_mask[r.peak_voxel]
        assert r.slice_probabilities.shape == (vol.shape[0],)
    assert hits == 3


@pytest.mark.parametrize("seed", [11, 12])
def test_committed_model_finds_and_locates_synthetic_central_embolus(engine, seed):
    """Test that a synthetic central (left main artery) embolus scores above the same synthetic patient without
    it, the heatmap peak is in the clot and the location reads 'central left'."""
    kw = {"contrast": "ctpa", "shape": data.SYNTH_SHAPE, "spacing": data.SYNTH_SPACING, "profile": "siemens_flash_b30f",
          "mimics": False}
    pos = generate_study(seed, lesions=[LesionRequest("embolism", level="central", occlusive=True)], **kw)
    neg = generate_study(seed, lesions=[], **kw)
    assert pos.lesions[0]["type"] == "central" and pos.lesions[0]["center_mm"][0] > 0  # patient's left
    rp, rn = analyze_pe(pos.volume, engine=engine), analyze_pe(neg.volume, engine=engine)
    assert rp.probability > rn.probability + 0.2
    assert pos.labels[rp.peak_voxel] == 2
    assert rp.location["level"] == "central" and rp.location["side"] == "left"


def test_student_variant_runs_through_the_same_path(real, engine):
    """Test that the compressed student card runs through analyze_pe and gives a calibrated probability."""
    vol, _ = real
    r = analyze_pe(vol, engine=engine, model_name="pe_cnnlstm_student")
    assert r.is_ctpa and 0.0 <= r.probability <= 1.0 and r.model["name"] == "pe_cnnlstm_student"


def test_models_dir_has_no_stray_pe_files():
    """Test that every committed PE ONNX file has its card (nothing unexplained in assets/models)."""
    for p in Path(MODELS).glob("pe_*.onnx"):
        assert (MODELS / f"{p.stem}.json").exists(), p


@pytest.mark.parametrize("name", ["lung1", "lung2"])
def test_no_critical_pe_on_real_non_ctpa_scans(name, engine):
    """Test that the real non-contrast full-thorax scans get no PE probability (not a CTPA), never critical."""
    from inference.training.realdata import read_nrrd_volume

    d = require_shared_data() / "pyradiomics-lung"
    vol, _ = read_nrrd_volume(d / f"{name}_image.nrrd")
    r = analyze_pe(vol, engine=engine)
    assert not r.is_ctpa and r.probability is None and not r.critical


def test_no_critical_pe_on_the_real_cta(real, engine):
    """Test that the real CTA crop (no embolus known) is assessed and not flagged critical, at the card's own
    critical threshold."""
    vol, _ = real
    r = analyze_pe(vol, engine=engine)
    card = ModelCard.load(MODELS / "pe_cnnlstm.json")
    assert r.probability is not None and not r.critical
    assert r.probability < float(card.thresholds["critical"])
