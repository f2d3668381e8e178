"""Every committed model card has its ONNX file, a matching sha256, evaluation numbers with the command that
made them, and the operating points the pipeline reads (``inference.findings.OPERATING_POINTS``)."""

from __future__ import annotations

import pytest

from inference.findings import OPERATING_POINTS
from inference.model_card import ModelCard, find_cards, sha256_file, study_operating_points
from tests.conftest import PROJECT_ROOT

MODELS = PROJECT_ROOT / "assets" / "models"
CARDS = sorted(p.stem for p in MODELS.glob("*.json"))


@pytest.mark.parametrize("name", CARDS)
def test_card_has_its_file_checksum_and_evaluation(name: str) -> None:
    """Test that the card's ONNX file is committed with the recorded sha256 and that the card carries
    evaluation numbers (beyond export parity) with the command that produced them."""
    card = ModelCard.load(MODELS / f"{name}.json")
    assert card.onnx_path.exists(), f"{name}: {card.file} is not committed"
    assert sha256_file(card.onnx_path) == card.sha256, f"{name}: sha256 does not match {card.file}"
    evaluations = {k: v for k, v in card.metrics.items() if k != "export_parity_max_abs_diff"}
    assert evaluations, f"{name}: no evaluation numbers"
    text = str(evaluations)
    assert "triage evaluate" in text, f"{name}: the evaluation does not name the command that made it"


def test_operating_points_come_from_the_cards() -> None:
    """Test that each study score's operating points are read from its model card."""
    cards = find_cards(MODELS)
    points = study_operating_points(cards)
    for key, (model, names) in OPERATING_POINTS.items():
        assert points[key] == {n: float(cards[model].thresholds[n]) for n in names}
