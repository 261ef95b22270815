"""Nîmes: transcribed paper charts, ``nimes_dossiers.txt`` (``centre_exports.md``, "Nîmes").

Tab-separated Mac Roman text with CR line ends (CRLF and LF accepted too), one line per
patient, every value typed by hand. The free text is read by the small pure functions below
(``parse_date``, ``parse_site``, ``parse_size``, ``parse_mitoses``, ``parse_margins``,
``parse_evolution``...): each returns the canonical value(s) and a list of :class:`Issue`, and
never raises. :func:`read` applies each parser once per *distinct* cell value (hand-typed
values repeat a lot) and scatters the results back with polars, so a 250k-line file costs a
few thousand Python calls per column; queries are built only for the cells with an issue.

Choices the contract leaves open:

* A header-only file is an :class:`ImportFailure`: the export is a full dump of a registry
  that only grows, so zero patients means a broken export, and importing it would wipe the
  centre's previous import.
* Every contract column is required except ``Patient`` (the name, which is never read).
* ``?`` means "not specified" in value cells (the contract writes it for ``Taille``), but
  not in a date cell: a date exists (a diagnosis, an operation, news) and the chart must say
  which, so ``?`` there is an ``unparseable_date`` error.
* A bare number with no unit in ``Taille`` or ``Marges`` is an error (mm and cm both occur),
  except 0. Two unlabelled margins (``2 cm / 0,8 cm``) are read clinical then histological,
  the order the charts use, with a warning.
* ``Siège`` with terms of two regions is read as the last one when they are joined by
  de/du/des (``dos de la main`` -> upper limb), otherwise it is an ``ambiguous_site`` error.
* A metastasis site outside the six known ones becomes ``other`` with a warning; a note
  ``récidive`` without ``locale`` is read as a local recurrence with a warning.
* ``vital_status``: dead when an Évolution note says so, alive when ``Dernières nouvelles``
  holds something, otherwise null (no news at all). A dead patient's last news is the death.
* Lines with a wrong number of fields are read as far as they go (an error query each); a
  file whose last line is short and has no line end is truncated: ImportFailure. A blank line
  is skipped (``empty_row`` warning unless it trails the file).
* An Évolution note without a date, or a second death, still gives its event row: the
  canonical rules ``event_date_missing`` / ``multiple_deaths`` of validation report them (not
  reported twice here). A note's own issues point at its first event row, or at the patient
  row when the note gave no event.

Rule names emitted: ``unknown_code``, ``value_normalised`` (stray spaces), ``unparseable_date``,
``partial_date_imputed``, ``unparseable_number``, ``missing_unit``, ``out_of_range``,
``unparseable_margins``, ``ambiguous_margins``, ``margins_unlabelled``, ``unknown_site``,
``ambiguous_site``, ``mitoses_upper_bound``, ``unparsed_evolution_note``, ``ambiguous_note``,
``metastasis_site_other``, ``unknown_code``, ``last_news_of_dead_patient``,
``duplicate_patient``, ``missing_patient_id``, ``wrong_field_count``, ``value_too_long``,
``empty_row``, ``missing_final_line_end``, ``wrong_encoding``, ``unknown_column``. Queries are
built as frames (``ctx.extend_queries``) for the cells that have an issue, with the same rule
names, severities and masking as :class:`~clms_etl.readers.cells.Cells`. The common forms of
dates (``12/03/2014``, ``3/2014``, ``mars 2014``, ``2014``) and of Évolution notes (``<words>
<date> [(<text>)]``) are read in polars for all distinct values at once; the parsers above
read the rest, and the tests hold both paths to the same result.
"""

from __future__ import annotations

import codecs
import gc
import re
from pathlib import Path
from typing import NamedTuple

import polars as pl

from clms_etl import model, rules
from clms_etl.identifiers import BIRTH_DATE, HOSPITAL_NUMBER, NAME
from clms_etl.dates import FRENCH_MONTHS, ParsedDate, parse_french_date
from clms_etl.dates import _fold as _fold_date
from clms_etl.readers.base import (
    ERROR,
    IDENTIFIER_MASK,
    WARNING,
    find_delivery_file,
    ColumnSpec,
    ImportFailure,
    ReadContext,
    ReadResult,
    match_columns,
    normalise_name,
)
from clms_etl.readers.cells import Cells, fold, is_missing, pseudonymise_many
from validations.structural import nimes as structural

FILE = "nimes_dossiers.txt"
ENCODING = "mac_roman"
MAX_CELL = 2000  # characters; a longer "cell" is a broken line, not a chart value
MAX_MITOSES = 100_000  # the Int32 column's room, far above anything a pathologist counts
MAX_NUMBER = 1e9
MAX_HEADER = 65536

SPECS = [
    ColumnSpec("dossier", ("Dossier", "N° dossier", "Numéro de dossier", "IPP"), identifier=True),
    ColumnSpec("patient", ("Patient", "Nom", "Nom prénom"), required=False, identifier=True),
    ColumnSpec("ne_e_le", ("Né(e) le", "Né le", "Née le", "Date de naissance", "DDN"), identifier=True),
    ColumnSpec("sexe", ("Sexe",)),
    ColumnSpec("diagnostic", ("Diagnostic", "Date du diagnostic", "Date diagnostic")),
    ColumnSpec("siege", ("Siège", "Localisation")),
    ColumnSpec("taille", ("Taille",)),
    ColumnSpec("aspect", ("Aspect", "Présentation")),
    ColumnSpec("douleur", ("Douleur",)),
    ColumnSpec("cicatrice", ("Cicatrice", "Sur cicatrice")),
    ColumnSpec("grade", ("Grade", "Grade FNCLCC")),
    ColumnSpec("differenciation", ("Différenciation",)),
    ColumnSpec("mitoses", ("Mitoses",)),
    ColumnSpec("necrose", ("Nécrose",)),
    ColumnSpec("infiltration", ("Infiltration", "Envahissement")),
    ColumnSpec("ulceration", ("Ulcération", "Ulcération histologique")),
    ColumnSpec("ki67", ("Ki67", "Ki-67", "Ki67 (%)")),
    ColumnSpec("chirurgie", ("Chirurgie", "Date chirurgie", "Date de chirurgie")),
    ColumnSpec("marges", ("Marges",)),
    ColumnSpec("exerese", ("Exérèse",)),
    ColumnSpec("evolution", ("Évolution",)),
    ColumnSpec("dernieres_nouvelles", ("Dernières nouvelles", "DN", "Date des dernières nouvelles")),
]
# what each identifier column holds (everything leaving the reader is screened against them)
IDENTIFIER_KINDS = {"dossier": HOSPITAL_NUMBER, "patient": NAME, "ne_e_le": BIRTH_DATE}
assert set(IDENTIFIER_KINDS) == {s.key for s in SPECS if s.identifier}
assert [s.key for s in SPECS if s.required] == structural.REQUIRED


# --- issues -----------------------------------------------------------------------------------


class Issue(NamedTuple):
    """A problem with one value: rule name, severity, French message for the data manager."""

    rule: str
    severity: str
    message: str


def _issue(rule: str, message: str) -> Issue:
    """An issue under ``rule``, with the registry's severity."""
    return Issue(rule, rules.severity(rule), message)


def _absent(text: str | None) -> bool:
    return text is None or is_missing(text)


def _lookup(text: str, table: dict[str, object], label: str, allowed: str, squeeze: bool = False):
    """Decode ``text`` through ``table`` (keys folded); unknown -> error ``unknown_code``."""
    key = fold(text)
    if squeeze:
        key = key.replace(" ", "")
    if key in table:
        return table[key], []
    return None, [_issue("unknown_code", f"Valeur « {text} » inconnue pour « {label} » (attendu: {allowed}).")]


_NUM = r"[0-9]+(?:[.,][0-9]+)?"


def _float(text: str) -> float:
    return float(text.replace(",", "."))


def _too_big(value: float, text: str, label: str) -> list[Issue]:
    if value > MAX_NUMBER:  # hundreds of digits: a typing accident, not a measure
        return [_issue("number_out_of_range", f"« {text} »: nombre hors limites ({label}).")]
    return []


# --- dates --------------------------------------------------------------------------------------


def parse_date(text: str | None, label: str = "date", *, identifier: bool = False) -> tuple[ParsedDate | None, list[Issue]]:
    """``12/03/2014``, ``3/2014``, ``mars 2014``, ``2014`` (partial: imputed + warning).

    Only a blank cell is a missing date; ``?`` and anything else are ``unparseable_date``.
    """
    if text is None or not text.strip():
        return None, []
    shown = IDENTIFIER_MASK if identifier else text
    try:
        parsed = parse_french_date(text)
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None or not (1900 <= parsed.value.year <= 2100):
        return None, [_issue("unparseable_date", f"Date illisible « {shown} » ({label}).")]
    if parsed.imputed:
        # The imputed day would give a birth month away: not shown for an identifier.
        day = "" if identifier else f" au {parsed.value:%d/%m/%Y}"
        return parsed, [_issue("partial_date_imputed", f"Date partielle « {shown} » imputée{day} ({label}).")]
    return parsed, []


# The common written forms, read by polars for a whole column of distinct values at once; a
# value they do not match exactly (or an impossible date) goes through parse_date.
_FAST_DMY = r"^([0-9]{1,2})[/.\-]([0-9]{1,2})[/.\-]([0-9]{4})$"
_FAST_MY = r"^([0-9]{1,2})[/.\-]([0-9]{4})$"
_FAST_MONTH_NAME_Y = r"^(\p{L}+)\.? ([0-9]{4})$"
_FAST_Y = r"^([0-9]{4})$"


def _month_numbers(word: pl.Expr, unique: pl.Series) -> pl.Expr:
    """The month a written month name stands for (``mars``, ``Août``, ``janv``), as parse_date
    folds it (accents, case); null for any other word."""
    words = unique.to_frame("_raw").select(word.drop_nulls().unique())[:, 0].to_list()
    months = {w: FRENCH_MONTHS[f] for w in words if (f := _fold_date(w)) in FRENCH_MONTHS}
    return word.replace_strict(months, default=None, return_dtype=pl.Int32)


def _fast_dates(unique: pl.Series) -> pl.DataFrame:
    """``_raw``, ``_value``, ``_precision``: the date of each distinct value exactly as
    :func:`parse_date` gives it, for ASCII-digit ``12/03/2014``, ``3/2014``, ``2014`` and ``mars
    2014`` / ``Août 2014`` within 1900-2100; null for anything else, which parse_date must then read."""
    text = pl.col("_raw")

    def part(pattern: str, group: int) -> pl.Expr:
        return text.str.extract(pattern, group).cast(pl.Int32)

    with_month_name = pl.col("_n_month").is_not_null()
    return (
        unique.alias("_raw").to_frame()
        .with_columns(
            _d_day=part(_FAST_DMY, 1), _d_month=part(_FAST_DMY, 2), _d_year=part(_FAST_DMY, 3),
            _m_month=part(_FAST_MY, 1), _m_year=part(_FAST_MY, 2), _y_year=part(_FAST_Y, 1),
            _n_month=_month_numbers(text.str.extract(_FAST_MONTH_NAME_Y, 1), unique),
            _n_year=part(_FAST_MONTH_NAME_Y, 2),
        )
        .with_columns(
            _year=pl.coalesce("_d_year", "_m_year", pl.when(with_month_name).then("_n_year"), "_y_year"),
            _month=pl.coalesce("_d_month", "_m_month", "_n_month",
                               pl.when(pl.col("_y_year").is_not_null()).then(pl.lit(7, dtype=pl.Int32))),
            _day=pl.coalesce("_d_day",
                             pl.when(pl.col("_m_year").is_not_null() | with_month_name).then(pl.lit(15, dtype=pl.Int32)),
                             pl.when(pl.col("_y_year").is_not_null()).then(pl.lit(1, dtype=pl.Int32))),
            _precision=pl.when(pl.col("_d_year").is_not_null()).then(pl.lit("day"))
            .when(pl.col("_m_year").is_not_null() | with_month_name).then(pl.lit("month"))
            .when(pl.col("_y_year").is_not_null()).then(pl.lit("year")),
        )
        # From the first of the month, so an impossible day (31/02) never reaches the date
        # constructor: it overflows into the next month and is refused below.
        .with_columns(_first=pl.date(pl.when(pl.col("_year").is_between(1900, 2100)).then("_year"),
                                     pl.when(pl.col("_month").is_between(1, 12)).then("_month"), 1))
        .with_columns(_value=pl.col("_first") + pl.duration(days=pl.col("_day") - 1))
        .with_columns(_ok=((pl.col("_day") >= 1) & (pl.col("_value").dt.month() == pl.col("_first").dt.month()))
                      .fill_null(False))
        .select("_raw", pl.when("_ok").then("_value").alias("_value"), pl.when("_ok").then("_precision").alias("_precision"))
    )


def _fast_date_frame(unique: pl.Series, label: str, identifier: bool = False) -> pl.DataFrame:
    """For distinct raw values: ``_raw``, ``_ok`` (read here), ``_value``, ``_precision`` and the
    issue parse_date would give (``rule``, ``severity``, ``message``; null when none)."""
    shown = pl.lit(IDENTIFIER_MASK) if identifier else pl.col("_raw")
    day = pl.lit("") if identifier else pl.lit(" au ") + pl.col("_value").dt.strftime("%d/%m/%Y")
    partial = pl.col("_precision") != "day"
    return _fast_dates(unique).with_columns(
        _ok=pl.col("_value").is_not_null(),
        rule=pl.when(partial).then(pl.lit("partial_date_imputed")),
        severity=pl.when(partial).then(pl.lit(rules.severity("partial_date_imputed"))),
        message=pl.when(partial).then(pl.concat_str(
            pl.lit("Date partielle « "), shown, pl.lit(" » imputée"), day, pl.lit(f" ({label}).")
        )),
    )


# --- codes --------------------------------------------------------------------------------------

_SEX = {"homme": "male", "h": "male", "masculin": "male", "femme": "female", "f": "female", "feminin": "female"}
_YES_NO = {"oui": True, "o": True, "non": False, "n": False}
_PRESENTATION = {
    "nodule": "nodular", "nodulaire": "nodular",
    "ulcere": "ulcerated", "ulceree": "ulcerated", "ulceration": "ulcerated",
    "vegetant": "vegetative", "vegetante": "vegetative",
    "plaque infiltree": "infiltrated_patch", "plaque": "infiltrated_patch",
}
_DIFFERENTIATION = {"bien": 1, "moyennement": 2, "peu": 3, "1": 1, "2": 2, "3": 3}
_NECROSIS = {  # compared without spaces
    "absente": 0, "absent": 0, "absence": 0, "non": 0, "aucune": 0, "0": 0, "0%": 0, "pasdenecrose": 0,
    "<50%": 1, "<50": 1,
    ">50%": 2, ">50": 2, ">=50%": 2, ">=50": 2, "≥50%": 2, "≥50": 2,
}
_INVASION = {
    "derme": "dermal", "dermique": "dermal",
    "derme et hypoderme": "dermo_hypodermal", "dermo-hypodermique": "dermo_hypodermal",
    "dermo hypodermique": "dermo_hypodermal", "dermohypodermique": "dermo_hypodermal",
    "derme + hypoderme": "dermo_hypodermal", "derme+hypoderme": "dermo_hypodermal",
    "hypoderme": "dermo_hypodermal", "hypodermique": "dermo_hypodermal",
}
_RESECTION = {
    "r0": "R0", "r1": "R1", "r2": "R2", "complete": "R0", "incomplete": "R1",
    "exerese complete": "R0", "exerese incomplete": "R1",
}
_GRADE = re.compile(r"(?:grade|g)?(1|2|3|iii|ii|i)")
_ROMAN = {"1": 1, "2": 2, "3": 3, "i": 1, "ii": 2, "iii": 3}
_DIFF = re.compile(r"(bien|moyennement|peu|[123])(?: differenciee?s?)?")


def parse_sex(text: str | None) -> tuple[str | None, list[Issue]]:
    if _absent(text):
        return None, []
    return _lookup(text, _SEX, "Sexe", "Homme, Femme, H, F")


def parse_yes_no(text: str | None, label: str = "oui/non") -> tuple[bool | None, list[Issue]]:
    if _absent(text):
        return None, []
    return _lookup(text, _YES_NO, label, "oui, non")


def parse_presentation(text: str | None) -> tuple[str | None, list[Issue]]:
    if _absent(text):
        return None, []
    return _lookup(text, _PRESENTATION, "Aspect", "nodule, nodulaire, ulcéré, végétant, plaque infiltrée")


def parse_grade(text: str | None) -> tuple[int | None, list[Issue]]:
    """``1``, ``G2``, ``grade II``, ``III``."""
    if _absent(text):
        return None, []
    m = _GRADE.fullmatch(fold(text).replace(" ", "").replace(".", ""))
    if m:
        return _ROMAN[m.group(1)], []
    return None, [_issue("unknown_code", f"Grade « {text} » inconnu (attendu: 1, G2, grade II, III).")]


def parse_differentiation(text: str | None) -> tuple[int | None, list[Issue]]:
    """``bien``, ``moyennement``, ``peu`` (optionally followed by ``différencié``)."""
    if _absent(text):
        return None, []
    m = _DIFF.fullmatch(fold(text))
    if m:
        return _DIFFERENTIATION[m.group(1)], []
    return None, [_issue("unknown_code",
                         f"Différenciation « {text} » inconnue (attendu: bien, moyennement, peu différencié).")]


def parse_necrosis(text: str | None) -> tuple[int | None, list[Issue]]:
    """``absente``/``non`` -> 0, ``< 50 %`` -> 1, ``>50%``/``≥ 50 %`` -> 2."""
    if _absent(text):
        return None, []
    return _lookup(text, _NECROSIS, "Nécrose", "absente, non, < 50 %, ≥ 50 %", squeeze=True)


def parse_invasion(text: str | None) -> tuple[str | None, list[Issue]]:
    if _absent(text):
        return None, []
    return _lookup(text, _INVASION, "Infiltration", "derme, dermique, derme et hypoderme, dermo-hypodermique")


def parse_resection(text: str | None) -> tuple[str | None, list[Issue]]:
    if _absent(text):
        return None, []
    return _lookup(text, _RESECTION, "Exérèse", "R0, R1, R2, complète, incomplète")


# --- numbers ------------------------------------------------------------------------------------

_LENGTH = re.compile(rf"({_NUM})\s*(mm|cm)?")
_MITOSES = re.compile(
    rf"(<=|<|≤|inf(?:erieur)?a)?([0-9]+)(?:mitoses?)?(?:/10(?:hpf|champs?|grandschamps?|cfg|gc)?)?"
)
_PERCENT = re.compile(rf"({_NUM})%?")


def _length_cm(text: str, label: str) -> tuple[float | None, list[Issue]]:
    m = _LENGTH.fullmatch(fold(text))
    if not m:
        return None, [_issue("unparseable_number", f"« {text} » n'est pas une longueur lisible ({label}).")]
    value = _float(m.group(1))
    if problems := _too_big(value, text, label):
        return None, problems
    if m.group(2) is None:
        if value == 0:
            return 0.0, []
        return None, [_issue("missing_unit", f"« {text} »: unité absente, mm ou cm ? ({label}).")]
    return round(value * (0.1 if m.group(2) == "mm" else 1.0), 6), []


def parse_size(text: str | None) -> tuple[float | None, list[Issue]]:
    """``15 mm``, ``1,5 cm``, ``2cm`` -> centimetres; ``?`` -> not specified."""
    if _absent(text):
        return None, []
    return _length_cm(text, "Taille")


def parse_mitoses(text: str | None) -> tuple[tuple[int | None, bool | None], list[Issue]]:
    """``12``, ``12/10 HPF``, ``12 mitoses / 10 champs`` -> (12, False); ``< 5`` -> (5, True)."""
    if _absent(text):
        return (None, None), []
    m = _MITOSES.fullmatch(fold(text).replace(" ", ""))
    if not m:
        return (None, None), [_issue("unparseable_number",
                                     f"Mitoses « {text} » illisibles (attendu: 12, 12/10 HPF, < 5).")]
    count = int(m.group(2))
    if count > MAX_MITOSES:  # would not even fit the column; validation judges plausibility below
        return (None, None), [_issue("number_out_of_range", f"Mitoses « {text} »: nombre hors limites.")]
    if m.group(1):
        return (count, True), [_issue("mitoses_upper_bound",
                                        f"Mitoses « {text} »: enregistré {count} (borne supérieure, compte exact inconnu).")]
    return (count, False), []


def parse_ki67(text: str | None) -> tuple[float | None, list[Issue]]:
    """``30 %``, ``30%``, ``30``, ``2,5 %``."""
    if _absent(text):
        return None, []
    m = _PERCENT.fullmatch(fold(text).replace(" ", ""))
    if not m:
        return None, [_issue("unparseable_number", f"Ki67 « {text} » illisible (attendu: 30 %).")]
    value = _float(m.group(1))
    if value > 100:
        return None, [_issue("number_out_of_range", f"Ki67 « {text} » supérieur à 100 %.")]
    return value, []


_MARGIN_SPLIT = re.compile(r"/|;|\+|\bet\b")
_MARGIN = re.compile(
    rf"(?:marges?\s*)?(?:(clinique|cliniques|clin\.?|histologique|histo\.?|histol\.?|anapath\w*)\s*:?\s*)?"
    rf"({_NUM}\s*(?:mm|cm)?)"
)


class Margins(NamedTuple):
    clinical_cm: float | None
    histological_cm: float | None
    issues: list[Issue]


def parse_margins(text: str | None) -> Margins:
    """``clinique 2 cm / histo 0,8 cm``, ``2 cm`` (clinical), ``histo 5 mm``, ``clinique 15 mm``."""
    if _absent(text):
        return Margins(None, None, [])
    slots: dict[str, float | None] = {}
    issues: list[Issue] = []
    unlabelled = 0
    parts = [p.strip() for p in _MARGIN_SPLIT.split(fold(text))]
    parts = [p for p in parts if p]
    if not parts or len(parts) > 2:
        return Margins(None, None, [_issue("unparseable_margins",
                                           f"Marges « {text} » illisibles (attendu: clinique 2 cm / histo 0,8 cm).")])
    for part in parts:
        m = _MARGIN.fullmatch(part)
        if not m:
            issues.append(_issue("unparseable_margins",
                                 f"Marges « {text} »: « {part} » illisible (attendu: clinique 2 cm / histo 0,8 cm)."))
            continue
        label = m.group(1)
        if label is None:
            unlabelled += 1
            slot = "clinical" if "clinical" not in slots else "histological"
        else:
            slot = "clinical" if label.startswith("clin") else "histological"
        if slot in slots:
            issues.append(_issue("ambiguous_margins", f"Marges « {text} »: deux marges {'cliniques' if slot == 'clinical' else 'histologiques'}."))
            slots[slot] = None
            continue
        value, problems = _length_cm(m.group(2), "Marges")
        slots[slot] = value
        issues += problems
    if unlabelled and len(parts) == 2 and not any(i.severity == ERROR for i in issues):
        issues.append(_issue("margins_unlabelled",
                               f"Marges « {text} » sans libellé: lues clinique puis histologique."))
    return Margins(slots.get("clinical"), slots.get("histological"), issues)


# --- anatomical site ------------------------------------------------------------------------------

_SITE_TERMS: dict[str, str] = {}
for _site, _terms in {
    "lower_limb": (
        "jambe", "cuisse", "mollet", "genou", "pied", "cheville", "hanche", "fesse", "fessier",
        "fessiere", "membre inferieur", "orteil", "talon", "creux poplite", "jarret", "malleole",
        "tibia", "tibiale", "plante",
    ),
    "upper_limb": (
        "bras", "avant bras", "coude", "poignet", "main", "doigt", "pouce", "epaule",
        "membre superieur", "paume", "deltoide", "deltoidien", "deltoidienne",
    ),
    "head_neck": (
        "cuir chevelu", "front", "tempe", "joue", "nez", "oreille", "menton", "levre", "cou",
        "nuque", "visage", "paupiere", "tete", "crane", "sourcil", "pommette", "frontal",
        "frontale", "temporal", "temporale", "cervical", "cervicale", "nasal", "nasale",
        "jugal", "jugale", "vertex", "mandibule", "machoire", "pavillon de l oreille",
    ),
    "trunk": (
        "dos", "thorax", "abdomen", "flanc", "lombaire", "sein", "ventre", "tronc", "omoplate",
        "pubis", "poitrine", "thoracique", "abdominal", "abdominale", "dorsal", "dorsale",
        "scapulaire", "sternum", "presternal", "presternale", "epigastre", "ombilic",
        "sacrum", "sacre", "sacree", "interscapulaire", "mammaire", "lombes", "hypochondre",
        "region lombaire",
    ),
}.items():
    for _term in _terms:
        _SITE_TERMS[_term] = _site
_SITE_MAX_WORDS = max(len(t.split()) for t in _SITE_TERMS)
_LINKS = {"de", "du", "des", "d", "la", "l", "le", "les"}


def _site_term(words: list[str]) -> str | None:
    phrase = " ".join(words)
    if phrase in _SITE_TERMS:
        return _SITE_TERMS[phrase]
    if phrase[-1] in "sx" and phrase[:-1] in _SITE_TERMS:  # plurals: cuisses, genoux
        return _SITE_TERMS[phrase[:-1]]
    return None


def parse_site(text: str | None) -> tuple[tuple[str | None, str | None], list[Issue]]:
    """Anatomical free text -> (site, site_detail); laterality and other words are ignored.

    ``jambe gauche`` -> lower limb, ``épaule droite`` -> upper limb, ``dos de la main`` ->
    upper limb (the region after de/du/des is where the tumour is).
    """
    if _absent(text):
        return (None, None), []
    detail = text.strip()
    words = re.findall(r"[a-z]+", fold(text).replace("œ", "oe"))
    hits: list[tuple[int, int, str]] = []  # (first word, end word, site)
    i = 0
    while i < len(words):
        for n in range(min(_SITE_MAX_WORDS, len(words) - i), 0, -1):
            site = _site_term(words[i:i + n])
            if site:
                hits.append((i, i + n, site))
                i += n
                break
        else:
            i += 1
    if not hits:
        return (None, detail), [_issue("unknown_code", f"Siège « {text} » non reconnu (région anatomique).")]
    site = hits[0][2]
    for (_, end, previous), (start, _, current) in zip(hits, hits[1:]):
        if current == previous:
            continue
        if _LINKS & set(words[end:start]):
            site = current  # "dos de la main": the region after "de" holds the tumour
        else:
            return (None, detail), [_issue("ambiguous_site",
                                           f"Siège « {text} »: plusieurs régions anatomiques, laquelle ?")]
    return (site, detail), []


# --- Évolution ------------------------------------------------------------------------------------

EVENT_ORDER = {"local_recurrence": 0, "metastasis": 1, "death": 2, "last_news": 3}
_METASTASIS_SITES = {
    "osseuse": "bone", "osseux": "bone", "os": "bone",
    "cutanee": "skin", "cutane": "skin", "peau": "skin",
    "pulmonaire": "lung", "poumon": "lung",
    "hepatique": "liver", "foie": "liver",
    "ganglionnaire": "lymph_node", "ganglion": "lymph_node",
    "colique": "colon", "colon": "colon",
}
_DEATH_CAUSES = {
    "clms": "clms", "lms": "clms", "du clms": "clms", "lie au clms": "clms", "liee au clms": "clms",
    "maladie": "clms", "evolution du clms": "clms",
    "autre cause": "other", "autre": "other", "autres causes": "other", "autre cause de deces": "other",
    "cause inconnue": "unknown", "inconnue": "unknown", "inconnu": "unknown", "cause non connue": "unknown",
}
_PAREN = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$", re.S)
_TRAILING_DATE = re.compile(r"([0-9?][0-9?/.\-]*)\s*$")
_TRAILING_MONTH = re.compile(r"([a-z]+)\.?\s*$")
_DATE_LEAD = re.compile(r"(?:\s*(?:\b(?:en|le|au|a|depuis)\b|[:,\-]))+\s*$")
_LOCAL_RECURRENCE = re.compile(r"recidive\s+locale|recidive\s+loc\.?|rl")
_METASTASIS = re.compile(r"(?:metastases?|metas?|mets?)(?:\s+(.*))?")
_DEATH = re.compile(r"dcd|deces|decede|decedee|decede\s*\(e\)|mort|morte")
_SITE_SPLIT = re.compile(r",|\bet\b|\+|/")
_SITE_FILLER = {"au", "aux", "du", "des", "de", "d", "a", "l", "la", "le", "les", "multiples", "multiple"}


class NoteEvent(NamedTuple):
    kind: str
    date: ParsedDate | None
    metastasis_site: str | None = None
    death_cause: str | None = None
    treatment: str | None = None


class Note(NamedTuple):
    text: str
    events: list[NoteEvent]
    issues: list[Issue]


def split_notes(text: str | None) -> list[str]:
    """The non-empty ``;``-separated notes of an Évolution cell, trimmed."""
    if text is None:
        return []
    return [n.strip() for n in text.split(";") if n.strip()]


def _metastasis_sites(text: str, note: str) -> tuple[list[str | None], list[Issue]]:
    sites: list[str | None] = []
    issues: list[Issue] = []
    for part in _SITE_SPLIT.split(text):
        words = re.findall(r"[a-z]+", part)
        known = []
        unknown = []
        for w in words:
            site = _METASTASIS_SITES.get(w) or (_METASTASIS_SITES.get(w[:-1]) if w.endswith(("s", "x")) else None)
            if site:
                known.append(site)
            elif w not in _SITE_FILLER:
                unknown.append(w)
        if not known and unknown:
            known = ["other"]
        if unknown:
            issues.append(_issue("metastasis_site_other",
                                   f"Site métastatique « {' '.join(unknown)} » non codé: lu « other » ({note})."
                                   if known == ["other"] else
                                   f"Mots « {' '.join(unknown)} » ignorés dans le site métastatique ({note})."))
        for site in known:
            if site not in sites:
                sites.append(site)
    return sites or [None], issues


def _note_date(body: str) -> tuple[str | None, str]:
    """(date text, what precedes it) of a folded note: ``rl 06/2016`` -> (``06/2016``, ``rl ``)."""
    if m := _TRAILING_DATE.search(body):
        date_text, head = m.group(1), body[:m.start()]
        if re.fullmatch(r"[0-9]{4}", date_text) and (mm := _TRAILING_MONTH.search(head)) \
                and mm.group(1) in FRENCH_MONTHS:
            date_text, head = f"{mm.group(1)} {date_text}", head[:mm.start()]
        return date_text, head
    return None, body


def parse_note(note: str) -> tuple[list[NoteEvent], list[Issue]]:
    """One Évolution note -> its events (a metastasis in two organs = two events).

    ``récidive locale 06/2016``, ``RL 06/2016``, ``métastase osseuse 2017``,
    ``métastases osseuse et pulmonaire 2017``, ``DCD 03/2018 (cLMS)``,
    ``décès 03/2018 (autre cause)``. A note not understood -> no event + an error quoting it.
    """
    original = note.strip()
    paren = None
    if m := _PAREN.match(original):
        original_body, paren = m.group(1), m.group(2).strip() or None
    else:
        original_body = original
    body = fold(original_body)
    if not body:
        if paren is None:
            return [], []
        return [], [_issue("unparsed_evolution_note", f"Note d'évolution non comprise: « {note.strip()} ».")]
    date_text, head = _note_date(body)
    head = _DATE_LEAD.sub("", head).strip()

    issues: list[Issue] = []
    if _LOCAL_RECURRENCE.fullmatch(head) or head == "recidive":
        kinds = [("local_recurrence", None)]
        if head == "recidive":
            issues.append(_issue("ambiguous_note", f"« {note.strip()} »: récidive lue comme récidive locale."))
    elif m := _METASTASIS.fullmatch(head):
        sites, problems = _metastasis_sites(m.group(1) or "", note.strip())
        kinds = [("metastasis", s) for s in sites]
        issues += problems
    elif _DEATH.fullmatch(head):
        kinds = [("death", None)]
    else:
        return [], [_issue("unparsed_evolution_note", f"Note d'évolution non comprise: « {note.strip()} ».")]

    # An undated note still gives its event (date null): validation's event_date_missing reports it.
    date, problems = parse_date(date_text, "Évolution")
    issues += [i._replace(message=f"{i.message[:-1]}: « {note.strip()} ».") for i in problems]

    cause = treatment = None
    if kinds[0][0] == "death":
        if paren is not None:
            cause = _DEATH_CAUSES.get(fold(paren))
            if cause is None:
                issues.append(_issue("unknown_code",
                                     f"Cause de décès « {paren} » inconnue (attendu: cLMS, autre cause, cause inconnue)."))
    else:
        treatment = paren  # a parenthesis after a relapse is what was done about it
    return [NoteEvent(kind, date, site, cause, treatment) for kind, site in kinds], issues


def parse_evolution(text: str | None) -> list[Note]:
    """An Évolution cell -> one :class:`Note` per ``;``-separated note, in source order."""
    out = []
    for note in split_notes(text):
        events, issues = parse_note(note)
        out.append(Note(note, events, issues))
    return out


# --- file loading ---------------------------------------------------------------------------------

_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13))


def _wrong_encoding(ctx: ReadContext, found: str) -> None:
    ctx.query(file=FILE, rule="wrong_encoding", value=found,
              message=f"{FILE} est encodé en {found} et non en Mac Roman comme convenu: lu en {found}, "
                      "vérifier l'export.")


def _decode(ctx: ReadContext, data: bytes) -> bytes:
    """The file as UTF-8 bytes for polars; a UTF-8 or UTF-16 file (contract: Mac Roman) -> warning."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ImportFailure(f"{FILE}: fichier UTF-16 illisible; import de ce centre arrêté.", FILE) from exc
        _wrong_encoding(ctx, "UTF-16")
        return text.encode("utf-8")
    if data.startswith(codecs.BOM_UTF8) or not data.isascii():
        try:
            # The first 64 KB settle it for any real file (its header has "Né(e)", "Siège"...);
            # decoding a whole Mac Roman file only to fail costs more than the real decoding.
            codecs.getincrementaldecoder("utf-8")().decode(data[:65536], final=False)
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return data.decode(ENCODING).encode("utf-8")
        _wrong_encoding(ctx, "UTF-8")
        return text.encode("utf-8")
    return data


class _Raw(NamedTuple):
    header: list[str]
    frame: pl.DataFrame  # key columns (str), _row, _fields
    width: int


def _load(ctx: ReadContext, path: Path) -> _Raw:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"{FILE}: fichier illisible ({exc.strerror or exc}); import de ce centre arrêté.", FILE) from exc
    if not data or data.isspace():
        raise ImportFailure(f"{FILE}: fichier vide; import de ce centre arrêté.", FILE)
    data = _decode(ctx, data)
    sample = data[:65536]
    if b"\x00" in data or len(sample) - len(sample.translate(None, _CONTROL)) > len(sample) // 100:
        raise ImportFailure(f"{FILE}: contenu binaire, pas un texte tabulé; import de ce centre arrêté.", FILE)
    # CR (the contract), CRLF or LF: one line end for polars.
    if b"\n" not in data:
        eol = "\r"
    else:
        eol = "\n"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = data.find(eol.encode())
    header_line = (data if end < 0 else data[:end]).decode("utf-8")
    if len(header_line) > MAX_HEADER:
        raise ImportFailure(f"{FILE}: ligne d'en-tête de {len(header_line)} caractères, pas un en-tête; "
                            "import de ce centre arrêté.", FILE)
    header = [h.strip() for h in header_line.split("\t")]
    found = match_columns(ctx, header, SPECS, FILE)
    # The body is the data after the header line: polars skips that line (no 48 MB copy).
    # A body of blank lines only is caught below, once blank lines are dropped.
    if end < 0:
        raise ImportFailure(f"{FILE}: en-tête seul, aucun patient; export incomplet ? Import de ce centre arrêté "
                            "(les données précédentes restent en place).", FILE)
    width = len(header)
    lines, fields = _split(data, eol, width)
    frame = fields.select(
        [pl.col(f"c{i}").alias(key) for key, i in found.items()]
    ).with_columns(
        pl.int_range(2, lines.len() + 2, dtype=pl.Int64).alias(structural.ROW),
        (lines.str.count_matches("\t", literal=True).cast(pl.Int64) + 1).alias(structural.FIELDS),
    )
    # A blank line is no record: skipped, with a warning unless it only trails the last record.
    blank = (lines.is_null() | lines.str.contains(r"^\s*$")).alias("_blank")
    if blank.any():
        rows = frame[structural.ROW]
        last_record = rows.filter(~blank).max()
        for row in rows.filter(blank & (rows < (last_record or 0))):
            ctx.query(file=FILE, row=row, rule="empty_row", message=f"Ligne {row} vide ignorée.")
        frame = frame.filter(~blank)
    if frame.is_empty():
        raise ImportFailure(f"{FILE}: en-tête seul, aucun patient; import de ce centre arrêté.", FILE)
    last = frame.row(frame.height - 1, named=True)
    if not data[-4096:].rstrip(b" \t").endswith(eol.encode()):
        if last[structural.FIELDS] < width:
            raise ImportFailure(f"{FILE}: fichier tronqué (dernière ligne {last[structural.ROW]} incomplète, "
                                f"{last[structural.FIELDS]} champs sur {width}); import de ce centre arrêté.", FILE)
        ctx.query(file=FILE, row=last[structural.ROW], rule="missing_final_line_end",
                  message=f"{FILE} ne se termine pas par une fin de ligne: vérifier que l'export est complet.")
    return _Raw(header, frame, width)


def _split(data: bytes, eol: str, width: int) -> tuple[pl.Series, pl.DataFrame]:
    """Each line after the header (for its field count) and its first ``width`` fields, blank
    lines included so that position i is line i + 2 of the file. Quotes mean nothing here."""
    common = dict(has_header=False, infer_schema=False, quote_char=None, eol_char=eol, truncate_ragged_lines=True,
                  skip_lines=1)
    try:
        lines = pl.read_csv(data, separator="\x00", new_columns=["line"], **common)["line"]
        fields = pl.read_csv(data, separator="\t", schema={f"c{i}": pl.String for i in range(width)},
                             missing_columns="insert", **common)
        if fields.height == lines.len():
            return lines, fields
    except pl.exceptions.PolarsError:
        pass
    # Never seen on real files: an exact, slower split rather than a misaligned row.
    text = data.decode("utf-8")
    raw = text.split(eol)[1:]
    if text.endswith(eol):
        raw.pop()
    rows = [line.split("\t") for line in raw]
    fields = pl.DataFrame(
        {f"c{i}": [r[i] if i < len(r) and r[i] != "" else None for r in rows] for i in range(width)},
        schema={f"c{i}": pl.String for i in range(width)},
    )
    return pl.Series("line", [line or None for line in raw], dtype=pl.String), fields


# --- column decoding ------------------------------------------------------------------------------


_ISSUES = {"_raw": pl.String, "rule": pl.String, "severity": pl.String, "message": pl.String}


class _Decoded(NamedTuple):
    columns: dict[str, pl.Series]
    issues: pl.DataFrame  # _ISSUES: each raw value's issues, in order (only values that have some)


def _decode_column(series: pl.Series, parse, outputs: dict[str, pl.DataType], *, spaces: bool = True) -> _Decoded:
    """Apply ``parse`` (raw -> (values, issues)) once per distinct value and scatter back.

    A parser with a ``fast`` attribute (distinct values -> frame, see :func:`_fast_date_frame`)
    reads the values it recognises in polars; ``parse`` gets the others."""
    unique = series.drop_nulls().unique(maintain_order=True)
    names = list(outputs)
    parts: list[pl.DataFrame] = []
    issue_parts: list[pl.DataFrame] = []
    rest = unique
    fast = getattr(parse, "fast", None)
    if fast is not None and unique.len():
        quick = fast(unique)
        done = quick.filter(pl.col("_ok"))
        rest = quick.filter(~pl.col("_ok"))["_raw"]
        parts.append(done.select("_raw", *(pl.col(f"_{j}").cast(t).alias(n) for j, (n, t) in
                                          zip(("value", "precision"), outputs.items()))))
        issue_parts.append(done.filter(pl.col("rule").is_not_null()).select(list(_ISSUES)))
    values: list[tuple] = []
    issues: list[tuple] = []
    single = len(outputs) == 1
    for raw in rest.to_list():
        value, problems = parse(raw)
        values.append((value,) if single else tuple(value))
        if spaces and raw != raw.strip():
            problems = [*problems, _issue("value_normalised", f"« {raw} »: espaces en trop à retirer.")]
        issues.extend((raw, *problem) for problem in problems)
    parts.append(pl.DataFrame(
        {"_raw": rest, **{name: pl.Series(name, [v[j] for v in values], dtype=dtype)
                          for j, (name, dtype) in enumerate(outputs.items())}}
    ))
    issue_parts.append(pl.DataFrame(issues, schema=_ISSUES, orient="row"))
    table = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
    index = series.replace_strict(table["_raw"], pl.int_range(table.height, dtype=pl.UInt32, eager=True),
                                  default=None, return_dtype=pl.UInt32)
    columns = {name: table[name].gather(index).alias(name) for name in names}
    return _Decoded(columns, pl.concat(issue_parts, how="vertical") if len(issue_parts) > 1 else issue_parts[0])


def _margins(text):
    m = parse_margins(text)
    return (m.clinical_cm, m.histological_cm), m.issues


def _dated(label: str, identifier: bool = False):
    def parse(text):
        parsed, issues = parse_date(text, label, identifier=identifier)
        return (None, None) if parsed is None else (parsed.value, parsed.precision), issues
    parse.fast = lambda unique: _fast_date_frame(unique, label, identifier)
    return parse


# key -> (parser, outputs, canonical table of the cell)
_COLUMNS = {
    "ne_e_le": (_dated("Né(e) le", identifier=True), {"birth_date": pl.Date, "_birth_precision": pl.String}, "patient"),
    "sexe": (parse_sex, {"sex": pl.String}, "patient"),
    "diagnostic": (_dated("Diagnostic"), {"diagnosis_date": pl.Date, "diagnosis_date_precision": pl.String}, "patient"),
    "siege": (parse_site, {"site": pl.String, "site_detail": pl.String}, "tumour"),
    "taille": (parse_size, {"size_cm": pl.Float64}, "tumour"),
    "aspect": (parse_presentation, {"presentation": pl.String}, "tumour"),
    "douleur": (lambda t: parse_yes_no(t, "Douleur"), {"pain": pl.Boolean}, "tumour"),
    "cicatrice": (lambda t: parse_yes_no(t, "Cicatrice"), {"on_scar": pl.Boolean}, "tumour"),
    "grade": (parse_grade, {"fnclcc_grade": pl.Int8}, "tumour"),
    "differenciation": (parse_differentiation, {"differentiation_score": pl.Int8}, "tumour"),
    "mitoses": (parse_mitoses, {"mitoses_per_10hpf": pl.Int32, "mitoses_is_upper_bound": pl.Boolean}, "tumour"),
    "necrose": (parse_necrosis, {"necrosis_score": pl.Int8}, "tumour"),
    "infiltration": (parse_invasion, {"invasion": pl.String}, "tumour"),
    "ulceration": (lambda t: parse_yes_no(t, "Ulcération"), {"histological_ulceration": pl.Boolean}, "tumour"),
    "ki67": (parse_ki67, {"ki67_percent": pl.Float64}, "tumour"),
    "chirurgie": (_dated("Chirurgie"), {"surgery_date": pl.Date, "surgery_date_precision": pl.String}, "surgery"),
    "marges": (_margins, {"clinical_margin_cm": pl.Float64, "histological_margin_cm": pl.Float64}, "surgery"),
    "exerese": (parse_resection, {"resection_status": pl.String}, "surgery"),
    "dernieres_nouvelles": (_dated("Dernières nouvelles"), {"_news_date": pl.Date, "_news_precision": pl.String}, "event"),
}
_SURGERY_CELLS = ("chirurgie", "marges", "exerese")


def _row_id(table: str, row: int, no: int | None = None) -> str:
    return f"{table}:{FILE}:{row}" if no is None else f"{table}:{FILE}:{row}:{no}"


def _row_id_expr(table: str, no: pl.Expr | None = None) -> pl.Expr:
    parts = [pl.lit(f"{table}:{FILE}:"), pl.col(structural.ROW).cast(pl.String)]
    if no is not None:
        parts += [pl.lit(":"), no.cast(pl.String)]
    return pl.concat_str(parts)


# --- the reader -----------------------------------------------------------------------------------

ROW = structural.ROW


def read(ctx: ReadContext) -> ReadResult:
    # Hundreds of thousands of query objects: the cyclic GC would rescan them again and again
    # (about half the cost of building them); none of them forms a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _read(ctx)
    finally:
        if enabled:
            gc.enable()


def _read(ctx: ReadContext) -> ReadResult:
    path = find_delivery_file(Path(ctx.delivery_dir), FILE)
    raw = _load(ctx, path)
    names = _column_names(raw.header)
    frame = raw.frame
    for key, kind in IDENTIFIER_KINDS.items():
        if key in frame.columns:
            ctx.register_identifiers(kind, frame[key], names.get(key))
    keys = [k for k in names if k in frame.columns]
    # Cells too long to be chart values (a broken line): null + error, before any parsing.
    if frame.select(pl.any_horizontal([pl.col(k).str.len_chars() > MAX_CELL for k in keys]).any()).item():
        frame = _drop_long_cells(ctx, frame, keys, names)

    frame = frame.with_columns(
        pl.col("dossier").str.strip_chars().str.to_uppercase().replace("", None).alias(structural.PATIENT_KEY)
    )
    _structural_queries(ctx, frame, raw.width, names)

    ids = frame[structural.PATIENT_KEY]
    unique_ids = ids.drop_nulls().unique(maintain_order=True)
    pseudonyms = pl.Series(list(pseudonymise_many(ctx, unique_ids.to_list()).values()), dtype=pl.String)
    frame = frame.with_columns(
        ids.replace_strict(unique_ids, pseudonyms, default=None, return_dtype=pl.String).alias("patient_id"),
        pl.lit(FILE).alias("source_file"),
        pl.lit(None, dtype=pl.String).alias("source_sheet"),
        pl.col(ROW).alias("source_row"),
    )

    news_issues = pl.DataFrame(schema=_ISSUES)
    decoded: dict[str, pl.Series] = {}
    for key, (parse, outputs, table) in _COLUMNS.items():
        result = _decode_column(frame[key], parse, outputs)
        decoded.update(result.columns)
        if key == "dernieres_nouvelles":
            news_issues = result.issues  # their row is the last-news event, numbered below
        elif not result.issues.is_empty():
            _cell_queries(ctx, frame, key, names[key], table, result.issues, identifier=key == "ne_e_le")
    frame = frame.with_columns(list(decoded.values()))
    ctx.register_birth_dates(frame["patient_id"], frame["birth_date"])

    events, status = _events(ctx, frame, names, news_issues)
    frame = frame.join(status, on=ROW, how="left", maintain_order="left")
    patient = model.conform("patient", frame.with_columns(
        pl.lit(ctx.centre).alias("centre"),
        _age().alias("age_at_diagnosis_years"),
        pl.lit(None, dtype=pl.Boolean).alias("immunosuppression"),
        pl.lit(True).alias("record_complete"),  # REDCap's completeness flag; a chart is what it is
        _row_id_expr("patient").alias("row_id"),
    ))
    tumour = model.conform("tumour", frame.with_columns(
        _row_id_expr("tumour").alias("row_id"),
        pl.lit(None, dtype=pl.String).alias("mitosis_class"),  # the charts give counts, no class
    ))
    # The chart holds the primary excision only; a line with none of its cells has no operation.
    has_surgery = pl.any_horizontal([pl.col(k).is_not_null() for k in _SURGERY_CELLS])
    surgery = model.conform("surgery", frame.filter(has_surgery).with_columns(
        pl.lit(1, dtype=pl.Int32).alias("surgery_no"),
        pl.lit("primary_excision").alias("surgery_kind"),
        _row_id_expr("surgery", pl.lit(1)).alias("row_id"),
    ))
    return ReadResult(
        centre=ctx.centre,
        delivery_date=ctx.delivery_date,
        frames={"patient": patient, "tumour": tumour, "surgery": surgery, "event": events},
        queries=ctx.queries,
        files=[path],
        source_rows={FILE: frame.height},
    )


def _age() -> pl.Expr:
    """Completed years between birth and diagnosis (``identities.age_at``)."""
    birth, diagnosis = pl.col("birth_date"), pl.col("diagnosis_date")
    before_birthday = (diagnosis.dt.month() < birth.dt.month()) | (
        (diagnosis.dt.month() == birth.dt.month()) & (diagnosis.dt.day() < birth.dt.day())
    )
    return (diagnosis.dt.year().cast(pl.Int32) - birth.dt.year().cast(pl.Int32) - before_birthday.cast(pl.Int32)).cast(pl.Int16)


def _column_names(header: list[str]) -> dict[str, str]:
    """Spec key -> the column name as written in the file (for queries)."""
    normalised = [normalise_name(h) for h in header]
    out = {}
    for spec in SPECS:
        wanted = {normalise_name(n) for n in (spec.key, *spec.names)}
        for i, h in enumerate(normalised):
            if h in wanted:
                out[spec.key] = header[i]
                break
    return out


def _drop_long_cells(ctx: ReadContext, frame: pl.DataFrame, keys: list[str], names: dict[str, str]) -> pl.DataFrame:
    for key in keys:
        long = frame.filter(pl.col(key).str.len_chars() > MAX_CELL).select(ROW, pl.col(key).str.len_chars())
        for row, length in long.iter_rows():
            ctx.query(file=FILE, row=row, table="patient", row_id=_row_id("patient", row), field=names[key],
                      value=f"<{length} caractères>", rule="value_too_long",
                      message=f"Cellule « {names[key]} » de {length} caractères: ligne cassée ? Valeur ignorée.")
    return frame.with_columns(
        pl.when(pl.col(k).str.len_chars() > MAX_CELL).then(None).otherwise(pl.col(k)).alias(k) for k in keys
    )


def _structural_queries(ctx: ReadContext, frame: pl.DataFrame, width: int, names: dict[str, str]) -> None:
    failures = structural.failures(frame, width).filter(pl.col("index").is_not_null())
    if failures.is_empty():
        return
    rows = frame[ROW]
    fields = frame[structural.FIELDS]
    for check, column, index in failures.select("check", "column", "index").unique(maintain_order=True).iter_rows():
        row = int(rows[int(index)])
        where = dict(file=FILE, row=row, table="patient", row_id=_row_id("patient", row))
        if check == "missing_patient_id":
            ctx.query(**where, field=names["dossier"], rule="missing_patient_id",
                      message="Ligne sans numéro de dossier: patient impossible à identifier.")
        elif check == "duplicate_patient":
            ctx.query(**where, field=names["dossier"], value=IDENTIFIER_MASK, rule="duplicate_patient",
                      message="Même dossier sur plusieurs lignes (contenus identiques ou non): "
                              "garder une seule ligne par patient.")
        elif check == "wrong_field_count":
            n = int(fields[int(index)])
            ctx.query(**where, value=str(n), rule="wrong_field_count",
                      message=f"Ligne de {n} champs au lieu de {width} (tabulation en trop ou manquante): "
                              "valeurs possiblement décalées.")
        else:  # a check of the schema that the reader's own numbering should make impossible
            ctx.query(**where, field=column, rule="structure_check_failed",
                      message=f"Contrôle de structure « {check} » en échec sur la colonne « {column} ».")


def _issue_queries(ctx: ReadContext, frame: pl.DataFrame, key: str, issues: pl.DataFrame, field: str,
                   table: pl.Expr, row_id: pl.Expr, *, identifier: bool = False, value: str | None = None) -> None:
    """One query per (row of ``frame`` whose ``key`` cell has issues, issue), in row order then
    issue order, built as one frame (``issues``: ``_raw`` the key value, rule, severity, message)."""
    hit = (
        frame.with_row_index("_pos")
        .join(issues.with_row_index("_i"), left_on=key, right_on="_raw", how="inner")
        .sort("_pos", "_i")
    )
    ctx.extend_queries(hit.select(
        pl.lit(FILE).alias("file"), pl.col(ROW).alias("row"), table.alias("table_name"), row_id.alias("row_id"),
        "patient_id", pl.lit(field).alias("field"),
        (pl.lit(IDENTIFIER_MASK) if identifier else pl.col(value or key)).alias("value"), "rule", "severity", "message",
    ))


def _cell_queries(ctx: ReadContext, frame: pl.DataFrame, key: str, column: str, table: str,
                  issues: pl.DataFrame, *, identifier: bool = False) -> None:
    row_id = _row_id_expr("surgery", pl.lit(1)) if table == "surgery" else _row_id_expr(table)
    _issue_queries(ctx, frame.select(ROW, "patient_id", key), key, issues, column, pl.lit(table), row_id,
                   identifier=identifier)


_EVENT_COLUMNS = {
    "_u": pl.UInt32, "_k": pl.Int32, "event_kind": pl.String, "event_date": pl.Date,
    "event_date_precision": pl.String, "metastasis_site": pl.String, "death_cause": pl.String,
    "treatment": pl.String,
}


def _rank_in_row(first: int) -> pl.Expr:
    """first, first+1... within each run of equal ``_row`` (frame sorted by row); cheaper than
    a window over 250k groups."""
    index = pl.int_range(pl.len(), dtype=pl.Int32)
    start = pl.when(pl.col(ROW) != pl.col(ROW).shift(1, fill_value=-1)).then(index).forward_fill()
    return index - start + first


def _events(ctx: ReadContext, frame: pl.DataFrame, names: dict[str, str],
            news_issues: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The event frame, and per row: vital_status."""
    notes = (
        frame.select(ROW, "patient_id", pl.col("evolution").str.split(";").alias("_text"))
        .explode("_text")
        .with_columns(_rank_in_row(0).alias("_note"), pl.col("_text").str.strip_chars())
        .filter(pl.col("_text").is_not_null() & (pl.col("_text") != ""))
    )
    unique = notes["_text"].unique(maintain_order=True)
    mapping, note_issues = _parse_notes(unique)
    notes = notes.with_columns(
        pl.col("_text").replace_strict(unique, pl.int_range(unique.len(), dtype=pl.UInt32, eager=True),
                                       return_dtype=pl.UInt32).alias("_u")
        if unique.len() else pl.lit(None, dtype=pl.UInt32).alias("_u")  # polars keeps str on an empty frame
    )
    noted = notes.join(mapping, on="_u", how="inner")

    deaths = noted.filter(pl.col("event_kind") == "death").group_by(ROW).agg(
        pl.len().alias("_deaths"), pl.col("event_date").sort_by("_note").first().alias("_death_date"),
    )
    status = (
        frame.select(ROW, "patient_id", "dernieres_nouvelles", "_news_date", "_news_precision")
        .join(deaths, on=ROW, how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_deaths").is_not_null()).then(pl.lit("dead"))
            .when(pl.col("dernieres_nouvelles").str.strip_chars().fill_null("") != "").then(pl.lit("alive"))
            .otherwise(None).alias("vital_status")
        )
    )
    # A dead patient's last news is the death: no last_news row.
    news = status.filter((pl.col("vital_status") == "alive")).select(
        ROW, "patient_id",
        pl.lit(1 << 30, dtype=pl.Int32).alias("_note"), pl.lit(0, dtype=pl.Int32).alias("_k"),
        pl.lit("last_news").alias("event_kind"), pl.col("_news_date").alias("event_date"),
        pl.col("_news_precision").alias("event_date_precision"),
    )
    events = pl.concat([noted.drop("_text", "_u"), news], how="diagonal_relaxed")
    events = (
        events.with_columns(pl.col("event_kind").replace_strict(EVENT_ORDER, return_dtype=pl.Int8).alias("_order"))
        .sort([ROW, pl.col("event_date").is_null(), "event_date", "_order", "_note", "_k"])
        .with_columns(_rank_in_row(1).alias("event_no"))
        .with_columns(
            _row_id_expr("event", pl.col("event_no")).alias("row_id"),
            pl.lit(FILE).alias("source_file"),
            pl.lit(None, dtype=pl.String).alias("source_sheet"),
            pl.col(ROW).alias("source_row"),
        )
    )
    _event_queries(ctx, notes, note_issues, events, names)
    _news_queries(ctx, status, events, news_issues, names)
    return model.conform("event", events), status.select(ROW, "vital_status")


def _event_queries(ctx, notes: pl.DataFrame, issues: pl.DataFrame, events: pl.DataFrame,
                   names: dict[str, str]) -> None:
    """A note's issues go on its first event row (or the patient row when it gave no event)."""
    if issues.is_empty():
        return
    hit = notes.join(
        events.filter(pl.col("_k") == 0).select(ROW, "_note", pl.col("row_id").alias("_event")),
        on=[ROW, "_note"], how="left", maintain_order="left",
    )
    table = pl.when(pl.col("_event").is_null()).then(pl.lit("patient")).otherwise(pl.lit("event"))
    row_id = pl.coalesce("_event", _row_id_expr("patient"))
    # The issues are keyed by the note's index among the distinct notes (_u); the value shown is the note.
    _issue_queries(ctx, hit, "_u",
                   issues.rename({"_u": "_raw"}), names["evolution"], table, row_id, value="_text")


# A note written "<words> <date> [(<text>)]" (the usual ``récidive locale 06/2016``, ``RL 2012``,
# ``DCD 03/2018 (cLMS)``): its words and parenthesis decide its events, its date is read like a
# date cell. Words of Latin letters and simple punctuation only, none of which folds into a
# digit, "?" or a parenthesis.
_FAST_NOTE = (r"^([A-Za-zÀ-ÖØ-öø-ÿŒœ .:,'\-]*?)( *)"
              r"([0-9]{1,2}/[0-9]{1,2}/[0-9]{4}|[0-9]{1,2}/[0-9]{4}|[0-9]{4})((?: *\([^()]*\))?)$")
_SHAPE_SAMPLE = {"day": "15/06/2000", "month": "6/2000", "year": "2000"}
_NOTE_ISSUES = {"_u": pl.UInt32, "rule": pl.String, "severity": pl.String, "message": pl.String}


def _parse_notes(unique: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The events (:data:`_EVENT_COLUMNS`) and issues (``_u``, rule, severity, message, in order)
    of each distinct note (``_u`` its index), exactly as :func:`parse_note` gives them.

    A ``<words> <date> [(<text>)]`` note is parse_note'd once per distinct words, date shape and
    parenthesis, on a sample date of that shape (its events do not depend on the digits), and its own date is
    read by :func:`_fast_date_frame`; parse_note reads the others, and any whose words raise an
    issue of their own or whose date is not one of the common forms."""
    frame = unique.alias("_text").to_frame().with_row_index("_u")
    parts = frame.select(pl.col("_text").str.extract_groups(_FAST_NOTE).alias("_g")).unnest("_g")
    frame = frame.with_columns(
        _prefix=pl.concat_str(parts[:, 0], parts[:, 1]),  # the words and the spaces before the date
        _date=parts[:, 2],
        _suffix=parts[:, 3],
        _shape=pl.when(parts[:, 2].str.count_matches("/") == 2).then(pl.lit("day"))
        .when(parts[:, 2].str.contains("/")).then(pl.lit("month")).otherwise(pl.lit("year")),
    )
    # Per distinct (words, shape): the events and the date's month word, or null (not fast).
    classes = frame.filter(pl.col("_date").is_not_null()).select("_prefix", "_shape", "_suffix").unique(
        maintain_order=True)
    kinds: list[list | None] = []
    words: list[str | None] = []
    for prefix, shape, suffix in classes.iter_rows():
        sample = f"{prefix}{_SHAPE_SAMPLE[shape]}{suffix}"
        events, issues = parse_note(sample)
        if not events or any(i.rule != "partial_date_imputed" for i in issues) or any(e.date is None for e in events):
            kinds.append(None)
            words.append(None)
            continue
        kinds.append([(e.kind, e.metastasis_site, e.death_cause, e.treatment) for e in events])
        date_text, _ = _note_date(fold(f"{prefix}{_SHAPE_SAMPLE[shape]}"))
        words.append(date_text[:-len(_SHAPE_SAMPLE[shape])] if date_text != _SHAPE_SAMPLE[shape] else "")
    classes = classes.with_columns(
        pl.Series("_class", range(classes.height), dtype=pl.UInt32),
        pl.Series("_word", words, dtype=pl.String),
    )
    frame = frame.join(classes, on=["_prefix", "_shape", "_suffix"], how="left", maintain_order="left").with_columns(
        _date_text=pl.concat_str(pl.col("_word"), pl.col("_date"))
    )
    candidates = frame.filter(pl.col("_word").is_not_null())
    dates = _fast_date_frame(candidates["_date_text"].unique(maintain_order=True), "Évolution")
    fast = candidates.join(dates.rename({"_raw": "_date_text"}), on="_date_text", how="left",
                           maintain_order="left").filter(pl.col("_ok"))
    slow = frame.filter(~pl.col("_u").is_in(fast["_u"].implode()))

    event_rows: list[tuple] = []
    issue_rows: list[tuple] = []
    for u, note in slow.select("_u", "_text").iter_rows():
        events, problems = parse_note(note)
        event_rows.extend(
            (u, k, e.kind, e.date and e.date.value, e.date and e.date.precision, e.metastasis_site,
             e.death_cause, e.treatment)
            for k, e in enumerate(events)
        )
        issue_rows.extend((u, *problem) for problem in problems)
    class_events = pl.DataFrame(
        [(c, k, *event) for c, events in enumerate(kinds) if events for k, event in enumerate(events)],
        schema={"_class": pl.UInt32, "_k": pl.Int32, "event_kind": pl.String, "metastasis_site": pl.String,
                "death_cause": pl.String, "treatment": pl.String},
        orient="row",
    )
    fast_events = fast.join(class_events, on="_class", how="inner").select(
        "_u", "_k", "event_kind", pl.col("_value").alias("event_date"), pl.col("_precision").alias("event_date_precision"),
        "metastasis_site", "death_cause", "treatment",
    )
    mapping = pl.concat(
        [pl.DataFrame(event_rows, schema=_EVENT_COLUMNS, orient="row"), fast_events.cast(_EVENT_COLUMNS)],
        how="vertical",
    ).sort("_u", "_k")
    fast_issues = fast.filter(pl.col("rule").is_not_null()).select(
        "_u", "rule", "severity",
        pl.concat_str(pl.col("message").str.head(-1), pl.lit(": « "), pl.col("_text"), pl.lit(" ».")).alias("message"),
    )
    issues = pl.concat([pl.DataFrame(issue_rows, schema=_NOTE_ISSUES, orient="row"), fast_issues.cast(_NOTE_ISSUES)],
                       how="vertical")
    return mapping, issues


def _news_queries(ctx, status: pl.DataFrame, events: pl.DataFrame, news_issues: pl.DataFrame,
                  names: dict[str, str]) -> None:
    column = names["dernieres_nouvelles"]
    if not news_issues.is_empty():
        hit = status.select(ROW, "patient_id", "dernieres_nouvelles").join(
            events.filter(pl.col("event_kind") == "last_news").select(ROW, pl.col("row_id").alias("_event")),
            on=ROW, how="left", maintain_order="left",
        )
        table = pl.when(pl.col("_event").is_null()).then(pl.lit("patient")).otherwise(pl.lit("event"))
        row_id = pl.coalesce("_event", _row_id_expr("patient"))
        _issue_queries(ctx, hit, "dernieres_nouvelles", news_issues, column, table, row_id)
    # A dead patient's last news is the death (several deaths: validation's multiple_deaths).
    odd = status.filter(
        (pl.col("_deaths") == 1) & pl.col("_news_date").is_not_null() & pl.col("_death_date").is_not_null()
        & (pl.col("_news_date") != pl.col("_death_date"))
    )
    for row, patient_id, raw in odd.select(ROW, "patient_id", "dernieres_nouvelles").iter_rows():
        Cells(ctx, FILE, None, row, "patient", _row_id("patient", row), patient_id).error(
            column, raw, "last_news_of_dead_patient",
            "Patient décédé: les dernières nouvelles devraient être la date du décès.")

# Columns of the chart holding each canonical field (so queries name the centre's column);
# events live in the Évolution notes, the last news in its own column.
SOURCE_COLUMNS = {
    "patient": {"diagnosis_date": "Diagnostic", "sex": "Sexe", "age_at_diagnosis_years": "Né(e) le"},
    "tumour": {"site": "Siège", "site_detail": "Siège", "size_cm": "Taille", "presentation": "Aspect", "fnclcc_grade": "Grade",
               "differentiation_score": "Différenciation", "mitoses_per_10hpf": "Mitoses",
               "necrosis_score": "Nécrose", "invasion": "Infiltration", "ki67_percent": "Ki67"},
    "surgery": {"surgery_date": "Chirurgie", "clinical_margin_cm": "Marges", "histological_margin_cm": "Marges",
                "resection_status": "Exérèse"},
    "event": {"event_date": {"local_recurrence": "Évolution", "metastasis": "Évolution", "death": "Évolution",
                             "last_news": "Dernières nouvelles"},
              "metastasis_site": "Évolution", "death_cause": "Évolution", "treatment": "Évolution"},
}
