"""Structural schema of ``nimes_dossiers.txt`` (raw layout, before any parsing).

The reader builds a frame of the raw cells as strings, one column per matched header named by
its normalised name (``Né(e) le`` -> ``ne_e_le``), plus:

* ``_row``: the line a data manager sees (header = 1);
* ``_patient_key``: the ``Dossier`` as the pseudonym sees it (trimmed, upper case), null when
  blank;
* ``_fields``: how many tab-separated fields the line had (a ragged line is a broken export or
  a tab typed into a cell).

It checks what makes a row impossible to attach to one patient, not cell values (the reader
decodes those). Check names are the data-query rule names the reader emits (all error level).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

PATIENT_KEY = "_patient_key"
ROW = "_row"
FIELDS = "_fields"

# Every column of the contract the reader uses; ``Patient`` (the name) is never needed.
REQUIRED = [
    "dossier", "ne_e_le", "sexe", "diagnostic", "siege", "taille", "aspect", "douleur",
    "cicatrice", "grade", "differenciation", "mitoses", "necrose", "infiltration", "ulceration",
    "ki67", "chirurgie", "marges", "exerese", "evolution", "dernieres_nouvelles",
]

_KEY = pl.col(PATIENT_KEY)
# Whole raw row except its position: two copies of a row hash alike.
_CONTENT = pl.struct(pl.all().exclude(ROW, FIELDS)).hash()


def _present(data) -> pl.LazyFrame:
    return data.lazyframe.select(_KEY.is_not_null())


def _unique(data) -> pl.LazyFrame:
    """True = fine. Every occurrence of a Dossier after the first fails, and the first too
    when the copies do not hold the same content. Blank ids are left to missing_patient_id."""
    dup = _KEY.is_not_null() & _KEY.is_duplicated()
    if not data.lazyframe.select(dup.any()).collect().item():
        return data.lazyframe.select(~dup)  # the usual case: skip hashing every row
    later = ~_KEY.is_first_distinct()
    differ = _CONTENT.n_unique().over(PATIENT_KEY) > 1
    return data.lazyframe.select(~(dup & (later | differ)))


def schema(width: int) -> pa.DataFrameSchema:
    """The raw layout of a file whose header has ``width`` fields."""
    columns = {name: pa.Column(pl.String, nullable=True, required=True) for name in REQUIRED}
    columns["patient"] = pa.Column(pl.String, nullable=True, required=False)
    columns[PATIENT_KEY] = pa.Column(
        pl.String, nullable=True,
        checks=[pa.Check(_present, name="missing_patient_id"), pa.Check(_unique, name="duplicate_patient")],
    )
    columns[ROW] = pa.Column(pl.Int64, nullable=False, unique=True, checks=pa.Check.ge(2))
    columns[FIELDS] = pa.Column(
        pl.Int64, nullable=False,
        checks=pa.Check(lambda data: data.lazyframe.select(pl.col(data.key) == width), name="wrong_field_count"),
    )
    return pa.DataFrameSchema(columns, strict=False, name="nimes_raw")


FAILURE_SCHEMA = {
    "failure_case": pl.String, "schema_context": pl.String, "column": pl.String,
    "check": pl.String, "check_number": pl.Int32, "index": pl.Int32,
}


def failures(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """Pandera's failure cases (``check``, ``column``, ``index``, ``failure_case``); empty if valid."""
    try:
        schema(width).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pl.DataFrame(schema=FAILURE_SCHEMA)
