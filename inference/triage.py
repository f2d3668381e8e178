"""The pipeline: ``analyze(volume) -> Analysis`` and ``analyze_study_dir(path)`` for the worker and CLI.

Stages, each timed: nodule detection (``inference.models.nodule``: segmentation + calibrated candidate
classifier), PE analysis (``inference.models.pe``: pulmonary-artery region + CNN-LSTM), then findings,
scores and priority. Thresholds come from the model cards, never from constants here.

Priority is the probability that the study holds at least one finding, ``1 - (1 - p_nodule)(1 - p_pe)``;
a PE probability at or above the PE card's ``critical`` threshold makes the study **critical** (ranked
first). A study that is not a CT angiogram gets no PE score (``None``) and a quality warning — it is
never reported as PE-negative.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.config import Settings, get_settings
from inference.results import CaseResult, Finding, save_case
from inference.volume import Volume

log = logging.getLogger(__name__)

NODULE_CLS = "nodule_cls"
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
    """What ``analyze_study_dir`` produced: the result, where it was saved, the critical threshold used."""

    result: CaseResult
    folder: Path | None
    outputs: dict[str, Path | None]
    pe_threshold: float


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


def analyze(volume: Volume, *, engine=None, settings: Settings | None = None) -> Analysis:
    """Run every model on ``volume`` and assemble the case result.

    Raises:
        inference.engine.ModelMissingError / ModelIntegrityError: a model is missing or altered.
    """
    from inference.engine import get_engine
    from inference.models.nodule import detect_nodules
    from inference.models.pe import analyze_pe

    settings = settings or get_settings()
    engine = engine or get_engine(settings)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    nod = detect_nodules(volume, engine)
    timings.update(nod.timings_ms)
    timings["nodules"] = (time.perf_counter() - t0) * 1000
    t1 = time.perf_counter()
    pe = analyze_pe(volume, engine=engine)
    timings.update({f"pe_{k}": v for k, v in pe.timings_ms.items()})
    timings["embolism"] = (time.perf_counter() - t1) * 1000

    cls_card = engine.model(NODULE_CLS).card
    pe_card = engine.model(PE_MODEL).card
    findings, more_nodules = _nodule_findings(nod, volume, float(cls_card.thresholds.get("report", 0.25)))
    quality = {"ok": True, "reasons": list(volume.warnings)}
    if more_nodules:
        quality["reasons"].append(
            {
                "code": "more_findings",
                "severity": "info",
                "message": f"{more_nodules} more nodule candidate(s) passed the report threshold than the "
                f"{MAX_NODULE_FINDINGS} listed",
                "advice": "Review the whole scan: the list shows the most probable candidates only.",
            }
        )
    p_pe = pe.probability
    if p_pe is None:
        quality["reasons"].append(
            {
                "code": "pe_not_assessable",
                "severity": "warning",
                "message": f"pulmonary embolism not assessed: {pe.reason}",
                "advice": "PE can only be assessed on a CT pulmonary angiogram (contrast-enhanced arteries) that "
                "covers the pulmonary arteries.",
            }
        )
    elif p_pe >= float(pe_card.thresholds.get("report", 0.3)) and pe.peak_voxel is not None:
        findings.append(
            Finding(
                kind="embolism",
                probability=float(p_pe),
                center_mm=pe.peak_mm,
                center_voxel=pe.peak_voxel,
                location=pe.location.get("label") or None,
                extra={"confidence": pe.confidence, "level": pe.location.get("level"), "side": pe.location.get("side")},
            )
        )
    p_nod = study_nodule_score(findings)
    priority = 1.0 - (1.0 - p_nod) * (1.0 - (p_pe or 0.0))
    heat = None
    if nod.heatmap is not None:
        heat = nod.heatmap.astype(np.float32) / 255.0
    if p_pe is not None and pe.heatmap is not None and pe.heatmap.any():
        heat = pe.heatmap if heat is None else np.maximum(heat, pe.heatmap)
    pe_mask = (pe.heatmap >= 0.5).astype(np.uint8) if p_pe is not None and pe.heatmap is not None else None
    result = CaseResult(
        study_uid=volume.study_uid,
        series_uid=volume.series_uid,
        scores={
            "nodule": round(p_nod, 4),
            "embolism": None if p_pe is None else round(float(p_pe), 4),
            "priority": round(priority, 4),
        },
        more_findings=more_nodules,
        findings=findings,
        quality=quality,
        model_versions={**nod.model_versions, pe_card.name: pe_card.version},
        timings_ms=timings,
        critical=bool(pe.critical),
        provider=engine.provider_of(PE_MODEL),
        embedding=image_embedding(volume),
    )
    return Analysis(result, nod.mask, pe_mask, heat)


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
        folder = save_case(
            settings.data_dir,
            result,
            volume,
            nodule_mask=analysis.nodule_mask,
            pe_mask=analysis.pe_mask,
            heatmap=analysis.heatmap,
        )
        rel = folder.relative_to(settings.data_dir)
        for f in result.findings:
            f.mask_path = str(rel / ("pe_mask.npy" if f.kind == "embolism" else "nodule_mask.npy"))
            f.heatmap_path = str(rel / "heatmap.npy") if analysis.heatmap is not None else None
        if outputs:
            from inference.dicom.writer import write_outputs

            written = write_outputs(folder, study_dir, volume, result, analysis.nodule_mask)
        result.timings_ms["save"] = (time.perf_counter() - t1) * 1000
        result.timings_ms["total"] = (time.perf_counter() - t0) * 1000
        (folder / "result.json").write_text(_json_with_geometry(folder, result))
        if settings.pacs_destination and written:
            _send(written, settings)
    else:
        result.timings_ms["total"] = (time.perf_counter() - t0) * 1000
    pe_threshold = float(engine.model(PE_MODEL).card.thresholds.get("critical", settings.pe_critical_threshold))
    return AnalysisOutcome(result, folder, written, pe_threshold)


def _json_with_geometry(folder: Path, result: CaseResult) -> str:
    import json

    doc = json.loads((folder / "result.json").read_text())
    doc.update(result.to_dict())
    return json.dumps(doc, indent=2)


def _send(written: dict[str, Path | None], settings: Settings) -> None:
    from inference.dicom.writer import send_to_pacs

    paths = [p for p in written.values() if p is not None]
    try:
        statuses = send_to_pacs(paths, settings.pacs_destination, calling_ae=settings.receiver_ae_title)
        log.info("sent %d output object(s) to the PACS: statuses %s", len(paths), statuses)
    except (ConnectionError, OSError, ValueError) as exc:
        log.error("could not send outputs to the PACS: %s", exc)
