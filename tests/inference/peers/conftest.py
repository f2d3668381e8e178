"""Fixtures for the PACS peer tests: throw-away Orthanc servers on loopback (see ``orthanc.py``).

Orthanc missing: the tests skip with the reason on a user's machine, and fail in CI (``CI`` set), where
``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.inference.peers.orthanc import OrthancServer, orthanc_available


def require_orthanc() -> None:
    """Skip (or fail under CI) when Orthanc or its DICOMweb plugin is not installed."""
    missing = orthanc_available()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"Orthanc is required in CI: {missing}")
        pytest.skip(missing)


def stop_all(servers: list[OrthancServer]) -> None:
    """SIGTERM every server first, then wait for each (they shut down in parallel, ~3.5 s)."""
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    for s in servers:
        if s.proc is not None:
            try:
                s.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(timeout=10)
            s.proc = None


@pytest.fixture
def orthanc_factory(tmp_path):
    """``make(name, **kw) -> OrthancServer``: started Orthancs, each with its own folder; all stopped after."""
    require_orthanc()
    servers: list[OrthancServer] = []

    def make(name: str = "pacs", **kw) -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc-{name}", aet=kw.pop("aet", name.upper()[:16]), **kw)
        servers.append(server)
        return server.start()

    yield make
    stop_all(servers)


@pytest.fixture
def orthanc(orthanc_factory) -> OrthancServer:
    """One started Orthanc (AE ``PACS``) that knows the calling AE ``TRIAGE`` (as a site would list us)."""
    return orthanc_factory("pacs", modalities={})
