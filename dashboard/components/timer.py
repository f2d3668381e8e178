"""The reading timer: active time from opening a case to signing it.

Two sources (documented in ``dashboard/README.md``):

* **browser** (preferred): the heartbeat component (``components/heartbeat.py``) reports every few seconds
  how many seconds the tab was visible with mouse / key / wheel / pointer activity within the idle window.
  ``ActivityClock.add_browser`` sums the reports (never more than the wall time since opening); the
  unreported tail since the last report counts up to one report interval.
* **server** (fallback, until the first report arrives or where the component cannot run): every
  interaction with the case page (scrolling a slice, changing the window, toggling an overlay, a verdict, a
  click on the image — each is a Streamlit rerun of the page or of a fragment) calls
  ``ActivityClock.touch(now)``. The time between two consecutive interactions counts up to ``idle_cap_s``; a
  longer gap counts only ``idle_cap_s``. So a reader who looks at one image for 40 s without touching
  anything is still timed, and a case left open over lunch adds at most ``idle_cap_s``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ActivityClock:
    """Accumulates active seconds from interaction timestamps (``time.monotonic()`` values)."""

    idle_cap_s: float = 90.0
    report_interval_s: float = 15.0
    started: float | None = None
    last: float | None = None
    active_s: float = 0.0
    interactions: int = 0
    browser_s: float = 0.0
    reports: int = 0
    last_report: float | None = None
    carried_s: float = 0.0  # seconds of an earlier page of the same reading session (resumed after a reload)

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

    def add_browser(self, seconds: float, now: float) -> float:
        """Add a heartbeat report of ``seconds`` active seconds received at ``now``; returns the browser total.
        The sum never exceeds the wall time since the clock started (or since the first report)."""
        if self.started is None:
            self.started = now
        self.reports += 1
        self.last_report = now
        self.browser_s = min(self.browser_s + max(0.0, float(seconds)), max(0.0, now - self.started))
        return self.browser_s

    @property
    def source(self) -> str:
        """``"browser"`` once a heartbeat report arrived, else ``"server"`` (the interaction estimate)."""
        return "browser" if self.reports else "server"

    def total(self, now: float) -> float:
        """Active seconds up to ``now``: the browser reports plus the unreported tail (at most one report
        interval) once there are reports, else the server estimate (the pending gap since the last interaction
        included, capped). Never more than the wall time since the clock started."""
        if self.reports:
            assert self.last_report is not None and self.started is not None
            tail = min(max(0.0, now - self.last_report), self.report_interval_s)
            return self.carried_s + min(self.browser_s + tail, max(0.0, now - self.started))
        if self.last is None:
            return self.carried_s
        return self.carried_s + self.active_s + min(max(0.0, now - self.last), self.idle_cap_s)


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


def live_timer_html(seconds: float, *, running: bool = True) -> str:
    """The header timer: starts at the server's active ``seconds`` and ticks every second in the browser
    while the tab is visible (the server's total, from the heartbeat reports, replaces it on every rerun)."""
    start = max(0.0, float(seconds))
    script = (
        "<script>(function(){const el=document.currentScript.previousElementSibling;"
        f"let s={start:.1f};const t0=Date.now();let hidden=0,hs=null;"
        "const fmt=v=>{v=Math.round(v);const h=Math.floor(v/3600),m=Math.floor(v%3600/60),x=v%60;"
        "return (h?h+':'+String(m).padStart(2,'0'):m)+':'+String(x).padStart(2,'0')};"
        "const doc=(()=>{try{return window.parent.document}catch(e){return document}})();"
        "setInterval(()=>{if(doc.visibilityState!=='visible'){if(hs===null)hs=Date.now();return}"
        "if(hs!==null){hidden+=Date.now()-hs;hs=null}"
        "const v=s+(Date.now()-t0-hidden)/1000;el.querySelector('b').textContent=fmt(v);"
        "el.dataset.seconds=v.toFixed(0)},1000)"
        "})();</script>"
        if running
        else ""
    )
    return (
        f'<span data-testid="reading-timer" data-seconds="{start:.0f}" title="Active reading time: the seconds this '
        'page was visible and in use (browser reports; before the first report, estimated from your interactions)">'
        f"Reading <b>{format_seconds(start)}</b> active</span>{script}"
    )
