"""The real-CT table: the served pipeline on every annotated real scan of ``../shared/data``.

One row per scan (LIDC-IDRI-0001..0003 slabs with the readers' outlines, pyradiomics lung1 and lung2 with
their labels): is the annotated lesion found (a reported finding within 10 mm of the lesion, or whose mask
overlaps it), its kind and probability, the reported long axis against the truth's, the false findings at the
operating point (reported findings that touch no annotated lesion) and the study nodule score.

Usage: ``.venv/bin/python bench/real_ct_table.py [--markdown]`` (needs the ``[dev]`` extra for pynrrd).
lung2 is the held-out validation scan: no model or rule was fitted on it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from inference.config import PROJECT_ROOT
from inference.engine import get_engine
from inference.models.nodule_prep import long_axis_mm
from inference.triage import analyze
from inference.volume import Volume

DATA = PROJECT_ROOT.parent / "shared" / "data"


def cases() -> list[tuple[str, Volume, np.ndarray]]:
    """(name, volume, bool truth mask) for every annotated real scan."""
    from inference.dicom import read_volume
    from inference.training.nodule.lidc import nodules
    from inference.training.realdata import read_nrrd_volume

    out = []
    for case in ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"):
        vol = read_volume(DATA / "lidc-idri-slices" / case)
        (xml,) = (DATA / "lidc-idri-slices" / "xml").glob(f"{case}_*.xml")
        out.append((case, vol, np.any([n["consensus"] for n in nodules(xml, vol)], axis=0)))  # readers' 50 %
    for name in ("lung1", "lung2"):
        d = DATA / "pyradiomics-lung"
        vol, label = read_nrrd_volume(d / f"{name}_image.nrrd", d / f"{name}_label.nrrd")
        out.append((name, vol, label))
    return out


def row(name: str, vol: Volume, truth: np.ndarray, engine) -> dict:
    t0 = time.perf_counter()
    analysis = analyze(vol, engine=engine)
    seconds = time.perf_counter() - t0
    res = analysis.result
    mask = analysis.nodule_mask
    t_kji = np.argwhere(truth)
    t_centre = vol.voxel_to_patient(t_kji.mean(0))
    truth_mm = long_axis_mm(t_kji, vol.spacing_mm)
    lesions = [f for f in res.findings if f.kind in ("nodule", "mass")]

    def hits(f) -> bool:
        near = np.linalg.norm(np.asarray(f.center_mm) - t_centre) <= max(10.0, truth_mm / 2)
        overlap = mask is not None and f.label is not None and bool((mask[truth] == f.label).any())
        return bool(near or overlap)

    found = [f for f in lesions if hits(f)]
    best = max(found, key=lambda f: f.probability) if found else None
    return {
        "scan": name,
        "found": best is not None,
        "kind": best.kind if best else None,
        "probability": round(best.probability, 3) if best else None,
        "size_mm": round(float(best.diameter_mm or 0), 1) if best else None,
        "truth_mm": round(truth_mm, 1),
        "false_findings": len(lesions) - len(found),
        "more_findings": res.more_findings,
        "study_nodule_score": res.scores.get("nodule"),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    engine = get_engine()
    rows = [row(n, v, t, engine) for n, v, t in cases()]
    if not args.markdown:
        print(json.dumps(rows, indent=1))
        return
    print("| scan | found | kind | probability | size / truth (mm) | false findings | study nodule score |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        size = f"{r['size_mm']} / {r['truth_mm']}" if r["found"] else f"– / {r['truth_mm']}"
        print(f"| {r['scan']} | {'yes' if r['found'] else 'no'} | {r['kind'] or '–'} | {r['probability'] or '–'} "
              f"| {size} | {r['false_findings']} | {r['study_nodule_score']} |")


if __name__ == "__main__":
    main()
