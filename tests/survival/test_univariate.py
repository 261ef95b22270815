"""Log-rank, Cox (Efron) and the not-estimable rule: R's published `lung` results and small frames."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from lifelines.datasets import load_lung

from clms_etl.survival.univariate import MIN_EVENTS, Predictor, compare_means, hazard_ratios, logrank, univariate


@pytest.fixture(scope="module")
def lung() -> pl.DataFrame:
    return pl.from_pandas(load_lung()).select(
        pl.col("time").cast(pl.Float64), pl.col("status").cast(pl.Int64),
        female=(pl.col("sex") == 2).cast(pl.Int64), sex=pl.when(pl.col("sex") == 2).then(pl.lit("female"))
        .otherwise(pl.lit("male")))


def test_lung_logrank_by_sex_matches_r_survdiff(lung):
    # R: survdiff(Surv(time, status) ~ sex, lung) -> Chisq = 10.3 on 1 df, p = 0.00131
    chi2, df, p = logrank(lung, "time", "status", "sex")
    assert chi2 == pytest.approx(10.3, abs=0.05) and df == 1
    assert p == pytest.approx(0.00131, abs=5e-6)


def test_lung_cox_hazard_ratio_of_sex_matches_r_coxph_on_a_plain_frame(lung):
    # R: coxph(Surv(time, status) ~ sex, lung) (Efron ties) -> exp(coef) 0.588, 95 % CI 0.424-0.816
    hr = hazard_ratios(lung, "time", "status", ["female"])["female"]
    assert hr.hr == pytest.approx(0.588, abs=5e-4)
    assert (hr.ci_lower, hr.ci_upper) == (pytest.approx(0.424, abs=5e-4), pytest.approx(0.816, abs=5e-4))
    assert hr.p == pytest.approx(0.00149, abs=1e-5)


def test_univariate_row_of_lung_sex_carries_hr_logrank_and_events_per_group(lung):
    (row,) = univariate(lung.rename({"time": "time_months", "status": "event"}),
                        Predictor("sex", "Sex", "male", ("female",), "female vs male"))
    assert row["estimable"] and row["reason"] is None and row["ties"] == "efron"
    assert row["hr"] == pytest.approx(0.588, abs=5e-4) and row["logrank_p"] == pytest.approx(0.00131, abs=5e-6)
    assert (row["n_level"], row["n_reference"]) == (90, 138)
    assert row["events_level"] + row["events_reference"] == row["events"] == 165


def _frame(groups: list[str | None], times: list[float], events: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"time_months": [float(t) for t in times], "event": events, "x": groups})


PREDICTOR = Predictor("x", "X", "a", ("b",), "b vs a")


def test_a_group_without_event_is_not_estimable_but_keeps_its_log_rank_test():
    frame = _frame(["a"] * 6 + ["b"] * 4, [1, 2, 3, 4, 5, 6, 2, 4, 6, 8], [1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    (row,) = univariate(frame, PREDICTOR)
    assert row["estimable"] is False and row["hr"] is None and row["hr_ci_lower"] is None
    assert "no event in group b" in row["reason"]
    assert row["logrank_p"] is not None and 0 < row["logrank_p"] < 1
    assert (row["events_level"], row["events_reference"]) == (0, 5)


def test_too_few_events_in_all_is_not_estimable():
    frame = _frame(["a"] * 5 + ["b"] * 5, list(range(1, 11)), [1, 0, 0, 0, 1, 1, 0, 0, 0, 0])
    (row,) = univariate(frame, PREDICTOR)
    assert 3 < MIN_EVENTS and row["estimable"] is False
    assert f"3 events < {MIN_EVENTS}" in row["reason"]


def test_unknown_values_are_left_out_and_counted_nowhere():
    frame = _frame(["a", "a", "a", "b", "b", "b", None, None], [1, 2, 3, 1.5, 2.5, 3.5, 1, 1],
                   [1, 1, 0, 1, 1, 1, 1, 1])
    (row,) = univariate(frame, PREDICTOR)
    assert (row["n"], row["events"], row["n_level"], row["n_reference"]) == (6, 5, 3, 3)
    assert row["estimable"] and row["hr"] > 0


def test_multilevel_predictor_has_one_hazard_ratio_per_level_and_one_global_log_rank():
    rng = np.random.default_rng(3)
    groups = ["a"] * 20 + ["b"] * 20 + ["c"] * 20
    times = np.concatenate([rng.exponential(10, 20), rng.exponential(5, 20), rng.exponential(20, 20)])
    frame = _frame(groups, times.tolist(), [1] * 60)
    rows = univariate(frame, Predictor("x", "X", "a", ("b", "c"), "b, c vs a"))
    assert [r["level"] for r in rows] == ["b", "c"]
    assert all(r["estimable"] for r in rows)
    assert rows[0]["logrank_df"] == 2 and rows[0]["logrank_p"] == rows[1]["logrank_p"]
    assert rows[0]["hr"] > 1 > rows[1]["hr"]  # b dies faster than a, c slower


def test_group_means_are_compared_with_welch_t_test():
    values = pl.Series([1.0, 1.2, 0.8, 1.1, 2.0, 2.5, 1.5, 1.8, 2.2, None])
    groups = pl.Series([True, True, True, True, False, False, False, False, False, False])
    out = compare_means(values, groups)
    a, b = np.array([1.0, 1.2, 0.8, 1.1]), np.array([2.0, 2.5, 1.5, 1.8, 2.2])
    t = (a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert out["test"].startswith("Welch")
    assert (out["n_with"], out["n_without"]) == (4, 5)
    assert out["statistic"] == pytest.approx(t) and 0 < out["p"] < 0.01
