"""Rebuild assets/samples/lidc/*.zip from ../shared/data/lidc-idri-slices (JPEG-LS lossless, same UIDs).

Run from the project root: ``.venv/bin/python assets/samples/build_lidc_samples.py``.
"""

from __future__ import annotations

import io
import shutil
import sys
import zipfile
from pathlib import Path

import pydicom
from pydicom.uid import JPEGLSLossless

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "lidc-idri-slices"
OUT = ROOT / "assets" / "samples" / "lidc"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for case in sorted(p for p in SRC.iterdir() if p.name.startswith("LIDC-IDRI-")):
        with zipfile.ZipFile(OUT / f"{case.name}.zip", "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted(case.rglob("*.dcm")):
                ds = pydicom.dcmread(f)
                sop = ds.SOPInstanceUID
                ds.compress(JPEGLSLossless, generate_instance_uid=False)
                assert ds.SOPInstanceUID == sop
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                zf.writestr(f"{case.name}/{f.name}", buf.getvalue())
        print(case.name, (OUT / f"{case.name}.zip").stat().st_size // 1024, "KiB")
    shutil.copy(SRC / "ATTRIBUTION.txt", OUT / "ATTRIBUTION.txt")


if __name__ == "__main__":
    main()
