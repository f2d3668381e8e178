"""Tests of the triage CLI as a user runs it (a subprocess, exit codes, stdout/stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pydicom

from tests.factories import write_study


def run_cli(*args, env=None, timeout=300):
    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "inference.cli", *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout
    )


def test_inspect_real_lidc_case(shared_data, tmp_path):
    """Test that `triage inspect` on LIDC-IDRI-0001 prints the series, geometry and verdict and exits 0."""
    out = run_cli(
        "inspect", shared_data / "lidc-idri-slices" / "LIDC-IDRI-0001", env={"TRIAGE_DATA_DIR": str(tmp_path)}
    )
    assert out.returncode == 0, out.stderr
    assert "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192" in out.stdout
    assert "16 x 512 x 512" in out.stdout and "(2.500, 0.703, 0.703)" in out.stdout
    assert "USABLE" in out.stdout and "partial_coverage" in out.stdout


def test_inspect_json_and_exit_2_for_unusable(tmp_path):
    """Test that --json prints one object and an unusable series exits 2 with the reason on stderr."""
    _, paths = write_study(tmp_path / "s")
    paths[6].unlink()
    out = run_cli("inspect", "--json", tmp_path / "s", env={"TRIAGE_DATA_DIR": str(tmp_path / "d")})
    assert out.returncode == 2
    data = json.loads(out.stdout)
    assert data["ok"] is False
    assert data["studies"][0]["quality"]["reasons"][0]["code"] == "missing_slices"
    assert "missing_slices" in out.stderr and "Traceback" not in out.stderr


def test_inspect_missing_path_is_a_message(tmp_path):
    """Test that a path that does not exist gives a one-line error, not a traceback."""
    out = run_cli("inspect", tmp_path / "nope")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_ingest_cli_then_inspect_inbox(tmp_path):
    """Test that `triage ingest` fills the inbox, and the inbox study inspects as usable; no patient ID logged."""
    vol, _ = write_study(tmp_path / "s")
    env = {"TRIAGE_DATA_DIR": str(tmp_path / "d")}
    out = run_cli("ingest", tmp_path / "s", env=env)
    assert out.returncode == 0, out.stderr
    assert "stored 12 file(s)" in out.stdout
    assert "SYN-TEST-0001" not in out.stderr + out.stdout
    study_dir = tmp_path / "d" / "inbox" / vol.study_uid
    assert study_dir.is_dir()
    assert pydicom.dcmread(next(study_dir.rglob("*.dcm")), stop_before_pixels=True).PatientID == "SYN-TEST-0001"
    assert run_cli("inspect", study_dir, env=env).returncode == 0
