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


def revalidate(conn, vocabulary_schema: str) -> pl.DataFrame:
    """Check ``concepts.csv`` against the OHDSI vocabulary tables of a site (schema ``vocabulary_schema``
    of the connection ``conn``, as the CDM DDL creates them and Athena fills them).

    One row per mapping entry with a concept id or a concept code: ``status`` is ``ok`` (exists, standard,
    valid, same name), ``missing``, ``not standard``, ``invalid`` or ``renamed`` (the vocabulary's name in
    ``vocabulary_name``) for pinned ids; for entries at 0 with a code in a vocabulary (the ICDO3
    conditions), ``suggested_concept_id`` is the standard concept the code ``Maps to`` (``status``
    ``suggestion``, or ``no code`` when the vocabulary lacks the code).
    """
    import sqlalchemy as sa

    from clms_etl.omop.cdm import qualified

    s = qualified(conn, vocabulary_schema)
    rows = []
    for entry in concepts().iter_rows(named=True):
        cid, code, vocabulary = entry["concept_id"], entry["concept_code"], entry["vocabulary_id"]
        out = {"source_domain": entry["source_domain"], "source_code": entry["source_code"], "concept_id": cid,
               "concept_name": entry["concept_name"], "status": None, "vocabulary_name": None,
               "suggested_concept_id": None}
        if cid != NO_MATCHING_CONCEPT:
            found = conn.execute(sa.text(f"SELECT concept_name, standard_concept, invalid_reason FROM {s}.concept "
                                         "WHERE concept_id = :id"), {"id": cid}).all()
            found = found[0] if found else None
            if found is None:
                out["status"] = "missing"
            else:
                out["vocabulary_name"] = found[0]
                out["status"] = ("invalid" if found[2] else "not standard" if found[1] != "S"
                                 else "renamed" if found[0] != entry["concept_name"] else "ok")
        elif code and vocabulary and entry["source_domain"] != "topography":
            target = conn.execute(sa.text(
                f"SELECT t.concept_id, t.concept_name FROM {s}.concept c JOIN {s}.concept_relationship r "
                f"ON r.concept_id_1 = c.concept_id AND r.relationship_id = 'Maps to' AND r.invalid_reason IS NULL "
                f"JOIN {s}.concept t ON t.concept_id = r.concept_id_2 AND t.standard_concept = 'S' "
                "WHERE c.vocabulary_id = :v AND c.concept_code = :code"), {"v": vocabulary, "code": code}).all()
            target = target[0] if target else None
            out["status"] = "no code" if target is None else "suggestion"
            if target is not None:
                out["suggested_concept_id"], out["vocabulary_name"] = target
        else:
            continue
        rows.append(out)
    return pl.DataFrame(rows, schema={"source_domain": pl.String, "source_code": pl.String, "concept_id": pl.Int64,
                                      "concept_name": pl.String, "status": pl.String, "vocabulary_name": pl.String,
                                      "suggested_concept_id": pl.Int64})
