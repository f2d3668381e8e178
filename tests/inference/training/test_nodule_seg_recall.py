"""Tests of the recall-oriented segmentation training: ONNX warm start of the teacher, size-weighted positive
sampling, the per-sample Dice loss and the extra small nodules of the data stage."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [train] extra is not installed")

from inference.training.nodule import export as ex  # noqa: E402
from inference.training.nodule.config import NoduleConfig  # noqa: E402
from inference.training.nodule.networks import build_seg, load_onnx_seg_weights  # noqa: E402
from inference.training.nodule.train import SegLoss, positive_weights, train_seg  # noqa: E402


def _exported_teacher(tmp_path, cfg: NoduleConfig):
    """A quick teacher with non-trivial BatchNorm statistics, exported to ONNX (Conv + BN folded)."""
    torch.manual_seed(3)
    net = build_seg(cfg, "teacher")
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    net.eval()
    path = tmp_path / "seg.onnx"
    ex.export_onnx(net, path, "seg", torch.zeros(1, 1, 32, 32, 32))
    return net, path


def test_seg_warm_start_from_onnx_reproduces_the_onnx_output(tmp_path):
    """Test that a teacher filled from its ONNX file (folded Conv+BN) gives the ONNX output in eval mode."""
    torch.set_num_threads(1)
    cfg = NoduleConfig().quick()
    _, path = _exported_teacher(tmp_path, cfg)
    rng = np.random.default_rng(0)
    calib = torch.as_tensor(rng.random((4, 1, 32, 32, 32), dtype=np.float32))
    fresh = load_onnx_seg_weights(build_seg(cfg, "teacher"), str(path), calib).eval()
    x = rng.random((1, 1, 24, 40, 32), dtype=np.float32)
    assert ex.parity(fresh, path, "seg", [x, calib.numpy()[:2]]) <= 1e-4
    # each folded Conv+BN of the encoder keeps a BatchNorm that is the identity also in training mode on the
    # calibration batch (the decoder ones follow the transposed convolutions, whose own BatchNorm changes there)
    folded = {k: m for k, m in fresh.named_modules() if isinstance(m, torch.nn.BatchNorm3d) and k.startswith("enc.")}
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(float((o - i[0]).abs().max())))
             for m in folded.values()]
    fresh.train()
    with torch.no_grad():
        fresh(calib)
    for h in hooks:
        h.remove()
    assert len(seen) == len(folded) > 0 and max(seen) < 1e-3


def test_seg_warm_start_rejects_another_network(tmp_path):
    """Test that an ONNX file of other channels is refused, not half loaded."""
    cfg = NoduleConfig().quick()
    _, path = _exported_teacher(tmp_path, cfg)
    with pytest.raises(ValueError):
        load_onnx_seg_weights(build_seg(NoduleConfig(), "teacher"), str(path))


def test_train_seg_starts_from_seg_init(tmp_path):
    """Test that ``seg_init`` makes train_seg start from the ONNX weights (lr 0: eval output unchanged up to
    the BatchNorm running statistics, which move with the batches)."""
    torch.set_num_threads(1)
    cfg = NoduleConfig().quick()
    net, path = _exported_teacher(tmp_path, cfg)
    rng = np.random.default_rng(1)
    img = rng.random((6, 32, 32, 32)).astype(np.float16)
    lab = np.zeros((6, 32, 32, 32), np.uint8)
    lab[:3, 14:17, 14:17, 14:17] = 1
    cfg.seg_init, cfg.seg_iters, cfg.lr = str(path), 2, 0.0
    s = train_seg(cfg, {"image": img, "label": lab}, "teacher", tmp_path / "t.pt")
    assert s["init"] == str(path)
    from inference.training.nodule.train import load_checkpoint

    got, _ = load_checkpoint(tmp_path / "t.pt")
    x = torch.as_tensor(img[:2].astype(np.float32))[:, None]
    with torch.no_grad():
        a, b = torch.sigmoid(got(x)[0]), torch.sigmoid(net(x)[0])
    assert float((a - b).abs().max()) < 0.05
    cold = train_seg(NoduleConfig().quick(), {"image": img, "label": lab}, "teacher", tmp_path / "c.pt")
    assert "init" not in cold


def test_positive_sampling_favours_small_nodules():
    """Test that power 1 draws a 2-voxel nodule's patch 50x as often as a 100-voxel one's; power 0 is uniform."""
    lab = np.zeros((3, 16, 16, 16), np.uint8)
    lab[0, 5, 5, 5:7] = 1  # 2 voxels
    lab[1, 2:6, 2:7, 2:7] = 1  # 100 voxels
    pos, w = positive_weights(lab, 1.0)
    assert list(pos) == [0, 1] and w[0] / w[1] == pytest.approx(50.0)
    pos, w = positive_weights(lab, 0.0)
    assert np.allclose(w, 0.5)


def test_per_sample_dice_weighs_a_missed_small_nodule():
    """Test that with per-sample Dice a missed 1-voxel nodule next to a found mass costs far more than with
    the batch Dice of the v2 recipe."""
    y = torch.zeros(2, 1, 8, 8, 8)
    y[0, 0, 1:7, 1:7, 1:7] = 1  # mass, found
    y[1, 0, 4, 4, 4] = 1  # tiny nodule, missed
    logits = torch.where(y[:1] > 0, 8.0, -8.0).expand(2, -1, -1, -1, -1).clone()
    logits[1] = -8.0
    old, new = NoduleConfig(), NoduleConfig()
    new.seg_dice_batch = False
    assert SegLoss(new)(logits, y) > SegLoss(old)(logits, y) + 0.2


def test_data_stage_adds_small_nodules():
    """Test that ``extra_small`` puts that many more nodules of 3-6 mm into a training study."""
    from inference.training.nodule.data import synthetic_case

    base = synthetic_case("train", 1, lesions="nodule", size="small")
    more = synthetic_case("train", 1, lesions="nodule", size="small", extra_small=3)
    small = [x for x in more.lesions if 3.0 <= x.get("target_diameter_mm", 0) <= 6.0]
    assert len(more.lesions) >= len(base.lesions) and len(small) >= 2
