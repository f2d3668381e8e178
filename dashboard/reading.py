"""The reader's open case in this browser session: claim, arm assignment, reading session, timer, leave.

One case is open at a time. Opening claims it (or reports who holds it), records the study's AI arm on its
very first opening (the keyed draw of ``db.arms`` against ``Settings.ai_hidden_fraction``, the same arm the
worklist already applied), starts a ``ReadingSession`` (audited ``open`` by ``db``). Leaving (another case,
sign-out) closes the reading session with the active time so far and gives the claim back; signing closes it
too (``db.queries.sign_report`` releases the claim).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import streamlit as st

from dashboard import data
from dashboard.auth import SignedIn
from dashboard.components import heartbeat
from dashboard.components.timer import ActivityClock
from db import arms, queries
from db.types import as_utc, utcnow

log = logging.getLogger(__name__)
CASE_KEY = "open_case"


@dataclass
class OpenCase:
    """The case this browser session is reading."""

    study_id: int
    study_uid: str
    reading_session_id: int
    ai_shown: bool
    clock: ActivityClock = field(default_factory=ActivityClock)
    signed: bool = False


@dataclass(frozen=True)
class OpenOutcome:
    """Result of ``open_case``: ``ok``, or a message saying why not (who holds it) and whether it is stale."""

    ok: bool
    message: str = ""
    holder: str | None = None
    stale: bool = False


def current() -> OpenCase | None:
    """The open case of this session, if any."""
    return st.session_state.get(CASE_KEY)


def assign_arm(existing: bool | None, draw: float, fraction: float, critical: bool = False) -> bool:
    """``ai_shown`` for a case: the recorded arm if the study was opened before, else shown unless the
    study's draw (``db.arms.arm_draw``, in [0, 1)) is below ``fraction`` (``db.arms.drawn_hidden``: a study
    the AI flags critical is always shown)."""
    if existing is not None:
        return bool(existing)
    return not arms.drawn_hidden(draw, fraction, critical)


def open_case(user: SignedIn, study_id: int, *, take_over: bool = False) -> OpenOutcome:
    """Claim ``study_id`` for ``user`` and start timing (idempotent for the case already open)."""
    case = current()
    if case is not None and case.study_id == study_id and not case.signed:
        return OpenOutcome(ok=True)
    settings = data.settings()
    with data.session() as s:
        study = queries.get_study(session=s, study_id=study_id)
        if study is None:
            return OpenOutcome(ok=False, message="This study does not exist (it may have been removed).")
        if study.status == "signed":
            return OpenOutcome(ok=False, message="This study is already signed.")
        if not take_over and study.claimed_by and study.claimed_by != user.username:
            return held_outcome(s, study, settings.claim_stale_minutes)
        result = queries.claim_study(session=s, study_id=study_id, reader=user.username, take_over=take_over)
        if not result.ok:
            return OpenOutcome(
                ok=False, holder=result.holder, message=f"In review by {result.holder} (claimed just now)."
            )
        if take_over:
            queries.record_event(session=s, actor=user.username, action="take_over", study_id=study_id)
        leave_case(user, release=True, keep=study_id)
        earlier = queries.unclosed_reading_session(session=s, study_id=study_id, reader=user.username)
        if earlier is not None:  # a reload (or a closed tab) of this reader: go on with that reading session
            rid, ai_shown, carried = int(earlier.id or 0), bool(earlier.ai_shown), float(earlier.active_seconds or 0.0)
        else:
            draw = data.study_draw(s, study_id, study.study_uid)
            ai_shown = assign_arm(data.study_arm(s, study_id), draw, settings.ai_hidden_fraction, bool(study.critical))
            # audited by db as "open" (with the arm)
            rid = queries.open_reading_session(session=s, study_id=study_id, reader=user.username, ai_shown=ai_shown)
            carried = 0.0
        study_uid = study.study_uid
    clock = ActivityClock(
        idle_cap_s=settings.reading_idle_cap_s, report_interval_s=heartbeat.INTERVAL_S, carried_s=carried
    )
    clock.touch(time.monotonic())
    st.session_state[CASE_KEY] = OpenCase(study_id, study_uid, rid, ai_shown, clock)
    data.clear_worklist_cache()
    log.info("study id %d opened (reading session %d)", study_id, rid)
    return OpenOutcome(ok=True)


def held_outcome(s, study, stale_minutes: float) -> OpenOutcome:
    """Why another reader cannot open ``study`` now: "in review by X since HH:MM" (the holder's reading
    session), with the idle time; a claim idle longer than ``stale_minutes`` has expired and may be taken over."""
    claimed_at = as_utc(study.claimed_at)  # refreshed by the holder's activity (heartbeats)
    idle = (utcnow() - claimed_at) if claimed_at else timedelta(0)
    stale = idle > timedelta(minutes=stale_minutes)
    since = queries.unclosed_reading_session(session=s, study_id=study.id, reader=study.claimed_by)
    opened = as_utc(since.opened_at) if since is not None else claimed_at
    when = opened.astimezone().strftime("%H:%M") if opened else "?"
    minutes = int(idle.total_seconds() // 60)
    return OpenOutcome(
        ok=False,
        holder=study.claimed_by,
        stale=stale,
        message=f"In review by {study.claimed_by} since {when} (last activity {minutes} min ago)."
        + (" The claim has expired; you may take it over." if stale else ""),
    )


def touch() -> float:
    """Record an interaction with the open case; returns its active seconds so far (0 without a case)."""
    case = current()
    if case is None or case.signed:
        return 0.0
    return case.clock.touch(time.monotonic())


def browser_report(value: object) -> float | None:
    """Feed a heartbeat report (``components.heartbeat``) into the open case's clock; returns the seconds
    added, or None (no case, a report already counted, or one counted for another case)."""
    case = current()
    if case is None or case.signed:
        return None
    seen = st.session_state.setdefault(heartbeat.SEEN_KEY, {})
    seconds = heartbeat.new_report(value, case.reading_session_id, seen)
    if seconds is not None:
        now = time.monotonic()
        case.clock.add_browser(seconds, now)
        with data.session() as s:  # a reload resumes from these seconds; the claim's idle time restarts
            queries.save_reading_progress(
                session=s, reading_session_id=case.reading_session_id, active_seconds=case.clock.total(now)
            )
            if seconds > 0:
                queries.touch_claim(session=s, study_id=case.study_id, reader=current_user())
    return seconds


def current_user() -> str:
    user = st.session_state.get("user")
    return getattr(user, "username", "")


def close_timing(case: OpenCase) -> float:
    """Close the case's reading session with its active time; returns the seconds recorded."""
    seconds = round(case.clock.total(time.monotonic()), 1)
    with data.session() as s:
        queries.close_reading_session(session=s, reading_session_id=case.reading_session_id, active_seconds=seconds)
    log.info(
        "reading session %d closed: %.1f s active (%s timing, %d heartbeat reports)",
        case.reading_session_id,
        seconds,
        case.clock.source,
        case.clock.reports,
    )
    return seconds


def leave_case(user: SignedIn, *, release: bool = True, keep: int | None = None) -> None:
    """Stop reading the open case (close its timing; give the claim back unless it is ``keep``)."""
    case = current()
    if case is None:
        return
    st.session_state.pop(CASE_KEY, None)
    if case.signed:
        return
    close_timing(case)
    if release and case.study_id != keep:
        with data.session() as s:
            queries.release_study(session=s, study_id=case.study_id, reader=user.username)
    data.clear_worklist_cache()


def sign(
    user: SignedIn,
    *,
    nodule: bool,
    embolism: bool,
    lung_rads: str | None,
    impression: str | None,
    override: tuple[list[str], str] | None = None,
) -> float:
    """Sign the open case's report and stop its timer; returns the active seconds recorded. ``override``
    (the contradictions with the reader's verdicts and the reader's reason) is audited as
    ``sign_contradiction`` next to the signature.

    Raises:
        db.queries.ReviewConflict: another reader took the study over, or it was signed meanwhile.
    """
    case = current()
    if case is None:
        raise RuntimeError("no case is open")
    case.clock.touch(time.monotonic())
    with data.session() as s:
        queries.sign_report(
            session=s,
            study_id=case.study_id,
            reader=user.username,
            nodule=nodule,
            embolism=embolism,
            lung_rads=lung_rads,
            impression=impression or None,
        )
        if override is not None:
            queries.record_event(
                session=s,
                actor=user.username,
                action="sign_contradiction",
                study_id=case.study_id,
                detail={"contradictions": override[0], "reason": override[1]},
            )
    seconds = close_timing(case)
    case.signed = True
    data.clear_worklist_cache()
    data.clear_analytics_cache()
    return seconds
