"""The reading timer: active time from opening a case to signing it, counted from the reader's interactions.

Method (documented in ``dashboard/README.md``): every interaction with the case page (scrolling a slice,
changing the window, toggling an overlay, a verdict, a click on the image — each is a Streamlit rerun of the
page or of the viewer fragment) calls ``ActivityClock.touch(now)``. The time between two consecutive
interactions counts as reading time up to ``idle_cap_s``; a longer gap (the reader left the desk, switched
to another application or tab) counts only ``idle_cap_s``. Time after the last interaction and before
signing counts the same way. So a reader who looks at one image for 40 s without touching anything is still
timed, and a case left open over lunch adds at most ``idle_cap_s``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ActivityClock:
    """Accumulates active seconds from interaction timestamps (``time.monotonic()`` values)."""

    idle_cap_s: float = 90.0
    started: float | None = None
    last: float | None = None
    active_s: float = 0.0
    interactions: int = 0

    def touch(self, now: float) -> float:
        """Record an interaction at ``now``; returns the active seconds so far."""
        if self.last is None:
            self.started = self.last = now
        else:
            gap = max(0.0, now - self.last)
            self.active_s += min(gap, self.idle_cap_s)
            self.last = now
        self.interactions += 1
        return self.active_s

    def total(self, now: float) -> float:
        """Active seconds up to ``now`` (the pending gap since the last interaction included, capped)."""
        if self.last is None:
            return 0.0
        return self.active_s + min(max(0.0, now - self.last), self.idle_cap_s)


def format_seconds(seconds: float | None) -> str:
    """``75.4`` → ``"1:15"``; ``3725`` → ``"1:02:05"``; None → ``"–"``."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_wait(minutes: float) -> str:
    """A waiting time for the worklist: ``"12 min"``, ``"3 h 05"``, ``"2 d 4 h"``."""
    m = int(max(0.0, minutes))
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d}"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"
