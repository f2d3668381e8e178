"""Test of the fp16 conversion of the committed nodule segmentation model (ONNX Runtime, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.training.nodule.export import to_fp16

MODEL = Path(__file__).resolve().parents[3] / "assets" / "models" / "nodule_seg.onnx"


def test_fp16_variant_matches_fp32(tmp_path):
    """Test that the fp16 variant of nodule_seg gives the fp32 probabilities within 1e-2 (it once differed by 1.0)
    and stores half-precision weights."""
    import onnx

    dst = tmp_path / "seg_fp16.onnx"
    to_fp16(MODEL, dst)
    x = np.random.default_rng(0).random((1, 1, 48, 48, 48), dtype=np.float32)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ref = ort.InferenceSession(str(MODEL), so, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    half = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert half.dtype == np.float32 and half.shape == ref.shape
    assert float(np.abs(half - ref).max()) < 1e-2
    inits = onnx.load(str(dst)).graph.initializer
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in inits) > len(inits) // 2


def test_committed_fp16_variant_has_a_matching_card_and_serves():
    """Test that the committed fp16 variant's card names its file with the right sha256 and that the serving
    engine runs it with the fp32 model's output names."""
    from inference.engine import Engine
    from inference.model_card import ModelCard, sha256_file

    card = ModelCard.load(MODEL.with_name("nodule_seg_fp16.json"))
    assert card.onnx_path.exists() and sha256_file(card.onnx_path) == card.sha256
    model = Engine(MODEL.parent, ["CPUExecutionProvider"], threads=1).model("nodule_seg_fp16")
    x = np.random.default_rng(1).random((1, 1, 32, 32, 32), dtype=np.float32)
    out = model.run({model.input_names[0]: x})
    assert out[card.output_index("prob")].shape == x.shape
