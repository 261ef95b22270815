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
* The workbook is parsed by a small streaming reader of the sheet XML (openpyxl's read-only
  mode spends most of its time building cell objects); if it cannot make sense of a
  workbook, openpyxl reads it instead.

Choices the contract leaves open:

* The three sheets are required (a missing sheet in a full dump would erase that part of the
  centre's data): missing -> :class:`ImportFailure`. A Patients sheet without any patient is
  an :class:`ImportFailure` too; an empty Chirurgies or Évènements sheet is allowed with an
  ``empty_sheet`` warning.
* The workbook has no vital status column: a patient with a ``Décès`` event is ``dead``, one
  with any other event ``alive`` (alive at last contact), one without events null.
* ``Site métastatique`` outside the list (``surrénale``) is a real organ: ``other``, no query
  (the contract allows other text). A ``Dernières nouvelles`` row of a dead patient is kept
  with an error (``last_news_for_dead_patient``): a dead patient's last news is the death.
* Blank rows (formatting left by Excel) are skipped and not counted as source rows.
* ``NA``/``ND`` are read as missing too; ``?``, ``-`` or ``inconnu`` in a coded, number or date
  cell are not this export's missing values and are reported (``unknown_code``...).
* A ``< 5`` mitotic count is stored as 5 with ``mitoses_is_upper_bound`` (warning).
* ``row_id``: ``<table>:<sheet>:<Excel row>`` (``tumour:Patients:7``, ``event:Évènements:12``).

Rules emitted (besides those of Cells: ``unknown_code``, ``value_normalised``,
``unparseable_number``, ``not_an_integer``, ``unparseable_date``, ``partial_date_imputed``, and
``unknown_column`` from ``match_columns``): ``missing_patient_id``, ``duplicate_patient``,
``unknown_patient``, ``empty_sheet``, ``value_without_header``, ``date_typed_as_text``,
``date_as_number``, ``implausible_age``, ``mitoses_upper_bound``, ``number_out_of_range``,
``value_truncated``, ``missing_surgery_date``, ``first_surgery_not_primary``,
``missing_event_date``, ``missing_event_kind``, ``site_without_metastasis``,
``cause_without_death``, ``last_news_for_dead_patient``.
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
from clms_etl.readers.base import (
    IDENTIFIER_MASK,
    WARNING,
    ColumnSpec,
    ImportFailure,
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
    path = _find(ctx.delivery_dir)
    try:
        return _read(ctx, path)
    except ImportFailure:
        raise
    except Exception as exc:  # never a raw traceback for a delivery; the cause stays chained
        raise ImportFailure(
            f"{FILE}: lecture impossible ({type(exc).__name__}); import de ce centre arrêté.", FILE
        ) from exc


def _find(folder: Path) -> Path:
    path = folder / FILE
    if path.is_file():
        return path
    if folder.is_dir():
        same = [p for p in folder.iterdir() if p.is_file() and p.name.lower() == FILE.lower()]
        if len(same) == 1:
            return same[0]
    raise ImportFailure(f"{FILE}: fichier absent de la livraison ({folder}); import de ce centre arrêté.", FILE)


# --- the workbook ---------------------------------------------------------------------------

_EPOCH_1900 = dt.datetime(1899, 12, 30)
_EPOCH_1904 = dt.datetime(1904, 1, 1)


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
        ROW = C = V = IS = None
        with self.zip.open(part) as f:
            for _, el in ET.iterparse(f):
                tag = el.tag
                if tag != ROW:
                    if ROW is None and (tag.endswith(("}c", "}row")) or tag in ("c", "row")):
                        ns = tag[: tag.rfind("}") + 1]
                        ROW, C, V, IS = ns + "row", ns + "c", ns + "v", ns + "is"
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
                            continue
                        text = v.text
                        if t == "s":
                            value = shared[int(text)]
                        elif t is None or t == "n":
                            value = float(text) if ("." in text or "E" in text or "e" in text) else int(text)
                            if c.get("s") in date_styles:
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


def _load_workbook(path: Path) -> dict[str, list[tuple]]:
    """{sheet title: rows} of every worksheet, by the fast reader or else by openpyxl."""
    if not zipfile.is_zipfile(path):
        raise ImportFailure(f"{FILE}: ce n'est pas un classeur Excel .xlsx (fichier vide, tronqué ou d'un "
                            f"autre format); import de ce centre arrêté.", FILE)
    try:
        book = _Workbook(path)
        try:
            return {title: book.rows(part) for title, part in book.sheets}
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
            return out
        finally:
            book.close()
    except Exception as exc:
        raise ImportFailure(f"{FILE}: classeur Excel illisible ou tronqué ({type(exc).__name__}); "
                            f"import de ce centre arrêté.", FILE) from exc


# --- sheets ---------------------------------------------------------------------------------

@dataclass
class _Sheet:
    role: str
    title: str
    header: dict[str, str]  # key -> header as written
    columns: dict[str, list]  # key -> raw values
    rows: list[int]  # Excel row numbers
    records: list[tuple]  # raw rows (duplicate comparison)
    pids: list[str | None] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)


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
        ctx.query(file=FILE, sheet=title, row=1, field=f"colonne {j + 1}", rule="value_without_header",
                  severity=WARNING, message=f"Valeurs dans la colonne {j + 1} sans en-tête: ignorées.")
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

class _Parser:
    """Column parsers: the common cell shapes are read inline, anything else goes to Cells."""

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

    def code(self, key: str, mapping: dict, table: str) -> list:
        """Text codes; numeric keys (``"1"``) also accept the Excel number 1."""
        raw, column = self.sheet.columns[key], self.sheet.header[key]
        numeric = {float(k): v for k, v in mapping.items() if k.isdigit()}
        get, nget = mapping.get, numeric.get
        out = [None] * len(raw)
        for i, v in enumerate(raw):
            if v is None:
                continue
            tv = type(v)
            if tv is str:
                hit = get(v)
                if hit is not None:
                    out[i] = hit
                    continue
                if v in FAST_MISSING:
                    continue
            elif (tv is int or tv is float) and numeric:
                hit = nget(v)
                if hit is not None:
                    out[i] = hit
                    continue
            if tv is str and fold(v) in UNKNOWN_TOKENS:
                _not_a_value(self.cells(i, table), column, v, "unknown_code")
                continue
            out[i] = self.cells(i, table).code(column, v, mapping)
        return out

    def number(self, key: str, table: str, *, factor: float = 1.0, integer: bool = False,
               bounds: set[int] | None = None) -> list:
        raw, column = self.sheet.columns[key], self.sheet.header[key]
        out = [None] * len(raw)
        for i, v in enumerate(raw):
            if v is None:
                continue
            tv = type(v)
            if tv is int or tv is float:
                if math.isfinite(v):
                    x = v * factor if factor != 1.0 else v
                    if not integer:
                        out[i] = round(float(x), 6)
                        continue
                    if float(x).is_integer() and abs(x) < INT32_MAX:
                        out[i] = int(x)
                        continue
            elif tv is str:
                if v in FAST_MISSING:
                    continue
                if bounds is not None and (m := _BOUND.match(v)):
                    out[i] = int(m.group(1))
                    bounds.add(i)
                    self.cells(i, table).error(
                        column, v, "mitoses_upper_bound",
                        f"Mitoses « {v} »: enregistré comme {m.group(1)} (borne), marqué comme borne supérieure.",
                        severity=WARNING)
                    continue
            cells = self.cells(i, table)
            if tv is str and fold(v) in UNKNOWN_TOKENS:
                _not_a_value(cells, column, v, "unparseable_number")
                continue
            got = cells.number(column, v, integer=integer, factor=factor)
            if integer and got is not None and abs(got) >= INT32_MAX:
                cells.error(column, v, "number_out_of_range", f"« {v} » hors des bornes possibles ({column}).")
                got = None
            out[i] = got
        return out

    def date(self, key: str, table: str, *, identifier: bool = False) -> tuple[list, list]:
        raw, column = self.sheet.columns[key], self.sheet.header[key]
        values, precisions = [None] * len(raw), [None] * len(raw)
        shown = (lambda v: IDENTIFIER_MASK) if identifier else str
        for i, v in enumerate(raw):
            if v is None:
                continue
            tv = type(v)
            if tv is dt.datetime or tv is dt.date:
                day = v.date() if tv is dt.datetime else v
                if 1900 <= day.year <= 2100:
                    values[i], precisions[i] = day, "day"
                else:
                    self.cells(i, table).error(column, v, "unparseable_date",
                                               f"Date impossible « {shown(day)} » ({column}).", identifier=identifier)
                continue
            if tv is str and v in FAST_MISSING:
                continue
            cells = self.cells(i, table)
            if (tv is int or tv is float) and math.isfinite(v) and 1 <= v < 2958466:
                # An Excel date that lost its date format: the serial number of the day.
                day = (_EPOCH_1900 + dt.timedelta(days=int(v) + (v < 60))).date()
                if 1900 <= day.year <= 2100:
                    values[i], precisions[i] = day, "day"
                    cells.error(column, v, "date_as_number",
                                f"Date saisie comme nombre ({shown(v)}): lue comme {shown(f'{day:%d/%m/%Y}')} "
                                f"({column}); remettre le format date.", severity=WARNING, identifier=identifier)
                    continue
            if tv is str and fold(v) in UNKNOWN_TOKENS:
                _not_a_value(cells, column, v, "unparseable_date", identifier)
                continue
            parsed = cells.date(column, v, identifier=identifier)
            if parsed is None:
                continue
            values[i], precisions[i] = parsed.value, parsed.precision
            if tv is str and not parsed.imputed:
                cells.error(column, v, "date_typed_as_text",
                            f"Date saisie comme texte « {shown(v)} » ({column}): lue, mais à saisir comme date Excel.",
                            severity=WARNING, identifier=identifier)
        return values, precisions

    def text(self, key: str, table: str) -> list:
        raw, column = self.sheet.columns[key], self.sheet.header[key]
        out = [None] * len(raw)
        for i, v in enumerate(raw):
            if v is None:
                continue
            text = v.strip() if type(v) is str else _cell_text(v)
            # (missing-value tokens are short: the folding is spared to long texts)
            if not text or text in FAST_MISSING or (len(text) <= 16 and is_missing(text)):
                continue
            if len(text) > MAX_TEXT:
                self.cells(i, table).error(column, v, "value_truncated",
                                           f"Texte de plus de {MAX_TEXT} caractères tronqué ({column}).",
                                           severity=WARNING)
                text = text[:MAX_TEXT]
            out[i] = text
        return out


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
    books = _load_workbook(path)
    titles = _pick_sheets(books)
    sheets = {role: _sheet(ctx, role, titles[role], books[titles[role]]) for role in SHEETS}
    del books
    patients = sheets["patients"]
    if patients.n == 0:
        raise ImportFailure(f"{FILE} (feuille {patients.title}): aucun patient (en-tête seul); import de ce "
                            f"centre arrêté (les données précédentes restent en place).", FILE)
    for role in ("surgeries", "events"):
        if sheets[role].n == 0:
            ctx.query(file=FILE, sheet=sheets[role].title, rule="empty_sheet", severity=WARNING,
                      message=f"Feuille « {sheets[role].title} » sans aucune ligne: export à vérifier.")

    for sheet in sheets.values():
        ids = [_local_id(v) for v in sheet.columns[structural.PATIENT_ID]]
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
        elif check == "unknown_patient":
            for i in index:
                parser.cells(i, table).error(column, raws[i], "unknown_patient",
                                             f"{column} absent de la feuille des patients: ligne orpheline.",
                                             identifier=True)
        elif check == "duplicate_patient":
            groups: dict[str, list[int]] = {}
            for i in index:
                groups.setdefault(sheet.keys[i], []).append(i)
            for members in groups.values():
                lines = ", ".join(str(sheet.rows[i]) for i in members)
                differ = len({sheet.records[i] for i in members}) > 1
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
                          rule=str(check), message=f"Contrôle de structure « {check} » en échec.")


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
    ages = [None] * sheet.n
    for i, (b, d) in enumerate(zip(birth, diag)):
        if b is None or d is None:
            continue
        age = age_at(b, d)
        if 0 <= age <= 120:
            ages[i] = age
        else:
            p.cells(i, "patient").error(sheet.header["date_de_naissance"], b, "implausible_age",
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
            p.cells(i, "surgery").error(column, None, "missing_surgery_date", "Chirurgie sans date d'intervention.",
                                        severity=WARNING)
        if numbers[i] == 1 and kinds[i] is not None and kinds[i] != "primary_excision" and sheet.keys[i]:
            p.cells(i, "surgery").error(sheet.header["type"], sheet.columns["type"][i], "first_surgery_not_primary",
                                        "La première intervention du patient n'est pas l'exérèse initiale: "
                                        "exérèse initiale manquante ou date erronée?", severity=WARNING)
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
            p.cells(i, "event").error(h["evenement"], None, "missing_event_kind", "Type d'évènement absent.")
        if dates[i] is None and is_missing(sheet.columns["date"][i]):
            p.cells(i, "event").error(h["date"], None, "missing_event_date", "Évènement sans date.")
        if site_texts[i] is not None:
            if kind == "metastasis" or kind is None:
                sites[i] = METASTASIS_SITES.get(fold(site_texts[i]), "other")
            else:
                p.cells(i, "event").error(h["site_metastatique"], site_texts[i], "site_without_metastasis",
                                          "Site métastatique sur un évènement qui n'est pas une métastase: ignoré.",
                                          severity=WARNING)
        if causes[i] is not None and kind not in ("death", None):
            p.cells(i, "event").error(h["cause_du_deces"], sheet.columns["cause_du_deces"][i], "cause_without_death",
                                      "Cause de décès sur un évènement qui n'est pas un décès: ignorée.",
                                      severity=WARNING)
            causes[i] = None
        if kind == "last_news" and sheet.pids[i] in dead:
            p.cells(i, "event").error(h["evenement"], sheet.columns["evenement"][i], "last_news_for_dead_patient",
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
              "death_cause": "Cause du décès"},
}
