"""The reader-study arm of a study, known before anyone opens it.

Each study gets a draw in ``[0, 1)``: HMAC-SHA256 of its StudyInstanceUID under a per-installation key (the
file ``reader_study.key`` in the data directory, made on first use), so the draw is a fixed, unpredictable
function of the study. A study is in the AI-hidden arm when its draw is below ``Settings.ai_hidden_fraction``.
The draw is stored in ``Study.arm_draw`` (filled by ``fill_arm_draws``), so SQL (the worklist order and its
AI filters) can tell the arm. Once a study is opened its arm is recorded (``ReadingSession.ai_shown``) and the
recorded arm wins from then on, even if the fraction changes later.

Safety: a study the AI flags critical (PE above the critical threshold) is never drawn into the hidden arm:
a reader study must not hold back a critical alert. The hidden arm is therefore drawn among non-critical
studies only, and arm comparisons are fair within non-critical studies (the analytics turnaround is also
split by priority class).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session

from db.models import ReadingSession, Study
from db.types import table_of

KEY_FILE = "reader_study.key"
_S = table_of(Study)
_RS = table_of(ReadingSession)


def load_key(data_dir: Path) -> bytes:
    """The installation's arm key from ``data_dir/reader_study.key``; creates it (random, mode 0600) if missing.

    Raises:
        OSError: the data directory cannot be read or written.
    """
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it at the same moment
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    key = path.read_text().strip()
    if not key:
        raise OSError(f"{path} is empty")
    return key.encode()


def arm_draw(study_uid: str, key: bytes) -> float:
    """The study's draw in ``[0, 1)``: the first 8 bytes of HMAC-SHA256(key, StudyInstanceUID)."""
    digest = hmac.new(key, study_uid.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def fill_arm_draws(*, session: Session, key: bytes) -> int:
    """Store the draw of every study that has none yet (new arrivals, studies from before the column);
    returns how many were filled."""
    rows = session.execute(sa.select(_S.c.id, _S.c.study_uid).where(_S.c.arm_draw.is_(None))).all()
    if not rows:
        return 0
    session.execute(
        sa.update(_S).where(_S.c.id == sa.bindparam("sid")).values(arm_draw=sa.bindparam("draw")),
        [{"sid": sid, "draw": arm_draw(uid, key)} for sid, uid in rows],
    )
    session.commit()
    return len(rows)


def drawn_hidden(draw: float | None, fraction: float, critical: bool) -> bool:
    """Whether a never-opened study is in the AI-hidden arm: its draw is below ``fraction`` and the AI did
    not flag it critical (critical alerts are never withheld). No draw yet: shown."""
    return draw is not None and not critical and float(draw) < float(fraction)


def ai_hidden_sql(fraction: float) -> sa.ColumnElement[bool]:
    """SQL condition (correlated to ``study``): the study is in the AI-hidden arm. The recorded arm wins (a
    reading session with ``ai_shown`` false; any reading session without one means shown); a study never
    opened is hidden as ``drawn_hidden`` says (draw below ``fraction``, not critical)."""
    recorded_hidden = sa.exists().where(_RS.c.study_id == _S.c.id, sa.not_(_RS.c.ai_shown))
    opened = sa.exists().where(_RS.c.study_id == _S.c.id)
    drawn_hidden = sa.and_(~opened, _S.c.arm_draw.is_not(None), _S.c.arm_draw < float(fraction), sa.not_(_S.c.critical))
    return sa.or_(recorded_hidden, drawn_hidden)


def study_draw(*, session: Session, study_id: int, study_uid: str, key: bytes) -> float:
    """One study's draw: the stored one, else computed from ``key`` and stored (a study opened before any
    worklist read filled it)."""
    draw = session.execute(sa.select(_S.c.arm_draw).where(_S.c.id == study_id)).scalar()
    if draw is None:
        draw = arm_draw(study_uid, key)
        session.execute(sa.update(_S).where(_S.c.id == study_id).values(arm_draw=draw))
    return float(draw)
