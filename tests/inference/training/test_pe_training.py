"""Tests of the PE training side: insertion, augmentation, a tiny training run, ONNX export parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the [train] extra; CI installs it

from inference.model_card import ModelCard  # noqa: E402
from inference.models.pe import find_pa_region, prepare_input  # noqa: E402
from inference.training.pe import data, export  # noqa: E402
from inference.training.pe.net import PECnnLstm, count_parameters, student  # noqa: E402
from inference.training.pe.realcta import load_real_cta  # noqa: E402
from inference.training.pe.train import TrainConfig, augmentations, train  # noqa: E402
from tests.conftest import require_shared_data  # noqa: E402


@pytest.fixture(scope="module")
def real():
    require_shared_data()
    return load_real_cta()


def test_inserted_embolus_is_a_filling_defect_inside_the_artery(real):
    """Test that an inserted clot lies inside the artery mask and has clot HU (10..60) where the contrast was."""
    vol, pa = real
    for seed in range(3):
        v2, clot, descs = data.real_inserted(vol, pa, seed, n=1)
        assert clot.sum() > 5 and (clot & ~pa).sum() == 0
        core = clot & (v2.hu <= 60)
        assert core.sum() >= 0.5 * clot.sum()
        assert np.median(vol.hu[clot]) > 250  # it replaced opacified blood
        assert np.array_equal(v2.hu[~clot & ~pa], vol.hu[~clot & ~pa])  # nothing outside the artery changed


def test_augmentation_parameters_are_the_stated_ones():
    """Test that the MONAI augmentation is the documented one: ±0.02 shift, gamma 0.8..1.25, noise 0.012."""
    names = {type(t).__name__: t for t in augmentations().transforms}
    assert set(names) == {"RandShiftIntensity", "RandAdjustContrast", "RandGaussianNoise"}
    assert tuple(names["RandAdjustContrast"].gamma) == (0.8, 1.25)
    assert tuple(names["RandShiftIntensity"].offsets) == (-0.02, 0.02)
    assert names["RandGaussianNoise"].std == pytest.approx(0.012)


def test_training_examples_keep_image_and_clot_mask_aligned(real, tmp_path):
    """Test that a drawn example (with insertion, crop and left-right flip) has its clot where the image is dark
    inside the artery: the clot voxels are clot-dense (window value of <= 60 HU plus noise)."""

    from inference.training.pe.train import Source

    cfg = TrainConfig(cache=str(tmp_path / "none"), window=16, seq_crop=64, real_fraction=1.0, insert_p=1.0)
    src = Source(cfg, np.random.default_rng(3))
    src.aug = lambda x: x  # no intensity augmentation: check the geometry only
    for _ in range(4):
        x, lab, m = src.draw()
        assert x.shape == m.shape == (16, 64, 64) and lab.shape == (16,)
        if m.any():
            hu = x[m] * 1000.0 - 200.0
            assert np.median(hu) < 120.0  # clot (10..60 HU), blurred at the edges; contrast is ~500 HU


def test_student_has_at_most_20_percent_of_the_parameters():
    """Test that the distilled student is ≤ 20 % of the teacher and the teacher stays small (< 500 k)."""
    t, s = count_parameters(PECnnLstm()), count_parameters(student())
    assert s <= 0.2 * t and t < 500_000


def test_tiny_training_decreases_loss_and_exports_loadable_onnx(real, tmp_path):
    """Test that a tiny run (fixed batch, real CTA + insertion) lowers the loss and exports an ORT-loadable model
    whose outputs match torch within 1e-3 on a real crop."""
    cfg = TrainConfig(cache=str(tmp_path / "cache"), out=str(tmp_path / "run"), max_steps=20, window=8, crop=64,
                      seq_crop=64, patch_studies=2, patches=4, distill=False, batch=2, real_fraction=1.0,
                      insert_p=1.0, fixed_batch=True, lr=3e-3)
    res = train(cfg, progress=False)
    assert res["steps"] == 20 and res["real"]
    assert res["last_loss"] < 0.7 * res["first_loss"]  # mean of the last 5 steps vs the first 5
    from inference.training.pe.train import load

    model, _ = load(tmp_path / "run" / "ckpt.pt")
    path = export.export_onnx(model, tmp_path / "pe.onnx")
    vol, _ = real
    x = prepare_input(vol, find_pa_region(vol, data.PREPROCESSING), data.PREPROCESSING).x[:, :24]
    assert export.parity(model, path, x) <= 1e-3


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics so that eval-mode export is really exercised."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("make", [PECnnLstm, student])
def test_export_parity_random_and_real_dynamic_shapes(real, tmp_path, make):
    """Test torch vs ONNX Runtime ≤ 1e-3 on random inputs of two sequence lengths/sizes and on the real crop."""
    torch.manual_seed(0)
    model = _randomised(make())
    path = export.export_onnx(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    for shape in ((1, 7, 1, 48, 64), (1, 30, 1, 96, 96)):
        assert export.parity(model, path, rng.random(shape, dtype=np.float32)) <= 1e-3
    vol, _ = real
    x = prepare_input(vol, find_pa_region(vol, data.PREPROCESSING), data.PREPROCESSING).x
    assert export.parity(model, path, x) <= 1e-3


def test_card_builder_calibrates_and_sets_threshold(tmp_path):
    """Test that the card has Platt parameters fitted on the given logits, ECE before/after and a threshold."""
    model = _randomised(PECnnLstm())
    path = export.export_onnx(model, tmp_path / "pe_cnnlstm.onnx")
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 4.0, 400)  # over-confident raw logits: the truth is sigmoid(0.3 z)
    y = rng.random(400) < 1.0 / (1.0 + np.exp(-0.3 * z))
    card = export.build_card("pe_cnnlstm", path, model, {"train_config": {}}, logits=z, y=y, parity_random=0.0,
                             parity_real=None, role="teacher", command="test")
    export.write_card(card, tmp_path / "pe_cnnlstm.json")
    back = ModelCard.load(tmp_path / "pe_cnnlstm.json")
    assert back.calibration.method == "platt" and 0 < back.calibration.params["a"] < 1
    assert back.calibration.ece_after < back.calibration.ece_before
    assert 0.0 < back.thresholds["critical"] < 1.0
    assert back.preprocessing.crop == "pulmonary_arteries" and back.onnx_path.exists()


@pytest.mark.parametrize("make,name", [(PECnnLstm, "pe_cnnlstm"), (student, "pe_cnnlstm_student")])
def test_warm_start_from_committed_onnx_reproduces_it(make, name):
    """Test that the weights read back from a committed ONNX file (BatchNorm folded, LSTM gates reordered) give
    the ONNX outputs in torch (≤ 1e-3), and that frozen BatchNorms stay frozen in training mode."""
    from inference.training.pe.cli import ASSETS
    from inference.training.pe.warmstart import freeze_batchnorm, load_onnx_weights

    path = ASSETS / f"{name}.onnx"
    model = load_onnx_weights(make(), path).eval()
    x = np.random.default_rng(0).random((1, 9, 1, 64, 80), dtype=np.float32)
    assert export.parity(model, path, x) <= 1e-3
    model.train()
    freeze_batchnorm(model)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)


def test_cache_of_another_anatomy_is_refused(tmp_path):
    """Test that the PE data use the real anatomy and that a cache written before it (legacy) is not mixed in."""
    assert data.ANATOMY == "real"
    d = tmp_path / "train"
    d.mkdir()
    z = np.zeros((4, 8, 8), bool)
    data.save_sample(d / "train_0000.npz", data.Sample(np.zeros((4, 8, 8), np.int16), z, z, {"positive": False}))
    with pytest.raises(ValueError, match="legacy"):
        data.build_split(tmp_path, "train", 1, progress=False)


def test_real_scan_safety_set_has_every_real_scan_and_no_critical_pe():
    """Test that the evaluation's real-scan set holds the two CTA crops and the five non-CTPA scans, and that the
    committed teacher raises no critical PE on any of them (none has a known PE)."""
    from inference.engine import Engine
    from inference.training.pe.cli import ASSETS
    from inference.training.pe.evaluate import real_scan_safety
    from tests.conftest import require_shared_data

    require_shared_data()
    engine = Engine(ASSETS, ["CPUExecutionProvider"], threads=1)
    thr = float(engine.cards["pe_cnnlstm"].thresholds["critical"])
    res = real_scan_safety(engine, "pe_cnnlstm", thr)
    rows = {r["scan"]: r for r in res["scans"]}
    assert set(rows) == {"cta_pulmonary", "cta_aorta", "lung1", "lung2", "LIDC-IDRI-0001", "LIDC-IDRI-0002",
                         "LIDC-IDRI-0003"}
    assert rows["cta_pulmonary"]["is_ctpa"] and rows["cta_aorta"]["is_ctpa"]
    assert res["n_critical"] == 0 and all(r["probability"] is None or r["probability"] < thr for r in rows.values())
