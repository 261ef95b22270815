"""The survival analysis against a warehouse: read the views, write result tables and files.

Used by the Dagster asset (``assets/survival.py``) and the CLI (``clms-etl survival``), so both
treat an empty survival population alike; everything that computes is in
:mod:`~clms_etl.survival.study` and below, which never see a warehouse.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clms_etl.survival.study import COX_TABLE_ORDER, TUMOUR_EXTRA_SQL, EmptyCohort, StudyResults, analyse, load_inputs
from clms_etl.survival.endpoints import population_rule
from clms_etl.survival.tables import TABLES
from clms_etl.warehouse.analytics import DEFAULT_POPULATION, MIN_FOLLOW_UP_MONTHS, POPULATION_RULE_TABLE

# the order the analysis gives the rows that are shown as stored (a database keeps no row order)
STORED_ORDER = {"table1": ["row_order"], "univariate_analysis": ["endpoint", "row_order"],
                "survival_exclusion": ["reason", "patient_id"], **COX_TABLE_ORDER}


@dataclass(frozen=True)
class SurvivalOutputs:
    results: StudyResults | None  # None: nothing to estimate (see ``status``)
    rows_written: dict[str, int]
    files: dict[str, Path] = field(default_factory=dict)  # figure2_png, figure2_svg, table1, table2, ...
    status: str = ""  # why there is no analysis, when there is none


def write_outputs(wh, outputs: Path, run_id: str | None, *, write_results: bool = True,
                  **analysis_options) -> SurvivalOutputs:
    """Analyse the warehouse; result tables replaced (``write_results``), Figure 2 under
    ``<outputs>/figures/`` and the tables as CSV under ``<outputs>/tables/``.

    An empty survival population (before the first deliveries) empties the result tables and
    says why in ``status`` instead of raising.
    """
    patient_summary, endpoints = load_inputs(wh)
    try:
        results = analyse(patient_summary, endpoints, **analysis_options)
    except EmptyCohort as empty:
        # the rule is stored all the same: the views' survival population follows the setting
        rule = population_rule(analysis_options.get("population", DEFAULT_POPULATION)).frame(
            analysis_options.get("min_follow_up_months", MIN_FOLLOW_UP_MONTHS))
        written = (wh.replace_results({**{t.name: pl.DataFrame(schema=t.schema) for t in TABLES},
                                       POPULATION_RULE_TABLE.name: rule}, run_id=run_id)
                   if write_results else {})
        return SurvivalOutputs(None, written, status=str(empty))
    written = wh.replace_results(results.result_tables(), run_id=run_id) if write_results else {}
    outputs = Path(outputs)
    files = {**results.write_figures(outputs / "figures"), **results.write_tables(outputs / "tables")}
    return SurvivalOutputs(results, written, files)


def read_stored(wh, *, ci_transform: str | None = None,
                min_follow_up_months: float | None = None, **_analysis_options) -> StudyResults | None:
    """The results the ``survival_analysis`` asset stored, read back from the result tables (never
    recomputed); None when they hold no estimate (empty survival population, or never computed).

    Takes the analysis options (the same resource as the asset) for the interval to display.
    """
    from clms_etl.survival.table1 import unrecorded_items

    tables = {t.name: _stored(wh, t) for t in TABLES}
    if tables["survival_estimate"].is_empty():
        return None
    options = {k: v for k, v in (("ci_transform", ci_transform), ("min_follow_up_months", min_follow_up_months))
               if v is not None}
    # which Table 1 items a centre does not record describes the data, not the analysis: read from the view,
    # a block of patients at a time (the report's memory follows a block, not the registry)
    return StudyResults.from_tables(tables, unrecorded_items=unrecorded_items(_patient_blocks(wh)), **options)


PATIENT_BLOCK = 50_000


def _patient_blocks(wh, size: int = PATIENT_BLOCK) -> Iterator[pl.DataFrame]:
    """``TUMOUR_EXTRA_SQL``'s rows in blocks of ``size`` patients (ranges of pseudonyms), read on PostgreSQL
    from one indexed copy of them (:meth:`~clms_etl.warehouse.Warehouse.temporary_copy`): each block of
    the query itself would compute the whole view and join the whole tumour table again."""
    with wh.temporary_copy("table1_patients", TUMOUR_EXTRA_SQL, index_on="patient_id") as copy:
        sql, column = (f"SELECT * FROM {copy}", "patient_id") if copy else (TUMOUR_EXTRA_SQL, "s.patient_id")
        for low, high in wh.patient_blocks(size):
            clause = wh.range_clause(column, low, high)
            yield wh.read_sql(sql + (f" WHERE {clause}" if clause else ""), {"low": low, "high": high})


def _stored(wh, table) -> pl.DataFrame:
    frame = wh.results(table.name)
    order = STORED_ORDER.get(table.name)
    return frame.sort(order) if order else frame
