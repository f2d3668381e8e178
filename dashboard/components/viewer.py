"""The slice viewer: axial / coronal / sagittal with sliders, window presets, overlays and click-to-mark.

Two levels of ``st.fragment``: the viewer (window, overlays, the three planes, the "missed finding" form)
and, nested in it, one fragment per plane (label, image, slider). Moving one plane's slider reruns only that
plane: one slice rendered, encoded and sent, not three. The controls rerun the viewer (every plane). Each
rendered slice is cached as JPEG (``slice_jpeg``, keyed by case folder, plane, index, window, overlays and
markers), so going back to a slice costs a cache lookup. A click on an image (``streamlit-image-coordinates``;
number inputs where that package is missing) marks a point: the page reruns (clicks are rare), the other
planes move to it and the "missed finding" form below gets its voxel ``(k, j, i)`` and LPS millimetres.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import streamlit as st
from PIL import Image
from streamlit.errors import StreamlitAPIException

from dashboard import data
from dashboard.components import render
from inference.volume import Volume

try:  # optional: clickable images
    from streamlit_image_coordinates import streamlit_image_coordinates
except ImportError:  # pragma: no cover - exercised where the package is absent
    streamlit_image_coordinates = None

SLICE_KEYS = {"axial": "vw_k", "coronal": "vw_j", "sagittal": "vw_i"}
PENDING_KEY = "vw_pending"
NAV_KEY = "vw_nav"
JPEG_QUALITY = 92
PENDING_RGB = (80, 220, 255)
READER_RGB = (90, 230, 120)


@dataclass(frozen=True)
class Marked:
    """A point the reader marked on the images."""

    kji: tuple[int, int, int]
    lps_mm: tuple[float, float, float]
    plane: str


def go_to(kji: tuple[int, int, int]) -> None:
    """Ask the viewer to show the planes through voxel ``kji`` on its next run."""
    st.session_state[NAV_KEY] = tuple(int(v) for v in kji)


def _apply_nav(shape: tuple[int, int, int]) -> None:
    nav = st.session_state.pop(NAV_KEY, None)
    for axis, key in enumerate(("vw_k", "vw_j", "vw_i")):  # slider values are 1-based slice numbers
        if nav is not None:
            st.session_state[key] = int(np.clip(nav[axis], 0, shape[axis] - 1)) + 1
        elif key not in st.session_state or not 1 <= st.session_state[key] <= shape[axis]:
            st.session_state[key] = shape[axis] // 2 + 1


def slice_image(
    folder: str,
    plane: str,
    index: int,
    level: float,
    width: float,
    nodule: bool,
    pe: bool,
    heat: bool,
    heat_opacity: float,
) -> np.ndarray:
    """The rendered RGB slice (not cached itself: its one consumer, ``slice_jpeg``, caches the encoded result)."""
    case = data.case_arrays(folder)
    return render.render_plane(
        case.volume,
        plane,
        index,
        level=level,
        width=width,
        nodule_mask=case.nodule_mask if nodule else None,
        pe_mask=case.pe_mask if pe else None,
        heatmap=case.heatmap if heat else None,
        heat_opacity=heat_opacity,
    )


def _preset_changed() -> None:
    preset = st.session_state.get("vw_preset")
    if preset in render.WINDOW_PRESETS:
        level, width = render.WINDOW_PRESETS[preset]
        st.session_state["vw_level"], st.session_state["vw_width"] = int(level), int(width)


def controls(ai_shown: bool, has: dict[str, bool]) -> dict:
    """Window and overlay controls; returns the display settings."""
    st.session_state.setdefault("vw_preset", "Lung")
    st.session_state.setdefault("vw_level", int(render.WINDOW_PRESETS["Lung"][0]))
    st.session_state.setdefault("vw_width", int(render.WINDOW_PRESETS["Lung"][1]))
    c1, c2, c3, c4 = st.columns([1.9, 1.3, 1.3, 4.2], vertical_alignment="bottom")
    c1.segmented_control("Window", list(render.WINDOW_PRESETS), key="vw_preset", on_change=_preset_changed)
    c2.slider("Level (HU)", -1200, 1500, step=10, key="vw_level")
    c3.slider("Width (HU)", 50, 3000, step=10, key="vw_width")
    shown = {"nodule": False, "pe": False, "heat": False, "heat_opacity": 0.0}
    if ai_shown:
        o1, o2, o3, o4 = c4.columns([1, 1, 1, 1.3], vertical_alignment="bottom")
        shown["nodule"] = o1.toggle("Nodules", value=True, key="ov_nodule", disabled=not has["nodule"])
        shown["pe"] = o2.toggle("PE", value=True, key="ov_pe", disabled=not has["pe"])
        shown["heat"] = o3.toggle("Heatmap", value=False, key="ov_heat", disabled=not has["heat"])
        shown["heat_opacity"] = o4.slider("Heatmap opacity", 0.0, 1.0, 0.4, 0.05, key="ov_heat_op")
        shown = {k: (v and has.get(k, True)) if isinstance(v, bool) else v for k, v in shown.items()}
    else:
        c4.caption("AI overlays are hidden for this case (AI-hidden study arm).")
    return {"level": float(st.session_state["vw_level"]), "width": float(st.session_state["vw_width"]), **shown}


def _markers(
    rgb: np.ndarray,
    plane: str,
    index: int,
    volume: Volume,
    points: Sequence[tuple[tuple[int, int, int], tuple[int, int, int]]],
) -> np.ndarray:
    axis = render.plane_axes(plane)[0]
    for kji, colour in points:
        if kji[axis] == index:
            xy = render.voxel_to_display(plane, kji, volume)
            if xy is not None:
                rgb = render.draw_marker(rgb, xy, colour)
    return rgb


class Jpeg(bytes):
    """Encoded JPEG bytes that ``streamlit_image_coordinates`` accepts as an image (it calls ``save``)."""

    def save(self, fp: BytesIO, **_: object) -> None:
        """Write the bytes as they are (format and quality were chosen when encoding)."""
        fp.write(self)


@st.cache_data(max_entries=360, show_spinner=False)
def slice_jpeg(
    folder: str,
    plane: str,
    index: int,
    display: tuple[float, float, bool, bool, bool, float],
    points: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...],
) -> bytes:
    """The slice as JPEG with the marked ``points`` of this slice drawn (cached per slice, display setting and
    markers, so a slice change costs a lookup of a few tens of kB instead of render + encode)."""
    level, width, nodule, pe, heat, heat_opacity = display
    rgb = slice_image(folder, plane, index, level, width, nodule, pe, heat, heat_opacity)
    rgb = _markers(rgb, plane, index, data.case_arrays(folder).volume, points)
    out = BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _clicked(plane: str, index: int, value: dict | None, volume: Volume) -> Marked | None:
    if not value or "x" not in value:
        return None
    seen_key = f"vw_seen_{plane}"
    stamp = value.get("unix_time") or (value["x"], value["y"])
    if st.session_state.get(seen_key) == stamp:
        return None
    st.session_state[seen_key] = stamp
    kji = render.display_to_voxel(
        plane, index, value["x"], value["y"], value.get("width") or 1, value.get("height") or 1, volume
    )
    return Marked(kji, render.voxel_to_lps(volume, kji), plane)


def plane_view(folder: str, plane: str, volume: Volume, display: dict, points: list) -> Marked | None:
    """One plane: label, image (clickable) and its slider. Returns a new click, if any."""
    key = SLICE_KEYS[plane]
    axis = render.plane_axes(plane)[0]
    n = volume.shape[axis]
    index = int(st.session_state[key]) - 1
    st.html(f'<div class="vw-label" data-testid="vw-label-{plane}">{plane.upper()} {index + 1}/{n}</div>')
    settings = (
        display["level"],
        display["width"],
        display["nodule"],
        display["pe"],
        display["heat"],
        round(display["heat_opacity"], 2),
    )
    here = tuple((tuple(kji), colour) for kji, colour in points if kji[axis] == index)
    jpeg = Jpeg(slice_jpeg(folder, plane, index, settings, here))
    marked = None
    if streamlit_image_coordinates is not None:
        value = streamlit_image_coordinates(
            jpeg, key=f"img_{plane}", width="stretch", image_format="JPEG", cursor="crosshair"
        )
        marked = _clicked(plane, index, value, volume)
    else:
        st.image(bytes(jpeg), width="stretch")
    st.slider(f"{plane} slice", 1, n, key=key, label_visibility="collapsed")
    return marked


@st.fragment
def plane_fragment(folder: str, plane: str, display: dict, points: list, on_interaction: Callable[[], float]) -> None:
    """One plane as its own fragment (nested in the viewer's): its slider reruns only this plane. A click
    stores the marked point and reruns the page, so the other planes move to it and the form shows it."""
    data.require_valid_session()  # cached for 10 s: cheap when the viewer has just checked
    on_interaction()
    volume = data.case_arrays(folder).volume
    new = plane_view(folder, plane, volume, display, points)
    if new is not None:
        st.session_state[PENDING_KEY] = new
        go_to(new.kji)
        st.rerun(scope="app")


def fallback_marker(volume: Volume) -> Marked | None:
    """Number inputs for the marked point, where clickable images are unavailable."""
    c = st.columns(4)
    k = c[0].number_input("k (slice)", 0, volume.shape[0] - 1, int(st.session_state["vw_k"]) - 1)
    j = c[1].number_input("j (row)", 0, volume.shape[1] - 1, int(st.session_state["vw_j"]) - 1)
    i = c[2].number_input("i (column)", 0, volume.shape[2] - 1, int(st.session_state["vw_i"]) - 1)
    if c[3].button("Mark point"):
        kji = (int(k), int(j), int(i))
        return Marked(kji, render.voxel_to_lps(volume, kji), "axial")
    return None


def rerun_viewer() -> None:
    """Rerun the viewer fragment (the whole page when this run was not a fragment rerun)."""
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:
        st.rerun()


def viewer(
    folder: str,
    *,
    ai_shown: bool,
    reader_points: list[tuple[int, int, int]],
    on_interaction: Callable[[], float],
    add_form: Callable[[Marked | None], None],
) -> None:
    """The viewer fragment body (call it from a function decorated with ``st.fragment``): controls, one nested
    fragment per plane, the "missed finding" form (``add_form``, given the marked point)."""
    on_interaction()
    case = data.case_arrays(folder)
    volume = case.volume
    _apply_nav(volume.shape)
    has = {"nodule": case.nodule_mask is not None, "pe": case.pe_mask is not None, "heat": case.heatmap is not None}
    display = controls(ai_shown, has)
    pending: Marked | None = st.session_state.get(PENDING_KEY)
    points = [(p, READER_RGB) for p in reader_points]
    if pending is not None:
        points.append((pending.kji, PENDING_RGB))
    cols = st.columns([1.25, 1, 1], gap="small")
    for col, plane in zip(cols, render.PLANES):
        with col:
            plane_fragment(folder, plane, display, points, on_interaction)
    if streamlit_image_coordinates is None:
        new = fallback_marker(volume)
        if new is not None:
            st.session_state[PENDING_KEY] = new
            go_to(new.kji)
            rerun_viewer()
    add_form(pending)
