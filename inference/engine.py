"""ONNX Runtime engine: sessions from model cards, provider fallback, integrity check, sliding window.

One ``Engine`` per process (``get_engine()``), reused by every analysis. Providers are tried in the order
of ``Settings.onnx_providers`` (TensorRT → CUDA → CPU by default); each is used only if a session really
runs on it (``session.get_providers()``), and a fallback is logged once, plainly. The model file's sha256
must match its card, or the engine refuses to start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from inference.config import Settings, get_settings
from inference.model_card import ModelCard, apply_overrides, find_cards, sha256_file

log = logging.getLogger(__name__)


class ModelIntegrityError(RuntimeError):
    """The ONNX file does not match the sha256 recorded in its model card."""


class ModelMissingError(RuntimeError):
    """A model the pipeline needs is not in the model directory."""


def _ort():
    import onnxruntime as ort  # imported lazily: importing the package must stay cheap

    return ort


@dataclass
class LoadedModel:
    card: ModelCard
    session: object
    provider: str
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run the session (thread-safe); returns the requested outputs (default: all)."""
        return self.session.run(list(outputs) if outputs else None, feeds)  # type: ignore[attr-defined]


def verify_model_file(card: ModelCard) -> None:
    """Raise ``ModelIntegrityError`` unless the ONNX file's sha256 equals the card's."""
    path = card.onnx_path
    if not path.exists():
        raise ModelMissingError(f"model file {path} (card {card.name}) does not exist")
    digest = sha256_file(path)
    if digest != card.sha256:
        raise ModelIntegrityError(
            f"model {card.name}: {path.name} has sha256 {digest[:12]}…, its card says {card.sha256[:12]}…; "
            "the file was changed or replaced. Re-export it or restore the committed file."
        )


def _session_options(threads: int):
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads or max(1, (os.cpu_count() or 2))
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return so


_fallback_logged: set[tuple[str, str]] = set()
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def nvidia_gpu_present() -> bool:
    """True when an NVIDIA driver is visible (device node or nvidia-smi); without one, GPU providers are not
    tried at all (ONNX Runtime would print library-loading errors for each session before falling back)."""
    return os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") is not None


def create_session(card: ModelCard, providers: Sequence[str], threads: int = 0) -> LoadedModel:
    """An ONNX Runtime session on the first provider of ``providers`` that really works."""
    ort = _ort()
    available = set(ort.get_available_providers())
    gpu = nvidia_gpu_present()
    wanted = [p for p in providers if p in available and (gpu or p not in GPU_PROVIDERS)] or ["CPUExecutionProvider"]
    if not gpu and any(p in GPU_PROVIDERS for p in providers) and ("no-gpu", "") not in _fallback_logged:
        _fallback_logged.add(("no-gpu", ""))
        log.warning(
            "no NVIDIA GPU found; %s are not usable here, running models on CPUExecutionProvider",
            " and ".join(p for p in providers if p in GPU_PROVIDERS),
        )
    if "CPUExecutionProvider" not in wanted:
        wanted.append("CPUExecutionProvider")
    last_error: Exception | None = None
    for i, provider in enumerate(wanted):
        chain = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            sess = ort.InferenceSession(str(card.onnx_path), _session_options(threads), providers=chain)
        except Exception as exc:  # provider libraries missing, TensorRT build failure, ...
            last_error = exc
            continue
        actual = sess.get_providers()[0]
        if actual != provider:
            continue
        if i > 0 and (wanted[0], provider) not in _fallback_logged:
            _fallback_logged.add((wanted[0], provider))
            log.warning("%s is not usable here; running models on %s", wanted[0], provider)
        return LoadedModel(
            card=card,
            session=sess,
            provider=actual,
            input_names=[x.name for x in sess.get_inputs()],
            output_names=[x.name for x in sess.get_outputs()],
        )
    raise RuntimeError(f"no ONNX Runtime provider could load {card.name}: {last_error}")


class Engine:
    """All models of the model directory, loaded once, with their provider and a warm-up run."""

    def __init__(
        self,
        model_dir: Path,
        providers: Sequence[str],
        threads: int = 0,
        verify: bool = True,
        threshold_overrides: Mapping[str, Mapping[str, float]] | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.providers = list(providers)
        self.threads = threads
        self.cards = find_cards(self.model_dir)
        if threshold_overrides:
            apply_overrides(self.cards, threshold_overrides)
            log.warning("operating points overridden by settings: %s", dict(threshold_overrides))
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        if verify:
            for card in self.cards.values():
                verify_model_file(card)

    def model(self, name: str) -> LoadedModel:
        """The loaded model ``name`` (loaded on first use)."""
        with self._lock:
            if name not in self._models:
                if name not in self.cards:
                    raise ModelMissingError(
                        f"model {name!r} is not in {self.model_dir} (found: {', '.join(self.cards) or 'none'})"
                    )
                self._models[name] = create_session(self.cards[name], self.providers, self.threads)
                log.info("loaded model %s on %s", name, self._models[name].provider)
            return self._models[name]

    def provider_of(self, name: str) -> str:
        return self.model(name).provider


@lru_cache(maxsize=4)
def _engine_for(model_dir: str, providers: tuple[str, ...], threads: int, overrides: str) -> Engine:
    return Engine(Path(model_dir), providers, threads, threshold_overrides=json.loads(overrides))


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured model directory, providers and threshold overrides.

    Raises:
        ModelMissingError: the model directory does not exist (the message names ``TRIAGE_MODEL_DIR``).
        inference.model_card.CardError: a model card is invalid.
    """
    s = settings or get_settings()
    model_dir = s.resolved_model_dir
    overrides = json.dumps(s.threshold_overrides, sort_keys=True)
    return _engine_for(str(model_dir), tuple(s.onnx_providers), s.onnx_threads, overrides)


# --- sliding window ---------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def gaussian_importance(roi: tuple[int, ...], sigma_scale: float = 0.125) -> np.ndarray:
    """A Gaussian weight map over one window (MONAI's ``BlendMode.GAUSSIAN``), minimum clipped above zero."""
    axes = []
    for n in roi:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    w = axes[0]
    for a in axes[1:]:
        w = np.multiply.outer(w, a)
    w = (w / w.max()).astype(np.float32)
    return np.maximum(w, max(float(w[w > 0].min()), 1e-3))


def _starts(size: int, roi: int, overlap: float) -> list[int]:
    if size <= roi:
        return [0]
    step = max(1, int(roi * (1.0 - overlap)))
    starts = list(range(0, size - roi + 1, step))
    if starts[-1] != size - roi:
        starts.append(size - roi)
    return starts


def sliding_window(
    image: np.ndarray,
    roi: Sequence[int],
    run: Callable[[np.ndarray], list[np.ndarray]],
    *,
    overlap: float = 0.25,
    batch_size: int = 2,
    pad_value: float = 0.0,
) -> list[np.ndarray]:
    """Gaussian-blended sliding-window inference over a 3-D image, in numpy.

    Args:
        image: ``(D, H, W)`` float32 network input (already windowed/normalised).
        roi: window size ``(d, h, w)``; the image is padded to at least this size.
        run: called with a batch ``(B, 1, d, h, w)``; returns the model's spatial outputs, each
            ``(B, C, d, h, w)``.
        overlap: fraction of the window shared by neighbours.
        batch_size: windows per ``run`` call.

    Returns:
        Each output blended over the whole image, ``(C, D, H, W)`` float32, cropped back to the input size.
    """
    roi = tuple(int(r) for r in roi)
    shape = image.shape
    pad = [(0, max(0, r - s)) for r, s in zip(roi, shape)]
    img = np.pad(image, pad, constant_values=pad_value) if any(p[1] for p in pad) else image
    grid = [_starts(s, r, overlap) for s, r in zip(img.shape, roi)]
    corners = [(z, y, x) for z in grid[0] for y in grid[1] for x in grid[2]]
    weight = gaussian_importance(roi)
    acc: list[np.ndarray] | None = None
    norm = np.zeros(img.shape, dtype=np.float32)
    for b in range(0, len(corners), batch_size):
        chunk = corners[b : b + batch_size]
        batch = np.stack([img[z : z + roi[0], y : y + roi[1], x : x + roi[2]] for z, y, x in chunk])[:, None]
        outs = run(np.ascontiguousarray(batch, dtype=np.float32))
        if acc is None:
            acc = [np.zeros((o.shape[1], *img.shape), dtype=np.float32) for o in outs]
        for n, (z, y, x) in enumerate(chunk):
            sl = (slice(z, z + roi[0]), slice(y, y + roi[1]), slice(x, x + roi[2]))
            for a, o in zip(acc, outs):
                a[(slice(None),) + sl] += o[n] * weight
            norm[sl] += weight
    assert acc is not None
    crop = (slice(None), *(slice(0, s) for s in shape))
    return [(a / np.maximum(norm, 1e-6))[crop] for a in acc]
