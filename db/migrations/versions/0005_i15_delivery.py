"""PACS peers (issue 15): result deliveries with retry state (``delivery``), prior-study links
(``study_prior``) and ``study.delivery_error`` ("results not delivered: <reason>").

Revision ID: 0005_i15_delivery
Revises: 0004_i13_finding_kinds
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i15_delivery"
down_revision = "0004_i13_finding_kinds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_prior",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("prior_study_uid", sa.String(length=64), nullable=False),
        sa.Column("prior_series_uid", sa.String(length=64), nullable=True),
        sa.Column("prior_study_date", sa.String(length=8), nullable=True),
        sa.Column("prior_study_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prior_study_id"], ["study.id"], name=op.f("fk_study_prior_prior_study_id_study"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_study_prior_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_prior")),
        sa.UniqueConstraint("study_id", "prior_study_uid", name=op.f("uq_study_prior_study_id_prior_study_uid")),
    )
    with op.batch_alter_table("study_prior", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_prior_study_id"), ["study_id"], unique=False)

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("paths", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("method IN ('c-store', 'stow-rs')", name=op.f("ck_delivery_method")),
        sa.CheckConstraint("status IN ('pending', 'sending', 'delivered', 'failed')", name=op.f("ck_delivery_status")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["analysis_run.id"], name=op.f("fk_delivery_run_id_analysis_run"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_delivery_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery")),
        sa.UniqueConstraint("run_id", "peer", "method", name=op.f("uq_delivery_run_id_peer_method")),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_study_id"), ["study_id"], unique=False)

    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("delivery_error")

    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_study_id"))
        batch_op.drop_index("ix_delivery_due")

    op.drop_table("delivery")
    with op.batch_alter_table("study_prior", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_prior_study_id"))

    op.drop_table("study_prior")
