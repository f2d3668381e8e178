"""The pipeline: ``analyze(volume) -> Analysis`` and ``analyze_study_dir(path)`` for the worker and CLI.

``analyze`` runs the ``DETECTORS`` list, each stage timed: nodule detection (``inference.models.nodule``:
segmentation + calibrated candidate classifier), PE analysis (``inference.models.pe``: pulmonary-artery region
+ CNN-LSTM); then it combines findings, scores and priority. A detector returns a ``DetectorOutput``; a new
finding kind is a registry entry (``inference.findings``) plus a detector here. Operating points come from the
model cards (``OPERATING_POINTS``, settings overrides applied by the engine), never from constants here, and
the result stores the values used (``CaseResult.thresholds``).

Priority is the probability that the study holds at least one finding, ``1 - (1 - p_nodule)(1 - p_pe)``;
a PE probability at or above the PE card's ``critical`` threshold makes the study **critical** (ranked
first). A study that is not a CT angiogram gets no PE score (``None``) and a quality warning — it is
never reported as PE-negative.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.config import Settings, get_settings
from inference.findings import OPERATING_POINTS
from inference.results import CaseResult, Finding, Quality, QualityReason, save_case
from inference.volume import Volume

log = logging.getLogger(__name__)

PE_MODEL = "pe_cnnlstm"
MAX_NODULE_FINDINGS = 10
EMBEDDING_BINS = np.linspace(-1024, 600, 33)


@dataclass
class Analysis:
    """A ``CaseResult`` plus the arrays on the volume's grid (label mask, PE region, heatmap 0..1)."""

    result: CaseResult
    nodule_mask: np.ndarray | None
    pe_mask: np.ndarray | None
    heatmap: np.ndarray | None


@dataclass
class AnalysisOutcome:
    """What ``analyze_study_dir`` produced: the result (with the operating points it used) and where it was
    saved (``outputs``: the DICOM SEG/SR files)."""

    result: CaseResult
    folder: Path | None
    outputs: dict[str, Path | None]


def image_embedding(volume: Volume) -> list[float]:
    """A case embedding from image statistics (body HU histogram + noise level), for the domain-shift map.

    Not network features: it captures scanner, kernel, dose and contrast differences, which is what the
    analytics page's domain-shift picture is about.
    """
    hu = volume.hu[:: max(1, volume.shape[0] // 32), ::4, ::4].astype(np.float32)
    body = hu[hu > -950]
    hist, _ = np.histogram(body, bins=EMBEDDING_BINS)
    hist = hist / max(1, hist.sum())
    soft = hu[(hu > -50) & (hu < 100)]
    noise = float(np.std(np.diff(soft))) / 100.0 if soft.size > 10 else 0.0
    return [round(float(v), 5) for v in (*hist, noise)]


@dataclass
class DetectorOutput:
    """What one detector concluded: findings, the study scores it sets, the operating points it used, and its
    arrays on the volume's grid (``masks`` by ``inference.findings`` mask name; ``heatmap`` 0..1)."""

    findings: list[Finding] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    heatmap: np.ndarray | None = None
    reasons: list[QualityReason] = field(default_factory=list)
    critical: bool = False
    provider: str | None = None
    more_findings: int = 0  # findings that passed the operating point beyond the display limit


#: A detector: ``(volume, engine, settings) -> DetectorOutput``.
Detector = Callable[[Volume, Any, Settings], DetectorOutput]


def operating_points(engine, score_key: str) -> dict[str, float]:
    """The operating points of study score ``score_key`` (``inference.findings.OPERATING_POINTS``) from the
    engine's cards (settings overrides already applied).

    Raises:
        inference.model_card.CardError: the card lacks one of them.
    """
    model, names = OPERATING_POINTS[score_key]
    card = engine.model(model).card
    return {name: card.threshold(name) for name in names}


def _nodule_findings(nod, volume: Volume, min_probability: float) -> tuple[list[Finding], int]:
    """Masses, then nodules at or above the report threshold (most probable first, at most
    ``MAX_NODULE_FINDINGS`` nodules); also how many more nodules passed the threshold beyond that limit."""
    from inference.models.nodule_prep import SOLID_HU
    from inference.nodules import lung_rads, solid_component_mm

    findings = list(nod.masses)
    passing = [c for c in nod.candidates if c.probability >= min_probability]
    for cand in passing[:MAX_NODULE_FINDINGS]:
        f = cand.to_finding()
        solid_mm = None
        if f.texture == "part-solid" and nod.mask is not None:
            vals = volume.hu[nod.mask == cand.label]
            frac = float((vals > SOLID_HU).mean()) if vals.size else 0.0
            solid_mm = solid_component_mm(cand.diameter_mm, frac)
            f.extra["solid_component_mm"] = round(solid_mm, 1)
        f.lung_rads = lung_rads(cand.diameter_mm, f.texture or "solid", solid_mm)
        findings.append(f)
    return findings, max(0, len(passing) - MAX_NODULE_FINDINGS)


def actionable(f: Finding) -> bool:
    """A finding that calls for action: any mass, or a nodule of suggested Lung-RADS 3 or above (solid >= 6 mm,
    part-solid >= 6 mm, ground-glass >= 30 mm)."""
    return f.kind == "mass" or (f.kind == "nodule" and (f.lung_rads or "2") not in ("1", "2"))


def study_nodule_score(findings: list[Finding]) -> float:
    """The study's nodule score: the highest calibrated probability among actionable nodules and masses
    (0 when there is none). Small nodules (Lung-RADS 2) and sub-threshold candidates do not raise it."""
    return max((float(f.probability) for f in findings if actionable(f)), default=0.0)


def _add_anatomy(findings: list[Finding], volume: Volume, nod, pe_mask: np.ndarray | None) -> None:
    """Zones of nodules and masses (lung mask of the nodule model's grid) and PE level / side / region volume
    (``inference.anatomy``)."""
    from inference import anatomy

    prep = getattr(nod, "prepared", None)
    points = {c.label: c.center_model for c in nod.candidates}
    if prep is not None:  # masses: their centre on the model grid (same origin, the model's spacing)
        scale = np.asarray(volume.spacing_mm, np.float64) / np.asarray(prep.spacing, np.float64)
        points |= {f.label: tuple(np.asarray(f.center_voxel) * scale) for f in findings if f.kind == "mass"}
    anatomy.annotate(
        findings,
        volume,
        lung=None if prep is None else prep.lung,
        lung_spacing=None if prep is None else tuple(prep.spacing),
        model_points=points,
        pe_mask=pe_mask,
    )


def detect_nodules_stage(volume: Volume, engine, settings: Settings) -> DetectorOutput:
    """Nodules: segmentation + calibrated candidate classifier (``inference.models.nodule``)."""
    from inference.models.nodule import detect_nodules

    nod = detect_nodules(volume, engine)
    points = operating_points(engine, "nodule")
    findings, more = _nodule_findings(nod, volume, points["report"])
    reasons = []
    if more:
        reasons.append(
            QualityReason(
                code="more_findings",
                severity="info",
                message=f"{more} more nodule candidate(s) passed the report threshold than the "
                f"{MAX_NODULE_FINDINGS} listed",
                advice="Review the whole scan: the list shows the most probable candidates only.",
            )
        )
    _add_anatomy(findings, volume, nod, None)
    heat = nod.heatmap.astype(np.float32) / 255.0 if nod.heatmap is not None else None
    return DetectorOutput(
        findings=findings,
        scores={"nodule": study_nodule_score(findings)},
        thresholds={"nodule": points},
        model_versions=dict(nod.model_versions),
        timings_ms=dict(nod.timings_ms),
        masks={} if nod.mask is None else {"nodule_mask": nod.mask},
        heatmap=heat,
        reasons=reasons,
        more_findings=more,
    )


def detect_embolism_stage(volume: Volume, engine, settings: Settings) -> DetectorOutput:
    """Pulmonary embolism: pulmonary-artery region + CNN-LSTM (``inference.models.pe``). Not a CT angiogram →
    no score and a ``pe_not_assessable`` warning, never a negative."""
    from inference.models.pe import analyze_pe

    pe = analyze_pe(volume, engine=engine)
    card = engine.model(PE_MODEL).card
    points = operating_points(engine, "embolism")
    out = DetectorOutput(
        thresholds={"embolism": points},
        model_versions={card.name: card.version},
        timings_ms={f"pe_{k}": v for k, v in pe.timings_ms.items()},
        provider=engine.provider_of(PE_MODEL),
    )
    p_pe = pe.probability
    out.scores["embolism"] = None if p_pe is None else float(p_pe)
    if p_pe is None:
        out.reasons.append(
            QualityReason(
                code="pe_not_assessable",
                severity="warning",
                message=f"pulmonary embolism not assessed: {pe.reason}",
                advice="PE can only be assessed on a CT pulmonary angiogram (contrast-enhanced arteries) that "
                "covers the pulmonary arteries.",
            )
        )
        return out
    out.critical = bool(p_pe >= points["critical"])
    if p_pe >= points["report"] and pe.peak_voxel is not None and pe.peak_mm is not None:
        out.findings.append(
            Finding(
                kind="embolism",
                probability=float(p_pe),
                center_mm=pe.peak_mm,
                center_voxel=pe.peak_voxel,
                location=pe.location.get("label") or None,
                extra={"confidence": pe.confidence, "level": pe.location.get("level"), "side": pe.location.get("side")},
            )
        )
    if pe.heatmap is not None:
        out.masks["pe_mask"] = (pe.heatmap >= 0.5).astype(np.uint8)
        if pe.heatmap.any():
            out.heatmap = pe.heatmap
    if out.findings:
        from inference import anatomy

        anatomy.annotate(out.findings, volume, pe_mask=out.masks.get("pe_mask"))
    return out


#: The detectors ``analyze`` runs, in order: ``(stage name, detector)``. The stage name is the timing key.
DETECTORS: list[tuple[str, Detector]] = [
    ("nodules", detect_nodules_stage),
    ("embolism", detect_embolism_stage),
]


def _combine(outputs: list[DetectorOutput]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Masks (detectors sharing a label mask use distinct label values) and the max heatmap."""
    masks: dict[str, np.ndarray] = {}
    heat = None
    for out in outputs:
        for name, mask in out.masks.items():
            masks[name] = mask if name not in masks else np.where(masks[name] > 0, masks[name], mask)
        if out.heatmap is not None:
            heat = out.heatmap if heat is None else np.maximum(heat, out.heatmap)
    return masks, heat


def analyze(
    volume: Volume,
    *,
    engine=None,
    settings: Settings | None = None,
    detectors: list[tuple[str, Detector]] | None = None,
) -> Analysis:
    """Run every detector (``DETECTORS``) on ``volume`` and assemble the case result.

    Study scores come from the detectors (the larger one where two set the same score); the priority is
    ``1 - prod(1 - score)``; any detector's critical call makes the study critical.

    Raises:
        inference.engine.ModelMissingError / ModelIntegrityError: a model is missing or altered.
    """
    from inference.engine import get_engine

    settings = settings or get_settings()
    engine = engine or get_engine(settings)
    outputs = []
    timings: dict[str, float] = {}
    for name, detect in detectors if detectors is not None else DETECTORS:
        t0 = time.perf_counter()
        out = detect(volume, engine, settings)
        timings.update(out.timings_ms)
        timings[name] = (time.perf_counter() - t0) * 1000
        outputs.append(out)
    scores: dict[str, float | None] = {}
    for out in outputs:
        for key, value in out.scores.items():
            known = [v for v in (scores.get(key), value) if v is not None]
            scores[key] = max(known) if known else None
    rest = 1.0
    for value in scores.values():
        rest *= 1.0 - (value or 0.0)
    scores["priority"] = 1.0 - rest
    scores = {k: None if v is None else round(v, 4) for k, v in scores.items()}
    masks, heat = _combine(outputs)
    reasons = [QualityReason.model_validate(w) for w in volume.warnings]
    result = CaseResult(
        study_uid=volume.study_uid,
        series_uid=volume.series_uid,
        scores=scores,
        findings=[f for out in outputs for f in out.findings],
        quality=Quality(ok=True, reasons=reasons + [r for out in outputs for r in out.reasons]),
        model_versions={k: v for out in outputs for k, v in out.model_versions.items()},
        thresholds={k: v for out in outputs for k, v in out.thresholds.items()},
        more_findings=sum(out.more_findings for out in outputs),
        timings_ms=timings,
        critical=any(out.critical for out in outputs),
        provider=next((out.provider for out in reversed(outputs) if out.provider), ""),
        embedding=image_embedding(volume),
    )
    return Analysis(result, masks.get("nodule_mask"), masks.get("pe_mask"), heat)


def analyze_study_dir(
    study_dir: Path, *, settings: Settings | None = None, save: bool = True, outputs: bool = True
) -> AnalysisOutcome:
    """Read the study under ``study_dir``, analyse it, save arrays + SEG/SR under the data directory.

    Raises:
        inference.dicom.UnusableStudy: the input fails the quality gate (reasons inside).
    """
    from inference.dicom import read_volume
    from inference.engine import get_engine

    settings = settings or get_settings()
    t0 = time.perf_counter()
    volume = read_volume(study_dir, settings=settings)
    t_read = (time.perf_counter() - t0) * 1000
    engine = get_engine(settings)
    analysis = analyze(volume, engine=engine, settings=settings)
    result = analysis.result
    result.timings_ms = {"read": t_read, **result.timings_ms}
    folder = None
    written: dict[str, Path | None] = {}
    if save:
        t1 = time.perf_counter()

        def write_dicom(tmp: Path) -> None:
            if outputs:
                from inference.dicom.writer import write_outputs

                written.update(write_outputs(tmp, study_dir, volume, result, analysis.nodule_mask))
            result.timings_ms["save"] = (time.perf_counter() - t1) * 1000
            result.timings_ms["total"] = (time.perf_counter() - t0) * 1000

        folder = save_case(
            settings.data_dir,
            result,
            volume,
            nodule_mask=analysis.nodule_mask,
            pe_mask=analysis.pe_mask,
            heatmap=analysis.heatmap,
            outputs=write_dicom,
        )
        written = {k: None if p is None else folder / p.name for k, p in written.items()}
        # SEG/SR go to the PACS peers through the worker's delivery queue (inference.peers.delivery)
    else:
        result.timings_ms["total"] = (time.perf_counter() - t0) * 1000
    return AnalysisOutcome(result, folder, written)

