"""Insert synthetic lesions into real CT: nodules into lungs, emboli into opacified pulmonary arteries.

Realism at the seams:

* Partial volume: the lesion's occupancy is supersampled over the slice thickness and blurred in plane by a
  typical reconstruction PSF, so its edge ramps over 1–2 voxels like real edges do.
* Noise matching: the background is split into a smooth part and its high-frequency residual (the real
  scanner noise, with its real texture and level). The lesion replaces the smooth part only
  (``out = (1 - occ) * smooth + occ * lesion + residual``), so the inserted lesion carries exactly the
  local noise of the scan and is not separable by noise statistics.

Works in the volume's own voxel frame (any orientation); sizes are in millimetres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from inference.synth import lesions
from inference.synth.emboli import clot_texture
from inference.synth.grid import Grid, capsule_occupancy
from inference.synth.nodules import load_library
from inference.volume import Volume


def _local_grid(vol: Volume, thickness: float | None = None) -> Grid:
    t = thickness or float(vol.meta.get("slice_thickness") or vol.spacing_mm[0])
    return Grid(vol.shape, vol.spacing_mm, (0.0, 0.0, 0.0), max(t, vol.spacing_mm[0]))


def _split_noise(bg: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(smooth, residual) with residual = high-pass (< ~2 mm) component of the background."""
    sig = (0.0 if spacing[0] > 1.6 else 1.0, 1.5, 1.5)
    smooth = ndi.gaussian_filter(bg, sig, mode="nearest")
    return smooth, bg - smooth


def _blend(vol: Volume, box, occ: np.ndarray, lesion_hu: np.ndarray | float, keep_denser: bool) -> Volume:
    bg = vol.hu[box].astype(np.float32)
    smooth, resid = _split_noise(bg, vol.spacing_mm)
    target = np.maximum(lesion_hu, smooth) if keep_denser else lesion_hu + 0.0 * smooth
    new = (1.0 - occ) * smooth + occ * target + resid
    hu = vol.hu.copy()
    hu[box] = np.clip(np.rint(new), -1024, 3071).astype(hu.dtype)
    return vol.with_array(hu)


def _describe(vol: Volume, box, mask: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
    from inference.synth.study import _describe as describe

    return describe(info, box, mask, vol)


def insert_nodule(
    vol: Volume,
    center_mm: np.ndarray | tuple[float, float, float],
    diameter_mm: float,
    *,
    texture: str = "solid",
    morphology: str = "round",
    lung_mask: np.ndarray | None = None,
    seed: int = 0,
    psf_sigma_px: float = 0.6,
) -> tuple[Volume, np.ndarray, dict[str, Any]]:
    """Insert a LIDC-shaped nodule centred at ``center_mm`` (LPS).

    Args:
        lung_mask: Optional bool mask; the nodule is clipped to it (juxtapleural nodules flatten).
        psf_sigma_px: In-plane blur of the occupancy (pixels), the scan's edge sharpness.

    Returns:
        ``(new_volume, mask, info)``: full-size bool mask (occupancy ≥ 0.5) and a ground-truth record.
    """
    rng = np.random.default_rng(seed)
    grid = _local_grid(vol)
    kji = vol.patient_to_voxel(np.asarray(center_mm, float))
    centre = grid.to_mm(kji)
    lib = load_library()
    idx = lib.pick(rng, morphology)
    res = lesions.nodule_occupancy(grid, centre, diameter_mm, lib, idx, rng, spiculated=morphology == "spiculated")
    if res is None:
        raise ValueError(f"nodule centre {tuple(center_mm)} is outside the volume")
    box, occ, sdf = res
    occ = ndi.gaussian_filter(occ, (0.0, psf_sigma_px, psf_sigma_px))
    if lung_mask is not None:
        occ *= ndi.gaussian_filter(lung_mask[box].astype(np.float32), (0.0, 0.7, 0.7))
    val, core = lesions.nodule_hu(texture, sdf, diameter_mm, rng)
    out = _blend(vol, box, occ, val, keep_denser=True)
    mask = np.zeros(vol.shape, bool)
    mask[box] = occ >= 0.5
    info = {"kind": "nodule", "type": texture, "morphology": morphology, "target_diameter_mm": diameter_mm,
            "solid_fraction": round(core, 2), "shape_source": f"LIDC annotation {int(lib.meta[idx, 5])}"}
    return out, mask, _describe(out, box, mask[box], info)


def insert_embolus(
    vol: Volume,
    artery_mask: np.ndarray,
    *,
    center_mm: np.ndarray | tuple[float, float, float] | None = None,
    length_mm: float = 15.0,
    occlusive: bool = False,
    min_radius_mm: float = 2.5,
    seed: int = 0,
) -> tuple[Volume, np.ndarray, dict[str, Any]]:
    """Insert a filling defect (10..60 HU) into an opacified artery given its mask.

    The site (if ``center_mm`` is None) is a random centreline point whose lumen radius is at least
    ``min_radius_mm``; the clot follows the local vessel axis. Partial clots are central with a contrast
    rim; occlusive ones fill the lumen.
    """
    rng = np.random.default_rng(seed)
    sp = np.asarray(vol.spacing_mm)
    edt = ndi.distance_transform_edt(artery_mask, sampling=sp)
    ridge = (edt == ndi.maximum_filter(edt, size=3)) & (edt >= min_radius_mm)
    if center_mm is None:
        cands = np.argwhere(ridge)
        if len(cands) == 0:
            raise ValueError("no artery segment wide enough for an embolus")
        kji = cands[int(rng.integers(len(cands)))].astype(float)
    else:
        kji = vol.patient_to_voxel(np.asarray(center_mm, float))
    k, j, i = np.round(kji).astype(int)
    r = float(max(edt[k, j, i], 1.0))
    # local axis from the artery voxels around the site (principal direction, in mm)
    rad = int(np.ceil(2.5 * r / sp.min()))
    sl = tuple(slice(max(c - rad, 0), c + rad + 1) for c in (k, j, i))
    pts = (np.argwhere(artery_mask[sl]) + [s.start for s in sl] - [k, j, i]) * sp
    pts = pts[np.linalg.norm(pts, axis=1) < 2.5 * r]
    axis_zyx = np.linalg.eigh(np.cov(pts.T))[1][:, -1] if len(pts) > 3 else np.array([1.0, 0, 0])
    axis = axis_zyx[::-1]  # → (x, y, z) grid order
    grid = _local_grid(vol)
    c = grid.to_mm(kji)
    rc = r * (1.4 if occlusive else float(rng.uniform(0.45, 0.65)))
    res = capsule_occupancy(grid, c - axis * length_mm / 2, c + axis * length_mm / 2, rc, rc * 0.85)
    if res is None:
        raise ValueError("embolus outside the volume")
    box, occ = res
    lumen = ndi.gaussian_filter(artery_mask[box].astype(np.float32), 0.5)
    occ = np.minimum(occ, lumen)
    out = _blend(vol, box, occ, clot_texture(occ.shape, rng), keep_denser=False)
    mask = np.zeros(vol.shape, bool)
    mask[box] = occ >= 0.5
    info = {"kind": "embolism", "type": "occlusive" if occlusive else "partial", "occlusive": occlusive,
            "vessel_radius_mm": round(r, 2)}
    return out, mask, _describe(out, box, mask[box], info)


# --- real backgrounds --------------------------------------------------------------------------------
def load_dicom_folder(folder: Path | str) -> Volume:
    """A slice stack from a folder of CT files (pydicom, sorted along the slice normal)."""
    import pydicom

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    ds = [pydicom.dcmread(f) for f in files]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    ds.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds])
    pos = [np.array(d.ImagePositionPatient, float) for d in ds]
    sz = float(np.median(np.diff([p @ normal for p in pos]))) if len(pos) > 1 else float(ds[0].SliceThickness)
    ps = [float(v) for v in ds[0].PixelSpacing]
    return Volume(hu=np.clip(hu, -1024, 3071).astype(np.int16), spacing_mm=(sz, ps[0], ps[1]),
                  origin_mm=tuple(pos[0]), direction=np.stack([iop[:3], iop[3:], normal], axis=1),
                  study_uid=str(ds[0].StudyInstanceUID), series_uid=str(ds[0].SeriesInstanceUID),
                  meta={"slice_thickness": float(ds[0].SliceThickness)})


def load_nifti(path: Path | str, mask_path: Path | str | None = None) -> tuple[Volume, np.ndarray | None]:
    """A NIfTI CT (RAS affine) as an LPS ``Volume``, plus an optional mask on the same grid."""
    import nibabel as nib

    img = nib.load(str(path))
    aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS → LPS
    cols = aff[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)  # (i, j, k)
    data = np.asarray(img.dataobj).transpose(2, 1, 0)
    vol = Volume(hu=np.clip(data, -1024, 3071).astype(np.int16), spacing_mm=tuple(spacing[::-1]),
                 origin_mm=tuple(aff[:3, 3]), direction=cols / spacing, meta={"slice_thickness": spacing[2]})
    mask = None
    if mask_path is not None:
        mask = np.asarray(nib.load(str(mask_path)).dataobj).transpose(2, 1, 0) > 0
    return vol, mask
