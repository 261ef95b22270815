"""``duckdb+clms_buffered``: duckdb-engine with every result fetched before the connection goes back.

Why: Great Expectations 1.24 runs a query, returns the connection to the pool, *then* reads the
rows. duckdb-engine's cursor is the DuckDB connection itself, so by then the result is gone
and GE gets ``[]`` (an ``IndexError`` in ``resolve_metric_bundle`` for every expectation). This
dialect is duckdb-engine's with one change: after executing a statement that returns rows, the
execution context swaps SQLAlchemy's streaming fetch strategy for its
``FullyBufferedCursorFetchStrategy`` (the rows are read into memory at once, as
``Result.freeze()`` would). Only GE's engine uses it; the warehouse's own engine and loads do not.

Second change: column reflection (``Inspector.get_columns``) reads DuckDB's
``information_schema.columns``. duckdb-engine inherits PostgreSQL's catalog query, which under
SQLAlchemy 2.1 joins ``pg_catalog.pg_collation`` (absent from DuckDB) and fails; GE then falls
back to ``SELECT * FROM <table> LIMIT 1`` *without the schema*, so a table outside ``main`` (the
result tables of schema ``analytics``) could not be validated at all.

Third: the URL parameter ``clms_search_path`` is set as each connection's ``search_path`` (DuckDB
takes ``search_path`` only as a session setting, not in the configuration duckdb-engine passes
to ``duckdb.connect``): how GE reads the views copied for it (:mod:`clms_etl.warehouse.expectations`).
"""

from __future__ import annotations

from duckdb_engine import Dialect as _DuckDBDialect
from sqlalchemy.dialects import registry
from sqlalchemy.engine import cursor as _cursor
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.sql import sqltypes

DRIVERNAME = "duckdb+clms_buffered"
SEARCH_PATH = "clms_search_path"  # URL parameter: the connections' search_path (module docstring)
READ_ONLY = "clms_read_only"  # URL parameter: open the file read-only
_DUCKDB_TYPES = {"double": sqltypes.Double, "float": sqltypes.Float, "real": sqltypes.Float}  # not in the PG names


class BufferedExecutionContext(_DuckDBDialect.execution_ctx_cls):
    def post_exec(self) -> None:
        super().post_exec()
        if self.cursor.description is not None and self.cursor_fetch_strategy is _cursor._DEFAULT_FETCH:
            self.cursor_fetch_strategy = _cursor.FullyBufferedCursorFetchStrategy(self.cursor)


class BufferedDuckDBDialect(_DuckDBDialect):
    execution_ctx_cls = BufferedExecutionContext
    supports_statement_cache = False

    def connect(self, *cargs, **cparams):
        url_config = dict(cparams.pop("url_config", {}))
        search_path = url_config.pop(SEARCH_PATH, None)
        if url_config.pop(READ_ONLY, None) == "true":
            cparams["read_only"] = True
        conn = super().connect(*cargs, url_config=url_config, **cparams)
        if search_path:
            conn.execute("SET search_path = '" + search_path.replace("'", "''") + "'")
        return conn

    def get_columns(self, connection, table_name, schema=None, **kw):
        rows = connection.exec_driver_sql(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = COALESCE(?, current_schema()) AND table_name = ? ORDER BY ordinal_position",
            (schema, table_name)).fetchall()
        if not rows:
            raise NoSuchTableError(f"{schema}.{table_name}" if schema else table_name)
        return [{"name": name, "type": self._column_type(data_type), "nullable": nullable == "YES",
                 "default": default, "autoincrement": False} for name, data_type, nullable, default in rows]

    def _column_type(self, data_type: str):
        name = data_type.lower()
        found = self.ischema_names.get(name) or self.ischema_names.get(name.split("(")[0]) or _DUCKDB_TYPES.get(name)
        return found() if found else sqltypes.NULLTYPE


def register() -> None:
    registry.register("duckdb.clms_buffered", __name__, "BufferedDuckDBDialect")


register()
