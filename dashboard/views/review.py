"""Review viewer: images (client-side viewer) with overlays, AI findings with verdicts, missed findings, the
report that follows the verdicts, sign-off and a keyboard map.

The case comes from the reader's open case (set by the worklist) or ``?study=ID`` (a reload or a link), which
claims it the same way. In the AI-hidden arm no AI score, finding or overlay is shown. A study the AI did not
assess (failed / unsuitable) says so, and nothing about arms. Laid out for 1920×1080: the viewer on the left,
findings and report on the right.
"""

from __future__ import annotations

import html
import time

import streamlit as st

from dashboard import data, reading
from dashboard import report as drafting
from dashboard.components import heartbeat, keys, prior_view, volume_viewer
from dashboard.components.timer import format_seconds, live_timer_html
from dashboard.components.ui import badge, safe_md, score_html
from db import queries
from inference.findings import KIND_NAMES, kind_label

LUNG_RADS = ["", "0", "1", "2", "3", "4A", "4B", "4X", "S"]
PENDING_KEY = "vw_pending"  # the point marked on the images for the missed-finding form (a viewer Click)
NAV_KEY = "vw_nav"  # (seq, lps_mm): where the viewer's crosshairs go next
SELECTED_KEY = "rv_selected"  # index of the selected AI finding (keyboard map)
KIND_LABEL = {k: kind_label(k) for k in KIND_NAMES}  # from the finding-kind registry


def not_assessed(study) -> bool:
    """The AI did not assess this study (analysis failed, or the input was unsuitable)."""
    return bool(study.attention_reason) or study.status in ("failed", "unsuitable")


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
    c1, c2, c3 = st.columns([5, 3, 1.6], vertical_alignment="center")
    meta = [
        study.accession and f"Acc {study.accession}",
        study.study_date,
        study.description,
        study.scanner_profile or study.manufacturer,
    ]
    c1.markdown(
        f"**{who or 'Unknown patient'}** &nbsp; <small>{' · '.join(safe_md(m) for m in meta if m)}</small>",
        unsafe_allow_html=True,
    )
    if not_assessed(study):
        c2.html(badge("AI DID NOT ASSESS", "attention") + ' <span class="muted">read on PACS</span>')
    elif case.ai_shown and study.embolism_score is not None:
        crit = badge("CRITICAL PE", "critical") if study.critical else ""
        c2.html(f"{crit} PE {score_html(study.embolism_score)} &nbsp; Nodule {score_html(study.nodule_score)}")
    elif case.ai_shown and study.nodule_score is not None:
        c2.html(f"Nodule {score_html(study.nodule_score)} &nbsp; PE <span class='muted'>not assessed</span>")
    elif not case.ai_shown:
        c2.html(badge("AI HIDDEN", "routine") + ' <span class="muted">study arm: read without AI</span>')
    with c3:
        st.html(
            live_timer_html(case.clock.total(time.monotonic()), running=not case.signed), unsafe_allow_javascript=True
        )


def warnings(study, folder) -> None:
    if not_assessed(study):
        reasons = data.quality_reasons(study.id) if study.attention_reason else []
        text = "; ".join(reason_text(r) for r in reasons) if reasons else study.attention_reason
        reason = f": {safe_md(text)}" if text else ""  # header text in it stays inert (no links)
        st.error(
            f"Read on PACS, AI did not assess this study ({study.status}{reason}). Report it here as usual.",
            icon=":material/warning:",
        )
        return
    if folder is None:
        st.info("No analysed images are stored for this study; read it on PACS and report here.")
        return
    case = data.case_arrays(str(folder))
    full = data.settings().quality.full_chest_extent_mm
    notes = render_warnings(case, full)
    if notes:
        st.warning(safe_md(" · ".join(notes)), icon=":material/report:")  # header text stays inert (no links)


def reason_text(reason) -> str:
    """One quality reason for the screen: severity, code, message and advice."""
    advice = f" {reason.advice}" if reason.advice else ""
    return f"[{reason.severity}] {reason.code}: {reason.message}.{advice}"


def render_warnings(case, full_chest_mm: float) -> list[str]:
    from dashboard.components.render import coverage_warnings

    notes = coverage_warnings(case.volume, full_chest_mm)
    for reason in case.result.quality.reasons:
        if reason.message and not any(reason.message in n for n in notes):
            notes.append(f"Quality: {reason_text(reason)}")
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


def go_to(finding, n: int) -> None:
    """Move the viewer's crosshairs to a finding (and select it for the keyboard map)."""
    seq = (st.session_state.get(NAV_KEY) or (0, None))[0] + 1
    st.session_state[NAV_KEY] = (seq, (finding.center_x_mm, finding.center_y_mm, finding.center_z_mm))
    st.session_state[SELECTED_KEY] = n


def kind_text(f) -> str:
    """The finding's kind (and texture) as HTML text."""
    text = KIND_LABEL.get(f.kind, f.kind)
    return html.escape(f"{text}, {f.texture}" if f.texture and f.kind != "embolism" else text)


def findings_panel(user, case: reading.OpenCase, findings: list) -> None:
    """AI findings with go-to and confirm / reject (a verdict reruns the page, so the report draft follows)."""
    reading.touch()
    with data.session() as s:
        verdicts = data.reader_verdicts(s, user.username, [f.id for f in findings])
    if not findings:
        st.caption("The AI reported no finding.")
    selected = st.session_state.get(SELECTED_KEY)
    min_p = data.settings().lung_rads_min_probability
    for n, f in enumerate(findings):
        with st.container(key=f"finding_{f.id}", border=selected == n):
            c = st.columns([2.7, 0.8, 0.8, 0.8], vertical_alignment="center", gap="small")
            size = f"{f.diameter_mm:.0f} mm" if f.diameter_mm else ""
            rads = f" · Lung-RADS {html.escape(f.lung_rads)}" if f.lung_rads and f.probability >= min_p else ""
            loc = f" · {html.escape(f.location)}" if f.location else ""
            c[0].html(f"<b>{n + 1}</b> {kind_text(f)} {score_html(f.probability)} {size}{loc}{rads}")
            if f.center_x_mm is not None and c[1].button("Go", key=f"goto_{f.id}", width="stretch"):
                go_to(f, n)
                st.rerun()
            verdict = verdicts.get(f.id)
            for col, label, value in ((c[2], "✓", "confirmed"), (c[3], "✗", "rejected")):
                col.button(
                    label,
                    key=f"{value}_{f.id}",
                    help="Confirm (C)" if value == "confirmed" else "Reject (X)",
                    type="primary" if verdict == value else "secondary",
                    width="stretch",
                    on_click=record_verdict,
                    args=(user, case, f.id, value),
                )


def add_finding_form(user, case: reading.OpenCase, pending: volume_viewer.Click | None) -> None:
    """The "missed finding" form bound to the point clicked on the images."""
    if pending is None:
        st.caption("Click on the images (without dragging) to mark a finding the AI missed.")
        return
    with st.container(border=True, key="add_finding"):
        k, j, i = pending.kji
        x, y, z = pending.lps_mm
        st.markdown(f"**Add a missed finding** at voxel ({k}, {j}, {i}) · LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")
        c1, c2, c3, c4 = st.columns([1.1, 1, 2, 1], vertical_alignment="bottom")
        kind = str(c1.selectbox("Kind", list(KIND_NAMES), key="add_kind", format_func=lambda v: KIND_LABEL.get(v, v)))
        diameter = c2.number_input("Diameter (mm)", 0.0, 200.0, 0.0, 0.5, key="add_diam")
        note = c3.text_input("Note", key="add_note", max_chars=500)
        if c4.button("Add", key="add_submit", type="primary"):
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
            st.session_state.pop(PENDING_KEY, None)
            st.toast("Finding added")
            st.rerun()


def activity_heartbeat(case: reading.OpenCase) -> None:
    """The browser heartbeat (its own fragment: a report reruns only this, not the page)."""
    data.require_valid_session()
    value = heartbeat.heartbeat(case.reading_session_id, idle_s=data.settings().reading_idle_cap_s)
    reading.browser_report(value)


def _choice(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def report_form(user, case: reading.OpenCase, findings: list, reader_findings: list, study) -> None:
    """The report, prefilled from the verdicts (until the reader edits it); contradictions need a reason.

    Not an ``st.form``: no key press (Enter, Ctrl+Enter) submits it, only the Sign button; Nodule and PE
    start unanswered unless a verdict answers them, and an unanswered form cannot be signed."""
    with data.session() as s:
        verdicts = data.reader_verdicts(s, user.username, [f.id for f in findings]) if case.ai_shown else {}
    d = drafting.draft(findings if case.ai_shown else [], verdicts, reader_findings)
    fingerprint = (d.nodule, d.embolism, d.lung_rads, d.impression)
    if st.session_state.get("rep_draft") != fingerprint and not st.session_state.get("rep_edited"):
        st.session_state["rep_draft"] = fingerprint  # follow the verdicts until the reader edits the form
        st.session_state["rep_nodule"] = "yes" if d.nodule else None
        st.session_state["rep_pe"] = "yes" if d.embolism else None
        st.session_state["rep_lungrads"] = d.lung_rads or ""
        st.session_state["rep_impression"] = d.impression

    def edited() -> None:
        st.session_state["rep_edited"] = True

    st.markdown(
        "##### Report"
        + (
            " <small class='muted'>(drafted from your verdicts)</small>"
            if d.impression and not st.session_state.get("rep_edited")
            else ""
        ),
        unsafe_allow_html=True,
    )
    c1, c2, c3 = st.columns([1, 1.3, 1])
    nodule = c1.radio("Nodule", ["no", "yes"], horizontal=True, key="rep_nodule", index=None, on_change=edited)
    embolism = c2.radio(
        "Pulmonary embolism", ["no", "yes"], horizontal=True, key="rep_pe", index=None, on_change=edited
    )
    lung_rads = c3.selectbox(
        "Lung-RADS", LUNG_RADS, key="rep_lungrads", format_func=lambda v: v or "none", index=None, on_change=edited
    )
    impression = st.text_area("Impression", key="rep_impression", height=90, max_chars=4000, on_change=edited)
    as_bool = {"yes": True, "no": False, None: None}
    problems = drafting.contradictions(d, nodule=as_bool[nodule], embolism=as_bool[embolism], lung_rads=lung_rads)
    reason = ""
    if problems:
        st.warning(
            "This report contradicts your verdicts:\n" + "\n".join(f"- {p}" for p in problems), icon=":material/error:"
        )
        reason = st.text_input("Reason for signing it anyway (required)", key="rep_reason", max_chars=500)
    if not st.button("Sign report", type="primary", icon=":material/draw:", key="sign"):
        return
    if nodule is None or embolism is None:
        st.error("Not signed: answer Nodule and Pulmonary embolism first.")
        return
    if problems and not reason.strip():
        st.error("Not signed: the report contradicts your verdicts; give a reason or correct the report.")
        return
    try:
        seconds = reading.sign(
            user,
            nodule=nodule == "yes",
            embolism=embolism == "yes",
            lung_rads=lung_rads or None,
            impression=impression,
            override=(problems, reason.strip()) if problems else None,
        )
    except queries.ReviewConflict as exc:
        st.error(f"Not signed: {exc}.")
        return
    st.session_state["just_signed"] = (seconds, case.clock.source)
    for k in ("rep_draft", "rep_edited", "rep_nodule", "rep_pe", "rep_lungrads", "rep_impression", "rep_reason"):
        st.session_state.pop(k, None)
    st.rerun()


def next_case(user) -> None:
    """Leave this case and open the next one on the worklist (not signed, not held by someone else)."""
    current = reading.current()
    rows = data.worklist_rows(data.db_url(), (), 50)
    for row in rows:
        if current is not None and row.id == current.study_id:
            continue
        if row.claimed_by and row.claimed_by != user.username:
            continue
        if reading.open_case(user, row.id).ok:
            st.query_params["study"] = str(row.id)
            for k in ("rep_draft", "rep_edited", PENDING_KEY, NAV_KEY, SELECTED_KEY):
                st.session_state.pop(k, None)
            st.rerun()
    st.toast("No other case waiting.")


def keyboard(user, case: reading.OpenCase, findings: list) -> None:
    """The keyboard map: J/K next/previous finding, C/X confirm/reject it, ] next case."""
    press = keys.new_press(keys.key_press(keys.REVIEW_KEYS), st.session_state.setdefault("keys_seen", {}))
    if press is None:
        return
    if press == "]":
        next_case(user)
        return
    if not findings or not case.ai_shown:
        return
    n = st.session_state.get(SELECTED_KEY)
    if press in ("j", "k"):
        n = 0 if n is None else (n + (1 if press == "j" else -1)) % len(findings)
        go_to(findings[n], n)
    elif press in ("c", "x") and n is not None and n < len(findings):
        record_verdict(user, case, findings[n].id, "confirmed" if press == "c" else "rejected")


def signed_view() -> None:
    seconds, source = st.session_state.get("just_signed") or (None, "")
    how = {"browser": " (from browser activity)", "server": " (estimated from interactions)"}.get(source, "")
    st.success(f"Signed. Active reading time {format_seconds(seconds)}{how}.", icon=":material/check_circle:")
    if st.button("Next case", type="primary"):
        st.query_params.clear()
        st.session_state.pop(reading.CASE_KEY, None)
        st.switch_page("views/worklist.py")


def render() -> None:
    user = st.session_state["user"]
    case = resolve_case(user)
    if case is None:
        st.info("No case is open. Choose one on the worklist.")
        st.page_link("views/worklist.py", label="Go to the worklist", icon=":material/list:")
        return
    if case.signed:
        signed_view()
        return
    reading.touch()
    with data.session() as s:
        study = queries.get_study(session=s, study_id=case.study_id)
        findings = queries.get_findings(session=s, study_id=case.study_id)
        updated = queries.updated_since_opened(session=s, reading_session_id=case.reading_session_id)
    if study is None:
        st.error("This study is no longer in the database.")
        return
    with data.session() as s:
        reader_findings = [
            r for r in queries.list_reader_findings(session=s, study_id=case.study_id) if r.reader == user.username
        ]
    assessed = not not_assessed(study)
    ai_findings = findings if case.ai_shown and assessed else []
    keyboard(user, case, ai_findings)
    folder = data.case_folder(case.study_uid) if assessed else None
    header(study, case)
    if updated:
        st.warning(
            "Updated since you opened it: new or changed images arrived and the AI analysed the study again "
            f"(analysis version {study.analysis_version}). The images and findings below are the new ones.",
            icon=":material/update:",
        )
    warnings(study, folder)
    left, right = st.columns([3.1, 2], gap="small")
    with left:
        if folder is not None:
            click = volume_viewer.volume_viewer(
                str(folder),
                ai_shown=case.ai_shown,
                ctpa=study.embolism_score is not None or "ctpa" in (study.description or "").lower(),
                nav=st.session_state.get(NAV_KEY),
                reader_points=tuple(
                    (int(r.center_k), int(r.center_j), int(r.center_i))
                    for r in reader_findings
                    if r.center_k is not None and r.center_j is not None and r.center_i is not None
                ),
                height=600,
            )
            if click is not None:
                reading.touch()
                st.session_state[PENDING_KEY] = click
            if case.ai_shown:  # comparison with the prior (#16): its own section below the viewer
                st.fragment(prior_view.render_section)(str(folder), str(data.settings().data_dir))
    with right:
        if case.ai_shown and assessed:
            st.markdown(
                "##### AI findings <small class='muted'>J/K next/prev · C confirm · X reject · ] next case</small>",
                unsafe_allow_html=True,
            )
            findings_panel(user, case, ai_findings)  # a verdict reruns the page: the report draft follows it
        elif assessed:
            st.info("AI results are hidden for this case (AI-hidden study arm). Read it as you would without AI.")
        if folder is not None:
            add_finding_form(user, case, st.session_state.get(PENDING_KEY))
        report_form(user, case, ai_findings, reader_findings, study)
    st.fragment(activity_heartbeat)(case)


render()
