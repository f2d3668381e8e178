"""Shared fixtures: an isolated data directory per test, and the real sample data from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inference.config import get_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRIAGE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
LIDC_DIR = SHARED_DATA / "lidc-idri-slices"


def require_shared_data() -> Path:
    """The shared real-data folder; skips (with the reason) only where it is absent, i.e. a user's clone."""
    if not LIDC_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real sample data missing in CI: {SHARED_DATA}")
        pytest.skip(f"real sample data not found at {SHARED_DATA} (set TRIAGE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings pointing at an empty data directory under tmp_path."""
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
