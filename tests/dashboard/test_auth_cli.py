"""Test Argon2 accounts, `triage user add` and the refusal of `triage serve` with unsafe settings."""

from __future__ import annotations

import io
import sys

import pytest
from sqlmodel import Session

from dashboard import auth, cli
from db import queries
from db.migrate import upgrade
from db.session import create_db_engine, get_engine
from inference.cli import main


def test_hash_is_argon2_and_verifies_only_the_password():
    """Test that hashes are Argon2id, salted, and verify only the right password."""
    h1, h2 = auth.hash_password("s3cret-pass"), auth.hash_password("s3cret-pass")
    assert h1.startswith("$argon2id$") and h1 != h2
    assert auth.verify_password(h1, "s3cret-pass") and not auth.verify_password(h1, "s3cret-pasS")
    assert not auth.verify_password("not-a-hash", "x")
    with pytest.raises(ValueError):
        auth.hash_password("short")


def test_user_add_from_stdin_then_sign_in(data_dir, monkeypatch, capsys):
    """Test that `triage user add NAME --role radiologist --password-stdin` creates a reader who can sign in."""
    upgrade(create_db_engine(f"sqlite:///{data_dir / 'triage.db'}"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-pw\n"))
    assert main(["user", "add", "dr_who", "--role", "radiologist", "--password-stdin"]) == 0
    assert "created dr_who (radiologist)" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-pw\n"))
    assert main(["user", "add", "dr_who", "--password-stdin"]) == 2
    assert "already exists" in capsys.readouterr().err
    with Session(get_engine()) as s:
        assert queries.get_user(session=s, username="dr_who").role == "reader"
        assert auth.authenticate(session=s, username="dr_who", password="long-enough-pw") == auth.SignedIn(
            "dr_who", "reader"
        )
        assert auth.authenticate(session=s, username="dr_who", password="nope-nope-nope") is None
        queries.set_user_active(session=s, username="dr_who", active=False)
        assert auth.authenticate(session=s, username="dr_who", password="long-enough-pw") is None


def test_user_passwd_sets_a_new_password_and_ends_sign_ins(data_dir, monkeypatch, capsys):
    """Test that `triage user passwd NAME` (stdin, or --generate which prints one) changes the password,
    ends the account's sign-in sessions and is a message for an unknown account."""
    upgrade(create_db_engine(f"sqlite:///{data_dir / 'triage.db'}"))
    with Session(get_engine()) as s:
        auth.add_user(session=s, username="demo", password="first-password")
        token = auth.start_session(session=s, user=auth.SignedIn("demo", "radiologist"), hours=1)
    monkeypatch.setattr(sys, "stdin", io.StringIO("second-password\n"))
    assert main(["user", "passwd", "demo", "--password-stdin"]) == 0
    with Session(get_engine()) as s:
        assert auth.authenticate(session=s, username="demo", password="second-password") is not None
        assert auth.authenticate(session=s, username="demo", password="first-password") is None
        assert auth.resume_session(session=s, token=token) is None  # signed out everywhere
    capsys.readouterr()
    assert main(["user", "passwd", "demo", "--generate"]) == 0
    generated = capsys.readouterr().out.strip().split(": ", 1)[1].split(" (")[0]
    with Session(get_engine()) as s:
        assert auth.authenticate(session=s, username="demo", password=generated) is not None
    assert main(["user", "passwd", "nobody", "--generate"]) == 2
    assert "no user 'nobody'" in capsys.readouterr().err


def test_user_add_without_schema_is_a_message(data_dir, monkeypatch, capsys):
    """Test that adding a user to an unmigrated database says to run `triage db upgrade`."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("long-enough-pw\n"))
    assert main(["user", "add", "x", "--password-stdin"]) == 2
    assert "triage db upgrade" in capsys.readouterr().err


def test_serve_refuses_unsafe_settings_outside_demo_mode(data_dir, monkeypatch, capsys):
    """Test that `triage serve` with the placeholder secret and no demo mode exits 2 with the reason."""
    monkeypatch.delenv("TRIAGE_SECRET_KEY", raising=False)
    monkeypatch.delenv("TRIAGE_DEMO_MODE", raising=False)
    assert main(["serve", "--port", "1"]) == 2
    assert "TRIAGE_SECRET_KEY" in capsys.readouterr().err
    with pytest.raises(cli.UnsafeSettings):
        cli.serve(1, env={"TRIAGE_DATA_DIR": str(data_dir)})


def test_streamlit_command_has_the_headless_flags():
    """Test that the server command is headless, loopback-bound and without telemetry or file watching."""
    cmd = " ".join(cli.streamlit_command(8765))
    for flag in (
        "--server.headless true",
        "--server.address 127.0.0.1",
        "--server.port 8765",
        "--browser.gatherUsageStats false",
        "--server.fileWatcherType none",
        "--runner.postScriptGC false",  # a full collection after every slice change cost ~100 ms
    ):
        assert flag in cmd
    assert cmd.split()[1:4] == ["-m", "streamlit", "run"] and cmd.split()[4].endswith("dashboard/app.py")


def test_session_token_resumes_until_revoked_and_cookie_scripts_are_safe(data_dir):
    """Test that a sign-in token resumes the reader, a revoked or malformed one does not, and the cookie
    scripts carry only token characters with SameSite=Strict."""
    upgrade(create_db_engine(f"sqlite:///{data_dir / 'triage.db'}"))
    with Session(get_engine()) as s:
        auth.add_user(session=s, username="dr_who", password="long-enough-pw")
        token = auth.start_session(session=s, user=auth.SignedIn("dr_who", "reader"), hours=2)
        assert auth.resume_session(session=s, token=token) == auth.SignedIn("dr_who", "reader")
        for bad in (None, "", "x';alert(1)//", token[:-1]):
            assert auth.resume_session(session=s, token=bad) is None
        queries.revoke_auth_session(session=s, token=token)
        assert auth.resume_session(session=s, token=token) is None
    script = auth.set_cookie_script(token, 2)
    assert f"triage_session={token}; Max-Age=7200" in script and "SameSite=Strict" in script
    assert "triage_session=; Max-Age=0" in auth.clear_cookie_script()
    with pytest.raises(ValueError):
        auth.set_cookie_script("a'b", 1)
