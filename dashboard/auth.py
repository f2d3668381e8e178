"""Local accounts: Argon2id password hashes (argon2-cffi), sign-in checks and the signed-in reader.

The Streamlit session holds only a ``SignedIn`` record (username, role) after a successful check; nothing
with patient data is drawn before it exists (``app.py`` gates every page on it). A successful sign-in also
starts a database sign-in session (``db.auth``) whose random token the browser keeps in the
``triage_session`` cookie (``SameSite=Strict``, ``Max-Age`` = ``TRIAGE_SESSION_HOURS``), so a reload does
not sign the reader out; sign-out revokes the token and clears the cookie. A hospital that has an identity
provider puts OIDC in front instead (see ``dashboard/README.md``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session

from db import queries, throttle

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
#: Roles shown to people; the database stores ``reader`` for a radiologist.
ROLE_ALIASES = {"radiologist": "reader", "reader": "reader", "admin": "admin"}
MIN_PASSWORD_LENGTH = 8
# A hash to verify against when the user does not exist, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
#: The browser cookie that carries the sign-in token.
COOKIE = "triage_session"
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


@dataclass(frozen=True)
class SignedIn:
    """Who is using this browser session."""

    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (with its own salt and parameters).

    Raises:
        ValueError: the password is shorter than ``MIN_PASSWORD_LENGTH``.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for a malformed hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def normalise_role(role: str) -> str:
    """``radiologist``/``reader`` → ``reader``; ``admin`` → ``admin``.

    Raises:
        ValueError: any other role.
    """
    try:
        return ROLE_ALIASES[role.strip().lower()]
    except KeyError:
        raise ValueError(f"role must be radiologist or admin, got {role!r}") from None


def add_user(*, session: Session, username: str, password: str, role: str = "radiologist") -> SignedIn:
    """Create an account with a hashed password.

    Raises:
        ValueError: bad role, short password, empty or taken username.
    """
    username = username.strip()
    if not username or len(username) > 64:
        raise ValueError("the username must have 1 to 64 characters")
    user = queries.create_user(
        session=session, username=username, password_hash=hash_password(password), role=normalise_role(role)
    )
    queries.record_event(session=session, actor="cli", action="user_created", detail={"username": username})
    return SignedIn(user.username, user.role)


def set_password(*, session: Session, username: str, password: str) -> bool:
    """Give an account a new password (hashed) and end its sign-in sessions; False if there is no such account.

    Raises:
        ValueError: the password is too short.
    """
    return queries.set_user_password_hash(
        session=session, username=username.strip(), password_hash=hash_password(password)
    )


@dataclass(frozen=True)
class SignInResult:
    """The signed-in account, or None with the message to show (wrong password, back-off, lockout)."""

    user: SignedIn | None
    message: str = ""


def sign_in(
    *, session: Session, username: str, password: str, address: str | None = None, limits: Any = None
) -> SignInResult:
    """Check a sign-in, throttled per user and per client address (``db.throttle``).

    While the user or the address is in back-off, or the user is locked, the password is not even checked.
    Every attempt is audited (``sign_in``, ``sign_in_failed``, ``sign_in_refused``; a new lock
    ``sign_in_locked``), with the username only.
    """
    if limits is None:
        from inference.config import get_settings

        limits = get_settings().signin
    name = username.strip()
    refusal = throttle.check(session=session, username=name, address=address)
    if refusal is not None:
        queries.record_event(
            session=session,
            actor="anonymous",
            action="sign_in_refused",
            detail={"username": name[:64], "locked": refusal.locked},
        )
        return SignInResult(None, refusal.message)
    user = queries.get_user(session=session, username=name)
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password) and bool(user and user.active)
    if not ok or user is None:
        queries.record_event(
            session=session, actor="anonymous", action="sign_in_failed", detail={"username": name[:64]}
        )
        log.info("failed sign-in")
        locked = throttle.record_failure(session=session, username=name, address=address, limits=limits)
        if locked:
            return SignInResult(None, throttle.Refusal(locked=True).message)
        return SignInResult(None, "Unknown user or wrong password.")
    throttle.record_success(session=session, username=name, address=address)
    queries.record_event(session=session, actor=user.username, action="sign_in")
    return SignInResult(SignedIn(user.username, user.role))


def authenticate(
    *, session: Session, username: str, password: str, address: str | None = None, limits: Any = None
) -> SignedIn | None:
    """The account if ``username`` exists, is active, ``password`` matches and no throttle applies; else None
    (``sign_in`` says why)."""
    return sign_in(session=session, username=username, password=password, address=address, limits=limits).user


def start_session(*, session: Session, user: SignedIn, hours: float) -> str:
    """A new sign-in token for ``user``, valid ``hours`` (the database keeps only its hash)."""
    return queries.create_auth_session(session=session, username=user.username, hours=hours)


def resume_session(*, session: Session, token: str | None) -> SignedIn | None:
    """The reader a token from the cookie belongs to, or None (unknown, expired, revoked, user disabled)."""
    if not isinstance(token, str) or not _TOKEN_CHARS.match(token):
        return None
    user = queries.validate_auth_session(session=session, token=token)
    return SignedIn(user.username, user.role) if user is not None else None


def set_cookie_script(token: str, hours: float) -> str:
    """A ``<script>`` that stores ``token`` in the sign-in cookie for ``hours`` (``Secure`` over HTTPS).

    Raises:
        ValueError: the token has characters a token from ``db.auth`` never has.
    """
    if not _TOKEN_CHARS.match(token):
        raise ValueError("not a sign-in token")
    return _cookie_script(f"{COOKIE}={token}; Max-Age={int(hours * 3600)}")


def clear_cookie_script() -> str:
    """A ``<script>`` that deletes the sign-in cookie."""
    return _cookie_script(f"{COOKIE}=; Max-Age=0")


def _cookie_script(value: str) -> str:
    return (
        "<script>(function(){var s = location.protocol === 'https:' ? '; Secure' : '';"
        f"document.cookie = '{value}; Path=/; SameSite=Strict' + s;}})();</script>"
    )
