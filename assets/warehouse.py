"""Warehouse stage: the harmonised warehouse as a whole, gated by Great Expectations."""

import hashlib
from pathlib import Path

import polars as pl

import dagster as dg
from assets import unchanged
from assets.ingest import centre_warehouse, run_user
from assets.metadata import canonical_column_schema, dagster_run_name, expectations_check_result, table_metadata
from assets.resources import WarehouseResource

# A patient's rows are counted by their delivery, then under the delivery's centre: a join of a few hundred
# deliveries, not of every row with its patient (1.7 s at 1,000,000 patients on PostgreSQL). The same centre:
# the warehouse's suites check that a row's delivery is its patient's, and the patient's centre the delivery's.
COUNTS_SQL = """
select 'patient' as table_name, centre, count(*) as rows from patient group by centre
""" + "".join(f"""union all select '{table}', d.centre, cast(sum(n) as bigint) from
    (select delivery_id, count(*) as n from {table} group by delivery_id) t join delivery d using (delivery_id)
    group by d.centre
""" for table in ("tumour", "surgery", "event")) + """union all select 'data_query', centre, count(*) from data_query group by centre
"""


def deliveries_version(deliveries: pl.DataFrame) -> str:
    """The warehouse's contents as one version: a hash of its current deliveries (each load gets
    its ``loaded_at``: a reload or a rollback moves it too)."""
    keys = deliveries.select("delivery_id", "centre", "content_sha256",
                             *(pl.col(c).cast(pl.String) for c in ("delivery_date", "loaded_at")))
    rows = sorted(keys.iter_rows())
    return hashlib.sha256(repr(rows).encode()).hexdigest()


# The Great Expectations suites are data (validations/expectations/): a changed suite re-runs the check.
SUITES = Path(__file__).resolve().parents[1] / "validations" / "expectations"


def suites_version(*folders: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for folder in folders or ("",) for p in (SUITES / folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(SUITES)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def writes_first(rank: int = 0) -> dict[str, str]:
    """Op tags of a step that writes the warehouse: it goes first among the steps ready. On DuckDB a
    writer waits for every reading step to close the file (clms_etl/warehouse/file_lock.py), and the
    readers for it, so a writer started late would hold up the rest of the night. ``rank``: among
    writers ready together, the higher first -- the longer one, since the readers the first makes
    ready wait (holding an executor slot) for the writers after it."""
    return {"dagster/priority": str(10 + rank)}


@dg.asset(
    deps=[centre_warehouse],
    group_name="warehouse",
    owners=["team:data"],
    kinds={"duckdb", "postgres"},
    code_version="1",
    pool="warehouse",  # writes the refresh into the audit log: one writer at a time
    op_tags=writes_first(),
    description="The harmonised, pseudonymised warehouse once every centre's latest delivery is in: "
    "what analysts query (schema `analytics`).",
    metadata={"dagster/column_schema": canonical_column_schema(warehouse=True)},
)
def warehouse(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.open() as wh:
        wh.ensure_schema()  # before the first delivery: an empty warehouse, not a missing table
        # the night's loads, planned from their own figures by every step downstream
        if left := wh.refresh_statistics():
            context.log.warning(f"{len(left)} tables not vacuumed nor analysed (this role may not: their owner, the "
                                "database's or a superuser; from PostgreSQL 17, MAINTAIN), left to autovacuum: "
                                f"{', '.join(left)}; deploy/README.md")
        counts = wh.read_sql(COUNTS_SQL).sort("table_name", "centre")
        deliveries = wh.current_deliveries()
        wh.record_refresh(context.run.run_id, run_user(context))  # audit_log: who refreshed, which deliveries
    patients = counts.filter(pl.col("table_name") == "patient")["rows"].sum()
    version = deliveries_version(deliveries)
    # Its data version is what it holds: the same deliveries, the same version, and what depends
    # on it is not recomputed (assets/unchanged.py).
    return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata={
        "deliveries_version": version,
        unchanged.RECOMPUTED: True,
        unchanged.WHY: "counted every night: its data version is its current deliveries, which tell the assets "
                       "downstream whether to recompute",
        "dagster/row_count": int(patients or 0),
        "tables_left_to_autovacuum": ", ".join(left) or "none",
        "rows_per_table_and_centre": table_metadata(counts, 50),
        "current_deliveries": table_metadata(deliveries, 20),
    })


@dg.asset_check(asset=warehouse, blocking=True,
                description="Great Expectations suites of every warehouse table (validations/expectations/): "
                "pseudonym uniqueness, referential integrity, value sets, plausible distributions, counts "
                "that agree with `delivery`. Data Docs are written next to the warehouse.")
def great_expectations(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from clms_etl.warehouse.expectations import run_expectations

    suites = suites_version()
    if (repeated := unchanged.check_unchanged(context, suites=suites)) is not None:
        return repeated
    with warehouse.open(read_only=True) as wh:
        report = run_expectations(wh, run_name=dagster_run_name(context))
    return expectations_check_result(report, unchanged.check_metadata(context, suites=suites))
