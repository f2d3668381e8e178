"""Current and prior side by side (#16): linked scrolling at the matched position, paired findings highlighted.

A self-contained section of the review page (independent of the main viewer): it reads the ``comparison``
block saved with the current case (``inference.priors``), the prior's saved case, and renders axial slices
of both. One slider scrolls the current scan; the prior follows through the stored alignment (the point at
the focus of the current slice is mapped into the prior, whose slice there is shown). Choosing a pair jumps
both to its nodule. Nodules are marked in both images; the chosen pair is drawn in the highlight colour and
labelled with the same number on both sides. Rendering helpers are plain functions (tested without a
browser); ``render_section`` is the Streamlit part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dashboard.components.render import draw_marker, render_plane, voxel_to_display
from inference.compare import change_text
from inference.registration import map_point
from inference.results import CaseArrays, latest_case, load_case
from inference.volume import Volume

HIGHLIGHT_RGB = (255, 200, 0)
OTHER_RGB = (80, 200, 255)
LUNG_WINDOW = (-600.0, 1500.0)


@dataclass
class PriorPair:
    """The two saved cases of a comparison and its block."""

    current: CaseArrays
    prior: CaseArrays
    comparison: dict[str, Any]

    def choices(self) -> list[tuple[str, tuple[float, float, float]]]:
        """(label, current LPS point) per compared nodule: pairs first, then new ones."""
        out = []
        for n, p in enumerate(self.comparison.get("pairs", []), start=1):
            out.append((f"{n}: {change_text(p)} (finding {p['current_index'] + 1})",
                        tuple(p["current_mm"])))
        for m in self.comparison.get("new", []):
            out.append((f"new (finding {m['current_index'] + 1})", tuple(m["center_mm"])))
        return out


def load_pair(current_folder: Path, data_dir: Path) -> PriorPair | None:
    """The current case, its prior case and the comparison; None when the case was not compared."""
    cur = load_case(Path(current_folder))
    import json

    block = json.loads((Path(current_folder) / "result.json").read_text()).get("comparison")
    if not block:
        return None
    prior_folder = latest_case(Path(data_dir), block["prior_study_uid"])
    if prior_folder is None:
        return None
    return PriorPair(cur, load_case(prior_folder), block)


def prior_point(pair: PriorPair, current_xyz: np.ndarray | tuple) -> np.ndarray:
    """The prior LPS point matching a current one (the stored alignment; identity when none was stored)."""
    t = pair.comparison.get("alignment", {}).get("transform")
    return map_point(t, current_xyz) if t else np.asarray(current_xyz, float)


def linked_slices(pair: PriorPair, k: int, focus_xyz: np.ndarray | tuple) -> tuple[int, int]:
    """(current k, prior k): the prior slice through the mapped focus point moved to current slice ``k``."""
    cur = pair.current.volume
    focus_kji = cur.patient_to_voxel(np.asarray(focus_xyz, float))
    at = cur.voxel_to_patient(np.array([k, focus_kji[1], focus_kji[2]]))
    pk = pair.prior.volume.patient_to_voxel(prior_point(pair, at))[0]
    return int(np.clip(k, 0, cur.shape[0] - 1)), int(np.clip(round(pk), 0, pair.prior.volume.shape[0] - 1))


def _marks(vol: Volume, k: int, points: list[tuple[np.ndarray, str]], rgb: np.ndarray, max_px: int) -> np.ndarray:
    for xyz, which in points:
        kji = np.round(vol.patient_to_voxel(np.asarray(xyz, float))).astype(int)
        if abs(kji[0] - k) > 2:
            continue
        xy = voxel_to_display("axial", (k, int(kji[1]), int(kji[2])), vol, max_px=max_px)
        if xy is not None:
            rgb = draw_marker(rgb, xy, HIGHLIGHT_RGB if which == "focus" else OTHER_RGB, size=14)
    return rgb


def side_by_side(
    pair: PriorPair, k: int, focus_xyz: np.ndarray | tuple, *, max_px: int = 384
) -> tuple[np.ndarray, np.ndarray, int]:
    """RGB axial images of the current slice ``k`` and the linked prior slice, nodules marked (the focus in
    the highlight colour). Returns ``(current_rgb, prior_rgb, prior_k)``."""
    ck, pk = linked_slices(pair, k, focus_xyz)
    level, width = LUNG_WINDOW
    cur, pri = pair.current, pair.prior
    c_img = render_plane(cur.volume, "axial", ck, level=level, width=width, nodule_mask=cur.nodule_mask, max_px=max_px)
    p_img = render_plane(pri.volume, "axial", pk, level=level, width=width, nodule_mask=pri.nodule_mask, max_px=max_px)
    focus_prior = prior_point(pair, focus_xyz)
    cur_pts = [(np.asarray(f.center_mm), "other") for f in cur.result.findings if f.kind == "nodule"]
    pri_pts = [(np.asarray(f.center_mm), "other") for f in pri.result.findings if f.kind == "nodule"]
    for p in pair.comparison.get("pairs", []):
        if np.allclose(p["current_mm"], focus_xyz, atol=0.05):
            focus_prior = np.asarray(p["prior_mm"], float)
    c_img = _marks(cur.volume, ck, [*cur_pts, (np.asarray(focus_xyz, float), "focus")], c_img, max_px)
    p_img = _marks(pri.volume, pk, [*pri_pts, (focus_prior, "focus")], p_img, max_px)
    return c_img, p_img, pk


def render_section(current_folder: str, data_dir: str) -> None:
    """The Streamlit section (call inside an ``st.fragment`` on the review page)."""
    import streamlit as st

    pair = load_pair(Path(current_folder), Path(data_dir))
    if pair is None:
        return
    block = pair.comparison
    s = block.get("summary", {})
    with st.expander(
        f"Compare with prior ({block.get('prior_date') or 'date unknown'}): {s.get('growing', 0)} growing, "
        f"{s.get('new', 0)} new, {s.get('stable', 0)} stable, {s.get('indeterminate', 0)} not measurable, "
        f"{s.get('resolved', 0)} resolved",
        expanded=bool(s.get("growing") or s.get("new")),
    ):
        choices = pair.choices()
        if not choices:
            st.caption("No nodule to compare on the current scan.")
            return
        label = st.selectbox("Nodule", [c[0] for c in choices], key="prior_focus")
        if label is None:
            return
        focus = dict(choices)[label]
        centre_k = int(round(pair.current.volume.patient_to_voxel(np.asarray(focus))[0]))
        if st.session_state.get("prior_focus_seen") != label:  # a new choice jumps both scans to the nodule
            st.session_state["prior_focus_seen"] = label
            st.session_state["prior_k"] = centre_k
        k = st.slider("Slice (current; the prior follows)", 0, pair.current.volume.shape[0] - 1, key="prior_k")
        c_img, p_img, pk = side_by_side(pair, k, focus)
        left, right = st.columns(2)
        left.image(c_img, caption=f"current, slice {k + 1}", width="stretch")
        right.image(p_img, caption=f"prior {block.get('prior_date') or ''}, slice {pk + 1}", width="stretch")
        a = block.get("alignment", {})
        st.caption(f"Alignment {a.get('method', '?')}, lung Dice {a.get('lung_dice', '?')}"
                   + ("" if a.get("ok", True) else " — check the alignment"))
