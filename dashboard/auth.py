"""Local accounts: Argon2id password hashes (argon2-cffi), sign-in checks and the signed-in reader.

The Streamlit session holds only a ``SignedIn`` record (username, role) after a successful check; nothing
with patient data is drawn before it exists (``app.py`` gates every page on it). A hospital that has an
identity provider puts OIDC in front instead (see ``dashboard/README.md``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session

from db import queries

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
#: Roles shown to people; the database stores ``reader`` for a radiologist.
ROLE_ALIASES = {"radiologist": "reader", "reader": "reader", "admin": "admin"}
MIN_PASSWORD_LENGTH = 8
# A hash to verify against when the user does not exist, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


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


def authenticate(*, session: Session, username: str, password: str) -> SignedIn | None:
    """The account if ``username`` exists, is active and ``password`` matches; else None.

    Every attempt is audited (``sign_in`` or ``sign_in_failed``), with the username only.
    """
    user = queries.get_user(session=session, username=username.strip())
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password) and bool(user and user.active)
    if not ok:
        queries.record_event(
            session=session, actor="anonymous", action="sign_in_failed", detail={"username": username.strip()[:64]}
        )
        log.info("failed sign-in")
        return None
    queries.record_event(session=session, actor=user.username, action="sign_in")
    return SignedIn(user.username, user.role)
