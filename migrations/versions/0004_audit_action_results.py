"""audit action 'results'

An analysis replacing its result tables writes an ``audit_log`` row (action ``results``, the
tables named in ``detail``) with the deliveries the results were computed from, so that the
report can tell stored results computed before the latest load (``Warehouse.results_basis``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_BEFORE = ('load', 'rekey', 'refresh', 'adopt_key')
_AFTER = (*_BEFORE, 'results')
_COMMENT = ("load (a delivery replaced a source's rows), rekey (pseudonyms recomputed with a new key), refresh "
            "(nightly refresh of the warehouse), adopt_key (key recorded for a warehouse built before fingerprints)")
_RESULTS = (", results (an analysis replaced its result tables, named in detail; its deliveries are the ones the "
            "results were computed from)")


def _actions(actions: tuple[str, ...], comment: str) -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.drop_constraint(op.f('ck_audit_log_action_code'), type_='check')
        batch.create_check_constraint(op.f('ck_audit_log_action_code'),
                                      "action IN (" + ", ".join(f"'{a}'" for a in actions) + ")")
        batch.alter_column('action', comment=comment, existing_type=sa.Text(), existing_nullable=False)


def upgrade() -> None:
    """Upgrade schema."""
    _actions(_AFTER, _COMMENT + _RESULTS + ".")


def downgrade() -> None:
    """Downgrade schema (the audit rows of result writes are removed first)."""
    op.execute("DELETE FROM audit_delivery WHERE audit_id IN (SELECT audit_id FROM audit_log WHERE action = 'results')")
    op.execute("DELETE FROM audit_log WHERE action = 'results'")
    _actions(_BEFORE, _COMMENT + ".")
