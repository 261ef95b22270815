"""Hostile files that only one format can carry: merged cells and Excel serial dates in a
workbook, a REDCap dictionary that does not match its records, a malformed VCF, swapped ChAS
columns. Each is read with every row accounted for, and each problem is a query naming the
file, or the import stops with a message naming the file — never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from clms_etl.centres import load_registry
from clms_etl.deliveries import open_delivery
from clms_etl.centre_import import CentreImport, read_and_validate
from tests.conftest import TWIN_DATE
from tests.warehouse.helpers import TEST_KEY

REGISTRY = load_registry()


def _copy(twin_drop: Path, tmp: Path, centre: str) -> tuple[Path, Path]:
    drop = tmp / "drop"
    shutil.copytree(twin_drop / centre, drop / centre)
    return drop, drop / centre / TWIN_DATE.isoformat()


def _import(drop: Path, centre: str) -> CentreImport:
    return read_and_validate(REGISTRY[centre], open_delivery(drop, centre, TWIN_DATE), TEST_KEY)


def _queries(imported: CentreImport, file: str) -> pl.DataFrame:
    assert imported.failure is None, imported.failure
    imported.validated.assert_balanced()
    return imported.validated.queries.filter(pl.col("file").str.contains(file, literal=True))


def test_merged_cells_in_the_nice_workbook_are_read_or_queried_never_lost(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "nice")
    path = folder / "export_dermato_nice.xlsx"
    book = openpyxl.load_workbook(path)
    book["Patients"].merge_cells("E2:F3")  # Sexe / Immunodépression of two patients merged
    book.save(path)
    imported = _import(drop, "nice")
    acc = {r["table"]: r for r in imported.validated.accounting.iter_rows(named=True)}
    assert acc["patient"]["rows_read"] == 24
    assert _queries(imported, path.name).filter(pl.col("row").is_in([2, 3])).height >= 1


def test_excel_serial_numbers_in_nice_date_cells_are_read_as_dates(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "nice")
    path = folder / "export_dermato_nice.xlsx"
    book = openpyxl.load_workbook(path)
    sheet = book["Patients"]
    col = {c.value: c.column for c in sheet[1]}["Date du diagnostic"]
    cell = sheet.cell(2, col)
    expected = cell.value.date()
    cell.value = (expected - __import__("datetime").date(1899, 12, 30)).days  # the serial, shown as a number
    cell.number_format = "0"
    book.save(path)
    imported = _import(drop, "nice")
    _queries(imported, path.name)
    diagnosed = pl.concat([imported.validated.accepted["patient"], imported.validated.quarantined["patient"]],
                          how="diagonal_relaxed")["diagnosis_date"].to_list()
    assert expected in diagnosed


def test_a_redcap_dictionary_that_lacks_a_coded_field_stops_lyon_with_the_field_named(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "lyon")
    path = folder / "CLMSLYON_DataDictionary.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("sexe,")), encoding="utf-8")
    imported = _import(drop, "lyon")
    if imported.failure is not None:
        assert "sexe" in imported.failure and path.name in imported.failure
    else:
        assert _queries(imported, path.name.split("_")[0]).filter(pl.col("field") == "sexe").height >= 1


def test_a_redcap_choice_renumbered_without_the_records_is_a_query_per_cell(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "lyon")
    path = folder / "CLMSLYON_DataDictionary.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("1, Homme | 2, Femme", "1, Homme | 3, Femme"), encoding="utf-8")
    imported = _import(drop, "lyon")
    queried = _queries(imported, "CLMSLYON_DATA").filter(pl.col("field") == "sexe")
    assert queried.height >= 1 and set(queried["rule"]) == {"unknown_code"}


@pytest.mark.parametrize("damage", ["no_header_line", "seven_columns", "pos_not_a_number", "chrom_empty"])
def test_a_malformed_vcf_is_a_query_naming_the_file_or_a_clear_stop(twin_drop, tmp_path, damage):
    drop, folder = _copy(twin_drop, tmp_path, "molecular")
    path = sorted((folder / "ngs").glob("*.vcf"))[0]
    lines = path.read_text(encoding="utf-8").splitlines()
    body = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    if damage == "no_header_line":
        lines = [line for line in lines if not line.startswith("#CHROM")]
    elif body:
        fields = lines[body[0]].split("\t")
        if damage == "seven_columns":
            fields = fields[:7]
        elif damage == "pos_not_a_number":
            fields[1] = "12a45"
        else:
            fields[0] = ""
        lines[body[0]] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    imported = _import(drop, "molecular")
    if imported.failure is not None:
        assert path.name in imported.failure
    elif body or damage == "no_header_line":
        assert _queries(imported, path.name).height >= 1


def test_swapped_chas_columns_are_read_by_name_not_position(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "molecular")
    reference = _import(drop, "molecular").validated.accepted["cn_segment"]
    for path in (folder / "chas").glob("*.segments.txt"):
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8-sig").splitlines()]
        h = next(k for k, r in enumerate(rows) if "CN State" in r)  # after ChAS's # comment lines
        i, j = rows[h].index("CN State"), rows[h].index("Type")
        for r in rows[h:]:
            if len(r) > max(i, j):
                r[i], r[j] = r[j], r[i]
        path.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    swapped = _import(drop, "molecular").validated.accepted["cn_segment"]
    drop_cols = [c for c in ("row_id", "source_file", "source_row") if c in reference.columns]
    assert swapped.drop(drop_cols).sort(swapped.drop(drop_cols).columns).equals(
        reference.drop(drop_cols).sort(reference.drop(drop_cols).columns))
