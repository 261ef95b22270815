"""Analysis stage: the molecular summary and the cBioPortal study export (issue #7)."""

import dagster as dg

from assets import unchanged
from assets.disclosure import CbioportalConfig, disclosure_metadata
from assets.metadata import png_markdown
from assets.resources import OutputsFolder, WarehouseResource
from assets.warehouse import warehouse, writes_first


@dg.asset(
    deps=[warehouse],
    group_name="analysis",
    owners=["team:data"],
    kinds={"python", "polars", "matplotlib"},
    code_version="1",
    pool="warehouse",  # reads and writes the DuckDB file
    op_tags=writes_first(),
    description="Molecular summary of the laboratory series: profile classes, recurrent alterations, Table 3 "
    "(result tables in schema `analytics`, CSV under `tables/`) and the OncoPrint (PNG and SVG under `figures/`).",
)
def molecular_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                      outputs: OutputsFolder) -> dg.MaterializeResult:
    from clms_etl.molecular.run import write_outputs

    if not (decision := unchanged.decide(context)).recompute:
        context.log.info(decision.why)
        return decision.repeated()
    with warehouse.open() as wh:
        out = write_outputs(wh, outputs.root, context.run.run_id)
    counts = out.summary.counts()
    profiles = counts["cgh_snp_array"]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": out.summary.cases.height,
        "cases": counts["cases"],
        "contributory": counts["contributory"],
        "complex / simple / flat / not contributory": (
            f"{profiles['complex']} / {profiles['simple']} / {profiles['flat']} / {profiles['not_contributory']}"),
        "biallelic_tp53_or_rb1": counts["biallelic_TP53_or_RB1_inactivation"],
        "mutations": counts["mutations"],
        "fusions": counts["fusions"],
        "rows_written": dg.MetadataValue.json(out.rows_written),
        "oncoprint": png_markdown(out.figure_png.read_bytes(), "OncoPrint of the molecular series"),
        # Table 3 has one row per case (pseudonym, clinical features, outcome): it stays in the
        # warehouse and the outputs, not in Dagster's event log
        "table3_csv": dg.MetadataValue.path(str(out.table3_csv)),
        "oncoprint_svg": dg.MetadataValue.path(str(out.figure_svg)),
        **decision.metadata,
    })


@dg.asset(
    deps=[warehouse, molecular_summary],  # written from its stored result tables
    group_name="analysis",
    owners=["team:data"],
    kinds={"python"},
    code_version="1",
    description="The molecular series as a cBioPortal study folder (`<outputs>/cbioportal/`): meta_study, "
    "clinical patient and sample files, MAF, discrete CNA, segments, structural variants, case lists. Shareable: "
    "no date, age bands, no centre; not written unless every group of sex x age band x site holds k_threshold patients.",
    check_specs=[dg.AssetCheckSpec(
        "k_anonymity", asset="cbioportal_study",
        description="Re-identification check of the shareable study: every group of sex x age band x site holds "
        "at least k_threshold patients after suppression; otherwise the study is not written (warning: the rest "
        "of the night goes on, the previous study stays).")],
)
def cbioportal_study(context: dg.AssetExecutionContext, config: CbioportalConfig, warehouse: WarehouseResource,
                     outputs: OutputsFolder) -> dg.MaterializeResult:
    from clms_etl.disclosure import DisclosureBlocked
    from clms_etl.molecular.run import StaleResults, export_cbioportal

    folder = outputs.root / "cbioportal"
    if not (decision := unchanged.decide(context, k_threshold=config.k_threshold)).recompute:
        context.log.info(decision.why)
        return decision.repeated()
    try:
        with warehouse.open(read_only=True) as wh:
            study = export_cbioportal(wh, folder, config.k_threshold)
    except DisclosureBlocked as e:
        # A registry with fewer profiled cases than k can never share a study: that is a finding
        # for the data team, not a reason to stop the report and the other exports every night.
        context.log.warning(f"cBioPortal study not written: {e}")
        metadata = {"status": dg.MetadataValue.text(f"blocked: {e}"), **disclosure_metadata(e.result),
                    **decision.metadata}
        return dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(
            check_name="k_anonymity", passed=False, severity=dg.AssetCheckSeverity.WARN, description=str(e),
            metadata=disclosure_metadata(e.result))])
    except StaleResults as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None
    context.log.info(f"cBioPortal study: {study.disclosure.summary()}")
    return dg.MaterializeResult(metadata={
        "status": dg.MetadataValue.text("written"),
        "folder": dg.MetadataValue.path(str(folder)),
        "files": dg.MetadataValue.md("\n".join(f"- `{name}`" for name in sorted(study.files))),
        **disclosure_metadata(study.disclosure),
        **decision.metadata,
    }, check_results=[dg.AssetCheckResult(check_name="k_anonymity", passed=True, severity=dg.AssetCheckSeverity.WARN,
                                          metadata=disclosure_metadata(study.disclosure))])
