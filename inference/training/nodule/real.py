"""The annotated real CT of ``../shared/data`` as ``Volume`` + truth lesions (numpy only; pynrrd, nibabel).

| case | role | truth |
|---|---|---|
| ``LIDC-IDRI-0001`` .. ``-0003`` | train (mining) | readers' outlines (50 % consensus), every reader mark excluded |
| ``lung1`` | train (mining) | the pyradiomics label (a ~15 mm nodule) |
| ``cta-aorta``, ``cta-pulmonary`` | train (mining) | none (lesion-free as far as known) |
| ``lung2`` | **validation only** | the pyradiomics label (a ~5 cm mass; not exhaustive: an unlabelled GGO) |

``lung2`` is never mined or trained on: ``real_cases("train")`` cannot return it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from inference.models.nodule_prep import long_axis_mm
from inference.training.nodule.data import SHARED
from inference.training.nodule.lidc import LIDC
from inference.volume import Volume

NRRD = {"lung1": "train", "lung2": "validation"}
CTA = {"cta-aorta": "aorta_report_ct_cropped.nii.gz", "cta-pulmonary": "pulmonary_report_ct_cropped.nii.gz"}
TRAIN_CASES = ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003", "lung1", "cta-aorta", "cta-pulmonary")
VALIDATION_CASES = ("lung2",)
FULL_THORAX = ("lung1", "lung2")


@dataclass
class RealCase:
    """A real scan with its truth: ``lesions`` (mask on the volume grid, centre, long axis) and ``exclude``
    (LPS mm points of every other reader mark: candidates near them are neither positive nor negative)."""

    name: str
    role: str  # train | validation
    volume: Volume
    lesions: list[dict] = field(default_factory=list)
    exclude_mm: list[np.ndarray] = field(default_factory=list)


def load_nrrd(image: Path | str, label: Path | str | None = None) -> tuple[Volume, np.ndarray | None]:
    """A pyradiomics NRRD scan as a ``Volume`` (+ its label as a bool (k, j, i) mask): ``realdata.read_nrrd_volume``."""
    from inference.training.realdata import read_nrrd_volume

    return read_nrrd_volume(Path(image), Path(label) if label is not None else None)


def lesion_record(mask: np.ndarray, volume: Volume, **extra) -> dict:
    """Truth record of a lesion mask: ``mask``, ``center_voxel`` (k, j, i), ``long_axis_mm`` (largest axial
    section, as serving measures it), ``volume_ml``."""
    kji = np.argwhere(mask)
    return {"mask": mask, "center_voxel": kji.mean(0), "long_axis_mm": long_axis_mm(kji, volume.spacing_mm),
            "volume_ml": float(len(kji) * np.prod(volume.spacing_mm) / 1000.0), **extra}


def _nrrd_case(name: str) -> RealCase:
    d = SHARED / "pyradiomics-lung"
    vol, lab = load_nrrd(d / f"{name}_image.nrrd", d / f"{name}_label.nrrd")
    comps, n = ndi.label(lab)
    les = [lesion_record(comps == i, vol, kind="nodule" if name == "lung1" else "mass", source="pyradiomics label")
           for i in range(1, n + 1) if (comps == i).sum() * np.prod(vol.spacing_mm) > 20.0]
    return RealCase(name, NRRD[name], vol, les)


def reader_marks_mm(xml_path: Path) -> list[np.ndarray]:
    """LPS-z + pixel (x, y) of every reader mark (nodules of any size and non-nodules) as (i, j, z) triples;
    converted to mm by ``_lidc_case``."""
    ns = "{http://www.nih.gov}"
    out = []
    root = ET.parse(xml_path).getroot()
    for tag in ("unblindedReadNodule", "nonNodule"):
        for el in root.iter(f"{ns}{tag}"):
            for roi in [el] if tag == "nonNodule" else el.iter(f"{ns}roi"):
                z = roi.find(f"{ns}imageZposition")
                pts = [(float(e.find(f"{ns}xCoord").text), float(e.find(f"{ns}yCoord").text))
                       for e in roi.iter(f"{ns}edgeMap")] or [
                    (float(e.find(f"{ns}xCoord").text), float(e.find(f"{ns}yCoord").text))
                    for e in roi.iter(f"{ns}locus")]
                if z is None or not pts:
                    continue
                x, y = np.mean(pts, axis=0)
                out.append(np.array([x, y, float(z.text)]))
    return out


def _lidc_case(name: str) -> RealCase:
    from inference.dicom import read_volume
    from inference.training.nodule.lidc import nodules

    v = read_volume(SHARED / "lidc-idri-slices" / name)
    xml = SHARED / "lidc-idri-slices" / "xml" / LIDC[name]
    les = [lesion_record(n["consensus"], v, kind="nodule", readers=n["n_readers"], source="LIDC readers (50 %)")
           for n in nodules(xml, v)]
    excl = []
    for x, y, z in reader_marks_mm(xml):  # pixel (x, y) of the slice at z: LPS through the in-plane geometry
        p = v.voxel_to_patient([0.0, y, x])
        excl.append(np.array([p[0], p[1], z]))
    return RealCase(name, "train", v, les, excl)


def _cta_case(name: str) -> RealCase:
    from inference.synth.insert import load_nifti

    vol, _ = load_nifti(SHARED / "real-cta-crop" / CTA[name])
    return RealCase(name, "train", vol, [])


def load_case(name: str) -> RealCase:
    """One real case by name (see the module table)."""
    if name in LIDC:
        return _lidc_case(name)
    if name in NRRD:
        return _nrrd_case(name)
    if name in CTA:
        return _cta_case(name)
    raise KeyError(f"unknown real case {name!r}")


def real_cases(role: str) -> Iterator[RealCase]:
    """The cases of ``role`` (``train``: mining backgrounds; ``validation``: lung2 only) present on disk."""
    names = TRAIN_CASES if role == "train" else VALIDATION_CASES
    for n in names:
        try:
            c = load_case(n)
        except FileNotFoundError:
            continue
        if c.role != role:  # guard: a validation case never leaks into training
            raise RuntimeError(f"{n} has role {c.role}, asked for {role}")
        yield c


def available() -> bool:
    return (SHARED / "pyradiomics-lung" / "lung1_image.nrrd").exists()
