"""The report's own sections: per-centre data quality and provenance, read from the warehouse.

Both are computed from the ``analytics`` views and the ``delivery`` audit table only (counts,
dates, hashes, rule names): no data-query value, no patient row, so nothing here can carry an
identifier. They are returned as ordinary :class:`~clms_etl.report.sections.Section`s, laid
out like the analyses' sections in the HTML report and the workbook.

Conventions:

* a *source* is a centre or ``molecular`` (the laboratory); the laboratory has no patients of
  its own (its samples carry the centres' pseudonyms), so its patient count is empty;
* rows read / accepted / quarantined are the current delivery's, summed over its tables
  (``analytics.delivery_status``); queries are those of the current delivery
  (``analytics.query_summary``), errors being the queries whose rows were quarantined;
* code version: the package version, plus the git commit when the code runs from a git
  checkout (``CLMS_GIT_COMMIT`` overrides it in deployments without ``.git``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from clms_etl.report.sections import ReportTable, Section
from clms_etl.version import code_version

TOP_RULES = 10
AUDIT_ROWS = 20  # latest changes of the warehouse shown in the provenance
SHA_PREFIX = 12  # hex digits of a delivery's SHA-256 shown: enough to tell deliveries apart

CENTRE_QUALITY_SCHEMA = {
    "source": pl.String, "delivery_date": pl.Date, "patients": pl.Int64, "rows_read": pl.Int64,
    "rows_accepted": pl.Int64, "rows_quarantined": pl.Int64, "quarantined_percent": pl.Float64,
    "queries_error": pl.Int64, "queries_warning": pl.Int64, "queries_total": pl.Int64,
}


def centre_quality(wh) -> pl.DataFrame:
    """One row per source of the current deliveries: patients, rows, quarantine, queries by severity."""
    rows = wh.read_sql(
        "SELECT centre AS source, MIN(delivery_date) AS delivery_date, SUM(rows_read) AS rows_read, "
        "SUM(rows_accepted) AS rows_accepted, SUM(rows_quarantined) AS rows_quarantined "
        "FROM analytics.delivery_status GROUP BY centre")
    patients = wh.read_sql("SELECT centre AS source, COUNT(*) AS patients FROM analytics.patient_summary GROUP BY centre")
    queries = wh.read_sql(
        "SELECT centre AS source, "
        "SUM(CASE WHEN severity = 'error' THEN n_queries ELSE 0 END) AS queries_error, "
        "SUM(CASE WHEN severity = 'warning' THEN n_queries ELSE 0 END) AS queries_warning, "
        "SUM(n_queries) AS queries_total FROM analytics.query_summary GROUP BY centre")
    if rows.is_empty():
        return pl.DataFrame(schema=CENTRE_QUALITY_SCHEMA)
    out = rows.join(_typed(patients, {"source": pl.String, "patients": pl.Int64}), on="source", how="left")
    out = out.join(_typed(queries, {"source": pl.String, "queries_error": pl.Int64, "queries_warning": pl.Int64,
                                    "queries_total": pl.Int64}), on="source", how="left")
    out = out.with_columns(
        pl.col("queries_error", "queries_warning", "queries_total").fill_null(0),
        (100.0 * pl.col("rows_quarantined") / pl.col("rows_read")).alias("quarantined_percent"),
    )
    # centres first in alphabetical order, the laboratory last
    return (out.with_columns((pl.col("source") == "molecular").alias("_lab")).sort("_lab", "source")
            .select([pl.col(c).cast(t) for c, t in CENTRE_QUALITY_SCHEMA.items()]))


def top_rules(wh, limit: int = TOP_RULES) -> pl.DataFrame:
    """The rules that raised the most queries in the current deliveries, with the sources concerned."""
    frame = wh.read_sql("SELECT centre, rule, severity, n_queries FROM analytics.query_summary")
    schema = {"rule": pl.String, "severity": pl.String, "n_queries": pl.Int64, "sources": pl.String}
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    return (
        frame.group_by("rule", "severity")
        .agg(pl.col("n_queries").sum(), pl.col("centre").unique().sort().str.join(", ").alias("sources"))
        .sort(["n_queries", "rule", "severity"], descending=[True, False, False])
        .head(limit)
        .select([pl.col(c).cast(t) for c, t in schema.items()])
    )


def _typed(frame: pl.DataFrame, schema: dict) -> pl.DataFrame:
    if frame.is_empty():
        return pl.DataFrame(schema=schema)
    return frame.select([pl.col(c).cast(t) for c, t in schema.items()])


_QUALITY_LABELS = {
    "source": "Source", "delivery_date": "Delivery", "patients": "Patients", "rows_read": "Rows read",
    "rows_accepted": "Rows accepted", "rows_quarantined": "Rows quarantined", "quarantined_percent": "Quarantined (%)",
    "queries_error": "Queries: errors", "queries_warning": "Queries: warnings", "queries_total": "Queries: total",
}


def _source_labels() -> dict[str, str]:
    """The registry's names of the sources (in French, as the centres name themselves), the drop
    folder's ``centres.toml`` included (scale deliveries), as the Dagster partitions read it."""
    from clms_etl.centres import load_registry
    from clms_etl.config import Settings

    return {name: centre.label for name, centre in load_registry(Settings.from_env().incoming).items()}


def quality_section(wh) -> Section:
    per_source = centre_quality(wh)
    rules = top_rules(wh)
    labels = pl.DataFrame({"source": list(_source_labels()), "name": list(_source_labels().values())},
                          schema={"source": pl.String, "name": pl.String})
    display = (per_source.with_columns(pl.col("quarantined_percent").round(1))
               .join(labels, on="source", how="left", maintain_order="left")
               .select("source", "name", *[c for c in per_source.columns if c != "source"])
               .rename({**_QUALITY_LABELS, "name": "Name"}))
    total_queries = int(per_source["queries_total"].sum()) if per_source.height else 0
    return Section(
        key="data_quality",
        title="Data quality per centre",
        text=(f"{per_source.height} sources in the current deliveries, {total_queries} data queries sent back "
              "to the centres. Quarantined rows are held back from the warehouse until the centre corrects "
              "them; warnings leave the row in."),
        tables=(
            ReportTable("quality_centres", "Current delivery of each source: rows and data queries", display,
                        note="Rows summed over the canonical tables of the delivery. Errors quarantine the row; "
                             "warnings do not. The laboratory (molecular) has no patients of its own."),
            ReportTable("quality_rules", f"Rules that raised the most queries (at most {TOP_RULES})",
                        rules.rename({"rule": "Rule", "severity": "Severity", "n_queries": "Queries",
                                      "sources": "Sources"}),
                        note="Each centre receives the detailed list (file, row, column) as an Excel file."),
        ),
    )


# -- provenance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    run_id: str
    code_version: str
    backend: str  # e.g. "duckdb (warehouse.duckdb)" — never a user, password or full URL
    generated_at: dt.datetime
    deliveries: pl.DataFrame  # source, delivery_date, loaded_at, n_files, sha256_prefix, rows_accepted
    audit: pl.DataFrame | None = None  # recorded_at, action, run_id, key_id, code_version, n_deliveries
    # the analyses' stored results the report shows: tables, run_id, computed_at, current (Warehouse.results_basis)
    results: pl.DataFrame | None = None
    results_never_computed: tuple[str, ...] = ()  # result tables no analysis has written since deliveries exist

    def stale_results_notice(self) -> str:
        """A sentence when some stored results predate the warehouse's current deliveries, else ''."""
        stale = pl.DataFrame() if self.results is None else self.results.filter(~pl.col("current"))
        parts = [f"{', '.join(r['tables'])} (run {r['run_id']}, computed {r['computed_at']})"
                 for r in stale.iter_rows(named=True)]
        if self.results_never_computed:
            parts.append(f"{', '.join(self.results_never_computed)} (never computed)")
        if not parts:
            return ""
        return ("Notice: stale results. These stored results were not computed from the deliveries now in the "
                f"warehouse (a load came after): {'; '.join(parts)}. The report shows them as stored; the numbers "
                "of the cohort summary and data quality are current. Run the nightly refresh to recompute them.")


def describe_backend(url: str) -> str:
    """Backend and database of a SQLAlchemy URL without user or password: ``postgresql (host:5432/db)``."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        return f"duckdb ({Path(parsed.database).name if parsed.database else 'in memory'})"
    where = f"{parsed.host or 'localhost'}{f':{parsed.port}' if parsed.port else ''}/{parsed.database or ''}"
    return f"{backend} ({where})"


def provenance(wh, run_id: str | None = None, generated_at: dt.datetime | None = None) -> Provenance:
    from clms_etl.warehouse.schema import RESULT_TABLES

    deliveries = wh.read_sql(
        "SELECT centre AS source, delivery_date, loaded_at, n_files, content_sha256, rows_accepted, run_id "
        "FROM delivery WHERE is_current ORDER BY centre")
    if deliveries.is_empty():
        deliveries = pl.DataFrame(schema={"source": pl.String, "delivery_date": pl.Date, "loaded_at": pl.String,
                                          "n_files": pl.Int64, "sha256_prefix": pl.String,
                                          "rows_accepted": pl.Int64, "load_run": pl.String})
    else:
        deliveries = deliveries.select(
            "source", "delivery_date",
            _utc_text(pl.col("loaded_at"), deliveries.schema["loaded_at"]),
            "n_files", pl.col("content_sha256").str.slice(0, SHA_PREFIX).alias("sha256_prefix"), "rows_accepted",
            pl.col("run_id").alias("load_run"),
        )
    audit = wh.audit_log(limit=AUDIT_ROWS)  # who ran it stays in the warehouse: no user in the report
    audit = audit.select(_utc_text(pl.col("recorded_at"), audit.schema["recorded_at"]), "action", "run_id",
                         "key_id", "code_version", "n_deliveries")
    results = wh.results_basis()
    results = results.with_columns(_utc_text(pl.col("computed_at"), results.schema["computed_at"]))
    written = set(results["tables"].explode().drop_nulls())
    return Provenance(
        results=results,
        results_never_computed=() if deliveries.is_empty() else tuple(sorted(set(RESULT_TABLES) - written)),
        run_id=run_id or "manual",
        code_version=code_version(),
        backend=describe_backend(wh.url),
        generated_at=generated_at or dt.datetime.now(dt.UTC),
        deliveries=deliveries,
        audit=audit,
    )


def _utc_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if not isinstance(dtype, pl.Datetime):
        return expr.cast(pl.String)
    # the loader stores UTC; a naive timestamp (DuckDB without a time zone setting) is UTC too
    utc = expr.dt.replace_time_zone("UTC") if dtype.time_zone is None else expr.dt.convert_time_zone("UTC")
    return utc.dt.strftime("%Y-%m-%d %H:%M UTC")


def provenance_section(prov: Provenance) -> Section:
    facts = pl.DataFrame({
        "Item": ["Pipeline run", "Code version", "Warehouse", "Generated"],
        "Value": [prov.run_id, prov.code_version, prov.backend, prov.generated_at.strftime("%Y-%m-%d %H:%M UTC")],
    })
    deliveries = prov.deliveries.rename({
        "source": "Source", "delivery_date": "Delivery date", "loaded_at": "Loaded", "n_files": "Files",
        "sha256_prefix": "SHA-256 (prefix)", "rows_accepted": "Rows accepted", "load_run": "Load run",
    })
    return Section(
        key="provenance",
        title="Provenance",
        text="What this report was computed from: the deliveries currently in the warehouse, the run and the code.",
        tables=(
            ReportTable("provenance_run", "Run, code and warehouse", facts),
            ReportTable("provenance_deliveries", "Deliveries loaded", deliveries,
                        note=f"SHA-256 over each delivery's files (names and contents), first {SHA_PREFIX} hex "
                             "digits: the same content always gives the same digits."),
            *([] if prov.audit is None else [ReportTable(
                "provenance_audit", f"Latest changes of the warehouse (audit trail, at most {AUDIT_ROWS})",
                prov.audit.rename({"recorded_at": "When", "action": "Action", "run_id": "Run", "key_id": "Key",
                                   "code_version": "Code version", "n_deliveries": "Deliveries"}),
                note="Each load, re-key and nightly refresh of the warehouse (table audit_log, where the account "
                     "that ran it is kept too). Key: the name of the pseudonym key's fingerprint, never the key.")]),
            *([] if prov.results is None or prov.results.is_empty() else [ReportTable(
                "provenance_results", "Stored results shown in this report",
                prov.results.select(pl.col("tables").list.join(", ").alias("Result tables"),
                                    pl.col("run_id").alias("Computed by run"), pl.col("computed_at").alias("Computed"),
                                    pl.when(pl.col("current")).then(pl.lit("yes")).otherwise(pl.lit("no: stale"))
                                    .alias("From the current deliveries")),
                note="The analyses' sections are read from these result tables (schema analytics), never recomputed "
                     "by the report: their numbers are those of the run named.")]),
        ),
    )
