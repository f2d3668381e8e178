"""Sign-in throttling (#17.5): back-off per user and per address, a lockout an admin lifts, locks audited."""

from __future__ import annotations

import io
import sys
import time

from sqlmodel import Session

from dashboard import auth
from db import queries
from db.migrate import upgrade
from db.session import create_db_engine, get_engine
from inference.cli import main
from inference.config import SignInLimits

PASSWORD = "correct-horse-battery"


def _user(data_dir, monkeypatch, name="dr_who"):
    upgrade(create_db_engine(f"sqlite:///{data_dir / 'triage.db'}"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["user", "add", name, "--password-stdin"]) == 0


def _actions(s) -> list[str]:
    return [e.action for e in reversed(queries.list_events(session=s, limit=1000))]


def test_thirty_fast_wrong_passwords_are_mostly_refused_unchecked_and_so_is_the_right_one(data_dir, monkeypatch):
    """Test that of 30 wrong passwords in a row only the first few are checked (then back-off refuses them
    without checking), and that the right password is refused too while the back-off lasts."""
    _user(data_dir, monkeypatch)
    with Session(get_engine()) as s:
        results = [
            auth.sign_in(session=s, username="dr_who", password=f"wrong-{i}", address="10.0.0.9") for i in range(30)
        ]
        assert all(r.user is None for r in results)
        assert _actions(s).count("sign_in_failed") == SignInLimits().free_failures + 1
        assert _actions(s).count("sign_in_refused") == 30 - SignInLimits().free_failures - 1
        assert "Try again in" in results[-1].message
        right = auth.sign_in(session=s, username="dr_who", password=PASSWORD, address="10.0.0.9")
        assert right.user is None and "Try again in" in right.message


def test_lockout_holds_until_an_admin_unlocks_and_is_audited(data_dir, monkeypatch, capsys):
    """Test that after lock_after failures (waiting out each back-off) the account is locked, the right password
    no longer works even after the back-off, `triage user unlock` lifts it, and lock and unlock are audited."""
    _user(data_dir, monkeypatch)
    limits = SignInLimits(free_failures=1, backoff_base_s=0.05, backoff_max_s=0.1, lock_after=4)
    with Session(get_engine()) as s:
        messages = []
        for i in range(4):
            time.sleep(0.12)
            messages.append(auth.sign_in(session=s, username="dr_who", password=f"bad{i}", limits=limits).message)
        assert "locked" in messages[-1]
        time.sleep(0.2)
        locked = auth.sign_in(session=s, username="dr_who", password=PASSWORD, limits=limits)
        assert locked.user is None and "Ask an administrator" in locked.message
        assert _actions(s).count("sign_in_locked") == 1
    assert main(["user", "unlock", "dr_who"]) == 0
    assert "unlocked" in capsys.readouterr().out
    with Session(get_engine()) as s:
        ok = auth.sign_in(session=s, username="dr_who", password=PASSWORD, limits=limits)
        assert ok.user == auth.SignedIn("dr_who", "reader")
        events = queries.list_events(session=s, limit=1000)
        unlock = next(e for e in events if e.action == "sign_in_unlocked")
        assert unlock.actor == "cli" and unlock.detail == {"username": "dr_who"}


def test_one_address_guessing_many_users_is_slowed_but_other_addresses_are_not(data_dir, monkeypatch):
    """Test that failures spread over many usernames from one address put that address in back-off, while the
    real user from another address signs in at once."""
    _user(data_dir, monkeypatch)
    with Session(get_engine()) as s:
        for i in range(SignInLimits().free_failures + 1):
            assert auth.sign_in(session=s, username=f"guess{i}", password="x" * 10, address="203.0.113.7").user is None
        blocked = auth.sign_in(session=s, username="dr_who", password=PASSWORD, address="203.0.113.7")
        assert blocked.user is None and "Try again in" in blocked.message
        other = auth.sign_in(session=s, username="dr_who", password=PASSWORD, address="198.51.100.2")
        assert other.user == auth.SignedIn("dr_who", "reader")


def test_admin_unlocks_a_locked_account_on_the_users_page(seeded):
    """Test that the users page lists a locked account and its Unlock button lifts the lock (audited)."""
    from db import throttle
    from tests.dashboard.conftest import app, texts

    limits = SignInLimits(free_failures=0, backoff_base_s=0.0, lock_after=2)
    with Session(get_engine()) as s:
        for _ in range(2):
            auth.sign_in(session=s, username="reader1", password="wrong-wrong", limits=limits)
        assert throttle.locked_users(session=s) == ["reader1"]
    at = app("admin", role="admin")
    at.switch_page("views/users.py")
    at.run()
    assert not at.exception and "Locked after too many failed sign-ins" in texts(at)
    at.button(key="unlock").click().run()
    assert not at.exception
    with Session(get_engine()) as s:
        assert throttle.locked_users(session=s) == []
        (event,) = [e for e in queries.list_events(session=s, limit=100) if e.action == "sign_in_unlocked"]
        assert event.actor == "admin"
