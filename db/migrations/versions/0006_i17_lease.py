"""Hardening (#17): worker lease and analysis version on ``study``, the ``incomplete`` status, sign-in throttle.

Revision ID: 0006_i17_lease
Revises: 0005_i15_delivery
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_i17_lease"
down_revision = "0005_i15_delivery"
branch_labels = None
depends_on = None

OLD = "status IN ('received', 'queued', 'analysing', 'ready', 'in_review', 'signed', 'failed', 'unsuitable')"
NEW = (
    "status IN ('received', 'queued', 'analysing', 'ready', 'in_review', 'signed', 'failed', 'unsuitable', "
    "'incomplete')"
)


def upgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("analysis_version", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("analysed_fingerprint", sa.String(length=64), nullable=True))
        batch_op.drop_constraint(op.f("ck_study_status"), type_="check")
        batch_op.create_check_constraint("status", NEW)
    op.create_table(
        "sign_in_throttle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_throttle")),
        sa.UniqueConstraint("key", name=op.f("uq_sign_in_throttle_key")),
    )


def downgrade() -> None:
    op.drop_table("sign_in_throttle")
    op.execute("UPDATE study SET status = 'received' WHERE status = 'incomplete'")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_study_status"), type_="check")
        batch_op.create_check_constraint("status", OLD)
        batch_op.drop_column("analysed_fingerprint")
        batch_op.drop_column("analysis_version")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
