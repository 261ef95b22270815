"""Cox-model inference beside the Wald hazard ratio: Firth, likelihood-ratio tests, PH test, splines.

Plain numpy arrays in, plain numbers out; conventions (each as R would compute it):

* **Firth-penalised Cox** (Heinze & Schemper 2001, R ``coxphf``): ``firthmodels.FirthCoxPH``
  (Breslow ties, as ``coxphf``) on the distinct rows with frequency weights (:mod:`clms_etl.survival.firth`), profile penalised likelihood 95 % intervals and penalised
  likelihood-ratio tests per coefficient. Finite whenever the model matrix has full rank, so it is
  reported for rows the ordinary Cox model cannot estimate.
* **Likelihood-ratio tests** of the ordinary Cox model (Efron ties, R ``coxph``; fitted on the
  distinct rows by :mod:`clms_etl.survival.efron`):
  2 (log L(full) - log L(reduced)), chi-square on the number of dropped coefficients (R
  ``anova(reduced, full)`` / ``drop1(fit, test = "Chisq")``).
* **Proportional hazards** (R ``survival::cox.zph``, survival >= 3.0): the score test of adding
  ``x * g(t)`` to the fitted model, g the left-continuous Kaplan-Meier transform of time
  (``transform = "km"``) centred on its mean over the events, per term and global; lifelines'
  ``proportional_hazard_test`` is the pre-3.0 approximation, hence this implementation.
* **Multiplicity**: Holm and Benjamini-Hochberg adjusted p-values (R ``p.adjust``).
* **Restricted cubic spline** (R ``rms::rcspline.eval``, Harrell's basis, knots at the 10/50/90th
  percentiles, the outer ones at the 5th smallest / largest value below 100 observations):
  likelihood-ratio test of non-linearity, spline model vs linear model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from clms_etl.survival import efron

PH_ALPHA = 0.05  # a cox.zph p-value below this flags a proportional-hazards violation
SPLINE_KNOTS = 3
PROFILE_MAX_ITER = 200  # iterations per profile-likelihood bound (firthmodels' default: 50)


@dataclass(frozen=True)
class FirthTerm:
    """One coefficient of a Firth-penalised Cox model."""

    coef: float
    se: float
    hr: float
    ci_lower: float  # profile penalised likelihood bound of the HR
    ci_upper: float
    lr_chi2: float  # penalised likelihood-ratio test of coef = 0 (coxphf's "Chisq")
    lr_p: float


def firth_cox(x: np.ndarray, time: np.ndarray, event: np.ndarray, alpha: float = 0.05,
              weight: np.ndarray | None = None) -> list[FirthTerm]:
    """Firth-penalised Cox model of ``event`` over ``time`` on the columns of ``x`` (n x k); ``weight``:
    the number of patients of each row (one each when None)."""
    from clms_etl.survival.firth import FrequencyWeightedFirthCoxPH

    x = np.asarray(x, dtype=float).reshape(len(time), -1)
    rows = efron.tied_rows(x, time, event, weight)  # Breslow's likelihood is the same on distinct rows, weighted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings surface as NaN, checked below
        model = FrequencyWeightedFirthCoxPH().fit_rows(rows.x, rows.time, rows.event, rows.count)
        model.lrt()
        ci = model.conf_int(alpha=alpha, method="pl", max_iter=PROFILE_MAX_ITER)
    if not model.converged_:
        raise ArithmeticError("Firth-penalised Cox model did not converge")
    # a profile bound or a penalised LR test that did not converge comes back NaN: no estimate then,
    # rather than an interval that does not hold its estimate
    if not (np.all(np.isfinite(ci)) and np.all(np.isfinite(model.lrt_pvalues_))):
        raise ArithmeticError("profile likelihood interval or penalised LR test did not converge")
    # The statistic from firthmodels' back-corrected SE (|coef| / sqrt(chi2)), not from the p-value:
    # past chi2 ~ 1,500 (a strong effect in a national cohort) p underflows to 0 and chi2.isf(0) is inf.
    lr_chi2 = np.where(np.isinf(model.lrt_bse_), 0.0, (model.coef_ / model.lrt_bse_) ** 2)
    return [FirthTerm(float(model.coef_[j]), float(model.bse_[j]), float(np.exp(model.coef_[j])),
                      float(np.exp(ci[j, 0])), float(np.exp(ci[j, 1])), float(lr_chi2[j]),
                      float(model.lrt_pvalues_[j]))
            for j in range(x.shape[1])]


def cox_loglik(x: np.ndarray | None, time: np.ndarray, event: np.ndarray,
               weight: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Ordinary Cox model (Efron ties): (maximised log partial likelihood, coefficients, covariance).

    ``x`` None or with no column: the null model (log L(0)). Fitted on the distinct rows
    (:mod:`clms_etl.survival.efron`; ``weight``: patients per given row); raises lifelines'
    ``ConvergenceError``.
    """
    if x is None or np.asarray(x).size == 0:
        return _null_loglik(time, event, weight), np.zeros(0), np.zeros((0, 0))
    fitted = efron.fit(efron.tied_rows(x, time, event, weight))
    return fitted.loglik, fitted.coef, fitted.variance


def _null_loglik(time: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None) -> float:
    """log L(beta = 0) with Efron ties: every subject has risk 1."""
    return efron.null_loglik(efron.tied_rows(None, time, event, weight))


def lr_test(loglik_full: float, loglik_reduced: float, df: int) -> tuple[float, float]:
    """Likelihood-ratio chi-square and p-value."""
    chi2 = max(2.0 * (loglik_full - loglik_reduced), 0.0)
    return chi2, float(stats.chi2.sf(chi2, df))


# -- proportional hazards: R cox.zph ----------------------------------------------------------------


@dataclass(frozen=True)
class ZphResult:
    """cox.zph: per term (chisq, df, p) and GLOBAL; scaled Schoenfeld residuals for the plot."""

    terms: dict[str, tuple[float, int, float]]
    global_test: tuple[float, int, float]
    event_times: np.ndarray  # time of each event (sorted)
    transformed_times: np.ndarray  # g(t) of each event, before centring (R's zph$x)
    scaled_residuals: np.ndarray  # events x terms (R's zph$y)


def km_transform(time: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """1 - S(t-) for every subject: the left-continuous Kaplan-Meier of the whole sample (cox.zph "km")."""
    from clms_etl.survival.km import kaplan_meier

    km = kaplan_meier(time, event, weights=weight)
    idx = np.searchsorted(km.time, time, side="left") - 1  # last step strictly before t
    return 1.0 - np.where(idx >= 0, km.survival[np.clip(idx, 0, None)], 1.0)


def cox_zph(x: np.ndarray, time: np.ndarray, event: np.ndarray, coef: np.ndarray,
            terms: dict[str, Sequence[int]], weight: np.ndarray | None = None) -> ZphResult:
    """Score test of proportional hazards for a fitted Cox model (Efron ties), as R ``cox.zph``.

    ``coef``: the fitted coefficients; ``terms``: the columns of
    each term (a factor's indicators form one term). The sums run over the distinct rows
    (:class:`~clms_etl.survival.efron.EfronRiskSets`); the residuals are per death, in time order
    (ties in the order of the subjects). ``weight``: patients per row (rows collapsed upstream: each
    death row gives its patients' residuals, ties then in the order of the rows).
    """
    x = np.asarray(x, dtype=float).reshape(len(time), -1)
    time, event = np.asarray(time, float), np.asarray(event, bool)
    p = x.shape[1]
    ttimes = km_transform(time, event, weight)
    deaths = np.flatnonzero(event)
    if weight is not None:  # one entry per patient who died
        deaths = np.repeat(deaths, np.asarray(weight)[deaths].astype(np.int64))
    g = ttimes - ttimes[deaths].mean()
    risk_sets = efron.EfronRiskSets(efron.tied_rows(x, time, event, weight))
    _, _, _, means, info_t = risk_sets.terms(np.asarray(coef, dtype=float))
    deaths = deaths[np.argsort(time[deaths], kind="stable")]  # each death, time order, ties as given
    which = np.searchsorted(risk_sets.event_times, time[deaths])
    resid = x[deaths] - means[which]  # Efron Schoenfeld residuals: each death against the averaged mean
    gt = g[deaths]
    u = np.zeros(2 * p)
    u[p:] = gt @ resid
    # g is constant within an event time: the time's g weighs its information
    g_time = np.zeros(risk_sets.event_times.size)
    g_time[which] = gt
    imat = np.zeros((2 * p, 2 * p))
    imat[:p, :p] = info_t.sum(axis=0)
    imat[:p, p:] = np.einsum("t,tjk->jk", g_time, info_t)
    imat[p:, p:] = np.einsum("t,tjk->jk", g_time * g_time, info_t)
    imat[p:, :p] = imat[:p, p:].T
    event_times, event_g, schoen = time[deaths], ttimes[deaths], [resid]

    def score_test(cols: Sequence[int]) -> tuple[float, int, float]:
        kk = [*range(p), *(p + c for c in cols)]
        uu = np.concatenate([np.zeros(p), u[[p + c for c in cols]]])
        chi2 = float(np.linalg.solve(imat[np.ix_(kk, kk)], uu) @ uu)
        return chi2, len(cols), float(stats.chi2.sf(chi2, len(cols)))

    # scaled Schoenfeld residuals, one column per term (R: a factor's columns combined by its
    # coefficients, centred on 1; a single column centred on its coefficient)
    names = list(terms)
    combine = np.zeros((p, len(names)))
    for i, cols in enumerate(terms.values()):
        combine[list(cols), i] = 1.0 if len(cols) == 1 else coef[list(cols)]
    residuals = (np.vstack(schoen) if schoen else np.zeros((0, p))) @ combine
    vmean = combine.T @ (imat[:p, :p] / deaths.size) @ combine
    centre = np.array([coef[list(cols)][0] if len(cols) == 1 else 1.0 for cols in terms.values()])
    return ZphResult(terms={name: score_test(cols) for name, cols in terms.items()},
                     global_test=score_test(range(p)), event_times=np.asarray(event_times),
                     transformed_times=np.asarray(event_g),
                     scaled_residuals=np.linalg.solve(vmean, residuals.T).T + centre)


# -- multiplicity: R p.adjust -----------------------------------------------------------------------


def p_adjust(p: Sequence[float | None], method: str) -> list[float | None]:
    """Holm (``"holm"``) or Benjamini-Hochberg (``"BH"``) adjusted p-values; None stays None (R's NA).

    BH is scipy's ``false_discovery_control``; scipy has no Holm, whose step-down maximum is written
    out here rather than adding statsmodels for one line.
    """
    idx = [i for i, v in enumerate(p) if v is not None and np.isfinite(v)]
    out: list[float | None] = [None] * len(p)
    if not idx:
        return out
    values = np.asarray([p[i] for i in idx], dtype=float)
    if method == "BH":
        adjusted = stats.false_discovery_control(values, method="bh")
    elif method == "holm":
        m = values.size
        order = np.argsort(values, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * values[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
    else:
        raise ValueError(f"unknown method {method!r}: holm or BH")
    for i, v in zip(idx, adjusted, strict=True):
        out[i] = float(v)
    return out


# -- continuous predictors: restricted cubic spline -------------------------------------------------


def rcs_knots(x: np.ndarray, n_knots: int = SPLINE_KNOTS) -> np.ndarray:
    """Knots of ``rms::rcspline.eval`` for 3 knots: 10/50/90th percentiles (R type 7), outer knots at
    the 5th smallest and 5th largest values when there are fewer than 100 observations."""
    if n_knots != 3:
        raise ValueError("only 3 knots are implemented")
    x = np.sort(np.asarray(x, dtype=float))
    knots = np.quantile(x, [0.1, 0.5, 0.9])
    if x.size < 100:
        knots[0], knots[-1] = x[4], x[-5]
    return knots


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Non-linear columns of Harrell's restricted cubic spline (``rcspline.eval``, norm = 2)."""
    x = np.asarray(x, dtype=float)
    k = np.asarray(knots, dtype=float)
    last, before = k[-1], k[-2]
    scale = (last - k[0]) ** 2

    def cube(v):
        return np.clip(v, 0, None) ** 3
    cols = [(cube(x - k[j]) - cube(x - before) * (last - k[j]) / (last - before)
             + cube(x - last) * (before - k[j]) / (last - before)) / scale for j in range(len(k) - 2)]
    return np.column_stack(cols)


@dataclass(frozen=True)
class ContinuousFit:
    n: int
    events: int
    coef: float
    hr: float
    ci_lower: float  # Wald
    ci_upper: float
    wald_p: float
    lr_chi2: float
    lr_p: float
    knots: tuple[float, ...]
    nonlinear_chi2: float
    nonlinear_df: int
    nonlinear_p: float


def continuous_cox(x: np.ndarray, time: np.ndarray, event: np.ndarray, alpha: float = 0.05,
                   spline: bool = True, weight: np.ndarray | None = None) -> ContinuousFit:
    """Linear Cox model of ``x`` (per unit) and, with ``spline``, the test of non-linearity (R ``anova``
    of the linear vs the restricted-cubic-spline model); without it the spline fields are NaN.
    ``weight``: patients per row (the knots are the patients' percentiles)."""
    x = np.asarray(x, dtype=float)
    n = np.ones(x.size) if weight is None else np.asarray(weight, dtype=float)
    ll0 = _null_loglik(time, event, weight)
    ll1, coef, var = cox_loglik(x[:, None], time, event, weight)
    se = float(np.sqrt(var[0, 0]))
    z = stats.norm.isf(alpha / 2)
    lr = lr_test(ll1, ll0, 1)
    knots: tuple[float, ...] = ()
    nl = (float("nan"), float("nan"))
    if spline:
        k = rcs_knots(x if weight is None else np.repeat(x, n.astype(np.int64)))
        knots = tuple(float(v) for v in k)
        nl = lr_test(cox_loglik(np.column_stack([x, rcs_basis(x, k)]), time, event, weight)[0], ll1, len(k) - 2)
    return ContinuousFit(int(n.sum()), int(np.sum(np.asarray(event) * n)), float(coef[0]), float(np.exp(coef[0])),
                         float(np.exp(coef[0] - z * se)), float(np.exp(coef[0] + z * se)),
                         float(2 * stats.norm.sf(abs(coef[0]) / se)), *lr, knots,
                         nl[0], SPLINE_KNOTS - 2, nl[1])
