"""model states: verified, registered, quarantined (drop fetching and incomplete, which nothing wrote)

Revision ID: 0002
Revises: 0001

A pull or an add records a model only once every byte is proven, so no row was ever `fetching` or
`incomplete`. Should a catalog hold one anyway (written by hand), it is quarantined with a reason
saying so, rather than dropped: the upgrade loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "state IN ('fetching', 'incomplete', 'verified', 'registered', 'quarantined')"
_NEW = "state IN ('verified', 'registered', 'quarantined')"


def _replace_state_check(condition: str) -> None:
    # SQLite cannot alter a CHECK constraint in place: batch mode re-creates the table with the new one.
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_models_state'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_models_state'), condition)


def upgrade() -> None:
    op.execute(
        "UPDATE models SET state = 'quarantined', state_reason = 'smoke: recorded as ' || state || ', a state this "
        "registry no longer has (migration 0002); pull or add it again' WHERE state IN ('fetching', 'incomplete')"
    )
    _replace_state_check(_NEW)


def downgrade() -> None:
    _replace_state_check(_OLD)
