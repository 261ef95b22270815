"""The text of cells exactly as the centre's file holds them, for « Valeur reçue ».

Validation sees canonical values (a Nice margin of 200 mm is 20.0 cm there, a Lyon
``2007-07-31`` a date): its queries must show the data manager what is in the file instead.
:func:`raw_cells` reads the cells a query list needs back from the delivery: the workbook's cell
(a number as typed, a date as Excel shows it in French), or the field of a delimited text file,
decoded and split as the engine reads it: the format's declared encoding, separator and quoting
(a file of an undeclared layout: UTF-8 else Windows-1252, the separator its header uses most),
header = row 1.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import polars as pl

from clms_etl.formats import FileLayout
from clms_etl.readers import engine
from clms_etl.readers.base import ReadContext

RAW_SCHEMA = {"file": pl.String, "sheet": pl.String, "row": pl.Int64, "field": pl.String, "raw": pl.String}
SEPARATORS = ";\t,|"


def raw_cells(folder: Path, wanted: pl.DataFrame, layout: FileLayout | None = None) -> pl.DataFrame:
    """(file, sheet, row, field, raw) for the cells of ``wanted`` (file, sheet, row, field) that
    ``folder`` holds; a cell it cannot find (another layout, a file not delimited text nor a
    workbook) is simply not returned. ``layout``: the centre's declared ``[file]``."""
    found = []
    for (file, sheet), cells in wanted.unique().group_by("file", "sheet", maintain_order=True):
        path = Path(folder) / file
        if not path.is_file():
            continue
        want = {(r, f) for r, f in cells.select("row", "field").iter_rows()}
        rows = {1} | {r for r, _ in want if r is not None}  # (the header and the queried records only)
        try:
            if path.suffix.lower() in (".xlsx", ".xlsm"):
                table = _sheet_rows(path, sheet, rows)
            else:
                text = engine.decode(ReadContext("", folder, None, b""), layout or FileLayout(file), path.read_bytes())
                table = _text_rows(text, rows, layout)
        except Exception:  # a courtesy lookup: a file it cannot read keeps the canonical value shown
            continue
        header = [str(h).strip() if h is not None else "" for h in table.get(1, ())]
        for row, field in want:
            if row is None or field not in header or row < 2 or row not in table:
                continue
            values, j = table[row], header.index(field)
            if j < len(values) and values[j] not in (None, ""):
                found.append((file, sheet, row, field, _shown(values[j])))
    return pl.DataFrame(found, schema=RAW_SCHEMA, orient="row")


def _sheet_rows(path: Path, sheet: str | None, rows: set[int]) -> dict[int, tuple]:
    """{row number: cell values} of the sheet's ``rows`` that it holds (openpyxl's values)."""
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet not in book.sheetnames:
            return {}
        worksheet = book[sheet]
        _parse_only(worksheet, rows)
        return {i: values for i, values in enumerate(worksheet.iter_rows(values_only=True), start=1) if i in rows}
    finally:
        book.close()


# A row's start tag in a sheet's XML (not <rowBreaks>), its number, the end of the rows.
_ROW_TAG = re.compile(rb"<(?:\w+:)?row(?=[\s/>])[^>]*>")
_ROW_NUMBER = re.compile(rb'\sr="(\d+)"')
_ROWS_END = re.compile(rb"</(?:\w+:)?sheetData>")


def _parse_only(worksheet, rows: set[int]) -> None:
    """Make a read-only ``worksheet`` parse only its ``rows``: openpyxl turns every cell of every
    row into Python values (seconds for a 25,000-patient sheet when a few hundred queries need
    a cell), so the rows no query needs are cut from the XML it reads. Each row keeps its number
    (``r``), so the others come back as empty rows, the kept ones as before; a sheet whose rows are
    not all numbered (openpyxl would count them) is parsed whole."""
    try:
        with worksheet._get_source() as source:
            data = source.read()
    except AttributeError:  # (another openpyxl: the whole sheet is parsed)
        return
    starts = [(m.start(), _ROW_NUMBER.search(m[0])) for m in _ROW_TAG.finditer(data)]
    end = _ROWS_END.search(data, starts[-1][0]) if starts else None
    if end is None or not all(number for _, number in starts):
        return
    bounds = [start for start, _ in starts] + [end.start()]  # (a row ends where the next begins)
    kept = b"".join(data[bounds[k]:bounds[k + 1]] for k, (_, number) in enumerate(starts) if int(number[1]) in rows)
    xml = data[:bounds[0]] + kept + data[bounds[-1]:]
    worksheet._get_source = lambda: io.BytesIO(xml)


def _text_rows(text: str, rows: set[int], layout: FileLayout | None = None) -> dict[int, list[str]]:
    """{record number: fields} of the delimited text's ``rows`` that it holds."""
    # the csv module, not polars: it keeps every field as the text typed, quotes and all
    separator = layout.separator if layout else max(SEPARATORS, key=text.split("\n", 1)[0].count)
    unquoted = layout is not None and not layout.quoting  # (a double quote is then a typed character)
    if unquoted or '"' not in text:  # a record is a line, its fields split as csv splits them
        lines = _lines(text)
        if lines[-1] == "":  # (after the last line end, or an empty file: no record)
            lines.pop()
        if unquoted or max(map(len, lines), default=0) <= csv.field_size_limit():  # (else the csv module refuses it)
            return {i: lines[i - 1].split(separator) if lines[i - 1] else [] for i in rows if i <= len(lines)}
    records = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    return {i: record for i, record in enumerate(records, start=1) if i in rows}


_LINE_END = re.compile(r"\r\n|\r|\n")  # the line ends of io.StringIO(newline=""), which the csv module reads


def _lines(text: str) -> list[str]:
    """``_LINE_END.split(text)``; one kind of line end, as usual, by str.split (several times faster)."""
    cr, lf = text.count("\r"), text.count("\n")
    if not cr or not lf:
        return text.split("\n" if lf else "\r")
    if cr == lf == text.count("\r\n"):
        return text.split("\r\n")
    return _LINE_END.split(text)


def _shown(value) -> str:
    """A workbook cell the way a French Excel shows it; a text cell as typed."""
    if isinstance(value, bool):
        return "VRAI" if value else "FAUX"
    if isinstance(value, dt.date):  # (a datetime too: its time unless midnight)
        timed = isinstance(value, dt.datetime) and value.time() != dt.time()
        return value.strftime("%d/%m/%Y %H:%M" if timed else "%d/%m/%Y")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value).replace(".", ",")
    return str(value)
