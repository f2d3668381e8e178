"""PNG renderings of a study: axial, coronal and sagittal planes in lung and mediastinal windows.

Coronal and sagittal planes are resampled to square pixels. Lesion outlines (label boundaries) can be drawn
in colour: nodules yellow, emboli red.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from inference.volume import Volume

WINDOWS = {"lung": (-600.0, 1500.0), "mediastinum": (40.0, 400.0)}
COLOURS = {1: (255, 220, 0), 2: (255, 40, 40)}


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """HU → uint8 grey with a display window."""
    lo = level - width / 2
    return (np.clip((hu.astype(np.float32) - lo) / width, 0, 1) * 255).astype(np.uint8)


def _planes(vol: Volume, labels: np.ndarray | None, kji: tuple[int, int, int]):
    k, j, i = kji
    sz, sy, sx = vol.spacing_mm
    lab = labels if labels is not None else np.zeros(vol.shape, np.uint8)
    ax = (vol.hu[k], lab[k], (sy, sx))
    co = (vol.hu[::-1, j, :], lab[::-1, j, :], (sz, sx))  # superior at the top
    sa = (vol.hu[::-1, :, i], lab[::-1, :, i], (sz, sy))
    return ax, co, sa


def _square(img: np.ndarray, spacing: tuple[float, float], order: int) -> np.ndarray:
    f = spacing[0] / spacing[1]
    if abs(f - 1) < 1e-3:
        return img
    return ndi.zoom(img, (f, 1.0), order=order)


def render_planes(
    vol: Volume,
    labels: np.ndarray | None = None,
    center_kji: tuple[int, int, int] | None = None,
    *,
    outline: bool = True,
    windows: tuple[str, ...] = ("lung", "mediastinum"),
    width: int = 384,
) -> Image.Image:
    """A grid image: one row per window, columns axial | coronal | sagittal through ``center_kji``."""
    nz, ny, nx = vol.shape
    if center_kji is None:
        center_kji = (nz // 2, ny // 2, nx // 2)
    rows = []
    for name in windows:
        level, wid = WINDOWS[name]
        tiles = []
        for hu, lab, spc in _planes(vol, labels, center_kji):
            g = _square(window(hu, level, wid), spc, 1)
            lab_sq = _square(lab, spc, 0)
            rgb = np.repeat(g[..., None], 3, axis=2)
            if outline and lab_sq.any():
                for val, col in COLOURS.items():
                    m = lab_sq == val
                    edge = m & ~ndi.binary_erosion(m)
                    ring = ndi.binary_dilation(edge, iterations=1) & ~ndi.binary_dilation(m, iterations=0)
                    rgb[ring | edge] = col
            scale = width / rgb.shape[1]
            im = Image.fromarray(rgb).resize((width, max(1, int(rgb.shape[0] * scale))), Image.BILINEAR)
            tiles.append(im)
        h = max(t.height for t in tiles)
        row = Image.new("RGB", (width * len(tiles), h))
        for n, t in enumerate(tiles):
            row.paste(t, (n * width, (h - t.height) // 2))
        rows.append(row)
    out = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)))
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height
    return out


def focus_point(study) -> tuple[int, int, int]:
    """Voxel to render through: the first lesion's centre, else mid-lung below the carina."""
    vol = study.volume
    if study.lesions:
        return tuple(int(round(v)) for v in study.lesions[0]["center_voxel"])  # type: ignore[return-value]
    zs = np.flatnonzero(study.lung.any(axis=(1, 2)))
    k = int(zs[len(zs) // 2]) if len(zs) else vol.shape[0] // 2
    return (k, vol.shape[1] // 2, vol.shape[2] // 2 - vol.shape[2] // 6)


def render_study(study, path: Path | str, *, outline: bool = True, width: int = 384) -> Path:
    """Write ``path`` (PNG) with the three planes in lung and mediastinal windows through the focus."""
    img = render_planes(study.volume, study.labels, focus_point(study), outline=outline, width=width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path
