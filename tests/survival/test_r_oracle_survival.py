"""The survival statistics the product prints, against R's survival package on the data it analysed.

The twin's endpoint frames (the survival population of the ``paper`` preset, the study's) go to R
as they are; R's ``survfit`` (both interval transforms), ``quantile`` (medians), ``survdiff`` and
``coxph`` (Efron) answer, and every number of ``survival_estimate`` (whole population and every
predictor level), ``survival_curve`` and ``univariate_analysis`` must be R's — far below the printed
digits (2 decimals for survival, 1 for months, 2 for HRs, 3 for p).
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from clms_etl.survival.endpoints import endpoint_frame, survival_population
from clms_etl.survival.study import UNIVARIATE_ENDPOINTS, load_inputs, predictors
from clms_etl.warehouse import Warehouse
from tests.r_oracle import run_r

TOL = 1e-6
# lifelines' Newton-Raphson stops earlier than coxph's (relative differences up to ~2e-4 on the
# twin): far below the printed digits (HR to 2 decimals, p to 3), not a different estimator
COX_TOL = 1e-3

KM_SCRIPT = """
d <- data$d
points <- data$points$t
out <- list()
for (i in seq_len(nrow(data$groups))) {
  g <- data$groups[i, ]
  x <- d[d$endpoint == g$endpoint, ]
  if (g$variable != "all") x <- x[!is.na(x[[g$variable]]) & x[[g$variable]] == g$value, ]
  for (ct in c("log", "log-log")) {
    f <- survfit(Surv(time_months, event) ~ 1, data = x, conf.type = ct)
    s <- summary(f, times = points[points <= max(x$time_months)])
    q <- quantile(f, 0.5)
    out[[paste(g$endpoint, g$variable, g$value, ct, sep = "|")]] <- list(
      time = as_array(s$time), surv = as_array(s$surv), lower = as_array(s$lower), upper = as_array(s$upper),
      n_risk = as_array(s$n.risk), median = unname(q$quantile), median_lower = unname(q$lower),
      median_upper = unname(q$upper), curve_time = as_array(f$time), curve_surv = as_array(f$surv),
      curve_lower = as_array(f$lower), curve_upper = as_array(f$upper))
  }
}
emit(out)
"""


@pytest.fixture(scope="module")
def analysed(twin_warehouse_url, twin_results):
    """The endpoint frames with the predictors' levels: exactly what the analysis fitted."""
    with Warehouse(twin_warehouse_url) as wh:
        patient_summary, survival = load_inputs(wh)
    population = survival_population(patient_summary, twin_results.min_follow_up_months, "paper")
    levels, specs = predictors(population)
    frames = endpoint_frame(patient_summary, survival, twin_results.min_follow_up_months, "paper")
    return frames.join(levels, on="patient_id", how="left"), specs


def _close(value, expected) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return value is None
    return value is not None and value == pytest.approx(expected, rel=TOL, abs=1e-9)


def test_kaplan_meier_estimates_intervals_medians_and_curves_are_r_survfit(analysed, twin_results):
    data, _ = analysed
    est = twin_results.survival_estimate
    groups = est.select("endpoint", pl.col("group_variable").alias("variable"),
                        pl.col("group_value").alias("value")).unique().sort("endpoint", "variable", "value")
    r = run_r(KM_SCRIPT, data={"d": data, "groups": groups,
                               "points": pl.DataFrame({"t": list(twin_results.time_points_months)})})
    curve = twin_results.survival_curve
    checked = 0
    for key, expected in r.items():
        endpoint, variable, value, transform = key.split("|")
        rows = est.filter((pl.col("endpoint") == endpoint) & (pl.col("group_variable") == variable)
                          & (pl.col("group_value") == value) & (pl.col("ci_transform") == transform))
        at = {r_["time_months"]: r_ for r_ in rows.filter(pl.col("estimate") != "median").iter_rows(named=True)}
        for t, surv, lower, upper, n_risk in zip(expected["time"], expected["surv"], expected["lower"],
                                                  expected["upper"], expected["n_risk"], strict=True):
            row = at[t]
            assert _close(row["survival"], surv) and row["n_at_risk"] == n_risk, (key, t)
            assert _close(row["ci_lower"], lower) and _close(row["ci_upper"], upper), (key, t, row, lower, upper)
            checked += 1
        median = rows.filter(pl.col("estimate") == "median").row(0, named=True)
        assert _close(median["time_months"], expected["median"]), key
        assert _close(median["ci_lower"], expected["median_lower"]), key
        assert _close(median["ci_upper"], expected["median_upper"]), key
        steps = curve.filter((pl.col("endpoint") == endpoint) & (pl.col("group_variable") == variable)
                             & (pl.col("group_value") == value) & (pl.col("ci_transform") == transform)
                             & (pl.col("time_months") > 0)).sort("time_months")
        assert steps["time_months"].to_list() == pytest.approx(expected["curve_time"]), key
        for row, surv, lower, upper in zip(steps.iter_rows(named=True), expected["curve_surv"],
                                           expected["curve_lower"], expected["curve_upper"], strict=True):
            assert _close(row["survival"], surv), key
            assert _close(row["ci_lower"], lower) and _close(row["ci_upper"], upper), (key, row["time_months"])
    assert checked > 400  # every time point of every endpoint, level and transform


TABLE2_SCRIPT = """
d <- data$d
out <- list()
for (i in seq_len(nrow(data$rows))) {
  r <- data$rows[i, ]
  x <- d[d$endpoint == r$endpoint & !is.na(d[[r$predictor]]), ]
  x <- x[x[[r$predictor]] %in% strsplit(r$all_levels, "|", fixed = TRUE)[[1]], ]
  key <- paste(r$endpoint, r$predictor, sep = "|")
  lr <- survdiff(Surv(time_months, event) ~ x[[r$predictor]], data = x)
  res <- list(chisq = lr$chisq, df = length(lr$n) - 1,
              logrank_p = pchisq(lr$chisq, length(lr$n) - 1, lower.tail = FALSE))
  if (!is.na(r$fit_levels) && nchar(r$fit_levels) > 0) {
    fit_levels <- strsplit(r$fit_levels, "|", fixed = TRUE)[[1]]
    y <- x[x[[r$predictor]] %in% c(fit_levels, r$reference), ]
    y$g <- factor(y[[r$predictor]], levels = c(r$reference, fit_levels))
    m <- coxph(Surv(time_months, event) ~ g, data = y, ties = "efron")
    s <- summary(m)
    res$hr <- as_array(unname(s$conf.int[, 1])); res$lower <- as_array(unname(s$conf.int[, 3]))
    res$upper <- as_array(unname(s$conf.int[, 4])); res$cox_p <- as_array(unname(s$coefficients[, 5]))
  }
  out[[key]] <- res
}
emit(out)
"""


def test_table2_log_rank_and_efron_cox_are_r_survdiff_and_coxph(analysed, twin_results):
    data, specs = analysed
    u = twin_results.univariate_analysis
    rows = []
    for endpoint in UNIVARIATE_ENDPOINTS:
        for p in specs:
            mine = u.filter((pl.col("endpoint") == endpoint) & (pl.col("predictor") == p.key))
            if mine["logrank_p"].is_null().all():
                continue
            rows.append({"endpoint": endpoint, "predictor": p.key, "reference": p.reference,
                         "all_levels": "|".join([p.reference, *p.levels]),
                         "fit_levels": "|".join(mine.filter(pl.col("estimable"))["level"].to_list())})
    r = run_r(TABLE2_SCRIPT, data={"d": data, "rows": pl.DataFrame(rows)})
    fitted = 0
    for key, expected in r.items():
        endpoint, predictor = key.split("|")
        mine = u.filter((pl.col("endpoint") == endpoint) & (pl.col("predictor") == predictor))
        assert mine["logrank_chi2"].unique().item() == pytest.approx(expected["chisq"], rel=TOL), key
        assert mine["logrank_df"].unique().item() == expected["df"], key
        assert mine["logrank_p"].unique().item() == pytest.approx(expected["logrank_p"], rel=1e-5), key
        if "hr" not in expected:
            continue
        est = mine.filter(pl.col("estimable"))
        assert est["hr"].to_list() == pytest.approx(expected["hr"], rel=COX_TOL), key
        assert est["hr_ci_lower"].to_list() == pytest.approx(expected["lower"], rel=COX_TOL), key
        assert est["hr_ci_upper"].to_list() == pytest.approx(expected["upper"], rel=COX_TOL), key
        assert est["cox_p"].to_list() == pytest.approx(expected["cox_p"], rel=COX_TOL), key
        fitted += est.height
    assert fitted >= 10
