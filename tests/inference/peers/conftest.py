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


def wait_all(procs: list[subprocess.Popen]) -> None:
    """Wait for stopped Orthancs to exit (SIGKILL one that hangs)."""
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def _stopping_orthancs():
    """Orthancs sent SIGTERM by finished tests; each takes ~3.5 s to exit, so they are waited for here, at
    the end of the session, while the next tests run (they use other ports and folders)."""
    procs: list[subprocess.Popen] = []
    yield procs
    wait_all(procs)


@pytest.fixture
def orthanc_factory(tmp_path, _stopping_orthancs):
    """``make(name, **kw) -> OrthancServer``: started Orthancs, each with its own folder; all stopped after
    the test (SIGTERM; the exit is awaited at the end of the session)."""
    require_orthanc()
    servers: list[OrthancServer] = []

    def make(name: str = "pacs", **kw) -> OrthancServer:
        server = OrthancServer(tmp_path / f"orthanc-{name}", aet=kw.pop("aet", name.upper()[:16]), **kw)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            _stopping_orthancs.append(server.proc)
        server.proc = None


@pytest.fixture
def orthanc(orthanc_factory) -> OrthancServer:
    """One started Orthanc (AE ``PACS``) that knows the calling AE ``TRIAGE`` (as a site would list us)."""
    return orthanc_factory("pacs", modalities={})
