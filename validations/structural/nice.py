"""Structural schemas of ``export_dermato_nice.xlsx`` (raw layout of each sheet, before parsing).

The reader builds one frame per sheet with the raw cells as strings (Excel numbers and dates
in their text form), columns named by their normalised header (``Marge clinique (mm)`` ->
``marge_clinique_mm``), plus ``_row`` (the Excel row number) and ``_patient_key`` (``N°
dossier`` as the pseudonym sees it: trimmed, upper case; null when blank or ``NR``).

Check names are the data-query rule names the reader emits. The operations and events sheets
are checked against the patients actually present in the Patients sheet (``orphan_row``).
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

PATIENT_ID = "no_dossier"
PATIENT_KEY = "_patient_key"
ROW = "_row"

PATIENTS = [
    "no_dossier", "date_de_naissance", "sexe", "immunodepression", "date_du_diagnostic",
    "localisation", "taille_mm", "presentation", "douleur", "sur_cicatrice",
    "delai_1ere_consultation_mois", "grade_fnclcc", "differenciation", "mitoses_10_champs",
    "necrose", "envahissement", "ulceration_histologique", "ki67",
]
SURGERIES = [
    "no_dossier", "date", "type", "marge_proposee_rcp_mm", "marge_clinique_mm",
    "marge_histologique_mm", "statut", "radiotherapie_adjuvante",
]
EVENTS = ["no_dossier", "date", "evenement", "site_metastatique", "cause_du_deces", "traitement"]
REQUIRED = {"patients": PATIENTS, "surgeries": SURGERIES, "events": EVENTS}

_EMPTY_FAILURES = {"failure_case": pl.String, "schema_context": pl.String, "column": pl.String,
                   "check": pl.String, "check_number": pl.Int32, "index": pl.Int32}


def _present(data) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_not_null())


def _unique(data) -> pl.LazyFrame:
    # A blank id is reported once, as missing_patient_id, not again as a duplicate.
    key = pl.col(data.key)
    return data.lazyframe.select(key.is_null() | ~key.is_duplicated())


def _known(keys: pl.Series):
    def check(data) -> pl.LazyFrame:
        key = pl.col(data.key)
        return data.lazyframe.select(key.is_null() | key.is_in(keys.implode()))
    return check


def schema(sheet: str, known_patients: pl.Series | None = None) -> pa.DataFrameSchema:
    """Schema of ``sheet`` (``patients`` / ``surgeries`` / ``events``)."""
    columns = {name: pa.Column(pl.String, nullable=True, required=True) for name in REQUIRED[sheet]}
    checks = [pa.Check(_present, name="missing_patient_id")]
    if sheet == "patients":
        checks.append(pa.Check(_unique, name="duplicate_patient"))
    elif known_patients is not None:
        checks.append(pa.Check(_known(known_patients), name="orphan_row"))
    columns[PATIENT_KEY] = pa.Column(pl.String, nullable=True, checks=checks)
    columns[ROW] = pa.Column(pl.Int64, nullable=False)
    return pa.DataFrameSchema(columns, strict=False, name=f"nice_raw_{sheet}")


def failures(frame: pl.DataFrame, sheet: str, known_patients: pl.Series | None = None) -> pl.DataFrame:
    """Pandera's failure cases (``check``, ``column``, ``index``, ``failure_case``); empty if valid."""
    try:
        schema(sheet, known_patients).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return errors.failure_cases
    return pl.DataFrame(schema=_EMPTY_FAILURES)
