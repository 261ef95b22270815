"""checks of the canonical contract

The canonical tables' CHECK constraints are now derived from the contract
(``clms_etl/data/contract.toml``): one ``<column>_range`` check per declared range, with the
validation's plausibility bounds (size <= 30 cm, margins <= 5 cm, delay <= 600 months, fewer
than 200 mitoses per 10 HPF), where the hand-written checks only refused negative values; the
patient's centre comment names the registry instead of four centres. A migration is frozen
history: the conditions are written out here, not read from the contract.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# (table, constraint name without ck_<table>_, condition)
_BEFORE = [
    ('patient', 'age_range', 'age_at_diagnosis_years BETWEEN 0 AND 120'),
    ('tumour', 'delay_non_negative', 'consultation_delay_months >= 0'),
    ('tumour', 'ki67_range', 'ki67_percent BETWEEN 0 AND 100'),
    ('tumour', 'mitoses_non_negative', 'mitoses_per_10hpf >= 0'),
    ('tumour', 'size_positive', 'size_cm > 0'),
    ('surgery', 'margins_non_negative',
     'proposed_margin_cm >= 0 AND clinical_margin_cm >= 0 AND histological_margin_cm >= 0'),
    ('surgery', 'surgery_no_positive', 'surgery_no >= 1'),
    ('event', 'event_no_positive', 'event_no >= 1'),
    ('cn_segment', 'cn_non_negative', 'cn_state >= 0'),
    ('cn_segment', 'segment_bounds', 'start_bp >= 1 AND end_bp >= start_bp'),
    ('variant', 'depth_non_negative', 'depth >= 0'),
    ('variant', 'pos_positive', 'pos >= 1'),
    ('variant', 'vaf_fraction', 'vaf BETWEEN 0 AND 1'),
    ('fusion', 'reads_non_negative', 'reads >= 0 AND unique_start_sites >= 0'),
]
_AFTER = [
    ('patient', 'age_at_diagnosis_years_range', 'age_at_diagnosis_years BETWEEN 0 AND 120'),
    ('tumour', 'consultation_delay_months_range', 'consultation_delay_months BETWEEN 0 AND 600'),
    ('tumour', 'ki67_percent_range', 'ki67_percent BETWEEN 0 AND 100'),
    ('tumour', 'mitoses_per_10hpf_range', 'mitoses_per_10hpf BETWEEN 0 AND 199'),
    ('tumour', 'size_cm_range', 'size_cm > 0 AND size_cm <= 30.0'),
    ('surgery', 'clinical_margin_cm_range', 'clinical_margin_cm BETWEEN 0 AND 5.0'),
    ('surgery', 'histological_margin_cm_range', 'histological_margin_cm BETWEEN 0 AND 5.0'),
    ('surgery', 'proposed_margin_cm_range', 'proposed_margin_cm BETWEEN 0 AND 5.0'),
    ('surgery', 'surgery_no_range', 'surgery_no >= 1'),
    ('event', 'event_no_range', 'event_no >= 1'),
    ('cn_segment', 'cn_state_range', 'cn_state >= 0'),
    ('cn_segment', 'segment_bounds', 'end_bp >= start_bp'),
    ('cn_segment', 'start_bp_range', 'start_bp >= 1'),
    ('variant', 'depth_range', 'depth >= 0'),
    ('variant', 'pos_range', 'pos >= 1'),
    ('variant', 'vaf_range', 'vaf BETWEEN 0 AND 1'),
    ('fusion', 'reads_range', 'reads >= 0'),
    ('fusion', 'unique_start_sites_range', 'unique_start_sites >= 0'),
]
_CENTRE_BEFORE = ("Centre that follows the patient and delivers the chart (nice, montpellier, lyon, nimes, "
                  "or a further centre).")
_CENTRE_AFTER = ("Centre that follows the patient and delivers the chart: an entry of the registry "
                 "(clms_etl/data/centres.toml).")


def _replace(drop: list, create: list, centre_comment: str) -> None:
    for table in dict.fromkeys(t for t, _, _ in drop + create):
        with op.batch_alter_table(table) as batch:
            for _, name, _ in (c for c in drop if c[0] == table):
                batch.drop_constraint(op.f(f'ck_{table}_{name}'), type_='check')
            for _, name, condition in (c for c in create if c[0] == table):
                batch.create_check_constraint(op.f(f'ck_{table}_{name}'), condition)
            if table == 'patient':
                batch.alter_column('centre', comment=centre_comment, existing_type=sa.Text(),
                                   existing_nullable=False)


def upgrade() -> None:
    """Upgrade schema."""
    _replace(_BEFORE, _AFTER, _CENTRE_AFTER)


def downgrade() -> None:
    """Downgrade schema."""
    _replace(_AFTER, _BEFORE, _CENTRE_BEFORE)
