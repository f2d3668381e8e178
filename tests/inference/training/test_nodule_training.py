"""Tests of the nodule training side: augmentation parameters, a tiny training run, ONNX export parity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [train] extra is not installed")

from inference.training.nodule import export as ex  # noqa: E402
from inference.training.nodule.config import NoduleConfig  # noqa: E402
from inference.training.nodule.networks import CandidateClassifier, ResAttUNet, n_params  # noqa: E402
from inference.training.nodule.train import train_cls, train_seg  # noqa: E402
from inference.training.nodule.transforms import seg_augment  # noqa: E402


def _spheres(n: int = 12, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Bright spheres (nodules) in noisy dark patches, half of them without a sphere."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    img = rng.normal(0.1, 0.03, (n, size, size, size)).astype(np.float32)
    lab = np.zeros((n, size, size, size), np.uint8)
    for i in range(0, n, 2):
        c = rng.integers(10, size - 10, 3)
        m = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= rng.integers(3, 7) ** 2
        img[i][m] += 0.6
        lab[i][m] = 1
    return {"image": img.astype(np.float16), "label": lab, "source": np.zeros(n, np.uint8)}


def test_augmentation_uses_the_stated_parameters():
    """Test that the transforms carry elastic sigma 10, gamma [0.7, 1.4], flips on 3 axes, rotations, noise."""
    cfg = NoduleConfig()
    t = seg_augment(cfg)
    by = {type(x).__name__: x for x in t.transforms}
    assert by["Rand3DElasticd"].rand_3d_elastic.sigma_range == (10.0, 10.0)
    assert tuple(by["RandAdjustContrastd"].adjuster.gamma) == (0.7, 1.4)
    flips = [x.flipper.spatial_axis for x in t.transforms if type(x).__name__ == "RandFlipd"]
    assert sorted(flips) == [0, 1, 2]
    assert by["RandRotated"].rand_rotate.range_x[1] == pytest.approx(math.radians(15))
    assert by["RandGaussianNoised"].rand_gaussian_noise.std == pytest.approx(0.02)
    out = t({"image": np.random.rand(1, 64, 64, 64).astype(np.float32),
             "label": (np.random.rand(1, 64, 64, 64) > 0.99).astype(np.float32)})
    assert tuple(out[0]["image"].shape[1:]) == tuple(cfg.train_crop)


def test_tiny_training_lowers_the_loss_and_exports_a_matching_onnx(tmp_path, shared_data):
    """Test that a few iterations decrease the loss and the exported ONNX matches torch within 1e-3."""
    torch.set_num_threads(2)
    cfg = NoduleConfig().quick()
    cfg.seg_iters, cfg.cls_iters, cfg.lr = 30, 20, 5e-3
    data = _spheres()
    s = train_seg(cfg, data, "teacher", tmp_path / "seg.pt")
    log = [json.loads(x) for x in (tmp_path / "seg.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in log[:5]]), np.mean([r["loss"] for r in log[-5:]])
    assert last < first - 0.05, (first, last)
    assert s["iterations"] == 30
    c = train_cls(cfg, data, tmp_path / "cls.pt")
    assert c["samples"]["positive"] > 0 and c["samples"]["negative"] > 0

    from inference.training.nodule.api import _real_input
    from inference.training.nodule.train import load_checkpoint

    net, _ = load_checkpoint(tmp_path / "seg.pt")
    path = tmp_path / "seg.onnx"
    ex.export_onnx(net, path, "seg", torch.zeros(1, 1, 32, 32, 32))
    real = _real_input(cfg, (16, 48, 48))  # real LIDC-IDRI-0001 voxels, windowed like serving
    assert real is not None and real.std() > 0.05
    rng = np.random.default_rng(1)
    inputs = [rng.random((2, 1, 32, 32, 32), dtype=np.float32), rng.random((1, 1, 24, 40, 48), dtype=np.float32), real]
    assert ex.parity(net, path, "seg", inputs) <= 1e-3
    sess = ex.ort_session(path)
    assert [o.name for o in sess.get_outputs()] == ["prob", "attention"]
    assert sess.run(None, {"image": real})[0].shape == real.shape  # dynamic spatial axes

    cnet, _ = load_checkpoint(tmp_path / "cls.pt")
    cpath = tmp_path / "cls.onnx"
    ex.export_onnx(cnet, cpath, "cls", torch.zeros(1, 1, 16, 16, 16))
    assert ex.parity(cnet, cpath, "cls", [rng.random((3, 1, 16, 16, 16), dtype=np.float32)]) <= 1e-3


def test_cam_mean_equals_logit_and_student_is_small():
    """Test that the classifier's CAM averages to its logit (CAM-exact head) and the student has <= 20% params."""
    net = CandidateClassifier((4, 8, 16)).eval()
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        logit, cam = net(x)
    assert cam.shape == x.shape
    assert torch.allclose(torch.nn.functional.avg_pool3d(cam, 4).mean((2, 3, 4)), logit, atol=1e-4)
    cfg = NoduleConfig()
    teacher = ResAttUNet(cfg.channels, cfg.num_res_units)
    student = ResAttUNet(cfg.student_channels, cfg.student_res_units)
    assert n_params(student) <= 0.2 * n_params(teacher)
