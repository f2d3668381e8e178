"""Reader-study draw per study (``study.arm_draw``), so the AI-hidden arm is known before the first opening.

Revision ID: 0003_study_arm_draw
Revises: 0002_auth_session
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_study_arm_draw"
down_revision = "0002_auth_session"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("arm_draw", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("arm_draw")
