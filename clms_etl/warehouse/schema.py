"""The warehouse schema, declared once for both backends (DuckDB file, PostgreSQL).

Base tables live in the default schema (``main`` on DuckDB, ``public`` on PostgreSQL); the
views analysts query live in the ``analytics`` schema (:mod:`clms_etl.warehouse.analytics`).

* The canonical tables (``patient``, ``tumour``, ``surgery``, ``event``, ``molecular_sample``,
  ``cn_segment``, ``variant``, ``fusion``) have exactly the columns of
  :mod:`clms_etl.model` (domain columns, then provenance), plus ``delivery_id``: the delivery
  that brought the row. ``gene_status`` is the gene-level status derived from the lab's rows
  (:mod:`clms_etl.warehouse.genes`).
* ``data_query`` holds every data query of the deliveries currently loaded (quarantine and
  warnings), ``delivery`` / ``delivery_file`` / ``delivery_count`` the audit trail of loads.

**Ownership.** Every data row belongs to one delivery (``delivery_id``), and every delivery to
one source (``delivery.centre``: a centre, or ``molecular`` for the laboratory). Loading a
source's delivery replaces *all* the rows of that source's previous deliveries, in every table.
The laboratory owns the molecular tables; a centre owns its patients and their tumour,
operation and event rows. Molecular samples point at patients by pseudonym without a foreign
key: the two sources deliver independently (see :mod:`clms_etl.warehouse.load`).

**Foreign keys are PostgreSQL-only** (``ddl_if(dialect="postgresql")``). DuckDB 2.0 cannot
delete a referenced parent row in the same transaction as its children ("Violates foreign key
constraint ... still referenced", verified), which is exactly what a replacing load does. On
DuckDB referential integrity is enforced by the loader instead — parents inserted before
children and an orphan check of the delivery before anything is written — and audited after every
load by the Great Expectations suites (``validations/expectations``).

**An index on ``delivery_id``, PostgreSQL only**, in every table a delivery owns: a replacing load
counts, upserts over and deletes the rows of the source's previous delivery, which without it meant
scanning the whole table for each load (quadratic over a night of many centres). DuckDB finds them
by its zone maps, and its indexes make deleting many rows slow (:mod:`clms_etl.warehouse.load`).

The canonical tables are derived from the contract (:mod:`clms_etl.contract`): columns, types,
NOT NULL, keys, foreign keys, comments and the CHECK constraints of their code lists and ranges.
Every table and column carries a comment, which both backends store (``COMMENT ON``) and
``docs/warehouse.md`` is built from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import polars as pl
import sqlalchemy as sa

from clms_etl import contract, model, vocabulary
from clms_etl.results import RUN_ID_COMMENT, ResultTable

QUERY_SEVERITIES = ("error", "warning")
CN_EVENTS = ("amplification", "gain", "homozygous_deletion", "heterozygous_deletion", "cn_loh", "neutral")
CN_COVERAGES = ("whole", "partial")
PSEUDONYM_LENGTH = contract.PSEUDONYM_LENGTH

CLINICAL_TABLES = tuple(model.CLINICAL_TABLES)  # patient, tumour, surgery, event
MOLECULAR_TABLES = (*model.MOLECULAR_TABLES, "gene_status")
ANALYTICS_SCHEMA = "analytics"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

_SA_TYPES = {
    pl.String: sa.Text,
    pl.Int8: sa.SmallInteger,
    pl.Int16: sa.SmallInteger,
    pl.Int32: sa.Integer,
    pl.Int64: sa.BigInteger,
    pl.Float64: sa.Double,
    pl.Boolean: sa.Boolean,
    pl.Date: sa.Date,
}

# Comments of the warehouse's own tables; the canonical tables' are the contract's.
TABLE_COMMENTS = {
    "gene_status": "Gene-level status of each profiled sample for the pinned hg19 gene table (clms_etl/data/genes_hg19.tsv), derived from cn_segment and variant at load time.",
    "data_query": "Data queries of the deliveries currently loaded: every problem found in a cell, row or file (errors quarantine the row, warnings do not). Values are as received, identifiers masked.",
    "delivery": "Audit trail: one row per delivery loaded (a centre or the laboratory), with the SHA-256 of its content. Deliveries replaced by a newer one stay, with is_current false.",
    "delivery_file": "Files of each delivery with their SHA-256 and size.",
    "delivery_count": "Rows read, accepted and quarantined per canonical table for each delivery.",
    "warehouse_key": "Fingerprint of the pseudonym key the warehouse was built with (salted scrypt, never the key): a delivery pseudonymised with another key is refused. A re-key adds a row and retires the previous one.",
    "audit_log": "Audit trail of every change: a load, a re-key, a nightly refresh; who ran it, with which key and code version, when, in which run. The loader role may only append to it.",
    "audit_delivery": "The deliveries each audited action concerned (centre, date, SHA-256 of the content).",
    "warehouse_change": "PostgreSQL: one row per transaction and table that wrote a base table a shared copy of an analytics view is computed from (statement triggers append it in the writer's transaction; DuckDB keeps it empty). A shared copy is current while this table has the rows it was made with (clms_etl.warehouse.shared_copy). Append-only.",
    "data_query_status": "Life of each data query across a centre's deliveries (one row per query number): open, answered by the centre in a returned query workbook, or resolved by a later delivery; the source of the centres' turnaround figures.",
}

DATA_QUERY_STATUS_COMMENTS = {
    "query_id": "Stable query number (Q + 10 hex digits): hash of centre, rule, table, patient (or row, or file), field and rank, the same from one delivery to the next.",
    "centre": "Centre (or molecular) whose deliveries raised the query.",
    "rule": "Rule of the query (clms_etl/data/rules.toml).",
    "severity": "error / warning, as the rule registry says.",
    "table_name": "Canonical table of the row concerned; null for a whole-file query.",
    "patient_id": "Pseudonym of the patient concerned, if known.",
    "source_file": "File concerned in the latest delivery that raised it.",
    "source_sheet": "Sheet concerned (Excel), if any.",
    "source_row": "Row concerned as the data manager sees it (header = 1).",
    "field": "Column as named in the centre's file.",
    "message": "Message of the latest delivery that raised it (French).",
    "status": "open (raised, not answered), answered (the centre answered, the problem is still there), resolved (absent from a later delivery).",
    "opened_on": "Delivery date that raised it (again, after a resolution).",
    "last_seen_on": "Latest delivery date that raised it.",
    "answered_on": "Delivery date whose returned workbook carried the centre's answer.",
    "answer": "The centre's « Réponse du centre », screened for identifiers like every value.",
    "resolved_on": "Delivery date that no longer raised it; null while open or answered.",
}

GENE_STATUS_COMMENTS = {
    "sample_id": "Sample (molecular_sample.sample_id).",
    "gene": "Gene symbol of the pinned hg19 gene table.",
    "chrom": "Chromosome of the gene (hg19).",
    "gene_start_bp": "Gene start, 1-based inclusive (hg19, pinned table).",
    "gene_end_bp": "Gene end, inclusive (hg19, pinned table).",
    "cn_event": "Copy-number status of the gene (oncoscanR thresholds): amplification (Gain, CN > 4), gain, homozygous_deletion (Loss, CN < 1), heterozygous_deletion, cn_loh, neutral; null when copy number was not assessed.",
    "cn_coverage": "whole: segments of that status cover the whole gene; partial: they overlap only part of it (e.g. an intragenic deletion).",
    "cn_state": "Copy number of the segment giving cn_event (lowest for losses, highest for gains); null for LOH and neutral.",
    "mutated": "A reportable variant in the gene; null when the sample was not sequenced.",
    "biallelic_inactivation": "Homozygous deletion, or a reportable mutation with loss or LOH of the other allele.",
    "gene_table_version": "Version of the pinned gene table used (clms_etl/data/genes_hg19.tsv).",
}

QUERY_COMMENTS = {
    "query_no": "Order of the query within its delivery.",
    "centre": "Source of the delivery (a centre, or molecular for the laboratory).",
    "delivery_date": "Date of the delivery (its folder name).",
    "source_file": "File concerned.",
    "source_sheet": "Sheet concerned (Excel), if any.",
    "source_row": "Row concerned as the data manager sees it (header = 1); null for a whole-file query.",
    "table_name": "Canonical table of the row concerned; null for a whole-file query.",
    "row_id": "Canonical row concerned (row_id of that table); null for a whole-file query.",
    "patient_id": "Pseudonym of the patient concerned, if known.",
    "field": "Column as named in the centre's file.",
    "value": "Value as received (truncated to 200 characters); identifier columns are masked.",
    "rule": "Identifier of the rule that raised the query.",
    "severity": "error (the row is quarantined) / warning (the row is kept).",
    "message": "Message for the centre's data manager (French).",
    "delivery_id": "Delivery that raised the query (delivery.delivery_id).",
}

DELIVERY_COMMENTS = {
    "delivery_id": "Identifier: <centre>:<delivery date>:<first 16 hex digits of content_sha256>.",
    "centre": "Source: a centre (nice, montpellier, lyon, nimes, ...) or molecular (the laboratory).",
    "delivery_date": "Date of the delivery (name of its folder in the drop zone).",
    "content_sha256": "SHA-256 over the delivery's files (names and per-file SHA-256): the same content is never loaded twice.",
    "n_files": "Number of files in the delivery.",
    "rows_read": "Rows read over all canonical tables.",
    "rows_accepted": "Rows accepted (loaded) over all canonical tables.",
    "rows_quarantined": "Rows quarantined (not loaded; see data_query) over all canonical tables.",
    "run_id": "Identifier of the pipeline run that loaded it.",
    "loaded_at": "When the load committed (UTC).",
    "is_current": "The delivery whose rows are in the warehouse now (the latest of its source).",
}
WAREHOUSE_KEY_COMMENTS = {
    "key_id": "Short name of the key: the first 16 hex digits of the scrypt digest (it tells keys apart, it reveals nothing).",
    "fingerprint": "scrypt$N$r$p$<salt>$<digest> of the key (clms_etl.keys.fingerprint); a guessed key costs a scrypt to test.",
    "set_at": "When the key was recorded (first load, adoption or re-key), UTC.",
    "is_current": "The key the warehouse's pseudonyms are computed with now (exactly one row).",
}
AUDIT_LOG_COMMENTS = {
    "audit_id": "Identifier of the audited action (random).",
    "action": "load (a delivery replaced a source's rows), rekey (pseudonyms recomputed with a new key), refresh (nightly refresh of the warehouse), adopt_key (key recorded for a warehouse built before fingerprints), results (an analysis replaced its result tables, named in detail; its deliveries are the ones the results were computed from).",
    "recorded_at": "When the action committed (UTC).",
    "os_user": "Operating-system account of the process that ran it.",
    "run_user": "User who launched the Dagster run, when Dagster knows one (run tag 'user'); null otherwise.",
    "run_id": "Pipeline run (Dagster run id) or 'cli'.",
    "key_id": "Key the warehouse's pseudonyms were computed with after the action (warehouse_key.key_id).",
    "code_version": "Package version and git commit of the code that ran it.",
    "detail": "What changed, in words (rows loaded, pseudonyms recomputed...).",
}
AUDIT_DELIVERY_COMMENTS = {
    "audit_id": "Audited action (audit_log.audit_id).",
    "centre": "Source of the delivery (a centre, or molecular).",
    "delivery_date": "Date of the delivery.",
    "content_sha256": "SHA-256 of the delivery's content (delivery.content_sha256).",
}
DELIVERY_FILE_COMMENTS = {
    "delivery_id": "Delivery (delivery.delivery_id).",
    "file_name": "Path of the file relative to the delivery folder.",
    "sha256": "SHA-256 of the file's bytes.",
    "size_bytes": "Size of the file in bytes.",
}
DELIVERY_COUNT_COMMENTS = {
    "delivery_id": "Delivery (delivery.delivery_id).",
    "table_name": "Canonical table.",
    "rows_read": "Rows the reader produced for that table.",
    "rows_accepted": "Rows that passed validation and were loaded.",
    "rows_quarantined": "Rows held back by an error-level data query.",
}


def _in(column: str, values) -> str:
    items = ", ".join(str(v) if isinstance(v, int) else "'" + str(v).replace("'", "''") + "'" for v in values)
    return f"{column} IN ({items})"


def _pseudonym_check(column: str) -> str:
    return f"length({column}) = {PSEUDONYM_LENGTH} AND substr({column}, 1, 1) = 'P'"


def _range(column: contract.Column) -> str:
    """The SQL condition of a column's declared range (NULL passes, as a CHECK lets it)."""
    low = None if column.min is None else f"{column.name} {'>' if column.min_exclusive else '>='} {str(column.min)}"
    high = None if column.max is None else f"{column.name} <= {str(column.max)}"
    if low and high and not column.min_exclusive:
        return f"{column.name} BETWEEN {str(column.min)} AND {str(column.max)}"
    return " AND ".join(c for c in (low, high) if c)


def _contract_checks(table: contract.Table) -> dict[str, str]:
    """Constraint name -> SQL condition: code lists, ranges and pseudonyms of the contract."""
    out = {}
    for column in table.columns:
        if column.allowed:
            out[f"{column.name}_code"] = _in(column.name, column.allowed)
        if column.has_range:
            out[f"{column.name}_range"] = _range(column)
        if column.pseudonym:
            out[f"{column.name}_pseudonym"] = _pseudonym_check(column.name)
    out.update(table.checks)
    return out


# Code lists of the warehouse's own tables (the canonical tables' come from the contract).
CODE_CHECKS: dict[str, dict[str, tuple]] = {
    **{name: contract.coded_columns(name) for name in contract.TABLES},
    "gene_status": {"cn_event": CN_EVENTS, "cn_coverage": CN_COVERAGES},
    "data_query": {"severity": QUERY_SEVERITIES},
}
# Checks the database enforces besides the code lists: the contract's ranges (validation
# quarantines before that; these stop a reader or validation bug from writing nonsense).
_OTHER_CHECKS: dict[str, dict[str, str]] = {
    **{name: {k: v for k, v in _contract_checks(spec).items() if not k.endswith("_code")}
       for name, spec in contract.TABLES.items()},
    "data_query": {"patient_id_pseudonym": _pseudonym_check("patient_id")},
}

PARENTS = {  # child table -> (column, parent table, parent column); PostgreSQL foreign keys
    **{name: spec.parent for name, spec in contract.TABLES.items() if spec.parent},
    "gene_status": ("sample_id", "molecular_sample", "sample_id"),
}


def _fk(table: str) -> list[sa.ForeignKeyConstraint]:
    if table not in PARENTS:
        return []
    column, parent, parent_column = PARENTS[table]
    # PostgreSQL only: see the module docstring (DuckDB 2.0 cannot replace a parent and its
    # children in one transaction; the loader's orphan check and the GE suites stand in).
    return [sa.ForeignKeyConstraint([column], [f"{parent}.{parent_column}"]).ddl_if(dialect="postgresql")]


def _delivery_index(table: str) -> list[sa.Index]:
    return [sa.Index(f"ix_{table}_delivery_id", "delivery_id").ddl_if(dialect="postgresql")]


def _checks(table: str) -> list[sa.CheckConstraint]:
    checks = [sa.CheckConstraint(_in(col, values), name=f"{col}_code")
              for col, values in CODE_CHECKS.get(table, {}).items()]
    checks += [sa.CheckConstraint(text, name=name) for name, text in _OTHER_CHECKS.get(table, {}).items()]
    return checks


def check_conditions(table: str) -> dict[str, str]:
    """Constraint name -> SQL condition of every CHECK and NOT NULL constraint of a canonical table
    (what the loader evaluates to name the rows the database refused)."""
    out = {str(c.name): str(c.sqltext) for c in _checks(table)}
    spec = contract.TABLES[table]
    out.update({f"{c.name}_not_null": f"{c.name} IS NOT NULL" for c in sorted(spec.columns, key=lambda c: c.name)
                if not c.nullable and c.name not in spec.key and c.name != "row_id"})
    return out


def _sa_column(column: contract.Column, nullable: bool) -> sa.Column:
    return sa.Column(column.name, _SA_TYPES[column.dtype](), nullable=nullable, comment=column.comment)


def _canonical_table(spec: contract.Table) -> sa.Table:
    columns = [_sa_column(c, c.nullable and c.name not in spec.key) for c in spec.columns]
    columns.append(_sa_column(contract.DELIVERY_COLUMN, contract.DELIVERY_COLUMN.nullable))
    return sa.Table(
        spec.name, metadata, *columns,
        sa.PrimaryKeyConstraint(*spec.key),
        *_fk(spec.name), *_checks(spec.name), *_delivery_index(spec.name),
        comment=spec.comment,
    )


for _spec in contract.TABLES.values():
    _canonical_table(_spec)

gene_status = sa.Table(
    "gene_status", metadata,
    sa.Column("sample_id", sa.Text(), nullable=False, comment=GENE_STATUS_COMMENTS["sample_id"]),
    sa.Column("gene", sa.Text(), nullable=False, comment=GENE_STATUS_COMMENTS["gene"]),
    sa.Column("chrom", sa.Text(), nullable=False, comment=GENE_STATUS_COMMENTS["chrom"]),
    sa.Column("gene_start_bp", sa.BigInteger(), nullable=False, comment=GENE_STATUS_COMMENTS["gene_start_bp"]),
    sa.Column("gene_end_bp", sa.BigInteger(), nullable=False, comment=GENE_STATUS_COMMENTS["gene_end_bp"]),
    sa.Column("cn_event", sa.Text(), comment=GENE_STATUS_COMMENTS["cn_event"]),
    sa.Column("cn_coverage", sa.Text(), comment=GENE_STATUS_COMMENTS["cn_coverage"]),
    sa.Column("cn_state", sa.Double(), comment=GENE_STATUS_COMMENTS["cn_state"]),
    sa.Column("mutated", sa.Boolean(), comment=GENE_STATUS_COMMENTS["mutated"]),
    sa.Column("biallelic_inactivation", sa.Boolean(), comment=GENE_STATUS_COMMENTS["biallelic_inactivation"]),
    sa.Column("gene_table_version", sa.Text(), nullable=False, comment=GENE_STATUS_COMMENTS["gene_table_version"]),
    _sa_column(contract.DELIVERY_COLUMN, False),
    sa.PrimaryKeyConstraint("sample_id", "gene"),
    *_fk("gene_status"), *_checks("gene_status"), *_delivery_index("gene_status"),
    comment=TABLE_COMMENTS["gene_status"],
)

data_query = sa.Table(
    "data_query", metadata,
    sa.Column("delivery_id", sa.Text(), nullable=False, comment=QUERY_COMMENTS["delivery_id"]),
    sa.Column("query_no", sa.Integer(), nullable=False, comment=QUERY_COMMENTS["query_no"]),
    sa.Column("centre", sa.Text(), nullable=False, comment=QUERY_COMMENTS["centre"]),
    sa.Column("delivery_date", sa.Date(), nullable=False, comment=QUERY_COMMENTS["delivery_date"]),
    sa.Column("source_file", sa.Text(), comment=QUERY_COMMENTS["source_file"]),
    sa.Column("source_sheet", sa.Text(), comment=QUERY_COMMENTS["source_sheet"]),
    sa.Column("source_row", sa.BigInteger(), comment=QUERY_COMMENTS["source_row"]),
    sa.Column("table_name", sa.Text(), comment=QUERY_COMMENTS["table_name"]),
    sa.Column("row_id", sa.Text(), comment=QUERY_COMMENTS["row_id"]),
    sa.Column("patient_id", sa.Text(), comment=QUERY_COMMENTS["patient_id"]),
    sa.Column("field", sa.Text(), comment=QUERY_COMMENTS["field"]),
    sa.Column("value", sa.Text(), comment=QUERY_COMMENTS["value"]),
    sa.Column("rule", sa.Text(), nullable=False, comment=QUERY_COMMENTS["rule"]),
    sa.Column("severity", sa.Text(), nullable=False, comment=QUERY_COMMENTS["severity"]),
    sa.Column("message", sa.Text(), nullable=False, comment=QUERY_COMMENTS["message"]),
    sa.PrimaryKeyConstraint("delivery_id", "query_no"),
    *_checks("data_query"),
    comment=TABLE_COMMENTS["data_query"],
)
# data_query columns as they come from the readers (clms_etl.data_queries.QUERY_SCHEMA)
QUERY_COLUMN_SOURCES = {"source_file": "file", "source_sheet": "sheet", "source_row": "row"}

delivery = sa.Table(
    "delivery", metadata,
    sa.Column("delivery_id", sa.Text(), nullable=False, comment=DELIVERY_COMMENTS["delivery_id"]),
    sa.Column("centre", sa.Text(), nullable=False, comment=DELIVERY_COMMENTS["centre"]),
    sa.Column("delivery_date", sa.Date(), nullable=False, comment=DELIVERY_COMMENTS["delivery_date"]),
    sa.Column("content_sha256", sa.Text(), nullable=False, comment=DELIVERY_COMMENTS["content_sha256"]),
    sa.Column("n_files", sa.Integer(), nullable=False, comment=DELIVERY_COMMENTS["n_files"]),
    sa.Column("rows_read", sa.BigInteger(), comment=DELIVERY_COMMENTS["rows_read"]),
    sa.Column("rows_accepted", sa.BigInteger(), comment=DELIVERY_COMMENTS["rows_accepted"]),
    sa.Column("rows_quarantined", sa.BigInteger(), comment=DELIVERY_COMMENTS["rows_quarantined"]),
    sa.Column("run_id", sa.Text(), comment=DELIVERY_COMMENTS["run_id"]),
    sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False, comment=DELIVERY_COMMENTS["loaded_at"]),
    sa.Column("is_current", sa.Boolean(), nullable=False, comment=DELIVERY_COMMENTS["is_current"]),
    sa.PrimaryKeyConstraint("delivery_id"),
    sa.CheckConstraint("length(content_sha256) = 64", name="sha256_hex"),
    comment=TABLE_COMMENTS["delivery"],
)

delivery_file = sa.Table(
    "delivery_file", metadata,
    sa.Column("delivery_id", sa.Text(), nullable=False, comment=DELIVERY_FILE_COMMENTS["delivery_id"]),
    sa.Column("file_name", sa.Text(), nullable=False, comment=DELIVERY_FILE_COMMENTS["file_name"]),
    sa.Column("sha256", sa.Text(), nullable=False, comment=DELIVERY_FILE_COMMENTS["sha256"]),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False, comment=DELIVERY_FILE_COMMENTS["size_bytes"]),
    sa.PrimaryKeyConstraint("delivery_id", "file_name"),
    sa.ForeignKeyConstraint(["delivery_id"], ["delivery.delivery_id"]).ddl_if(dialect="postgresql"),
    comment=TABLE_COMMENTS["delivery_file"],
)

delivery_count = sa.Table(
    "delivery_count", metadata,
    sa.Column("delivery_id", sa.Text(), nullable=False, comment=DELIVERY_COUNT_COMMENTS["delivery_id"]),
    sa.Column("table_name", sa.Text(), nullable=False, comment=DELIVERY_COUNT_COMMENTS["table_name"]),
    sa.Column("rows_read", sa.BigInteger(), nullable=False, comment=DELIVERY_COUNT_COMMENTS["rows_read"]),
    sa.Column("rows_accepted", sa.BigInteger(), nullable=False, comment=DELIVERY_COUNT_COMMENTS["rows_accepted"]),
    sa.Column("rows_quarantined", sa.BigInteger(), nullable=False, comment=DELIVERY_COUNT_COMMENTS["rows_quarantined"]),
    sa.PrimaryKeyConstraint("delivery_id", "table_name"),
    sa.ForeignKeyConstraint(["delivery_id"], ["delivery.delivery_id"]).ddl_if(dialect="postgresql"),
    sa.CheckConstraint("rows_read >= 0 AND rows_accepted >= 0 AND rows_quarantined >= 0", name="counts_non_negative"),
    comment=TABLE_COMMENTS["delivery_count"],
)

warehouse_key = sa.Table(
    "warehouse_key", metadata,
    sa.Column("key_id", sa.Text(), nullable=False, comment=WAREHOUSE_KEY_COMMENTS["key_id"]),
    sa.Column("fingerprint", sa.Text(), nullable=False, comment=WAREHOUSE_KEY_COMMENTS["fingerprint"]),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False, comment=WAREHOUSE_KEY_COMMENTS["set_at"]),
    sa.Column("is_current", sa.Boolean(), nullable=False, comment=WAREHOUSE_KEY_COMMENTS["is_current"]),
    sa.PrimaryKeyConstraint("key_id"),
    comment=TABLE_COMMENTS["warehouse_key"],
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("audit_id", sa.Text(), nullable=False, comment=AUDIT_LOG_COMMENTS["audit_id"]),
    sa.Column("action", sa.Text(), nullable=False, comment=AUDIT_LOG_COMMENTS["action"]),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, comment=AUDIT_LOG_COMMENTS["recorded_at"]),
    sa.Column("os_user", sa.Text(), comment=AUDIT_LOG_COMMENTS["os_user"]),
    sa.Column("run_user", sa.Text(), comment=AUDIT_LOG_COMMENTS["run_user"]),
    sa.Column("run_id", sa.Text(), comment=AUDIT_LOG_COMMENTS["run_id"]),
    sa.Column("key_id", sa.Text(), comment=AUDIT_LOG_COMMENTS["key_id"]),
    sa.Column("code_version", sa.Text(), nullable=False, comment=AUDIT_LOG_COMMENTS["code_version"]),
    sa.Column("detail", sa.Text(), comment=AUDIT_LOG_COMMENTS["detail"]),
    sa.PrimaryKeyConstraint("audit_id"),
    sa.CheckConstraint(_in("action", vocabulary.AUDIT_ACTIONS), name="action_code"),
    comment=TABLE_COMMENTS["audit_log"],
)

audit_delivery = sa.Table(
    "audit_delivery", metadata,
    sa.Column("audit_id", sa.Text(), nullable=False, comment=AUDIT_DELIVERY_COMMENTS["audit_id"]),
    sa.Column("centre", sa.Text(), nullable=False, comment=AUDIT_DELIVERY_COMMENTS["centre"]),
    sa.Column("delivery_date", sa.Date(), nullable=False, comment=AUDIT_DELIVERY_COMMENTS["delivery_date"]),
    sa.Column("content_sha256", sa.Text(), nullable=False, comment=AUDIT_DELIVERY_COMMENTS["content_sha256"]),
    sa.PrimaryKeyConstraint("audit_id", "centre"),
    sa.ForeignKeyConstraint(["audit_id"], ["audit_log.audit_id"]).ddl_if(dialect="postgresql"),
    sa.CheckConstraint("length(content_sha256) = 64", name="sha256_hex"),
    comment=TABLE_COMMENTS["audit_delivery"],
)
_STATUS_REQUIRED = ("query_id", "centre", "rule", "severity", "status", "opened_on", "last_seen_on")
sa.Table(  # data_query_status (in metadata, looked up by name like every table)
    "data_query_status", metadata,
    *[sa.Column(name, sa_type, nullable=name not in _STATUS_REQUIRED, comment=DATA_QUERY_STATUS_COMMENTS[name])
      for name, sa_type in (
          ("query_id", sa.Text()), ("centre", sa.Text()), ("rule", sa.Text()), ("severity", sa.Text()),
          ("table_name", sa.Text()), ("patient_id", sa.Text()), ("source_file", sa.Text()),
          ("source_sheet", sa.Text()), ("source_row", sa.BigInteger()), ("field", sa.Text()), ("message", sa.Text()),
          ("status", sa.Text()), ("opened_on", sa.Date()), ("last_seen_on", sa.Date()), ("answered_on", sa.Date()),
          ("answer", sa.Text()), ("resolved_on", sa.Date()))],
    # a query's number is unique within its centre (a 40-bit hash): two centres' may meet at national scale
    sa.PrimaryKeyConstraint("centre", "query_id"),
    sa.CheckConstraint(_in("status", ("open", "answered", "resolved")), name="status_code"),
    sa.CheckConstraint("(status = 'resolved') = (resolved_on IS NOT NULL)", name="resolved_has_date"),
    comment=TABLE_COMMENTS["data_query_status"],
)

warehouse_change = sa.Table(
    "warehouse_change", metadata,
    sa.Column("transaction_id", sa.BigInteger(), nullable=False,
              comment="PostgreSQL transaction (txid_current()) that wrote the table."),
    sa.Column("table_name", sa.Text(), nullable=False, comment="Base table written."),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, comment="Start of that transaction."),
    sa.PrimaryKeyConstraint("transaction_id", "table_name"),
    comment=TABLE_COMMENTS["warehouse_change"],
)

# The loader role may append to these and nothing more (clms_etl.warehouse.roles): the count of
# warehouse_change's rows is what tells a shared copy from a stale one.
APPEND_ONLY_TABLES = ("audit_log", "audit_delivery", "warehouse_change")

# Load order (parents first); deletes run in the reverse order.
LOAD_ORDER = ("patient", "tumour", "surgery", "event", "molecular_sample", "cn_segment", "variant", "fusion",
              "gene_status", "data_query")


# -- result tables (analytics schema) ------------------------------------------------------------
# Declared by the modules that compute them (clms_etl.results) and received here through
# declare_results (clms_etl.analyses declares every analysis's): the warehouse does not import
# the analyses, which sit above it. A separate MetaData because they live in the analytics schema
# and are written whole by each analysis run, not by deliveries (no delivery_id; their Great
# Expectations suites are validations/expectations/analytics/).

results_metadata = sa.MetaData(schema=ANALYTICS_SCHEMA, naming_convention=NAMING_CONVENTION)
RESULT_TABLES: dict[str, ResultTable] = {}
_RESULT_VOCABULARIES: list[Callable[[], dict[str, tuple]]] = []


def declare_results(tables: Iterable[ResultTable], vocabularies: Callable[[], dict[str, tuple]] | None = None) -> None:
    """Make ``tables`` result tables of the warehouse; ``vocabularies`` returns the code lists their
    suites name (called when the suites are loaded, so that declaring imports no analysis).

    Declaring a table again is a no-op; another table under a declared name is an error.
    """
    for spec in tables:
        if RESULT_TABLES.get(spec.name) == spec:
            continue
        if spec.name in RESULT_TABLES or spec.name in metadata.tables:
            raise ValueError(f"result table {spec.name} declared twice")
        RESULT_TABLES[spec.name] = spec
        sa.Table(
            spec.name, results_metadata,
            *[sa.Column(c.name, _SA_TYPES[c.dtype_class](),
                        nullable=c.nullable and c.name not in spec.primary_key, comment=c.comment,
                        autoincrement=False)  # an integer key alone would become SERIAL (unknown to DuckDB)
              for c in spec.columns],
            sa.Column("run_id", sa.Text(), comment=RUN_ID_COMMENT),
            *([sa.PrimaryKeyConstraint(*spec.primary_key)] if spec.indexed else []),
            comment=spec.description,
        )
    if vocabularies is not None and vocabularies not in _RESULT_VOCABULARIES:
        _RESULT_VOCABULARIES.append(vocabularies)


def result_vocabularies() -> dict[str, tuple]:
    """The code lists of the declared result tables' suites."""
    return {name: values for provider in _RESULT_VOCABULARIES for name, values in provider().items()}


def result_table(name: str) -> sa.Table:
    try:
        return results_metadata.tables[f"{ANALYTICS_SCHEMA}.{name}"]
    except KeyError:
        raise KeyError(f"result table {name} is not declared (import clms_etl.analyses first)") from None


def table(name: str) -> sa.Table:
    return metadata.tables[name]


def pseudonym_columns() -> list[tuple[sa.Table, str]]:
    """Every (table, column) holding a pseudonym, base and result tables: what a re-key rewrites,
    parents (patient) first."""
    tables = [*metadata.tables.values(), *results_metadata.tables.values()]
    found = [(t, "patient_id") for t in tables if "patient_id" in t.columns]
    return sorted(found, key=lambda tc: tc[0].name != "patient")


def column_names(name: str) -> list[str]:
    return [c.name for c in metadata.tables[name].columns]
