"""Tests of `triage analyze --prior` error handling (the full run is in test_compare.py)."""

from __future__ import annotations


def test_analyze_with_a_missing_prior_is_a_message(tmp_path):
    """Test that `triage analyze --prior` with an unusable prior exits 2 naming the prior, without a traceback."""
    import os
    import subprocess
    import sys

    (tmp_path / "current").mkdir()
    (tmp_path / "prior").mkdir()
    (tmp_path / "prior" / "junk.txt").write_text("not DICOM")
    env = {**os.environ, "TRIAGE_DATA_DIR": str(tmp_path / "data")}
    for prior in (tmp_path / "prior", tmp_path / "absent"):
        out = subprocess.run(
            [sys.executable, "-m", "inference.cli", "analyze", str(tmp_path / "current"), "--prior", str(prior)],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert out.returncode == 2, out.stderr
        assert "prior study" in out.stderr and "Traceback" not in out.stderr
