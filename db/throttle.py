"""Sign-in throttling: back-off per user and per address, and a lockout that only an admin lifts.

Keys are ``user:<name>`` (lower-cased) and ``addr:<ip>``. After ``free_failures`` failed attempts a key is
blocked for ``backoff_base_s`` seconds, doubling with each further failure up to ``backoff_max_s``; while
blocked, attempts are refused without checking the password. A user key that reaches ``lock_after``
consecutive failures is locked until an admin unlocks it (``unlock``; ``triage user unlock NAME``). Failures
older than ``window_s`` are forgotten unless locked. Locks and unlocks are audited (``sign_in_locked``,
``sign_in_unlocked``) with the username only. The address key is never locked (a shared address must not
lock everyone out), only slowed down.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from db.models import AuditEvent, SignInThrottle
from db.types import as_utc, table_of, utcnow

_T = table_of(SignInThrottle)
_AUDIT = table_of(AuditEvent)


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused before the password is checked."""

    locked: bool
    wait_s: float = 0.0

    @property
    def message(self) -> str:
        if self.locked:
            return "This account is locked after too many failed sign-ins. Ask an administrator to unlock it."
        return f"Too many failed sign-ins. Try again in {max(1, round(self.wait_s))} s."


def user_key(username: str) -> str:
    return f"user:{username.strip().lower()[:64]}"


def address_key(address: str | None) -> str | None:
    return f"addr:{address.strip()[:64]}" if address and address.strip() else None


def _keys(username: str, address: str | None) -> list[str]:
    return [k for k in (user_key(username), address_key(address)) if k]


def _rows(session: Session, keys: list[str]) -> dict[str, Any]:
    return {r.key: r for r in session.execute(sa.select(_T).where(_T.c.key.in_(keys))).all()}


def check(*, session: Session, username: str, address: str | None, now: datetime | None = None) -> Refusal | None:
    """A refusal if the user is locked or the user or address is in back-off; None to go ahead."""
    now = as_utc(now) or utcnow()
    wait = 0.0
    for key, row in _rows(session, _keys(username, address)).items():
        if row.locked and key.startswith("user:"):
            return Refusal(locked=True)
        until = as_utc(row.blocked_until)
        if until is not None and until > now:
            wait = max(wait, (until - now).total_seconds())
    return Refusal(locked=False, wait_s=wait) if wait > 0 else None


def record_failure(
    *, session: Session, username: str, address: str | None, limits: Any, now: datetime | None = None
) -> bool:
    """Count a failed attempt for the user and the address; returns whether the user got locked just now."""
    now = as_utc(now) or utcnow()
    locked_now = False
    rows = _rows(session, _keys(username, address))
    for key in _keys(username, address):
        row = rows.get(key)
        last = as_utc(row.last_failure_at) if row is not None else None
        stale = False
        if row is not None and last is not None and not row.locked:
            stale = (now - last).total_seconds() > limits.window_s
        failures = 1 if row is None or stale else row.failures + 1
        extra = failures - limits.free_failures
        blocked = None
        if extra > 0:
            blocked = now + timedelta(seconds=min(limits.backoff_base_s * 2 ** (extra - 1), limits.backoff_max_s))
        values: dict[str, Any] = {"failures": failures, "last_failure_at": now, "blocked_until": blocked}
        if key.startswith("user:") and failures >= limits.lock_after and (row is None or not row.locked):
            values.update(locked=True, locked_at=now)
            locked_now = True
        if row is None:
            session.execute(sa.insert(_T).values(key=key, locked=values.pop("locked", False), **values))
        else:
            session.execute(sa.update(_T).where(_T.c.key == key).values(**values))
    if locked_now:
        session.execute(
            sa.insert(_AUDIT).values(
                at=now,
                actor="system",
                action="sign_in_locked",
                detail={"username": username.strip()[:64], "failures": limits.lock_after},
            )
        )
    session.commit()
    return locked_now


def record_success(*, session: Session, username: str, address: str | None) -> None:
    """A successful sign-in clears the user's and the address's failure counts."""
    session.execute(sa.delete(_T).where(_T.c.key.in_(_keys(username, address)), sa.not_(_T.c.locked)))
    session.commit()


def unlock(*, session: Session, username: str, actor: str) -> bool:
    """Lift a user's lockout and back-off (audited ``sign_in_unlocked``); False if it was not locked."""
    key = user_key(username)
    row = session.execute(sa.select(_T.c.locked).where(_T.c.key == key)).first()
    session.execute(sa.delete(_T).where(_T.c.key == key))
    if row is not None and row.locked:
        session.execute(
            sa.insert(_AUDIT).values(
                at=utcnow(), actor=actor, action="sign_in_unlocked", detail={"username": username.strip()[:64]}
            )
        )
    session.commit()
    return bool(row is not None and row.locked)


def locked_users(*, session: Session) -> list[str]:
    """Usernames (lower-cased) currently locked."""
    rows = session.execute(sa.select(_T.c.key).where(_T.c.locked, _T.c.key.like("user:%"))).all()
    return sorted(k[len("user:") :] for (k,) in rows)
