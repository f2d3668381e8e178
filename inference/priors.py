"""Running the comparison with a prior from the command line and the worker (glue over ``compare``).

* ``compare_dirs(current_dir, prior_dir)``: ``triage analyze CURRENT --prior PRIOR``: read and analyse both
  studies, compare, write the comparison into the current result (findings' ``extra['change']``, Lung-RADS
  with comparison, adjusted priority, the ``comparison`` block).
* ``compare_saved(current_folder, prior_folder)``: two cases saved by ``save_case`` (memory-mapped CT +
  findings), e.g. the earlier study of the same patient found in the database.
* ``compare_with_db_prior(engine, settings, study_uid, folder)``: the worker's step. The prior is the one
  ``db.priors.find_prior_study`` names: the newest analysed earlier study in the database (its saved case is
  compared) or, when the newest is a prior that ``inference.peers.priors.fetch_priors`` linked (a peer's study
  kept under ``priors/``, or an earlier local study not analysed yet), that prior's DICOM folder, analysed here.
* ``apply_comparison(result, comparison)``: the part all share: the block goes into ``CaseResult.comparison``
  (the typed contract carries it to ``db.ingest.store_analysis``, ``result.json`` and ``--json``);
  ``rewrite_sr`` replaces a saved case's TID 1500 SR by one that carries the prior measurements, growth, VDT
  and the tracking UIDs linking the studies.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.compare import (
    SIZED_BASES,
    Comparison,
    StudyInput,
    adjust_priority,
    annotate_findings,
    change_text,
    compare_studies,
    parse_study_date,
)
from inference.config import Settings, get_settings
from inference.results import CaseResult, Finding, load_case
from inference.volume import Volume

log = logging.getLogger(__name__)


@dataclass
class PriorOutcome:
    """The current result (annotated) and the comparison."""

    result: CaseResult
    comparison: Comparison
    folder: Path | None


def apply_comparison(result: CaseResult, comp: Comparison) -> dict[str, Any]:
    """Annotate ``result``'s findings (``Finding.extra``) and priority with ``comp`` and set
    ``result.comparison``; returns that JSON ``comparison`` block."""
    annotate_findings(result.findings, comp)
    before = result.scores.get("priority")
    after, why = adjust_priority(before, comp)
    block = comp.to_dict()
    block["priority"] = {"before": before, "after": None if after is None else round(after, 4), "reason": why}
    if after is not None:
        result.scores["priority"] = round(after, 4)
    result.comparison = block
    return block


def analyse_prior_dir(prior_dir: Path, *, settings: Settings) -> tuple[Volume, list[Finding]]:
    """Read and analyse a prior study's DICOM folder (not saved). Returns its volume and findings.

    Raises:
        inference.dicom.UnusableStudy: the prior fails the quality gate (messages start "prior study:").
        FileNotFoundError: no readable series ("prior study: ...").
    """
    from dataclasses import replace

    from inference.dicom import read_volume
    from inference.dicom.quality import UnusableStudy
    from inference.engine import get_engine
    from inference.triage import analyze

    try:
        prior_volume = read_volume(prior_dir, settings=settings)
    except UnusableStudy as exc:  # say which of the two studies it is
        raise UnusableStudy([replace(i, message=f"prior study: {i.message}") for i in exc.issues]) from exc
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"prior study: {exc}") from exc
    return prior_volume, analyze(prior_volume, engine=get_engine(settings), settings=settings).result.findings


def compare_dirs(
    current_dir: Path, prior_dir: Path, *, settings: Settings | None = None, save: bool = False
) -> tuple[Any, dict[str, Any]]:
    """Analyse ``current_dir`` (saving it when ``save``) and ``prior_dir``, compare them.

    Returns:
        ``(outcome, comparison_block)``: the current ``AnalysisOutcome`` with its result annotated (the block
        is its ``result.comparison``; also written into the saved ``result.json`` when saved).

    Raises:
        inference.dicom.UnusableStudy: either study fails the quality gate (the message names which).
        inference.registration.RegistrationUnavailable: SimpleITK is missing.
    """
    from inference.dicom import read_volume
    from inference.triage import analyze_study_dir

    settings = settings or get_settings()
    t0 = time.perf_counter()
    prior_volume, prior_findings = analyse_prior_dir(prior_dir, settings=settings)
    t_prior = time.perf_counter()
    outcome = analyze_study_dir(current_dir, settings=settings, save=save, outputs=save)
    volume = read_volume(current_dir, settings=settings) if outcome.folder is None else load_case(outcome.folder).volume
    comp = compare_studies(
        StudyInput(volume, outcome.result.findings, parse_study_date(volume.meta.get("study_date"))),
        StudyInput(prior_volume, prior_findings, parse_study_date(prior_volume.meta.get("study_date"))),
    )
    block = apply_comparison(outcome.result, comp)
    block["timings_ms"]["prior_analysis"] = round((t_prior - t0) * 1000, 1)
    outcome.result.timings_ms["comparison"] = comp.timings_ms["total"]
    if outcome.folder is not None:
        write_comparison(outcome.folder, outcome.result, block)
        rewrite_sr(outcome.folder, current_dir, outcome.result, block)
    return outcome, block


def write_comparison(folder: Path, result: CaseResult, block: dict[str, Any]) -> None:
    """Store the comparison block (and the annotated result) in a saved case's ``result.json``."""
    path = Path(folder) / "result.json"
    doc = json.loads(path.read_text())
    result.comparison = block
    doc.update(result.to_dict())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def read_comparison(folder: Path) -> dict[str, Any] | None:
    """The comparison block of a saved case, if it has one."""
    path = Path(folder) / "result.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("comparison")


def rewrite_sr(folder: Path, study_dir: Path, result: CaseResult, block: dict[str, Any]) -> Path | None:
    """Replace the saved case's SR by one with the comparison (when the case has an SR); never fatal."""
    if not (Path(folder) / "findings_sr.dcm").exists():
        return None
    from inference.dicom.writer import rewrite_sr_with_comparison

    try:
        return rewrite_sr_with_comparison(folder, study_dir, load_case(folder).volume, result, block)
    except (OSError, ValueError) as exc:
        log.warning("SR with the comparison not written for study %s: %s", result.study_uid, exc)
        return None


def compare_saved(
    current_folder: Path,
    prior_folder: Path,
    *,
    current_date: Any = None,
    prior_date: Any = None,
    study_dir: Path | None = None,
) -> tuple[CaseResult, dict[str, Any]]:
    """Compare two saved cases; annotate and re-save the current one (and its SR when ``study_dir`` holds the
    source DICOM). Returns its result and the block."""
    cur, pri = load_case(current_folder), load_case(prior_folder)
    cd = parse_study_date(current_date or cur.volume.meta.get("study_date"))
    pd = parse_study_date(prior_date or pri.volume.meta.get("study_date"))
    comp = compare_studies(
        StudyInput(cur.volume, cur.result.findings, cd), StudyInput(pri.volume, pri.result.findings, pd)
    )
    block = apply_comparison(cur.result, comp)
    write_comparison(current_folder, cur.result, block)
    if study_dir is not None:
        rewrite_sr(current_folder, study_dir, cur.result, block)
    return cur.result, block


def save_prior_case(prior_dir: Path, *, settings: Settings) -> Path:
    """Analyse a prior study's DICOM folder and save it as a case (arrays and ``result.json``, no SEG/SR, no
    database row). Returns the case folder.

    Raises:
        inference.dicom.UnusableStudy: the prior fails the quality gate.
    """
    from inference.triage import analyze_study_dir

    folder = analyze_study_dir(prior_dir, settings=settings, save=True, outputs=False).folder
    assert folder is not None  # saved
    return folder


def compare_with_db_prior(db_engine: Any, settings: Settings, study_uid: str, folder: Path | None) -> CaseResult | None:
    """The worker's step: compare a just-saved case with the patient's prior (``db.priors.find_prior_study``).

    The prior is the newest analysed earlier study in the database (its saved case) or, when a newer prior
    was linked by ``inference.peers.priors.fetch_priors`` (a peer's study, an unanalysed local one), that
    prior's DICOM folder, analysed here and saved as a case under the prior's UID (``save_prior_case``: the
    review page's prior section reads it, a re-analysis reuses it). Returns the current result annotated,
    with its ``comparison`` block, or None when there is no prior (or the comparison failed: logged, never
    fatal to the analysis).
    """
    from db.priors import find_prior_study
    from db.session import session_scope
    from inference.results import latest_case

    if folder is None:
        return None
    with session_scope(db_engine) as session:
        prior = find_prior_study(session=session, study_uid=study_uid)
    if prior is None:
        return None
    prior_folder = latest_case(settings.data_dir, prior.study_uid)
    prior_dir = Path(prior.path) if prior.path else None
    if prior_folder is None and (prior_dir is None or not prior_dir.is_dir()):
        log.warning("prior study %s of study %s has no saved case and no folder; not compared", prior.study_uid,
                    study_uid)  # fmt: skip
        return None
    try:
        if prior_folder is None and prior_dir is not None:  # a linked prior not analysed yet: analyse, save it
            prior_folder = save_prior_case(prior_dir, settings=settings)
        assert prior_folder is not None
        result, block = compare_saved(
            folder,
            prior_folder,
            current_date=prior.current_date,
            prior_date=prior.study_date,
            study_dir=settings.inbox_dir / study_uid,
        )
    except Exception as exc:  # a failed comparison must not fail the analysis
        log.warning("comparison of study %s with prior %s failed: %s: %s", study_uid, prior.study_uid,
                    type(exc).__name__, str(exc)[:300])
        return None
    log.info("study %s compared with prior %s (%s): %s", study_uid, prior.study_uid, prior.source, block["summary"])
    return result


def format_comparison(block: dict[str, Any]) -> str:
    """Plain-text summary of a ``comparison`` block (for ``triage analyze --prior``)."""
    a = block.get("alignment", {})
    s = block.get("summary", {})
    interval = block.get("interval_days")
    lines = [
        f"  comparison with prior {block.get('prior_study_uid')} ({block.get('prior_date') or 'date unknown'}"
        + (f", {interval:.0f} days earlier)" if interval is not None else ")"),
        f"    alignment {a.get('method')}: lung Dice {a.get('lung_dice')}"
        + ("" if a.get("ok") else "  ** check the alignment **"),
        f"    {s.get('pairs', 0)} paired ({s.get('growing', 0)} growing, {s.get('stable', 0)} stable, "
        f"{s.get('shrinking', 0)} smaller, {s.get('indeterminate', 0)} not measurable), {s.get('new', 0)} new, "
        f"{s.get('resolved', 0)} resolved",
    ]
    for p in block.get("pairs", []):
        vdt = f", VDT {p['vdt_days']:.0f} d" if p.get("vdt_days") else ""
        sizes = (f"{p['prior']['volume_mm3']:.0f} -> {p['current']['volume_mm3']:.0f} mm3, "
                 if p.get("basis", "volumetry") in SIZED_BASES else "")
        lines.append(
            f"    - finding {p['current_index'] + 1}: {sizes}{change_text(p)}{vdt}, Lung-RADS {p['lung_rads']}"
            f" (match confidence {p['confidence']:.2f})"
        )
    for n in block.get("new", []):
        what = "new mass" if n.get("kind") == "mass" else "new"
        lines.append(f"    - finding {n['current_index'] + 1}: {what}, Lung-RADS {n['lung_rads']}")
    for r in block.get("resolved", []):
        what = "mass resolved" if r.get("kind") == "mass" else "resolved"
        lines.append(f"    - prior finding {r['prior_index'] + 1}: {what} (not seen on the current scan)")
    pr = block.get("priority") or {}
    if pr.get("reason"):
        lines.append(f"    priority {pr['before']:.2f} -> {pr['after']:.2f}: {pr['reason']}")
    return "\n".join(lines)
