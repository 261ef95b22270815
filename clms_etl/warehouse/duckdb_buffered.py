"""``duckdb+clms_buffered``: duckdb-engine with every result fetched before the connection goes back.

Why: Great Expectations 1.24 runs a query, returns the connection to the pool, *then* reads the
rows. duckdb-engine's cursor is the DuckDB connection itself, so by then the result is gone
and GE gets ``[]`` (an ``IndexError`` in ``resolve_metric_bundle`` for every expectation). This
dialect is duckdb-engine's with one change: after executing a statement that returns rows, the
execution context swaps SQLAlchemy's streaming fetch strategy for its
``FullyBufferedCursorFetchStrategy`` (the rows are read into memory at once, as
``Result.freeze()`` would). Only GE's engine uses it; the warehouse's own engine and loads do not.
"""

from __future__ import annotations

from duckdb_engine import Dialect as _DuckDBDialect
from sqlalchemy.dialects import registry
from sqlalchemy.engine import cursor as _cursor

DRIVERNAME = "duckdb+clms_buffered"


class BufferedExecutionContext(_DuckDBDialect.execution_ctx_cls):
    def post_exec(self) -> None:
        super().post_exec()
        if self.cursor.description is not None and self.cursor_fetch_strategy is _cursor._DEFAULT_FETCH:
            self.cursor_fetch_strategy = _cursor.FullyBufferedCursorFetchStrategy(self.cursor)


class BufferedDuckDBDialect(_DuckDBDialect):
    execution_ctx_cls = BufferedExecutionContext
    supports_statement_cache = False


def register() -> None:
    registry.register("duckdb.clms_buffered", __name__, "BufferedDuckDBDialect")


register()
