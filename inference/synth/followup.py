"""Follow-up pairs with known truth: the same anatomy scanned twice, nodules grown by known volumes.

``make_followup(prior_volume, lung, seed, ...)`` turns one CT (synthetic or real) into a prior / current pair:

* **pose and breath-hold**: the current scan samples the prior anatomy through a known transform
  ``current mm → prior mm``: a rigid motion (rotation up to ``max_rot_deg``, shift up to ``max_shift_mm``)
  composed with a smooth elastic displacement (a breath-hold difference: cranio-caudal compression of the
  lower lungs plus a random smooth field of ``elastic_mm`` amplitude);
* **noise**: fresh noise on the current scan (``noise_hu``), so no voxel repeats;
* **nodules** (``inference.synth.insert_nodule``, LIDC shapes): each nodule is inserted into both scans at
  corresponding points with the **same shape** (same seed), so the true volume ratio is exactly
  ``(d_current / d_prior) ** 3``; one nodule only in the current scan (**new**), one only in the prior
  (**resolved**), the others stable or grown by the factors asked for.

``followup_pair(seed, size=...)`` does all of it on a synthetic chest (``generate_study``). Each truth
record holds both centres (LPS mm), both nominal diameters, the true volume ratio, the interval and the true
VDT, so matching, growth and VDT are scored against known values (``bench/bench_compare.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from inference.synth.insert import insert_nodule
from inference.volume import Volume


@dataclass
class FollowupPair:
    """A prior and a current volume of one anatomy, the nodule truth and the transform between them."""

    prior: Volume
    current: Volume
    prior_date: date
    current_date: date
    nodules: list[dict[str, Any]]
    transform: dict[str, Any] = field(default_factory=dict)
    mapping: Any = None  # the KnownTransform itself (current mm -> prior mm), for extra truth points


    @property
    def interval_days(self) -> float:
        return float((self.current_date - self.prior_date).days)


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class KnownTransform:
    """``current LPS mm → prior LPS mm``: rigid (about ``center``) then a smooth displacement field.

    The displacement is defined on the prior's voxel grid (coarse, trilinear) in mm (x, y, z).
    """

    def __init__(self, prior: Volume, rng: np.random.Generator, *, max_rot_deg: float, max_shift_mm: float,
                 elastic_mm: float, breath_mm: float):
        self.prior = prior
        ext = np.asarray(prior.extent_mm())[::-1]  # x, y, z
        self.center = np.asarray(prior.voxel_to_patient(np.asarray(prior.shape) / 2.0))
        self.rot = _rotation(rng.uniform(-max_rot_deg, max_rot_deg, 3))
        self.shift = rng.uniform(-max_shift_mm, max_shift_mm, 3)
        # smooth random field on a coarse (~20 mm) grid + a cranio-caudal breath-hold compression
        coarse = [max(3, int(e / 20.0)) for e in ext[::-1]]  # z, y, x
        field_ = rng.normal(0.0, 1.0, (3, *coarse))
        field_ = np.stack([ndi.gaussian_filter(f, 1.0) for f in field_])
        field_ *= elastic_mm / max(1e-6, float(np.abs(field_).max()))
        z = np.linspace(0.0, 1.0, coarse[0])[:, None, None]  # 0 at the first slice, 1 at the last
        field_[2] += breath_mm * (1.0 - z)  # the slices near k = 0 move most
        self.field = field_
        self.coarse = np.asarray(coarse, float)
        self.params = {
            "rotation_deg": [round(float(v), 2) for v in np.rad2deg(_angles(self.rot))],
            "shift_mm": [round(float(v), 2) for v in self.shift],
            "elastic_mm": elastic_mm,
            "breath_mm": breath_mm,
        }

    def displacement(self, xyz: np.ndarray) -> np.ndarray:
        """Elastic displacement (mm, x y z) at points ``(N, 3)`` (the field lives on the prior's grid)."""
        kji = np.atleast_2d(self.prior.patient_to_voxel(xyz))
        c = (kji * self._scale()).T
        return np.stack([ndi.map_coordinates(f, c, order=1, mode="nearest") for f in self.field], axis=1)

    def _scale(self) -> np.ndarray:
        return (self.coarse - 1) / np.maximum(np.asarray(self.prior.shape, float) - 1, 1)

    def to_prior(self, xyz: np.ndarray) -> np.ndarray:
        """Map current points ``(N, 3)`` to the prior: rigid motion plus the displacement at the point."""
        pts = np.atleast_2d(np.asarray(xyz, float))
        return (pts - self.center) @ self.rot.T + self.center + self.shift + self.displacement(pts)

    def voxel_map(self) -> np.ndarray:
        """For every voxel of the grid, its fractional prior voxel index ``(3, nz, ny, nx)`` (float32)."""
        v = self.prior
        shape = v.shape
        aff = v.affine  # (i, j, k, 1) -> xyz
        inv = np.linalg.inv(aff)
        # rigid part in voxel space: x' = R (A ijk + o - c) + c + t  -> ijk' = inv(A) (x' - o)
        lin = inv[:3, :3] @ self.rot @ aff[:3, :3]
        off = inv[:3, :3] @ (self.rot @ (aff[:3, 3] - self.center) + self.center + self.shift - aff[:3, 3])
        zoom = [n / c for n, c in zip(shape, self.field.shape[1:])]
        out = np.empty((3, *shape), np.float32)
        k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
        dx, dy, dz = (ndi.zoom(f, zoom, order=1, mode="nearest")[: shape[0], : shape[1], : shape[2]]
                      for f in self.field)
        for r, axis in ((0, 2), (1, 1), (2, 0)):  # r: i, j, k rows of the voxel-space map; axis in (k, j, i)
            out[axis] = (lin[r, 0] * i + lin[r, 1] * j + lin[r, 2] * k + off[r]
                         + inv[r, 0] * dx + inv[r, 1] * dy + inv[r, 2] * dz)
        return out

    def to_current(self, xyz: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Inverse of ``to_prior`` (fixed-point iteration; the field is smooth and small)."""
        target = np.atleast_2d(np.asarray(xyz, float))
        guess = (target - self.center - self.shift) @ self.rot + self.center
        for _ in range(iterations):
            guess = guess + (target - self.to_prior(guess)) @ self.rot  # R orthogonal: R^-1 = R^T
        return guess


def _angles(r: np.ndarray) -> np.ndarray:
    return np.array([np.arctan2(r[2, 1], r[2, 2]), -np.arcsin(np.clip(r[2, 0], -1, 1)), np.arctan2(r[1, 0], r[0, 0])])


def resample_current(prior: Volume, tf: KnownTransform, noise_hu: float, rng: np.random.Generator) -> Volume:
    """The current scan: the prior anatomy seen through ``tf`` on the prior's grid geometry, fresh noise."""
    coords = tf.voxel_map()
    vals = ndi.map_coordinates(np.asarray(prior.hu, np.float32), coords, order=1, mode="constant", cval=-1024.0)
    del coords
    if noise_hu > 0:
        noise = ndi.gaussian_filter(rng.normal(0.0, 1.0, prior.shape).astype(np.float32), (0.0, 0.6, 0.6))
        noise *= noise_hu / max(1e-6, float(noise.std()))
        vals = np.where(vals > -900, vals + noise, vals)
    out = np.clip(np.rint(vals), -1024, 3071).astype(np.int16)
    return prior.with_array(out, study_uid=prior.study_uid + ".2" if prior.study_uid else "", series_uid="")


def lung_sites(lung: np.ndarray, volume: Volume, n: int, min_depth_mm: float, rng: np.random.Generator,
               min_gap_mm: float = 25.0) -> list[np.ndarray]:
    """``n`` LPS points at least ``min_depth_mm`` inside the lungs and ``min_gap_mm`` apart."""
    depth = ndi.distance_transform_edt(lung, sampling=volume.spacing_mm)
    cand = np.argwhere(depth >= min_depth_mm)
    if len(cand) == 0:
        raise ValueError("no lung region deep enough for a nodule")
    rng.shuffle(cand)
    out: list[np.ndarray] = []
    for kji in cand[:20000]:
        xyz = volume.voxel_to_patient(kji.astype(float))
        if all(np.linalg.norm(xyz - o) >= min_gap_mm for o in out):
            out.append(xyz)
            if len(out) == n:
                break
    return out


def make_followup(
    prior: Volume,
    lung: np.ndarray,
    seed: int,
    *,
    diameters_mm: tuple[float, ...] = (5.0, 7.0, 9.0, 12.0),
    volume_ratios: tuple[float, ...] = (1.0, 1.5, 2.0, 1.0),
    new_mm: float | None = 7.0,
    resolved_mm: float | None = 6.0,
    interval_days: int = 365,
    max_rot_deg: float = 4.0,
    max_shift_mm: float = 12.0,
    elastic_mm: float = 3.0,
    breath_mm: float = 6.0,
    noise_hu: float = 15.0,
    texture: str = "solid",
) -> FollowupPair:
    """A prior/current pair from ``prior`` (see the module docstring). ``lung`` is the prior's lung mask.

    ``diameters_mm[i]`` is nodule i's prior diameter, grown to ``diameters_mm[i] * volume_ratios[i] ** (1/3)``.
    """
    rng = np.random.default_rng(seed)
    tf = KnownTransform(prior, rng, max_rot_deg=max_rot_deg, max_shift_mm=max_shift_mm, elastic_mm=elastic_mm,
                        breath_mm=breath_mm)
    current = resample_current(prior, tf, noise_hu, rng)
    plan: list[tuple[str, float | None, float | None]] = [
        ("paired", d0, d0 * r ** (1.0 / 3.0)) for d0, r in zip(diameters_mm, volume_ratios)
    ]
    if new_mm:
        plan.append(("new", None, new_mm))
    if resolved_mm:
        plan.append(("resolved", resolved_mm, None))
    biggest = max(d for _, a, b in plan for d in (a, b) if d)
    sites = lung_sites(lung, prior, len(plan), biggest / 2 + 8.0, rng)
    if len(sites) < len(plan):
        raise ValueError("not enough room in the lungs for the nodules asked for")
    truth = []
    prior_vol, cur_vol = prior, current
    prior_date = date(2024, 1, 10) + timedelta(days=int(rng.integers(0, 300)))
    for n, ((role, d0, d1), q) in enumerate(zip(plan, sites)):
        p = tf.to_current(q)[0]
        nseed = int(rng.integers(1 << 30))
        rec: dict[str, Any] = {"id": n, "role": role, "prior_mm": [round(float(v), 2) for v in q],
                               "current_mm": [round(float(v), 2) for v in p], "texture": texture}
        if d0:
            prior_vol, _, info0 = insert_nodule(prior_vol, q, d0, texture=texture, seed=nseed)
            rec["prior_diameter_mm"] = d0
            rec["prior_truth"] = {k: info0[k] for k in ("diameter_mm", "volume_ml", "center_mm") if k in info0}
        if d1:
            cur_vol, _, info1 = insert_nodule(cur_vol, p, d1, texture=texture, seed=nseed)
            rec["current_diameter_mm"] = round(float(d1), 3)
            rec["current_truth"] = {k: info1[k] for k in ("diameter_mm", "volume_ml", "center_mm") if k in info1}
        if d0 and d1:
            ratio = (d1 / d0) ** 3
            rec["volume_ratio"] = round(float(ratio), 4)
            rec["vdt_days"] = None if abs(ratio - 1) < 1e-6 else round(interval_days * np.log(2) / np.log(ratio), 1)
        truth.append(rec)
    return FollowupPair(
        prior=prior_vol, current=cur_vol, prior_date=prior_date,
        current_date=prior_date + timedelta(days=interval_days), nodules=truth, transform=tf.params, mapping=tf,
    )


def followup_pair(seed: int, *, size: str = "small", **kwargs: Any) -> FollowupPair:
    """A synthetic patient scanned twice (``generate_study`` anatomy, no lesions; see ``make_followup``)."""
    from inference.synth.study import generate_study

    base = generate_study(seed, size=size, lesions="none", contrast="none", mimics=True)
    vol = base.volume
    if not vol.study_uid:
        vol = vol.with_array(vol.hu, study_uid=f"2.25.{seed + 1000}")
    return make_followup(vol, base.lung.astype(bool), seed, **kwargs)


def truth_findings(pair: FollowupPair, side: str, *, jitter_mm: float = 0.0, seed: int = 0) -> list:
    """Findings as a perfect detector would report them on one side (``prior`` / ``current``).

    Each finding's ``extra['truth_id']`` names its truth record; centres get ``jitter_mm`` of random error (a
    detector's centre is never exact). Used to score the comparison apart from the detector.
    """
    from inference.results import Finding

    rng = np.random.default_rng(seed)
    vol = getattr(pair, side)
    out = []
    for rec in pair.nodules:
        d = rec.get(f"{side}_diameter_mm")
        if not d:
            continue
        c = np.asarray(rec[f"{side}_mm"], float) + rng.normal(0.0, jitter_mm / np.sqrt(3), 3)
        kji = tuple(int(round(v)) for v in vol.patient_to_voxel(c))
        out.append(Finding(kind="nodule", probability=0.9, center_mm=tuple(float(v) for v in c), center_voxel=kji,
                           diameter_mm=float(d), texture=rec.get("texture", "solid"), extra={"truth_id": rec["id"]}))
    return out


def write_pair(pair: FollowupPair, out_dir: Path | str, *, patient_id: str = "FOLLOWUP0001") -> dict[str, Path]:
    """Write both scans as CT series (same patient, their own study UIDs and dates) plus ``truth.json``."""
    import json

    from inference.dicom.ct_writer import derived_uid, write_ct_series

    out = Path(out_dir)
    paths = {}
    for side, day in (("prior", pair.prior_date), ("current", pair.current_date)):
        vol = getattr(pair, side)
        base = vol.study_uid or "2.25.1"
        vol = vol.with_array(vol.hu, study_uid=derived_uid(base, side, "study"), series_uid=derived_uid(base, side))
        headers = {"PatientID": patient_id, "PatientName": "SYNTHETIC^FOLLOWUP", "StudyDate": day.strftime("%Y%m%d"),
                   "StudyTime": "101500", "SliceThickness": vol.spacing_mm[0], "BodyPartExamined": "CHEST",
                   "StudyDescription": "CT CHEST LOW DOSE SCREENING", "Manufacturer": "SYNTHETIC"}
        write_ct_series(vol, out / side, headers=headers)
        paths[side] = out / side
    doc = {"nodules": pair.nodules, "transform": pair.transform, "prior_date": pair.prior_date.isoformat(),
           "current_date": pair.current_date.isoformat(), "interval_days": pair.interval_days}
    (out / "truth.json").write_text(json.dumps(doc, indent=2))
    return paths
