"""Result tables of the survival analysis (see :mod:`clms_etl.results`).

Written whole by every run of :func:`clms_etl.survival.study.analyse` (asset
``survival_analysis``); read them in schema ``analytics`` like the views. Conventions
(``docs/survival.md``): time in months (days / 30.4375) from the pathological diagnosis;
confidence intervals at 95 %, the transform named in ``ci_transform`` (``log`` = R ``survfit``'s
default, ``log-log`` = lifelines' default); ``group_variable = group_value = 'all'`` for the
whole survival population.

Import-light on purpose (polars only): :mod:`clms_etl.analyses` declares these tables to the warehouse.
"""

from __future__ import annotations

import polars as pl

from clms_etl.results import ResultColumn as C
from clms_etl.results import ResultTable
from clms_etl.warehouse.analytics import POPULATION_RULE_TABLE

_ENDPOINT = C("endpoint", pl.String, "OS / DSS / PFS / RFS (metastasis-free) / LRFS / RMFS (first local recurrence "
              "or metastasis), see docs/survival.md.")
_GROUP_VARIABLE = C("group_variable", pl.String, "Predictor splitting the population ('all': whole survival population).")
_GROUP_VALUE = C("group_value", pl.String, "Level of group_variable ('all': whole survival population).")
_CI_TRANSFORM = C("ci_transform", pl.String, "Transform of the 95 % confidence interval: log (R survfit default) "
                  "or log-log (lifelines default).")

SURVIVAL_ESTIMATE = ResultTable(
    "survival_estimate",
    "Kaplan-Meier estimates per endpoint and group: survival at 12/24/60/96 months and median survival, with "
    "95 % CI (transform named in ci_transform), numbers at risk and events. Survival population only.",
    (
        _ENDPOINT, _GROUP_VARIABLE, _GROUP_VALUE, _CI_TRANSFORM,
        C("estimate", pl.String, "survival_<t>m: survival at t months; median: median survival time (R's rule)."),
        C("time_months", pl.Float64, "survival_<t>m: the time point t; median: the median (null: not reached)."),
        C("survival", pl.Float64, "Kaplan-Meier survival at time_months (survival rows; null beyond the last follow-up "
          "or for medians)."),
        C("ci_lower", pl.Float64, "Lower 95 % bound: of the survival (survival rows) or of the median, months."),
        C("ci_upper", pl.Float64, "Upper 95 % bound: of the survival (survival rows) or of the median, months "
          "(null: not reached)."),
        C("n_at_risk", pl.Int64, "Patients still at risk at time_months (time >= t; survival rows)."),
        C("cumulative_events", pl.Int64, "Events up to time_months (survival rows)."),
        C("n", pl.Int64, "Patients in the group.", nullable=False),
        C("events", pl.Int64, "Events in the group over the whole follow-up.", nullable=False),
        C("display", pl.String, "Estimate as printed in the tables, e.g. '0.92 [0.81-0.97]'."),
    ),
    ("endpoint", "group_variable", "group_value", "ci_transform", "estimate"),
)

SURVIVAL_CURVE = ResultTable(
    "survival_curve",
    "Kaplan-Meier step curves per endpoint and group: one row per distinct time (time 0 included) with "
    "survival, 95 % CI, numbers at risk, events and censored patients at that time.",
    (
        _ENDPOINT, _GROUP_VARIABLE, _GROUP_VALUE, _CI_TRANSFORM,
        C("time_months", pl.Float64, "Time of the step, months since diagnosis.", nullable=False),
        C("survival", pl.Float64, "Kaplan-Meier survival just after time_months."),
        C("ci_lower", pl.Float64, "Lower 95 % bound of survival (null when survival is 0 with the log transform)."),
        C("ci_upper", pl.Float64, "Upper 95 % bound of survival."),
        C("n_at_risk", pl.Int64, "Patients at risk just before time_months."),
        C("events", pl.Int64, "Events at time_months."),
        C("censored", pl.Int64, "Patients censored at time_months."),
    ),
    ("endpoint", "group_variable", "group_value", "ci_transform", "time_months"),
)

UNIVARIATE_ANALYSIS = ResultTable(
    "univariate_analysis",
    "Univariate analysis per endpoint (RMFS: local recurrence or metastasis, Table 2; OS) and predictor level "
    "vs the reference level: events per group, log-rank test, Cox hazard ratio with 95 % CI (Efron ties). "
    "Comparisons with too few events are reported as not estimable, with the reason.",
    (
        _ENDPOINT,
        C("predictor", pl.String, "Predictor key, e.g. grade_ii_iii."),
        C("predictor_label", pl.String, "Predictor as printed, e.g. 'FNCLCC grade'."),
        C("level", pl.String, "Compared level, e.g. 'II/III'."),
        C("reference_level", pl.String, "Reference level of the hazard ratio, e.g. 'I'."),
        C("definition", pl.String, "How the levels are defined (thresholds, medians used)."),
        C("row_order", pl.Int32, "Order of the row in Table 2.", nullable=False),
        C("n", pl.Int64, "Patients with a known value of the predictor (level + reference, or all levels)."),
        C("events", pl.Int64, "Events among them."),
        C("n_level", pl.Int64, "Patients in the compared level."),
        C("events_level", pl.Int64, "Events in the compared level."),
        C("n_reference", pl.Int64, "Patients in the reference level."),
        C("events_reference", pl.Int64, "Events in the reference level."),
        C("hr", pl.Float64, "Cox hazard ratio, level vs reference (null: not estimable)."),
        C("hr_ci_lower", pl.Float64, "Lower 95 % bound of the hazard ratio (Wald)."),
        C("hr_ci_upper", pl.Float64, "Upper 95 % bound of the hazard ratio (Wald)."),
        C("cox_p", pl.Float64, "Wald p-value of the hazard ratio."),
        C("logrank_chi2", pl.Float64, "Log-rank chi-square over all levels of the predictor."),
        C("logrank_df", pl.Int64, "Degrees of freedom of the log-rank test."),
        C("logrank_p", pl.Float64, "Log-rank p-value over all levels of the predictor."),
        C("estimable", pl.Boolean, "False: too few events for a hazard ratio (see reason).", nullable=False),
        C("reason", pl.String, "Why the hazard ratio is not estimable (null when it is)."),
        C("ties", pl.String, "Tie handling of the Cox partial likelihood (efron, as R coxph)."),
    ),
    ("endpoint", "predictor", "level"),
)

TABLE1 = ResultTable(
    "table1",
    "Table 1 of the study in long format: patient characteristics of all included patients, one row per "
    "category count (n, percent) or summary statistic (value), with the printed text and the order of the rows.",
    (
        C("row_order", pl.Int32, "Order of the row in Table 1.", nullable=False),
        C("variable", pl.String, "Characteristic key, e.g. primary_site."),
        C("variable_label", pl.String, "Characteristic as printed, e.g. 'Primary site'."),
        C("item", pl.String, "Category (count rows, 'ns' = not specified) or statistic name (median, q1, q3, mean, "
          "sd, min, max, n_known)."),
        C("item_label", pl.String, "Category or statistic as printed."),
        C("kind", pl.String, "count / statistic.", nullable=False),
        C("n", pl.Int64, "Patients in the category (count rows)."),
        C("denominator", pl.Int64, "Denominator of percent (count rows)."),
        C("percent", pl.Float64, "100 * n / denominator (count rows)."),
        C("value", pl.Float64, "Value of the statistic (statistic rows; unit in variable_label)."),
        C("display", pl.String, "Text as printed, e.g. '57 (72.2 %)' or '70 [57-79]'."),
    ),
    ("variable", "item"),
)

SURVIVAL_EXCLUSION = ResultTable(
    "survival_exclusion",
    "Patients of the registry left out of the survival population, with the reason (missing dates, follow-up "
    "shorter than the minimum).",
    (
        C("patient_id", pl.String, "Pseudonym of the patient."),
        C("centre", pl.String, "Centre following the patient."),
        C("reason", pl.String, "no_diagnosis_date / no_follow_up_date / follow_up_before_diagnosis / "
          "short_follow_up.", nullable=False),
        C("detail", pl.String, "Reason in words, e.g. 'follow-up 1.0 months < 3 months'."),
        C("follow_up_months", pl.Float64, "Months from diagnosis to last contact, when known."),
        C("min_follow_up_months", pl.Float64, "Minimum follow-up of the survival population used.", nullable=False),
    ),
    ("patient_id",),
)

FOLLOW_UP = ResultTable(
    "follow_up",
    "Follow-up of the survival population: median and quartiles by reverse Kaplan-Meier (deaths censored, "
    "censoring as the event; Schemper & Smith 1996) and of the observed times.",
    (
        C("method", pl.String, "reverse_kaplan_meier / observed (quantiles of the follow-up times, R type 7)."),
        C("n", pl.Int64, "Patients.", nullable=False),
        C("median_months", pl.Float64, "Median follow-up, months."),
        C("q1_months", pl.Float64, "First quartile, months."),
        C("q3_months", pl.Float64, "Third quartile, months."),
        C("median_ci_lower", pl.Float64, "Lower 95 % bound of the median (reverse KM, log transform)."),
        C("median_ci_upper", pl.Float64, "Upper 95 % bound of the median (reverse KM, log transform)."),
        C("display", pl.String, "As printed, e.g. '39.0 months (IQR 4.9-73.9)'."),
    ),
    ("method",),
)

GROUP_COMPARISON = ResultTable(
    "group_comparison",
    "Means of a continuous variable between patients with and without an outcome, with the test used "
    "(the study's clinical margin with vs without relapse).",
    (
        C("variable", pl.String, "Compared variable, e.g. clinical_margin_cm."),
        C("outcome", pl.String, "Grouping outcome, e.g. relapse (local recurrence or metastasis)."),
        C("population", pl.String, "Patients compared, e.g. 'all included patients with a known value'."),
        C("n_with", pl.Int64, "Patients with the outcome."),
        C("mean_with", pl.Float64, "Mean among them."),
        C("sd_with", pl.Float64, "Standard deviation among them."),
        C("n_without", pl.Int64, "Patients without the outcome."),
        C("mean_without", pl.Float64, "Mean among them."),
        C("sd_without", pl.Float64, "Standard deviation among them."),
        C("test", pl.String, "Test used (Welch two-sample t-test, unequal variances)."),
        C("statistic", pl.Float64, "Test statistic (t)."),
        C("df", pl.Float64, "Degrees of freedom (Welch-Satterthwaite)."),
        C("p", pl.Float64, "Two-sided p-value."),
    ),
    ("variable", "outcome"),
)

_OUTCOME = C("outcome", pl.String, "local_recurrence / metastasis / relapse (local recurrence or metastasis) / "
             "clms_death, with death as the competing event (docs/survival.md, Competing risks).")
_CAUSE = C("cause", pl.String, "event: the outcome; competing: the death that precludes it (any death without the "
           "outcome; for clms_death, death from another or an unknown cause).")

CUMULATIVE_INCIDENCE = ResultTable(
    "cumulative_incidence",
    "Cumulative incidence (Aalen-Johansen, R cmprsk::cuminc) of each outcome and of its competing death at "
    "12/24/60/96 months per group, with Gray's variance, a 95 % interval (log-log) and 1 - Kaplan-Meier of the "
    "outcome (deaths censored) beside it. Survival population only.",
    (
        _OUTCOME, _GROUP_VARIABLE, _GROUP_VALUE, _CAUSE,
        C("estimate", pl.String, "incidence_<t>m: cumulative incidence at t months."),
        C("time_months", pl.Float64, "The time point t, months since diagnosis.", nullable=False),
        C("incidence", pl.Float64, "Cumulative incidence at time_months (null beyond the last follow-up)."),
        C("variance", pl.Float64, "Gray's variance of the estimate (cmprsk's)."),
        C("ci_lower", pl.Float64, "Lower 95 % bound, log(-log) transform (null where incidence is 0)."),
        C("ci_upper", pl.Float64, "Upper 95 % bound, log(-log) transform."),
        C("one_minus_km", pl.Float64, "1 - Kaplan-Meier of the outcome with competing deaths censored, the study's "
          "way (event rows only): above incidence when deaths compete."),
        C("n", pl.Int64, "Patients in the group.", nullable=False),
        C("events", pl.Int64, "Patients with this cause over the whole follow-up.", nullable=False),
        C("display", pl.String, "As printed, e.g. '0.12 [0.05-0.22]'."),
    ),
    ("outcome", "group_variable", "group_value", "cause", "estimate"),
)

CUMULATIVE_INCIDENCE_CURVE = ResultTable(
    "cumulative_incidence_curve",
    "Cumulative incidence step curves per outcome, group and cause: the value from each time of the cause on "
    "(time 0 included), with Gray's variance.",
    (
        _OUTCOME, _GROUP_VARIABLE, _GROUP_VALUE, _CAUSE,
        C("time_months", pl.Float64, "Time of the step, months since diagnosis.", nullable=False),
        C("incidence", pl.Float64, "Cumulative incidence from time_months on.", nullable=False),
        C("variance", pl.Float64, "Gray's variance of the estimate."),
        C("end_months", pl.Float64, "Last follow-up of the group: the curve is defined up to there."),
    ),
    ("outcome", "group_variable", "group_value", "cause", "time_months"),
)

GRAY_TEST = ResultTable(
    "gray_test",
    "Gray's test (R cmprsk::cuminc, rho = 0) of equal cumulative incidence of each outcome across the levels of "
    "each predictor of Table 2, death competing.",
    (
        _OUTCOME,
        C("predictor", pl.String, "Predictor key, e.g. grade_ii_iii."),
        C("predictor_label", pl.String, "Predictor as printed."),
        C("levels", pl.String, "Levels compared (patients with a known value), comma-separated."),
        C("n", pl.Int64, "Patients compared."),
        C("events", pl.Int64, "Outcomes among them."),
        C("competing", pl.Int64, "Competing deaths among them."),
        C("statistic", pl.Float64, "Chi-square statistic (null: no test, see reason)."),
        C("df", pl.Int64, "Degrees of freedom (levels - 1)."),
        C("p", pl.Float64, "p-value."),
        C("reason", pl.String, "Why there is no test (null when there is one)."),
    ),
    ("outcome", "predictor"),
)

FINE_GRAY = ResultTable(
    "fine_gray",
    "Fine-Gray subdistribution hazard ratios (R cmprsk::crr, robust variance) of each outcome per predictor level "
    "vs the reference, death competing, next to the cause-specific Cox hazard ratio (Efron ties) of the same "
    "comparison; the not-estimable rule of Table 2.",
    (
        _OUTCOME,
        C("predictor", pl.String, "Predictor key."),
        C("predictor_label", pl.String, "Predictor as printed."),
        C("level", pl.String, "Compared level."),
        C("reference_level", pl.String, "Reference level."),
        C("row_order", pl.Int32, "Order of the row within the outcome.", nullable=False),
        C("n_level", pl.Int64, "Patients in the compared level."),
        C("events_level", pl.Int64, "Outcomes in the compared level."),
        C("n_reference", pl.Int64, "Patients in the reference level."),
        C("events_reference", pl.Int64, "Outcomes in the reference level."),
        C("competing", pl.Int64, "Competing deaths in the level and the reference."),
        C("shr", pl.Float64, "Subdistribution hazard ratio (null: not estimable)."),
        C("shr_ci_lower", pl.Float64, "Lower 95 % bound (Wald, robust SE)."),
        C("shr_ci_upper", pl.Float64, "Upper 95 % bound (Wald, robust SE)."),
        C("shr_p", pl.Float64, "Wald p-value of the sHR."),
        C("cause_specific_endpoint", pl.String, "Endpoint of the cause-specific model (competing deaths censored): "
          "LRFS / RFS / RMFS / DSS."),
        C("cs_hr", pl.Float64, "Cause-specific Cox hazard ratio."),
        C("cs_hr_ci_lower", pl.Float64, "Lower 95 % bound of the cause-specific HR (Wald)."),
        C("cs_hr_ci_upper", pl.Float64, "Upper 95 % bound of the cause-specific HR (Wald)."),
        C("cs_p", pl.Float64, "Wald p-value of the cause-specific HR."),
        C("estimable", pl.Boolean, "False: too few events or no convergence (see reason).", nullable=False),
        C("reason", pl.String, "Why the ratio is not estimable (null when it is)."),
    ),
    ("outcome", "predictor", "level"),
)

_PREDICTOR = C("predictor", pl.String, "Predictor key, e.g. grade_ii_iii (as in univariate_analysis).")
_FIRTH_COLUMNS = (
    C("firth_hr", pl.Float64, "Firth-penalised Cox hazard ratio (Heinze & Schemper 2001, Breslow ties as R coxphf)."),
    C("firth_ci_lower", pl.Float64, "Lower 95 % bound of firth_hr, profile penalised likelihood."),
    C("firth_ci_upper", pl.Float64, "Upper 95 % bound of firth_hr, profile penalised likelihood."),
    C("firth_lr_chi2", pl.Float64, "Penalised likelihood-ratio chi-square of the coefficient (coxphf's Chisq), 1 df."),
    C("firth_lr_p", pl.Float64, "p-value of the penalised likelihood-ratio test."),
)

UNIVARIATE_COX = ResultTable(
    "univariate_cox",
    "Cox inference of Table 2 beside the Wald hazard ratio of univariate_analysis (same endpoint, predictor, "
    "level): likelihood-ratio tests of the same ordinary Cox model, Firth-penalised hazard ratio with profile "
    "likelihood CI for every level with patients, Holm / Benjamini-Hochberg adjusted p-values across the rows "
    "of the endpoint, and the proportional-hazards test of the predictor (R cox.zph).",
    (
        _ENDPOINT, _PREDICTOR,
        C("level", pl.String, "Compared level, e.g. 'II/III'."),
        C("reference_level", pl.String, "Reference level, e.g. 'I'."),
        C("lr_chi2", pl.Float64, "Likelihood-ratio chi-square of the level's indicator in the ordinary Cox model "
          "(Efron ties; null: not estimable)."),
        C("lr_df", pl.Int64, "Degrees of freedom of lr_chi2 (1)."),
        C("lr_p", pl.Float64, "p-value of lr_chi2."),
        C("global_lr_chi2", pl.Float64, "Likelihood-ratio chi-square of the predictor (all its estimable levels vs "
          "the null model)."),
        C("global_lr_df", pl.Int64, "Degrees of freedom of global_lr_chi2 (estimable levels)."),
        C("global_lr_p", pl.Float64, "p-value of global_lr_chi2."),
        *_FIRTH_COLUMNS,
        C("firth_reason", pl.String, "Why there is no Firth estimate (null when there is one)."),
        C("p_holm", pl.Float64, "firth_lr_p adjusted by Holm's method across the rows of the endpoint (R p.adjust)."),
        C("p_bh", pl.Float64, "firth_lr_p adjusted by Benjamini-Hochberg across the rows of the endpoint."),
        C("adjusted_tests", pl.Int64, "Number of p-values adjusted together (rows of the endpoint with a Firth p)."),
        C("ph_chisq", pl.Float64, "Schoenfeld-residual score test of proportional hazards of the predictor's term "
          "(R cox.zph, km transform)."),
        C("ph_df", pl.Int64, "Degrees of freedom of ph_chisq."),
        C("ph_p", pl.Float64, "p-value of ph_chisq."),
        C("ph_violated", pl.Boolean, "ph_p < 0.05: proportional hazards rejected, the hazard ratio is an average."),
    ),
    ("endpoint", "predictor", "level"),
)

PH_TEST = ResultTable(
    "ph_test",
    "Proportional-hazards tests (R survival::cox.zph, survival >= 3: score test, Kaplan-Meier time transform) "
    "of the Cox models: each univariate predictor's model, and each term and GLOBAL of the multivariable model.",
    (
        _ENDPOINT,
        C("model", pl.String, "univariate (the predictor's own model) / multivariable."),
        C("term", pl.String, "Predictor key, or GLOBAL (all terms of the model)."),
        C("term_label", pl.String, "Predictor as printed."),
        C("chisq", pl.Float64, "Score test chi-square.", nullable=False),
        C("df", pl.Int64, "Degrees of freedom.", nullable=False),
        C("p", pl.Float64, "p-value.", nullable=False),
        C("transform", pl.String, "Time transform of the test (km: 1 - left-continuous Kaplan-Meier)."),
        C("violated", pl.Boolean, "p < 0.05.", nullable=False),
    ),
    ("endpoint", "model", "term"),
)

PH_RESIDUAL = ResultTable(
    "ph_residual",
    "Scaled Schoenfeld residuals of the Cox models (R cox.zph's y against x), one row per event and term: the "
    "points of the proportional-hazards plot.",
    (
        _ENDPOINT,
        C("model", pl.String, "univariate / multivariable."),
        C("term", pl.String, "Predictor key."),
        C("event_index", pl.Int32, "Order of the event (by time).", nullable=False),
        C("time_months", pl.Float64, "Time of the event, months since diagnosis."),
        C("transformed_time", pl.Float64, "1 - Kaplan-Meier just before the event (the test's time scale)."),
        C("scaled_residual", pl.Float64, "Scaled Schoenfeld residual: coefficient + residual scaled by the "
          "information (beta(t) under proportional hazards: a flat cloud)."),
    ),
    ("endpoint", "model", "term", "event_index"),
    indexed=False,  # one row per event and term: millions at national scale (ResultTable.indexed)
)

CONTINUOUS_COX = ResultTable(
    "continuous_cox",
    "Continuous predictors of Table 2 (dichotomised at the median there, as in the paper) in a Cox model per "
    "unit, with the likelihood-ratio test of non-linearity of a restricted cubic spline (3 knots, R rms).",
    (
        _ENDPOINT, _PREDICTOR,
        C("predictor_label", pl.String, "Predictor as printed."),
        C("variable", pl.String, "Continuous variable, e.g. age_at_diagnosis_years."),
        C("unit", pl.String, "Unit of one step of the hazard ratio, e.g. years."),
        C("n", pl.Int64, "Patients with a known value."),
        C("events", pl.Int64, "Events among them."),
        C("median_split", pl.String, "The dichotomy shown in Table 2."),
        C("hr_per_unit", pl.Float64, "Cox hazard ratio per unit (Efron ties)."),
        C("hr_ci_lower", pl.Float64, "Lower 95 % bound (Wald)."),
        C("hr_ci_upper", pl.Float64, "Upper 95 % bound (Wald)."),
        C("wald_p", pl.Float64, "Wald p-value."),
        C("lr_chi2", pl.Float64, "Likelihood-ratio chi-square of the linear term, 1 df."),
        C("lr_p", pl.Float64, "p-value of lr_chi2."),
        C("spline_knots", pl.String, "Knots of the restricted cubic spline (rms::rcspline.eval's rule)."),
        C("nonlinear_chi2", pl.Float64, "Likelihood-ratio chi-square, spline vs linear model."),
        C("nonlinear_df", pl.Int64, "Degrees of freedom of nonlinear_chi2 (knots - 2)."),
        C("nonlinear_p", pl.Float64, "p-value of non-linearity."),
        C("log_linear", pl.Boolean, "nonlinear_p >= 0.05: no evidence against a log-linear risk."),
        C("reason", pl.String, "Why there is no model or no spline test (too few events or values); null when both are there."),
    ),
    ("endpoint", "predictor"),
)

MULTIVARIABLE_COX = ResultTable(
    "multivariable_cox",
    "Firth-penalised multivariable Cox model of the three histological factors of Table 2 (FNCLCC grade, "
    "differentiation, mitotic index), complete cases, with events per variable and a warning below 10.",
    (
        _ENDPOINT,
        C("term", pl.String, "Predictor key, e.g. grade_ii_iii."),
        C("term_label", pl.String, "Predictor as printed."),
        C("level", pl.String, "Compared level."),
        C("reference_level", pl.String, "Reference level."),
        C("n", pl.Int64, "Patients with every factor known (complete cases)."),
        C("events", pl.Int64, "Events among them."),
        C("n_parameters", pl.Int64, "Coefficients of the model."),
        C("events_per_variable", pl.Float64, "events / n_parameters."),
        C("warning", pl.String, "Set when events_per_variable < 10."),
        *_FIRTH_COLUMNS,
        C("ph_p", pl.Float64, "cox.zph p-value of the term in the ordinary model (null when it has no finite "
          "estimate)."),
        C("reason", pl.String, "Why there is no estimate; null when there is one."),
    ),
    ("endpoint", "term"),
)

TABLES: tuple[ResultTable, ...] = (
    SURVIVAL_ESTIMATE, SURVIVAL_CURVE, UNIVARIATE_ANALYSIS, TABLE1, SURVIVAL_EXCLUSION, FOLLOW_UP, GROUP_COMPARISON,
    CUMULATIVE_INCIDENCE, CUMULATIVE_INCIDENCE_CURVE, GRAY_TEST, FINE_GRAY,
    POPULATION_RULE_TABLE,  # declared by the warehouse (its views read it), written by the survival analysis
    UNIVARIATE_COX, PH_TEST, PH_RESIDUAL, CONTINUOUS_COX, MULTIVARIABLE_COX,
)
