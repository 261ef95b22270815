"""an index on delivery_id in every table a delivery owns

A replacing load counts, upserts over and deletes the rows of the source's previous delivery by
``delivery_id``: without an index, each load scanned the whole of each table (quadratic over a night
of many centres; bench/README.md, "Session 15").

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 05:00:00

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen: the tables of this revision (clms_etl.warehouse.schema, canonical tables and gene_status).
TABLES = ("patient", "tumour", "surgery", "event", "molecular_sample", "cn_segment", "variant", "fusion",
          "gene_status")


def upgrade() -> None:
    """Upgrade schema."""
    for table in TABLES:
        op.create_index(f"ix_{table}_delivery_id", table, ["delivery_id"])


def downgrade() -> None:
    """Downgrade schema."""
    for table in TABLES:
        op.drop_index(f"ix_{table}_delivery_id", table_name=table)
