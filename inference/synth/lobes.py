"""Lobes and fissures: oblique fissures on both sides, the horizontal fissure on the right.

Each fissure is a gently curved, slightly wavy surface ``z = f(x, y)`` fitted to the lung's own extent: the
oblique fissure rises from the anterior lung base to about two thirds of the lung height posteriorly (T4-T5
level), the horizontal fissure runs at about 55 % of the right lung's height in front of the oblique one.
Lobes: 1 RUL, 2 RML, 3 RLL, 4 LUL, 5 LLL (0 outside the lungs). Fissures are drawn at full resolution as
thin (0.25-0.5 mm) soft-tissue sheets with partial volume (a faint line, denser than the parenchyma, that
vessels do not cross because each lobe has its own vascular tree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.synth.grid import Grid

LOBES = {1: "RUL", 2: "RML", 3: "RLL", 4: "LUL", 5: "LLL"}
MIDLINE_X = 6.0


@dataclass
class Fissures:
    """Per side (0 right, 1 left): lung box ``(ymin, ymax, zmin, zmax)`` mm and surface parameters."""

    box: np.ndarray  # (2, 4)
    oblique: np.ndarray  # (2, 3): height fraction at the front, rise to the back, curvature
    horizontal: float  # right horizontal fissure height fraction
    waves: np.ndarray  # (3, 4, 4): per surface 4 waves (kx, ky, phase, amplitude mm)
    thickness: float  # mm


def sample_fissures(lung: np.ndarray, grid: Grid, rng: np.random.Generator) -> Fissures:
    """Fissure surfaces for the lungs of occupancy map ``lung`` on ``grid`` (any resolution)."""
    z, y, x = grid.axes()
    box = np.zeros((2, 4))
    for side in (0, 1):
        cols = (x < MIDLINE_X) if side == 0 else (x >= MIDLINE_X)
        m = lung[:, :, cols] > 0.5
        if not m.any():
            box[side] = (-80.0, 80.0, -120.0, 90.0)
            continue
        kk, jj, _ = np.nonzero(m[:, ::2, ::2])
        box[side] = (y[jj.min() * 2], y[jj.max() * 2], z[kk.min()], z[kk.max()])
    oblique = np.stack([[rng.uniform(0.0, 0.08), rng.uniform(0.58, 0.7), rng.uniform(-0.15, 0.05)],
                        [rng.uniform(0.0, 0.08), rng.uniform(0.62, 0.74), rng.uniform(-0.15, 0.05)]])
    waves = np.zeros((3, 4, 4))
    k = rng.normal(size=(3, 4, 2))
    k /= np.linalg.norm(k, axis=2, keepdims=True)
    waves[:, :, :2] = k * (2 * np.pi / rng.uniform(50.0, 140.0, (3, 4, 1)))
    waves[:, :, 2] = rng.uniform(0, 2 * np.pi, (3, 4))
    waves[:, :, 3] = rng.normal(0, 1.8, (3, 4))
    return Fissures(box, oblique, float(rng.uniform(0.5, 0.6)), waves, float(rng.uniform(0.25, 0.5)))


def _wavy(w: np.ndarray, x, y):
    out = 0.0
    for kx, ky, ph, amp in w:
        out = out + amp * np.sin(kx * x + ky * y + ph)
    return out


def oblique_z(f: Fissures, side: int, x, y):
    """Height (mm) of the oblique fissure of ``side`` (0 right, 1 left) above body point ``(x, y)``."""
    ymin, ymax, zmin, zmax = f.box[side]
    u = np.clip((y - ymin) / max(ymax - ymin, 1.0), -0.2, 1.2)
    a0, a1, c = f.oblique[side]
    return zmin + (zmax - zmin) * (a0 + a1 * u + c * (u - 0.5) ** 2) + _wavy(f.waves[side], x, y)


def horizontal_z(f: Fissures, x, y):
    """Height (mm) of the right horizontal fissure."""
    ymin, ymax, zmin, zmax = f.box[0]
    u = np.clip((y - ymin) / max(ymax - ymin, 1.0), -0.2, 1.2)
    return zmin + (zmax - zmin) * (f.horizontal - 0.04 * u) + _wavy(f.waves[2], x, y)


def lobe_of(f: Fissures, xyz: np.ndarray) -> np.ndarray:
    """Lobe number (1..5, see ``LOBES``) of body points ``xyz`` (N, 3) assumed inside a lung."""
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    right = x < MIDLINE_X
    out = np.where(right, 1, 4)
    zr, zl = oblique_z(f, 0, x, y), oblique_z(f, 1, x, y)
    lower = np.where(right, z < zr, z < zl)
    out = np.where(lower, np.where(right, 3, 5), out)
    middle = right & ~lower & (z < horizontal_z(f, x, y))
    return np.where(middle, 2, out)


def render_fissures(hu: np.ndarray, grid: Grid, lung: np.ndarray, f: Fissures, value: float = 30.0) -> int:
    """Paint the fissures (thin sheets with partial volume) into ``hu`` inside ``lung`` (bool, full grid).

    Returns:
        The number of voxels touched (occupancy > 0.05).
    """
    z, y, x = grid.axes()
    X, Y = x[None, :], y[:, None]
    h = 0.5 * (grid.spacing[1] + grid.spacing[2])
    right = X < MIDLINE_X
    surfaces = []
    zo = np.where(right, oblique_z(f, 0, X, Y), oblique_z(f, 1, X, Y)).astype(np.float32)
    surfaces.append((zo, np.ones_like(zo, bool)))
    zh = horizontal_z(f, X, Y).astype(np.float32)
    surfaces.append((zh, right & (zh > zo)))
    touched = 0
    t = f.thickness
    for zs, valid in surfaces:
        gy, gx = np.gradient(zs, grid.spacing[1], grid.spacing[2])
        norm = np.sqrt(1.0 + gx * gx + gy * gy).astype(np.float32)
        # voxel extent along the sheet normal (in-plane pixel vs slice thickness)
        w = (np.sqrt((gx * gx + gy * gy) * h * h + grid.thickness**2) / norm).astype(np.float32)
        for k in range(grid.shape[0]):
            d = (z[k] - zs) / norm
            band = valid & (np.abs(d) < 0.5 * w + t) & lung[k]
            if not band.any():
                continue
            dd, ww = d[band], w[band]
            occ = (np.minimum(dd + 0.5 * ww, 0.5 * t) - np.maximum(dd - 0.5 * ww, -0.5 * t)) / ww
            occ = np.clip(occ, 0.0, 1.0)
            sl = hu[k]
            sl[band] += occ * (value - sl[band])
            touched += int((occ > 0.05).sum())
    return touched
