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


def load_onnx_seg_weights(net: nn.Module, onnx_path: str, calib: torch.Tensor | None = None) -> nn.Module:
    """Fill ``net`` (a ``ResAttUNet``) with the weights of its exported ONNX file (warm start of the teacher).

    The exporter folded each Conv + BatchNorm pair into one anonymous ``Conv`` (transposed convolutions keep
    their named BatchNorm): torch convolutions are matched to the ONNX ``Conv`` nodes in call order (shapes
    checked), PReLU slopes likewise. A folded pair gets the folded weights and a BatchNorm that is the identity
    in eval mode (running mean/var = the per-channel mean/var of the folded conv output on ``calib``, weight =
    sqrt(var + eps), bias = mean), so that in training mode, where batch statistics replace the running ones,
    the block still starts close to the exported function. ``calib``: a batch of training patches (B, 1, ...);
    None: zero mean, unit variance (eval parity holds either way).

    Raises:
        ValueError: the ONNX graph does not match the network.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(onnx_path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:  # the exporter shares equal initializers (e.g. untrained PReLU slopes) via Identity
        if n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
    onnx_conv = [n for n in model.graph.node if n.op_type == "Conv"]
    onnx_tconv = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    onnx_prelu = [n for n in model.graph.node if n.op_type == "PRelu"]
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    names = {m: k for k, m in net.named_modules()}
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append((names[m], m, i[0], o)))
             for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.PReLU))]
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 1, 16, 16, 16))
    for h in hooks:
        h.remove()
    convs = [c for c in calls if isinstance(c[1], nn.Conv3d)]
    tconvs = [c for c in calls if isinstance(c[1], nn.ConvTranspose3d)]
    prelus = [c for c in calls if isinstance(c[1], nn.PReLU)]
    if (len(convs), len(tconvs), len(prelus)) != (len(onnx_conv), len(onnx_tconv), len(onnx_prelu)):
        raise ValueError(f"{onnx_path}: {len(onnx_conv)} Conv / {len(onnx_tconv)} ConvTranspose / "
                         f"{len(onnx_prelu)} PRelu nodes for {len(convs)} / {len(tconvs)} / {len(prelus)} modules")
    bn_in = {id(i): (k, m) for k, m, i, o in calls if isinstance(m, nn.BatchNorm3d)}
    bn_of = {k: bn_in.get(id(o)) for k, m, i, o in calls if isinstance(m, nn.Conv3d)}
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    folded: list[str] = []

    def put(key: str, arr) -> None:
        if arr is None or arr.size != sd[key].numel():
            raise ValueError(f"{onnx_path}: no initializer for {key} {tuple(sd[key].shape)}")
        sd[key] = torch.as_tensor(arr.reshape(tuple(sd[key].shape)).copy())

    for (k, _, _, _), node in zip(convs, onnx_conv):
        put(f"{k}.weight", inits.get(node.input[1]))
        put(f"{k}.bias", inits.get(node.input[2]) if len(node.input) > 2 else None)
        bn = bn_of.get(k)
        if bn is not None:
            if node.input[1] == f"net.{k}.weight":
                raise ValueError(f"{onnx_path}: {k} is followed by a BatchNorm the export did not fold")
            folded.append(bn[0])
    for (k, _, _, _), node in zip(tconvs, onnx_tconv):
        put(f"{k}.weight", inits.get(node.input[1]))
        put(f"{k}.bias", inits.get(node.input[2]) if len(node.input) > 2 else None)
    for (k, _, _, _), node in zip(prelus, onnx_prelu):
        put(f"{k}.weight", inits.get(node.input[1]))
    for k, m in net.named_modules():
        if isinstance(m, nn.BatchNorm3d) and k not in folded:
            for p in ("weight", "bias", "running_mean", "running_var"):
                put(f"{k}.{p}", inits.get(f"net.{k}.{p}"))
    mods = dict(net.named_modules())
    for k in folded:  # identity first (exact: var + eps == 1), then the data's statistics
        eps = mods[k].eps
        sd[f"{k}.running_mean"].zero_()
        sd[f"{k}.running_var"].fill_(1.0 - eps)
        sd[f"{k}.weight"].fill_(1.0)
        sd[f"{k}.bias"].zero_()
    net.load_state_dict(sd)
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [mods[k].register_forward_hook(
        lambda m, i, o, k=k: stats.__setitem__(
            k, (i[0].mean((0, 2, 3, 4)), i[0].var((0, 2, 3, 4), unbiased=False))))
        for k in folded]
    if calib is not None:
        with torch.no_grad():
            net(calib)
    for h in hooks:
        h.remove()
    for k in folded:
        mean, var = stats.get(k, (torch.zeros_like(sd[f"{k}.bias"]), torch.ones_like(sd[f"{k}.bias"])))
        var = var.clamp_min(1e-6)
        sd[f"{k}.running_mean"], sd[f"{k}.running_var"] = mean.clone(), var.clone()
        sd[f"{k}.weight"], sd[f"{k}.bias"] = torch.sqrt(var + mods[k].eps), mean.clone()
    net.load_state_dict(sd)
    net.train(was_training)
    return net
