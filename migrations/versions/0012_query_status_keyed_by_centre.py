"""data_query_status keyed by centre and query number

A query's number (clms_etl.query_list.query_ids, "Q" + 10 hex digits) is a hash unique within its centre;
keyed on the number alone, two centres' queries with one number made the second centre's load fail
(found in a 40-centre night at 1,000,000 patients: bench/README.md, "Session 16").

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:30:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_constraint("pk_data_query_status", "data_query_status", type_="primary")
    op.create_primary_key("pk_data_query_status", "data_query_status", ["centre", "query_id"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint("pk_data_query_status", "data_query_status", type_="primary")
    op.create_primary_key("pk_data_query_status", "data_query_status", ["query_id"])
