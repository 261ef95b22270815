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
PATIENTS = "patients"  # the number of patients a distinct (time, event, levels) row stands for
MAX_CI_RATIO = 1e6  # upper / lower bound of the HR's CI beyond which the model is taken as diverging


@dataclass(frozen=True)
class Predictor:
    """A predictor of the univariate analysis, as a column of levels: strings, or an enum of them (null = unknown)."""

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
                  alpha: float = 0.05, weight_col: str | None = None) -> dict[str, HazardRatio]:
    """Cox model (Efron ties) of ``event_col`` over ``duration_col`` on numeric ``covariates``.

    A plain frame in, hazard ratios with Wald CI out (lifelines' conventions: z from the normal
    quantile, p from the chi-square of z squared); fitted on the distinct rows
    (:mod:`clms_etl.survival.efron`; ``weight_col``: patients per row); raises lifelines' ``ConvergenceError`` when the model does not
    converge.
    """
    from lifelines.utils import inv_normal_cdf
    from scipy import stats

    from clms_etl.survival import efron

    data = frame.select(duration_col, event_col, *covariates, *([weight_col] if weight_col else [])).drop_nulls()
    fitted = efron.fit(efron.tied_rows(data.select(covariates).to_numpy().astype(float),
                                       data[duration_col].to_numpy(), data[event_col].to_numpy(),
                                       data[weight_col].to_numpy() if weight_col else None))
    z = inv_normal_cdf(1 - alpha / 2)
    se = np.sqrt(np.diag(fitted.variance))
    p = stats.chi2.sf((fitted.coef / se) ** 2, 1)
    return {c: HazardRatio(c, float(np.exp(fitted.coef[j])), float(np.exp(fitted.coef[j] - z * se[j])),
                           float(np.exp(fitted.coef[j] + z * se[j])), float(p[j])) for j, c in enumerate(covariates)}


def patients(weight_col: str | None) -> pl.Expr:
    """The number of patients of a group of rows: its rows, or the sum of ``weight_col`` (rows collapsed upstream)."""
    return pl.col(weight_col).sum() if weight_col else pl.len()


def events(event_col: str, weight_col: str | None) -> pl.Expr:
    """The number of events of a group of rows (0/1 ``event_col``, weighted by ``weight_col`` when given)."""
    return (pl.col(event_col) * pl.col(weight_col)).sum() if weight_col else pl.col(event_col).sum()


def logrank(frame: pl.DataFrame, duration_col: str, event_col: str, group_col: str,
            weight_col: str | None = None) -> tuple[float, int, float]:
    """Log-rank test over the groups of ``group_col``: (chi-square, degrees of freedom, p).

    lifelines' ``multivariate_logrank_test`` arithmetic (R ``survdiff``), on the events and
    numbers at risk per group and distinct time instead of one row per patient.
    """
    from scipy import stats

    counts = (frame.group_by(group_col, duration_col)
              .agg(removed=patients(weight_col), deaths=events(event_col, weight_col))
              .pivot(on=group_col, index=duration_col, values=["removed", "deaths"], sort_columns=True)
              .sort(duration_col).fill_null(0))
    groups = sorted(frame[group_col].unique().to_list())
    removed = np.column_stack([counts[f"removed_{g}"].to_numpy() for g in groups]).astype(float)
    deaths = np.column_stack([counts[f"deaths_{g}"].to_numpy() for g in groups]).astype(float)
    n_group = removed.sum(axis=0) - np.vstack([np.zeros(len(groups)), np.cumsum(removed, axis=0)[:-1]])
    n, d = n_group.sum(axis=1), deaths.sum(axis=1)
    expected = (n_group * (d / n)[:, None]).sum(axis=0)
    z = deaths.sum(axis=0) - expected
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (n - d) / (n - 1)
    factor = np.where(np.isfinite(ratio), ratio, 1.0) * d / n ** 2
    v = -(n_group * factor[:, None]).T @ n_group
    v[np.diag_indices_from(v)] += (n_group * (n * factor)[:, None]).sum(axis=0)
    k = len(groups) - 1
    statistic = float(z[:k] @ np.linalg.pinv(v[:k, :k]) @ z[:k])
    return statistic, k, float(stats.chi2.sf(statistic, k))


def univariate(frame: pl.DataFrame, predictor: Predictor, duration_col: str = "time_months",
               event_col: str = "event", weight_col: str | None = None) -> list[dict]:
    """Rows of ``univariate_analysis`` for one predictor: one per compared level vs the reference.

    ``frame`` holds the durations, the event flags and a column named ``predictor.key`` with the
    predictor's levels (null: unknown, left out); one row per patient, or per distinct row with
    its number of patients in ``weight_col``.
    """
    from lifelines.exceptions import ConvergenceError

    known = predictor.levels + (predictor.reference,)
    weight = [weight_col] if weight_col else []
    data = (frame.select(duration_col, event_col, predictor.key, *weight).drop_nulls()
            .filter(pl.col(predictor.key).is_in(known)))
    by_level = {r[0]: (r[1], r[2]) for r in data.group_by(predictor.key).agg(
        patients(weight_col).alias("n"), events(event_col, weight_col).alias("events")).rows()}
    counts = {lvl: (int(by_level.get(lvl, (0, 0))[0]), int(by_level.get(lvl, (0, 0))[1] or 0)) for lvl in known}
    n, n_events = data.select(patients(weight_col), events(event_col, weight_col)).row(0)
    n, n_events = int(n), int(n_events or 0)
    present = [lvl for lvl in known if counts[lvl][0] > 0]

    chi2 = df = p_logrank = None
    if len(present) >= 2 and n_events > 0:
        chi2, df, p_logrank = logrank(data, duration_col, event_col, predictor.key, weight_col)

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
            fitted = hazard_ratios(design, duration_col, event_col, [f"level_{i}" for i in range(len(fit_levels))],
                                   weight_col=weight_col)
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
            "n": n, "events": n_events, "n_level": counts[lvl][0], "events_level": counts[lvl][1],
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
