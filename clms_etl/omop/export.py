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
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from clms_etl.files import make_private, private_dir, remove_left_folders
from clms_etl.omop import build as omop_build
from clms_etl.omop import cdm, mapping, quality

DEFAULT_SCHEMA = "omop"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")  # it is written into the DDL: no quoting games
DUCKDB_FILE = "omop_cdm.duckdb"
SOURCE_TABLES = (*omop_build.CLINICAL_TABLES, *omop_build.MOLECULAR_TABLES)
PATIENT_TABLES = (*omop_build.CLINICAL_TABLES, "molecular_sample")  # the others are the samples' (sample_id)
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


BLOCK_PATIENTS = 50_000  # patients built and written at a time: memory follows a block, not the registry


def _block_source(wh, low: str | None, high: str | None) -> dict[str, pl.DataFrame]:
    """The source tables' rows of the patients in ``[low, high)``; the first block also takes the rows
    of no patient (a sample the laboratory could not link), which the build lists as excluded."""
    clause = wh.range_clause("patient_id", low, high)
    if clause and low is None:
        clause = f"patient_id IS NULL OR ({clause})"
    params = {"low": low, "high": high}
    out = {name: wh.table(name, where=clause, params=params) for name in SOURCE_TABLES if name in PATIENT_TABLES}
    by_sample = f"sample_id IN (SELECT sample_id FROM molecular_sample WHERE {clause})" if clause else ""
    out.update({name: wh.table(name, where=by_sample, params=params) for name in SOURCE_TABLES if name not in out})
    return out


@dataclass
class OmopSources:
    """The warehouse rows an export is built from, read once, block by block, into Arrow IPC files in
    ``folder`` (:func:`read_sources`). Building the CDM from them (most of an export's time) needs the
    warehouse no longer: on a DuckDB file, whose readers keep its writers out, a writer waits for the
    reading only."""

    folder: Path
    blocks: list[dict[str, Path]]
    deliveries: pl.DataFrame

    def __iter__(self) -> Iterator[dict[str, pl.DataFrame]]:
        for files in self.blocks:
            yield {name: pl.read_ipc(path) for name, path in files.items()}

    def current_deliveries(self) -> pl.DataFrame:
        return self.deliveries


SOURCES_PREFIX = ".sources-"  # the temporary folders of :func:`sources_folder`


@contextmanager
def sources_folder(target: str | Path) -> Iterator[Path]:
    """A private temporary folder inside the export's folder ``target`` for :func:`read_sources`, removed on
    leaving (pseudonymised rows: beside the export they feed, never in a shared temporary directory). The
    folders an export killed mid-way left there are removed first, as its half-written database is."""
    target = private_dir(Path(target))
    remove_left_folders(target, f"{SOURCES_PREFIX}*")
    with tempfile.TemporaryDirectory(prefix=SOURCES_PREFIX, dir=target) as folder:
        yield Path(folder)


def read_sources(wh, folder: str | Path, block_patients: int = BLOCK_PATIENTS) -> OmopSources:
    """``wh``'s rows for :func:`export_omop`, written into ``folder`` (created private; the caller removes
    it) as the blocks of ``block_patients`` patients the export builds (the rows :func:`_block_source`
    reads for each block, in the same order).

    Each table is read once, whole, and cut into the blocks here (a table holds at most a few rows per
    patient): a query per block and table scanned every table once per block, 12 s of the DuckDB night
    at 1,000,000 patients while a writer waited."""
    folder = private_dir(Path(folder))
    ranges = wh.patient_blocks(block_patients)
    highs = pl.Series([high for _, high in ranges[:-1]], dtype=pl.String)  # block i: [high of i-1, high of i)
    blocks: list[dict[str, Path]] = [{} for _ in ranges]
    sample_block = None
    for name in SOURCE_TABLES:
        frame = wh.table(name)
        if name in PATIENT_TABLES:  # the rows of no patient go with the first block, as _block_source reads them
            block = highs.search_sorted(frame["patient_id"].fill_null(""), side="right")
            if name == "molecular_sample":
                sample_block = frame.select("sample_id", block=block)
        else:  # a sample's rows go where the sample is; a row of no known sample, nowhere (as the IN reads it),
            block = frame.select("sample_id").join(sample_block, on="sample_id", how="left",
                                                   maintain_order="left")["block"]
            if len(ranges) == 1:  # unless there is one block: it reads the table whole
                block = block.fill_null(0)
        parts = frame.with_columns(_block=block).partition_by("_block", maintain_order=True, as_dict=True)
        for i, files in enumerate(blocks):
            files[name] = folder / f"{i:05d}-{name}.arrow"
            part = parts.get((i,), frame.clear())
            part.drop("_block", strict=False).write_ipc(files[name], compression="lz4")
    return OmopSources(folder, blocks, wh.current_deliveries())


def _source_blocks(source, block_patients: int) -> Iterator[dict[str, pl.DataFrame]]:
    if isinstance(source, OmopSources):
        return iter(source)
    return (_block_source(source, low, high) for low, high in source.patient_blocks(block_patients))


@dataclass
class CdmBlocks:
    """The CDM tables of ``source`` (a warehouse, or its :class:`OmopSources`), one block of
    ``block_patients`` patients at a time (then ``cdm_source`` and ``metadata``); once iterated, what did
    not map and what was excluded, over every block."""

    source: object
    dates: str
    key: bytes | None
    block_patients: int
    unmapped_parts: list[pl.DataFrame] = field(default_factory=list)
    excluded_parts: list[pl.DataFrame] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict[str, pl.DataFrame]]:
        from clms_etl.version import code_version

        first_ids: dict[str, int] = {}
        self.unmapped_parts, self.excluded_parts = [], []  # iterated again: counted again, not twice
        for block in _source_blocks(self.source, self.block_patients):
            built = omop_build.build(block, dates=self.dates, key=self.key, first_ids=first_ids)
            first_ids = built.next_ids(first_ids)
            self.unmapped_parts.append(built.unmapped())
            self.excluded_parts.append(built.excluded)
            yield built.tables
        deliveries = self.source.current_deliveries()
        latest = max(deliveries["delivery_date"]) if deliveries.height else None
        version, today = code_version(), dt.date.today()
        settings = {"dates": self.dates, "mapping_version": mapping.MAPPING_VERSION,
                    "mapping_sha256": mapping.mapping_sha256(), "ddl": f"OHDSI/CommonDataModel {DDL_COMMIT} inst/ddl/5.4",
                    "etl": f"clms-etl {version}"}
        yield {"cdm_source": cdm.conform("cdm_source", omop_build.cdm_source(today, latest, version)),
               "metadata": cdm.conform("metadata", omop_build.metadata(settings, today))}

    @property
    def unmapped(self) -> pl.DataFrame:
        """Per table, concept field and source value, the rows written with concept 0, over every block
        (there is always one, if empty)."""
        keys = ["table", "concept_field", "source_value"]
        return pl.concat(self.unmapped_parts).group_by(keys).agg(pl.col("rows").sum()).sort(keys)

    @property
    def excluded(self) -> pl.DataFrame:
        return pl.concat(self.excluded_parts)


def build_tables(wh, *, dates: str, key: bytes | None,
                 block_patients: int = BLOCK_PATIENTS) -> tuple[dict[str, pl.DataFrame], CdmBlocks]:
    """The whole CDM in memory, its blocks concatenated (a small registry, a test), and the blocks."""
    blocks, parts = CdmBlocks(wh, dates, key, block_patients), {}
    for block in blocks:
        for name, frame in block.items():
            parts.setdefault(name, []).append(frame)
    return {name: pl.concat(frames) for name, frames in parts.items()}, blocks


def write_database(engine: sa.Engine, schema: str,
                   blocks: dict[str, pl.DataFrame] | Iterable[dict[str, pl.DataFrame]], *,
                   replace: bool = False, primary_keys: bool = True, atomic: bool = True,
                   each_block: Callable[[dict[str, pl.DataFrame]], None] | None = None) -> dict[str, int]:
    """The tables (one dict of them, or blocks of them) into ``schema`` (official DDL when absent);
    ``each_block`` is called with each block once it is written. ``atomic``: in one transaction (a
    database target: all or nothing); otherwise one per block, for a file written aside and moved in
    place only once complete — DuckDB holds an open transaction's rows in memory, so one transaction
    would hold the whole registry's CDM."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise TargetRefused(f"schema name {schema!r}: lower-case letters, digits and _ only")
    blocks = [blocks] if isinstance(blocks, dict) else blocks
    rows: dict[str, int] = {}

    def insert(conn: sa.Connection, block: dict[str, pl.DataFrame]) -> None:
        for name, count in cdm.insert(conn, schema, block).items():
            rows[name] = rows.get(name, 0) + count
        if each_block is not None:
            each_block(block)

    with engine.begin() as conn:
        if replace:
            cdm.drop_tables(conn, schema)
        elif cdm.schema_has_rows(conn, schema):
            raise TargetRefused(f"schema {schema} already holds an OMOP export: use replace to overwrite it")
        # a schema created here gets its keys once its rows are in (one index build, not one per block)
        created = not sa.inspect(conn).has_table("person", schema=schema)
        if created:
            cdm.create_schema(conn, schema, primary_keys=False)
        if atomic:
            for block in blocks:
                insert(conn, block)
            if created and primary_keys:
                cdm.add_primary_keys(conn, schema)
    if not atomic:
        for block in blocks:
            with engine.begin() as conn:
                insert(conn, block)
        if created and primary_keys:
            with engine.begin() as conn:
                cdm.add_primary_keys(conn, schema)
    return rows


def check_database(engine: sa.Engine, schema: str) -> pl.DataFrame:
    with engine.connect() as conn:
        return quality.run_checks(conn, schema)


def export_omop(wh, target: str | Path, *, dates: str = "shifted", key: bytes | None = None,
                schema: str = DEFAULT_SCHEMA, replace: bool = False,
                block_patients: int = BLOCK_PATIENTS) -> OmopExport:
    """Write the warehouse ``wh`` (or its rows read by :func:`read_sources`, then in their blocks) as OMOP
    CDM v5.4 into a folder or a database (module docstring), ``block_patients`` patients built and written
    at a time."""
    blocks = CdmBlocks(wh, dates, key, block_patients)
    target_text = str(target)
    if "://" in target_text:
        engine = sa.create_engine(target_text)
        try:
            rows = write_database(engine, schema, blocks, replace=replace)
            checked = check_database(engine, schema)
        finally:
            engine.dispose()
        shown = sa.engine.make_url(target_text).render_as_string(hide_password=True)
        return OmopExport(shown, dates, rows, checked, blocks.unmapped, blocks.excluded)

    folder = private_dir(Path(target))
    csv = CsvFiles(private_dir(folder / "csv"))
    database = folder / DUCKDB_FILE
    aside = folder / f".{DUCKDB_FILE}.new"
    aside.unlink(missing_ok=True)
    engine = sa.create_engine(f"duckdb:///{aside}")
    try:
        rows = write_database(engine, schema, blocks, atomic=False, each_block=csv.append)
        checked = check_database(engine, schema)
    finally:
        engine.dispose()
    os.replace(aside, database)
    files = {**csv.files, "duckdb": database, "unmapped": folder / "unmapped.csv", "quality": folder / "quality.csv",
             "excluded": folder / "excluded.csv"}
    unmapped, excluded = blocks.unmapped, blocks.excluded
    unmapped.write_csv(files["unmapped"])
    checked.write_csv(files["quality"])
    excluded.write_csv(files["excluded"])
    make_private(folder)
    return OmopExport(str(folder), dates, rows, checked, unmapped, excluded, files)


@dataclass
class CsvFiles:
    """One CSV per table, columns in DDL order (what OHDSI's loaders and ``COPY`` expect), written
    block after block: the header with a table's first block, rows appended after."""

    folder: Path
    files: dict[str, Path] = field(default_factory=dict)

    def append(self, tables: dict[str, pl.DataFrame]) -> None:
        for name, frame in tables.items():
            first = name not in self.files
            path = self.files.setdefault(name, self.folder / f"{name}.csv")
            with path.open("wb" if first else "ab") as out:
                frame.write_csv(out, date_format="%Y-%m-%d", include_header=first)
