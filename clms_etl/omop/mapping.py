"""The registry's codes as OMOP concepts: ``concepts.csv``, versioned with the package.

One row per (``source_domain``, ``source_code``): the standard ``concept_id`` (0 when no standard
concept could be pinned), its ``concept_code`` and ``vocabulary_id``, ``concept_name``, how well
it fits (``match``: exact / broader / unmapped), the ``unit`` of a numeric measurement, whether
the id was ``confirmed`` against a public OHDSI source, and that ``source``. A code absent from the
file maps to 0 like an unmapped one; the source value always travels in the ``*_source_value``
column, so a site with the vocabularies can map it again (docs/omop.md).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import polars as pl

CONCEPTS_FILE = Path(__file__).with_name("concepts.csv")
MAPPING_VERSION = "1"  # bump with every change of concepts.csv that changes an id
NO_MATCHING_CONCEPT = 0  # OMOP's "No matching concept"


@cache
def concepts() -> pl.DataFrame:
    """The mapping table (every column text except ``concept_id``; empty cells null, but an empty
    ``source_code`` is the code of a value the chart left blank)."""
    table = pl.read_csv(CONCEPTS_FILE, infer_schema=False)
    return table.with_columns(pl.col("concept_id").cast(pl.Int64), pl.col("source_code").fill_null(""))


def mapping_sha256() -> str:
    return hashlib.sha256(CONCEPTS_FILE.read_bytes()).hexdigest()


def entry(domain: str, code: str) -> dict:
    """The row of one code (``KeyError`` when the file has none: a constant the ETL relies on)."""
    rows = concepts().filter((pl.col("source_domain") == domain) & (pl.col("source_code") == code))
    if rows.is_empty():
        raise KeyError(f"concepts.csv has no {domain} {code!r}")
    return rows.row(0, named=True)


def concept_id(domain: str, code: str) -> int:
    return int(entry(domain, code)["concept_id"])


def lookup(domain: str, codes: pl.Expr, column: str = "concept_code") -> pl.Expr:
    """``column`` of each code of ``codes`` in ``domain`` (null codes look up the empty code); codes the
    file lacks give :data:`NO_MATCHING_CONCEPT` for ``concept_id``, null otherwise."""
    table = concepts().filter(pl.col("source_domain") == domain)
    mapping = dict(zip(table["source_code"], table[column]))
    default = NO_MATCHING_CONCEPT if column == "concept_id" else None
    dtype = pl.Int64 if column == "concept_id" else pl.String
    return codes.fill_null("").replace_strict(mapping, default=default, return_dtype=dtype)
