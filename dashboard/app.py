"""Streamlit entry point: page chrome, database check, the sign-in gate and the ``st.navigation`` router.

Run with ``triage serve`` (or ``streamlit run dashboard/app.py``). Nothing with patient data is drawn
before sign-in: without a signed-in user the router knows only the sign-in page. A sign-in survives a
browser reload through the ``triage_session`` cookie (a random token checked against ``db.auth`` on every
full run; expired, revoked or unknown tokens lead back to the sign-in form).
"""

from __future__ import annotations

import functools
import html
import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import auth, data, reading  # noqa: E402
from dashboard.components.ui import page_chrome  # noqa: E402
from db import queries  # noqa: E402

USER_KEY = "user"
TOKEN_KEY = data.TOKEN_KEY  # the sign-in token of this browser session (raw; the database has its hash)
COOKIE_JS_KEY = "auth_cookie_js"  # a cookie script to send with the next full run
VIEWS = Path(__file__).resolve().parent / "views"
LINKABLE_PATHS = ("review", "analytics", "users")  # page paths a link may name before sign-in
DEEP_LINK_KEY = "deep_link"  # the case a link asked for before sign-in (opened right after it)


def sign_in_page() -> None:
    """The sign-in form (the only page before sign-in)."""
    st.title("Chest CT triage")
    st.caption("Sign in to see the worklist.")
    with st.form("sign_in", border=True, width=380):
        username = st.text_input("Username", key="signin_username")
        password = st.text_input("Password", type="password", key="signin_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        with data.session() as s:
            outcome = auth.sign_in(session=s, username=username, password=password, address=st.context.ip_address)
        user = outcome.user
        if user is None:
            st.error(outcome.message)
        else:
            hours = data.settings().session_hours
            with data.session() as s:
                token = auth.start_session(session=s, user=user, hours=hours)
            st.session_state[USER_KEY] = user
            st.session_state[TOKEN_KEY] = token
            st.session_state[COOKIE_JS_KEY] = auth.set_cookie_script(token, hours)
            st.rerun()


def sign_out(user: auth.SignedIn) -> None:
    """Close the open case, audit, revoke the sign-in token, forget the session and clear the cookie."""
    reading.leave_case(user, release=True)
    with data.session() as s:
        queries.revoke_auth_session(session=s, token=st.session_state.get(TOKEN_KEY))
        queries.record_event(session=s, actor=user.username, action="sign_out")
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    st.session_state[COOKIE_JS_KEY] = auth.clear_cookie_script()


def _forget(clear_cookie: bool) -> None:
    for key in (USER_KEY, TOKEN_KEY):
        st.session_state.pop(key, None)
    if clear_cookie:
        st.session_state[COOKIE_JS_KEY] = auth.clear_cookie_script()


def signed_in_user() -> auth.SignedIn | None:
    """The reader of this browser session, re-checked against the database sign-in session on every full
    run; after a reload the cookie's token restores it. None means: show only the sign-in form."""
    user: auth.SignedIn | None = st.session_state.get(USER_KEY)
    token = st.session_state.get(TOKEN_KEY)
    if user is not None and token is None:
        return user  # set by server code only (AppTest); a browser sign-in always has a token
    if user is not None:
        with data.session() as s:
            current = auth.resume_session(session=s, token=token)
        if current is None or current.username != user.username:
            _forget(clear_cookie=True)  # expired, revoked elsewhere, or the account was disabled
            return None
        st.session_state[USER_KEY] = current  # a role change applies at once
        return current
    cookie = st.context.cookies.get(auth.COOKIE)
    if not isinstance(cookie, str) or not cookie:  # (AppTest has no real cookies)
        return None
    with data.session() as s:
        current = auth.resume_session(session=s, token=cookie)
        if current is not None:
            queries.record_event(session=s, actor=current.username, action="session_resumed")
    if current is None:
        _forget(clear_cookie=True)
        return None
    st.session_state[USER_KEY] = current
    st.session_state[TOKEN_KEY] = cookie
    return current


def send_cookie_script() -> None:
    """Run a pending cookie script (set after sign-in, clear after sign-out) in the browser, once."""
    script = st.session_state.pop(COOKIE_JS_KEY, None)
    # Always the same (hidden) container, so the elements after it keep their place from run to run.
    box = st.container(key="auth_cookie")
    if script:
        box.html(script, unsafe_allow_javascript=True)


def top_bar(user: auth.SignedIn) -> None:
    """Who is signed in, the case being read, and sign-out (right of the banner)."""
    case = reading.current()
    reading_now = f" · reading study #{case.study_id}" if case is not None and not case.signed else ""
    left, right = st.columns([8, 1.2], vertical_alignment="center")
    role = "admin" if user.is_admin else "radiologist"
    left.html(
        f'<div class="muted" data-testid="signed-in-as">Signed in as <b>{html.escape(user.username)}</b> '
        f"({role}){reading_now}</div>"
    )
    if right.button("Sign out", key="sign_out", icon=":material/logout:", width="stretch"):
        sign_out(user)
        st.rerun()


def main() -> None:
    st.set_page_config(page_title="Chest CT triage", page_icon="🫁", layout="wide", initial_sidebar_state="collapsed")
    page_chrome()
    _, error = data.engine_or_error()
    if error:
        st.error(error)
        st.stop()
    user = signed_in_user()
    send_cookie_script()
    if user is None:
        wanted = st.query_params.get("study")
        if isinstance(wanted, str) and wanted.isdigit():
            st.session_state[DEEP_LINK_KEY] = wanted  # kept through the sign-in form, shown after it
        # The app's page paths also lead to the sign-in form (not to a "page not found" dialog), so a link
        # to a case keeps its address through the sign-in.
        signin = [st.Page(sign_in_page, title="Sign in", url_path="signin", default=True)]
        signin += [st.Page(functools.partial(sign_in_page), title="Sign in", url_path=path) for path in LINKABLE_PATHS]
        st.navigation(signin, position="hidden").run()
        return
    pages = [
        st.Page(VIEWS / "worklist.py", title="Worklist", icon=":material/list:", default=True),
        st.Page(VIEWS / "review.py", title="Review", icon=":material/radiology:"),
        st.Page(VIEWS / "analytics.py", title="Analytics", icon=":material/monitoring:"),
    ]
    if user.is_admin:
        pages.append(st.Page(VIEWS / "users.py", title="Users", icon=":material/group:"))
    nav = st.navigation(pages, position="top")
    wanted = st.session_state.pop(DEEP_LINK_KEY, None)
    if wanted is not None:
        st.switch_page(pages[1], query_params={"study": wanted})
    top_bar(user)
    nav.run()


main()
