"""Users (admins only): the accounts, adding one, enabling and disabling, and the latest audit events."""

from __future__ import annotations

import streamlit as st

from dashboard import auth, data
from db import queries, throttle


def render() -> None:
    user: auth.SignedIn = st.session_state["user"]
    if not user.is_admin:
        st.error("Only administrators can manage accounts.")
        return
    st.subheader("Users")
    with data.session() as s:
        users = queries.list_users(session=s)
        events = queries.list_events(session=s, limit=100)
    st.dataframe(
        [
            {
                "username": u.username,
                "role": "admin" if u.role == "admin" else "radiologist",
                "active": u.active,
                "created": u.created_at,
            }
            for u in users
        ],
        hide_index=True,
        width="stretch",
    )
    left, right = st.columns(2)
    with left, st.form("add_user", border=True):
        st.markdown("##### Add an account")
        name = st.text_input("Username")
        role = st.selectbox("Role", ["radiologist", "admin"]) or "radiologist"
        password = st.text_input("Password", type="password", help=f"At least {auth.MIN_PASSWORD_LENGTH} characters")
        if st.form_submit_button("Add account", type="primary"):
            try:
                with data.session() as s:
                    auth.add_user(session=s, username=name, password=password, role=role)
                    queries.record_event(
                        session=s, actor=user.username, action="user_added", detail={"username": name.strip()}
                    )
                st.success(f"Added {name.strip()}.")
            except ValueError as exc:
                st.error(str(exc))
    with right, st.container(border=True):
        st.markdown("##### Enable or disable")
        account = st.selectbox(
            "Account", [u.username for u in users if u.username != user.username], key="toggle_user"
        )
        c1, c2 = st.columns(2)
        for col, label, active in ((c1, "Enable", True), (c2, "Disable", False)):
            if account and col.button(label, key=f"user_{label}"):
                with data.session() as s:
                    queries.set_user_active(session=s, username=account, active=active)
                    queries.record_event(
                        session=s, actor=user.username, action=f"user_{label.lower()}d", detail={"username": account}
                    )
                st.rerun()
    with data.session() as s:
        locked = throttle.locked_users(session=s)
    if locked:
        with st.container(border=True):
            st.markdown("##### Locked after too many failed sign-ins")
            who = st.selectbox("Locked account", locked, key="unlock_user")
            if who and st.button("Unlock", key="unlock"):
                with data.session() as s:
                    throttle.unlock(session=s, username=who, actor=user.username)
                st.rerun()
    st.markdown("##### Audit trail (latest 100)")
    st.dataframe(
        [
            {"at": e.at, "actor": e.actor, "action": e.action, "study id": e.study_id, "detail": str(e.detail or "")}
            for e in events
        ],
        hide_index=True,
        width="stretch",
    )


render()
