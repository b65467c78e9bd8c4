"""initial catalog

Revision ID: 0001
Revises: 

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The event log is append-only: the database itself refuses UPDATE and DELETE on it.
_SQLITE_TRIGGERS = [
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END",
]
_PG_TRIGGERS = [
    "CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'events are append-only'; END $$",
    "CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events "
    "FOR EACH ROW EXECUTE FUNCTION events_append_only()",
]


def _install_event_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for sql in _SQLITE_TRIGGERS if dialect == "sqlite" else _PG_TRIGGERS if dialect == "postgresql" else []:
        op.execute(sql)


def _drop_event_triggers() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_no_update")
        op.execute("DROP TRIGGER IF EXISTS events_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_no_change ON events")
        op.execute("DROP FUNCTION IF EXISTS events_append_only()")


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('blake3', sa.String(length=64), nullable=False),
    sa.Column('git_sha1', sa.String(length=40), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("git_sha1 IS NULL OR (length(git_sha1) = 40 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(git_sha1, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = '')", name=op.f('ck_blobs_git_sha1_hex')),
    sa.CheckConstraint("length(blake3) = 64 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(blake3, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_blobs_blake3_hex')),
    sa.CheckConstraint("length(sha256) = 64 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(sha256, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_blobs_sha256_hex')),
    sa.CheckConstraint('size >= 0', name=op.f('ck_blobs_size_nonnegative')),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_blobs'))
    )
    op.create_table('events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('subject', sa.String(length=1000), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_subject'), ['subject'], unique=False)

    op.create_table('repos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.String(length=200), nullable=False),
    sa.Column('repo_type', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("repo_type IN ('model', 'dataset', 'space')", name=op.f('ck_repos_repo_type')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_repos')),
    sa.UniqueConstraint('repo_id', name=op.f('uq_repos_repo_id'))
    )
    op.create_table('revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('commit_sha', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("length(commit_sha) = 40 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(commit_sha, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_revisions_commit_sha_hex')),
    sa.ForeignKeyConstraint(['repo_id'], ['repos.id'], name=op.f('fk_revisions_repo_id_repos'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_revisions')),
    sa.UniqueConstraint('repo_id', 'commit_sha', name=op.f('uq_revisions_repo_id_commit_sha'))
    )
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revisions_repo_id'), ['repo_id'], unique=False)

    op.create_table('files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('blob_sha256', sa.String(length=64), nullable=False),
    sa.Column('git_oid', sa.String(length=40), nullable=False),
    sa.Column('lfs', sa.Boolean(), nullable=False),
    sa.CheckConstraint("length(git_oid) = 40 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(git_oid, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_files_git_oid_hex')),
    sa.CheckConstraint("path <> '' AND path NOT LIKE '/%' AND path <> '..' AND path NOT LIKE '../%' AND path NOT LIKE '%/../%' AND path NOT LIKE '%/..' AND replace(path, '\\', '') = path", name=op.f('ck_files_path_relative')),
    sa.CheckConstraint('size >= 0', name=op.f('ck_files_size_nonnegative')),
    sa.ForeignKeyConstraint(['blob_sha256'], ['blobs.sha256'], name=op.f('fk_files_blob_sha256_blobs')),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_files_revision_id_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    sa.UniqueConstraint('revision_id', 'path', name=op.f('uq_files_revision_id_path'))
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_blob_sha256'), ['blob_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_files_revision_id'), ['revision_id'], unique=False)

    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('family', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('inferred', sa.Boolean(), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('root_digest', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("length(root_digest) = 64 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(root_digest, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_models_root_digest_hex')),
    sa.CheckConstraint("state <> 'quarantined' OR state_reason IS NOT NULL", name=op.f('ck_models_quarantine_reason')),
    sa.CheckConstraint("state IN ('fetching', 'incomplete', 'verified', 'registered', 'quarantined')", name=op.f('ck_models_state')),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_models_revision_id_revisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', 'revision_id', name=op.f('uq_models_name_revision_id'))
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_revision_id'), ['revision_id'], unique=False)

    op.create_table('refs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('repo_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['repo_id'], ['repos.id'], name=op.f('fk_refs_repo_id_repos'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_refs_revision_id_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refs')),
    sa.UniqueConstraint('repo_id', 'name', name=op.f('uq_refs_repo_id_name'))
    )
    with op.batch_alter_table('refs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refs_revision_id'), ['revision_id'], unique=False)

    op.create_table('components',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('required', sa.Boolean(), nullable=False),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.CheckConstraint("role IN ('config', 'weights', 'base', 'adapter', 'head', 'visual', 'tokenizer', 'processor', 'code')", name=op.f('ck_components_role')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_components_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_components_revision_id_revisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_components')),
    sa.UniqueConstraint('model_id', 'position', name=op.f('uq_components_model_id_position'))
    )
    with op.batch_alter_table('components', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_components_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_components_revision_id'), ['revision_id'], unique=False)

    op.create_table('deployments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=255), nullable=False),
    sa.Column('path', sa.String(length=4096), nullable=False),
    sa.Column('layout', sa.String(length=16), nullable=False),
    sa.Column('commit_sha', sa.String(length=40), nullable=False),
    sa.Column('root_digest', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("layout IN ('hf-cache', 'dir')", name=op.f('ck_deployments_layout')),
    sa.CheckConstraint("length(commit_sha) = 40 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(commit_sha, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_deployments_commit_sha_hex')),
    sa.CheckConstraint("length(root_digest) = 64 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(root_digest, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = ''", name=op.f('ck_deployments_root_digest_hex')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_deployments_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployments'))
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_model_id'), ['model_id'], unique=False)

    op.create_table('lineage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('relation', sa.String(length=16), nullable=False),
    sa.Column('parent_revision_id', sa.Integer(), nullable=False),
    sa.Column('parent_model_id', sa.Integer(), nullable=True),
    sa.Column('pinned', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("relation IN ('derived_from', 'base', 'merged_from')", name=op.f('ck_lineage_relation')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_lineage_model_id_models'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_model_id'], ['models.id'], name=op.f('fk_lineage_parent_model_id_models'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['parent_revision_id'], ['revisions.id'], name=op.f('fk_lineage_parent_revision_id_revisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lineage'))
    )
    with op.batch_alter_table('lineage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lineage_model_id'), ['model_id'], unique=False)

    op.create_table('smoke_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('dtype', sa.String(length=32), nullable=False),
    sa.Column('library_versions', sa.JSON(), nullable=False),
    sa.Column('wall_ms', sa.Float(), nullable=False),
    sa.Column('output_shapes', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('stats', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("fingerprint IS NULL OR (length(fingerprint) = 64 AND replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(fingerprint, '0', ''), '1', ''), '2', ''), '3', ''), '4', ''), '5', ''), '6', ''), '7', ''), '8', ''), '9', ''), 'a', ''), 'b', ''), 'c', ''), 'd', ''), 'e', ''), 'f', '') = '')", name=op.f('ck_smoke_runs_fingerprint_hex')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_smoke_runs_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_smoke_runs'))
    )
    with op.batch_alter_table('smoke_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_smoke_runs_model_id'), ['model_id'], unique=False)

    op.create_table('component_files',
    sa.Column('component_id', sa.Integer(), nullable=False),
    sa.Column('file_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['component_id'], ['components.id'], name=op.f('fk_component_files_component_id_components'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], name=op.f('fk_component_files_file_id_files'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('component_id', 'file_id', name=op.f('pk_component_files'))
    )
    with op.batch_alter_table('component_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_component_files_file_id'), ['file_id'], unique=False)

    _install_event_triggers()


def downgrade() -> None:
    _drop_event_triggers()
    with op.batch_alter_table('component_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_component_files_file_id'))

    op.drop_table('component_files')
    with op.batch_alter_table('smoke_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_smoke_runs_model_id'))

    op.drop_table('smoke_runs')
    with op.batch_alter_table('lineage', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lineage_model_id'))

    op.drop_table('lineage')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployments_model_id'))

    op.drop_table('deployments')
    with op.batch_alter_table('components', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_components_revision_id'))
        batch_op.drop_index(batch_op.f('ix_components_model_id'))

    op.drop_table('components')
    with op.batch_alter_table('refs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refs_revision_id'))

    op.drop_table('refs')
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_revision_id'))
        batch_op.drop_index(batch_op.f('ix_models_name'))

    op.drop_table('models')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_revision_id'))
        batch_op.drop_index(batch_op.f('ix_files_blob_sha256'))

    op.drop_table('files')
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revisions_repo_id'))

    op.drop_table('revisions')
    op.drop_table('repos')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_subject'))
        batch_op.drop_index(batch_op.f('ix_events_action'))

    op.drop_table('events')
    op.drop_table('blobs')
