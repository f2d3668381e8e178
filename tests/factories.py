"""Factories for test data: small CT volumes and series with known geometry and content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inference.dicom.ct_writer import derived_uid, write_ct_series
from inference.volume import Volume


def make_volume(
    shape: tuple[int, int, int] = (12, 48, 40),
    spacing: tuple[float, float, float] = (2.0, 0.75, 0.7),
    origin: tuple[float, float, float] = (-15.0, -18.0, -100.0),
    direction: np.ndarray | None = None,
    seed: int = 0,
    uid_tag: str = "a",
) -> Volume:
    """A volume with air, a 'body' of ~40 HU and a bright sphere whose centre is known (meta['sphere_kji'])."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices(shape)
    hu = np.full(shape, -1000, dtype=np.int16)
    body = ((j - shape[1] / 2) / (shape[1] * 0.45)) ** 2 + ((i - shape[2] / 2) / (shape[2] * 0.45)) ** 2 < 1
    hu[body] = 40
    c = (shape[0] * 0.6, shape[1] * 0.4, shape[2] * 0.55)
    sphere = (k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2 <= 9
    hu[sphere] = 700
    hu = (hu + rng.integers(-5, 6, shape)).astype(np.int16)
    hu[:, 0, 0] = np.arange(shape[0]) * 10  # a per-slice fingerprint: HU = 10 * k
    study = derived_uid("test-study", uid_tag, seed)
    vol = Volume(
        hu=hu,
        spacing_mm=spacing,
        origin_mm=origin,
        direction=np.eye(3) if direction is None else direction,
        study_uid=study,
        series_uid=derived_uid(study, "series"),
        meta={"sphere_kji": c},
    )
    return vol


CHEST_HEADERS: dict[str, Any] = {
    "BodyPartExamined": "CHEST",
    "Manufacturer": "TESTCO",
    "ManufacturerModelName": "Factory 1",
    "ConvolutionKernel": "B30f",
    "KVP": "120",
    "SeriesDescription": "Chest 2.0 B30f",
    "PatientName": "SYNTHETIC^TEST",
    "PatientID": "SYN-TEST-0001",
}


def write_study(
    out: Path, vol: Volume | None = None, *, headers: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[Volume, list[Path]]:
    """Write ``vol`` (default ``make_volume()``) as a chest CT series under ``out``."""
    vol = vol or make_volume()
    paths = write_ct_series(vol, out, headers={**CHEST_HEADERS, **(headers or {})}, **kwargs)
    return vol, paths
