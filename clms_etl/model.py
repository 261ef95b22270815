"""The canonical model every reader produces (and the warehouse stores).

Each canonical frame carries, besides its domain columns, its provenance so that any
problem found later can be sent back to the exact cell: ``row_id`` (unique within one
delivery read), ``source_file``, ``source_sheet`` (Excel only) and ``source_row`` (the row a
data manager sees: header = 1). Identifiers never enter these frames: ``patient_id`` is the
pseudonym and the age at diagnosis replaces the birth date.

Dates that were partial in the chart are imputed (mid-month, 1 July) and carry a precision
column (``day``/``month``/``year``).

The columns, their types and every other fact about them are declared once in
:mod:`clms_etl.contract`; this module gives the polars view of them.
"""

from __future__ import annotations

import polars as pl

from clms_etl import contract

# Derived from the contract (clms_etl/data/contract.toml): column -> polars dtype, in order.
PROVENANCE = {c.name: c.dtype for c in contract.PROVENANCE}
CLINICAL_TABLES = {t: contract.TABLES[t].polars_schema for t in contract.CLINICAL_TABLES}
MOLECULAR_TABLES = {t: contract.TABLES[t].polars_schema for t in contract.MOLECULAR_TABLES}
TABLES = {**CLINICAL_TABLES, **MOLECULAR_TABLES}
# Named for the modules that import them.
MOLECULAR_SAMPLE, CN_SEGMENT = TABLES["molecular_sample"], TABLES["cn_segment"]


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table])


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Columns of ``table`` in canonical order and types (missing columns -> null)."""
    schema = TABLES[table]
    return frame.select(
        [
            (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in schema.items()
        ]
    )
