"""Test that the serving path (everything outside inference/training/) never imports torch or MONAI."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import importlib, pkgutil, sys
import inference, db, dashboard
names = []
for pkg in (inference, db, dashboard):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if ".training" in m.name or m.name.startswith("dashboard.app") or ".views" in m.name:
            continue
        importlib.import_module(m.name)
        names.append(m.name)
bad = [m for m in ("torch", "monai") if m in sys.modules]
print(len(names), bad)
assert not bad, bad
"""


def test_importing_serving_modules_leaves_torch_out():
    """Test that importing every serving module in a fresh interpreter loads neither torch nor monai."""
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    n_modules = int(out.stdout.split()[0])
    assert n_modules >= 10  # the walk really imported the package tree
