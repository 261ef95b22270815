"""Kaplan-Meier estimates with R ``survival`` conventions, on lifelines.

* The estimate, the numbers at risk and the log-log interval come from lifelines'
  :class:`~lifelines.KaplanMeierFitter`; the log-log interval is left undefined where S = 1 (R's
  ``NA``; lifelines gives [1, 1]).
* The **log** interval (R ``survfit``'s default ``conf.type = "log"``) is not offered by lifelines:
  it is computed here from Greenwood's variance of the cumulative hazard,
  ``se = sqrt(sum d / (n (n - d)))``, as ``S * exp(+-z se)`` with the upper bound capped at 1 and
  no interval where ``S = 0`` (R prints ``NA`` there).
* Quantiles (the median) follow R's ``quantile.survfit``: the first time the curve reaches
  ``1 - p``; when it sits exactly on ``1 - p`` over an interval, the midpoint of that interval (the
  end of follow-up if the flat is the end of the curve). The confidence interval of a quantile is
  read the same way on the lower and upper confidence curves.
* Survival at a time point is the step function (right-continuous) at that time, null beyond the
  last follow-up time (R's ``summary(fit, times=)`` without ``extend``); the number at risk at
  ``t`` counts the patients with ``time >= t``.

Times are whatever unit the durations are in (months throughout the study).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import polars as pl

CI_TRANSFORMS = ("log", "log-log")
DEFAULT_CI_TRANSFORM = "log"  # R survfit's default
TOLERANCE = math.sqrt(np.finfo(float).eps)  # R: sqrt(.Machine$double.eps)


@dataclass(frozen=True)
class KaplanMeier:
    """A fitted Kaplan-Meier curve: one entry per distinct time (time 0 first)."""

    ci_transform: str
    alpha: float
    time: np.ndarray
    survival: np.ndarray
    ci_lower: np.ndarray  # nan: no interval
    ci_upper: np.ndarray
    at_risk: np.ndarray  # just before the time
    events: np.ndarray
    censored: np.ndarray
    durations: np.ndarray
    observed: np.ndarray  # 0/1 event flags of the patients
    fitter: object  # the lifelines KaplanMeierFitter (plots, further use)

    @property
    def n(self) -> int:
        return int(self.durations.size)

    @property
    def n_events(self) -> int:
        return int(self.observed.sum())

    @classmethod
    def from_curve(cls, curve: pl.DataFrame, ci_transform: str, alpha: float = 0.05) -> KaplanMeier:
        """The curve back from its stored rows (:meth:`curve`, result table ``survival_curve``): enough
        to draw it; each patient is back as a duration (an event or a censoring at its row's time)."""
        c = curve.sort("time_months")
        time = c["time_months"].to_numpy().astype(float)
        events = c["events"].fill_null(0).to_numpy().astype(np.int64)
        censored = c["censored"].fill_null(0).to_numpy().astype(np.int64)
        return cls(ci_transform, alpha, time, c["survival"].to_numpy().astype(float),
                   c["ci_lower"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                   c["ci_upper"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                   c["n_at_risk"].fill_null(0).to_numpy().astype(np.int64), events, censored,
                   durations=np.repeat(time, events + censored),
                   observed=np.concatenate([np.repeat(np.array([1, 0]), [e, k]) for e, k in zip(events, censored)])
                   if time.size else np.array([], dtype=np.int64),
                   fitter=None)

    def curve(self) -> pl.DataFrame:
        """The step curve: time, survival, CI, at risk, events, censored."""
        return pl.DataFrame({
            "time": self.time, "survival": self.survival,
            "ci_lower": _nan_to_none(self.ci_lower), "ci_upper": _nan_to_none(self.ci_upper),
            "n_at_risk": self.at_risk.astype(np.int64), "events": self.events.astype(np.int64),
            "censored": self.censored.astype(np.int64),
        }, strict=False).with_columns(pl.col("ci_lower", "ci_upper").fill_nan(None))

    def at(self, t: float) -> dict:
        """Survival, CI, number at risk and cumulative events at time ``t``."""
        n_at_risk = int((self.durations >= t).sum())
        cumulative = int(self.observed[self.durations <= t].sum())
        if self.n == 0 or t > self.durations.max():
            return {"survival": None, "ci_lower": None, "ci_upper": None, "n_at_risk": n_at_risk,
                    "cumulative_events": cumulative}
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        return {"survival": float(self.survival[i]), "ci_lower": _num(self.ci_lower[i]),
                "ci_upper": _num(self.ci_upper[i]), "n_at_risk": n_at_risk, "cumulative_events": cumulative}

    def quantile(self, p: float) -> tuple[float | None, float | None, float | None]:
        """Time by which a fraction ``p`` has had the event (``p = 0.5``: the median), with its CI.

        R's ``quantile.survfit``: (estimate, lower, upper); ``None`` when the curve (or a confidence
        curve) never reaches ``1 - p``.
        """
        xmax = float(self.time[-1]) if self.time.size else 0.0
        return tuple(r_quantile(self.time, curve, p, xmax) for curve in (self.survival, self.ci_lower, self.ci_upper))

    def median(self) -> tuple[float | None, float | None, float | None]:
        return self.quantile(0.5)


def r_quantile(time: np.ndarray, survival: np.ndarray, p: float, xmax: float | None = None,
               tol: float = TOLERANCE) -> float | None:
    """R ``survival:::findq`` on one curve: the ``p`` quantile of ``1 - survival``.

    Written by hand because lifelines' ``median_survival_time_`` takes the first time at or below
    0.5 and has no midpoint rule; ``survival`` may hold ``nan`` (no confidence bound there).
    """
    x = np.concatenate([[0.0], np.asarray(time, dtype=float)])
    y = np.concatenate([[0.0], 1.0 - np.asarray(survival, dtype=float)])
    xmax = float(x[-1]) if xmax is None else xmax
    if np.all(np.isnan(y)) or np.nanmax(y) < p:
        return None
    keep = np.ones(y.size, dtype=bool)  # drop repeated levels (censoring times), keep the jump times
    keep[1:] = y[1:] != y[:-1]
    keep &= ~np.isnan(y)
    x, y = x[keep], y[keep]

    def first_at_or_above(levels: np.ndarray) -> int | None:
        # approx(levels, 1:n, p, method="constant", f=1): first index whose level is >= p
        i = int(np.searchsorted(levels, p, side="left"))
        return i if i < levels.size else None

    i1 = first_at_or_above(y + tol)
    i2 = first_at_or_above(y - tol)
    if i1 is not None and abs(p - y[-1]) < tol:  # the curve ends on a flat exactly at 1 - p
        return (float(x[i1]) + xmax) / 2
    if i1 is None or i2 is None:
        return None
    return (float(x[i1]) + float(x[i2])) / 2


def kaplan_meier(durations, event_observed, *, ci_transform: str = DEFAULT_CI_TRANSFORM,
                 alpha: float = 0.05, label: str = "KM") -> KaplanMeier:
    """Fit a Kaplan-Meier curve with lifelines and attach the ``ci_transform`` interval."""
    from lifelines import KaplanMeierFitter

    if ci_transform not in CI_TRANSFORMS:
        raise ValueError(f"ci_transform must be one of {CI_TRANSFORMS}, not {ci_transform!r}")
    durations = np.asarray(durations, dtype=float)
    observed = np.asarray(event_observed, dtype=int)
    if durations.size == 0:
        empty = np.array([], dtype=float)
        return KaplanMeier(ci_transform, alpha, empty, empty, empty, empty, empty, empty, empty, durations,
                           observed, None)
    fitter = KaplanMeierFitter(alpha=alpha, label=label).fit(durations, observed)
    table = fitter.event_table
    time = table.index.to_numpy(dtype=float)
    survival = fitter.survival_function_[label].reindex(table.index).to_numpy(dtype=float)
    at_risk = table["at_risk"].to_numpy(dtype=float)
    deaths = table["observed"].to_numpy(dtype=float)
    if ci_transform == "log":
        lower, upper = _log_interval(survival, at_risk, deaths, alpha)
    else:
        ci = fitter.confidence_interval_survival_function_.reindex(table.index)
        lower, upper = ci.iloc[:, 0].to_numpy(dtype=float), ci.iloc[:, 1].to_numpy(dtype=float)
        # log(-log S) is undefined at S = 1 (and 0): R's survfit gives NA at such an observed time where
        # lifelines gives [1, 1]; lifelines' added start row (time 0, nobody observed) stays [1, 1],
        # as R's summary(times=) before the first time
        observed_here = (deaths + table["censored"].to_numpy(dtype=float)) > 0
        undefined = ((survival >= 1) | (survival <= 0)) & observed_here
        lower, upper = np.where(undefined, np.nan, lower), np.where(undefined, np.nan, upper)
    return KaplanMeier(ci_transform, alpha, time, survival, lower, upper, at_risk, deaths,
                       table["censored"].to_numpy(dtype=float), durations, observed, fitter)


def _log_interval(survival, at_risk, deaths, alpha):
    z = NormalDist().inv_cdf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(deaths > 0, deaths / (at_risk * (at_risk - deaths)), 0.0)  # Greenwood
        se = np.sqrt(np.cumsum(terms))
        lower = survival * np.exp(-z * se)
        upper = np.minimum(1.0, survival * np.exp(z * se))
    undefined = (survival <= 0) | ~np.isfinite(se)
    return np.where(undefined, np.nan, lower), np.where(undefined, np.nan, upper)


def reverse_kaplan_meier(durations, event_observed, alpha: float = 0.05) -> KaplanMeier:
    """Follow-up distribution (Schemper & Smith 1996): censoring is the event, events are censored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kaplan_meier(durations, 1 - np.asarray(event_observed, dtype=int), ci_transform="log", alpha=alpha,
                            label="follow_up")


def _num(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [_num(v) for v in values]
