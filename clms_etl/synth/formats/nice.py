"""Nice: one Excel workbook, three sheets, French headers, real Excel dates, blank or ``NR``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import xlsxwriter

from clms_etl.synth.formats.base import Cell, RawTable, Slot, yes_no, pick
from clms_etl.synth.truth import Truth

name = "nice"
FILE = "export_dermato_nice.xlsx"
PATIENTS, SURGERIES, EVENTS = "Patients", "Chirurgies", "Évènements"

PATIENT_COLUMNS = [
    "N° dossier", "Nom", "Prénom", "Date de naissance", "Sexe", "Immunodépression",
    "Date du diagnostic", "Localisation", "Taille (mm)", "Présentation", "Douleur",
    "Sur cicatrice", "Délai 1ère consultation (mois)", "Grade FNCLCC", "Différenciation",
    "Mitoses /10 champs", "Nécrose", "Envahissement", "Ulcération histologique", "Ki67 (%)",
]
SURGERY_COLUMNS = [
    "N° dossier", "Date", "Type", "Marge proposée RCP (mm)", "Marge clinique (mm)",
    "Marge histologique (mm)", "Statut", "Radiothérapie adjuvante",
]
EVENT_COLUMNS = ["N° dossier", "Date", "Évènement", "Site métastatique", "Cause du décès", "Traitement"]

SEX = {"male": "M", "female": "F"}
SITES = {"head_neck": "Tête et cou", "trunk": "Tronc", "upper_limb": "Membre supérieur", "lower_limb": "Membre inférieur"}
PRESENTATIONS = {"nodular": "Nodule", "ulcerated": "Ulcération", "vegetative": "Végétant", "infiltrated_patch": "Plaque infiltrée"}
NECROSIS = {0: "Absente", 1: "<50%", 2: "≥50%"}
INVASION = {"dermal": "Derme", "dermo_hypodermal": "Derme et hypoderme"}
SURGERY_KINDS = {
    "primary_excision": "Exérèse initiale", "re_excision": "Reprise",
    "relapse_surgery": "Chirurgie de la récidive", "metastasis_surgery": "Chirurgie de métastase",
}
EVENT_KINDS = {"local_recurrence": "Récidive locale", "metastasis": "Métastase", "death": "Décès", "last_news": "Dernières nouvelles"}
METASTASIS_SITES = {"bone": "os", "skin": "peau", "lung": "poumon", "liver": "foie", "lymph_node": "ganglion", "colon": "côlon", "other": "surrénale"}
DEATH_CAUSES = {"clms": "cLMS", "other": "Autre", "unknown": "Inconnue"}

_FIELDS = {
    ("patient", "sex"): (PATIENTS, "Sexe"),
    ("patient", "diagnosis_date"): (PATIENTS, "Date du diagnostic"),
    ("tumour", "fnclcc_grade"): (PATIENTS, "Grade FNCLCC"),
    ("tumour", "mitoses_per_10hpf"): (PATIENTS, "Mitoses /10 champs"),
    ("tumour", "differentiation_score"): (PATIENTS, "Différenciation"),
    ("surgery", "clinical_margin_cm"): (SURGERIES, "Marge clinique (mm)"),
    ("surgery", "histological_margin_cm"): (SURGERIES, "Marge histologique (mm)"),
    ("surgery", "proposed_margin_cm"): (SURGERIES, "Marge proposée RCP (mm)"),
    ("surgery", "surgery_date"): (SURGERIES, "Date"),
    ("event", "event_date"): (EVENTS, "Date"),
}


def locate(table: str, field: str) -> tuple[str, str | None, str] | None:
    hit = _FIELDS.get((table, field))
    return None if hit is None else (FILE, hit[0], hit[1])


def _mm(cm: float | None) -> Cell:
    if cm is None:
        return None
    mm = round(cm * 10, 1)
    return int(mm) if mm == int(mm) else mm


def render(truth: Truth, rng: np.random.Generator, first_row: int = 0) -> list[RawTable]:
    # Each missing value is written blank or "NR", as the centre's data managers do.
    def missing() -> Cell:
        return "NR" if rng.random() < 0.4 else None

    def code(mapping: dict, value) -> Cell:
        return missing() if value is None else mapping[value]

    def num(value) -> Cell:
        if value is None:
            return missing()
        return int(value) if float(value).is_integer() else value

    patients = RawTable(FILE, PATIENTS, PATIENT_COLUMNS)
    surgeries = RawTable(FILE, SURGERIES, SURGERY_COLUMNS)
    events = RawTable(FILE, EVENTS, EVENT_COLUMNS)
    tumours = {r["patient_key"]: r for r in truth.tumour.iter_rows(named=True)}
    for p in truth.patient.iter_rows(named=True):
        t = tumours[p["patient_key"]]
        patients.add(
            {
                "N° dossier": p["local_id"], "Nom": p["last_name"].upper(), "Prénom": p["first_name"],
                "Date de naissance": p["birth_date"], "Sexe": code(SEX, p["sex"]),
                "Immunodépression": yes_no(p["immunosuppression"], "Oui", "Non", missing()),
                "Date du diagnostic": p["diagnosis_date"], "Localisation": code(SITES, t["site"]),
                "Taille (mm)": _mm(t["size_cm"]) if t["size_cm"] is not None else missing(),
                "Présentation": code(PRESENTATIONS, t["presentation"]),
                "Douleur": yes_no(t["pain"], "Oui", "Non", missing()),
                "Sur cicatrice": yes_no(t["on_scar"], "Oui", "Non", missing()),
                "Délai 1ère consultation (mois)": num(t["consultation_delay_months"]),
                "Grade FNCLCC": num(t["fnclcc_grade"]), "Différenciation": num(t["differentiation_score"]),
                "Mitoses /10 champs": num(t["mitoses_per_10hpf"]), "Nécrose": code(NECROSIS, t["necrosis_score"]),
                "Envahissement": code(INVASION, t["invasion"]),
                "Ulcération histologique": yes_no(t["histological_ulceration"], "Oui", "Non", missing()),
                "Ki67 (%)": num(t["ki67_percent"]),
            },
            f"patient:{p['patient_key']}", f"tumour:{p['patient_key']}",
        )
    ids = dict(zip(truth.patient["patient_key"], truth.patient["local_id"]))
    for s in truth.surgery.iter_rows(named=True):
        surgeries.add(
            {
                "N° dossier": ids[s["patient_key"]], "Date": s["surgery_date"],
                "Type": SURGERY_KINDS[s["surgery_kind"]],
                "Marge proposée RCP (mm)": _mm(s["proposed_margin_cm"]),
                "Marge clinique (mm)": _mm(s["clinical_margin_cm"]),
                "Marge histologique (mm)": _mm(s["histological_margin_cm"]),
                "Statut": code(SURGERY_STATUS, s["resection_status"]),
                "Radiothérapie adjuvante": yes_no(s["adjuvant_radiotherapy"], "Oui", "Non"),
            },
            f"surgery:{s['patient_key']}:{s['surgery_no']}",
        )
    for e in truth.event.iter_rows(named=True):
        events.add(
            {
                "N° dossier": ids[e["patient_key"]], "Date": e["event_date"],
                "Évènement": EVENT_KINDS[e["event_kind"]],
                "Site métastatique": None if e["metastasis_site"] is None else METASTASIS_SITES[e["metastasis_site"]],
                "Cause du décès": None if e["death_cause"] is None else DEATH_CAUSES[e["death_cause"]],
                "Traitement": e["treatment"],
            },
            f"event:{e['patient_key']}:{e['event_no']}",
        )
    return [patients, surgeries, events]


SURGERY_STATUS = {"R0": "R0", "R1": "R1", "R2": "R2"}


class Writer:
    """Streams the three sheets into one workbook (xlsxwriter's constant-memory mode)."""

    def __init__(self, delivery_dir: Path, delivery_date: dt.date):
        delivery_dir.mkdir(parents=True, exist_ok=True)
        self.path = delivery_dir / FILE
        self.book = xlsxwriter.Workbook(
            str(self.path), {"constant_memory": True, "strings_to_numbers": False}
        )
        # A fixed creation date keeps the same seed byte-identical.
        created = dt.datetime.combine(delivery_date, dt.time(1, 0))
        self.book.set_properties({"title": "Export dermatologie Nice - cLMS", "author": "DIM CHU Nice", "created": created})
        self.date_format = self.book.add_format({"num_format": "dd/mm/yyyy"})
        self.header_format = self.book.add_format({"bold": True})
        self.sheets: dict[str, tuple] = {}
        for sheet, columns in ((PATIENTS, PATIENT_COLUMNS), (SURGERIES, SURGERY_COLUMNS), (EVENTS, EVENT_COLUMNS)):
            ws = self.book.add_worksheet(sheet)
            ws.write_row(0, 0, columns, self.header_format)
            self.sheets[sheet] = [ws, 1]

    def append(self, tables: list[RawTable]) -> None:
        for table in tables:
            entry = self.sheets[table.sheet]
            ws, row = entry
            for cells in table.rows:
                for c, value in enumerate(cells):
                    if value is None:
                        continue
                    if isinstance(value, dt.date):
                        ws.write_datetime(row, c, dt.datetime.combine(value, dt.time()), self.date_format)
                    elif isinstance(value, (int, float)):
                        ws.write_number(row, c, value)
                    else:
                        ws.write_string(row, c, str(value))
                row += 1
            entry[1] = row

    def close(self) -> list[Path]:
        self.book.close()
        return [self.path]


def writer(delivery_dir: Path, delivery_date: dt.date) -> Writer:
    return Writer(delivery_dir, delivery_date)


_bad_date = pick(["31/02/2014", "2014-13-45", "inconnue", "??/??/2011", "15/15/2015"])


def _messy(value: Cell, rng) -> Cell:
    text = str(value)
    return f"  {text.upper() if rng.random() < 0.5 else text.lower()} "


def slots() -> dict[str, list[Slot]]:
    return {
        "unparseable_date": [
            Slot(FILE, PATIENTS, "Date du diagnostic", _bad_date),
            Slot(FILE, SURGERIES, "Date", _bad_date),
            Slot(FILE, EVENTS, "Date", _bad_date),
        ],
        "unknown_code": [
            Slot(FILE, PATIENTS, "Sexe", pick(["X", "I", "?"])),
            Slot(FILE, PATIENTS, "Localisation", pick(["Viscéral", "Muqueuse"])),
            Slot(FILE, PATIENTS, "Nécrose", pick(["Massive", "Oui?"])),
            Slot(FILE, SURGERIES, "Statut", pick(["R3", "Rx"])),
        ],
        "stray_spaces_case": [
            Slot(FILE, PATIENTS, "Sexe", _messy),
            Slot(FILE, PATIENTS, "Localisation", _messy),
            Slot(FILE, PATIENTS, "Présentation", _messy),
            Slot(FILE, SURGERIES, "Statut", _messy),
        ],
    }
