"""CNN-LSTM for pulmonary embolism: a small 2-D residual CNN (MONAI blocks) encodes every axial slice of the
pulmonary-artery crop, a bidirectional LSTM reads the slice sequence (the RSNA-STR PE challenge pattern).

Outputs (also the ONNX outputs): ``study_logit`` (B,), ``slice_logits`` (B, S) and ``cam`` (B, S, H/4, W/4):
the class activation map of the slice head, i.e. the head's 1x1 weights applied to the CNN features before
global average pooling (so the slice-head logit is the spatial mean of ``cam``; Grad-CAM and CAM coincide).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn


class SliceEncoder(nn.Module):
    """2-D residual CNN: (N, 1, H, W) → features (N, C, H/4, W/4)."""

    def __init__(self, channels: tuple[int, ...] = (16, 24, 32, 48), dilations: tuple[int, ...] = (1, 2)):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.blocks = nn.Sequential(
            Convolution(2, 1, c0, strides=2, kernel_size=3, act="RELU", norm="BATCH"),
            ResidualUnit(2, c0, c1, strides=2, subunits=2, act="RELU", norm="BATCH"),
            ResidualUnit(2, c1, c2, strides=1, subunits=2, act="RELU", norm="BATCH", dilation=dilations[0]),
            ResidualUnit(2, c2, c3, strides=1, subunits=2, act="RELU", norm="BATCH", dilation=dilations[1]),
        )
        self.out_channels = c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class PECnnLstm(nn.Module):
    """Slice CNN + CAM head + bidirectional LSTM over slices → per-slice and per-study PE logits.

    Args:
        channels: CNN widths (stem, stage 1..3).
        hidden: LSTM hidden size per direction.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 24, 32, 48), hidden: int = 48):
        super().__init__()
        self.encoder = SliceEncoder(channels)
        c = self.encoder.out_channels
        self.cam_head = nn.Conv2d(c, 1, kernel_size=1)  # the slice head, applied before pooling = CAM
        self.lstm = nn.LSTM(c + 2, hidden, batch_first=True, bidirectional=True)
        self.slice_out = nn.Linear(2 * hidden, 1)
        self.study_out = nn.Linear(4 * hidden, 1)
        self.config = {"channels": list(channels), "hidden": hidden}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x``: (B, S, 1, H, W) in [0, 1] → (study_logit (B,), slice_logits (B, S), cam (B, S, H/4, W/4))."""
        b, s = x.shape[0], x.shape[1]
        f = self.encoder(x.flatten(0, 1))  # (B*S, C, h, w)
        cam = self.cam_head(f)[:, 0]  # (B*S, h, w)
        gap = f.mean(dim=(2, 3))
        feats = torch.cat([gap, cam.mean(dim=(1, 2))[:, None], cam.amax(dim=(1, 2))[:, None]], dim=1)
        h, _ = self.lstm(feats.view(b, s, -1))  # (B, S, 2*hidden)
        slice_logits = self.slice_out(h)[..., 0]
        pooled = torch.cat([h.amax(dim=1), h.mean(dim=1)], dim=1)
        study_logit = self.study_out(pooled)[:, 0]
        return study_logit, slice_logits, cam.view(b, s, cam.shape[1], cam.shape[2])

    def head_logits(self, cam: torch.Tensor) -> torch.Tensor:
        """The slice head's own logits (spatial max of the CAM), used for deep supervision of the CNN."""
        return cam.amax(dim=(2, 3))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def student(hidden: int = 16) -> PECnnLstm:
    """The distilled student (≤ 20 % of the teacher's parameters)."""
    return PECnnLstm(channels=(8, 12, 16, 20), hidden=hidden)
