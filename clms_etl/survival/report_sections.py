"""The survival part of the clinicians' report (:mod:`clms_etl.report.sections` contract)."""

from __future__ import annotations

from pathlib import Path

from clms_etl.report.sections import Section
from clms_etl.survival.run import read_stored
from clms_etl.survival.study import report_sections


def sections(wh, outputs: Path, **analysis_options) -> list:
    """Table 1, the survival estimates with Figure 2, and Table 2, as the ``survival_analysis`` asset
    stored them in the result tables (never recomputed here).

    Figure 2 is drawn from the stored curves (``survival_curve``) under ``outputs``, so that it
    shows the numbers of the tables beside it; the report passes its own folder.
    """
    results = read_stored(wh, **analysis_options)
    if results is None:  # the report still goes out, saying why there is no survival section
        return [Section(key="survival", title="Survival",
                        text="No survival analysis: no patient in the survival population when the analysis last "
                             "ran (the stored results hold no estimate).")]
    figures = results.write_figures(Path(outputs) / "figures")
    return report_sections(results, figures)
