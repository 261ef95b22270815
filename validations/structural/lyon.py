"""Structural schema of Lyon's REDCap raw records export (``CLMSLYON_DATA_<date>.csv``).

It runs over the raw string frame the reader builds: one column per matched field, named by
the reader's key (the REDCap field name, ``record_id`` for the first column whatever its
name), plus ``_row`` (the line a data manager sees, header = 1). It checks what makes rows
impossible to attach to a patient, not cell values (the reader decodes those cell by cell):

* every row has a record id; every base row (empty ``redcap_repeat_instrument``) an IPP;
* one base row per record id and per IPP (a duplicated patient row);
* repeat rows belong to a known instrument, carry a positive instance number, are not
  repeated, and point at a record that has a base row.

Each check's name maps to the data-query rule in :data:`RULES`; the reader turns
``SchemaErrors.failure_cases`` (its ``index`` is the row position in the frame) into queries.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

INSTRUMENTS = ("chirurgie", "evenement")
# The fields a Lyon export cannot do without (the reader's required columns).
REQUIRED = (
    "record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "ipp", "date_naissance",
    "sexe", "immunodep", "date_diag", "localisation", "taille_mm", "presentation", "douleur",
    "cicatrice", "delai_consult_mois", "grade_fnclcc", "differenciation", "mitoses_10hpf",
    "necrose", "invasion", "ulceration_histo", "ki67", "patient_complete", "chir_date",
    "chir_type", "marge_rcp_mm", "marge_clin_mm", "marge_histo_mm", "statut_r", "rt_adj",
    "evt_date", "evt_type", "deces_cause", "evt_traitement",
)

_BASE = pl.col("redcap_repeat_instrument").is_null()


def _duplicates(name: str, key: pl.Expr) -> pa.Check:
    """Among base rows sharing ``key``: every occurrence after the first fails, and the first
    too when the duplicates do not hold the same content. Contents are hashed only when there
    are duplicates, and only theirs (hashing a million-row export costs seconds)."""

    def check(data) -> pl.LazyFrame:
        k = data.lazyframe.select(pl.when(_BASE).then(key).alias("_k")).collect()["_k"]
        dup = k.is_not_null() & k.is_duplicated()
        if not dup.any():
            return pl.LazyFrame({"ok": pl.repeat(True, k.len(), eager=True)})
        rows = dup.arg_true()
        content = (
            data.lazyframe.with_row_index("_i").filter(pl.col("_i").is_in(rows.implode()))
            .select(pl.struct(pl.all().exclude("_row", "_i")).hash().alias("_h"))
            .collect()["_h"]
        )
        groups = pl.DataFrame({"_i": rows, "_k": k.gather(rows), "_h": content})
        differ = groups.filter(pl.col("_h").n_unique().over("_k") > 1)["_i"]
        later = ~k.is_first_distinct()
        bad = dup & (later | pl.int_range(k.len(), eager=True).is_in(differ.implode()))
        return pl.LazyFrame({"ok": ~bad})

    return pa.Check(check, name=name)


def _check(name: str, expr: pl.Expr) -> pa.Check:
    return pa.Check(lambda data: data.lazyframe.select(expr.alias("ok")), name=name)


_IPP = pl.col("ipp").str.strip_chars().str.to_uppercase()
_INSTANCE_OK = pl.col("redcap_repeat_instance").str.contains(r"^\s*0*[1-9][0-9]{0,8}\s*$").fill_null(False)

SCHEMA = pa.DataFrameSchema(
    {
        "_row": pa.Column(pl.Int64, nullable=False),
        "record_id": pa.Column(pl.String, nullable=False),
        "redcap_repeat_instrument": pa.Column(pl.String, nullable=True),
        "redcap_repeat_instance": pa.Column(pl.String, nullable=True),
        **{c: pa.Column(pl.String, nullable=True) for c in REQUIRED if c not in (
            "record_id", "redcap_repeat_instrument", "redcap_repeat_instance")},
        "mitoses_classe": pa.Column(pl.String, nullable=True, required=False),
    },
    checks=[
        _check("unknown_repeat_instrument", _BASE | pl.col("redcap_repeat_instrument").is_in(INSTRUMENTS)),
        _check("missing_ipp", ~_BASE | (_IPP.fill_null("") != "")),
        _duplicates("duplicate_record", pl.col("record_id")),
        _duplicates("duplicate_ipp", pl.when(_IPP != "").then(_IPP)),
        _check(
            "orphan_repeat_row",
            _BASE | pl.col("record_id").is_null()
            | pl.col("record_id").is_in(pl.col("record_id").filter(_BASE).implode()),
        ),
        _check(
            "bad_repeat_instance",
            pl.when(_BASE).then(pl.col("redcap_repeat_instance").is_null()).otherwise(_INSTANCE_OK),
        ),
        _check(
            "duplicate_repeat_instance",
            _BASE
            | pl.col("record_id").is_null()
            | pl.struct(
                "record_id", "redcap_repeat_instrument",
                pl.col("redcap_repeat_instance").str.strip_chars().str.strip_chars_start("0"),
            ).is_first_distinct(),
        ),
    ],
    strict=False,
    name="lyon_redcap_records",
)

# check name -> data-query rule (all error level: the row cannot be attached safely)
RULES = {
    "not_nullable": "missing_patient_id",  # on record_id
    "missing_ipp": "missing_patient_id",
    "duplicate_record": "duplicate_patient",
    "duplicate_ipp": "duplicate_patient",
    "orphan_repeat_row": "orphan_row",
    "unknown_repeat_instrument": "unknown_repeat_instrument",
    "bad_repeat_instance": "bad_repeat_instance",
    "duplicate_repeat_instance": "duplicate_repeat_instance",
}
