"""audit: each deployment's last on-disk verification, and the indexes behind the fleet view, the event
log's time filter and the HF cache scan

Revision ID: 0005
Revises: 0001

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('verified_by', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('verified_host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('verify_state', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('verify_problems', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('signature_state', sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            'verify_state', "verify_state IS NULL OR verify_state IN ('ok', 'drifted', 'missing')")
        batch_op.create_index('ix_deployments_removed_at_node_id', ['removed_at', 'node', 'id'], unique=False)
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_at', ['at'], unique=False)
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index('ix_files_git_oid', ['git_oid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index('ix_files_git_oid')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_at')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index('ix_deployments_removed_at_node_id')
        batch_op.drop_constraint(batch_op.f('ck_deployments_verify_state'), type_='check')
        batch_op.drop_column('signature_state')
        batch_op.drop_column('verify_problems')
        batch_op.drop_column('verify_state')
        batch_op.drop_column('verified_host')
        batch_op.drop_column('verified_by')
        batch_op.drop_column('verified_at')
