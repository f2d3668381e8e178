"""The ``Volume`` type: HU voxels with the geometry and identity that travel with them.

Conventions (the ITK/SimpleITK convention, DICOM patient coordinates):

* ``hu`` is an ``int16`` array indexed ``(k, j, i)`` = (slice, row, column).
* ``spacing_mm`` is ``(sz, sy, sx)`` in the same order as the array axes.
* ``origin_mm`` is the LPS position ``(x, y, z)`` in millimetres of voxel ``(0, 0, 0)``'s centre.
* ``direction`` is a 3x3 matrix whose **columns** are the LPS unit vectors of the ``i`` (column), ``j``
  (row) and ``k`` (slice) axes: column 0 is ImageOrientationPatient[0:3], column 1 is [3:6], column 2 the
  direction in which slices are stacked.

So ``patient = origin + direction @ ([i, j, k] * [sx, sy, sz])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A CT volume in Hounsfield units with its patient-space geometry and DICOM identity."""

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    study_uid: str = ""
    series_uid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"Volume.hu must be 3-D (k, j, i), got shape {self.hu.shape}")
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)  # type: ignore[assignment]
        self.origin_mm = tuple(float(o) for o in self.origin_mm)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if any(s <= 0 for s in self.spacing_mm):
            raise ValueError(f"spacing must be positive, got {self.spacing_mm}")

    # --- geometry ------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        k, j, i = self.hu.shape
        return int(k), int(j), int(i)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous ``(i, j, k, 1)`` voxel indices to LPS millimetres."""
        sz, sy, sx = self.spacing_mm
        a = np.eye(4)
        a[:3, :3] = self.direction @ np.diag([sx, sy, sz])
        a[:3, 3] = self.origin_mm
        return a

    def voxel_to_patient(self, kji: np.ndarray | tuple | list) -> np.ndarray:
        """Map voxel indices ``(k, j, i)`` (one point or ``(N, 3)``, fractional allowed) to LPS mm ``(x, y, z)``."""
        pts = np.atleast_2d(np.asarray(kji, dtype=np.float64))
        ijk = pts[:, ::-1]
        out = ijk @ self.affine[:3, :3].T + self.affine[:3, 3]
        return out[0] if np.ndim(kji) == 1 else out

    def patient_to_voxel(self, xyz: np.ndarray | tuple | list) -> np.ndarray:
        """Map LPS mm ``(x, y, z)`` (one point or ``(N, 3)``) to fractional voxel indices ``(k, j, i)``."""
        pts = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        inv = np.linalg.inv(self.affine)
        ijk = pts @ inv[:3, :3].T + inv[:3, 3]
        out = ijk[:, ::-1]
        return out[0] if np.ndim(xyz) == 1 else out

    def extent_mm(self) -> tuple[float, float, float]:
        """Physical extent ``(z, y, x)`` in mm covered by voxel centres plus one spacing."""
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm))  # type: ignore[return-value]

    def with_array(self, hu: np.ndarray, **changes: Any) -> Volume:
        """A copy with another voxel array (and optionally other fields), keeping identity and metadata."""
        return replace(self, hu=hu, meta=dict(self.meta), warnings=list(self.warnings), **changes)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (no pixel data, no patient identifiers)."""
        return {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "origin_mm": list(self.origin_mm),
            "direction": self.direction.round(6).tolist(),
            "extent_mm": [round(e, 2) for e in self.extent_mm()],
            "warnings": self.warnings,
        }
