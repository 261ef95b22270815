"""Ingest stage: one partition per centre — read and validate its delivery, then load it.

``centre_import`` reads the latest delivery of the partition's centre with that centre's
reader, validates it (pandera) and writes the centre's query list; two blocking checks gate
it; ``centre_warehouse`` replaces the centre's rows in the warehouse in one transaction.
In between, the validated delivery waits in the import handoff (assets/handoff.py), not in
Dagster's storage.
"""


import datetime as dt
import os

import dagster as dg
import polars as pl

from assets.handoff import CentreHandoff
from assets.metadata import bar_chart_png, canonical_column_schema, png_markdown, table_metadata
from assets.partitions import REGISTRY, centre_partitions
from assets.resources import DropFolder, OutputsFolder, PseudonymKey, WarehouseResource
from clms_etl.deliveries import latest_delivery, refused_folders
from clms_etl.centre_import import CentreImport, read_and_validate, write_loaded_query_list, write_query_list
import validations.canonical  # noqa: F401  (declares what the validate step checks)

# Transient faults only: bad data never raises (it becomes queries), an unreadable delivery
# raises Failure(allow_retries=False), and so does a delivery the warehouse refuses (older than
# the loaded one, keys of another source, schema out of date). What is left is retried: a
# dropped connection, or the DuckDB file locked by a process outside Dagster (a CLI load, an
# analyst's read-write connection) — runs of this code location queue on the `warehouse` pool.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
# Share of a delivery's patients that may be quarantined before the gate closes.
MAX_QUARANTINED_SHARE = 0.2
# Share of a centre's patients in the warehouse that one delivery may remove before the shrinkage
# guard holds it (a truncated export must never wipe data silently); CLMS_MAX_REMOVED_SHARE overrides.
MAX_REMOVED_SHARE = 0.10
# A run with this tag set to "true" lands a delivery the shrinkage guard held (someone checked it).
ACCEPT_SHRINKAGE_TAG = "clms/accept_shrinkage"


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
    metadata={"dagster/column_schema": canonical_column_schema()},
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
    refuse_misnamed_folders(drop_folder, outputs, centre.name)
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
        "accounting": table_metadata(v.accounting),
        "errors": int((queries["severity"] == "error").sum()),
        "warnings": int((queries["severity"] == "warning").sum()),
        "queries_by_rule": table_metadata(
            queries.group_by("rule", "severity").len(name="queries").sort("queries", descending=True)
        ),
        "query_list": dg.MetadataValue.path(str(query_list)),
        "rows_plot": rows_plot(v.accounting, f"{centre.name} {delivery.date}"),
    }
    metadata["dagster/column_schema"] = canonical_column_schema(v.accepted)
    return dg.Output(imported, metadata=metadata, data_version=dg.DataVersion(delivery.sha256))


def _key(pseudonym_key: PseudonymKey, warehouse: WarehouseResource) -> bytes:
    """The pseudonym key, read now; missing, weak or the demo key outside the demo: no retry."""
    from clms_etl.keys import PseudonymKeyError

    try:
        return pseudonym_key.secret(warehouse.resolved_url)
    except PseudonymKeyError as refused:
        raise dg.Failure(description=str(refused), allow_retries=False) from None


def refuse_misnamed_folders(drop_folder: DropFolder, outputs: OutputsFolder, centre: str) -> None:
    """A folder that is not a real, past date stops the centre's import: its query list tells the centre."""
    from clms_etl.centre_import import query_list_path
    from clms_etl.query_list import write_query_workbook
    from clms_etl.data_queries import queries_frame

    refused = refused_folders(drop_folder.root, centre)
    if not refused:
        return
    today = dt.date.today()
    path = write_query_workbook(queries_frame([r.query(today) for r in refused]),
                                query_list_path(outputs.root, centre, today), centre)
    raise dg.Failure(description=" ".join(r.message for r in refused),
                     metadata={"query_list": dg.MetadataValue.path(str(path))}, allow_retries=False)


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
        description=f"{centre_import.centre}: {quarantined} of {read} {first} rows quarantined ({share:.0%}; "
                    f"the gate closes above {MAX_QUARANTINED_SHARE:.0%}).",
        metadata={
            "rows_read": read,
            "rows_quarantined": quarantined,
            "quarantined_share": round(share, 4),
            "error_queries": errors.height,
            "sample_of_failures": table_metadata(sample, 20),
        },
    )


@dg.asset_check(asset=centre_import, blocking=True, partitions_def=centre_partitions,
                description="Nothing lost: for every table, rows read = rows accepted + rows quarantined.")
def row_accounting(context: dg.AssetCheckExecutionContext, centre_import: CentreImport) -> dg.AssetCheckResult:
    acc = centre_import.validated.accounting
    broken = acc.filter(pl.col("rows_read") != pl.col("rows_accepted") + pl.col("rows_quarantined"))
    return dg.AssetCheckResult(passed=broken.is_empty(), metadata={"accounting": table_metadata(acc)})


SHRINKAGE_GUARD = dg.AssetCheckSpec(
    "shrinkage_guard", asset="centre_warehouse", blocking=True, partitions_def=centre_partitions,
    description=f"Shrinkage guard: holds a delivery that removes more than {MAX_REMOVED_SHARE:.0%} "
    "(CLMS_MAX_REMOVED_SHARE) of the centre's patients now in the warehouse, until a run "
    f"tagged {ACCEPT_SHRINKAGE_TAG}=true accepts it (clms-etl run --accept-shrinkage CENTRE). Decided "
    "inside the load's transaction: a held delivery changes nothing.")


@dg.asset(
    partitions_def=centre_partitions,
    group_name="warehouse",
    owners=["team:data"],
    kinds={"sql"},
    code_version="1",
    pool="warehouse",  # DuckDB has one writer: centres launched together queue here
    retry_policy=TRANSIENT_RETRIES,
    check_specs=[SHRINKAGE_GUARD],
    description="The centre's rows in the warehouse, replaced in one transaction "
    "(idempotent: the same delivery twice changes nothing).",
    metadata={"dagster/column_schema": canonical_column_schema(warehouse=True)},
)
def centre_warehouse(context: dg.AssetExecutionContext, centre_import: CentreImport,
                     warehouse: WarehouseResource, pseudonym_key: PseudonymKey, outputs: OutputsFolder,
                     centre_handoff: dg.ResourceParam[CentreHandoff]):
    from clms_etl.warehouse.load import DeliveryHeld, DeliveryRefused, IntegrityProblem, SchemaMismatch

    d = centre_import.delivery
    files = [d.path / name for name, _ in d.files]
    limit = float(os.environ.get("CLMS_MAX_REMOVED_SHARE", MAX_REMOVED_SHARE))
    accepted_by_tag = context.run.tags.get(ACCEPT_SHRINKAGE_TAG, "").lower() == "true"
    # Great Expectations runs once over the whole warehouse (blocking check on `warehouse`),
    # not after each centre's load.
    key = _key(pseudonym_key, warehouse)
    try:
        # one opening of the warehouse for the guard and the load: the pool's slot is held once
        with warehouse.open() as wh:
            report = wh.load_delivery(centre_import.centre, d.date, files, centre_import.validated,
                                      run_id=context.run.run_id, expectations=False, key=key,
                                      run_user=run_user(context),
                                      max_removed_share=None if accepted_by_tag else limit)
            status = wh.query_status(centre_import.centre)
    except DeliveryHeld as held:
        guard = shrinkage_check(centre_import, held.shrinkage, limit, accepted_by_tag)
        yield guard
        raise dg.Failure(description=guard.description, allow_retries=False) from None
    except (DeliveryRefused, IntegrityProblem, SchemaMismatch) as refused:
        # not transient: retrying would refuse again (the warehouse is unchanged)
        raise dg.Failure(description=f"{centre_import.centre} {d.date}: {refused}", allow_retries=False) from refused
    centre_handoff.discard(centre_import.centre)  # loaded: no second copy of the rows
    # the query list with each problem's status and what this delivery resolved (rewritten only if
    # that changes the list centre_import wrote)
    query_list = write_loaded_query_list(outputs.root, centre_import, status)
    # the same delivery loaded, the same data version (as centre_import's)
    yield dg.MaterializeResult(data_version=dg.DataVersion(d.sha256), metadata={
        "query_list": dg.MetadataValue.path(str(query_list)),
        "status": str(getattr(report, "status", "loaded")),
        "report": dg.MetadataValue.md(f"```\n{report}\n```"),
        "warehouse": warehouse.describe(),
    }, check_results=[shrinkage_check(centre_import, report.shrinkage, limit, accepted_by_tag)])


def shrinkage_check(centre_import: CentreImport, shrinkage, limit: float, accepted_by_tag: bool) -> dg.AssetCheckResult:
    """The shrinkage guard's verdict on what the load found (``clms_etl.warehouse.load.Shrinkage``)."""
    from clms_etl.warehouse.load import shrinkage_text

    share = shrinkage.removed_share
    numbers = f"{centre_import.centre} {centre_import.delivery.date}: {shrinkage_text(shrinkage, limit)}"
    held = share > limit and not accepted_by_tag
    return dg.AssetCheckResult(
        check_name=SHRINKAGE_GUARD.name,
        passed=not held,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{numbers}: held. If the export is complete, accept it with a run tagged "
                     f"{ACCEPT_SHRINKAGE_TAG}=true (clms-etl run --accept-shrinkage {centre_import.centre})."
                     if held else numbers + (": accepted by the run's tag." if share > limit else ".")),
        metadata={"rows_in_warehouse": shrinkage.rows_in_warehouse, "rows_delivered": shrinkage.rows_delivered,
                  "rows_removed": shrinkage.rows_removed, "removed_share": round(share, 4),
                  "max_removed_share": limit, "accepted_by_tag": accepted_by_tag},
    )


def run_user(context) -> str | None:
    """Who launched the run, when Dagster knows (its ``user`` run tag: Dagster+, launches by a user)."""
    return context.run.tags.get("user")
