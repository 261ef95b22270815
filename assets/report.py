"""Report stage: the clinicians' HTML report with its Excel workbook, and the statisticians' exports.

Both read the warehouse once its quality gate has passed, so they are part of the nightly
refresh (downstream of ``warehouse``). The analyses' own assets (survival, molecular) hand their
content to the report as :class:`~clms_etl.report.sections.Section`s: see ``ANALYSIS_DEPS`` and
``analysis_sections`` below, the one place where a new analysis is added to the report.
"""

from pathlib import Path

import dagster as dg

from assets import unchanged
from assets.disclosure import AnalysisExportConfig, blocked, disclosure_metadata
from assets.metadata import table_metadata
from assets.priority import background_priority
from assets.molecular import molecular_summary
from assets.resources import OutputsFolder, SurvivalSettings, WarehouseResource
from assets.survival import survival_analysis
from assets.warehouse import warehouse

# ---- analyses in the report ------------------------------------------------------------------
# The one place where an analysis joins the report: its asset (so the report waits for it) and
# its sections. The sections are read from the result tables the assets stored, never recomputed
# (each analysis runs once a night); their figures are drawn from those tables under `report/`.
ANALYSIS_DEPS: list = [survival_analysis, molecular_summary]


def analysis_sections(wh, outputs: Path, survival: SurvivalSettings) -> list:
    """The analyses' sections, in report order (Table 1, survival and Figure 2, Table 2, molecular),
    from the stored results, with the interval the ``survival_analysis`` asset displays (same resource);
    figures under ``outputs`` (the report's folder)."""
    from clms_etl.molecular.run import molecular_sections
    from clms_etl.survival.report_sections import sections as survival_sections

    return [*survival_sections(wh, outputs, **survival.options()), *molecular_sections(wh, outputs)]


# ----------------------------------------------------------------------------------------------


@dg.asset(
    deps=[warehouse, *ANALYSIS_DEPS],
    group_name="report",
    owners=["team:data"],
    kinds={"html", "excel"},
    code_version="1",
    # no pool: it only reads, beside the night's other readers (clms_etl/warehouse/file_lock.py)
    description="The clinicians' report: one self-contained HTML file (tables, figures, data quality per centre, "
    "provenance) and the same tables as an Excel workbook, in <outputs>/report/.",
)
def clinician_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     outputs: OutputsFolder, survival: SurvivalSettings) -> dg.MaterializeResult:
    from clms_etl.report.build import build_report, markdown_preview

    outdir = outputs.root / "report"
    if not (decision := unchanged.decide(context, **survival.options())).recompute:
        context.log.info(decision.why)
        return decision.repeated()
    priority = background_priority(context)
    # patient_summary computed once for the report's reads of it (on PostgreSQL: Warehouse.views_copied)
    with warehouse.open(read_only=True) as wh, wh.views_copied("patient_summary"):
        result = build_report(wh, analysis_sections(wh, outdir, survival), outdir, run_id=context.run.run_id)
    tables = sum(len(s.tables) for s in result.sections)
    figures = sum(len(s.figures) for s in result.sections)
    context.log.info(f"report written: {result.html} ({tables} tables, {figures} figures)")
    return dg.MaterializeResult(metadata={
        "report_html": dg.MetadataValue.path(str(result.html.resolve())),
        "workbook": dg.MetadataValue.path(str(result.workbook.resolve())),
        "html_size_bytes": result.html.stat().st_size,
        "workbook_size_bytes": result.workbook.stat().st_size,
        "sections": len(result.sections),
        "tables": tables,
        "figures": figures,
        "preview": dg.MetadataValue.md(markdown_preview(result)),
        "code_version": result.provenance.code_version,
        **decision.metadata,
        **priority,
    })


@dg.asset(
    deps=[warehouse, *ANALYSIS_DEPS],
    group_name="report",
    owners=["team:data"],
    kinds={"parquet", "csv", "sas", "stata"},
    code_version="1",
    description="The analysis views and result tables for statisticians: Parquet, CSV, SAS transport (XPT v5) "
    "and Stata files with a codebook, in <outputs>/exports/. No calendar date (days from diagnosis); in-house by "
    "default (k-anonymity reported), shareable with config shareable: true (blocked below k_threshold).",
)
def analysis_exports(context: dg.AssetExecutionContext, config: AnalysisExportConfig, warehouse: WarehouseResource,
                     outputs: OutputsFolder) -> dg.MaterializeResult:
    import polars as pl

    from clms_etl.disclosure import DisclosureBlocked
    from clms_etl.report.exports import export_analysis

    outdir = outputs.root / "exports"
    if not (decision := unchanged.decide(context, shareable=config.shareable, k_threshold=config.k_threshold)).recompute:
        context.log.info(decision.why)
        return decision.repeated()
    try:
        with warehouse.open(read_only=True) as wh:
            result = export_analysis(wh, outdir, shareable=config.shareable, k_threshold=config.k_threshold)
    except DisclosureBlocked as e:
        raise blocked(e) from None
    context.log.info(f"exports ({'shareable' if result.shareable else 'in-house'}): {result.disclosure.summary()}")
    files = pl.DataFrame(
        [{"format": fmt, "dataset": name, "file": str(path.relative_to(outdir)), "size_bytes": path.stat().st_size}
         for fmt, by_name in result.files.items() for name, path in by_name.items()],
        schema={"format": pl.String, "dataset": pl.String, "file": pl.String, "size_bytes": pl.Int64})
    rows = pl.DataFrame({"dataset": list(result.rows), "rows": list(result.rows.values())},
                        schema={"dataset": pl.String, "rows": pl.Int64})
    return dg.MaterializeResult(metadata={
        "exports": dg.MetadataValue.path(str(outdir.resolve())),
        "codebook": dg.MetadataValue.path(str(result.readme.resolve())) if result.readme else "",
        "dagster/row_count": int(rows["rows"].sum()) if rows.height else 0,
        "rows_per_dataset": table_metadata(rows, 30),
        "files": table_metadata(files, 60),
        **disclosure_metadata(result.disclosure, result.shareable),
        **decision.metadata,
    })
