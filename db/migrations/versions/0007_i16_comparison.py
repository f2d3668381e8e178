"""Comparison with a prior (#16): the run's prior study and comparison block, each finding's change.

Revision ID: 0007_i16_comparison
Revises: 0006_i17_lease
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_i16_comparison"
down_revision = "0006_i17_lease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analysis_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prior_study_uid", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("comparison", sa.JSON(), nullable=True))
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("prior_diameter_mm", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("volume_change_pct", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("vdt_days", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("finding", schema=None) as batch_op:
        batch_op.drop_column("vdt_days")
        batch_op.drop_column("volume_change_pct")
        batch_op.drop_column("prior_diameter_mm")
        batch_op.drop_column("change")
    with op.batch_alter_table("analysis_run", schema=None) as batch_op:
        batch_op.drop_column("comparison")
        batch_op.drop_column("prior_study_uid")
