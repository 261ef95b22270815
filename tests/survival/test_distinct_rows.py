"""Fitting on distinct rows weighted by their number gives the fits of one row per patient.

The survival analysis collapses patients with the same time, event and covariates before fitting
(``clms_etl.survival.efron``, ``clms_etl.survival.firth``, Fine-Gray in ``competing``); these tests
hold the collapsed fits to the libraries' fits on the patients' own rows. R stays the oracle of the
numbers themselves (``test_r_oracle_*``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clms_etl.survival import efron
from clms_etl.survival.cox import firth_cox


def _tied_cohort(seed: int, n: int = 400, p: int = 2):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, p)) < 0.4).astype(float)
    time = np.round(rng.exponential(6, n))  # whole months: many ties
    event = rng.random(n) < 0.6
    return x, time, event


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_firth_on_weighted_distinct_rows_equals_firthmodels_on_patient_rows(seed):
    from firthmodels import FirthCoxPH

    x, time, event = _tied_cohort(seed)
    assert efron.tied_rows(x, time, event).x.shape[0] < len(time) / 2  # the cohort does collapse
    model = FirthCoxPH(backend="numpy").fit(x, (event, time))
    model.lrt()
    ci = np.exp(model.conf_int(method="pl", max_iter=200))
    for j, term in enumerate(firth_cox(x, time, event)):
        assert term.coef == pytest.approx(model.coef_[j], abs=1e-7)
        assert term.se == pytest.approx(model.bse_[j], rel=1e-7)
        assert (term.ci_lower, term.ci_upper) == pytest.approx(tuple(ci[j]), rel=1e-6)
        assert term.lr_p == pytest.approx(model.lrt_pvalues_[j], rel=1e-6)


@pytest.mark.parametrize("seed", [4, 5])
def test_efron_cox_on_distinct_rows_equals_lifelines_on_patient_rows(seed):
    from lifelines import CoxPHFitter

    x, time, event = _tied_cohort(seed)
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(time=time, event=event)
    reference = CoxPHFitter().fit(frame, "time", "event", fit_options={"precision": 1e-12})
    fitted = efron.fit(efron.tied_rows(x, time, event))
    assert fitted.coef == pytest.approx(reference.params_.to_numpy(), abs=1e-7)
    assert fitted.variance == pytest.approx(reference.variance_matrix_.to_numpy(), rel=1e-6)
    assert fitted.loglik == pytest.approx(reference.log_likelihood_, rel=1e-10)


# -- the study's analyses on rows collapsed once per endpoint (``weight_col``) ------------------------


def _patients_with_levels(seed: int, n: int = 2000):
    import polars as pl

    rng = np.random.default_rng(seed)

    def levels(values, p=None):
        return pl.Series(rng.choice(values, n, p=p).tolist(), dtype=pl.String)
    return pl.DataFrame({
        "time_months": rng.integers(1, 11, n).astype(float),  # whole months: many ties
        "event": (rng.random(n) < 0.5).astype(np.int64),
        "cause": rng.integers(0, 3, n),
        "site": levels(["head_neck", "trunk", "upper_limb", "lower_limb", None], [0.2, 0.3, 0.2, 0.2, 0.1]),
        "grade": levels(["I", "II/III"]),
        "mitoses": levels(["low", "high", None], [0.5, 0.4, 0.1]),
    })


def _collapsed(frame, *columns):
    import polars as pl

    from clms_etl.survival.univariate import PATIENTS

    return frame.group_by(*columns).agg(pl.len().alias(PATIENTS)).sort(*columns, nulls_last=True)


def _same(a, b):
    """Rows of results equal to the printed digits (floats to 1e-9, the rest exactly)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float) and x[k] == x[k]:
                assert y[k] == pytest.approx(x[k], rel=1e-9, abs=1e-12), k
            else:
                assert y[k] == x[k] or (x[k] != x[k] and y[k] != y[k]), k


@pytest.mark.parametrize("seed", [6, 7])
def test_univariate_and_cox_inference_on_collapsed_rows_equal_the_patient_rows(seed):
    from clms_etl.survival import inference
    from clms_etl.survival.univariate import PATIENTS, Predictor, univariate

    data = _patients_with_levels(seed)
    rows = _collapsed(data, "time_months", "event", "site", "grade", "mitoses")
    assert rows.height < data.height / 2
    site = Predictor("site", "Site", "head_neck", ("trunk", "upper_limb", "lower_limb"), "each site vs head and neck")
    per_patient = univariate(data, site)
    _same(per_patient, univariate(rows, site, weight_col=PATIENTS))
    estimable = [r["level"] for r in per_patient if r["estimable"]]
    cox, ph, residuals = inference.univariate_cox(data, site, estimable, "OS")
    cox_w, ph_w, residuals_w = inference.univariate_cox(rows, site, estimable, "OS", weight_col=PATIENTS)
    _same(cox, cox_w)
    _same(ph, ph_w)
    # the same residuals per event time (ties of different covariates in the order of the rows)
    keys = ["time_months", "scaled_residual"]
    assert residuals_w[0].sort(keys)["scaled_residual"].to_numpy() == pytest.approx(
        residuals[0].sort(keys)["scaled_residual"].to_numpy(), rel=1e-9)
    grade = Predictor("grade", "Grade", "I", ("II/III",), "II/III vs I")
    mitoses = Predictor("mitoses", "Mitoses", "low", ("high",), "high vs low")
    multi, multi_ph, _ = inference.multivariable_rows(data, [grade, mitoses], "OS")
    multi_w, multi_ph_w, _ = inference.multivariable_rows(rows, [grade, mitoses], "OS", weight_col=PATIENTS)
    _same(multi, multi_w)
    _same(multi_ph, multi_ph_w)


@pytest.mark.parametrize("seed", [8])
def test_gray_test_and_fine_gray_on_collapsed_rows_equal_the_patient_rows(seed):
    from clms_etl.survival import competing as cr
    from clms_etl.survival.univariate import PATIENTS

    data = _patients_with_levels(seed).drop_nulls("site")
    rows = _collapsed(data, "time_months", "cause", "site")
    test = cr.gray_test(data["time_months"].to_numpy(), data["cause"].to_numpy(), data["site"].to_numpy())
    weighted = cr.gray_test(rows["time_months"].to_numpy(), rows["cause"].to_numpy(), rows["site"].to_numpy(),
                            weight=rows[PATIENTS].to_numpy())
    assert (weighted.statistic, weighted.df, weighted.p) == pytest.approx((test.statistic, test.df, test.p), rel=1e-9)
    x, xw = ((f["site"] == "trunk").cast(float).to_numpy()[:, None] for f in (data, rows))
    fg = cr.fine_gray(data["time_months"].to_numpy(), data["cause"].to_numpy(), x)
    fgw = cr.fine_gray(rows["time_months"].to_numpy(), rows["cause"].to_numpy(), xw, weight=rows[PATIENTS].to_numpy())
    assert (fgw.n, fgw.events, fgw.competing) == (fg.n, fg.events, fg.competing)
    assert fgw.coef == pytest.approx(fg.coef, rel=1e-9) and fgw.se == pytest.approx(fg.se, rel=1e-9)
