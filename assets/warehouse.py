"""Warehouse stage: the harmonised warehouse as a whole, gated by Great Expectations."""

import polars as pl

import dagster as dg
from assets.ingest import centre_warehouse, run_user
from assets.metadata import canonical_column_schema, dagster_run_name, expectations_check_result, table_metadata
from assets.resources import WarehouseResource

COUNTS_SQL = """
select 'patient' as table_name, centre, count(*) as rows from patient group by centre
union all select 'tumour', p.centre, count(*) from tumour t join patient p using (patient_id) group by p.centre
union all select 'surgery', p.centre, count(*) from surgery s join patient p using (patient_id) group by p.centre
union all select 'event', p.centre, count(*) from event e join patient p using (patient_id) group by p.centre
union all select 'data_query', centre, count(*) from data_query group by centre
"""


@dg.asset(
    deps=[centre_warehouse],
    group_name="warehouse",
    owners=["team:data"],
    kinds={"duckdb", "postgres"},
    code_version="1",
    pool="warehouse",  # reads the DuckDB file: a writer in another run process would hold its lock
    description="The harmonised, pseudonymised warehouse once every centre's latest delivery is in: "
    "what analysts query (schema `analytics`).",
    metadata={"dagster/column_schema": canonical_column_schema(warehouse=True)},
)
def warehouse(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.open() as wh:
        wh.ensure_schema()  # before the first delivery: an empty warehouse, not a missing table
        counts = wh.read_sql(COUNTS_SQL).sort("table_name", "centre")
        deliveries = wh.current_deliveries()
        wh.record_refresh(context.run.run_id, run_user(context))  # audit_log: who refreshed, which deliveries
    patients = counts.filter(pl.col("table_name") == "patient")["rows"].sum()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(patients or 0),
        "rows_per_table_and_centre": table_metadata(counts, 50),
        "current_deliveries": table_metadata(deliveries, 20),
    })


@dg.asset_check(asset=warehouse, blocking=True, pool="warehouse",
                description="Great Expectations suites of every warehouse table (validations/expectations/): "
                "pseudonym uniqueness, referential integrity, value sets, plausible distributions, counts "
                "that agree with `delivery`. Data Docs are written next to the warehouse.")
def great_expectations(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from clms_etl.warehouse.expectations import run_expectations

    with warehouse.open() as wh:
        report = run_expectations(wh, run_name=dagster_run_name(context))
    return expectations_check_result(report)
