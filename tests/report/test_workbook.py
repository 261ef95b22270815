"""The Excel workbook: every table of the report on its own sheet, readable by openpyxl."""

from __future__ import annotations

import datetime as dt

import polars as pl
from openpyxl import load_workbook

from clms_etl.report.sections import ReportTable, Section
from clms_etl.report.workbook import CONTENTS_SHEET, HEADER_ROW, sheet_names, write_workbook


def _cell(value):
    return value.date() if isinstance(value, dt.datetime) and value.time() == dt.time() else value


def _width(sheet, column: int) -> float:
    # openpyxl groups adjacent columns of equal width into one dimension (min..max)
    return next(d.width for d in sheet.column_dimensions.values() if d.min <= column <= d.max)


def test_every_table_of_the_report_is_a_sheet_with_caption_header_rows_and_note(built_report):
    book = load_workbook(built_report.workbook)
    tables = [t for s in built_report.sections for t in s.tables]
    assert book.sheetnames == [CONTENTS_SHEET] + [t.key for t in tables]
    for table in tables:
        sheet = book[table.key]
        assert sheet["A1"].value == table.caption and sheet["A1"].font.b
        header = [c.value for c in sheet[HEADER_ROW + 1]]
        assert header == table.frame.columns
        assert all(c.font.b for c in sheet[HEADER_ROW + 1])
        rows = [[_cell(c.value) for c in sheet[HEADER_ROW + 2 + i]] for i in range(table.frame.height)]
        assert rows == [list(r) for r in table.frame.iter_rows()], table.key
        note_row = HEADER_ROW + 1 + table.frame.height + 2
        assert (sheet.cell(note_row, 1).value or "") == table.note
        assert sheet.freeze_panes == f"A{HEADER_ROW + 2}"
        assert all(_width(sheet, i + 1) >= len(name) for i, name in enumerate(header))


def test_numbers_stay_numbers_and_dates_stay_dates(tmp_path):
    frame = pl.DataFrame({"n": [1, 2], "x": [0.5, None], "d": [dt.date(2020, 1, 2), None], "b": [True, False],
                          "s": ["=1+1", "a"]})
    path = write_workbook([Section("s", "S", tables=(ReportTable("t", "T", frame),))], tmp_path / "w.xlsx")
    sheet = load_workbook(path)["t"]
    row = [c.value for c in sheet[HEADER_ROW + 2]]
    assert row == [1, 0.5, dt.datetime(2020, 1, 2), True, "=1+1"]
    assert sheet.cell(HEADER_ROW + 2, 5).data_type == "s"  # a formula-looking text is not a formula
    assert sheet.cell(HEADER_ROW + 2, 3).number_format == "yyyy-mm-dd"
    assert [c.value for c in sheet[HEADER_ROW + 3]][:3] == [2, None, None]


def test_sheet_names_are_valid_and_unique_for_any_keys():
    keys = ["table1", "Table1", "a/b:c*d?e[f]", "x" * 40, "x" * 40]
    names = sheet_names(keys)
    assert len({n.lower() for n in names}) == len(keys)
    assert all(len(n) <= 31 and not set(n) & set("[]:*?/\\") for n in names)
    assert names[0] == "table1" and names[1] != "Table1"


def test_the_contents_sheet_links_every_table(built_report):
    sheet = load_workbook(built_report.workbook)[CONTENTS_SHEET]
    tables = [t for s in built_report.sections for t in s.tables]
    listed = [(sheet.cell(5 + i, 1).value, sheet.cell(5 + i, 3).value) for i in range(len(tables))]
    assert listed == [(t.key, t.caption) for t in tables]
    assert sheet.cell(5, 1).hyperlink is not None


def test_table_1_items_are_indented_by_the_cell_format_not_by_spaces(twin_report):
    sheet = load_workbook(twin_report.workbook)["table1"]
    cells = {c.value: c for row in sheet.iter_rows(min_col=1, max_col=1) for c in row if isinstance(c.value, str)}
    assert "Head and neck" in cells and not any(v.startswith(" ") for v in cells)
    assert cells["Head and neck"].alignment.indent == 1 and not cells["Head and neck"].font.b
    assert cells["Primary site"].alignment.indent == 0 and cells["Primary site"].font.b
