"""Warm start: the weights of a committed PE ONNX file loaded back into a ``PECnnLstm``.

The export folds every BatchNorm into the convolution before it, so the loaded model carries the folded
convolution weights and identity BatchNorms (mean 0, variance 1, scale 1, shift 0); it computes the same function
as the ONNX file as long as those BatchNorms stay in eval mode (``freeze_batchnorm``). ONNX orders the LSTM gates
i, o, f, c; torch orders them i, f, g(=c), o.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from inference.training.pe.net import PECnnLstm


def _lstm_gates(w: np.ndarray, hidden: int) -> np.ndarray:
    """ONNX gate order (i, o, f, c) → torch (i, f, g, o) along axis 0."""
    i, o, f, c = (w[k * hidden:(k + 1) * hidden] for k in range(4))
    return np.concatenate([i, f, c, o])


def load_onnx_weights(model: PECnnLstm, path: Path | str) -> PECnnLstm:
    """Copy the weights of the ONNX export ``path`` of a model of the same configuration into ``model``."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    named = {k for k in init if k in sd}
    for k in named:
        sd[k] = torch.from_numpy(init[k].copy()).reshape(sd[k].shape)
    # folded conv + BN pairs: the unnamed Conv initialisers in graph order = the normed convs in module order
    folded = []
    for node in g.node:
        if node.op_type == "Conv" and node.input[1] not in named:
            folded.append((node.input[1], node.input[2] if len(node.input) > 2 else None))
    convs = [k[: -len(".weight")] for k in sd if k.endswith("conv.weight")]
    if len(folded) != len(convs):
        raise ValueError(f"{path}: {len(folded)} folded convolutions, the model has {len(convs)}")
    for prefix, (w, b) in zip(convs, folded):
        sd[prefix + ".weight"] = torch.from_numpy(init[w].copy())
        sd[prefix + ".bias"] = torch.from_numpy(init[b].copy()) if b else torch.zeros_like(sd[prefix + ".bias"])
        bn = prefix[: -len("conv")] + "adn.N"
        sd[bn + ".weight"].fill_(1.0)
        sd[bn + ".bias"].zero_()
        sd[bn + ".running_mean"].zero_()
        sd[bn + ".running_var"].fill_(1.0 - 1e-5)  # (var + eps) = 1: an exact identity
    lstm = next(n for n in g.node if n.op_type == "LSTM")
    hid = model.lstm.hidden_size
    W, R = init[lstm.input[1]], init[lstm.input[2]]  # (2, 4h, in), (2, 4h, h)
    B = init[lstm.input[3]]  # (2, 8h): input biases then recurrent biases
    for d, sfx in enumerate(("", "_reverse")):
        sd[f"lstm.weight_ih_l0{sfx}"] = torch.from_numpy(_lstm_gates(W[d], hid))
        sd[f"lstm.weight_hh_l0{sfx}"] = torch.from_numpy(_lstm_gates(R[d], hid))
        sd[f"lstm.bias_ih_l0{sfx}"] = torch.from_numpy(_lstm_gates(B[d, : 4 * hid], hid))
        sd[f"lstm.bias_hh_l0{sfx}"] = torch.from_numpy(_lstm_gates(B[d, 4 * hid:], hid))
    if "slice_out.weight" not in named:  # exported as a MatMul: the first unnamed (2h, 1) initialiser
        mm = next(n for n in g.node if n.op_type == "MatMul" and n.input[1] in init
                  and init[n.input[1]].shape == (2 * hid, 1))
        sd["slice_out.weight"] = torch.from_numpy(init[mm.input[1]].T.copy())
    model.load_state_dict(sd)
    return model


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep every BatchNorm in eval mode (fixed statistics; its scale and shift still learn)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
