"""Sign-in session tokens: only the hash is stored; unknown, expired, revoked and disabled-user tokens fail."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from db import queries
from db.auth import token_hash
from db.models import AuthSession
from tests.db.factories import T0, make_user


def test_token_is_valid_until_expiry_and_stored_only_hashed(session: Session) -> None:
    """Test that a fresh token names its user until it expires, and the database holds only its hash."""
    make_user(session, "reader1")
    token = queries.create_auth_session(session=session, username="reader1", hours=12, now=T0)
    (row,) = session.execute(sa.select(AuthSession)).scalars().all()
    assert row.token_hash == token_hash(token) and token not in row.token_hash and len(token) >= 40
    assert row.expires_at == T0 + timedelta(hours=12) and not row.revoked
    user = queries.validate_auth_session(session=session, token=token, now=T0 + timedelta(hours=11, minutes=59))
    assert user is not None and user.username == "reader1"
    assert queries.validate_auth_session(session=session, token=token, now=T0 + timedelta(hours=12)) is None


def test_unknown_empty_revoked_and_disabled_tokens_are_rejected(session: Session) -> None:
    """Test that unknown or empty tokens, revoked tokens and tokens of disabled users give no user."""
    make_user(session, "reader1")
    make_user(session, "reader2")
    token = queries.create_auth_session(session=session, username="reader1", hours=1, now=T0)
    other = queries.create_auth_session(session=session, username="reader2", hours=1, now=T0)
    for bad in (None, "", "x" * 43, token + "x", "y" * 5000):
        assert queries.validate_auth_session(session=session, token=bad, now=T0) is None
    assert queries.revoke_auth_session(session=session, token=token) is True
    assert queries.revoke_auth_session(session=session, token=token) is False  # already revoked
    assert queries.validate_auth_session(session=session, token=token, now=T0) is None
    assert queries.validate_auth_session(session=session, token=other, now=T0).username == "reader2"
    queries.set_user_active(session=session, username="reader2", active=False)
    assert queries.validate_auth_session(session=session, token=other, now=T0) is None
    assert queries.purge_auth_sessions(session=session, now=T0) == 1  # the revoked one
    assert queries.purge_auth_sessions(session=session, now=T0 + timedelta(hours=2)) == 1  # the expired one


def test_non_positive_lifetime_is_refused(session: Session) -> None:
    """Test that a session lifetime of zero hours is refused."""
    make_user(session, "reader1")
    with pytest.raises(ValueError, match="positive"):
        queries.create_auth_session(session=session, username="reader1", hours=0)
