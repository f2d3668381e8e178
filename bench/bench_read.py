"""Benchmark: read a 512x512x300 CT series into a Volume (uncompressed and JPEG-LS lossless).

Prints slices per second (target >= 500 on 2 cores) and peak traced memory during the read relative to
the volume's own bytes (target <= 3x). Usage: ``.venv/bin/python bench/bench_read.py [--slices 300]``.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless

from inference.dicom import read_volume
from inference.dicom.ct_writer import write_ct_series
from inference.volume import Volume

TARGET_SPS = 500.0
TARGET_MEM = 3.0


def make(n: int) -> Volume:
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:n, :512, :512]
    body = ((y - 256) / 230.0) ** 2 + ((x - 256) / 200.0) ** 2 < 1
    hu = np.where(body, 40, -1000) + rng.integers(-20, 20, (n, 512, 512))
    return Volume(hu.astype(np.int16), (1.0, 0.7, 0.7), (-179.0, -179.0, -300.0))


def measure(folder: Path, nbytes: int, repeats: int = 3) -> tuple[float, float]:
    read_volume(folder)  # warm the page cache
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        vol = read_volume(folder)
        best = min(best, time.perf_counter() - t)
        del vol
    gc.collect()
    tracemalloc.start()
    vol = read_volume(folder)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert vol.hu.nbytes == nbytes
    return best, peak / nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--slices", type=int, default=300)
    args = ap.parse_args()
    vol = make(args.slices)
    print(f"volume 512x512x{args.slices} int16 = {vol.hu.nbytes / 2**20:.0f} MiB")
    print(f"{'syntax':<28}{'seconds':>9}{'slices/s':>10}{'vs target':>11}{'peak mem':>10}{'vs target':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ts in (("uncompressed (explicit LE)", ExplicitVRLittleEndian), ("JPEG-LS lossless", JPEGLSLossless)):
            folder = Path(tmp) / name.split()[0]
            write_ct_series(vol, folder, transfer_syntax_uid=ts, headers={"BodyPartExamined": "CHEST"})
            secs, mem = measure(folder, vol.hu.nbytes)
            sps = args.slices / secs
            print(f"{name:<28}{secs:>9.2f}{sps:>10.0f}{sps / TARGET_SPS:>10.2f}x{mem:>9.2f}x{TARGET_MEM / mem:>10.2f}x")
    print(
        f"targets: >= {TARGET_SPS:.0f} slices/s, peak <= {TARGET_MEM:.0f}x volume bytes "
        "(ratios > 1.00x meet the target)"
    )


if __name__ == "__main__":
    main()
