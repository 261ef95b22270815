"""Nice workbooks nobody meant to write: a date no library can convert, hidden sheets, formulas
without their cached value."""

from __future__ import annotations

import datetime as dt

import duckdb
import openpyxl
import polars as pl
import pytest

from clms_etl.readers import engine
from clms_etl.readers.base import ImportFailure, ReadContext, read_guarded

from .conftest import KEY, accounting, delivery_dir, import_centre, run_import

nice = engine.reader("nice")  # the engine on clms_etl/data/formats/nice.toml

DIAGNOSIS = "Date du diagnostic"


def _patient_rows(path) -> int:
    """Patients read by openpyxl, independently of the reader: non-blank rows under the header."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = list(book["Patients"].iter_rows(min_row=2, values_only=True))
    finally:
        book.close()
    return sum(1 for r in rows if any(v not in (None, "") for v in r))


def _plant_date(path, row: int, value: float) -> str:
    """Write ``value`` as a date-formatted number in the Patients' diagnosis column; its column letter."""
    book = openpyxl.load_workbook(path)
    ws = book["Patients"]
    col = next(c.column_letter for c in ws[1] if c.value == DIAGNOSIS)
    ws[f"{col}{row}"].value = value
    ws[f"{col}{row}"].number_format = "DD/MM/YYYY"
    book.save(path)
    return col


def test_a_negative_date_that_panics_calamine_quarantines_its_row_naming_sheet_row_and_column(drop):
    path = delivery_dir(drop, "nice") / nice.FILE
    _plant_date(path, 5, -1e12)
    import fastexcel

    sheet = fastexcel.read_excel(path).load_sheet("Patients", header_row=None, skip_rows=1, schema_sample_rows=None)
    with pytest.raises(BaseException) as panic:  # the hostile file really crashes the native library
        sheet.to_arrow_with_errors()
    assert not isinstance(panic.value, Exception) and type(panic.value).__name__ == "PanicException"

    imported = import_centre(drop, "nice")
    assert imported.failure is None
    queries = imported.validated.queries.filter(pl.col("field") == DIAGNOSIS, pl.col("row") == 5)
    assert queries.filter(pl.col("severity") == "error").select("file", "sheet").unique().rows() == [
        (nice.FILE, "Patients")]
    quarantined = imported.validated.quarantined["patient"]
    assert quarantined.filter(pl.col("source_row") == 5).height == 1
    read_, accepted, held = accounting(imported)["patient"]
    assert read_ == _patient_rows(path) and held >= 1


def test_a_date_that_panics_calamine_runs_in_dagster_to_a_query_not_a_rust_trace(drop, tmp_path):
    _plant_date(delivery_dir(drop, "nice") / nice.FILE, 5, -1e12)
    result = run_import(drop, tmp_path, "nice")
    assert result.success
    assert "STEP_FAILURE" not in [e.event_type_value for e in result.all_events]
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        asked = con.sql("SELECT source_sheet, field, severity FROM data_query WHERE source_row = 5").fetchall()
    finally:
        con.close()
    assert ("Patients", DIAGNOSIS, "error") in asked


def test_a_native_panic_inside_a_guarded_read_is_an_import_failure_naming_file_sheet_and_cell(drop):
    folder = delivery_dir(drop, "nice")
    col = _plant_date(folder / nice.FILE, 7, -1e12)

    def calamine_only(ctx, path):  # a reader that trusts calamine alone
        import fastexcel

        sheet = fastexcel.read_excel(path).load_sheet("Patients", header_row=None, schema_sample_rows=None)
        sheet.to_arrow_with_errors()

    ctx = ReadContext("nice", folder, dt.date.fromisoformat(folder.name), KEY)
    with pytest.raises(ImportFailure) as failure:
        read_guarded(ctx, nice.FILE, calamine_only, locate=engine.locate_bad_cell)
    message = str(failure.value)
    assert nice.FILE in message and f"feuille Patients, cellule {col}7" in message
    assert "PanicException" in message and failure.value.file == nice.FILE


def test_ctrl_c_goes_through_the_read_guard(drop):
    folder = delivery_dir(drop, "nice")

    def interrupted(ctx, path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        read_guarded(ReadContext("nice", folder, dt.date.fromisoformat(folder.name), KEY), nice.FILE, interrupted)


def test_an_extra_hidden_sheet_is_reported_as_a_warning_naming_it(drop):
    path = delivery_dir(drop, "nice") / nice.FILE
    book = openpyxl.load_workbook(path)
    extra = book.create_sheet("Patients 2019")
    extra.append(["N° dossier", "Date du diagnostic"])
    extra.append(["12345678", "2019-03-02"])
    extra.sheet_state = "hidden"
    book.save(path)
    imported = import_centre(drop, "nice")
    asked = imported.validated.queries.filter(pl.col("sheet") == "Patients 2019")
    assert asked.select("file", "rule", "severity").rows() == [(nice.FILE, "unknown_sheet", "warning")]
    assert "masquée" in asked["message"][0]
    assert accounting(imported)["patient"][0] == _patient_rows(path)


def test_a_formula_without_cached_value_is_a_query_naming_sheet_row_and_column_not_a_silent_null(drop):
    path = delivery_dir(drop, "nice") / nice.FILE
    book = openpyxl.load_workbook(path)
    ws = book["Patients"]
    col = next(c.column_letter for c in ws[1] if c.value == "Taille (mm)")
    ws[f"{col}6"] = "=12+3"  # openpyxl stores the formula without computing it: no cached value
    book.save(path)
    imported = import_centre(drop, "nice")
    asked = imported.validated.queries.filter(pl.col("rule") == "formula_without_value")
    assert asked.select("file", "sheet", "row", "field", "severity").rows() == [
        (nice.FILE, "Patients", 6, "Taille (mm)", "error")]
    assert f"{col}6" in asked["message"][0]
    assert imported.validated.quarantined["patient"].filter(pl.col("source_row") == 6).height == 1
    read_, _, _ = accounting(imported)["patient"]
    assert read_ == _patient_rows(path)
