"""Table 2's Cox inference beside the Wald hazard ratio, and the models the paper did not fit.

Per endpoint and predictor (frames as :func:`clms_etl.survival.univariate.univariate` takes them):

* :func:`univariate_cox` — per level: the likelihood-ratio test of the same ordinary Cox model as
  the hazard ratio (that level's indicator dropped) and the predictor's global LR test; the
  Firth-penalised hazard ratio with its profile-likelihood interval and penalised LR p for every
  level with patients (even with no event in a group); the proportional-hazards test of the
  predictor's term (R ``cox.zph``). Holm and Benjamini-Hochberg adjusted p-values are added
  across the rows of an endpoint by :func:`adjust_rows` (of the Firth LR p: the one p every row has).
* :func:`continuous_cox_rows` — the continuous predictors per unit, with the spline test of
  non-linearity (the median split stays Table 2's presentation).
* :func:`multivariable_rows` — a Firth-penalised multivariable Cox model, events per variable
  shown, a warning below :data:`MIN_EVENTS_PER_VARIABLE`.

Methods and references: :mod:`clms_etl.survival.cox` and ``docs/survival.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from clms_etl.survival.cox import PH_ALPHA, ZphResult, continuous_cox, cox_loglik, cox_zph, firth_cox, lr_test, p_adjust
from clms_etl.survival.tables import PH_RESIDUAL
from clms_etl.survival.univariate import MIN_EVENTS, Predictor

MIN_EVENTS_PER_VARIABLE = 10
MIN_EVENTS_SPLINE = 10  # fewer events: no spline test (three knots, one more parameter)
MIN_VALUES_SPLINE = 10  # distinct values: the knots must be distinct
UNIVARIATE, MULTIVARIABLE = "univariate", "multivariable"
PH_TRANSFORM = "km"


def _indicators(data: pl.DataFrame, key: str, levels: Sequence[str]) -> np.ndarray:
    return np.column_stack([(data[key] == lvl).to_numpy().astype(float) for lvl in levels]) if levels \
        else np.zeros((data.height, 0))


def _ph_rows(zph: ZphResult, endpoint: str, model: str, labels: dict[str, str]) -> tuple[list[dict], list[pl.DataFrame]]:
    """Rows of ph_test (each term, then GLOBAL for a model of several terms) and ph_residual as a frame."""
    tests = [(name, *zph.terms[name]) for name in zph.terms]
    if len(tests) > 1:
        tests.append(("GLOBAL", *zph.global_test))
    rows = [{"endpoint": endpoint, "model": model, "term": term, "term_label": labels.get(term, "all terms"),
             "chisq": chi2, "df": df, "p": p, "transform": PH_TRANSFORM, "violated": bool(p < PH_ALPHA)}
            for term, chi2, df, p in tests]
    # one row per event and term: built as columns (hundreds of thousands of events at registry scale),
    # the names as literals (no Python string per row)
    n_events, terms = len(zph.event_times), list(zph.terms)
    scaled = np.asarray(zph.scaled_residuals, dtype=float).reshape(n_events, -1)
    events = {"event_index": np.arange(1, n_events + 1), "time_months": np.asarray(zph.event_times, dtype=float),
              "transformed_time": np.asarray(zph.transformed_times, dtype=float)}
    # in the table's types already: millions of rows are concatenated as they are, not cast again
    schema = PH_RESIDUAL.schema
    residuals = [pl.DataFrame({"endpoint": pl.repeat(endpoint, n_events, dtype=schema["endpoint"], eager=True),
                               "model": pl.repeat(model, n_events, dtype=schema["model"], eager=True),
                               "term": pl.repeat(term, n_events, dtype=schema["term"], eager=True),
                               **events, "scaled_residual": scaled[:, j]}, schema=schema)
                 for j, term in enumerate(terms)]
    return rows, residuals


def _weights(data: pl.DataFrame, weight_col: str | None) -> np.ndarray | None:
    return data[weight_col].to_numpy().astype(float) if weight_col else None


def univariate_cox(frame: pl.DataFrame, predictor: Predictor, estimable: Sequence[str], endpoint: str,
                   duration_col: str = "time_months", event_col: str = "event",
                   weight_col: str | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(univariate_cox rows, ph_test rows, ph_residual rows) of one predictor for one endpoint.

    ``estimable``: the levels the ordinary Cox model estimates (``univariate_analysis.estimable``):
    the LR and PH tests are of that model, as the hazard ratios are. ``weight_col``: the number of
    patients of each row when ``frame`` holds distinct rows.
    """
    known = (*predictor.levels, predictor.reference)
    data = (frame.select(duration_col, event_col, predictor.key, *([weight_col] if weight_col else [])).drop_nulls()
            .filter(pl.col(predictor.key).is_in(known)))
    time, event = data[duration_col].to_numpy().astype(float), data[event_col].to_numpy().astype(bool)
    weight = _weights(data, weight_col)
    rows = {lvl: {"endpoint": endpoint, "predictor": predictor.key, "level": lvl, "reference_level": predictor.reference}
            for lvl in predictor.levels}

    # ordinary Cox (Efron): the model of the hazard ratios, restricted to its levels' patients
    ph_rows: list[dict] = []
    residual_rows: list[pl.DataFrame] = []
    fit_levels = [lvl for lvl in predictor.levels if lvl in estimable]
    if fit_levels:
        sub = data.filter(pl.col(predictor.key).is_in([*fit_levels, predictor.reference]))
        t, e = sub[duration_col].to_numpy().astype(float), sub[event_col].to_numpy().astype(bool)
        w = _weights(sub, weight_col)
        x = _indicators(sub, predictor.key, fit_levels)
        try:
            ll_full, coef, _ = cox_loglik(x, t, e, w)
        except Exception:  # noqa: BLE001 - lifelines' ConvergenceError at R's tolerance: no LR / PH test
            fit_levels = []
    if fit_levels:
        ll_null, _, _ = cox_loglik(None, t, e, w)
        global_chi2, global_p = lr_test(ll_full, ll_null, len(fit_levels))
        for j, lvl in enumerate(fit_levels):
            reduced = np.delete(x, j, axis=1)
            chi2, p = (global_chi2, global_p) if reduced.shape[1] == 0 else lr_test(ll_full, cox_loglik(reduced, t, e, w)[0], 1)
            rows[lvl].update(lr_chi2=chi2, lr_df=1, lr_p=p, global_lr_chi2=global_chi2,
                             global_lr_df=len(fit_levels), global_lr_p=global_p)
        zph = cox_zph(x, t, e, coef, {predictor.key: range(len(fit_levels))}, w)
        ph_rows, residual_rows = _ph_rows(zph, endpoint, UNIVARIATE, {predictor.key: predictor.label})
        chi2, df, p = zph.terms[predictor.key]
        for lvl in fit_levels:
            rows[lvl].update(ph_chisq=chi2, ph_df=df, ph_p=p, ph_violated=bool(p < PH_ALPHA))

    # Firth: every level with patients, against the reference (finite even with no event in a group)
    firth_levels = [lvl for lvl in predictor.levels if (data[predictor.key] == lvl).any()]
    reason = None
    if not firth_levels or not (data[predictor.key] == predictor.reference).any():
        reason = "no patient in the level or in the reference"
    elif not event.any():
        reason = "no event"
    else:
        try:
            fitted = firth_cox(_indicators(data, predictor.key, firth_levels), time, event, weight=weight)
        except (ArithmeticError, np.linalg.LinAlgError, ValueError) as exc:
            reason = f"Firth model failed: {str(exc).splitlines()[0][:80]}"
        else:
            for lvl, term in zip(firth_levels, fitted, strict=True):
                rows[lvl].update(firth_hr=term.hr, firth_ci_lower=term.ci_lower, firth_ci_upper=term.ci_upper,
                                 firth_lr_chi2=term.lr_chi2, firth_lr_p=term.lr_p)
    for lvl, row in rows.items():
        if "firth_hr" not in row:
            row["firth_reason"] = reason or f"no patient in level {lvl}"
    return list(rows.values()), ph_rows, residual_rows


def adjust_rows(rows: list[dict], p_column: str = "firth_lr_p") -> list[dict]:
    """Holm and Benjamini-Hochberg adjusted p-values of ``p_column`` across ``rows`` (one endpoint)."""
    p = [r.get(p_column) for r in rows]
    holm, bh = p_adjust(p, "holm"), p_adjust(p, "BH")
    m = sum(v is not None for v in p)
    return [{**r, "p_holm": h, "p_bh": b, "adjusted_tests": m} for r, h, b in zip(rows, holm, bh, strict=True)]


def continuous_cox_rows(frame: pl.DataFrame, column: str, predictor: Predictor, unit: str, endpoint: str,
                        duration_col: str = "time_months", event_col: str = "event") -> dict:
    """One continuous_cox row: HR per ``unit`` of ``column``, LR test, spline test of non-linearity.

    ``frame``: one row per patient; fitted on its distinct (time, event, value) rows.
    """
    data = (frame.select(duration_col, event_col, column).drop_nulls()
            .group_by(duration_col, event_col, column).agg(patients=pl.len()))
    x, t, e, w = (data[column].to_numpy().astype(float), data[duration_col].to_numpy().astype(float),
                  data[event_col].to_numpy().astype(bool), data["patients"].to_numpy().astype(float))
    events = int(w[e].sum())
    row = {"endpoint": endpoint, "predictor": predictor.key, "predictor_label": predictor.label, "variable": column,
           "unit": unit, "n": int(w.sum()), "events": events, "median_split": predictor.definition}
    if events < MIN_EVENTS:
        return {**row, "reason": f"{events} events < {MIN_EVENTS}, the minimum for a hazard ratio"}
    spline = events >= MIN_EVENTS_SPLINE and np.unique(x).size >= MIN_VALUES_SPLINE
    try:
        fit = continuous_cox(x, t, e, spline=spline, weight=w)
    except Exception as exc:  # noqa: BLE001 - lifelines' ConvergenceError or a singular spline basis
        return {**row, "reason": f"model failed: {str(exc).splitlines()[0][:80]}"}
    out = {**row, "hr_per_unit": fit.hr, "hr_ci_lower": fit.ci_lower, "hr_ci_upper": fit.ci_upper,
           "wald_p": fit.wald_p, "lr_chi2": fit.lr_chi2, "lr_p": fit.lr_p, "reason": None}
    if not spline:
        return {**out, "reason": f"no spline test: {events} events, {np.unique(x).size} distinct values "
                                 f"(needs {MIN_EVENTS_SPLINE} and {MIN_VALUES_SPLINE})"}
    return {**out, "spline_knots": ", ".join(f"{k:g}" for k in fit.knots), "nonlinear_chi2": fit.nonlinear_chi2,
            "nonlinear_df": fit.nonlinear_df, "nonlinear_p": fit.nonlinear_p,
            "log_linear": bool(fit.nonlinear_p >= PH_ALPHA)}


def multivariable_rows(frame: pl.DataFrame, predictors: Sequence[Predictor], endpoint: str,
                       duration_col: str = "time_months", event_col: str = "event",
                       weight_col: str | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """(multivariable_cox rows, ph_test rows, ph_residual rows): Firth Cox on ``predictors`` (binary,
    first level vs reference), complete cases; events per variable and the warning below 10.
    ``weight_col``: patients per row when ``frame`` holds distinct rows."""
    keys = [p.key for p in predictors]
    data = frame.select(duration_col, event_col, *keys, *([weight_col] if weight_col else [])).drop_nulls()
    x = np.column_stack([(data[p.key] == p.levels[0]).to_numpy().astype(float) for p in predictors]) \
        if data.height else np.zeros((0, len(predictors)))
    t, e = data[duration_col].to_numpy().astype(float), data[event_col].to_numpy().astype(bool)
    w = _weights(data, weight_col)
    n = data.height if w is None else int(w.sum())
    events = int(e.sum()) if w is None else int(w[e].sum())
    epv = events / len(predictors)
    warning = (f"{epv:.1f} events per variable < {MIN_EVENTS_PER_VARIABLE}: estimates unstable, exploratory only"
               if epv < MIN_EVENTS_PER_VARIABLE else None)
    base = [{"endpoint": endpoint, "term": p.key, "term_label": p.label, "level": p.levels[0],
             "reference_level": p.reference, "n": n, "events": events, "n_parameters": len(predictors),
             "events_per_variable": epv, "warning": warning} for p in predictors]
    varying = [j for j in range(len(predictors)) if data.height and np.unique(x[:, j]).size == 2]
    if not events or len(varying) < len(predictors):
        return [{**b, "reason": "no event, or a factor without both levels among the complete cases"} for b in base], [], []
    try:
        fitted = firth_cox(x, t, e, weight=w)
    except (ArithmeticError, np.linalg.LinAlgError, ValueError) as exc:
        return [{**b, "reason": f"Firth model failed: {str(exc).splitlines()[0][:80]}"} for b in base], [], []
    rows = [{**b, "firth_hr": f.hr, "firth_ci_lower": f.ci_lower, "firth_ci_upper": f.ci_upper,
             "firth_lr_chi2": f.lr_chi2, "firth_lr_p": f.lr_p, "reason": None} for b, f in zip(base, fitted, strict=True)]
    # the PH test needs the ordinary model (cox.zph takes a coxph fit); skipped when it has no finite estimate
    try:
        _, coef, _ = cox_loglik(x, t, e, w)
    except Exception:  # noqa: BLE001 - lifelines' ConvergenceError (monotone likelihood)
        return rows, [], []
    if not np.all(np.isfinite(coef)) or np.max(np.abs(coef)) > 10:
        return rows, [], []
    zph = cox_zph(x, t, e, coef, {p.key: [j] for j, p in enumerate(predictors)}, w)
    ph, residuals = _ph_rows(zph, endpoint, MULTIVARIABLE, {p.key: p.label for p in predictors})
    by_term = {r["term"]: r for r in ph}
    rows = [{**r, "ph_p": by_term[r["term"]]["p"]} for r in rows]
    return rows, ph, residuals
