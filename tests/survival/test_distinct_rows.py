"""Fitting on distinct rows weighted by their number gives the fits of one row per patient.

The survival analysis collapses patients with the same time, event and covariates before fitting
(``clms_etl.survival.efron``, ``clms_etl.survival.firth``, Fine-Gray in ``competing``); these tests
hold the collapsed fits to the libraries' fits on the patients' own rows. R stays the oracle of the
numbers themselves (``test_r_oracle_*``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clms_etl.survival import efron
from clms_etl.survival.cox import firth_cox


def _tied_cohort(seed: int, n: int = 400, p: int = 2):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, p)) < 0.4).astype(float)
    time = np.round(rng.exponential(6, n))  # whole months: many ties
    event = rng.random(n) < 0.6
    return x, time, event


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_firth_on_weighted_distinct_rows_equals_firthmodels_on_patient_rows(seed):
    from firthmodels import FirthCoxPH

    x, time, event = _tied_cohort(seed)
    assert efron.tied_rows(x, time, event).x.shape[0] < len(time) / 2  # the cohort does collapse
    model = FirthCoxPH(backend="numpy").fit(x, (event, time))
    model.lrt()
    ci = np.exp(model.conf_int(method="pl", max_iter=200))
    for j, term in enumerate(firth_cox(x, time, event)):
        assert term.coef == pytest.approx(model.coef_[j], abs=1e-7)
        assert term.se == pytest.approx(model.bse_[j], rel=1e-7)
        assert (term.ci_lower, term.ci_upper) == pytest.approx(tuple(ci[j]), rel=1e-6)
        assert term.lr_p == pytest.approx(model.lrt_pvalues_[j], rel=1e-6)


@pytest.mark.parametrize("seed", [4, 5])
def test_efron_cox_on_distinct_rows_equals_lifelines_on_patient_rows(seed):
    from lifelines import CoxPHFitter

    x, time, event = _tied_cohort(seed)
    frame = pd.DataFrame(x, columns=["a", "b"]).assign(time=time, event=event)
    reference = CoxPHFitter().fit(frame, "time", "event", fit_options={"precision": 1e-12})
    fitted = efron.fit(efron.tied_rows(x, time, event))
    assert fitted.coef == pytest.approx(reference.params_.to_numpy(), abs=1e-7)
    assert fitted.variance == pytest.approx(reference.variance_matrix_.to_numpy(), rel=1e-6)
    assert fitted.loglik == pytest.approx(reference.log_likelihood_, rel=1e-10)
