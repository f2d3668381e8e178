"""Real CT cases of ``../shared/data`` as ``Volume`` objects (training, evaluation and tests; needs pynrrd).

- ``read_nrrd_volume``: the pyradiomics full-thorax scans (``lung1``, ``lung2``) with their lesion labels.
- ``read_nifti_volume``: the real CTA crops (NIfTI, RAS on disk, LPS here).

``lung2`` is the held-out real validation case: never train or mine on it (``TRAIN_REAL`` lists what may be).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.volume import Volume

TRAIN_REAL = ("lung1",)  # pyradiomics cases that training and mining may use
VALIDATION_REAL = ("lung2",)  # held out: validation only


def _kji(arr: np.ndarray) -> np.ndarray:
    """An (x, y, z) array as (k, j, i)."""
    return np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))


def read_nrrd_volume(image: Path, label: Path | None = None, *, uid: str = "") -> tuple[Volume, np.ndarray | None]:
    """A pyradiomics NRRD image (LPS, x/y/z on disk) as a ``Volume``, and its label as a bool (k, j, i) mask.

    Raises:
        ValueError: the file is not in LPS space or is not axial.
    """
    import nrrd

    data, hdr = nrrd.read(str(image))
    space = str(hdr.get("space", "left-posterior-superior")).lower()
    if space not in ("left-posterior-superior", "lps"):
        raise ValueError(f"{image}: space {space!r}, expected LPS")
    dirs = np.asarray(hdr["space directions"], dtype=np.float64)  # rows: the i, j, k axes in LPS mm
    spacing = np.linalg.norm(dirs, axis=1)
    direction = (dirs / spacing[:, None]).T  # columns: unit vectors of i, j, k
    vol = Volume(
        hu=_kji(data).astype(np.int16),
        spacing_mm=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin_mm=tuple(float(v) for v in hdr["space origin"]),
        direction=direction,
        study_uid=uid or f"2.25.{abs(hash(image.name)) % 10**30}",
        series_uid=(uid or f"2.25.{abs(hash(image.name)) % 10**30}") + ".1",
        meta={"source": image.name},
    )
    mask = None
    if label is not None:
        lab, _ = nrrd.read(str(label))
        mask = _kji(lab) > 0
    return vol, mask


def read_nifti_volume(path: Path) -> Volume:
    """A NIfTI CT (RAS affine) as an LPS ``Volume`` (k, j, i)."""
    import nibabel as nib

    img = nib.load(str(path))
    ras = np.asarray(img.affine, np.float64)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    data = np.asarray(img.dataobj)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return Volume(
        hu=_kji(data).astype(np.int16),
        spacing_mm=(float(spacing[2]), float(spacing[1]), float(spacing[0])),
        origin_mm=tuple(float(v) for v in lps[:3, 3]),
        direction=direction,
        meta={"source": path.name},
    )
