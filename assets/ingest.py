"""Ingest stage: one partition per centre — read and validate its delivery, then load it.

``centre_import`` reads the latest delivery of the partition's centre with that centre's
reader, validates it (pandera) and writes the centre's query list; two blocking checks gate
it; ``centre_warehouse`` replaces the centre's rows in the warehouse in one transaction.
In between, the validated delivery waits in the import handoff (assets/handoff.py), not in
Dagster's storage.
"""


import datetime as dt

import dagster as dg
import polars as pl

from assets.handoff import CentreHandoff
from assets.metadata import bar_chart_png, column_schema, markdown_table, png_markdown
from assets.partitions import REGISTRY, centre_partitions
from assets.resources import DropFolder, OutputsFolder, PseudonymKey, WarehouseResource
from clms_etl.deliveries import latest_delivery
from clms_etl.pipeline import CentreImport, read_and_validate, write_query_list

# Transient faults only: bad data never raises (it becomes queries), an unreadable delivery
# raises Failure(allow_retries=False), and so does a delivery the warehouse refuses (older than
# the loaded one, keys of another source, schema out of date). What is left is retried: a
# dropped connection, or the DuckDB file locked by a process outside Dagster (a CLI load, an
# analyst's read-write connection) — runs of this code location queue on the `warehouse` pool.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# Share of a delivery's patients that may be quarantined before the gate closes.
MAX_QUARANTINED_SHARE = 0.2


@dg.asset(
    partitions_def=centre_partitions,
    group_name="ingest",
    owners=["team:data"],
    kinds={"polars", "pandera"},
    code_version="1",
    retry_policy=TRANSIENT_RETRIES,
    io_manager_key="centre_handoff",
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(days=2)),
    description="The centre's latest delivery read into the canonical model and validated: "
    "accepted and quarantined rows, data queries, and the centre's Excel query list.",
)
def centre_import(
    context: dg.AssetExecutionContext,
    drop_folder: DropFolder,
    outputs: OutputsFolder,
    pseudonym_key: PseudonymKey,
    warehouse: WarehouseResource,
    centre_handoff: dg.ResourceParam[CentreHandoff],
) -> dg.Output[CentreImport]:
    centre = REGISTRY[context.partition_key]
    centre_handoff.discard(centre.name)  # a previous import that never loaded goes now
    delivery = latest_delivery(drop_folder.root, centre.name)
    if delivery is None:
        raise dg.Failure(f"No delivery for {centre.name} in {drop_folder.root / centre.name}", allow_retries=False)
    imported = read_and_validate(centre, delivery, _key(pseudonym_key, warehouse))
    query_list = write_query_list(outputs.root, imported)
    if imported.failure:
        raise dg.Failure(
            description=f"{centre.name} {delivery.date}: {imported.failure}",
            metadata={"query_list": dg.MetadataValue.path(str(query_list))},
            allow_retries=False,
        )
    v = imported.validated
    queries = v.queries
    metadata = {
        "delivery": f"{delivery.date} ({len(delivery.files)} files, sha256 {delivery.sha256[:12]})",
        "dagster/row_count": int(v.accepted["patient"].height) if "patient" in v.accepted else 0,
        "accounting": markdown_table(v.accounting),
        "errors": int((queries["severity"] == "error").sum()),
        "warnings": int((queries["severity"] == "warning").sum()),
        "queries_by_rule": markdown_table(
            queries.group_by("rule", "severity").len().sort("len", descending=True)
        ),
        "query_list": dg.MetadataValue.path(str(query_list)),
        "rows_plot": rows_plot(v.accounting, f"{centre.name} {delivery.date}"),
    }
    first = next(iter(v.accepted.values()))
    metadata["dagster/column_schema"] = column_schema(first)
    return dg.Output(imported, metadata=metadata, data_version=dg.DataVersion(delivery.sha256))


def _key(pseudonym_key: PseudonymKey, warehouse: WarehouseResource) -> bytes:
    """The pseudonym key, read now; missing, weak or the demo key outside the demo: no retry."""
    from clms_etl.keys import PseudonymKeyError

    try:
        return pseudonym_key.secret(warehouse.resolved_url)
    except PseudonymKeyError as refused:
        raise dg.Failure(description=str(refused), allow_retries=False) from None


def rows_plot(accounting: pl.DataFrame, title: str) -> dg.MetadataValue:
    """Rows accepted vs quarantined per table, as a PNG embedded in Markdown (shown in the UI)."""
    png = bar_chart_png(accounting["table"].to_list(),
                        {"accepted": accounting["rows_accepted"].to_list(),
                         "quarantined": accounting["rows_quarantined"].to_list()},
                        title=f"{title}: rows accepted / quarantined per table")
    return png_markdown(png, "rows accepted and quarantined per table")


@dg.asset_check(asset=centre_import, blocking=True, partitions_def=centre_partitions,
                description="pandera structural and domain validation of this centre's delivery: "
                "fails when more than 20 % of its patients had to be quarantined.")
def validation_gate(context: dg.AssetCheckExecutionContext, centre_import: CentreImport) -> dg.AssetCheckResult:
    v = centre_import.validated
    acc = {r["table"]: r for r in v.accounting.iter_rows(named=True)}
    first = "patient" if "patient" in acc else next(iter(acc))
    read, quarantined = acc[first]["rows_read"], acc[first]["rows_quarantined"]
    share = quarantined / read if read else 0.0
    errors = v.queries.filter(pl.col("severity") == "error")
    sample = errors.select("file", "sheet", "row", "patient_id", "field", "rule", "message").head(20)
    return dg.AssetCheckResult(
        passed=share <= MAX_QUARANTINED_SHARE,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_read": read,
            "rows_quarantined": quarantined,
            "quarantined_share": round(share, 4),
            "error_queries": errors.height,
            "sample_of_failures": markdown_table(sample, 20),
        },
    )


@dg.asset_check(asset=centre_import, blocking=True, partitions_def=centre_partitions,
                description="Nothing lost: for every table, rows read = rows accepted + rows quarantined.")
def row_accounting(context: dg.AssetCheckExecutionContext, centre_import: CentreImport) -> dg.AssetCheckResult:
    acc = centre_import.validated.accounting
    broken = acc.filter(pl.col("rows_read") != pl.col("rows_accepted") + pl.col("rows_quarantined"))
    return dg.AssetCheckResult(passed=broken.is_empty(), metadata={"accounting": markdown_table(acc)})


@dg.asset(
    partitions_def=centre_partitions,
    group_name="warehouse",
    owners=["team:data"],
    kinds={"sql"},
    code_version="1",
    pool="warehouse",  # DuckDB has one writer: centres launched together queue here
    retry_policy=TRANSIENT_RETRIES,
    description="The centre's rows in the warehouse, replaced in one transaction "
    "(idempotent: the same delivery twice changes nothing).",
)
def centre_warehouse(context: dg.AssetExecutionContext, centre_import: CentreImport,
                     warehouse: WarehouseResource, pseudonym_key: PseudonymKey,
                     centre_handoff: dg.ResourceParam[CentreHandoff]) -> dg.MaterializeResult:
    from clms_etl.warehouse.load import DeliveryRefused, IntegrityProblem, SchemaMismatch

    d = centre_import.delivery
    files = [d.path / name for name, _ in d.files]
    # Great Expectations runs once over the whole warehouse (blocking check on `warehouse`),
    # not after each centre's load.
    key = _key(pseudonym_key, warehouse)
    try:
        with warehouse.open() as wh:
            report = wh.load_delivery(centre_import.centre, d.date, files, centre_import.validated,
                                      run_id=context.run.run_id, expectations=False, key=key,
                                      run_user=run_user(context))
    except (DeliveryRefused, IntegrityProblem, SchemaMismatch) as refused:
        # not transient: retrying would refuse again (the warehouse is unchanged)
        raise dg.Failure(description=f"{centre_import.centre} {d.date}: {refused}", allow_retries=False) from refused
    centre_handoff.discard(centre_import.centre)  # loaded: no second copy of the rows
    return dg.MaterializeResult(metadata={
        "status": str(getattr(report, "status", "loaded")),
        "report": dg.MetadataValue.md(f"```\n{report}\n```"),
        "warehouse": warehouse.describe(),
    })


def run_user(context) -> str | None:
    """Who launched the run, when Dagster knows (its ``user`` run tag: Dagster+, launches by a user)."""
    return context.run.tags.get("user")
