"""Analysis stage: the study's survival analysis, Table 1, Table 2 and Figure 2 from the warehouse."""

# No `from __future__ import annotations`: Dagster reads the resource annotations at definition time.
import dagster as dg

from assets import unchanged
from assets.metadata import png_markdown, table_metadata
from assets.resources import OutputsFolder, SurvivalSettings, WarehouseResource
from assets.warehouse import warehouse as warehouse_asset
from assets.warehouse import writes_first


@dg.asset(
    deps=[warehouse_asset],
    group_name="analysis",
    owners=["team:data"],
    kinds={"python", "duckdb", "postgres"},
    code_version="1",
    pool="warehouse",  # writes result tables into the DuckDB file: one writer at a time
    op_tags=writes_first(rank=1),  # the longest writer of the refresh (molecular_summary: seconds)
    description="Survival analysis of the registry (docs/survival.md): Kaplan-Meier estimates, median follow-up, "
    "univariate analysis (Table 2), Table 1, Figure 2, and competing risks (cumulative incidence, Gray's test, "
    "Fine-Gray). Writes the result tables of schema `analytics` (survival_estimate, survival_curve, "
    "univariate_analysis, table1, survival_exclusion, follow_up, group_comparison, cumulative_incidence, "
    "cumulative_incidence_curve, gray_test, fine_gray, survival_population_rule: the rule the analytics views "
    "follow; the Cox checks univariate_cox, ph_test, ph_residual, continuous_cox, multivariable_cox) "
    "and the figures and CSV tables under the outputs folder.",
)
def survival_analysis(context: dg.AssetExecutionContext, survival: SurvivalSettings, warehouse: WarehouseResource,
                      outputs: OutputsFolder) -> dg.MaterializeResult:
    from clms_etl.survival.run import write_outputs

    if not (decision := unchanged.decide(context, **survival.options())).recompute:
        context.log.info(decision.why)
        return decision.repeated()
    with warehouse.open() as wh:
        out = write_outputs(wh, outputs.root, context.run.run_id, **survival.options())
    if out.results is None:  # before the first deliveries: empty results, said plainly
        context.log.warning(f"survival analysis: {out.status}")
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "status": out.status, **decision.metadata})
    results, written = out.results, out.rows_written
    context.log.info("survival analysis: %s", ", ".join(f"{k} {v} rows" for k, v in written.items()))

    follow = {r["method"]: r["display"] for r in results.follow_up.iter_rows(named=True)}
    key = {k: round(v, 3) for k, v in results.key_estimates().items() if v is not None}
    metadata = {
        "dagster/row_count": len(results.endpoints["patient_id"].unique()),
        "figure2": png_markdown(out.files["figure2_png"].read_bytes(), "Figure 2: Kaplan-Meier curves"),
        "table1": table_metadata(results.table1_display(), 100),
        "table2": table_metadata(results.table2_display(), 50),
        "survival_estimates": table_metadata(results.survival_display(), 10),
        "multivariable_cox": table_metadata(results.multivariable_display(), 10),
        "key_estimates": dg.MetadataValue.json(key),
        "median_follow_up_reverse_km": follow["reverse_kaplan_meier"],
        "excluded_from_survival": results.survival_exclusion.height,
        "ci_transform": results.ci_transform,
        "survival_population": results.population,
        "result_table_rows": dg.MetadataValue.json(written),
        **{f"file_{k}": dg.MetadataValue.path(str(p)) for k, p in out.files.items() if p is not None},
        **decision.metadata,
    }
    return dg.MaterializeResult(metadata=metadata)
