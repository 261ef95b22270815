"""The survival analysis against a warehouse: read the views, write result tables and files.

Used by the Dagster asset (``assets/survival.py``) and the CLI (``clms-etl survival``), so both
treat an empty survival population alike; everything that computes is in
:mod:`~clms_etl.survival.study` and below, which never see a warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clms_etl.survival.study import EmptyCohort, StudyResults, analyse, load_inputs
from clms_etl.survival.tables import TABLES


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
        written = (wh.replace_results({t.name: pl.DataFrame(schema=t.schema) for t in TABLES}, run_id=run_id)
                   if write_results else {})
        return SurvivalOutputs(None, written, status=str(empty))
    written = wh.replace_results(results.result_tables(), run_id=run_id) if write_results else {}
    outputs = Path(outputs)
    files = {**results.write_figures(outputs / "figures"), **results.write_tables(outputs / "tables")}
    return SurvivalOutputs(results, written, files)
