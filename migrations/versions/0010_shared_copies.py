"""shared copies of the per-patient views: warehouse_change, its statement triggers, schema analytics_copies

The nightly refresh read ``analytics.patient_summary`` in four processes, each computing it from every
patient's operations and events (15-20 s each at 1,000,000 patients). A shared copy is computed once and
read while the warehouse has not changed since (clms_etl/warehouse/shared_copy.py); the triggers below
record each transaction that writes a table the view reads.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 08:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen: the base tables patient_summary reads at this revision (clms_etl.warehouse.shared_copy.base_tables).
TABLES = ("event", "patient", "surgery", "tumour")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "warehouse_change",
        sa.Column("transaction_id", sa.BigInteger(), nullable=False,
                  comment="PostgreSQL transaction (txid_current()) that wrote the table."),
        sa.Column("table_name", sa.Text(), nullable=False, comment="Base table written."),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, comment="Start of that transaction."),
        sa.PrimaryKeyConstraint("transaction_id", "table_name", name=op.f("pk_warehouse_change")),
        comment="PostgreSQL: one row per transaction and table that wrote a base table a shared copy of an "
                "analytics view is computed from (statement triggers append it in the writer's transaction; "
                "DuckDB keeps it empty). A shared copy is current while this table has the rows it was made "
                "with (clms_etl.warehouse.shared_copy). Append-only.",
    )
    op.execute("CREATE SCHEMA IF NOT EXISTS analytics_copies")
    op.execute("CREATE OR REPLACE FUNCTION warehouse_changed() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
               "SET search_path FROM CURRENT AS $$ BEGIN "
               "INSERT INTO warehouse_change (transaction_id, table_name, changed_at) "
               "VALUES (txid_current(), TG_TABLE_NAME, now()) ON CONFLICT DO NOTHING; RETURN NULL; END $$")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER warehouse_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION warehouse_changed()")


def downgrade() -> None:
    """Downgrade schema."""
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS warehouse_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS warehouse_changed()")
    op.execute("DROP SCHEMA IF EXISTS analytics_copies CASCADE")
    op.drop_table("warehouse_change")
