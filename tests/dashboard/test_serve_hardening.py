"""`triage serve` hardening (#17.6, #17.11): SIGTERM stops the server, exposure warnings, HTTPS flags, and the
sign-in token keyed with TRIAGE_SECRET_KEY."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from dashboard import cli
from dashboard.harness import free_port
from db import queries
from db.auth import token_hash
from db.migrate import upgrade
from db.models import AuthSession
from db.session import create_db_engine, get_engine, reset_engines
from inference.config import Settings, get_settings
from tests.db.factories import make_user
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def test_sigterm_to_triage_serve_stops_the_streamlit_server(tmp_path):
    """Test that SIGTERM to the `triage serve` process (not its group) makes the dashboard stop answering and
    leaves no Streamlit child behind."""
    port = free_port()
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path / "data"), "TRIAGE_DEMO_MODE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: _healthy(port), 60, interval=0.2), "the dashboard never answered"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) is not None
        assert wait_until(lambda: not _healthy(port), 15, interval=0.2), (
            "the Streamlit child still answers after SIGTERM"
        )
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # clean up whatever is left in the group
        except ProcessLookupError:
            pass


def test_listening_beyond_loopback_without_tls_warns_loudly(tmp_path, capsys):
    """Test that serving on a non-loopback address without TLS prints a loud warning, and with a certificate
    and key configured passes them to Streamlit and does not warn."""
    env = {"TRIAGE_DATA_DIR": str(tmp_path / "data"), "TRIAGE_DEMO_MODE": "1", "PATH": os.environ["PATH"]}
    proc = cli.serve(free_port(), "192.0.2.10", block=False, env=env, output=open(os.devnull, "w"))  # noqa: SIM115
    proc.kill()
    proc.wait()
    err = capsys.readouterr().err
    assert "WARNING" in err and "WITHOUT TLS" in err and "TRIAGE_TLS_CERT_FILE" in err
    tls = Settings(tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "k.pem")
    assert cli.exposure_warnings("0.0.0.0", tls) == []
    assert cli.exposure_warnings("127.0.0.1", Settings()) == []
    cmd = cli.streamlit_command(8501, "0.0.0.0", tls)
    assert cmd[cmd.index("--server.sslCertFile") + 1] == str(tmp_path / "c.pem")
    assert cmd[cmd.index("--server.sslKeyFile") + 1] == str(tmp_path / "k.pem")


def test_session_tokens_are_keyed_with_the_secret_key(tmp_path, monkeypatch):
    """Test that the stored token hash is an HMAC keyed with TRIAGE_SECRET_KEY (not a plain SHA-256), and that
    changing the key invalidates every sign-in."""
    import hashlib

    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRIAGE_SECRET_KEY", "first-key-0123456789abcdef")
    get_settings.cache_clear()
    reset_engines()
    upgrade(create_db_engine(get_settings().resolved_database_url))
    with Session(get_engine()) as s:
        make_user(s, "reader1")
        token = queries.create_auth_session(session=s, username="reader1", hours=1)
        stored = s.execute(sa.select(AuthSession.token_hash)).scalar_one()
        assert stored == token_hash(token, b"first-key-0123456789abcdef")
        assert stored != hashlib.sha256(token.encode()).hexdigest()
        assert queries.validate_auth_session(session=s, token=token) is not None
    monkeypatch.setenv("TRIAGE_SECRET_KEY", "second-key-0123456789abcdef")
    get_settings.cache_clear()
    with Session(get_engine()) as s:
        assert queries.validate_auth_session(session=s, token=token) is None
    get_settings.cache_clear()
    reset_engines()
