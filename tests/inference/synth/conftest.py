"""Shared fixtures for the synthetic-CT tests: small studies and the real data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.synth.study import LesionRequest, generate_study

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "synth"


def need_data(sub: str) -> Path:
    """The shared real-data path, or skip (only where the folder is absent, i.e. a user's clone)."""
    path = DATA / sub
    if not path.exists():
        pytest.skip(f"real data not present at {path} (shared/data is only in the project workspace)")
    return path


@pytest.fixture
def shared_data():
    """``shared_data("sub/path")`` → the real-data path, or skip where the shared folder is absent."""
    return need_data


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where renderings are written for people to look at (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


LESIONS = [
    LesionRequest("nodule", texture="solid", morphology="spiculated", location="isolated", diameter_mm=14.0),
    LesionRequest("nodule", texture="ground-glass", location="juxtapleural", diameter_mm=12.0),
    LesionRequest("nodule", texture="part-solid", location="juxtavascular", diameter_mm=10.0),
    LesionRequest("embolism", level="lobar", occlusive=True),
    LesionRequest("embolism", level="central", occlusive=False),
    LesionRequest("embolism", level="segmental", occlusive=False),
]


@pytest.fixture(scope="session")
def ctpa_study():
    """A small CTPA study with three nodules and three emboli."""
    return generate_study(11, profile="siemens_flash_b30f", contrast="ctpa", size="small", lesions=LESIONS)


@pytest.fixture(scope="session")
def plain_study():
    """A small non-contrast study with nodules only."""
    return generate_study(12, profile="ge_lightspeed16_standard", contrast="none", size="small", lesions=LESIONS)
