"""Interoperability stage: the registry in the OMOP Common Data Model v5.4 (docs/omop.md).

``omop_cdm`` writes ``<outputs>/omop/`` (CSV per table, ``omop_cdm.duckdb`` created from OHDSI's
official DDL, ``unmapped.csv``, ``quality.csv``) after every nightly refresh; its blocking check
``omop_quality`` is the verdict of the Data Quality Dashboard's checks that need no vocabulary, which
the export ran on the DuckDB file it wrote (``quality.csv``): the asset yields it, not running them twice.
"""

import dagster as dg
import polars as pl

from assets import unchanged
from assets.metadata import table_metadata
from assets.priority import background_priority
from assets.resources import OutputsFolder, PseudonymKey, WarehouseResource
from assets.warehouse import warehouse

OMOP_FOLDER = "omop"
OMOP_QUALITY = dg.AssetCheckSpec(
    "omop_quality", asset="omop_cdm", blocking=True,
    description="Data Quality Dashboard checks that need no vocabulary table, on the OMOP DuckDB file the "
    "asset wrote: required fields, primary keys, references to person and episode, plausible values "
    "and dates, temporal order, after birth, before death, observation periods not overlapping, every "
    "event inside an observation period. One violating row fails it.")


class OmopConfig(dg.Config):
    """``dates: shifted`` (default): every date of a patient moved back by the same 1-365 days drawn from the
    pseudonym key, for an export that may leave the registry; ``exact`` for the in-house OMOP warehouse."""

    dates: str = "shifted"


@dg.asset(
    deps=[warehouse],
    group_name="interop",
    owners=["team:data"],
    kinds={"duckdb", "csv"},
    code_version="1",
    # No pool: it reads its rows first (on DuckDB a writer waits for that reading, not for the export),
    # then builds the CDM beside the analyses, at background priority.
    check_specs=[OMOP_QUALITY],
    description="The registry as OMOP CDM v5.4 with the Oncology extension (person, observation_period, "
    "condition_occurrence, procedure_occurrence, measurement, observation, death, specimen, episode, episode_event, "
    "cdm_source, metadata): CSV files and an OMOP DuckDB schema from the official DDL, in <outputs>/omop/, with the "
    "values left at concept 0 (unmapped.csv). Pseudonyms only; dates shifted per patient unless config dates: exact.",
)
def omop_cdm(context: dg.AssetExecutionContext, config: OmopConfig, warehouse: WarehouseResource,
             pseudonym_key: PseudonymKey, outputs: OutputsFolder) -> dg.MaterializeResult:
    from clms_etl.omop.build import DATE_MODES
    from clms_etl.omop.export import export_omop, read_sources, sources_folder

    if config.dates not in DATE_MODES:
        raise dg.Failure(description=f"dates must be one of {', '.join(DATE_MODES)}, not {config.dates!r}",
                         allow_retries=False)
    if not (decision := unchanged.decide(context, dates=config.dates)).recompute:
        context.log.info(decision.why)
        return decision.repeated()
    key = pseudonym_key.secret(warehouse.resolved_url) if config.dates == "shifted" else None
    target = outputs.root / OMOP_FOLDER
    with sources_folder(target) as folder:
        with warehouse.open(read_only=True) as wh:  # at full priority: a writer may be waiting
            sources = read_sources(wh, folder)
        priority = background_priority(context)
        result = export_omop(sources, target, dates=config.dates, key=key, replace=True)
    context.log.info(f"OMOP CDM v5.4: {result.summary()}")
    rows = pl.DataFrame({"table": list(result.rows), "rows": list(result.rows.values())})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": result.rows.get("person", 0),
        "dates": config.dates,
        "rows_per_table": table_metadata(rows, 20),
        "unmapped_source_values": result.unmapped.height,
        "unmapped": table_metadata(result.unmapped, 60),
        "excluded_rows": result.excluded.height,  # pseudonyms and reasons in excluded.csv, not in the event log
        "folder": dg.MetadataValue.path(str(result.target)),
        **decision.metadata,
        **priority,
    }, check_results=[omop_quality(result.quality)])


def omop_quality(checked: pl.DataFrame) -> dg.AssetCheckResult:
    """The blocking check's verdict on the export's quality checks (one row per check, as ``quality.csv``),
    run by the export on the file it wrote."""
    failures = checked.filter(~checked["passed"])
    return dg.AssetCheckResult(check_name=OMOP_QUALITY.name, passed=failures.is_empty(),
                               severity=dg.AssetCheckSeverity.ERROR, metadata={
        "checks": checked.height, "failed": failures.height, "failures": table_metadata(failures, 50),
        unchanged.RECOMPUTED: True})
