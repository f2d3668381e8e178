"""Small shared pieces of the look: the research-only banner, the stylesheet, badges, safe text."""

from __future__ import annotations

import html
import re

import streamlit as st

RESEARCH_NOTICE = (
    "Research software — not a medical device. AI results are unvalidated suggestions and must not be used "
    "for clinical decisions."
)
_CSS = """
<style>
  .block-container {padding-top: 3.6rem; padding-bottom: 1rem; max-width: 100%;}
  [data-testid="stHeader"] {height: 2.2rem;}
  .research-banner {background: #3a2a06; color: #ffd27a; border: 1px solid #6b4e10; border-radius: 4px;
                    padding: 4px 10px; font-size: 0.78rem; margin-bottom: 0.5rem;}
  .wl-head {color: #8b97a8; font-size: 0.74rem; text-transform: uppercase; letter-spacing: .05em;}
  .badge {display: inline-block; padding: 1px 8px; border-radius: 3px; font-size: 0.76rem; font-weight: 700;
          letter-spacing: .03em;}
  .b-critical {background: #b3122b; color: #fff;}
  .b-attention {background: #c76a00; color: #fff;}
  .b-overdue {background: #6d4bb8; color: #fff;}
  .b-high {background: #8a6d00; color: #fff;}
  .b-routine {background: #2b3a4d; color: #b9c7d8;}
  .score {font-family: ui-monospace, monospace; font-size: 0.9rem;}
  .s-hi {color: #ff6b6b; font-weight: 700;} .s-mid {color: #ffc34d;} .s-lo {color: #8fb3d9;}
  .muted {color: #8b97a8; font-size: 0.82rem;}
  div[data-testid="stVerticalBlock"] div[data-testid="stHorizontalBlock"] {align-items: center;}
  .vw-label {color: #8fb3d9; font-size: 0.78rem; font-family: ui-monospace, monospace;}
  .st-key-auth_cookie {display: none;}
</style>
"""
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>:$])")
#: Where Markdown's autolinker (GFM literal autolinks) would start a link: ``://``, ``www.``, ``@``.
_AUTOLINK = re.compile(r"(?i)(:)(//)|(www)(\.)|()(@)")
WORD_JOINER = "\u2060"  # invisible, no line break: splits the pattern so nothing becomes a link


def page_chrome() -> None:
    """Stylesheet and the research-only banner (every page, signed in or not)."""
    st.html(_CSS)
    st.html(f'<div class="research-banner" data-testid="research-banner">⚠ {html.escape(RESEARCH_NOTICE)}</div>')


def safe_md(text: object) -> str:
    """Text from the database made inert for ``st.markdown``: HTML escaped, Markdown syntax escaped (the
    autolinker is also defused: an invisible word joiner goes into ``://``, ``www.`` and before ``@``, so a URL,
    a www name or an e-mail address in a DICOM header shows as text and is never a link)."""
    defused = _AUTOLINK.sub(lambda m: WORD_JOINER.join(g for g in m.groups() if g is not None), str(text))
    return _MD_SPECIAL.sub(r"\\\1", html.escape(defused, quote=False))


def badge(label: str, css: str) -> str:
    """An HTML badge (``label`` is escaped)."""
    return f'<span class="badge b-{css}">{html.escape(label)}</span>'


def score_html(value: float | None) -> str:
    """A score 0..1 as a coloured percentage (``–`` when missing)."""
    if value is None:
        return '<span class="score muted">–</span>'
    css = "s-hi" if value >= 0.5 else "s-mid" if value >= 0.2 else "s-lo"
    return f'<span class="score {css}">{value * 100:.0f}%</span>'
