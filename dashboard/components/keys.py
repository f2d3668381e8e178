"""The review page's keyboard map: a tiny build-free component (``keys_frontend/``) that reports key presses
on the page (never while the reader types in a field, never with Ctrl/Alt/Meta)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit.components.v1 as components

FRONTEND = Path(__file__).resolve().parent / "keys_frontend"
_component = components.declare_component("triage_keys", path=str(FRONTEND))

#: key -> action of the review page (shown on the page as the keyboard map).
REVIEW_KEYS: dict[str, str] = {
    "j": "next finding",
    "k": "previous finding",
    "c": "confirm the selected finding",
    "x": "reject the selected finding",
    "]": "next case",
}


def key_press(keys: dict[str, str], *, key: str = "keymap") -> dict | None:
    """Place the (invisible) listener; returns the latest press ``{"key", "seq"}`` or None.

    The keys go as a tuple: Streamlit checks every other non-scalar argument of a custom component for a data
    frame, which imports pandas and pyarrow on the first call in a server process (0.7-1.4 s here, on the way
    to the first opened case's image)."""
    return _component(keys=tuple(keys), key=key, default=None)


def new_press(value: Any, seen: dict[str, Any]) -> str | None:
    """The key of ``value`` if it is a press not handled yet (``seen`` remembers the last one), else None."""
    if not isinstance(value, dict) or not isinstance(value.get("key"), str):
        return None
    stamp = (value.get("seq"), value.get("at"))
    if seen.get("last") == stamp:
        return None
    seen["last"] = stamp
    return value["key"]
