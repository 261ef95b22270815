"""The ordinary Cox model with Efron ties (R ``coxph``'s default), on distinct rows.

Patients with the same time, event flag and covariates contribute the same terms to the partial
likelihood, so they are collapsed to one row with a count (:func:`tied_rows`) and every sum runs over
the distinct rows: a million patients with two indicator covariates are a few thousand rows.

Efron's approximation stays exact under this collapsing because the tied deaths are still counted
one by one: at an event time with ``d`` deaths (``d`` = the sum of the death rows' counts) the risk
set loses ``k / d`` of the deaths' risk for ``k = 0 .. d - 1``, as with one row per patient. (A Cox
model with case weights is not the same thing: R and lifelines average the weights over the tied
death *rows*, which would change the likelihood; hence this implementation rather than lifelines'
``CoxPHFitter(weights_col=...)``.)

Newton-Raphson as R's ``coxph`` (``coxfit6``): step halving when the log partial likelihood falls,
stop when its relative change is below 1e-9; the covariance is the inverse information at the
estimate. Raises lifelines' ``ConvergenceError`` (what the callers catch) when the information is
singular or the likelihood is not finite.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import polars as pl

EPS = 1e-9  # R coxph.control(eps): relative change of log L
MAX_ITER = 50  # R's iter.max is 20; monotone likelihoods reach the tolerance within it as well


@dataclass(frozen=True)
class TiedRows:
    """Distinct (time, event, covariates) rows and how many patients each stands for, sorted by time."""

    time: np.ndarray
    event: np.ndarray  # bool
    x: np.ndarray  # rows x covariates
    count: np.ndarray  # float

    @property
    def n(self) -> int:
        return int(self.count.sum())


def tied_rows(x: np.ndarray | None, time, event, weight=None) -> TiedRows:
    """Patients (``x`` n x p, may have no column) collapsed to their distinct rows.

    ``weight``: how many patients each given row stands for (rows already collapsed upstream,
    :func:`clms_etl.survival.study.analyse`); one each when None.
    """
    time = np.asarray(time, dtype=float)
    x = np.zeros((time.size, 0)) if x is None else np.asarray(x, dtype=float).reshape(time.size, -1)
    cols = [f"x{j}" for j in range(x.shape[1])]
    frame = pl.DataFrame({"time": time, "event": np.asarray(event, dtype=bool),
                          "weight": np.ones(time.size) if weight is None else np.asarray(weight, dtype=float),
                          **{c: x[:, j] for j, c in enumerate(cols)}})
    g = frame.group_by("time", "event", *cols).agg(count=pl.col("weight").sum()).sort("time", "event", *cols)
    return TiedRows(g["time"].to_numpy(), g["event"].to_numpy(), g.select(cols).to_numpy().reshape(g.height, -1),
                    g["count"].to_numpy().astype(float))


def _bincount_rows(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``out[i] = sum of values[j] where index[j] == i``, rows of any shape: np.add.at's sums in the
    same order (one bincount per column; np.add.at is an unbuffered loop, ten times slower, and the
    per-death terms of Efron's ties are as many as the deaths)."""
    flat = values.reshape(values.shape[0], -1)
    out = np.empty((size, flat.shape[1]))
    for j in range(flat.shape[1]):
        out[:, j] = np.bincount(index, weights=flat[:, j], minlength=size)
    return out.reshape(size, *values.shape[1:])


def _suffix(values: np.ndarray) -> np.ndarray:
    """Sums from each row to the last."""
    return np.cumsum(values[::-1], axis=0)[::-1]


class EfronRiskSets:
    """The risk sets of the distinct event times of ``rows`` and Efron's terms at a given ``beta``."""

    def __init__(self, rows: TiedRows):
        self.rows = rows
        self.centre = (rows.x * rows.count[:, None]).sum(axis=0) / max(rows.count.sum(), 1)  # R centres x
        self.xc = rows.x - self.centre
        deaths = np.flatnonzero(rows.event)
        self.death_rows = deaths
        self.event_times, self.death_block = np.unique(rows.time[deaths], return_inverse=True)
        self.first = np.searchsorted(rows.time, self.event_times, side="left")  # first row at risk
        self.d = np.bincount(self.death_block, weights=rows.count[deaths], minlength=self.event_times.size)
        d_int = self.d.astype(np.int64)
        # one entry per tied death k = 0 .. d - 1 of each event time: Efron's fraction k / d
        self.k_time = np.repeat(np.arange(self.event_times.size), d_int)
        starts = np.concatenate([[0], np.cumsum(d_int)[:-1]])
        self.fraction = (np.arange(d_int.sum()) - starts[self.k_time]) / self.d[self.k_time]

    def _per_time(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` over the death rows of each event time."""
        return _bincount_rows(self.death_block, values[self.death_rows], self.event_times.size)

    def terms(self, beta: np.ndarray, second: bool = True):
        """(log L, score, information, per-time means averaged over the ties, per-time information)."""
        rows, xc = self.rows, self.xc
        p = xc.shape[1]
        r = rows.count * np.exp(xc @ beta)
        s0 = _suffix(r)[self.first]
        s1 = _suffix(r[:, None] * xc)[self.first]
        d0 = np.bincount(self.death_block, weights=r[self.death_rows], minlength=self.event_times.size)
        d1 = self._per_time(r[:, None] * xc)
        k, f = self.k_time, self.fraction
        den = s0[k] - f * d0[k]
        mean = (s1[k] - f[:, None] * d1[k]) / den[:, None]
        dead_x = self._per_time(rows.count[:, None] * xc)
        loglik = float((dead_x @ beta).sum() - np.log(den).sum())
        score = dead_x.sum(axis=0) - mean.sum(axis=0)
        if not second:
            return loglik, score, None, None, None
        xx = xc[:, :, None] * xc[:, None, :]
        s2 = _suffix(r[:, None, None] * xx)[self.first]
        d2 = self._per_time(r[:, None, None] * xx)
        a = np.bincount(k, weights=1 / den, minlength=self.event_times.size)
        b = np.bincount(k, weights=f / den, minlength=self.event_times.size)
        outer = _bincount_rows(k, mean[:, :, None] * mean[:, None, :], self.event_times.size)
        info_t = a[:, None, None] * s2 - b[:, None, None] * d2 - outer
        means_t = _bincount_rows(k, mean, self.event_times.size)
        means_t /= self.d[:, None]
        return loglik, score, info_t.sum(axis=0), means_t + self.centre, info_t


@dataclass(frozen=True)
class CoxFit:
    loglik: float
    coef: np.ndarray
    variance: np.ndarray


def null_loglik(rows: TiedRows) -> float:
    """log L(beta = 0): every patient has risk 1."""
    return EfronRiskSets(rows).terms(np.zeros(rows.x.shape[1]), second=False)[0]


def _key(rows: TiedRows, eps: float, max_iter: int) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for array in (rows.time, rows.event, rows.x, rows.count):
        digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(array.shape).encode())
    digest.update(f"{eps!r} {max_iter}".encode())
    return digest.digest()


_FITS: OrderedDict[bytes, CoxFit] = OrderedDict()
_FITS_KEPT = 256


def fit(rows: TiedRows, eps: float = EPS, max_iter: int = MAX_ITER) -> CoxFit:
    """Maximise the Efron partial likelihood of ``rows`` by Newton-Raphson (R ``coxph``).

    Each model is fitted once: the analysis asks for the same model from Table 2, its LR and PH
    tests and the cause-specific column of the competing risks; the fit is kept by the content of
    its rows (the last :data:`_FITS_KEPT`).
    """
    key = _key(rows, eps, max_iter)
    if key in _FITS:
        _FITS.move_to_end(key)
        return _FITS[key]
    fitted = _fit(rows, eps, max_iter)
    _FITS[key] = fitted
    if len(_FITS) > _FITS_KEPT:
        _FITS.popitem(last=False)
    return fitted


def _fit(rows: TiedRows, eps: float, max_iter: int) -> CoxFit:
    from lifelines.exceptions import ConvergenceError

    risk = EfronRiskSets(rows)
    beta = np.zeros(rows.x.shape[1])
    loglik, score, info, _, _ = risk.terms(beta)
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError as exc:
            raise ConvergenceError(f"singular information matrix: {exc}") from None
        new = beta + step
        new_loglik, new_score, new_info, _, _ = risk.terms(new)
        halvings = 0
        while not (np.isfinite(new_loglik) and new_loglik >= loglik) and halvings < 30:
            step = step / 2  # R: step halving when the likelihood does not improve
            new = beta + step
            new_loglik, new_score, new_info, _, _ = risk.terms(new)
            halvings += 1
        if not np.isfinite(new_loglik):
            raise ConvergenceError("the partial likelihood is not finite")
        done = abs(1 - loglik / new_loglik) <= eps if new_loglik else abs(new_loglik - loglik) <= eps
        beta, loglik, score, info = new, new_loglik, new_score, new_info
        if done:
            break
    try:
        variance = np.linalg.inv(info)
    except np.linalg.LinAlgError as exc:
        raise ConvergenceError(f"singular information matrix: {exc}") from None
    return CoxFit(loglik, beta, variance)
