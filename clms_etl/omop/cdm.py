"""The OMOP CDM v5.4 schema as OHDSI publishes it: the official DDL, parsed once, run as it is.

The DDL files in ``ddl/`` are OHDSI/CommonDataModel's (``NOTICE.md``: commit and licence),
unchanged. Their ``@cdmDatabaseSchema`` placeholder is replaced by the target schema; the
primary-key file is run after the tables are created. The same DDL, parsed, gives every
table's columns in order with their type, length and nullability, which is what the frames
built by :mod:`clms_etl.omop.build` are conformed to before they are written (strings cut to
the column's ``varchar`` length: PostgreSQL enforces it, DuckDB does not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl
import sqlalchemy as sa

DDL_DIR = Path(__file__).with_name("ddl")
PLACEHOLDER = "@cdmDatabaseSchema"
DIALECTS = {"duckdb": "duckdb", "postgresql": "postgresql"}  # SQLAlchemy dialect -> DDL folder name

_TABLE = re.compile(r"CREATE TABLE @cdmDatabaseSchema\.(\w+) \((.*?)\);", re.S)
_COLUMN = re.compile(r"^\s*(\w+)\s+(\w+)(?:\((\d+)\))?\s+(NOT NULL|NULL)", re.I)
_POLARS = {"integer": pl.Int64, "bigint": pl.Int64, "numeric": pl.Float64, "float": pl.Float64,
           "date": pl.Date, "timestamp": pl.Datetime, "varchar": pl.String, "text": pl.String}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as the DDL spells it, lower case: integer, varchar, date, numeric, ...
    length: int | None  # varchar(n)
    required: bool  # NOT NULL

    @property
    def dtype(self) -> pl.DataType:
        return _POLARS[self.type]


def ddl_path(dialect: str, part: str = "ddl") -> Path:
    """The official file of ``dialect`` (``duckdb`` / ``postgresql``): ``ddl`` or ``primary_keys``."""
    return DDL_DIR / f"OMOPCDM_{dialect}_5.4_{part}.sql"


@cache
def tables() -> dict[str, tuple[Column, ...]]:
    """Every CDM table of the DuckDB DDL with its columns in order (the PostgreSQL file declares the same)."""
    out = {}
    for name, body in _TABLE.findall(ddl_path("duckdb").read_text(encoding="utf-8")):
        columns = []
        for line in body.split(","):
            m = _COLUMN.match(line)
            if m:
                columns.append(Column(m[1].lower(), m[2].lower(), int(m[3]) if m[3] else None,
                                      m[4].upper() == "NOT NULL"))
        out[name] = tuple(columns)
    return out


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with exactly the columns of ``table`` in DDL order and type (absent ones null),
    strings cut to their ``varchar`` length."""
    exprs = []
    for col in tables()[table]:
        e = pl.col(col.name) if col.name in frame.columns else pl.lit(None)
        e = e.cast(col.dtype)
        if col.length is not None:
            e = e.str.slice(0, col.length)
        exprs.append(e.alias(col.name))
    return frame.select(exprs)


def _statements(sql: str, schema: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().replace(PLACEHOLDER, schema) for s in body.split(";") if s.strip()]


def dialect_of(engine: sa.Engine) -> str:
    name = engine.dialect.name
    if name not in DIALECTS:
        raise ValueError(f"OMOP export: no official DDL for {name} here (DuckDB or PostgreSQL)")
    return DIALECTS[name]


def qualified(conn: sa.Connection, schema: str) -> str:
    """``schema`` quoted for SQL; on DuckDB with its catalog, because a file named like the schema
    (``omop.duckdb`` holding schema ``omop``) makes the bare name ambiguous."""
    if dialect_of(conn.engine) == "duckdb":
        catalog = conn.execute(sa.text("SELECT current_database()")).all()[0][0]  # all: DuckDB 2.0 wants results drained
        return f'"{catalog}"."{schema}"'
    return f'"{schema}"'


def create_schema(conn: sa.Connection, schema: str, *, primary_keys: bool = True) -> None:
    """Create ``schema`` and every CDM v5.4 table in it from the official DDL (and its primary keys)."""
    conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {qualified(conn, schema)}"))
    _run_ddl(conn, schema, "ddl")
    if primary_keys:
        add_primary_keys(conn, schema)


def add_primary_keys(conn: sa.Connection, schema: str) -> None:
    """The official primary keys (``ALTER TABLE ... ADD CONSTRAINT``) on the tables of ``schema``: after
    its rows are in, each key is built once from them instead of maintained row block by row block."""
    _run_ddl(conn, schema, "primary_keys")


def _run_ddl(conn: sa.Connection, schema: str, part: str) -> None:
    name = qualified(conn, schema)
    for statement in _statements(ddl_path(dialect_of(conn.engine), part).read_text(encoding="utf-8"), name):
        conn.execute(sa.text(statement))


def drop_tables(conn: sa.Connection, schema: str) -> None:
    """Drop every CDM table of ``schema`` (table by table: DuckDB 2.0 cannot drop a quoted
    catalog-qualified schema whose name is the catalog's)."""
    name = qualified(conn, schema)
    for table in tables():
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}.{table}"))


def schema_has_rows(conn: sa.Connection, schema: str) -> bool:
    """Whether ``schema`` already holds a ``person`` table with rows (an export never mixes two)."""
    if not sa.inspect(conn).has_table("person", schema=schema):
        return False
    return bool(conn.execute(sa.text(f"SELECT count(*) FROM {qualified(conn, schema)}.person")).all()[0][0])  # drained: the insert goes on the raw connection


def insert(conn: sa.Connection, schema: str, frames: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Append the frames (conformed) to the schema's tables; returns rows written per table."""
    dialect = dialect_of(conn.engine)
    name = qualified(conn, schema)
    written = {}
    for table, frame in frames.items():
        frame = conform(table, frame)
        if frame.height:
            if dialect == "duckdb":
                raw = conn.connection.driver_connection  # the duckdb connection: Arrow in, no row loop
                raw.register("_omop_frame", frame.to_arrow())
                try:
                    raw.execute(f"INSERT INTO {name}.{table} SELECT * FROM _omop_frame")
                finally:
                    raw.unregister("_omop_frame")
            else:
                cursor = conn.connection.driver_connection.cursor()
                names = ", ".join(frame.columns)
                with cursor.copy(f"COPY {name}.{table} ({names}) FROM STDIN") as copy:
                    for row in frame.iter_rows():
                        copy.write_row(row)
        written[table] = frame.height
    return written
