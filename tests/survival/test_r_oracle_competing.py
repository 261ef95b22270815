"""Competing risks against R's cmprsk itself: the product's numbers are cmprsk's, to full precision.

On R survival's ``mgus2`` (progression to plasma-cell malignancy, death competing; written to a
file by R and read back by the product) and on the twin as the survival analysis saw it
(``analytics.cumulative_incidence`` / ``gray_test`` / ``fine_gray`` rows): ``cuminc`` estimates
and variances, Gray's test statistic and p, ``crr`` coefficients, robust SE and p.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from clms_etl.survival import competing as cr
from clms_etl.survival.competing_study import OUTCOMES, outcome_frame
from clms_etl.survival.endpoints import survival_population
from clms_etl.survival.study import load_inputs, predictors
from clms_etl.warehouse import Warehouse
from tests.r_oracle import run_r

RTOL = 1e-7  # far below the printed digits: the same algorithm, not an approximation of it

MGUS2_TO_FILE = """
d <- survival::mgus2
d$etime <- ifelse(d$pstat == 0, d$futime, d$ptime)
d$status <- ifelse(d$pstat == 0, 2 * d$death, 1)
d$male <- as.integer(d$sex == "M")
d <- d[!is.na(d$hgb), c("id", "age", "male", "hgb", "etime", "status")]
write.csv(d, data$out$path[1], row.names = FALSE)
"""


@pytest.fixture(scope="module")
def mgus2(tmp_path_factory) -> pl.DataFrame:
    """R's mgus2 as R writes it to a file: time to progression, status 1 progression / 2 death / 0 censored."""
    path = tmp_path_factory.mktemp("mgus2") / "mgus2.csv"
    run_r(MGUS2_TO_FILE + "emit(list(ok = TRUE))", data={"out": pl.DataFrame({"path": [str(path)]})})
    return pl.read_csv(path)


def test_cumulative_incidence_and_its_variance_are_cmprsk_cuminc_at_every_step(mgus2):
    r = run_r("""
    x <- data$d
    ci <- cuminc(x$etime, x$status, x$male)
    out <- list()
    for (nm in names(ci)[names(ci) != "Tests"]) {
      k <- seq(3, length(ci[[nm]]$time) - 1, by = 2)  # the right-continuous corner of every jump
      out[[nm]] <- list(time = as_array(ci[[nm]]$time[k]), est = as_array(ci[[nm]]$est[k]),
                        var = as_array(ci[[nm]]$var[k]))
    }
    emit(out)
    """, data={"d": mgus2}, packages=("survival", "cmprsk"))
    for sex in (0, 1):
        group = mgus2.filter(pl.col("male") == sex)
        for cause in (1, 2):
            status = group["status"].to_numpy()
            status = np.where(status == 0, 0, 3 - status) if cause == 2 else status  # cause of interest coded 1
            ci = cr.cumulative_incidence(group["etime"].to_numpy(), status)
            expected = r[f"{sex} {cause}"]
            assert ci.time.tolist() == expected["time"]
            np.testing.assert_allclose(ci.incidence, expected["est"], rtol=RTOL)
            np.testing.assert_allclose(ci.variance, expected["var"], rtol=RTOL)


def test_gray_test_is_cmprsk_cuminc_tests(mgus2):
    r = run_r("""
    t <- cuminc(data$d$etime, data$d$status, data$d$male)$Tests
    emit(list(stat = as_array(t[, "stat"]), p = as_array(t[, "pv"]), df = as_array(t[, "df"])))
    """, data={"d": mgus2}, packages=("survival", "cmprsk"))
    status = mgus2["status"].to_numpy()
    for i, cause_status in enumerate((status, np.where(status == 0, 0, 3 - status))):
        test = cr.gray_test(mgus2["etime"].to_numpy(), cause_status, mgus2["male"].to_numpy())
        assert test.statistic == pytest.approx(r["stat"][i], rel=RTOL)
        assert test.p == pytest.approx(r["p"][i], rel=1e-6)
        assert test.df == r["df"][i]


def test_fine_gray_coefficients_robust_se_and_p_are_cmprsk_crr(mgus2):
    r = run_r("""
    fit <- crr(data$d$etime, data$d$status, cbind(data$d$age, data$d$male, data$d$hgb))
    se <- sqrt(diag(fit$var))  # summary.crr rounds its p-values: computed as it does, unrounded
    emit(list(coef = as_array(fit$coef), se = as_array(se), p = as_array(2 * pnorm(-abs(fit$coef / se))),
              converged = fit$converged))
    """, data={"d": mgus2}, packages=("survival", "cmprsk"))
    model = cr.fine_gray(mgus2["etime"].to_numpy(), mgus2["status"].to_numpy(),
                         mgus2.select("age", "male", "hgb").to_numpy())
    assert model.converged and r["converged"]
    np.testing.assert_allclose(model.coef, r["coef"], rtol=1e-6)
    np.testing.assert_allclose(model.se, r["se"], rtol=1e-6)
    np.testing.assert_allclose([row["p"] for row in model.rows()], r["p"], rtol=1e-5)


# -- the twin, as the survival analysis saw it -----------------------------------------------------

TWIN_SCRIPT = """
d <- data$d
fits <- data$fits
points <- data$points$t
est <- list(); gray <- list(); fg <- list()
for (o in unique(d$outcome)) {
  x <- d[d$outcome == o, ]
  ci <- cuminc(x$time_months, x$cause)
  tp <- timepoints(ci, points)
  km <- summary(survfit(Surv(time_months, cause == 1) ~ 1, data = x), times = points[points <= max(x$time_months)])
  est[[o]] <- list(event = as_array(unname(tp$est[1, ])), event_var = as_array(unname(tp$var[1, ])),
                   competing = as_array(unname(tp$est[2, ])), competing_var = as_array(unname(tp$var[2, ])),
                   one_minus_km = as_array(1 - km$surv))
  for (p in predictor_keys) {
    y <- x[!is.na(x[[p]]), ]
    if (length(unique(y[[p]])) < 2 || sum(y$cause == 1) == 0) next
    t <- cuminc(y$time_months, y$cause, y[[p]])$Tests
    gray[[paste(o, p)]] <- list(stat = t[1, "stat"], p = t[1, "pv"])
  }
}
for (i in seq_len(nrow(fits))) {
  f <- fits[i, ]
  levels <- strsplit(f$levels, "|", fixed = TRUE)[[1]]
  x <- d[d$outcome == f$outcome & !is.na(d[[f$predictor]]) & d[[f$predictor]] %in% c(levels, f$reference), ]
  cov <- sapply(levels, function(l) as.integer(x[[f$predictor]] == l))
  fit <- crr(x$time_months, x$cause, cov)
  b <- unname(fit$coef); se <- sqrt(diag(fit$var)); z <- qnorm(0.975)  # summary.crr's formulas, unrounded
  fg[[paste(f$outcome, f$predictor)]] <- list(shr = as_array(exp(b)), lower = as_array(exp(b - z * se)),
                                              upper = as_array(exp(b + z * se)),
                                              p = as_array(2 * pnorm(-abs(b / se))))
}
emit(list(est = est, gray = gray, fg = fg))
"""


def test_twin_competing_risk_tables_are_cmprsk_on_the_analysed_data(twin_warehouse_url, twin_results):
    with Warehouse(twin_warehouse_url) as wh:
        patient_summary, _ = load_inputs(wh)
    population = survival_population(patient_summary, twin_results.min_follow_up_months, "paper")
    levels, specs = predictors(population)
    data = outcome_frame(population).join(levels, on="patient_id", how="left")
    fg = twin_results.fine_gray.filter(pl.col("estimable"))
    fits = (fg.group_by("outcome", "predictor", maintain_order=True)
            .agg(pl.col("level").str.join("|").alias("levels"), pl.col("reference_level").first().alias("reference")))
    points = list(twin_results.time_points_months)
    keys = ", ".join(f'"{p.key}"' for p in specs)
    r = run_r(f"predictor_keys <- c({keys})\n" + TWIN_SCRIPT,
              data={"d": data, "fits": fits, "points": pl.DataFrame({"t": points})},
              packages=("survival", "cmprsk"))

    est = twin_results.cumulative_incidence.filter(pl.col("group_variable") == "all")
    for o in OUTCOMES:
        for cause in ("event", "competing"):
            rows = est.filter((pl.col("outcome") == o.key) & (pl.col("cause") == cause)).sort("time_months")
            expected, expected_var = r["est"][o.key][cause], r["est"][o.key][f"{cause}_var"]
            for row, value, variance in zip(rows.iter_rows(named=True), expected, expected_var, strict=True):
                assert row["incidence"] == (None if value is None else pytest.approx(value, rel=RTOL, abs=1e-12))
                assert row["variance"] == (None if variance is None else pytest.approx(variance, rel=RTOL, abs=1e-12))
        rows = est.filter((pl.col("outcome") == o.key) & (pl.col("cause") == "event")).sort("time_months")
        km = [v for v in rows["one_minus_km"].to_list() if v is not None]
        assert km == pytest.approx(r["est"][o.key]["one_minus_km"], rel=RTOL), o.key  # 1 - survfit

    gray = {(g["outcome"], g["predictor"]): g for g in twin_results.gray_test.iter_rows(named=True)}
    assert {k for k, g in gray.items() if g["statistic"] is not None} == {tuple(k.split(" ")) for k in r["gray"]}
    for key, expected in r["gray"].items():
        row = gray[tuple(key.split(" "))]
        assert row["statistic"] == pytest.approx(expected["stat"], rel=RTOL)
        assert row["p"] == pytest.approx(expected["p"], rel=1e-6)

    assert fits.height > 0
    for fit in fits.iter_rows(named=True):
        expected = r["fg"][f"{fit['outcome']} {fit['predictor']}"]
        rows = fg.filter((pl.col("outcome") == fit["outcome"]) & (pl.col("predictor") == fit["predictor"]))
        np.testing.assert_allclose(rows["shr"].to_numpy(), expected["shr"], rtol=1e-6)
        np.testing.assert_allclose(rows["shr_ci_lower"].to_numpy(), expected["lower"], rtol=1e-6)
        np.testing.assert_allclose(rows["shr_ci_upper"].to_numpy(), expected["upper"], rtol=1e-6)
        np.testing.assert_allclose(rows["shr_p"].to_numpy(), expected["p"], rtol=1e-5)
