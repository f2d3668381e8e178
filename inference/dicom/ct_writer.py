"""Write a ``Volume`` as a CT Image Storage series (one file per slice).

Used by the synthetic-data generator, by tests that craft good and bad series, and by benchmarks. Output is
deterministic: SOP Instance UIDs derive from the series UID and the slice index, and no wall-clock value is
written unless given in ``headers``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from inference.volume import Volume

RESCALE_INTERCEPT = -1024.0
# Type 2 attributes of the CT Image IOD (present, may be empty) that a writer must not leave out.
TYPE2_DEFAULTS = {
    "PatientBirthDate": "",
    "PatientSex": "",
    "StudyDate": "",
    "StudyTime": "",
    "ReferringPhysicianName": "",
    "StudyID": "",
    "AccessionNumber": "",
    "Manufacturer": "",
    "KVP": "",
    "AcquisitionNumber": "",
    "PatientOrientation": "",
}


def derived_uid(base: str, *parts: object) -> str:
    """A valid, deterministic UID derived from ``base`` and ``parts`` (pydicom's hashed entropy source)."""
    return generate_uid(entropy_srcs=[base, *map(str, parts)])


def _ds(v: float) -> str:
    """Format a float as a DICOM DS value (at most 16 characters)."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s[:16]


def write_ct_series(
    volume: Volume,
    out_dir: Path | str,
    *,
    headers: Mapping[str, Any] | None = None,
    transfer_syntax_uid: str = ExplicitVRLittleEndian,
    shuffle_seed: int | None = None,
    file_names: str = "index",
) -> list[Path]:
    """Write ``volume`` as one CT image file per slice.

    Args:
        volume: HU voxels and geometry; empty ``study_uid``/``series_uid`` get derived UIDs.
        out_dir: Folder to write into (created).
        headers: Extra DICOM keyword → value pairs set on every slice (patient, scanner, study fields).
            ``SliceThickness`` defaults to the z spacing.
        transfer_syntax_uid: Uncompressed, or a compressed syntax pydicom can encode (RLE Lossless,
            JPEG-LS Lossless, JPEG 2000 Lossless with the pylibjpeg/pyjpegls plugins installed).
        shuffle_seed: If given, the slices are written in a shuffled order with shuffled file names, so a
            reader cannot rely on either.
        file_names: ``"index"`` (``0000.dcm``…) or ``"sop"`` (SOP Instance UID).

    Returns:
        The written paths in slice order (k = 0 first).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    headers = dict(headers or {})
    study_uid = volume.study_uid or derived_uid("study", volume.series_uid or id(volume))
    series_uid = volume.series_uid or derived_uid(study_uid, "series")
    frame_uid = headers.pop("FrameOfReferenceUID", None) or derived_uid(series_uid, "frame")
    sz, sy, sx = volume.spacing_mm
    row_dir = volume.direction[:, 0]
    col_dir = volume.direction[:, 1]
    n = volume.shape[0]
    order = list(range(n))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)

    hu = volume.hu
    stored = np.clip(hu.astype(np.int32) - int(RESCALE_INTERCEPT), 0, 65535).astype(np.uint16)
    paths: list[Path | None] = [None] * n
    for write_pos, k in enumerate(order):
        sop_uid = derived_uid(series_uid, "slice", k)
        position = volume.voxel_to_patient((k, 0, 0))
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.PatientName = "ANONYMOUS"
        ds.PatientID = "ANON"
        ds.ImagePositionPatient = [_ds(c) for c in position]
        ds.ImageOrientationPatient = [_ds(c) for c in (*row_dir, *col_dir)]
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SliceLocation = _ds(float(position[2]))
        ds.RescaleIntercept = _ds(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PositionReferenceIndicator = ""
        for keyword, value in {**TYPE2_DEFAULTS, **headers}.items():
            setattr(ds, keyword, value)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.set_pixel_data(stored[k], "MONOCHROME2", 16, generate_instance_uid=False)
        if transfer_syntax_uid != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax_uid)
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = f"{write_pos:04d}.dcm" if file_names == "index" else f"{sop_uid}.dcm"
        if shuffle_seed is not None and file_names == "index":
            name = f"{order.index(k) * 7919 % 10007:05d}.dcm"
        path = out / name
        ds.save_as(path, enforce_file_format=True)
        paths[k] = path
    return [p for p in paths if p is not None]
