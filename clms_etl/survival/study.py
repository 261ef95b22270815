"""The study's survival analysis from the warehouse: one pure function, :func:`analyse`.

``analyse(patient_summary, survival)`` takes the ``analytics.patient_summary`` and
``analytics.survival`` views as frames (:func:`load_inputs` reads them) and returns
:class:`StudyResults`: the result tables (:mod:`clms_etl.survival.tables`), Table 1, Table 2,
the survival estimates in display layout, and Figure 2 on demand. Nothing here writes to the
warehouse or knows about Dagster. Conventions: ``docs/survival.md``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clms_etl.survival import endpoints as ep
from clms_etl.survival.competing_study import analyse_competing, beside
from clms_etl.survival.competing_study import report_section as competing_section
from clms_etl.survival.competing_study import write_figure as write_competing_figure
from clms_etl.survival.km import (CI_TRANSFORMS, DEFAULT_CI_TRANSFORM, KaplanMeier, kaplan_meier_counts,
                                  reverse_kaplan_meier)
from clms_etl.survival.table1 import table1, table1_display, table1_layout, unrecorded_items
from clms_etl.survival import inference
from clms_etl.survival import tables as result_tables
from clms_etl.survival.univariate import MIN_EVENTS, PATIENTS, Predictor, compare_means, univariate
from clms_etl.report.csv_files import write_csv
from clms_etl.vocabulary import labelled_text, level_label
from clms_etl.warehouse.analytics import DEFAULT_POPULATION, MIN_FOLLOW_UP_MONTHS, MITOSES_THRESHOLD, view_select

TIME_POINTS_MONTHS = (12, 24, 60, 96)
UNIVARIATE_ENDPOINTS = ("RMFS", "OS")  # Table 2: local recurrence or metastasis, and overall survival
TABLE2_LABELS = {"RMFS": "Local recurrence or metastasis", "OS": "Overall survival"}
FIGURE_ENDPOINTS = ("OS", "PFS", "DSS", "RFS")
KI67_THRESHOLD_PERCENT = 10
ALL = "all"
# Table 2's median-split predictors and the variable each dichotomises (continuous_cox), with its unit
CONTINUOUS_PREDICTORS = {"age": ("age_at_diagnosis_years", "year"), "size": ("size_cm", "cm"),
                         "clinical_margin": ("clinical_margin_cm", "cm")}
# the multivariable model: the three histological factors of Table 2 (issue: the paper gave up for lack of power)
MULTIVARIABLE_PREDICTORS = ("grade_ii_iii", "differentiation_moderate_poor", "mitoses_gt_10")
# row order of the Cox-check tables, computed or read back from the store (a database keeps no order)
COX_TABLE_ORDER = {"univariate_cox": ["endpoint", "predictor", "level"], "ph_test": ["endpoint", "model", "term"],
                   "ph_residual": ["endpoint", "model", "term", "event_index"],
                   "continuous_cox": ["endpoint", "predictor"], "multivariable_cox": ["endpoint", "term"]}

# Columns of the base table `tumour` that Table 1 needs and patient_summary does not carry.
TUMOUR_EXTRA_SQL = """
SELECT s.*, t.consultation_delay_months, t.mitosis_class, t.mitoses_is_upper_bound
FROM analytics.patient_summary s LEFT JOIN tumour t ON t.patient_id = s.patient_id
"""


# What the analysis reads of them (Table 1's characteristics, the predictors, the dates of the endpoints
# and of the competing risks): not the view's labels, classes and flags, read for a million patients
PATIENT_COLUMNS = ("patient_id", "centre", "sex", "age_at_diagnosis_years", "immunosuppression", "diagnosis_date",
                   "site", "size_cm", "presentation", "pain", "on_scar", "histological_ulceration", "fnclcc_grade",
                   "grade_ii_iii", "differentiation_score", "differentiation_moderate_poor", "mitoses_per_10hpf",
                   "mitoses_gt_10", "necrosis_present", "invasion", "ki67_percent", "resection_status", "r0",
                   "clinical_margin_cm", "last_contact_date", "follow_up_months", "first_local_recurrence_date",
                   "first_metastasis_date", "relapse", "death", "death_date", "death_cause",
                   "in_survival_population")  # the last one: for the views and the analysis to be compared
TUMOUR_COLUMNS = ("consultation_delay_months", "mitosis_class", "mitoses_is_upper_bound")  # TUMOUR_EXTRA_SQL's
PATIENTS_SQL = TUMOUR_EXTRA_SQL.replace("s.*", ", ".join(f"s.{c}" for c in PATIENT_COLUMNS))

EXCLUSION_LIST_MAX_ROWS = 200  # the report lists the patients outside the survival population up to this many
# The columns of analytics.survival the analysis reads (endpoint_frame): not the view's dates and flags,
# five rows per patient
SURVIVAL_COLUMNS = ("patient_id", "endpoint", "time_months", "event")
SURVIVAL_SQL = f"SELECT {', '.join(SURVIVAL_COLUMNS)} FROM analytics.survival"


def load_inputs(wh) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(patient_summary's :data:`PATIENT_COLUMNS` with the tumour's consultation delay and mitosis class,
    the survival view's endpoint times and events): what :func:`analyse` reads of the views.

    On PostgreSQL the patients are read from a temporary copy, and the survival view is computed from it
    (:meth:`~clms_etl.warehouse.Warehouse.temporary_copy`): reading the view would compute
    patient_summary a second time (21 -> 15.5 s at 1,000,000 patients)."""
    with wh.temporary_copy("survival_inputs", PATIENTS_SQL) as copy:
        if copy is None:
            return wh.read_sql(PATIENTS_SQL), wh.read_sql(SURVIVAL_SQL)
        survival = view_select("survival", {"patient_summary": copy})  # (it reads PATIENT_COLUMNS only)
        return (wh.read_sql(f"SELECT * FROM {copy}"),
                wh.read_sql(f"SELECT {', '.join(SURVIVAL_COLUMNS)} FROM ({survival}) AS survival"))


# -- predictors -----------------------------------------------------------------------------------


def _median_split(frame: pl.DataFrame, column: str, unit: str) -> tuple[pl.Expr, str, str, str]:
    median = frame[column].drop_nulls().median()
    if median is None:
        return pl.lit(None, dtype=pl.String), f">= median {unit}", f"< median {unit}", "no known value"
    m = f"{median:g}"
    hi, lo = f">= {m} {unit}".strip(), f"< {m} {unit}".strip()
    expr = pl.when(pl.col(column).is_null()).then(None).when(pl.col(column) >= median).then(pl.lit(hi)).otherwise(pl.lit(lo))
    return expr, hi, lo, f"dichotomised at the median of the survival population ({m} {unit})"


def _bool_levels(column: str, true: str, false: str) -> pl.Expr:
    return pl.when(pl.col(column).is_null()).then(None).when(pl.col(column)).then(pl.lit(true)).otherwise(pl.lit(false))


def predictors(population: pl.DataFrame) -> tuple[pl.DataFrame, list[Predictor]]:
    """The study's univariate predictors as level columns (one row per patient; :class:`polars.Enum`, whose
    categories sort as the level strings) and their specs.

    Continuous variables without a threshold of their own (age, size, clinical margin) are
    dichotomised at their median in the population analysed (the study's methods).
    """
    age, age_hi, age_lo, age_def = _median_split(population, "age_at_diagnosis_years", "years")
    size, size_hi, size_lo, size_def = _median_split(population, "size_cm", "cm")
    margin, margin_hi, margin_lo, margin_def = _median_split(population, "clinical_margin_cm", "cm")
    specs = [
        (Predictor("age", "Age at diagnosis", age_lo, (age_hi,), age_def), age),
        (Predictor("sex", "Sex", "female", ("male",), "male vs female"), pl.col("sex")),
        (Predictor("site", "Primary site", "head_neck", ("trunk", "upper_limb", "lower_limb"),
                   "each site vs head and neck; log-rank over the four sites"), pl.col("site")),
        (Predictor("size", "Tumour size", size_lo, (size_hi,), size_def), size),
        (Predictor("grade_ii_iii", "FNCLCC grade", "I", ("II/III",), "grade II or III vs I"),
         _bool_levels("grade_ii_iii", "II/III", "I")),
        (Predictor("differentiation_moderate_poor", "Differentiation", "well", ("moderate/poor",),
                   "moderately or poorly vs well differentiated"),
         _bool_levels("differentiation_moderate_poor", "moderate/poor", "well")),
        (Predictor("mitoses_gt_10", "Mitotic index", f"<= {MITOSES_THRESHOLD}", (f"> {MITOSES_THRESHOLD}",),
                   f"more than {MITOSES_THRESHOLD} mitoses per 10 HPF"),
         _bool_levels("mitoses_gt_10", f"> {MITOSES_THRESHOLD}", f"<= {MITOSES_THRESHOLD}")),
        (Predictor("necrosis", "Necrosis", "absent", ("present",), "any necrosis (score >= 1)"),
         _bool_levels("necrosis_present", "present", "absent")),
        (Predictor("invasion", "Invasion", "dermal", ("dermo_hypodermal",), "dermal and hypodermal vs dermal only"),
         pl.col("invasion")),
        (Predictor("ulceration", "Histological ulceration", "no", ("yes",), "ulceration on histology"),
         _bool_levels("histological_ulceration", "yes", "no")),
        (Predictor("ki67", "Ki67", f"<= {KI67_THRESHOLD_PERCENT} %", (f"> {KI67_THRESHOLD_PERCENT} %",),
                   f"Ki67 index above {KI67_THRESHOLD_PERCENT} %"),
         pl.when(pl.col("ki67_percent").is_null()).then(None)
         .when(pl.col("ki67_percent") > KI67_THRESHOLD_PERCENT).then(pl.lit(f"> {KI67_THRESHOLD_PERCENT} %"))
         .otherwise(pl.lit(f"<= {KI67_THRESHOLD_PERCENT} %"))),
        (Predictor("resection", "Resection of the primary excision", "R0", ("R1/R2",), "R1 or R2 vs R0"),
         _bool_levels("r0", "R0", "R1/R2")),
        (Predictor("clinical_margin", "Clinical margin", margin_lo, (margin_hi,), margin_def), margin),
    ]
    # one column at a time, each as an enum of its levels: a byte per patient instead of a string
    frame = population.select("patient_id").hstack([_levels(population, p, expr) for p, expr in specs])
    return frame, [p for p, _ in specs]


def _levels(population: pl.DataFrame, predictor: Predictor, expr: pl.Expr) -> pl.Series:
    """The predictor's level of each patient as an enum whose categories are in string order, so that a
    sort or a group-by over the levels orders them as the strings would (the same rows, in the same order)."""
    # with_columns, not select: a level no patient has is a literal, broadcast to every patient
    values = population.with_columns(expr.cast(pl.String).alias(predictor.key)).get_column(predictor.key)
    categories = sorted({*values.drop_nulls().unique().to_list(), predictor.reference, *predictor.levels})
    return values.cast(pl.Enum(categories))


# -- results --------------------------------------------------------------------------------------


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_bound(v: float) -> str:
    """An interval bound; a Firth profile bound can be very large (monotone likelihood): '> 1000'."""
    return "> 1000" if v > 1000 else f"{v:.2f}"


def _empty(table) -> pl.DataFrame:
    return pl.DataFrame(schema=table.schema)


def _frame(rows: list[dict], table) -> pl.DataFrame:
    """``rows`` as a frame of ``table``'s columns (absent keys null), in its dtypes."""
    if not rows:
        return _empty(table)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    return frame.select([(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
                         for c, t in table.schema.items()]).sort(COX_TABLE_ORDER[table.name])


def _residual_frame(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The ph_residual table from the models' residual frames (:func:`inference._ph_rows`)."""
    table = result_tables.PH_RESIDUAL
    if not frames:
        return _empty(table)
    # one frame per model term, each in event order: put in table order as frames, not row by row
    # (millions of residuals at registry scale)
    order = COX_TABLE_ORDER[table.name][:-1]
    frames = sorted(frames, key=lambda f: f.select(order).row(0) if f.height else ())
    frame = pl.concat(frames, how="diagonal_relaxed")
    return frame.select([(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
                         for c, t in table.schema.items()])


def _fmt_survival(row: dict) -> str:
    if row["survival"] is None:
        return "-"
    if row["ci_lower"] is None:
        return f"{row['survival']:.2f}"
    return f"{row['survival']:.2f} [{row['ci_lower']:.2f}-{row['ci_upper']:.2f}]"


def _fmt_median(median: float | None, lower: float | None, upper: float | None) -> str:
    """'38.8 [20.1-NR]'; 'not reached' (with the lower bound when the lower curve reaches 0.5)."""
    def f(v):
        return "NR" if v is None else f"{v:.1f}"
    if median is not None:
        return f"{median:.1f} [{f(lower)}-{f(upper)}]"
    return "not reached" if lower is None else f"not reached [{f(lower)}-NR]"


@dataclass
class StudyResults:
    """Everything :func:`analyse` computed: result frames, fitted curves, parameters."""

    min_follow_up_months: float
    ci_transform: str  # shown in the display tables and Figure 2
    time_points_months: tuple[int, ...]
    endpoints: pl.DataFrame
    survival_estimate: pl.DataFrame
    survival_curve: pl.DataFrame
    univariate_analysis: pl.DataFrame
    table1: pl.DataFrame
    survival_exclusion: pl.DataFrame
    follow_up: pl.DataFrame
    group_comparison: pl.DataFrame
    curves: dict[tuple[str, str, str, str], KaplanMeier] = field(repr=False)
    # competing risks (clms_etl.survival.competing_study) and the population rule (one row)
    cumulative_incidence: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    cumulative_incidence_curve: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    gray_test: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    fine_gray: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    survival_population_rule: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    # Table 1 characteristics a centre records nothing for (table1.unrecorded_items); report only
    unrecorded_items: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)
    # Cox inference beside Table 2 (clms_etl.survival.inference); empty when read from an older store
    univariate_cox: pl.DataFrame = field(default_factory=lambda: _empty(result_tables.UNIVARIATE_COX))
    ph_test: pl.DataFrame = field(default_factory=lambda: _empty(result_tables.PH_TEST))
    ph_residual: pl.DataFrame = field(default_factory=lambda: _empty(result_tables.PH_RESIDUAL), repr=False)
    continuous_cox: pl.DataFrame = field(default_factory=lambda: _empty(result_tables.CONTINUOUS_COX))
    multivariable_cox: pl.DataFrame = field(default_factory=lambda: _empty(result_tables.MULTIVARIABLE_COX))

    def result_tables(self) -> dict[str, pl.DataFrame]:
        """Frames of the result tables, by table name (for ``Warehouse.replace_results``)."""
        return {"survival_estimate": self.survival_estimate, "survival_curve": self.survival_curve,
                "univariate_analysis": self.univariate_analysis, "table1": self.table1,
                "survival_exclusion": self.survival_exclusion, "follow_up": self.follow_up,
                "group_comparison": self.group_comparison, "cumulative_incidence": self.cumulative_incidence,
                "cumulative_incidence_curve": self.cumulative_incidence_curve, "gray_test": self.gray_test,
                "fine_gray": self.fine_gray, "survival_population_rule": self.survival_population_rule,
                "univariate_cox": self.univariate_cox,
                "ph_test": self.ph_test, "ph_residual": self.ph_residual, "continuous_cox": self.continuous_cox,
                "multivariable_cox": self.multivariable_cox}

    @property
    def population(self) -> str:
        """The survival population rule in words (named in every output)."""
        rule = self.survival_population_rule
        return rule["description"][0] if rule.height else f"{DEFAULT_POPULATION} ({self.min_follow_up_months:g} months)"

    @classmethod
    def from_tables(cls, tables: dict[str, pl.DataFrame], *, ci_transform: str = DEFAULT_CI_TRANSFORM,
                    min_follow_up_months: float = MIN_FOLLOW_UP_MONTHS,
                    unrecorded_items: pl.DataFrame | None = None) -> StudyResults:
        """The results as stored (the frames of :meth:`result_tables`, read back): nothing recomputed.

        The time points come from ``survival_estimate``, the minimum follow-up from
        ``survival_exclusion`` (``min_follow_up_months`` when nobody is excluded), the curves of
        Figure 2 from ``survival_curve``; ``ci_transform`` is the interval to display.
        """
        estimates = tables["survival_estimate"]
        points = sorted({int(e.removeprefix("survival_").removesuffix("m"))
                         for e in estimates["estimate"].unique() if e.startswith("survival_")})
        rule = tables.get("survival_population_rule")
        used = (rule["min_follow_up_months"] if rule is not None and rule.height
                else tables["survival_exclusion"]["min_follow_up_months"].unique())
        whole = tables["survival_curve"].filter((pl.col("group_variable") == ALL) & (pl.col("ci_transform") == ci_transform))
        curves = {(e, ALL, ALL, ci_transform): KaplanMeier.from_curve(whole.filter(pl.col("endpoint") == e), ci_transform)
                  for e in FIGURE_ENDPOINTS}
        return cls(min_follow_up_months=float(used[0] if used.len() == 1 else min_follow_up_months),
                   ci_transform=ci_transform, time_points_months=tuple(points), endpoints=pl.DataFrame(),
                   **tables, curves=curves,
                   unrecorded_items=pl.DataFrame() if unrecorded_items is None else unrecorded_items)

    def table1_display(self) -> pl.DataFrame:
        return table1_display(self.table1)

    def table2_display(self) -> pl.DataFrame:
        """Table 2 as printed: one row per predictor level; per endpoint events/n, the Wald HR (95 % CI),
        the Firth HR (95 % profile-likelihood CI), the LR p of the Cox model, the log-rank p, the Holm and
        Benjamini-Hochberg adjusted p, and the proportional-hazards flag."""
        u = self.univariate_analysis
        cox = self.univariate_cox
        rows = []
        first = u.filter(pl.col("endpoint") == UNIVARIATE_ENDPOINTS[0]).sort("row_order")
        for base in first.iter_rows(named=True):
            row = {"Predictor": base["predictor_label"],
                   "Comparison": f"{level_label(base['predictor'], base['level'])} vs "
                                 f"{level_label(base['predictor'], base['reference_level'])}"}
            for endpoint in UNIVARIATE_ENDPOINTS:
                where = ((pl.col("endpoint") == endpoint) & (pl.col("predictor") == base["predictor"])
                         & (pl.col("level") == base["level"]))
                r = u.filter(where).row(0, named=True)
                c = cox.filter(where).row(0, named=True) if not cox.filter(where).is_empty() else {}
                label = TABLE2_LABELS[endpoint]
                row[f"{label}: events/n"] = (f"{r['events_level']}/{r['n_level']} vs "
                                             f"{r['events_reference']}/{r['n_reference']}")
                row[f"{label}: HR (95 % CI)"] = (
                    f"{r['hr']:.2f} ({r['hr_ci_lower']:.2f}-{r['hr_ci_upper']:.2f})" if r["estimable"]
                    else f"not estimable: {labelled_text(base['predictor'], r['reason'])}")
                row[f"{label}: Firth HR (95 % PL CI)"] = (
                    f"{c['firth_hr']:.2f} ({c['firth_ci_lower']:.2f}-{_fmt_bound(c['firth_ci_upper'])})"
                    if c.get("firth_hr") is not None else "-")
                row[f"{label}: p (LR)"] = _fmt_p(c.get("lr_p"))
                row[f"{label}: p (log-rank)"] = _fmt_p(r["logrank_p"])
                row[f"{label}: p Firth LR (Holm / BH)"] = (
                    f"{_fmt_p(c.get('firth_lr_p'))} ({_fmt_p(c.get('p_holm'))} / {_fmt_p(c.get('p_bh'))})"
                    if c.get("firth_lr_p") is not None else "-")
                row[f"{label}: PH"] = ("-" if c.get("ph_p") is None else
                                       f"violated (p = {_fmt_p(c['ph_p'])})" if c["ph_violated"] else "ok")
            rows.append(row)
        return pl.DataFrame(rows)

    def continuous_display(self) -> pl.DataFrame:
        """The continuous predictors per unit, with the spline test of non-linearity."""
        rows = []
        for r in self.continuous_cox.sort("endpoint", "predictor").iter_rows(named=True):
            fitted = r["hr_per_unit"] is not None
            rows.append({"Endpoint": TABLE2_LABELS.get(r["endpoint"], r["endpoint"]), "Predictor": r["predictor_label"],
                         "Events/n": f"{r['events']}/{r['n']}",
                         "HR per unit (95 % CI)": (f"{r['hr_per_unit']:.3f} ({r['hr_ci_lower']:.3f}-"
                                                    f"{r['hr_ci_upper']:.3f}) per {r['unit']}" if fitted else r["reason"]),
                         "p (LR)": _fmt_p(r["lr_p"]),
                         "Non-linearity (spline LR)": (f"chi2 = {r['nonlinear_chi2']:.2f}, {r['nonlinear_df']} df, "
                                                       f"p = {_fmt_p(r['nonlinear_p'])}"
                                                       if r["nonlinear_p"] is not None else r["reason"] or "-"),
                         "Table 2 shows": r["median_split"]})
        return pl.DataFrame(rows)

    def multivariable_display(self) -> pl.DataFrame:
        """The Firth multivariable model: HR (95 % PL CI), penalised LR p, events per variable."""
        rows = []
        for r in self.multivariable_cox.iter_rows(named=True):
            rows.append({"Endpoint": TABLE2_LABELS.get(r["endpoint"], r["endpoint"]), "Predictor": r["term_label"],
                         "Comparison": f"{level_label(r['term'], r['level'])} vs "
                                       f"{level_label(r['term'], r['reference_level'])}",
                         "Events/n": f"{r['events']}/{r['n']}", "Events per variable": f"{r['events_per_variable']:.1f}",
                         "Firth HR (95 % PL CI)": (f"{r['firth_hr']:.2f} ({r['firth_ci_lower']:.2f}-"
                                                   f"{_fmt_bound(r['firth_ci_upper'])})" if r["firth_hr"] is not None
                                                   else r["reason"]),
                         "p (penalised LR)": _fmt_p(r["firth_lr_p"]), "PH test p": _fmt_p(r["ph_p"])})
        return pl.DataFrame(rows)

    def ph_display(self) -> pl.DataFrame:
        """The proportional-hazards tests, one row per model term (GLOBAL for the multivariable model)."""
        return pl.DataFrame([{"Endpoint": TABLE2_LABELS.get(r["endpoint"], r["endpoint"]), "Model": r["model"],
                              "Term": r["term_label"], "chi2": f"{r['chisq']:.2f}", "df": r["df"],
                              "p": _fmt_p(r["p"]), "Proportional hazards": "violated" if r["violated"] else "ok"}
                             for r in self.ph_test.iter_rows(named=True)])

    def survival_display(self) -> pl.DataFrame:
        """Kaplan-Meier estimates of the whole survival population, one row per endpoint."""
        est = self.survival_estimate.filter((pl.col("group_variable") == ALL) & (pl.col("ci_transform") == self.ci_transform))
        rows = []
        for endpoint in ep.ENDPOINTS:
            e = est.filter(pl.col("endpoint") == endpoint)
            if e.is_empty():
                continue
            d = dict(e.select("estimate", "display").iter_rows())
            first = e.row(0, named=True)
            rows.append({"Endpoint": ep.ENDPOINT_LABELS[endpoint] + f" ({endpoint})", "n": first["n"],
                         "Events": first["events"],
                         **{f"{t} months": d[f"survival_{t}m"] for t in self.time_points_months},
                         "Median, months": d["median"]})
        return pl.DataFrame(rows)

    def key_estimates(self) -> dict[str, float | None]:
        """Survival at each time point for the whole population (display transform), e.g. ``OS_24m``."""
        est = self.survival_estimate.filter((pl.col("group_variable") == ALL) & (pl.col("ci_transform") == self.ci_transform)
                                            & pl.col("estimate").str.starts_with("survival_"))
        return {f"{r['endpoint']}_{r['estimate'].removeprefix('survival_')}": r["survival"]
                for r in est.iter_rows(named=True)}

    def write_figures(self, out_dir: Path) -> dict[str, Path]:
        """Figure 2 and the competing-risks figure as PNG and SVG under ``out_dir``:
        {"figure2_png": ..., "figure2_svg": ..., "competing_png": ..., "competing_svg": ...}."""
        from clms_etl.survival.figures import figure2

        curves = {e: self.curves[(e, ALL, ALL, self.ci_transform)] for e in FIGURE_ENDPOINTS}
        out_dir = Path(out_dir)
        png, svg = figure2(curves, out_dir / "figure2_kaplan_meier.png",
                           out_dir / "figure2_kaplan_meier.svg", self.ci_transform)
        return {"figure2_png": png, "figure2_svg": svg, **write_competing_figure(self.cumulative_incidence_curve, out_dir),
                **self.write_ph_figures(out_dir)}

    def write_ph_figures(self, out_dir: Path) -> dict[str, Path]:
        """The proportional-hazards plots of Table 2's models, one PNG + SVG per endpoint:
        {"ph_<endpoint>_png": ..., "ph_<endpoint>_svg": ...} (none for an endpoint without a fitted model)."""
        from clms_etl.survival.figures import ph_figure

        out = {}
        for endpoint in UNIVARIATE_ENDPOINTS:
            tests = self.ph_test.filter((pl.col("endpoint") == endpoint) & (pl.col("model") == inference.UNIVARIATE))
            if tests.is_empty():
                continue
            residuals = self.ph_residual.filter((pl.col("endpoint") == endpoint)
                                                & (pl.col("model") == inference.UNIVARIATE))
            labels = {r["term"]: (r["term_label"], r["p"], r["violated"]) for r in tests.iter_rows(named=True)}
            stem = Path(out_dir) / f"ph_schoenfeld_{endpoint.lower()}"
            png, svg = ph_figure(residuals, labels, f"{TABLE2_LABELS[endpoint]}: scaled Schoenfeld residuals of each "
                                 "univariate Cox model", stem.with_suffix(".png"), stem.with_suffix(".svg"))
            out[f"ph_{endpoint.lower()}_png"], out[f"ph_{endpoint.lower()}_svg"] = png, svg
        return out

    def write_tables(self, out_dir: Path) -> dict[str, Path]:
        """Table 1, Table 2, the survival estimates and the Cox model checks as CSV (UTF-8) under ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = {}
        for key, frame in (("table1", self.table1_display()), ("table2", self.table2_display()),
                           ("survival_estimates", self.survival_display()), ("ph_tests", self.ph_display()),
                           ("continuous_predictors", self.continuous_display()),
                           ("multivariable_cox", self.multivariable_display())):
            out[key] = write_csv(frame, out_dir / f"{key}.csv")
        return out


def _estimate_rows(km: KaplanMeier, key: tuple[str, str, str, str], time_points) -> list[dict]:
    endpoint, variable, value, transform = key
    base = {"endpoint": endpoint, "group_variable": variable, "group_value": value, "ci_transform": transform,
            "n": km.n, "events": km.n_events}
    rows = []
    for t in time_points:
        row = {**base, "estimate": f"survival_{t}m", "time_months": float(t), **km.at(float(t))}
        row["display"] = _fmt_survival(row)
        rows.append(row)
    median, lower, upper = km.median() if km.n else (None, None, None)
    rows.append({**base, "estimate": "median", "time_months": median, "survival": None, "ci_lower": lower,
                 "ci_upper": upper, "n_at_risk": None, "cumulative_events": None,
                 "display": _fmt_median(median, lower, upper)})
    return rows


def _curve_rows(km: KaplanMeier, key: tuple[str, str, str, str]) -> pl.DataFrame:
    endpoint, variable, value, transform = key
    return km.curve().rename({"time": "time_months"}).with_columns(
        endpoint=pl.lit(endpoint), group_variable=pl.lit(variable), group_value=pl.lit(value),
        ci_transform=pl.lit(transform))


def _follow_up(population: pl.DataFrame) -> pl.DataFrame:
    os_ = population.select("follow_up_months", pl.col("death").cast(pl.Int64)).drop_nulls()
    rkm = reverse_kaplan_meier(os_["follow_up_months"].to_numpy(), os_["death"].to_numpy())
    median, lower, upper = rkm.median() if rkm.n else (None, None, None)
    q1 = rkm.quantile(0.25)[0] if rkm.n else None
    q3 = rkm.quantile(0.75)[0] if rkm.n else None
    t = population["follow_up_months"].drop_nulls()
    observed = (t.median(), t.quantile(0.25, "linear"), t.quantile(0.75, "linear"))

    def display(m, a, b):
        return "-" if m is None else f"{m:.1f} months (IQR {a:.1f}-{b:.1f})" if a is not None and b is not None \
            else f"{m:.1f} months"
    return pl.DataFrame([
        {"method": "reverse_kaplan_meier", "n": rkm.n, "median_months": median, "q1_months": q1, "q3_months": q3,
         "median_ci_lower": lower, "median_ci_upper": upper, "display": display(median, q1, q3)},
        {"method": "observed", "n": t.len(), "median_months": observed[0], "q1_months": observed[1],
         "q3_months": observed[2], "median_ci_lower": None, "median_ci_upper": None, "display": display(*observed)},
    ], schema={"method": pl.String, "n": pl.Int64, "median_months": pl.Float64, "q1_months": pl.Float64,
               "q3_months": pl.Float64, "median_ci_lower": pl.Float64, "median_ci_upper": pl.Float64,
               "display": pl.String})


def _unrecorded_by_centre(levels: pl.DataFrame, keys: list[str]) -> dict[str, list[str]]:
    """Per predictor, the centres none of whose patients has a known value for it."""
    per_centre = levels.group_by("centre").agg(pl.col(keys).is_not_null().any()).sort("centre")
    return {k: per_centre.filter(~pl.col(k))["centre"].to_list() for k in keys}


def _no_known_value(row: dict, centres: list[str]) -> dict:
    """A predictor nobody in the survival population has a value for is left out: the reason says so."""
    if row["n"]:
        return {}
    where = f" (not recorded by {', '.join(centres)})" if centres else ""
    return {"reason": f"no known value in the survival population{where}: predictor left out"}


class EmptyCohort(ValueError):
    """No patient in the survival population: nothing to estimate (e.g. before the first delivery)."""


def analyse(patient_summary: pl.DataFrame, survival: pl.DataFrame, *,
            min_follow_up_months: float = MIN_FOLLOW_UP_MONTHS, ci_transform: str = DEFAULT_CI_TRANSFORM,
            time_points_months: tuple[int, ...] = TIME_POINTS_MONTHS, alpha: float = 0.05,
            population: str = DEFAULT_POPULATION) -> StudyResults:
    """The study's survival analysis on the analytics views (frames), all conventions of ``docs/survival.md``.

    ``patient_summary``: one row per included patient (Table 1 population); ``survival``: the
    ``analytics.survival`` view. ``population`` (a preset of
    :data:`clms_etl.warehouse.analytics.POPULATIONS`; ``paper`` reproduces the study) and
    ``min_follow_up_months``: the survival population rule;
    ``ci_transform``: the interval shown in the display tables and Figure 2 (both transforms are
    always in the result tables). Raises :class:`EmptyCohort` when the survival population is empty.
    The inputs' row order does not matter: the same patients give the same results, bit for bit.
    """
    if ci_transform not in CI_TRANSFORMS:
        raise ValueError(f"ci_transform must be one of {CI_TRANSFORMS}")
    # a database returns a view's rows in any order, and float sums depend on it: the same patients
    # give the same results to the last bit
    patient_summary = patient_summary.sort("patient_id")
    rule = ep.population_rule(population)
    population = ep.survival_population(patient_summary, min_follow_up_months, rule.name)
    if population.is_empty():
        raise EmptyCohort(f"no patient in the survival population (at least {min_follow_up_months:g} months of "
                          f"follow-up) among the {patient_summary.height} included: nothing to estimate yet.")
    # sorted by endpoint and pseudonym whatever the order of ``survival``
    frames = ep.endpoint_frame(patient_summary, survival, min_follow_up_months, rule.name)
    del survival
    # what is computed on every included patient, computed before the survival population's frames and
    # models fill memory (the sorted copy of the included patients is not kept until the end)
    survival_exclusion = ep.exclusions(patient_summary, min_follow_up_months, rule.name)
    table1_frame, unrecorded_frame = table1(patient_summary), unrecorded_items(patient_summary)
    margins = compare_means(patient_summary["clinical_margin_cm"], patient_summary["relapse"])
    del patient_summary
    levels, specs = predictors(population)
    # levels is population.select(...): row for row the population's patients, so their other
    # columns are put beside it (a join on the pseudonyms costs a hash of every patient)
    unrecorded = _unrecorded_by_centre(levels.with_columns(population["centre"]), [p.key for p in specs])
    per_patient = levels.hstack(population.select(v for v, _ in CONTINUOUS_PREDICTORS.values()))
    by_key = {p.key: p for p in specs}
    keys = [p.key for p in specs]

    curves: dict[tuple[str, str, str, str], KaplanMeier] = {}
    estimates: list[dict] = []
    curve_frames: list[pl.DataFrame] = []
    univariate_rows: list[dict] = []
    cox_rows: list[dict] = []
    ph_rows: list[dict] = []
    residual_rows: list[pl.DataFrame] = []
    continuous_rows: list[dict] = []
    multivariable: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' approximation / convergence hints; not estimable rows say why
        for endpoint in ep.ENDPOINTS:
            # joined one endpoint at a time: the predictors of every patient times six endpoints is the
            # largest frame of the analysis at registry scale
            e = beside(frames.filter(pl.col("endpoint") == endpoint), per_patient)
            # patients alike in time, event and every predictor are one row with their number: the
            # curves, tests and models below sum the same patients over far fewer rows
            rows = (e.group_by("time_months", "event", *keys).agg(pl.len().alias(PATIENTS))
                    .sort("time_months", "event", *keys, nulls_last=True))
            groups = [(ALL, ALL, rows)]
            if endpoint in UNIVARIATE_ENDPOINTS:
                for p in specs:
                    for level in (p.reference, *p.levels):
                        groups.append((p.key, level, rows.filter(pl.col(p.key) == level)))
            for variable, value, g in groups:
                if g.is_empty() and variable != ALL:
                    continue  # a level nobody has (e.g. a predictor no centre records): no curve for nobody
                counts = (g.group_by("time_months")
                          .agg(events=(pl.col("event") * pl.col(PATIENTS)).sum(), n=pl.col(PATIENTS).sum())
                          .sort("time_months"))
                for transform in CI_TRANSFORMS:
                    km = kaplan_meier_counts(counts["time_months"].to_numpy(), counts["events"].to_numpy(),
                                             (counts["n"] - counts["events"]).to_numpy(), ci_transform=transform,
                                             alpha=alpha)
                    key = (endpoint, variable, value, transform)
                    curves[key] = km
                    estimates += _estimate_rows(km, key, time_points_months)
                    if km.n:
                        curve_frames.append(_curve_rows(km, key))
            if endpoint in UNIVARIATE_ENDPOINTS:
                endpoint_cox: list[dict] = []
                for p in specs:
                    level_rows = univariate(rows, p, weight_col=PATIENTS)
                    univariate_rows += [{"endpoint": endpoint, **r, **_no_known_value(r, unrecorded[p.key])}
                                        for r in level_rows]
                    cox, ph, residuals = inference.univariate_cox(
                        rows, p, [r["level"] for r in level_rows if r["estimable"]], endpoint, weight_col=PATIENTS)
                    endpoint_cox += cox
                    ph_rows += ph
                    residual_rows += residuals
                cox_rows += inference.adjust_rows(endpoint_cox)
                continuous_rows += [inference.continuous_cox_rows(e, variable, by_key[key], unit, endpoint)
                                    for key, (variable, unit) in CONTINUOUS_PREDICTORS.items()]
                fitted, ph, residuals = inference.multivariable_rows(
                    rows, [by_key[k] for k in MULTIVARIABLE_PREDICTORS], endpoint, weight_col=PATIENTS)
                multivariable += fitted
                ph_rows += ph
                residual_rows += residuals

    estimate_schema = {"endpoint": pl.String, "group_variable": pl.String, "group_value": pl.String,
                       "ci_transform": pl.String, "estimate": pl.String, "time_months": pl.Float64,
                       "survival": pl.Float64, "ci_lower": pl.Float64, "ci_upper": pl.Float64,
                       "n_at_risk": pl.Int64, "cumulative_events": pl.Int64, "n": pl.Int64, "events": pl.Int64,
                       "display": pl.String}
    univariate_frame = pl.DataFrame(univariate_rows, infer_schema_length=None).with_columns(
        row_order=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("endpoint"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        competing = analyse_competing(population, levels, specs, time_points_months, alpha)
    return StudyResults(
        min_follow_up_months=float(min_follow_up_months), ci_transform=ci_transform,
        time_points_months=tuple(time_points_months), endpoints=frames,
        survival_estimate=pl.DataFrame(estimates, schema=estimate_schema),
        survival_curve=pl.concat(curve_frames, how="diagonal"),
        univariate_analysis=univariate_frame,
        table1=table1_frame,
        survival_exclusion=survival_exclusion,
        follow_up=_follow_up(population),
        group_comparison=pl.DataFrame([{"variable": "clinical_margin_cm", "outcome": "relapse",
                                        "population": "all included patients with a known clinical margin",
                                        **margins}]),
        curves=curves,
        unrecorded_items=unrecorded_frame,
        cumulative_incidence=competing.cumulative_incidence,
        cumulative_incidence_curve=competing.cumulative_incidence_curve,
        gray_test=competing.gray_test, fine_gray=competing.fine_gray,
        survival_population_rule=rule.frame(min_follow_up_months),
        univariate_cox=_frame(cox_rows, result_tables.UNIVARIATE_COX),
        ph_test=_frame(ph_rows, result_tables.PH_TEST),
        ph_residual=_residual_frame(residual_rows),
        continuous_cox=_frame(continuous_rows, result_tables.CONTINUOUS_COX),
        multivariable_cox=_frame(multivariable, result_tables.MULTIVARIABLE_COX),
    )


def _unrecorded_table(items: pl.DataFrame) -> tuple:
    """The report's list of what each centre does not record (empty when every centre records everything)."""
    from clms_etl.report.sections import ReportTable

    if items.is_empty():
        return ()
    per_centre = items.group_by("centre", maintain_order=True).agg(
        pl.col("variable_label").str.join("; ").alias("Not recorded"), pl.col("patients").first().alias("Patients"))
    return (ReportTable("unrecorded", "Items a centre does not record",
                        per_centre.rename({"centre": "Centre"}),
                        note="Characteristics of Table 1 for which no patient of the centre has a known value: "
                             "the centre's export does not carry them. Table 1 counts these patients as not "
                             "recorded (or not specified), never as absent, and the univariate analysis leaves "
                             "them out of the predictor's comparison."),)


def exclusion_tables(survival_exclusion: pl.DataFrame, list_max_rows: int | None = None) -> tuple:
    """The report's account of the patients outside the survival population: their number per centre and
    reason, then the list of them by pseudonym when it has at most ``list_max_rows`` rows (default
    :data:`EXCLUSION_LIST_MAX_ROWS`). A national
    registry excludes a hundred thousand patients: listed, they made a report of 32 MB no one reads; the
    list stays in ``analytics.survival_exclusion`` and the exports (``survival_exclusion``)."""
    from clms_etl.report.sections import ReportTable

    list_max_rows = EXCLUSION_LIST_MAX_ROWS if list_max_rows is None else list_max_rows
    counts = (survival_exclusion.group_by("centre", "reason").len("patients")
              .sort("centre", "reason", nulls_last=True)
              .select(pl.col("centre").alias("Centre"),
                      pl.col("reason").replace(ep.EXCLUSION_REASONS).alias("Reason"),
                      pl.col("patients").cast(pl.Int64).alias("Patients")))
    listed = survival_exclusion.height <= list_max_rows
    tables = (ReportTable("exclusion_reasons", "Patients outside the survival population, per centre and reason",
                          counts, note=f"{survival_exclusion.height} patients. " + (
                              "Each is listed in the next table." if listed else
                              f"Listed by pseudonym, with the detail of the reason, in analytics.survival_exclusion "
                              f"and in the exports (survival_exclusion): more than {list_max_rows} patients are "
                              f"not listed in the report.")),)
    if listed:
        tables += (ReportTable("exclusions", "Patients outside the survival population",
                               survival_exclusion.select("patient_id", "centre", "detail"), note="Pseudonyms only."),)
    return tables


def report_sections(results: StudyResults, figures: dict[str, Path] | None = None) -> list:
    """The report's sections (see :mod:`clms_etl.report.sections`): cohort, survival, univariate analysis."""
    from clms_etl.report.sections import ReportFigure, ReportTable, Section

    transform_note = (f"Kaplan-Meier estimates with 95 % confidence intervals ({results.ci_transform} transform; "
                      "R survfit's default is log). Medians follow R's rule (midpoint of a flat at 0.5); "
                      "NR: not reached.")
    follow = {r["method"]: r for r in results.follow_up.iter_rows(named=True)}
    excluded = results.survival_exclusion.height
    n_pop = follow["reverse_kaplan_meier"]["n"]
    margin = results.group_comparison.row(0, named=True)
    margin_text = (
        f"Mean clinical margin {margin['mean_without']:.2f} cm without relapse (n = {margin['n_without']}) vs "
        f"{margin['mean_with']:.2f} cm with local recurrence or metastasis (n = {margin['n_with']}); "
        f"{margin['test']}, p = {_fmt_p(margin['p'])}." if margin["mean_with"] is not None else "")
    table1_frame, table1_levels = table1_layout(results.table1)
    cohort = Section(
        "cohort", "Patients",
        text=(f"{results.table1.filter(pl.col('variable') == 'patients')['n'].item()} patients included; "
              f"{n_pop} patients form the survival population ({results.population}; {excluded} excluded, see "
              "the patients outside the survival population)."),
        tables=(ReportTable("table1", "Table 1. Characteristics of the patients", table1_frame, row_levels=table1_levels,
                            note="n (%) of all included patients; tumour size classes as % of the patients with a "
                                 "known size. Medians with interquartile range (R type 7 quantiles), means ± SD. "
                                 "Where the study lists no 'not specified' row, a sign not mentioned in the chart "
                                 "is counted as absent in a centre that records the sign; the patients of a centre "
                                 "that records nothing for it are counted as not recorded."),
                *_unrecorded_table(results.unrecorded_items),
                *exclusion_tables(results.survival_exclusion)),
    )
    figs = ()
    if figures and figures.get("figure2_png"):
        figs = (ReportFigure("figure2", "Figure 2. Kaplan-Meier curves: A overall survival, B progression-free "
                             "survival, C disease-specific survival, D relapse-free (metastasis-free) survival",
                             Path(figures["figure2_png"]), figures.get("figure2_svg"), note=transform_note),)
    survival_section = Section(
        "survival", "Survival",
        text=(f"Median follow-up (reverse Kaplan-Meier): {follow['reverse_kaplan_meier']['display']}; "
              f"median observed follow-up {follow['observed']['display']}.\n\n"
              "RFS is the study's relapse-free survival, which follows the metastatic patients: metastasis-free "
              "survival, deaths censored. RMFS: first local recurrence or metastasis, deaths censored."),
        tables=(ReportTable("survival", "Kaplan-Meier survival estimates", results.survival_display(),
                            note=transform_note),),
        figures=figs,
    )
    univariate_section = Section(
        "univariate", "Univariate analysis",
        text=margin_text,
        tables=(ReportTable("table2", "Table 2. Univariate analysis of local recurrence or metastasis and of "
                            "overall survival", results.table2_display(),
                            note=f"HR (95 % CI): Cox proportional hazards (Efron ties), first level vs the second, "
                                 f"Wald interval; not estimable: no event in a group or fewer than {MIN_EVENTS} "
                                 f"events. Firth HR: Firth-penalised Cox (Heinze & Schemper 2001) with profile "
                                 f"penalised likelihood interval, given for every level with patients. p (LR): "
                                 f"likelihood-ratio test of the level in the same Cox model as the HR. p (log-rank): "
                                 f"over all levels of the predictor. Holm / BH: the Firth likelihood-ratio p adjusted "
                                 f"across the rows of the endpoint (Holm; Benjamini-Hochberg). PH: Schoenfeld-"
                                 f"residual test of proportional hazards (R cox.zph), 'violated' when p < 0.05. "
                                 f"Continuous variables dichotomised at the median of the survival population."),),
    )
    sections = [cohort, survival_section, univariate_section, _cox_checks_section(results, figures or {})]
    if not results.cumulative_incidence.is_empty():
        sections.append(competing_section(results.cumulative_incidence, results.gray_test, results.fine_gray,
                                          results.population, figures))
    return sections


def _cox_checks_section(results: StudyResults, figures: dict[str, Path]):
    """The models behind Table 2: PH diagnostics with their plots, continuous predictors, multivariable model."""
    from clms_etl.report.sections import ReportFigure, ReportTable, Section

    warnings_text = sorted({w for w in results.multivariable_cox["warning"].to_list() if w})
    figs = tuple(ReportFigure(f"ph_{e.lower()}", f"Proportional hazards, {TABLE2_LABELS[e].lower()}: scaled "
                              "Schoenfeld residuals against the Kaplan-Meier time scale",
                              Path(figures[f"ph_{e.lower()}_png"]), figures.get(f"ph_{e.lower()}_svg"),
                              note="A flat cloud supports proportional hazards; the line is the least-squares "
                                   "trend the test looks for, red where cox.zph rejects.")
                 for e in UNIVARIATE_ENDPOINTS if figures.get(f"ph_{e.lower()}_png"))
    return Section(
        "cox_checks", "Cox models: proportional hazards, continuous predictors, multivariable model",
        text=("The multivariable model is exploratory: " + "; ".join(warnings_text) + ".") if warnings_text else "",
        tables=(ReportTable("ph_tests", "Proportional-hazards tests", results.ph_display(),
                            note="Score test of a coefficient linear in g(t), g = 1 - Kaplan-Meier (R survival::cox.zph, "
                                 "default transform), per model term and GLOBAL for the multivariable model."),
                ReportTable("continuous", "Continuous predictors", results.continuous_display(),
                            note="Cox model per unit (Efron ties, Wald interval, likelihood-ratio p) and the "
                                 "likelihood-ratio test of a restricted cubic spline with 3 knots (R rms) against the "
                                 "linear model: p < 0.05 says the risk is not log-linear. Table 2 keeps the median "
                                 "split of the paper."),
                ReportTable("multivariable", "Multivariable model of the histological factors (Firth)",
                            results.multivariable_display(),
                            note="Firth-penalised Cox on FNCLCC grade, differentiation and mitotic index together, "
                                 "complete cases; profile penalised likelihood intervals and penalised "
                                 "likelihood-ratio p. Fewer than 10 events per variable: unstable, exploratory.")),
        figures=figs,
    )
