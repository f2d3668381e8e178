"""Pulmonary embolism (serving side, no torch): pulmonary-artery region → CNN-LSTM (ONNX) → study result.

Stages (each a plain function):

1. ``find_pa_region(volume, pre)``: contrast-enhanced mediastinal vessels (HU threshold, bone removed,
   largest central connected component) give the crop around the pulmonary arteries and decide whether the
   study is a CT pulmonary angiogram at all (``is_ctpa``; a non-contrast study is *not assessable*, never
   negative).
2. ``prepare_input(volume, region, pre)``: resample the crop to the card's spacing, window to [0, 1]; the
   model grid remembers where it lies in the original voxel grid.
3. ``analyze_pe(volume)``: runs the model through the engine, calibrates the study probability with the
   card, maps the CAM heatmap and the per-slice probabilities back to the original grid and names the most
   likely location (central/saddle, lobar, segmental; right/left) from the heatmap peak.

All numbers (spacing, window, crop size, region thresholds, calibration, critical threshold) come from the
model card ``assets/models/pe_cnnlstm.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from inference.model_card import ModelCard, Preprocessing
from inference.volume import Volume

MODEL_NAME = "pe_cnnlstm"
REGION_DEFAULTS: dict[str, float] = {
    "blood_hu_low": 150.0,  # opacified blood (iodine) lower bound
    "blood_hu_high": 700.0,  # above: bone cortex / dense contrast inflow
    "bone_hu": 700.0,  # cortical bone; bone interiors (marrow) are excluded by hole filling
    "core_erosion": 2,  # erosions (work voxels) that keep only thick opacified structures
    "min_core_ml": 15.0,  # smallest eroded opacified core that counts as a CTPA
    "work_mm": 3.0,  # working resolution of the region search
    "z_margin_mm": 10.0,
    "max_z_mm": 160.0,
    "min_z_mm": 80.0,  # shorter scans (slabs) cannot show the arteries from the trunk to the lower lobes
    "central_mm": 38.0,  # |x - midline| below: central (trunk / main arteries)
    "lobar_mm": 75.0,  # below: lobar, beyond: segmental
    "saddle_mm": 12.0,  # central and this close to the midline: saddle
}


@dataclass
class PARegion:
    """Where the pulmonary arteries are, in the original voxel grid."""

    is_ctpa: bool
    reason: str
    vessel_mask: np.ndarray  # bool (k, j, i): enhanced mediastinal vessels (empty when not a CTPA)
    z_range: tuple[int, int] = (0, 0)  # original slices [k0, k1] (inclusive) the crop covers
    center_ji: tuple[float, float] = (0.0, 0.0)  # in-plane crop centre (row, column), original voxels
    blood_hu: float = float("nan")  # median HU of the enhanced vessels
    midline_i: float = 0.0  # column of the body midline (original voxels)


@dataclass
class ModelGrid:
    """The network input and the axis-aligned map from its grid to the original voxel grid."""

    x: np.ndarray  # (1, S, 1, H, W) float32 in [0, 1]
    start_kji: np.ndarray  # original voxel coordinates of model voxel (0, 0, 0)
    step_kji: np.ndarray  # original voxels per model voxel along (k, j, i)

    @property
    def shape(self) -> tuple[int, int, int]:
        _, t, _, y, x = self.x.shape
        return int(t), int(y), int(x)

    def to_original(self, tyx: np.ndarray) -> np.ndarray:
        """Model-grid coordinates (t, y, x) → original voxel coordinates (k, j, i)."""
        return self.start_kji + np.asarray(tyx, np.float64) * self.step_kji


@dataclass
class PEResult:
    """Study-level PE result; ``probability`` is ``None`` when the study is not assessable (not a CTPA)."""

    probability: float | None
    critical: bool
    is_ctpa: bool
    confidence: str  # "ok" | "low"
    reason: str
    slice_probabilities: np.ndarray  # (K,) per original slice, 0 outside the crop
    location: dict[str, str]  # {"level": central|saddle|lobar|segmental, "side": right|left|midline, "label"}
    heatmap: np.ndarray  # float32 (K, J, I) in [0, 1] on the original grid
    region_mask: np.ndarray  # bool (K, J, I): the analysed crop
    peak_voxel: tuple[int, int, int] | None
    peak_mm: tuple[float, float, float] | None
    raw_logit: float | None = None
    model: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready result without arrays."""
        return {
            "probability": self.probability, "critical": self.critical, "is_ctpa": self.is_ctpa,
            "confidence": self.confidence, "reason": self.reason, "location": self.location,
            "peak_voxel": list(self.peak_voxel) if self.peak_voxel else None,
            "peak_mm": [round(v, 2) for v in self.peak_mm] if self.peak_mm else None,
            "model": self.model, "timings_ms": self.timings_ms,
        }


def region_params(pre: Preprocessing) -> dict[str, float]:
    """Region-search parameters: the card's ``preprocessing.region`` over the defaults."""
    extra = getattr(pre, "model_extra", None) or {}
    return {**REGION_DEFAULTS, **dict(extra.get("region", {}))}


def _work_grid(volume: Volume, work_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """HU resampled (nearest, by striding) to about ``work_mm``; returns (array, step per axis)."""
    step = np.maximum(1, np.round(work_mm / np.asarray(volume.spacing_mm))).astype(int)
    return volume.hu[:: step[0], :: step[1], :: step[2]], step


def find_pa_region(volume: Volume, pre: Preprocessing) -> PARegion:
    """Find the contrast-enhanced mediastinal vessels and the crop around the pulmonary arteries.

    Args:
        volume: The CT study.
        pre: The model's preprocessing spec (``patch_size`` in-plane, ``spacing_mm``, ``region`` extras).

    Returns:
        A ``PARegion``; ``is_ctpa`` is False (with the reason) when no large opacified vessel tree is found.
    """
    p = region_params(pre)
    empty = np.zeros(volume.shape, bool)
    extent = volume.shape[0] * float(volume.spacing_mm[0])
    if extent < p["min_z_mm"]:
        return PARegion(False, f"the scan covers {extent:.0f} mm craniocaudally; assessing PE needs at least "
                               f"{p['min_z_mm']:.0f} mm through the pulmonary arteries", empty)
    hu, step = _work_grid(volume, p["work_mm"])
    vox_ml = float(np.prod(np.asarray(volume.spacing_mm) * step)) / 1000.0
    body = hu > -400
    bone = hu > p["bone_hu"]
    bone = np.stack([ndimage.binary_fill_holes(b) for b in bone])  # marrow inside the cortex
    bone = ndimage.binary_dilation(bone, iterations=1)
    blood = (hu >= p["blood_hu_low"]) & (hu <= p["blood_hu_high"]) & ~bone
    blood = ndimage.binary_opening(blood, iterations=1)
    lab, n = ndimage.label(blood)
    if n == 0:
        return PARegion(False, f"no contrast-enhanced vessels (HU >= {p['blood_hu_low']:.0f}): not a CTPA", empty)
    # thick structures only (heart, aorta, pulmonary trunk): sternum, scapulae and ribs do not survive erosion
    core = ndimage.binary_erosion(blood, iterations=int(p["core_erosion"]))
    sizes = np.bincount(lab[core], minlength=n + 1)[1:] * vox_ml
    cols = np.nonzero(body.any(axis=(0, 1)))[0]
    touches = len(cols) == 0 or cols[0] == 0 or cols[-1] == body.shape[2] - 1
    mid_w = float(hu.shape[2] / 2.0) if touches else float(np.nonzero(body)[2].mean())
    width = float(hu.shape[2]) if touches else float(cols[-1] - cols[0] + 1)
    best, best_size = -1, 0.0
    coms = ndimage.center_of_mass(blood, lab, range(1, n + 1))
    for c in np.argsort(sizes)[::-1][:5]:
        if sizes[c] < p["min_core_ml"]:
            break
        if abs(coms[c][2] - mid_w) < 0.3 * width and sizes[c] > best_size:
            best, best_size = c + 1, sizes[c]
    if best < 0:
        return PARegion(
            False, f"no opacified vessel core >= {p['min_core_ml']:.0f} ml (largest {sizes.max():.1f} ml): not a CTPA",
            empty,
        )
    comp = lab == best
    blood_hu = float(np.median(hu[comp]))
    # back to the original grid (nearest), limited to the same HU range
    up = comp.repeat(step[0], 0).repeat(step[1], 1).repeat(step[2], 2)[: volume.shape[0], : volume.shape[1],
                                                                       : volume.shape[2]]
    mask = np.zeros(volume.shape, bool)
    mask[: up.shape[0], : up.shape[1], : up.shape[2]] = up
    ks = np.nonzero(comp.any(axis=(1, 2)))[0] * step[0]
    sz = volume.spacing_mm[0]
    margin = int(round(p["z_margin_mm"] / sz))
    k0, k1 = max(0, int(ks[0]) - margin), min(volume.shape[0] - 1, int(ks[-1]) + step[0] - 1 + margin)
    max_n = int(p["max_z_mm"] / sz)
    if k1 - k0 + 1 > max_n:  # keep the part around the vessel tree's centre of mass
        kc = int(round(ndimage.center_of_mass(comp)[0] * step[0]))
        k0 = max(0, min(kc - max_n // 2, volume.shape[0] - max_n))
        k1 = k0 + max_n - 1
    jj, ii = np.nonzero(comp.any(axis=0))
    center = (float((jj.min() + jj.max()) / 2 * step[1]), float((ii.min() + ii.max()) / 2 * step[2]))
    return PARegion(True, f"opacified vessel core {best_size:.0f} ml, median {blood_hu:.0f} HU", mask, (k0, k1), center,
                    blood_hu, mid_w * step[2])


def prepare_input(volume: Volume, region: PARegion, pre: Preprocessing) -> ModelGrid:
    """Resample the crop to the model spacing (trilinear) and window it to [0, 1].

    Returns:
        A ``ModelGrid`` with ``x`` of shape (1, S, 1, H, W), ``H, W = pre.patch_size``.
    """
    h, w = (int(v) for v in pre.patch_size[-2:])  # type: ignore[index]
    step = np.asarray(pre.spacing_mm, np.float64) / np.asarray(volume.spacing_mm, np.float64)
    k0, k1 = region.z_range
    n = max(1, int(np.floor((k1 - k0) / step[0])) + 1)
    start = np.array([k0, region.center_ji[0] - (h - 1) / 2 * step[1], region.center_ji[1] - (w - 1) / 2 * step[2]])
    t, y, x = np.arange(n), np.arange(h), np.arange(w)
    kk = start[0] + t * step[0]
    jj = start[1] + y * step[1]
    ii = start[2] + x * step[2]
    # separable trilinear resampling: z first, then the plane
    lo = np.clip(np.floor(kk).astype(int), 0, volume.shape[0] - 1)
    hi = np.clip(lo + 1, 0, volume.shape[0] - 1)
    f = (kk - np.floor(kk)).astype(np.float32)[:, None, None]
    hu = volume.hu
    zs = hu[lo].astype(np.float32) * (1 - f) + hu[hi].astype(np.float32) * f
    grid = np.meshgrid(jj, ii, indexing="ij")
    out = np.stack([ndimage.map_coordinates(s, grid, order=1, cval=-1024.0) for s in zs])
    a, b = pre.hu_window
    out = np.clip((out - a) / (b - a), 0.0, 1.0).astype(np.float32)
    return ModelGrid(out[None, :, None], start, step)


def _lerp_axis(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` at fractional ``coords`` (zero outside, edge-clamped)."""
    n = a.shape[axis]
    c = np.clip(coords, 0.0, n - 1.0)
    lo = np.floor(c).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (c - lo).astype(np.float32)
    inside = ((coords >= -0.5) & (coords <= n - 0.5)).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = len(coords)
    w, inside = w.reshape(shape), inside.reshape(shape)
    return (np.take(a, lo, axis=axis) * (1 - w) + np.take(a, hi, axis=axis) * w) * inside


def cam_to_original(cam: np.ndarray, grid: ModelGrid, shape: tuple[int, int, int], region_box: tuple) -> np.ndarray:
    """Map a model-grid map (S, h, w) (h, w = H/s, W/s) onto the original grid inside ``region_box``
    (separable trilinear interpolation, zero outside the crop)."""
    s_, h_, w_ = cam.shape
    _, big_h, big_w = grid.shape
    sy, sx = big_h / h_, big_w / w_
    out = np.zeros(shape, np.float32)
    kk, jj, ii = (np.arange(b.start, b.stop) for b in region_box)
    if min(len(kk), len(jj), len(ii)) == 0:
        return out
    t = (kk - grid.start_kji[0]) / grid.step_kji[0]
    y = ((jj - grid.start_kji[1]) / grid.step_kji[1] + 0.5) / sy - 0.5
    x = ((ii - grid.start_kji[2]) / grid.step_kji[2] + 0.5) / sx - 0.5
    m = _lerp_axis(cam.astype(np.float32), t, 0)
    m = _lerp_axis(m, y, 1)
    out[region_box] = _lerp_axis(m, x, 2)
    return out


def region_box(grid: ModelGrid, shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The original-grid box the model grid covers (clipped to the volume)."""
    end = grid.to_original(np.array(grid.shape, np.float64) - 1)
    lo = np.maximum(0, np.ceil(grid.start_kji - 1e-6)).astype(int)
    hi = np.minimum(np.asarray(shape), np.floor(end + 1e-6).astype(int) + 1)
    return tuple(slice(int(a), int(max(a, b))) for a, b in zip(lo, hi))  # type: ignore[return-value]


def calibrate(logit: float | np.ndarray, card: ModelCard) -> np.ndarray:
    """Calibrated probability from the raw study logit with the card's Platt/temperature parameters."""
    z = np.asarray(logit, np.float64)
    c = card.calibration
    if c.method == "platt":
        z = c.params.get("a", 1.0) * z + c.params.get("b", 0.0)
    elif c.method == "temperature":
        z = z / c.params.get("T", 1.0)
    return 1.0 / (1.0 + np.exp(-z))


def locate(peak_kji: np.ndarray, volume: Volume, region: PARegion, pre: Preprocessing) -> dict[str, str]:
    """Artery level and side of a heatmap peak from its lateral distance to the body midline (mm, LPS x)."""
    p = region_params(pre)
    x_peak = volume.voxel_to_patient(np.asarray(peak_kji, np.float64))[0]
    x_mid = volume.voxel_to_patient(np.array([peak_kji[0], peak_kji[1], region.midline_i]))[0]
    dx = float(x_peak - x_mid)  # LPS: +x is the patient's left
    side = "left" if dx > 0 else "right"
    if abs(dx) < p["central_mm"]:
        level = "saddle" if abs(dx) < p["saddle_mm"] else "central"
    elif abs(dx) < p["lobar_mm"]:
        level = "lobar"
    else:
        level = "segmental"
    if level == "saddle":
        return {"level": level, "side": "midline", "label": "saddle (pulmonary trunk bifurcation)"}
    return {"level": level, "side": side, "label": f"{level} {side}"}


def run_onnx(model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the loaded model (``LoadedModel``) on ``x`` (1, S, 1, H, W); outputs by name."""
    outs = model.run({model.card.inputs[0].name: x})
    return {o.name: v for o, v in zip(model.card.outputs, outs)}


def analyze_pe(volume: Volume, *, engine: Any = None, model_name: str = MODEL_NAME) -> PEResult:
    """Study-level PE analysis of one CT volume through the ONNX CNN-LSTM.

    Args:
        volume: The CT study (any orientation; the crop follows the volume's axes).
        engine: An ``inference.engine.Engine`` (default: ``get_engine()``).
        model_name: Card name of the model to run (``pe_cnnlstm`` or a compressed variant).

    Returns:
        A ``PEResult``. Not a CTPA → ``probability=None``, ``confidence="low"``, empty heatmap.
    """
    if engine is None:
        from inference.engine import get_engine

        engine = get_engine()
    model = engine.model(model_name)
    card: ModelCard = model.card
    pre = card.preprocessing
    t0 = time.perf_counter()
    region = find_pa_region(volume, pre)
    t1 = time.perf_counter()
    info = {"name": card.name, "version": card.version}
    if not region.is_ctpa:
        return PEResult(None, False, False, "low", region.reason, np.zeros(volume.shape[0], np.float32), {},
                        np.zeros(volume.shape, np.float32), np.zeros(volume.shape, bool), None, None, None, info,
                        {"region": (t1 - t0) * 1e3})
    grid = prepare_input(volume, region, pre)
    t2 = time.perf_counter()
    out = run_onnx(model, grid.x)
    t3 = time.perf_counter()
    return postprocess(out, grid, region, volume, card, info,
                       {"region": (t1 - t0) * 1e3, "resample": (t2 - t1) * 1e3, "model": (t3 - t2) * 1e3})


def postprocess(out: dict[str, np.ndarray], grid: ModelGrid, region: PARegion, volume: Volume, card: ModelCard,
                info: dict[str, str], timings: dict[str, float]) -> PEResult:
    """Model outputs → ``PEResult`` on the original grid (calibration, heatmap, slices, location)."""
    t0 = time.perf_counter()
    logit = float(np.asarray(out["study_logit"]).reshape(-1)[0])
    prob = float(calibrate(logit, card))
    slice_p = 1.0 / (1.0 + np.exp(-np.asarray(out["slice_logits"], np.float64).reshape(-1)))
    cam = np.asarray(out["cam"], np.float32)[0]  # (S, h, w)
    pos = np.maximum(cam, 0.0)
    peak_val = float(pos.max())
    heat_small = (pos / peak_val * prob) if peak_val > 0 else np.zeros_like(pos)
    box = region_box(grid, volume.shape)
    heat = np.clip(cam_to_original(heat_small, grid, volume.shape, box), 0.0, 1.0)
    mask = np.zeros(volume.shape, bool)
    mask[box] = True
    if heat.max() > 0:  # the peak is the heatmap's maximum on the original grid
        peak = np.array(np.unravel_index(int(np.argmax(heat)), heat.shape))
    else:  # flat (all-negative) CAM: the centre of its highest cell
        t, y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
        fy, fx = grid.shape[1] / cam.shape[1], grid.shape[2] / cam.shape[2]
        peak = grid.to_original(np.array([t, (y + 0.5) * fy - 0.5, (x + 0.5) * fx - 0.5]))
        peak = np.clip(np.round(peak), 0, np.asarray(volume.shape) - 1).astype(int)
    peak_mm = tuple(float(v) for v in volume.voxel_to_patient(peak.astype(np.float64)))
    ks = np.arange(volume.shape[0])
    model_k = grid.start_kji[0] + np.arange(len(slice_p)) * grid.step_kji[0]
    per_slice = np.interp(ks, model_k, slice_p, left=0.0, right=0.0).astype(np.float32)
    critical = prob >= card.threshold("critical")
    low = region.blood_hu < float(region_params(card.preprocessing).get("low_contrast_hu", 200.0))
    timings = {**timings, "postprocess": (time.perf_counter() - t0) * 1e3}
    return PEResult(
        prob, critical, True, "low" if low else "ok",
        region.reason + ("; weak opacification" if low else ""), per_slice,
        locate(peak, volume, region, card.preprocessing), heat, mask, tuple(int(v) for v in peak),  # type: ignore[arg-type]
        peak_mm, logit, info, timings,  # type: ignore[arg-type]
    )
