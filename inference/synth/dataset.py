"""Many studies at once: plain batches and train/validation/test datasets with a manifest.

Each case's seed is derived from the run seed and the case number, so any single case can be regenerated
in memory with ``generate_study(case_seed(seed, n), ...)``. A scanner profile can be held out: all of its
cases go to the test split, none to train/val, to measure domain shift.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inference.synth.output import write_study
from inference.synth.profiles import PROFILES
from inference.synth.study import generate_study

MANIFEST_FIELDS = ("split", "case", "seed", "profile", "manufacturer", "kernel", "contrast", "n_nodules",
                   "n_emboli", "shape", "spacing_mm", "study_uid", "path")


def case_seed(seed: int, n: int) -> int:
    """The seed of case ``n`` (1-based) of a run with ``seed``."""
    return int(np.random.default_rng([seed, n]).integers(0, 2**31 - 1))


def _progress(i: int, n: int, label: str) -> None:
    width = 30
    done = int(width * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label:<40}")
    if i == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def generate_many(
    out: Path | str,
    n: int,
    seed: int = 0,
    *,
    profile: str | None = None,
    contrast: str = "mixed",
    lesions: str = "auto",
    size: str = "full",
    splits: tuple[float, float, float] | None = None,
    hold_out_profile: str | None = None,
    progress: Callable[[int, int, str], None] | None = _progress,
    dicom: bool = True,
    anatomy: str = "real",
) -> list[dict[str, Any]]:
    """Write ``n`` cases under ``out`` and a manifest (``manifest.json`` and ``manifest.csv``).

    Args:
        anatomy: ``real`` (default: template lungs, lobar trees, fissures) or ``legacy`` (see ``generate_study``).
        splits: ``(train, val, test)`` fractions for dataset mode (cases under ``out/SPLIT/``); ``None``
            writes ``out/case0001`` ... with no split.
        hold_out_profile: In dataset mode, every case of this profile goes to ``test``; profiles of the
            other cases are drawn from the remaining ones.

    Returns:
        The manifest rows.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 99])
    names = sorted(PROFILES)
    if hold_out_profile and hold_out_profile not in PROFILES:
        raise KeyError(f"unknown profile {hold_out_profile!r}")
    split_of = ["all"] * n
    if splits:
        fr = np.asarray(splits, float) / np.sum(splits)
        counts = np.floor(fr * n).astype(int)
        counts[0] += n - counts.sum()
        split_of = list(rng.permutation(np.repeat(["train", "val", "test"], counts)))
    rows = []
    for i in range(1, n + 1):
        split = split_of[i - 1]
        prof = profile
        if prof is None and splits and hold_out_profile:
            pool = [p for p in names if p != hold_out_profile]
            prof = hold_out_profile if split == "test" and rng.random() < 0.5 else str(rng.choice(pool))
        elif prof is None:
            prof = str(rng.choice(names))
        cs = case_seed(seed, i)
        if progress:
            progress(i - 1, n, f"case{i:04d} {prof}")
        study = generate_study(cs, profile=prof, contrast=contrast, size=size, lesions=lesions, case_number=i,
                               anatomy=anatomy)
        folder = out / (split if splits else "") / f"case{i:04d}"
        row = write_study(study, folder, case_number=i, dicom=dicom)
        row["split"] = split
        rows.append(row)
    if progress:
        progress(n, n, "done")
    meta = {"seed": seed, "n": n, "contrast": contrast, "lesions": lesions, "size": size,
            "splits": list(splits) if splits else None, "hold_out_profile": hold_out_profile, "cases": rows}
    (out / "manifest.json").write_text(json.dumps(meta, indent=2))
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "shape": "x".join(map(str, r["shape"])),
                        "spacing_mm": "x".join(f"{s:g}" for s in r["spacing_mm"])})
    return rows
