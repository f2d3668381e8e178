"""Stability of the nodule and mass detectors on real CT stored in another voxel order (issue #12).

The same real full-thorax scan (lung1, lung2 from ``../shared/data/pyradiomics-lung``) is analysed as stored
and with its voxel array flipped along z, y or x, the direction cosines and origin changed to match, so every
voxel keeps its place in the patient (LPS mm). A feet-first or prone series is stored like that. The findings
should be the same patients' findings: the same lesion at the same place and size, and the same count of false
findings. They can differ because the detectors resample onto a 2 mm grid anchored at voxel 0 (a flip moves
that grid by up to one voxel against the anatomy) and because the networks' flip augmentation is not exact
invariance.

Printed per scan and storage order: the masses (long axis, centre in LPS mm, volume), the nodule candidates at
the report threshold (probability, long axis, centre), and whether each matches the labelled lesion (centre
within the lesion's half long axis, or 10 mm). Last, per scan, the spread: false findings min-max over the
four orders.

Usage: ``.venv/bin/python bench/bench_real_orientation.py [--threads 2]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AXES = {"as stored": None, "flip z (k)": 0, "flip y (j)": 1, "flip x (i)": 2}


def flipped(volume, axis: int):
    """``volume`` with its voxel array reversed along ``axis`` (0 = k, 1 = j, 2 = i) and its geometry changed so
    that each voxel keeps its patient position."""
    direction = np.asarray(volume.direction, np.float64).copy()
    last = [0, 0, 0]
    last[axis] = volume.hu.shape[axis] - 1
    origin = volume.voxel_to_patient(last)
    direction[:, 2 - axis] *= -1  # the direction column of that array axis (columns are x, y, z = i, j, k)
    return volume.with_array(np.ascontiguousarray(np.flip(volume.hu, axis)), origin_mm=tuple(float(v) for v in origin),
                             direction=direction)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    args = ap.parse_args()

    from inference.engine import Engine
    from inference.model_card import ModelCard
    from inference.models.nodule import detect_nodules
    from inference.training.nodule.real import load_case

    models = ROOT / "assets" / "models"
    engine = Engine(models, ["CPUExecutionProvider"], threads=args.threads)
    report = float(ModelCard.load(models / "nodule_cls.json").thresholds["report"])
    print(f"report threshold {report:.4f}")
    spread: dict[str, list[int]] = {}
    for name in ("lung1", "lung2"):
        case = load_case(name)
        truth = [(case.volume.voxel_to_patient(les["center_voxel"]), les["long_axis_mm"]) for les in case.lesions]
        for label, axis in AXES.items():
            vol = case.volume if axis is None else flipped(case.volume, axis)
            t0 = time.perf_counter()
            res = detect_nodules(vol, engine, maps=False)
            secs = time.perf_counter() - t0
            items = [("mass", 0.9, m.diameter_mm or 0.0, np.asarray(m.center_mm)) for m in res.masses]
            items += [("nodule", c.probability, c.diameter_mm, np.asarray(c.center_mm)) for c in res.candidates
                      if c.probability >= report]
            false = 0
            lines = []
            for kind, p, size, xyz in items:
                hit = any(np.linalg.norm(xyz - c) <= max(10.0, d / 2) for c, d in truth)
                false += not hit
                lines.append(f"    {kind:<6} p {p:.2f} {size:5.1f} mm at ({xyz[0]:6.1f}, {xyz[1]:6.1f}, {xyz[2]:6.1f})"
                             f"  {'lesion' if hit else 'FALSE'}")
            spread.setdefault(name, []).append(false)
            print(f"{name} {label:<11} {len(items)} finding(s), {false} false, {secs:.1f} s")
            print("\n".join(lines))
    for name, falses in spread.items():
        print(f"{name}: false findings over the 4 storage orders: {min(falses)}-{max(falses)} ({falses})")


if __name__ == "__main__":
    main()
