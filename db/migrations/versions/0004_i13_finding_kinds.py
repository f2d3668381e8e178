"""Finding kinds from the registry (adds ``mass``); the operating points each analysis used; quality reasons.

* ``finding.kind`` and ``reader_finding.kind`` allow ``mass`` (``inference.findings.KINDS``).
* ``study.nodule_threshold`` / ``study.embolism_threshold``: the operating points of the latest analysis
  (existing analysed studies get the nodule value they were judged at, 0.5; their PE value is unknown, their
  stored ``critical`` flag stays as it was).
* ``analysis_run.thresholds`` (JSON, per study score) and ``analysis_run.quality`` (JSON list of reasons).

Revision ID: 0004_i13_finding_kinds
Revises: 0003_study_arm_draw
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_i13_finding_kinds"
down_revision = "0003_study_arm_draw"
branch_labels = None
depends_on = None

# Frozen here: a migration must not change when the registry does.
NEW_KINDS = "kind IN ('nodule', 'mass', 'embolism')"
OLD_KINDS = "kind IN ('nodule', 'embolism')"


def _kinds(check: str) -> None:
    for table in ("finding", "reader_finding"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"ck_{table}_kind"), type_="check")
            batch_op.create_check_constraint(op.f(f"ck_{table}_kind"), check)


def upgrade() -> None:
    _kinds(NEW_KINDS)
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nodule_threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("embolism_threshold", sa.Float(), nullable=True))
    with op.batch_alter_table("analysis_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thresholds", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("quality", sa.JSON(), nullable=True))
    op.execute("UPDATE study SET nodule_threshold = 0.5 WHERE nodule_score IS NOT NULL")


def downgrade() -> None:
    op.execute("DELETE FROM finding WHERE kind = 'mass'")
    op.execute("DELETE FROM reader_finding WHERE kind = 'mass'")
    with op.batch_alter_table("analysis_run", schema=None) as batch_op:
        batch_op.drop_column("quality")
        batch_op.drop_column("thresholds")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("embolism_threshold")
        batch_op.drop_column("nodule_threshold")
    _kinds(OLD_KINDS)
