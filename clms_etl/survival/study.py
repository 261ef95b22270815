"""The study's survival analysis from the warehouse: one pure function, :func:`analyse`.

``analyse(patient_summary, survival)`` takes the ``analytics.patient_summary`` and
``analytics.survival`` views as frames (:func:`load_inputs` reads them) and returns
:class:`StudyResults`: the result tables (:mod:`clms_etl.survival.tables`), Table 1, Table 2,
the survival estimates in display layout, and Figure 2 on demand. Nothing here writes to the
warehouse or knows about Dagster. Conventions: ``docs/survival.md``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clms_etl.survival import endpoints as ep
from clms_etl.survival.km import CI_TRANSFORMS, DEFAULT_CI_TRANSFORM, KaplanMeier, kaplan_meier, reverse_kaplan_meier
from clms_etl.survival.table1 import table1, table1_display, table1_layout, unrecorded_items
from clms_etl.survival.univariate import MIN_EVENTS, Predictor, compare_means, univariate
from clms_etl.report.csv_files import write_csv
from clms_etl.vocabulary import code_label, code_labels, column_code_list
from clms_etl.warehouse.analytics import MIN_FOLLOW_UP_MONTHS, MITOSES_THRESHOLD

TIME_POINTS_MONTHS = (12, 24, 60, 96)
UNIVARIATE_ENDPOINTS = ("RMFS", "OS")  # Table 2: local recurrence or metastasis, and overall survival
TABLE2_LABELS = {"RMFS": "Local recurrence or metastasis", "OS": "Overall survival"}
FIGURE_ENDPOINTS = ("OS", "PFS", "DSS", "RFS")
KI67_THRESHOLD_PERCENT = 10
ALL = "all"

# Columns of the base table `tumour` that Table 1 needs and patient_summary does not carry.
TUMOUR_EXTRA_SQL = """
SELECT s.*, t.consultation_delay_months, t.mitosis_class, t.mitoses_is_upper_bound
FROM analytics.patient_summary s LEFT JOIN tumour t ON t.patient_id = s.patient_id
"""


def load_inputs(wh) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(patient_summary with the tumour's consultation delay and mitosis class, survival view)."""
    return wh.query(TUMOUR_EXTRA_SQL), wh.query("SELECT * FROM analytics.survival")


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
    """The study's univariate predictors as string-level columns (one row per patient) and their specs.

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
    frame = population.select("patient_id", *[expr.cast(pl.String).alias(p.key) for p, expr in specs])
    return frame, [p for p, _ in specs]


# -- results --------------------------------------------------------------------------------------


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


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
    # Table 1 characteristics a centre records nothing for (table1.unrecorded_items); report only
    unrecorded_items: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False)

    def result_tables(self) -> dict[str, pl.DataFrame]:
        """Frames of the result tables, by table name (for ``Warehouse.replace_results``)."""
        return {"survival_estimate": self.survival_estimate, "survival_curve": self.survival_curve,
                "univariate_analysis": self.univariate_analysis, "table1": self.table1,
                "survival_exclusion": self.survival_exclusion, "follow_up": self.follow_up,
                "group_comparison": self.group_comparison}

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
        used = tables["survival_exclusion"]["min_follow_up_months"].unique()
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
        """Table 2 as printed: one row per predictor level; events/n, HR (95 % CI), log-rank p per endpoint."""
        u = self.univariate_analysis
        rows = []
        first = u.filter(pl.col("endpoint") == UNIVARIATE_ENDPOINTS[0]).sort("row_order")
        for base in first.iter_rows(named=True):
            shown = _level_label(base["predictor"])
            row = {"Predictor": base["predictor_label"],
                   "Comparison": f"{shown(base['level'])} vs {shown(base['reference_level'])}"}
            for endpoint in UNIVARIATE_ENDPOINTS:
                r = u.filter((pl.col("endpoint") == endpoint) & (pl.col("predictor") == base["predictor"])
                             & (pl.col("level") == base["level"])).row(0, named=True)
                label = TABLE2_LABELS[endpoint]
                row[f"{label}: events/n"] = (f"{r['events_level']}/{r['n_level']} vs "
                                             f"{r['events_reference']}/{r['n_reference']}")
                row[f"{label}: HR (95 % CI)"] = (
                    f"{r['hr']:.2f} ({r['hr_ci_lower']:.2f}-{r['hr_ci_upper']:.2f})" if r["estimable"]
                    else f"not estimable: {_labelled_text(base['predictor'], r['reason'])}")
                row[f"{label}: p (log-rank)"] = _fmt_p(r["logrank_p"])
            rows.append(row)
        return pl.DataFrame(rows)

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
        """Figure 2 as PNG and SVG under ``out_dir``: {"figure2_png": ..., "figure2_svg": ...}."""
        from clms_etl.survival.figures import figure2

        curves = {e: self.curves[(e, ALL, ALL, self.ci_transform)] for e in FIGURE_ENDPOINTS}
        out_dir = Path(out_dir)
        png, svg = figure2(curves, out_dir / "figure2_kaplan_meier.png",
                           out_dir / "figure2_kaplan_meier.svg", self.ci_transform)
        return {"figure2_png": png, "figure2_svg": svg}

    def write_tables(self, out_dir: Path) -> dict[str, Path]:
        """Table 1, Table 2 and the survival estimates as CSV (UTF-8) under ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = {}
        for key, frame in (("table1", self.table1_display()), ("table2", self.table2_display()),
                           ("survival_estimates", self.survival_display())):
            out[key] = write_csv(frame, out_dir / f"{key}.csv")
        return out


def _level_label(predictor: str):
    """How a level of ``predictor`` is read: the code list's label when the predictor is a coded column
    (site, sex, invasion), else the level as the analysis named it (thresholds, grade dichotomies)."""
    code_list = column_code_list(predictor)
    return (lambda level: level) if code_list is None else (lambda level: code_label(code_list, level))


def _labelled_text(predictor: str, text: str | None) -> str:
    """``text`` (a stored reason naming levels by their codes) with the codes of the predictor's code list
    replaced by their labels."""
    code_list = column_code_list(predictor)
    if code_list is None or not text:
        return text or ""
    labels = {str(code): label for code, label in code_labels(code_list).items()}
    return re.sub(r"(?<![\w-])(" + "|".join(map(re.escape, labels)) + r")(?![\w-])", lambda m: labels[m.group(1)], text)


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
            time_points_months: tuple[int, ...] = TIME_POINTS_MONTHS, alpha: float = 0.05) -> StudyResults:
    """The study's survival analysis on the analytics views (frames), all conventions of ``docs/survival.md``.

    ``patient_summary``: one row per included patient (Table 1 population); ``survival``: the
    ``analytics.survival`` view. ``min_follow_up_months``: the survival population rule;
    ``ci_transform``: the interval shown in the display tables and Figure 2 (both transforms are
    always in the result tables). Raises :class:`EmptyCohort` when the survival population is empty.
    """
    if ci_transform not in CI_TRANSFORMS:
        raise ValueError(f"ci_transform must be one of {CI_TRANSFORMS}")
    population = ep.survival_population(patient_summary, min_follow_up_months)
    if population.is_empty():
        raise EmptyCohort(f"no patient in the survival population (at least {min_follow_up_months:g} months of "
                          f"follow-up) among the {patient_summary.height} included: nothing to estimate yet.")
    frames = ep.endpoint_frame(patient_summary, survival, min_follow_up_months)
    levels, specs = predictors(population)
    unrecorded = _unrecorded_by_centre(levels.join(population.select("patient_id", "centre"), on="patient_id"),
                                       [p.key for p in specs])
    data = frames.join(levels, on="patient_id", how="left")

    curves: dict[tuple[str, str, str, str], KaplanMeier] = {}
    estimates: list[dict] = []
    curve_frames: list[pl.DataFrame] = []
    univariate_rows: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' approximation / convergence hints; not estimable rows say why
        for endpoint in ep.ENDPOINTS:
            e = data.filter(pl.col("endpoint") == endpoint)
            groups = [(ALL, ALL, e)]
            if endpoint in UNIVARIATE_ENDPOINTS:
                for p in specs:
                    for level in (p.reference, *p.levels):
                        groups.append((p.key, level, e.filter(pl.col(p.key) == level)))
            for variable, value, g in groups:
                if g.is_empty() and variable != ALL:
                    continue  # a level nobody has (e.g. a predictor no centre records): no curve for nobody
                for transform in CI_TRANSFORMS:
                    km = kaplan_meier(g["time_months"].to_numpy(), g["event"].to_numpy(), ci_transform=transform,
                                      alpha=alpha)
                    key = (endpoint, variable, value, transform)
                    curves[key] = km
                    estimates += _estimate_rows(km, key, time_points_months)
                    if km.n:
                        curve_frames.append(_curve_rows(km, key))
            if endpoint in UNIVARIATE_ENDPOINTS:
                for p in specs:
                    univariate_rows += [{"endpoint": endpoint, **r, **_no_known_value(r, unrecorded[p.key])}
                                        for r in univariate(e, p)]

    estimate_schema = {"endpoint": pl.String, "group_variable": pl.String, "group_value": pl.String,
                       "ci_transform": pl.String, "estimate": pl.String, "time_months": pl.Float64,
                       "survival": pl.Float64, "ci_lower": pl.Float64, "ci_upper": pl.Float64,
                       "n_at_risk": pl.Int64, "cumulative_events": pl.Int64, "n": pl.Int64, "events": pl.Int64,
                       "display": pl.String}
    univariate_frame = pl.DataFrame(univariate_rows, infer_schema_length=None).with_columns(
        row_order=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("endpoint"))
    margins = compare_means(patient_summary["clinical_margin_cm"], patient_summary["relapse"])
    return StudyResults(
        min_follow_up_months=float(min_follow_up_months), ci_transform=ci_transform,
        time_points_months=tuple(time_points_months), endpoints=frames,
        survival_estimate=pl.DataFrame(estimates, schema=estimate_schema),
        survival_curve=pl.concat(curve_frames, how="diagonal"),
        univariate_analysis=univariate_frame,
        table1=table1(patient_summary),
        survival_exclusion=ep.exclusions(patient_summary, min_follow_up_months),
        follow_up=_follow_up(population),
        group_comparison=pl.DataFrame([{"variable": "clinical_margin_cm", "outcome": "relapse",
                                        "population": "all included patients with a known clinical margin",
                                        **margins}]),
        curves=curves,
        unrecorded_items=unrecorded_items(patient_summary),
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
              f"{n_pop} followed for at least {results.min_follow_up_months:g} months form the survival population "
              f"({excluded} excluded, see the exclusion list)."),
        tables=(ReportTable("table1", "Table 1. Characteristics of the patients", table1_frame, row_levels=table1_levels,
                            note="n (%) of all included patients; tumour size classes as % of the patients with a "
                                 "known size. Medians with interquartile range (R type 7 quantiles), means ± SD. "
                                 "Where the study lists no 'not specified' row, a sign not mentioned in the chart "
                                 "is counted as absent in a centre that records the sign; the patients of a centre "
                                 "that records nothing for it are counted as not recorded."),
                *_unrecorded_table(results.unrecorded_items),
                ReportTable("exclusions", "Patients outside the survival population",
                            results.survival_exclusion.select("patient_id", "centre", "detail"),
                            note="Pseudonyms only.")),
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
                            note=f"Cox proportional hazards (Efron ties), hazard ratio of the first level vs the "
                                 f"second with Wald 95 % CI; log-rank test over all levels. Not estimable: no event "
                                 f"in a group or fewer than {MIN_EVENTS} events. Continuous variables dichotomised "
                                 f"at the median of the survival population."),),
    )
    return [cohort, survival_section, univariate_section]
