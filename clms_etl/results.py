"""Result tables: what the nightly analyses write back into the warehouse for analysts.

The study's results (Kaplan-Meier estimates and curves, univariate analysis, Table 1, the
molecular summary, ...) are recomputed from the harmonised data after every refresh and stored
as plain tables in the ``analytics`` schema, next to the views: analysts (the ``clms_analyst``
role, which reads ``analytics`` only) query them like any view, and nobody has to rerun the
statistics to read a number.

Each table is declared once as a :class:`ResultTable` (polars dtypes, column comments, primary
key) by the module that computes it; :mod:`clms_etl.warehouse.schema` turns the declarations into
SQLAlchemy tables of :data:`clms_etl.warehouse.schema.results_metadata`, and
:meth:`clms_etl.warehouse.load.Warehouse.replace_results` replaces their content in one
transaction. Every table gets a last ``run_id`` column: the pipeline run that computed the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

RUN_ID_COMMENT = "Pipeline run that computed the row (Dagster run id, or 'cli' / 'test')."


@dataclass(frozen=True)
class ResultColumn:
    name: str
    dtype: pl.DataType | type[pl.DataType]
    comment: str
    nullable: bool = True

    @property
    def dtype_class(self) -> type[pl.DataType]:
        """The dtype as a class, whether declared as ``pl.String`` or ``pl.String()``."""
        return self.dtype if isinstance(self.dtype, type) else type(self.dtype)


@dataclass(frozen=True)
class ResultTable:
    """A table of results: name, description (stored as the table comment), columns, key."""

    name: str
    description: str
    columns: tuple[ResultColumn, ...]
    primary_key: tuple[str, ...]
    # The key is also the database's primary key (a unique index); False for a table whose rows are too many
    # for it: each night's replacing write checks every new key against the rows it replaces, still in the
    # index (ph_residual: 4.1 million rows at 1,000,000 patients, 41 s to write with the index, 1.5 s
    # without). :meth:`conform` checks the key on every write either way.
    indexed: bool = True

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or "run_id" in names:
            raise ValueError(f"{self.name}: duplicate column names or a declared run_id")
        missing = set(self.primary_key) - set(names)
        if missing:
            raise ValueError(f"{self.name}: primary key columns {sorted(missing)} not declared")

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """The polars schema of the table, ``run_id`` excluded."""
        return {c.name: c.dtype for c in self.columns}

    def conform(self, frame: pl.DataFrame, run_id: str | None = None) -> pl.DataFrame:
        """``frame`` with exactly the declared columns, in order, cast to their dtypes, plus ``run_id``.

        Raises ``ValueError`` naming the missing columns, or the key columns holding nulls or
        duplicates: a result table with a broken key is a bug of the computation, not data.
        """
        missing = [c for c in self.schema if c not in frame.columns]
        if missing:
            raise ValueError(f"result table {self.name}: missing columns {missing}")
        out = frame.select([pl.col(c).cast(t, strict=True) for c, t in self.schema.items()])
        out = out.with_columns(pl.lit(run_id, dtype=pl.String).alias("run_id"))
        key = list(self.primary_key)
        if out.select(pl.any_horizontal(pl.col(key).is_null())).to_series().any():
            raise ValueError(f"result table {self.name}: null in key columns {key}")
        if has_duplicate_rows(out.select(key)):
            raise ValueError(f"result table {self.name}: duplicate keys {key}")
        return out


def has_duplicate_rows(frame: pl.DataFrame) -> bool:
    """Whether two rows of ``frame`` are equal.

    The rows' hashes are sorted and compared with their neighbours (8 bytes a row); only the rows whose hash
    another row shares are compared themselves. ``is_duplicated`` on the frame would encode every row of a
    key of several string columns at once (the 4 million Schoenfeld residuals: 0.8 GB, the survival step's peak).
    """
    if frame.height < 2:
        return False
    row_hash = pl.struct(pl.all()).hash()
    hashes = frame.select(row_hash).to_series().sort()
    shared = hashes.slice(1).filter(hashes.slice(1) == hashes.slice(0, hashes.len() - 1))
    return not shared.is_empty() and frame.filter(row_hash.is_in(shared.implode())).is_duplicated().any()
