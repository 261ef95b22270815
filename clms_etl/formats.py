"""A centre's export declared as data: ``clms_etl/data/formats/<format>.toml``.

One file per format says what the engine (:mod:`clms_etl.readers.engine`) reads and what the
synthetic writer (:mod:`clms_etl.synth.formats.declared`) writes: the file (name, sheet,
encoding, separator, decimal mark, line end, date formats, missing-value tokens, row_id
pattern), its columns (header and aliases, the canonical ``table.column`` each fills, kind,
code list, unit factor, required or not, identifier kind), the code lists, and per table the
constants and when a row exists. Conventions:

* ``field = "patient.sex"``: a canonical column of a table with one row per record
  (``patient``, ``tumour``, ``surgery``); ``patient.local_id`` is the patient key (pseudonymised),
  ``patient.birth_date`` an identifier the age at diagnosis is derived from.
* ``field = "event.<kind>.<part>"``: events written as columns (kind ``local_recurrence``,
  ``metastasis``, ``death``, ``last_news``; part ``date``, ``cause``, ``sites``; and
  ``event.relapse.treatment``), turned into event rows by :mod:`clms_etl.readers.event_columns`.
* ``kind``: ``code`` (the default when ``codes`` is given), ``number``, ``date``, ``text``,
  ``list`` (a separated list of codes), ``identifier`` (the default without ``field``) or a
  free-text kind of :mod:`clms_etl.readers.free_text`, read by the column's other keys (``options``).
* A workbook of several sheets declares them under ``[[sheets]]`` (name, aliases, columns): the
  first is the record sheet (one record per patient, as above); a sheet with ``table`` fills that
  table with one row per source row (``surgery.surgery_kind``, ``event.event_kind``...), linked
  to its patient by its own ``patient.local_id`` column.
* A format is looked up in the drop folder's ``formats/`` first, then in the package: a new
  centre needs no Python module.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from clms_etl.identifiers import BIRTH_DATE, HOSPITAL_NUMBER, NAME

FREE_TEXT_KINDS = ("site", "measure", "margins", "notes")  # read by clms_etl.readers.free_text
KINDS = ("code", "number", "date", "text", "list", "identifier", *FREE_TEXT_KINDS)
ROW_TABLES = ("patient", "tumour", "surgery")  # one canonical row per source record
EVENT_KINDS = ("local_recurrence", "metastasis", "death", "last_news")
IDENTIFIER_KINDS = (NAME, HOSPITAL_NUMBER, BIRTH_DATE)
SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".ods")


def fold(text: str) -> str:
    """Lower case, no accents, single spaces: the form codes are compared in."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", text).strip().lower()


def normalise_name(name: str) -> str:
    """``"Marge clinique (mm)"`` -> ``"marge_clinique_mm"``; accents, case, punctuation ignored."""
    text = fold(str(name).replace("\ufeff", "")).replace("°", "o").replace("®", "")
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


@dataclass(frozen=True)
class Column:
    """One column of the export and what it fills."""

    name: str  # header as the export writes it
    aliases: tuple[str, ...] = ()
    field: str | None = None  # "patient.sex", "event.death.date"
    kind: str = "identifier"
    codes: dict | None = None  # value as written -> canonical value
    other: object = None  # (list) the value of an entry outside the code list, with a warning
    factor: float = 1.0  # unit conversion to the canonical unit (mm -> cm: 0.1)
    integer: bool = False
    required: bool = True
    identifier: str | None = None  # name / hospital_number / birth_date
    upper_bound: str | None = None  # (number) "table.flag" set when written as "< n"
    written_missing: tuple[str, ...] | None = None  # (synthetic writer) this column's own tokens
    upper_case: bool = False  # (synthetic writer) the export writes it in capitals
    options: dict = dataclasses.field(default_factory=dict)  # the column's other keys (free-text kinds: patterns, units...)

    @functools.cached_property  # (asked per cell by the engine's loops)
    def key(self) -> str:
        return normalise_name(self.name)

    @property
    def table(self) -> str | None:
        return None if self.field is None else self.field.split(".")[0]

    @property
    def target(self) -> str | None:
        """The canonical column it fills (events: ``event_date``, ``death_cause``...)."""
        if self.field is None:
            return None
        if self.kind == "notes":  # events written as notes: every event column
            return "event_date"
        parts = self.field.split(".")
        if parts[0] != "event" or len(parts) == 2:
            return parts[1]
        return {"date": "event_date", "cause": "death_cause", "sites": "metastasis_site",
                "treatment": "treatment"}[parts[2]]

    @property
    def event(self) -> str | None:
        """The event kind of an event column (``relapse`` for the relapse treatment)."""
        return self.field.split(".")[1] if self.table == "event" and self.field.count(".") == 2 else None


@dataclass(frozen=True)
class FileLayout:
    name: str
    sheet: str | None = None
    encoding: str = "utf-8"
    separator: str = ","
    decimal: str = "."
    line_end: str | None = None
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    missing: tuple[str, ...] = ("",)
    written_missing: tuple[str, ...] = ()  # the tokens the export itself writes (synthetic writer)
    row_id: str = "{table}:{file}:{row}"
    date_cells: bool = False  # dates are date cells: text or a number in a date column is read with a warning
    hand_typed: bool = False  # codes folded without a case warning; "?" means unknown, except in dates
    quoting: bool = True  # False: a double quote is a character of its cell
    max_cell: int | None = None  # a longer cell is a broken line: null, value_too_long
    final_line_end: str = "required"  # "warning": a full last line without it is read, with a warning

    @classmethod
    def of(cls, f: dict, **defaults) -> FileLayout:
        """From a format file's ``[file]`` table (lists as tuples; keys of no field ignored)."""
        return cls(**defaults | {k: tuple(v) if isinstance(v, list) else v for k, v in f.items() if k in _LAYOUT_KEYS})

    @property
    def spreadsheet(self) -> bool:
        return Path(self.name).suffix.lower() in SPREADSHEETS


@dataclass(frozen=True)
class Declaration:
    """A whole format: one file (or sheet), one record per patient."""

    name: str
    file: FileLayout
    columns: tuple[Column, ...]
    constants: dict[str, dict] = field(default_factory=dict)  # table -> column -> value
    when_any_cell: tuple[str, ...] = ()  # tables whose row exists only when one of its cells is filled
    source: str = ""
    sheets: tuple[Declaration, ...] = ()  # a workbook's sheets, the record sheet first
    aliases: tuple[str, ...] = ()  # (a sheet) other names of the sheet
    table: str | None = None  # (a sheet) the table it fills with one row per source row

    def column(self, field_name: str) -> Column | None:
        return next((c for c in self.columns if c.field == field_name), None)

    def in_table(self, table: str) -> list[Column]:
        return [c for c in self.columns if c.table == table]

    @property
    def source_columns(self) -> dict[str, dict]:
        """table -> canonical column -> the export's column (event dates: one per kind), so that
        queries of validation name the centre's own column."""
        out: dict[str, dict] = {}
        for c in self.columns:
            if c.options.get("also"):  # a second output
                out.setdefault(c.table, {})[c.options["also"].split(".")[1]] = c.name
            if c.kind == "notes":  # every event but the last news
                out.setdefault("event", {}).setdefault("event_date", {}).update(dict.fromkeys(EVENT_KINDS[:3], c.name))
                out["event"].update(metastasis_site=c.name, death_cause=c.name, treatment=c.name)
            elif c.table == "event" and c.target == "event_date" and c.event:
                out.setdefault("event", {}).setdefault("event_date", {})[c.event] = c.name
            elif c.table in (*ROW_TABLES, "event") and c.target not in ("local_id", "birth_date"):
                out.setdefault(c.table, {})[c.target] = c.name
        birth = self.column("patient.birth_date")
        if birth is not None and self.column("patient.age_at_diagnosis_years") is None:
            out.setdefault("patient", {})["age_at_diagnosis_years"] = birth.name
        return out


def find(fmt: str, drop_folder: Path | None = None) -> Path | None:
    """The declaration of ``fmt``: ``<drop_folder>/formats/<fmt>.toml``, else the packaged one."""
    if drop_folder is not None and (Path(drop_folder) / "formats" / f"{fmt}.toml").is_file():
        return Path(drop_folder) / "formats" / f"{fmt}.toml"
    packaged = resources.files("clms_etl").joinpath(f"data/formats/{fmt}.toml")
    return Path(str(packaged)) if packaged.is_file() else None


def file_layout(path: Path | None) -> FileLayout | None:
    """The ``[file]`` table of a format file (an adapter's too); None without one."""
    if path is None:
        return None
    stat = Path(path).stat()
    return _file_layout(str(path), (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _file_layout(path: str, _stamp: tuple[int, int]) -> FileLayout | None:  # (once per file version, as _load)
    f = tomllib.loads(Path(path).read_text("utf-8")).get("file")
    return FileLayout.of(f) if f else None


def load(path: Path) -> Declaration:
    """Parse and check a declaration; a mistake raises ``ValueError`` naming the file and column."""
    stat = Path(path).stat()
    return _load(str(path), (stat.st_size, stat.st_mtime_ns))


_KEYS = {f.name for f in dataclasses.fields(Column)}  # a column's other keys are its options
_LAYOUT_KEYS = {f.name for f in dataclasses.fields(FileLayout)}


@functools.lru_cache(maxsize=64)
def _load(path: str, _stamp: tuple[int, int]) -> Declaration:  # (once per file version)
    data = tomllib.loads(Path(path).read_text("utf-8"))
    where = Path(path).name
    codes, f = data.get("codes", {}), data["file"]
    layout = FileLayout.of(f, written_missing=tuple(t for t in f.get("missing", ()) if t))
    tables = data.get("tables", {})
    constants = {t: dict(v.get("constants", {})) for t, v in tables.items()}
    when_any_cell = tuple(t for t, v in tables.items() if v.get("when_any_cell"))
    sheets = tuple(
        Declaration(data["name"], replace(layout, sheet=sheet["name"]), _columns(where, sheet["columns"], codes),
                    constants, when_any_cell, str(path), aliases=tuple(sheet.get("aliases", ())),
                    table=sheet.get("table"))
        for sheet in data.get("sheets", ()))
    for i, sheet in enumerate(sheets):  # the records first, then surgery or event rows; each linked by its key
        if sheet.table not in ((None,) if i == 0 else ("surgery", "event")) or not sheet.column("patient.local_id"):
            raise ValueError(f"{where}: sheet {sheet.file.sheet}: table {sheet.table!r} or no patient.local_id column")
    columns = tuple(c for s in sheets for c in s.columns) or _columns(where, data["columns"], codes)
    if not any(c.field == "patient.local_id" for c in columns):
        raise ValueError(f"{where}: no column is the patient key (field = \"patient.local_id\")")
    return Declaration(data["name"], layout, columns, constants, when_any_cell, str(path), sheets)


def _columns(where: str, declared: list[dict], codes: dict) -> tuple[Column, ...]:
    for c in declared:
        if "codes" in c and c["codes"] not in codes:
            raise ValueError(f"{where}: column {c['name']}: code list {c['codes']!r} is not declared under [codes]")
    return tuple(column(where, c, codes.get(c.get("codes"))) for c in declared)


def column(where: str, c: dict, codes: dict | None = None) -> Column:
    """The column declared by ``c`` (a ``[[columns]]`` table; ``codes``: its code list), checked."""
    name = c["name"]
    kind = c.get("kind") or ("code" if codes is not None else "identifier")
    if kind not in KINDS:
        raise ValueError(f"{where}: column {name}: kind {kind!r} is none of {KINDS}")
    if c.get("identifier") not in (None, *IDENTIFIER_KINDS):
        raise ValueError(f"{where}: column {name}: identifier {c['identifier']!r} is none of {IDENTIFIER_KINDS}")
    declared = {k: tuple(v) if isinstance(v, list) else v for k, v in c.items() if k in _KEYS}
    column = Column(**declared | dict(kind=kind, codes=codes, factor=float(c.get("factor", 1.0)),
                                      options={k: v for k, v in c.items() if k not in _KEYS}))
    if column.table not in (None, *ROW_TABLES, "event"):
        raise ValueError(f"{where}: column {name}: field {column.field!r} is in no table the engine fills")
    if column.field and column.field.count(".") == 2 and column.event not in (*EVENT_KINDS, "relapse", "notes"):
        raise ValueError(f"{where}: column {name}: event kind {column.event!r} is none of {EVENT_KINDS}")
    return column
