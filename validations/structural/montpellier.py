"""Structural schema of ``clms_montpellier.csv`` (raw layout, before any parsing).

The reader builds a frame of the raw cells as strings, columns named by their normalised
header (``DATE_DIAG`` -> ``date_diag``), plus:

* ``_row``: the record number a data manager sees (header = 1);
* ``_patient_key``: the hospital number as the pseudonym sees it (trimmed, upper case), null
  when blank or a missing-value token;
* ``_fields``: how many fields the record had (a ragged line is a broken export).

Check names are the data-query rule names the reader emits.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

PATIENT_ID = "ipp"
PATIENT_KEY = "_patient_key"
ROW = "_row"
FIELDS = "_fields"

# Every column of the contract the reader uses (identifiers NOM/PRENOM are not needed).
REQUIRED = [
    "ipp", "ddn", "sexe", "immunodep", "date_diag", "site", "taille_cm", "presentation",
    "douleur", "cicatrice", "delai_mois", "grade", "diff", "mitoses", "necrose", "invasion",
    "ulceration", "ki67", "date_chir", "marge_rcp_cm", "marge_clin_cm", "marge_histo_cm",
    "statut_r", "rt_adj", "date_recidive", "date_meta", "sites_meta", "ttt_rechute",
    "statut_vital", "date_dc", "cause_dc", "date_dernieres_nouvelles",
]


def _present(data) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_not_null())


def _unique(data) -> pl.LazyFrame:
    # Blank ids are reported once, as missing_patient_id, not again as duplicates.
    key = pl.col(data.key)
    return data.lazyframe.select(key.is_null() | ~key.is_duplicated())


def _width(width: int):
    def check(data) -> pl.LazyFrame:  # null: not counted (unusual quoting), not a failure
        return data.lazyframe.select(pl.col(data.key).is_null() | (pl.col(data.key) == width))
    return check


def schema(width: int) -> pa.DataFrameSchema:
    """The raw layout of a file whose header has ``width`` fields."""
    columns = {name: pa.Column(pl.String, nullable=True, required=True) for name in REQUIRED}
    columns[PATIENT_KEY] = pa.Column(
        pl.String, nullable=True,
        checks=[pa.Check(_present, name="missing_patient_id"), pa.Check(_unique, name="duplicate_patient")],
    )
    columns[ROW] = pa.Column(pl.Int64, nullable=False)
    columns[FIELDS] = pa.Column(pl.Int64, nullable=True, checks=pa.Check(_width(width), name="wrong_field_count"))
    return pa.DataFrameSchema(columns, strict=False, name="montpellier_raw")


def failures(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """Pandera's failure cases (``check``, ``column``, ``index``, ``failure_case``); empty if valid."""
    try:
        schema(width).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pl.DataFrame(schema={"failure_case": pl.String, "schema_context": pl.String, "column": pl.String,
                                "check": pl.String, "check_number": pl.Int32, "index": pl.Int32})
