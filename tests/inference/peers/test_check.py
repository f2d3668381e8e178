"""Peers from settings and `triage peers check` against a real Orthanc (with HTTP authentication): each
failure said plainly, exit 1 when any check fails, and the password never printed or logged."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from inference.cli import main
from inference.config import Settings, get_settings
from tests.inference.peers.helpers import peer_of

SECRET = "s3cret-Pa55word"  # a string that must never appear in any output


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def _cli(*args: str, capsys, caplog) -> Run:
    """``triage -v ARGS`` in this process (output and every log record captured)."""
    get_settings.cache_clear()
    capsys.readouterr()
    caplog.clear()
    noisy = {name: logging.getLogger(name).level for name in ("highdicom", "pydicom", "pynetdicom", "huey")}
    try:
        code = main(["-v", *args])
    finally:
        for name, level in noisy.items():  # main() sets these process-wide
            logging.getLogger(name).setLevel(level)
    out = capsys.readouterr()
    return Run(code, out.out, out.err + "\n".join(r.getMessage() for r in caplog.records))


def test_peers_check_passes_and_fails_plainly_without_leaking_the_password(
    tmp_path, orthanc_factory, monkeypatch, capsys, caplog
):
    """Test that a good peer passes C-ECHO and HTTP, and a wrong AE title, password or port each fail plainly."""
    server = orthanc_factory("pacs", username="triage", password=SECRET, modalities={})
    good = peer_of(server, "good")
    peers = [
        good,
        peer_of(server, "wrong-ae", ae_title="NOT-PACS", dicomweb_url=None),
        peer_of(server, "wrong-pw", password="guess", ae_title=None, port=None),
        peer_of(server, "nobody", port=1, dicomweb_url=None),
    ]
    config = [p.model_dump(mode="json") | {"password": p.password.get_secret_value()} for p in peers]
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRIAGE_PEERS", json.dumps(config))
    caplog.set_level(logging.DEBUG)
    ok = _cli("peers", "check", "good", capsys=capsys, caplog=caplog)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [line.split()[:3] for line in ok.stdout.splitlines()] == [["ok", "good", "C-ECHO"], ["ok", "good", "HTTP"]]
    out = _cli("peers", "check", capsys=capsys, caplog=caplog)
    assert out.returncode == 1
    lines = {tuple(line.split()[1:3]): line for line in out.stdout.splitlines()}
    assert lines[("wrong-ae", "C-ECHO")].startswith("FAIL")
    assert re.search("(rejected|aborted) the association", lines[("wrong-ae", "C-ECHO")])
    assert lines[("wrong-pw", "HTTP")].startswith("FAIL") and "HTTP 401" in lines[("wrong-pw", "HTTP")]
    assert "credentials refused" in lines[("wrong-pw", "HTTP")]
    assert lines[("nobody", "C-ECHO")].startswith("FAIL") and "cannot be reached" in lines[("nobody", "C-ECHO")]
    assert "3 of 5 check(s) failed" in out.stderr and "Traceback" not in out.stderr
    listed = _cli("peers", "list", "--json", capsys=capsys, caplog=caplog)
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["password_set"] is True
    for run in (ok, out, listed):
        assert SECRET not in run.stdout + run.stderr


def test_peer_settings_from_the_environment(monkeypatch):
    """Test that TRIAGE_PEERS (JSON) becomes typed peers, the password a secret, and bad entries are refused."""
    monkeypatch.setenv("TRIAGE_PEERS", json.dumps([{"name": "pacs", "ae_title": "PACS", "port": 104,
                                                     "password": SECRET, "send_results": ["c-store"]}]))  # fmt: skip
    monkeypatch.setenv("TRIAGE_PACS_DESTINATION", "OLD@10.0.0.9:11112")
    s = Settings()
    (peer,) = s.peers
    assert peer.password.get_secret_value() == SECRET and SECRET not in repr(s) and SECRET not in peer.describe()
    assert [p.name for p in s.all_peers()] == ["pacs"]  # a configured "pacs" wins over the legacy destination
    monkeypatch.setenv("TRIAGE_PEERS", "[]")
    legacy = Settings().all_peers()
    assert [(p.name, p.ae_title, p.host, p.port, p.send_results) for p in legacy] == [
        ("pacs", "OLD", "10.0.0.9", 11112, ["c-store"])]  # fmt: skip
    with pytest.raises(KeyError, match="no peer named 'x'; configured: pacs"):
        Settings().peer("x")
    monkeypatch.setenv("TRIAGE_PEERS", json.dumps([{"name": "bad", "send_results": ["e-mail"]}]))
    with pytest.raises(ValidationError):
        Settings()
