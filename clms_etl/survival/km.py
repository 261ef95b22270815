"""Kaplan-Meier estimates with R ``survival`` conventions, on lifelines.

* The estimate, the numbers at risk and the log-log interval are lifelines'
  :class:`~lifelines.KaplanMeierFitter`'s arithmetic, vectorised over the distinct times
  (:func:`kaplan_meier_counts`); the log-log interval is left undefined where S = 1 (R's
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
    """A fitted Kaplan-Meier curve: one entry per distinct time (time 0 first).

    Held as counts per distinct time, never per patient, so that a curve of a million patients
    costs what its few thousand distinct times cost.
    """

    ci_transform: str
    alpha: float
    time: np.ndarray
    survival: np.ndarray
    ci_lower: np.ndarray  # nan: no interval
    ci_upper: np.ndarray
    at_risk: np.ndarray  # just before the time
    events: np.ndarray
    censored: np.ndarray

    @property
    def n(self) -> int:
        return int(self.events.sum() + self.censored.sum())

    @property
    def n_events(self) -> int:
        return int(self.events.sum())

    @property
    def durations(self) -> np.ndarray:
        """Each patient's time (an event or a censoring), sorted."""
        return np.repeat(self.time, (self.events + self.censored).astype(np.int64))

    @property
    def observed(self) -> np.ndarray:
        """The 0/1 event flags in the order of :attr:`durations`."""
        e, c = self.events.astype(np.int64), self.censored.astype(np.int64)
        return (np.concatenate([np.repeat(np.array([1, 0]), [a, b]) for a, b in zip(e, c)])
                if self.time.size else np.array([], dtype=np.int64))

    @classmethod
    def from_curve(cls, curve: pl.DataFrame, ci_transform: str, alpha: float = 0.05) -> KaplanMeier:
        """The curve back from its stored rows (:meth:`curve`, result table ``survival_curve``): enough
        to draw it; each patient is back as an event or a censoring at its row's time."""
        c = curve.sort("time_months")
        return cls(ci_transform, alpha, c["time_months"].to_numpy().astype(float),
                   c["survival"].to_numpy().astype(float),
                   c["ci_lower"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                   c["ci_upper"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                   c["n_at_risk"].fill_null(0).to_numpy().astype(np.int64),
                   c["events"].fill_null(0).to_numpy().astype(np.int64),
                   c["censored"].fill_null(0).to_numpy().astype(np.int64))

    def curve(self) -> pl.DataFrame:
        """The step curve: time, survival, CI, at risk, events, censored."""
        return pl.DataFrame({
            "time": self.time, "survival": self.survival,
            "ci_lower": self.ci_lower, "ci_upper": self.ci_upper,
            "n_at_risk": self.at_risk.astype(np.int64), "events": self.events.astype(np.int64),
            "censored": self.censored.astype(np.int64),
        }, strict=False).with_columns(pl.col("ci_lower", "ci_upper").fill_nan(None))

    def at(self, t: float) -> dict:
        """Survival, CI, number at risk and cumulative events at time ``t``."""
        removed = self.events + self.censored
        n_at_risk = int(removed[self.time >= t].sum())
        cumulative = int(self.events[self.time <= t].sum())
        if self.n == 0 or t > self.time[removed > 0].max():
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
                 alpha: float = 0.05, weights=None) -> KaplanMeier:
    """Kaplan-Meier curve of patients' ``durations`` and 0/1 ``event_observed``, with the ``ci_transform``
    interval; ``weights``: how many patients each row stands for (one each when None)."""
    durations = np.asarray(durations, dtype=float)
    observed = np.asarray(event_observed, dtype=int)
    time, inverse = np.unique(durations, return_inverse=True)
    removed = np.bincount(inverse, weights=weights, minlength=time.size)
    events = np.bincount(inverse, weights=observed if weights is None else observed * np.asarray(weights, dtype=float),
                         minlength=time.size)
    return kaplan_meier_counts(time, events, removed - events, ci_transform=ci_transform, alpha=alpha)


def kaplan_meier_counts(time, events, censored, *, ci_transform: str = DEFAULT_CI_TRANSFORM,
                        alpha: float = 0.05) -> KaplanMeier:
    """Kaplan-Meier curve from the events and censorings at each distinct ``time`` (sorted, unique).

    Vectorised over the distinct times (written here rather than with lifelines'
    ``KaplanMeierFitter``, which takes one row per patient): the same arithmetic as lifelines
    (``S = exp(cumsum(log(n - d) - log n))``, Greenwood's ``cumsum(d / (n (n - d)))``, the exponential
    Greenwood log-log interval), so the estimates are lifelines' to the last digit; time 0 first,
    as lifelines' event table.
    """
    if ci_transform not in CI_TRANSFORMS:
        raise ValueError(f"ci_transform must be one of {CI_TRANSFORMS}, not {ci_transform!r}")
    time = np.asarray(time, dtype=float)
    deaths = np.asarray(events, dtype=float)
    censored = np.asarray(censored, dtype=float)
    if time.size == 0:
        empty = np.array([], dtype=float)
        return KaplanMeier(ci_transform, alpha, empty, empty, empty, empty, empty, empty, empty)
    if time[0] > 0:  # lifelines' timeline starts at 0: nobody removed there
        time, deaths, censored = (np.concatenate([[0.0], time]), np.concatenate([[0.0], deaths]),
                                  np.concatenate([[0.0], censored]))
    removed = deaths + censored
    at_risk = removed.sum() - np.concatenate([[0.0], np.cumsum(removed)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.exp(np.cumsum(np.log(at_risk - deaths) - np.log(at_risk)))
        greenwood = deaths / (at_risk * (at_risk - deaths))
        variance = np.cumsum(np.where(np.isinf(greenwood), 0.0, greenwood))
    if ci_transform == "log":
        lower, upper = _log_interval(survival, at_risk, deaths, alpha)
    else:
        lower, upper = _log_log_interval(survival, variance, alpha)
        # log(-log S) is undefined at S = 1 (and 0): R's survfit gives NA at such an observed time where
        # lifelines gives [1, 1]; the added start row (time 0, nobody observed) stays [1, 1],
        # as R's summary(times=) before the first time
        undefined = ((survival >= 1) | (survival <= 0)) & (removed > 0)
        lower, upper = np.where(undefined, np.nan, lower), np.where(undefined, np.nan, upper)
    return KaplanMeier(ci_transform, alpha, time, survival, lower, upper, at_risk, deaths, censored)


def _log_log_interval(survival, variance, alpha):
    """lifelines' exponential Greenwood bounds (``KaplanMeierFitter._bounds``), 1 where undefined."""
    from lifelines.utils import inv_normal_cdf

    z = inv_normal_cdf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.log(survival)
        lower = np.exp(-np.exp(np.log(-v) - z * np.sqrt(variance) / v))
        upper = np.exp(-np.exp(np.log(-v) + z * np.sqrt(variance) / v))
    return np.where(np.isnan(lower), 1.0, lower), np.where(np.isnan(upper), 1.0, upper)


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
        return kaplan_meier(durations, 1 - np.asarray(event_observed, dtype=int), ci_transform="log", alpha=alpha)


def _num(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
