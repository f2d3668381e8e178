"""Fixtures for the dashboard tests: a seeded data directory wired into the settings, fresh caches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from db.session import reset_engines
from inference.config import get_settings
from tests.dashboard.seed import seed

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _fresh() -> None:
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    reset_engines()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data directory configured through TRIAGE_* (AI always shown unless a test changes it)."""
    path = tmp_path / "data"
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(path))
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    monkeypatch.setenv("TRIAGE_AI_HIDDEN_FRACTION", "0")
    _fresh()
    yield path
    _fresh()


@pytest.fixture
def seeded(data_dir: Path) -> dict:
    """The seeded studies (see tests/dashboard/seed.py) and their ids."""
    return seed(data_dir)


def app(user: str | None = None, role: str = "reader") -> AppTest:
    """An AppTest of the dashboard, optionally already signed in as ``user``."""
    from dashboard.auth import SignedIn

    at = AppTest.from_file(APP, default_timeout=60)
    if user:
        at.session_state["user"] = SignedIn(user, role)
    return at


def texts(at: AppTest) -> str:
    """Everything written on the page as text (markdown, captions, html, alerts, metrics)."""
    parts = []
    for kind in ("markdown", "caption", "html", "error", "warning", "info", "success", "title", "subheader"):
        parts += [str(getattr(e, "value", "") or getattr(e, "body", "")) for e in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
