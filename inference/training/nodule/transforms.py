"""MONAI augmentation of the nodule patches (the issue's parameters, read from ``NoduleConfig``).

Spatial transforms act on image and label together (bilinear / nearest): random crop to the training size
(biased to nodules), flips on every axis, in-plane 90° turns, small rotations, elastic deformation with a
smoothing sigma of 10 voxels; intensity: random gamma in [0.7, 1.4] and Gaussian noise (image only).
"""

from __future__ import annotations

import math

import numpy as np
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandRotated,
    SpatialPadd,
)

from inference.training.nodule.config import NoduleConfig

KEYS = ("image", "label")


def seg_augment(cfg: NoduleConfig, seed: int = 0, pad_to: tuple[int, int, int] | None = None) -> Compose:
    """Augmentation for segmentation samples ``{"image": (1, D, H, W), "label": (1, D, H, W)}``; the crop
    returns a list with one sample. ``pad_to`` zero-pads crops (SwinUNETR needs multiples of 32)."""
    rot = math.radians(cfg.rotate_deg)
    pad = [SpatialPadd(KEYS, spatial_size=pad_to)] if pad_to else []
    t = Compose([
        RandCropByPosNegLabeld(KEYS, label_key="label", spatial_size=tuple(cfg.train_crop), pos=1, neg=1,
                               num_samples=1, allow_smaller=True),
        *pad,
        RandFlipd(KEYS, prob=0.5, spatial_axis=0),
        RandFlipd(KEYS, prob=0.5, spatial_axis=1),
        RandFlipd(KEYS, prob=0.5, spatial_axis=2),
        RandRotate90d(KEYS, prob=0.5, spatial_axes=(1, 2)),
        RandRotated(KEYS, range_x=rot, range_y=rot, range_z=rot, prob=0.3, mode=("bilinear", "nearest"),
                    padding_mode="border"),
        Rand3DElasticd(KEYS, sigma_range=(cfg.elastic_sigma, cfg.elastic_sigma),
                       magnitude_range=tuple(cfg.elastic_magnitude), prob=cfg.elastic_prob,
                       mode=("bilinear", "nearest"), padding_mode="border"),
        RandAdjustContrastd("image", prob=0.5, gamma=tuple(cfg.gamma_range)),
        RandGaussianNoised("image", prob=0.5, std=cfg.noise_std),
    ])
    t.set_random_state(seed=seed)
    return t


def cls_augment(cfg: NoduleConfig, seed: int = 0) -> Compose:
    """Augmentation for classifier patches ``{"image": (1, d, h, w)}`` (no crop, no elastic)."""
    t = Compose([
        RandFlipd("image", prob=0.5, spatial_axis=0),
        RandFlipd("image", prob=0.5, spatial_axis=1),
        RandFlipd("image", prob=0.5, spatial_axis=2),
        RandRotate90d("image", prob=0.5, spatial_axes=(1, 2)),
        RandAdjustContrastd("image", prob=0.5, gamma=tuple(cfg.gamma_range)),
        RandGaussianNoised("image", prob=0.5, std=cfg.noise_std),
    ])
    t.set_random_state(seed=seed)
    return t


def apply(t: Compose, sample: dict[str, np.ndarray]) -> dict:
    """Run ``t`` on one sample; unwraps the one-element list a crop transform returns."""
    out = t(sample)
    return out[0] if isinstance(out, list) else out
