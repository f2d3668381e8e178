"""Streamlit entry point: page chrome, database check, the sign-in gate and the ``st.navigation`` router.

Run with ``triage serve`` (or ``streamlit run dashboard/app.py``). Nothing with patient data is drawn
before sign-in: without a signed-in user the router knows only the sign-in page.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import auth, data, reading  # noqa: E402
from dashboard.components.ui import page_chrome  # noqa: E402

USER_KEY = "user"
VIEWS = Path(__file__).resolve().parent / "views"


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
            user = auth.authenticate(session=s, username=username, password=password)
        if user is None:
            st.error("Unknown user or wrong password.")
        else:
            st.session_state[USER_KEY] = user
            st.rerun()


def sign_out(user: auth.SignedIn) -> None:
    """Close the open case, audit, forget the session."""
    reading.leave_case(user, release=True)
    with data.session() as s:
        from db import queries

        queries.record_event(session=s, actor=user.username, action="sign_out")
    for key in list(st.session_state.keys()):
        del st.session_state[key]


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
    user: auth.SignedIn | None = st.session_state.get(USER_KEY)
    if user is None:
        st.navigation([st.Page(sign_in_page, title="Sign in", url_path="signin")], position="hidden").run()
        return
    pages = [
        st.Page(VIEWS / "worklist.py", title="Worklist", icon=":material/list:", default=True),
        st.Page(VIEWS / "review.py", title="Review", icon=":material/radiology:"),
        st.Page(VIEWS / "analytics.py", title="Analytics", icon=":material/monitoring:"),
    ]
    if user.is_admin:
        pages.append(st.Page(VIEWS / "users.py", title="Users", icon=":material/group:"))
    nav = st.navigation(pages, position="top")
    top_bar(user)
    nav.run()


main()
