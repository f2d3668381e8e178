"""Write a synthetic study to disk: DICOM series, ground-truth JSON, label volume, preview PNG.

Layout of one case folder::

    CASE/dicom/0000.dcm ...   CT Image Storage, one file per slice (``inference.dicom.ct_writer``)
    CASE/ground_truth.json    lesions (kind, type, centre LPS mm and voxel (k, j, i), diameter, volume), mimics,
                              scanner profile, geometry
    CASE/labels.npz           ``labels`` uint8 (0 background, 1 nodule, 2 embolism), ``lung`` and
                              ``arteries`` (bool), ``spacing_mm``, ``origin_mm``, ``direction``
    CASE/preview.png          axial / coronal / sagittal, lung and mediastinal windows, lesion outlines

Patient identity is unmistakably synthetic (``SYNTHETIC^CASE0001``, IDs starting ``SYN``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from inference.synth.render import render_study
from inference.synth.study import SynthStudy


def dicom_headers(study: SynthStudy, case_number: int) -> dict[str, Any]:
    """Realistic, deterministic DICOM header values for a synthetic study."""
    rng = np.random.default_rng([study.seed, case_number, 7])
    prof = study.profile
    day = dt.date(2024, 1, 1) + dt.timedelta(days=int(rng.integers(0, 700)))
    t = dt.time(int(rng.integers(7, 20)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    age = int(rng.integers(35, 86))
    ctpa = study.contrast == "ctpa"
    headers: dict[str, Any] = {
        "PatientName": f"SYNTHETIC^CASE{case_number:04d}",
        "PatientID": f"SYN{study.seed:06d}{case_number:04d}"[-16:],
        "PatientSex": "F" if rng.random() < 0.5 else "M",
        "PatientAge": f"{age:03d}Y",
        "PatientBirthDate": f"{day.year - age}0101",
        "AccessionNumber": f"SYNACC{study.seed % 10**6:06d}{case_number:04d}"[-16:],
        "StudyID": f"{case_number}",
        "StudyDate": day.strftime("%Y%m%d"),
        "StudyTime": t.strftime("%H%M%S"),
        "SeriesDate": day.strftime("%Y%m%d"),
        "SeriesTime": t.strftime("%H%M%S"),
        "AcquisitionDate": day.strftime("%Y%m%d"),
        "ContentDate": day.strftime("%Y%m%d"),
        "Manufacturer": prof.manufacturer,
        "ManufacturerModelName": prof.model,
        "InstitutionName": "SYNTHETIC DATA - NOT A PATIENT",
        "ConvolutionKernel": prof.kernel,
        "KVP": str(prof.kvp),
        "SliceThickness": f"{study.volume.meta['slice_thickness']:g}",
        "BodyPartExamined": "CHEST",
        "PatientPosition": "FFS",
        "StudyDescription": "CTA CHEST PE PROTOCOL" if ctpa else "CT CHEST WITHOUT CONTRAST",
        "SeriesDescription": (f"CTPA {prof.kernel} {study.volume.meta['slice_thickness']:g}mm" if ctpa
                              else f"AXIAL {prof.kernel} {study.volume.meta['slice_thickness']:g}mm"),
        "ReferringPhysicianName": "SYNTHETIC^REFERRER",
        "ImageComments": f"Synthetic chest CT (seed {study.seed}); research use only",
    }
    if ctpa:
        headers["ContrastBolusAgent"] = "IOHEXOL 350 MG I/ML"
        headers["ContrastBolusRoute"] = "IV"
        headers["ContrastBolusVolume"] = f"{int(rng.integers(50, 90))}"
    return headers


def write_study(study: SynthStudy, out_dir: Path | str, *, case_number: int = 1, preview: bool = True,
                dicom: bool = True) -> dict[str, Any]:
    """Write one case folder (see module docstring); returns a manifest row for it."""
    from inference.dicom.ct_writer import write_ct_series

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    headers = dicom_headers(study, case_number)
    if dicom:
        write_ct_series(study.volume, out / "dicom", headers=headers)
    gt = study.ground_truth()
    gt["patient"] = {k: headers[k] for k in ("PatientName", "PatientID", "AccessionNumber", "StudyDate")}
    (out / "ground_truth.json").write_text(json.dumps(gt, indent=2))
    v = study.volume
    np.savez_compressed(
        out / "labels.npz", labels=study.labels, lung=study.lung, arteries=study.arteries,
        spacing_mm=np.array(v.spacing_mm), origin_mm=np.array(v.origin_mm), direction=v.direction,
    )
    if preview:
        render_study(study, out / "preview.png")
    return {
        "case": out.name,
        "path": str(out),
        "seed": study.seed,
        "profile": study.profile.name,
        "manufacturer": study.profile.manufacturer,
        "kernel": study.profile.kernel,
        "contrast": study.contrast,
        "n_nodules": sum(1 for les in study.lesions if les["kind"] == "nodule"),
        "n_emboli": sum(1 for les in study.lesions if les["kind"] == "embolism"),
        "shape": list(v.shape),
        "spacing_mm": list(v.spacing_mm),
        "study_uid": v.study_uid,
    }
