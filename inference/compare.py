"""Comparison with a prior study: align, pair nodules, measure growth and VDT, Lung-RADS with comparison.

``compare_studies(current, prior)`` takes two ``StudyInput`` (a ``Volume``, its findings and its study date)
from any source — two DICOM folders (``triage analyze CURRENT --prior PRIOR``), two saved cases of the
database (the worker), or a PACS retrieval — and returns a ``Comparison``:

1. **Alignment** (``inference.registration``): rigid → affine on the lungs (with ``refine=True`` also a local
   translation refinement around each current nodule). Quality: lung-mask Dice after alignment.
2. **Pairing**: each current nodule's position mapped into the prior; Hungarian assignment on the distance
   to the prior nodules (gated at ``MATCH_MM`` + half the larger diameter), with a small size term.
   Confidence = Gaussian of the residual distance (``SIGMA_MM``) × a size-agreement factor, halved when the
   alignment failed its check. A current nodule without a partner is measured at its mapped point on the
   prior: if a nodule is there (the detector missed it on the prior), the pair is kept with
   ``prior_detected=False``; otherwise it is **new**. Likewise an unpaired prior nodule with nothing at its
   mapped current point is **resolved**.
3. **Growth** (``inference.volumetry``: the same segmentation on both scans): volume and diameter change,
   measured with one common threshold on both scans (``measure_pair``), significant only beyond ``Z`` × the
   combined measurement uncertainty; below it the nodule is **stable**. VDT = interval × ln 2 / ln(V₂/V₁)
   for growing nodules. When the volumetry refuses either scan (the segmentation runs into a vessel or the
   chest wall), the change is never called stable: the detector's diameters decide by the Lung-RADS v2022
   rule alone (mean diameter up by more than 1.5 mm: **growing**, ``basis`` ``diameter``, no VDT), and
   otherwise the nodule is **indeterminate** (its size category without any step-down for stability, and it
   keeps a study from being ranked lower as "stable").
3b. **Masses** (kind ``mass``, lesions over 30 mm): paired like nodules, with a prior mass or with a prior
   nodule that grew into one (and a prior mass with a current nodule it shrank to); their volumes are the
   findings' own segmentations (the mass detector's, ``basis`` ``segmentation``) with an assumed relative SD
   of ``MASS_REL_SD`` each, so the same ``Z`` test, VDT and long-axis change apply. An unpaired current mass
   is **new**, an unpaired prior mass **resolved** (not detected on the current scan). The nodules a mass
   pair uses take no further part in the nodule pairing.
4. **Lung-RADS v2022 with comparison** (``inference.nodules.lung_rads_followup``): "growing" there means the
   v2022 definition, mean diameter up by more than 1.5 mm, and significant beyond the uncertainty.
5. **Priority**: ``adjust_priority`` raises a study's priority for a growing nodule or a new one of Lung-RADS 3
   or more, and lowers it when every nodule has been stable for at least two years.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from inference.findings import KINDS
from inference.nodules import lung_rads, lung_rads_followup
from inference.registration import Alignment, register_lungs
from inference.results import Finding
from inference.volume import Volume
from inference.volumetry import Measurement, measure_nodule, measure_pair

MATCH_MM = 10.0  # pairing gate beyond half the larger diameter
SIGMA_MM = 4.0  # residual misalignment that still counts as a sure pair
Z = 1.96  # two-sided 95 %: a change below Z sigma is "stable"
LUNG_RADS_GROWTH_MM = 1.5  # v2022: mean diameter up by more than 1.5 mm
MIN_PRESENT_FRACTION = 0.15  # a position-found partner must hold this share of the detected nodule's volume
GROWING_BOOST = 0.5  # priority' = 1 - (1 - p)(1 - boost)
NEW_BOOST = 0.35
STABLE_YEARS_FACTOR = 0.5  # priority' = p * factor when every nodule is stable >= STABLE_DAYS
STABLE_DAYS = 730
#: Relative SD of one mass volume from the mass detector's segmentation: an assumption (no repeated scans of
#: a mass here); ``bench/bench_compare.py --real`` prints the change it measures on lung2's unchanged mass.
MASS_REL_SD = 0.10
#: The ``basis`` values whose sizes are measurements of the lesion (the others decide by detector diameters).
SIZED_BASES = ("volumetry", "segmentation")
#: The findings the SR numbers as volumetric groups (``inference.dicom.writer.segmented_findings``): the
#: segmented kinds of the registry (nodule, mass).
SR_LABELLED_KINDS = tuple(k.name for k in KINDS.values() if k.segmented)


@dataclass
class StudyInput:
    """One side of a comparison: the volume, its findings (nodules are compared) and the study date."""

    volume: Volume
    findings: list[Finding]
    study_date: date | None = None

    def nodules(self) -> list[tuple[int, Finding]]:
        return [(i, f) for i, f in enumerate(self.findings) if f.kind == "nodule"]

    def masses(self) -> list[tuple[int, Finding]]:
        return [(i, f) for i, f in enumerate(self.findings) if f.kind == "mass"]


@dataclass
class NodulePair:
    """A nodule (or a mass: ``kind``) seen on both scans, with its growth."""

    current_index: int
    prior_index: int | None  # None: found on the prior by position only (the detector missed it there)
    current_mm: tuple[float, float, float]
    prior_mm: tuple[float, float, float]
    distance_mm: float
    confidence: float
    prior_detected: bool
    current: dict[str, Any]
    prior: dict[str, Any]
    volume_change_mm3: float
    volume_change_pct: float
    diameter_change_mm: float
    sigma_mm3: float
    status: str  # growing | stable | shrinking | indeterminate (the volumetry refused a scan)
    vdt_days: float | None
    lung_rads: str | None
    lung_rads_change: str  # growing (v2022: mean diameter +1.5 mm), subthreshold-growth, stable or indeterminate
    prior_tracking_uid: str | None = None  # the prior SR's tracking UID of this nodule (links the two studies)
    prior_tracking_id: str | None = None
    #: what the status rests on: volumetry | segmentation (masses: the findings' own) | diameter (detector
    #: sizes, the volumetry refused) | none
    basis: str = "volumetry"
    note: str = ""  # why the volumetry could not be used, when it could not
    kind: str = "nodule"  # the current finding's kind: nodule | mass

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("current_mm", "prior_mm"):
            d[k] = [round(float(v), 2) for v in d[k]]
        for k in ("distance_mm", "volume_change_mm3", "volume_change_pct", "diameter_change_mm", "sigma_mm3"):
            d[k] = round(float(d[k]), 2)
        d["confidence"] = round(float(d["confidence"]), 3)
        d["vdt_days"] = None if self.vdt_days is None else round(float(self.vdt_days), 1)
        return d


@dataclass
class Comparison:
    """Everything the comparison concluded (the ``comparison`` block of ``triage analyze --json``)."""

    current_study_uid: str
    prior_study_uid: str
    current_date: str | None
    prior_date: str | None
    interval_days: float | None
    alignment: dict[str, Any]
    pairs: list[NodulePair] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "current_study_uid": self.current_study_uid,
            "prior_study_uid": self.prior_study_uid,
            "current_date": self.current_date,
            "prior_date": self.prior_date,
            "interval_days": self.interval_days,
            "alignment": self.alignment,
            "pairs": [p.to_dict() for p in self.pairs],
            "new": self.new,
            "resolved": self.resolved,
            "summary": self.summary(),
            "timings_ms": {k: round(float(v), 1) for k, v in self.timings_ms.items()},
        }

    def summary(self) -> dict[str, int]:
        return {
            "pairs": len(self.pairs),
            "growing": sum(p.status == "growing" for p in self.pairs),
            "stable": sum(p.status == "stable" for p in self.pairs),
            "shrinking": sum(p.status == "shrinking" for p in self.pairs),
            "indeterminate": sum(p.status == "indeterminate" for p in self.pairs),
            "masses": sum(p.kind == "mass" for p in self.pairs),
            "new": len(self.new),
            "resolved": len(self.resolved),
        }

    def change_of(self, current_index: int) -> str | None:
        """``new`` / ``growing`` / ``stable`` / ``shrinking`` / ``indeterminate`` for a current finding (None: not
        a nodule)."""
        for p in self.pairs:
            if p.current_index == current_index:
                return p.status
        if any(n["current_index"] == current_index for n in self.new):
            return "new"
        return None


def change_text(pair: dict[str, Any]) -> str:
    """A pair's change in words (a ``pairs`` entry of the JSON block): ``growing, +48 %``, ``growing by diameter,
    +2.3 mm (volumetry refused)``, ``indeterminate (volumetry refused)``."""
    status = pair.get("status", "")
    if pair.get("basis", "volumetry") in SIZED_BASES:
        mass = "mass " if pair.get("kind") == "mass" else ""
        return f"{mass}{status}, {float(pair.get('volume_change_pct', 0.0)):+.0f} %"
    if status == "growing":
        return f"growing by diameter, {float(pair.get('diameter_change_mm', 0.0)):+.1f} mm (volumetry refused)"
    return f"{status} (volumetry refused)"


def tracking_uid(study_uid: str, series_uid: str, kind: str, n: int) -> str:
    """The SR/SEG tracking UID of finding ``n`` (1-based among a study's labelled findings of ``kind``); the
    same derivation as ``inference.dicom.writer``, so a prior's tracking UID can be named without its SR."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[study_uid, series_uid, kind, str(n)])


def _prior_tracking(prior: StudyInput, prior_index: int | None) -> tuple[str | None, str | None]:
    if prior_index is None:
        return None, None
    labelled = [i for i, f in enumerate(prior.findings) if f.kind in SR_LABELLED_KINDS and f.label]
    if prior_index not in labelled:
        return None, None
    n = labelled.index(prior_index) + 1
    kind = prior.findings[prior_index].kind  # the writer's derivation names the finding's own kind
    return tracking_uid(prior.volume.study_uid, prior.volume.series_uid, kind, n), f"{kind.capitalize()} {n}"


def parse_study_date(value: Any) -> date | None:
    """A DICOM DA (``YYYYMMDD``), ISO date or ``date`` as ``date``; None when missing or malformed."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    return None


def growth(cur: Measurement, pri: Measurement, interval_days: float | None) -> dict[str, Any]:
    """Volume / diameter change between two measurements, its significance and the VDT."""
    dv = cur.volume_mm3 - pri.volume_mm3
    sigma = float(np.hypot(cur.sigma_mm3, pri.sigma_mm3))
    significant = abs(dv) > Z * sigma
    status = "stable" if not significant else ("growing" if dv > 0 else "shrinking")
    vdt = None
    if status == "growing" and interval_days and interval_days > 0 and pri.volume_mm3 > 0:
        vdt = float(interval_days * np.log(2.0) / np.log(cur.volume_mm3 / pri.volume_mm3))
    return {
        "volume_change_mm3": dv,
        "volume_change_pct": 100.0 * dv / pri.volume_mm3 if pri.volume_mm3 > 0 else float("inf"),
        "diameter_change_mm": cur.diameter_mm - pri.diameter_mm,
        "sigma_mm3": sigma,
        "status": status,
        "vdt_days": vdt,
    }


def _gate(fc: Finding, fp: Finding) -> float:
    return MATCH_MM + 0.5 * max(fc.diameter_mm or 0.0, fp.diameter_mm or 0.0)


def _size_factor(dc: float | None, dp: float | None) -> float:
    if not dc or not dp:
        return 1.0
    return float(np.exp(-0.5 * (np.log(dc / dp) / np.log(2.0)) ** 2))


def match(
    mapped: np.ndarray, cur: list[Finding], pri: list[Finding], pri_mm: np.ndarray, alignment_ok: bool = True
) -> list[tuple[int, int, float, float]]:
    """Pair current nodules (positions ``mapped`` into the prior) with prior nodules.

    Returns:
        ``(current_position, prior_position, distance_mm, confidence)`` for each pair (positions in the lists).
    """
    if len(cur) == 0 or len(pri) == 0:
        return []
    dist = np.linalg.norm(mapped[:, None, :] - pri_mm[None, :, :], axis=2)
    cost = np.full(dist.shape, 1e6)
    for a, fc in enumerate(cur):
        for b, fp in enumerate(pri):
            g = _gate(fc, fp)
            if dist[a, b] <= g:
                size = abs(np.log((fc.diameter_mm or 1.0) / (fp.diameter_mm or 1.0)))
                cost[a, b] = dist[a, b] / g + 0.2 * size
    rows, cols = linear_sum_assignment(cost)
    out = []
    for a, b in zip(rows, cols):
        if cost[a, b] >= 1e6:
            continue
        conf = float(np.exp(-0.5 * (dist[a, b] / SIGMA_MM) ** 2)) * _size_factor(cur[a].diameter_mm, pri[b].diameter_mm)
        out.append((int(a), int(b), float(dist[a, b]), conf * (1.0 if alignment_ok else 0.5)))
    return out


def _measure(vol: Volume, f: Finding | None, xyz: np.ndarray, hint: float | None, texture: str) -> Measurement:
    return measure_nodule(vol, xyz, float(hint or (f.diameter_mm if f else 6.0) or 6.0), texture=texture)


def _present(m: Measurement, ref: Measurement) -> bool:
    return m.ok and ref.volume_mm3 > 0 and m.volume_mm3 >= MIN_PRESENT_FRACTION * ref.volume_mm3


def _finding_brief(i: int, f: Finding, m: Measurement | None) -> dict[str, Any]:
    return {
        "index": i,
        "center_mm": [round(float(v), 2) for v in f.center_mm],
        "diameter_mm": None if f.diameter_mm is None else round(float(f.diameter_mm), 1),
        "texture": f.texture,
        "probability": round(float(f.probability), 3),
        "measurement": m.to_dict() if m is not None else None,
    }


def lesion_measurement(f: Finding) -> Measurement:
    """A finding's own segmentation as a ``Measurement`` (masses: the mass detector's volume and long axis),
    with the assumed ``MASS_REL_SD``; not ok when the finding carries no volume."""
    v = float(f.volume_ml or 0.0) * 1000.0
    d_eq = float((6.0 * v / np.pi) ** (1.0 / 3.0)) if v > 0 else 0.0
    return Measurement(volume_mm3=v, diameter_mm=d_eq, long_axis_mm=float(f.diameter_mm or d_eq),
                       sigma_mm3=MASS_REL_SD * v, threshold_hu=0.0, core_hu=float(f.mean_hu or 0.0), voxels=0,
                       ok=v > 0, reason="" if v > 0 else "the finding has no segmented volume")


def _mass_pair(ci: int, pi: int, fc: Finding, fp: Finding, dist: float, conf: float,
               interval: float | None) -> NodulePair:
    mc, mp = lesion_measurement(fc), lesion_measurement(fp)
    if mc.ok and mp.ok:
        g = {**growth(mc, mp, interval), "basis": "segmentation", "note": ""}
    else:
        g = refused_growth(mc, mp, fc.diameter_mm, fp.diameter_mm)
    g["diameter_change_mm"] = float((fc.diameter_mm or 0.0) - (fp.diameter_mm or 0.0))  # long axis (RECIST-like)
    return NodulePair(
        current_index=ci, prior_index=pi, current_mm=_xyz(fc.center_mm), prior_mm=_xyz(fp.center_mm),
        distance_mm=dist, confidence=conf, prior_detected=True, current=mc.to_dict(), prior=mp.to_dict(),
        lung_rads=fc.lung_rads, lung_rads_change=g["status"], kind="mass", **g,
    )


def _compare_masses(current: StudyInput, prior: StudyInput, align: Alignment, inverse: Any, interval: float | None,
                    ) -> tuple[list[NodulePair], list[dict[str, Any]], list[dict[str, Any]], set[int], set[int]]:
    """Masses: (pairs, new, resolved, current nodule indices used, prior nodule indices used).

    A current mass pairs with a prior mass or a prior nodule (it grew into a mass); a prior mass left over
    pairs with a current nodule (it shrank below 30 mm); the pairing gate and cost are the nodules' (``match``).
    """
    ok = bool(align.quality.get("ok", True))
    cur_m, pri_m = current.masses(), prior.masses()
    pairs: list[NodulePair] = []
    used_cur: set[int] = set()
    used_pri: set[int] = set()

    def pair_up(cur: list[tuple[int, Finding]], pri: list[tuple[int, Finding]]) -> None:
        if not cur or not pri:
            return
        mapped = np.array([align.to_prior(f.center_mm) for _, f in cur]).reshape(-1, 3)
        pri_mm = np.array([f.center_mm for _, f in pri], float).reshape(-1, 3)
        for a, b, dist, conf in match(mapped, [f for _, f in cur], [f for _, f in pri], pri_mm, ok):
            (ci, fc), (pi, fp) = cur[a], pri[b]
            pairs.append(_mass_pair(ci, pi, fc, fp, dist, conf, interval))
            used_cur.add(ci)
            used_pri.add(pi)

    pair_up(cur_m, pri_m + prior.nodules())  # a mass, or a nodule that grew into one
    pair_up(current.nodules(), [(i, f) for i, f in pri_m if i not in used_pri])  # a mass that shrank below 30 mm
    new, resolved = [], []
    for ci, fc in cur_m:
        if ci not in used_cur:
            brief = {**_finding_brief(ci, fc, lesion_measurement(fc)), "kind": "mass", "current_index": ci,
                     "prior_mm": [round(float(v), 2) for v in align.to_prior(fc.center_mm)],
                     "lung_rads": fc.lung_rads}
            new.append(brief)
    for pi, fp in pri_m:
        if pi not in used_pri:
            back = inverse(np.asarray(fp.center_mm)) if inverse else None
            resolved.append({**_finding_brief(pi, fp, lesion_measurement(fp)), "kind": "mass", "prior_index": pi,
                             "current_mm": None if back is None else [round(float(v), 2) for v in back]})
    used_cur_nod = {i for i in used_cur if current.findings[i].kind == "nodule"}
    used_pri_nod = {i for i in used_pri if prior.findings[i].kind == "nodule"}
    return pairs, new, resolved, used_cur_nod, used_pri_nod


def compare_studies(
    current: StudyInput, prior: StudyInput, *, alignment: Alignment | None = None, refine: bool = False
) -> Comparison:
    """Compare ``current`` with ``prior`` (see the module docstring).

    Raises:
        inference.registration.RegistrationUnavailable: SimpleITK is not installed.
    """
    t0 = time.perf_counter()
    align = alignment or register_lungs(current.volume, prior.volume)
    t_reg = time.perf_counter()
    interval = None
    if current.study_date and prior.study_date:
        interval = float((current.study_date - prior.study_date).days)
    inverse = _inverse(align)  # prior -> current (None when the transform has no inverse)
    mass_pairs, mass_new, mass_resolved, used_cur, used_pri = _compare_masses(current, prior, align, inverse,
                                                                              interval)
    cur_nod = [(i, f) for i, f in current.nodules() if i not in used_cur]
    pri_nod = [(i, f) for i, f in prior.nodules() if i not in used_pri]
    cur_f = [f for _, f in cur_nod]
    pri_f = [f for _, f in pri_nod]
    mapped = np.zeros((len(cur_f), 3))
    shifts = []
    for a, f in enumerate(cur_f):
        if refine:
            mapped[a], shift = align.refine(f.center_mm)
            shifts.append(shift)
        else:
            mapped[a] = align.to_prior(f.center_mm)
    t_map = time.perf_counter()
    pri_mm = np.array([f.center_mm for f in pri_f], float).reshape(-1, 3)
    pairs_idx = match(mapped, cur_f, pri_f, pri_mm, bool(align.quality.get("ok", True)))
    comp = Comparison(
        current_study_uid=current.volume.study_uid,
        prior_study_uid=prior.volume.study_uid,
        current_date=current.study_date.isoformat() if current.study_date else None,
        prior_date=prior.study_date.isoformat() if prior.study_date else None,
        interval_days=interval,
        alignment={**align.quality, "local_shift_mm_median": round(float(np.median(shifts)), 2) if shifts else None},
    )
    for mp_ in mass_pairs:
        mp_.prior_tracking_uid, mp_.prior_tracking_id = _prior_tracking(prior, mp_.prior_index)
    comp.pairs.extend(mass_pairs)
    comp.new.extend(mass_new)
    comp.resolved.extend(mass_resolved)
    paired_cur, paired_pri = set(), set()
    for a, b, dist, conf in pairs_idx:
        fc, fp = cur_f[a], pri_f[b]
        tex = fc.texture or "solid"
        hint = float(max(fc.diameter_mm or 0.0, fp.diameter_mm or 0.0) or 6.0)
        mc, mp = measure_pair(current.volume, fc.center_mm, prior.volume, fp.center_mm, hint, texture=tex)
        pair = _pair(cur_nod[a][0], pri_nod[b][0], fc, mapped[a], fp.center_mm, dist, conf, True, mc, mp, interval,
                     prior_diameter_mm=fp.diameter_mm)
        pair.prior_tracking_uid, pair.prior_tracking_id = _prior_tracking(prior, pri_nod[b][0])
        comp.pairs.append(pair)
        paired_cur.add(a)
        paired_pri.add(b)
    for a, fc in enumerate(cur_f):
        if a in paired_cur:
            continue
        tex = fc.texture or "solid"
        mc = _measure(current.volume, fc, np.asarray(fc.center_mm), fc.diameter_mm, tex)
        mp = _measure(prior.volume, None, mapped[a], fc.diameter_mm, tex)
        if mc.ok and _present(mp, mc):
            mc, mp = measure_pair(current.volume, fc.center_mm, prior.volume, mapped[a], fc.diameter_mm or 6.0,
                                  texture=tex)
            conf = 0.5 * (1.0 if align.quality.get("ok", True) else 0.5)
            comp.pairs.append(_pair(cur_nod[a][0], None, fc, mapped[a], tuple(mapped[a]), 0.0, conf, False,
                                    mc, mp, interval))
            continue
        brief = _finding_brief(cur_nod[a][0], fc, mc)
        brief["current_index"] = cur_nod[a][0]
        brief["prior_mm"] = [round(float(v), 2) for v in mapped[a]]
        d = mc.diameter_mm if mc.ok and mc.diameter_mm > 0 else (fc.diameter_mm or 0.0)
        brief["lung_rads"] = lung_rads_followup(
            d, tex, fc.extra.get("solid_component_mm"), change="new", interval_days=interval
        )
        comp.new.append(brief)
    for b, fp in enumerate(pri_f):
        if b in paired_pri:
            continue
        tex = fp.texture or "solid"
        mp = _measure(prior.volume, fp, np.asarray(fp.center_mm), fp.diameter_mm, tex)
        back = inverse(np.asarray(fp.center_mm)) if inverse else None
        if back is not None:
            mc = _measure(current.volume, None, back, fp.diameter_mm, tex)
            if mp.ok and _present(mc, mp) and any(
                np.linalg.norm(np.asarray(f.center_mm) - back) < _gate(f, fp) for f in cur_f
            ):
                continue  # a current nodule is there (already compared through its own entry)
        brief = _finding_brief(pri_nod[b][0], fp, mp)
        brief["prior_index"] = pri_nod[b][0]
        brief["current_mm"] = None if back is None else [round(float(v), 2) for v in back]
        comp.resolved.append(brief)
    t_end = time.perf_counter()
    comp.timings_ms = {
        "registration": (t_reg - t0) * 1000,
        "mapping": (t_map - t_reg) * 1000,
        "measurement": (t_end - t_map) * 1000,
        "total": (t_end - t0) * 1000,
    }
    return comp


def _inverse(align: Alignment):
    try:
        inv = align.transform.GetInverse()
    except (RuntimeError, AttributeError):
        return None
    return lambda xyz: np.asarray(inv.TransformPoint(tuple(float(v) for v in xyz)))


def _xyz(point: Any) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in point)
    return x, y, z


def refused_growth(mc: Measurement, mp: Measurement, current_mm: float | None, prior_mm: float | None) -> dict:
    """The change of a pair whose volumetry refused a scan: decided by the detector's diameters alone.

    Growth by the Lung-RADS v2022 rule (mean diameter up by more than 1.5 mm) is **growing** with ``basis``
    ``diameter`` and no VDT (two detector diameters are too coarse for one); anything else is
    **indeterminate**, never stable: a measurement that failed says nothing about stability.
    """
    why = "; ".join(f"{side}: {m.reason or 'not measured'}" for side, m in (("current", mc), ("prior", mp)) if not m.ok)
    dd = (current_mm - prior_mm) if current_mm and prior_mm else None
    grew = dd is not None and dd > LUNG_RADS_GROWTH_MM
    return {"volume_change_mm3": 0.0, "volume_change_pct": 0.0, "diameter_change_mm": float(dd or 0.0),
            "sigma_mm3": 0.0, "status": "growing" if grew else "indeterminate", "vdt_days": None,
            "basis": "diameter" if dd is not None else "none", "note": f"volumetry refused ({why})"}


def _pair(ci, pi, fc: Finding, mapped, prior_mm, dist, conf, detected, mc: Measurement, mp: Measurement,
          interval: float | None, prior_diameter_mm: float | None = None) -> NodulePair:
    if mc.ok and mp.ok and mp.volume_mm3 > 0:
        g = growth(mc, mp, interval)
    else:  # the volumetry refused a scan: the detector's diameters decide, never "stable"
        g = refused_growth(mc, mp, fc.diameter_mm, prior_diameter_mm)
    tex = fc.texture or "solid"
    d = fc.diameter_mm or (mc.diameter_mm if mc.ok else 0.0)
    solid = fc.extra.get("solid_component_mm")
    if g["status"] == "indeterminate":  # its size category, never stepped down for a stability not shown
        lr_change = "indeterminate"
        lr = lung_rads(d, tex, solid)
    elif g["status"] != "growing":
        lr_change = "stable"
        lr = lung_rads_followup(d, tex, solid, change="stable", interval_days=interval)
    elif g["diameter_change_mm"] > LUNG_RADS_GROWTH_MM:
        lr_change = "growing"
        lr = lung_rads_followup(d, tex, solid, change="growing", interval_days=interval)
    else:  # grew beyond the uncertainty but less than v2022's 1.5 mm: its size category, never stepped down
        lr_change = "subthreshold-growth"
        lr = lung_rads(d, tex, solid)
    return NodulePair(
        current_index=ci, prior_index=pi, current_mm=_xyz(fc.center_mm),
        prior_mm=_xyz(prior_mm), distance_mm=dist, confidence=conf, prior_detected=detected,
        current=mc.to_dict(), prior=mp.to_dict(), lung_rads=lr, lung_rads_change=lr_change, **g,
    )


def annotate_findings(findings: list[Finding], comp: Comparison) -> None:
    """Write the comparison into the current findings: ``extra['change']``, prior size, VDT, Lung-RADS."""
    for p in comp.pairs:
        f = findings[p.current_index]
        f.extra["change"] = p.status
        measured = p.basis in SIZED_BASES  # a refused volumetry's sizes are not the nodule's: none are written
        f.extra["prior_diameter_mm"] = p.prior.get("diameter_mm") if measured else None
        f.extra["prior_volume_mm3"] = p.prior.get("volume_mm3") if measured else None
        f.extra["volume_change_pct"] = round(p.volume_change_pct, 1) if measured else None
        if not measured:
            f.extra["change_note"] = p.note
        f.extra["vdt_days"] = None if p.vdt_days is None else round(p.vdt_days, 1)
        f.extra["match_confidence"] = round(p.confidence, 3)
        f.lung_rads = p.lung_rads
    for n in comp.new:
        f = findings[n["current_index"]]
        f.extra["change"] = "new"
        f.lung_rads = n["lung_rads"]


def adjust_priority(priority: float | None, comp: Comparison) -> tuple[float | None, str]:
    """The study priority after the comparison, and why (empty when unchanged)."""
    if priority is None:
        return None, ""
    p = float(priority)
    s = comp.summary()
    if s["growing"]:
        return 1.0 - (1.0 - p) * (1.0 - GROWING_BOOST), f"{s['growing']} growing nodule(s)"
    relevant = [n for n in comp.new if n.get("lung_rads") in ("3", "4A", "4B")]  # a new < 4 mm nodule is 2
    if relevant:
        return 1.0 - (1.0 - p) * (1.0 - NEW_BOOST), f"{len(relevant)} new nodule(s) (Lung-RADS 3 or more)"
    days = comp.interval_days or 0.0
    if s["pairs"] and s["stable"] + s["shrinking"] == s["pairs"] and days >= STABLE_DAYS:
        return p * STABLE_YEARS_FACTOR, f"all {s['pairs']} nodule(s) stable for {days / 365.25:.1f} years"
    return p, ""

