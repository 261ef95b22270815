"""Endpoint frames and the survival population, from the warehouse's analytics views.

Time origin: the date of pathological diagnosis; censoring at last contact (the latest of the
last-news and death dates); months = days / 30.4375 (:data:`DAYS_PER_MONTH`).

========  ==============================================================  ==================================
endpoint  event                                                           censored at
========  ==============================================================  ==================================
OS        death, any cause                                                last contact
DSS       death from cLMS                                                 last contact; other deaths at death
PFS       first of local recurrence, metastasis or death                  last contact
RFS       first metastasis (the study's "RFS" = metastasis-free, see      last contact; deaths at death
          clms_paper.json ``survival._note``)
LRFS      first local recurrence                                          last contact; deaths at death
RMFS      first local recurrence or metastasis (outcome of Table 2)       last contact; deaths at death
========  ==============================================================  ==================================

OS to LRFS come from the ``analytics.survival`` view; RMFS is derived here from
``analytics.patient_summary`` (first local recurrence and first metastasis dates).

The survival population follows a preset of :data:`POPULATIONS` and ``min_follow_up_months``
(:data:`MIN_FOLLOW_UP_MONTHS` = 3): ``paper`` keeps the patients followed for at least the minimum
(the study's rule, early deaths left out), ``censored_before_minimum`` (the default) leaves out only
the patients censored before it. The rule is the warehouse's (:class:`PopulationRule`, also read by
the ``analytics`` views); every other patient is listed by :func:`exclusions` with the reason.
"""

from __future__ import annotations

import polars as pl

from clms_etl.warehouse.analytics import (DAYS_PER_MONTH, DEFAULT_POPULATION, MIN_FOLLOW_UP_MONTHS, POPULATIONS,
                                         PopulationRule)

VIEW_ENDPOINTS = ("OS", "DSS", "PFS", "RFS", "LRFS")
ENDPOINTS = (*VIEW_ENDPOINTS, "RMFS")
ENDPOINT_LABELS = {
    "OS": "Overall survival",
    "DSS": "Disease-specific survival",
    "PFS": "Progression-free survival",
    "RFS": "Relapse-free survival (metastasis-free)",
    "LRFS": "Local recurrence-free survival",
    "RMFS": "Local recurrence- or metastasis-free survival",
}
ENDPOINT_SCHEMA = {"patient_id": pl.String, "endpoint": pl.String, "time_months": pl.Float64, "event": pl.Int64}


def population_rule(population: str = DEFAULT_POPULATION) -> PopulationRule:
    """The preset named ``population``; ``ValueError`` naming the presets otherwise."""
    try:
        return POPULATIONS[population]
    except KeyError:
        raise ValueError(f"survival population must be one of {sorted(POPULATIONS)}, not {population!r}") from None


def survival_population(patient_summary: pl.DataFrame, min_follow_up_months: float = MIN_FOLLOW_UP_MONTHS,
                        population: str = DEFAULT_POPULATION) -> pl.DataFrame:
    """Patients of the survival population (one row per patient, the ``patient_summary`` columns)."""
    excluded = exclusions(patient_summary, min_follow_up_months, population)["patient_id"]
    return patient_summary.filter(~pl.col("patient_id").is_in(excluded.implode()))


EXCLUSION_REASONS = {  # survival_exclusion.reason -> the reason in words
    "no_diagnosis_date": "no date of pathological diagnosis",
    "no_follow_up_date": "no date of last news or death",
    "follow_up_before_diagnosis": "last contact dated before the diagnosis",
    "short_follow_up": "follow-up shorter than the minimum",
}


def exclusions(patient_summary: pl.DataFrame, min_follow_up_months: float = MIN_FOLLOW_UP_MONTHS,
               population: str = DEFAULT_POPULATION) -> pl.DataFrame:
    """Patients left out of the survival population, with the reason (table ``survival_exclusion``)."""
    rule = population_rule(population)
    s = patient_summary.with_columns(
        follow_up_months=(pl.col("last_contact_date") - pl.col("diagnosis_date")).dt.total_days() / DAYS_PER_MONTH)
    short = pl.col("follow_up_months") < min_follow_up_months
    if not rule.excludes_early_deaths:
        short = short & pl.col("death_date").is_null()
    reason = (
        pl.when(pl.col("diagnosis_date").is_null()).then(pl.lit("no_diagnosis_date"))
        .when(pl.col("last_contact_date").is_null()).then(pl.lit("no_follow_up_date"))
        .when(pl.col("follow_up_months") < 0).then(pl.lit("follow_up_before_diagnosis"))
        .when(short).then(pl.lit("short_follow_up"))
    )
    detail = (
        pl.when(pl.col("reason") != "short_follow_up").then(pl.col("reason").replace_strict(EXCLUSION_REASONS))
        .otherwise(pl.format("{}follow-up {} months < {} months ({} rule)",
                             pl.when(pl.col("death_date").is_null()).then(pl.lit("alive at last contact, "))
                             .otherwise(pl.lit("died, ")),
                             pl.col("follow_up_months").round(1), pl.lit(float(min_follow_up_months)),
                             pl.lit(rule.name)))
    )
    return (
        s.with_columns(reason=reason)
        .filter(pl.col("reason").is_not_null())
        .with_columns(detail=detail, min_follow_up_months=pl.lit(float(min_follow_up_months)))
        .select("patient_id", "centre", "reason", "detail", "follow_up_months", "min_follow_up_months")
        .sort("reason", "patient_id")
    )


def endpoint_frame(patient_summary: pl.DataFrame, survival: pl.DataFrame,
                   min_follow_up_months: float = MIN_FOLLOW_UP_MONTHS,
                   population: str = DEFAULT_POPULATION) -> pl.DataFrame:
    """One row per patient of the survival population and endpoint: ``time_months``, ``event`` (1/0),
    sorted by endpoint and pseudonym.

    ``survival`` is the ``analytics.survival`` view (its ``in_survival_population`` flag follows the
    rule the analysis last stored, which may not be this one yet: the population is taken here).
    """
    # the columns of the rule and of RMFS only: not a copy of every included patient's characteristics
    population = survival_population(patient_summary.select(
        "patient_id", "centre", "diagnosis_date", "last_contact_date", "death_date", "first_local_recurrence_date",
        "first_metastasis_date"), min_follow_up_months, population)
    relapse_date = pl.min_horizontal("first_local_recurrence_date", "first_metastasis_date")
    rmfs = population.select(
        "patient_id",
        endpoint=pl.lit("RMFS"),
        time_months=(pl.coalesce(relapse_date, "last_contact_date") - pl.col("diagnosis_date")).dt.total_days()
        / DAYS_PER_MONTH,
        event=relapse_date.is_not_null().cast(pl.Int64),
    ).cast(ENDPOINT_SCHEMA).sort("patient_id")
    # one endpoint at a time in the population's order of pseudonyms (a join keeping that order), not a sort
    # of every patient and endpoint by their strings: the same rows in the same order
    patients = rmfs.select("patient_id")
    views = survival.select("patient_id", "endpoint", pl.col("time_months").cast(pl.Float64),
                            pl.col("event").cast(pl.Int64))
    return pl.concat([rmfs if endpoint == "RMFS" else
                      patients.join(views.filter(pl.col("endpoint") == endpoint), on="patient_id", how="inner",
                                    maintain_order="left").cast(ENDPOINT_SCHEMA)
                      for endpoint in sorted(ENDPOINTS)])
