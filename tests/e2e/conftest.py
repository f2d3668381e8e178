"""E2E fixtures: Chromium from the system, and a real `streamlit run` server per module on a free port,
seeded with its own data directory (migrated SQLite, users, studies, findings, saved case arrays)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dashboard.harness import CHROMIUM_ARGS, chromium_path, running_server
from tests.dashboard.seed import seed

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    args = {**browser_type_launch_args, "args": CHROMIUM_ARGS}
    path = chromium_path()
    if path:
        args["executable_path"] = path
    return args


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1600, "height": 1500}}


@dataclass
class Server:
    url: str
    data_dir: Path
    ids: dict
    proc: subprocess.Popen

    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'triage.db'}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A live dashboard on a free port (waits for /_stcore/health)."""
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    ids = seed(data_dir)
    env = {
        **os.environ,
        "TRIAGE_DATA_DIR": str(data_dir),
        "TRIAGE_DEMO_MODE": "1",
        "TRIAGE_AI_HIDDEN_FRACTION": "0",
        "TRIAGE_CLAIM_STALE_MINUTES": "0",
        "TRIAGE_DASHBOARD_HEARTBEAT_S": "2",  # browser activity reports every 2 s instead of 15
    }
    env.pop("TRIAGE_DATABASE_URL", None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "server.log", "w")  # noqa: SIM115
    with running_server(env, output=log, timeout=30) as (url, proc):
        yield Server(url, data_dir, ids, proc)
    log.close()
