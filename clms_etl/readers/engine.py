"""The one reading engine: any declared tabular format (:mod:`clms_etl.formats`).

A delivery goes through the same steps whatever the centre:

1. the file to a frame of raw strings — text (encoding checked, quoting and line ends told apart
   from typed quotes) by polars' CSV reader, each declared sheet of a workbook by calamine
   (openpyxl when it panics; merged cells, formulas without value from the XML);
2. the header matched to the declared columns (aliases, case and accents ignored); the
   structural checks the declaration implies (required columns, missing or duplicate patient
   key, wrong field count), here in the library;
3. every declared column parsed in one columnar polars pass; the cells the fast path cannot
   read (odd spacing, partial dates, unknown codes...) go one by one through
   :class:`~clms_etl.readers.cells.Cells`, which decides their value and raises the query —
   the same result as a per-cell parse, at a fraction of the cost on a clean file;
4. the canonical rows: one per record for ``patient``, ``tumour``, ``surgery``, one per source row
   of a sheet declared for ``surgery`` or ``event``; events written as columns become event rows
   (:mod:`clms_etl.readers.event_columns`, the hook for what is not tabular).

Choices the contracts leave open, the same for every centre:

* A header-only file is an :class:`ImportFailure`: a nightly full dump with no patient is a
  broken export, and importing it would empty the centre in the warehouse.
* A text file valid as UTF-8 with non-ASCII bytes when the contract says otherwise was saved in
  the wrong encoding: read as UTF-8 with a ``wrong_encoding`` warning; undecodable bytes become
  U+FFFD with an ``encoding_error`` warning.
* A text file declared with a line end that does not end with one was cut: :class:`ImportFailure`.
  A short or long record is a ``wrong_field_count`` error; its cells are read, shifted, and the
  identifier screen (``clms_etl/identifiers.py``) quarantines them whole, masked.
* A blank record is skipped (``empty_row``); a double quote that is not CSV quoting is read as a
  character of its cell (``quote_in_cell``); a sheet the declaration does not name, ``unknown_sheet``.
* The declared missing-value tokens are missing; ``?``, ``-`` or ``inconnu`` in a coded, number
  or date column are reported (``unknown_code``...).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from clms_etl import model
from clms_etl.data_queries import IDENTIFIER_MASK
from clms_etl.keys import pseudonym_column
from clms_etl import formats as decl
from clms_etl.readers import event_columns, free_text
from clms_etl.readers.base import (READERS, ColumnSpec, ImportFailure, ReadContext, ReadResult, field_counts,
                                   is_foreign_panic, match_columns, normalise_name, number_within, read_guarded,
                                   repeated_rows, say)
from clms_etl.readers.cells import MAX_TEXT, MISSING, Cells, fold, is_missing

INT32_MAX = 2**31 - 1
FIELDS = "_fields"  # fields counted in each record of a text file


class DeclaredReader:
    """The reader of one declared format (what :attr:`clms_etl.centres.Centre.reader` gives)."""

    def __init__(self, declaration: decl.Declaration):
        self.declaration = declaration
        self.FILE = declaration.file.name
        # queries of validation name the centre's own columns (clms_etl.centre_import)
        self.SOURCE_COLUMNS = declaration.source_columns

    def read(self, ctx: ReadContext) -> ReadResult:
        return read_guarded(ctx, self.declaration.file.name, lambda c, path: read_file(c, path, self.declaration),
                            locate_bad_cell if self.declaration.file.spreadsheet else None)


def locate_bad_cell(path: Path) -> str | None:
    """Where a workbook that crashed a reader holds a cell no library decodes (a date-formatted
    number outside Excel's calendar): openpyxl names it in a warning instead of failing."""
    import warnings

    import openpyxl

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        for ws in book.worksheets:
            ws.reset_dimensions()
            for _ in ws.iter_rows(values_only=True):
                if cell := next((re.search(r"\bCell ([A-Z]+[0-9]+)", str(w.message)) for w in caught), None):
                    book.close()
                    return f"feuille {ws.title}, cellule {cell[1]}"
        book.close()
    return None


def reader(fmt: str) -> DeclaredReader | None:
    """The engine's reader of the packaged format ``fmt`` when a declaration exists for it, else None."""
    path = decl.find(fmt)
    return None if path is None else DeclaredReader(decl.load(path))


# --- the file to raw strings ------------------------------------------------------------------

# control bytes that never occur in a text file (tab, line feed … carriage return do)
_CONTROL_BYTES = bytes(b for b in range(32) if b < 9 or 13 < b)
_CP1252_SPECIFIC = bytes(range(0x80, 0xA0))  # where cp1252 and latin-1 differ
# a zip (xlsx), a PDF, an OLE (xls) document, gzip, bzip2: never a text export
_BINARY_MAGIC = (b"PK\x03\x04", b"%PDF", b"\xd0\xcf\x11\xe0", b"\x1f\x8b", b"BZh")
STOP = "; import de ce centre arrêté."


def decode(ctx: ReadContext, layout: decl.FileLayout, data: bytes, stop: str = STOP) -> str:
    """Bytes -> text in the declared encoding; UTF-8/UTF-16 (with a warning) when saved so. A file
    that is no text raises :class:`ImportFailure` with its ``rule`` (``empty_file``, ``binary_file``);
    ``stop`` ends its message (an adapter refusing one file, not the delivery, says so)."""
    name = layout.name
    if not data or (len(data) < 4096 and not data.strip()):
        raise ImportFailure(f"{name}: fichier vide{stop}", name, rule="empty_file")
    utf8 = layout.encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        _wrong_encoding(ctx, layout, "UTF-16")
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ImportFailure(f"{name}: fichier UTF-16 illisible{stop}", name, rule="binary_file") from exc
    head = data[:65536]
    if (b"\x00" in head or head.startswith(_BINARY_MAGIC)
            or len(head) - len(head.translate(None, _CONTROL_BYTES)) > len(head) // 100):
        raise ImportFailure(f"{name}: fichier binaire, pas un texte{stop}", name, rule="binary_file")
    if data.startswith(b"\xef\xbb\xbf"):
        if not utf8:
            _wrong_encoding(ctx, layout, "UTF-8")
        return data[3:].decode("utf-8", errors="replace")
    # a single-byte encoding's text with accents is (practically) never valid UTF-8
    if not utf8 and not data.isascii() and (text := _saved_as(ctx, layout, data, "utf-8", "UTF-8")) is not None:
        return text
    if layout.encoding.lower() == "cp1252" and len(data.translate(None, _CP1252_SPECIFIC)) == len(data):
        return data.decode("latin-1")  # same characters as cp1252 outside 0x80-0x9F, much faster
    try:
        return data.decode(layout.encoding)
    except UnicodeDecodeError:
        # a UTF-8 contract's file saved on Windows: cp1252 (every byte but 5 defined)
        if utf8 and (text := _saved_as(ctx, layout, data, "cp1252", "Windows-1252")) is not None:
            return text
        text = data.decode(layout.encoding, errors="replace")
        ctx.query(file=name, rule="encoding_error",
                  message=f"{text.count(chr(0xFFFD))} octet(s) non définis en {layout.encoding} remplacés par « \ufffd ».")
        return text


def _saved_as(ctx: ReadContext, layout: decl.FileLayout, data: bytes, encoding: str, found: str) -> str | None:
    """``data`` read as ``encoding`` with a ``wrong_encoding`` warning, or None when it is not that."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    _wrong_encoding(ctx, layout, found)
    return text


def _wrong_encoding(ctx: ReadContext, layout: decl.FileLayout, found: str) -> None:
    ctx.query(file=layout.name, rule="wrong_encoding", value=found,
              message=say("wrong_encoding", found=found, encoding=layout.encoding))


def _header(layout: decl.FileLayout, text: str) -> list[str]:
    end = text.find("\n")
    first = (text if end < 0 else text[:end]).rstrip("\r")
    if '"' not in first:
        return first.split(layout.separator)
    try:
        return next(csv.reader([first], delimiter=layout.separator))
    except (csv.Error, StopIteration) as exc:
        raise ImportFailure(say("unreadable_header", file=layout.name), layout.name) from exc


def _quote_char(ctx: ReadContext, layout: decl.FileLayout, text: str, header: list[str],
                identifiers: set[int]) -> str | None:
    """``'"'`` when every double quote of the file is CSV quoting, else None: a cell typed with a
    quote at its start or end (``"Dupont``) would open a quoted field swallowing separators and
    lines, so the quotes are then read as characters of the values (a record is a line, as the
    export writes it), and each such cell gets a warning naming its row and column."""
    if '"' not in text:
        return '"'
    # a line whose double quotes all stand for CSV quoting: each field plain, or quoted with inner quotes doubled
    s = re.escape(layout.separator)
    field = rf'(?:"(?:[^"]|"")*"|[^"{s}\r\n]*)'
    quoted = re.compile(rf"{field}(?:{s}{field})*\r?")
    stray = [(row, j, cell) for row, line in enumerate(text.split("\n")[1:], start=2)
             if '"' in line and not quoted.fullmatch(line)
             for j, cell in enumerate(line.rstrip("\r").split(layout.separator)) if '"' in cell]
    for row, j, cell in stray:
        column = header[j] if j < len(header) else f"colonne {j + 1}"
        ctx.query(file=layout.name, row=row, field=column, value=IDENTIFIER_MASK if j in identifiers else cell,
                  rule="quote_in_cell", message=say("quote_in_cell", column=column, row=row))
    return None if stray else '"'


def _specs(declaration: decl.Declaration) -> list[ColumnSpec]:
    return [ColumnSpec(c.key, (c.name, *c.aliases), c.required) for c in declaration.columns]


def read_text(ctx: ReadContext, path: Path, declaration: decl.Declaration) -> tuple[pl.DataFrame, list[str], dict,
                                                                                     pl.Series]:
    """(raw string frame, header, column key -> index, fields of each record) of a separated text file."""
    layout, name = declaration.file, declaration.file.name
    text = decode(ctx, layout, path.read_bytes())
    if "\n" not in text and "\r" in text:
        if layout.line_end != "\r":
            ctx.query(file=name, rule="line_endings", message=say("cr_line_ends"))
        text = text.replace("\r", "\n")
    header = _header(layout, text)
    found = match_columns(ctx, header, _specs(declaration), name)
    identifiers = {found[c.key] for c in declaration.columns if c.identifier and c.key in found}
    quote = _quote_char(ctx, layout, text, header, identifiers) if layout.quoting else None
    data, nulls = text.encode("utf-8"), [m for m in layout.missing if m]
    try:  # the declared tokens are null from the start (Cells reads them so too)
        df = pl.read_csv(io.BytesIO(data), separator=layout.separator, has_header=True, infer_schema=False,
                         truncate_ragged_lines=True, quote_char=quote, null_values=nulls or None)
    except Exception as exc:
        raise ImportFailure(f"{name}: CSV illisible ({type(exc).__name__}); import de ce centre arrêté.", name) from exc
    if df.width != len(header):
        raise ImportFailure(say("width_mismatch", file=name, width=df.width, headers=len(header)), name)
    _not_empty(df, name)
    fields = pl.Series(FIELDS, field_counts(text, data, df.height, layout.separator, quote), dtype=pl.Int64)
    if layout.line_end and not text.endswith("\n"):
        if layout.final_line_end != "warning" or fields[-1] != len(header):
            raise ImportFailure(say("truncated_file", file=name), name)
        ctx.query(file=name, row=df.height + 1, rule="missing_final_line_end", message=say("unended", file=name))
    return df, header, found, pl.select(pl.when(fields >= 0).then(fields)).to_series()


def _read_sheets(ctx: ReadContext, path: Path, declaration: decl.Declaration) -> list[tuple]:
    """[(sheet's declaration, raw string frame, header, column key -> index, fields: unknown)] of
    each declared sheet of a workbook, found by normalised name or alias."""
    import fastexcel

    name, book, titles, out = declaration.file.name, fastexcel.read_excel(path), {}, []
    for part in declaration.sheets or (declaration,):
        wanted = {normalise_name(n) for n in (part.file.sheet, *part.aliases) if n}
        hits = [t for t in book.sheet_names if normalise_name(t) in wanted] if wanted else book.sheet_names[:1]
        if len(hits) != 1:
            raise ImportFailure(say("missing_sheet", file=name, sheet=part.file.sheet, what="en double" if hits else
                                    "absente", sheets=", ".join(book.sheet_names) or "aucune"), name, part.file.sheet)
        titles[hits[0]] = replace(part, file=replace(part.file, sheet=hits[0])) if part.file.sheet else part
    for other in (t for t in book.sheet_names if t not in titles):  # data typed there would be ignored unseen
        hidden = "masquée " if book.load_sheet(other, n_rows=0).visible != "visible" else ""
        ctx.query(file=name, sheet=other, value=other, rule="unknown_sheet",
                  message=say("unknown_sheet", hidden=hidden, sheet=other))
    for sheet, part in titles.items():
        grid = _grid(book, path, sheet)
        if grid.height == 0:
            raise ImportFailure(f"{name} (feuille {sheet}): feuille vide; import de ce centre arrêté.", name)
        header = ["" if v is None else str(v).strip() for v in grid.row(0)]
        found = match_columns(ctx, header, _specs(part), name, sheet)
        df = grid.slice(1).rename(dict(zip(grid.columns, [f"{i}" for i in range(grid.width)])))
        df = df.with_columns(pl.when(pl.all().str.strip_chars().is_in(["", *part.file.missing])).then(None)
                             .otherwise(pl.all()).name.keep())
        for j, filled in enumerate(df.select(pl.all().is_not_null().any()).row(0) if df.height else ()):
            if filled and not header[j]:
                ctx.query(file=name, sheet=sheet, row=1, field=f"colonne {j + 1}", rule="value_without_header",
                          message=f"Valeurs dans la colonne {j + 1} sans en-tête: ignorées.")
        if part.table is None:
            _not_empty(df, name)
        elif df.height == 0:  # (a sheet of operations or events may be empty: said, not fatal)
            ctx.query(file=name, sheet=sheet, rule="empty_sheet", message=f"Feuille « {sheet} » vide: export à vérifier.")
        out.append((part, df, header, found, pl.Series(FIELDS, [None] * df.height, dtype=pl.Int64)))
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        _sheet_xml_queries(ctx, path, {part.file.sheet: (part, header) for part, _, header, *_ in out})
    return out


_EXCEL_ERRORS = READERS["excel_errors"]  # calamine's name of an error cell -> Excel's


def _grid(book, path: Path, sheet: str) -> pl.DataFrame:
    """A sheet's cells as strings, the header a row like the others (the engine judges its names);
    an error cell (#N/A) is its text as Excel shows it; openpyxl reads what calamine panics on."""
    try:
        batch, errors = book.load_sheet(sheet, header_row=None, dtypes="string", schema_sample_rows=None
                                        ).to_arrow_with_errors()
    except BaseException as exc:
        if not is_foreign_panic(exc):
            raise
        return _openpyxl_grid(path, sheet)
    grid = pl.from_arrow(batch)
    for e in errors.errors if errors else ():
        if code := re.search(r"Error\((\w+)\)", e.detail):
            column = grid.columns[e.position[1]]
            grid = grid.with_columns(grid[column].scatter(e.position[0], _EXCEL_ERRORS.get(code[1], f"#{code[1]}")))
    return grid


def _openpyxl_grid(path: Path, sheet: str) -> pl.DataFrame:
    """A sheet's cells as calamine's strings, by openpyxl (a number it cannot make a date stays a number)."""
    import openpyxl
    from openpyxl.utils.escape import unescape  # (_x000D_: a carriage return, as calamine reads it)

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    book[sheet].reset_dimensions()  # a wrong <dimension> would cut rows off
    rows = [[None if v is None else str(v).lower() if isinstance(v, bool) else str(int(v)) if isinstance(v, float)
             and v.is_integer() else unescape(str(v)) for v in r] for r in book[sheet].iter_rows(values_only=True)]
    book.close()
    width = max(map(len, rows), default=0)
    return pl.DataFrame([r + [None] * (width - len(r)) for r in rows], schema=[str(j) for j in range(width)], orient="row")


_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\s[^>]*ref="([A-Z]+)([0-9]+)(?::([A-Z]+[0-9]+))?"')
_FORMULA_CELL = re.compile(rb'<(?:\w+:)?c\s[^>]*?r="([A-Z]+)([0-9]+)"[^>]*>(?:(?!</?(?:\w+:)?c[\s>]).)*'
                           rb'<(?:\w+:)?f[\s>/](?:(?!</?(?:\w+:)?c[\s>]).)*</(?:\w+:)?c>', re.S)


def _sheet_xml_queries(ctx: ReadContext, path: Path, sheets: dict[str, tuple]) -> None:
    """What calamine does not say of a sheet read, from its XML: a merged range (only its first
    cell holds the value: warning), a formula saved without its value (an error on its row)."""
    import xml.etree.ElementTree as ET
    import zipfile

    with zipfile.ZipFile(path) as z:
        rels = {r.get("Id"): r.get("Target", "") for r in ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))}
        for el in ET.fromstring(z.read("xl/workbook.xml")).iter():
            if not el.tag.endswith("}sheet") or (title := el.get("name")) not in sheets:
                continue
            target = next((rels.get(v, "") for k, v in el.attrib.items() if k.endswith("}id")), "")
            data, (part, header) = z.read(target[1:] if target[:1] == "/" else f"xl/{target}"), sheets[title]
            where = dict(file=path.name, sheet=title)
            for m in _MERGE.finditer(data, at) if (at := data.find(b"mergeCells")) >= 0 else ():
                first = f"{m[1].decode()}{m[2].decode()}"
                cells = f"{first}:{(m[3] or first.encode()).decode()}"
                ctx.query(**where, row=int(m[2]), field=cells, rule="merged_cells",
                          message=say("merged_cells", cells=cells, sheet=title, first=first))
            for m in _FORMULA_CELL.finditer(data) if b"<f" in data or b":f>" in data else ():
                if re.search(rb"<(?:\w+:)?v>[^<]", m[0]):
                    continue  # (its value was saved: calamine read it)
                row, j = int(m[2]), sum((ord(ch) - 64) * 26**k for k, ch in enumerate(reversed(m[1].decode()))) - 1
                field, table = header[j] if j < len(header) and header[j] else f"colonne {j + 1}", part.table or "patient"
                ctx.query(**where, row=row, table=table if row > 1 else None, field=field,
                          row_id=part.file.row_id.format(table=table, file=path.name, sheet=title, row=row) if row > 1 else None,
                          rule="formula_without_value" if row > 1 else "formula_in_header",
                          message=say("formula_without_value", cell=f"{m[1].decode()}{row}", column=field))


def _not_empty(df: pl.DataFrame, name: str) -> None:
    if df.height == 0:
        raise ImportFailure(say("no_patient", file=name), name)


# --- columns, fast and cell by cell -----------------------------------------------------------

@dataclass
class Parsed:
    """One column parsed: values, whether the cell said something, date precision."""

    values: pl.Series
    present: pl.Series
    precision: pl.Series | None = None
    also: pl.Series | None = None  # a free-text kind's second output (``also``: site detail, second margin)


_BOUND = re.compile(r"^\s*<\s*(\d+)\s*$")
_SERIAL, _YEAR = re.compile(r"^-?\d+(\.\d+)?$"), re.compile(r"^(19\d\d|20\d\d|2100)$")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)
# "?", "-", "inconnu": Cells reads them as missing (hand-typed charts), but a declared export's
# missing values are its own tokens: in a coded, number or date column they are reported.
UNKNOWN_TOKENS = {"?", "-", "inconnu"}  # (all three are in cells.MISSING)
_NOT_A_VALUE = READERS["not_a_value"]  # a column kind -> the rule of a cell that is none of its values


class Columns:
    """The raw cells of one delivery and the means to parse them: all columns in one polars
    pass, the cells the fast path cannot read one by one through :class:`Cells`."""

    def __init__(self, ctx: ReadContext, declaration: decl.Declaration, raw: pl.DataFrame, header: dict[str, str],
                 rows: pl.Series, pids: pl.Series):
        self.ctx, self.declaration, self.raw, self.header = ctx, declaration, raw, header
        self.rows, self.pids, self.layout, self.n = rows, pids, declaration.file, raw.height
        self.bounds: dict[str, set[int]] = {}  # column key -> row indexes written as a bound ("< 5")
        # a workbook's date cells come as ISO text whatever their display format (.ods: with a T)
        # (date_cells: only date cells, a date typed as text goes through Cells and gets its warning)
        self.date_formats = () if self.layout.date_cells else self.layout.date_formats
        if self.layout.spreadsheet:
            self.date_formats = (*self.date_formats, "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")

    def cells(self, i: int, table: str, suffix: str = "") -> Cells:
        row = self.rows[i]
        return Cells(self.ctx, self.layout.name, self.layout.sheet, row, table, self.row_id(table, row) + suffix,
                     self.pids[i])

    def flag(self, mask: pl.Series, table: str, column: str | None, raw: pl.Series | None, rule: str, message: str,
             identifier: bool = False, suffix: str = "") -> None:
        """An error under ``rule`` on each row of ``mask``, quoting its cell of ``raw``."""
        for i in mask.fill_null(False).arg_true().to_list():
            self.cells(i, table, suffix).error(column, None if raw is None else raw[i], rule, message, identifier)

    def row_id(self, table: str, row) -> str:
        return self.layout.row_id.format(table=table, file=self.layout.name, sheet=self.layout.sheet, row=row)

    def row_id_expr(self, table: str) -> pl.Expr:
        head, _, tail = self.row_id(table, "\0").partition("\0")
        return pl.concat_str(pl.lit(head), pl.col("source_row").cast(pl.String), pl.lit(tail))

    def _fast(self, c: decl.Column) -> pl.Expr:
        col = pl.col(c.key)
        missing = list(self.layout.missing)
        if c.kind == "code":  # (an Enum's index: a third of replace_strict's time; an unknown code is null)
            kinds = {type(v) for v in c.codes.values()}
            dtype = pl.Boolean if kinds <= {bool} else pl.Int8 if kinds == {int} else pl.String
            return pl.lit(pl.Series(c.codes.values(), dtype=dtype)).gather(
                col.cast(pl.Enum(list(c.codes)), strict=False).to_physical())
        if c.kind == "number":
            text = col.str.replace(",", ".", literal=True) if self.layout.decimal == "," else col
            value = text.cast(pl.Float64, strict=False) * c.factor
            ok = value.is_finite()
            if c.integer:
                rounded = value.round(0)
                ok = ok & ((value - rounded).abs() <= 1e-9) & (rounded.abs() < INT32_MAX)
                return pl.when(ok).then(rounded).cast(pl.Int32)
            return pl.when(ok).then(value.round(6))
        if c.kind == "date":
            days = [col.str.strptime(pl.Datetime, f, strict=False, cache=False).dt.date() if "%H" in f
                    else col.str.strptime(pl.Date, f, strict=False, cache=False)  # (dates rarely repeat)
                    for f in self.date_formats]
            day = days[0] if len(days) == 1 else pl.coalesce(days)
            return pl.when(day.dt.year().is_between(1900, 2100)).then(day)
        text = col.str.strip_chars()  # ("?", "inconnu": Cells says missing, without a query)
        return pl.when((text.str.len_chars() <= MAX_TEXT) & ~text.str.to_lowercase().is_in([*missing, *MISSING])).then(text)

    def parse(self, columns: list[decl.Column]) -> dict[str, Parsed]:
        """Each column's :class:`Parsed`, by column key."""
        missing = list(self.layout.missing)
        distinct = [c for c in columns if c.kind in decl.FREE_TEXT_KINDS or (c.kind == "code" and self.layout.hand_typed)]
        columns = [c for c in columns if c not in distinct]
        distinct = [c for c in distinct if c.kind != "notes"]  # (read whole by free_text.events)
        fast = self.raw.lazy().select(*(self._fast(c).alias(c.key) for c in columns), *(
            (pl.col(c.key).is_null() | pl.col(c.key).is_in(missing)).alias(f"{c.key}#missing") for c in columns)
        ).with_columns(  # cells said something the fast path could not read
            (~pl.col(f"{c.key}#missing") & pl.col(c.key).is_null()).alias(f"{c.key}#todo") for c in columns).collect()
        todo = fast.select(pl.col(f"{c.key}#todo").sum() for c in columns).row(0)
        out = {}
        for c, count in zip(columns, todo):
            values, present = fast[c.key], ~fast[f"{c.key}#missing"]
            precision = (pl.select(pl.when(values.is_not_null()).then(pl.lit("day"))).to_series()
                         if c.kind == "date" else None)
            if count and self.layout.hand_typed:  # hand-typed: what the fast path left, by distinct value
                todo, rest = fast[f"{c.key}#todo"], self._distinct(c, fast[f"{c.key}#todo"])
                values = values.zip_with(~todo, rest.values.cast(values.dtype))
                precision = precision.zip_with(~todo, rest.precision.cast(pl.String)) if precision is not None else None
            elif count:
                values, present, precision = self._fallback(c, fast[f"{c.key}#todo"], values, present, precision)
            out[c.key] = Parsed(values.alias(c.key), present, precision)
        return out | {c.key: self._distinct(c) for c in distinct}

    def _distinct(self, c: decl.Column, todo: pl.Series | None = None) -> Parsed:
        """A free-text kind (or the cells ``todo`` of a hand-typed file): each distinct value
        decoded once (:func:`free_text.decode`) and scattered back; its issues raised in bulk."""
        raw = self.raw[c.key] if todo is None else pl.select(pl.when(todo).then(self.raw[c.key])).to_series()
        unique = raw.drop_nulls().unique(maintain_order=True)
        decoded = [free_text.decode(c, text) for text in unique.to_list()]
        index = raw.cast(pl.Enum(unique)).to_physical().cast(pl.UInt32)  # (each cell's distinct value: an Enum's index)
        # (whatever is per cell, by its distinct value: the cells' own look-ups cost as much as the whole)
        present = (~unique.is_in(list(self.layout.missing))).gather(index).fill_null(False).alias(raw.name)
        first, second = (pl.Series([d[0][j] for d in decoded], strict=False).gather(index) if j == 0 or c.kind == "date"
                         or c.upper_bound or c.options.get("also") else None for j in (0, 1))  # (a code: no second)
        if c.upper_bound:
            self.bounds[c.key] = set(second.fill_null(False).arg_true().to_list())
        issues = pl.DataFrame([(u, issue.rule, issue.message) for u, (_, found) in enumerate(decoded) for issue in found],
                              schema={"u": pl.UInt32, "rule": pl.String, "message": pl.String}, orient="row")
        if not issues.is_empty():
            hits = pl.DataFrame({"i": pl.int_range(self.n, eager=True), "u": index, "value": raw})
            self.queries(hits.join(issues, on="u", maintain_order="left_right"), c.table or "patient",
                         self.header[c.key], c.identifier is not None, event_columns.suffix(c.event))
        return Parsed(first.alias(c.key), present, second if c.kind == "date" else None,
                      second if c.options.get("also") else None)

    def queries(self, hits: pl.DataFrame, table: str, column: str, identifier: bool = False, suffix: str = "") -> None:
        """A query per row of ``hits`` (i: record, value, rule, message, else row_id/table_name: ``table``'s)."""
        if hits.is_empty():
            return
        frame = hits.with_columns(file=pl.lit(self.layout.name), sheet=pl.lit(self.layout.sheet, pl.String),
                                  source_row=self.rows.gather(hits["i"]), patient_id=self.pids.gather(hits["i"]),
                                  field=pl.lit(column), value=pl.lit(IDENTIFIER_MASK) if identifier else pl.col("value"))
        own = {k: pl.col(k) if k in frame.columns else pl.lit(None, pl.String) for k in ("row_id", "table_name")}
        frame = frame.with_columns(row_id=pl.coalesce(own["row_id"], pl.concat_str(self.row_id_expr(table), pl.lit(suffix))),
                                   table_name=pl.when(own["row_id"].is_null()).then(pl.lit(table)).otherwise(own["table_name"]))
        self.ctx.extend_queries(frame.rename({"source_row": "row"}).drop("i", "u", strict=False))

    def _fallback(self, c: decl.Column, todo: pl.Series, values: pl.Series, present: pl.Series, precision):
        idx = todo.arg_true()
        column, table, identifier = self.header[c.key], c.table or "patient", c.identifier is not None
        got, gone, precisions = [], [], []
        for i, raw in zip(idx.to_list(), self.raw[c.key].gather(idx).to_list()):
            cells = self.cells(i, table, event_columns.suffix(c.event))
            value, day_precision = None, None
            if c.kind not in ("text", "list") and len(raw) > 200:  # no code, number or date is that long
                cells.error(column, raw, _NOT_A_VALUE[c.kind], say("value_too_long", n=len(raw), column=column),
                            identifier=identifier)
            elif is_missing(raw):
                if c.kind not in ("text", "list") and fold(raw) in UNKNOWN_TOKENS:
                    cells.error(column, raw, _NOT_A_VALUE[c.kind], say("unknown_value", raw=raw.strip(), column=column,
                                tokens=", ".join(filter(None, self.layout.missing))), identifier=identifier)
                gone.append(i)
            elif c.kind == "code" and c.other is not None:  # any other text names a real thing: "other"
                value = next((v for k, v in c.codes.items() if fold(k) == fold(raw)), c.other)
            elif c.kind == "code":
                value = cells.code(column, raw, c.codes)
            elif c.kind == "number":
                value = self._number(c, cells, column, raw, i)
            elif c.kind == "date":
                value, day_precision = self._date(cells, column, raw, identifier)
            else:
                value = cells.text(column, raw)
                if value is None:
                    gone.append(i)
            got.append(value)
            precisions.append(day_precision)
        values = values.scatter(idx, pl.Series(got, dtype=values.dtype))
        if gone:
            present = present.scatter(gone, False)
        if precision is not None:
            precision = precision.scatter(idx, pl.Series(precisions, dtype=pl.String))
        return values, present, precision

    def _date(self, cells: Cells, column: str, raw: str, identifier: bool) -> tuple:
        """(date_cells) A bare number is a date cell that lost its format (the serial of the day),
        unless a year (1900-2100): a date typed as text, like ``12/03/2014``, read with a warning."""
        shown = (lambda v: IDENTIFIER_MASK) if identifier else str
        serial = float(raw) if self.layout.date_cells and _SERIAL.match(raw) and not _YEAR.match(raw) else 0
        day = (_EXCEL_EPOCH + dt.timedelta(days=int(serial) + (serial < 60))).date() if 1 <= serial < 2958466 else None
        if day and 1900 <= day.year <= 2100:
            cells.error(column, raw, "date_as_number", f"Date saisie comme nombre ({shown(raw)}): lue comme "
                        f"{shown(f'{day:%d/%m/%Y}')} ({column}); remettre le format date.", identifier=identifier)
            return day, "day"
        parsed = cells.date(column, raw, identifier=identifier)
        if parsed and self.layout.date_cells and not parsed.imputed:
            cells.error(column, raw, "date_typed_as_text", f"Date saisie comme texte « {shown(raw)} » ({column}): "
                        f"lue, mais à saisir comme date Excel.", identifier=identifier)
        return (parsed.value, parsed.precision) if parsed else (None, None)

    def _number(self, c: decl.Column, cells: Cells, column: str, raw: str, i: int):
        if c.upper_bound and (m := _BOUND.match(raw)):
            cells.error(column, raw, "mitoses_upper_bound", say("upper_bound", column=column, raw=raw, n=m.group(1)))
            self.bounds.setdefault(c.key, set()).add(i)
            return int(m.group(1))
        value = cells.number(column, raw, decimal_comma=self.layout.decimal == "," or self.layout.spreadsheet,
                             integer=c.integer, factor=c.factor)
        if c.integer and value is not None and abs(value) >= INT32_MAX:
            return cells.error(column, raw, "number_out_of_range", say("number_out_of_range", raw=raw, column=column))
        return value


# --- the read ---------------------------------------------------------------------------------

def read_file(ctx: ReadContext, path: Path, declaration: decl.Declaration) -> ReadResult:
    """One delivery file of a declared format (a workbook: each declared sheet), to canonical
    frames and queries."""
    parts = (_read_sheets(ctx, path, declaration) if declaration.file.spreadsheet
             else [(declaration, *read_text(ctx, path, declaration))])
    frames, source_rows, known, pseudonyms = {}, {}, None, {}
    for part, df, header, found, fields in parts:
        cols, df, keys, fields = _columns(ctx, part, df, header, found, fields, pseudonyms)
        layout = part.file
        source_rows[f"{layout.name}[{layout.sheet}]" if layout.spreadsheet and layout.sheet else layout.name] = df.height
        _key_queries(cols, df, keys, known, fields, len(header))
        if part.table is None:
            known = keys.drop_nulls().unique()
            frames.update(record_frames(cols))
        else:
            frames[part.table] = row_frame(cols, keys)
    if declaration.sheets and declaration.column("patient.vital_status") is None and "event" in frames:
        # no vital status column: dead with a death event, alive (at last contact) with any other
        kinds = frames["event"].filter(pl.col("event_kind").is_not_null()).group_by("patient_id").agg(k="event_kind")
        patient = frames["patient"].join(kinds, on="patient_id", how="left", maintain_order="left")
        frames["patient"] = model.conform("patient", patient.with_columns(vital_status=pl.when(
            pl.col("k").list.contains("death")).then(pl.lit("dead")).when(pl.col("k").is_not_null()).then(pl.lit("alive"))))
    return ReadResult(centre=ctx.centre, delivery_date=ctx.delivery_date, frames=frames, queries=ctx.queries,
                      files=[path], source_rows=source_rows)


def _columns(ctx: ReadContext, part: decl.Declaration, df: pl.DataFrame, header: list[str], found: dict,
             fields: pl.Series, pseudonyms: dict) -> tuple[Columns, pl.DataFrame, pl.Series, pl.Series]:
    """The raw cells of one file or sheet: blank records skipped, identifiers registered, patient
    keys pseudonymised."""
    layout = part.file
    rows = pl.int_range(2, df.height + 2, eager=True).cast(pl.Int64)
    blank = df.select(pl.all_horizontal(pl.all().is_null())).to_series()
    trailing = blank.len() - blank.not_().cast(pl.Int8).cum_sum().arg_max() - 1 if blank.any() else 0
    for row in rows.filter(blank).head(blank.sum() - trailing).to_list():  # a blank line ending the file is none
        ctx.query(file=layout.name, sheet=layout.sheet, row=row, rule="empty_row", message=f"Ligne {row} vide ignorée.")
    if blank.any():
        df, rows, fields = df.filter(~blank), rows.filter(~blank), fields.filter(~blank)
    raw = pl.DataFrame({key: df.to_series(i) for key, i in found.items()}, height=df.height)
    for c in part.columns:
        if c.identifier and c.key in raw.columns:
            ctx.identifiers.add(c.identifier, raw[c.key], header[found[c.key]])
    keys = raw[part.column("patient.local_id").key].str.strip_chars().str.to_uppercase()
    keys = pl.select(pl.when(~keys.is_in(list(layout.missing))).then(keys)).to_series()
    # (a key is hashed once whatever the sheets it is in)
    pids = pseudonym_column(ctx.pseudonym_key, ctx.centre, keys, pseudonyms).alias("patient_id")
    cols = Columns(ctx, part, raw, {key: header[i] for key, i in found.items()}, rows, pids)
    _too_long(cols, layout.max_cell)
    return cols, df, keys, fields


def _too_long(cols: Columns, limit: int) -> None:
    """Cells too long to be chart values (a broken line): null, with an error, before any parsing."""
    over = [k for k, n in cols.raw.select(pl.all().str.len_chars().max()).row(0, named=True).items() if (n or 0) > limit] if limit else []
    for key, column in ((k, cols.header[k]) for k in over):  # (the columns concerned: found by one select)
        n = cols.raw[key].str.len_chars()
        hits = pl.DataFrame({"i": (n > limit).arg_true(), "n": n.filter(n > limit)})
        cols.queries(hits.select("i", value=pl.format("<{} caractères>", "n"), rule=pl.lit("value_too_long"), message=pl.format(
            f"Cellule « {column} » de {{}} caractères: ligne cassée ? Valeur ignorée.", "n")), "patient", column)
        cols.raw = cols.raw.with_columns(pl.when(pl.col(key).str.len_chars() <= limit).then(pl.col(key)).alias(key))


def _key_queries(cols: Columns, df: pl.DataFrame, keys: pl.Series, known: pl.Series | None, fields: pl.Series,
                 width: int) -> None:
    """What the declaration implies of every row: a patient key (an error on its key cell); on a sheet
    of rows, the key of a record (``known``: the records' keys); on the records, that key once —
    each repeat an error, the first occurrence too when the copies differ (:func:`repeated_rows`),
    the message naming all the patient's lines — and the header's width."""
    table, id_key = cols.declaration.table or "patient", cols.declaration.column("patient.local_id").key
    id_column, ids = cols.header[id_key], cols.raw[id_key]
    cols.flag(keys.is_null(), table, id_column, ids, "missing_patient_id", say("missing_patient_id", column=id_column),
              identifier=True)
    if cols.declaration.table:
        cols.flag(keys.is_not_null() & ~keys.is_in(known.implode()), table, id_column, ids, "orphan_row",
                  say("orphan_row", column=id_column), identifier=True)
        return
    flagged, groups = repeated_rows(df, keys), {}
    for i in (keys.is_duplicated() & keys.is_not_null()).arg_true().to_list():
        groups.setdefault(keys[i], []).append(i)
    for members in groups.values():
        lines = ", ".join(str(cols.rows[i]) for i in members)
        what = "copies différentes" if flagged[members[0]] else "copie identique"  # (the first: only then)
        for i in (i for i in members if flagged[i]):
            cols.cells(i, table).error(id_column, ids[i], "duplicate_patient", say("duplicate_patient", lines=lines,
                                                                                   what=what), identifier=True)
    for i in ((fields != width) & fields.is_not_null()).arg_true().to_list():
        cols.cells(i, table).error(None, None, "wrong_field_count", say("record_width", n=fields[i], width=width))


def _parse(c: Columns) -> tuple[dict[str, Parsed], pl.DataFrame]:
    # identifiers are never parsed into a table; a birth date only gives the age
    v = c.parse([col for col in c.declaration.columns if col.field and col.key in c.raw.columns
                 and col.identifier in (None, "birth_date")])
    return v, pl.DataFrame({"i": pl.int_range(0, c.n, eager=True), "patient_id": c.pids, "source_row": c.rows})


def _frame(c: Columns, ids: pl.DataFrame, table: str, columns: dict[str, pl.Series | pl.Expr]) -> pl.DataFrame:
    return model.conform(table, ids.with_columns(c.row_id_expr(table).alias("row_id"), **columns,
                                                 source_file=pl.lit(c.layout.name),
                                                 source_sheet=pl.lit(c.layout.sheet, dtype=pl.String)))


def record_frames(c: Columns) -> dict[str, pl.DataFrame]:
    declaration = c.declaration
    v, ids = _parse(c)
    frames, events, vital = {}, None, None
    notes = next((col for col in declaration.columns if col.kind == "notes" and col.key in c.raw.columns), None)
    if notes is not None:  # events written as notes: not tabular
        events, vital = free_text.events(c, v, ids, notes)
    for table in decl.ROW_TABLES:
        if not declaration.in_table(table):
            continue
        columns = table_columns(c, v, table)
        if table == "patient":
            columns["centre"] = pl.lit(c.ctx.centre)
            if vital is not None:
                columns["vital_status"] = vital
            if "age_at_diagnosis_years" not in columns and declaration.column("patient.birth_date"):
                columns["age_at_diagnosis_years"] = _age(c, v)
        frames[table] = _frame(c, ids, table, columns)
        if table in declaration.when_any_cell:
            mine = [col for col in declaration.in_table(table) if col.key in v]
            any_cell = pl.select(pl.any_horizontal(v[col.key].present for col in mine)).to_series()
            frames[table] = frames[table].filter(any_cell)
            _required(c, table, v, any_cell)
    if events is not None or any(col.table == "event" and col.key in v for col in declaration.columns):
        frames["event"] = events if events is not None else event_columns.events(c, v, ids)
    return frames


# A cell of one kind of event only, on another kind: an error, the value ignored (data/readers.toml).
KIND_ONLY = READERS["kind_only"]
# A patient's first operation in date order is the primary excision.
FIRST_SURGERY_RULE, FIRST_SURGERY = "first_surgery_not_primary", "primary_excision"


def row_frame(c: Columns, keys: pl.Series) -> pl.DataFrame:
    """A sheet (or REDCap form) filling ``table`` with one row per source row: numbered per patient
    (``keys``) in date order (:func:`numbered`), each row checked against its kind."""
    table = c.declaration.table
    v, ids = _parse(c)
    columns = table_columns(c, v, table)
    _required(c, table, v, pl.repeat(True, c.n, eager=True))
    kind = c.declaration.column(f"{table}.{table}_kind")
    kinds = columns.get(f"{table}_kind", pl.repeat(None, c.n, dtype=pl.String, eager=True))

    def flag(mask: pl.Series, col: decl.Column, rule: str, message: str) -> None:
        c.flag(mask, table, c.header[col.key], c.raw[col.key], rule, message)

    if table == "event" and kind and kind.key in v:
        flag((kinds == "last_news") & c.pids.is_in(c.pids.filter(kinds == "death").drop_nulls().implode()), kind,
             "last_news_of_dead_patient", say("last_news_row_of_dead_patient"))
    for target, (own, rule, message) in KIND_ONLY.items() if table == "event" else ():
        if (col := c.declaration.column(f"event.{target}")) and col.key in v:
            wrong = (columns[target].is_not_null() & (kinds != own)).fill_null(False)
            flag(wrong, col, rule, message)
            columns[target] = pl.select(pl.when(~wrong).then(columns[target])).to_series()
    dates = columns.get(f"{table}_date", pl.repeat(None, c.n, dtype=pl.Date, eager=True))
    columns[f"{table}_no"] = numbers = numbered(keys, dates, kinds if table == "event" else None)
    if table == "surgery" and kind:
        flag((numbers == 1) & (kinds != FIRST_SURGERY) & keys.is_not_null(), kind, FIRST_SURGERY_RULE,
             say(FIRST_SURGERY_RULE))
    return _frame(c, ids, table, columns)


def numbered(keys: pl.Series, dates: pl.Series, kinds: pl.Series | None = None) -> pl.Series:
    """1..n per patient key in date order (unknown dates last; ties: the event kinds' order, then
    the rows'); a row without key is alone. Any format's surgery or event rows (REDCap's too)."""
    rank = 0 if kinds is None else kinds.replace_strict(event_columns.EVENT_RANK, default=9, return_dtype=pl.Int8)
    order = pl.DataFrame({"k": keys, "d": dates, "r": rank, "i": pl.int_range(0, keys.len(), eager=True)})
    order = order.with_columns(pl.col("k").fill_null(pl.format("\0{}", "i"))).sort(["k", "d", "r", "i"], nulls_last=True)
    return order.with_columns(n=number_within("k")).sort("i")["n"]


def table_columns(c: Columns, v: dict[str, Parsed], table: str) -> dict[str, pl.Series | pl.Expr]:
    """The canonical columns of ``table``: the declared constants, then from the parsed declared columns
    that fill it (values, date precisions, upper-bound flags): the engine's rows and an adapter's (a
    REDCap form's rows)."""
    columns: dict = {k: pl.lit(value) for k, value in c.declaration.constants.get(table, {}).items()}
    for col in c.declaration.in_table(table):
        target = col.target
        if col.key not in v or target == "birth_date":
            continue
        columns[target] = v[col.key].values
        if v[col.key].also is not None:  # a second output (free_text)
            columns[col.options["also"].split(".")[1]] = v[col.key].also
        if v[col.key].precision is not None and f"{target}_precision" in model.TABLES[table]:
            columns[f"{target}_precision"] = v[col.key].precision
        if col.upper_bound:
            bound = pl.int_range(0, c.n, eager=True).is_in(sorted(c.bounds.get(col.key, ())))
            # True for a bound written "< 5", False for a count, null without a value
            columns[col.upper_bound.split(".")[1]] = pl.select(
                pl.when(v[col.key].values.is_not_null()).then(bound)).to_series()
    return columns


# A row that exists without a value it needs (its date, an event's kind): the rule and message per
# field (data/readers.toml).
ROW_REQUIRED = READERS["row_required"]


def _required(c: Columns, table: str, v: dict[str, Parsed], any_cell: pl.Series) -> None:
    for field, (rule, message) in ROW_REQUIRED.items():
        if field.split(".")[0] == table and (col := c.declaration.column(field)) and col.key in v:
            c.flag(any_cell & ~v[col.key].present, table, c.header[col.key], None, rule, message)


def _age(c: Columns, v: dict[str, Parsed]) -> pl.Series | pl.Expr:
    """Completed years from the birth date (an identifier, never stored) to the diagnosis."""
    birth_column, diagnosis_column = (c.declaration.column(f"patient.{k}") for k in ("birth_date", "diagnosis_date"))
    if birth_column.key not in v:
        return pl.lit(None, dtype=pl.Int16)
    birth = v[birth_column.key].values
    c.ctx.identifiers.add_births(c.pids, birth)
    if diagnosis_column is None or diagnosis_column.key not in v:
        return pl.lit(None, dtype=pl.Int16)
    diagnosis = v[diagnosis_column.key].values

    def month_day(day: pl.Series) -> pl.Series:  # (month, day) as one comparable number; Int8 parts would overflow
        return day.dt.month().cast(pl.Int32) * 100 + day.dt.day().cast(pl.Int32)

    # the same rule as synth.identities.age_at, column-wise
    age = (diagnosis.dt.year().cast(pl.Int32) - birth.dt.year().cast(pl.Int32)
           - (month_day(diagnosis) < month_day(birth)).cast(pl.Int32))
    bad = ((age < 0) | (age > 120)).fill_null(False)
    for i in bad.arg_true().to_list():
        c.cells(i, "patient").error(c.header[birth_column.key], birth[i], "birth_after_diagnosis" if age[i] < 0
                                    else "age_out_of_range", say("impossible_age"), identifier=True)
    return pl.select(pl.when(~bad).then(age)).to_series().cast(pl.Int16)

