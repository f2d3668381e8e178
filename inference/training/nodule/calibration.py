"""Calibration and operating point of the candidate classifier, on validation data only (numpy / ONNX Runtime).

Validation candidates come through the serving path (``detect_nodules`` with the served seg model): the
synthetic validation split (seeds 20000+) and the real validation scan(s) (``real.VALIDATION_CASES``: lung2,
never trained or mined on). Each candidate keeps its classifier patch, peak segmentation probability and
Hessian features (``inference.models.nodule_features``), so a classifier can be re-scored without running
the segmentation again (``--cache``: the candidate sets are stored as npz).

A logistic calibration (ridge ``L2``) is fitted for each feature set of ``FEATURE_SETS`` (the classifier logit +
the seg-peak logit (``none``), plus standardised Hessian features) on the synthetic validation candidates
**and the candidates of the real training scans** (``REAL_FIT_CASES``: the LIDC slabs, lung1 and the CTA crops,
the scans ``real.TRAIN_CASES`` allows for mining). Real candidates outside every annotated lesion are hard
negatives (on real CT these are vessel segments and bifurcations, which the synthetic lungs lack), those on a
lesion are positives; candidates near another LIDC reader mark are left out. These scans are therefore
in-sample for the calibration (``calibration.real_cases_fitted`` in the card; the real-CT table marks them
``training``).

Each fit gets its operating point (report threshold): the calibrated probability at ``fp_per_scan`` false
positives per scan on the synthetic validation split, raised where needed so that no real validation scan has
more than ``real_max_false`` false findings (lung2 sets the threshold, so its row in the real-CT table is
in-sample for the threshold; it takes no part in the fit). The chosen set is, among those leaving at most
``real_max_false`` false findings on every real full-thorax training scan at their operating point, the one
keeping the most true synthetic validation candidates (then the higher 2-fold AUC, then fewer features).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.engine import Engine, LoadedModel
from inference.models.nodule import CLS_MODEL, detect_nodules, seg_logit
from inference.models.nodule_features import FEATURES
from inference.models.nodule_prep import extract_patch
from inference.training.nodule import metrics as M
from inference.training.nodule.config import SEEDS
from inference.training.nodule.data import eval_cases, gt_lesions


@dataclass
class CandidateSet:
    """Validation candidates: classifier patch, seg peak, features, truth, scan index."""

    patches: np.ndarray  # (N, d, h, w) float16
    seg: np.ndarray  # (N,)
    features: np.ndarray  # (N, len(FEATURES))
    label: np.ndarray  # (N,) bool
    scan: np.ndarray  # (N,) int
    n_scans: int
    names: list[str]

    def save(self, path: Path) -> None:
        np.savez_compressed(path, patches=self.patches, seg=self.seg, features=self.features, label=self.label,
                            scan=self.scan, n_scans=self.n_scans, names=np.asarray(self.names))

    @classmethod
    def load(cls, path: Path) -> CandidateSet:
        z = np.load(path)
        return cls(z["patches"], z["seg"], z["features"], z["label"], z["scan"], int(z["n_scans"]),
                   [str(n) for n in z["names"]])


def _collect(items, engine: Engine, seg: str, size: tuple[int, ...], log=print) -> CandidateSet:
    """``items``: (name, volume, labeller) with labeller(candidates) -> list of 1 / 0 / None (None = skip)."""
    xs, ss, fs, ys, sc, names = [], [], [], [], [], []
    for k, (name, vol, labeller) in enumerate(items):
        r = detect_nodules(vol, engine, seg_name=seg, maps=False)
        for c, y in zip(r.candidates, labeller(r.candidates)):
            if y is None:
                continue
            xs.append(extract_patch(r.prepared.image, np.asarray(c.center_model), size).astype(np.float16))
            ss.append(c.seg_max)
            fs.append([c.features.get(f, 0.0) for f in FEATURES])
            ys.append(bool(y))
            sc.append(k)
        names.append(name)
        log(f"[calibration] {name}: {len(r.candidates)} candidates")
    return CandidateSet(np.stack(xs) if xs else np.zeros((0, *size), np.float16), np.asarray(ss, float),
                        np.asarray(fs, np.float32).reshape(-1, len(FEATURES)), np.asarray(ys, bool),
                        np.asarray(sc, int), len(names), names)


def synthetic_set(n: int, engine: Engine, seg: str, size: tuple[int, ...], log=print) -> CandidateSet:
    def items():
        for case in eval_cases("val", n):
            lesions = gt_lesions(case)
            yield case.name, case.volume, lambda cands, les=lesions, v=case.volume: [
                int(h >= 0) for h in M.match(cands, les, v.spacing_mm)]
    return _collect(items(), engine, seg, size, log)


def real_set(names: tuple[str, ...], engine: Engine, seg: str, size: tuple[int, ...], log=print,
             role: str = "validation") -> CandidateSet:
    """Candidates of real scans labelled by their annotations (``role``: every name must have that role, so a
    validation scan never enters the fit and a training scan never sets the threshold)."""
    from inference.training.nodule.real import TRAIN_CASES, VALIDATION_CASES, load_case
    from inference.training.nodule.realtable import label_candidates

    allowed = VALIDATION_CASES if role == "validation" else TRAIN_CASES

    def items():
        for name in names:
            if name not in allowed:
                raise ValueError(f"{name} is not a real {role} case")
            case = load_case(name)
            yield name, case.volume, lambda cands, c=case: [
                None if t == "exclude" else int(t.startswith("lesion"))
                for t in label_candidates(c, [x.center_voxel for x in cands])]
    return _collect(items(), engine, seg, size, log)


def cached(path: Path | None, make) -> CandidateSet:
    if path is not None and path.exists():
        return CandidateSet.load(path)
    cs = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cs.save(path)
    return cs


def raw_logits(cs: CandidateSet, model: LoadedModel, batch: int = 32) -> np.ndarray:
    """The classifier's logit of each stored patch (as ``score_candidates`` computes it)."""
    name, i = model.input_names[0], model.card.output_index("logit")
    out = [model.run({name: cs.patches[b: b + batch, None].astype(np.float32)})[i].reshape(-1)
           for b in range(0, len(cs.label), batch)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def design(z: np.ndarray, cs: CandidateSet, feats: tuple[str, ...], norm: dict | None = None
           ) -> tuple[np.ndarray, dict]:
    """Columns ``[logit, seg logit, (standardised features feats)]`` and the standardisation used."""
    cols = [z, seg_logit(cs.seg)]
    if not feats:
        return np.stack(cols, 1), {}
    idx = [FEATURES.index(f) for f in feats]
    if norm is None:
        norm = {"center": {f: float(np.mean(cs.features[:, i])) for f, i in zip(feats, idx)},
                "scale": {f: float(np.std(cs.features[:, i]) or 1.0) for f, i in zip(feats, idx)}}
    for f, i in zip(feats, idx):
        cols.append((cs.features[:, i] - norm["center"][f]) / norm["scale"][f])
    return np.stack(cols, 1), norm


def params_of(w: np.ndarray, b: float, norm: dict) -> dict:
    p = {"w_cls": float(w[0]), "w_seg": float(w[1]), "b": float(b)}
    if norm:
        p.update(features={f: float(x) for f, x in zip(norm["center"], w[2:])}, feature_center=norm["center"],
                 feature_scale=norm["scale"])
    return p


def apply(params: dict, z: np.ndarray, cs: CandidateSet) -> np.ndarray:
    """Calibrated probabilities, computed exactly as serving does (``inference.models.nodule.calibrate``)."""
    from inference.models.nodule import calibrate as serve

    return serve(z, {"method": "logistic", "params": params}, cs.seg, cs.features)


def cv_auc(z: np.ndarray, cs: CandidateSet, feats: tuple[str, ...], folds: int = 2) -> float:
    """AUC of out-of-fold calibrated probabilities, folds by study."""
    p = np.zeros(len(z))
    for f in range(folds):
        test = cs.scan % folds == f
        X, norm = design(z[~test], _subset(cs, ~test), feats)
        w, b = M.fit_logistic(X, cs.label[~test], l2=L2)
        p[test] = apply(params_of(w, b, norm), z[test], _subset(cs, test))
    return M.auc(p, cs.label)


def _subset(cs: CandidateSet, m: np.ndarray) -> CandidateSet:
    return CandidateSet(cs.patches[m], cs.seg[m], cs.features[m], cs.label[m], cs.scan[m], cs.n_scans, cs.names)


L2 = 1.0  # ridge on the logistic weights: 12-40 true validation candidates, up to 6 weights
FEATURE_SETS = {"none": (), "blob": ("blob",), "blob+tube": ("blob", "tube"), "all": FEATURES}
REAL_FIT_CASES = ("LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003", "lung1", "cta-aorta", "cta-pulmonary")


def concat(a: CandidateSet, b: CandidateSet) -> CandidateSet:
    """Both candidate sets as one (``b``'s scans numbered after ``a``'s)."""
    return CandidateSet(np.concatenate([a.patches, b.patches]), np.concatenate([a.seg, b.seg]),
                        np.concatenate([a.features, b.features]), np.concatenate([a.label, b.label]),
                        np.concatenate([a.scan, b.scan + a.n_scans]), a.n_scans + b.n_scans, a.names + b.names)


def false_by_scan(p: np.ndarray, cs: CandidateSet, thr: float) -> list[int]:
    return [int(((p >= thr) & ~cs.label & (cs.scan == k)).sum()) for k in range(cs.n_scans)]


def fit_and_choose(syn: CandidateSet, real: CandidateSet | None, model: LoadedModel, *, fp_per_scan: float = 1.0,
                   real_max_false: int = 1, features: str = "auto", train: CandidateSet | None = None,
                   full_thorax: tuple[str, ...] = ()) -> dict:
    """Fit the calibration for each feature set of ``FEATURE_SETS`` (or the one named by ``features``) on the
    synthetic validation candidates plus the real training candidates ``train``, each with its operating point,
    and choose (see the module docstring)."""
    z, zr = raw_logits(syn, model), (raw_logits(real, model) if real is not None else None)
    zt = raw_logits(train, model) if train is not None and len(train.label) else None
    fit_set, zf = (concat(syn, train), np.concatenate([z, zt])) if train is not None and zt is not None else (syn, z)
    out: dict = {}
    sets = FEATURE_SETS if features == "auto" else {features: tuple(f for f in features.split("+") if f in FEATURES)}
    for key, feats in sets.items():
        X, norm = design(zf, fit_set, feats)
        w, b = M.fit_logistic(X, fit_set.label, l2=L2)
        params = params_of(w, b, norm)
        p = apply(params, z, syn)
        thr, _ = M.threshold_at_fp(p, syn.label, syn.n_scans, fp_per_scan)
        thr_syn = 0.5 if thr is None else thr
        thr_final = thr_syn
        real_rec = None
        if real is not None and len(real.label):
            pr = apply(params, zr, real)
            # lowest threshold leaving <= real_max_false negatives of every real validation scan at or above it
            for k in range(real.n_scans):
                negs = np.sort(pr[(real.scan == k) & ~real.label])[::-1]
                if len(negs) > real_max_false:
                    thr_final = max(thr_final, float(np.nextafter(negs[real_max_false], 1.0)))
            real_rec = {"auc": M.auc(pr, real.label) if real.label.any() else None,
                        "false_at_synthetic_point": false_by_scan(pr, real, thr_syn),
                        "false_at_operating_point": false_by_scan(pr, real, float(np.ceil(thr_final * 1e4) / 1e4)),
                        "lesion_probabilities": [round(float(x), 4) for x in pr[real.label]],
                        "top_negative_probabilities": [round(float(x), 4) for x in np.sort(pr[~real.label])[::-1][:5]]}
        thr_final = float(np.ceil(thr_final * 1e4) / 1e4)  # 4 decimals, rounded up (never admits one more)
        train_rec = None
        if zt is not None and train is not None:
            pt = apply(params, zt, train)
            false_t = false_by_scan(pt, train, thr_final)
            train_rec = {"scans": list(train.names), "false_at_operating_point": false_t,
                         "full_thorax_max_false": max((f for f, n in zip(false_t, train.names) if n in full_thorax),
                                                      default=0),
                         "lesion_probabilities": [round(float(x), 4) for x in pt[train.label]],
                         "n_candidates": int(len(train.label)), "n_true": int(train.label.sum())}
        kept = p >= thr_final
        out[key] = {
            "features": list(feats), "params": params, "auc_validation": M.auc(p, syn.label),
            "auc_cv2": cv_auc(z, syn, feats), "ece_after": M.ece(p, syn.label),
            "threshold_synthetic": round(thr_syn, 4), "threshold": float(thr_final),
            "synthetic_false_per_scan_at_threshold": float((kept & ~syn.label).sum() / max(syn.n_scans, 1)),
            "synthetic_true_share_at_threshold": float((kept & syn.label).sum() / max(syn.label.sum(), 1)),
            "real": real_rec, "real_training": train_rec}

    def within_real_bound(k: str) -> bool:
        rec = out[k]["real_training"]
        return rec is None or rec["full_thorax_max_false"] <= real_max_false

    # at most real_max_false false findings on each real full-thorax training scan, then more synthetic
    # validation candidates kept at the operating point, then higher CV AUC, then fewer features
    choice = max(out, key=lambda k: (within_real_bound(k), round(out[k]["synthetic_true_share_at_threshold"], 3),
                                     round(out[k]["auc_cv2"], 3), -len(out[k]["features"])))
    return {"fits": out, "choice": choice, "ece_before": M.ece(1 / (1 + np.exp(-z)), syn.label)}


def calibrate(engine: Engine, seg: str, n: int, card_path: Path, *, write: bool = True, cache: Path | None = None,
              real: tuple[str, ...] = ("lung2",), features: str = "auto", fit_real: tuple[str, ...] = REAL_FIT_CASES,
              log=print) -> dict:
    """Collect (or load) the validation candidates, fit, choose, and write the card's calibration + report
    threshold (``write``)."""
    from inference.training.nodule.real import available

    model = engine.model(CLS_MODEL)
    size = tuple(model.card.preprocessing.patch_size)
    syn = cached(cache / f"val_synthetic_{n}.npz" if cache else None,
                 lambda: synthetic_set(n, engine, seg, size, log))
    rs = None
    if real and available():
        rs = cached(cache / f"val_real_{'_'.join(real)}.npz" if cache else None,
                    lambda: real_set(real, engine, seg, size, log))
    ts = None
    if fit_real and available():
        ts = cached(cache / f"train_real_{'_'.join(fit_real)}.npz" if cache else None,
                    lambda: real_set(fit_real, engine, seg, size, log, role="train"))
    from inference.training.nodule.real import FULL_THORAX

    fit = fit_and_choose(syn, rs, model, features=features, train=ts, full_thorax=FULL_THORAX)
    best = fit["fits"][fit["choice"]]
    cal = {"method": "logistic", "params": best["params"], "ece_before": fit["ece_before"],
           "ece_after": best["ece_after"], "auc_validation": best["auc_validation"], "auc_validation_cv2":
           best["auc_cv2"], "choice": {"chosen": fit["choice"], "rule": "among the feature sets leaving at most 1 "
                                       "false finding on each real full-thorax training scan at their operating "
                                       "point, the one keeping the most true synthetic validation candidates at it "
                                       "(which also bounds the real validation false findings), then higher 2-fold "
                                       "(by study, synthetic) AUC, then fewer features",
                                       **{k: {kk: vv for kk, vv in v.items() if kk != "params"}
                                          for k, v in fit["fits"].items()}},
           "data": f"{n} synthetic validation studies (seeds {SEEDS['val']}+), {len(syn.label)} candidates "
                   f"({int(syn.label.sum())} true) from the served seg model {seg}"
                   + (f", plus {len(ts.label)} candidates ({int(ts.label.sum())} on annotated lesions, the rest hard "
                      f"negatives) of the real training scans {', '.join(ts.names)}" if ts is not None else "")
                   + "; logistic regression on the "
                   "classifier logit, the logit of the candidate's peak segmentation probability"
                   + (" and the standardised Hessian features (" + ", ".join(best["features"]) + ")"
                      if best["features"] else "") + "; ECE with 10 equal-width bins, in-sample. "
                   f"Real validation scans (threshold only): {', '.join(real) if rs is not None else 'none'}"}
    cal["real_cases_fitted"] = list(ts.names) if ts is not None else []
    cal["report_threshold"] = {
        "value": best["threshold"],
        "rule": "calibrated probability at 1 false positive per scan on the synthetic validation split "
                f"({best['threshold_synthetic']}), raised to leave at most 1 false finding on each real "
                "validation scan (lung2); lung2's row in the real-CT table is therefore in-sample for the threshold",
        "true_candidate_share_validation": best["synthetic_true_share_at_threshold"],
        "synthetic_false_per_scan": best["synthetic_false_per_scan_at_threshold"], "real": best["real"]}
    card = json.loads(card_path.read_text())
    if write:
        card["calibration"] = cal
        card.setdefault("thresholds", {})["report"] = best["threshold"]
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        engine.cards[CLS_MODEL] = type(engine.cards[CLS_MODEL]).load(card_path)
        engine._models.pop(CLS_MODEL, None)
    return cal
