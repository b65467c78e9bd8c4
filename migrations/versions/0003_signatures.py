"""signatures: model-signing signatures (model.sig) per revision, one per signer (issue 13)

Revision ID: 0003
Revises: 0001 (the lead relinks the chain at merge time)

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('signer', sa.String(length=500), nullable=False),
    sa.Column('bundle', sa.Text(), nullable=False),
    sa.Column('root_digest', sa.String(length=64), nullable=False),
    sa.Column('files', sa.Integer(), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("length(root_digest) = 64 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(root_digest, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_signatures_root_digest_hex')),
    sa.CheckConstraint("method IN ('key', 'sigstore')", name=op.f('ck_signatures_method')),
    sa.CheckConstraint('files > 0', name=op.f('ck_signatures_files_positive')),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_signatures_revision_id_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signatures')),
    sa.UniqueConstraint('revision_id', 'signer', name=op.f('uq_signatures_revision_id_signer')),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signatures_revision_id'), ['revision_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signatures_revision_id'))

    op.drop_table('signatures')
