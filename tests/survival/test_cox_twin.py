"""The Cox checks of Table 2 on the twin, with R as the oracle on the very data the product analyses:
LR tests and cox.zph (survival), adjusted p-values (p.adjust), the spline test (rms); the Firth rows,
the PH flag and the multivariable model's events per variable as the report shows them."""

from __future__ import annotations

import polars as pl
import pytest

from clms_etl.survival import endpoints as ep
from clms_etl.survival.study import CONTINUOUS_PREDICTORS, load_inputs, predictors
from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.analytics import MIN_FOLLOW_UP_MONTHS
from tests.r_oracle import run_r


@pytest.fixture(scope="module")
def twin_frame(twin_warehouse_url) -> pl.DataFrame:
    """The frame the analysis fits: endpoint times and events, predictor levels, continuous values."""
    with Warehouse(twin_warehouse_url) as wh:
        patient_summary, survival = load_inputs(wh)
    population = ep.survival_population(patient_summary, MIN_FOLLOW_UP_MONTHS)
    levels, _ = predictors(population)
    frames = ep.endpoint_frame(patient_summary, survival, MIN_FOLLOW_UP_MONTHS)
    return (frames.select("patient_id", "endpoint", "time_months", pl.col("event").cast(pl.Int64))
            .join(levels, on="patient_id", how="left")
            .join(population.select("patient_id", *(v for v, _ in CONTINUOUS_PREDICTORS.values())), on="patient_id")
            .filter(pl.col("endpoint").is_in(["RMFS", "OS"])).drop("patient_id"))


def test_likelihood_ratio_and_ph_tests_of_table2_match_r_on_the_twin(twin_results, twin_frame):
    cox = twin_results.univariate_cox.filter(pl.col("lr_p").is_not_null())
    spec = cox.select("endpoint", "predictor", "level", "reference_level")
    r = run_r("""
d <- data$twin; s <- data$spec
out <- list()
for (k in unique(paste(s$endpoint, s$predictor))) {
  ss <- s[paste(s$endpoint, s$predictor) == k, ]
  e <- d[d$endpoint == ss$endpoint[1], ]
  v <- e[[ss$predictor[1]]]
  keep <- !is.na(v) & v %in% c(ss$level, ss$reference_level[1])
  df <- data.frame(time = e$time_months[keep], event = e$event[keep])
  for (j in seq_len(nrow(ss))) df[[paste0("x", j)]] <- as.numeric(v[keep] == ss$level[j])
  fit <- coxph(as.formula(paste("Surv(time, event) ~", paste0("x", seq_len(nrow(ss)), collapse = " + "))), data = df)
  z <- cox.zph(fit)
  out[[k]] <- list(lr = as_array(drop1(fit, test = "Chisq")$LRT[-1]), global = unname(summary(fit)$logtest[1]),
                   zph = unname(z$table["GLOBAL", "chisq"]), zph_p = unname(z$table["GLOBAL", "p"]))
}
emit(out)
""", data={"twin": twin_frame, "spec": spec})
    assert len(r) == cox.select("endpoint", "predictor").n_unique() >= 20
    for (endpoint, predictor), rows in cox.group_by(["endpoint", "predictor"], maintain_order=True):
        expected = r[f"{endpoint} {predictor}"]
        assert rows["lr_chi2"].to_list() == pytest.approx(expected["lr"], rel=1e-5, abs=1e-8), predictor
        assert rows["global_lr_chi2"][0] == pytest.approx(expected["global"], rel=1e-5), predictor
        assert rows["ph_chisq"][0] == pytest.approx(expected["zph"], rel=1e-4, abs=1e-8), predictor
        assert rows["ph_p"][0] == pytest.approx(expected["zph_p"], rel=1e-4), predictor


def test_adjusted_p_values_match_r_p_adjust_per_endpoint(twin_results):
    cox = twin_results.univariate_cox
    for endpoint in ("RMFS", "OS"):
        rows = cox.filter(pl.col("endpoint") == endpoint)
        r = run_r("""
p <- data$p$firth_lr_p
emit(list(holm = as_array(p.adjust(p, "holm")), bh = as_array(p.adjust(p, "BH"))))
""", data={"p": rows.select("firth_lr_p")})
        assert rows["p_holm"].to_list() == pytest.approx(r["holm"], rel=1e-12)
        assert rows["p_bh"].to_list() == pytest.approx(r["bh"], rel=1e-12)
        assert rows["adjusted_tests"].unique().to_list() == [rows["firth_lr_p"].drop_nulls().len()]


def test_continuous_predictors_and_spline_test_match_r_rms_on_the_twin(twin_results, twin_frame):
    fitted = twin_results.continuous_cox.filter(pl.col("nonlinear_p").is_not_null())
    assert fitted.height >= 2
    # with fewer than 10 events the linear model is still given, the spline test is not, and the row says why
    linear_only = twin_results.continuous_cox.filter(pl.col("events") < 10)
    assert linear_only.height >= 1 and linear_only["hr_per_unit"].null_count() == 0
    assert linear_only["nonlinear_p"].null_count() == linear_only.height
    assert linear_only["reason"].str.starts_with("no spline test").all()
    for row in fitted.iter_rows(named=True):
        data = twin_frame.filter(pl.col("endpoint") == row["endpoint"]).select(
            "time_months", "event", x=pl.col(row["variable"])).drop_nulls()
        r = run_r("""
d <- data$d
s <- rcspline.eval(d$x, nk = 3, inclx = TRUE)
lin <- coxph(Surv(time_months, event) ~ s[, 1], data = d)
spl <- coxph(Surv(time_months, event) ~ s, data = d)
emit(list(hr = unname(exp(coef(lin))), lr = unname(summary(lin)$logtest[1]), knots = as_array(attr(s, "knots")),
          nonlinear = anova(lin, spl)$Chisq[2]))
""", data={"d": data}, packages=("survival", "rms"))
        assert row["hr_per_unit"] == pytest.approx(r["hr"], rel=1e-5)
        assert row["lr_chi2"] == pytest.approx(r["lr"], rel=1e-5)
        assert [float(k) for k in row["spline_knots"].split(", ")] == pytest.approx(r["knots"], rel=1e-5)
        assert row["nonlinear_chi2"] == pytest.approx(r["nonlinear"], rel=1e-4)


def test_every_table2_row_with_patients_has_a_finite_firth_hazard_ratio(twin_results):
    u = twin_results.univariate_analysis.join(twin_results.univariate_cox, on=["endpoint", "predictor", "level"])
    with_patients = u.filter((pl.col("n_level") > 0) & (pl.col("n_reference") > 0) & (pl.col("events") > 0))
    assert with_patients["firth_hr"].null_count() == 0
    assert (with_patients["firth_ci_lower"] <= with_patients["firth_hr"]).all()
    assert (with_patients["firth_hr"] <= with_patients["firth_ci_upper"]).all()
    # rows the ordinary Cox model cannot estimate (no event in a group, too few events) get one too
    assert with_patients.filter(~pl.col("estimable")).height >= 1
    # the same model's LR test sits beside every Wald HR, and none beside a row without one
    assert (u["lr_p"].is_not_null() == u["estimable"]).all()


def test_table2_shows_firth_lr_adjusted_p_and_the_ph_flag(twin_results):
    t2 = twin_results.table2_display()
    for label in ("Local recurrence or metastasis", "Overall survival"):
        for column in ("HR (95 % CI)", "Firth HR (95 % PL CI)", "p (LR)", "p (log-rank)",
                       "p Firth LR (Holm / BH)", "PH"):
            assert f"{label}: {column}" in t2.columns
    labels = {"RMFS": "Local recurrence or metastasis", "OS": "Overall survival"}
    shown = twin_results.univariate_cox.join(twin_results.univariate_analysis.select(
        "endpoint", "predictor", "level", "predictor_label", "reference_level"), on=["endpoint", "predictor", "level"])
    # Table 2 prints one row per level in row order (comparisons in words, not codes)
    order = twin_results.univariate_analysis.filter(pl.col("endpoint") == "RMFS").sort("row_order")
    index = {(p, level): i for i, (p, level) in enumerate(zip(order["predictor"], order["level"]))}
    for row in shown.filter(pl.col("ph_p").is_not_null()).iter_rows(named=True):
        cell = t2[f"{labels[row['endpoint']]}: PH"][index[(row["predictor"], row["level"])]]
        assert cell.startswith("violated") == row["ph_violated"], (row["predictor"], cell)


def test_multivariable_model_shows_events_per_variable_and_warns_below_ten(twin_results):
    m = twin_results.multivariable_cox
    assert set(m["term"]) == {"grade_ii_iii", "differentiation_moderate_poor", "mitoses_gt_10"}
    for row in m.iter_rows(named=True):
        assert row["events_per_variable"] == pytest.approx(row["events"] / 3)
        assert (row["warning"] is not None) == (row["events_per_variable"] < 10)
        assert row["firth_hr"] is not None and row["firth_ci_lower"] < row["firth_hr"] < row["firth_ci_upper"]
    shown = twin_results.multivariable_display()
    assert shown.height == m.height and "Events per variable" in shown.columns
