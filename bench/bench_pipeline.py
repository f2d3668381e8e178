"""Benchmark: per-study stage timings (synthetic 512x512x300 chest CT and the real LIDC samples), full study
end to end on this CPU (target <= 30 s), and C-STORE receiver throughput from dcmtk's storescu.

Usage: ``.venv/bin/python bench/bench_pipeline.py [--skip-receiver] [--size bench]``. ONNX Runtime vs
PyTorch eager for each model: ``bench/bench_nodule.py`` and ``bench/bench_pe.py``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from inference.config import PROJECT_ROOT, Settings
from inference.dicom.ct_writer import write_ct_series
from inference.triage import analyze_study_dir

TARGET_STUDY_S = 30.0


def _row(name: str, timings: dict[str, float]) -> None:
    keys = ["read", "nodule_prepare", "nodule_segment", "nodule_candidates", "mass_detect", "nodule_classify",
            "nodules", "embolism", "save", "total"]
    cells = "  ".join(f"{k}={timings[k] / 1000:.2f}s" for k in keys if k in timings)
    total = timings.get("total", 0) / 1000
    print(f"{name:<34} {cells}  -> {TARGET_STUDY_S / max(total, 1e-6):.2f}x of target")


def bench_studies(size: str, tmp: Path) -> None:
    from inference.synth.output import write_study
    from inference.synth.study import generate_study

    settings = Settings(data_dir=tmp / "data")
    study = generate_study(4242, contrast="ctpa", size=size, lesions="both")
    write_study(study, tmp / "synthetic", preview=False)
    print(f"synthetic study {study.volume.shape} spacing {study.volume.spacing_mm}")
    analyze_study_dir(tmp / "synthetic" / "dicom", settings=settings)  # warm-up: sessions, caches
    out = analyze_study_dir(tmp / "synthetic" / "dicom", settings=settings)
    _row(f"synthetic {'x'.join(map(str, study.volume.shape))}", out.result.timings_ms)
    for sample in sorted((PROJECT_ROOT / "assets" / "samples" / "lidc").glob("*.zip")):
        out = analyze_study_dir(sample, settings=settings)
        _row(f"real {sample.stem}", out.result.timings_ms)


def bench_receiver(tmp: Path, n: int = 300) -> None:
    import sys

    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.dcmtk import dcmtk_tool  # dcmtk's storescu, never pynetdicom's script of that name

    storescu = dcmtk_tool("storescu")
    if storescu is None:
        print("receiver: dcmtk's storescu not installed; skipped")
        return
    import numpy as np

    from inference.dicom.receiver import Receiver
    from inference.volume import Volume

    hu = np.random.default_rng(0).integers(-1000, 500, (n, 512, 512)).astype(np.int16)
    write_ct_series(Volume(hu, (1.0, 0.7, 0.7)), tmp / "send", headers={"BodyPartExamined": "CHEST"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = Receiver(
        Settings(data_dir=tmp / "recv", receiver_port=port, study_quiet_period_s=60),
        on_complete=lambda uid: None,
        on_first_instance=lambda uid: None,
    )
    rec.start()
    try:
        t = time.perf_counter()
        subprocess.run([storescu, "-aec", "TRIAGE", "+sd", "127.0.0.1", str(port), str(tmp / "send")], check=True)
        dt = time.perf_counter() - t
    finally:
        rec.stop()
    mb = n * 512 * 512 * 2 / 2**20
    print(
        f"receiver: {n} instances (512x512, {mb:.0f} MiB) in {dt:.2f} s = {n / dt:.0f} instances/s, {mb / dt:.0f} MiB/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="bench", help="synthetic size preset (bench = 512x512x300)")
    ap.add_argument("--skip-receiver", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_studies(args.size, Path(tmp))
        if not args.skip_receiver:
            bench_receiver(Path(tmp))


if __name__ == "__main__":
    main()
