"""The text of cells exactly as the centre's file holds them, for « Valeur reçue ».

Validation sees canonical values (a Nice margin of 200 mm is 20.0 cm there, a Lyon
``2007-07-31`` a date): its queries must show the data manager what is in the file instead.
:func:`raw_cells` reads the cells a query list needs back from the delivery: the workbook's cell
(a number as typed, a date as Excel shows it in French), or the field of a delimited text file
(the file's own encoding and separator, header = row 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import polars as pl

RAW_SCHEMA = {"file": pl.String, "sheet": pl.String, "row": pl.Int64, "field": pl.String, "raw": pl.String}
SEPARATORS = ";\t,|"


def raw_cells(folder: Path, wanted: pl.DataFrame) -> pl.DataFrame:
    """(file, sheet, row, field, raw) for the cells of ``wanted`` (file, sheet, row, field) that
    ``folder`` holds; a cell it cannot find (another layout, a file not delimited text nor a
    workbook) is simply not returned."""
    found = []
    for (file, sheet), cells in wanted.unique().group_by("file", "sheet", maintain_order=True):
        path = Path(folder) / file
        if not path.is_file():
            continue
        want = {(r, f) for r, f in cells.select("row", "field").iter_rows()}
        try:
            if path.suffix.lower() in (".xlsx", ".xlsm"):
                table = _sheet_rows(path, sheet)
            else:
                table = _text_rows(path.read_bytes())
        except Exception:  # a courtesy lookup: a file it cannot read keeps the canonical value shown
            continue
        header = [str(h).strip() if h is not None else "" for h in (table[0] if table else [])]
        for row, field in want:
            if row is None or field not in header or not 2 <= row <= len(table):
                continue
            values = table[row - 1]
            j = header.index(field)
            if j < len(values) and values[j] not in (None, ""):
                found.append((file, sheet, row, field, _shown(values[j])))
    return pl.DataFrame(found, schema=RAW_SCHEMA, orient="row")


def _sheet_rows(path: Path, sheet: str | None) -> list[tuple]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        return list(book[sheet].iter_rows(values_only=True)) if sheet in book.sheetnames else []
    finally:
        book.close()


def _text_rows(data: bytes) -> list[list[str]]:
    # The csv module, not polars: it keeps every field as the text typed, quotes and all.
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    first = text.split("\n", 1)[0]
    separator = max(SEPARATORS, key=first.count)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=separator))


def _shown(value) -> str:
    """A workbook cell the way a French Excel shows it; a text cell as typed."""
    if isinstance(value, bool):
        return "VRAI" if value else "FAUX"
    if isinstance(value, dt.datetime):
        return value.strftime("%d/%m/%Y") if value.time() == dt.time() else value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value).replace(".", ",")
    return str(value)
