"""The data stewards' quality dashboard (clms_etl/report/dashboard.py), written every night."""

import dagster as dg

from assets import unchanged
from assets.metadata import table_metadata
from assets.resources import OutputsFolder, WarehouseResource
from assets.ingest import centre_warehouse
from assets.warehouse import deliveries_version, writes_first

DASHBOARD = "quality/dashboard.html"  # in the outputs folder


@dg.asset(
    deps=[centre_warehouse],  # not the warehouse asset: its failed expectations must not hide the dashboard
    group_name="warehouse",
    owners=["team:data"],
    kinds={"html"},
    code_version="1",
    pool="warehouse",  # creates the schema before the first delivery: a writer
    op_tags=writes_first(),
    description="The data-quality dashboard (one static HTML page, no network needed): per source and Kahn "
    "category the checks, the share of rows failing against its threshold, and the trend over the last "
    "deliveries.",
)
def quality_dashboard(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                      outputs: OutputsFolder) -> dg.MaterializeResult:
    from clms_etl.report.dashboard import build_dashboard, write_dashboard

    with warehouse.open() as wh:
        wh.ensure_schema()  # before the first delivery: an empty dashboard, not a missing table
        # its input is every centre's rows: their current deliveries say whether they moved
        decision = unchanged.decide(context, deliveries=deliveries_version(wh.current_deliveries()))
        if not decision.recompute:
            context.log.info(decision.why)
            return decision.repeated()
        dashboard = build_dashboard(wh)
        docs = wh.data_docs_dir / "index.html" if wh.data_docs_dir else None
    path = write_dashboard(dashboard, outputs.root / DASHBOARD, data_docs=docs).resolve()
    return dg.MaterializeResult(metadata={
        "dashboard": dg.MetadataValue.path(str(path)),
        "dashboard_url": dg.MetadataValue.url(path.as_uri()),
        "checks_failed": int((~dashboard.checks["passed"]).sum()),
        "per_source_and_category": table_metadata(dashboard.categories, 200),
        "failed_checks": table_metadata(dashboard.checks.filter(~dashboard.checks["passed"]), 50),
        **decision.metadata,
    })
