"""``clms-etl export omop``: the warehouse written as an OMOP CDM v5.4 database and CSV files.

A **folder** target gets what a site needs to load the registry itself and what the data team
needs to review it:

* ``csv/<table>.csv`` — one file per CDM table written (UTF-8, comma, header, ISO dates, empty
  field for null), columns in the DDL's order;
* ``omop_cdm.duckdb`` — the same tables in an OMOP v5.4 schema created from the official DDL with
  its primary keys (schema ``omop``), rebuilt whole each time (written aside, then moved in place);
* ``unmapped.csv`` — every source value written with concept 0, per table and field, with its row
  count; ``quality.csv`` — every check of :mod:`clms_etl.omop.quality` with its violating rows;
  ``excluded.csv`` — the warehouse rows the CDM has no place for (a patient without diagnosis date or
  age, an undated operation or event, a sample of a patient not exported), by pseudonym, with the reason.

A **database URL** target (``duckdb:///…``, ``postgresql+psycopg://…``) gets the tables in the
schema given (default ``omop``), created from the official DDL when it has none; a schema already
holding persons is refused unless ``replace`` (which drops and recreates it).

No export is blocked by itself: the quality checks are reported (the Dagster asset's blocking check
fails on any violating row, the command exits non-zero).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from clms_etl.files import make_private, private_dir
from clms_etl.omop import build as omop_build
from clms_etl.omop import cdm, mapping, quality

DEFAULT_SCHEMA = "omop"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # it is written into the DDL: no quoting games
DUCKDB_FILE = "omop_cdm.duckdb"
SOURCE_TABLES = (*omop_build.CLINICAL_TABLES, *omop_build.MOLECULAR_TABLES)
DDL_COMMIT = "f853f6e39c61b4eb8b3e5287fd573a1ced36c0e4"  # OHDSI/CommonDataModel, clms_etl/omop/NOTICE.md


class TargetRefused(RuntimeError):
    """The target cannot take the export: its schema holds an earlier one (an export never mixes two), or
    the schema name is not a plain identifier."""


@dataclass
class OmopExport:
    """What one export wrote and what it found."""

    target: str  # folder or database, never with a password
    dates: str
    rows: dict[str, int]
    quality: pl.DataFrame
    unmapped: pl.DataFrame
    excluded: pl.DataFrame  # warehouse rows with no place in the CDM, with the reason
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.quality["passed"].all())

    def failures(self) -> pl.DataFrame:
        return self.quality.filter(~pl.col("passed"))

    def summary(self) -> str:
        failed = self.failures()
        return (f"{self.rows.get('person', 0)} persons, {sum(self.rows.values())} rows in {len(self.rows)} tables "
                f"({self.dates} dates); {self.quality.height - failed.height}/{self.quality.height} quality checks "
                f"passed; {self.unmapped['rows'].sum() if self.unmapped.height else 0} rows with concept 0 "
                f"({self.unmapped.height} source values); {self.excluded.height} warehouse rows not exported "
                f"(excluded.csv)")


def build_tables(wh, *, dates: str, key: bytes | None) -> tuple[dict[str, pl.DataFrame], omop_build.Cdm]:
    """The CDM tables of the warehouse ``wh`` (with ``cdm_source`` and ``metadata``) and the built CDM
    (unmapped values, excluded rows)."""
    from clms_etl.version import code_version

    source = {name: wh.table(name) for name in SOURCE_TABLES}
    built = omop_build.build(source, dates=dates, key=key)
    today = dt.date.today()
    deliveries = wh.current_deliveries()
    latest = max(deliveries["delivery_date"]) if deliveries.height else None
    version = code_version()
    settings = {"dates": dates, "mapping_version": mapping.MAPPING_VERSION,
                "mapping_sha256": mapping.mapping_sha256(), "ddl": f"OHDSI/CommonDataModel {DDL_COMMIT} inst/ddl/5.4",
                "etl": f"clms-etl {version}"}
    tables = {**built.tables,
              "cdm_source": cdm.conform("cdm_source", omop_build.cdm_source(today, latest, version)),
              "metadata": cdm.conform("metadata", omop_build.metadata(settings, today))}
    return tables, built


def write_database(engine: sa.Engine, schema: str, tables: dict[str, pl.DataFrame], *, replace: bool = False,
                   primary_keys: bool = True) -> dict[str, int]:
    """The tables into ``schema`` (official DDL when absent), in one transaction."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise TargetRefused(f"schema name {schema!r}: lower-case letters, digits and _ only")
    with engine.begin() as conn:
        if replace:
            cdm.drop_tables(conn, schema)
        elif cdm.schema_has_rows(conn, schema):
            raise TargetRefused(f"schema {schema} already holds an OMOP export: use replace to overwrite it")
        if not sa.inspect(conn).has_table("person", schema=schema):
            cdm.create_schema(conn, schema, primary_keys=primary_keys)
        return cdm.insert(conn, schema, tables)


def check_database(engine: sa.Engine, schema: str) -> pl.DataFrame:
    with engine.connect() as conn:
        return quality.run_checks(conn, schema)


def export_omop(wh, target: str | Path, *, dates: str = "shifted", key: bytes | None = None,
                schema: str = DEFAULT_SCHEMA, replace: bool = False) -> OmopExport:
    """Write the warehouse ``wh`` as OMOP CDM v5.4 into a folder or a database (module docstring)."""
    tables, built = build_tables(wh, dates=dates, key=key)
    unmapped, excluded = built.unmapped(), built.excluded
    target_text = str(target)
    if "://" in target_text:
        engine = sa.create_engine(target_text)
        try:
            rows = write_database(engine, schema, tables, replace=replace)
            checked = check_database(engine, schema)
        finally:
            engine.dispose()
        shown = sa.engine.make_url(target_text).render_as_string(hide_password=True)
        return OmopExport(shown, dates, rows, checked, unmapped, excluded)

    folder = private_dir(Path(target))
    files = write_csv(tables, folder / "csv")
    database = folder / DUCKDB_FILE
    aside = folder / f".{DUCKDB_FILE}.new"
    aside.unlink(missing_ok=True)
    engine = sa.create_engine(f"duckdb:///{aside}")
    try:
        rows = write_database(engine, schema, tables)
        checked = check_database(engine, schema)
    finally:
        engine.dispose()
    os.replace(aside, database)
    files["duckdb"] = database
    files["unmapped"] = folder / "unmapped.csv"
    unmapped.write_csv(files["unmapped"])
    files["quality"] = folder / "quality.csv"
    checked.write_csv(files["quality"])
    files["excluded"] = folder / "excluded.csv"
    excluded.write_csv(files["excluded"])
    make_private(folder)
    return OmopExport(str(folder), dates, rows, checked, unmapped, excluded, files)


def write_csv(tables: dict[str, pl.DataFrame], folder: Path) -> dict[str, Path]:
    """One CSV per table, columns in DDL order (what OHDSI's loaders and ``COPY`` expect)."""
    private_dir(folder)
    out = {}
    for name, frame in tables.items():
        out[name] = folder / f"{name}.csv"
        frame.write_csv(out[name], date_format="%Y-%m-%d")
    return out
