"""The client-side volume viewer: NiiVue (WebGL2) in a build-free Streamlit component.

The study goes to the browser once, as NIfTI files served by Streamlit's media endpoint (an unguessable
content-hash URL, the same mechanism ``st.image`` uses); slice scrolling (wheel, arrow keys), window/level
drag and presets, zoom, pan, the HU probe, the caliper, orientation labels, the scale bar and the linked
crosshairs then run in the browser without a server round trip. Python hears only about a click that marks
a point (for the missed-finding form). See ``volume_frontend/viewer.js`` for the mouse and key map.

Geometry: ``Volume`` is LPS (``patient = origin + direction @ ([i, j, k] * spacing)``); NIfTI is RAS, so the
affine's first two rows are negated. The component gets the inverse (LPS mm → ``(i, j, k)``) to name the
voxel under the pointer, and reports clicks in LPS mm; ``Volume.patient_to_voxel`` turns them into
``(k, j, i)``.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import streamlit as st
import streamlit.components.v1 as components
from PIL import Image

from dashboard import data
from dashboard.components.render import WINDOW_PRESETS, window_level
from inference.volume import Volume

FRONTEND = Path(__file__).resolve().parent / "volume_frontend"
_component = components.declare_component("triage_volume_viewer", path=str(FRONTEND))

#: Window presets on keys 1..4 (level, width in HU).
PRESETS: list[tuple[str, str, float, float]] = [
    ("1", "Lung", *WINDOW_PRESETS["Lung"]),
    ("2", "Mediastinum", *WINDOW_PRESETS["Mediastinum"]),
    ("3", "CTPA", *WINDOW_PRESETS["CTPA"]),
    ("4", "Bone", 400.0, 1800.0),
]
#: Overlay looks: NiiVue colour maps (custom ones defined here) and the legend swatch / ramp.
NODULE_CMAP = {"R": [0, 255], "G": [0, 196], "B": [0, 0], "A": [0, 255], "I": [0, 255]}
MASS_CMAP = {"R": [0, 255], "G": [0, 90], "B": [0, 40], "A": [0, 255], "I": [0, 255]}
PE_CMAP = {"R": [0, 40], "G": [0, 220], "B": [0, 255], "A": [0, 255], "I": [0, 255]}
READER_CMAP = {"R": [0, 90], "G": [0, 230], "B": [0, 120], "A": [0, 255], "I": [0, 255]}
HEAT_RAMP = ["#000000", "#7a0000", "#ff3300", "#ffcc00", "#ffffff"]  # NiiVue "hot"
HEAT_MIN = 0.2  # heatmap values below this are transparent (the colour scale starts here)
READER_RADIUS_MM = 3.0


@dataclass(frozen=True)
class Click:
    """A point the reader clicked on the images."""

    seq: int
    lps_mm: tuple[float, float, float]
    kji: tuple[int, int, int]
    plane: str


def ras_affine(volume: Volume) -> np.ndarray:
    """The NIfTI (RAS) affine of ``volume``: its LPS affine with the x and y rows negated."""
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine


def lps_to_ijk(volume: Volume) -> list[list[float]]:
    """4x4 matrix (row-major lists) mapping homogeneous LPS mm to voxel ``(i, j, k)``."""
    return np.linalg.inv(volume.affine).round(8).tolist()


def nifti_bytes(
    volume: Volume,
    array: np.ndarray | None = None,
    *,
    compress: bool = False,
    slope: float = 1.0,
    window: tuple[float, float] | None = None,
) -> bytes:
    """``array`` (default: the HU volume; ``(k, j, i)`` like ``volume.hu``) as a NIfTI-1 file in memory.

    Args:
        volume: gives the geometry (spacing, origin, direction).
        array: another array on the same grid (mask, heatmap), or None for the CT itself.
        compress: gzip (level 1) the file: masks shrink to almost nothing, CT to about half.
        slope: ``scl_slope`` (e.g. 1/255 for a uint8 heatmap that means 0..1).
        window: ``(level, width)`` stored as ``cal_min``/``cal_max`` (the viewer's first window).
    """
    arr = volume.hu if array is None else array
    if arr.shape != volume.shape:
        raise ValueError(f"array shape {arr.shape} differs from the volume's {volume.shape}")
    img = nib.Nifti1Image(np.asarray(arr).transpose(2, 1, 0), ras_affine(volume))
    img.header.set_xyzt_units("mm")
    img.header.set_qform(ras_affine(volume), code=1)
    img.header.set_sform(ras_affine(volume), code=1)
    img.header.set_slope_inter(slope, 0.0)
    if window is not None:
        level, width = window
        img.header["cal_min"], img.header["cal_max"] = level - width / 2, level + width / 2
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=1) if compress else raw


def initial_window(ctpa: bool) -> tuple[str, float, float]:
    """The window a case opens in: CTPA for an angiogram (the PE model assessed it), else lung."""
    name = "CTPA" if ctpa else "Lung"
    return (name, *WINDOW_PRESETS[name])


def split_labels(case: Any) -> dict[str, np.ndarray]:
    """The nodule label volume split by finding kind (``nodule`` / ``mass`` share the label volume)."""
    if case.nodule_mask is None:
        return {}
    labels = np.asarray(case.nodule_mask)
    mass_labels = [f.label for f in case.result.findings if f.kind == "mass" and f.label]
    if not mass_labels:
        return {"nodule": labels}
    is_mass = np.isin(labels, mass_labels)
    return {
        "nodule": np.where(is_mass, 0, labels).astype(np.uint8),
        "mass": np.where(is_mass, labels, 0).astype(np.uint8),
    }


@st.cache_resource(max_entries=4, show_spinner=False)
def case_files(folder: str) -> dict[str, bytes]:
    """The NIfTI files of a saved case (CT, nodule / mass / PE masks, heatmap), built once per folder.

    The masks and the heatmap are gzipped here, once (they shrink to almost nothing), and served as
    ``application/gzip``, a type Streamlit's HTTP gzip middleware leaves alone. The CT is left uncompressed: gzip
    (level 1) of 300 x 256 x 256 HU takes 0.9 s here, on the way to the first image, and the browser would spend
    time unpacking it again. The viewer asks for it with ``Range: bytes=0-``: the middleware does not compress a
    partial (206) response, which it would otherwise do on every request (2.5 s at level 5). The cost is twice
    the bytes on the wire (39 MB instead of 19 MB for 300 x 256 x 256: 0.3 s on a 1 Gbit/s network).
    """
    case = data.case_arrays(folder)
    vol = case.volume
    files = {"ct": nifti_bytes(vol, window=WINDOW_PRESETS["Lung"])}  # the window spares a histogram
    for kind, labels in split_labels(case).items():
        if labels.any():
            files[kind] = nifti_bytes(vol, labels, compress=True)
    if case.pe_mask is not None and np.asarray(case.pe_mask).any():
        files["pe"] = nifti_bytes(vol, np.asarray(case.pe_mask, dtype=np.uint8), compress=True)
    if case.heatmap is not None and np.asarray(case.heatmap).any():
        files["heatmap"] = nifti_bytes(vol, np.asarray(case.heatmap), compress=True, slope=1 / 255)
    return files


def first_slice(volume: Volume) -> int:
    """The axial slice ``k`` a case opens on (the middle one; NiiVue is told to start there too)."""
    return volume.shape[0] // 2


def first_image_png(volume: Volume, k: int, level: float, width: float) -> bytes | None:
    """Axial slice ``k`` windowed at ``(level, width)`` as a grey PNG, oriented as the viewer shows it (radiological:
    the patient's left on the right, anterior at the top), one pixel per voxel; the browser scales it to the
    voxel spacing. None for an oblique acquisition (the browser then waits for the viewer's own first image)."""
    direction = np.asarray(volume.direction, dtype=float)
    if not np.allclose(np.abs(direction), np.eye(3), atol=1e-3):
        return None
    grey = window_level(volume.hu[k], level, width)  # rows j (LPS +y: posterior down), columns i (+x: left right)
    if direction[0, 0] < 0:
        grey = grey[:, ::-1]
    if direction[1, 1] < 0:
        grey = grey[::-1, :]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(grey)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_first_image(folder: str, k: int, level: float, width: float) -> bytes | None:
    """``first_image_png`` of a saved case, made once per case and window (not on every rerun of the page)."""
    return first_image_png(data.case_arrays(folder).volume, k, level, width)


def reader_points_file(folder: str, points: tuple[tuple[int, int, int], ...]) -> bytes | None:
    """Small spheres at the reader's own added findings (an overlay), or None without points."""
    if not points:
        return None
    vol = data.case_arrays(folder).volume
    mask = np.zeros(vol.shape, np.uint8)
    r = [max(1, int(round(READER_RADIUS_MM / s))) for s in vol.spacing_mm]
    for p in points:
        lo = [max(0, c - rr) for c, rr in zip(p, r)]
        hi = [min(n, c + rr + 1) for c, n, rr in zip(p, vol.shape, r)]
        k, j, i = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = ((k - p[0]) / r[0]) ** 2 + ((j - p[1]) / r[1]) ** 2 + ((i - p[2]) / r[2]) ** 2
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][d <= 1.0] = 1
    return nifti_bytes(vol, mask, compress=True)


def media_url(payload: bytes, name: str, coordinates: str, mimetype: str = "application/gzip") -> str:
    """Register ``payload`` (by default a gzipped NIfTI) with Streamlit's media file manager for this session;
    returns its URL (same content → same URL, so the browser's copy is reused)."""
    from streamlit import runtime

    return runtime.get_instance().media_file_mgr.add(payload, mimetype, coordinates, file_name=name)


def _overlay_specs(folder: str, files: dict[str, bytes], key: str, reader: bytes | None) -> list[dict]:
    looks = {
        "nodule": dict(label="Nodule", colormap="triage_nodule", colormap_def=NODULE_CMAP, swatch="#ffc400", key="n"),
        "mass": dict(label="Mass", colormap="triage_mass", colormap_def=MASS_CMAP, swatch="#ff5a28", key="a"),
        "pe": dict(label="PE", colormap="triage_pe", colormap_def=PE_CMAP, swatch="#28dcff", key="e"),
    }
    specs = []
    for kind, look in looks.items():
        if kind in files:
            url = media_url(files[kind], f"{kind}.nii.gz", f"{key}.{kind}")
            specs.append(
                {
                    "id": kind,
                    "url": url,
                    "name": f"{kind}.nii.gz",
                    "opacity": 0.45,
                    "cal_min": 0.5,
                    "cal_max": 1.0,
                    "colorbar": False,
                    **look,
                }
            )
    if "heatmap" in files:
        url = media_url(files["heatmap"], "heatmap.nii.gz", f"{key}.heatmap")
        specs.append(
            {
                "id": "heatmap",
                "url": url,
                "name": "heatmap.nii.gz",
                "colormap": "hot",
                "opacity": 0.5,
                "cal_min": HEAT_MIN,
                "cal_max": 1.0,
                "colorbar": True,
                "visible": False,
                "key": "h",
                "label": "Heatmap (explanation)",
                "ramp": HEAT_RAMP,
                "ramp_labels": f"<span class='muted'>{HEAT_MIN:g} – 1</span>",
            }
        )
    if reader is not None:
        url = media_url(reader, "reader.nii.gz", f"{key}.reader")
        specs.append(
            {
                "id": "reader",
                "url": url,
                "name": "reader.nii.gz",
                "colormap": "triage_reader",
                "colormap_def": READER_CMAP,
                "opacity": 0.8,
                "cal_min": 0.5,
                "cal_max": 1.0,
                "colorbar": False,
                "swatch": "#5ae678",
                "key": "f",
                "label": "Your added findings",
            }
        )
    return specs


def volume_viewer(
    folder: str,
    *,
    ai_shown: bool,
    ctpa: bool = False,
    nav: tuple[int, tuple[float, float, float]] | None = None,
    reader_points: tuple[tuple[int, int, int], ...] = (),
    clickable: bool = True,
    height: int = 640,
    key: str = "volume_viewer",
) -> Click | None:
    """Place the viewer for the saved case in ``folder``; returns a new click (a point to mark) or None.

    Args:
        folder: the case's result folder (``inference.results.save_case``).
        ai_shown: False in the AI-hidden arm: no AI mask or heatmap is sent to the browser.
        ctpa: the study is a CT pulmonary angiogram: it opens in the CTPA window (else the lung window).
        nav: ``(seq, lps_mm)``: move the crosshairs there when ``seq`` changes (go to a finding).
        reader_points: the reader's added findings ``(k, j, i)``, drawn as small green spheres.
        clickable: report clicks to Python.
        height: the canvas height in CSS pixels.
        key: widget key.
    """
    case = data.case_arrays(folder)
    vol = case.volume
    files = case_files(folder)
    ct_url = media_url(files["ct"], "ct.nii", f"{key}.ct", "application/octet-stream")
    _, level, width = initial_window(ctpa)
    k0 = first_slice(vol)
    png = cached_first_image(folder, k0, level, width)
    first_image = None
    if png is not None:
        first_image = {
            "url": media_url(png, "first.png", f"{key}.first", "image/png"),
            "k": k0,
            "mm": [vol.shape[2] * vol.spacing_mm[2], vol.shape[1] * vol.spacing_mm[1]],  # width, height
        }
    reader = reader_points_file(folder, tuple(reader_points))
    overlays = _overlay_specs(folder, files, key, reader) if ai_shown else []
    if not ai_shown and reader is not None:
        overlays = _overlay_specs(folder, {}, key, reader)
    spec = {
        "ct": {"url": ct_url, "name": "ct.nii", "level": level, "width": width, "k": k0},
        "first_image": first_image,
        "overlays": overlays,
        "presets": [{"key": k, "name": n, "level": lv, "width": w} for k, n, lv, w in PRESETS],
        "lps_to_ijk": lps_to_ijk(vol),
        "dims": [vol.shape[2], vol.shape[1], vol.shape[0]],
        "nav": None if nav is None else {"seq": int(nav[0]), "lps": [float(v) for v in nav[1]]},
        "clickable": clickable,
        "canvas_height": int(height),
    }
    # One JSON string, not lists and dicts: Streamlit checks every non-scalar argument of a custom component for
    # a data frame, which imports pandas and pyarrow on the first call in a server process (0.7-1.4 s here, on
    # the way to the first image). first.js unpacks it.
    value = _component(spec=json.dumps(spec), key=key, default=None)
    return new_click(value, vol, st.session_state.setdefault(f"{key}_seen", {}))


def new_click(value: Any, volume: Volume, seen: dict[str, Any]) -> Click | None:
    """The click in the component's ``value`` if it is new (``seen`` remembers the last one), else None."""
    if not isinstance(value, dict) or value.get("type") != "click":
        return None
    stamp = (value.get("seq"), value.get("at"))
    if seen.get("last") == stamp:
        return None
    seen["last"] = stamp
    try:
        lps = tuple(float(v) for v in value["lps"][:3])
    except (KeyError, TypeError, ValueError):
        return None
    kji_f = volume.patient_to_voxel(lps)
    kji = tuple(int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(kji_f, volume.shape))
    plane = value.get("plane") if value.get("plane") in ("axial", "coronal", "sagittal") else "axial"
    return Click(int(value.get("seq") or 0), lps, kji, plane)  # type: ignore[arg-type]
