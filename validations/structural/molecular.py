"""Structural schema of the laboratory's ``manifest.csv`` (raw layout, before any parsing).

The reader builds a frame of the raw cells as strings (stripped; blank -> null), columns named
by the reader's key (``case_no``, ``centre``, ``local_id``, ``sample_id``, ``status``), plus:

* ``_row``: the record number a data manager sees (header = 1);
* ``_fields``: how many fields the record had (a ragged line is a broken export).

It checks what makes a manifest row impossible to attach to a patient or to its files, not cell
values (the reader decodes those cell by cell). Check names are the data-query rule names:

* ``missing_case_no`` / ``missing_centre`` / ``missing_patient_id`` / ``missing_sample_id`` /
  ``missing_status``;
* ``invalid_sample_id``: the accession names the files (``chas/<sample_id>.segments.txt``), so it
  must be a plain file-name stem (letters, digits, ``._-``; no path, no ``..``);
* ``duplicate_case`` / ``duplicate_sample``: every occurrence after the first fails, and the
  first too when the duplicated rows do not hold the same content. The same patient on two rows
  is legitimate (two samples), hence no patient-level uniqueness;
* ``wrong_field_count``.

The ChAS, VCF and Archer tables are checked by the reader row by row: they are small and many
(one per sample), and a schema run per file would cost more than the parse itself.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

ROW = "_row"
FIELDS = "_fields"
COLUMNS = ("case_no", "centre", "local_id", "sample_id", "status")
SAMPLE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

_CONTENT = pl.struct([pl.col(c) for c in COLUMNS]).hash()


def _duplicates(key: pl.Expr) -> pl.Expr:
    """True = fine. Among rows sharing ``key``: every occurrence after the first fails, and the
    first too when the duplicates do not hold the same content. Blank keys are not duplicates."""
    dup = key.is_not_null() & key.is_duplicated()
    later = ~key.is_first_distinct()
    differ = _CONTENT.n_unique().over(key) > 1
    return ~(dup & (later | differ))


def _check(name: str, expr: pl.Expr) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(expr.alias("ok")), name=name)


def schema(width: int) -> pa.DataFrameSchema:
    """The raw layout of a manifest whose header has ``width`` fields."""
    case_no = pl.col("case_no").str.replace(r"^0+(\d)", "$1")  # "007" and "7" are one case
    sample = pl.col("sample_id")
    usable = sample.str.contains(SAMPLE_ID) & ~sample.str.contains("..", literal=True)
    return pa.DataFrameSchema(
        {
            ROW: pa.Column(pl.Int64, nullable=False, unique=True),
            FIELDS: pa.Column(pl.Int64, nullable=True),
            **{c: pa.Column(pl.String, nullable=True, required=True) for c in COLUMNS},
        },
        checks=[
            _check("wrong_field_count", pl.col(FIELDS) == width),
            _check("missing_case_no", pl.col("case_no").is_not_null()),
            _check("missing_centre", pl.col("centre").is_not_null()),
            _check("missing_patient_id", pl.col("local_id").is_not_null()),
            _check("missing_sample_id", sample.is_not_null()),
            _check("missing_status", pl.col("status").is_not_null()),
            _check("invalid_sample_id", sample.is_null() | usable),
            _check("duplicate_case", _duplicates(case_no)),
            _check("duplicate_sample", _duplicates(sample)),
        ],
        strict=False,
        name="molecular_manifest_raw",
    )


def failures(frame: pl.DataFrame, width: int) -> pl.DataFrame:
    """Pandera's failure cases (``check``, ``column``, ``index``, ``failure_case``); empty if valid."""
    try:
        schema(width).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pl.DataFrame(schema={"failure_case": pl.String, "schema_context": pl.String, "column": pl.String,
                                "check": pl.String, "check_number": pl.Int32, "index": pl.Int32})
