"""The study's outcomes with death as a competing event (``docs/survival.md``, "Competing risks").

For local recurrence, metastasis, either of them (relapse, the outcome of Table 2) and death from
cLMS, a death that comes first is a competing event, not a censoring: 1 - Kaplan-Meier with
those deaths censored (LRFS, RFS, RMFS, DSS) overstates the risk in an elderly cohort. Here:

* the cumulative incidence of the outcome and of the competing death (Aalen-Johansen, Gray's
  variance), as curves and at the study's time points, with 1 - Kaplan-Meier beside it;
* Gray's test between the levels of each predictor of Table 2;
* Fine-Gray subdistribution hazard ratios per level, next to the cause-specific Cox hazard
  ratios (the cause-specific endpoint's, same not-estimable rule as Table 2).

Pure functions on frames, like :mod:`clms_etl.survival.study`, which calls :func:`analyse_competing`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from clms_etl.survival import competing as cr
from clms_etl.survival.univariate import PATIENTS, Predictor, univariate
from clms_etl.vocabulary import labelled_text, level_label
from clms_etl.warehouse.analytics import DAYS_PER_MONTH

ALL = "all"


@dataclass(frozen=True)
class Outcome:
    key: str
    label: str
    event: pl.Expr  # date of the outcome (null: none)
    competing: str  # the competing event, in words
    competing_death: pl.Expr  # which deaths compete (when no outcome came first)
    cause_specific_endpoint: str  # the Kaplan-Meier / Cox endpoint with those deaths censored


def _any_death() -> pl.Expr:
    return pl.col("death_date").is_not_null()


OUTCOMES = (
    Outcome("local_recurrence", "Local recurrence", pl.col("first_local_recurrence_date"),
            "death without local recurrence", _any_death(), "LRFS"),
    Outcome("metastasis", "Metastasis", pl.col("first_metastasis_date"), "death without metastasis",
            _any_death(), "RFS"),
    Outcome("relapse", "Local recurrence or metastasis",
            pl.min_horizontal("first_local_recurrence_date", "first_metastasis_date"),
            "death without local recurrence or metastasis", _any_death(), "RMFS"),
    Outcome("clms_death", "Death from cLMS",
            pl.when(pl.col("death_cause") == "clms").then(pl.col("death_date")),
            "death from another or an unknown cause", _any_death() & (pl.col("death_cause").fill_null("") != "clms"),
            "DSS"),
)
CAUSES = ("event", "competing")  # cmprsk's causes 1 and 2


def outcome_frame(population: pl.DataFrame, outcomes=OUTCOMES) -> pl.DataFrame:
    """One row per patient and outcome: ``time_months`` and ``cause`` (0 censored, 1 outcome, 2 competing death)."""
    frames = []
    for o in outcomes:
        end = pl.coalesce(o.event, pl.when(o.competing_death).then(pl.col("death_date")), pl.col("last_contact_date"))
        frames.append(population.select(
            "patient_id", outcome=pl.lit(o.key),
            time_months=(end - pl.col("diagnosis_date")).dt.total_days() / DAYS_PER_MONTH,
            cause=pl.when(o.event.is_not_null()).then(1).when(o.competing_death).then(2).otherwise(0).cast(pl.Int64)))
    return pl.concat(frames)


def _fmt_incidence(value: float | None, lower: float | None, upper: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if lower is None else f"{value:.2f} [{lower:.2f}-{upper:.2f}]"


def _incidence_rows(outcome: str, variable: str, value: str, g: pl.DataFrame, time_points, alpha: float):
    """Fixed-time estimates and the curve of both causes in one group (distinct rows weighted by
    :data:`PATIENTS`); 1 - KM of the outcome beside them."""
    counts = (g.group_by("time_months").agg(**{f"cause_{k}": pl.col(PATIENTS).filter(pl.col("cause") == k).sum()
                                               for k in (0, 1, 2)})
              .sort("time_months"))
    time, censored, first, second = (counts[c].to_numpy() for c in counts.columns)
    # 1 - Kaplan-Meier of the outcome is the same estimator with the competing deaths censored
    one_minus_km = cr.cumulative_incidence_counts(time, first, np.zeros_like(first), censored + second)
    estimates, curves = [], []
    for code, name in enumerate(CAUSES, start=1):
        ci = cr.cumulative_incidence_counts(time, *((first, second) if code == 1 else (second, first)), censored)
        base = {"outcome": outcome, "group_variable": variable, "group_value": value, "cause": name,
                "n": ci.n, "events": ci.events}
        for t in time_points:
            incidence, variance = ci.at(float(t))
            lower, upper = cr.confidence_interval(incidence, variance, alpha)
            km_risk = one_minus_km.at(float(t))[0] if name == "event" else None
            estimates.append({**base, "estimate": f"incidence_{t}m", "time_months": float(t), "incidence": incidence,
                              "variance": variance, "ci_lower": lower, "ci_upper": upper,
                              "one_minus_km": km_risk,
                              "display": _fmt_incidence(incidence, lower, upper)})
        start = [] if ci.time.size and ci.time[0] == 0 else [0.0]  # the curve starts at 0 (unless an event does)
        curves.append(pl.DataFrame({"time_months": [*start, *ci.time.tolist()],
                                    "incidence": [*start, *ci.incidence.tolist()],
                                    "variance": [*start, *ci.variance.tolist()]})
                      .with_columns(outcome=pl.lit(outcome), group_variable=pl.lit(variable),
                                    group_value=pl.lit(value), cause=pl.lit(name),
                                    end_months=pl.lit(ci.end)))
    return estimates, curves


def _gray_row(outcome: str, p: Predictor, data: pl.DataFrame) -> dict:
    known = data.filter(pl.col(p.key).is_in([p.reference, *p.levels]))
    present = known[p.key].unique().sort().to_list()
    weight = known[PATIENTS]
    row = {"outcome": outcome, "predictor": p.key, "predictor_label": p.label, "levels": ", ".join(present),
           "n": int(weight.sum()), "events": int(weight.filter(known["cause"] == 1).sum()),
           "competing": int(weight.filter(known["cause"] == 2).sum()), "statistic": None, "df": None, "p": None,
           "reason": None}
    if len(present) < 2 or row["events"] == 0:
        row["reason"] = "fewer than two levels with patients" if len(present) < 2 else "no event"
        return row
    test = cr.gray_test(known["time_months"].to_numpy(), known["cause"].to_numpy(), known[p.key].to_numpy(),
                        weight=weight.to_numpy().astype(float))
    if test.statistic is None:
        row["reason"] = "singular variance of the test's score"
    row.update(statistic=test.statistic, df=test.df, p=test.p)
    return row


def _fine_gray_rows(o: Outcome, p: Predictor, data: pl.DataFrame, cause_specific: pl.DataFrame, alpha: float):
    """Fine-Gray sHR per level (one model, an indicator per estimable level) beside the cause-specific Cox HR."""
    cs_rows = univariate(cause_specific, p, weight_col=PATIENTS)  # the cause-specific Cox model and the not-estimable rule of Table 2
    fit_levels = [r["level"] for r in cs_rows if r["estimable"]]
    reasons = {r["level"]: r["reason"] for r in cs_rows if not r["estimable"]}
    shr: dict[str, dict] = {}
    known = data.filter(pl.col(p.key).is_in([*fit_levels, p.reference]))
    if fit_levels:
        x = np.column_stack([(known[p.key] == lvl).cast(pl.Int8).to_numpy() for lvl in fit_levels])
        try:
            model = cr.fine_gray(known["time_months"].to_numpy(), known["cause"].to_numpy(), x,
                                 weight=known[PATIENTS].to_numpy().astype(float))
            fitted = model.rows(alpha)
            for lvl, r in zip(fit_levels, fitted):
                if not model.converged or not all(np.isfinite(list(r.values()))):
                    reasons[lvl] = "Fine-Gray model did not converge"
                else:
                    shr[lvl] = r
        except np.linalg.LinAlgError:
            reasons.update({lvl: "Fine-Gray model: singular information matrix" for lvl in fit_levels})
    competing = data.filter(pl.col(p.key).is_in([*p.levels, p.reference]))
    rows = []
    for cs in cs_rows:
        lvl = cs["level"]
        f = shr.get(lvl)
        rows.append({
            "outcome": o.key, "predictor": p.key, "predictor_label": p.label, "level": lvl,
            "reference_level": p.reference, "n_level": cs["n_level"], "events_level": cs["events_level"],
            "n_reference": cs["n_reference"], "events_reference": cs["events_reference"],
            "competing": int(competing.filter(pl.col(p.key).is_in([lvl, p.reference]) & (pl.col("cause") == 2))
                             [PATIENTS].sum()),
            "shr": f and f["shr"], "shr_ci_lower": f and f["shr_ci_lower"], "shr_ci_upper": f and f["shr_ci_upper"],
            "shr_p": f and f["p"], "cause_specific_endpoint": o.cause_specific_endpoint,
            "cs_hr": cs["hr"], "cs_hr_ci_lower": cs["hr_ci_lower"], "cs_hr_ci_upper": cs["hr_ci_upper"],
            "cs_p": cs["cox_p"], "estimable": f is not None, "reason": None if f else reasons.get(lvl),
        })
    return rows


@dataclass(frozen=True)
class CompetingResults:
    cumulative_incidence: pl.DataFrame
    cumulative_incidence_curve: pl.DataFrame
    gray_test: pl.DataFrame
    fine_gray: pl.DataFrame


def beside(outcomes: pl.DataFrame, levels: pl.DataFrame) -> pl.DataFrame:
    """Each patient's row of ``outcomes`` with the patient's columns of ``levels`` (one row per patient): put
    beside it when both frames list the same patients in the same order (the study's ``levels`` is
    ``population.select``, the endpoint frame sorted by pseudonym), joined otherwise."""
    if outcomes.height == levels.height and outcomes["patient_id"].equals(levels["patient_id"]):
        return outcomes.hstack(levels.drop("patient_id"))
    return outcomes.join(levels, on="patient_id", how="left")


def analyse_competing(population: pl.DataFrame, levels: pl.DataFrame, specs: list[Predictor],
                      time_points_months, alpha: float = 0.05) -> CompetingResults:
    """Cumulative incidence, Gray's tests and Fine-Gray models of every outcome of :data:`OUTCOMES`.

    ``population``: the survival population (``patient_summary`` rows); ``levels`` / ``specs``:
    the predictors of Table 2 (:func:`clms_etl.survival.study.predictors`).
    """
    keys = [p.key for p in specs]
    estimates, curves, gray, fine = [], [], [], []
    for o in OUTCOMES:
        # patients alike in time, cause and every predictor are one row with their number: every
        # estimate below sums the same patients over far fewer rows (one outcome at a time in memory)
        data = (beside(outcome_frame(population, (o,)), levels)
                .group_by("time_months", "cause", *keys).agg(pl.len().alias(PATIENTS))
                .sort("time_months", "cause", *keys, nulls_last=True))
        cause_specific = data.with_columns(event=(pl.col("cause") == 1).cast(pl.Int64))
        groups = [(ALL, ALL, data)] + [(p.key, lvl, data.filter(pl.col(p.key) == lvl))
                                       for p in specs for lvl in (p.reference, *p.levels)]
        for variable, value, g in groups:
            if g.is_empty():
                continue
            e, c = _incidence_rows(o.key, variable, value, g, time_points_months, alpha)
            estimates += e
            curves += c
        for p in specs:
            gray.append(_gray_row(o.key, p, data))
            fine += _fine_gray_rows(o, p, data, cause_specific, alpha)
    return CompetingResults(
        cumulative_incidence=pl.DataFrame(estimates, infer_schema_length=None),
        cumulative_incidence_curve=pl.concat(curves, how="diagonal"),
        gray_test=pl.DataFrame(gray, infer_schema_length=None),
        fine_gray=pl.DataFrame(fine, infer_schema_length=None).with_columns(
            row_order=pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("outcome")),
    )


# -- outputs --------------------------------------------------------------------------------------

OUTCOME_LABELS = {o.key: o.label for o in OUTCOMES}


def write_figure(curve: pl.DataFrame, out_dir) -> dict:
    """The stacked cumulative incidence figure (whole population) as PNG and SVG under ``out_dir``."""
    from pathlib import Path

    from clms_etl.survival.figures import figure_competing

    if curve.is_empty():
        return {}
    out_dir = Path(out_dir)
    png, svg = figure_competing(curve.filter(pl.col("group_variable") == ALL), OUTCOME_LABELS,
                                out_dir / "figure_competing_risks.png", out_dir / "figure_competing_risks.svg")
    return {"competing_png": png, "competing_svg": svg}


def _fmt_p(p: float | None) -> str:
    return "-" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def _fmt_ratio(value, lower, upper, p) -> str:
    return "-" if value is None else f"{value:.2f} ({lower:.2f}-{upper:.2f}), p {_fmt_p(p)}"


def incidence_display(estimates: pl.DataFrame) -> pl.DataFrame:
    """Whole population: per outcome, the cumulative incidence of the outcome and of the competing
    death at each time point, with 1 - Kaplan-Meier (competing deaths censored) beside it."""
    e = estimates.filter(pl.col("group_variable") == ALL)
    rows = []
    for o in OUTCOMES:
        for cause in CAUSES:
            c = e.filter((pl.col("outcome") == o.key) & (pl.col("cause") == cause)).sort("time_months")
            if c.is_empty():
                continue
            row = {"Outcome": o.label, "Cause": o.label.lower() if cause == "event" else o.competing,
                   "Events": c["events"][0]}
            for r in c.iter_rows(named=True):
                months = f"{r['time_months']:g} months"
                row[months] = r["display"]
                if cause == "event":
                    row[f"{months}: 1 - KM"] = "-" if r["one_minus_km"] is None else f"{r['one_minus_km']:.2f}"
            rows.append(row)
    return pl.DataFrame(rows)


def fine_gray_display(fine_gray: pl.DataFrame, gray_test: pl.DataFrame) -> pl.DataFrame:
    """One row per outcome, predictor and level: Fine-Gray sHR beside the cause-specific HR, Gray's p."""
    gray = {(r["outcome"], r["predictor"]): r["p"] for r in gray_test.iter_rows(named=True)}
    rows = []
    for r in fine_gray.sort("outcome", "row_order").iter_rows(named=True):
        rows.append({
            "Outcome": OUTCOME_LABELS[r["outcome"]], "Predictor": r["predictor_label"],
            "Comparison": f"{level_label(r['predictor'], r['level'])} vs "
                          f"{level_label(r['predictor'], r['reference_level'])}",
            "Events/n": f"{r['events_level']}/{r['n_level']} vs {r['events_reference']}/{r['n_reference']}",
            "Competing deaths": r["competing"],
            "Fine-Gray sHR (95 % CI)": (_fmt_ratio(r["shr"], r["shr_ci_lower"], r["shr_ci_upper"], r["shr_p"])
                                        if r["estimable"] else f"not estimable: {labelled_text(r['predictor'], r['reason'])}"),
            "Cause-specific HR (95 % CI)": _fmt_ratio(r["cs_hr"], r["cs_hr_ci_lower"], r["cs_hr_ci_upper"], r["cs_p"]),
            "Gray's test p": _fmt_p(gray.get((r["outcome"], r["predictor"]))),
        })
    return pl.DataFrame(rows)


def report_section(estimates: pl.DataFrame, gray_test: pl.DataFrame, fine_gray: pl.DataFrame, population: str,
                   figures: dict | None = None):
    """The report's competing-risks section (:mod:`clms_etl.report.sections` contract)."""
    from clms_etl.report.sections import ReportFigure, ReportTable, Section

    method = ("Aalen-Johansen cumulative incidence with Gray's variance and a log(-log) 95 % interval (R cmprsk "
              "cuminc); 1 - KM: the study's Kaplan-Meier way, competing deaths censored, which overstates the risk "
              f"when deaths compete. Survival population: {population}.")
    figs = ()
    if figures and figures.get("competing_png"):
        figs = (ReportFigure("figure_competing", "Competing risks. Stacked cumulative incidence of each outcome and "
                             "of the competing death (beside Figure 2)", figures["competing_png"],
                             figures.get("competing_svg"), note=method),)
    return Section(
        "competing_risks", "Competing risks",
        text=("Local recurrence, metastasis and death from cLMS, with death as a competing event: a patient who "
              "dies first can no longer relapse. Gray's test compares the cumulative incidence between the levels "
              "of each predictor; Fine-Gray subdistribution hazard ratios are shown next to the cause-specific "
              "Cox hazard ratios (competing deaths censored)."),
        tables=(ReportTable("cumulative_incidence", "Cumulative incidence, death competing", incidence_display(estimates),
                            note=method),
                ReportTable("fine_gray", "Fine-Gray and cause-specific hazard ratios",
                            fine_gray_display(fine_gray, gray_test),
                            note="Fine-Gray model (R cmprsk crr, robust variance), Wald 95 % CI and p; cause-specific "
                                 "Cox model with Efron ties on LRFS / RFS / RMFS / DSS; Gray's test (rho = 0) over all "
                                 "levels. Not estimable: the rule of Table 2.")),
        figures=figs,
    )
