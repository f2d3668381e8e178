"""The dashboard for a browser driver: a live server on a free localhost port, and Chromium's launch settings.

One place for what the browser tests (``tests/e2e``), the browser benchmark (``bench/bench_dashboard.py``) and
the README screenshots (``docs/screenshots.py``) all need. Playwright itself is imported by those callers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from dashboard.cli import serve

# flags that keep a headless Chromium off the network and the GPU (see ENVIRONMENT.md)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str | None:
    """TRIAGE_TEST_CHROMIUM, else /usr/bin/chromium if present, else ``chromium`` on PATH, else None
    (Playwright's own browser)."""
    path = os.environ.get("TRIAGE_TEST_CHROMIUM") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    return path or shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    env: Mapping[str, str], *, output: IO[str] | None = None, timeout: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve the dashboard with ``env`` on a free port until ``/_stcore/health`` answers; yields ``(url, proc)``
    and stops the server afterwards.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` seconds.
    """
    port = free_port()
    proc = serve(port, block=False, env=env, output=output)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the dashboard server did not start") from None
                time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
