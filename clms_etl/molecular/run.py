"""The molecular summary against a warehouse: read the frames, write results, files and the export.

Used by the Dagster assets (``assets/molecular.py``) and the CLI (``clms-etl export cbioportal``);
everything that computes is in :mod:`~clms_etl.molecular.summary`,
:mod:`~clms_etl.molecular.table3`, :mod:`~clms_etl.molecular.oncoprint` and
:mod:`~clms_etl.molecular.cbioportal`, which never see a warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clms_etl.molecular.cbioportal import CLINICAL_COLUMNS as STUDY_COLUMNS
from clms_etl.molecular.summary import MolecularSummary, summarise
from clms_etl.molecular.table3 import CLINICAL_COLUMNS as TABLE3_COLUMNS
from clms_etl.molecular.table3 import table3, table3_display
from clms_etl.report.csv_files import write_csv
from clms_etl.warehouse.analytics import view_for_patients

TABLE3_CSV = "table3_molecular_cases.csv"
FIGURE_STEM = "figure_oncoprint"


@dataclass(frozen=True)
class MolecularOutputs:
    summary: MolecularSummary
    table3: pl.DataFrame
    rows_written: dict[str, int]
    table3_csv: Path
    figure_png: Path
    figure_svg: Path


# The laboratory series is a small share of the registry (2,000 cases among 1,000,000 patients):
# only its patients' rows of analytics.patient_summary are computed (every use joins on them:
# view_for_patients; 7 s → milliseconds on PostgreSQL at 1,000,000 patients), and only the columns
# Table 3 and the cBioPortal files use.
SERIES_COLUMNS = tuple(dict.fromkeys((*TABLE3_COLUMNS, *STUDY_COLUMNS)))
SERIES_PATIENTS = (f"SELECT {', '.join(SERIES_COLUMNS)} FROM ("
                   f"{view_for_patients('patient_summary', 'SELECT patient_id FROM molecular_sample')}) series")


def read_summary(wh) -> tuple[MolecularSummary, pl.DataFrame]:
    """The summary of the warehouse's molecular tables, and ``analytics.patient_summary`` (the
    series' patients)."""
    summary = summarise(wh.table("molecular_sample"), wh.table("cn_segment"), wh.table("variant"),
                        wh.table("fusion"), wh.table("gene_status"))
    return summary, wh.read_sql(SERIES_PATIENTS)


def read_stored(wh) -> tuple[MolecularSummary, pl.DataFrame]:
    """The summary and Table 3 as the ``molecular_summary`` asset stored them (never recomputed).

    The cases, recurrent alterations, mutations and Table 3 are the result tables; the gene
    status, segments and fusions of those cases (for the OncoPrint and the cBioPortal files) are
    the warehouse's base tables. ``anomalies`` is left empty: only the counts per case are stored.
    """
    from clms_etl import model
    from clms_etl.molecular.summary import case_details
    from clms_etl.molecular.tables import TABLES

    stored = {t.name: wh.results(t.name) for t in TABLES}
    cases = stored["molecular_profile"].sort("case_no", "sample_id")
    gene_status, segments, fusions = case_details(
        cases, wh.table("gene_status"), model.conform("cn_segment", wh.table("cn_segment")),
        model.conform("fusion", wh.table("fusion")))
    summary = MolecularSummary(
        cases=cases, gene_status=gene_status, mutations=stored["somatic_mutation"].sort("case_no", "gene", "pos"),
        fusions=fusions, anomalies=pl.DataFrame(), recurrent=stored["recurrent_alteration"],
        segments=segments.sort("sample_id", "chrom", "start_bp"))
    return summary, stored["table3"].sort("case_no")


def result_frames(summary: MolecularSummary, table: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The result tables of :mod:`clms_etl.molecular.tables`, by name."""
    return {"molecular_profile": summary.cases, "recurrent_alteration": summary.recurrent,
            "somatic_mutation": summary.mutations, "table3": table}


def write_outputs(wh, outputs: Path, run_id: str | None) -> MolecularOutputs:
    """Result tables into the warehouse, Table 3 CSV under ``tables/``, the OncoPrint under ``figures/``."""
    from clms_etl.molecular.oncoprint import write_oncoprint

    summary, patients = read_summary(wh)
    table = table3(summary, patients)
    written = wh.replace_results(result_frames(summary, table), run_id)
    csv = outputs / "tables" / TABLE3_CSV
    csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(table3_display(table), csv)
    png, svg = write_oncoprint(summary, table, outputs / "figures" / f"{FIGURE_STEM}.png",
                               outputs / "figures" / f"{FIGURE_STEM}.svg")
    return MolecularOutputs(summary, table, written, csv, png, svg)


class StaleResults(ValueError):
    """The stored molecular results are missing or predate the current deliveries: nothing is exported."""


def _require_current(wh) -> None:
    # a shared study must hold what the warehouse holds now: never stale stored results
    basis = wh.results_basis().filter(pl.col("tables").list.contains("molecular_profile"))
    if basis.is_empty() or not basis["current"][0]:
        when = "never computed" if basis.is_empty() else f"computed by run {basis['run_id'][0]} from older deliveries"
        raise StaleResults(f"cBioPortal study not written: the stored molecular results are {when}; run the "
                           "molecular summary (nightly refresh) first.")


def export_cbioportal(wh, outdir: Path, k_threshold: int | None = None):
    """Write the cBioPortal study folder of the warehouse's molecular series into ``outdir``
    (:class:`~clms_etl.molecular.cbioportal.Study`); blocked below ``k_threshold`` (default 5)."""
    from clms_etl.disclosure import DEFAULT_K_THRESHOLD
    from clms_etl.molecular.cbioportal import write_study

    _require_current(wh)
    summary, _ = read_stored(wh)
    patients = wh.read_sql(SERIES_PATIENTS)  # the per-sample files' clinical columns
    return write_study(summary, patients, outdir, DEFAULT_K_THRESHOLD if k_threshold is None else k_threshold)


def molecular_sections(wh, outputs: Path) -> list:
    """The report's molecular section (for ``assets/report.py``'s ``analysis_sections``), from the
    stored result tables (:func:`read_stored`); the OncoPrint is drawn from them under ``outputs``."""
    from clms_etl.molecular.oncoprint import write_oncoprint
    from clms_etl.molecular.report_sections import report_sections

    summary, table = read_stored(wh)
    if summary.cases.is_empty():  # no laboratory delivery yet: say so rather than draw empty tables
        from clms_etl.report.sections import Section

        return [Section(key="molecular", title="Molecular profile",
                        text="No laboratory results in the warehouse yet: no case has been profiled.")]
    png, svg = write_oncoprint(summary, table, outputs / "figures" / f"{FIGURE_STEM}.png",
                               outputs / "figures" / f"{FIGURE_STEM}.svg")
    return report_sections(summary, table, png, svg)
