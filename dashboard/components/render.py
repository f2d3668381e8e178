"""Pure-numpy rendering for the review viewer: window/level, plane extraction with the right aspect,
overlay blending and display-click → voxel → LPS conversion. No Streamlit here (unit-tested directly).

Display conventions (radiological, for the usual axial acquisition):

* **axial** (a slice ``k``): rows ``j``, columns ``i`` — anterior at the top, patient's right on the left.
* **coronal** (a row ``j``): rows ``k``, columns ``i``; **sagittal** (a column ``i``): rows ``k``, columns
  ``j``. For both, superior is drawn at the top, so the rows are flipped when ``k`` runs towards the feet
  (direction[2, 2] > 0 means ``k`` runs towards the head in LPS, whose +z is superior).

Every plane is resampled (nearest neighbour) to square display pixels using the voxel spacing, so a 2.5 mm
slice stack is not squashed in the reformats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.findings import KINDS
from inference.volume import Volume

PLANES = ("axial", "coronal", "sagittal")
#: Window presets (level, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "Lung": (-600.0, 1500.0),
    "Mediastinum": (40.0, 400.0),
    "CTPA": (100.0, 700.0),
}
NODULE_RGB = KINDS["nodule"].colour  # the label mask (nodules and masses)
PE_RGB = KINDS["embolism"].colour
CROSS_RGB = (80, 200, 255)


def window_level(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to 0..255 grey with a linear window centred on ``level`` of ``width`` HU (uint8)."""
    width = max(float(width), 1.0)
    lo = float(level) - width / 2.0
    out = (np.asarray(hu, dtype=np.float32) - lo) * (255.0 / width)
    return np.clip(out, 0.0, 255.0).astype(np.uint8)


def plane_axes(plane: str) -> tuple[int, int, int]:
    """For ``plane``: (the array axis that is sliced, the axis drawn as rows, the axis drawn as columns)."""
    if plane == "axial":
        return 0, 1, 2
    if plane == "coronal":
        return 1, 0, 2
    if plane == "sagittal":
        return 2, 0, 1
    raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def flips_rows(plane: str, direction: np.ndarray) -> bool:
    """Whether the rows of ``plane`` are flipped for display (superior at the top in the reformats)."""
    return plane != "axial" and float(np.asarray(direction)[2, 2]) >= 0.0


def extract_plane(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2-D array of ``plane`` at ``index`` (rows, columns as in the module docstring; not flipped)."""
    axis, _, _ = plane_axes(plane)
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    return np.take(volume, index, axis=axis)


@dataclass(frozen=True)
class DisplayGrid:
    """How a plane's array maps to display pixels: output size and the source row/column of each pixel."""

    rows: np.ndarray  # source row for each display row
    cols: np.ndarray  # source column for each display column
    flip: bool

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)


def display_grid(
    plane: str,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    direction: np.ndarray,
    max_px: int = 512,
) -> DisplayGrid:
    """Square display pixels for ``plane``: the larger physical side gets ``max_px`` pixels."""
    _, row_axis, col_axis = plane_axes(plane)
    n_r, n_c = shape[row_axis], shape[col_axis]
    h_mm, w_mm = n_r * spacing_mm[row_axis], n_c * spacing_mm[col_axis]
    px_mm = max(h_mm, w_mm) / float(max_px)
    out_h, out_w = max(1, round(h_mm / px_mm)), max(1, round(w_mm / px_mm))
    rows = np.minimum((np.arange(out_h) + 0.5) * n_r / out_h, n_r - 1).astype(np.intp)
    cols = np.minimum((np.arange(out_w) + 0.5) * n_c / out_w, n_c - 1).astype(np.intp)
    flip = flips_rows(plane, direction)
    if flip:
        rows = rows[::-1]
    return DisplayGrid(rows=rows, cols=cols, flip=flip)


def resample(plane_2d: np.ndarray, grid: DisplayGrid) -> np.ndarray:
    """Nearest-neighbour resampling of a plane's array (H×W, or H×W×C) onto the display grid."""
    return plane_2d.take(grid.rows, axis=0).take(grid.cols, axis=1)  # two takes: ~4x faster than np.ix_


def heat_rgb(values: np.ndarray) -> np.ndarray:
    """A blue→yellow→red colour map for uint8 heatmap values (H, W) → (H, W, 3) float32 0..255."""
    t = np.asarray(values, dtype=np.float32) / 255.0
    r = np.clip(2.0 * t, 0, 1)
    g = np.clip(2.0 - 2.0 * np.abs(2.0 * t - 1.0) - 0.6, 0, 1)
    b = np.clip(1.0 - 2.0 * t, 0, 1)
    return np.stack([r, g, b], axis=-1) * 255.0


def blend(
    grey: np.ndarray,
    *,
    nodule: np.ndarray | None = None,
    pe: np.ndarray | None = None,
    heat: np.ndarray | None = None,
    heat_opacity: float = 0.4,
    mask_opacity: float = 0.45,
) -> np.ndarray:
    """Compose a grey slice (uint8 H×W) with optional overlays into an RGB uint8 image.

    Args:
        grey: windowed slice.
        nodule: nodule label slice (non-zero = nodule), drawn in amber.
        pe: embolism region slice (non-zero = region), drawn in red.
        heat: heatmap slice (uint8 0..255); only pixels above 10 % are tinted, by ``heat_opacity`` × value.
        heat_opacity: 0..1 strength of the heatmap.
        mask_opacity: 0..1 strength of the masks.

    Returns:
        (H, W, 3) uint8.
    """
    rgb = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=-1)
    if heat is not None and heat_opacity > 0:
        h = np.asarray(heat, dtype=np.float32)
        alpha = (np.clip(h / 255.0, 0, 1) * float(heat_opacity) * (h > 25))[..., None]
        rgb = rgb * (1 - alpha) + heat_rgb(h) * alpha
    for mask, colour in ((nodule, NODULE_RGB), (pe, PE_RGB)):
        if mask is not None:
            m = (np.asarray(mask) > 0)[..., None]
            rgb = np.where(m, rgb * (1 - mask_opacity) + np.asarray(colour, np.float32) * mask_opacity, rgb)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render_plane(
    volume: Volume,
    plane: str,
    index: int,
    *,
    level: float,
    width: float,
    nodule_mask: np.ndarray | None = None,
    pe_mask: np.ndarray | None = None,
    heatmap: np.ndarray | None = None,
    heat_opacity: float = 0.4,
    max_px: int = 512,
) -> np.ndarray:
    """One display-ready RGB image of ``plane`` at ``index`` with the overlays that are given (not None).

    Windowing and blending are per pixel and the resampling is nearest-neighbour, so they run on the
    plane's own grid and only the finished RGB image is resampled (same pixels, far less work when the
    display grid is larger than the plane).
    """
    grid = display_grid(plane, volume.shape, volume.spacing_mm, volume.direction, max_px=max_px)

    def cut(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else extract_plane(arr, plane, index)

    grey = window_level(extract_plane(volume.hu, plane, index), level, width)
    rgb = blend(grey, nodule=cut(nodule_mask), pe=cut(pe_mask), heat=cut(heatmap), heat_opacity=heat_opacity)
    return resample(rgb, grid)


def display_to_voxel(
    plane: str, index: int, x: float, y: float, shown_w: float, shown_h: float, volume: Volume, max_px: int = 512
) -> tuple[int, int, int]:
    """A click at display pixel ``(x, y)`` of an image shown ``shown_w`` × ``shown_h`` → voxel ``(k, j, i)``.

    The shown size may differ from the rendered size (the browser scales the image); the click is mapped
    back through the same display grid ``render_plane`` used.
    """
    grid = display_grid(plane, volume.shape, volume.spacing_mm, volume.direction, max_px=max_px)
    out_h, out_w = grid.shape
    r = int(np.clip(np.floor(y * out_h / max(shown_h, 1e-6)), 0, out_h - 1))
    c = int(np.clip(np.floor(x * out_w / max(shown_w, 1e-6)), 0, out_w - 1))
    axis, row_axis, col_axis = plane_axes(plane)
    kji = [0, 0, 0]
    kji[axis] = int(np.clip(index, 0, volume.shape[axis] - 1))
    kji[row_axis] = int(grid.rows[r])
    kji[col_axis] = int(grid.cols[c])
    return kji[0], kji[1], kji[2]


def voxel_to_lps(volume: Volume, kji: tuple[int, int, int]) -> tuple[float, float, float]:
    """LPS millimetres ``(x, y, z)`` of a voxel centre, rounded to 0.01 mm."""
    x, y, z = volume.voxel_to_patient(np.asarray(kji, dtype=np.float64))
    return round(float(x), 2), round(float(y), 2), round(float(z), 2)


def voxel_to_display(
    plane: str, kji: tuple[int, int, int], volume: Volume, max_px: int = 512
) -> tuple[int, int] | None:
    """Display pixel ``(x, y)`` of a voxel on ``plane`` (None if it is not on that plane's grid)."""
    grid = display_grid(plane, volume.shape, volume.spacing_mm, volume.direction, max_px=max_px)
    _, row_axis, col_axis = plane_axes(plane)
    rows = np.flatnonzero(grid.rows == kji[row_axis])
    cols = np.flatnonzero(grid.cols == kji[col_axis])
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols.mean()), int(rows.mean())


def draw_marker(
    rgb: np.ndarray, xy: tuple[int, int], colour: tuple[int, int, int] = CROSS_RGB, size: int = 9
) -> np.ndarray:
    """A copy of ``rgb`` with an open cross (gap in the middle) at display pixel ``xy``."""
    out = rgb.copy()
    x, y = xy
    h, w = out.shape[:2]
    for d in range(3, size + 1):
        for yy, xx in ((y, x - d), (y, x + d), (y - d, x), (y + d, x)):
            if 0 <= yy < h and 0 <= xx < w:
                out[yy, xx] = colour
    return out


def coverage_warnings(volume: Volume, full_chest_mm: float = 200.0) -> list[str]:
    """Plain-language warnings about the geometry: partial cranio-caudal coverage and the volume's own."""
    warnings = []
    extent_z = volume.shape[0] * volume.spacing_mm[0]
    if extent_z < full_chest_mm:
        warnings.append(
            f"Partial coverage: the series spans {extent_z:.0f} mm cranio-caudally (a full chest is about "
            f"{full_chest_mm:.0f} mm); findings outside it cannot be excluded."
        )
    for w in volume.warnings or []:
        text = w.get("message") or w.get("reason") or w.get("code") if isinstance(w, dict) else str(w)
        if text:
            warnings.append(str(text))
    return warnings
