"""The synthetic writer of a declared format: the declaration read backwards.

The same ``formats/<format>.toml`` the engine reads (:mod:`clms_etl.formats`) says
what to write: each column's header, the canonical field it holds, its code list (a value is
written as its first code), decimal mark, date format, missing-value tokens (an absent value is
written empty or as one of the tokens, at random, as data managers do), the encoding and
separator of a text file, or the sheet of a workbook (real date cells). One record per
patient; events as columns the way :mod:`clms_etl.readers.event_columns` reads them back.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import unicodedata
from pathlib import Path

import numpy as np

from clms_etl import formats as decl
from clms_etl.synth.formats.base import Cell, RawTable, Slot, pick
from clms_etl.synth.truth import Truth

_BAD_DATES = ["31/02/2014", "2014-13-45", "inconnue", "??/??/2011", "15/15/2015"]
_BAD_CODES = ["ZZ", "?", "X9"]
# where format-level defects are planted: fields every chart fills (when the format has them)
DEFECT_FIELDS = {
    "unparseable_date": ("patient.diagnosis_date", "surgery.surgery_date", "event.last_news.date", "event.event_date"),
    "unknown_code": ("patient.sex", "tumour.site", "tumour.fnclcc_grade", "surgery.resection_status"),
    "stray_spaces_case": ("patient.sex", "tumour.site", "tumour.presentation", "surgery.resection_status"),
}


def _by_patient(frame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row["patient_key"], []).append(row)
    return out


# Letters with a stroke have no decomposition to strip.
_STROKED = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i"})


def _fold_unencodable(error: UnicodeEncodeError) -> tuple[str, int]:
    """The encoding has no such character: drop its accents (``ř`` -> ``r``), and only then use ``?``."""
    out = []
    for ch in error.object[error.start:error.end]:
        decomposed = unicodedata.normalize("NFKD", ch.translate(_STROKED))
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        try:
            base.encode(error.encoding)
            out.append(base or "?")
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out), error.end


_ERRORS = "clms_fold_unencodable"
codecs.register_error(_ERRORS, _fold_unencodable)


class DeclaredFormat:
    """A :class:`~clms_etl.synth.formats.base.CentreFormat` derived from a declaration."""

    def __init__(self, declaration: decl.Declaration):
        self.declaration = declaration
        self.name = declaration.name
        self.layout = declaration.file
        self.parts = declaration.sheets or (declaration,)  # a workbook's sheets, the record sheet first
        self.COLUMNS = [c.name for c in self.parts[0].columns]
        # where each kind of event's date lands (clms_etl.synth.defects locates planted defects by it)
        self.EVENT_DATE_COLUMNS = {c.event: c.name for c in declaration.in_table("event")
                                   if c.target == "event_date" and c.event}

    # --- cells -------------------------------------------------------------------------------

    def _decimal(self, value: float | int) -> str:
        """A whole number without decimals, as the centres' software writes it."""
        value = float(value)
        text = str(int(value)) if value.is_integer() else repr(round(value, 4))
        return text.replace(".", self.layout.decimal)

    def _text(self, cell: Cell) -> str:
        """A cell as file text: strings verbatim (planted defects included), others formatted."""
        if cell is None:
            return ""
        if isinstance(cell, str):
            return cell
        if isinstance(cell, dt.date):
            return cell.strftime(self.layout.date_formats[0])
        return self._decimal(cell)

    def render(self, truth: Truth, rng: np.random.Generator, first_row: int = 0) -> list[RawTable]:
        """One record per patient (every draw patient by patient: chunked runs give the same cells)."""
        def missing(column: decl.Column | None = None) -> Cell:
            """Empty half the time, else one of the tokens the export writes."""
            tokens = self.layout.written_missing
            if column is not None and column.written_missing is not None:
                tokens = column.written_missing
            if not tokens:
                return None
            u = rng.random()
            return None if u < 0.5 else tokens[min(int((u - 0.5) * 2 * len(tokens)), len(tokens) - 1)]

        def cell(column: decl.Column, value) -> Cell:
            if value is None:
                return missing(column)
            if column.upper_case:
                return str(value).upper()
            if column.kind == "code":
                code = next(k for k, v in column.codes.items() if v == value and type(v) is type(value))
                return int(code) if self.layout.spreadsheet and code.isdigit() else code  # a number cell
            if column.kind == "number":
                number = round(value / column.factor, 6)
                if not self.layout.spreadsheet:
                    return self._decimal(number)
                return int(number) if float(number).is_integer() else number
            if column.kind == "date" and not self.layout.spreadsheet:
                return value.strftime(self.layout.date_formats[0])
            return value

        record = self.parts[0]
        # a record also holds the operation and the events when the format writes them as columns
        wide = any(c.table in ("surgery", "event") for c in record.columns)
        table = RawTable(self.layout.name, record.file.sheet, self.COLUMNS)
        tumours = {r["patient_key"]: r for r in truth.tumour.iter_rows(named=True)}
        surgeries, events = _by_patient(truth.surgery), _by_patient(truth.event)
        for p in truth.patient.iter_rows(named=True):
            key = p["patient_key"]
            values: dict = {"patient": p, "tumour": tumours[key]}
            tags: list[str] = []
            if wide:
                values, tags = self._wide(values, key, surgeries.get(key, []), events.get(key, []))
            row: dict[str, Cell] = {}
            for column in record.columns:
                if column.field is None:
                    continue
                if column.table == "event" and column.kind == "list":
                    sites = [e["metastasis_site"] for e in values["first_meta"] if e["metastasis_site"] is not None]
                    codes = [next(k for k, v in column.codes.items() if v == s) for s in sites]
                    row[column.name] = ",".join(codes) or missing(column)
                elif column.table == "event":
                    row[column.name] = cell(column, values[column.field] or None)
                else:
                    row[column.name] = cell(column, values[column.table].get(column.target))
            table.add(row, f"patient:{key}", f"tumour:{key}", *tags)
        tables = [table]
        ids = dict(zip(truth.patient["patient_key"], truth.patient["local_id"]))
        for part in self.parts[1:]:  # one row per operation or event, linked by the local id
            rows = RawTable(self.layout.name, part.file.sheet, [c.name for c in part.columns])
            for r in getattr(truth, part.table).iter_rows(named=True):
                rows.add({c.name: ids[r["patient_key"]] if c.field == "patient.local_id" else cell(c, r.get(c.target))
                          for c in part.columns}, f"{part.table}:{r['patient_key']}:{r[f'{part.table}_no']}")
            tables.append(rows)
        return tables

    @staticmethod
    def _wide(values: dict, key: str, ops: list[dict], course: list[dict]) -> tuple[dict, list[str]]:
        """A record's operation and event columns, and the rows of truth it holds."""
        # one operation a record: the truth must not hold more than the format can say
        assert len(ops) <= 1 and all(s["surgery_no"] == 1 for s in ops), f"{key}: {len(ops)} surgeries"
        course = sorted(course, key=lambda e: e["event_no"])
        by_kind = {k: [e for e in course if e["event_kind"] == k]
                   for k in ("local_recurrence", "metastasis", "death", "last_news")}
        assert len(by_kind["local_recurrence"]) <= 1, f"{key}: {len(by_kind['local_recurrence'])} local recurrences"
        assert len(by_kind["death"]) <= 1 and len(by_kind["last_news"]) <= 1, f"{key}: several deaths or last news"
        first_day = min((e["event_date"] for e in by_kind["metastasis"]), default=None)
        first_meta = [e for e in by_kind["metastasis"] if e["event_date"] == first_day]
        relapses = [e for e in course if e["event_kind"] in ("local_recurrence", "metastasis")]
        death = (by_kind["death"] or [None])[0]
        last = (by_kind["last_news"] or [death])[0]
        values = {
            **values, "surgery": ops[0] if ops else {}, "first_meta": first_meta,
            "event.local_recurrence.date": by_kind["local_recurrence"] and by_kind["local_recurrence"][0]["event_date"],
            "event.metastasis.date": first_day,
            "event.relapse.treatment": (relapses[0]["treatment"] if relapses else None) or None,
            "event.death.date": death and death["event_date"],
            "event.death.cause": death and death["death_cause"],
            "event.last_news.date": last and last["event_date"],
        }
        held = sorted(by_kind["local_recurrence"] + first_meta + by_kind["death"] + by_kind["last_news"],
                      key=lambda e: e["event_no"])
        return values, [*(f"surgery:{key}:1" for _ in ops), *(f"event:{key}:{e['event_no']}" for e in held)]

    # --- where things are ----------------------------------------------------------------------

    def locate(self, table: str, field: str) -> tuple[str, str | None, str] | None:
        """(file, sheet, column) holding a canonical field (event dates as columns: the last news)."""
        for part in self.parts:
            for c in part.columns:
                if c.table == table and c.target == field and not (field == "event_date" and c.event not in (None, "last_news")):
                    return self.layout.name, part.file.sheet, c.name
        return None

    def slots(self) -> dict[str, list[Slot]]:
        """Format-level defects on the columns every chart fills (:data:`DEFECT_FIELDS`)."""
        makers = {"unparseable_date": pick(_BAD_DATES), "unknown_code": pick(_BAD_CODES), "stray_spaces_case": _messy}
        return {kind: [Slot(self.layout.name, part.file.sheet, c.name, makers[kind])
                       for f in fields for part in self.parts if (c := part.column(f))]
                for kind, fields in DEFECT_FIELDS.items()}

    def writer(self, delivery_dir: Path, delivery_date: dt.date):
        if self.layout.spreadsheet:
            return _SheetWriter(self, delivery_dir, delivery_date)
        return _TextWriter(self, delivery_dir)


def _messy(value: Cell, rng) -> Cell:
    # a lower-case copy padded with spaces, e.g. " tc ", " r1"
    text = "" if value is None else str(value).lower()
    return str(rng.choice([f" {text} ", f" {text}", f"{text}  "]))


class _TextWriter:
    """Streams the rows of successive chunks into the one separated text file."""

    def __init__(self, fmt: DeclaredFormat, delivery_dir: Path):
        delivery_dir.mkdir(parents=True, exist_ok=True)
        self.fmt = fmt
        self.path = delivery_dir / fmt.layout.name
        self.handle = open(self.path, "w", encoding=fmt.layout.encoding, errors=_ERRORS, newline="")
        self.csv = csv.writer(self.handle, delimiter=fmt.layout.separator, lineterminator=fmt.layout.line_end or "\n")
        self.csv.writerow(fmt.COLUMNS)

    def append(self, tables: list[RawTable]) -> None:
        for table in tables:
            self.csv.writerows([self.fmt._text(c) for c in row] for row in table.rows)

    def close(self) -> list[Path]:
        self.handle.close()
        return [self.path]


class _SheetWriter:
    """Writes the workbook's sheets, dates as date cells: ``.xlsx`` streamed by xlsxwriter
    (constant memory, created on the delivery date so a seed gives the same bytes), ``.ods``
    collected, then written by pandas' odf engine (odfpy)."""

    def __init__(self, fmt: DeclaredFormat, delivery_dir: Path, delivery_date: dt.date):
        delivery_dir.mkdir(parents=True, exist_ok=True)
        if Path(fmt.layout.name).suffix.lower() not in (".xlsx", ".ods"):
            raise ValueError(f"{fmt.layout.name}: the synthetic writer writes .xlsx or .ods workbooks only")
        self.fmt, self.path = fmt, delivery_dir / fmt.layout.name
        self.columns = {part.file.sheet or "Sheet1": [c.name for c in part.columns] for part in fmt.parts}
        self.rows: dict[str, list] = {sheet: [] for sheet in self.columns}
        self.book = None
        if self.path.suffix.lower() == ".xlsx":
            import xlsxwriter

            self.book = xlsxwriter.Workbook(self.path, {"constant_memory": True})
            self.book.set_properties({"created": dt.datetime.combine(delivery_date, dt.time(1, 0))})
            self.day = self.book.add_format({"num_format": "dd/mm/yyyy"})
            self.sheets = {sheet: [self.book.add_worksheet(sheet), 1] for sheet in self.columns}
            for sheet, (ws, _) in self.sheets.items():
                ws.write_row(0, 0, self.columns[sheet])

    def append(self, tables: list[RawTable]) -> None:
        for table in tables:
            sheet = table.sheet or "Sheet1"
            if self.book is None:
                self.rows[sheet] += table.rows
                continue
            ws, r = self.sheets[sheet]
            for row in table.rows:
                for j, value in enumerate(row):
                    if isinstance(value, dt.date):
                        ws.write_datetime(r, j, dt.datetime.combine(value, dt.time()), self.day)
                    elif isinstance(value, str):
                        ws.write_string(r, j, value)
                    elif value is not None:
                        ws.write(r, j, value)
                r += 1
            self.sheets[sheet][1] = r

    def close(self) -> list[Path]:
        if self.book is not None:
            self.book.close()
            return [self.path]
        import pandas as pd

        with pd.ExcelWriter(self.path, engine="odf") as out:
            for sheet, rows in self.rows.items():
                days = [[dt.datetime.combine(v, dt.time()) if isinstance(v, dt.date) else v for v in row] for row in rows]
                pd.DataFrame(days, columns=self.columns[sheet], dtype=object).to_excel(out, sheet_name=sheet, index=False)
        return [self.path]


def declared_format(fmt: str, drop_folder: Path | None = None) -> DeclaredFormat | None:
    """The writer of ``fmt`` derived from its declaration, or None when it has none."""
    path = decl.find(fmt, drop_folder)
    return None if path is None else DeclaredFormat(decl.load(path))
