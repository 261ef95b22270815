"""The report's tables as an Excel workbook: a contents sheet, then one sheet per table.

Each table sheet: the caption in bold on row 1, the header on row 3 (bold, shaded, frozen),
the rows, then the note two rows below. Numbers stay numbers, dates are Excel dates, booleans
Excel booleans, so clinicians can sort and filter. Sheet names are the tables' keys, made
valid for Excel (31 characters, no ``[]:*?/\\``, unique).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import xlsxwriter

from clms_etl.report.html import DEFAULT_TITLE, display_value
from clms_etl.report.sections import ReportTable, Section

CONTENTS_SHEET = "contents"
MAX_COLUMN_WIDTH = 60
HEADER_ROW = 2  # zero-based: caption on row 0, blank row 1


def sheet_names(keys: Sequence[str]) -> list[str]:
    """Valid, unique Excel sheet names for ``keys`` (case-insensitively unique, as Excel wants)."""
    out: list[str] = []
    taken = {CONTENTS_SHEET}
    for key in keys:
        base = re.sub(r"[\[\]:*?/\\']", "_", key).strip() or "table"
        name, n = base[:31], 1
        while name.lower() in taken:
            n += 1
            name = f"{base[:31 - len(str(n)) - 1]}_{n}"
        taken.add(name.lower())
        out.append(name)
    return out


def write_workbook(sections: Sequence[Section], path: Path, *, title: str = DEFAULT_TITLE,
                   generated_at: dt.datetime | None = None) -> Path:
    """Write every table of ``sections`` (in order) to ``path``; returns ``path``."""
    tables: list[tuple[Section, ReportTable]] = [(s, t) for s in sections for t in s.tables]
    names = sheet_names([t.key for _, t in tables])
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                           "strings_to_urls": False})
    fmt = {
        "title": book.add_format({"bold": True, "font_size": 14}),
        "caption": book.add_format({"bold": True, "font_size": 12}),
        "header": book.add_format({"bold": True, "bg_color": "#E8EEF5", "border": 1, "text_wrap": True,
                                   "valign": "top"}),
        "cell": book.add_format({"border": 1, "valign": "top"}),
        # Table 1's headings and their indented items (ReportTable.row_levels)
        **{f"level{n}": book.add_format({"border": 1, "valign": "top", "indent": n, "bold": n == 0})
           for n in range(3)},
        "date": book.add_format({"border": 1, "valign": "top", "num_format": "yyyy-mm-dd"}),
        "datetime": book.add_format({"border": 1, "valign": "top", "num_format": "yyyy-mm-dd hh:mm"}),
        "note": book.add_format({"italic": True, "font_color": "#5F6B7A", "text_wrap": False}),
        "link": book.add_format({"font_color": "#2B5D8A", "underline": 1}),
    }
    contents = book.add_worksheet(CONTENTS_SHEET)
    contents.write(0, 0, title, fmt["title"])
    contents.write(1, 0, f"Generated {generated}", fmt["note"])
    contents.write_row(3, 0, ["Sheet", "Section", "Table"], fmt["header"])
    for i, ((section, table), name) in enumerate(zip(tables, names, strict=True)):
        contents.write_url(4 + i, 0, f"internal:'{name}'!A1", fmt["link"], string=name)
        contents.write(4 + i, 1, section.title, fmt["cell"])
        contents.write(4 + i, 2, table.caption, fmt["cell"])
    contents.set_column(0, 0, 24)
    contents.set_column(1, 1, 32)
    contents.set_column(2, 2, 80)
    for (_, table), name in zip(tables, names, strict=True):
        _write_table(book.add_worksheet(name), table, fmt)
    book.close()
    return path


def _write_table(sheet, table: ReportTable, fmt: dict) -> None:
    frame = table.frame
    sheet.write(0, 0, table.caption, fmt["caption"])
    sheet.write_row(HEADER_ROW, 0, frame.columns, fmt["header"])
    widths = [len(c) for c in frame.columns]
    levels = table.row_levels or (None,) * frame.height
    for r, (row, level) in enumerate(zip(frame.iter_rows(), levels, strict=True), start=HEADER_ROW + 1):
        for c, value in enumerate(row):
            _write_cell(sheet, r, c, value, fmt if c or level is None else {**fmt, "cell": fmt[f"level{level}"]})
            widths[c] = max(widths[c], len(display_value(value)))
    if table.note:
        sheet.write(HEADER_ROW + frame.height + 2, 0, table.note, fmt["note"])
    for c, width in enumerate(widths):
        sheet.set_column(c, c, min(width + 2, MAX_COLUMN_WIDTH))
    sheet.freeze_panes(HEADER_ROW + 1, 0)
    if frame.width:
        sheet.autofilter(HEADER_ROW, 0, HEADER_ROW + frame.height, frame.width - 1)


def _write_cell(sheet, row: int, col: int, value, fmt: dict) -> None:
    if value is None:
        sheet.write_blank(row, col, None, fmt["cell"])
    elif isinstance(value, bool):
        sheet.write_boolean(row, col, value, fmt["cell"])
    elif isinstance(value, int | float):
        if isinstance(value, float) and value != value:  # NaN: Excel has no such number
            sheet.write_blank(row, col, None, fmt["cell"])
        else:
            sheet.write_number(row, col, value, fmt["cell"])
    elif isinstance(value, dt.datetime):
        sheet.write_datetime(row, col, value.replace(tzinfo=None), fmt["datetime"])
    elif isinstance(value, dt.date):
        sheet.write_datetime(row, col, dt.datetime.combine(value, dt.time()), fmt["date"])
    else:
        sheet.write_string(row, col, str(value), fmt["cell"])
