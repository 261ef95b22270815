"""analytics.ph_residual without its primary key index

The survival analysis replaces ph_residual's rows every night (DELETE and COPY in one transaction). With
the primary key, PostgreSQL checked every new key against the rows being replaced, still in the index:
41 s to write 4.1 million rows at 1,000,000 patients, 1.5 s without (bench/README.md, "Session 16"). The
key is checked on every write by clms_etl.results.ResultTable.conform.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:10:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_constraint("pk_ph_residual", "ph_residual", schema="analytics", type_="primary")


def downgrade() -> None:
    """Downgrade schema."""
    op.create_primary_key("pk_ph_residual", "ph_residual", ["endpoint", "model", "term", "event_index"],
                          schema="analytics")
