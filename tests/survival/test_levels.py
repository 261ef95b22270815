"""What the survival analysis holds per patient is small, and its tables are those it gave before.

* The predictors' levels are enums (a byte per patient, not a string). The analysis collapses patients
  to distinct (time, event, levels) rows sorted by those columns, and its sums follow that order: the
  enums' categories are in string order, so the rows, their order and every digit are those of string
  levels. Checked on a registry-like cohort (the twin resampled: thousands of distinct times, tied
  deaths) through :func:`analyse` with the levels as strings (the analysis before the enums) and as enums.
* ``load_inputs`` reads only the columns the analysis uses: the tables are those of the whole views.
"""

from __future__ import annotations

import polars as pl
import pytest

from bench.bench_survival import read_columns, resample
from clms_etl.survival import study
from clms_etl.survival.endpoints import survival_population
from clms_etl.survival.study import TUMOUR_EXTRA_SQL, analyse, load_inputs, predictors
from clms_etl.warehouse import Warehouse


@pytest.fixture(scope="module")
def cohort(twin_warehouse_url):
    """1,500 patients drawn from the twin, diagnoses moved back 0-730 days (the bench's resampling)."""
    with Warehouse(twin_warehouse_url) as wh:
        summary, survival = wh.read_sql(TUMOUR_EXTRA_SQL), wh.read_sql("SELECT * FROM analytics.survival")
    return read_columns(*resample(summary, survival, 1_500, seed=7))


def test_predictor_levels_are_enums_that_sort_and_group_as_their_strings(cohort):
    levels, specs = predictors(survival_population(cohort[0]))
    keys = [p.key for p in specs]
    for p in specs:
        column = levels[p.key]
        assert isinstance(column.dtype, pl.Enum), p.key
        assert column.dtype.categories.to_list() == sorted(column.dtype.categories.to_list()), p.key
        assert {p.reference, *p.levels} <= set(column.dtype.categories.to_list()), p.key
    as_strings = levels.with_columns(pl.col(keys).cast(pl.String))
    assert as_strings.select(keys).n_unique() > 20  # many distinct patterns, nulls among them
    # the collapsed rows of the analysis: the same rows in the same order
    collapsed = [frame.group_by(keys).len().sort(keys, nulls_last=True).with_columns(pl.col(keys).cast(pl.String))
                 for frame in (levels, as_strings)]
    assert collapsed[0].equals(collapsed[1])


def test_the_analysis_on_enum_levels_equals_the_analysis_on_string_levels(cohort, monkeypatch):
    enum_results = analyse(*cohort)

    def string_levels(population):
        levels, specs = predictors(population)
        return levels.with_columns(pl.col([p.key for p in specs]).cast(pl.String)), specs

    monkeypatch.setattr(study, "predictors", string_levels)
    string_results = analyse(*cohort)
    tables = enum_results.result_tables()
    assert tables["ph_residual"].height > 1_000 and tables["univariate_analysis"]["hr"].is_not_null().any()
    for name, frame in string_results.result_tables().items():
        assert tables[name].equals(frame), name
    assert enum_results.table2_display().equals(string_results.table2_display())


def test_the_columns_read_give_the_analysis_of_the_whole_views(twin_warehouse_url, twin_results):
    # load_inputs reads only what the analysis uses of the views (a million patients' labels and flags are
    # not read): the analysis of the whole views is the same, table for table
    with Warehouse(twin_warehouse_url) as wh:
        summary, survival = load_inputs(wh)
        whole = wh.read_sql(TUMOUR_EXTRA_SQL), wh.read_sql("SELECT * FROM analytics.survival")
    assert summary.width < whole[0].width and survival.width < whole[1].width
    results = analyse(*whole, population="paper")
    for name, frame in twin_results.result_tables().items():
        assert results.result_tables()[name].equals(frame), name
    assert results.table1_display().equals(twin_results.table1_display())


def test_a_measurement_no_patient_has_gives_every_patient_a_null_level(cohort):
    """A registry whose centres record no size (the corpus' public datasets): the median split is a
    literal for the whole population, and each patient still gets a level (null), not one row in all."""
    population = survival_population(cohort[0]).with_columns(pl.lit(None, dtype=pl.Float64).alias("size_cm"))
    levels, _ = predictors(population)
    assert levels.height == population.height
    assert levels["size"].null_count() == population.height
