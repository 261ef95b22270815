"""Firth, likelihood-ratio tests, cox.zph, p.adjust and the spline test against coxphf's published
output and R itself (survival, rms) on the same data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from lifelines.datasets import load_lung

from clms_etl.survival.cox import (continuous_cox, cox_loglik, cox_zph, firth_cox, lr_test, p_adjust, rcs_basis,
                                   rcs_knots)
from tests.r_oracle import run_r

BREAST = Path(__file__).parent / "data" / "coxphf_breast.csv"


@pytest.fixture(scope="module")
def lung() -> pl.DataFrame:
    """R's lung data (shipped by lifelines), complete cases of the columns used here."""
    return (pl.from_pandas(load_lung()).select("time", "status", "sex", "age", "ph.ecog", "wt.loss")
            .drop_nulls().rename({"ph.ecog": "ecog", "wt.loss": "wt_loss"})
            .with_columns(pl.col("status").cast(pl.Int64), female=(pl.col("sex") == 2).cast(pl.Int64),
                          ecog1=(pl.col("ecog") == 1).cast(pl.Int64), ecog2=(pl.col("ecog") >= 2).cast(pl.Int64)))


def test_firth_cox_reproduces_coxphf_on_the_breast_data():
    """coxphf(Surv(TIME, CENS) ~ T + N + G + CD, breast), profile likelihood, as printed by coxphf 1.13.4
    (the T and N rows: coef, se(coef), exp(coef), lower/upper 0.95, Chisq, p)."""
    b = pl.read_csv(BREAST)
    fit = firth_cox(b.select("T", "N", "G", "CD").to_numpy(), b["TIME"].to_numpy(), b["CENS"].to_numpy())
    published = {0: (1.2244388, 0.4916044, 3.402256, 1.3627461, 9.472184, 6.983773, 0.008225204),
                 1: (0.9188882, 0.4225734, 2.506502, 1.1204552, 5.832863, 5.004409, 0.025282830)}
    for j, (coef, se, hr, lower, upper, chi2, p) in published.items():
        t = fit[j]
        assert t.coef == pytest.approx(coef, abs=1e-6)  # coxphf stops at its own tolerance
        assert t.se == pytest.approx(se, abs=1e-7)
        assert t.hr == pytest.approx(hr, abs=2e-6)
        assert (t.ci_lower, t.ci_upper) == pytest.approx((lower, upper), rel=1e-6)
        assert (t.lr_chi2, t.lr_p) == pytest.approx((chi2, p), rel=1e-6)
    # G has monotone likelihood (every event has G = 1): coxph diverges (18.4, se 4317), Firth is finite
    assert np.isfinite([fit[2].hr, fit[2].ci_lower, fit[2].ci_upper]).all() and fit[2].ci_lower > 1


def test_cox_likelihood_ratio_tests_match_r_anova(lung):
    time, event = lung["time"].to_numpy(), lung["status"].to_numpy()
    x = lung.select("female", "ecog1", "ecog2").to_numpy()
    ll_full, coef, _ = cox_loglik(x, time, event)
    ll_sex, _, _ = cox_loglik(x[:, :1], time, event)
    ll_ecog1_dropped, _, _ = cox_loglik(x[:, [0, 2]], time, event)
    ll_null, _, _ = cox_loglik(None, time, event)
    r = run_r("""
d <- data$lung
full <- coxph(Surv(time, status) ~ female + ecog1 + ecog2, data = d)
emit(list(coef = as_array(unname(coef(full))), loglik = as_array(full$loglik),
          lr_global = anova(coxph(Surv(time, status) ~ female, data = d), full)$Chisq[2],
          lr_ecog1 = drop1(full, test = "Chisq")[["LRT"]][3],
          lr_model = unname(summary(full)$logtest[1])))
""", data={"lung": lung})
    assert coef == pytest.approx(r["coef"], rel=1e-6)
    assert (ll_null, ll_full) == pytest.approx(r["loglik"], rel=1e-9)
    assert lr_test(ll_full, ll_sex, 2)[0] == pytest.approx(r["lr_global"], rel=1e-6)
    assert lr_test(ll_full, ll_ecog1_dropped, 1)[0] == pytest.approx(r["lr_ecog1"], rel=1e-6)
    assert lr_test(ll_full, ll_null, 3)[0] == pytest.approx(r["lr_model"], rel=1e-6)


def test_cox_zph_matches_r_per_term_and_global(lung):
    time, event = lung["time"].to_numpy(), lung["status"].to_numpy()
    x = lung.select("female", "age", "ecog1", "ecog2").to_numpy().astype(float)
    _, coef, _ = cox_loglik(x, time, event)
    zph = cox_zph(x, time, event, coef, {"sex": [0], "age": [1], "ecog": [2, 3]})
    r = run_r("""
d <- data$lung
d$ecog <- factor(ifelse(d$ecog >= 2, 2, d$ecog))
z <- cox.zph(coxph(Surv(time, status) ~ female + age + ecog, data = d))
emit(list(chisq = as_array(unname(z$table[, "chisq"])), df = as_array(unname(z$table[, "df"])),
          p = as_array(unname(z$table[, "p"])), x = as_array(z$x), y1 = as_array(unname(z$y[, 1])), y3 = as_array(unname(z$y[, 3]))))
""", data={"lung": lung})
    ours = [*zph.terms.values(), zph.global_test]
    assert [c for c, _, _ in ours] == pytest.approx(r["chisq"], rel=1e-6)
    assert [df for _, df, _ in ours] == r["df"]
    assert [p for _, _, p in ours] == pytest.approx(r["p"], rel=1e-6)
    assert zph.transformed_times == pytest.approx(r["x"], rel=1e-9)
    assert zph.scaled_residuals[:, 0] == pytest.approx(r["y1"], rel=1e-6)
    assert zph.scaled_residuals[:, 2] == pytest.approx(r["y3"], rel=1e-6)  # the factor's combined column


def test_p_adjust_matches_r_holm_and_bh():
    p = [0.01, 0.04, None, 0.03, 0.2, 0.0005, 0.04]
    r = run_r("""
p <- c(0.01, 0.04, NA, 0.03, 0.2, 0.0005, 0.04)
emit(list(holm = as_array(p.adjust(p, "holm")), bh = as_array(p.adjust(p, "BH"))))
""")
    for method, key in (("holm", "holm"), ("BH", "bh")):
        ours = p_adjust(p, method)
        assert ours[2] is None and r[key][2] is None
        assert [v for v in ours if v is not None] == pytest.approx([v for v in r[key] if v is not None], rel=1e-12)


def test_continuous_cox_and_spline_nonlinearity_match_r_rms(lung):
    time, event = lung["time"].to_numpy(), lung["status"].to_numpy()
    for column in ("age", "wt_loss"):
        x = lung[column].to_numpy().astype(float)
        fit = continuous_cox(x, time, event)
        r = run_r(f"""
d <- data$lung
s <- rcspline.eval(d${column}, nk = 3, inclx = TRUE)
lin <- coxph(Surv(time, status) ~ s[, 1], data = d)
spl <- coxph(Surv(time, status) ~ s, data = d)
emit(list(knots = as_array(attr(s, "knots")), basis = as_array(s[, 2]), coef = unname(coef(lin)),
          wald_p = summary(lin)$coefficients[1, 5], lr = unname(summary(lin)$logtest[1]),
          nonlinear = anova(lin, spl)$Chisq[2], nonlinear_p = anova(lin, spl)[["Pr(>|Chi|)"]][2]))
""", data={"lung": lung}, packages=("survival", "rms"))
        assert rcs_knots(x) == pytest.approx(r["knots"], rel=1e-12)
        assert rcs_basis(x, rcs_knots(x))[:, 0] == pytest.approx(r["basis"], rel=1e-9, abs=1e-12)
        assert fit.coef == pytest.approx(r["coef"], rel=1e-6)
        assert fit.wald_p == pytest.approx(r["wald_p"], rel=1e-5)
        assert fit.lr_chi2 == pytest.approx(r["lr"], rel=1e-6)
        assert (fit.nonlinear_chi2, fit.nonlinear_p) == pytest.approx((r["nonlinear"], r["nonlinear_p"]), rel=1e-5)


def test_the_firth_lr_statistic_of_a_strong_effect_in_a_large_cohort_is_finite():
    """At national scale a strong predictor's penalised LR statistic passes ~1,500, where its p-value
    underflows to 0: the statistic was recovered from p (chi2.isf(0) = inf) and broke the Stata export.
    It is the statistic itself, close to the ordinary LR test with thousands of events."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2, 6000).astype(float)
    time = rng.exponential(1.0 / np.exp(2.5 * x))
    event = (time < rng.exponential(2.0, 6000)).astype(int)
    time = np.minimum(time, 3.0)
    [term] = firth_cox(x[:, None], time, event)
    ordinary, _ = lr_test(cox_loglik(x[:, None], time, event)[0], cox_loglik(None, time, event)[0], 1)
    assert term.lr_p == 0.0 and ordinary > 2000  # the case that used to come back infinite
    assert np.isfinite(term.lr_chi2) and term.lr_chi2 == pytest.approx(ordinary, rel=0.01)
