"""The browser heartbeat: a tiny Streamlit component (plain HTML + JS in ``heartbeat_frontend/``, no build
step) that reports how long the reader was actually using the page.

Every ``interval_s`` seconds the browser sends ``{"seq", "case", "active_s", "window_s"}``: the seconds in
which the tab was visible and there had been a mouse, wheel, key, pointer, touch or scroll event within the
last ``idle_s`` seconds (see the comment in ``index.html``). Nothing is sent for a period without such
seconds, so an idle tab causes no reruns. Render it inside its own ``st.fragment``: a report reruns only that
fragment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

FRONTEND = Path(__file__).resolve().parent / "heartbeat_frontend"
#: Seconds between reports (``TRIAGE_DASHBOARD_HEARTBEAT_S``; the e2e tests shorten it).
INTERVAL_S = float(os.environ.get("TRIAGE_DASHBOARD_HEARTBEAT_S", "15"))
SEEN_KEY = "hb_seen"

_component = components.declare_component("triage_heartbeat", path=str(FRONTEND))


def heartbeat(case: int, *, idle_s: float, interval_s: float = INTERVAL_S, key: str = "heartbeat") -> dict | None:
    """Place the (invisible) heartbeat; returns its latest report, or None before the first one.

    Args:
        case: the reading session the seconds belong to (a report names the case it was counted for).
        idle_s: a second counts only if there was activity within this many seconds before it.
        interval_s: seconds between reports.
        key: widget key.
    """
    return _component(case=int(case), idle_s=float(idle_s), interval_s=float(interval_s), key=key, default=None)


def new_report(value: Any, case: int, seen: dict[str, Any]) -> float | None:
    """The active seconds of ``value`` if it is a report for ``case`` not counted yet (``seen`` remembers the
    last sequence number per case), else None."""
    if not isinstance(value, dict) or value.get("case") != case:
        return None
    seq = value.get("seq")
    if not isinstance(seq, int) or seen.get(str(case)) == seq:
        return None
    seen[str(case)] = seq
    try:
        return max(0.0, float(value.get("active_s", 0.0)))
    except (TypeError, ValueError):
        return None
