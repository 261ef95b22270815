"""Nice: ``export_dermato_nice.xlsx``, sheets Patients / Chirurgies / Évènements (``centre_exports.md``).

Real Excel dates; French headers with accents; blank or ``NR`` for missing; sizes and margins
in millimetres (converted to centimetres). Sheets and columns are matched by normalised name
(``Evenements`` finds ``Évènements``).

How cells are read:

* A date cell holds an Excel date. A date typed as text (``12/03/2014``) is parsed with a
  ``date_typed_as_text`` warning, a partial one is imputed (``partial_date_imputed``), anything
  else is an ``unparseable_date`` error; a bare Excel serial number without date format is
  converted with a ``date_as_number`` warning.
* Codes are decoded through explicit dictionaries; numbers typed as text (``1,5``) are read.
* The workbook is read by calamine (fastexcel) first. calamine types whole columns ("12"
  typed as text and the number 12 both come as "12"), which changes nothing for these columns
  except in a few shapes (a date column holding text or numbers, cell errors, booleans, dates
  outside date columns, numbers Python writes differently, identical duplicate rows, unusual
  number formats...): those workbooks, and any the fast path fails on, are read again by the
  exact reader, a small streaming reader of the sheet XML (openpyxl's read-only mode spends
  most of its time building cell objects; if even that reader cannot make sense of a workbook,
  openpyxl reads it). Results are the exact reader's in every case (tests compare both).
* Each distinct value of a column is parsed once; its queries are raised on every row holding it.

Choices the contract leaves open:

* The three sheets are required (a missing sheet in a full dump would erase that part of the
  centre's data): missing -> :class:`ImportFailure`. A Patients sheet without any patient is
  an :class:`ImportFailure` too; an empty Chirurgies or Évènements sheet is allowed with an
  ``empty_sheet`` warning.
* The workbook has no vital status column: a patient with a ``Décès`` event is ``dead``, one
  with any other event ``alive`` (alive at last contact), one without events null.
* ``Site métastatique`` outside the list (``surrénale``) is a real organ: ``other``, no query
  (the contract allows other text). A ``Dernières nouvelles`` row of a dead patient is kept
  with a warning (``last_news_of_dead_patient``): a dead patient's last news is the death.
* Blank rows (formatting left by Excel) are skipped and not counted as source rows.
* ``NA``/``ND`` are read as missing too; ``?``, ``-`` or ``inconnu`` in a coded, number or date
  cell are not this export's missing values and are reported (``unknown_code``...).
* A ``< 5`` mitotic count is stored as 5 with ``mitoses_is_upper_bound`` (warning).
* ``row_id``: ``<table>:<sheet>:<Excel row>`` (``tumour:Patients:7``, ``event:Évènements:12``).

Rules emitted (besides those of Cells: ``unknown_code``, ``value_normalised``,
``unparseable_number``, ``not_an_integer``, ``unparseable_date``, ``partial_date_imputed``, and
``unknown_column`` from ``match_columns``): ``missing_patient_id``, ``duplicate_patient``,
``orphan_row``, ``empty_sheet``, ``value_without_header``, ``date_typed_as_text``,
``date_as_number``, ``birth_after_diagnosis``, ``age_out_of_range``, ``mitoses_upper_bound``, ``number_out_of_range``,
``value_truncated``, ``surgery_date_missing``, ``first_surgery_not_primary``,
``event_date_missing``, ``required_value_missing``, ``metastasis_site_without_metastasis``,
``death_cause_without_death``, ``last_news_of_dead_patient``, ``unknown_sheet`` (a sheet, hidden or not,
the reader does not read: warning), ``merged_cells`` (a merged range of a sheet read: warning), ``formula_without_value`` (a formula saved without its
computed value: error on its row). A date-formatted number outside Excel's calendar (-1e12) makes
calamine panic: the exact reader then reads it and reports ``unparseable_date`` on its row.
"""

from __future__ import annotations

import datetime as dt
import math
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from clms_etl import model
from clms_etl.identifiers import BIRTH_DATE, HOSPITAL_NUMBER, NAME
from clms_etl.readers.base import (
    ERROR,
    IDENTIFIER_MASK,
    WARNING,
    ColumnSpec,
    ImportFailure,
    is_foreign_panic,
    read_guarded,
    ReadContext,
    ReadResult,
    match_columns,
    normalise_name,
)
from clms_etl.readers.cells import Cells, age_at, fold, is_missing, pseudonymise_many
from validations.structural import nice as structural

FILE = "export_dermato_nice.xlsx"
FAST_MISSING = frozenset({"", "NR", "nr", "NA", "ND"})
MAX_TEXT = 2000
INT32_MAX = 2**31 - 1

SHEETS = {
    "patients": ("Patients", "Patient"),
    "surgeries": ("Chirurgies", "Chirurgie"),
    "events": ("Évènements", "Événements", "Évènement", "Événement"),
}


def _spec(name: str, *aliases: str, required: bool = True, identifier: bool = False) -> ColumnSpec:
    return ColumnSpec(normalise_name(name), (name, *aliases), required, identifier)


_ID = ("N° dossier", "Numéro de dossier", "N dossier", "Num dossier")
SPECS = {
    "patients": [
        _spec(*_ID, identifier=True),
        _spec("Nom", required=False, identifier=True),
        _spec("Prénom", required=False, identifier=True),
        _spec("Date de naissance", identifier=True),
        _spec("Sexe"), _spec("Immunodépression"), _spec("Date du diagnostic"), _spec("Localisation"),
        _spec("Taille (mm)"), _spec("Présentation"), _spec("Douleur"), _spec("Sur cicatrice"),
        _spec("Délai 1ère consultation (mois)"), _spec("Grade FNCLCC"), _spec("Différenciation"),
        _spec("Mitoses /10 champs"), _spec("Nécrose"), _spec("Envahissement"),
        _spec("Ulcération histologique"), _spec("Ki67 (%)"),
    ],
    "surgeries": [
        _spec(*_ID, identifier=True), _spec("Date"), _spec("Type"), _spec("Marge proposée RCP (mm)"),
        _spec("Marge clinique (mm)"), _spec("Marge histologique (mm)"), _spec("Statut"),
        _spec("Radiothérapie adjuvante"),
    ],
    "events": [
        _spec(*_ID, identifier=True), _spec("Date"), _spec("Évènement", "Événement"),
        _spec("Site métastatique"), _spec("Cause du décès"), _spec("Traitement"),
    ],
}
# what each identifier column holds (everything leaving the reader is screened against them)
IDENTIFIER_KINDS = {structural.PATIENT_ID: HOSPITAL_NUMBER, "nom": NAME, "prenom": NAME,
                    "date_de_naissance": BIRTH_DATE}
assert set(IDENTIFIER_KINDS) == {s.key for specs in SPECS.values() for s in specs if s.identifier}
for _role, _specs in SPECS.items():
    assert {s.key for s in _specs if s.required} == set(structural.REQUIRED[_role]), _role

SEX = {"M": "male", "F": "female"}
YES_NO = {"Oui": True, "Non": False}
SITES = {"Tête et cou": "head_neck", "Tronc": "trunk", "Membre supérieur": "upper_limb", "Membre inférieur": "lower_limb"}
PRESENTATIONS = {"Nodule": "nodular", "Ulcération": "ulcerated", "Végétant": "vegetative", "Plaque infiltrée": "infiltrated_patch"}
SCORES = {"1": 1, "2": 2, "3": 3}
NECROSIS = {"Absente": 0, "<50%": 1, "< 50%": 1, "< 50 %": 1, "≥50%": 2, "≥ 50%": 2, "≥ 50 %": 2, ">=50%": 2}
INVASION = {"Derme": "dermal", "Derme et hypoderme": "dermo_hypodermal"}
SURGERY_KINDS = {
    "Exérèse initiale": "primary_excision", "Reprise": "re_excision",
    "Chirurgie de la récidive": "relapse_surgery", "Chirurgie de métastase": "metastasis_surgery",
}
RESECTION = {"R0": "R0", "R1": "R1", "R2": "R2"}
EVENT_KINDS = {"Récidive locale": "local_recurrence", "Métastase": "metastasis", "Décès": "death",
               "Dernières nouvelles": "last_news"}
EVENT_RANK = {"local_recurrence": 0, "metastasis": 1, "death": 2, "last_news": 3}
# Compared folded; any other text names a real organ: "other".
METASTASIS_SITES = {
    "os": "bone", "osseuse": "bone", "peau": "skin", "cutanee": "skin", "poumon": "lung",
    "pulmonaire": "lung", "foie": "liver", "hepatique": "liver", "ganglion": "lymph_node",
    "ganglionnaire": "lymph_node", "colon": "colon", "autre": "other",
}
DEATH_CAUSES = {"cLMS": "clms", "Autre": "other", "Inconnue": "unknown"}


def read(ctx: ReadContext) -> ReadResult:
    return read_guarded(ctx, FILE, _read, locate=_locate_bad_cell)


def _locate_bad_cell(path: Path) -> str | None:
    """Where a workbook that crashed a reader holds a cell no reader can decode, read cell by
    cell with openpyxl, which names such a cell in a warning (a date-formatted number outside
    Excel's calendar) instead of failing; None when nothing looks wrong."""
    import warnings

    import openpyxl

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            for ws in book.worksheets:
                ws.reset_dimensions()
                del caught[:]
                for _ in ws.iter_rows(values_only=True):
                    if caught:
                        cell = re.search(r"\bCell ([A-Z]+[0-9]+)\b", str(caught[0].message))
                        return f"feuille {ws.title}, cellule {cell.group(1) if cell else '?'}"
        finally:
            book.close()
    return None


# --- the workbook ---------------------------------------------------------------------------

_EPOCH_1900 = dt.datetime(1899, 12, 30)
_EPOCH_1904 = dt.datetime(1904, 1, 1)
_EXCEL_DAYS = 2958466  # serial of 01/01/10000: the end of Excel's calendar


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Workbook:
    """Cell values of an .xlsx as openpyxl's read-only mode gives them, about 3x faster.

    Only what an export needs: shared and inline strings, numbers, booleans, errors (as their
    text), date-formatted numbers as datetimes, cached formula results.
    """

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        try:
            self._load()
        except Exception:
            self.zip.close()
            raise

    def close(self) -> None:
        self.zip.close()

    def _xml(self, name: str) -> ET.Element:
        with self.zip.open(name) as f:
            return ET.parse(f).getroot()

    def _rels(self, part: str) -> dict[str, tuple[str, str]]:
        folder, name = posixpath.split(part)
        rels = posixpath.join(folder, "_rels", name + ".rels")
        out = {}
        if rels in self.zip.NameToInfo:
            for rel in self._xml(rels):
                target = rel.get("Target", "")
                if rel.get("TargetMode") == "External":
                    continue
                path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
                out[rel.get("Id")] = (rel.get("Type", "").rsplit("/", 1)[-1], path)
        return out

    def _load(self) -> None:
        workbook = next((p for t, p in self._rels("").values() if t == "officeDocument"), "xl/workbook.xml")
        rels = self._rels(workbook)
        self.epoch = _EPOCH_1900
        self.sheets: list[tuple[str, str]] = []
        for el in self._xml(workbook).iter():
            name = _local(el.tag)
            if name == "workbookPr" and el.get("date1904") in ("1", "true"):
                self.epoch = _EPOCH_1904
            elif name == "sheet":
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                kind, part = rels.get(rid, ("", ""))
                if kind == "worksheet":
                    self.sheets.append((el.get("name", ""), part))
        parts = {t: p for t, p in rels.values()}
        self.uncached: list[tuple[str, int, int]] = []  # (part, Excel row, column index) of formulas without value
        self.shared = self._shared(parts.get("sharedStrings"))
        self.date_styles = self._date_styles(parts.get("styles"))

    def _shared(self, part: str | None) -> list[str]:
        if not part or part not in self.zip.NameToInfo:
            return []
        out = []
        with self.zip.open(part) as f:
            for _, el in ET.iterparse(f):
                if _local(el.tag) == "si":
                    out.append(_string_item(el))
                    el.clear()
        return out

    def _date_styles(self, part: str | None) -> frozenset[str]:
        from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format

        if not part or part not in self.zip.NameToInfo:
            return frozenset()
        custom: dict[int, str] = {}
        dates = set()
        for el in self._xml(part):
            name = _local(el.tag)
            if name == "numFmts":
                for fmt in el:
                    custom[int(fmt.get("numFmtId", -1))] = fmt.get("formatCode", "")
            elif name == "cellXfs":
                for i, xf in enumerate(el):
                    fid = int(xf.get("numFmtId", 0))
                    code = custom.get(fid, BUILTIN_FORMATS.get(fid))
                    if code and is_date_format(code):
                        dates.add(str(i))
        return frozenset(dates)

    def rows(self, part: str) -> list[tuple]:
        """Rows as tuples; position = Excel row - 1 (rows absent from the XML are ``()``)."""
        shared, date_styles, epoch = self.shared, self.date_styles, self.epoch
        letters_to_index: dict[str, int] = {}
        out: list[tuple] = []
        ROW = C = V = IS = F = None
        with self.zip.open(part) as f:
            for _, el in ET.iterparse(f):
                tag = el.tag
                if tag != ROW:
                    if ROW is None and (tag.endswith(("}c", "}row")) or tag in ("c", "row")):
                        ns = tag[: tag.rfind("}") + 1]
                        ROW, C, V, IS, F = ns + "row", ns + "c", ns + "v", ns + "is", ns + "f"
                        if tag != ROW:
                            continue
                    else:
                        continue
                r = el.get("r")
                number = int(r) if r else len(out) + 1
                while len(out) < number - 1:
                    out.append(())
                values: list = []
                nxt = 0
                for c in el:
                    if c.tag != C:
                        continue
                    ref = c.get("r")
                    if ref:
                        letters = ref.rstrip("0123456789")
                        j = letters_to_index.get(letters)
                        if j is None:
                            j = 0
                            for ch in letters.upper():
                                j = j * 26 + (ord(ch) - 64)
                            j -= 1
                            letters_to_index[letters] = j
                    else:
                        j = nxt
                    nxt = j + 1
                    t = c.get("t")
                    if t == "inlineStr":
                        node = c.find(IS)
                        if node is None:
                            continue
                        value = _string_item(node)
                    else:
                        v = c.find(V)
                        if v is None or v.text is None:
                            if c.find(F) is not None:  # a formula Excel never computed: no value to read
                                self.uncached.append((part, number, j))
                            continue
                        text = v.text
                        if t == "s":
                            value = shared[int(text)]
                        elif t is None or t == "n":
                            value = float(text) if ("." in text or "E" in text or "e" in text) else int(text)
                            # outside Excel's calendar (0 to 31/12/9999): left a number, reported by the date parser
                            if c.get("s") in date_styles and 0 <= value < _EXCEL_DAYS:
                                if epoch is _EPOCH_1900 and value < 60:
                                    value += 1  # Excel's phantom 29/02/1900
                                value = epoch + dt.timedelta(days=value)
                        elif t == "b":
                            value = text.strip() not in ("0", "false")
                        elif t == "d":
                            try:
                                value = dt.datetime.fromisoformat(text)
                            except ValueError:
                                value = text
                        else:  # "str" (formula result) or "e" (error such as #N/A): the text
                            value = text
                    if j >= len(values):
                        values.extend([None] * (j + 1 - len(values)))
                    values[j] = value
                out.append(tuple(values))
                el.clear()
        return out


def _string_item(el: ET.Element) -> str:
    """Text of a string item: its ``t`` runs, phonetic guides (``rPh``) left out."""
    parts = []
    for child in el:
        name = _local(child.tag)
        if name == "t":
            parts.append(child.text or "")
        elif name == "r":
            parts.extend(t.text or "" for t in child if _local(t.tag) == "t")
    return "".join(parts)


def _load_workbook(path: Path) -> tuple[dict[str, list[tuple]], list[tuple[str, int, int]]]:
    """{sheet title: rows} of every worksheet, by the fast reader or else by openpyxl, and the
    (sheet title, Excel row, column index) of formula cells without a cached value (fast reader only:
    openpyxl reads them as empty)."""
    if not zipfile.is_zipfile(path):
        raise ImportFailure(f"{FILE}: ce n'est pas un classeur Excel .xlsx (fichier vide, tronqué ou d'un "
                            f"autre format); import de ce centre arrêté.", FILE)
    try:
        book = _Workbook(path)
        try:
            books = {title: book.rows(part) for title, part in book.sheets}
            titles = {part: title for title, part in book.sheets}
            return books, [(titles[part], row, j) for part, row, j in book.uncached]
        finally:
            book.close()
    except Exception:
        pass  # an unusual workbook: let openpyxl try
    try:
        import openpyxl

        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            out = {}
            for ws in book.worksheets:
                ws.reset_dimensions()  # a wrong <dimension> would cut rows off
                out[ws.title] = [tuple(r) for r in ws.iter_rows(values_only=True)]
            return out, []
        finally:
            book.close()
    except Exception as exc:
        raise ImportFailure(f"{FILE}: classeur Excel illisible ou tronqué ({type(exc).__name__}); "
                            f"import de ce centre arrêté.", FILE) from exc


# --- the fast path: calamine (fastexcel) ----------------------------------------------------------
#
# calamine parses a sheet about 10x faster than the streaming reader above, but it gives a column
# one type: a column mixing numbers and text ("NR") comes as text, "12" whether typed as text or
# as a number. For every column this reader needs, that difference changes nothing (a number and
# its text are read alike: same values, same queries) except in a few shapes that the checks
# below catch: then the workbook is read again by the exact reader (``_Inexact``). So the result
# is always the exact reader's; the fast path only skips its cost on ordinary workbooks.

class _Inexact(Exception):
    """The fast path cannot vouch for the result: read the workbook with the exact reader."""


# Text that may stand for a cell of another type (calamine's rendering of a date, a duration, a
# boolean, or a number Python would write differently), or that the two XML readers may decode
# differently (control characters, _xHHHH_ escapes).
_SUSPECT_TEXT = (r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|^(?:true|false)$|^-0$|^-?0\.0000|\d{16}"
                 r"|[\x00-\x08\x0b\x0c\x0d\x0e-\x1f]|_x[0-9A-Fa-f]{4}_")
_DATE_KEYS = {"date_de_naissance", "date_du_diagnostic", "date"}
# Number formats both readers classify alike (dates: only d m y / - . and spaces).
_SAFE_BUILTIN_FORMATS = set(range(0, 27)) | set(range(37, 50))
_SAFE_CUSTOM_FORMAT = re.compile(r'(?i)^(?:general|@|[dmy/\-. ]+|[0#?,.% ]+|[0#?,.% ]*[0#]E[+-]0+)$')
_MIDNIGHT_FLOOR = dt.datetime(1900, 3, 1)


def _fast_books(path: Path) -> dict[str, tuple[list, pl.DataFrame]] | None:
    """{sheet title: (header row, cells of rows 2...)} by calamine, or None if not installed."""
    try:
        import fastexcel
    except ImportError:  # pragma: no cover - a dependency of polars' read_excel
        return None
    book = _Workbook.__new__(_Workbook)
    book.zip = zipfile.ZipFile(path)
    try:
        workbook = next((p for t, p in book._rels("").values() if t == "officeDocument"), "xl/workbook.xml")
        rels = book._rels(workbook)
        book.sheets = []
        book.epoch = _EPOCH_1900
        for el in book._xml(workbook).iter():
            name = _local(el.tag)
            if name == "sheet":
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                kind, part = rels.get(rid, ("", ""))
                if kind == "worksheet":
                    book.sheets.append((el.get("name", ""), part))
        parts = {t: p for t, p in rels.values()}
        _check_styles(book, parts.get("styles"))
        shared = parts.get("sharedStrings")
        if shared and shared in book.zip.NameToInfo:
            with book.zip.open(shared) as f:
                if any(b"rPh" in chunk for chunk in iter(lambda: f.read(1 << 20), b"")):
                    raise _Inexact("phonetic runs")
        headers = {title: _first_row(book, part, shared) for title, part in book.sheets}
        if any(_has_formula(book, part) for _, part in book.sheets):
            raise _Inexact("formulas")  # calamine reads a formula without cached value as empty
    finally:
        book.zip.close()
    reader = fastexcel.read_excel(path)
    if reader.sheet_names != [title for title, _ in book.sheets]:
        raise _Inexact("sheets")
    out = {}
    for title, _ in book.sheets:
        sheet = reader.load_sheet(title, header_row=None, skip_rows=1, schema_sample_rows=None)
        batch, errors = sheet.to_arrow_with_errors()
        if errors is not None and errors.errors:
            raise _Inexact("cell errors")
        cells = pl.from_arrow(batch)
        if not isinstance(cells, pl.DataFrame):  # pragma: no cover
            raise _Inexact("arrow")
        columns = sheet.available_columns()
        width = max([c.absolute_index + 1 for c in columns] + [len(headers[title])])
        placed = {c.absolute_index: cells.get_column(c.name) for c in columns}
        cells = pl.DataFrame([
            placed[j].alias(f"c{j}") if j in placed else pl.Series(f"c{j}", [None] * cells.height, dtype=pl.Null)
            for j in range(width)
        ], height=cells.height)
        out[title] = (headers[title], cells)
    return out


def _check_styles(book: _Workbook, part: str | None) -> None:
    """_Inexact unless every number format in use is one both readers class alike (date or not)."""
    if not part or part not in book.zip.NameToInfo:
        return
    custom: dict[int, str] = {}
    for el in book._xml(part):
        name = _local(el.tag)
        if name == "numFmts":
            for fmt in el:
                custom[int(fmt.get("numFmtId", -1))] = fmt.get("formatCode", "")
        elif name == "cellXfs":
            for xf in el:
                fid = int(xf.get("numFmtId", 0))
                if fid in custom:
                    if not _SAFE_CUSTOM_FORMAT.match(custom[fid]):
                        raise _Inexact(f"number format {custom[fid]!r}")
                elif fid not in _SAFE_BUILTIN_FORMATS:
                    raise _Inexact(f"number format {fid}")


def _first_row(book: _Workbook, part: str, shared: str | None) -> list:
    """Row 1 of a sheet, as the exact reader gives it; _Inexact unless it holds only text."""
    with book.zip.open(part) as f:
        for _, el in ET.iterparse(f):
            if _local(el.tag) != "row":
                continue
            if el.get("r", "1") != "1":
                raise _Inexact("no row 1")
            values: list = []
            nxt = 0
            wanted: dict[int, int] = {}
            for c in el:
                if _local(c.tag) != "c":
                    continue
                ref = c.get("r")
                j = nxt
                if ref:
                    j = 0
                    for ch in ref.rstrip("0123456789").upper():
                        j = j * 26 + (ord(ch) - 64)
                    j -= 1
                nxt = j + 1
                t = c.get("t")
                if t == "inlineStr":
                    node = next((n for n in c if _local(n.tag) == "is"), None)
                    if node is None:
                        continue
                    value = _string_item(node)
                else:
                    v = next((n for n in c if _local(n.tag) == "v"), None)
                    if v is None or v.text is None:
                        continue
                    if t == "s":
                        wanted[j] = int(v.text)
                        value = None
                    elif t == "str":
                        value = v.text
                    else:
                        raise _Inexact("header cell not text")
                if j >= len(values):
                    values.extend([None] * (j + 1 - len(values)))
                values[j] = value
            if wanted:
                strings = _shared_upto(book, shared, max(wanted.values()))
                for j, k in wanted.items():
                    values[j] = strings[k]
            return values
    raise _Inexact("empty sheet")


def _shared_upto(book: _Workbook, part: str | None, last: int) -> list[str]:
    if not part or part not in book.zip.NameToInfo:
        raise _Inexact("shared strings")
    out = []
    with book.zip.open(part) as f:
        for _, el in ET.iterparse(f):
            if _local(el.tag) == "si":
                out.append(_string_item(el))
                el.clear()
                if len(out) > last:
                    return out
    raise _Inexact("shared strings")


def _fast_sheet(ctx: ReadContext, role: str, title: str, first: list, cells: pl.DataFrame) -> _Sheet:
    """:func:`_sheet` over calamine's cells (same header checks, blank rows, stray values)."""
    if not any(v is not None and str(v).strip() for v in first):
        raise _Inexact("header")  # the exact reader words the failure
    header = [None if h is None else str(h).strip() for h in first]
    found = match_columns(ctx, header, SPECS[role], FILE, sheet=title)
    width = len(header)
    names = cells.columns
    blank_text = r"^[\s\x1c-\x1f]*$"
    filled = [
        (pl.col(c).is_not_null() & ~pl.col(c).str.contains(blank_text)) if cells.schema[c] == pl.String
        else pl.col(c).is_not_null()
        for c in names
    ]
    cells = cells.with_row_index("_k", offset=2).filter(pl.any_horizontal(filled) if filled else pl.lit(False))
    numbers = cells.get_column("_k").to_list()
    cells = cells.drop("_k")
    stray = set()
    counts = cells.select(pl.all().is_not_null().any()).row(0) if cells.height else (False,) * len(names)
    for j, any_value in enumerate(counts):
        if any_value and (j >= width or not header[j]):
            stray.add(j)
    for j in sorted(stray):
        ctx.query(file=FILE, sheet=title, row=1, field=f"colonne {j + 1}", rule="value_without_header", message=f"Valeurs dans la colonne {j + 1} sans en-tête: ignorées.")
    if cells.width < width:
        cells = cells.with_columns(pl.lit(None).alias(f"c{j}") for j in range(cells.width, width))
    cells = cells.select(f"c{j}" for j in range(width))
    columns = {}
    for key, j in found.items():
        series = cells.get_column(f"c{j}")
        columns[key] = _exact_values(series, key)
    return _Sheet(role, title, {key: header[j] for key, j in found.items()}, columns, numbers, None, cells=cells)


def _exact_values(series: pl.Series, key: str) -> list:
    """The column's values as the exact reader gives them, or _Inexact."""
    dtype = series.dtype
    if dtype == pl.Null:
        return [None] * series.len()
    if key in _DATE_KEYS:
        if not isinstance(dtype, pl.Datetime):
            raise _Inexact(f"{key}: {dtype}")  # numbers or text among dates: types matter
    elif isinstance(dtype, (pl.Datetime, pl.Duration)):
        raise _Inexact(f"{key}: {dtype}")
    if isinstance(dtype, pl.Datetime):
        day = series.dt.truncate("1d")
        if ((series != day) | (series < _MIDNIGHT_FLOOR)).any():
            raise _Inexact("datetime with a time or before March 1900")
        return series.to_list()
    if dtype == pl.String:
        if series.str.contains(_SUSPECT_TEXT).any():
            raise _Inexact(f"{key}: suspect text")
        return series.to_list()
    if dtype == pl.Float64:
        if (series.abs() >= 2.0**53).any():
            raise _Inexact("large number")
        return [None if v is None else int(v) if v.is_integer() else v for v in series.to_list()]
    if dtype == pl.Boolean:
        return series.to_list()
    raise _Inexact(f"{key}: {dtype}")


# --- sheets ---------------------------------------------------------------------------------

@dataclass
class _Sheet:
    role: str
    title: str
    header: dict[str, str]  # key -> header as written
    columns: dict[str, list]  # key -> raw values
    rows: list[int]  # Excel row numbers
    records: list[tuple] | None  # raw rows (duplicate comparison); None: read from ``cells``
    pids: list[str | None] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    cells: pl.DataFrame | None = None  # calamine's cells of the kept rows (fast path only)

    @property
    def n(self) -> int:
        return len(self.rows)

    def record(self, i: int) -> tuple:
        if self.records is not None:
            return self.records[i]
        return self.cells.row(i)


def _pick_sheets(books: dict[str, list[tuple]]) -> dict[str, str]:
    by_name: dict[str, list[str]] = {}
    for title in books:
        by_name.setdefault(normalise_name(title), []).append(title)
    out = {}
    for role, names in SHEETS.items():
        hits = sorted({t for n in names for t in by_name.get(normalise_name(n), [])})
        if not hits:
            raise ImportFailure(f"{FILE}: feuille « {names[0]} » absente (feuilles: {', '.join(books) or 'aucune'}); "
                                f"import de ce centre arrêté.", FILE, names[0])
        if len(hits) > 1:
            raise ImportFailure(f"{FILE}: plusieurs feuilles pour « {names[0]} » ({', '.join(hits)}); "
                                f"import de ce centre arrêté.", FILE, names[0])
        out[role] = hits[0]
    return out


def _sheet(ctx: ReadContext, role: str, title: str, rows: list[tuple]) -> _Sheet:
    if not rows or not any(v is not None and str(v).strip() for v in rows[0]):
        raise ImportFailure(f"{FILE} (feuille {title}): ligne d'en-tête absente (feuille vide); "
                            f"import de ce centre arrêté.", FILE)
    header = [None if h is None else str(h).strip() for h in rows[0]]
    found = match_columns(ctx, header, SPECS[role], FILE, sheet=title)
    width = len(header)
    numbers, records = [], []
    stray: set[int] = set()
    for k, row in enumerate(rows[1:], start=2):
        if not any(v is not None and not (type(v) is str and not v.strip()) for v in row):
            continue
        if len(row) > width:
            stray.update(j for j in range(width, len(row)) if row[j] is not None)
            row = row[:width]
        elif len(row) < width:
            row = row + (None,) * (width - len(row))
        numbers.append(k)
        records.append(row)
    for j, h in enumerate(header):  # values under a blank header are ignored too: say so
        if not h and any(r[j] is not None for r in records):
            stray.add(j)
    for j in sorted(stray):
        ctx.query(file=FILE, sheet=title, row=1, field=f"colonne {j + 1}", rule="value_without_header", message=f"Valeurs dans la colonne {j + 1} sans en-tête: ignorées.")
    if records:
        transposed = list(zip(*records))
        columns = {key: list(transposed[j]) for key, j in found.items()}
    else:
        columns = {key: [] for key in found}
    return _Sheet(role, title, {key: header[j] for key, j in found.items()}, columns, numbers, records)


def _local_id(value) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        text = value.strip()
        if text.isdigit():
            return text
        return None if text in FAST_MISSING or is_missing(text) else text
    if type(value) is float and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _raw_frame(sheet: _Sheet) -> pl.DataFrame:
    data = {key: pl.Series(key, values, dtype=pl.String, strict=False) for key, values in sheet.columns.items()}
    data[structural.ROW] = pl.Series(structural.ROW, sheet.rows, dtype=pl.Int64)
    data[structural.PATIENT_KEY] = pl.Series(structural.PATIENT_KEY, sheet.keys, dtype=pl.String)
    return pl.DataFrame(data)


# --- per-cell parsing with fast paths --------------------------------------------------------

_SELF_KEYED = {str, dt.datetime, type(None)}


class _Recorder(Cells):
    """Stands in for the Cells of a row while a distinct value is parsed: records the queries,
    which are then raised on every row holding that value."""

    def __init__(self):  # (no row: nothing of the dataclass is used)
        self.calls: list[tuple[tuple, dict]] = []

    def error(self, *args, **kwargs) -> None:
        self.calls.append((args, kwargs))


class _Parser:
    """Column parsers: each distinct cell value is parsed once (the common shapes inline, anything
    else through Cells) and its queries are raised on every row that holds it."""

    def __init__(self, ctx: ReadContext, sheet: _Sheet):
        self.ctx, self.sheet = ctx, sheet
        self._cells: dict[tuple[int, str], Cells] = {}

    def cells(self, i: int, table: str) -> Cells:
        got = self._cells.get((i, table))
        if got is None:
            row = self.sheet.rows[i]
            got = Cells(self.ctx, FILE, self.sheet.title, row, table, f"{table}:{self.sheet.title}:{row}",
                        self.sheet.pids[i])
            self._cells[(i, table)] = got
        return got

    def _column(self, key: str, table: str, parse) -> list:
        """``parse(value, recorder) -> result`` once per distinct value, scattered to the rows."""
        raw = self.sheet.columns[key]
        # The memo key of each cell: the value itself for text and dates (the usual case, so the
        # column is its own list of keys); (0.0 and -0.0, 1 and True are equal as dict keys but
        # not read alike) type and repr for anything else.
        if set(map(type, raw)) <= _SELF_KEYED:
            keys = raw
        else:
            keys = [v if v is None or type(v) is str or type(v) is dt.datetime else (type(v), repr(v)) for v in raw]
        values: dict = {None: None}
        calls: dict = {}
        # each distinct key once, in order of first appearance, with the first cell holding it
        source = None if keys is raw else dict(zip(reversed(keys), reversed(raw)))
        for k in dict.fromkeys(keys):
            if k is None:
                continue
            v = k if source is None else source[k]
            recorder = _Recorder()
            values[k] = parse(v, recorder)
            if recorder.calls:
                calls[k] = recorder.calls
        out = list(map(values.__getitem__, keys))
        if calls:  # the queries of a value, raised on every row holding it, in row order
            for i, k in enumerate(keys):
                hit = calls.get(k) if k is not None else None
                if hit:
                    cells = self.cells(i, table)
                    for args, kwargs in hit:
                        cells.error(*args, **kwargs)
        return out

    def code(self, key: str, mapping: dict, table: str) -> list:
        """Text codes; numeric keys (``"1"``) also accept the Excel number 1."""
        column = self.sheet.header[key]
        numeric = {float(k): v for k, v in mapping.items() if k.isdigit()}
        get, nget = mapping.get, numeric.get

        def parse(v, cells):
            tv = type(v)
            if tv is str:
                hit = get(v)
                if hit is not None:
                    return hit
                if v in FAST_MISSING:
                    return None
            elif (tv is int or tv is float) and numeric:
                hit = nget(v)
                if hit is not None:
                    return hit
            if tv is str and fold(v) in UNKNOWN_TOKENS:
                _not_a_value(cells, column, v, "unknown_code")
                return None
            return cells.code(column, v, mapping)
        return self._column(key, table, parse)

    def number(self, key: str, table: str, *, factor: float = 1.0, integer: bool = False,
               bounds: set[int] | None = None) -> list:
        column = self.sheet.header[key]

        def parse(v, cells):
            tv = type(v)
            if tv is int or tv is float:
                if math.isfinite(v):
                    x = v * factor if factor != 1.0 else v
                    if not integer:
                        return round(float(x), 6), False
                    if float(x).is_integer() and abs(x) < INT32_MAX:
                        return int(x), False
            elif tv is str:
                if v in FAST_MISSING:
                    return None, False
                if bounds is not None and (m := _BOUND.match(v)):
                    cells.error(
                        column, v, "mitoses_upper_bound",
                        f"Mitoses « {v} »: enregistré comme {m.group(1)} (borne), marqué comme borne supérieure.")
                    return int(m.group(1)), True
            if tv is str and fold(v) in UNKNOWN_TOKENS:
                _not_a_value(cells, column, v, "unparseable_number")
                return None, False
            got = Cells.number(cells, column, v, integer=integer, factor=factor)
            if integer and got is not None and abs(got) >= INT32_MAX:
                cells.error(column, v, "number_out_of_range", f"« {v} » hors des bornes possibles ({column}).")
                got = None
            return got, False
        parsed = self._column(key, table, parse)
        out = [None] * len(parsed)
        for i, got in enumerate(parsed):
            if got is not None:
                out[i] = got[0]
                if got[1] and bounds is not None:
                    bounds.add(i)
        return out

    def date(self, key: str, table: str, *, identifier: bool = False) -> tuple[list, list]:
        column = self.sheet.header[key]
        shown = (lambda v: IDENTIFIER_MASK) if identifier else str

        def parse(v, cells):
            tv = type(v)
            if tv is dt.datetime or tv is dt.date:
                day = v.date() if tv is dt.datetime else v
                if 1900 <= day.year <= 2100:
                    return day, "day"
                cells.error(column, v, "unparseable_date", f"Date impossible « {shown(day)} » ({column}).",
                            identifier=identifier)
                return None
            if tv is str and v in FAST_MISSING:
                return None
            if (tv is int or tv is float) and math.isfinite(v) and 1 <= v < 2958466:
                # An Excel date that lost its date format: the serial number of the day.
                day = (_EPOCH_1900 + dt.timedelta(days=int(v) + (v < 60))).date()
                if 1900 <= day.year <= 2100:
                    cells.error(column, v, "date_as_number",
                                f"Date saisie comme nombre ({shown(v)}): lue comme {shown(f'{day:%d/%m/%Y}')} "
                                f"({column}); remettre le format date.", identifier=identifier)
                    return day, "day"
            if tv is str and fold(v) in UNKNOWN_TOKENS:
                _not_a_value(cells, column, v, "unparseable_date", identifier)
                return None
            parsed = Cells.date(cells, column, v, identifier=identifier)
            if parsed is None:
                return None
            if tv is str and not parsed.imputed:
                cells.error(column, v, "date_typed_as_text",
                            f"Date saisie comme texte « {shown(v)} » ({column}): lue, mais à saisir comme date Excel.", identifier=identifier)
            return parsed.value, parsed.precision
        parsed = self._column(key, table, parse)
        values, precisions = [None] * len(parsed), [None] * len(parsed)
        for i, got in enumerate(parsed):
            if got is not None:
                values[i], precisions[i] = got
        return values, precisions

    def text(self, key: str, table: str) -> list:
        column = self.sheet.header[key]

        def parse(v, cells):
            text = v.strip() if type(v) is str else _cell_text(v)
            # (missing-value tokens are short: the folding is spared to long texts)
            if not text or text in FAST_MISSING or (len(text) <= 16 and is_missing(text)):
                return None
            if len(text) > MAX_TEXT:
                cells.error(column, v, "value_truncated", f"Texte de plus de {MAX_TEXT} caractères tronqué ({column}).")
                text = text[:MAX_TEXT]
            return text
        return self._column(key, table, parse)


_BOUND = re.compile(r"^\s*<\s*(\d+)\s*$")
# "?", "-", "inconnu": Cells reads them as missing (hand-typed charts), but this export's missing
# values are blank / NR: in a coded, number or date cell they are reported.
UNKNOWN_TOKENS = {"?", "-", "inconnu"}  # (all three are in cells.MISSING)


def _not_a_value(cells: Cells, column: str, raw: str, rule: str, identifier: bool = False) -> None:
    cells.error(column, raw, rule, f"« {raw.strip()} » n'est pas une valeur prévue pour « {column} » "
                                   f"(valeur inconnue: laisser la cellule vide ou NR).", identifier=identifier)


def _cell_text(value) -> str:
    if type(value) is float and value.is_integer():
        return str(int(value))
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


# --- the read -------------------------------------------------------------------------------

def _read(ctx: ReadContext, path: Path) -> ReadResult:
    if not zipfile.is_zipfile(path):
        raise ImportFailure(f"{FILE}: ce n'est pas un classeur Excel .xlsx (fichier vide, tronqué ou d'un "
                            f"autre format); import de ce centre arrêté.", FILE)
    mark = len(ctx.queries)
    try:
        fast = _fast_books(path)
        if fast is not None:
            titles = _pick_sheets(fast)
            sheets = {role: _fast_sheet(ctx, role, titles[role], *fast[titles[role]]) for role in SHEETS}
            del fast
            return _read_sheets(ctx, path, sheets)
    except BaseException as exc:  # _Inexact, anything the exact reader may judge differently, or a
        # calamine panic on a cell it cannot convert (a date-formatted -1e12): the exact reader's word wins
        if not (isinstance(exc, Exception) or is_foreign_panic(exc)):
            raise
        del ctx.queries[mark:]
    books, uncached = _load_workbook(path)
    titles = _pick_sheets(books)
    sheets = {role: _sheet(ctx, role, titles[role], books[titles[role]]) for role in SHEETS}
    _uncached_formula_queries(ctx, sheets, books, uncached)
    del books
    return _read_sheets(ctx, path, sheets)


_TABLE_OF_ROLE = {"patients": "patient", "surgeries": "surgery", "events": "event"}
_FORMULA = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?f[\s>/]")


def _has_formula(book: _Workbook, part: str) -> bool:
    """Whether the sheet XML holds any formula element (read in chunks, a tag cut between two kept whole)."""
    tail = b""
    with book.zip.open(part) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if _FORMULA.search(tail + chunk):
                return True
            tail = chunk[-32:]
    return False


def _column_letter(j: int) -> str:
    letters = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        letters = chr(65 + r) + letters
    return letters


def _uncached_formula_queries(ctx: ReadContext, sheets: dict[str, _Sheet], books: dict[str, list[tuple]],
                              uncached: list[tuple[str, int, int]]) -> None:
    """A formula cell without a cached value holds no value any reader can see (the workbook was
    saved by a tool that does not compute formulas): an error on its row, never a silent blank."""
    role_of = {sheet.title: role for role, sheet in sheets.items()}
    for title, row, j in uncached:
        header = books[title][0] if books[title] else ()
        name = str(header[j]) if j < len(header) and header[j] is not None else f"colonne {j + 1}"
        role = role_of.get(title)
        data_row = role is not None and row in sheets[role].rows
        table = _TABLE_OF_ROLE[role] if data_row else None
        ctx.query(file=FILE, sheet=title, row=row, table=table, row_id=f"{table}:{title}:{row}" if data_row else None,
                  field=name, rule="formula_without_value" if data_row else "formula_in_header",
                  message=f"Cellule {_column_letter(j)}{row} ({name}) : formule sans valeur calculée (classeur "
                          f"enregistré sans recalcul) ; valeur illisible, ouvrir et réenregistrer dans Excel "
                          f"ou saisir la valeur.")


_MERGE = re.compile(rb'<(?:[A-Za-z_][\w.-]*:)?mergeCell\s[^>]*ref="([A-Z]+)([0-9]+)(?::([A-Z]+)([0-9]+))?"')


def _merged_ranges(book: _Workbook, part: str) -> list[tuple[str, int, str, int]]:
    """The merged ranges of a sheet (``E2:F3`` -> ("E", 2, "F", 3)), read in chunks (a tag cut
    between two chunks is kept whole by the overlap)."""
    found, tail = set(), b""
    with book.zip.open(part) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for m in _MERGE.finditer(tail + chunk):
                a, r1, b, r2 = m.groups()
                found.add((a.decode(), int(r1), (b or a).decode(), int(r2 or r1)))
            tail = chunk[-256:]
    return sorted(found, key=lambda t: (t[1], t[0]))


def _extra_sheet_queries(ctx: ReadContext, path: Path, used: set[str]) -> None:
    """A warning for every sheet of the workbook the reader does not read, hidden ones included:
    data typed there would otherwise be ignored without anyone knowing; and for every merged
    range of a sheet it reads: only the range's first cell holds a value, the others read empty."""
    book = _Workbook.__new__(_Workbook)
    book.zip = zipfile.ZipFile(path)
    try:
        workbook = next((p for t, p in book._rels("").values() if t == "officeDocument"), "xl/workbook.xml")
        rels = book._rels(workbook)
        for el in book._xml(workbook).iter():
            title = el.get("name", "")
            if _local(el.tag) != "sheet":
                continue
            if title in used:
                rid = next((v for k, v in el.attrib.items() if _local(k) == "id"), None)
                part = rels.get(rid, ("", ""))[1]
                if part in book.zip.NameToInfo:
                    for first_col, first_row, last_col, last_row in _merged_ranges(book, part):
                        cells = f"{first_col}{first_row}:{last_col}{last_row}"
                        ctx.query(file=FILE, sheet=title, row=first_row, field=cells, value=None,
                                  rule="merged_cells",
                                  message=f"Cellules fusionnées {cells} (feuille « {title} ») : seule la valeur de "
                                          f"{first_col}{first_row} est lue, les autres cellules de la plage sont "
                                          f"vides pour l'import. Défusionner et saisir chaque valeur.")
                continue
            hidden = el.get("state") in ("hidden", "veryHidden")
            ctx.query(file=FILE, sheet=title, field=None, value=title, rule="unknown_sheet",
                      message=f"Feuille {'masquée ' if hidden else ''}« {title} » non prévue par le contrat "
                              f"d'échange : non lue. Vérifier qu'elle ne contient pas de données à importer.")
    finally:
        book.zip.close()


def _read_sheets(ctx: ReadContext, path: Path, sheets: dict[str, _Sheet]) -> ReadResult:
    _extra_sheet_queries(ctx, path, {sheet.title for sheet in sheets.values()})
    patients = sheets["patients"]
    if patients.n == 0:
        raise ImportFailure(f"{FILE} (feuille {patients.title}): aucun patient (en-tête seul); import de ce "
                            f"centre arrêté (les données précédentes restent en place).", FILE)
    for role in ("surgeries", "events"):
        if sheets[role].n == 0:
            ctx.query(file=FILE, sheet=sheets[role].title, rule="empty_sheet",
                      message=f"Feuille « {sheets[role].title} » sans aucune ligne: export à vérifier.")

    for sheet in sheets.values():
        for key, kind in IDENTIFIER_KINDS.items():
            if key in sheet.columns:
                ctx.register_identifiers(kind, sheet.columns[key], sheet.header[key])
        ids = [_local_id(v) for v in sheet.columns[structural.PATIENT_ID]]
        ctx.register_identifiers(HOSPITAL_NUMBER, ids)
        sheet.keys = [None if v is None else v.upper() for v in ids]
    pseudonyms = pseudonymise_many(ctx, {k for s in sheets.values() for k in s.keys if k is not None})
    for sheet in sheets.values():
        sheet.pids = [None if k is None else pseudonyms[k] for k in sheet.keys]

    known = pl.Series([k for k in patients.keys if k is not None], dtype=pl.String).unique()
    for role, sheet in sheets.items():
        failures = structural.failures(_raw_frame(sheet), role, None if role == "patients" else known)
        _structural_queries(ctx, sheet, failures)

    frames = {}
    frames["patient"], frames["tumour"] = _patients(ctx, patients)
    frames["surgery"] = _surgeries(ctx, sheets["surgeries"])
    frames["event"], vital = _events(ctx, sheets["events"])
    frames["patient"] = frames["patient"].with_columns(
        pl.col("patient_id").replace_strict(vital, default=None, return_dtype=pl.String).alias("vital_status")
    )
    return ReadResult(
        centre=ctx.centre, delivery_date=ctx.delivery_date,
        frames={table: model.conform(table, frame) for table, frame in frames.items()},
        queries=ctx.queries, files=[path],
        source_rows={f"{FILE}[{s.title}]": s.n for s in sheets.values()},
    )


def _structural_queries(ctx: ReadContext, sheet: _Sheet, failures: pl.DataFrame) -> None:
    if failures.is_empty():
        return
    parser = _Parser(ctx, sheet)
    table = {"patients": "patient", "surgeries": "surgery", "events": "event"}[sheet.role]
    column = sheet.header[structural.PATIENT_ID]
    for check, group in failures.group_by("check", maintain_order=True):
        check = check[0]
        index = sorted(i for i in group["index"].to_list() if i is not None)
        raws = sheet.columns[structural.PATIENT_ID]
        if check == "missing_patient_id":
            for i in index:
                parser.cells(i, table).error(column, raws[i], "missing_patient_id",
                                             f"{column} absent: la ligne ne peut être rattachée à aucun patient.",
                                             identifier=True)
        elif check == "orphan_row":
            for i in index:
                parser.cells(i, table).error(column, raws[i], "orphan_row",
                                             f"{column} absent de la feuille des patients: ligne orpheline.",
                                             identifier=True)
        elif check == "duplicate_patient":
            groups: dict[str, list[int]] = {}
            for i in index:
                groups.setdefault(sheet.keys[i], []).append(i)
            for members in groups.values():
                lines = ", ".join(str(sheet.rows[i]) for i in members)
                differ = len({sheet.record(i) for i in members}) > 1
                if not differ and sheet.cells is not None:
                    # Text cells hide whether "12" was typed as text or as a number: the exact
                    # reader decides whether these copies are identical.
                    raise _Inexact("identical copies")
                for j, i in enumerate(members):
                    if j == 0 and not differ:
                        continue
                    what = "copies différentes" if differ else "copie identique"
                    parser.cells(i, table).error(
                        column, raws[i], "duplicate_patient",
                        f"Patient présent sur plusieurs lignes ({lines}; {what}): garder une seule ligne.",
                        identifier=True)
        else:  # a structural rule without a dedicated message
            for i in index or [None]:
                ctx.query(file=FILE, sheet=sheet.title, row=None if i is None else sheet.rows[i], table=table,
                          rule="structure_check_failed", message=f"Contrôle de structure « {check} » en échec.")


def _provenance(sheet: _Sheet, table: str) -> dict[str, list]:
    return {
        "patient_id": sheet.pids,
        "row_id": [f"{table}:{sheet.title}:{r}" for r in sheet.rows],
        "source_file": [FILE] * sheet.n,
        "source_sheet": [sheet.title] * sheet.n,
        "source_row": sheet.rows,
    }


def _patients(ctx: ReadContext, sheet: _Sheet) -> tuple[pl.DataFrame, pl.DataFrame]:
    p = _Parser(ctx, sheet)
    diag, diag_precision = p.date("date_du_diagnostic", "patient")
    birth, _ = p.date("date_de_naissance", "patient", identifier=True)
    ctx.register_birth_dates(sheet.pids, birth)
    ages = [None] * sheet.n
    for i, (b, d) in enumerate(zip(birth, diag)):
        if b is None or d is None:
            continue
        age = age_at(b, d)
        if 0 <= age <= 120:
            ages[i] = age
        else:
            p.cells(i, "patient").error(sheet.header["date_de_naissance"], b,
                                        "birth_after_diagnosis" if age < 0 else "age_out_of_range",
                                        "Âge au diagnostic impossible (date de naissance ou de diagnostic à vérifier).",
                                        identifier=True)
    del birth
    patient = pl.DataFrame({
        **_provenance(sheet, "patient"),
        "centre": [ctx.centre] * sheet.n,
        "sex": p.code("sexe", SEX, "patient"),
        "age_at_diagnosis_years": ages,
        "immunosuppression": p.code("immunodepression", YES_NO, "patient"),
        "diagnosis_date": diag,
        "diagnosis_date_precision": diag_precision,
        "record_complete": [True] * sheet.n,
    }, schema_overrides={"age_at_diagnosis_years": pl.Int16, "diagnosis_date": pl.Date})

    bounds: set[int] = set()
    mitoses = p.number("mitoses_10_champs", "tumour", integer=True, bounds=bounds)
    tumour = pl.DataFrame({
        **_provenance(sheet, "tumour"),
        "site": p.code("localisation", SITES, "tumour"),
        "size_cm": p.number("taille_mm", "tumour", factor=0.1),
        "presentation": p.code("presentation", PRESENTATIONS, "tumour"),
        "pain": p.code("douleur", YES_NO, "tumour"),
        "on_scar": p.code("sur_cicatrice", YES_NO, "tumour"),
        "consultation_delay_months": p.number("delai_1ere_consultation_mois", "tumour"),
        "fnclcc_grade": p.code("grade_fnclcc", SCORES, "tumour"),
        "differentiation_score": p.code("differenciation", SCORES, "tumour"),
        "mitoses_per_10hpf": mitoses,
        "mitoses_is_upper_bound": [None if m is None else i in bounds for i, m in enumerate(mitoses)],
        "necrosis_score": p.code("necrose", NECROSIS, "tumour"),
        "invasion": p.code("envahissement", INVASION, "tumour"),
        "histological_ulceration": p.code("ulceration_histologique", YES_NO, "tumour"),
        "ki67_percent": p.number("ki67", "tumour"),
    }, schema_overrides={k: model.TUMOUR[k] for k in ("size_cm", "consultation_delay_months", "ki67_percent",
                                                       "fnclcc_grade", "differentiation_score", "necrosis_score",
                                                       "mitoses_per_10hpf")})
    return patient, tumour


def _order(sheet: _Sheet, dates: list, ranks: list[int] | None = None) -> list[int]:
    """Number 1..n per patient in date order (unknown dates last; ties: rank, then sheet order)."""
    far = dt.date.max
    order = sorted(
        range(sheet.n),
        key=lambda i: (sheet.keys[i] or f"\0{i}", dates[i] or far, ranks[i] if ranks else 0, i),
    )
    numbers = [0] * sheet.n
    previous, k = object(), 0
    for i in order:
        key = sheet.keys[i] or f"\0{i}"
        k = k + 1 if key == previous else 1
        previous = key
        numbers[i] = k
    return numbers


def _surgeries(ctx: ReadContext, sheet: _Sheet) -> pl.DataFrame:
    p = _Parser(ctx, sheet)
    dates, precisions = p.date("date", "surgery")
    kinds = p.code("type", SURGERY_KINDS, "surgery")
    numbers = _order(sheet, dates)
    column = sheet.header["date"]
    for i, raw in enumerate(sheet.columns["date"]):
        if dates[i] is None and is_missing(raw):  # (an unreadable date already has its query)
            p.cells(i, "surgery").error(column, None, "surgery_date_missing", "Chirurgie sans date d'intervention.")
        if numbers[i] == 1 and kinds[i] is not None and kinds[i] != "primary_excision" and sheet.keys[i]:
            p.cells(i, "surgery").error(sheet.header["type"], sheet.columns["type"][i], "first_surgery_not_primary",
                                        "La première intervention du patient n'est pas l'exérèse initiale: "
                                        "exérèse initiale manquante ou date erronée?")
    return pl.DataFrame({
        **_provenance(sheet, "surgery"),
        "surgery_no": numbers,
        "surgery_date": dates,
        "surgery_date_precision": precisions,
        "surgery_kind": kinds,
        "proposed_margin_cm": p.number("marge_proposee_rcp_mm", "surgery", factor=0.1),
        "clinical_margin_cm": p.number("marge_clinique_mm", "surgery", factor=0.1),
        "histological_margin_cm": p.number("marge_histologique_mm", "surgery", factor=0.1),
        "resection_status": p.code("statut", RESECTION, "surgery"),
        "adjuvant_radiotherapy": p.code("radiotherapie_adjuvante", YES_NO, "surgery"),
    }, schema_overrides={"surgery_no": pl.Int32, "surgery_date": pl.Date, "proposed_margin_cm": pl.Float64,
                         "clinical_margin_cm": pl.Float64, "histological_margin_cm": pl.Float64})


def _events(ctx: ReadContext, sheet: _Sheet) -> tuple[pl.DataFrame, dict[str, str]]:
    p = _Parser(ctx, sheet)
    dates, precisions = p.date("date", "event")
    kinds = p.code("evenement", EVENT_KINDS, "event")
    causes = p.code("cause_du_deces", DEATH_CAUSES, "event")
    site_texts = p.text("site_metastatique", "event")
    treatments = p.text("traitement", "event")
    sites: list[str | None] = [None] * sheet.n
    h = sheet.header
    dead = {sheet.pids[i] for i in range(sheet.n) if kinds[i] == "death" and sheet.pids[i]}
    for i in range(sheet.n):
        kind = kinds[i]
        # (an unreadable kind or date already has its query: only the blank ones are flagged here)
        if kind is None and is_missing(sheet.columns["evenement"][i]):
            p.cells(i, "event").error(h["evenement"], None, "required_value_missing", "Type d'évènement absent.")
        if dates[i] is None and is_missing(sheet.columns["date"][i]):
            p.cells(i, "event").error(h["date"], None, "event_date_missing", "Évènement sans date.")
        if site_texts[i] is not None:
            if kind == "metastasis" or kind is None:
                sites[i] = METASTASIS_SITES.get(fold(site_texts[i]), "other")
            else:
                p.cells(i, "event").error(h["site_metastatique"], site_texts[i], "metastasis_site_without_metastasis",
                                          "Site métastatique sur un évènement qui n'est pas une métastase: ignoré.")
        if causes[i] is not None and kind not in ("death", None):
            p.cells(i, "event").error(h["cause_du_deces"], sheet.columns["cause_du_deces"][i], "death_cause_without_death",
                                      "Cause de décès sur un évènement qui n'est pas un décès: ignorée.")
            causes[i] = None
        if kind == "last_news" and sheet.pids[i] in dead:
            p.cells(i, "event").error(h["evenement"], sheet.columns["evenement"][i], "last_news_of_dead_patient",
                                      "« Dernières nouvelles » pour un patient décédé: les dernières nouvelles "
                                      "d'un patient décédé sont son décès.")
    ranks = [EVENT_RANK.get(k, 9) for k in kinds]
    vital: dict[str, str] = {}
    for pid, kind in zip(sheet.pids, kinds):
        if pid is not None and kind is not None:
            vital[pid] = "dead" if kind == "death" or vital.get(pid) == "dead" else "alive"
    frame = pl.DataFrame({
        **_provenance(sheet, "event"),
        "event_no": _order(sheet, dates, ranks),
        "event_kind": kinds,
        "event_date": dates,
        "event_date_precision": precisions,
        "metastasis_site": sites,
        "death_cause": causes,
        "treatment": treatments,
    }, schema_overrides={"event_no": pl.Int32, "event_date": pl.Date})
    return frame, vital

# Columns of the workbook holding each canonical field (so queries name the centre's column).
SOURCE_COLUMNS = {
    "patient": {"diagnosis_date": "Date du diagnostic", "sex": "Sexe", "age_at_diagnosis_years": "Date de naissance",
                "immunosuppression": "Immunodépression"},
    "tumour": {"site": "Localisation", "size_cm": "Taille (mm)", "presentation": "Présentation",
               "consultation_delay_months": "Délai 1ère consultation (mois)", "fnclcc_grade": "Grade FNCLCC",
               "differentiation_score": "Différenciation", "mitoses_per_10hpf": "Mitoses /10 champs",
               "necrosis_score": "Nécrose", "invasion": "Envahissement", "ki67_percent": "Ki67 (%)"},
    "surgery": {"surgery_date": "Date", "surgery_kind": "Type", "proposed_margin_cm": "Marge proposée RCP (mm)",
                "clinical_margin_cm": "Marge clinique (mm)", "histological_margin_cm": "Marge histologique (mm)",
                "resection_status": "Statut"},
    "event": {"event_date": "Date", "event_kind": "Évènement", "metastasis_site": "Site métastatique",
              "death_cause": "Cause du décès", "treatment": "Traitement"},
}
