"""Find dcmtk's command-line tools unambiguously.

pynetdicom installs console scripts with the same names as dcmtk's (``storescp``, ``storescu``, ``echoscu``,
``findscu``, ...). In an activated virtual environment its ``bin`` comes first on ``PATH``, so
``shutil.which("storescp")`` finds pynetdicom's script, which takes other arguments. ``dcmtk_tool`` skips
the Python environment's own ``bin`` and accepts only a program that says it is dcmtk (``--version``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

#: Searched after PATH (where Debian/Ubuntu and Homebrew put dcmtk).
FALLBACK_DIRS = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")


def _python_bins() -> set[Path]:
    """The ``bin`` folders of this Python environment (where pynetdicom's scripts live)."""
    bins = {Path(sys.prefix) / "bin", Path(sys.exec_prefix) / "bin", Path(sys.executable).parent}
    return {b.resolve() for b in bins if b.exists()}


def is_dcmtk(exe: str | os.PathLike[str]) -> bool:
    """Whether ``exe`` is a dcmtk program (its ``--version`` output names dcmtk)."""
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "dcmtk" in (out.stdout + out.stderr).lower()


@cache
def _find(name: str, path: str) -> str | None:
    skip = _python_bins()
    dirs = [d for d in path.split(os.pathsep) if d] + list(FALLBACK_DIRS)
    seen: set[Path] = set()
    for d in dirs:
        folder = Path(d).resolve() if Path(d).exists() else Path(d)
        if folder in seen or folder in skip:
            continue
        seen.add(folder)
        exe = folder / name
        if exe.is_file() and os.access(exe, os.X_OK) and is_dcmtk(exe):
            return str(exe)
    return None


def dcmtk_tool(name: str) -> str | None:
    """The absolute path of dcmtk's ``name`` (never pynetdicom's script of that name), or None."""
    return _find(name, os.environ.get("PATH", ""))


def require_dcmtk(name: str) -> str:
    """``dcmtk_tool(name)``, or skip the calling test with the install hint."""
    exe = dcmtk_tool(name)
    if exe is None:
        pytest.skip(f"dcmtk's {name} is not installed (apt-get install dcmtk)")
    return exe
