"""Tests of the dcmtk finder used by every test that talks to a real DICOM peer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.dcmtk import dcmtk_tool, is_dcmtk, require_dcmtk


def test_activated_venv_still_finds_dcmtk_not_pynetdicom(monkeypatch):
    """Test that with the venv's bin first on PATH (an activated venv) the dcmtk tools are found, not
    pynetdicom's console scripts of the same names."""
    require_dcmtk("storescp")
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    for name in ("storescp", "storescu", "echoscu"):
        found = dcmtk_tool(name)
        assert found is not None and is_dcmtk(found)
        assert Path(found).parent.resolve() != venv_bin.resolve()
        plain = shutil.which(name)
        if plain and Path(plain).parent == venv_bin:  # pynetdicom installed its script there: the old trap
            assert not is_dcmtk(plain)
    # dcmtk's storescp accepts the option that pynetdicom's rejects ("invalid int value: '+xa'")
    out = subprocess.run([dcmtk_tool("storescp"), "+xa", "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
