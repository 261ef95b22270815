"""Univariate analysis: log-rank test and Cox hazard ratio per predictor, on plain frames.

Conventions (as R ``survival``): log-rank test over all levels of the predictor
(``survdiff``; lifelines ``logrank_test`` / ``multivariate_logrank_test``); Cox proportional
hazards with **Efron** ties (``coxph``'s default; lifelines' ``CoxPHFitter``), one indicator per
non-reference level, Wald 95 % CI and p-value.

**Not estimable.** A hazard ratio is reported only when the compared level and the reference
level each have at least :data:`MIN_EVENTS_PER_GROUP` event and the comparison has at least
:data:`MIN_EVENTS` events in all: with no event in a group the partial likelihood has no finite
maximum (the HR runs off to 0 or infinity) and with a handful of events the Wald interval means
nothing. Such rows carry ``estimable = False`` and the reason; the log-rank test is still
reported when there is at least one event.

Group means (the clinical margin with vs without relapse) are compared with **Welch's
two-sample t-test** (unequal variances, two-sided), :func:`scipy.stats.ttest_ind`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

MIN_EVENTS = 5  # events in the comparison (level + reference) for a hazard ratio
MIN_EVENTS_PER_GROUP = 1  # events in each of the compared groups
TIES = "efron"
MAX_CI_RATIO = 1e6  # upper / lower bound of the HR's CI beyond which the model is taken as diverging


@dataclass(frozen=True)
class Predictor:
    """A predictor of the univariate analysis, as a column of string levels (null = unknown)."""

    key: str
    label: str
    reference: str
    levels: tuple[str, ...]  # compared levels, in display order
    definition: str


@dataclass(frozen=True)
class HazardRatio:
    covariate: str
    hr: float
    ci_lower: float
    ci_upper: float
    p: float


def hazard_ratios(frame: pl.DataFrame, duration_col: str, event_col: str, covariates: Sequence[str],
                  alpha: float = 0.05) -> dict[str, HazardRatio]:
    """Cox model (Efron ties) of ``event_col`` over ``duration_col`` on numeric ``covariates``.

    A plain frame in, hazard ratios with Wald CI out; raises lifelines' ``ConvergenceError`` when
    the model does not converge.
    """
    from lifelines import CoxPHFitter

    data = frame.select(duration_col, event_col, *covariates).drop_nulls().to_pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines' convergence hints: not estimable rows say why
        model = CoxPHFitter(alpha=alpha).fit(data, duration_col=duration_col, event_col=event_col)
    s = model.summary
    lower = next(c for c in s.columns if c.startswith("exp(coef) lower"))
    upper = next(c for c in s.columns if c.startswith("exp(coef) upper"))
    return {c: HazardRatio(c, float(s.loc[c, "exp(coef)"]), float(s.loc[c, lower]), float(s.loc[c, upper]),
                           float(s.loc[c, "p"])) for c in covariates}


def logrank(frame: pl.DataFrame, duration_col: str, event_col: str, group_col: str) -> tuple[float, int, float]:
    """Log-rank test over the groups of ``group_col``: (chi-square, degrees of freedom, p)."""
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    groups = frame[group_col].unique(maintain_order=True).to_list()
    if len(groups) == 2:
        a, b = (frame.filter(pl.col(group_col) == g) for g in groups)
        result = logrank_test(a[duration_col].to_numpy(), b[duration_col].to_numpy(),
                              a[event_col].to_numpy(), b[event_col].to_numpy())
    else:
        result = multivariate_logrank_test(frame[duration_col].to_numpy(), frame[group_col].to_numpy(),
                                           frame[event_col].to_numpy())
    return float(result.test_statistic), len(groups) - 1, float(result.p_value)


def univariate(frame: pl.DataFrame, predictor: Predictor, duration_col: str = "time_months",
               event_col: str = "event") -> list[dict]:
    """Rows of ``univariate_analysis`` for one predictor: one per compared level vs the reference.

    ``frame`` holds the durations, the event flags and a column named ``predictor.key`` with the
    predictor's levels (null: unknown, left out).
    """
    from lifelines.exceptions import ConvergenceError

    known = predictor.levels + (predictor.reference,)
    data = frame.select(duration_col, event_col, predictor.key).drop_nulls().filter(pl.col(predictor.key).is_in(known))
    counts = {lvl: (data.filter(pl.col(predictor.key) == lvl).height,
                    int(data.filter(pl.col(predictor.key) == lvl)[event_col].sum())) for lvl in known}
    n, events = data.height, int(data[event_col].sum())
    present = [lvl for lvl in known if counts[lvl][0] > 0]

    chi2 = df = p_logrank = None
    if len(present) >= 2 and events > 0:
        chi2, df, p_logrank = logrank(data, duration_col, event_col, predictor.key)

    reasons: dict[str, str] = {}
    ref_n, ref_events = counts[predictor.reference]
    for lvl in predictor.levels:
        lvl_n, lvl_events = counts[lvl]
        if lvl_n == 0 or ref_n == 0:
            reasons[lvl] = f"no patient in {'level ' + lvl if lvl_n == 0 else 'the reference ' + predictor.reference}"
        elif lvl_events < MIN_EVENTS_PER_GROUP or ref_events < MIN_EVENTS_PER_GROUP:
            empty = lvl if lvl_events < MIN_EVENTS_PER_GROUP else predictor.reference
            reasons[lvl] = f"no event in group {empty}: the hazard ratio has no finite estimate"
        elif lvl_events + ref_events < MIN_EVENTS:
            reasons[lvl] = f"{lvl_events + ref_events} events < {MIN_EVENTS}, the minimum for a hazard ratio"

    # One Cox model with an indicator per estimable level (R: coxph(~ factor)); the patients of
    # non-estimable levels are left out of it, so that they cannot make it diverge.
    fit_levels = [lvl for lvl in predictor.levels if lvl not in reasons]
    ratios: dict[str, HazardRatio] = {}
    if fit_levels:
        design = data.filter(pl.col(predictor.key).is_in([*fit_levels, predictor.reference])).with_columns(
            [(pl.col(predictor.key) == lvl).cast(pl.Int8).alias(f"level_{i}") for i, lvl in enumerate(fit_levels)])
        try:
            fitted = hazard_ratios(design, duration_col, event_col, [f"level_{i}" for i in range(len(fit_levels))])
            ratios = {lvl: fitted[f"level_{i}"] for i, lvl in enumerate(fit_levels)}
        except ConvergenceError as exc:
            for lvl in fit_levels:
                reasons[lvl] = f"Cox model did not converge ({str(exc).splitlines()[0][:80]})"
        for lvl, r in list(ratios.items()):
            # a 95 % CI spanning six orders of magnitude is the signature of a likelihood without a
            # finite maximum (separation), not of an estimate
            if not all(np.isfinite([r.hr, r.ci_lower, r.ci_upper])) or r.ci_upper / max(r.ci_lower, 1e-300) > MAX_CI_RATIO:
                reasons[lvl] = "hazard ratio diverges (monotone likelihood)"
                del ratios[lvl]

    rows = []
    for lvl in predictor.levels:
        r = ratios.get(lvl)
        rows.append({
            "predictor": predictor.key, "predictor_label": predictor.label, "level": lvl,
            "reference_level": predictor.reference, "definition": predictor.definition,
            "n": n, "events": events, "n_level": counts[lvl][0], "events_level": counts[lvl][1],
            "n_reference": ref_n, "events_reference": ref_events,
            "hr": r.hr if r else None, "hr_ci_lower": r.ci_lower if r else None,
            "hr_ci_upper": r.ci_upper if r else None, "cox_p": r.p if r else None,
            "logrank_chi2": chi2, "logrank_df": df, "logrank_p": p_logrank,
            "estimable": r is not None, "reason": None if r else reasons.get(lvl), "ties": TIES,
        })
    return rows


def compare_means(values: pl.Series, groups: pl.Series) -> dict:
    """Welch's two-sample t-test of ``values`` between ``groups`` True and False (nulls left out)."""
    from scipy import stats

    data = pl.DataFrame({"value": values, "group": groups}).drop_nulls()
    a = data.filter(pl.col("group"))["value"].to_numpy()
    b = data.filter(~pl.col("group"))["value"].to_numpy()
    out = {"n_with": a.size, "mean_with": _mean(a), "sd_with": _sd(a),
           "n_without": b.size, "mean_without": _mean(b), "sd_without": _sd(b),
           "test": "Welch two-sample t-test (unequal variances), two-sided", "statistic": None, "df": None, "p": None}
    if a.size >= 2 and b.size >= 2:
        result = stats.ttest_ind(a, b, equal_var=False)
        out.update(statistic=float(result.statistic), df=float(result.df), p=float(result.pvalue))
    return out


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def _sd(x: np.ndarray) -> float | None:
    return float(x.std(ddof=1)) if x.size >= 2 else None
