"""Firth-penalised Cox (Breslow ties) on distinct rows with frequency weights, on firthmodels.

``firthmodels.FirthCoxPH`` takes one row per patient: each Newton step, each penalised LR test and
each profile-likelihood bound costs O(patients). Patients with the same time, event flag and
covariates contribute identical terms to Breslow's partial likelihood, its information and the
derivative of the Firth penalty, so one row per distinct (time, event, covariates) carrying the
number of patients (frequency weight) gives the same penalised likelihood exactly. firthmodels has
no weights; :class:`FrequencyWeightedFirthCoxPH` keeps its solver, its penalised LR test and its
profile-likelihood bounds (which take the likelihood as a function) and gives them
:func:`weighted_quantities`: firthmodels 0.8.2's ``compute_cox_quantities`` (numpy path, MIT
licence) with each row's risk and the event sums multiplied by the row's weight. Pinned by
``constraints.txt``; a test compares it with the unweighted fit on the patients' rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy
from firthmodels import FirthCoxPH
from firthmodels._solvers import newton_raphson
from firthmodels._utils import compensated_sum
from firthmodels.cox import _SCALE_GAP_LIMIT, CoxQuantities, _compensate_cumsum, _Workspace
from scipy.linalg.lapack import dpotrf, dpotrs, dpstrf


@dataclass(frozen=True)
class WeightedRows:
    """Rows sorted by time descending in blocks of equal time (firthmodels' ``_CoxPrecomputed``),
    each row standing for ``weight`` patients; block sums of deaths and of their covariates weighted."""

    X: np.ndarray
    weight: np.ndarray
    block_ends: np.ndarray
    block_d: np.ndarray
    block_s: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @classmethod
    def from_rows(cls, x: np.ndarray, time: np.ndarray, event: np.ndarray, weight: np.ndarray) -> WeightedRows:
        order = np.argsort(-time, kind="stable")
        x, time, event, weight = x[order], time[order], event[order], weight[order]
        block_ends = np.concatenate([np.flatnonzero(np.diff(time)) + 1, [time.size]])
        block = np.repeat(np.arange(block_ends.size), np.diff(block_ends, prepend=0))
        dead = weight * event
        block_d = np.bincount(block, weights=dead, minlength=block_ends.size)
        block_s = np.zeros((block_ends.size, x.shape[1]))
        np.add.at(block_s, block, x * dead[:, None])
        return cls(x, weight, block_ends, block_d, block_s)


def weighted_quantities(beta: np.ndarray, rows: WeightedRows, ws: _Workspace,
                        penalty_weight: float = 0.5) -> CoxQuantities:
    """Penalised log-likelihood, modified score and Fisher information (firthmodels'
    ``compute_cox_quantities``, numpy path) with frequency weights."""
    X, block_ends, block_d, block_s = rows.X, rows.block_ends, rows.block_d, rows.block_s
    k = rows.n_features
    np.matmul(X, beta, out=ws.eta)
    c = ws.eta.max()
    event_mask = block_d > 0
    event_block_indices = block_ends[event_mask] - 1
    if c - ws.eta[: event_block_indices[0] + 1].max() > _SCALE_GAP_LIMIT:
        # firthmodels rescales block by block there; risks 300 orders of magnitude apart do not
        # happen with the study's indicators: say so rather than carry that path
        raise ArithmeticError("linear predictor range beyond firthmodels' single scaling")
    np.subtract(ws.eta, c, out=ws.risk)
    np.exp(ws.risk, out=ws.risk)
    ws.risk *= rows.weight  # the weights: each row's risk counts its patients
    np.multiply(X, ws.risk[:, None], out=ws.wX)
    np.cumsum(ws.risk, out=ws.S0_cumsum)
    _compensate_cumsum(ws.risk, ws.S0_cumsum)
    np.cumsum(ws.wX, axis=0, out=ws.S1_cumsum)
    np.multiply(ws.wX[:, :, None], X[:, None, :], out=ws.S2_cumsum)
    np.cumsum(ws.S2_cumsum, axis=0, out=ws.S2_cumsum)
    S0_events = ws.S0_cumsum[event_block_indices]
    S1_events = ws.S1_cumsum[event_block_indices]
    S2_events = ws.S2_cumsum[event_block_indices]
    log_S0 = c + np.log(S0_events)
    d_events = block_d[event_mask]
    s_events = block_s[event_mask]
    S0_inv = 1.0 / S0_events
    S0_inv2 = S0_inv * S0_inv
    x_bar = S1_events * S0_inv[:, None]
    loglik = compensated_sum(s_events @ beta - d_events * log_S0)
    score = (s_events - d_events[:, None] * x_bar).sum(axis=0)
    V = S2_events * S0_inv[:, None, None] - x_bar[:, :, None] * x_bar[:, None, :]
    np.einsum("b,brt->rt", d_events, V, out=ws.fisher_info)
    if penalty_weight == 0.0:
        return CoxQuantities(loglik=loglik, modified_score=score, fisher_info=ws.fisher_info)
    try:
        L, info = dpotrf(ws.fisher_info, lower=1, overwrite_a=0)
        if info != 0:
            raise scipy.linalg.LinAlgError("dpotrf failed")
        logdet = 2.0 * np.log(L.diagonal()).sum()
        inv_fisher_info, info = dpotrs(L, ws.eye_k, lower=1)
        if info != 0:
            raise scipy.linalg.LinAlgError("dpotrs failed")
    except scipy.linalg.LinAlgError:
        diag_max = np.abs(ws.fisher_info.diagonal()).max()
        tol = max(1, k) * np.finfo(np.float64).eps * diag_max
        C, piv, rank, info = dpstrf(ws.fisher_info, tol=tol, lower=1)
        if info == 0 and rank == k:
            logdet = 2.0 * np.log(C.diagonal()).sum()
            inv_perm, info = dpotrs(C, ws.eye_k, lower=1)
            if info != 0:
                raise scipy.linalg.LinAlgError("dpotrs failed on pivoted Cholesky") from None
            p = piv - 1
            inv_fisher_info = np.empty_like(ws.fisher_info)
            inv_fisher_info[np.ix_(p, p)] = inv_perm
        elif rank < k:
            raise scipy.linalg.LinAlgError("Fisher information is rank deficient") from None
        else:
            raise scipy.linalg.LinAlgError("dpstrf failed - Fisher information is not PSD") from None
    np.matmul(X, inv_fisher_info, out=ws.XI)
    np.einsum("ij,ij->i", ws.XI, X, out=ws.h)
    np.multiply(ws.wX, ws.h[:, None], out=ws.wXh)
    np.cumsum(ws.wXh, axis=0, out=ws.A_cumsum)
    np.cumsum(ws.risk * ws.h, out=ws.B_cumsum)
    A_events = ws.A_cumsum[event_block_indices]
    B_events = ws.B_cumsum[event_block_indices]
    term1_contrib = A_events * S0_inv[:, None] - B_events[:, None] * S1_events * S0_inv2[:, None]
    Ix = x_bar @ inv_fisher_info
    term23_contrib = np.einsum("brt,br->bt", V, Ix)
    firth_correction = penalty_weight * np.einsum("b,bt->t", d_events, term1_contrib - 2 * term23_contrib)
    return CoxQuantities(loglik=loglik + penalty_weight * logdet, modified_score=score + firth_correction,
                         fisher_info=ws.fisher_info)


class FrequencyWeightedFirthCoxPH(FirthCoxPH):
    """``FirthCoxPH`` fitted on weighted distinct rows (numpy backend); ``lrt`` and ``conf_int``
    (profile likelihood) work as firthmodels' on the same likelihood."""

    def __init__(self, max_iter: int = 50, max_step: float = 5.0, max_halfstep: int = 5, gtol: float = 1e-4,
                 xtol: float = 1e-6, penalty_weight: float = 0.5):
        super().__init__(backend="numpy", max_iter=max_iter, max_step=max_step, max_halfstep=max_halfstep,
                         gtol=gtol, xtol=xtol, penalty_weight=penalty_weight)

    def fit_rows(self, x: np.ndarray, time: np.ndarray, event: np.ndarray, weight: np.ndarray):
        rows = WeightedRows.from_rows(np.asarray(x, dtype=float), np.asarray(time, dtype=float),
                                      np.asarray(event, dtype=bool), np.asarray(weight, dtype=float))
        self._precomputed = rows
        self._workspace = _Workspace(rows.n_samples, rows.n_features)
        self.n_features_in_ = rows.n_features
        result = newton_raphson(compute_quantities=self._compute_quantities, n_features=rows.n_features,
                                max_iter=self.max_iter, max_step=self.max_step, max_halfstep=self.max_halfstep,
                                gtol=self.gtol, xtol=self.xtol)
        self.converged_ = result.converged
        self.coef_, self.loglik_, self.n_iter_ = result.beta, result.loglik, result.n_iter
        self._fisher_info = result.fisher_info.copy()
        self._cov = None
        self.bse_ = np.full(rows.n_features, np.nan)
        if np.all(np.isfinite(result.fisher_info)):
            L, info = dpotrf(result.fisher_info, lower=1, overwrite_a=0)
            if info == 0:
                inv, info = dpotrs(L, np.eye(rows.n_features, order="F"), lower=1)
                if info == 0:
                    self._cov = inv
                    self.bse_ = np.sqrt(inv.diagonal())
        self.pvalues_ = 2 * scipy.stats.norm.sf(np.abs(result.beta / self.bse_))
        self.lrt_pvalues_ = np.full(rows.n_features, np.nan)
        self.lrt_bse_ = np.full(rows.n_features, np.nan)
        self._profile_ci_cache = {}
        self._profile_ci_computed = {}
        return self

    def _compute_quantities(self, beta: np.ndarray) -> CoxQuantities:
        return weighted_quantities(beta, self._precomputed, self._workspace, self.penalty_weight)
