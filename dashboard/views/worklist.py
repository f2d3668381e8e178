"""Worklist (landing page): the ranked studies from ``db.queries.worklist``, refreshed by itself.

Order is the database's (critical PE first, then the overdue / needs-attention band, then priority). One
click on "Open" claims the study and opens the review viewer; if another reader holds it, the row says who.
Every filter (status, finding, arrival date) runs in SQL. Studies in the AI-hidden reading arm (known
before their first opening, ``db.arms``) show no AI scores, badge or top finding, and are not ranked by them.
"""

from __future__ import annotations

from datetime import date

import streamlit as st

from dashboard import data, reading
from dashboard.components.timer import format_wait
from dashboard.components.ui import badge, safe_md, score_html
from db.models import OPEN_STATUSES, StudyStatus
from db.worklist import HIGH_PRIORITY, WorklistItem
from inference.findings import kind_label

#: Finding filter labels → ``db.worklist`` filter values.
FINDING_FILTERS = {
    "All": None,
    "PE suspected": "pe",
    "Nodule suspected": "nodule",
    "Needs attention": "attention",
    "No AI finding": "none",
}
PAGE_ROWS = 100
HIDDEN = '<span class="muted" data-testid="wl-ai-hidden">hidden (reader study)</span>'
COLS = [1.25, 0.6, 0.6, 1.7, 0.8, 0.85, 1.2, 1.5, 0.7]
HEAD = ["Priority", "PE", "Nodule", "Top finding", "Waiting", "Status", "Scanner", "Patient", ""]
STATUS_LABEL = {
    "received": "received", "queued": "queued", "analysing": "analysing", "ready": "ready",
    "in_review": "in review", "signed": "signed", "failed": "FAILED", "unsuitable": "UNSUITABLE",
    "incomplete": "INCOMPLETE (re-send)",
}  # fmt: skip
REVIEW_PAGE = "views/review.py"


def priority_badge(item: WorklistItem, ai_hidden: bool = False) -> str:
    """The badge of a row: critical (the stored flag: PE score at the operating point stored with the analysis),
    needs attention, overdue, high or routine (AI-based badges become "AI hidden" for a study in the AI-hidden
    arm)."""
    if ai_hidden and not item.needs_attention and not item.overdue:
        return badge("AI HIDDEN", "routine")
    if item.rank == "critical":
        return badge("CRITICAL PE", "critical")
    if item.needs_attention:
        return badge("NEEDS ATTENTION", "attention")
    if item.overdue:
        return badge("OVERDUE", "overdue")
    if (item.priority or 0) >= HIGH_PRIORITY:
        return badge("HIGH", "high")
    return badge("ROUTINE", "routine")


def top_text(item: WorklistItem, top: dict | None) -> str:
    text = _top_text(item, top)
    if item.delivery_error:  # the SEG/SR never reached the PACS: say so, never drop it silently
        text += f"<br><span class='muted'>⚠ {safe_md(item.delivery_error)}</span>"
    return text


def _top_text(item: WorklistItem, top: dict | None) -> str:
    if item.needs_attention:
        return f"⚠ {safe_md(item.attention_reason or item.status)}"
    if item.analysed_at is None:
        return '<span class="muted">awaiting analysis</span>'
    if top is None:
        return '<span class="muted">no AI finding</span>'
    size = f" {top['diameter_mm']:.0f} mm" if top.get("diameter_mm") else ""
    where = f" · {safe_md(top['location'])}" if top.get("location") else ""
    kind = kind_label(top["kind"])
    change = top.get("change")  # comparison with a prior (#16): a growing or new nodule is tagged
    tag = f'<b data-testid="wl-change">{change}</b> ' if change in ("growing", "new") else ""
    return f"{tag}{kind}{size}{where} <span class='muted'>({top['probability'] * 100:.0f}%)</span>"


def open_study(study_id: int, *, take_over: bool = False) -> None:
    """Claim and open a study; on success go to the viewer, else remember why not."""
    user = st.session_state["user"]
    outcome = reading.open_case(user, study_id, take_over=take_over)
    if outcome.ok:
        st.query_params["study"] = str(study_id)
        st.switch_page(REVIEW_PAGE, query_params={"study": str(study_id)})
    st.session_state["claim_refused"] = {"study_id": study_id, **outcome.__dict__}


def row(item: WorklistItem, top: dict | None, ai_hidden: bool = False) -> None:
    cells = st.columns(COLS, gap="small", vertical_alignment="center")
    cells[0].html(f'<div data-testid="wl-badge">{priority_badge(item, ai_hidden)}</div>')
    if ai_hidden and not item.needs_attention:
        cells[1].html(HIDDEN)
        cells[2].html(HIDDEN)
        cells[3].html(HIDDEN)
    else:
        cells[1].html(score_html(item.embolism_score))
        cells[2].html(score_html(item.nodule_score))
        cells[3].markdown(top_text(item, top), unsafe_allow_html=True)
    cells[4].markdown(format_wait(item.waited_minutes))
    holder = f" · {safe_md(item.claimed_by)}" if item.claimed_by else ""
    cells[5].markdown(f"{STATUS_LABEL.get(item.status, item.status)}{holder}")
    scanner = item.scanner_profile or " ".join(x for x in (item.manufacturer, item.scanner_model) if x) or "–"
    cells[6].markdown(safe_md(scanner))
    cells[7].markdown(safe_md(item.patient_name or item.patient_id or "–"))
    if cells[8].button("Open", key=f"open_{item.id}", type="primary" if item.rank == "critical" else "secondary"):
        open_study(item.id)
    refused = st.session_state.get("claim_refused")
    if refused and refused["study_id"] == item.id:
        st.warning(refused["message"], icon=":material/lock:")
        if refused.get("stale") and st.button("Take over this study", key=f"take_{item.id}"):
            st.session_state.pop("claim_refused", None)
            open_study(item.id, take_over=True)


def filters() -> tuple[tuple[str, ...], str, tuple[date, date] | None]:
    c1, c2, c3 = st.columns([3, 1.4, 1.6])
    labels = {s: STATUS_LABEL[s] for s in OPEN_STATUSES} | {StudyStatus.signed.value: "signed"}
    statuses = c1.multiselect(
        "Status", list(labels), default=list(OPEN_STATUSES), format_func=lambda s: labels[s], key="wl_status"
    )
    finding = c2.selectbox("Finding", list(FINDING_FILTERS), key="wl_finding") or "All"
    # No default window: an unread study must never drop off the list because it is old.
    days = c3.date_input("Received", value=[], max_value=date.today(), key="wl_dates")
    day_range = (days[0], days[1]) if isinstance(days, (tuple, list)) and len(days) == 2 else None
    return tuple(statuses), finding, day_range


def render() -> None:
    st.subheader("Worklist")
    statuses, finding, day_range = filters()

    @st.fragment(run_every=data.settings().dashboard_refresh_s)
    def table() -> None:
        data.require_valid_session()  # the auto-refresh must stop showing patients once the sign-in ends
        url = data.db_url()
        shown = data.worklist_rows(
            url, statuses or tuple(OPEN_STATUSES), PAGE_ROWS, day_range, FINDING_FILTERS[finding]
        )
        ids = tuple(i.id for i in shown if not i.ai_hidden)  # hidden-arm studies: no AI output fetched
        tops = data.top_findings_cached(url, ids)
        counts = data.status_counts(url)
        waiting = sum(counts.get(s, 0) for s in ("ready", "in_review"))
        attention = sum(counts.get(s, 0) for s in ("failed", "unsuitable", "incomplete"))
        st.caption(
            f"{waiting} to read · {counts.get('queued', 0) + counts.get('analysing', 0)} in analysis · "
            f"{attention} need attention · {counts.get('signed', 0)} signed — showing {len(shown)}"
        )
        head = st.columns(COLS, gap="small")
        for cell, title in zip(head, HEAD):
            cell.html(f'<span class="wl-head">{title}</span>')
        if not shown:
            st.info("No studies match these filters.")
        for item in shown:
            with st.container(key=f"wl_row_{item.id}"):
                row(item, tops.get(item.id), item.ai_hidden)

    table()


render()
