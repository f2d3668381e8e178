"""Model cards: the JSON beside every ONNX model, read through one typed class.

Configuration ships with the weights (nnU-Net's ``plans.json`` habit): spacing, HU window, patch size,
output names, thresholds and calibration live in ``assets/models/NAME.json``, never as constants in
pipeline code. Training writes the card; serving only reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class CardError(ValueError):
    """A model card is invalid or lacks a value the pipeline needs; the message names the file and field."""


class TensorSpec(BaseModel):
    """One ONNX input or output: name, symbolic shape, dtype, meaning."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"
    description: str = ""


class Preprocessing(BaseModel):
    """How a ``Volume`` becomes the network input."""

    model_config = ConfigDict(extra="allow")

    spacing_mm: list[float]  # (z, y, x) the model works at
    hu_window: list[float]  # (low, high): clip, then scale to [0, 1]
    patch_size: list[int] | None = None  # sliding-window ROI (z, y, x) or 2-D (y, x)
    overlap: float = 0.25
    multiple_of: int = 1  # spatial sizes must be multiples of this
    crop: str = "lungs"  # region the input is cropped to: lungs | pulmonary_arteries | none

    def patch(self) -> tuple[int, ...]:
        """``patch_size``, which a sliding-window or patch model needs.

        Raises:
            CardError: the card has none.
        """
        if self.patch_size is None:
            raise CardError("model card: field preprocessing.patch_size is missing")
        return tuple(int(n) for n in self.patch_size)


class Calibration(BaseModel):
    """Maps a raw score to a calibrated probability. ``platt``: sigmoid(a * logit(p) + b). Extra fields (the
    validation operating point, comparisons) are kept."""

    model_config = ConfigDict(extra="allow")

    method: str = "none"  # none | platt | temperature | logistic (classifier + segmentation logits)
    params: dict[str, Any] = Field(default_factory=dict)
    ece_before: float | None = None
    ece_after: float | None = None
    data: str = ""


class ModelCard(BaseModel):
    """A model card (``assets/models/NAME.json``)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: str
    task: str  # nodule_segmentation | nodule_candidate | pe_slice_sequence | ...
    file: str  # ONNX file name, relative to the card
    sha256: str
    opset: int
    architecture: dict[str, Any] = Field(default_factory=dict)
    parameters: int = 0
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing
    thresholds: dict[str, float] = Field(default_factory=dict)
    calibration: Calibration = Field(default_factory=Calibration)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)  # each with the command that produced it
    intended_use: str = "Research only; not a medical device. Trained on synthetic data unless stated."
    path: Path | None = Field(default=None, exclude=True)  # where the card was read from

    @classmethod
    def load(cls, path: Path | str) -> ModelCard:
        """Read and validate a card.

        Raises:
            CardError: the file is not JSON or a field is missing or wrong (the message names both).
        """
        path = Path(path)
        try:
            card = cls.model_validate(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise CardError(f"model card {path}: not valid JSON ({exc})") from None
        except ValidationError as exc:
            errors = exc.errors()
            fields = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}" for e in errors)
            raise CardError(f"model card {path}: invalid field(s): {fields}") from None
        card.path = path
        return card

    def threshold(self, key: str) -> float:
        """The operating point ``thresholds[key]``.

        Raises:
            CardError: the card has no such threshold (the message names the file and the field).
        """
        if key not in self.thresholds:
            where = self.path or self.name
            raise CardError(f"model card {where}: field thresholds.{key} is missing")
        return float(self.thresholds[key])

    @property
    def onnx_path(self) -> Path:
        if self.path is None:
            raise ValueError("card was not loaded from a file")
        return self.path.parent / self.file

    def output_index(self, name: str) -> int:
        for i, o in enumerate(self.outputs):
            if o.name == name:
                return i
        raise KeyError(f"model {self.name} has no output {name!r}")


def apply_overrides(cards: Mapping[str, ModelCard], overrides: Mapping[str, Mapping[str, float]]) -> None:
    """Replace card thresholds by settings values (``TRIAGE_THRESHOLD_OVERRIDES``), in place.

    Raises:
        CardError: an override names a model that has no card.
    """
    for name, values in overrides.items():
        if name not in cards:
            raise CardError(f"TRIAGE_THRESHOLD_OVERRIDES names model {name!r}, which has no card")
        cards[name].thresholds.update({k: float(v) for k, v in values.items()})


def study_operating_points(cards: Mapping[str, ModelCard]) -> dict[str, dict[str, float]]:
    """The operating points of every study score (``inference.findings.OPERATING_POINTS``) from ``cards``.

    Raises:
        CardError: a card lacks one of them.
    """
    from inference.findings import OPERATING_POINTS

    out = {}
    for key, (model, names) in OPERATING_POINTS.items():
        if model not in cards:
            raise CardError(f"no model card {model!r} (needed for the {key} operating points)")
        out[key] = {name: cards[model].threshold(name) for name in names}
    return out


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_cards(model_dir: Path | str) -> dict[str, ModelCard]:
    """Every card in ``model_dir`` by model name.

    Raises:
        CardError: a card is invalid, or names an ONNX file that is not there (never skipped silently: a
            skipped card would surface later as a misleading "model not found").
    """
    out = {}
    for p in sorted(Path(model_dir).glob("*.json")):
        card = ModelCard.load(p)
        if not card.onnx_path.exists():
            raise CardError(f"model card {p}: field file names {card.file}, which is not in {p.parent}")
        out[card.name] = card
    return out
