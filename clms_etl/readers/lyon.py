"""Lyon: REDCap raw records export + the project's data dictionary -> canonical frames.

Files (``centre_exports.md``, Lyon): ``CLMSLYON_DATA_<date>.csv`` (UTF-8, ``,``, ISO dates,
coded values) and ``CLMSLYON_DataDictionary.csv`` (the 18 REDCap columns).

Decoding goes through the dictionary, never through hard-coded codes: for each coded field the
dictionary's ``Choices`` (``1, Homme | 2, Femme``) gives code -> label, and the reader maps the
French *label* to the canonical value. A renumbered choice therefore still decodes; a label the
reader does not know means the contract changed and stops the import (:class:`ImportFailure`
naming the dictionary field and the label); a code in the records that the dictionary does not
list is an error query on that cell.

Layout: the first column is the record id (whatever its name); base rows (form ``patient``)
leave ``redcap_repeat_instrument`` empty; repeat rows of ``chirurgie`` / ``evenement`` carry
the instrument and instance. Checkbox ``meta_site___<code>``: each ticked box is one metastasis
event row on that date. The pseudonym comes from ``ipp`` (the hospital number), not from the
record id, so a patient keeps the same pseudonym if the project is rebuilt.

Choices made where the contract is silent:

* a header-only records file is an :class:`ImportFailure`: the delivery is a full dump, and an
  empty one would wipe the centre's registry;
* a file that is not valid UTF-8 is read as cp1252 with a ``wrong_encoding`` warning;
* a non-ISO date that still reads unambiguously as a French date is accepted with a
  ``date_not_iso`` warning; a label written instead of a code (a "label" export) is decoded
  with a ``label_instead_of_code`` warning;
* a ``Dernières nouvelles`` instance of a patient who has a ``Décès`` instance yields no event
  row (the death is that patient's last news) and a ``last_news_of_dead_patient`` warning;
* ``patient_complete`` 0/1 loads the record with ``record_complete = False`` and a
  ``record_incomplete`` warning;
* a record with more or fewer fields than the header (a comma typed outside quotes: a comma
  inside quotes is fine) is a ``wrong_field_count`` error on its row, not an import failure;
  the pipeline's identifier screen quarantines it whole, values masked.

Fast path: every column is decoded with polars expressions; only the cells the fast path
rejects go through :class:`Cells`, which writes the data queries.

Rules raised here (besides Cells' ``unknown_code``, ``value_normalised``, ``unparseable_date``,
``partial_date_imputed``, ``unparseable_number``, ``not_an_integer`` and match_columns'
``unknown_column``): structural (``validations/structural/lyon.py``) ``missing_patient_id``,
``duplicate_patient``, ``orphan_row``, ``unknown_repeat_instrument``,
``bad_repeat_instance``, ``duplicate_repeat_instance``; errors ``wrong_field_count``, ``birth_after_diagnosis``, ``age_out_of_range``,
``metastasis_site_without_metastasis``; warnings ``wrong_encoding``, ``file_date_mismatch``,
``date_not_iso``, ``label_instead_of_code``, ``record_incomplete``, ``mitoses_upper_bound``,
``metastasis_without_site``, ``last_news_of_dead_patient``, ``missing_checkbox_column``,
``checkbox_code_not_in_dictionary``, ``field_not_in_dictionary``, ``value_in_other_instrument``
(a value typed in the columns of another form than the row's: read by no one, so reported).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandera.polars as pa
import polars as pl

from clms_etl.readers.base import (
    ERROR,
    IDENTIFIER_MASK,
    WARNING,
    ColumnSpec,
    ImportFailure,
    ReadContext,
    ReadResult,
    field_counts,
    leaves_folder,
    match_columns,
    normalise_name,
)
from clms_etl.readers.cells import Cells, fold, pseudonymise_many
from clms_etl import model
from clms_etl.identifiers import BIRTH_DATE, HOSPITAL_NUMBER, NAME
from validations.structural import lyon as structural

DICTIONARY_NAME = "CLMSLYON_DataDictionary.csv"
_DATA_RE = re.compile(r"^clmslyon_data_(.*)\.csv$", re.IGNORECASE)
_DICT_RE = re.compile(r"^clmslyon_datadictionary.*\.csv$", re.IGNORECASE)
_DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
MAX_HEADER_BYTES = 1 << 20  # a REDCap header of 1 MB would be ~10,000 fields: not this project
INSTRUMENTS = ("chirurgie", "evenement")

# --- canonical values of the dictionary's labels ----------------------------------------------


def label_key(text: str) -> str:
    """How labels are compared: no case, accents, spaces or hyphens; ≥/≤ spelt out."""
    text = fold(text).replace("≥", ">=").replace("≤", "<=")
    return re.sub(r"[\s\-_.'’]+", "", text)


def _labels(**groups: tuple[str, ...]) -> dict[str, object]:
    return {label_key(lbl): canon for canon, labels in groups.items() for lbl in labels}


def _labels_of(pairs: list[tuple[object, tuple[str, ...]]]) -> dict[str, object]:
    return {label_key(lbl): canon for canon, labels in pairs for lbl in labels}


SEX_LABELS = _labels(male=("Homme", "Masculin", "H", "M"), female=("Femme", "Féminin", "F"))
SITE_LABELS = _labels(
    head_neck=("Tête et cou", "Tête-cou", "Tête & cou", "Tête et Cou"),
    trunk=("Tronc",),
    upper_limb=("Membre supérieur", "Membre sup"),
    lower_limb=("Membre inférieur", "Membre inf"),
)
PRESENTATION_LABELS = _labels(
    nodular=("Nodule", "Nodulaire"),
    ulcerated=("Ulcération", "Ulcéré", "Ulcérée"),
    vegetative=("Végétant", "Végétante", "Bourgeonnant"),
    infiltrated_patch=("Plaque infiltrée", "Plaque"),
)
GRADE_LABELS = _labels_of([
    (1, ("Grade I", "Grade 1", "I", "1")),
    (2, ("Grade II", "Grade 2", "II", "2")),
    (3, ("Grade III", "Grade 3", "III", "3")),
])
DIFFERENTIATION_LABELS = _labels_of([
    (1, ("Bien différencié", "Bien différenciée", "Bien")),
    (2, ("Moyennement différencié", "Moyennement différenciée", "Moyennement")),
    (3, ("Peu différencié", "Peu différenciée", "Peu", "Indifférencié")),
])
MITOSIS_CLASS_LABELS = {
    label_key(lbl): canon
    for canon, labels in {"0-9": ("0-9", "0 - 9", "< 10"), "10-19": ("10-19", "10 - 19"),
                          ">=20": ("≥ 20", ">= 20", "≥20")}.items()
    for lbl in labels
}
NECROSIS_LABELS = _labels_of([
    (0, ("Absente", "Absent", "Aucune", "0 %")),
    (1, ("< 50 %", "<50%", "< 50", "Moins de 50 %")),
    (2, ("≥ 50 %", ">= 50 %", "≥50%", "> 50 %", "Plus de 50 %")),
])
INVASION_LABELS = _labels(
    dermal=("Derme", "Dermique"),
    dermo_hypodermal=("Derme et hypoderme", "Dermo-hypodermique", "Derme + hypoderme"),
)
SURGERY_LABELS = _labels(
    primary_excision=("Exérèse initiale", "Exérèse primaire", "Première exérèse"),
    re_excision=("Reprise", "Reprise chirurgicale", "Reprise d'exérèse"),
    relapse_surgery=("Chirurgie de la récidive", "Chirurgie de récidive"),
    metastasis_surgery=("Chirurgie de métastase", "Chirurgie des métastases", "Métastasectomie"),
)
RESECTION_LABELS = _labels(R0=("R0",), R1=("R1",), R2=("R2",))
EVENT_LABELS = _labels(
    local_recurrence=("Récidive locale", "Récidive"),
    metastasis=("Métastase", "Métastases", "Récidive métastatique"),
    death=("Décès", "DCD"),
    last_news=("Dernières nouvelles", "DDN"),
)
META_SITE_LABELS = _labels(
    bone=("os", "osseuse", "osseux"), skin=("peau", "cutanée"), lung=("poumon", "pulmonaire"),
    liver=("foie", "hépatique"), lymph_node=("ganglion", "ganglions", "ganglionnaire"),
    colon=("côlon", "colique"), other=("autre", "autres"),
)
DEATH_CAUSE_LABELS = _labels(
    clms=("cLMS", "LMS cutané", "Léiomyosarcome"), other=("Autre", "Autre cause"),
    unknown=("Inconnue", "Inconnu", "NSP"),
)
YESNO_LABELS = _labels_of([(True, ("Oui", "Yes", "Vrai")), (False, ("Non", "No", "Faux"))])
YESNO_CODES = {"1": True, "0": False}  # REDCap's fixed yesno / truefalse coding
COMPLETE_CODES = {"0": False, "1": False, "2": True}  # <form>_complete: 2 = Complete
BOX_CODES = {"1": True, "0": False}

EVENT_ORDER = {"local_recurrence": 0, "metastasis": 1, "death": 2, "last_news": 3}

# key -> (canonical table, dtype, labels); yesno fields use YESNO_LABELS (see _choice_map)
CODED = {
    "sexe": ("patient", pl.String, SEX_LABELS),
    "immunodep": ("patient", pl.Boolean, None),
    "localisation": ("tumour", pl.String, SITE_LABELS),
    "presentation": ("tumour", pl.String, PRESENTATION_LABELS),
    "douleur": ("tumour", pl.Boolean, None),
    "cicatrice": ("tumour", pl.Boolean, None),
    "grade_fnclcc": ("tumour", pl.Int8, GRADE_LABELS),
    "differenciation": ("tumour", pl.Int8, DIFFERENTIATION_LABELS),
    "mitoses_classe": ("tumour", pl.String, MITOSIS_CLASS_LABELS),
    "necrose": ("tumour", pl.Int8, NECROSIS_LABELS),
    "invasion": ("tumour", pl.String, INVASION_LABELS),
    "ulceration_histo": ("tumour", pl.Boolean, None),
    "chir_type": ("surgery", pl.String, SURGERY_LABELS),
    "statut_r": ("surgery", pl.String, RESECTION_LABELS),
    "rt_adj": ("surgery", pl.Boolean, None),
    "evt_type": ("event", pl.String, EVENT_LABELS),
    "deces_cause": ("event", pl.String, DEATH_CAUSE_LABELS),
}
CHECKBOX = "meta_site"
# the columns each form's rows are read from
PATIENT_KEYS = (
    "ipp", "date_naissance", "sexe", "immunodep", "date_diag", "localisation", "taille_mm",
    "presentation", "douleur", "cicatrice", "delai_consult_mois", "grade_fnclcc", "differenciation",
    "mitoses_10hpf", "mitoses_classe", "necrose", "invasion", "ulceration_histo", "ki67",
    "patient_complete",
)
SURGERY_KEYS = ("chir_date", "chir_type", "marge_rcp_mm", "marge_clin_mm", "marge_histo_mm", "statut_r", "rt_adj")
EVENT_KEYS = ("evt_date", "evt_type", "deces_cause", "evt_traitement")

# --- columns ---------------------------------------------------------------------------------


def _spec(key: str, *aliases: str, required: bool = True, identifier: bool = False) -> ColumnSpec:
    return ColumnSpec(key, (key, *aliases), required, identifier)


SPECS = [
    _spec("redcap_repeat_instrument"),
    _spec("redcap_repeat_instance"),
    _spec("redcap_event_name", required=False),
    _spec("redcap_data_access_group", required=False),
    _spec("redcap_survey_identifier", required=False),
    _spec("ipp", identifier=True),
    _spec("nom", required=False, identifier=True),
    _spec("prenom", required=False, identifier=True),
    _spec("date_naissance", "ddn", identifier=True),
    _spec("sexe"), _spec("immunodep"), _spec("date_diag"), _spec("localisation"),
    _spec("taille_mm"), _spec("presentation"), _spec("douleur"), _spec("cicatrice"),
    _spec("delai_consult_mois"), _spec("grade_fnclcc"), _spec("differenciation"),
    _spec("mitoses_10hpf"), _spec("mitoses_classe", required=False), _spec("necrose"),
    _spec("invasion"), _spec("ulceration_histo"), _spec("ki67"), _spec("patient_complete"),
    _spec("chir_date"), _spec("chir_type"), _spec("marge_rcp_mm"), _spec("marge_clin_mm"),
    _spec("marge_histo_mm"), _spec("statut_r"), _spec("rt_adj"),
    _spec("chirurgie_complete", required=False),
    _spec("evt_date"), _spec("evt_type"), _spec("deces_cause"), _spec("evt_traitement"),
    _spec("evenement_complete", required=False),
]
IDENTIFIERS = {s.key for s in SPECS if s.identifier}
# what each identifier column holds (everything leaving the reader is screened against them)
IDENTIFIER_KINDS = {"ipp": HOSPITAL_NUMBER, "nom": NAME, "prenom": NAME, "date_naissance": BIRTH_DATE}
assert set(IDENTIFIER_KINDS) == IDENTIFIERS

DICT_SPECS = [
    ColumnSpec("field", ("Variable / Field Name", "field_name")),
    ColumnSpec("form", ("Form Name", "form_name"), required=False),
    ColumnSpec("section", ("Section Header", "section_header"), required=False),
    ColumnSpec("type", ("Field Type", "field_type")),
    ColumnSpec("label", ("Field Label", "field_label"), required=False),
    ColumnSpec("choices", ("Choices, Calculations, OR Slider Labels", "select_choices_or_calculations")),
    ColumnSpec("identifier", ("Identifier?", "identifier"), required=False),
    *(ColumnSpec(f"other{i}", (name,), required=False) for i, name in enumerate([
        "Field Note", "Text Validation Type OR Show Slider Number", "Text Validation Min",
        "Text Validation Max", "Branching Logic (Show field only if...)",
        "Required Field?", "Custom Alignment", "Question Number (surveys only)",
        "Matrix Group Name", "Matrix Ranking?", "Field Annotation",
    ])),
]


# --- files -----------------------------------------------------------------------------------


def _find_files(ctx: ReadContext) -> tuple[Path, Path]:
    folder = Path(ctx.delivery_dir)
    if not folder.is_dir():
        raise ImportFailure(f"{folder}: dossier de livraison Lyon introuvable.", str(folder))
    files = [p for p in folder.iterdir() if p.is_file()]
    dicts = [p for p in files if _DICT_RE.match(p.name)]
    datas = [p for p in files if _DATA_RE.match(p.name)]
    if not dicts:
        raise ImportFailure(f"{DICTIONARY_NAME}: dictionnaire de données REDCap absent de la livraison.",
                            DICTIONARY_NAME)
    exact = [p for p in dicts if p.name == DICTIONARY_NAME]
    if len(exact) != 1 and len(dicts) > 1:
        raise ImportFailure(f"{DICTIONARY_NAME}: plusieurs dictionnaires livrés "
                            f"({', '.join(sorted(p.name for p in dicts))}); lequel utiliser ?", DICTIONARY_NAME)
    dictionary = exact[0] if exact else dicts[0]
    wanted = f"CLMSLYON_DATA_{ctx.delivery_date.isoformat()}.csv"
    if not datas:
        raise ImportFailure(f"{wanted}: export des données REDCap absent de la livraison.", wanted)
    if len(datas) > 1:
        dated = [p for p in datas if ctx.delivery_date.isoformat() in p.name]
        if len(dated) != 1:
            raise ImportFailure(f"{wanted}: plusieurs exports de données livrés "
                                f"({', '.join(sorted(p.name for p in datas))}); lequel utiliser ?", wanted)
        datas = dated
    data = datas[0]
    for path in (dictionary, data):
        if leaves_folder(folder, path):
            raise ImportFailure(f"{path.name}: lien symbolique vers un fichier hors du dossier de livraison, "
                                f"refusé (livrer le fichier lui-même).", path.name)
    found = _DATE_IN_NAME.search(data.name)
    if not found or found.group(1) != ctx.delivery_date.isoformat():
        ctx.query(file=data.name, rule="file_date_mismatch",
                  message=f"Le nom du fichier {data.name} ne porte pas la date de livraison "
                          f"{ctx.delivery_date.isoformat()}: export ancien ?")
    return dictionary, data


def _load_text(ctx: ReadContext, path: Path) -> tuple[str, bytes]:
    """The file's text and UTF-8 bytes (for polars). UTF-8 is the contract; cp1252 is accepted
    with a warning, anything binary or undecodable stops the import."""
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailure(f"{name}: fichier illisible ({exc.strerror or exc}).", name) from None
    if not data or data.isspace():
        raise ImportFailure(f"{name}: fichier vide.", name)
    if b"\x00" in data:
        raise ImportFailure(f"{name}: contenu binaire (octets nuls), pas un CSV REDCap.", name)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise ImportFailure(f"{name}: encodage illisible (ni UTF-8 ni Windows-1252).", name) from None
        data = text.encode("utf-8")
        ctx.query(file=name, rule="wrong_encoding",
                  message=f"{name} n'est pas en UTF-8 (contrat) mais en Windows-1252: lu comme tel, "
                          f"à corriger dans l'export.")
    sample = text[:65536]
    controls = len(re.findall(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", sample))
    if controls > max(8, len(sample) // 100):
        raise ImportFailure(f"{name}: contenu binaire (caractères de contrôle), pas un CSV REDCap.", name)
    return text, data


def _header(text: str, name: str) -> list[str]:
    end = text.find("\n")
    line = text if end < 0 else text[:end]
    if len(line) > MAX_HEADER_BYTES:
        raise ImportFailure(f"{name}: ligne d'en-tête de {len(line):,} caractères: fichier corrompu "
                            f"ou sans fins de ligne.", name)
    try:
        rows = list(csv.reader(io.StringIO(line.rstrip("\r"))))
    except csv.Error as exc:
        raise ImportFailure(f"{name}: en-tête illisible ({exc}).", name) from None
    if not rows or not any(h.strip() for h in rows[0]):
        raise ImportFailure(f"{name}: en-tête absent.", name)
    return [h.strip() for h in rows[0]]


def _check_not_truncated(text: str, header: list[str], name: str) -> None:
    """A delivery cut short usually ends mid-line: a last line with fewer fields than the header
    (or an open quote) means the file is truncated."""
    if text.endswith("\n"):
        return
    tail = text[text.rfind("\n") + 1:]
    if tail.count('"') % 2:
        raise ImportFailure(f"{name}: fichier tronqué (guillemet non refermé en fin de fichier).", name)
    try:
        fields = next(csv.reader(io.StringIO(tail)), [])
    except csv.Error:
        fields = []
    if len(fields) < len(header):
        raise ImportFailure(f"{name}: fichier tronqué (dernière ligne incomplète: {len(fields)} champs "
                            f"sur {len(header)}).", name)


# --- the data dictionary -------------------------------------------------------------------


@dataclass
class DictField:
    name: str
    type: str
    choices: dict[str, str]  # code -> label, in dictionary order
    row: int
    identifier: bool = False  # "Identifier?" = y


def _read_dictionary(ctx: ReadContext, path: Path) -> dict[str, DictField]:
    name = path.name
    text, _ = _load_text(ctx, path)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ImportFailure(f"{name}: dictionnaire illisible ({exc}).", name) from None
    if not rows or len(rows[0]) > 1000:
        raise ImportFailure(f"{name}: en-tête du dictionnaire illisible.", name)
    cols = match_columns(ctx, rows[0], DICT_SPECS, name)
    fields: dict[str, DictField] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        cell = lambda key: row[cols[key]].strip() if cols.get(key) is not None and cols[key] < len(row) else ""  # noqa: E731
        field = cell("field")
        if not field:
            raise ImportFailure(f"{name}: ligne {i} sans nom de variable.", name, "Variable / Field Name")
        if normalise_name(field) in fields:
            raise ImportFailure(f"{name}: variable « {field} » définie deux fois (lignes "
                                f"{fields[normalise_name(field)].row} et {i}).", name, field)
        fields[normalise_name(field)] = DictField(
            field, cell("type").lower(), _parse_choices(cell("choices"), field, name), i,
            cell("identifier").lower() in ("y", "yes", "1", "oui"))
    if not fields:
        raise ImportFailure(f"{name}: dictionnaire sans aucune variable.", name)
    return fields


def _parse_choices(text: str, field: str, file: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not text:
        return out
    for part in re.split(r"\s*\|\s*|\n", text):
        if not part.strip():
            continue
        code, sep, label = part.partition(",")
        code, label = code.strip(), label.strip()
        if not sep or not code:
            # calc fields carry formulas here, not choices: only coded fields are parsed strictly
            return {}
        if code in out:
            raise ImportFailure(f"{file}: champ « {field} », code « {code} » défini deux fois.", file, field)
        out[code] = label
    return out


def _choice_map(dictionary: dict[str, DictField], header_name: str, key: str, file: str) -> dict[str, object]:
    """code -> canonical value for one coded field, through the dictionary's labels."""
    entry = dictionary.get(normalise_name(header_name))
    if entry is None:
        raise ImportFailure(f"{file}: champ « {header_name} » absent du dictionnaire: impossible de "
                            f"décoder ses codes; import de ce centre arrêté.", file, header_name)
    labels = CODED[key][2] if key in CODED else META_SITE_LABELS
    if labels is None:  # a yes/no field
        if entry.type in ("yesno", "truefalse"):
            return dict(YESNO_CODES)
        labels = YESNO_LABELS
    expected = ("checkbox",) if key == CHECKBOX else ("dropdown", "radio", "yesno", "truefalse")
    if entry.type not in expected or not entry.choices:
        raise ImportFailure(f"{file}: champ « {entry.name} » de type « {entry.type} » sans liste de choix "
                            f"utilisable (contrat changé); import de ce centre arrêté.", file, entry.name)
    out = {}
    for code, label in entry.choices.items():
        canon = labels.get(label_key(label), _MISSING)
        if canon is _MISSING:
            raise ImportFailure(f"{file}: champ « {entry.name} », libellé « {label} » (code {code}) inconnu "
                                f"du lecteur: le contrat a changé; import de ce centre arrêté.", file, entry.name)
        out[code] = canon
    return out


_MISSING = object()


# --- decoding columns ----------------------------------------------------------------------


class _Decoder:
    """Decodes a column of a sub-frame with polars; rejected cells go through Cells."""

    def __init__(self, ctx: ReadContext, file: str, headers: dict[str, str]):
        self.ctx, self.file, self.headers = ctx, file, headers

    def cells(self, frame: pl.DataFrame, idx: list[int], table: str) -> list[Cells]:
        """One Cells per listed row of ``frame`` (rows fetched in one go, not cell by cell)."""
        if not idx:
            return []
        sub = frame.select("_row", f"_rid_{table}", "patient_id")[idx]
        return [Cells(self.ctx, self.file, None, row, table, rid, pid) for row, rid, pid in sub.iter_rows()]

    def flag(self, frame: pl.DataFrame, mask: pl.Series, table: str, column: str, rule: str, message,
             *, values: pl.Series | None = None) -> None:
        """One query per row where ``mask`` is true; ``message`` may be a function of the value."""
        idx = mask.fill_null(False).arg_true().to_list()
        if not idx:
            return
        shown = values.gather(idx).to_list() if values is not None else [None] * len(idx)
        sub = frame.select("_row", f"_rid_{table}", "patient_id")[idx]
        query = self.ctx.query
        for value, (row, rid, pid) in zip(shown, sub.iter_rows()):
            query(file=self.file, row=row, table=table, row_id=rid, patient_id=pid, field=column, value=value,
                  rule=rule, message=message(value) if callable(message) else message)

    def _bad(self, raw: pl.Series, fast: pl.Series) -> list[int]:
        return (raw.is_not_null() & fast.is_null()).arg_true().to_list()

    def code(self, frame: pl.DataFrame, key: str, mapping: dict, table: str, dtype,
             labels: dict | None = None) -> pl.Series:
        raw = frame[key]
        fast = raw.replace_strict(mapping, default=None, return_dtype=dtype)
        bad = self._bad(raw, fast)
        if not bad:
            return fast
        column = self.headers[key]
        folded_codes = {fold(c) for c in mapping}
        values = []
        for value, cells in zip(raw.gather(bad).to_list(), self.cells(frame, bad, table)):
            by_label = None if labels is None or fold(value) in folded_codes else labels.get(label_key(value), _MISSING)
            if by_label is not None and by_label is not _MISSING:
                cells.error(column, value, "label_instead_of_code",
                            f"Libellé « {value} » au lieu d'un code dans l'export brut ({column}): "
                            f"lu comme « {by_label} ».")
                values.append(by_label)
            else:
                values.append(cells.code(column, value, mapping))
        return fast.scatter(bad, pl.Series(values, dtype=dtype))

    def number(self, frame: pl.DataFrame, key: str, table: str, *, integer: bool = False,
               factor: float = 1.0) -> pl.Series:
        raw = frame[key]
        value = raw.cast(pl.Float64, strict=False)
        value = pl.select(pl.when(value.is_finite()).then(value)).to_series()
        if integer:
            value = pl.select(pl.when(value == value.round(0)).then(value)).to_series()
        value = (value * factor).round(6)
        dtype = pl.Int32 if integer else pl.Float64
        value = value.cast(dtype)
        bad = self._bad(raw, value)
        if not bad:
            return value
        column = self.headers[key]
        parsed = [cells.number(column, value, integer=integer, factor=factor)
                  for value, cells in zip(raw.gather(bad).to_list(), self.cells(frame, bad, table))]
        return value.scatter(bad, pl.Series(parsed, dtype=dtype))

    def date(self, frame: pl.DataFrame, key: str, table: str, *, identifier: bool = False
             ) -> tuple[pl.Series, pl.Series]:
        raw = frame[key]
        iso = raw.str.contains(r"^\d{4}-\d{2}-\d{2}$")
        value = pl.select(
            pl.when(iso).then(raw.str.to_date("%Y-%m-%d", strict=False))
        ).to_series()
        value = pl.select(pl.when(value.dt.year().is_between(1900, 2100)).then(value)).to_series()
        precision = pl.select(pl.when(value.is_not_null()).then(pl.lit("day"))).to_series()
        bad = self._bad(raw, value)
        if not bad:
            return value, precision
        column = self.headers[key]
        dates, precisions = [], []
        for text, cells in zip(raw.gather(bad).to_list(), self.cells(frame, bad, table)):
            parsed = cells.date(column, text, identifier=identifier)
            if parsed is not None and not parsed.imputed:
                shown = IDENTIFIER_MASK if identifier else f"« {text} » lue comme {parsed.value.isoformat()}"
                cells.error(column, text, "date_not_iso",
                            f"Date {shown}: format attendu AAAA-MM-JJ ({column}).", identifier=identifier)
            dates.append(None if parsed is None else parsed.value)
            precisions.append(None if parsed is None else parsed.precision)
        return (value.scatter(bad, pl.Series(dates, dtype=pl.Date)),
                precision.scatter(bad, pl.Series(precisions, dtype=pl.String)))


# --- the reader ----------------------------------------------------------------------------


def read(ctx: ReadContext) -> ReadResult:
    dict_path, data_path = _find_files(ctx)
    dictionary = _read_dictionary(ctx, dict_path)
    file = data_path.name
    text, data = _load_text(ctx, data_path)
    header = _header(text, file)
    _check_not_truncated(text, header, file)
    del text

    # the first column is the record id whatever its name (REDCap's first field)
    box_specs = [
        ColumnSpec(h, (h,), required=False)
        for h in header if re.match(rf"^{CHECKBOX}___.+$", h, re.IGNORECASE)
    ]
    specs = [ColumnSpec("_record_id", (header[0],))] + SPECS + box_specs
    cols = match_columns(ctx, header, specs, file)
    headers = {("record_id" if k == "_record_id" else k): header[i] for k, i in cols.items()}

    try:
        # a record with a field too many (a comma typed outside quotes) is cut here, and
        # quarantined whole below (wrong_field_count): never an import failure for one line
        raw = pl.read_csv(data, has_header=True, infer_schema=False, encoding="utf8",
                          quote_char='"', truncate_ragged_lines=True)
    except Exception as exc:  # polars' messages are technical; the data manager gets one line
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ImportFailure(f"{file}: CSV illisible ({detail}).", file) from None
    fields = field_counts(data, raw.height, ",")
    del data
    if raw.width != len(header):
        raise ImportFailure(f"{file}: {raw.width} colonnes lues pour {len(header)} en-têtes.", file)
    if raw.height == 0:
        raise ImportFailure(f"{file}: aucun enregistrement (en-tête seul): un export complet vide "
                            f"effacerait le registre du centre; import arrêté.", file)

    source = raw.columns
    # the decoders treat "" as missing themselves; only the linking and free-text columns are
    # cleaned here (cleaning all of them costs more than the rare quoted empty cell)
    linking = {"record_id", "redcap_repeat_instrument", "redcap_repeat_instance"}
    frame = raw.select(
        [pl.int_range(2, raw.height + 2, dtype=pl.Int64).alias("_row")]
        + [
            (_clean(pl.col(source[i]), k in linking) if k in linking | {"ipp", "evt_traitement"}
             else pl.col(source[i])).alias(k)
            for k, i in ((("record_id" if k == "_record_id" else k), i) for k, i in cols.items())
        ]
    )
    frame = frame.with_columns(pl.col("redcap_repeat_instrument").str.to_lowercase())
    for key, kind in IDENTIFIER_KINDS.items():
        if key in frame.columns:
            ctx.register_identifiers(kind, frame[key], headers[key])
    # a project keyed on the hospital number: its record ids must not appear in queries either
    first = dictionary.get(normalise_name(header[0]))
    masked = cols["_record_id"] == cols["ipp"] or (first is not None and first.identifier)
    _structural(ctx, frame, file, headers, masked)
    _field_count_queries(ctx, frame, fields, len(header), file)

    reader = _Lyon(ctx, file, dict_path.name, dictionary, headers, frame)
    frames = reader.run()
    return ReadResult(
        centre=ctx.centre, delivery_date=ctx.delivery_date, frames=frames, queries=ctx.queries,
        files=[dict_path, data_path],
        source_rows={dict_path.name: len(dictionary), file: frame.height},
    )


def _clean(col: pl.Expr, strip: bool) -> pl.Expr:
    """Empty (and, for the linking columns, blank) cells are null."""
    if strip:
        col = col.str.strip_chars()
    return pl.when(col != "").then(col)


_INSTRUMENT_TABLES = {"chirurgie": "surgery", "evenement": "event"}
_STRUCTURAL_MESSAGES = {
    "missing_patient_id": "Enregistrement sans identifiant (record_id ou IPP vide): rattachement impossible.",
    "duplicate_patient": "Patient présent plusieurs fois (même record_id ou même IPP sur plusieurs lignes patient).",
    "orphan_row": "Instance répétée dont l'enregistrement n'a pas de ligne patient.",
    "unknown_repeat_instrument": "Instrument répété inconnu (attendu: chirurgie, evenement): ligne ignorée.",
    "bad_repeat_instance": "Numéro d'instance répétée absent ou invalide (ou présent sur une ligne patient).",
    "duplicate_repeat_instance": "Même instance répétée présente deux fois pour cet enregistrement.",
}


def _structural(ctx: ReadContext, frame: pl.DataFrame, file: str, headers: dict[str, str],
                record_id_is_identifier: bool) -> None:
    """Pandera structural schema -> error queries (one per row and rule)."""
    try:
        structural.SCHEMA.validate(frame, lazy=True)
        return
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    except pa.errors.SchemaError as exc:  # non-lazy failure: report as a whole-file problem
        raise ImportFailure(f"{file}: structure de l'export invalide ({str(exc).splitlines()[0][:200]}).", file) from None
    missing = cases.filter(pl.col("check") == "column_in_dataframe")
    if missing.height:
        column = str(missing["failure_case"][0])
        raise ImportFailure(f"{file}: colonne obligatoire « {column} » absente; import de ce centre arrêté.",
                            file, column)
    cases = cases.filter(pl.col("index").is_not_null()).select("check", "column", "index")
    seen: set[tuple[int, str]] = set()
    base = frame["redcap_repeat_instrument"].is_null()
    for check, column, index in cases.sort("index").iter_rows():
        rule = structural.RULES.get(check, "structure_check_failed")
        if check == "not_nullable" and column != "record_id":
            continue
        if (index, rule) in seen:
            continue
        seen.add((index, rule))
        row = frame.row(index, named=True)
        is_base = bool(base[index])
        ipp = row.get("ipp")
        if rule in ("duplicate_patient", "missing_patient_id") and check in ("duplicate_ipp", "missing_ipp"):
            field, value = headers["ipp"], (IDENTIFIER_MASK if ipp else None)
        elif rule == "unknown_repeat_instrument":
            field, value = headers["redcap_repeat_instrument"], row["redcap_repeat_instrument"]
        elif rule in ("bad_repeat_instance", "duplicate_repeat_instance"):
            field, value = headers["redcap_repeat_instance"], row["redcap_repeat_instance"]
        else:
            field, value = headers["record_id"], row["record_id"]
            if record_id_is_identifier and value is not None:
                value = IDENTIFIER_MASK
        table = "patient" if is_base else _INSTRUMENT_TABLES.get(row["redcap_repeat_instrument"])
        row_id = f"{table}:{file}:{row['_row']}" if table else None
        pid = ctx.pseudonymise(ipp) if is_base and ipp and ipp.strip() else None
        ctx.query(file=file, row=row["_row"], table=table, row_id=row_id, patient_id=pid, field=field,
                  value=value, rule=rule,
                  message=_STRUCTURAL_MESSAGES.get(rule, f"Contrôle structurel « {check} » en échec."))


def _field_count_queries(ctx: ReadContext, frame: pl.DataFrame, fields, width: int, file: str) -> None:
    """A record with the wrong number of fields (a comma outside quotes, a broken line): its
    cells are shifted; one error on its row, which the screen quarantines whole and masks."""
    wrong = frame.select("_row", "ipp", "redcap_repeat_instrument").with_columns(
        pl.Series("_fields", fields, dtype=pl.Int64)
    ).filter((pl.col("_fields") >= 0) & (pl.col("_fields") != width))
    for row, ipp, instrument, count in wrong.iter_rows():
        table = "patient" if instrument is None else _INSTRUMENT_TABLES.get(instrument)
        ctx.query(file=file, row=row, table=table, row_id=f"{table}:{file}:{row}" if table else None,
                  patient_id=ctx.pseudonymise(ipp) if instrument is None and ipp and ipp.strip() else None,
                  value=IDENTIFIER_MASK, rule="wrong_field_count",
                  message=f"La ligne compte {count} champs au lieu de {width} (virgule hors guillemets ?): "
                          f"colonnes décalées.")


class _Lyon:
    def __init__(self, ctx: ReadContext, file: str, dict_file: str, dictionary: dict[str, DictField],
                 headers: dict[str, str], frame: pl.DataFrame):
        self.ctx, self.file, self.dict_file = ctx, file, dict_file
        self.headers = headers
        self.frame = frame
        self.decode = _Decoder(ctx, file, headers)
        optional = {s.key for s in SPECS if not s.required}
        for key in [k for k in CODED if k in optional and k in headers]:
            if normalise_name(headers[key]) not in dictionary:
                # an optional column the dictionary does not describe cannot be decoded: ignored
                ctx.query(file=file, row=1, field=headers[key], value=headers[key], rule="field_not_in_dictionary",
                          message=f"Colonne « {headers[key]} » absente du dictionnaire {dict_file}: ignorée.")
                del headers[key]
        self.maps = {
            key: _choice_map(dictionary, headers[key], key, dict_file) for key in CODED if key in headers
        }
        self.labels = {key: _label_lookup(dictionary, headers[key], self.maps[key]) for key in self.maps}
        self.boxes = self._boxes(dictionary)

    # -- checkbox columns ---------------------------------------------------------------------

    def _boxes(self, dictionary: dict[str, DictField]) -> list[tuple[str, str | None, object]]:
        """(frame column, dictionary code or None if unknown, canonical site) in file order."""
        entry = dictionary.get(normalise_name(CHECKBOX))
        present = [k for k in self.headers if re.match(rf"^{CHECKBOX}___.+$", k, re.IGNORECASE)]
        if entry is None:
            raise ImportFailure(f"{self.dict_file}: champ « {CHECKBOX} » absent du dictionnaire.",
                                self.dict_file, CHECKBOX)
        sites = _choice_map(dictionary, entry.name, CHECKBOX, self.dict_file)
        by_suffix = {_export_suffix(code): code for code in sites}
        out, found = [], set()
        for key in present:
            code = by_suffix.get(key.split("___", 1)[1].lower())
            out.append((key, code, sites.get(code)))
            found.add(code)
            if code is None:
                self.ctx.query(file=self.file, row=1, field=key, value=key, rule="checkbox_code_not_in_dictionary",
                               message=f"Case à cocher « {key} » sans code correspondant dans le dictionnaire: "
                                       f"une case cochée y sera signalée.")
        absent = [c for c in sites if c not in found]
        if len(absent) == len(sites):
            first = f"{CHECKBOX}___{_export_suffix(next(iter(sites)))}"
            raise ImportFailure(f"{self.file}: colonne obligatoire « {first} » absente (cases {CHECKBOX}); "
                                f"import de ce centre arrêté.", self.file, first)
        for code in absent:
            self.ctx.query(file=self.file, row=1, field=f"{CHECKBOX}___{_export_suffix(code)}", value=None,
                           rule="missing_checkbox_column",
                           message=f"Case « {CHECKBOX}___{code} » du dictionnaire absente de l'export: "
                                   f"ce site métastatique ne peut pas être lu.")
        return out

    # -- tables ---------------------------------------------------------------------------------

    def _subset(self, instrument: str | None, keys: tuple[str, ...]) -> pl.DataFrame:
        """The rows of one form, with only that form's columns (less to copy)."""
        f = self.frame
        form = pl.col("redcap_repeat_instrument")
        return (f.lazy().filter(form.is_null() if instrument is None else form == instrument)
                .select("_row", "record_id", *(k for k in keys if k in f.columns)).collect())

    def _owners(self, base_ids: pl.Series) -> pl.Series:
        """Pseudonym of every row's record. REDCap writes a record's repeat rows right after its
        base row, so a forward fill finds the owner without hashing; rows where that does not
        hold (unsorted export) are looked up by record id (first base row of the record)."""
        f = self.frame
        is_base = f["redcap_repeat_instrument"].is_null()
        at_base = pl.Series([None] * f.height, dtype=pl.String).scatter(is_base.arg_true(), base_ids)
        owner = pl.select(pl.when(is_base).then(pl.int_range(f.height, dtype=pl.UInt32)).forward_fill()).to_series()
        rec = f["record_id"]
        found = owner.is_not_null() & rec.is_not_null() & (rec.gather(owner) == rec).fill_null(False)
        ids = pl.select(pl.when(is_base).then(at_base).when(found).then(at_base.gather(owner))).to_series()
        lost = ~is_base & ~found & rec.is_not_null()
        if lost.any():
            first = (pl.DataFrame({"record_id": rec.filter(is_base), "patient_id": base_ids})
                     .filter(pl.col("record_id").is_not_null()).unique("record_id", keep="first"))
            looked = rec.filter(lost).to_frame().join(first, on="record_id", how="left", maintain_order="left")
            ids = ids.scatter(lost.arg_true(), looked["patient_id"])
        return ids.alias("patient_id")

    def run(self) -> dict[str, pl.DataFrame]:
        file = self.file
        base = self._subset(None, PATIENT_KEYS)
        ipp = base["ipp"]
        # blank or missing IPP: no pseudonym (null patient_id); each distinct IPP hashed once
        pseudo = pseudonymise_many(self.ctx, [v for v in ipp.unique().to_list() if v is not None and v.strip()])
        ids = ipp.replace_strict(pseudo, default=None, return_dtype=pl.String) if pseudo else \
            pl.Series(values=[None] * len(ipp), dtype=pl.String)
        base = base.with_columns(ids.alias("patient_id"), _rid("patient", file),
                                 _rid("tumour", file))
        self.frame = self.frame.with_columns(self._owners(base["patient_id"]))
        self._misplaced_values()
        surgery = self._surgery(self._subset("chirurgie", ("patient_id", *SURGERY_KEYS)))
        event, vital = self._events(self._subset("evenement", ("patient_id", *EVENT_KEYS, *(k for k, _, _ in self.boxes))))
        patient, tumour = self._patients(base, vital)
        return {"patient": patient, "tumour": tumour, "surgery": surgery, "event": event}

    def _misplaced_values(self) -> None:
        """A value typed in another instrument's column (a ``chir_date`` on an ``evenement`` row,
        an ``evt_type`` on the patient row) is read by no one: a warning naming row and column, so
        the centre moves it to the right instance instead of losing it."""
        f, file = self.frame, self.file
        boxes = tuple(k for k, _, _ in self.boxes)
        owned = {None: ("nom", "prenom", *PATIENT_KEYS), "chirurgie": (*SURGERY_KEYS, "chirurgie_complete"),
                 "evenement": (*EVENT_KEYS, "evenement_complete", *boxes)}
        tables = {None: "patient", "chirurgie": "surgery", "evenement": "event"}
        form = pl.col("redcap_repeat_instrument")
        for instrument in owned:
            rows = f.filter(form.is_null() if instrument is None else form == instrument)
            for other, columns in owned.items():
                for key in (k for k in columns if other != instrument and k in rows.columns and k in self.headers):
                    value = pl.col(key).str.strip_chars()
                    filled = rows.filter((value != "") & ~(pl.lit(key in boxes) & (value == "0")))
                    column, where = self.headers[key], other or "patient"
                    table = tables[instrument]
                    for row, raw, pid in filled.select("_row", key, "patient_id").iter_rows():
                        self.ctx.query(
                            file=file, row=row, table=table, row_id=f"{table}:{file}:{row}", patient_id=pid,
                            field=column, value=IDENTIFIER_MASK if key in IDENTIFIERS else raw,
                            rule="value_in_other_instrument",
                            message=f"Valeur saisie dans « {column} » (formulaire {where}) sur une ligne "
                                    f"{instrument or 'patient'} : non lue ; la saisir dans le bon formulaire.")

    def _code(self, frame, key, table, dtype=None):
        dtype = dtype or CODED[key][1]
        return self.decode.code(frame, key, self.maps[key], table, dtype, self.labels.get(key))

    def _patients(self, base: pl.DataFrame, vital: dict[str, list]) -> tuple[pl.DataFrame, pl.DataFrame]:
        d = self.decode
        diag, diag_p = d.date(base, "date_diag", "patient")
        birth, _ = d.date(base, "date_naissance", "patient", identifier=True)
        self.ctx.register_birth_dates(base["patient_id"], birth)
        complete = d.code(base, "patient_complete", COMPLETE_CODES, "patient", pl.Boolean)
        age = pl.select(
            (diag.dt.year() - birth.dt.year()
             - ((diag.dt.month().cast(pl.Int32) * 100 + diag.dt.day())
                < (birth.dt.month().cast(pl.Int32) * 100 + birth.dt.day())).cast(pl.Int32)).alias("age")
        ).to_series()
        for wrong, rule in ((age < 0, "birth_after_diagnosis"), (age > 120, "age_out_of_range")):
            d.flag(base, wrong, "patient", self.headers["date_naissance"], rule,
                   lambda a: f"Âge au diagnostic calculé de {a} ans (date de naissance ou de diagnostic erronée).",
                   values=age)
        age = pl.select(pl.when(age.is_between(0, 120)).then(age)).to_series()
        d.flag(base, ~complete, "patient", self.headers["patient_complete"], "record_incomplete",
               "Formulaire patient non marqué complet (patient_complete ≠ 2): chargé tel quel, à compléter.",
               values=base["patient_complete"])
        prov = lambda t: [pl.col(f"_rid_{t}").alias("row_id"), pl.lit(self.file).alias("source_file"),  # noqa: E731
                          pl.lit(None, pl.String).alias("source_sheet"), pl.col("_row").alias("source_row")]
        patient = base.select(
            pl.col("patient_id"),
            pl.lit(self.ctx.centre).alias("centre"),
            self._code(base, "sexe", "patient").alias("sex"),
            age.cast(pl.Int16).alias("age_at_diagnosis_years"),
            self._code(base, "immunodep", "patient").alias("immunosuppression"),
            diag.alias("diagnosis_date"),
            diag_p.alias("diagnosis_date_precision"),
            pl.when(pl.col("record_id").is_in(pl.Series(vital["dead"]).implode())).then(pl.lit("dead"))
            .when(pl.col("record_id").is_in(pl.Series(vital["alive"]).implode())).then(pl.lit("alive"))
            .alias("vital_status"),
            complete.alias("record_complete"),
            *prov("patient"),
        )
        mitoses, bound = self._mitoses(base)
        has_class = "mitoses_classe" in self.maps
        tumour = base.select(
            pl.col("patient_id"),
            self._code(base, "localisation", "tumour").alias("site"),
            pl.lit(None, pl.String).alias("site_detail"),
            d.number(base, "taille_mm", "tumour", factor=0.1).alias("size_cm"),
            self._code(base, "presentation", "tumour").alias("presentation"),
            self._code(base, "douleur", "tumour").alias("pain"),
            self._code(base, "cicatrice", "tumour").alias("on_scar"),
            d.number(base, "delai_consult_mois", "tumour").alias("consultation_delay_months"),
            self._code(base, "grade_fnclcc", "tumour").alias("fnclcc_grade"),
            self._code(base, "differenciation", "tumour").alias("differentiation_score"),
            mitoses.alias("mitoses_per_10hpf"),
            bound.alias("mitoses_is_upper_bound"),
            (self._code(base, "mitoses_classe", "tumour") if has_class
             else pl.repeat(None, base.height, dtype=pl.String, eager=True)).alias("mitosis_class"),
            self._code(base, "necrose", "tumour").alias("necrosis_score"),
            self._code(base, "invasion", "tumour").alias("invasion"),
            self._code(base, "ulceration_histo", "tumour").alias("histological_ulceration"),
            d.number(base, "ki67", "tumour").alias("ki67_percent"),
            *prov("tumour"),
        )
        return model.conform("patient", patient), model.conform("tumour", tumour)

    def _mitoses(self, base: pl.DataFrame) -> tuple[pl.Series, pl.Series]:
        """Count per 10 HPF; ``< 5`` (not REDCap's integer validation, but seen) -> 5, flagged."""
        raw = base["mitoses_10hpf"]
        bound_text = raw.str.extract(r"^\s*<\s*(\d{1,4})\s*$", 1)
        is_bound = bound_text.is_not_null()
        plain = base.with_columns(pl.when(is_bound).then(None).otherwise(raw).alias("mitoses_10hpf"))
        count = self.decode.number(plain, "mitoses_10hpf", "tumour", integer=True)
        self.decode.flag(base, is_bound, "tumour", self.headers["mitoses_10hpf"], "mitoses_upper_bound",
                         lambda v: f"Mitoses « {v} »: borne retenue et signalée comme borne supérieure.",
                         values=raw)
        count = pl.select(pl.when(is_bound).then(bound_text.cast(pl.Int32)).otherwise(count)).to_series()
        flag = pl.select(pl.when(count.is_not_null()).then(is_bound)).to_series()
        return count, flag

    def _surgery(self, rows: pl.DataFrame) -> pl.DataFrame:
        rows = rows.with_columns(_rid("surgery", self.file))
        d = self.decode
        when, when_p = d.date(rows, "chir_date", "surgery")
        out = rows.select(
            pl.col("record_id"), pl.col("patient_id"),
            when.alias("surgery_date"), when_p.alias("surgery_date_precision"),
            self._code(rows, "chir_type", "surgery").alias("surgery_kind"),
            d.number(rows, "marge_rcp_mm", "surgery", factor=0.1).alias("proposed_margin_cm"),
            d.number(rows, "marge_clin_mm", "surgery", factor=0.1).alias("clinical_margin_cm"),
            d.number(rows, "marge_histo_mm", "surgery", factor=0.1).alias("histological_margin_cm"),
            self._code(rows, "statut_r", "surgery").alias("resection_status"),
            self._code(rows, "rt_adj", "surgery").alias("adjuvant_radiotherapy"),
            pl.col("_rid_surgery").alias("row_id"), pl.lit(self.file).alias("source_file"),
            pl.lit(None, pl.String).alias("source_sheet"), pl.col("_row").alias("source_row"),
        )
        # 1..n in date order per record (undated last, then in file order)
        out = out.sort(["record_id", "surgery_date", "source_row"], nulls_last=True, maintain_order=True)
        out = out.with_columns(_number_within("record_id").alias("surgery_no"))
        return model.conform("surgery", out.sort("source_row"))

    def _events(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, list]]:
        file = self.file
        rows = rows.with_columns(_rid("event", file))
        d = self.decode
        when, when_p = d.date(rows, "evt_date", "event")
        kind = self._code(rows, "evt_type", "event")
        cause = self._code(rows, "deces_cause", "event")
        ticked = []  # per box: Boolean series (True = ticked)
        for key, code, _ in self.boxes:
            box = d.code(rows, key, BOX_CODES, "event", pl.Boolean)
            if code is None:
                d.flag(rows, box, "event", self.headers[key], "unknown_code",
                       f"Case « {self.headers[key]} » cochée: code absent du dictionnaire ({CHECKBOX}).",
                       values=rows[key])
                box = pl.repeat(False, rows.height, dtype=pl.Boolean, eager=True)
            ticked.append(box.fill_null(False))
        known = [(code, site, t) for (key, code, site), t in zip(self.boxes, ticked) if code is not None]
        ev = rows.select(
            "record_id", "patient_id", "_row", "_rid_event",
            kind.alias("event_kind"), when.alias("event_date"), when_p.alias("event_date_precision"),
            cause.alias("death_cause"),
            pl.col("evt_traitement").alias("treatment"),
        ).with_row_index("_pos")
        is_meta = (kind == "metastasis").fill_null(False)
        n_sites = pl.select(pl.sum_horizontal([t for _, _, t in known]) if known else pl.lit(0)).to_series()
        column = f"{CHECKBOX}___*"
        d.flag(ev, is_meta & (n_sites == 0), "event", column, "metastasis_without_site",
               "Métastase sans site coché: site non renseigné.")
        if known:
            codes = pl.select(pl.concat_str(
                [pl.when(t).then(pl.lit(code)) for code, _, t in known], separator=",", ignore_nulls=True
            )).to_series()
            d.flag(ev, ~is_meta & kind.is_not_null() & (n_sites > 0), "event", column,
                   "metastasis_site_without_metastasis",
                   "Site(s) métastatique(s) cochés sur un évènement qui n'est pas une métastase: ignorés.",
                   values=codes)
        # each ticked box of a metastasis = one event row (long form: position, box order, site);
        # the row id names the site, not the code, so that it survives a renumbering
        sites = [site for _, site, _ in known]
        suffix = [site if sites.count(site) == 1 else f"{site}-{code}" for code, site, _ in known]
        ticks = pl.concat(
            [ev.filter(is_meta & t).select("_pos", pl.lit(j, pl.Int16).alias("_box"),
                                           pl.lit(site, pl.String).alias("metastasis_site"),
                                           pl.lit(suffix[j], pl.String).alias("_suffix"))
             for j, (code, site, t) in enumerate(known)]
            + [pl.DataFrame(schema={"_pos": pl.UInt32, "_box": pl.Int16, "metastasis_site": pl.String,
                                    "_suffix": pl.String})]
        )
        extra = ["_box", "metastasis_site", "_suffix"]
        ev = pl.concat([
            ev.filter(~(is_meta & (n_sites > 0))).with_columns(
                pl.lit(-1, pl.Int16).alias("_box"), pl.lit(None, pl.String).alias("metastasis_site"),
                pl.lit(None, pl.String).alias("_suffix")),
            ticks.join(ev, on="_pos").select(ev.columns + extra),
        ])

        # a dead patient's last news is the death: its "Dernières nouvelles" instances give no row
        dead = ev.filter(pl.col("event_kind") == "death")["record_id"].drop_nulls().unique()
        redundant = (ev["event_kind"] == "last_news") & ev["record_id"].is_in(dead.implode())
        d.flag(ev, redundant, "event", self.headers["evt_type"], "last_news_of_dead_patient",
               "« Dernières nouvelles » d'un patient décédé: le décès tient lieu de dernières nouvelles; "
               "instance non reprise.", values=rows["evt_type"].gather(ev["_pos"]))
        ev = ev.filter(~redundant.fill_null(False))

        # dead if any death, alive if any last news, null when the record has no news at all
        vital = {"dead": dead, "alive": ev.filter(pl.col("event_kind") == "last_news")["record_id"].drop_nulls()}

        ev = ev.with_columns(
            pl.when(pl.col("_suffix").is_null()).then(pl.col("_rid_event"))
            .otherwise(pl.concat_str([pl.col("_rid_event"), pl.lit(":"), pl.col("_suffix")])).alias("row_id"),
            pl.col("event_kind").replace_strict(EVENT_ORDER, default=9, return_dtype=pl.Int8).alias("_order"),
        )
        # 1..n per record in date order; ties: recurrence, metastasis, death, last news, then the
        # file's order (rows, then boxes as the columns come)
        ev = ev.sort(["record_id", "event_date", "_order", "_pos", "_box"], nulls_last=True)
        ev = ev.with_columns(_number_within("record_id").alias("event_no"))
        ev = ev.sort(["_pos", "_box"]).with_columns(
            pl.lit(file).alias("source_file"), pl.lit(None, pl.String).alias("source_sheet"),
            pl.col("_row").alias("source_row"),
        )
        return model.conform("event", ev), vital


def _number_within(key: str) -> pl.Expr:
    """1..n within runs of equal ``key`` of a frame sorted by it (a window without hashing)."""
    idx = pl.int_range(pl.len(), dtype=pl.Int32)
    first = pl.when(pl.col(key).ne_missing(pl.col(key).shift())).then(idx).forward_fill()
    return idx - first + 1


def _rid(table: str, file: str) -> pl.Expr:
    return pl.concat_str([pl.lit(f"{table}:{file}:"), pl.col("_row").cast(pl.String)]).alias(f"_rid_{table}")


def _export_suffix(code: str) -> str:
    """REDCap's checkbox column suffix for a choice code (lower case, other signs as ``_``)."""
    return re.sub(r"[^a-z0-9_]", "_", code.lower())


def _label_lookup(dictionary: dict[str, DictField], header_name: str, codes: dict[str, object]) -> dict[str, object]:
    """label key -> canonical value of this project's own labels (to read a label export)."""
    entry = dictionary.get(normalise_name(header_name))
    if entry is None or not entry.choices:
        return {}
    return {label_key(label): codes[code] for code, label in entry.choices.items() if code in codes}

# Fields of the REDCap project holding each canonical field (so queries name the centre's field).
SOURCE_COLUMNS = {
    "patient": {"diagnosis_date": "date_diag", "sex": "sexe", "age_at_diagnosis_years": "date_naissance",
                "immunosuppression": "immunodep"},
    "tumour": {"site": "localisation", "size_cm": "taille_mm", "presentation": "presentation",
               "consultation_delay_months": "delai_consult_mois", "fnclcc_grade": "grade_fnclcc",
               "differentiation_score": "differenciation", "mitoses_per_10hpf": "mitoses_10hpf",
               "mitosis_class": "mitoses_classe", "necrosis_score": "necrose", "invasion": "invasion",
               "ki67_percent": "ki67"},
    "surgery": {"surgery_date": "chir_date", "surgery_kind": "chir_type", "proposed_margin_cm": "marge_rcp_mm",
                "clinical_margin_cm": "marge_clin_mm", "histological_margin_cm": "marge_histo_mm",
                "resection_status": "statut_r"},
    "event": {"event_date": "evt_date", "event_kind": "evt_type", "death_cause": "deces_cause",
              "metastasis_site": "meta_site", "treatment": "evt_traitement"},
}
