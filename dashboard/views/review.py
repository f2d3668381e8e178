"""Review viewer: images with overlays, AI findings with verdicts, missed findings, the report and sign-off.

The case comes from the reader's open case (set by the worklist) or ``?study=ID`` (a reload or a link), which
claims it the same way. In the AI-hidden arm no AI score, finding or overlay is shown.
"""

from __future__ import annotations

import time

import streamlit as st

from dashboard import data, reading
from dashboard.components import heartbeat, prior_view, viewer
from dashboard.components.timer import format_seconds
from dashboard.components.ui import badge, safe_md, score_html
from db import queries

LUNG_RADS = ["", "0", "1", "2", "3", "4A", "4B", "4X", "S"]


def resolve_case(user) -> reading.OpenCase | None:
    """The open case, opening ``?study=`` if it names another one."""
    wanted = st.query_params.get("study")
    case = reading.current()
    if wanted and wanted.isdigit() and (case is None or case.study_id != int(wanted)):
        outcome = reading.open_case(user, int(wanted))
        if not outcome.ok:
            st.warning(outcome.message, icon=":material/lock:")
            if outcome.stale and st.button("Take over this study", key="take_over"):
                reading.open_case(user, int(wanted), take_over=True)
                st.rerun()
            return None
        case = reading.current()
    return case


def header(study, case: reading.OpenCase) -> None:
    who = " · ".join(
        safe_md(x) for x in (study.patient_name, study.patient_id, study.patient_age, study.patient_sex) if x
    )
    c1, c2, c3 = st.columns([5, 2.5, 1.5], vertical_alignment="center")
    c1.markdown(f"#### {who or 'Unknown patient'}")
    meta = [
        study.accession and f"Acc {study.accession}",
        study.study_date,
        study.description,
        study.scanner_profile or study.manufacturer,
    ]
    c1.caption(" · ".join(safe_md(m) for m in meta if m))
    if case.ai_shown and study.embolism_score is not None:
        crit = badge("CRITICAL PE", "critical") if study.critical else ""
        c2.html(f"{crit} PE {score_html(study.embolism_score)} &nbsp; Nodule {score_html(study.nodule_score)}")
    elif not case.ai_shown:
        c2.html(badge("AI HIDDEN", "routine") + ' <span class="muted">study arm: read without AI</span>')
    seconds = case.clock.total(time.monotonic())
    c3.markdown(
        f":material/timer: **{format_seconds(seconds)}** active",
        help="Reading time: the seconds this page was visible and in use (reported by the browser), or, until "
        "the browser's first report, estimated from your interactions with this case (a pause longer than "
        "the idle cap counts only up to the cap).",
    )


def warnings(study, folder) -> None:
    if study.attention_reason:
        st.error(
            f"Needs attention ({study.status}): {study.attention_reason}. The AI did not assess this study.",
            icon=":material/warning:",
        )
    if folder is None:
        st.info("No analysed images are stored for this study; read it on PACS and report here.")
        return
    case = data.case_arrays(str(folder))
    full = data.settings().quality.full_chest_extent_mm
    notes = render_warnings(case, full)
    for note in notes:
        st.warning(note, icon=":material/report:")


def render_warnings(case, full_chest_mm: float) -> list[str]:
    from dashboard.components.render import coverage_warnings

    notes = coverage_warnings(case.volume, full_chest_mm)
    quality = case.result.quality or {}
    for reason in quality.get("reasons", []):
        text = reason.get("message") if isinstance(reason, dict) else str(reason)
        if text and text not in notes:
            notes.append(f"Quality: {text}")
    return notes


def record_verdict(user, case: reading.OpenCase, finding_id: int, verdict: str) -> None:
    """Button callback: store the reader's verdict on one AI finding (``set_verdict`` audits it)."""
    with data.session() as s:
        if data.reader_verdicts(s, user.username, [finding_id]).get(finding_id) == verdict:
            return  # a repeated click: nothing changes, nothing to audit
        queries.set_verdict(
            session=s,
            finding_id=finding_id,
            reader=user.username,
            verdict=verdict,
            reading_session_id=case.reading_session_id,
        )


def findings_panel(user, case: reading.OpenCase) -> None:
    """AI findings with jump-to-slice and confirm / reject (fragment: verdicts do not rerun the page)."""
    reading.touch()
    with data.session() as s:
        findings = queries.get_findings(session=s, study_id=case.study_id)
        verdicts = data.reader_verdicts(s, user.username, [f.id for f in findings])
    st.markdown("##### AI findings")
    if not findings:
        st.caption("The AI reported no finding.")
    widths = [0.35, 1.1, 0.7, 1.5, 0.8, 1.2, 3.4]
    head = st.columns(widths)
    for cell, title in zip(head, ["#", "Kind", "Prob.", "Size / volume", "Lung-RADS", "Location", ""]):
        cell.html(f'<span class="wl-head">{title}</span>')
    for n, f in enumerate(findings, 1):
        with st.container(key=f"finding_{f.id}"):
            c = st.columns(widths, vertical_alignment="center")
            c[0].markdown(f"**{n}**")
            kind = "PE" if f.kind == "embolism" else f"nodule{', ' + safe_md(f.texture) if f.texture else ''}"
            c[1].markdown(kind)
            c[2].html(score_html(f.probability))
            size = " / ".join(
                x for x in (f.diameter_mm and f"{f.diameter_mm:.1f} mm", f.volume_ml and f"{f.volume_ml:.2f} ml") if x
            )
            c[3].markdown(size or "–")
            c[4].markdown(safe_md(f.lung_rads) if f.lung_rads else "–")
            c[5].markdown(safe_md(f.location) if f.location else "–")
            b = c[6].columns([1, 1.3, 1.1], gap="small")
            if f.center_k is not None and b[0].button("Go to", key=f"goto_{f.id}", width="stretch"):
                viewer.go_to((f.center_k, f.center_j, f.center_i))
                st.rerun()
            verdict = verdicts.get(f.id)
            for col, label, value in ((b[1], "Confirm", "confirmed"), (b[2], "Reject", "rejected")):
                col.button(
                    label,
                    key=f"{value}_{f.id}",
                    type="primary" if verdict == value else "secondary",
                    width="stretch",
                    on_click=record_verdict,
                    args=(user, case, f.id, value),
                )
            if verdict:
                c[6].caption(f"Your verdict: **{verdict}**")


def add_finding_form(user, case: reading.OpenCase):
    """The "missed finding" form bound to the point marked on the images."""

    def form(pending: viewer.Marked | None) -> None:
        with st.container(border=True, key="add_finding"):
            st.markdown("##### Add a finding the AI missed")
            if pending is None:
                st.caption("Click on any image to mark the position.")
                return
            k, j, i = pending.kji
            x, y, z = pending.lps_mm
            st.markdown(
                f"Marked on {pending.plane}: voxel (k, j, i) = ({k}, {j}, {i}) · LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm"
            )
            c1, c2, c3, c4 = st.columns([1.2, 1, 2.5, 1], vertical_alignment="bottom")
            kind = c1.selectbox(
                "Kind",
                ["nodule", "embolism"],
                key="add_kind",
                format_func=lambda v: "PE" if v == "embolism" else "nodule",
            )
            diameter = c2.number_input("Diameter (mm)", 0.0, 100.0, 0.0, 0.5, key="add_diam")
            note = c3.text_input("Note", key="add_note", max_chars=500)
            if c4.button("Add finding", key="add_submit", type="primary"):
                with data.session() as s:
                    queries.add_reader_finding(  # audited by db (add_finding)
                        session=s,
                        study_id=case.study_id,
                        reader=user.username,
                        kind=kind,
                        center_mm=pending.lps_mm,
                        center_voxel=pending.kji,
                        diameter_mm=diameter or None,
                        note=note or None,
                        reading_session_id=case.reading_session_id,
                    )
                st.session_state.pop(viewer.PENDING_KEY, None)
                st.toast("Finding added")
                st.rerun()

    return form


def activity_heartbeat(case: reading.OpenCase) -> None:
    """The browser heartbeat (its own fragment: a report reruns only this, not the page)."""
    data.require_valid_session()
    value = heartbeat.heartbeat(case.reading_session_id, idle_s=data.settings().reading_idle_cap_s)
    reading.browser_report(value)


def report_form(user, case: reading.OpenCase, reader_findings: list) -> None:
    st.markdown("##### Report")
    if reader_findings:
        st.caption(
            "Your added findings: "
            + "; ".join(
                f"{'PE' if r.kind == 'embolism' else 'nodule'} at ({r.center_k}, {r.center_j}, {r.center_i})"
                for r in reader_findings
            )
        )
    with st.form("report", border=True):
        c1, c2, c3 = st.columns(3)
        nodule = c1.radio("Nodule", ["no", "yes"], horizontal=True, key="rep_nodule")
        embolism = c2.radio("Pulmonary embolism", ["no", "yes"], horizontal=True, key="rep_pe")
        lung_rads = c3.selectbox("Lung-RADS", LUNG_RADS, key="rep_lungrads", format_func=lambda v: v or "none")
        impression = st.text_area("Impression", key="rep_impression", height=68, max_chars=4000)
        signed = st.form_submit_button("Sign report", type="primary", icon=":material/draw:")
    if signed:
        try:
            seconds = reading.sign(
                user,
                nodule=nodule == "yes",
                embolism=embolism == "yes",
                lung_rads=lung_rads or None,
                impression=impression,
            )
        except queries.ReviewConflict as exc:
            st.error(f"Not signed: {exc}.")
            return
        st.session_state["just_signed"] = (seconds, case.clock.source)
        st.rerun()


def render() -> None:
    user = st.session_state["user"]
    case = resolve_case(user)
    if case is None:
        st.info("No case is open. Choose one on the worklist.")
        st.page_link("views/worklist.py", label="Go to the worklist", icon=":material/list:")
        return
    if case.signed:
        seconds, source = st.session_state.get("just_signed") or (None, "")
        how = {"browser": " (from browser activity)", "server": " (estimated from interactions)"}.get(source, "")
        st.success(f"Signed. Active reading time {format_seconds(seconds)}{how}.", icon=":material/check_circle:")
        if st.button("Next case", type="primary"):
            st.query_params.clear()
            st.session_state.pop(reading.CASE_KEY, None)
            st.switch_page("views/worklist.py")
        return
    reading.touch()
    with data.session() as s:
        study = queries.get_study(session=s, study_id=case.study_id)
        reader_findings = queries.list_reader_findings(session=s, study_id=case.study_id)
    folder = data.case_folder(case.study_uid)
    header(study, case)
    warnings(study, folder)
    points = [
        (r.center_k, r.center_j, r.center_i)
        for r in reader_findings
        if r.reader == user.username and r.center_k is not None
    ]

    if folder is not None:

        @st.fragment
        def image_viewer() -> None:
            data.require_valid_session()
            viewer.viewer(
                str(folder),
                ai_shown=case.ai_shown,
                reader_points=points,
                on_interaction=reading.touch,
                add_form=add_finding_form(user, case),
            )

        image_viewer()
        if case.ai_shown:  # comparison with the prior (#16): its own section, independent of the viewer
            st.fragment(prior_view.render_section)(str(folder), str(data.settings().data_dir))
    left, right = st.columns([3, 2], gap="medium")
    with left:
        if case.ai_shown:
            st.fragment(findings_panel)(user, case)
        else:
            st.info("AI results are hidden for this case (AI-hidden study arm). Read it as you would without AI.")
    with right:
        report_form(user, case, [r for r in reader_findings if r.reader == user.username])
    st.fragment(activity_heartbeat)(case)


render()
