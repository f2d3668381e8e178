"""Align a prior CT to the current one (SimpleITK): global rigid → affine on the lungs, local refinement.

``register_lungs(current, prior)`` returns an ``Alignment`` whose ``to_prior(xyz)`` maps LPS millimetres of
the current scan to the corresponding point of the prior scan. Steps:

1. Both volumes are resampled to ``GRID_MM`` isotropic voxels and clipped to [-1024, 200] HU (the lungs and
   their vessels carry the signal; bone and contrast do not dominate the metric).
2. Initial translation from the lung centroids (moments of the lung masks; works when the two scans cover
   the chest differently), then rigid (Euler 3-D) and affine stages, Mattes mutual information restricted to
   the dilated current lung mask, a 3-level pyramid, random sampling.
3. ``refine(xyz)`` (optional, per finding): a translation-only registration of a ``LOCAL_MM`` cube around a
   point, started from the global transform. It absorbs the local breath-hold deformation that one affine
   map cannot, at a fraction of the cost of a whole-lung B-spline.

Quality: the Dice overlap of the two lung masks after alignment (``lung_dice``) and the final metric; an
alignment with ``lung_dice < MIN_LUNG_DICE`` is flagged ``ok=False`` (the pairing still runs, with lower
confidences, and the report says so). SimpleITK is imported lazily; a missing install raises
``RegistrationUnavailable`` with the pip command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.volume import Volume

GRID_MM = 2.5  # isotropic grid of the global registration
LOCAL_MM = 50.0  # side of the cube of a local refinement
LOCAL_GRID_MM = 1.25
MIN_LUNG_DICE = 0.8
HU_RANGE = (-1024.0, 200.0)
SAMPLING = 0.06  # share of the fixed lung voxels sampled by the metric


class RegistrationUnavailable(RuntimeError):
    """SimpleITK is not installed."""


def _sitk():
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RegistrationUnavailable(
            "comparison with a prior needs SimpleITK: pip install SimpleITK (it is a dependency of this "
            "package; reinstall with `pip install -e .`)"
        ) from exc
    return sitk


def to_sitk(volume: Volume, array: np.ndarray | None = None, dtype=np.float32):
    """A SimpleITK image with the volume's geometry (``array`` defaults to the HU voxels)."""
    sitk = _sitk()
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.hu if array is None else array, dtype=dtype))
    sz, sy, sx = volume.spacing_mm
    img.SetSpacing((sx, sy, sz))
    img.SetOrigin(tuple(float(v) for v in volume.origin_mm))
    img.SetDirection(tuple(float(v) for v in volume.direction.ravel()))
    return img


def _resample_iso(img, grid_mm: float, interpolator, default: float):
    sitk = _sitk()
    spacing = np.asarray(img.GetSpacing())
    size = np.asarray(img.GetSize())
    new_size = [max(4, int(round(n * s / grid_mm))) for n, s in zip(size, spacing)]
    if interpolator == sitk.sitkLinear:
        sig = [max(0.01, (grid_mm - s) / 2.0) for s in spacing]
        img = sitk.SmoothingRecursiveGaussian(img, sig) if max(sig) > 0.3 else img
    return sitk.Resample(
        img, new_size, sitk.Transform(), interpolator, img.GetOrigin(), (grid_mm,) * 3, img.GetDirection(),
        default, img.GetPixelID(),
    )


def coarse_lung(volume: Volume, grid_mm: float = GRID_MM):
    """(image clipped to ``HU_RANGE``, lung mask) on an isotropic ``grid_mm`` grid, as SimpleITK images."""
    from inference.models.nodule_prep import lung_mask

    sitk = _sitk()
    img = _resample_iso(to_sitk(volume), grid_mm, sitk.sitkLinear, -1024.0)
    img = sitk.Clamp(img, sitk.sitkFloat32, *HU_RANGE)
    arr = sitk.GetArrayFromImage(img)
    sp = img.GetSpacing()
    coarse = Volume(hu=arr.astype(np.int16), spacing_mm=(sp[2], sp[1], sp[0]))
    lung = lung_mask(coarse, min_ml=20.0).astype(np.uint8)
    mask = sitk.GetImageFromArray(lung)
    mask.CopyInformation(img)
    return img, mask


def _centroid(mask) -> np.ndarray:
    sitk = _sitk()
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if 1 not in stats.GetLabels():
        size = np.asarray(mask.GetSize())
        return np.asarray(mask.TransformContinuousIndexToPhysicalPoint((size - 1) / 2.0))
    return np.asarray(stats.GetCentroid(1))


def _method(sitk, mask, sampling: float, iterations: int, seed: int):
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed)
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


@dataclass
class Alignment:
    """The current → prior point mapping and how good it is."""

    transform: Any  # SimpleITK transform: current LPS mm → prior LPS mm
    quality: dict[str, Any] = field(default_factory=dict)
    current: Volume | None = None
    prior: Volume | None = None

    def to_prior(self, xyz: np.ndarray | tuple | list) -> np.ndarray:
        """Map LPS mm of the current scan (one point or ``(N, 3)``) into the prior scan."""
        pts = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        out = np.array([self.transform.TransformPoint(tuple(float(v) for v in p)) for p in pts])
        return out[0] if np.ndim(xyz) == 1 else out

    def refine(self, xyz: np.ndarray | tuple | list) -> tuple[np.ndarray, float]:
        """Local translation-only registration around ``xyz`` (current LPS mm).

        Returns:
            ``(prior_xyz, shift_mm)``: the refined prior point and how far it moved from the global mapping.
            Falls back to the global mapping (shift 0) when the cube leaves either volume.
        """
        sitk = _sitk()
        centre = np.asarray(xyz, float)
        start = self.to_prior(centre)
        if self.current is None or self.prior is None:
            return start, 0.0
        fixed = _local_cube(self.current, centre)
        moving = _local_cube(self.prior, start)
        if fixed is None or moving is None:
            return start, 0.0
        local = sitk.TranslationTransform(3)
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsCorrelation()
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.05, numberOfIterations=60)
        reg.SetShrinkFactorsPerLevel([2, 1])
        reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
        reg.SetSmoothingSigmasAreSpecifiedInPhysicalUnits(False)
        reg.SetMovingInitialTransform(self.transform)
        reg.SetInitialTransform(local, inPlace=True)
        try:
            reg.Execute(fixed, moving)
        except RuntimeError:
            return start, 0.0
        # local acts first, then the global map (moving initial transform): prior = global(local(current))
        refined = np.asarray(self.transform.TransformPoint(local.TransformPoint(tuple(float(v) for v in centre))))
        shift = float(np.linalg.norm(refined - start))
        if shift > LOCAL_MM / 3:  # ran away: keep the global mapping
            return start, 0.0
        return refined, shift


def map_point(transform: dict, xyz: np.ndarray | tuple | list) -> np.ndarray:
    """Apply a stored ``quality['transform']`` (current LPS mm → prior LPS mm) without SimpleITK."""
    m = np.asarray(transform["matrix"], float).reshape(3, 3)
    c = np.asarray(transform["center"], float)
    t = np.asarray(transform["translation"], float)
    return m @ (np.asarray(xyz, float) - c) + c + t


def _local_cube(volume: Volume, xyz: np.ndarray):
    """A ``LOCAL_MM`` cube around ``xyz`` (LPS) resampled to ``LOCAL_GRID_MM`` in the volume's axes."""
    sitk = _sitk()
    kji = volume.patient_to_voxel(xyz)
    half = [LOCAL_MM / 2 / s for s in volume.spacing_mm]
    lo = [int(np.floor(c - h)) for c, h in zip(kji, half)]
    hi = [int(np.ceil(c + h)) + 1 for c, h in zip(kji, half)]
    if any(h - 1 < 0 or lo_ >= n for lo_, h, n in zip(lo, hi, volume.shape)):
        return None
    lo = [max(0, v) for v in lo]
    hi = [min(n, v) for v, n in zip(hi, volume.shape)]
    if min(h - lo_ for lo_, h in zip(lo, hi)) < 4:
        return None
    sub = volume.hu[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    origin = volume.voxel_to_patient(lo)
    cube = volume.with_array(np.asarray(sub), origin_mm=tuple(origin))
    img = to_sitk(cube)
    img = _resample_iso(img, LOCAL_GRID_MM, sitk.sitkLinear, -1024.0)
    return sitk.Clamp(img, sitk.sitkFloat32, *HU_RANGE)


def register_lungs(current: Volume, prior: Volume, *, affine: bool = True, seed: int = 7) -> Alignment:
    """Global alignment of ``prior`` onto ``current`` (see the module docstring).

    Raises:
        RegistrationUnavailable: SimpleITK is missing.
    """
    sitk = _sitk()
    t0 = time.perf_counter()
    fixed, fixed_mask = coarse_lung(current)
    moving, moving_mask = coarse_lung(prior)
    t_prep = time.perf_counter() - t0
    focus = sitk.BinaryDilate(fixed_mask, [3, 3, 3])
    rigid = sitk.Euler3DTransform()
    c_fixed, c_moving = _centroid(fixed_mask), _centroid(moving_mask)
    rigid.SetCenter(tuple(c_fixed))
    rigid.SetTranslation(tuple(c_moving - c_fixed))
    reg = _method(sitk, focus, SAMPLING, 100, seed)
    reg.SetShrinkFactorsPerLevel([4, 2])
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SetInitialTransform(rigid, inPlace=True)
    reg.Execute(fixed, moving)
    metric = reg.GetMetricValue()
    transform: Any = rigid
    stages = ["rigid"]
    if affine:
        aff = sitk.AffineTransform(3)
        aff.SetCenter(rigid.GetCenter())
        aff.SetMatrix(rigid.GetMatrix())
        aff.SetTranslation(rigid.GetTranslation())
        reg = _method(sitk, focus, SAMPLING, 80, seed)
        reg.SetShrinkFactorsPerLevel([2, 1])
        reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
        reg.SetInitialTransform(aff, inPlace=True)
        reg.Execute(fixed, moving)
        transform = aff
        metric = reg.GetMetricValue()
        stages.append("affine")
    warped = sitk.Resample(moving_mask, fixed_mask, transform, sitk.sitkNearestNeighbor, 0)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(fixed_mask, warped)
    dice = float(overlap.GetDiceCoefficient()) if np.any(sitk.GetArrayViewFromImage(fixed_mask)) else 0.0
    quality = {
        "method": "+".join(stages) + " (SimpleITK, Mattes MI on the lungs)",
        # prior = matrix @ (current - center) + center + translation (LPS mm): the viewer's linked scrolling
        "transform": {
            "matrix": [round(float(v), 6) for v in transform.GetMatrix()],
            "center": [round(float(v), 3) for v in transform.GetCenter()],
            "translation": [round(float(v), 3) for v in transform.GetTranslation()],
        },
        "lung_dice": round(dice, 3),
        "metric": round(float(metric), 4),
        "ok": bool(dice >= MIN_LUNG_DICE),
        "time_s": round(time.perf_counter() - t0, 2),
        "prep_s": round(t_prep, 2),
    }
    return Alignment(transform=transform, quality=quality, current=current, prior=prior)
