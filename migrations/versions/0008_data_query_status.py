"""data query status: the life of each query across a centre's deliveries

``data_query_status`` holds one row per query number (clms_etl.query_list.query_ids): open,
answered (the centre's « Réponse du centre » read back from a returned workbook) or resolved by
a later delivery. After upgrading, rerun ``clms-etl warehouse roles`` so that the loader role
may write it. The view ``analytics.query_turnaround`` gives each centre's turnaround.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 19:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Frozen copy of the view this revision adds (clms_etl.warehouse.analytics.statements()).
TURNAROUND_DDL = [
    "CREATE VIEW analytics.query_turnaround AS SELECT s.centre,\n       COUNT(*) FILTER (WHERE s.status = 'open') AS n_open,\n       COUNT(*) FILTER (WHERE s.status = 'answered') AS n_answered,\n       COUNT(*) FILTER (WHERE s.status = 'resolved') AS n_resolved,\n       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.answered_on - s.opened_on) AS median_days_to_answer,\n       percentile_cont(0.5) WITHIN GROUP (ORDER BY s.resolved_on - s.opened_on) AS median_days_to_resolve\nFROM data_query_status s\nGROUP BY s.centre",
    "COMMENT ON VIEW analytics.query_turnaround IS 'The centres'' turnaround on their data queries (data_query_status): queries open, answered and resolved, and the median days from the delivery that raised a query to the centre''s answer and to the delivery that fixed it.'",
    "COMMENT ON COLUMN analytics.query_turnaround.centre IS 'Source of the deliveries.'",
    "COMMENT ON COLUMN analytics.query_turnaround.n_open IS 'Queries raised and not answered.'",
    "COMMENT ON COLUMN analytics.query_turnaround.n_answered IS 'Queries the centre answered, still raised by its latest delivery.'",
    "COMMENT ON COLUMN analytics.query_turnaround.n_resolved IS 'Queries a later delivery no longer raises.'",
    "COMMENT ON COLUMN analytics.query_turnaround.median_days_to_answer IS 'Median days from the delivery that raised a query to the one bringing the answer.'",
    "COMMENT ON COLUMN analytics.query_turnaround.median_days_to_resolve IS 'Median days from the delivery that raised a query to the one that fixed it.'",
]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('data_query_status',
    sa.Column('query_id', sa.Text(), nullable=False, comment='Stable query number (Q + 10 hex digits): hash of centre, rule, table, patient (or row, or file), field and rank, the same from one delivery to the next.'),
    sa.Column('centre', sa.Text(), nullable=False, comment='Centre (or molecular) whose deliveries raised the query.'),
    sa.Column('rule', sa.Text(), nullable=False, comment='Rule of the query (clms_etl/data/rules.toml).'),
    sa.Column('severity', sa.Text(), nullable=False, comment='error / warning, as the rule registry says.'),
    sa.Column('table_name', sa.Text(), nullable=True, comment='Canonical table of the row concerned; null for a whole-file query.'),
    sa.Column('patient_id', sa.Text(), nullable=True, comment='Pseudonym of the patient concerned, if known.'),
    sa.Column('source_file', sa.Text(), nullable=True, comment='File concerned in the latest delivery that raised it.'),
    sa.Column('source_sheet', sa.Text(), nullable=True, comment='Sheet concerned (Excel), if any.'),
    sa.Column('source_row', sa.BigInteger(), nullable=True, comment='Row concerned as the data manager sees it (header = 1).'),
    sa.Column('field', sa.Text(), nullable=True, comment="Column as named in the centre's file."),
    sa.Column('message', sa.Text(), nullable=True, comment='Message of the latest delivery that raised it (French).'),
    sa.Column('status', sa.Text(), nullable=False, comment='open (raised, not answered), answered (the centre answered, the problem is still there), resolved (absent from a later delivery).'),
    sa.Column('opened_on', sa.Date(), nullable=False, comment='Delivery date that raised it (again, after a resolution).'),
    sa.Column('last_seen_on', sa.Date(), nullable=False, comment='Latest delivery date that raised it.'),
    sa.Column('answered_on', sa.Date(), nullable=True, comment="Delivery date whose returned workbook carried the centre's answer."),
    sa.Column('answer', sa.Text(), nullable=True, comment="The centre's « Réponse du centre », screened for identifiers like every value."),
    sa.Column('resolved_on', sa.Date(), nullable=True, comment='Delivery date that no longer raised it; null while open or answered.'),
    sa.CheckConstraint("(status = 'resolved') = (resolved_on IS NOT NULL)", name=op.f('ck_data_query_status_resolved_has_date')),
    sa.CheckConstraint("status IN ('open', 'answered', 'resolved')", name=op.f('ck_data_query_status_status_code')),
    sa.PrimaryKeyConstraint('query_id', name=op.f('pk_data_query_status')),
    comment="Life of each data query across a centre's deliveries (one row per query number): open, answered by the centre in a returned query workbook, or resolved by a later delivery; the source of the centres' turnaround figures."
    )
    for statement in TURNAROUND_DDL:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP VIEW IF EXISTS analytics.query_turnaround")
    op.drop_table('data_query_status')
