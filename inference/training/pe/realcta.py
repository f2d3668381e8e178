"""The real CTA crop (TotalSegmentator test files, ``../shared/data/real-cta-crop``) as a ``Volume``.

NIfTI stores RAS with voxel order (i, j, k); ``Volume`` wants LPS and (k, j, i): x and y change sign.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from inference.volume import Volume

REAL_CTA_DIR = Path(os.environ.get("TRIAGE_SHARED_DATA", Path(__file__).resolve().parents[3].parent / "shared"
                                   / "data")) / "real-cta-crop"


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    return np.asanyarray(img.dataobj).transpose(2, 1, 0), img.affine


def nifti_to_volume(path: Path | str, **ids: str) -> Volume:
    """Read a NIfTI CT into a ``Volume`` (LPS, (k, j, i)); the affine must be axis-aligned."""
    arr, aff = _load(Path(path))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    m = ras_to_lps @ aff[:3, :3]  # columns: LPS vectors of i, j, k steps
    spacing_ijk = np.linalg.norm(m, axis=0)
    direction = m / spacing_ijk
    origin = ras_to_lps @ aff[:3, 3]
    return Volume(hu=np.asarray(arr, np.int16), spacing_mm=tuple(spacing_ijk[::-1]), origin_mm=tuple(origin),
                  direction=direction, meta={"contrast": "ctpa", "source": "real-cta-crop"}, **ids)


def load_real_cta(data_dir: Path | str | None = None) -> tuple[Volume, np.ndarray]:
    """The pulmonary CTA crop and its pulmonary-artery mask (bool, (k, j, i); automatic segmentation)."""
    d = Path(data_dir) if data_dir else REAL_CTA_DIR
    vol = nifti_to_volume(d / "pulmonary_report_ct_cropped.nii.gz", study_uid="real-cta-crop")
    pa, _ = _load(d / "pulmonary_report_pulmonary_artery.nii.gz")
    return vol, pa > 0
