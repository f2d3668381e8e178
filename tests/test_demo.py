"""Test the README's main command: `triage demo` builds the demo end to end and serves the dashboard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import sqlalchemy as sa


def test_demo_builds_triages_and_serves(tmp_path):
    """Test that the demo ingests synthetic + real studies, analyses them (one unsuitable), and serves."""
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path / "demo")}
    out = subprocess.run(
        [sys.executable, "-m", "inference.cli", "demo", "--no-serve", "--size", "small"],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    tail = out.stdout.rstrip().splitlines()[-6:]  # the output ends with the account and how to reset it
    assert tail[-1] == "=" * 72 and any("Account:    demo, password " in line for line in tail)
    assert any("triage user passwd demo --generate" in line for line in tail)
    info = json.loads((tmp_path / "demo" / ".demo-built.json").read_text())
    assert info["status_counts"] == {"ready": 10, "unsuitable": 1}  # 7 synthetic + 3 real LIDC ready, 1 broken
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'demo' / 'triage.db'}")
    with engine.connect() as c:
        reasons = c.execute(sa.text("SELECT attention_reason FROM study WHERE status = 'unsuitable'")).scalars().all()
        lidc = (
            "SELECT COUNT(*) FROM study WHERE study_uid LIKE '1.3.6.1.4.1.14519.5.2.1.6279.6001.%' AND status = 'ready'"
        )
        makers = c.execute(sa.text(lidc)).scalar()
        simulated = c.execute(sa.text("SELECT COUNT(*) FROM study WHERE status = 'signed'")).scalar()
        users = c.execute(sa.text("SELECT username FROM app_user WHERE active")).scalars().all()
    assert "missing_slices" in reasons[0]
    assert makers == 3  # the real LIDC-IDRI samples
    assert simulated > 0 and users == ["demo"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference.cli", "demo", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, ok = time.monotonic() + 90, False
        while time.monotonic() < deadline and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert ok, "the demo's dashboard did not answer on /_stcore/health"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
