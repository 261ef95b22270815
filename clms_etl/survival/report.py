"""The survival part of the clinicians' report (:mod:`clms_etl.report.sections` contract)."""

from __future__ import annotations

from pathlib import Path

from clms_etl.report.sections import Section
from clms_etl.survival.study import EmptyCohort, analyse, load_inputs, report_sections


def sections(wh, outputs: Path, **analysis_options) -> list:
    """Table 1, the survival estimates with Figure 2, and Table 2, recomputed from the warehouse.

    The analysis is deterministic, so this gives the same numbers as the ``survival_analysis``
    asset's result tables; Figure 2 is (re)written under ``<outputs>/figures/``.
    """
    patient_summary, survival = load_inputs(wh)
    try:
        results = analyse(patient_summary, survival, **analysis_options)
    except EmptyCohort as empty:  # the report still goes out, saying why there is no survival section
        return [Section(key="survival", title="Survival", text=f"No survival analysis: {empty}")]
    figures = results.write_figures(Path(outputs) / "figures")
    return report_sections(results, figures)
