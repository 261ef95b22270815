"""Loading deliveries into the warehouse: atomic, idempotent, refusing stale data, in bulk.

:class:`Warehouse` wraps one SQLAlchemy URL — ``duckdb:///path/warehouse.duckdb`` (default,
embedded) or ``postgresql+psycopg://...`` (production) — and loads the validated delivery of one
source (a centre, or ``molecular`` for the laboratory) with :meth:`Warehouse.load_delivery`:

* **Idempotent.** The delivery's content SHA-256 (over its files' relative names and per-file
  SHA-256) is compared with the source's current delivery: the same content loaded again
  changes nothing (status ``unchanged``), unless ``force=True`` (e.g. after a reader fix).
* **Never backwards.** A delivery dated before the source's current one raises
  :class:`DeliveryRefused`; the warehouse keeps the newer data. (Same date, other content: a
  corrected re-delivery, loaded.)
* **Never a silent wipe.** With ``max_removed_share``, a delivery that would remove more than that
  share of the source's patients now in the warehouse (a truncated export) raises
  :class:`DeliveryHeld`, decided inside the load's transaction; every load reports its
  :class:`Shrinkage`.
* **One transaction.** Replacing every row of the source's previous deliveries (all data
  tables and ``data_query``) by the new rows, the ``delivery`` / ``delivery_file`` /
  ``delivery_count`` audit rows and the integrity checks all run in a single transaction; any
  failure (a check constraint, a foreign key, an orphan, a crash) rolls everything back and
  the previous data stays untouched. The replacement upserts by primary key and deletes only
  the rows that did not come back (same end state as delete-then-insert, much cheaper on both
  backends: see ``replace_rows`` and ``bench/README.md``).
* **Bulk.** DuckDB: the polars frame is handed over as Arrow and inserted with one
  ``INSERT [OR REPLACE] ... SELECT`` per table. PostgreSQL: ``COPY ... FROM STDIN (FORMAT csv)``
  through psycopg 3, fed by polars' CSV writer in chunks (into the table, or into a temporary
  staging table followed by one ``INSERT ... ON CONFLICT DO UPDATE``). No row-by-row inserts.
* **Integrity.** Children of the delivery must point at parents *of the same delivery*
  (a centre cannot attach rows to another centre's patient): checked inside the transaction on
  both backends — this is what enforces referential integrity on DuckDB, where the schema has
  no foreign keys (see :mod:`clms_etl.warehouse.schema`).

* **One key.** The warehouse keeps the fingerprint of the pseudonym key it was built with
  (``warehouse_key``, :func:`clms_etl.keys.fingerprint`); a delivery pseudonymised with another
  key is refused before anything is written (:class:`KeyMismatch`). Changing the key on purpose
  is :meth:`Warehouse.rekey` (``clms-etl warehouse rekey``).
* **Audited.** Every load that changes something, every re-key and nightly refresh appends a row
  to ``audit_log`` (who, run, key, code version, when) and its deliveries to ``audit_delivery``.

After the commit the Great Expectations suites run against the warehouse
(:mod:`clms_etl.warehouse.expectations`) unless ``expectations=False``; their outcome is in the
:class:`LoadReport` (an audit: the load itself is already committed).
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import io
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from clms_etl import keys, model
from clms_etl.data_queries import QUERY_SCHEMA
from clms_etl.files import make_private, private_dir
from clms_etl.warehouse import analytics, file_lock, genes, schema, shared_copy

COPY_CHUNK_ROWS = 250_000
_STAGING = "_clms_staging"
# fingerprint -> SHA-256 of the key that matched it: true for the life of the process (a fingerprint
# names one key), whichever Warehouse object checked it
_VERIFIED_KEYS: dict[str, bytes] = {}


class DeliveryRefused(Exception):
    """The delivery is older than the one already loaded for that source: nothing was changed."""


class KeyMismatch(DeliveryRefused):
    """The delivery was pseudonymised with another key than the warehouse's: nothing was changed."""


@dataclass(frozen=True)
class Shrinkage:
    """What a delivery removes of its source's rows now in the warehouse, counted on the first
    table of the delivery (``patient`` when it has one) by primary key."""

    table: str
    rows_in_warehouse: int
    rows_delivered: int
    rows_removed: int

    @property
    def removed_share(self) -> float:
        return self.rows_removed / self.rows_in_warehouse if self.rows_in_warehouse else 0.0


class DeliveryHeld(DeliveryRefused):
    """The delivery would remove more of the source's rows than ``max_removed_share``: nothing was changed."""

    def __init__(self, message: str, shrinkage: Shrinkage):
        super().__init__(message)
        self.shrinkage = shrinkage


class SchemaMismatch(RuntimeError):
    """The database's tables do not match the declared schema (migration missing)."""


@dataclass
class LoadReport:
    centre: str
    delivery_date: dt.date
    delivery_id: str
    content_sha256: str
    status: str  # "loaded" | "unchanged"
    rows_loaded: dict[str, int] = field(default_factory=dict)
    rows_replaced: dict[str, int] = field(default_factory=dict)  # rows of the previous delivery deleted
    seconds: float = 0.0
    message: str = ""
    expectations: Any = None  # clms_etl.warehouse.expectations.ExpectationsReport, when run
    shrinkage: Shrinkage | None = None

    @property
    def changed(self) -> bool:
        return self.status == "loaded"

    def summary(self) -> str:
        lines = [self.message, f"delivery {self.delivery_id} (SHA-256 {self.content_sha256}), {self.seconds:.1f} s"]
        if self.rows_loaded:
            lines.append("rows loaded: " + ", ".join(f"{t} {n}" for t, n in self.rows_loaded.items()))
        if self.rows_replaced:
            lines.append("rows replaced: " + ", ".join(f"{t} {n}" for t, n in self.rows_replaced.items()))
        if self.expectations is not None:
            lines.append(self.expectations.summary())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class DeliveryFile:
    name: str  # relative to the delivery folder
    sha256: str
    size_bytes: int


def normalise_url(url: str) -> str:
    """``postgresql://`` / ``postgres://`` -> ``postgresql+psycopg://`` (psycopg 3 is the driver)."""
    url = str(url)
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(files: Sequence[Path]) -> list[DeliveryFile]:
    """Relative name, SHA-256 and size of each file, sorted by name."""
    paths = [Path(f).resolve() for f in files]
    if not paths:
        raise ValueError("a delivery needs at least one file (its content SHA-256 identifies it)")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    out = [DeliveryFile(p.relative_to(root).as_posix(), file_sha256(p), p.stat().st_size) for p in paths]
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise ValueError(f"the same file is listed twice in the delivery: {sorted(names)}")
    return sorted(out, key=lambda f: f.name)


def content_sha256(described: Iterable[DeliveryFile]) -> str:
    digest = hashlib.sha256()
    for f in sorted(described, key=lambda f: f.name):
        digest.update(f"{f.name}\0{f.sha256}\n".encode())  # as clms_etl.deliveries.Delivery.sha256
    return digest.hexdigest()


class Warehouse:
    """The warehouse at one SQLAlchemy URL (DuckDB file or PostgreSQL database)."""

    def __init__(self, url: str, *, data_docs_dir: Path | str | None = None, require_key: bool = True,
                 engine_kwargs: dict | None = None, read_only: bool = False):
        """``read_only``: the caller only reads. A DuckDB file is then opened read-only, which any
        number of processes may do at once (the night's readers side by side); a read-write opening
        waits for them, and they for it (:mod:`clms_etl.warehouse.file_lock`). On PostgreSQL it
        changes nothing (concurrent sessions are the server's business)."""
        self.url = normalise_url(url)
        self.read_only = read_only
        self.backend = keys.backend_of(self.url)
        if self.backend not in ("duckdb", "postgresql"):
            raise ValueError(f"unsupported warehouse backend {self.backend!r}: use duckdb:/// or postgresql+psycopg://")
        if self.backend == "postgresql" and require_key:
            keys.pseudonym_key(self.url)  # production: refuse to run without a real key
        sa_url = sa.engine.make_url(self.url)
        self.path: Path | None = None
        if self.backend == "duckdb" and sa_url.database and sa_url.database != ":memory:":
            self.path = Path(sa_url.database)
            private_dir(self.path.parent)
        if data_docs_dir is not None:
            self.data_docs_dir: Path | None = Path(data_docs_dir)
        elif self.path is not None:
            self.data_docs_dir = self.path.parent / "data_docs"
        else:
            from clms_etl.config import Settings

            self.data_docs_dir = Settings.from_env().outputs / "data_docs"
        self.engine = sa.create_engine(self.url, **(engine_kwargs or {}))
        if self.path is not None:  # the file lock is held while DuckDB holds the file: from the first
            sa.event.listen(self.engine, "do_connect", self._locked_connect)  # connection to the last closed
            sa.event.listen(self.engine, "close", self._unlocked_close)
        self._schema_ready = False
        self._held = threading.local()  # the connection :meth:`block_copy` holds for this thread's reads

    def _locked_connect(self, dialect, record, cargs, cparams):
        # read-only unless this process has the file open read-write already (it reads through that)
        read_only = file_lock.acquire(self.path, read_only=self.read_only)
        try:
            return dialect.connect(*cargs, **{**cparams, "read_only": read_only})
        except BaseException:
            file_lock.release(self.path)
            raise

    def _unlocked_close(self, dbapi_connection, record):
        # The pool's "close" event comes before the close: DuckDB's checkpoint on closing a written file
        # can take seconds, and a reader let in before it ends finds the file still locked.
        try:
            dbapi_connection.close()
        finally:
            file_lock.release(self.path)

    @property
    def opened_read_only(self) -> bool:
        """Whether this process has the DuckDB file open read-only: how another engine's connections to it
        in this process must open it (DuckDB takes one mode per file and process); else ``read_only``."""
        held = file_lock.opened_read_only(self.path) if self.path is not None else None
        return self.read_only if held is None else held

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()
        if self.path is not None and not self.read_only:  # DuckDB creates its file and WAL with the process umask
            make_private(self.path, self.path.with_name(f"{self.path.name}.wal"))

    def __repr__(self) -> str:
        return f"Warehouse({self.engine.url.render_as_string(hide_password=True)!r})"

    def create(self, *, replace_views: bool | None = None) -> None:
        """Create the base tables that are missing and the analytics views, then check the schema.

        The embedded DuckDB warehouse is built this way (its views are recreated whenever their SQL
        or comments differ from the code's, so the demo follows the code), and its file made readable by its owner only (DuckDB has no
        roles: access is the file's). A production PostgreSQL database is built by ``alembic
        upgrade head`` (same result, checked by the tests): there ``create`` issues no DDL once
        the schema is in place — views are left to the migrations unless ``replace_views`` —
        so that the loader role, which owns nothing, can call it.
        """
        replace = self.backend == "duckdb" if replace_views is None else replace_views
        with self.engine.begin() as conn:
            schema.metadata.create_all(conn)
            # IF NOT EXISTS still needs the CREATE right on PostgreSQL, which the loader lacks
            if not conn.execute(sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                                {"s": schema.ANALYTICS_SCHEMA}).first():
                conn.execute(sa.text(f"CREATE SCHEMA {schema.ANALYTICS_SCHEMA}"))
            schema.results_metadata.create_all(conn)
            present = {r[0] for r in conn.execute(sa.text(
                "SELECT table_name FROM information_schema.views WHERE table_schema = :s"),
                {"s": schema.ANALYTICS_SCHEMA})}
            if not {v.name for v in analytics.VIEWS} <= present or (
                    replace and not (self.backend == "duckdb" and analytics.duckdb_views_current(conn))):
                analytics.create_analytics(conn)
        self.check_schema()
        self._schema_ready = True
        if self.path is not None and self.path.exists():
            self.path.chmod(0o600)

    def ensure_schema(self) -> None:
        """Before a first load: build the embedded DuckDB warehouse if needed; on PostgreSQL only
        check it (its schema is the migrations' business: :class:`SchemaMismatch` says so)."""
        if self._schema_ready:
            return
        if self.backend == "duckdb" and not self.read_only:
            self.create()
        else:
            self.check_schema()
            self._schema_ready = True

    def check_schema(self) -> None:
        """Raise :class:`SchemaMismatch` when a table's columns differ from the declared ones."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT CASE WHEN table_schema = current_schema() THEN table_name "
                "ELSE table_schema || '.' || table_name END, column_name FROM information_schema.columns "
                "WHERE table_schema IN (current_schema(), :analytics)"
            ), {"analytics": schema.ANALYTICS_SCHEMA}).all()
        actual: dict[str, set[str]] = {}
        for table_name, column_name in rows:
            actual.setdefault(table_name, set()).add(column_name)
        problems = []
        declared_tables = {**schema.metadata.tables, **schema.results_metadata.tables}
        for name, table in declared_tables.items():
            declared = {c.name for c in table.columns}
            found = actual.get(name)
            if found is None:
                problems.append(f"table {name} is missing")
            elif found != declared:
                missing, extra = sorted(declared - found), sorted(found - declared)
                problems.append(f"{name}: missing columns {missing}, unexpected columns {extra}")
        # A result table the warehouse holds but was not told of would be skipped by a re-key.
        known = {*declared_tables, *(f"{schema.ANALYTICS_SCHEMA}.{v.name}" for v in analytics.VIEWS)}
        undeclared = sorted(n for n in actual if n.startswith(f"{schema.ANALYTICS_SCHEMA}.") and n not in known)
        if undeclared:
            raise SchemaMismatch(f"result tables {undeclared} are not declared: import clms_etl.analyses "
                                 "before using the warehouse.")
        if problems:
            remedy = ("run `alembic upgrade head`" if self.backend == "postgresql"
                      else f"rebuild the embedded warehouse (delete {self.path} and reload the deliveries)")
            raise SchemaMismatch("warehouse schema out of date: " + "; ".join(problems) + f" — {remedy}.")

    # -- reading ------------------------------------------------------------------------------

    def read_sql(self, sql: str, params: dict | None = None) -> pl.DataFrame:
        """Run a SELECT and return a polars frame.

        On DuckDB the rows come as Arrow columns (the analyses read whole views: building Python
        tuples cost 10x the query), typed as the row-by-row path below types them
        (:func:`_as_from_rows`); a column type that path would type differently falls back to it.
        On PostgreSQL they come as the CSV of ``COPY (query) TO STDOUT``, parsed by polars and typed
        the same way (:func:`_copy_read`).
        """
        held = getattr(self._held, "connection", None)
        if held is not None:  # within temporary_copy: the views copied are read from their copies
            sql = analytics.reading_copies(sql, self._held.copies)
        with nullcontext(held) if held is not None else self.engine.connect() as conn:
            if self.backend == "postgresql":
                copied = _copy_read(conn, sql, params or {})
                if copied is not None:
                    return copied
            result = conn.execute(sa.text(sql), params or {})
            columns = list(result.keys())
            description = result.cursor.description if result.cursor is not None else None
            if self.backend == "duckdb" and description and all(str(d[1]) in _ARROW_AS_ROWS for d in description):
                with warnings.catch_warnings():  # "an extra copy": still far cheaper than Python rows
                    warnings.simplefilter("ignore", UserWarning)
                    table = result.cursor.to_arrow_table()
                if table.num_rows:
                    return _as_from_rows(table, columns, description)
                rows = []
            else:
                rows = result.all()
        # Typed from the driver where the values say nothing (no row, or a column no centre fills),
        # so that an empty warehouse or a sparse item joins, filters and rounds like a full one.
        types = [_polars_type(d[1]) for d in description] if description else [pl.Null] * len(columns)
        if not rows:
            return pl.DataFrame(schema=dict(zip(columns, types)))
        frame = pl.DataFrame([tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None)
        return frame.with_columns(pl.col(c).cast(t) for c, t in zip(columns, types)
                                  if frame.schema[c] == pl.Null and t != pl.Null)

    def query_status(self, centre: str) -> pl.DataFrame:
        """``centre``'s rows of ``data_query_status`` (:data:`clms_etl.query_list.STATUS_SCHEMA`)."""
        from clms_etl.query_list import STATUS_SCHEMA

        found = self.read_sql(f"SELECT {', '.join(STATUS_SCHEMA)} FROM data_query_status WHERE centre = :centre",
                           {"centre": centre})
        return found.cast(STATUS_SCHEMA) if found.height else pl.DataFrame(schema=STATUS_SCHEMA)

    def table(self, name: str, *, where: str = "", params: dict | None = None) -> pl.DataFrame:
        """A base table in its declared column order; ``where``: an SQL condition on it (with ``params``)."""
        cols = ", ".join(schema.column_names(name)) if name in schema.metadata.tables else "*"
        return self.read_sql(f"SELECT {cols} FROM {name}" + (f" WHERE {where}" if where else ""), params)

    def bytewise(self, column: str) -> str:
        """``column`` compared as bytes, as polars sorts strings (PostgreSQL's default collation may not)."""
        return f'{column} COLLATE "C"' if self.backend == "postgresql" else column

    def range_clause(self, column: str, low: str | None, high: str | None) -> str:
        """SQL condition ``:low <= column < :high``, compared byte-wise (:meth:`bytewise`); a bound that
        is None is left open, and no bound gives ``""``: a block of the ranges a block reader cuts."""
        compared = self.bytewise(column)
        return " AND ".join(c for c, bound in ((f"{compared} >= :low", low), (f"{compared} < :high", high))
                            if bound is not None)

    def patient_blocks(self, size: int) -> list[tuple[str | None, str | None]]:
        """``[low, high)`` pseudonym ranges of at most ``size`` patients each, in pseudonym order
        (None: open), for :meth:`range_clause`. The ranges cover every pseudonym, so a row whose
        patient is not in ``patient`` still falls in one block."""
        return pseudonym_ranges(
            self.read_sql(f"SELECT patient_id FROM patient ORDER BY {self.bytewise('patient_id')}")["patient_id"], size)

    @contextmanager
    def block_copy(self, relation: str, column: str | Sequence[str]) -> Iterator[str]:
        """The relation to read ``relation``'s blocks of ranges on ``column`` (:meth:`range_clause`; or on
        several columns, lexicographic) from, within the ``with``: on PostgreSQL, a temporary copy of it
        indexed on them, text byte-wise (:meth:`temporary_copy`); elsewhere, or without the TEMPORARY right
        (the analyst role), ``relation`` itself.

        PostgreSQL carries a range on a view's ``patient_id`` into none of the view's aggregates (only an
        equality crosses its joins): each block of ``analytics.patient_summary`` aggregated every event
        and operation of the registry again. The copy computes the view once; a block is an index range.
        A result table without an index on its blocks' columns (``ph_residual``, :mod:`clms_etl.results`)
        was read whole for each block: 22 blocks, 19 s of the server at 1,000,000 patients.
        """
        view = relation.removeprefix(f"{schema.ANALYTICS_SCHEMA}.")
        view = view if view in analytics.VIEWS_BY_NAME else None
        with self.temporary_copy(f"block_copy_{relation.replace('.', '_')}",
                                 None if view else f"SELECT * FROM {relation}", view=view, index_on=column) as copy:
            yield copy or relation

    @contextmanager
    def views_copied(self, *views: str) -> Iterator[None]:
        """Within the ``with``, this thread's :meth:`read_sql` calls read each ``analytics`` view of ``views``
        from one copy of it (:meth:`temporary_copy`), made on entry: a step that reads a per-patient view
        several times (the report: cohort counts, quality per centre, its blocks) computes it once.
        Nothing changes on DuckDB or without the TEMPORARY right."""
        with ExitStack() as stack:
            for view in views:
                stack.enter_context(self.temporary_copy(f"copy_{view}", view=view))
            yield

    @contextmanager
    def temporary_copy(self, name: str, sql: str | None = None, *, view: str | None = None,
                       index_on: str | Sequence[str] | None = None) -> Iterator[str | None]:
        """On PostgreSQL, the rows of ``sql``, or of the ``analytics`` view ``view``, in the temporary table
        ``pg_temp.<name>`` of one connection, which this thread's :meth:`read_sql` calls read through within
        the ``with`` (dropped on exit): what several queries read is computed once. Within it, wherever a
        query names a view copied (``analytics.<view>``: in :meth:`read_sql`, in a copy made within), it
        reads the copy, and a view built on one (``survival`` on ``patient_summary``) is computed from it
        (:func:`~clms_etl.warehouse.analytics.view_select`). ``index_on``: a column, or columns, indexed
        (text byte-wise, :meth:`bytewise`).
        None on DuckDB (it computes a view as fast as it reads a copy) or without the TEMPORARY right
        (the analyst role): read the query or the view itself.
        """
        if self.backend != "postgresql":
            yield None
            return
        outer = getattr(self._held, "connection", None)  # another copy's: it must see both
        outer_copies = getattr(self._held, "copies", {}) if outer is not None else {}
        with nullcontext(outer) if outer is not None else self.engine.connect() as conn:
            if not conn.execute(sa.text(TEMPORARY_RIGHT)).scalar():
                yield None
                return
            # a per-patient view is read from its shared copy when the warehouse has not changed since it was made
            read = analytics.views_read(sql if view is None else f"{schema.ANALYTICS_SCHEMA}.{view}")
            copies = {**shared_copy.shared_copies(self.engine, read - set(outer_copies)), **outer_copies}
            source = analytics.reading_copies(sql, copies) if view is None else analytics.view_select(view, copies)
            conn.execute(sa.text(f"CREATE TEMPORARY TABLE {name} AS {source}"))
            copy = f"pg_temp.{name}"
            if index_on:
                columns = [index_on] if isinstance(index_on, str) else list(index_on)
                text = set(conn.execute(sa.text(  # (only text has a collation to compare byte-wise)
                    "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:copy AS regclass) "
                    "AND atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype)"), {"copy": copy}).scalars())
                indexed = ", ".join(self.bytewise(c) if c in text else c for c in columns)
                conn.execute(sa.text(f"CREATE INDEX ON {copy} ({indexed})"))
                # the blocks' conditions: their columns' statistics only
                conn.execute(sa.text(f"ANALYZE {copy} ({', '.join(columns)})"))
            self._held.connection, self._held.copies = conn, {**outer_copies, **({view: copy} if view else {})}
            try:
                yield copy
                if outer is not None:  # the outer copy's transaction goes on
                    conn.execute(sa.text(f"DROP TABLE {copy}"))
            finally:
                self._held.connection, self._held.copies = outer, outer_copies
                if outer is None:
                    conn.rollback()  # the copies were made in this transaction: they go with it

    def results(self, name: str) -> pl.DataFrame:
        """A result table of the ``analytics`` schema (:mod:`clms_etl.results`), in its declared dtypes."""
        table = schema.result_table(name)
        frame = self.read_sql(f"SELECT {', '.join(c.name for c in table.columns)} FROM {table.fullname}")
        return frame.cast(schema.RESULT_TABLES[name].schema)

    def replace_results(self, frames: Mapping[str, pl.DataFrame], run_id: str | None = None) -> dict[str, int]:
        """Make ``frames`` the whole content of these result tables, in one transaction.

        Frames are conformed to their :class:`~clms_etl.results.ResultTable` first, so a
        frame that does not fit changes nothing; on any failure every table keeps its previous
        rows. Returns the rows written per table.
        """
        self.ensure_schema()
        conformed = {name: schema.RESULT_TABLES[name].conform(frame, run_id) for name, frame in frames.items()}
        with _transaction(self) as tx:
            tx.lock("analytics results")
            for name, frame in conformed.items():
                target = schema.result_table(name).fullname
                tx.execute(f"DELETE FROM {target}", [])
                if not frame.is_empty():
                    tx.insert_frame(target, frame)
            # the deliveries the results were computed from: a report can tell stored results from stale ones
            stored = _current_fingerprint(tx)
            _audit(tx, "results", run_id, None, keys.key_id(stored) if stored else None,
                   RESULTS_DETAIL + ", ".join(conformed), _current_deliveries(tx))
        return {name: frame.height for name, frame in conformed.items()}

    def results_basis(self) -> pl.DataFrame:
        """The latest write of each result table: one row per write still holding a table.

        Columns: ``tables`` (list), ``run_id``, ``computed_at`` (UTC) and ``current``: False when
        the deliveries it was computed from are no longer the warehouse's current ones (a load,
        a rollback or a re-key came after; re-run the analysis).
        """
        self.ensure_schema()
        writes = self.read_sql(
            "SELECT audit_id, run_id, recorded_at, detail FROM audit_log WHERE action = 'results' "
            "ORDER BY recorded_at DESC")
        current = set(_current_deliveries_of(self))
        rows, seen = [], set()
        for audit_id, run_id, recorded_at, detail in writes.iter_rows():
            tables = [t for t in detail.removeprefix(RESULTS_DETAIL).split(", ") if t and t not in seen]
            if not tables:
                continue
            seen.update(tables)
            basis = self.read_sql("SELECT centre, delivery_date, content_sha256 FROM audit_delivery "
                               "WHERE audit_id = :a", {"a": audit_id})
            rows.append({"tables": tables, "run_id": run_id, "computed_at": recorded_at,
                         "current": {(c, _as_date(d), h) for c, d, h in basis.iter_rows()} == current})
        return pl.DataFrame(rows, schema={"tables": pl.List(pl.String), "run_id": pl.String,
                                          "computed_at": writes.schema["recorded_at"], "current": pl.Boolean})

    def current_deliveries(self) -> pl.DataFrame:
        return self.read_sql("SELECT * FROM delivery WHERE is_current ORDER BY centre")

    # -- loading ------------------------------------------------------------------------------

    def load_delivery(self, centre: str, delivery_date: dt.date, files: Sequence[Path], validated,
                      run_id: str | None = None, *, force: bool = False, expectations: bool = True,
                      key: bytes | None = None, run_user: str | None = None,
                      allow_older: bool = False, max_removed_share: float | None = None) -> LoadReport:
        """Replace ``centre``'s rows by this validated delivery, atomically (see the module doc).

        ``validated`` is duck-typed like ``clms_etl.validate.ValidatedDelivery``: ``accepted``
        (table -> canonical frame), ``queries`` (``QUERY_SCHEMA``) and ``accounting`` (table,
        rows_read, rows_accepted, rows_quarantined). ``allow_older``: a rollback to an earlier
        delivery (:mod:`clms_etl.rollback`), the only way back. ``max_removed_share``: refuse
        (:class:`DeliveryHeld`) a delivery removing more than this share of the source's rows now
        in the warehouse; the report's ``shrinkage`` says what it removed either way.

        ``key`` is the pseudonym key the delivery was read with (default: the deployment's, read
        now from the environment); another key than the warehouse's is refused (:class:`KeyMismatch`).
        """
        started = time.perf_counter()
        key = keys.pseudonym_key(self.url) if key is None else key
        self.ensure_schema()
        described = describe_files(files)
        sha = content_sha256(described)
        delivery_id = f"{centre}:{delivery_date.isoformat()}:{sha[:16]}"
        frames = self._frames(validated, delivery_id)
        queries = self._queries(validated, centre, delivery_date, delivery_id)
        counts = self._counts(validated)

        with _transaction(self, explain=lambda: _rows_breaking_constraints(frames)) as tx:
            tx.lock(centre)
            key_id = self._verify_key(tx, key, centre)  # another key: refused before anything else
            current = tx.fetch(
                "SELECT delivery_id, delivery_date, content_sha256, loaded_at FROM delivery "
                "WHERE centre = ? AND is_current", [centre])
            shrinkage = _shrinkage(tx, centre, frames)
            if current:
                cur_id, cur_date, cur_sha, cur_loaded = current[0]
                cur_date = _as_date(cur_date)
                if cur_sha == sha and not force:
                    tx.rollback()
                    return LoadReport(centre, delivery_date, cur_id, sha, "unchanged",
                                      seconds=time.perf_counter() - started, shrinkage=shrinkage,
                                      message=f"{centre}: delivery {delivery_date} already loaded "
                                              f"(same content, SHA-256 {sha[:12]}…, loaded at {cur_loaded}); nothing changed.")
                if delivery_date < cur_date and not allow_older:
                    raise DeliveryRefused(
                        f"{centre}: the delivery of {delivery_date} is older than the one already loaded "
                        f"({cur_date}, loaded at {cur_loaded}); refused — the warehouse keeps the {cur_date} data. "
                        f"To go back to the previous delivery: `clms-etl warehouse rollback {centre}`."
                    )
            if max_removed_share is not None and shrinkage.removed_share > max_removed_share:
                raise DeliveryHeld(f"{centre} {delivery_date}: {shrinkage_text(shrinkage, max_removed_share)}: held; "
                                   "the warehouse keeps the current data.", shrinkage)
            # data rows first: the backend sees the delivery table as it was (a forced reload of the
            # same content reuses its delivery_id, and its audit rows are rewritten below)
            ordered = {name: queries if name == "data_query" else frames.get(name) for name in schema.LOAD_ORDER}
            for name, frame in ordered.items():  # before any upsert, which would not refuse them (see there)
                if frame is not None:
                    _refuse_repeated_keys(name, frame)
            _refuse_orphans(ordered)
            replaced, loaded = tx.replace_rows(centre, delivery_id, ordered)
            self._track_queries(tx, centre, delivery_date, validated)
            # audit rows
            tx.execute("DELETE FROM delivery_file WHERE delivery_id = ?", [delivery_id])
            tx.execute("DELETE FROM delivery_count WHERE delivery_id = ?", [delivery_id])
            tx.execute("DELETE FROM delivery WHERE delivery_id = ?", [delivery_id])
            tx.execute("UPDATE delivery SET is_current = FALSE WHERE centre = ? AND is_current", [centre])
            totals = [int(counts[c].sum()) if counts.height else None
                      for c in ("rows_read", "rows_accepted", "rows_quarantined")]
            tx.execute(
                "INSERT INTO delivery (delivery_id, centre, delivery_date, content_sha256, n_files, rows_read, "
                "rows_accepted, rows_quarantined, run_id, loaded_at, is_current) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, TRUE)",
                [delivery_id, centre, delivery_date, sha, len(described), *totals, run_id,
                 dt.datetime.now(dt.UTC)])
            tx.insert_frame("delivery_file", pl.DataFrame(
                {"delivery_id": [delivery_id] * len(described), "file_name": [f.name for f in described],
                 "sha256": [f.sha256 for f in described], "size_bytes": [f.size_bytes for f in described]},
                schema={"delivery_id": pl.String, "file_name": pl.String, "sha256": pl.String, "size_bytes": pl.Int64}))
            if counts.height:
                tx.insert_frame("delivery_count", counts.with_columns(pl.lit(delivery_id).alias("delivery_id")))
            message = (f"{centre}: delivery {delivery_date} loaded "
                       f"({sum(loaded.values())} rows, replacing {sum(replaced.values())}).")
            _audit(tx, "load", run_id, run_user, key_id, message, [(centre, delivery_date, sha)])

        report = LoadReport(centre, delivery_date, delivery_id, sha, "loaded", loaded, replaced, message=message,
                            shrinkage=shrinkage)
        if expectations:
            from clms_etl.warehouse.expectations import run_expectations, run_name_of

            report.expectations = run_expectations(self, run_name=run_name_of(centre, "delivery", delivery_date))
        report.seconds = time.perf_counter() - started
        return report

    # -- the pseudonym key ----------------------------------------------------------------------

    def key_fingerprint(self) -> str | None:
        """The stored fingerprint of the warehouse's key (None before the first load)."""
        self.ensure_schema()
        rows = self.read_sql("SELECT fingerprint FROM warehouse_key WHERE is_current")
        return rows["fingerprint"][0] if rows.height else None

    def check_key(self, key: bytes, source: str) -> None:
        """Before anything is read or compared against the warehouse: :class:`KeyMismatch` when the
        warehouse was built with another key (the load checks again inside its transaction)."""
        stored = self.key_fingerprint()
        if stored is not None and not self._matches(key, stored):
            raise KeyMismatch(_key_mismatch_message(source, stored))

    def _verify_key(self, tx: _Transaction, key: bytes, source: str) -> str:
        """Inside a load: the key id if ``key`` is the warehouse's (recorded on the very first
        load); :class:`KeyMismatch` otherwise. A re-key waits for the loads under way (shared lock)."""
        stored = _current_fingerprint(tx)
        if stored is None:
            tx.lock(_KEY_LOCK)
            stored = _current_fingerprint(tx)
            if stored is None:
                if tx.fetch("SELECT COUNT(*) FROM delivery", [])[0][0]:
                    raise KeyMismatch(
                        f"{source}: refused, nothing changed: this warehouse holds deliveries but no fingerprint of "
                        f"the pseudonym key they were pseudonymised with (built before fingerprints). Record it "
                        f"with `clms-etl warehouse adopt-key` (with that key in {keys.ENV_KEY} or "
                        f"{keys.ENV_KEY_FILE}), then load again.")
                return _record_key(tx, key)
        else:
            tx.lock(_KEY_LOCK, shared=True)
            stored = _current_fingerprint(tx)  # a re-key may have committed while we waited
        if not self._matches(key, stored):
            raise KeyMismatch(_key_mismatch_message(source, stored))
        return keys.key_id(stored)

    def _matches(self, key: bytes, stored: str) -> bool:
        # scrypt is slow on purpose: remember the keys already verified in this process (an import
        # run's shrinkage guard and its load open two Warehouse objects: one scrypt, not two)
        if stored not in _VERIFIED_KEYS:
            if not keys.matches(key, stored):
                return False
            _VERIFIED_KEYS[stored] = hashlib.sha256(key).digest()
        return hmac.compare_digest(_VERIFIED_KEYS[stored], hashlib.sha256(key).digest())

    def adopt_key(self, key: bytes, run_id: str = "cli", run_user: str | None = None) -> str:
        """Record the fingerprint of ``key`` for a warehouse that has none (built before fingerprints):
        the operator asserts it is the key its pseudonyms were computed with. Returns the key id."""
        self.ensure_schema()
        with _transaction(self) as tx:
            tx.lock(_KEY_LOCK)
            stored = _current_fingerprint(tx)
            if stored is not None:
                raise KeyMismatch(f"this warehouse already has a key fingerprint (key {keys.key_id(stored)}); "
                                  "to change the key, use `clms-etl warehouse rekey`.")
            key_id = _record_key(tx, key)
            _audit(tx, "adopt_key", run_id, run_user, key_id, "key fingerprint recorded for existing deliveries",
                   _current_deliveries(tx))
        return key_id

    def record_refresh(self, run_id: str | None = None, run_user: str | None = None, detail: str = "") -> None:
        """Audit row of a nightly refresh over the deliveries currently loaded."""
        self.ensure_schema()
        with _transaction(self) as tx:
            stored = _current_fingerprint(tx)
            _audit(tx, "refresh", run_id, run_user, keys.key_id(stored) if stored else None,
                   detail or "nightly refresh", _current_deliveries(tx))

    def refresh_statistics(self) -> list[str]:
        """PostgreSQL: the tables the deliveries fill, vacuumed and their planner statistics sampled again
        (``VACUUM (ANALYZE)``) before the checks and analyses read them. Autovacuum does both some time
        after a load, if it is on; until then the planner plans from the statistics of before it (after a
        300,000-patient load: 200 patients with events estimated against 286,839), and the rows just
        copied are not yet marked visible to all, so a key's index cannot answer alone (a suite's
        duplicate-key count on 1,128,093 surgeries: a hash aggregate spilling to disk, 1.7 s, against an
        index-only scan, 0.5 s). The replaced deliveries' dead rows go too. DuckDB: nothing.

        Returns the tables this role may not vacuum (PostgreSQL: their owner, the database's owner or a
        superuser only; from PostgreSQL 17, the ``MAINTAIN`` privilege), left to autovacuum: the loader role of
        :mod:`~clms_etl.warehouse.roles` owns none, and VACUUM would skip them with a warning nobody reads.
        """
        if self.backend != "postgresql":
            return []
        # VACUUM runs outside a transaction
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # (a superuser has every role's rights and every privilege: both tests say yes for it)
            maintain = ("has_table_privilege(c.oid, 'MAINTAIN')" if conn.dialect.server_version_info >= (17,)
                        else "pg_has_role(c.relowner, 'USAGE') OR pg_has_role((SELECT datdba FROM pg_database "
                             "WHERE datname = current_database()), 'USAGE')")
            allowed = dict(conn.execute(sa.text(
                f"SELECT c.relname, {maintain} FROM pg_class c WHERE c.oid = ANY(CAST(:tables AS regclass[]))"),
                {"tables": list(schema.LOAD_ORDER)}).all())
            mine = [t for t in schema.LOAD_ORDER if allowed.get(t)]
            if mine:
                conn.execute(sa.text("VACUUM (ANALYZE) " + ", ".join(mine)))
        return [t for t in schema.LOAD_ORDER if t not in mine]

    def audit_log(self, limit: int | None = None) -> pl.DataFrame:
        """The audit trail, newest first, with the number of deliveries of each action."""
        self.ensure_schema()
        return self.read_sql(
            "SELECT a.recorded_at, a.action, a.run_id, a.key_id, a.code_version, a.os_user, a.run_user, a.detail, "
            "(SELECT COUNT(*) FROM audit_delivery d WHERE d.audit_id = a.audit_id) AS n_deliveries "
            "FROM audit_log a ORDER BY a.recorded_at DESC" + (f" LIMIT {int(limit)}" if limit else ""))

    def rekey(self, mapping: pl.DataFrame, old_key: bytes, new_key: bytes, run_id: str = "cli",
              run_user: str | None = None) -> RekeyReport:
        """Recompute every pseudonym of the warehouse with ``new_key``, in one transaction.

        ``mapping`` has the columns ``centre`` and ``local_id`` (the centres' hospital numbers, used
        here and never stored): each pair's old pseudonym (``old_key``, which must be the
        warehouse's) is replaced by its new one in every pseudonym column of every table (base and
        result tables), and the fingerprint of ``new_key`` becomes the warehouse's. A pseudonym of
        the warehouse missing from the mapping stops the re-key (nothing changed): it would be
        left behind, cut off from its next deliveries.
        """
        from clms_etl.keys import pseudonym

        missing = {"centre", "local_id"} - set(mapping.columns)
        if missing:
            raise ValueError(f"the mapping needs the columns centre and local_id (missing: {sorted(missing)})")
        if hmac.compare_digest(old_key, new_key):
            raise KeyMismatch("the new key is the old key: nothing to re-key.")
        new_key = keys.checked(new_key, self.url, source=f"{keys.ENV_KEY} (the new key)")
        pairs = mapping.select(pl.col("centre").cast(pl.String), pl.col("local_id").cast(pl.String)).drop_nulls().unique()
        ids = pl.DataFrame({
            "old_id": [pseudonym(old_key, c, i) for c, i in pairs.iter_rows()],
            "new_id": [pseudonym(new_key, c, i) for c, i in pairs.iter_rows()],
        }, schema={"old_id": pl.String, "new_id": pl.String}).unique("old_id")
        self.ensure_schema()
        columns = schema.pseudonym_columns()
        with _transaction(self) as tx:
            tx.lock(_KEY_LOCK)
            stored = _current_fingerprint(tx)
            if stored is None or not keys.matches(old_key, stored):
                raise KeyMismatch(f"re-key refused, nothing changed: the old key ({keys.ENV_OLD_KEY} / "
                                  f"{keys.ENV_OLD_KEY_FILE}) is not the warehouse's key"
                                  + (f" (key {keys.key_id(stored)})." if stored else " (the warehouse has none yet)."))
            tx.create_temp(_REKEY, {"old_id": "TEXT", "new_id": "TEXT"})
            if ids.height:
                tx.insert_frame(_REKEY, ids)
            every = " UNION ".join(f"SELECT {c} AS pid FROM {t.fullname}" for t, c in columns)
            unmapped = tx.fetch(f"SELECT COUNT(*) FROM ({every}) p WHERE pid IS NOT NULL "
                                f"AND pid NOT IN (SELECT old_id FROM {_REKEY})", [])[0][0]
            if unmapped:
                raise KeyMismatch(f"re-key refused, nothing changed: {unmapped} pseudonym(s) of the warehouse have "
                                  "no line in the mapping (centre, local_id); ask the centres for the complete list.")
            changed = {}
            keyed = [(t, c) for t, c in columns if c in t.primary_key.columns]
            for t, c in columns:  # parents first: a child's new key must find its new parent
                names = [col.name for col in t.columns]
                if (t, c) in keyed:
                    select = ", ".join("m.new_id" if n == c else f"t.{n}" for n in names)
                    changed[t.fullname] = tx.execute(
                        f"INSERT INTO {t.fullname} ({', '.join(names)}) SELECT {select} FROM {t.fullname} t "
                        f"JOIN {_REKEY} m ON t.{c} = m.old_id", [])
                else:
                    changed[t.fullname] = tx.execute(
                        f"UPDATE {t.fullname} AS t SET {c} = m.new_id FROM {_REKEY} m WHERE t.{c} = m.old_id", [])
            for t, c in reversed(keyed):  # then the old rows, children first
                tx.execute(f"DELETE FROM {t.fullname} WHERE {c} IN (SELECT old_id FROM {_REKEY})", [])
            if self.backend == "postgresql":  # no copy keeps the old pseudonyms
                for statement in shared_copy.drop_statements():
                    tx.execute(statement, [])
            tx.execute("UPDATE warehouse_key SET is_current = FALSE WHERE is_current", [])
            key_id = _record_key(tx, new_key)
            detail = (f"re-keyed from key {keys.key_id(stored)} to {key_id}: "
                      + ", ".join(f"{name} {n}" for name, n in changed.items() if n))
            _audit(tx, "rekey", run_id, run_user, key_id, detail, _current_deliveries(tx))
        return RekeyReport(keys.key_id(stored), key_id, {k: v for k, v in changed.items() if v}, detail)

    # -- helpers ------------------------------------------------------------------------------

    def _frames(self, validated, delivery_id: str) -> dict[str, pl.DataFrame]:
        accepted: dict[str, pl.DataFrame] = dict(getattr(validated, "accepted", {}) or {})
        unknown = set(accepted) - set(model.TABLES) - {"gene_status"}
        if unknown:
            raise ValueError(f"unknown canonical tables in the delivery: {sorted(unknown)}")
        frames = {name: model.conform(name, frame) for name, frame in accepted.items() if name in model.TABLES}
        if "gene_status" in accepted:
            frames["gene_status"] = accepted["gene_status"].select(
                [pl.col(c).cast(t) for c, t in genes.SCHEMA.items()])
        elif "molecular_sample" in frames:
            frames["gene_status"] = genes.gene_status(
                frames["molecular_sample"], frames.get("cn_segment", model.empty("cn_segment")),
                frames.get("variant", model.empty("variant")))
        return {name: f.with_columns(pl.lit(delivery_id).alias("delivery_id")).select(schema.column_names(name))
                for name, f in frames.items()}

    def _queries(self, validated, centre: str, delivery_date: dt.date, delivery_id: str) -> pl.DataFrame:
        types = {c.name: _POLARS_TYPES[type(c.type)] for c in schema.table("data_query").columns}
        queries = getattr(validated, "queries", None)
        if queries is None or queries.is_empty():
            return pl.DataFrame(schema=types)
        q = queries.rename({v: k for k, v in schema.QUERY_COLUMN_SOURCES.items() if v in queries.columns})
        q = q.with_columns(
            pl.lit(delivery_id).alias("delivery_id"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("query_no"),
            (pl.col("centre").fill_null(centre) if "centre" in q.columns else pl.lit(centre)).alias("centre"),
            (pl.col("delivery_date").fill_null(delivery_date) if "delivery_date" in q.columns
             else pl.lit(delivery_date)).alias("delivery_date"),
        )
        return q.select([(pl.col(c) if c in q.columns else pl.lit(None)).cast(t).alias(c) for c, t in types.items()])

    @staticmethod
    def _track_queries(tx: _Transaction, centre: str, delivery_date: dt.date, validated) -> None:
        """The centre's rows of ``data_query_status`` after this delivery: its queries open or
        answered (``validated.answers``: the centre's answers of a returned workbook), the earlier
        ones it no longer raises resolved (:func:`clms_etl.query_list.track`)."""
        from clms_etl.query_list import STATUS_SCHEMA, track

        rows = tx.fetch(f"SELECT {', '.join(STATUS_SCHEMA)} FROM data_query_status WHERE centre = ?", [centre])
        previous = pl.DataFrame(rows, schema=STATUS_SCHEMA, orient="row")
        queries = getattr(validated, "queries", None)
        if queries is None:
            queries = pl.DataFrame(schema=QUERY_SCHEMA)
        status = track(previous, queries.with_columns(pl.lit(centre).alias("centre")), centre, delivery_date,
                       getattr(validated, "answers", None))
        tx.execute("DELETE FROM data_query_status WHERE centre = ?", [centre])
        if not status.is_empty():
            tx.insert_frame("data_query_status", status)

    @staticmethod
    def _counts(validated) -> pl.DataFrame:
        accounting = getattr(validated, "accounting", None)
        if accounting is None or accounting.is_empty():
            return pl.DataFrame(schema={"table_name": pl.String, "rows_read": pl.Int64, "rows_accepted": pl.Int64,
                                        "rows_quarantined": pl.Int64})
        frame = accounting.rename({"table": "table_name"}) if "table" in accounting.columns else accounting
        return frame.select(
            pl.col("table_name").cast(pl.String),
            *[pl.col(c).cast(pl.Int64) for c in ("rows_read", "rows_accepted", "rows_quarantined")],
        )

_POLARS_TYPES = {sa.Text: pl.String, sa.Integer: pl.Int32, sa.BigInteger: pl.Int64, sa.Date: pl.Date}

# Column types of a result as the drivers describe them: DuckDB's type names, PostgreSQL's type OIDs.
_DRIVER_TYPES = {
    "VARCHAR": pl.String, "BIGINT": pl.Int64, "INTEGER": pl.Int32, "SMALLINT": pl.Int16, "HUGEINT": pl.Int64,
    "DOUBLE": pl.Float64, "FLOAT": pl.Float64, "BOOLEAN": pl.Boolean, "DATE": pl.Date,
    "TIMESTAMP": pl.Datetime("us"), "TIMESTAMP WITH TIME ZONE": pl.Datetime("us", "UTC"),
    25: pl.String, 1043: pl.String, 20: pl.Int64, 23: pl.Int32, 21: pl.Int16, 701: pl.Float64, 700: pl.Float64,
    1700: pl.Float64, 16: pl.Boolean, 1082: pl.Date, 1114: pl.Datetime("us"), 1184: pl.Datetime("us", "UTC"),
}


# DuckDB column types whose Arrow columns :func:`_as_from_rows` types as Python rows would be
# (others — decimals, HUGEINT sums, time zones, nested types — take the row path: small results).
_ARROW_AS_ROWS = frozenset({"VARCHAR", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "BOOLEAN",
                            "DATE", "TIMESTAMP"})


def _shrinkage(tx: _Transaction, centre: str, frames: Mapping[str, pl.DataFrame]) -> Shrinkage:
    """What the delivery's ``frames`` remove of ``centre``'s current rows (see :class:`Shrinkage`)."""
    if not frames:
        return Shrinkage("patient", 0, 0, 0)
    table = "patient" if "patient" in frames else next(iter(frames))
    keys = [c.name for c in schema.table(table).primary_key.columns]
    delivered = frames[table].select(keys)
    rows = tx.fetch(f"SELECT {', '.join(keys)} FROM {table} WHERE delivery_id IN "
                    "(SELECT delivery_id FROM delivery WHERE centre = ? AND is_current)", [centre])
    current = pl.DataFrame(rows, schema=delivered.schema, orient="row")
    removed = current.join(delivered, on=keys, how="anti").height
    return Shrinkage(table, current.height, delivered.height, removed)


def shrinkage_text(shrinkage: Shrinkage, limit: float) -> str:
    """"this delivery removes 11 of the 21 patient rows in the warehouse (52 %; limit 10 %)"."""
    return (f"this delivery removes {shrinkage.rows_removed} of the {shrinkage.rows_in_warehouse} {shrinkage.table} "
            f"rows in the warehouse ({shrinkage.removed_share:.0%}; limit {limit:.0%})")


def _as_from_rows(table, columns: list[str], description) -> pl.DataFrame:
    """An Arrow result typed as :meth:`Warehouse.read_sql` types Python rows: integers Int64,
    floats Float64, a column holding only nulls the driver's type."""
    out = []
    for name, d, i in zip(columns, description, range(table.num_columns), strict=True):
        column = pl.from_arrow(table.column(i)).alias(name)
        if column.null_count() == column.len():
            out.append(pl.Series(name, [None] * column.len(), dtype=_polars_type(d[1])))
        elif column.dtype.is_integer():
            out.append(column.cast(pl.Int64))
        elif column.dtype.is_float():
            out.append(column.cast(pl.Float64))
        else:
            out.append(column)
    return pl.DataFrame(out)


def pseudonym_ranges(ids: pl.Series, size: int) -> list[tuple[str | None, str | None]]:
    """``[low, high)`` ranges of at most ``size`` of ``ids`` each (pseudonyms sorted byte-wise), the first
    and last open (None): the blocks :meth:`Warehouse.range_clause` reads."""
    starts = ids.gather_every(size)[1:].to_list()
    return list(zip([None, *starts], [*starts, None], strict=True))


# PostgreSQL: whether this session may create temporary tables (the analyst role may not), where a
# copy of a view is made (Warehouse.block_copy, the result suites' copies)
TEMPORARY_RIGHT = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"


# PostgreSQL column types (OIDs) whose COPY text :func:`_copy_read` parses into what psycopg's
# Python values make in polars (others — json, arrays, intervals, uuid... — take the row path).
_PG_BOOL, _PG_NUMERIC, _PG_DATE, _PG_TIMESTAMP, _PG_TIMESTAMPTZ = 16, 1700, 1082, 1114, 1184
_COPY_CSV_TYPES = {
    20: pl.Int64, 21: pl.Int64, 23: pl.Int64, 700: pl.Float64, 701: pl.Float64, 25: pl.String, 1042: pl.String,
    1043: pl.String, _PG_BOOL: pl.String, _PG_NUMERIC: pl.String, _PG_DATE: pl.String, _PG_TIMESTAMP: pl.String,
    _PG_TIMESTAMPTZ: pl.String,
}


def _copy_read(conn, sql: str, params: dict) -> pl.DataFrame | None:
    """The result of ``sql`` on PostgreSQL as ``COPY (sql) TO STDOUT (FORMAT csv)`` streams it, typed as
    :meth:`Warehouse.read_sql` types psycopg's rows; None when a column's type is not one
    :data:`_COPY_CSV_TYPES` knows, or the session's encoding or date style is not the one parsed here.

    psycopg's rows would be parsed from the same text the server prints (it reads results as text),
    so the values are the same: integers Int64, floats Float64 (NaN and infinities too), numerics the
    Decimal(38, largest scale) polars infers from Python decimals, timestamps with a time zone in the
    session's, a column holding only nulls the driver's type. CSV quotes every string it must and
    writes NULL unquoted and empty, so NULL and ``''`` stay apart. COPY takes no parameters: they are
    bound into the text by psycopg's own client-side quoting.
    """
    import psycopg

    driver = conn.connection.driver_connection
    info = driver.info
    if info.encoding != "utf-8" or not (info.parameter_status("DateStyle") or "").startswith("ISO"):
        return None
    compiled = sa.text(sql.strip().rstrip(";")).compile(dialect=conn.dialect)
    with psycopg.ClientCursor(driver) as cursor:
        query = cursor.mogrify(compiled.string, compiled.construct_params(params))
        cursor.execute(f"SELECT * FROM ({query}) AS _result LIMIT 0")  # the columns' types, nothing run
        description = cursor.description or []
        zone = getattr(info.timezone, "key", None)  # psycopg dates timestamptz values in the session's zone
        if not description or not all(d.type_code in _COPY_CSV_TYPES for d in description) or (
                zone is None and any(d.type_code == _PG_TIMESTAMPTZ for d in description)):
            return None
        text = _copy_out(driver, f"COPY ({query}) TO STDOUT (FORMAT csv)")
    names, codes = [d.name for d in description], [d.type_code for d in description]
    if not text.tell():
        return pl.DataFrame(schema=dict(zip(names, (_polars_type(c) for c in codes))))
    text.seek(0)
    read = pl.read_csv(text, has_header=False, schema={f"c{i}": _COPY_CSV_TYPES[c] for i, c in enumerate(codes)},
                       quote_char='"', try_parse_dates=False)
    return pl.DataFrame([_as_python_typed(read.to_series(i).alias(n), c, zone)
                         for i, (n, c) in enumerate(zip(names, codes, strict=True))])


def _copy_out(driver, copy_sql: str) -> io.BytesIO:
    """The bytes ``COPY ... TO STDOUT`` sends, read with psycopg's libpq calls (``psycopg.pq``): the
    server sends one message per row, and psycopg's ``Copy`` iteration costs twice the CPU of a loop of
    ``PQgetCopyData`` (4.1 million rows: 3.3 against 1.6 CPU-s) — 11 million rows in the exports at
    1,000,000 patients. Non-blocking reads (the GIL is not held while waiting for the server); a failed
    COPY raises psycopg's error for it, its transaction left aborted, as ``cursor.copy`` leaves it."""
    import selectors

    import psycopg
    from psycopg import pq

    pgconn, text = driver.pgconn, io.BytesIO()
    encoding = driver.info.encoding
    pgconn.send_query(copy_sql.encode(encoding))
    with selectors.DefaultSelector() as waiting:
        waiting.register(pgconn.socket, selectors.EVENT_READ)

        def result():  # the next result, waiting for it without blocking in libpq
            while pgconn.is_busy():
                waiting.select()
                pgconn.consume_input()
            return pgconn.get_result()

        first = result()
        if first.status != pq.ExecStatus.COPY_OUT:
            while result() is not None:  # (the connection ready for the next query)
                pass
            raise psycopg.errors.error_from_result(first, encoding=encoding)
        get, write = pgconn.get_copy_data, text.write
        while True:
            nbytes, data = get(1)
            if nbytes > 0:
                write(data)
            elif nbytes == 0:  # nothing received yet
                waiting.select()
                pgconn.consume_input()
            else:  # -1: the end of the rows (-2: an error, in the result below)
                break
        outcomes = []
        while (outcome := result()) is not None:
            outcomes.append(outcome)
    failed = [o for o in outcomes if o.status != pq.ExecStatus.COMMAND_OK]
    if failed:
        raise psycopg.errors.error_from_result(failed[0], encoding=encoding)
    return text


def _as_python_typed(column: pl.Series, type_code: int, zone: str | None) -> pl.Series:
    """A column of COPY's CSV in the type polars gives psycopg's Python values of ``type_code``."""
    if column.null_count() == column.len():
        return pl.Series(column.name, [None] * column.len(), dtype=_polars_type(type_code))
    if type_code == _PG_BOOL:
        return column == "t"
    if type_code == _PG_DATE:
        return column.str.to_date("%Y-%m-%d")
    if type_code == _PG_TIMESTAMP:
        return column.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us")
    if type_code == _PG_TIMESTAMPTZ:
        return column.str.to_datetime("%Y-%m-%d %H:%M:%S%.f%#z", time_unit="us").dt.convert_time_zone(zone)
    if type_code == _PG_NUMERIC:  # Decimal(38, s): s the most digits after the point, as from decimal.Decimal
        scale = column.str.split_exact(".", 1).struct.field("field_1").str.len_chars().max() or 0
        return column.str.to_decimal(scale=scale)
    return column


def _polars_type(type_code) -> pl.DataType:
    if isinstance(type_code, int):
        return _DRIVER_TYPES.get(type_code, pl.Null)
    name = str(type_code).upper()
    if name.startswith("DECIMAL"):
        return pl.Float64
    return _DRIVER_TYPES.get(name, pl.Null)


class IntegrityProblem(RuntimeError):
    """Rows of a delivery do not hang together (orphans), or break a constraint of the warehouse:
    the load was rolled back. Bad data, never a transient fault: loading again refuses again."""


def _data_refusals() -> tuple[type[BaseException], ...]:
    """The drivers' errors that mean "these rows break a constraint or do not fit a column"."""
    import duckdb

    found: list[type[BaseException]] = [duckdb.IntegrityError, duckdb.DataError, sa.exc.IntegrityError,
                                        sa.exc.DataError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - DuckDB-only installation
        pass
    else:
        found += [psycopg.IntegrityError, psycopg.DataError]
    return tuple(found)


_SHOWN_ROWS = 5  # rows named per broken constraint: enough to find the cause, not a dump


def _refuse_repeated_keys(table: str, frame: pl.DataFrame) -> None:
    """:class:`IntegrityProblem` when rows of ``frame`` share their ``table``'s key, naming the first rows.
    A first load's insert hits the primary key; a replacing load's upsert does not refuse them: DuckDB's
    ``INSERT OR REPLACE`` keeps one of the rows without a word, PostgreSQL's stops on "ON CONFLICT DO UPDATE
    command cannot affect row a second time", a driver error no caller takes for bad data."""
    keys = [c.name for c in schema.table(table).primary_key.columns]
    repeated = frame.filter(pl.struct(keys).is_duplicated())
    if repeated.is_empty():
        return
    raise IntegrityProblem(f"delivery refused, nothing changed: {repeated.height} {table} row(s) share their key "
                           f"({', '.join(keys)}) with another row of the delivery{_first_rows(repeated)}.")


def _first_rows(rows: pl.DataFrame, field: str | None = None) -> str:
    """`` (file row N[, field f]; …)``: the first :data:`_SHOWN_ROWS` of ``rows`` by source file and row, as a
    data manager finds them; empty when the rows carry no source row."""
    if "source_row" not in rows.columns:
        return ""
    first = rows.sort("source_file", "source_row").head(_SHOWN_ROWS)
    named = [f"{f} row {r}" + (f", field {field}" if field else "")
             for f, r in first.select("source_file", "source_row").iter_rows()]
    return " (" + "; ".join(named) + ("; …" if rows.height > first.height else "") + ")"


def _refuse_orphans(frames: dict[str, pl.DataFrame | None]) -> None:
    """:class:`IntegrityProblem` when a child row of the delivery (:data:`schema.PARENTS`) names no parent
    row of this same delivery, naming the first rows. Checked on the frames, which are exactly the rows the
    load writes under this delivery, before anything is written. In SQL, after the write, it read each child
    table again, whole before ``delivery_id`` was indexed: 33 s of the server's time over a 40-centre night at
    1,000,000 patients, growing with the registry."""
    problems = []
    for child, (column, parent, parent_column) in schema.PARENTS.items():
        rows = frames.get(child)
        if rows is None or rows.is_empty():
            continue
        parents = frames.get(parent)
        known = parents.select(pl.col(parent_column).alias(column)) if parents is not None else \
            pl.DataFrame(schema={column: rows.schema[column]})
        orphans = rows.join(known.unique(), on=column, how="anti", nulls_equal=False)
        if not orphans.is_empty():
            problems.append(f"{orphans.height} {child} row(s) whose {column} is not a {parent} of this delivery"
                            f"{_first_rows(orphans, column)}")
    if problems:
        raise IntegrityProblem("delivery refused, nothing changed: " + "; ".join(problems) + ".")


def _rows_breaking_constraints(frames: dict[str, pl.DataFrame]) -> list[str]:
    """Each row of ``frames`` a CHECK or NOT NULL constraint of :mod:`schema` refuses, as
    "table: file[, sheet] row N, field f (constraint)", evaluated with polars' SQL on the frames
    (SQL NULL semantics: a CHECK on NULL passes). A check polars cannot evaluate is skipped."""
    out = []
    for table, frame in frames.items():
        if frame is None or frame.is_empty() or "source_row" not in frame.columns:
            continue
        for name, condition in schema.check_conditions(table).items():
            fields = [c for c in frame.columns if c in condition.replace("(", " ").replace(")", " ").split()]
            try:
                bad = pl.SQLContext(rows=frame).execute(
                    f"SELECT source_file, source_sheet, source_row FROM rows WHERE NOT ({condition})", eager=True)
            except Exception:
                continue
            for file, sheet, row in bad.head(_SHOWN_ROWS).iter_rows():
                where = f"{file}{f', {sheet}' if sheet else ''} row {row}"
                out.append(f"{table}: {where}, field {', '.join(fields) or '?'} ({name}: {condition})")
            if bad.height > _SHOWN_ROWS:
                out.append(f"{table}: … {bad.height - _SHOWN_ROWS} more row(s) breaking {name}")
    return out


@dataclass(frozen=True)
class RekeyReport:
    old_key_id: str
    new_key_id: str
    rows_changed: dict[str, int]  # table -> rows whose pseudonym was recomputed
    detail: str


_KEY_LOCK = "@pseudonym key"  # not a source name: loads share it, a re-key takes it alone
_REKEY = "_clms_rekey"


def _current_fingerprint(tx: _Transaction) -> str | None:
    rows = tx.fetch("SELECT fingerprint FROM warehouse_key WHERE is_current", [])
    return rows[0][0] if rows else None



def _key_mismatch_message(source: str, stored: str) -> str:
    return (
        f"{source}: refused, nothing changed: the delivery was pseudonymised with another key than the "
        f"warehouse's (key {keys.key_id(stored)}); its pseudonyms would not match the patients already "
        f"loaded. Set the warehouse's key in {keys.ENV_KEY} / {keys.ENV_KEY_FILE}; to change the key on "
        f"purpose, re-key the warehouse first: `clms-etl warehouse rekey --mapping centres_ids.csv` with "
        f"the old key in {keys.ENV_OLD_KEY} (or {keys.ENV_OLD_KEY_FILE}) and the new one in "
        f"{keys.ENV_KEY} (docs/privacy.md).")


def _record_key(tx: _Transaction, key: bytes) -> str:
    stored = keys.fingerprint(key)
    tx.execute("INSERT INTO warehouse_key (key_id, fingerprint, set_at, is_current) VALUES (?, ?, ?, TRUE)",
               [keys.key_id(stored), stored, dt.datetime.now(dt.UTC)])
    return keys.key_id(stored)


_CURRENT_DELIVERIES = "SELECT centre, delivery_date, content_sha256 FROM delivery WHERE is_current ORDER BY centre"
RESULTS_DETAIL = "result tables replaced: "  # then the table names, ', '-separated (Warehouse.results_basis)


def _current_deliveries(tx: _Transaction) -> list[tuple]:
    return tx.fetch(_CURRENT_DELIVERIES, [])


def _current_deliveries_of(wh: Warehouse) -> list[tuple]:
    return [(c, _as_date(d), h) for c, d, h in wh.read_sql(_CURRENT_DELIVERIES).iter_rows()]


def os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else None


def _audit(tx: _Transaction, action: str, run_id: str | None, run_user: str | None, key_id: str | None,
           detail: str, deliveries: Sequence[tuple]) -> None:
    from clms_etl.version import code_version

    audit_id = uuid.uuid4().hex
    tx.execute("INSERT INTO audit_log (audit_id, action, recorded_at, os_user, run_user, run_id, key_id, code_version, detail) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [audit_id, action, dt.datetime.now(dt.UTC), os_user(), run_user, run_id, key_id, code_version(),
                detail])
    for centre, delivery_date, sha in deliveries:
        tx.execute("INSERT INTO audit_delivery (audit_id, centre, delivery_date, content_sha256) VALUES (?, ?, ?, ?)",
                   [audit_id, centre, _as_date(delivery_date), sha])


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


# -- backend transactions -------------------------------------------------------------------------


class _Transaction:
    """One load's transaction on the raw DBAPI connection (``?`` placeholders)."""

    def __init__(self, warehouse: Warehouse):
        self.raw = warehouse.engine.raw_connection()
        self.done = False

    def lock(self, centre: str, shared: bool = False) -> None:
        pass

    def create_temp(self, name: str, columns: dict[str, str]) -> None:
        """A temporary table dropped at the end of the transaction."""
        cols = ", ".join(f"{c} {t}" for c, t in columns.items())
        self.execute(f"{self._create_temp} {name} ({cols}){self._on_commit_drop}", [])

    _create_temp, _on_commit_drop = "CREATE TEMPORARY TABLE", ""

    def fetch(self, sql: str, params: list) -> list[tuple]:
        raise NotImplementedError

    def execute(self, sql: str, params: list) -> int:
        raise NotImplementedError

    def insert_frame(self, table: str, frame: pl.DataFrame) -> None:
        raise NotImplementedError

    def replace_rows(self, centre: str, delivery_id: str, frames: dict[str, pl.DataFrame | None]
                     ) -> tuple[dict[str, int], dict[str, int]]:
        """Make ``frames`` (in load order, parents first) the only rows of ``centre``.

        The result is that of deleting every row of the source's previous deliveries and
        inserting the new ones; how it gets there is the backend's (both upsert, see below).
        Returns (rows of previous deliveries replaced, rows loaded) per table.
        """
        raise NotImplementedError

    def commit(self) -> None:
        self.raw.commit()
        self.done = True

    def rollback(self) -> None:
        if not self.done:
            self.done = True
            try:
                self.raw.rollback()
            except Exception:  # the connection may already be unusable; it is invalidated on close
                self.raw.invalidate()

    def close(self) -> None:
        self.raw.close()


class _DuckDBTransaction(_Transaction):
    _create_temp = "CREATE OR REPLACE TEMPORARY TABLE"  # lives as long as the pooled connection
    def __init__(self, warehouse: Warehouse):
        super().__init__(warehouse)
        self.con = self.raw.dbapi_connection  # duckdb-engine's wrapper around the duckdb connection
        self.con.execute("BEGIN TRANSACTION")

    def fetch(self, sql: str, params: list) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    def execute(self, sql: str, params: list) -> int:
        result = self.con.execute(sql, params).fetchall()
        return int(result[0][0]) if result and result[0] and isinstance(result[0][0], int) else 0

    def insert_frame(self, table: str, frame: pl.DataFrame) -> None:
        cols = ", ".join(frame.columns)
        self.con.register(_STAGING, frame.to_arrow())
        # On failure the transaction is aborted and DuckDB refuses even to unregister: the
        # staging view is dropped after the rollback instead, and the original error surfaces.
        self.con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {_STAGING}")
        self.con.unregister(_STAGING)

    def replace_rows(self, centre: str, delivery_id: str, frames: dict[str, pl.DataFrame | None]
                     ) -> tuple[dict[str, int], dict[str, int]]:
        """DuckDB: upsert by primary key, then delete the rows that did not come back.

        Deleting a million indexed rows makes DuckDB 2.0's COMMIT take ~14 s (measured: the same
        delete without the primary key commits in 0.3 s), while overwriting a row in place is
        cheap. A nightly delivery mostly repeats yesterday's patients, so each table is loaded
        with ``INSERT OR REPLACE`` (rows whose key is already there are overwritten, new keys
        inserted) and only the rows still pointing at a previous delivery — patients or events
        that disappeared — are deleted. The end state is the same as delete-then-insert. A key
        held by another source is refused, as a primary-key violation would be.
        """
        previous = "SELECT delivery_id FROM delivery WHERE centre = ? AND delivery_id <> ?"
        forced = self.fetch("SELECT COUNT(*) FROM delivery WHERE delivery_id = ?", [delivery_id])[0][0]
        replaced, loaded = {}, {}
        for name, frame in frames.items():
            before = self.fetch(f"SELECT COUNT(*) FROM {name} WHERE delivery_id IN ({previous})",
                                [centre, delivery_id])[0][0]
            if forced:  # the same delivery loaded again with force=True: start from nothing
                before += self.execute(f"DELETE FROM {name} WHERE delivery_id = ?", [delivery_id])
            if frame is not None and not frame.is_empty():
                if before:
                    self._upsert(name, frame, centre)
                else:
                    self.insert_frame(name, frame)
                loaded[name] = frame.height
            if before:
                self.execute(f"DELETE FROM {name} WHERE delivery_id IN ({previous})", [centre, delivery_id])
                replaced[name] = before
        return replaced, loaded

    def _upsert(self, table: str, frame: pl.DataFrame, centre: str) -> None:
        cols = ", ".join(frame.columns)
        keys = [c.name for c in schema.table(table).primary_key.columns]
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        self.con.register(_STAGING, frame.to_arrow())
        taken = self.con.execute(
            f"SELECT COUNT(*) FROM {table} t JOIN {_STAGING} s ON {on} WHERE t.delivery_id NOT IN "
            f"(SELECT delivery_id FROM delivery WHERE centre = ?)", [centre]).fetchall()[0][0]
        if taken:
            raise IntegrityProblem(f"delivery refused, nothing changed: {taken} {table} row(s) have the key "
                                   f"({', '.join(keys)}) of rows delivered by another source.")
        self.con.execute(f"INSERT OR REPLACE INTO {table} ({cols}) SELECT {cols} FROM {_STAGING}")
        self.con.unregister(_STAGING)

    def commit(self) -> None:
        self.con.execute("COMMIT")
        self.done = True

    def rollback(self) -> None:
        if not self.done:
            self.done = True
            try:
                self.con.execute("ROLLBACK")
                self.con.unregister(_STAGING)
            except Exception:
                self.raw.invalidate()


class _PostgresTransaction(_Transaction):
    def __init__(self, warehouse: Warehouse):
        super().__init__(warehouse)
        self.con = self.raw.driver_connection  # psycopg.Connection, not autocommit: one transaction
        self.cur = self.con.cursor()

    _on_commit_drop = " ON COMMIT DROP"

    def lock(self, centre: str, shared: bool = False) -> None:
        # Two loads of the same source wait for each other instead of interleaving.
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        self.cur.execute(f"SELECT {function}(hashtext(%s))", [f"clms-etl load {centre}"])

    def fetch(self, sql: str, params: list) -> list[tuple]:
        self.cur.execute(sql.replace("?", "%s"), params)
        return self.cur.fetchall()

    def execute(self, sql: str, params: list) -> int:
        self.cur.execute(sql.replace("?", "%s"), params)
        return max(self.cur.rowcount, 0)

    def insert_frame(self, table: str, frame: pl.DataFrame) -> None:
        cols = ", ".join(frame.columns)
        with self.cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, frame.height, COPY_CHUNK_ROWS):
                buffer = io.BytesIO()
                frame.slice(start, COPY_CHUNK_ROWS).write_csv(buffer, include_header=False)
                copy.write(buffer.getvalue())

    def replace_rows(self, centre: str, delivery_id: str, frames: dict[str, pl.DataFrame | None]
                     ) -> tuple[dict[str, int], dict[str, int]]:
        """PostgreSQL: upsert by primary key from a COPY-filled staging table, then delete leftovers.

        Deleting a patient makes PostgreSQL check, row by row, that no tumour, operation or event
        still references it (the foreign keys' triggers): 13 s for 200,000 patients, measured. An
        ``INSERT ... ON CONFLICT DO UPDATE`` that keeps the key fires no such check, so rows that
        come back are overwritten in place and only the rows of patients or events that
        disappeared are deleted (children first). The end state is the one of delete-then-insert;
        a key held by another source is refused.
        """
        previous = "SELECT delivery_id FROM delivery WHERE centre = ? AND delivery_id <> ?"
        before = {name: self.fetch(f"SELECT COUNT(*) FROM {name} WHERE delivery_id IN ({previous})",
                                   [centre, delivery_id])[0][0] for name in frames}
        if self.fetch("SELECT COUNT(*) FROM delivery WHERE delivery_id = ?", [delivery_id])[0][0]:
            for name in reversed(list(frames)):  # forced reload of the same delivery: start from nothing
                before[name] += self.execute(f"DELETE FROM {name} WHERE delivery_id = ?", [delivery_id])
        loaded = {}
        for name, frame in frames.items():
            if frame is not None and not frame.is_empty():
                if before[name]:
                    self._upsert(name, frame, centre)
                else:
                    self.insert_frame(name, frame)
                loaded[name] = frame.height
        for name in reversed(list(frames)):
            if before[name]:
                self.execute(f"DELETE FROM {name} WHERE delivery_id IN ({previous})", [centre, delivery_id])
        return {name: n for name, n in before.items() if n}, loaded

    def _upsert(self, table: str, frame: pl.DataFrame, centre: str) -> None:
        keys = [c.name for c in schema.table(table).primary_key.columns]
        cols = ", ".join(frame.columns)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in frame.columns if c not in keys)
        self.cur.execute(f"CREATE TEMPORARY TABLE {_STAGING} (LIKE {table}) ON COMMIT DROP")
        self.insert_frame(_STAGING, frame)
        # A row whose key another source holds is neither inserted nor updated (the WHERE), so the rows
        # written fall short of the frame by their number: one pass, where a join of the staging table with
        # the whole table beforehand took 0.5 s per table and load at 1,000,000 patients.
        self.cur.execute(f"INSERT INTO {table} AS t ({cols}) SELECT {cols} FROM {_STAGING} "
                         f"ON CONFLICT ON CONSTRAINT {schema.table(table).primary_key.name} DO UPDATE SET {updates} "
                         f"WHERE t.delivery_id IN (SELECT delivery_id FROM delivery WHERE centre = %s)", [centre])
        if taken := frame.height - self.cur.rowcount:
            raise IntegrityProblem(f"delivery refused, nothing changed: {taken} {table} row(s) have the key "
                                   f"({', '.join(keys)}) of rows delivered by another source.")
        self.cur.execute(f"DROP TABLE {_STAGING}")

    def close(self) -> None:
        self.cur.close()
        super().close()


@contextmanager
def _transaction(warehouse: Warehouse, explain=None) -> Iterator[_Transaction]:
    """A load transaction: committed when the block ends normally (unless already ended),
    rolled back on any error, the connection closed in every case. A constraint the data break
    becomes an :class:`IntegrityProblem` (``explain()`` lists the rows concerned), so that no
    caller mistakes it for a transient fault and loads the same rows again."""
    tx = _open_transaction(warehouse)
    try:
        yield tx
        if not tx.done:
            tx.commit()
    except _data_refusals() as exc:
        tx.rollback()
        rows = explain() if explain is not None else []
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IntegrityProblem(
            f"delivery refused, nothing changed: the warehouse rejected rows ({type(exc).__name__}: {detail})"
            + (": " + "; ".join(rows) if rows else "") + "."
        ) from exc
    except BaseException:
        tx.rollback()
        raise
    finally:
        tx.close()


def _open_transaction(warehouse: Warehouse) -> _Transaction:
    if warehouse.backend == "duckdb":
        return _DuckDBTransaction(warehouse)
    return _PostgresTransaction(warehouse)
