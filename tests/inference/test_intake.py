"""Tests of the embedded database set-up shared by the receiver, the worker and the dashboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import sys
from inference.config import Settings
from inference.intake import open_database
from db.migrate import current_revision
engine = open_database(Settings(data_dir=sys.argv[1]))
print(current_revision(engine))
"""


def test_processes_starting_together_on_a_fresh_data_dir_all_get_the_schema(tmp_path):
    """Test that six processes opening a fresh embedded database at the same moment all succeed at the newest
    revision (the receiver and the worker once raced: 'table app_user already exists' killed the worker)."""
    data = tmp_path / "data"
    procs = [subprocess.Popen([sys.executable, "-c", CODE, str(data)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in outs if err]
    revisions = {out.strip() for out, _ in outs}
    assert len(revisions) == 1 and revisions != {"None"}
