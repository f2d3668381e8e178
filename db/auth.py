"""Sign-in sessions of the dashboard: an opaque random token the browser keeps in a cookie, so a page reload does
not sign the reader out.

Only an HMAC-SHA256 of the token, keyed with ``TRIAGE_SECRET_KEY``, is stored (``AuthSession.token_hash``): a
stolen database yields no usable token and, without the key, not even a way to test guesses offline; changing
the key signs everybody out. A token is valid until ``expires_at``, until it is revoked (sign-out), or until
its user is disabled. Every function commits its own transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from db.models import AuthSession, User
from db.types import as_utc, table_of, utcnow

_T = table_of(AuthSession)
_U = table_of(User)
#: Random bytes per token (URL-safe base64, 43 characters).
TOKEN_BYTES = 32


def _secret() -> bytes:
    from inference.config import get_settings

    return get_settings().secret_key.encode("utf-8")


def token_hash(token: str, key: bytes | None = None) -> str:
    """The stored form of a token: hex HMAC-SHA256 keyed with ``TRIAGE_SECRET_KEY`` (or ``key``)."""
    return hmac.new(key if key is not None else _secret(), token.encode("utf-8"), hashlib.sha256).hexdigest()


def create_auth_session(*, session: Session, username: str, hours: float, now: datetime | None = None) -> str:
    """Start a sign-in session for ``username`` valid for ``hours``; returns the raw token (stored hashed).

    Raises:
        ValueError: ``hours`` is not positive.
    """
    if hours <= 0:
        raise ValueError("a sign-in session must last a positive number of hours")
    now = as_utc(now) or utcnow()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session.add(
        AuthSession(
            token_hash=token_hash(token), username=username, created_at=now, expires_at=now + timedelta(hours=hours)
        )
    )
    session.commit()
    return token


def validate_auth_session(*, session: Session, token: str | None, now: datetime | None = None) -> User | None:
    """The active user a token belongs to, or None (unknown, expired, revoked, user disabled, empty)."""
    if not token or len(token) > 256:
        return None
    now = as_utc(now) or utcnow()
    row = session.execute(
        sa.select(_T.c.expires_at, _T.c.revoked, _T.c.username).where(_T.c.token_hash == token_hash(token))
    ).first()
    expires = as_utc(row.expires_at) if row is not None else None
    if row is None or row.revoked or expires is None or expires <= now:
        return None
    user = session.execute(sa.select(User).where(User.username == row.username)).scalar_one_or_none()
    return user if user is not None and user.active else None


def revoke_auth_session(*, session: Session, token: str | None) -> bool:
    """Revoke a token (sign-out); True if a live session was revoked."""
    if not token:
        return False
    result = session.connection().execute(
        sa.update(_T).where(_T.c.token_hash == token_hash(token), sa.not_(_T.c.revoked)).values(revoked=True)
    )
    session.commit()
    return result.rowcount == 1


def purge_auth_sessions(*, session: Session, now: datetime | None = None) -> int:
    """Delete expired and revoked sessions; returns how many rows went."""
    now = as_utc(now) or utcnow()
    result = session.connection().execute(sa.delete(_T).where(sa.or_(_T.c.revoked, _T.c.expires_at <= now)))
    session.commit()
    return result.rowcount
