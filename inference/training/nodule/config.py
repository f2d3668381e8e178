"""Configuration of the nodule models: grid, window, splits, networks and schedules (one JSON-able dataclass).

Seed ranges keep the splits apart: training studies use seeds 10000+, validation (calibration, model
choice) 20000+, the synthetic test split 30000+, the unseen-scanner split 40000+. The unseen scanner profile
never appears in training or validation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.synth.profiles import PROFILES

HELD_OUT_PROFILE = "canon_aquilion_fc52"
TRAIN_PROFILES = tuple(sorted(p for p in PROFILES if p != HELD_OUT_PROFILE))
SEEDS = {"train": 10000, "val": 20000, "test": 30000, "unseen": 40000}


@dataclass
class NoduleConfig:
    """Everything a training run needs; ``--config FILE.json`` overrides fields."""

    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 2.0)
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    patch: tuple[int, int, int] = (40, 40, 40)  # stored training patch
    roi: tuple[int, int, int] = (96, 96, 96)  # serving sliding-window ROI (batch norm: any size works)
    train_crop: tuple[int, int, int] = (32, 32, 32)  # random crop trained on (multiple of 8)
    cls_patch: tuple[int, int, int] = (24, 24, 24)
    overlap: float = 0.15
    crop_margin_mm: float = 10.0
    # data
    n_train_studies: int = 48
    n_val_studies: int = 12
    n_real_insertions: int = 12  # nodules inserted into the real CTA crops (training backgrounds)
    neg_patches_per_study: int = 4
    cls_mine_studies: int = 0  # >0: classifier also learns from candidates mined through the served seg model
    cls_mine_real: int = 0  # ... and from this many real-background insertions (see candidates.py)
    cls_mine_backgrounds: int = 0  # >0: hard negatives from the real training scans, this many insertion runs
    cls_real_neg_weight: float = 1.0  # sampling weight of a real-scan negative (hardneg.py) against others
    cls_from_patches: bool = True  # classifier also samples the stored seg patches (patches_train.npz)
    cls_init: str = ""  # warm start: the classifier ONNX to fine-tune (e.g. assets/models/nodule_cls.onnx)
    n_small_nodules: int = 0  # extra small nodules (small_nodule_mm) per synthetic training study (data stage)
    small_nodule_mm: tuple[float, float] = (3.0, 6.0)
    min_pos_voxels: int = 8  # smallest label component (model-grid voxels) that makes positive patches
    study_size: str = "random"  # random (~300 mm FOV, 1-2.5 mm slices) | small (64x128x128 at 2 mm; quick runs)
    # networks
    arch: str = "resattunet"  # resattunet | swinunetr (ViT variant)
    channels: tuple[int, ...] = (8, 16, 32, 64)
    num_res_units: int = 1
    student_channels: tuple[int, ...] = (3, 6, 12, 24)
    student_res_units: int = 1
    swin_feature_size: int = 12
    cls_channels: tuple[int, ...] = (8, 16, 32)
    # segmentation loss / sampling (defaults: the v2 recipe)
    seg_init: str = ""  # warm start: the seg ONNX to fine-tune (path or COMMIT:PATH, see train.init_onnx)
    seg_dice_batch: bool = True  # True: batch Dice (MONAI batch=True); False: Dice per positive sample
    seg_bce_pos_weight: float = 0.0  # >0: add BCE with this weight on nodule voxels
    seg_size_power: float = 0.0  # positive patch drawn with weight (voxels of its smallest nodule) ** -power
    # schedules
    seg_iters: int = 220
    student_iters: int = 120
    vit_iters: int = 40
    cls_iters: int = 250
    batch: int = 4
    lr: float = 2e-3
    threads: int = 2
    seed: int = 0
    # augmentation (the numbers; asserted by a test)
    elastic_sigma: float = 10.0
    elastic_magnitude: tuple[float, float] = (40.0, 80.0)
    elastic_prob: float = 0.25
    gamma_range: tuple[float, float] = (0.7, 1.4)
    rotate_deg: float = 15.0
    noise_std: float = 0.02
    work_dir: str = "var/nodule"
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None) -> NoduleConfig:
        cfg = cls()
        if path:
            for k, v in json.loads(Path(path).read_text()).items():
                if not hasattr(cfg, k):
                    raise KeyError(f"unknown config field {k!r}")
                setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
        return cfg

    def quick(self) -> NoduleConfig:
        """A few iterations on tiny patches (tests, smoke runs)."""
        q = NoduleConfig(**asdict(self))
        q.patch, q.train_crop, q.cls_patch, q.roi = (32, 32, 32), (32, 32, 32), (16, 16, 16), (64, 64, 64)
        q.study_size, q.work_dir = "small", self.work_dir + "-quick"
        q.n_train_studies, q.n_val_studies, q.n_real_insertions, q.neg_patches_per_study = 2, 1, 1, 2
        q.seg_iters, q.student_iters, q.vit_iters, q.cls_iters, q.batch = 12, 4, 2, 8, 2
        q.channels, q.student_channels, q.cls_channels = (4, 8, 16, 32), (2, 4, 8, 12), (4, 8, 16)
        q.swin_feature_size = 12
        return q

    def to_dict(self) -> dict:
        return asdict(self)
