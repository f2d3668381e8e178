"""Networks of the nodule models, built from MONAI blocks.

* ``ResAttUNet``: 3-D U-Net whose encoder and decoder stages are MONAI ``ResidualUnit``s and whose skip
  connections pass through attention gates (MONAI's ``AttentionBlock``, here also returning its gate
  coefficients). Teacher and distilled student differ only in channels / residual subunits.
* ``SwinSeg``: the ViT variant (MONAI ``SwinUNETR``), same outputs.
* ``CandidateClassifier``: small residual 3-D CNN with a global-average-pooled linear head, so that its class
  activation map (CAM) is exact: ``cam = w . features + b`` (upsampled), and ``mean(cam) == logit``.

Export wrappers (``SegExport``, ``ClsExport``) give the ONNX outputs the serving side expects:
``prob`` + ``attention`` (seg), ``logit`` + ``cam`` (classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets.attentionunet import AttentionBlock
from torch import nn

from inference.training.nodule.config import NoduleConfig


class GatedAttention(AttentionBlock):
    """MONAI's attention gate, returning the gated skip and the gate coefficients (B, 1, D, H, W)."""

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        psi = self.psi(self.relu(self.W_g(g) + self.W_x(x)))
        return x * psi, psi


class ResAttUNet(nn.Module):
    """Residual U-Net with attention-gated skips; ``forward`` returns ``(logits, finest attention map)``.

    Batch norm (not MONAI's default instance norm): at inference its statistics do not depend on the window,
    so the sliding window may use larger windows than the training crops.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64), num_res_units: int = 2,
                 in_channels: int = 1, out_channels: int = 1, norm: str = "BATCH"):
        super().__init__()
        c = list(channels)
        sub = max(1, num_res_units)
        self.enc = nn.ModuleList(
            [ResidualUnit(3, in_channels, c[0], strides=1, subunits=sub, norm=norm)]
            + [ResidualUnit(3, c[i - 1], c[i], strides=2, subunits=sub, norm=norm) for i in range(1, len(c))]
        )
        self.up = nn.ModuleList(
            [Convolution(3, c[i + 1], c[i], strides=2, kernel_size=3, is_transposed=True, norm=norm)
             for i in range(len(c) - 1)]
        )
        self.att = nn.ModuleList([GatedAttention(3, max(2, c[i] // 2), c[i], c[i]) for i in range(len(c) - 1)])
        self.dec = nn.ModuleList(
            [ResidualUnit(3, 2 * c[i], c[i], strides=1, subunits=sub, norm=norm) for i in range(len(c) - 1)])
        self.head = Convolution(3, c[0], out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
        psi = x[:, :1]
        for i in range(len(self.up) - 1, -1, -1):
            g = self.up[i](x)
            gated, psi = self.att[i](g, skips[i])
            x = self.dec[i](torch.cat([gated, g], dim=1))
        return self.head(x), psi


class SwinSeg(nn.Module):
    """SwinUNETR (ViT variant); its "attention" output is the probability map (no gate to expose)."""

    def __init__(self, feature_size: int = 12):
        super().__init__()
        from monai.networks.nets import SwinUNETR

        self.net = SwinUNETR(in_channels=1, out_channels=1, feature_size=feature_size, depths=(1, 1, 1, 1),
                             num_heads=(3, 6, 12, 24), spatial_dims=3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, torch.sigmoid(logits)


class CandidateClassifier(nn.Module):
    """Residual 3-D CNN → global average pool → linear; ``forward`` returns ``(logit (B, 1), cam)``."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), in_channels: int = 1):
        super().__init__()
        c = list(channels)
        layers: list[nn.Module] = [ResidualUnit(3, in_channels, c[0], strides=1, subunits=1)]
        layers += [ResidualUnit(3, c[i - 1], c[i], strides=2, subunits=2) for i in range(1, len(c))]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c[-1], 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        logit = self.fc(f.mean(dim=(2, 3, 4)))
        cam = torch.einsum("bcdhw,c->bdhw", f, self.fc.weight[0])[:, None] + self.fc.bias.view(1, 1, 1, 1, 1)
        cam = F.interpolate(cam, size=x.shape[2:], mode="trilinear", align_corners=False)
        return logit, cam


class SegExport(nn.Module):
    """ONNX wrapper: ``image`` → ``prob`` (sigmoid), ``attention``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, att = self.net(image)
        return torch.sigmoid(logits), att


class ClsExport(nn.Module):
    """ONNX wrapper: ``patch`` → ``logit`` (B, 1), ``cam`` (B, 1, D, H, W)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(patch)


def build_seg(cfg: NoduleConfig, kind: str = "teacher") -> nn.Module:
    """``teacher`` / ``student`` (ResAttUNet) or ``vit`` (SwinUNETR)."""
    if kind == "vit":
        return SwinSeg(cfg.swin_feature_size)
    if kind == "student":
        return ResAttUNet(tuple(cfg.student_channels), cfg.student_res_units)
    return ResAttUNet(tuple(cfg.channels), cfg.num_res_units)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_onnx_weights(net: nn.Module, onnx_path: str) -> nn.Module:
    """Fill ``net`` (a ``CandidateClassifier``) with the weights of its exported ONNX file (warm start of a
    fine-tune from a committed model whose checkpoint is not kept). Named initializers map to the state dict
    (``net.`` prefix of the export wrapper); the exporter's anonymous PReLU slopes follow in module order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    prelu = [inits[k] for k in sorted((k for k in inits if k.startswith("onnx::PRelu_")),
                                      key=lambda k: int(k.rsplit("_", 1)[1]))]
    sd = net.state_dict()
    slopes = [k for k in sd if k.endswith("adn.A.weight")]
    if len(slopes) != len(prelu):
        raise ValueError(f"{onnx_path}: {len(prelu)} PReLU slopes for {len(slopes)} in the network")
    new = {}
    for k, v in sd.items():
        src = dict(zip(slopes, prelu)).get(k) if k in slopes else inits.get(f"net.{k}")
        if src is None or src.size != v.numel():
            raise ValueError(f"{onnx_path}: no initializer for {k} {tuple(v.shape)}")
        new[k] = torch.as_tensor(src.reshape(tuple(v.shape)).copy())
    net.load_state_dict(new)
    return net
