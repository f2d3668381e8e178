"""Tests of the ONNX engine: sha256 check, provider fallback, Gaussian sliding window (tiny models built with onnx)."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inference.engine import (
    Engine,
    ModelIntegrityError,
    ModelMissingError,
    create_session,
    gaussian_importance,
    sliding_window,
)
from inference.model_card import CardError, ModelCard, sha256_file


def _scale_model(path, factor: float = 2.0) -> None:
    """y = factor * x, plus a second output: the mean over space broadcast (a non-local op)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    k = helper.make_tensor("k", TensorProto.FLOAT, [1], [factor])
    graph = helper.make_graph([helper.make_node("Mul", ["image", "k"], ["prob"])], "scale", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def _card(tmp_path, name="toy", tamper=False) -> ModelCard:
    onnx_path = tmp_path / f"{name}.onnx"
    _scale_model(onnx_path)
    card = {
        "name": name,
        "version": "0.0.1",
        "task": "test",
        "file": onnx_path.name,
        "sha256": "0" * 64 if tamper else sha256_file(onnx_path),
        "opset": 17,
        "inputs": [{"name": "image", "shape": ["N", 1, "D", "H", "W"]}],
        "outputs": [{"name": "prob", "shape": ["N", 1, "D", "H", "W"]}],
        "preprocessing": {"spacing_mm": [1, 1, 1], "hu_window": [-1000, 400], "patch_size": [16, 16, 16]},
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    return ModelCard.load(tmp_path / f"{name}.json")


def test_engine_loads_cards_and_runs(tmp_path):
    """Test that the engine finds the card, loads the model on CPU and runs it."""
    _card(tmp_path)
    engine = Engine(tmp_path, ["CPUExecutionProvider"])
    model = engine.model("toy")
    (out,) = model.run({"image": np.ones((1, 1, 8, 8, 8), np.float32)})
    assert out.shape == (1, 1, 8, 8, 8) and np.allclose(out, 2.0)
    assert engine.cards["toy"].version == "0.0.1"
    with pytest.raises(ModelMissingError):
        engine.model("absent")


def test_invalid_card_fails_loudly_naming_file_and_field(tmp_path):
    """Test that a card with a wrong field, or naming a missing ONNX file, stops the engine with a message that
    names the card file and the field (never skipped, which surfaced later as "model not found")."""
    card = _card(tmp_path)
    doc = json.loads(card.path.read_text())
    (tmp_path / "toy.json").write_text(json.dumps(doc | {"opset": "seventeen"}))
    with pytest.raises(CardError, match=r"toy\.json.*opset"):
        Engine(tmp_path, ["CPUExecutionProvider"])
    (tmp_path / "toy.json").write_text(json.dumps(doc | {"file": "gone.onnx"}))
    with pytest.raises(CardError, match=r"toy\.json.*field file names gone\.onnx"):
        Engine(tmp_path, ["CPUExecutionProvider"])
    (tmp_path / "toy.json").write_text(json.dumps(doc))
    with pytest.raises(CardError, match=r"toy\.json.*thresholds\.critical"):
        Engine(tmp_path, ["CPUExecutionProvider"]).cards["toy"].threshold("critical")


def test_threshold_override_replaces_the_card_value(tmp_path):
    """Test that a settings override changes the card's operating point in the engine, and that an override
    naming an unknown model is refused."""
    card = _card(tmp_path)
    doc = json.loads(card.path.read_text())
    (tmp_path / "toy.json").write_text(json.dumps(doc | {"thresholds": {"critical": 0.4}}))
    engine = Engine(tmp_path, ["CPUExecutionProvider"], threshold_overrides={"toy": {"critical": 0.7}})
    assert engine.cards["toy"].threshold("critical") == 0.7
    with pytest.raises(CardError, match="absent"):
        Engine(tmp_path, ["CPUExecutionProvider"], threshold_overrides={"absent": {"critical": 0.7}})


def test_tampered_model_is_refused_at_start(tmp_path):
    """Test that a model whose sha256 differs from its card stops the engine with a clear message."""
    _card(tmp_path, tamper=True)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        Engine(tmp_path, ["CPUExecutionProvider"])


def test_provider_fallback_to_cpu_is_logged_once(tmp_path, caplog):
    """Test that asking for TensorRT/CUDA on a machine without them falls back to CPU with one plain warning."""
    import onnxruntime as ort

    import inference.engine as engine_module

    engine_module._fallback_logged.clear()  # "once" is per process; start this test from a clean slate
    card = _card(tmp_path)
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="inference.engine"):
        first = create_session(card, wanted)
        second = create_session(card, wanted)
    has_gpu_runtime = first.provider != "CPUExecutionProvider"
    if has_gpu_runtime:  # a GPU machine: the first provider that really works is used
        assert first.provider in ort.get_available_providers()
        return
    assert first.provider == second.provider == "CPUExecutionProvider"
    warnings = [r for r in caplog.records if "not usable here" in r.getMessage()]
    assert len(warnings) == 1 and "CPUExecutionProvider" in warnings[0].getMessage()


def test_gaussian_importance_peaks_in_the_centre():
    """Test that the blending weight is 1 in the middle, positive at the border and symmetric."""
    w = gaussian_importance((8, 10, 12))
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[4, 5, 6] > w[0, 0, 0]
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1], rtol=1e-6)


def test_sliding_window_reassembles_a_pointwise_model_exactly(tmp_path):
    """Test that blended windows of a pointwise model reproduce the whole-image result (incl. padding/cropping)."""
    _card(tmp_path)
    model = Engine(tmp_path, ["CPUExecutionProvider"]).model("toy")
    image = np.random.default_rng(0).normal(size=(21, 37, 30)).astype(np.float32)
    calls = []

    def run(batch):
        calls.append(batch.shape)
        return model.run({"image": batch})

    (out,) = sliding_window(image, (16, 16, 16), run, overlap=0.5, batch_size=3)
    assert out.shape == (1, 21, 37, 30)
    np.testing.assert_allclose(out[0], 2 * image, rtol=1e-5, atol=1e-5)
    assert all(c[0] <= 3 and c[2:] == (16, 16, 16) for c in calls)
    small = np.ones((5, 6, 7), np.float32)  # smaller than the window: padded then cropped
    (o2,) = sliding_window(small, (16, 16, 16), run)
    assert o2.shape == (1, 5, 6, 7) and np.allclose(o2, 2.0)
