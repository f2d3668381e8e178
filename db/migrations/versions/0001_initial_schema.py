"""Initial schema: every table of db/models.py.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('reader', 'admin')", name=op.f("ck_app_user_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("accession", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("patient_name", sa.String(length=255), nullable=True),
        sa.Column("patient_age", sa.String(length=8), nullable=True),
        sa.Column("patient_sex", sa.String(length=16), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("study_date", sa.String(length=8), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("manufacturer", sa.String(length=128), nullable=True),
        sa.Column("scanner_model", sa.String(length=128), nullable=True),
        sa.Column("kernel", sa.String(length=64), nullable=True),
        sa.Column("scanner_profile", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("analysed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("nodule_score", sa.Float(), nullable=True),
        sa.Column("embolism_score", sa.Float(), nullable=True),
        sa.Column("priority", sa.Float(), nullable=True),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("attention_reason", sa.Text(), nullable=True),
        sa.Column("data_path", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'queued', 'analysing', 'ready', 'in_review', 'signed', 'failed', 'unsuitable')",
            name=op.f("ck_study_status"),
        ),
        sa.ForeignKeyConstraint(
            ["claimed_by"],
            ["app_user.username"],
            name=op.f("fk_study_claimed_by_app_user"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("study_uid", name=op.f("uq_study_study_uid")),
    )
    op.create_index(op.f("ix_study_accession"), "study", ["accession"], unique=False)
    op.create_index(op.f("ix_study_scanner_profile"), "study", ["scanner_profile"], unique=False)
    op.create_index("ix_study_signed_at", "study", ["signed_at"], unique=False)
    op.create_index("ix_study_status_received", "study", ["status", "received_at"], unique=False)
    op.create_index("ix_study_received_at_id", "study", ["received_at", "id"], unique=False)
    op.create_index("ix_study_worklist", "study", ["status", "critical", "priority", "received_at"], unique=False)
    op.create_table(
        "analysis_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=True),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("timings_ms", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_analysis_run_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_run")),
    )
    op.create_index(op.f("ix_analysis_run_study_id"), "analysis_run", ["study_id"], unique=False)
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_audit_event_study_id_study"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_actor"), "audit_event", ["actor"], unique=False)
    op.create_index(op.f("ix_audit_event_at"), "audit_event", ["at"], unique=False)
    op.create_index(op.f("ix_audit_event_study_id"), "audit_event", ["study_id"], unique=False)
    op.create_table(
        "reading_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active_seconds", sa.Float(), nullable=True),
        sa.Column("ai_shown", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader"],
            ["app_user.username"],
            name=op.f("fk_reading_session_reader_app_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_reading_session_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reading_session")),
    )
    op.create_index("ix_reading_session_reader_opened", "reading_session", ["reader", "opened_at"], unique=False)
    op.create_index(
        "ix_reading_session_case",
        "reading_session",
        ["study_id", "reader", "ai_shown", "opened_at", "active_seconds", "closed_at"],
        unique=False,
    )
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("kernel", sa.String(length=64), nullable=True),
        sa.Column("slice_thickness_mm", sa.Float(), nullable=True),
        sa.Column("n_instances", sa.Integer(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_series_study_id_study"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("series_uid", name=op.f("uq_series_series_uid")),
    )
    op.create_index(op.f("ix_series_study_id"), "series", ["study_id"], unique=False)
    op.create_table(
        "study_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("nodule", sa.Boolean(), nullable=False),
        sa.Column("embolism", sa.Boolean(), nullable=False),
        sa.Column("lung_rads", sa.String(length=8), nullable=True),
        sa.Column("impression", sa.Text(), nullable=True),
        sa.Column("signed_by", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["signed_by"],
            ["app_user.username"],
            name=op.f("fk_study_report_signed_by_app_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_study_report_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_report")),
        sa.UniqueConstraint("study_id", name=op.f("uq_study_report_study_id")),
    )
    op.create_index(op.f("ix_study_report_signed_by"), "study_report", ["signed_by"], unique=False)
    op.create_table(
        "finding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("center_x_mm", sa.Float(), nullable=True),
        sa.Column("center_y_mm", sa.Float(), nullable=True),
        sa.Column("center_z_mm", sa.Float(), nullable=True),
        sa.Column("center_k", sa.Integer(), nullable=True),
        sa.Column("center_j", sa.Integer(), nullable=True),
        sa.Column("center_i", sa.Integer(), nullable=True),
        sa.Column("diameter_mm", sa.Float(), nullable=True),
        sa.Column("volume_ml", sa.Float(), nullable=True),
        sa.Column("mean_hu", sa.Float(), nullable=True),
        sa.Column("texture", sa.String(length=32), nullable=True),
        sa.Column("lung_rads", sa.String(length=8), nullable=True),
        sa.Column("location", sa.String(length=64), nullable=True),
        sa.Column("mask_path", sa.Text(), nullable=True),
        sa.Column("heatmap_path", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('nodule', 'embolism')", name=op.f("ck_finding_kind")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["analysis_run.id"], name=op.f("fk_finding_run_id_analysis_run"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_finding_study_id_study"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding")),
    )
    op.create_index(op.f("ix_finding_run_id"), "finding", ["run_id"], unique=False)
    op.create_index(op.f("ix_finding_study_id"), "finding", ["study_id"], unique=False)
    op.create_table(
        "reader_finding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("center_x_mm", sa.Float(), nullable=True),
        sa.Column("center_y_mm", sa.Float(), nullable=True),
        sa.Column("center_z_mm", sa.Float(), nullable=True),
        sa.Column("center_k", sa.Integer(), nullable=True),
        sa.Column("center_j", sa.Integer(), nullable=True),
        sa.Column("center_i", sa.Integer(), nullable=True),
        sa.Column("diameter_mm", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reading_session_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('nodule', 'embolism')", name=op.f("ck_reader_finding_kind")),
        sa.ForeignKeyConstraint(
            ["reader"],
            ["app_user.username"],
            name=op.f("fk_reader_finding_reader_app_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["reading_session_id"],
            ["reading_session.id"],
            name=op.f("fk_reader_finding_reading_session_id_reading_session"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_reader_finding_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_finding")),
    )
    op.create_index(op.f("ix_reader_finding_reader"), "reader_finding", ["reader"], unique=False)
    op.create_index(op.f("ix_reader_finding_study_id"), "reader_finding", ["study_id"], unique=False)
    op.create_table(
        "finding_verdict",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reading_session_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('confirmed', 'rejected')", name=op.f("ck_finding_verdict_verdict")),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["finding.id"],
            name=op.f("fk_finding_verdict_finding_id_finding"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reader"],
            ["app_user.username"],
            name=op.f("fk_finding_verdict_reader_app_user"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["reading_session_id"],
            ["reading_session.id"],
            name=op.f("fk_finding_verdict_reading_session_id_reading_session"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_verdict")),
        sa.UniqueConstraint("finding_id", "reader", name=op.f("uq_finding_verdict_finding_id_reader")),
    )
    op.create_index(op.f("ix_finding_verdict_finding_id"), "finding_verdict", ["finding_id"], unique=False)
    op.create_index(op.f("ix_finding_verdict_reader"), "finding_verdict", ["reader"], unique=False)


def downgrade() -> None:

    op.drop_index(op.f("ix_finding_verdict_reader"), table_name="finding_verdict")
    op.drop_index(op.f("ix_finding_verdict_finding_id"), table_name="finding_verdict")
    op.drop_table("finding_verdict")
    op.drop_index(op.f("ix_reader_finding_study_id"), table_name="reader_finding")
    op.drop_index(op.f("ix_reader_finding_reader"), table_name="reader_finding")
    op.drop_table("reader_finding")
    op.drop_index(op.f("ix_finding_study_id"), table_name="finding")
    op.drop_index(op.f("ix_finding_run_id"), table_name="finding")
    op.drop_table("finding")
    op.drop_index(op.f("ix_study_report_signed_by"), table_name="study_report")
    op.drop_table("study_report")
    op.drop_index(op.f("ix_series_study_id"), table_name="series")
    op.drop_table("series")
    op.drop_index("ix_reading_session_case", table_name="reading_session")
    op.drop_index("ix_reading_session_reader_opened", table_name="reading_session")
    op.drop_table("reading_session")
    op.drop_index(op.f("ix_audit_event_study_id"), table_name="audit_event")
    op.drop_index(op.f("ix_audit_event_at"), table_name="audit_event")
    op.drop_index(op.f("ix_audit_event_actor"), table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index(op.f("ix_analysis_run_study_id"), table_name="analysis_run")
    op.drop_table("analysis_run")
    op.drop_index("ix_study_worklist", table_name="study")
    op.drop_index("ix_study_status_received", table_name="study")
    op.drop_index("ix_study_received_at_id", table_name="study")
    op.drop_index("ix_study_signed_at", table_name="study")
    op.drop_index(op.f("ix_study_scanner_profile"), table_name="study")
    op.drop_index(op.f("ix_study_accession"), table_name="study")
    op.drop_table("study")
    op.drop_table("app_user")
