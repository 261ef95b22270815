"""Cox inference result tables

The survival analysis's Cox model checks beside Table 2 (clms_etl.survival.tables): univariate_cox
(likelihood-ratio tests, Firth hazard ratios, adjusted p-values, PH flag), ph_test and ph_residual
(cox.zph), continuous_cox (continuous predictors, spline test), multivariable_cox (Firth model of the
histological factors). After upgrading, rerun ``python -m clms_etl.warehouse.roles`` so that the
loader role may write the new tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 19:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('univariate_cox',
    sa.Column('endpoint', sa.Text(), autoincrement=False, nullable=False, comment='OS / DSS / PFS / RFS (metastasis-free) / LRFS / RMFS (first local recurrence or metastasis), see docs/survival.md.'),
    sa.Column('predictor', sa.Text(), autoincrement=False, nullable=False, comment='Predictor key, e.g. grade_ii_iii (as in univariate_analysis).'),
    sa.Column('level', sa.Text(), autoincrement=False, nullable=False, comment="Compared level, e.g. 'II/III'."),
    sa.Column('reference_level', sa.Text(), autoincrement=False, nullable=True, comment="Reference level, e.g. 'I'."),
    sa.Column('lr_chi2', sa.Double(), autoincrement=False, nullable=True, comment="Likelihood-ratio chi-square of the level's indicator in the ordinary Cox model (Efron ties; null: not estimable)."),
    sa.Column('lr_df', sa.BigInteger(), autoincrement=False, nullable=True, comment='Degrees of freedom of lr_chi2 (1).'),
    sa.Column('lr_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of lr_chi2.'),
    sa.Column('global_lr_chi2', sa.Double(), autoincrement=False, nullable=True, comment='Likelihood-ratio chi-square of the predictor (all its estimable levels vs the null model).'),
    sa.Column('global_lr_df', sa.BigInteger(), autoincrement=False, nullable=True, comment='Degrees of freedom of global_lr_chi2 (estimable levels).'),
    sa.Column('global_lr_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of global_lr_chi2.'),
    sa.Column('firth_hr', sa.Double(), autoincrement=False, nullable=True, comment='Firth-penalised Cox hazard ratio (Heinze & Schemper 2001, Breslow ties as R coxphf).'),
    sa.Column('firth_ci_lower', sa.Double(), autoincrement=False, nullable=True, comment='Lower 95 % bound of firth_hr, profile penalised likelihood.'),
    sa.Column('firth_ci_upper', sa.Double(), autoincrement=False, nullable=True, comment='Upper 95 % bound of firth_hr, profile penalised likelihood.'),
    sa.Column('firth_lr_chi2', sa.Double(), autoincrement=False, nullable=True, comment="Penalised likelihood-ratio chi-square of the coefficient (coxphf's Chisq), 1 df."),
    sa.Column('firth_lr_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of the penalised likelihood-ratio test.'),
    sa.Column('firth_reason', sa.Text(), autoincrement=False, nullable=True, comment='Why there is no Firth estimate (null when there is one).'),
    sa.Column('p_holm', sa.Double(), autoincrement=False, nullable=True, comment="firth_lr_p adjusted by Holm's method across the rows of the endpoint (R p.adjust)."),
    sa.Column('p_bh', sa.Double(), autoincrement=False, nullable=True, comment='firth_lr_p adjusted by Benjamini-Hochberg across the rows of the endpoint.'),
    sa.Column('adjusted_tests', sa.BigInteger(), autoincrement=False, nullable=True, comment='Number of p-values adjusted together (rows of the endpoint with a Firth p).'),
    sa.Column('ph_chisq', sa.Double(), autoincrement=False, nullable=True, comment="Schoenfeld-residual score test of proportional hazards of the predictor's term (R cox.zph, km transform)."),
    sa.Column('ph_df', sa.BigInteger(), autoincrement=False, nullable=True, comment='Degrees of freedom of ph_chisq.'),
    sa.Column('ph_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of ph_chisq.'),
    sa.Column('ph_violated', sa.Boolean(), autoincrement=False, nullable=True, comment='ph_p < 0.05: proportional hazards rejected, the hazard ratio is an average.'),
    sa.Column('run_id', sa.Text(), nullable=True, comment="Pipeline run that computed the row (Dagster run id, or 'cli' / 'test')."),
    sa.PrimaryKeyConstraint('endpoint', 'predictor', 'level', name=op.f('pk_univariate_cox')),
    schema='analytics',
    comment='Cox inference of Table 2 beside the Wald hazard ratio of univariate_analysis (same endpoint, predictor, level): likelihood-ratio tests of the same ordinary Cox model, Firth-penalised hazard ratio with profile likelihood CI for every level with patients, Holm / Benjamini-Hochberg adjusted p-values across the rows of the endpoint, and the proportional-hazards test of the predictor (R cox.zph).'
    )
    op.create_table('ph_test',
    sa.Column('endpoint', sa.Text(), autoincrement=False, nullable=False, comment='OS / DSS / PFS / RFS (metastasis-free) / LRFS / RMFS (first local recurrence or metastasis), see docs/survival.md.'),
    sa.Column('model', sa.Text(), autoincrement=False, nullable=False, comment="univariate (the predictor's own model) / multivariable."),
    sa.Column('term', sa.Text(), autoincrement=False, nullable=False, comment='Predictor key, or GLOBAL (all terms of the model).'),
    sa.Column('term_label', sa.Text(), autoincrement=False, nullable=True, comment='Predictor as printed.'),
    sa.Column('chisq', sa.Double(), autoincrement=False, nullable=False, comment='Score test chi-square.'),
    sa.Column('df', sa.BigInteger(), autoincrement=False, nullable=False, comment='Degrees of freedom.'),
    sa.Column('p', sa.Double(), autoincrement=False, nullable=False, comment='p-value.'),
    sa.Column('transform', sa.Text(), autoincrement=False, nullable=True, comment='Time transform of the test (km: 1 - left-continuous Kaplan-Meier).'),
    sa.Column('violated', sa.Boolean(), autoincrement=False, nullable=False, comment='p < 0.05.'),
    sa.Column('run_id', sa.Text(), nullable=True, comment="Pipeline run that computed the row (Dagster run id, or 'cli' / 'test')."),
    sa.PrimaryKeyConstraint('endpoint', 'model', 'term', name=op.f('pk_ph_test')),
    schema='analytics',
    comment="Proportional-hazards tests (R survival::cox.zph, survival >= 3: score test, Kaplan-Meier time transform) of the Cox models: each univariate predictor's model, and each term and GLOBAL of the multivariable model."
    )
    op.create_table('ph_residual',
    sa.Column('endpoint', sa.Text(), autoincrement=False, nullable=False, comment='OS / DSS / PFS / RFS (metastasis-free) / LRFS / RMFS (first local recurrence or metastasis), see docs/survival.md.'),
    sa.Column('model', sa.Text(), autoincrement=False, nullable=False, comment='univariate / multivariable.'),
    sa.Column('term', sa.Text(), autoincrement=False, nullable=False, comment='Predictor key.'),
    sa.Column('event_index', sa.Integer(), autoincrement=False, nullable=False, comment='Order of the event (by time).'),
    sa.Column('time_months', sa.Double(), autoincrement=False, nullable=True, comment='Time of the event, months since diagnosis.'),
    sa.Column('transformed_time', sa.Double(), autoincrement=False, nullable=True, comment="1 - Kaplan-Meier just before the event (the test's time scale)."),
    sa.Column('scaled_residual', sa.Double(), autoincrement=False, nullable=True, comment='Scaled Schoenfeld residual: coefficient + residual scaled by the information (beta(t) under proportional hazards: a flat cloud).'),
    sa.Column('run_id', sa.Text(), nullable=True, comment="Pipeline run that computed the row (Dagster run id, or 'cli' / 'test')."),
    sa.PrimaryKeyConstraint('endpoint', 'model', 'term', 'event_index', name=op.f('pk_ph_residual')),
    schema='analytics',
    comment="Scaled Schoenfeld residuals of the Cox models (R cox.zph's y against x), one row per event and term: the points of the proportional-hazards plot."
    )
    op.create_table('continuous_cox',
    sa.Column('endpoint', sa.Text(), autoincrement=False, nullable=False, comment='OS / DSS / PFS / RFS (metastasis-free) / LRFS / RMFS (first local recurrence or metastasis), see docs/survival.md.'),
    sa.Column('predictor', sa.Text(), autoincrement=False, nullable=False, comment='Predictor key, e.g. grade_ii_iii (as in univariate_analysis).'),
    sa.Column('predictor_label', sa.Text(), autoincrement=False, nullable=True, comment='Predictor as printed.'),
    sa.Column('variable', sa.Text(), autoincrement=False, nullable=True, comment='Continuous variable, e.g. age_at_diagnosis_years.'),
    sa.Column('unit', sa.Text(), autoincrement=False, nullable=True, comment='Unit of one step of the hazard ratio, e.g. years.'),
    sa.Column('n', sa.BigInteger(), autoincrement=False, nullable=True, comment='Patients with a known value.'),
    sa.Column('events', sa.BigInteger(), autoincrement=False, nullable=True, comment='Events among them.'),
    sa.Column('median_split', sa.Text(), autoincrement=False, nullable=True, comment='The dichotomy shown in Table 2.'),
    sa.Column('hr_per_unit', sa.Double(), autoincrement=False, nullable=True, comment='Cox hazard ratio per unit (Efron ties).'),
    sa.Column('hr_ci_lower', sa.Double(), autoincrement=False, nullable=True, comment='Lower 95 % bound (Wald).'),
    sa.Column('hr_ci_upper', sa.Double(), autoincrement=False, nullable=True, comment='Upper 95 % bound (Wald).'),
    sa.Column('wald_p', sa.Double(), autoincrement=False, nullable=True, comment='Wald p-value.'),
    sa.Column('lr_chi2', sa.Double(), autoincrement=False, nullable=True, comment='Likelihood-ratio chi-square of the linear term, 1 df.'),
    sa.Column('lr_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of lr_chi2.'),
    sa.Column('spline_knots', sa.Text(), autoincrement=False, nullable=True, comment="Knots of the restricted cubic spline (rms::rcspline.eval's rule)."),
    sa.Column('nonlinear_chi2', sa.Double(), autoincrement=False, nullable=True, comment='Likelihood-ratio chi-square, spline vs linear model.'),
    sa.Column('nonlinear_df', sa.BigInteger(), autoincrement=False, nullable=True, comment='Degrees of freedom of nonlinear_chi2 (knots - 2).'),
    sa.Column('nonlinear_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of non-linearity.'),
    sa.Column('log_linear', sa.Boolean(), autoincrement=False, nullable=True, comment='nonlinear_p >= 0.05: no evidence against a log-linear risk.'),
    sa.Column('reason', sa.Text(), autoincrement=False, nullable=True, comment='Why there is no model or no spline test (too few events or values); null when both are there.'),
    sa.Column('run_id', sa.Text(), nullable=True, comment="Pipeline run that computed the row (Dagster run id, or 'cli' / 'test')."),
    sa.PrimaryKeyConstraint('endpoint', 'predictor', name=op.f('pk_continuous_cox')),
    schema='analytics',
    comment='Continuous predictors of Table 2 (dichotomised at the median there, as in the paper) in a Cox model per unit, with the likelihood-ratio test of non-linearity of a restricted cubic spline (3 knots, R rms).'
    )
    op.create_table('multivariable_cox',
    sa.Column('endpoint', sa.Text(), autoincrement=False, nullable=False, comment='OS / DSS / PFS / RFS (metastasis-free) / LRFS / RMFS (first local recurrence or metastasis), see docs/survival.md.'),
    sa.Column('term', sa.Text(), autoincrement=False, nullable=False, comment='Predictor key, e.g. grade_ii_iii.'),
    sa.Column('term_label', sa.Text(), autoincrement=False, nullable=True, comment='Predictor as printed.'),
    sa.Column('level', sa.Text(), autoincrement=False, nullable=True, comment='Compared level.'),
    sa.Column('reference_level', sa.Text(), autoincrement=False, nullable=True, comment='Reference level.'),
    sa.Column('n', sa.BigInteger(), autoincrement=False, nullable=True, comment='Patients with every factor known (complete cases).'),
    sa.Column('events', sa.BigInteger(), autoincrement=False, nullable=True, comment='Events among them.'),
    sa.Column('n_parameters', sa.BigInteger(), autoincrement=False, nullable=True, comment='Coefficients of the model.'),
    sa.Column('events_per_variable', sa.Double(), autoincrement=False, nullable=True, comment='events / n_parameters.'),
    sa.Column('warning', sa.Text(), autoincrement=False, nullable=True, comment='Set when events_per_variable < 10.'),
    sa.Column('firth_hr', sa.Double(), autoincrement=False, nullable=True, comment='Firth-penalised Cox hazard ratio (Heinze & Schemper 2001, Breslow ties as R coxphf).'),
    sa.Column('firth_ci_lower', sa.Double(), autoincrement=False, nullable=True, comment='Lower 95 % bound of firth_hr, profile penalised likelihood.'),
    sa.Column('firth_ci_upper', sa.Double(), autoincrement=False, nullable=True, comment='Upper 95 % bound of firth_hr, profile penalised likelihood.'),
    sa.Column('firth_lr_chi2', sa.Double(), autoincrement=False, nullable=True, comment="Penalised likelihood-ratio chi-square of the coefficient (coxphf's Chisq), 1 df."),
    sa.Column('firth_lr_p', sa.Double(), autoincrement=False, nullable=True, comment='p-value of the penalised likelihood-ratio test.'),
    sa.Column('ph_p', sa.Double(), autoincrement=False, nullable=True, comment='cox.zph p-value of the term in the ordinary model (null when it has no finite estimate).'),
    sa.Column('reason', sa.Text(), autoincrement=False, nullable=True, comment='Why there is no estimate; null when there is one.'),
    sa.Column('run_id', sa.Text(), nullable=True, comment="Pipeline run that computed the row (Dagster run id, or 'cli' / 'test')."),
    sa.PrimaryKeyConstraint('endpoint', 'term', name=op.f('pk_multivariable_cox')),
    schema='analytics',
    comment='Firth-penalised multivariable Cox model of the three histological factors of Table 2 (FNCLCC grade, differentiation, mitotic index), complete cases, with events per variable and a warning below 10.'
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('multivariable_cox', schema='analytics')
    op.drop_table('continuous_cox', schema='analytics')
    op.drop_table('ph_residual', schema='analytics')
    op.drop_table('ph_test', schema='analytics')
    op.drop_table('univariate_cox', schema='analytics')
