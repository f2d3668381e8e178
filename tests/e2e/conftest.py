"""E2E fixtures: Chromium from the system, and a real `streamlit run` server per module on a free port,
seeded with its own data directory (migrated SQLite, users, studies, findings, saved case arrays)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dashboard.cli import serve
from tests.dashboard.seed import seed

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """TRIAGE_TEST_CHROMIUM, else /usr/bin/chromium if present, else Playwright's own browser (None)."""
    path = os.environ.get("TRIAGE_TEST_CHROMIUM") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    return path or shutil.which("chromium")


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A live dashboard on a free port (waits for /_stcore/health)."""
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    ids = seed(data_dir)
    port = free_port()
    env = {
        **os.environ,
        "TRIAGE_DATA_DIR": str(data_dir),
        "TRIAGE_DEMO_MODE": "1",
        "TRIAGE_AI_HIDDEN_FRACTION": "0",
        "TRIAGE_CLAIM_STALE_MINUTES": "0",
    }
    env.pop("TRIAGE_DATABASE_URL", None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "server.log", "w")  # noqa: SIM115
    proc = serve(port, block=False, env=env, output=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the dashboard server did not start") from None
            time.sleep(0.3)
    yield Server(url, data_dir, ids, proc)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
