"""The real-CT table (``triage evaluate nodule --real``): the served nodule models on every annotated real scan.

One row per scan (LIDC-IDRI-0001..0003, lung1, lung2): lesion found?, its probability, reported size against
the truth, and the false findings at the card's operating point (``thresholds.report``) plus any mass finding
(``inference.models.mass``: masses are always reported). A candidate is a hit
when its centre lies in the lesion mask dilated by ``HIT_MARGIN_MM`` or within half the lesion's long axis
(at least 4 mm) of its centre; candidates within ``EXCLUDE_MM`` of another reader mark (LIDC nodules < 3 mm,
non-nodules) are counted apart, not as false findings. numpy / ONNX Runtime only (no torch).

Roles (per evaluated classifier, from its card's ``training.real_cases_seen``): ``training`` rows are scans the
classifier was mined on; ``validation`` (lung2) sets the report threshold and is never trained on; ``held out``
scans took part in neither.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from inference.engine import Engine
from inference.models.nodule import CLS_MODEL, SEG_MODEL, detect_nodules
from inference.training.nodule.real import FULL_THORAX, VALIDATION_CASES, RealCase, load_case

HIT_MARGIN_MM = 5.0
EXCLUDE_MM = 10.0
TABLE_CASES = ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003", "lung1", "lung2")


def dilated(mask: np.ndarray, spacing: tuple[float, ...], mm: float) -> np.ndarray:
    """``mask`` grown by ``mm`` (ellipsoidal structuring element in voxels of ``spacing``)."""
    r = [max(0, int(round(mm / s))) for s in spacing]
    if not any(r):
        return mask
    zz, yy, xx = np.ogrid[-r[0]: r[0] + 1, -r[1]: r[1] + 1, -r[2]: r[2] + 1]
    ball = sum((g / max(n, 1)) ** 2 for g, n in zip((zz, yy, xx), r)) <= 1.0
    sl = ndi.find_objects(mask.astype(np.uint8))
    if not sl or sl[0] is None:
        return mask
    box = tuple(slice(max(0, s.start - n), min(d, s.stop + n)) for s, n, d in zip(sl[0], r, mask.shape))
    out = np.zeros_like(mask)
    out[box] = ndi.binary_dilation(mask[box], structure=ball)
    return out


def label_candidates(case: RealCase, centers_voxel: list, *, margin_mm: float = HIT_MARGIN_MM) -> list[str]:
    """For each candidate centre (k, j, i on the case's grid): ``lesion:<n>``, ``exclude`` or ``negative``."""
    sp = np.asarray(case.volume.spacing_mm)
    grown = [dilated(les["mask"], case.volume.spacing_mm, margin_mm) for les in case.lesions]
    shape = np.array(case.volume.shape)
    out = []
    for c in centers_voxel:
        v = np.asarray(c, float)
        idx = tuple(np.clip(np.round(v).astype(int), 0, shape - 1))
        tag = "negative"
        for n, (les, g) in enumerate(zip(case.lesions, grown)):
            d = float(np.linalg.norm((v - les["center_voxel"]) * sp))
            if g[idx] or d <= max(4.0, les["long_axis_mm"] / 2):
                tag = f"lesion:{n}"
                break
        if tag == "negative" and case.exclude_mm:
            xyz = case.volume.voxel_to_patient(v)
            if min(float(np.linalg.norm(xyz - e)) for e in case.exclude_mm) <= EXCLUDE_MM:
                tag = "exclude"
        out.append(tag)
    return out


def role_of(name: str, seen: list[str]) -> str:
    """The scan's role for the evaluated classifier: ``training`` (its negatives/positives were mined from it),
    ``validation`` (lung2: sets the report threshold, never trained on) or ``held out``."""
    if name in VALIDATION_CASES:
        return "validation"
    return "training" if name in seen else "held out"


def case_row(case: RealCase, engine: Engine, report: float, seg: str = SEG_MODEL, seen: list[str] | None = None
             ) -> dict:
    """The table row of one real case (all numbers through ``detect_nodules``: nodule candidates at the report
    threshold, and every mass of the mass detector, as ``triage analyze`` reports them)."""
    t0 = time.perf_counter()
    r = detect_nodules(case.volume, engine, seg_name=seg, maps=False)
    masses = list(getattr(r, "masses", []) or [])
    items = [("nodule", c.probability, c.diameter_mm, c.center_voxel) for c in r.candidates]
    items += [("mass", m.probability, m.diameter_mm or 0.0, m.center_voxel) for m in masses]
    tags = label_candidates(case, [it[3] for it in items])
    reported = [it[0] == "mass" or it[1] >= report for it in items]
    lesions = []
    for n, les in enumerate(case.lesions):
        mine = [(it, rep) for it, t, rep in zip(items, tags, reported) if t == f"lesion:{n}"]
        best = max(mine, key=lambda x: (x[1], x[0][1]), default=None)  # reported first, then probability
        it = best[0] if best else None
        lesions.append({
            "kind": les.get("kind", "nodule"), "truth_long_axis_mm": round(les["long_axis_mm"], 1),
            "truth_volume_ml": round(les["volume_ml"], 2),
            "found": bool(best is not None and best[1]), "candidate": best is not None,
            "found_as": it[0] if it else None,
            "probability": round(it[1], 4) if it else None,
            "reported_long_axis_mm": round(it[2], 1) if it else None,
            "size_error_pct": round(100 * (it[2] / les["long_axis_mm"] - 1), 1) if it else None,
        })
    false = [it for it, t, rep in zip(items, tags, reported) if t == "negative" and rep]
    neg_nod = [it for it, t in zip(items, tags) if t == "negative" and it[0] == "nodule"]
    return {
        "case": case.name, "role": role_of(case.name, seen or []), "full_thorax": case.name in FULL_THORAX,
        "lesions": lesions, "candidates": len(r.candidates), "masses": len(masses),
        "false_findings": len(false),
        "false_findings_detail": [f"{k} p={p:.3f} {d:.0f} mm" for k, p, d, _ in false],
        "near_other_reader_marks": sum(t == "exclude" for t in tags),
        "study_score": round(r.score, 4),
        "top_false_nodule_probability": round(max((it[1] for it in neg_nod), default=0.0), 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def real_table(engine: Engine, *, seg: str = SEG_MODEL, cases: tuple[str, ...] = TABLE_CASES, log=print) -> dict:
    """All rows plus the operating point they were counted at."""
    card = engine.cards[CLS_MODEL]
    report = float(card.thresholds.get("report", 0.5))
    seen = list((card.training or {}).get("real_cases_seen", []))
    rows = []
    for name in cases:
        try:
            case = load_case(name)
        except FileNotFoundError as exc:
            log(f"[real] {name}: skipped ({exc})")
            continue
        rows.append(case_row(case, engine, report, seg, seen))
        log(f"[real] {json.dumps(rows[-1])}")
    return {"report_threshold": report, "classifier_version": engine.cards[CLS_MODEL].version, "rows": rows,
            "rule": f"hit = centre in the lesion mask grown by {HIT_MARGIN_MM:g} mm or within half its long axis; "
                    f"false finding = other candidate at p >= report threshold (candidates within {EXCLUDE_MM:g} mm "
                    "of another LIDC reader mark are counted apart)"}


def markdown(table: dict) -> str:
    """The table as Markdown (one row per lesion; scans without a lesion get one row)."""
    lines = [f"Operating point: report threshold {table['report_threshold']:.4f} "
             f"(nodule_cls {table['classifier_version']}).", "",
             "| scan | role | lesion (truth) | found | probability | reported size vs truth | "
             "false findings | top nodule p |", "|---|---|---|---|---|---|---|---|"]
    for row in table["rows"]:
        for les in row["lesions"] or [{}]:
            truth = f"{les['kind']} {les['truth_long_axis_mm']:.0f} mm" if les else "none"
            missed = "below threshold" if les.get("candidate") else "no"
            found = "-" if not les else (f"yes ({les['found_as']})" if les.get("found") else missed)
            prob = f"{les['probability']:.3f}" if les.get("probability") is not None else "-"
            size = (f"{les['reported_long_axis_mm']:.0f} vs {les['truth_long_axis_mm']:.0f} mm "
                    f"({les['size_error_pct']:+.0f} %)") if les.get("reported_long_axis_mm") is not None else "-"
            lines.append(f"| {row['case']} | {row['role']} | {truth} | {found} | {prob} | {size} | "
                         f"{row['false_findings']} | {row['study_score']:.3f} |")
    return "\n".join(lines) + "\n"


def write(table: dict, json_path: Path | None, md_path: Path | None, command: str) -> None:
    if json_path:
        json_path.write_text(json.dumps({**table, "command": command}, indent=2) + "\n")
    if md_path:
        md_path.write_text(markdown(table) + f"\nCommand: `{command}`\n")
