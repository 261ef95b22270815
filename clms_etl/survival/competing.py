"""Competing risks: cumulative incidence (Aalen-Johansen), Gray's test, Fine-Gray regression.

Follows R's ``cmprsk`` (Gray 2000-2020) number for number: the references of the study's
statisticians, and the oracle of ``tests/survival/test_r_oracle_competing.py``.

* :func:`cumulative_incidence` — the Aalen-Johansen estimate of the cumulative incidence of one
  cause and Gray's variance (Gray 1988; ``cmprsk::cuminc``, Fortran ``cinc``).
* :func:`gray_test` — Gray's K-sample test of equal cumulative incidence between groups (Gray
  1988, Ann Stat 16:1141; ``cuminc``'s ``Tests``, Fortran ``crstm``), ``rho = 0``, one stratum.
* :func:`fine_gray` — Fine & Gray (1999, JASA 94:496) proportional subdistribution hazards,
  Newton-Raphson with cmprsk's step halving, the robust (sandwich) variance of their paper
  (``cmprsk::crr``, Fortran ``crrfsv`` / ``crrvv``), one censoring group, time-fixed covariates.

Written here rather than taken from a library: lifelines' ``AalenJohansenFitter`` breaks tied
event times by jittering them (the registry's times are whole days, ties are common, and the
jitter changes the estimate) and gives no Gray variance, no Gray test and no Fine-Gray model; the
PyPI ``cmprsk`` calls R through rpy2, ``pycmprsk`` needs Python 3.13, and ``comprisk`` is an alpha
random-forest toolkit pulling numba. Everything below is plain numpy.

Cause codes (cmprsk's): 0 censored, 1 the event of interest, 2 a competing event.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from statistics import NormalDist

import numpy as np
import polars as pl
from scipy import stats

CENSORED, EVENT, COMPETING = 0, 1, 2


@dataclass(frozen=True)
class CumulativeIncidence:
    """Step function of the cumulative incidence of one cause: right-continuous values at each
    distinct time of the cause (``time``), from 0 up to the last follow-up time ``end``."""

    time: np.ndarray
    incidence: np.ndarray
    variance: np.ndarray  # Gray's (cmprsk's) variance of the estimate
    end: float  # last follow-up time of the group: the curve is undefined beyond it
    n: int
    events: int
    competing: int

    def at(self, t: float) -> tuple[float | None, float | None]:
        """(incidence, variance) at ``t``: the step value (0 before the first event), None beyond
        the last follow-up (``cmprsk::timepoints``)."""
        if self.n == 0 or t > self.end:
            return None, None
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        return (0.0, 0.0) if i < 0 else (float(self.incidence[i]), float(self.variance[i]))


def confidence_interval(incidence: float | None, variance: float | None, alpha: float = 0.05
                        ) -> tuple[float | None, float | None]:
    """95 % interval of a cumulative incidence on the log(-log) scale (Kalbfleisch & Prentice;
    Choudhury 2002): ``F ** exp(+-z se / (F log F))``; none where F is 0 or 1."""
    if incidence is None or variance is None or not 0 < incidence < 1:
        return None, None
    z = NormalDist().inv_cdf(1 - alpha / 2)
    scale = z * np.sqrt(variance) / (incidence * np.log(incidence))
    return float(incidence ** np.exp(-scale)), float(incidence ** np.exp(scale))


def cumulative_incidence(time, cause) -> CumulativeIncidence:
    """Aalen-Johansen cumulative incidence of cause 1 and Gray's variance (cmprsk ``cinc``).

    ``cause``: 0 censored, 1 event of interest, 2 competing event (any other non-zero code is
    taken as competing).
    """
    time = np.asarray(time, dtype=float)
    cause = np.asarray(cause, dtype=int)
    distinct, inverse = np.unique(time, return_inverse=True)
    counts = [np.bincount(inverse, weights=w, minlength=distinct.size)
              for w in (cause == EVENT, (cause != CENSORED) & (cause != EVENT), cause == CENSORED)]
    return cumulative_incidence_counts(distinct, *counts)


def cumulative_incidence_counts(time, events, competing, censored) -> CumulativeIncidence:
    """:func:`cumulative_incidence` from the numbers of events of cause 1, competing events and
    censorings at each distinct ``time`` (sorted): cmprsk's recursion over the times written as
    cumulative products and sums, so that its cost is the number of distinct times."""
    time = np.asarray(time, dtype=float)
    nd1, nd2 = np.asarray(events, dtype=float), np.asarray(competing, dtype=float)
    removed = nd1 + nd2 + np.asarray(censored, dtype=float)
    n = float(removed.sum())
    if not n:
        return CumulativeIncidence(np.array([]), np.array([]), np.array([]), 0.0, 0, 0, 0)
    end = float(time[removed > 0].max())
    hit = (nd1 + nd2) > 0  # only the times with an event move the estimate
    t, nd1, nd2 = time[hit], nd1[hit], nd2[hit]
    rs = n - np.concatenate([[0.0], np.cumsum(removed)])[:-1][hit]  # at risk just before each time
    fk_after = _sequential_product(rs - nd1 - nd2, rs)
    fk = np.concatenate([[1.0], fk_after[:-1]])  # Kaplan-Meier just before each time
    f = np.cumsum(fk * nd1 / rs)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_fkn = np.where(fk_after > 0, 1 / fk_after, 0.0)
        tie1 = np.where(nd1 <= 1, 1.0, 1 - (nd1 - 1) / (rs - 1))
        tie2 = np.where(nd2 <= 1, 1.0, 1 - (nd2 - 1) / (rs - 1))
    # competing events (variance only, while the curve has not reached 0), then events of cause 1
    t6c = np.where((nd2 > 0) & (fk_after > 0), fk * fk * tie2 * nd2 / (rs * rs), 0.0)
    t4c = f * inv_fkn
    t6e = np.where(nd1 > 0, fk * fk * tie1 * nd1 / (rs * rs), 0.0)
    t4e = 1 + inv_fkn * f
    v1 = np.cumsum(t4c * t4c * t6c + t4e * t4e * t6e)
    v2 = np.cumsum(inv_fkn * t4c * t6c + inv_fkn * t4e * t6e)
    v3 = np.cumsum(inv_fkn * inv_fkn * t6c + inv_fkn * inv_fkn * t6e)
    out = nd1 > 0
    return CumulativeIncidence(t[out], f[out], (v1 + f * f * v3 - 2 * f * v2)[out], end, int(n),
                               int(nd1.sum()), int(nd2.sum()))


def _sequential_product(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Running product ``p = p * numerator[i] / denominator[i]`` in cmprsk's order of operations (a
    cumulative product of the ratios rounds differently: a value such as 0.285 would print on the
    other side of its rounding)."""
    steps = zip(np.asarray(numerator, dtype=float).tolist(), np.asarray(denominator, dtype=float).tolist())
    return np.fromiter(accumulate(steps, lambda p, step: p * step[0] / step[1], initial=1.0), dtype=float,
                       count=len(numerator) + 1)[1:]


@dataclass(frozen=True)
class GrayTest:
    statistic: float | None  # None: the score's variance is singular (cmprsk prints -1)
    df: int
    p: float | None


def gray_test(time, cause, group, rho: float = 0.0, weight=None) -> GrayTest:
    """Gray's test that the cumulative incidence of cause 1 is the same in every group (cmprsk ``crst``).

    ``group``: any labels; degrees of freedom = number of groups - 1; ``weight``: subjects per row
    (rows with the same time, cause and group collapsed upstream), one each when None.
    """
    time = np.asarray(time, dtype=float)
    cause = np.asarray(cause, dtype=int)
    group = np.asarray(group)
    # string labels sorted as fixed-width strings, not Python objects (the same order, far faster)
    labels, ig = np.unique(group.astype(str) if group.dtype == object else group, return_inverse=True)
    ng, ng1 = labels.size, labels.size - 1
    if ng < 2:
        return GrayTest(None, 0, None)
    m = np.where(cause == EVENT, 1, np.where(cause == CENSORED, 0, 2))
    # the counts of each cause per group at each distinct time, once; the recursion below visits
    # only the times with an event (a time with censorings only changes nothing but the risk sets)
    distinct, it = np.unique(time, return_inverse=True)
    counts = np.zeros((distinct.size, 3, ng))
    np.add.at(counts, (it, m, ig), 1 if weight is None else np.asarray(weight, dtype=float))
    removed_before = np.concatenate([np.zeros((1, ng)), np.cumsum(counts.sum(axis=1), axis=0)[:-1]])
    total = np.bincount(ig, weights=weight, minlength=ng).astype(float)
    # cmprsk's recursion over the event times, written over all of them at once (arrays times x groups)
    hit = counts[:, 1:, :].sum(axis=(1, 2)) > 0
    d1, d2 = counts[hit, 1, :], counts[hit, 2, :]
    rs = total - removed_before[hit]
    nd1, nd2 = d1.sum(axis=1), d2.sum(axis=1)
    live = rs > 0
    safe_rs = np.where(live, rs, 1.0)
    skm = np.column_stack([_sequential_product(np.where(live[:, k], rs[:, k] - d1[:, k] - d2[:, k], 1.0),
                                               safe_rs[:, k]) for k in range(ng)])
    skmm = np.vstack([np.ones((1, ng)), skm[:-1]])  # all-cause Kaplan-Meier of each group just before
    f1 = np.cumsum(np.where(live, skmm * d1 / safe_rs, 0.0), axis=0)
    f1m = np.vstack([np.zeros((1, ng)), f1[:-1]])
    t1 = np.where(live, rs / skmm, 0.0)
    tr = t1.sum(axis=1)
    tq = np.where(live, rs * (1 - f1m) / skmm, 0.0).sum(axis=1)
    f = np.cumsum(nd1 / tr)
    fm = np.concatenate([[0.0], f[:-1]])
    fb = (1 - fm) ** rho
    a = -fb[:, None, None] * t1[:, :, None] * t1[:, None, :] / tr[:, None, None]
    diag = np.arange(ng)
    a[:, diag, diag] = fb[:, None] * t1 * (1 - t1 / tr[:, None])
    c = np.cumsum(a * (nd1 / (tr * (1 - fm)))[:, None, None], axis=0)  # after each time's update
    s = np.where(live[:, :ng1], fb[:, None] * (d1[:, :ng1] - nd1[:, None] * rs[:, :ng1] * (1 - f1m[:, :ng1])
                                               / (skmm[:, :ng1] * tq[:, None])), 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # events of cause 1: every live group
        m1 = live & (nd1 > 0)[:, None]
        t4 = np.where(m1, np.where(skm > 0, 1 - (1 - f)[:, None] / skm, 1.0), 0.0)
        t5 = np.where((nd1 > 1)[:, None], 1 - (nd1[:, None] - 1) / (tr[:, None] * skmm - 1), 1.0)
        t3 = np.where(m1, t5 * skmm * nd1[:, None] / (tr[:, None] * safe_rs), 0.0)
        t = a[:, :ng1, :] - t4[:, None, :] * c[:, :ng1, :]  # [time, i, group k]
        v3 = (t4 * t4 * t3).sum(axis=0)
        v2 = (t * (t4 * t3)[:, None, :]).sum(axis=0)
        v = np.einsum("jik,jlk,jk->il", t, t, t3)
        # competing events: the groups where they happen while the group's curve is above 0
        m2 = (skm > 0) & (d2 > 0)
        t4 = np.where(m2, (1 - f)[:, None] / np.where(skm > 0, skm, 1.0), 0.0)
        t5 = np.where(d2 > 1, 1 - (d2 - 1) / (safe_rs - 1), 1.0)
        t3 = np.where(m2, t5 * skmm ** 2 * d2 / safe_rs ** 2, 0.0)
        t = t4[:, None, :] * c[:, :ng1, :]
        v3 += (t4 * t4 * t3).sum(axis=0)
        v2 -= (t * (t4 * t3)[:, None, :]).sum(axis=0)
        v += np.einsum("jik,jlk,jk->il", t, t, t3)
    c = c[-1] if c.size else np.zeros((ng, ng))
    cg = c[:ng1, :]
    v += (cg * v3) @ cg.T + cg @ v2.T + v2 @ cg.T
    if np.linalg.matrix_rank(v) < ng1:
        return GrayTest(None, ng1, None)
    statistic = float(s @ np.linalg.solve(v, s))
    return GrayTest(statistic, ng1, float(stats.chi2.sf(statistic, ng1)))


@dataclass(frozen=True)
class FineGray:
    """A fitted Fine-Gray model: coefficients (log subdistribution hazard ratios) and robust SE."""

    coef: np.ndarray
    se: np.ndarray
    converged: bool
    n: int
    events: int
    competing: int

    def rows(self, alpha: float = 0.05) -> list[dict]:
        """Per covariate: sHR, 95 % Wald interval, two-sided p (``summary.crr``)."""
        z = NormalDist().inv_cdf(1 - alpha / 2)
        return [{"coef": float(b), "se": float(se), "shr": float(np.exp(b)), "shr_ci_lower": float(np.exp(b - z * se)),
                 "shr_ci_upper": float(np.exp(b + z * se)), "p": float(2 * stats.norm.sf(abs(b / se)))}
                for b, se in zip(self.coef, self.se)]


def _censoring_left_limit(t: np.ndarray, status: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kaplan-Meier of the censoring times just before each time, G(t-), ties: censorings at t
    do not count before t (cmprsk's ``uuu``, from ``survfit``); row ``i`` stands for ``w[i]`` subjects."""
    distinct, first = np.unique(t, return_index=True)
    at_risk = w.sum() - _prefix(w)[first]
    censored = np.bincount(np.searchsorted(distinct, t[status == CENSORED]), weights=w[status == CENSORED],
                           minlength=distinct.size)
    g = np.cumprod(1 - censored / at_risk)
    left = np.concatenate([[1.0], g[:-1]])
    return left[np.searchsorted(distinct, t)]


def _suffix(x: np.ndarray) -> np.ndarray:
    """Sums from each index to the end, with a trailing zero (index n)."""
    out = np.zeros((x.shape[0] + 1, *x.shape[1:]))
    out[:-1] = np.cumsum(x[::-1], axis=0)[::-1]
    return out


def _prefix(x: np.ndarray) -> np.ndarray:
    """Sums of the rows before each index, with a leading zero (index 0)."""
    out = np.zeros((x.shape[0] + 1, *x.shape[1:]))
    out[1:] = np.cumsum(x, axis=0)
    return out


class _Subdistribution:
    """The weighted risk sets of Fine & Gray at the cause-1 failure times (rows sorted by time)."""

    def __init__(self, t, status, x, w):
        self.t, self.status, self.x, self.w = t, status, x, w  # row i: w[i] subjects alike
        self.g = _censoring_left_limit(t, status, w)
        self.fail = np.flatnonzero(status == EVENT)
        self.tf = t[self.fail]
        self.wf = w[self.fail]
        self.first = np.searchsorted(t, self.tf, side="left")  # first row at risk at each failure
        self.competing = (status == COMPETING).astype(float)

    def sums(self, b):
        """S0, S1, S2 at each failure row, and the subjects' exp(x b)."""
        e = np.exp(self.x @ b)
        we = self.w * e
        xx = np.einsum("ij,ik->ijk", self.x, self.x)
        w2 = self.w * self.competing * e / self.g  # competing events stay, weighted G(t-)/G(t_j-)
        gf = self.g[self.fail]
        s0 = _suffix(we)[self.first] + gf * _prefix(w2)[self.first]
        s1 = _suffix(we[:, None] * self.x)[self.first] + gf[:, None] * _prefix(w2[:, None] * self.x)[self.first]
        s2 = (_suffix(we[:, None, None] * xx)[self.first]
              + gf[:, None, None] * _prefix(w2[:, None, None] * xx)[self.first])
        return e, s0, s1, s2

    def objective(self, b):
        """Minus the log partial likelihood, its gradient and Hessian (cmprsk ``crrfsv``)."""
        _, s0, s1, s2 = self.sums(b)
        xf = self.x[self.fail]
        wf = self.wf
        lik = float((wf * (-(xf @ b) + np.log(s0))).sum())
        score = (wf[:, None] * (-xf + s1 / s0[:, None])).sum(axis=0)
        e1 = s1 / s0[:, None]
        hess = (wf[:, None, None] * (s2 / s0[:, None, None] - np.einsum("fj,fk->fjk", e1, e1))).sum(axis=0)
        return lik, score, hess

    def robust_variance(self, b) -> np.ndarray:
        """Fine & Gray's sandwich variance (cmprsk ``crrvv``): H^-1 (sum (eta + psi)(eta + psi)') H^-1."""
        t, x, g, fail, tf = self.t, self.x, self.g, self.fail, self.tf
        e, s0, s1, _ = self.sums(b)
        _, _, hess = self.objective(b)
        ef = s1 / s0[:, None]  # E(t_f)
        # eta: the score's martingale part, subject by subject
        wf = self.wf  # each failure row stands for wf failures of the compensator
        a_f, b_f = wf / s0, wf[:, None] * ef / s0[:, None]
        ga_f, gb_f = wf * g[fail] / s0, wf[:, None] * g[fail][:, None] * ef / s0[:, None]
        upto = np.searchsorted(tf, t, side="right")  # failures at or before each subject's time
        pa, pb = _prefix(a_f), _prefix(b_f)
        sa, sb = _suffix(ga_f), _suffix(gb_f)
        comp = self.competing / g
        big_a = pa[upto] + comp * sa[upto]
        big_b = pb[upto] + comp[:, None] * sb[upto]
        eta = -e[:, None] * (x * big_a[:, None] - big_b)
        own = np.searchsorted(tf, t, side="left")  # a failure's own E(t_i)
        is_fail = self.status == EVENT
        eta[is_fail] += x[is_fail] - ef[np.minimum(own[is_fail], tf.size - 1)]
        # psi: the part from estimating the censoring distribution, q(u) at each censoring time
        w2 = self.w * self.competing * e / g
        cx, c0 = _prefix(w2[:, None] * x), _prefix(w2)
        at_risk = self.w.sum() - _prefix(self.w)[np.searchsorted(t, t, side="left")]  # R(t_i) = #{t >= t_i}
        censored = self.status == CENSORED
        first_row = np.searchsorted(t, t, side="left")
        from_f = np.searchsorted(tf, t, side="left")  # failures at or after each time
        q = cx[first_row] * sa[from_f][:, None] - c0[first_row][:, None] * sb[from_f]
        increment = np.where(censored[:, None], -q / at_risk[:, None] ** 2, 0.0)
        # every censoring at or before t_i, including the ties of t_i
        last_row = np.searchsorted(t, t, side="right")
        psi = _prefix(self.w[:, None] * increment)[last_row] + np.where(censored[:, None], q / at_risk[:, None], 0.0)
        u = eta + psi
        h_inv = np.linalg.inv(hess)
        return h_inv @ (u.T @ (self.w[:, None] * u)) @ h_inv.T


def fine_gray(time, cause, covariates, *, gtol: float = 1e-6, max_iterations: int = 10, weight=None) -> FineGray:
    """Fine-Gray model of cause 1 (cause 2 competing, 0 censored) on a numeric covariate matrix;
    ``weight``: subjects per row (one each when None)."""
    time = np.asarray(time, dtype=float)
    cause = np.asarray(cause, dtype=int)
    x = np.asarray(covariates, dtype=float).reshape(time.size, -1)
    status = np.where(cause == EVENT, EVENT, np.where(cause == CENSORED, CENSORED, COMPETING))
    # subjects with the same time, status and covariates contribute identical terms: one row each,
    # weighted by their number (the sums, the likelihood and the sandwich are the same)
    cols = [f"x{j}" for j in range(x.shape[1])]
    w = np.ones(time.size) if weight is None else np.asarray(weight, dtype=float)
    rows = (pl.DataFrame({"time": time, "status": status, "n": w, **{c: x[:, j] for j, c in enumerate(cols)}})
            .group_by("time", "status", *cols).agg(w=pl.col("n").sum()).sort("time", "status", *cols))
    model = _Subdistribution(rows["time"].to_numpy(), rows["status"].to_numpy(),
                             rows.select(cols).to_numpy().reshape(rows.height, -1), rows["w"].to_numpy().astype(float))
    b = np.zeros(x.shape[1])
    converged = False
    for iteration in range(max_iterations + 1):  # crr's Newton-Raphson with step halving
        lik, score, hess = model.objective(b)
        if np.max(np.abs(score) * np.maximum(np.abs(b), 1)) < max(abs(lik), 1) * gtol:
            converged = True
            break
        if iteration == max_iterations:
            break
        step = -np.linalg.solve(hess, score)
        halvings = 0
        while True:
            new = model.objective(b + step)[0]
            if np.isfinite(new) and new <= lik + 1e-4 * float(step @ score):
                break
            halvings += 1
            step = step * 0.5
            if halvings > 20:
                break
        if halvings > 20:
            break
        b = b + step
    se = np.sqrt(np.diag(model.robust_variance(b)))
    return FineGray(b, se, converged, int(w.sum()), int(w[status == EVENT].sum()), int(w[status == COMPETING].sum()))
