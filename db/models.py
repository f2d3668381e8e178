"""All database tables (SQLModel). Schema changes go through Alembic (``db/migrations``).

Privacy: patient identifiers (patient ID, name, age, sex, accession) live only in ``Study``; every other
table refers to a study by its integer ``id`` and log lines carry the study UID only.

Timestamps are aware UTC datetimes (``UTCDateTime``). Readers are referred to by ``username`` (a foreign key
to ``app_user.username``), which keeps claims and analytics readable without joins.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import JSON, Field, SQLModel

from db.types import UTCDateTime, utcnow
from inference.findings import kind_check_sql

# Naming convention so constraint names are the same on every engine and in the migration.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class StudyStatus(str, Enum):
    """Life cycle of a study: received → queued → analysing → ready → in_review → signed."""

    received = "received"
    queued = "queued"
    analysing = "analysing"
    ready = "ready"
    in_review = "in_review"
    signed = "signed"
    failed = "failed"
    unsuitable = "unsuitable"
    #: the sender stopped mid-transfer (aborted association, receiver killed): waiting for a re-send
    incomplete = "incomplete"


#: States in which the AI result is missing for a reason a human must see ("needs attention").
ATTENTION_STATUSES = (StudyStatus.failed.value, StudyStatus.unsuitable.value, StudyStatus.incomplete.value)
#: States shown on the worklist by default (everything not yet signed).
OPEN_STATUSES = tuple(s.value for s in StudyStatus if s is not StudyStatus.signed)
VERDICTS = ("confirmed", "rejected")
ROLES = ("reader", "admin")


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    """A timestamp column (aware UTC)."""
    if nullable:
        return Field(default=None, sa_type=UTCDateTime, nullable=True, index=index)
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=index)


def _str(length: int, *, nullable: bool = True, index: bool = False, default: Any = None) -> Any:
    return Field(default=default, sa_type=sa.String(length), nullable=nullable, index=index)


OnDelete = Literal["CASCADE", "SET NULL", "RESTRICT"]


def _fk(target: str, *, nullable: bool = False, ondelete: OnDelete = "CASCADE", index: bool = True) -> Any:
    return Field(default=None, foreign_key=target, nullable=nullable, ondelete=ondelete, index=index)


def _user_fk(*, nullable: bool = False, ondelete: OnDelete = "RESTRICT", index: bool = True) -> Any:
    """A username column referring to ``app_user`` (users are deactivated, not deleted)."""
    return Field(
        default=None,
        sa_type=sa.String(64),
        foreign_key="app_user.username",
        nullable=nullable,
        ondelete=ondelete,
        index=index,
    )


def _session_fk() -> Any:
    return _fk("reading_session.id", nullable=True, ondelete="SET NULL", index=False)


class User(SQLModel, table=True):
    """A person who can log in: a reader or an admin."""

    __tablename__ = "app_user"
    __table_args__ = (sa.CheckConstraint("role IN ('reader', 'admin')", name="role"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_type=sa.String(64), unique=True, nullable=False)
    password_hash: str = Field(sa_type=sa.String(255), nullable=False)
    role: str = Field(default="reader", sa_type=sa.String(16), nullable=False)
    active: bool = Field(default=True, nullable=False)
    created_at: datetime = _ts(nullable=False)


class AuthSession(SQLModel, table=True):
    """A dashboard sign-in that survives a browser reload: only the SHA-256 of its random token is kept."""

    __tablename__ = "auth_session"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_type=sa.String(64), unique=True, nullable=False)
    username: str = _user_fk(ondelete="CASCADE")
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked: bool = Field(default=False, nullable=False)


class Study(SQLModel, table=True):
    """One CT study: DICOM identity, patient identifiers, life-cycle times, AI scores and the claim."""

    __tablename__ = "study"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('received', 'queued', 'analysing', 'ready', 'in_review', 'signed', 'failed', 'unsuitable', "
            "'incomplete')",
            name="status",
        ),
        # Worklist: filter by status, order by critical / priority / arrival.
        sa.Index("ix_study_worklist", "status", "critical", "priority", "received_at"),
        sa.Index("ix_study_status_received", "status", "received_at"),
        sa.Index("ix_study_received_at_id", "received_at", "id"),
        sa.Index("ix_study_signed_at", "signed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_uid: str = Field(sa_type=sa.String(64), unique=True, nullable=False)
    accession: str | None = _str(64, index=True)
    patient_id: str | None = _str(64)
    patient_name: str | None = _str(255)
    patient_age: str | None = _str(8)
    patient_sex: str | None = _str(16)
    description: str | None = _str(255)
    study_date: str | None = _str(8)
    modality: str | None = _str(16)
    manufacturer: str | None = _str(128)
    scanner_model: str | None = _str(128)
    kernel: str | None = _str(64)
    scanner_profile: str | None = _str(64, index=True)
    received_at: datetime = _ts(nullable=False)
    queued_at: datetime | None = _ts()
    analysed_at: datetime | None = _ts()
    signed_at: datetime | None = _ts()
    status: str = Field(default=StudyStatus.received.value, sa_type=sa.String(16), nullable=False)
    nodule_score: float | None = None
    embolism_score: float | None = None
    priority: float | None = None
    critical: bool = Field(default=False, nullable=False)
    #: Operating points of the latest analysis (from its model cards or a settings override): the nodule score
    #: from which the study counts as nodule-suspected, the PE score that made it critical.
    nodule_threshold: float | None = None
    embolism_threshold: float | None = None
    attention_reason: str | None = Field(default=None, sa_type=sa.Text)
    data_path: str | None = Field(default=None, sa_type=sa.Text)
    claimed_by: str | None = _user_fk(nullable=True, ondelete="SET NULL", index=False)
    claimed_at: datetime | None = _ts()
    #: Reader-study draw in [0, 1) (``db.arms``): AI hidden when below ``ai_hidden_fraction``, until opened.
    arm_draw: float | None = None
    #: The worker analysing the study holds a lease (``db.lease``): taken over only once expired.
    lease_owner: str | None = _str(64)
    lease_expires_at: datetime | None = _ts()
    #: How many successful analyses the study has had (a re-send with new instances adds one).
    analysis_version: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": "0"})
    #: Fingerprint of the inbox files the latest analysis read; an identical re-send changes nothing.
    analysed_fingerprint: str | None = _str(64)
    #: "results not delivered: <reason>" once a result delivery has used its last try (``Delivery``).
    delivery_error: str | None = Field(default=None, sa_type=sa.Text)


class Series(SQLModel, table=True):
    """A DICOM series of a study; ``selected`` marks the one the pipeline analysed."""

    __tablename__ = "series"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    series_uid: str = Field(sa_type=sa.String(64), unique=True, nullable=False)
    series_number: int | None = None
    description: str | None = _str(255)
    modality: str | None = _str(16)
    kernel: str | None = _str(64)
    slice_thickness_mm: float | None = None
    n_instances: int | None = None
    selected: bool = Field(default=False, nullable=False)
    path: str | None = Field(default=None, sa_type=sa.Text)


class AnalysisRun(SQLModel, table=True):
    """One pass of the pipeline over a study: which models and operating points, where, how long, the quality
    reasons and any error."""

    __tablename__ = "analysis_run"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    series_uid: str | None = _str(64)
    started_at: datetime | None = _ts()
    finished_at: datetime = _ts(nullable=False)
    provider: str | None = _str(64)
    models: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    #: Operating points used, per study score (``CaseResult.thresholds``).
    thresholds: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    #: Quality reasons (code, severity, message, advice each), warnings included.
    quality: list[Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    timings_ms: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    error: str | None = Field(default=None, sa_type=sa.Text)
    #: The earlier study of the same patient this run was compared with, and the comparison block (#16).
    prior_study_uid: str | None = _str(64)
    comparison: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)


class Finding(SQLModel, table=True):
    """An AI finding. Centre in LPS patient millimetres and in voxel indices (k, j, i) = (z, y, x)."""

    __tablename__ = "finding"
    __table_args__ = (sa.CheckConstraint(kind_check_sql(), name="kind"),)  # kinds: inference.findings

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    run_id: int = _fk("analysis_run.id")
    kind: str = Field(sa_type=sa.String(16), nullable=False)
    probability: float = Field(nullable=False)
    center_x_mm: float | None = None
    center_y_mm: float | None = None
    center_z_mm: float | None = None
    center_k: int | None = None
    center_j: int | None = None
    center_i: int | None = None
    diameter_mm: float | None = None
    volume_ml: float | None = None
    mean_hu: float | None = None
    texture: str | None = _str(32)
    lung_rads: str | None = _str(8)
    location: str | None = _str(64)
    mask_path: str | None = Field(default=None, sa_type=sa.Text)
    heatmap_path: str | None = Field(default=None, sa_type=sa.Text)
    #: Comparison with the prior (#16): new | growing | stable | shrinking | indeterminate (None: no prior).
    change: str | None = _str(16)
    prior_diameter_mm: float | None = None
    volume_change_pct: float | None = None
    vdt_days: float | None = None


class ReadingSession(SQLModel, table=True):
    """A reader's time with one study; ``ai_shown`` is the study arm (AI results visible or hidden)."""

    __tablename__ = "reading_session"
    __table_args__ = (
        sa.Index("ix_reading_session_reader_opened", "reader", "opened_at"),
        # Covers the per-case grouping of the reading-time analytics (and lookups by study).
        sa.Index(
            "ix_reading_session_case", "study_id", "reader", "ai_shown", "opened_at", "active_seconds", "closed_at"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id", index=False)
    reader: str = _user_fk(index=False)
    opened_at: datetime = _ts(nullable=False)
    closed_at: datetime | None = _ts()
    active_seconds: float | None = None
    ai_shown: bool = Field(default=True, nullable=False)


class FindingVerdict(SQLModel, table=True):
    """A reader's verdict on one AI finding (one per reader and finding; the latest wins)."""

    __tablename__ = "finding_verdict"
    __table_args__ = (
        sa.UniqueConstraint("finding_id", "reader"),
        sa.CheckConstraint("verdict IN ('confirmed', 'rejected')", name="verdict"),
    )

    id: int | None = Field(default=None, primary_key=True)
    finding_id: int = _fk("finding.id")
    reader: str = _user_fk()
    verdict: str = Field(sa_type=sa.String(16), nullable=False)
    reading_session_id: int | None = _session_fk()
    at: datetime = _ts(nullable=False)


class ReaderFinding(SQLModel, table=True):
    """A finding the reader added because the AI missed it (counts as an AI false negative)."""

    __tablename__ = "reader_finding"
    __table_args__ = (sa.CheckConstraint(kind_check_sql(), name="kind"),)  # kinds: inference.findings

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    reader: str = _user_fk()
    kind: str = Field(sa_type=sa.String(16), nullable=False)
    center_x_mm: float | None = None
    center_y_mm: float | None = None
    center_z_mm: float | None = None
    center_k: int | None = None
    center_j: int | None = None
    center_i: int | None = None
    diameter_mm: float | None = None
    note: str | None = Field(default=None, sa_type=sa.Text)
    reading_session_id: int | None = _session_fk()
    created_at: datetime = _ts(nullable=False)


class StudyReport(SQLModel, table=True):
    """The signed final impression of a study: the reference standard for AI performance figures."""

    __tablename__ = "study_report"

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id", nullable=False, ondelete="CASCADE", unique=True)
    nodule: bool = Field(nullable=False)
    embolism: bool = Field(nullable=False)
    lung_rads: str | None = _str(8)
    impression: str | None = Field(default=None, sa_type=sa.Text)
    signed_by: str = _user_fk()
    signed_at: datetime = _ts(nullable=False)


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins per key (``user:NAME`` or ``addr:IP``): back-off until ``blocked_until``; a user key
    that reached the lockout limit stays ``locked`` until an admin lifts it (``db.throttle``)."""

    __tablename__ = "sign_in_throttle"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=sa.String(160), unique=True, nullable=False)
    failures: int = Field(default=0, nullable=False)
    last_failure_at: datetime | None = _ts()
    blocked_until: datetime | None = _ts()
    locked: bool = Field(default=False, nullable=False)
    locked_at: datetime | None = _ts()


class AuditEvent(SQLModel, table=True):
    """Who did what to which study, when. ``actor`` is a username or a system name (``worker``)."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(nullable=False, index=True)
    actor: str = Field(sa_type=sa.String(64), nullable=False, index=True)
    action: str = Field(sa_type=sa.String(64), nullable=False)
    study_id: int | None = _fk("study.id", nullable=True, ondelete="SET NULL")
    detail: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)


DELIVERY_STATES = ("pending", "sending", "delivered", "failed")
DELIVERY_METHODS = ("c-store", "stow-rs")


class Delivery(SQLModel, table=True):
    """One analysis output set (SEG, SR) to one peer by one method, with its retry state.

    ``pending`` (due at ``next_attempt_at``) → ``sending`` (claimed by a worker) → ``delivered``; or back to
    ``pending`` with exponential backoff after a failed try, and ``failed`` after the last one (the study then
    carries ``delivery_error``). ``paths`` are relative to the data directory.
    """

    __tablename__ = "delivery"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "peer", "method"),
        sa.CheckConstraint("status IN ('pending', 'sending', 'delivered', 'failed')", name="status"),
        sa.CheckConstraint("method IN ('c-store', 'stow-rs')", name="method"),
        sa.Index("ix_delivery_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    run_id: int | None = _fk("analysis_run.id", nullable=True, index=False)
    peer: str = Field(sa_type=sa.String(64), nullable=False)
    method: str = Field(sa_type=sa.String(16), nullable=False)
    paths: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    status: str = Field(default="pending", sa_type=sa.String(16), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    max_attempts: int = Field(default=6, nullable=False)
    next_attempt_at: datetime | None = _ts()
    last_attempt_at: datetime | None = _ts()
    delivered_at: datetime | None = _ts()
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = _ts(nullable=False)


class StudyPrior(SQLModel, table=True):
    """An earlier study of the same patient kept for comparison: where its best series lies and where from.

    ``prior_study_id`` is set when the prior is a study of our own database; ``source`` is ``local`` or
    ``peer:<name>``; ``path`` is the folder holding the prior's selected series (readable by ``read_volume``).
    """

    __tablename__ = "study_prior"
    __table_args__ = (sa.UniqueConstraint("study_id", "prior_study_uid"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = _fk("study.id")
    prior_study_uid: str = Field(sa_type=sa.String(64), nullable=False)
    prior_series_uid: str | None = _str(64)
    prior_study_date: str | None = _str(8)
    prior_study_id: int | None = _fk("study.id", nullable=True, ondelete="SET NULL", index=False)
    source: str = Field(sa_type=sa.String(80), nullable=False)
    path: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = _ts(nullable=False)


