"""Montpellier: ``clms_montpellier.csv``, one wide row per patient (``centre_exports.md``).

cp1252, ``;``, decimal comma, CRLF, ``dd/mm/yyyy``, missing as empty / ``NA`` / ``ND``. Each row
gives one patient, one tumour, the primary excision (the only operation exported) and the
events written as columns: ``DATE_RECIDIVE`` (local recurrence), ``DATE_META`` +
``SITES_META`` (one metastasis row per site, same date), ``STATUT_VITAL`` + ``DATE_DC`` +
``CAUSE_DC`` (death), ``DATE_DERNIERES_NOUVELLES`` (last news, only for patients not dead: a
dead patient's last news is the death). ``TTT_RECHUTE`` is the treatment of the first relapse
(local recurrence or metastasis) and goes on that event's row(s).

Parsing is vectorised with polars; a cell the fast path does not recognise (odd spacing, a
partial date, an unknown code...) goes through :class:`~clms_etl.readers.cells.Cells`, which
decides its value and records the data query - so the result is the same as a per-cell
parse, at a fraction of the cost on a clean file.

Choices the contract leaves open:

* A header-only file is an :class:`ImportFailure`: a nightly full dump with no patient is a
  broken export, and importing it would empty the centre in the warehouse.
* A file that is valid UTF-8 with non-ASCII bytes was saved in the wrong encoding: it is read
  as UTF-8 with a ``wrong_encoding`` warning. Bytes undefined in cp1252 become U+FFFD with an
  ``encoding_error`` warning.
* The export ends every line with CRLF: a file that does not end with a line break was cut
  during the transfer: :class:`ImportFailure`. A short or long record (a ``;`` typed in a
  cell) is a ``wrong_field_count`` error on that row; its cells are read, shifted, and the
  pipeline's identifier screen (``clms_etl/identifiers.py``) quarantines them whole, masked.
* A completely blank line is skipped with an ``empty_row`` warning (it is no record).
* A death event is written whenever the row says the patient died (``DCD``, a death date or a
  cause); a contradiction with ``STATUT_VITAL`` is an error query, not a silent choice.
* The surgery row exists when any of its cells is filled.
* ``NR`` is read as missing too; ``?``, ``-`` or ``inconnu`` in a coded, number or date column
  are not this export's missing values and are reported (``unknown_code``...).
* ``SITES_META`` outside the list (``surrénale``) is kept as ``other`` with a
  ``metastasis_site_other`` warning; a site typed twice gives one row.
* ``row_id``: ``patient:clms_montpellier.csv:<row>`` (``tumour:``, ``surgery:`` likewise),
  ``event:clms_montpellier.csv:<row>:<kind>`` (``...:metastasis:<n>`` for the n-th site).

Rules emitted (besides those of Cells: ``unknown_code``, ``value_normalised``,
``unparseable_number``, ``not_an_integer``, ``unparseable_date``, ``partial_date_imputed``, and
``unknown_column`` from ``match_columns``): ``missing_patient_id``, ``duplicate_patient``,
``wrong_field_count``, ``empty_row``, ``wrong_encoding``, ``encoding_error``, ``line_endings``,
``birth_after_diagnosis``, ``age_out_of_range``, ``mitoses_upper_bound``, ``number_out_of_range``, ``value_truncated``,
``surgery_date_missing``, ``event_date_missing``, ``metastasis_site_other``,
``vital_status_inconsistent``, ``missing_vital_status``, ``last_news_of_dead_patient``,
``treatment_without_relapse``, ``quote_in_cell`` (a double quote that is not CSV quoting, e.g. a
cell typed ``"Dupont``: the file is then read without quoting, quotes kept in the values).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from clms_etl import model
from clms_etl.identifiers import BIRTH_DATE, HOSPITAL_NUMBER, NAME
from clms_etl.readers.base import (
    IDENTIFIER_MASK,
    WARNING,
    ColumnSpec,
    ImportFailure,
    read_guarded,
    ReadContext,
    ReadResult,
    field_counts,
    match_columns,
    normalise_name,
)
from clms_etl.readers.cells import Cells, fold, is_missing, pseudonymise_many
from validations.structural import montpellier as structural

FILE = "clms_montpellier.csv"
ENCODING = "cp1252"
SEPARATOR = ";"
# Written by the centre's export for "no value"; anything else goes through Cells.is_missing.
FAST_MISSING = ["", "NA", "ND", "NR"]
MAX_TEXT = 2000  # free text longer than this is cut (a chart note, not a document)
INT32_MAX = 2**31 - 1


def _spec(name: str, *aliases: str, required: bool = True, identifier: bool = False) -> ColumnSpec:
    return ColumnSpec(normalise_name(name), (name, *aliases), required, identifier)


SPECS = [
    _spec("IPP", "NIP", "N° IPP", identifier=True),
    _spec("NOM", required=False, identifier=True),
    _spec("PRENOM", required=False, identifier=True),
    _spec("DDN", "DATE_NAISSANCE", identifier=True),
    _spec("SEXE"), _spec("IMMUNODEP"), _spec("DATE_DIAG"), _spec("SITE"), _spec("TAILLE_CM"),
    _spec("PRESENTATION"), _spec("DOULEUR"), _spec("CICATRICE"), _spec("DELAI_MOIS"),
    _spec("GRADE"), _spec("DIFF"), _spec("MITOSES"), _spec("NECROSE"), _spec("INVASION"),
    _spec("ULCERATION"), _spec("KI67"), _spec("DATE_CHIR"), _spec("MARGE_RCP_CM"),
    _spec("MARGE_CLIN_CM"), _spec("MARGE_HISTO_CM"), _spec("STATUT_R"), _spec("RT_ADJ"),
    _spec("DATE_RECIDIVE"), _spec("DATE_META"), _spec("SITES_META"), _spec("TTT_RECHUTE"),
    _spec("STATUT_VITAL"), _spec("DATE_DC"), _spec("CAUSE_DC"), _spec("DATE_DERNIERES_NOUVELLES"),
]
assert {s.key for s in SPECS if s.required} == set(structural.REQUIRED)
# what each identifier column holds (everything leaving the reader is screened against them)
IDENTIFIER_KINDS = {"ipp": HOSPITAL_NUMBER, "nom": NAME, "prenom": NAME, "ddn": BIRTH_DATE}
assert set(IDENTIFIER_KINDS) == {s.key for s in SPECS if s.identifier}

SEX = {"H": "male", "F": "female"}
YES_NO = {"1": True, "0": False}
SITES = {"TC": "head_neck", "TR": "trunk", "MS": "upper_limb", "MI": "lower_limb"}
PRESENTATIONS = {"NOD": "nodular", "ULC": "ulcerated", "VEG": "vegetative", "PLQ": "infiltrated_patch"}
GRADES = {"I": 1, "II": 2, "III": 3}
SCORES = {"1": 1, "2": 2, "3": 3}
NECROSIS = {"0": 0, "1": 1, "2": 2}
INVASION = {"D": "dermal", "DH": "dermo_hypodermal"}
RESECTION = {"R0": "R0", "R1": "R1", "R2": "R2"}
VITAL_STATUS = {"VIVANT": "alive", "DCD": "dead", "PDV": "lost_to_follow_up"}
DEATH_CAUSES = {"CLMS": "clms", "AUTRE": "other", "INCONNUE": "unknown"}
# SITES_META is typed by hand: compared folded; nouns, plurals and the usual adjectives.
METASTASIS_SITES = {
    "os": "bone", "osseuse": "bone", "osseux": "bone",
    "peau": "skin", "cutanee": "skin", "cutane": "skin",
    "poumon": "lung", "poumons": "lung", "pulmonaire": "lung",
    "foie": "liver", "hepatique": "liver",
    "ganglion": "lymph_node", "ganglions": "lymph_node", "ganglionnaire": "lymph_node",
    "colon": "colon", "colique": "colon",
    "autre": "other", "autres": "other",
}
EVENT_RANK = {"local_recurrence": 0, "metastasis": 1, "death": 2, "last_news": 3}


def read(ctx: ReadContext) -> ReadResult:
    return read_guarded(ctx, FILE, _read)


# --- the file -------------------------------------------------------------------------------

# control bytes that never occur in a text file (tab, line feed … carriage return do)
_CONTROL_BYTES = bytes(b for b in range(32) if b < 9 or 13 < b)


def _decode(ctx: ReadContext, data: bytes) -> str:
    """Bytes -> text: cp1252 by contract, UTF-8 (with a warning) when the centre saved it so."""
    if not data or (len(data) < 4096 and not data.strip()):
        raise ImportFailure(f"{FILE}: fichier vide; import de ce centre arrêté.", FILE)
    for bom, codec in ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            _wrong_encoding(ctx, "UTF-16")
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise ImportFailure(f"{FILE}: fichier UTF-16 illisible; import de ce centre arrêté.", FILE) from exc
    head = data[:65536]
    if (b"\x00" in head or head.startswith((b"PK\x03\x04", b"%PDF", b"\xd0\xcf\x11\xe0"))
            or len(head) - len(head.translate(None, _CONTROL_BYTES)) > len(head) // 100):
        raise ImportFailure(f"{FILE}: fichier binaire, pas un texte CSV; import de ce centre arrêté.", FILE)
    if data.startswith(b"\xef\xbb\xbf"):
        _wrong_encoding(ctx, "UTF-8")
        return data[3:].decode("utf-8", errors="replace")
    if not data.isascii():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # cp1252 text with accents is (practically) never valid UTF-8: this file is UTF-8.
            _wrong_encoding(ctx, "UTF-8")
            return text
    if len(data.translate(None, _CP1252_SPECIFIC)) == len(data):
        return data.decode("latin-1")  # same characters as cp1252 outside 0x80-0x9F, much faster
    try:
        return data.decode(ENCODING)
    except UnicodeDecodeError:
        text = data.decode(ENCODING, errors="replace")
        ctx.query(file=FILE, rule="encoding_error",
                  message=f"{text.count(chr(0xFFFD))} octet(s) non définis en cp1252 remplacés par « \ufffd ».")
        return text


_CP1252_SPECIFIC = bytes(range(0x80, 0xA0))  # where cp1252 and latin-1 differ


def _wrong_encoding(ctx: ReadContext, found: str) -> None:
    ctx.query(file=FILE, rule="wrong_encoding", value=found,
              message=f"Fichier encodé en {found} au lieu de cp1252 (contrat): lu en {found}, "
                      f"à corriger dans l'export.")


def _header(text: str) -> list[str]:
    end = text.find("\n")
    first = (text if end < 0 else text[:end]).rstrip("\r")
    if '"' not in first:
        return first.split(SEPARATOR)
    try:
        return next(csv.reader([first], delimiter=SEPARATOR))
    except (csv.Error, StopIteration) as exc:
        raise ImportFailure(f"{FILE}: ligne d'en-tête illisible; import de ce centre arrêté.", FILE) from exc


# A line whose double quotes all stand for CSV quoting: each field plain, or quoted with inner quotes doubled.
_QUOTED_LINE = re.compile(r'(?:"(?:[^"]|"")*"|[^";\r\n]*)(?:;(?:"(?:[^"]|"")*"|[^";\r\n]*))*\r?')


def _quote_char(ctx: ReadContext, text: str, header: list[str], found: dict[str, int]) -> str | None:
    """``'"'`` when every double quote of the file is CSV quoting, else None: a cell typed with a
    quote at its start or end (``"Dupont``) would open a quoted field swallowing separators and
    lines, so the quotes are then read as characters of the values (a record is a line, as the
    export writes it), and each such cell gets a warning naming its row and column."""
    if '"' not in text:
        return '"'
    identifiers = {found[s.key] for s in SPECS if s.identifier and s.key in found}
    stray = []
    for row, line in enumerate(text.split("\n")[1:], start=2):
        if '"' in line and not _QUOTED_LINE.fullmatch(line):
            stray.extend((row, j, cell) for j, cell in enumerate(line.rstrip("\r").split(SEPARATOR)) if '"' in cell)
    if not stray:
        return '"'
    for row, j, cell in stray:
        column = header[j] if j < len(header) else f"colonne {j + 1}"
        ctx.query(file=FILE, row=row, field=column, value=IDENTIFIER_MASK if j in identifiers else cell,
                  rule="quote_in_cell",
                  message=f"Guillemet (\") dans la cellule {column} de la ligne {row} : lu comme un caractère "
                          f"de la valeur (l'export ne met pas de guillemets).")
    return None


# --- vectorised cells -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    """A column to parse: how (``code``/``number``/``date``/``text``) and for which canonical table."""

    key: str
    kind: str
    table: str
    mapping: dict | None = None
    dtype: object = None
    factor: float = 1.0
    integer: bool = False
    suffix: str = ""  # row_id suffix of the canonical row (events: ":death"...)
    identifier: bool = False


@dataclass
class _Parsed:
    values: pl.Series
    present: pl.Series  # the cell said something (parsed or not)
    precision: pl.Series | None = None


_BOUND = re.compile(r"^\s*<\s*(\d+)\s*$")
# "?", "-", "inconnu": Cells reads them as missing (hand-typed charts), but this export's missing
# values are empty / NA / ND: in a coded, number or date column they are reported.
UNKNOWN_TOKENS = {"?", "-", "inconnu"}  # (all three are in cells.MISSING)
_NOT_A_VALUE = {"code": "unknown_code", "number": "unparseable_number", "date": "unparseable_date"}


def _not_a_value(cells: Cells, column: str, raw: str, kind: str, identifier: bool = False) -> None:
    cells.error(column, raw, _NOT_A_VALUE[kind],
                f"« {raw.strip()} » n'est pas une valeur prévue pour « {column} » "
                f"(valeur inconnue: laisser la cellule vide, NA ou ND).", identifier=identifier)


class _Cols:
    """Parses all columns in one polars pass; the cells the fast path cannot read (odd spacing,
    partial dates, unknown codes...) go one by one through :class:`Cells`, which decides their
    value and records the query - the same result as a per-cell parse."""

    def __init__(self, ctx: ReadContext, raw: pl.DataFrame, header: dict[str, str], rows: pl.Series,
                 pids: pl.Series):
        self.ctx, self.raw, self.header, self.rows, self.pids = ctx, raw, header, rows, pids
        self.n = raw.height
        self.bounds: set[int] = set()  # row indexes whose mitoses were written as a bound ("< 5")

    def cells(self, i: int, table: str, suffix: str = "") -> Cells:
        row = self.rows[i]
        return Cells(self.ctx, FILE, None, row, table, f"{table}:{FILE}:{row}{suffix}", self.pids[i])

    @staticmethod
    def _fast(f: _Field) -> pl.Expr:
        col = pl.col(f.key)
        if f.kind == "code":
            return col.replace_strict(list(f.mapping), list(f.mapping.values()), default=None, return_dtype=f.dtype)
        if f.kind == "number":
            value = col.str.replace(",", ".", literal=True).cast(pl.Float64, strict=False) * f.factor
            ok = value.is_finite()
            if f.integer:
                rounded = value.round(0)
                ok = ok & ((value - rounded).abs() <= 1e-9) & (rounded.abs() < INT32_MAX)
                return pl.when(ok).then(rounded).cast(pl.Int32)
            return pl.when(ok).then(value.round(6))
        if f.kind == "date":
            day = col.str.strptime(pl.Date, "%d/%m/%Y", strict=False, cache=False)  # (dates rarely repeat)
            return pl.when(day.dt.year().is_between(1900, 2100)).then(day)
        text = col.str.strip_chars()
        return pl.when((text.str.len_chars() <= MAX_TEXT) & ~text.is_in(FAST_MISSING)).then(text)

    def parse(self, fields: list[_Field]) -> dict[str, _Parsed]:
        exprs = []
        for f in fields:
            col = pl.col(f.key)
            exprs += [self._fast(f).alias(f.key), (col.is_null() | col.is_in(FAST_MISSING)).alias(f"{f.key}#missing")]
        fast = self.raw.lazy().select(exprs).collect()
        fast = fast.with_columns(  # cells said something the fast path could not read
            (~pl.col(f"{f.key}#missing") & pl.col(f.key).is_null()).alias(f"{f.key}#todo") for f in fields
        )
        todo = fast.select(pl.col(f"{f.key}#todo").sum() for f in fields).row(0)
        out = {}
        for f, count in zip(fields, todo):
            values, present = fast[f.key], ~fast[f"{f.key}#missing"]
            precision = None
            if f.kind == "date":
                precision = pl.select(pl.when(values.is_not_null()).then(pl.lit("day"))).to_series()
            if count:
                values, present, precision = self._fallback(f, fast[f"{f.key}#todo"], values, present, precision)
            out[f.key] = _Parsed(values.alias(f.key), present, precision)
        return out

    def _fallback(self, f: _Field, todo: pl.Series, values: pl.Series, present: pl.Series, precision):
        idx = todo.arg_true()
        raws = self.raw[f.key].gather(idx).to_list()
        column = self.header[f.key]
        got, gone, precisions = [], [], []
        for i, raw in zip(idx.to_list(), raws):
            cells = self.cells(i, f.table, f.suffix)
            if f.kind != "text" and len(raw) > 200:  # no code, number or date is that long (and folding it is slow)
                cells.error(column, raw, _NOT_A_VALUE[f.kind],
                            f"Valeur de {len(raw)} caractères dans « {column} »: export à vérifier.",
                            identifier=f.identifier)
                got.append(None)
                precisions.append(None)
                continue
            if is_missing(raw):
                if f.kind != "text" and fold(raw) in UNKNOWN_TOKENS:
                    _not_a_value(cells, column, raw, f.kind, f.identifier)
                gone.append(i)
                got.append(None)
                precisions.append(None)
                continue
            if f.kind == "code":
                got.append(cells.code(column, raw, f.mapping))
            elif f.kind == "number":
                got.append(self._number(f, cells, column, raw, i))
            elif f.kind == "date":
                parsed = cells.date(column, raw, identifier=f.identifier)
                got.append(None if parsed is None else parsed.value)
                precisions.append(None if parsed is None else parsed.precision)
            else:
                got.append(self._text(cells, column, raw))
                if got[-1] is None:
                    gone.append(i)
        values = values.scatter(idx, pl.Series(got, dtype=values.dtype))
        if gone:
            present = present.scatter(gone, False)
        if precision is not None:
            precision = precision.scatter(idx, pl.Series(precisions, dtype=pl.String))
        return values, present, precision

    def _number(self, f: _Field, cells: Cells, column: str, raw: str, i: int):
        if f.key == "mitoses" and (m := _BOUND.match(raw)):
            cells.error(column, raw, "mitoses_upper_bound",
                        f"Mitoses « {raw} »: enregistré comme {m.group(1)} (borne), marqué comme borne supérieure.")
            self.bounds.add(i)
            return int(m.group(1))
        value = cells.number(column, raw, integer=f.integer, factor=f.factor)
        if f.integer and value is not None and abs(value) >= INT32_MAX:
            cells.error(column, raw, "number_out_of_range", f"« {raw} » hors des bornes possibles ({column}).")
            return None
        return value

    @staticmethod
    def _text(cells: Cells, column: str, raw: str) -> str | None:
        text = raw.strip()
        if is_missing(text):
            return None
        if len(text) > MAX_TEXT:
            cells.error(column, raw, "value_truncated", f"Texte de plus de {MAX_TEXT} caractères tronqué ({column}).")
            text = text[:MAX_TEXT]
        return text


FIELDS = [
    _Field("sexe", "code", "patient", SEX, pl.String),
    _Field("immunodep", "code", "patient", YES_NO, pl.Boolean),
    _Field("date_diag", "date", "patient"),
    _Field("ddn", "date", "patient", identifier=True),
    _Field("statut_vital", "code", "patient", VITAL_STATUS, pl.String),
    _Field("site", "code", "tumour", SITES, pl.String),
    _Field("taille_cm", "number", "tumour"),
    _Field("presentation", "code", "tumour", PRESENTATIONS, pl.String),
    _Field("douleur", "code", "tumour", YES_NO, pl.Boolean),
    _Field("cicatrice", "code", "tumour", YES_NO, pl.Boolean),
    _Field("delai_mois", "number", "tumour"),
    _Field("grade", "code", "tumour", GRADES, pl.Int8),
    _Field("diff", "code", "tumour", SCORES, pl.Int8),
    _Field("mitoses", "number", "tumour", integer=True),
    _Field("necrose", "code", "tumour", NECROSIS, pl.Int8),
    _Field("invasion", "code", "tumour", INVASION, pl.String),
    _Field("ulceration", "code", "tumour", YES_NO, pl.Boolean),
    _Field("ki67", "number", "tumour"),
    _Field("date_chir", "date", "surgery"),
    _Field("marge_rcp_cm", "number", "surgery"),
    _Field("marge_clin_cm", "number", "surgery"),
    _Field("marge_histo_cm", "number", "surgery"),
    _Field("statut_r", "code", "surgery", RESECTION, pl.String),
    _Field("rt_adj", "code", "surgery", YES_NO, pl.Boolean),
    _Field("date_recidive", "date", "event", suffix=":local_recurrence"),
    _Field("date_meta", "date", "event", suffix=":metastasis:1"),
    _Field("sites_meta", "text", "event", suffix=":metastasis:1"),
    _Field("ttt_rechute", "text", "event"),
    _Field("date_dc", "date", "event", suffix=":death"),
    _Field("cause_dc", "code", "event", DEATH_CAUSES, pl.String, suffix=":death"),
    _Field("date_dernieres_nouvelles", "date", "event", suffix=":last_news"),
]
assert {f.key for f in FIELDS} == set(structural.REQUIRED) - {"ipp"}


# --- the read -------------------------------------------------------------------------------

def _read(ctx: ReadContext, path: Path) -> ReadResult:
    text = _decode(ctx, path.read_bytes())
    if "\n" not in text and "\r" in text:
        ctx.query(file=FILE, rule="line_endings",
                  message="Fins de ligne CR (Mac) au lieu de CRLF (contrat): lues quand même.")
        text = text.replace("\r", "\n")
    header = _header(text)
    found = match_columns(ctx, header, SPECS, FILE)
    width = len(header)
    quote = _quote_char(ctx, text, header, found)
    data = text.encode("utf-8")
    try:
        # NA / ND are the export's missing values: null from the start (Cells reads them so too)
        df = pl.read_csv(io.BytesIO(data), separator=SEPARATOR, has_header=True, infer_schema=False,
                         truncate_ragged_lines=True, quote_char=quote, null_values=["NA", "ND"])
    except Exception as exc:
        raise ImportFailure(f"{FILE}: CSV illisible ({type(exc).__name__}); import de ce centre arrêté.", FILE) from exc
    if df.width != width:
        raise ImportFailure(f"{FILE}: {df.width} colonnes lues pour {width} en-têtes; import de ce centre arrêté.", FILE)
    if df.height == 0:
        raise ImportFailure(f"{FILE}: aucun patient (en-tête seul); import de ce centre arrêté "
                            f"(les données précédentes restent en place).", FILE)
    if not text.endswith("\n"):
        # The export ends every line with CRLF: a file cut during the transfer ends mid-line.
        raise ImportFailure(f"{FILE}: fichier tronqué (la dernière ligne n'est pas terminée); "
                            f"import de ce centre arrêté.", FILE)
    fields = field_counts(data, df.height, SEPARATOR, text=text, quote=quote)
    del data

    rows_all = pl.int_range(2, df.height + 2, eager=True).cast(pl.Int64)
    blank = df.select(pl.all_horizontal(pl.all().is_null())).to_series()
    for row in rows_all.filter(blank).to_list():
        ctx.query(file=FILE, row=row, rule="empty_row", message=f"Ligne {row} vide ignorée.")
    fields_s = pl.Series(structural.FIELDS, fields, dtype=pl.Int64)
    fields_s = pl.select(pl.when(fields_s >= 0).then(fields_s)).to_series().alias(structural.FIELDS)
    rows = rows_all
    if blank.any():
        keep = ~blank
        df, rows, fields_s = df.filter(keep), rows_all.filter(keep), fields_s.filter(keep)

    raw = pl.DataFrame({key: df.to_series(i) for key, i in found.items()})
    for key, kind in IDENTIFIER_KINDS.items():
        if key in raw.columns:
            ctx.register_identifiers(kind, raw[key], header[found[key]])
    ids = raw[normalise_name("IPP")]
    keys = ids.str.strip_chars().str.to_uppercase()
    keys = pl.select(pl.when(~keys.is_in(FAST_MISSING)).then(keys)).to_series()
    raw = raw.with_columns(keys.alias(structural.PATIENT_KEY), rows.alias(structural.ROW), fields_s)
    pseudonyms = pseudonymise_many(ctx, keys.drop_nulls().unique().to_list())
    table = pl.DataFrame({"k": list(pseudonyms), "p": list(pseudonyms.values())}, schema={"k": pl.String, "p": pl.String})
    pids = keys.to_frame("k").join(table, on="k", how="left", maintain_order="left")["p"].alias("patient_id")
    names = {key: header[i] for key, i in found.items()}
    cols = _Cols(ctx, raw, names, rows, pids)

    _structural_queries(ctx, cols, df, width)
    frames = _parse(ctx, cols, pids, rows)
    return ReadResult(centre=ctx.centre, delivery_date=ctx.delivery_date, frames=frames, queries=ctx.queries,
                      files=[path], source_rows={FILE: df.height})


def _structural_queries(ctx: ReadContext, cols: _Cols, df: pl.DataFrame, width: int) -> None:
    failures = structural.failures(cols.raw, width)
    if failures.is_empty():
        return
    id_column = cols.header["ipp"]
    for check, group in failures.group_by("check", maintain_order=True):
        check = check[0]
        index = [i for i in group["index"].to_list() if i is not None]
        if check == "missing_patient_id":
            for i in index:
                raw = cols.raw["ipp"][i]
                cols.cells(i, "patient").error(
                    id_column, raw, "missing_patient_id",
                    f"N° patient ({id_column}) absent: la ligne ne peut être rattachée à aucun patient.",
                    identifier=True)
        elif check == "duplicate_patient":
            _duplicates(cols, df, index, id_column)
        elif check == "wrong_field_count":
            for i in index:
                got = cols.raw[structural.FIELDS][i]
                cols.cells(i, "patient").error(
                    None, None, "wrong_field_count",
                    f"La ligne compte {got} champs au lieu de {width}: colonnes décalées possibles, à vérifier.")
        else:  # a structural rule without a dedicated message
            for i in index or [None]:
                ctx.query(file=FILE, row=None if i is None else cols.rows[i], table="patient",
                          rule="structure_check_failed", message=f"Contrôle de structure « {check} » en échec.")


def _duplicates(cols: _Cols, df: pl.DataFrame, index: list[int], id_column: str) -> None:
    """Each repeat of a patient is an error; the first occurrence too when the copies differ."""
    keys = cols.raw[structural.PATIENT_KEY]
    hashes = df.hash_rows()
    groups: dict[str, list[int]] = {}
    for i in sorted(index):
        groups.setdefault(keys[i], []).append(i)
    for members in groups.values():
        lines = ", ".join(str(cols.rows[i]) for i in members)
        differ = len({hashes[i] for i in members}) > 1
        for j, i in enumerate(members):
            if j == 0 and not differ:
                continue
            what = "copies différentes" if differ else "copie identique"
            cols.cells(i, "patient").error(
                id_column, cols.raw["ipp"][i], "duplicate_patient",
                f"Patient présent sur plusieurs lignes ({lines}; {what}): garder une seule ligne.",
                identifier=True)


def _parse(ctx: ReadContext, c: _Cols, pids: pl.Series, rows: pl.Series) -> dict[str, pl.DataFrame]:
    v = c.parse(FIELDS)
    n = c.n
    ids = pl.DataFrame({"i": pl.int_range(0, n, eager=True), "patient_id": pids, "source_row": rows})

    def frame(table: str, columns: dict[str, pl.Series | pl.Expr]) -> pl.DataFrame:
        out = ids.with_columns(
            pl.format(f"{table}:{FILE}:{{}}", pl.col("source_row")).alias("row_id"),
            pl.lit(FILE).alias("source_file"),
            **{name: (value if isinstance(value, pl.Expr) else value.alias(name)) for name, value in columns.items()},
        )
        return model.conform(table, out)

    patient = frame("patient", {
        "centre": pl.lit(ctx.centre), "sex": v["sexe"].values, "age_at_diagnosis_years": _age(c, v),
        "immunosuppression": v["immunodep"].values, "diagnosis_date": v["date_diag"].values,
        "diagnosis_date_precision": v["date_diag"].precision, "vital_status": v["statut_vital"].values,
        "record_complete": pl.lit(True),
    })
    mitoses = v["mitoses"].values
    bound = pl.int_range(0, n, eager=True).is_in(sorted(c.bounds))
    tumour = frame("tumour", {
        "site": v["site"].values, "size_cm": v["taille_cm"].values, "presentation": v["presentation"].values,
        "pain": v["douleur"].values, "on_scar": v["cicatrice"].values,
        "consultation_delay_months": v["delai_mois"].values, "fnclcc_grade": v["grade"].values,
        "differentiation_score": v["diff"].values, "mitoses_per_10hpf": mitoses,
        # True for a bound written "< 5", False for a count, null without mitoses
        "mitoses_is_upper_bound": pl.select(pl.when(mitoses.is_not_null()).then(bound)).to_series(),
        "necrosis_score": v["necrose"].values, "invasion": v["invasion"].values,
        "histological_ulceration": v["ulceration"].values, "ki67_percent": v["ki67"].values,
    })

    # the primary excision, when the row says anything about it
    parts = ("date_chir", "marge_rcp_cm", "marge_clin_cm", "marge_histo_cm", "statut_r", "rt_adj")
    any_surgery = pl.select(pl.any_horizontal(v[k].present for k in parts)).to_series()
    surgery = frame("surgery", {
        "surgery_no": pl.lit(1, dtype=pl.Int32), "surgery_date": v["date_chir"].values,
        "surgery_date_precision": v["date_chir"].precision, "surgery_kind": pl.lit("primary_excision"),
        "proposed_margin_cm": v["marge_rcp_cm"].values, "clinical_margin_cm": v["marge_clin_cm"].values,
        "histological_margin_cm": v["marge_histo_cm"].values, "resection_status": v["statut_r"].values,
        "adjuvant_radiotherapy": v["rt_adj"].values,
    }).filter(any_surgery)
    for i in (any_surgery & ~v["date_chir"].present).arg_true().to_list():
        c.cells(i, "surgery").error(c.header["date_chir"], None, "surgery_date_missing",
                                    "Chirurgie renseignée sans date d'intervention.")

    return {"patient": patient, "tumour": tumour, "surgery": surgery, "event": _events(c, v, ids)}


def _age(c: _Cols, v: dict[str, _Parsed]) -> pl.Series:
    birth, diag = v["ddn"].values, v["date_diag"].values
    c.ctx.register_birth_dates(c.pids, birth)
    frame = pl.DataFrame({"b": birth, "d": diag})
    def month_day(c: str) -> pl.Expr:  # (month, day) as one comparable number; Int8 parts would overflow
        return pl.col(c).dt.month().cast(pl.Int32) * 100 + pl.col(c).dt.day().cast(pl.Int32)

    age = frame.select(
        (pl.col("d").dt.year().cast(pl.Int32) - pl.col("b").dt.year().cast(pl.Int32)
         - (month_day("d") < month_day("b")).cast(pl.Int32)).alias("age")
    ).to_series()
    bad = ((age < 0) | (age > 120)).fill_null(False)
    for i in bad.arg_true().to_list():
        c.cells(i, "patient").error(c.header["ddn"], birth[i],
                                    "birth_after_diagnosis" if age[i] < 0 else "age_out_of_range",
                                    "Âge au diagnostic impossible (date de naissance ou de diagnostic à vérifier).",
                                    identifier=True)
    return pl.select(pl.when(~bad).then(age)).to_series().cast(pl.Int16)


def _events(c: _Cols, v: dict[str, _Parsed], ids: pl.DataFrame) -> pl.DataFrame:
    n = c.n
    vital = v["statut_vital"].values
    dead = (vital == "dead").fill_null(False)
    died = dead | v["date_dc"].present | v["cause_dc"].present
    sites = _sites(c, v["sites_meta"])
    has_sites = pl.int_range(0, n, eager=True).is_in(sites["i"].unique().implode())
    lr_ok, me_ok = v["date_recidive"].present, v["date_meta"].present | has_sites
    lr, me = v["date_recidive"].values, v["date_meta"].values
    # TTT_RECHUTE belongs to the first relapse (all its site rows when it is a metastasis):
    # the recurrence unless a metastasis is dated earlier (an unknown date counts as last).
    far = pl.lit(dt.date.max)
    first_is_lr = lr_ok & (~me_ok | pl.select(lr.fill_null(far) <= me.fill_null(far)).to_series())
    ttt = v["ttt_rechute"].values
    src = ids.with_columns(
        lr=lr, lr_p=v["date_recidive"].precision, lr_ok=lr_ok,
        lr_t=pl.select(pl.when(first_is_lr).then(ttt)).to_series(),
        me=me, me_p=v["date_meta"].precision, me_only=v["date_meta"].present & ~has_sites,
        me_t=pl.select(pl.when(me_ok & ~first_is_lr).then(ttt)).to_series(),
        dc=v["date_dc"].values, dc_p=v["date_dc"].precision, cause=v["cause_dc"].values, died=died,
        dn=v["date_dernieres_nouvelles"].values, dn_p=v["date_dernieres_nouvelles"].precision,
        news=~died & v["date_dernieres_nouvelles"].present,
    )
    none = pl.lit(None, dtype=pl.String)

    def kind(mask: str, name: str, date: str, precision: str, cause=none, treatment=none, site=none,
             sub=pl.lit(1, dtype=pl.Int64), frame: pl.DataFrame = src) -> pl.DataFrame:
        return frame.filter(pl.col(mask)).select(
            "i", "patient_id", "source_row", pl.lit(name).alias("event_kind"), pl.col(date).alias("event_date"),
            pl.col(precision).alias("event_date_precision"), site.alias("metastasis_site"),
            cause.alias("death_cause"), treatment.alias("treatment"), sub.alias("sub"),
            pl.lit(EVENT_RANK[name], dtype=pl.Int8).alias("rank"),
        )

    # one metastasis row per site, all on DATE_META; a date without sites is one row, site unknown
    sited = sites.join(src, on="i", how="inner").with_columns(pl.lit(True).alias("all"))
    events = pl.concat([
        kind("lr_ok", "local_recurrence", "lr", "lr_p", treatment=pl.col("lr_t")),
        kind("all", "metastasis", "me", "me_p", treatment=pl.col("me_t"), site=pl.col("metastasis_site"),
             sub=pl.col("sub"), frame=sited),
        kind("me_only", "metastasis", "me", "me_p", treatment=pl.col("me_t")),
        kind("died", "death", "dc", "dc_p", cause=pl.col("cause")),
        kind("news", "last_news", "dn", "dn_p"),
    ])
    for i in (has_sites & ~v["date_meta"].present).arg_true().to_list():
        c.cells(i, "event", ":metastasis:1").error(
            c.header["date_meta"], None, "event_date_missing",
            f"Sites métastatiques renseignés ({c.header['sites_meta']}) sans date de métastase.")
    _death_queries(c, v, dead, died)

    # number 1..n per patient row in date order (ties: rank, then site order) - a sort, no windows
    events = events.sort(["i", "event_date", "rank", "sub"], nulls_last=True)
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    start = pl.when(pl.col("i") != pl.col("i").shift(1, fill_value=-1)).then(index).forward_fill()
    events = events.with_columns(
        (index - start + 1).cast(pl.Int32).alias("event_no"),
        pl.when(pl.col("event_kind") == "metastasis")
        .then(pl.format(f"event:{FILE}:{{}}:metastasis:{{}}", "source_row", "sub"))
        .otherwise(pl.format(f"event:{FILE}:{{}}:{{}}", "source_row", "event_kind")).alias("row_id"),
        pl.lit(FILE).alias("source_file"),
    )
    for i in (v["ttt_rechute"].present & ~lr_ok & ~me_ok).arg_true().to_list():
        c.cells(i, "event").error(c.header["ttt_rechute"], c.raw["ttt_rechute"][i], "treatment_without_relapse",
                                  "Traitement de rechute renseigné sans date de récidive ni de métastase.")
    return model.conform("event", events)


def _sites(c: _Cols, parsed: _Parsed) -> pl.DataFrame:
    """(i, sub, metastasis_site): SITES_META split on commas, decoded, one row per distinct site."""
    frame = pl.DataFrame({"i": pl.int_range(0, c.n, eager=True), "text": parsed.values}).filter(parsed.present)
    frame = frame.with_columns(pl.col("text").str.split(",")).explode("text").with_columns(
        pl.col("text").str.strip_chars()
    ).filter(pl.col("text") != "")
    fast = frame["text"].str.to_lowercase().replace_strict(
        [*METASTASIS_SITES, "côlon"], [*METASTASIS_SITES.values(), "colon"], default=None, return_dtype=pl.String)
    todo = fast.is_null().arg_true()
    if len(todo):
        column = c.header["sites_meta"]
        decoded = [_site(c, i, column, text)
                   for i, text in zip(frame["i"].gather(todo).to_list(), frame["text"].gather(todo).to_list())]
        fast = fast.scatter(todo, pl.Series(decoded, dtype=pl.String))
    frame = frame.with_columns(fast.alias("metastasis_site")).filter(pl.col("metastasis_site").is_not_null())
    frame = frame.unique(["i", "metastasis_site"], keep="first", maintain_order=True)
    return frame.select("i", (pl.int_range(pl.len()).over("i") + 1).alias("sub"), "metastasis_site")


def _site(c: _Cols, i: int, column: str, text: str) -> str | None:
    if is_missing(text):
        return None
    folded = fold(text)
    hit = METASTASIS_SITES.get(folded) or METASTASIS_SITES.get(folded.removesuffix("s"))
    if hit:
        return hit
    # A site outside the list is a real organ (adrenal, kidney...): kept as "other", reported.
    c.cells(i, "event", ":metastasis:1").error(
        column, text, "metastasis_site_other",
        f"Site métastatique « {text} » hors liste: enregistré comme « autre ».")
    return "other"


def _death_queries(c: _Cols, v: dict[str, _Parsed], dead: pl.Series, died: pl.Series) -> None:
    vital = v["statut_vital"].values
    column = c.header["statut_vital"]
    for i in (died & ~dead & vital.is_not_null()).arg_true().to_list():
        c.cells(i, "patient").error(column, c.raw["statut_vital"][i], "vital_status_inconsistent",
                                    f"{column} « {c.raw['statut_vital'][i]} » mais décès renseigné "
                                    f"({c.header['date_dc']} / {c.header['cause_dc']}).")
    for i in (died & vital.is_null()).arg_true().to_list():
        c.cells(i, "patient").error(column, c.raw["statut_vital"][i], "missing_vital_status",
                                    f"{column} vide ou illisible alors qu'un décès est renseigné.")
    for i in (dead & ~v["date_dc"].present).arg_true().to_list():
        c.cells(i, "event", ":death").error(c.header["date_dc"], None, "event_date_missing",
                                            "Patient décédé (DCD) sans date de décès.")
    news, death = v["date_dernieres_nouvelles"].values, v["date_dc"].values
    differs = (died & (news != death)).fill_null(False)
    for i in differs.arg_true().to_list():
        c.cells(i, "event", ":death").error(
            c.header["date_dernieres_nouvelles"], c.raw["date_dernieres_nouvelles"][i], "last_news_of_dead_patient",
            "Dernières nouvelles différentes de la date de décès: seule la date de décès est gardée.")

# Columns of the file holding each canonical field (so queries name the centre's column);
# events are columns here, one date column per kind.
SOURCE_COLUMNS = {
    "patient": {"diagnosis_date": "DATE_DIAG", "sex": "SEXE", "age_at_diagnosis_years": "DDN",
                "immunosuppression": "IMMUNODEP", "vital_status": "STATUT_VITAL"},
    "tumour": {"site": "SITE", "size_cm": "TAILLE_CM", "presentation": "PRESENTATION",
               "consultation_delay_months": "DELAI_MOIS", "fnclcc_grade": "GRADE", "differentiation_score": "DIFF",
               "mitoses_per_10hpf": "MITOSES", "necrosis_score": "NECROSE", "invasion": "INVASION",
               "ki67_percent": "KI67"},
    "surgery": {"surgery_date": "DATE_CHIR", "proposed_margin_cm": "MARGE_RCP_CM",
                "clinical_margin_cm": "MARGE_CLIN_CM", "histological_margin_cm": "MARGE_HISTO_CM",
                "resection_status": "STATUT_R"},
    "event": {"event_date": {"local_recurrence": "DATE_RECIDIVE", "metastasis": "DATE_META", "death": "DATE_DC",
                             "last_news": "DATE_DERNIERES_NOUVELLES"},
              "metastasis_site": "SITES_META", "death_cause": "CAUSE_DC", "treatment": "TTT_RECHUTE"},
}
