"""Procedural adult chest: body wall, bones, mediastinum, heart, great vessels, lungs, diaphragm, upper abdomen.

Everything is an analytic shape in body millimetres (see ``grid.py``) rendered with partial-volume edges on a
*coarse* grid (in-plane pixel up to ~1.5 mm; the fine pulmonary vessels, airways and lesions are drawn later
at full resolution). Shapes are painted outer to inner, each over the previous ones. Sizes are for an
average adult and are scaled per patient (``sample_patient``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.synth.grid import Grid, capsule_occupancy, paint


@dataclass
class Patient:
    """Random anatomical parameters (mm, HU) of one synthetic patient."""

    body_a: float  # half width of the trunk
    body_b: float  # half depth of the trunk
    fat: float  # subcutaneous fat thickness
    muscle: float  # chest-wall muscle thickness
    z_apex: float  # lung apex (carina at 0)
    dome_r: float  # right diaphragm dome height
    dome_l: float
    vert_h: float  # vertebra + disc height
    heart_c: np.ndarray  # heart centre (x, y, z)
    heart_ax: np.ndarray  # heart semi-axes
    scale: float  # overall vascular / mediastinal scale
    cartilage_ca: float  # costal cartilage calcification 0..1 (age)
    liver_hu: float
    blood_hu: float
    lung_hu: float  # mean parenchyma HU (inspiration depth)
    gravity_hu: float  # dependent density gradient over the AP depth

    @property
    def cav_a(self) -> float:
        return self.body_a - 2.5 - 1.35 * self.fat - self.muscle

    @property
    def cav_b(self) -> float:
        return self.body_b - 2.5 - 1.0 * self.fat - 1.6 * self.muscle


def sample_patient(rng: np.random.Generator) -> Patient:
    """Draw an adult patient (body habitus, organ heights, tissue densities)."""
    s = float(rng.normal(1.0, 0.06))
    fat = float(rng.uniform(6.0, 32.0))
    return Patient(
        body_a=(140.0 + 1.35 * fat) * s,
        body_b=(96.0 + 0.8 * fat) * s,
        fat=fat,
        muscle=float(rng.uniform(9.0, 14.0)),
        z_apex=float(rng.normal(92.0, 6.0)) * s,
        dome_r=float(rng.normal(-98.0, 8.0)) * s,
        dome_l=float(rng.normal(-112.0, 8.0)) * s,
        vert_h=25.0 * s,
        heart_c=np.array([22.0, -22.0, -78.0]) * s + rng.normal(0, 4.0, 3),
        heart_ax=np.array([60.0, 46.0, 52.0]) * s * rng.uniform(0.92, 1.12),
        scale=s,
        cartilage_ca=float(rng.uniform(0.0, 1.0)),
        liver_hu=float(rng.normal(58.0, 6.0)),
        blood_hu=float(rng.normal(42.0, 4.0)),
        lung_hu=float(rng.uniform(-885.0, -830.0)),
        gravity_hu=float(rng.uniform(30.0, 90.0)),
    )


# --- HU tables ------------------------------------------------------------------------------------------
def hu_table(p: Patient, contrast: str, iodine_gain: float, rng: np.random.Generator) -> dict[str, float]:
    """Tissue → HU for this patient and phase (``none`` or ``ctpa``)."""
    t = {
        "skin": 35.0, "fat": float(rng.uniform(-110, -85)), "muscle": float(rng.uniform(45, 58)),
        "cortex": float(rng.uniform(750, 1100)), "marrow": float(rng.uniform(180, 300)),
        "cartilage": 110.0 + 500.0 * p.cartilage_ca**3, "csf": 12.0, "disc": 80.0,
        "liver": p.liver_hu, "spleen": 48.0, "stomach": 18.0, "myocardium": 44.0,
        "pa": p.blood_hu, "right_heart": p.blood_hu, "aorta": p.blood_hu, "left_heart": p.blood_hu,
        "svc": p.blood_hu, "vein": p.blood_hu, "esophagus": 40.0, "lymph": 35.0,
        "table": 120.0, "foam": -880.0,
    }
    if contrast == "ctpa":
        g = iodine_gain
        pa = p.blood_hu + g * float(rng.uniform(270, 420))
        left = p.blood_hu + g * float(rng.uniform(120, 260))
        t.update(
            pa=pa, right_heart=pa * float(rng.uniform(0.9, 1.05)), aorta=left, left_heart=left * 1.03,
            vein=left, svc=p.blood_hu + g * float(rng.uniform(500, 1100)),
            myocardium=44.0 + 0.35 * (left - p.blood_hu), liver=p.liver_hu + g * 18.0,
            spleen=70.0 + g * 45.0, muscle=t["muscle"] + 6.0,
        )
    return t


# --- shape helpers (all return signed distance in mm, negative inside) --------------------------------
def _superellipse_sd(x, y, a, b, p: float = 2.4):
    r = np.sqrt(x * x + y * y) + 1e-3
    f = (np.abs(x / a) ** p + np.abs(y / b) ** p) ** (1.0 / p) + 1e-6
    return r * (1.0 - 1.0 / f)


def _ellipsoid_sd(z, y, x, c, ax, rot: np.ndarray | None = None):
    dx, dy, dz = x - c[0], y - c[1], z - c[2]
    if rot is not None:
        dx, dy, dz = (rot[0, 0] * dx + rot[0, 1] * dy + rot[0, 2] * dz,
                      rot[1, 0] * dx + rot[1, 1] * dy + rot[1, 2] * dz,
                      rot[2, 0] * dx + rot[2, 1] * dy + rot[2, 2] * dz)
    r = np.sqrt(dx * dx + dy * dy + dz * dz) + 1e-3
    q = np.sqrt((dx / ax[0]) ** 2 + (dy / ax[1]) ** 2 + (dz / ax[2]) ** 2) + 1e-6
    return r * (1.0 - 1.0 / q)


def _occ(sd, w: float):
    return np.clip(0.5 - sd / w, 0.0, 1.0).astype(np.float32, copy=False)


def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]])


def diaphragm_z(p: Patient, x, y):
    """Height of the diaphragm surface (two domes, deeper posterior recesses)."""
    s = p.scale
    dr = p.dome_r - 32.0 * ((x + 62 * s) / (80 * s)) ** 2 - 30.0 * ((y + 5) / (80 * s)) ** 2
    dl = p.dome_l - 32.0 * ((x - 62 * s) / (80 * s)) ** 2 - 30.0 * ((y + 5) / (80 * s)) ** 2
    return np.maximum(dr, dl) - 28.0 * np.clip(y / (70 * s), 0, None) ** 2


def cavity_scale(p: Patient, z):
    """Narrowing of the thoracic cage toward the apex (1 below, → ~0.55 at the thoracic inlet)."""
    u = np.clip((z - (p.z_apex - 90.0)) / 110.0, 0.0, 1.0)
    return 1.0 - 0.42 * u**2


def lung_sd(p: Patient, z, y, x):
    """Signed distance of both lungs (air spaces inside the pleura, vessels included)."""
    s = p.scale
    k = cavity_scale(p, z)
    cav = _superellipse_sd(x, y - 8.0, (p.cav_a - 1.5) * k, (p.cav_b - 1.5) * k, 2.2)
    # mediastinum: a midline band, wider anteriorly, with the spine bulging into the posterior midline
    half = 18.0 * s + 14.0 * s * np.clip(-(y - 10.0) / 40.0, 0.0, 1.0)
    med = half - np.abs(x - 6.0 * s)
    spine = 28.0 * s - np.sqrt(x * x + 0.7 * (y - (p.body_b - 0.6 * p.fat - 58.0 * s)) ** 2)
    dia = diaphragm_z(p, x, y) - z
    # apex: two domes
    za = p.z_apex
    xa = np.abs(x) - 0.45 * p.cav_a * k
    ra = 0.42 * p.cav_a
    apex = np.sqrt(np.clip(z - (za - ra), 0, None) ** 2 + np.clip(np.abs(xa) - 0.3 * ra, 0, None) ** 2
                   + (0.45 * np.clip(np.abs(y - 15.0) - 25.0, 0, None)) ** 2) - ra
    out = np.maximum(cav, med)
    for part in (spine, dia, apex):
        out = np.maximum(out, part)
    return out


# --- the renderer -----------------------------------------------------------------------------------------
AORTA = [(12, -28, -55, 15), (-2, -30, -18, 15), (-6, -24, 22, 14.5), (2, -8, 40, 13.5), (20, 16, 34, 12.5),
         (26, 34, 8, 12), (24, 40, -60, 11.5), (14, 44, -150, 11), (8, 40, -260, 10.5)]
SVC = [(-40, -35, 120, 8), (-30, -24, 55, 10), (-30, -18, -35, 10), (-28, -12, -55, 12)]
LBCV = [(55, -35, 95, 7), (0, -38, 70, 7.5), (-30, -24, 55, 8)]
ARCH_BRANCHES = [[(-4, -12, 42, 7), (-18, -14, 130, 6)], [(6, -6, 45, 5), (14, -6, 130, 5)],
                 [(16, 6, 40, 6), (32, 8, 130, 6)]]
ESOPHAGUS = [(4, 32, 140, 8), (8, 32, 0, 8), (16, 24, -110, 8), (30, 8, -150, 9)]
IVC = [(-24, 4, -260, 13), (-26, -2, -110, 14), (-28, -10, -80, 13)]


def _tube(hu, grid: Grid, pts, value: float, scale: float, lung: np.ndarray | None) -> None:
    pts = np.asarray(pts, dtype=np.float64)
    for a, b in zip(pts[:-1], pts[1:]):
        res = capsule_occupancy(grid, a[:3] * scale, b[:3] * scale, a[3] * scale, b[3] * scale)
        if res is None:
            continue
        box, occ = res
        paint(hu, box, occ, value)
        if lung is not None:
            lung[box] *= 1.0 - occ


def render_background(grid: Grid, p: Patient, t: dict[str, float], rng: np.random.Generator, *,
                      lung_fn=None, fissures: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render everything except the intrapulmonary vessels, airways and lesions.

    ``lung_fn(p, z, y, x)`` replaces the analytic lung signed distance (``lung_sd``); ``fissures`` draws
    the legacy faint fissure planes on this grid.

    Returns:
        ``(hu, lung, body)``: float32 HU, lung occupancy 0..1 and body occupancy 0..1 on ``grid``.
    """
    z, y, x = grid.axes()
    Z, Y, X = z[:, None, None], y[None, :, None], x[None, None, :]
    w = float(max(grid.spacing[1], grid.spacing[2]))
    s = p.scale
    hu = np.full(grid.shape, -1000.0, dtype=np.float32)

    # table: curved carbon tray with a foam core under the back
    ty = p.body_b + 1.0 + 0.0006 * x[None, :] ** 2
    for off, th, val in ((0.0, 2.5, t["table"]), (2.5, 14.0, t["foam"]), (16.5, 2.5, t["table"])):
        yy = y[:, None] - ty - off
        occ2 = np.clip(np.minimum(yy, th - yy) / w + 0.5, 0, 1) * (np.abs(x[None, :]) < 230)
        hu += occ2[None].astype(np.float32) * (val - hu)

    # body wall: skin, fat (thicker posterolaterally), muscle
    wide = 1.0 + 0.10 * np.clip((Z - (p.z_apex - 40.0)) / 60.0, 0.0, 1.0)  # shoulders
    ab, bb = p.body_a * wide, p.body_b * np.ones_like(wide)
    body_sd = _superellipse_sd(X, Y, ab, bb, 2.6)
    body = _occ(body_sd, w)
    hu += body * (t["skin"] - hu)
    ang = np.arctan2(X, -Y)  # 0 anterior, ±pi posterior
    fat_t = p.fat * (1.0 + 0.35 * np.sin(np.abs(ang)) - 0.25 * (np.abs(ang) > 2.6))
    paint(hu, np.s_[:, :, :], _occ(body_sd + 2.5, w), t["fat"])
    musc_sd = body_sd + 2.5 + fat_t
    paint(hu, np.s_[:, :, :], _occ(musc_sd, w), t["muscle"])
    # an intermuscular fat plane (pectoralis major/minor) anteriorly
    plane = np.abs(musc_sd + 0.45 * p.muscle) - 1.2
    paint(hu, np.s_[:, :, :], _occ(plane, w) * (np.abs(ang) < 1.2) * (Z > p.dome_r - 20), t["fat"])

    # thoracic cavity (inside the ribs) filled with mediastinal fat, then lungs carved out
    k = cavity_scale(p, Z)
    cav_sd = _superellipse_sd(X, Y - 8.0, p.cav_a * k, p.cav_b * k, 2.2)
    paint(hu, np.s_[:, :, :], _occ(cav_sd, w), t["fat"])
    _ribs(hu, grid, p, t, X, Y, Z, cav_sd, k)
    _spine(hu, grid, p, t, X, Y, Z, w)

    # upper abdomen below the diaphragm: liver right, stomach and spleen left (only slices below the domes)
    kd = int(np.searchsorted(z, max(p.dome_r, p.dome_l) + 6.0))
    if kd > 0:
        ha, za, ca = hu[:kd], Z[:kd], cav_sd[:kd]
        below = _occ(za - diaphragm_z(p, X, Y) + 3.0, grid.thickness) * _occ(ca - 4.0, w)
        ha += below * (t["liver"] - ha)
        stom = _ellipsoid_sd(za, Y, X, np.array([55, -15, p.dome_l - 50]) * s, np.array([48, 40, 45]) * s)
        paint(ha, np.s_[:, :, :], _occ(stom, w) * below, t["stomach"])
        gas = _ellipsoid_sd(za, Y, X, np.array([55, -35, p.dome_l - 30]) * s, np.array([34, 22, 16]) * s)
        paint(ha, np.s_[:, :, :], _occ(np.maximum(gas, stom), w), -990.0)
        spl = _ellipsoid_sd(za, Y, X, np.array([88, 50, p.dome_l - 55]) * s, np.array([22, 40, 45]) * s)
        paint(ha, np.s_[:, :, :], _occ(spl, w) * below, t["spleen"])

    # lungs: graded parenchyma (dependent density), textured later by the vessel tree and noise
    lung = _occ((lung_fn or lung_sd)(p, Z, Y, X), w)
    lung_hu = p.lung_hu + p.gravity_hu * np.clip((Y + 60.0) / 150.0, 0, 1) ** 2
    hu += lung * (lung_hu - hu)
    if fissures:
        _fissures(hu, lung, p, X, Y, Z, w)

    # mediastinum: heart with epicardial fat, great vessels, oesophagus (lungs carved where they lie)
    _heart(hu, grid, p, t, Z, Y, X, w, lung)
    _tube(hu, grid, AORTA, t["aorta"], s, lung)
    for br in ARCH_BRANCHES:
        _tube(hu, grid, br, t["aorta"], s, lung)
    _tube(hu, grid, SVC, t["svc"], s, lung)
    _tube(hu, grid, LBCV, t["svc"] * 0.8 + 8.0, s, lung)
    _tube(hu, grid, IVC, t["vein"] * 0.6 + 20.0, s, None)
    _tube(hu, grid, ESOPHAGUS, t["esophagus"], s, lung)
    return hu, lung, body


def _shell(sel: np.ndarray, Z, Y, X):
    kk, jj, ii = np.nonzero(sel)
    return (kk, jj, ii), Z.ravel()[kk], Y.ravel()[jj], X.ravel()[ii]


def _ribs(hu, grid, p: Patient, t, X, Y, Z, cav_sd, k) -> None:
    """Twelve rib pairs sloping down anteriorly, costal cartilages, sternum, clavicles, scapulae.

    Computed only on the voxels of the shell just outside the cavity (a few % of the volume).
    """
    s = p.scale
    idx, zs, ys, xs = _shell((cav_sd > -2.0) & (cav_sd < 11.0), Z, Y, X)
    csd = cav_sd[idx]
    phi = np.arctan2(np.abs(xs), ys - 8.0)  # 0 posterior midline → pi anterior
    drop = 2.6 * p.vert_h * (1.0 - np.cos(phi)) / 2.0
    z0 = p.z_apex - 18.0
    n = np.clip(np.round((z0 - drop - zs) / p.vert_h), 0, 11)
    dzr = zs - (z0 - drop - n * p.vert_h)
    q = np.sqrt(((csd - 3.5) / 3.0) ** 2 + (dzr / 5.5) ** 2)
    phi_end = np.where(n < 7, np.pi * 0.80, np.where(n < 10, np.pi * (0.80 - 0.05 * (n - 6)), np.pi * 0.5))
    inside = (phi > 0.32) & (phi < phi_end)
    cart = (phi >= phi_end) & (phi < np.pi - 0.12) & (n < 10)
    w = max(grid.spacing[1], grid.spacing[2]) / 4.0
    bone = np.clip((1.0 - q) / w * 0.5 + 0.5, 0, 1).astype(np.float32)
    marrow = np.clip((0.6 - q) / w * 0.5 + 0.5, 0, 1).astype(np.float32)
    v = hu[idx]
    v += bone * inside * (t["cortex"] - v)
    v += marrow * inside * (t["marrow"] - v)
    v += bone * cart * (t["cartilage"] - v)
    hu[idx] = v
    # sternum: manubrium (wide) to xiphoid, just in front of the cavity
    idx, zs, ys, xs = _shell((cav_sd > -3.0) & (cav_sd < 16.0) & (np.abs(X) < 30 * s) & (Y < 0), Z, Y, X)
    ys_ = -(p.cav_b * cavity_scale(p, zs)) + 8.0 - 6.0
    sw = np.where(zs > p.z_apex - 70.0, 22.0, 13.0) * s
    sq = (np.abs(xs / sw) ** 4 + np.abs((ys - ys_) / 6.0) ** 4) ** 0.25
    zin = (zs < p.z_apex - 40.0) & (zs > p.dome_r - 35.0)
    ws = 2.0 * max(grid.spacing[1], grid.spacing[2]) / 13.0
    v = hu[idx]
    v += (np.clip((1 - sq) / ws + 0.5, 0, 1) * zin).astype(np.float32) * (t["cortex"] * 0.8 - v)
    v += (np.clip((0.7 - sq) / ws + 0.5, 0, 1) * zin).astype(np.float32) * (t["marrow"] - v)
    hu[idx] = v
    # clavicles and scapulae
    for side in (-1, 1):
        a = np.array([side * 22, -(p.cav_b * 0.62) - 4, p.z_apex - 45]) * np.array([s, 1, 1])
        b = np.array([side * p.body_a * 0.85, -p.body_b * 0.35, p.z_apex - 18])
        _tube(hu, grid, [(*a, 7.0), (*b, 7.0)], t["cortex"] * 0.85, 1.0, None)
    idx, zs, ys, xs = _shell(np.abs(cav_sd - (0.8 * p.muscle + 6.0)) < 2.2, Z, Y, X)
    phi = np.arctan2(np.abs(xs), ys - 8.0)
    scap = (phi > 0.55) & (phi < 1.25) & (zs > p.z_apex - 170) & (zs < p.z_apex - 25)
    v = hu[idx]
    v[scap] = t["cortex"] * 0.75
    hu[idx] = v


def _spine(hu, grid, p: Patient, t, X, Y, Z, w) -> None:
    """Vertebral bodies with discs, spinal canal, posterior arches, transverse and spinous processes."""
    s = p.scale
    vy = p.body_b - 0.6 * p.fat - 58.0 * s
    phase = np.mod(Z, p.vert_h)
    disc = (phase < 5.0).astype(np.float32)
    body = _superellipse_sd(X, Y - vy, 20.0 * s, 17.0 * s, 2.3)
    ob = _occ(body, w)
    hu += ob * ((disc * t["disc"] + (1 - disc) * t["cortex"]) - hu)
    hu += _occ(body + 2.2, w) * (1 - disc) * (t["marrow"] - hu)
    arch = _superellipse_sd(X, Y - vy - 30.0 * s, 17.0 * s, 14.0 * s, 2.0)
    hu += _occ(arch, w) * (t["cortex"] * 0.9 - hu)
    hu += _occ(_superellipse_sd(X, Y - vy - 29.0 * s, 10.0 * s, 9.0 * s, 2.0), w) * (t["csf"] - hu)
    spin = np.maximum(np.abs(X) - 4.5, np.abs(Y - vy - 47.0 * s) - 9.0 * s)
    hu += _occ(spin, w) * (phase > 8) * (t["cortex"] * 0.9 - hu)
    trans = np.maximum(np.abs(np.abs(X) - 24.0 * s) - 14.0 * s, np.abs(Y - vy - 24.0 * s) - 5.0)
    hu += _occ(trans, w) * (phase > 10) * (t["cortex"] * 0.9 - hu)
    # paraspinal muscles are the default muscle; add a fat rim between them and the posterior skin fat
    _ = grid


def _fissures(hu, lung, p: Patient, X, Y, Z, w) -> None:
    """Oblique fissures on both sides and the right horizontal fissure, as faint thin lines."""
    d_obl = (Z - (-40.0 * p.scale + 0.95 * Y)) / 1.38
    d_hor = np.where((X < -10) & (Y < 15), Z - (-22.0 * p.scale + 0.1 * Y), 1e3)
    line = np.maximum(np.clip(1.0 - np.abs(d_obl) / (0.5 * w + 0.3), 0, 1),
                      np.clip(1.0 - np.abs(d_hor) / (0.5 * w + 0.3), 0, 1))
    hu += (line * lung * (0.35 / max(w, 0.5))).astype(np.float32) * (-150.0 - hu)


def _heart(hu, grid, p: Patient, t, Z, Y, X, w, lung) -> None:
    """Heart: epicardial fat, myocardium, four blood pools (distinct only with contrast)."""
    c, ax = p.heart_c, p.heart_ax
    rot = _rot_z(-38.0)
    box = grid.bbox(c - ax.max() - 12, c + ax.max() + 12)
    if box is None:
        return
    z, y, x = Z[box[0]], Y[:, box[1]], X[:, :, box[2]]
    sub = hu[box]
    ls = lung[box]
    fat = _occ(_ellipsoid_sd(z, y, x, c, ax + 6.0, rot), w)
    sub += fat * (t["fat"] - sub)
    ls *= 1.0 - fat
    sub += _occ(_ellipsoid_sd(z, y, x, c, ax + 0.5, rot), w) * (t["myocardium"] - sub)
    sub += _occ(_ellipsoid_sd(z, y, x, c, ax, rot), w) * (t["myocardium"] - sub)
    sc = p.scale
    chambers = (
        ("right_heart", c + np.array([-48, -8, 16]) * sc, np.array([26, 26, 30]) * sc),  # RA
        ("right_heart", c + np.array([-8, -26, -2]) * sc, np.array([36, 20, 34]) * sc),  # RV
        ("left_heart", c + np.array([-10, 40, 30]) * sc, np.array([34, 18, 20]) * sc),  # LA
        ("left_heart", c + np.array([22, 10, -6]) * sc, np.array([24, 22, 34]) * sc),  # LV
    )
    for name, cc, aa in chambers:
        sub += _occ(_ellipsoid_sd(z, y, x, cc, aa, rot), w) * (t[name] - sub)
