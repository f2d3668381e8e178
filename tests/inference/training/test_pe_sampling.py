"""Tests of the PE training's lesion-free sampling and hard-negative mining (``inference.training.pe.sampling``)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.training.pe import data
from inference.training.pe.sampling import CAM_STRIDE, NegativePool, mine


def _metas() -> list[dict]:
    """Three lesion-free studies of profile A, one of B (real anatomy), one legacy-anatomy A, two positives and a
    non-synthetic study."""
    neg = lambda p, a="real": {"source": "synthetic", "profile": p, "anatomy": a, "positive": False}  # noqa: E731
    return [neg("A"), {"source": "synthetic", "profile": "A", "anatomy": "real", "positive": True}, neg("A"), neg("A"),
            neg("B"), neg("A", "legacy"), {"source": "synthetic", "profile": "B", "positive": True},
            {"source": "real-cta-crop", "positive": False}]


def test_pool_holds_only_lesion_free_synthetic_studies():
    """Test that the pool takes the lesion-free synthetic studies (not positives, not the real crop) with their
    (profile, anatomy) stratum; a cache without an anatomy field counts as legacy."""
    pool = NegativePool.from_metas(_metas())
    assert pool.index == [0, 2, 3, 4, 5]
    assert pool.strata[-1] == ("A", "legacy") and pool.strata[3] == ("B", "real")
    assert NegativePool.from_metas([{"profile": "A", "positive": False}]).strata == [("A", "legacy")]


def test_balanced_draws_give_each_stratum_the_same_share():
    """Test that without mining each (profile, anatomy) stratum gets the same share of draws, however many
    studies it holds (three A/real studies share one third)."""
    pool = NegativePool.from_metas(_metas())
    w = pool.weights(0.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[:3] == pytest.approx([1 / 9] * 3) and w[3] == pytest.approx(1 / 3) and w[4] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    counts = np.bincount([pool.draw(rng) for _ in range(3000)], minlength=len(pool))
    assert counts[3] / 3000 == pytest.approx(1 / 3, abs=0.04) and counts[:3].sum() / 3000 == pytest.approx(1 / 3,
                                                                                                            abs=0.04)


def test_mined_hard_negative_is_drawn_more_often():
    """Test that after mining, the study the network scores most PE-like gets the most hard-mix draws, and that
    hard_mix 0 ignores the scores."""
    pool = NegativePool.from_metas(_metas())
    logits = {0: -6.0, 2: -6.0, 3: 4.0, 4: -6.0, 5: -6.0}  # sample index -> study logit

    def score(x: np.ndarray) -> tuple[float, np.ndarray]:
        return logits[int(x[0, 0, 0])], np.zeros((3, 4, 4), np.float32)

    summary = mine(pool, lambda i: np.full((3, 16, 16), i, np.float32), score)
    assert summary["n"] == 5 and summary["max_logit"] == 4.0 and summary["share_above_0"] == pytest.approx(0.2)
    w = pool.weights(1.0)
    assert int(np.argmax(w)) == 2 and w[2] > 0.9  # pool entry 2 = sample 3
    assert pool.weights(0.0) == pytest.approx(NegativePool.from_metas(_metas()).weights(0.0))


def test_hot_spots_are_the_hottest_cam_cells_on_the_model_grid():
    """Test that the kept hot spots are the top-k slices' CAM maxima, hottest first, at their cells' centres in
    model-grid voxels (CAM stride 4)."""
    pool = NegativePool.from_metas(_metas())
    cam = np.zeros((5, 8, 8), np.float32)
    cam[1, 2, 3] = 5.0
    cam[3, 7, 0] = 9.0
    cam[3, 0, 0] = 1.0  # the same slice's weaker cell is not kept
    cam[4, 4, 4] = 0.5
    pool.update(0, 1.5, cam, top_k=3)
    assert pool.logits[0] == 1.5
    half = CAM_STRIDE // 2
    assert pool.hot[0] == [(3, 7 * CAM_STRIDE + half, half), (1, 2 * CAM_STRIDE + half, 3 * CAM_STRIDE + half),
                           (4, 4 * CAM_STRIDE + half, 4 * CAM_STRIDE + half)]
    rng = np.random.default_rng(1)
    assert pool.hot_spot(0, rng) in pool.hot[0] and pool.hot_spot(1, rng) is None


def _fake_cache(root, n: int = 6) -> None:
    """``n`` tiny studies (16 slices, 32x32, a bright artery column): odd ones carry a clot."""
    (root / "train").mkdir(parents=True)
    for i in range(n):
        hu = np.full((16, 32, 32), -800, np.int16)
        art = np.zeros(hu.shape, bool)
        art[:, 12:20, 12:20] = True
        hu[art] = 400
        clot = np.zeros(hu.shape, bool)
        if i % 2:
            clot[6:9, 14:18, 14:18] = True
            hu[clot] = 40
        data.save_sample(root / "train" / f"train_{i:04d}.npz", data.Sample(
            hu, art, clot, {"source": "synthetic", "profile": f"p{i % 3}", "anatomy": "real", "positive": bool(i % 2)}))


def test_source_draws_clean_studies_and_centres_patches_on_hot_spots(tmp_path):
    """Test that with clean_fraction 1 every draw is a lesion-free cached study without an inserted clot, that
    hard patches contain the mined hot spot, that phase-2 windows hold the hot slice, and that the default
    recipe never draws from the pool."""
    pytest.importorskip("torch")
    from inference.training.pe.train import Source, TrainConfig

    _fake_cache(tmp_path / "c")
    cfg = TrainConfig(cache=str(tmp_path / "c"), real_fraction=0.0, insert_p=1.0, crop=24, patch_studies=2, patches=4,
                      window=4, seq_crop=32, clean_fraction=1.0, hard_patch_p=1.0, hard_window_p=1.0)
    src = Source(cfg, np.random.default_rng(0))
    src.real = None  # synthetic studies only
    src.aug = lambda x: x
    assert src.pool.index == [0, 2, 4]
    for j in range(len(src.pool)):
        cam = np.zeros((16, 8, 8), np.float32)
        cam[10, 1, 6] = 3.0  # hot spot at model voxel (10, 6, 26)
        src.pool.update(j, 2.0, cam, top_k=1)
    for _ in range(5):
        hu, clot, j = src.study()
        assert j is not None and not clot.any() and (hu <= 400).all() and (hu[src.samples[0].arteries] == 400).all()
    x, y, m = src.patch_batch()
    assert not y.any() and not m.any() and src.counts["hard_patch"] == 8 and x.shape == (8, 1, 1, 24, 24)
    x, lab, m = src.draw()
    assert src.counts["hard_window"] == 1 and x.shape == (4, 32, 32) and not lab.any()
    old = Source(TrainConfig(cache=str(tmp_path / "c"), real_fraction=0.0), np.random.default_rng(0))
    old.real = None
    for _ in range(10):
        old.draw()
    assert old.counts["clean"] == 0 and old.counts["hard_patch"] == old.counts["hard_window"] == 0


def test_hard_patch_contains_the_hot_spot(tmp_path):
    """Test that a hard patch is cut around the mined hot spot: a single bright voxel planted there lies inside
    every such patch."""
    pytest.importorskip("torch")
    from inference.training.pe.train import Source, TrainConfig

    _fake_cache(tmp_path / "c")
    cfg = TrainConfig(cache=str(tmp_path / "c"), real_fraction=0.0, crop=24, patch_studies=3, patches=5,
                      clean_fraction=1.0, hard_patch_p=1.0)
    src = Source(cfg, np.random.default_rng(2))
    src.real = None
    src.aug = lambda x: x
    for j, i in enumerate(src.pool.index):
        src.samples[i].hu[10, 6, 26] = 800  # the top of the window: 1.0
        cam = np.zeros((16, 8, 8), np.float32)
        cam[10, 1, 6] = 3.0
        src.pool.update(j, 2.0, cam, top_k=1)
    x, _, _ = src.patch_batch()
    assert (x.amax(dim=(1, 2, 3, 4)) >= 0.999).all()  # every patch holds the planted voxel
