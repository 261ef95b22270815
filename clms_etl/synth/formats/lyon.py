"""Lyon: a REDCap project - the raw (coded) records export plus the project's data dictionary.

Non-longitudinal project, form ``patient`` once per record, repeating instruments ``chirurgie``
and ``evenement``. The raw export holds codes only, so every choice list below is the single
source of both the dictionary's ``Choices`` text and the codes written in the records; a few
lists are deliberately not numbered in vocabulary order (presentation, metastasis sites,
death cause), because a reader has to decode through the dictionary, never by position.

Cells are the exact text of the file (ISO dates, ``12.5``, codes as strings); missing is empty.
"""

from __future__ import annotations

import csv
import datetime as dt
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from clms_etl.synth.formats.base import Cell, RawTable, Slot, pick
from clms_etl.synth.truth import Truth

name = "lyon"
# The format file the reader reads (clms_etl/data/formats/lyon.toml): file names, the canonical field
# of each REDCap field, and the labels; the first label of each canonical value is the one written here.
_DECLARED = tomllib.loads(resources.files("clms_etl").joinpath("data/formats/lyon.toml").read_text("utf-8"))
DICTIONARY_FILE = _DECLARED["file"]["dictionary"].format(date="")
# The contract's own spelling; the writer puts the delivery date in place of <date>.
DATA_FILE = _DECLARED["file"]["name"].format(date="<date>")

DICTIONARY_COLUMNS = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note",
    "Text Validation Type OR Show Slider Number", "Text Validation Min", "Text Validation Max",
    "Identifier?", "Branching Logic (Show field only if...)", "Required Field?",
    "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name", "Matrix Ranking?",
    "Field Annotation",
]


def _choices(labels: str, *codes: tuple[str, object]) -> list[tuple[str, str, object]]:
    """(code, label, canonical value): this synthetic project's codes, the declaration's label."""
    first = {canonical.lower(): spellings[0] for canonical, spellings in _DECLARED["labels"][labels].items()}
    return [(code, first[str(value).lower()], value) for code, value in codes]


SEX = _choices("sex", ("1", "male"), ("2", "female"))
SITES = _choices("site", ("1", "head_neck"), ("2", "trunk"), ("3", "upper_limb"), ("4", "lower_limb"))
PRESENTATIONS = _choices("presentation", ("1", "nodular"), ("2", "infiltrated_patch"), ("3", "ulcerated"),
                         ("4", "vegetative"))
GRADES = _choices("grade", ("1", 1), ("2", 2), ("3", 3))
DIFFERENTIATION = _choices("differentiation", ("1", 1), ("2", 2), ("3", 3))
MITOSIS_CLASSES = _choices("mitosis_class", ("1", "0-9"), ("2", "10-19"), ("3", ">=20"))
NECROSIS = _choices("necrosis", ("0", 0), ("1", 1), ("2", 2))
INVASION = _choices("invasion", ("1", "dermal"), ("2", "dermo_hypodermal"))
SURGERY_KINDS = _choices("surgery_kind", ("1", "primary_excision"), ("2", "re_excision"), ("3", "relapse_surgery"),
                         ("4", "metastasis_surgery"))
RESECTION = _choices("resection", ("0", "R0"), ("1", "R1"), ("2", "R2"))
EVENT_KINDS = _choices("event_kind", ("1", "local_recurrence"), ("2", "metastasis"), ("3", "death"),
                       ("4", "last_news"))
# côlon was added by the centre after "autre", hence code 7.
METASTASIS_SITES = _choices("metastasis_site", ("1", "bone"), ("2", "skin"), ("3", "lung"), ("4", "liver"),
                            ("5", "lymph_node"), ("6", "other"), ("7", "colon"))
# REDCap habit: 9 for "unknown".
DEATH_CAUSES = _choices("death_cause", ("1", "clms"), ("2", "other"), ("9", "unknown"))


@dataclass(frozen=True)
class Field:
    name: str
    form: str
    type: str
    label: str
    choices: list | None = None
    validation: str = ""
    low: str = ""
    high: str = ""
    identifier: bool = False
    section: str = ""
    note: str = ""
    branching: str = ""
    required: bool = False


def _text_date(name: str, form: str, label: str, **kw) -> Field:
    return Field(name, form, "text", label, validation="date_ymd", **kw)


FIELDS = [
    Field("record_id", "patient", "text", "Identifiant de l'enregistrement"),
    Field("ipp", "patient", "text", "IPP (numéro patient HCL)", identifier=True,
          section="Identification"),
    Field("nom", "patient", "text", "Nom", identifier=True),
    Field("prenom", "patient", "text", "Prénom", identifier=True),
    _text_date("date_naissance", "patient", "Date de naissance", identifier=True),
    Field("sexe", "patient", "dropdown", "Sexe", SEX, required=True),
    Field("immunodep", "patient", "yesno", "Immunodépression"),
    _text_date("date_diag", "patient", "Date du diagnostic anatomopathologique", required=True,
               section="Présentation clinique"),
    Field("localisation", "patient", "dropdown", "Localisation de la lésion", SITES),
    Field("taille_mm", "patient", "text", "Taille de la lésion", validation="number",
          low="0", high="300", note="en mm"),
    Field("presentation", "patient", "dropdown", "Présentation clinique", PRESENTATIONS),
    Field("douleur", "patient", "yesno", "Douleur"),
    Field("cicatrice", "patient", "yesno", "Lésion sur cicatrice"),
    Field("delai_consult_mois", "patient", "text", "Délai avant la première consultation",
          validation="number", low="0", high="600", note="en mois"),
    Field("grade_fnclcc", "patient", "dropdown", "Grade FNCLCC", GRADES, section="Anatomopathologie"),
    Field("differenciation", "patient", "dropdown", "Différenciation tumorale", DIFFERENTIATION),
    Field("mitoses_10hpf", "patient", "text", "Nombre de mitoses pour 10 champs (HPF)",
          validation="integer", low="0", high="200"),
    Field("mitoses_classe", "patient", "dropdown", "Index mitotique (classe)", MITOSIS_CLASSES,
          note="si le décompte exact n'est pas disponible"),
    Field("necrose", "patient", "dropdown", "Nécrose tumorale", NECROSIS),
    Field("invasion", "patient", "radio", "Envahissement en profondeur", INVASION),
    Field("ulceration_histo", "patient", "yesno", "Ulcération histologique"),
    Field("ki67", "patient", "text", "Ki67", validation="number", low="0", high="100", note="en %"),
    _text_date("chir_date", "chirurgie", "Date de l'intervention", required=True),
    Field("chir_type", "chirurgie", "dropdown", "Type d'intervention", SURGERY_KINDS),
    Field("marge_rcp_mm", "chirurgie", "text", "Marge proposée en RCP", validation="number",
          low="0", high="100", note="en mm"),
    Field("marge_clin_mm", "chirurgie", "text", "Marge clinique", validation="number",
          low="0", high="100", note="en mm"),
    Field("marge_histo_mm", "chirurgie", "text", "Marge histologique", validation="number",
          low="0", high="100", note="en mm"),
    Field("statut_r", "chirurgie", "dropdown", "Qualité de l'exérèse", RESECTION),
    Field("rt_adj", "chirurgie", "yesno", "Radiothérapie adjuvante"),
    _text_date("evt_date", "evenement", "Date de l'évènement", required=True),
    Field("evt_type", "evenement", "dropdown", "Type d'évènement", EVENT_KINDS, required=True),
    Field("meta_site", "evenement", "checkbox", "Site(s) métastatique(s)", METASTASIS_SITES,
          branching="[evt_type] = '2'"),
    Field("deces_cause", "evenement", "dropdown", "Cause du décès", DEATH_CAUSES,
          branching="[evt_type] = '3'"),
    Field("evt_traitement", "evenement", "notes", "Traitement"),
]
FORMS = ("patient", "chirurgie", "evenement")


def _export_columns() -> list[str]:
    """REDCap's raw export order: fields by form, checkboxes expanded, ``<form>_complete`` after each."""
    columns = ["record_id", "redcap_repeat_instrument", "redcap_repeat_instance"]
    for form in FORMS:
        for f in FIELDS:
            if f.form != form or f.name == "record_id":
                continue
            if f.type == "checkbox":
                columns += [f"{f.name}___{code}" for code, _, _ in f.choices]
            else:
                columns.append(f.name)
        columns.append(f"{form}_complete")
    return columns


COLUMNS = _export_columns()


def _codes(choices: list) -> dict:
    return {canonical: code for code, _, canonical in choices}


def dictionary() -> RawTable:
    """The data dictionary: one row per field in export order (``*_complete`` are not fields)."""
    table = RawTable(DICTIONARY_FILE, None, DICTIONARY_COLUMNS)
    for f in FIELDS:
        table.add({
            "Variable / Field Name": f.name, "Form Name": f.form, "Section Header": f.section,
            "Field Type": f.type, "Field Label": f.label,
            "Choices, Calculations, OR Slider Labels":
                " | ".join(f"{code}, {label}" for code, label, _ in f.choices) if f.choices else "",
            "Field Note": f.note, "Text Validation Type OR Show Slider Number": f.validation,
            "Text Validation Min": f.low, "Text Validation Max": f.high,
            "Identifier?": "y" if f.identifier else "",
            "Branching Logic (Show field only if...)": f.branching,
            "Required Field?": "y" if f.required else "",
        })
    for row in table.rows:  # REDCap writes every absent attribute as an empty cell
        row[:] = ["" if c is None else c for c in row]
    return table


# (table, canonical column) -> the REDCap field holding it, as the declaration says
_FIELDS = {tuple(c["field"].split(".")): c["name"] for c in _DECLARED["columns"] if "field" in c}


def locate(table: str, field: str) -> tuple[str, str | None, str] | None:
    column = _FIELDS.get((table, field))
    return None if column is None else (DATA_FILE, None, column)


def data_file_name(delivery_date: dt.date) -> str:
    return DATA_FILE.replace("<date>", delivery_date.isoformat())


def _decimal(value: float | int) -> str:
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(round(value, 4))


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dt.date):
        return cell.isoformat()
    if isinstance(cell, bool):
        return "1" if cell else "0"
    return _decimal(cell)


def _mitosis_class(count: int) -> str:
    return "1" if count < 10 else "2" if count < 20 else "3"


def _by_patient(frame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row["patient_key"], []).append(row)
    return out


def _event_instances(course: list[dict]) -> list[list[dict]]:
    """One ``evenement`` instance per event, except that a metastasis found in several organs
    on one day is a single instance with several boxes ticked."""
    instances: list[list[dict]] = []
    metastasis_on: dict[dt.date, list[dict]] = {}
    for e in sorted(course, key=lambda e: e["event_no"]):
        if e["event_kind"] == "metastasis":
            if e["event_date"] in metastasis_on:
                metastasis_on[e["event_date"]].append(e)
                continue
            metastasis_on[e["event_date"]] = [e]
            instances.append(metastasis_on[e["event_date"]])
        else:
            instances.append([e])
    return instances


SEX_CODES, SITE_CODES, PRESENTATION_CODES = _codes(SEX), _codes(SITES), _codes(PRESENTATIONS)
GRADE_CODES, DIFFERENTIATION_CODES = _codes(GRADES), _codes(DIFFERENTIATION)
NECROSIS_CODES, INVASION_CODES = _codes(NECROSIS), _codes(INVASION)
SURGERY_CODES, RESECTION_CODES = _codes(SURGERY_KINDS), _codes(RESECTION)
EVENT_CODES, SITE_BOXES, DEATH_CODES = _codes(EVENT_KINDS), _codes(METASTASIS_SITES), _codes(DEATH_CAUSES)


def render(truth: Truth, rng: np.random.Generator, first_row: int = 0) -> list[RawTable]:
    """``first_row`` = patients already written by earlier chunks: record_id continues from it.

    All draws happen patient by patient, so chunks sharing one generator match one run.
    """

    def code(codes: dict, value) -> Cell:
        return None if value is None else codes[value]

    def flag(value: bool | None) -> Cell:
        return None if value is None else ("1" if value else "0")

    def number(value) -> Cell:
        return None if value is None else _decimal(value)

    def mm(cm: float | None) -> Cell:
        return None if cm is None else _decimal(round(cm * 10, 1))

    def day(value: dt.date | None) -> Cell:
        return None if value is None else value.isoformat()

    table = RawTable(DATA_FILE, None, COLUMNS)
    tumours = {r["patient_key"]: r for r in truth.tumour.iter_rows(named=True)}
    surgeries = _by_patient(truth.surgery)
    events = _by_patient(truth.event)
    for record, p in enumerate(truth.patient.iter_rows(named=True), start=first_row + 1):
        key = p["patient_key"]
        t = tumours[key]
        count = t["mitoses_per_10hpf"]
        # The class is filled for about half the counted tumours (it came later to the form).
        mitosis_class = _mitosis_class(count) if count is not None and rng.random() < 0.5 else None
        complete = "2" if p["record_complete"] else str(int(rng.integers(0, 2)))
        table.add(
            {
                "record_id": str(record), "ipp": p["local_id"], "nom": p["last_name"],
                "prenom": p["first_name"], "date_naissance": day(p["birth_date"]),
                "sexe": code(SEX_CODES, p["sex"]), "immunodep": flag(p["immunosuppression"]),
                "date_diag": day(p["diagnosis_date"]), "localisation": code(SITE_CODES, t["site"]),
                "taille_mm": mm(t["size_cm"]), "presentation": code(PRESENTATION_CODES, t["presentation"]),
                "douleur": flag(t["pain"]), "cicatrice": flag(t["on_scar"]),
                "delai_consult_mois": number(t["consultation_delay_months"]),
                "grade_fnclcc": code(GRADE_CODES, t["fnclcc_grade"]),
                "differenciation": code(DIFFERENTIATION_CODES, t["differentiation_score"]),
                "mitoses_10hpf": number(count), "mitoses_classe": mitosis_class,
                "necrose": code(NECROSIS_CODES, t["necrosis_score"]),
                "invasion": code(INVASION_CODES, t["invasion"]),
                "ulceration_histo": flag(t["histological_ulceration"]), "ki67": number(t["ki67_percent"]),
                "patient_complete": complete,
            },
            f"patient:{key}", f"tumour:{key}",
        )
        ops = sorted(surgeries.get(key, []), key=lambda s: s["surgery_no"])
        for instance, s in enumerate(ops, start=1):
            table.add(
                {
                    "record_id": str(record), "redcap_repeat_instrument": "chirurgie",
                    "redcap_repeat_instance": str(instance), "chir_date": day(s["surgery_date"]),
                    "chir_type": code(SURGERY_CODES, s["surgery_kind"]),
                    "marge_rcp_mm": mm(s["proposed_margin_cm"]),
                    "marge_clin_mm": mm(s["clinical_margin_cm"]),
                    "marge_histo_mm": mm(s["histological_margin_cm"]),
                    "statut_r": code(RESECTION_CODES, s["resection_status"]),
                    "rt_adj": flag(s["adjuvant_radiotherapy"]), "chirurgie_complete": "2",
                },
                f"surgery:{key}:{s['surgery_no']}",
            )
        for instance, group in enumerate(_event_instances(events.get(key, [])), start=1):
            e = group[0]
            row = {
                "record_id": str(record), "redcap_repeat_instrument": "evenement",
                "redcap_repeat_instance": str(instance), "evt_date": day(e["event_date"]),
                "evt_type": code(EVENT_CODES, e["event_kind"]),
                "deces_cause": code(DEATH_CODES, e["death_cause"]),
                "evt_traitement": next((g["treatment"] for g in group if g["treatment"]), None),
                "evenement_complete": "2",
            }
            # Raw checkbox export: every box of the field is written, 1 ticked / 0 not.
            ticked = {SITE_BOXES[g["metastasis_site"]] for g in group if g["metastasis_site"] is not None}
            for box, _, _ in METASTASIS_SITES:
                row[f"meta_site___{box}"] = "1" if box in ticked else "0"
            table.add(row, *(f"event:{key}:{g['event_no']}" for g in group))
    return [table]


class Writer:
    """Writes the dictionary once, then streams the records of successive chunks."""

    def __init__(self, delivery_dir: Path, delivery_date: dt.date):
        delivery_dir.mkdir(parents=True, exist_ok=True)
        self.dictionary_path = delivery_dir / DICTIONARY_FILE
        with open(self.dictionary_path, "w", encoding="utf-8", newline="") as handle:
            out = csv.writer(handle, lineterminator="\n")
            table = dictionary()
            out.writerow(table.columns)
            out.writerows(table.rows)
        self.path = delivery_dir / data_file_name(delivery_date)
        self.handle = open(self.path, "w", encoding="utf-8", newline="")
        self.csv = csv.writer(self.handle, lineterminator="\n")
        self.csv.writerow(COLUMNS)

    def append(self, tables: list[RawTable]) -> None:
        for table in tables:
            assert table.file == DATA_FILE and table.columns == COLUMNS, table.label
            self.csv.writerows([_text(c) for c in row] for row in table.rows)

    def close(self) -> list[Path]:
        self.handle.close()
        return [self.dictionary_path, self.path]


def writer(delivery_dir: Path, delivery_date: dt.date) -> Writer:
    return Writer(delivery_dir, delivery_date)


_bad_date = pick(["2014-02-31", "2014-13-45", "inconnue", "31/02/2014", "2011-??-??"])


def _spaced(value: Cell, rng) -> Cell:
    # Raw REDCap codes are numbers: there is no case to change, only spaces, e.g. " 2 ".
    text = "" if value is None else str(value).strip()
    return str(rng.choice([f" {text} ", f" {text}", f"{text}  "]))


def slots() -> dict[str, list[Slot]]:
    return {
        "unparseable_date": [
            Slot(DATA_FILE, None, "date_diag", _bad_date),
            Slot(DATA_FILE, None, "chir_date", _bad_date),
            Slot(DATA_FILE, None, "evt_date", _bad_date),
        ],
        "unknown_code": [
            Slot(DATA_FILE, None, "sexe", pick(["9", "3"])),
            Slot(DATA_FILE, None, "localisation", pick(["7", "0"])),
            Slot(DATA_FILE, None, "presentation", pick(["5", "8"])),
            Slot(DATA_FILE, None, "statut_r", pick(["3", "9"])),
        ],
        "stray_spaces_case": [
            Slot(DATA_FILE, None, "sexe", _spaced),
            Slot(DATA_FILE, None, "localisation", _spaced),
            Slot(DATA_FILE, None, "presentation", _spaced),
            Slot(DATA_FILE, None, "statut_r", _spaced),
        ],
    }
