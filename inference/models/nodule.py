"""Lung nodule detection, serving side: ONNX Runtime only (no torch).

Stages (each a function below; the model cards give every number):

1. ``prepare``: resample the ``Volume`` to the seg card's spacing (linear), compute the lung mask
   (``nodule_prep.lung_mask``), crop to the lungs (+ margin), clip and scale the HU window to [0, 1].
2. ``segment``: Gaussian-blended sliding window of ``nodule_seg`` (outputs ``prob`` and ``attention``).
3. ``find_candidates``: connected components of ``prob >= thresholds.segmentation`` inside the lungs.
4. ``score_candidates``: ``nodule_cls`` on a patch centred on each candidate; its logit is calibrated with
   the card's calibration (Platt on the logit, or ``logistic`` on the logit and the candidate's peak
   segmentation probability); its ``cam`` output is the explanation of that score.
5. ``detect_nodules``: all of the above, then each candidate measured on the ORIGINAL grid: centre (k, j, i)
   and LPS mm, long-axis diameter, volume, mean HU, texture; a label volume and a uint8 heatmap on the
   original grid.

Heatmap: the segmentation probability (the seg model's explanation: where it sees nodule tissue), raised
inside each candidate's patch to ``probability x normalised CAM`` of the candidate classifier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from inference.engine import LoadedModel, get_engine, sliding_window
from inference.model_card import ModelCard
from inference.models.lung_region import lesion_region
from inference.models.mass import detect_masses
from inference.models.nodule_features import FEATURES, candidate_features, feature_term, uses_features
from inference.models.nodule_prep import (
    crop_box,
    extract_patch,
    long_axis_mm,
    lung_mask,
    resample,
    texture_of,
    window,
)
from inference.results import Finding
from inference.volume import Volume

SEG_MODEL = "nodule_seg"
CLS_MODEL = "nodule_cls"

__all__ = ["NoduleCandidate", "NoduleResult", "Prepared", "calibrate", "detect_nodules", "find_candidates",
           "lung_mask", "prepare", "score_candidates", "segment"]


@dataclass
class Prepared:
    """A volume on the model grid: HU (float32), windowed image, lung mask, lung crop box, and the lesion region
    (aerated lung plus the pockets where juxta-pleural lesions sit) with the lungs' per-slice hull."""

    hu: np.ndarray
    image: np.ndarray
    lung: np.ndarray
    box: tuple[slice, slice, slice]
    spacing: tuple[float, float, float]
    region: np.ndarray | None = None
    hull: np.ndarray | None = None


@dataclass
class NoduleCandidate:
    """One candidate nodule, measured on the original grid of the volume."""

    label: int  # its value in ``NoduleResult.mask``
    probability: float  # calibrated
    score_raw: float  # classifier sigmoid before calibration
    seg_max: float  # highest segmentation probability in the component
    center_voxel: tuple[int, int, int]  # (k, j, i), original grid
    center_mm: tuple[float, float, float]  # LPS (x, y, z)
    diameter_mm: float  # long axis (largest axial section)
    volume_ml: float
    mean_hu: float
    texture: str  # solid | part-solid | ground-glass
    n_voxels: int  # on the original grid
    center_model: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (k, j, i) on the model grid
    features: dict[str, float] = field(default_factory=dict)  # Hessian blob/tube (nodule_features)

    def to_finding(self) -> Finding:
        """The pipeline's ``Finding`` for this candidate."""
        return Finding(
            kind="nodule", probability=self.probability, center_mm=self.center_mm, center_voxel=self.center_voxel,
            diameter_mm=round(self.diameter_mm, 2), volume_ml=round(self.volume_ml, 4),
            mean_hu=round(self.mean_hu, 1), texture=self.texture, label=self.label,
            extra={"score_raw": round(self.score_raw, 4), "seg_max": round(self.seg_max, 4)},
        )


@dataclass
class NoduleResult:
    """Candidates (most probable first) plus a uint8 label volume and uint8 heatmap on the original grid."""

    candidates: list[NoduleCandidate]
    masses: list[Finding]  # kind "mass": lesions over 30 mm, one finding each (``inference.models.mass``)
    mask: np.ndarray | None  # uint8 (k, j, i): 0 background, n = candidate with label n
    heatmap: np.ndarray | None  # uint8 0..255, same grid
    score: float  # study-level nodule score: the highest calibrated probability (0 without candidates)
    model_versions: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    prob_model: np.ndarray | None = None  # seg probability on the model grid (kept for evaluation)
    heat_model: np.ndarray | None = None  # the heatmap on the model grid
    prepared: Prepared | None = None  # the model-grid input (kept for evaluation)


def prepare(volume: Volume, card: ModelCard) -> Prepared:
    """Resample, lung-mask, window and crop ``volume`` as the seg model was trained (see module doc)."""
    pp = card.preprocessing
    sz, sy, sx = (float(s) for s in pp.spacing_mm)
    spacing = (sz, sy, sx)
    hu = resample(volume.hu, volume.spacing_mm, spacing, order=1, cval=-1024.0)
    lung = lung_mask(Volume(hu=hu.astype(np.int16), spacing_mm=spacing))
    margin = float(getattr(pp, "crop_margin_mm", 10.0) or 10.0)
    box = crop_box(lung, spacing, margin, pp.multiple_of) if pp.crop == "lungs" else tuple(
        slice(0, n) for n in hu.shape)
    region, hull = lesion_region(hu, lung, spacing)
    return Prepared(hu=hu, image=window(hu, pp.hu_window), lung=lung, box=box, spacing=spacing,  # type: ignore[arg-type]
                    region=region, hull=hull)


def segment(prep: Prepared, model: LoadedModel, *, batch_size: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Sliding-window segmentation; returns ``(prob, attention)`` on the whole model grid (0 outside the crop)."""
    pp = model.card.preprocessing
    name = model.input_names[0]
    crop = np.ascontiguousarray(prep.image[prep.box])
    outs = sliding_window(crop, pp.patch(), lambda b: model.run({name: b}), overlap=pp.overlap,
                          batch_size=batch_size)
    prob = np.zeros(prep.image.shape, np.float32)
    att = np.zeros(prep.image.shape, np.float32)
    prob[prep.box] = outs[model.card.output_index("prob")][0]
    att[prep.box] = outs[model.card.output_index("attention")][0]
    return prob, att


def find_candidates(prob: np.ndarray, lung: np.ndarray, thresholds: dict[str, float],
                    spacing: tuple[float, float, float]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Connected components of the thresholded probability whose centre lies in the lungs.

    Returns:
        ``(labels, comps)``: int32 label volume on the model grid (renumbered 1..n, most confident first)
        and one dict per component with ``center`` (model-grid k, j, i), ``seg_max``, ``n_voxels``, ``box``.
    """
    thr = float(thresholds.get("segmentation", 0.5))
    min_vox = float(thresholds.get("min_volume_mm3", 10.0)) / float(np.prod(spacing))
    max_n = int(thresholds.get("max_candidates", 100))
    lab, n = ndi.label(prob >= thr)
    comps = []
    for idx, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab[sl] == idx
        nv = int(m.sum())
        if nv < min_vox:
            continue
        p = prob[sl] * m
        c = np.array(ndi.center_of_mass(p)) + [s.start for s in sl]
        if not lung[tuple(np.clip(np.round(c).astype(int), 0, np.array(lung.shape) - 1))]:
            continue
        comps.append({"old": idx, "center": c, "seg_max": float(p.max()), "n_voxels": nv, "box": sl})
    # Most confident first, larger first among equals: many components saturate at 1.0 on real scans, and the
    # cap (a bound against runaway noise, not a filter: lung2 has 59 components) then cuts a fixed set.
    comps.sort(key=lambda d: (-d["seg_max"], -d["n_voxels"]))
    comps = comps[:max_n]
    relabel = np.zeros(n + 1, np.int32)
    for new, d in enumerate(comps, start=1):
        relabel[d["old"]] = new
        d["label"] = new
    return relabel[lab], comps


def seg_logit(seg_max: np.ndarray | float) -> np.ndarray:
    """Logit of the component's peak segmentation probability (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(seg_max, np.float64), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def calibrate(logit: np.ndarray | float, calibration: Any, seg_max: np.ndarray | float | None = None,
              features: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probability of classifier logits (card ``calibration``: platt, temperature, logistic or none).

    ``logistic`` combines the classifier logit with the logit of the candidate's peak segmentation probability
    (``z = w_cls * logit + w_seg * logit(seg_max) + b``), fitted on the validation split; it needs ``seg_max``,
    and the candidates' geometric ``features`` (``nodule_features``) when the card weights them.
    """
    z = np.asarray(logit, np.float64)
    params = calibration.params if hasattr(calibration, "params") else calibration.get("params", {})
    method = calibration.method if hasattr(calibration, "method") else calibration.get("method", "none")
    if method == "platt":
        z = float(params["a"]) * z + float(params["b"])
    elif method == "temperature":
        z = z / float(params["t"])
    elif method == "logistic":
        if seg_max is None:
            raise ValueError("logistic calibration needs the candidates' peak segmentation probability")
        z = float(params["w_cls"]) * z + float(params["w_seg"]) * seg_logit(seg_max) + float(params["b"])
        if uses_features(calibration):
            if features is None:
                raise ValueError("this calibration weights the candidates' geometric features: pass them")
            z = z + feature_term(params, features)
    return 1.0 / (1.0 + np.exp(-z))


def score_candidates(image: np.ndarray, centers: list[np.ndarray], model: LoadedModel, *, batch_size: int = 8,
                     seg_max: list[float] | np.ndarray | None = None, features: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classifier on one patch per candidate centre (model grid).

    Returns:
        ``(logits (N,), calibrated probabilities (N,), cams (N, d, h, w))``.
    """
    size = model.card.preprocessing.patch()
    if not centers:
        return np.zeros(0), np.zeros(0), np.zeros((0, *size), np.float32)
    name = model.input_names[0]
    i_logit, i_cam = model.card.output_index("logit"), model.card.output_index("cam")
    logits, cams = [], []
    for b in range(0, len(centers), batch_size):
        batch = np.stack([extract_patch(image, c, size) for c in centers[b : b + batch_size]])[:, None]
        outs = model.run({name: np.ascontiguousarray(batch, np.float32)})
        logits.append(outs[i_logit].reshape(-1))
        cams.append(outs[i_cam][:, 0])
    logit = np.concatenate(logits).astype(np.float64)
    seg = None if seg_max is None else np.asarray(seg_max, np.float64)
    return logit, calibrate(logit, model.card.calibration, seg, features), np.concatenate(cams).astype(np.float32)


def _component_on_original(prob: np.ndarray, labels: np.ndarray, comp: dict, volume: Volume,
                           spacing: tuple[float, ...], thr: float) -> np.ndarray:
    """(k, j, i) original-grid voxels of one model-grid component (linear prob, nearest label)."""
    scale = np.asarray(volume.spacing_mm) / np.asarray(spacing)  # original index -> model index factor
    lo = np.array([s.start for s in comp["box"]]) - 1
    hi = np.array([s.stop for s in comp["box"]]) + 1
    o_lo = np.maximum(0, np.floor(lo / scale)).astype(int)
    o_hi = np.minimum(volume.shape, np.ceil(hi / scale) + 1).astype(int)
    shape = tuple(int(b - a) for a, b in zip(o_lo, o_hi))
    offset = o_lo * scale
    p = ndi.affine_transform(prob, scale, offset=offset, output_shape=shape, order=1, prefilter=False)
    lab = ndi.affine_transform(labels, scale, offset=offset, output_shape=shape, order=0, prefilter=False)
    m = (p >= thr) & (lab == comp["label"])
    if not m.any():  # smaller than an original voxel: its nearest voxel
        c = np.clip(np.round(comp["center"] / scale).astype(int), 0, np.array(volume.shape) - 1)
        return c[None]
    return np.argwhere(m) + o_lo


def _mass_on_original(mc: Any, volume: Volume, spacing: tuple[float, ...]) -> tuple[Finding, np.ndarray]:
    """A model-grid mass as a ``Finding`` of kind ``mass`` measured on the original grid, and its (k, j, i) voxels."""
    m = resample(mc.mask.astype(np.uint8), spacing, volume.spacing_mm, order=0, out_shape=volume.shape).astype(bool)
    kji = np.argwhere(m)
    if len(kji) == 0:
        kji = np.clip(np.round(np.argwhere(mc.mask).mean(0) * np.asarray(spacing) / np.asarray(volume.spacing_mm)),
                      0, np.array(volume.shape) - 1).astype(int)[None]
    centre = kji.mean(axis=0)
    mm = volume.voxel_to_patient(centre)
    hu_vals = volume.hu[tuple(kji.T)].astype(np.float32)
    finding = Finding(
        kind="mass", probability=float(mc.probability), center_mm=tuple(float(v) for v in mm),  # type: ignore[arg-type]
        center_voxel=tuple(int(round(v)) for v in centre),  # type: ignore[arg-type]
        diameter_mm=round(long_axis_mm(kji, volume.spacing_mm), 1),
        volume_ml=round(len(kji) * float(np.prod(volume.spacing_mm)) / 1000.0, 2),
        mean_hu=round(float(hu_vals.mean()), 1), texture=texture_of(hu_vals), lung_rads="4B",
        location=_side(volume, centre),
        extra={"detector": "mass_rules", **{k: round(float(v), 3) for k, v in mc.features.items()}},
    )
    return finding, kji


def _side(volume: Volume, centre_kji: np.ndarray) -> str:
    """``left`` / ``right`` from the sign of the lesion centre's LPS x (the patient is centred on the scanner's
    isocentre, x = 0; +x is the patient's left)."""
    return "left" if float(volume.voxel_to_patient(centre_kji)[0]) > 0 else "right"


def medial_side(volume: Volume, prep: Prepared) -> int:
    """Towards which end of the model grid's column axis (i) the patient's midline lies, seen from the lungs in
    view: +1 (higher i) or -1. The lungs' centre in patient coordinates says which side they are on (LPS x < 0:
    the right lung, whose midline is towards +x); the i axis's x direction turns that into a column direction.
    Used only when one lung is in view (``mass.medial_line``)."""
    kji = np.argwhere(prep.lung[::4, ::4, ::4])
    if kji.size == 0:
        return 0
    scale = np.asarray(prep.spacing) / np.asarray(volume.spacing_mm)  # model-grid voxel -> original voxel
    centre = volume.voxel_to_patient(kji.mean(0) * 4 * scale)
    x_of_i = float(np.asarray(volume.direction)[0, 0])
    if abs(x_of_i) < 0.5 or abs(float(centre[0])) < 1e-6:
        return 0  # an oblique or unusual orientation: no stand-in midline
    towards_midline_x = 1.0 if centre[0] < 0 else -1.0
    return int(np.sign(towards_midline_x * x_of_i))


def detect_nodules(volume: Volume, engine: Any = None, *, seg_name: str = SEG_MODEL, cls_name: str = CLS_MODEL,
                   maps: bool = True, batch_size: int = 2) -> NoduleResult:
    """Find, score and measure nodules in ``volume`` (see the module docstring for the stages).

    Args:
        volume: the CT volume (any spacing/orientation; measurements use its own grid and geometry).
        engine: an ``inference.engine.Engine`` (default: ``get_engine()``).
        seg_name: segmentation model name (e.g. ``nodule_seg_student`` for the compressed one).
        cls_name: candidate classifier model name.
        maps: also build the label volume and heatmap on the original grid (skip for speed when unneeded).
        batch_size: sliding-window batch.

    Returns:
        ``NoduleResult`` with candidates sorted by calibrated probability (highest first).
    """
    engine = engine or get_engine()
    seg, cls = engine.model(seg_name), engine.model(cls_name)
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    prep = prepare(volume, seg.card)
    t["nodule_prepare"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    prob, _att = segment(prep, seg, batch_size=batch_size)
    t["nodule_segment"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    labels, comps = find_candidates(prob, prep.region if prep.region is not None else prep.lung,
                                    seg.card.thresholds, prep.spacing)
    t["nodule_candidates"] = (time.perf_counter() - t0) * 1000
    t1 = time.perf_counter()
    masses = detect_masses(prep.hu, prep.lung, prep.hull, prep.spacing, region=prep.region,
                           medial=medial_side(volume, prep)) if prep.hull is not None else []
    in_mass = np.zeros(prob.shape, bool)
    for mc in masses:
        in_mass |= mc.mask
    comps = [c for c in comps if not in_mass[tuple(np.clip(np.round(c["center"]).astype(int), 0,
                                                             np.array(prob.shape) - 1))]]
    t["mass_detect"] = (time.perf_counter() - t1) * 1000
    feats = candidate_features(prep.hu, [c["center"] for c in comps], prep.spacing)
    logit, p_cal, cams = score_candidates(prep.image, [c["center"] for c in comps], cls,
                                          seg_max=[c["seg_max"] for c in comps], features=feats)
    t["nodule_classify"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    thr = float(seg.card.thresholds.get("segmentation", 0.5))
    vox_ml = float(np.prod(volume.spacing_mm)) / 1000.0
    cands: list[NoduleCandidate] = []
    voxels: list[np.ndarray] = []
    mask = np.zeros(volume.shape, np.uint8) if maps else None
    for n, comp in enumerate(comps):
        kji = _component_on_original(prob, labels, comp, volume, prep.spacing, thr)
        centre = kji.mean(axis=0)
        hu_vals = volume.hu[tuple(kji.T)].astype(np.float32)
        cands.append(NoduleCandidate(
            label=0, probability=float(p_cal[n]), score_raw=float(1 / (1 + np.exp(-logit[n]))),
            seg_max=comp["seg_max"], center_voxel=tuple(int(round(v)) for v in centre),  # type: ignore[arg-type]
            center_mm=tuple(float(v) for v in volume.voxel_to_patient(centre)),  # type: ignore[arg-type]
            diameter_mm=long_axis_mm(kji, volume.spacing_mm), volume_ml=len(kji) * vox_ml,
            mean_hu=float(hu_vals.mean()), texture=texture_of(hu_vals), n_voxels=len(kji),
            center_model=tuple(float(v) for v in comp["center"]),  # type: ignore[arg-type]
            features={f: round(float(x), 4) for f, x in zip(FEATURES, feats[n])},
        ))
        voxels.append(kji)
    order = np.argsort([-c.probability for c in cands], kind="stable")
    cands = [cands[i] for i in order]
    heat_model = prob.copy()
    size = tuple(cls.card.preprocessing.patch_size)
    for new, c in enumerate(cands, start=1):
        c.label = new
        if mask is not None:
            mask[tuple(voxels[order[new - 1]].T)] = min(new, 255)
        cam = cams[order[new - 1]]
        cam = np.clip(cam, 0, None) / (cam.max() + 1e-6) * c.probability
        lo = np.round(np.asarray(c.center_model)).astype(int) - np.asarray(size) // 2
        sl = tuple(slice(max(0, a), min(n, a + s)) for a, s, n in zip(lo, size, prob.shape))
        src = tuple(slice(s.start - a, s.stop - a) for s, a in zip(sl, lo))
        np.maximum(heat_model[sl], cam[src], out=heat_model[sl])
    mass_findings = [_mass_on_original(mc, volume, prep.spacing) for mc in masses]
    for n, (mc, (mf, vox)) in enumerate(zip(masses, mass_findings), start=len(cands) + 1):
        mf.label = min(n, 255)
        if mask is not None:
            mask[tuple(vox.T)] = mf.label
        heat_model[mc.mask] = np.maximum(heat_model[mc.mask], mf.probability)
    heatmap = None
    if maps:
        h = resample(heat_model, prep.spacing, volume.spacing_mm, order=1, out_shape=volume.shape)
        heatmap = np.clip(h * 255.0 + 0.5, 0, 255).astype(np.uint8)
    t["nodule_measure"] = (time.perf_counter() - t0) * 1000
    return NoduleResult(
        candidates=cands, masses=[mf for mf, _ in mass_findings], mask=mask, heatmap=heatmap,
        score=max((c.probability for c in cands), default=0.0),
        model_versions={seg_name: seg.card.version, cls_name: cls.card.version}, timings_ms=t, prob_model=prob,
        heat_model=heat_model, prepared=prep,
    )
