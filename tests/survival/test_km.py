"""Kaplan-Meier with R's conventions: checked against published R output on R's `lung` data
(lifelines ships it as `load_lung`, status 1 = death) and on hand-computed tiny examples."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung

from clms_etl.survival.km import kaplan_meier, r_quantile, reverse_kaplan_meier

Z = NormalDist().inv_cdf(0.975)


@pytest.fixture(scope="module")
def lung():
    return load_lung()


def test_lung_median_and_its_log_ci_match_r_survfit(lung):
    # R: survfit(Surv(time, status) ~ 1, lung) -> median 310, 0.95LCL 285, 0.95UCL 363
    km = kaplan_meier(lung["time"], lung["status"])
    assert km.ci_transform == "log"
    assert km.median() == (310.0, 285.0, 363.0)
    assert (km.n, km.n_events) == (228, 165)


def test_lung_survival_at_one_year_with_log_ci_matches_r_summary(lung):
    # R: summary(survfit(Surv(time, status) ~ 1, lung), times = 365): n.risk 65, survival 0.409, CI 0.345-0.486
    at = kaplan_meier(lung["time"], lung["status"], ci_transform="log").at(365)
    assert at["n_at_risk"] == 65
    assert at["survival"] == pytest.approx(0.409, abs=5e-4)
    assert at["ci_lower"] == pytest.approx(0.345, abs=5e-4)
    assert at["ci_upper"] == pytest.approx(0.486, abs=5e-4)


def test_log_log_interval_is_lifelines_own(lung):
    km = kaplan_meier(lung["time"], lung["status"], ci_transform="log-log")
    reference = KaplanMeierFitter().fit(lung["time"], lung["status"]).confidence_interval_survival_function_
    defined = (km.survival < 1) | (km.time == 0)  # at S = 1, R has no log-log interval (lifelines: [1, 1])
    assert np.allclose(km.ci_lower[defined], reference.iloc[:, 0].to_numpy()[defined])
    assert np.allclose(km.ci_upper[defined], reference.iloc[:, 1].to_numpy()[defined])
    log = kaplan_meier(lung["time"], lung["status"], ci_transform="log")
    assert not np.allclose(km.ci_lower, log.ci_lower, equal_nan=True)  # the two transforms really differ


def test_both_transforms_by_hand_from_greenwood_on_five_deaths():
    # deaths at 1..5 of 5 patients: S(2) = 0.6, Greenwood var(log S) = 1/(5*4) + 1/(4*3)
    se = math.sqrt(1 / 20 + 1 / 12)
    log = kaplan_meier([1, 2, 3, 4, 5], [1, 1, 1, 1, 1], ci_transform="log").at(2)
    assert log["survival"] == pytest.approx(0.6)
    assert log["ci_lower"] == pytest.approx(0.6 * math.exp(-Z * se))
    assert log["ci_upper"] == 1.0  # 0.6 * exp(+z se) > 1: capped like R
    loglog = kaplan_meier([1, 2, 3, 4, 5], [1, 1, 1, 1, 1], ci_transform="log-log").at(2)
    # R conf.type = "log-log": S ^ exp(+-z se / log S)
    assert loglog["ci_lower"] == pytest.approx(0.6 ** math.exp(-Z * se / math.log(0.6)))
    assert loglog["ci_upper"] == pytest.approx(0.6 ** math.exp(Z * se / math.log(0.6)))


def test_log_interval_is_undefined_where_survival_reaches_zero():
    km = kaplan_meier([1, 2], [1, 1], ci_transform="log")
    assert km.survival[-1] == 0 and math.isnan(km.ci_lower[-1]) and math.isnan(km.ci_upper[-1])
    assert km.curve()["ci_lower"].to_list()[-1] is None


def test_median_is_the_midpoint_when_the_curve_sits_exactly_at_one_half():
    km = kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1])  # S = 0.5 on [2, 3)
    assert KaplanMeierFitter().fit([1, 2, 3, 4], [1, 1, 1, 1]).median_survival_time_ == 2  # lifelines' rule
    assert km.median()[0] == 2.5  # R's rule


def test_median_of_a_curve_ending_flat_at_one_half_is_the_midpoint_to_the_last_follow_up():
    km = kaplan_meier([1, 2, 3, 4], [1, 1, 0, 0])  # S = 0.5 from 2 to the end of follow-up (4)
    assert km.median()[0] == 3.0


def test_median_not_reached_is_none_and_survival_beyond_follow_up_is_null():
    km = kaplan_meier([1, 2, 3, 4], [1, 0, 0, 0])
    median, lower, upper = km.median()
    assert median is None and upper is None
    assert lower == 1.0  # the lower confidence curve does fall below one half (R gives the bound too)
    assert km.at(5)["survival"] is None and km.at(5)["n_at_risk"] == 0
    assert km.at(4)["survival"] == pytest.approx(0.75)


def test_r_quantile_takes_the_first_time_the_curve_drops_below_the_level():
    assert r_quantile(np.array([1.0, 2.0, 3.0]), np.array([0.9, 0.4, 0.1]), 0.5) == 2.0


def test_reverse_kaplan_meier_censors_deaths_in_the_follow_up_distribution():
    # follow-up 1 (death), 2, 3, 4 (alive): the death is censored, last news are the events:
    # reverse KM 1 -> 2/3 -> 1/3 -> 0, median 3 (the naive median of the four times would be 2.5)
    rkm = reverse_kaplan_meier([1, 2, 3, 4], [1, 0, 0, 0])
    assert rkm.n_events == 3
    assert rkm.median()[0] == 3.0


def test_unknown_ci_transform_is_refused():
    with pytest.raises(ValueError, match="ci_transform"):
        kaplan_meier([1, 2], [1, 0], ci_transform="plain")


def test_log_log_interval_is_undefined_where_survival_is_one_as_in_r():
    # R: f <- survfit(Surv(c(1, 3, 4, 5), c(0, 1, 0, 1)) ~ 1, conf.type = "log-log")
    #    f$lower: NA 0.05407343 0.05407343 NA; summary(f, times = c(0.5, 1, 2))$lower: 1 NA NA
    km = kaplan_meier([1, 3, 4, 5], [0, 1, 0, 1], ci_transform="log-log")
    assert (km.at(0.5)["ci_lower"], km.at(0.5)["ci_upper"]) == (1.0, 1.0)
    for t in (1, 2, 5):
        assert (km.at(t)["ci_lower"], km.at(t)["ci_upper"]) == (None, None), t
    assert km.at(3)["ci_lower"] == pytest.approx(0.05407343, abs=1e-8)
    assert km.at(3)["ci_upper"] == pytest.approx(0.9452064, abs=1e-7)
    # the log transform keeps [1, 1] at S = 1, as R's conf.type = "log" does
    log = kaplan_meier([1, 3, 4, 5], [0, 1, 0, 1], ci_transform="log").at(1)
    assert (log["ci_lower"], log["ci_upper"]) == (1.0, 1.0)
