"""Montpellier: one wide cp1252 CSV, ``;``, decimal comma, CRLF, one row per patient.

Cells are rendered as the exact text the file holds (dates ``dd/mm/yyyy``, ``1,5``), so a
planted defect is a plain string substitution. Every absent value is written empty, ``NA`` or
``ND`` at random, as the centre's data managers do - except ``STATUT_VITAL``, which the
export leaves empty when the status is unknown.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import unicodedata
from pathlib import Path

import numpy as np

from clms_etl.synth.formats.base import Cell, RawTable, Slot, pick
from clms_etl.synth.truth import Truth

name = "montpellier"
FILE = "clms_montpellier.csv"
ENCODING = "cp1252"

COLUMNS = [
    "IPP", "NOM", "PRENOM", "DDN", "SEXE", "IMMUNODEP", "DATE_DIAG", "SITE", "TAILLE_CM",
    "PRESENTATION", "DOULEUR", "CICATRICE", "DELAI_MOIS", "GRADE", "DIFF", "MITOSES", "NECROSE",
    "INVASION", "ULCERATION", "KI67", "DATE_CHIR", "MARGE_RCP_CM", "MARGE_CLIN_CM",
    "MARGE_HISTO_CM", "STATUT_R", "RT_ADJ", "DATE_RECIDIVE", "DATE_META", "SITES_META",
    "TTT_RECHUTE", "STATUT_VITAL", "DATE_DC", "CAUSE_DC", "DATE_DERNIERES_NOUVELLES",
]

SEX = {"male": "H", "female": "F"}
SITES = {"head_neck": "TC", "trunk": "TR", "upper_limb": "MS", "lower_limb": "MI"}
PRESENTATIONS = {"nodular": "NOD", "ulcerated": "ULC", "vegetative": "VEG", "infiltrated_patch": "PLQ"}
GRADES = {1: "I", 2: "II", 3: "III"}
NECROSIS = {0: "0", 1: "1", 2: "2"}
INVASION = {"dermal": "D", "dermo_hypodermal": "DH"}
RESECTION = {"R0": "R0", "R1": "R1", "R2": "R2"}
METASTASIS_SITES = {
    "bone": "os", "skin": "peau", "lung": "poumon", "liver": "foie", "lymph_node": "ganglion",
    "colon": "côlon", "other": "autre",
}
VITAL_STATUS = {"alive": "VIVANT", "dead": "DCD", "lost_to_follow_up": "PDV"}
DEATH_CAUSES = {"clms": "CLMS", "other": "AUTRE", "unknown": "INCONNUE"}
MISSING_TOKENS = ("NA", "ND")
# Where each kind of event's date lands (a death also fills DATE_DERNIERES_NOUVELLES when the
# patient has no separate last-news event).
EVENT_DATE_COLUMNS = {
    "local_recurrence": "DATE_RECIDIVE", "metastasis": "DATE_META", "death": "DATE_DC",
    "last_news": "DATE_DERNIERES_NOUVELLES",
}

_FIELDS = {
    ("patient", "local_id"): "IPP",
    ("patient", "birth_date"): "DDN",
    ("patient", "sex"): "SEXE",
    ("patient", "immunosuppression"): "IMMUNODEP",
    ("patient", "diagnosis_date"): "DATE_DIAG",
    ("patient", "vital_status"): "STATUT_VITAL",
    ("tumour", "site"): "SITE",
    ("tumour", "size_cm"): "TAILLE_CM",
    ("tumour", "presentation"): "PRESENTATION",
    ("tumour", "pain"): "DOULEUR",
    ("tumour", "on_scar"): "CICATRICE",
    ("tumour", "consultation_delay_months"): "DELAI_MOIS",
    ("tumour", "fnclcc_grade"): "GRADE",
    ("tumour", "differentiation_score"): "DIFF",
    ("tumour", "mitoses_per_10hpf"): "MITOSES",
    ("tumour", "necrosis_score"): "NECROSE",
    ("tumour", "invasion"): "INVASION",
    ("tumour", "histological_ulceration"): "ULCERATION",
    ("tumour", "ki67_percent"): "KI67",
    ("surgery", "surgery_date"): "DATE_CHIR",
    ("surgery", "proposed_margin_cm"): "MARGE_RCP_CM",
    ("surgery", "clinical_margin_cm"): "MARGE_CLIN_CM",
    ("surgery", "histological_margin_cm"): "MARGE_HISTO_CM",
    ("surgery", "resection_status"): "STATUT_R",
    ("surgery", "adjuvant_radiotherapy"): "RT_ADJ",
    # Events are columns here, one date column per kind (EVENT_DATE_COLUMNS); the field-level
    # answer is the last-news date, the one nearly every patient has.
    ("event", "event_date"): "DATE_DERNIERES_NOUVELLES",
    ("event", "metastasis_site"): "SITES_META",
    ("event", "death_cause"): "CAUSE_DC",
    ("event", "treatment"): "TTT_RECHUTE",
}


def locate(table: str, field: str) -> tuple[str, str | None, str] | None:
    column = _FIELDS.get((table, field))
    return None if column is None else (FILE, None, column)


def _date(value: dt.date) -> str:
    return value.strftime("%d/%m/%Y")


def _decimal(value: float | int) -> str:
    """``1,5``; a whole number is written without decimals, as the centre's software does."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(round(value, 4)).replace(".", ",")


def _text(cell: Cell) -> str:
    """A cell as file text: strings verbatim (planted defects included), others formatted."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    if isinstance(cell, dt.date):
        return _date(cell)
    if isinstance(cell, bool):
        return "1" if cell else "0"
    return _decimal(cell)


def _by_patient(frame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in frame.iter_rows(named=True):
        out.setdefault(row["patient_key"], []).append(row)
    return out


def render(truth: Truth, rng: np.random.Generator, first_row: int = 0) -> list[RawTable]:
    # Every draw happens patient by patient, so a run cut into chunks sharing one generator
    # gives the same cells as one run (first_row is not needed: IPP is the hospital number).
    def missing() -> Cell:
        u = rng.random()
        return None if u < 0.5 else MISSING_TOKENS[int(u >= 0.75)]

    def code(mapping: dict, value) -> Cell:
        return missing() if value is None else mapping[value]

    def flag(value: bool | None) -> Cell:
        return missing() if value is None else ("1" if value else "0")

    def number(value) -> Cell:
        return missing() if value is None else _decimal(value)

    def day(value: dt.date | None) -> Cell:
        return missing() if value is None else _date(value)

    table = RawTable(FILE, None, COLUMNS)
    tumours = {r["patient_key"]: r for r in truth.tumour.iter_rows(named=True)}
    surgeries = _by_patient(truth.surgery)
    events = _by_patient(truth.event)
    for p in truth.patient.iter_rows(named=True):
        key = p["patient_key"]
        t = tumours[key]
        ops = surgeries.get(key, [])
        # The file has one operation; the Montpellier truth must not hold more than it can say.
        assert len(ops) <= 1 and all(s["surgery_no"] == 1 for s in ops), f"{key}: {len(ops)} surgeries"
        s = ops[0] if ops else dict.fromkeys(
            ("surgery_date", "proposed_margin_cm", "clinical_margin_cm", "histological_margin_cm",
             "resection_status", "adjuvant_radiotherapy")
        )
        course = sorted(events.get(key, []), key=lambda e: e["event_no"])
        recurrences = [e for e in course if e["event_kind"] == "local_recurrence"]
        deaths = [e for e in course if e["event_kind"] == "death"]
        news = [e for e in course if e["event_kind"] == "last_news"]
        assert len(recurrences) <= 1, f"{key}: {len(recurrences)} local recurrences"
        assert len(deaths) <= 1 and len(news) <= 1, f"{key}: several deaths or last news"
        metastases = [e for e in course if e["event_kind"] == "metastasis"]
        # DATE_META is the first metastasis; SITES_META lists the organs found that day.
        first_day = min((e["event_date"] for e in metastases), default=None)
        first_meta = [e for e in metastases if e["event_date"] == first_day]
        relapses = [e for e in course if e["event_kind"] in ("local_recurrence", "metastasis")]
        recurrence = recurrences[0] if recurrences else None
        death = deaths[0] if deaths else None
        last = news[0] if news else death
        carried = recurrences + first_meta + deaths + news
        table.add(
            {
                "IPP": p["local_id"], "NOM": p["last_name"].upper(), "PRENOM": p["first_name"],
                "DDN": day(p["birth_date"]), "SEXE": code(SEX, p["sex"]),
                "IMMUNODEP": flag(p["immunosuppression"]), "DATE_DIAG": day(p["diagnosis_date"]),
                "SITE": code(SITES, t["site"]), "TAILLE_CM": number(t["size_cm"]),
                "PRESENTATION": code(PRESENTATIONS, t["presentation"]),
                "DOULEUR": flag(t["pain"]), "CICATRICE": flag(t["on_scar"]),
                "DELAI_MOIS": number(t["consultation_delay_months"]),
                "GRADE": code(GRADES, t["fnclcc_grade"]), "DIFF": number(t["differentiation_score"]),
                "MITOSES": number(t["mitoses_per_10hpf"]), "NECROSE": code(NECROSIS, t["necrosis_score"]),
                "INVASION": code(INVASION, t["invasion"]),
                "ULCERATION": flag(t["histological_ulceration"]), "KI67": number(t["ki67_percent"]),
                "DATE_CHIR": day(s["surgery_date"]),
                "MARGE_RCP_CM": number(s["proposed_margin_cm"]),
                "MARGE_CLIN_CM": number(s["clinical_margin_cm"]),
                "MARGE_HISTO_CM": number(s["histological_margin_cm"]),
                "STATUT_R": code(RESECTION, s["resection_status"]),
                "RT_ADJ": flag(s["adjuvant_radiotherapy"]),
                "DATE_RECIDIVE": day(recurrence and recurrence["event_date"]),
                "DATE_META": day(first_meta[0]["event_date"] if first_meta else None),
                "SITES_META": ",".join(METASTASIS_SITES[e["metastasis_site"]] for e in first_meta
                                       if e["metastasis_site"] is not None) or missing(),
                "TTT_RECHUTE": (relapses[0]["treatment"] if relapses else None) or missing(),
                "STATUT_VITAL": None if p["vital_status"] is None else VITAL_STATUS[p["vital_status"]],
                "DATE_DC": day(death and death["event_date"]),
                "CAUSE_DC": code(DEATH_CAUSES, death and death["death_cause"]),
                "DATE_DERNIERES_NOUVELLES": day(last and last["event_date"]),
            },
            f"patient:{key}", f"tumour:{key}",
            *(f"surgery:{key}:1" for _ in ops),
            *(f"event:{key}:{e['event_no']}" for e in sorted(carried, key=lambda e: e["event_no"])),
        )
    return [table]


# Letters with a stroke have no decomposition to strip.
_STROKED = str.maketrans({"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i"})


def _fold_unencodable(error: UnicodeEncodeError) -> tuple[str, int]:
    """cp1252 has no such character: drop its accents (``ř`` -> ``r``), and only then use ``?``."""
    out = []
    for ch in error.object[error.start:error.end]:
        decomposed = unicodedata.normalize("NFKD", ch.translate(_STROKED))
        base = "".join(c for c in decomposed if not unicodedata.combining(c))
        try:
            base.encode(ENCODING)
            out.append(base or "?")
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out), error.end


_ERRORS = "clms_cp1252_fold"
codecs.register_error(_ERRORS, _fold_unencodable)


class Writer:
    """Streams the rows of successive chunks into the one CSV."""

    def __init__(self, delivery_dir: Path, delivery_date: dt.date):
        delivery_dir.mkdir(parents=True, exist_ok=True)
        self.path = delivery_dir / FILE
        self.handle = open(self.path, "w", encoding=ENCODING, errors=_ERRORS, newline="")
        self.csv = csv.writer(self.handle, delimiter=";", lineterminator="\r\n")
        self.csv.writerow(COLUMNS)

    def append(self, tables: list[RawTable]) -> None:
        for table in tables:
            assert table.file == FILE and table.columns == COLUMNS, table.label
            self.csv.writerows([_text(c) for c in row] for row in table.rows)

    def close(self) -> list[Path]:
        self.handle.close()
        return [self.path]


def writer(delivery_dir: Path, delivery_date: dt.date) -> Writer:
    return Writer(delivery_dir, delivery_date)


_bad_date = pick(["31/02/2014", "2014-13-45", "inconnue", "??/??/2011", "15/15/2015"])


def _messy(value: Cell, rng) -> Cell:
    # The codes are upper case: a lower-case copy padded with spaces, e.g. " tc ", " r1".
    text = "" if value is None else str(value).lower()
    return str(rng.choice([f" {text} ", f" {text}", f"{text}  "]))


def slots() -> dict[str, list[Slot]]:
    return {
        "unparseable_date": [
            Slot(FILE, None, "DATE_DIAG", _bad_date),
            Slot(FILE, None, "DATE_CHIR", _bad_date),
            Slot(FILE, None, "DATE_DERNIERES_NOUVELLES", _bad_date),
        ],
        "unknown_code": [
            Slot(FILE, None, "SEXE", pick(["X", "I", "?"])),
            Slot(FILE, None, "SITE", pick(["ZZ", "VI", "MUQ"])),
            Slot(FILE, None, "GRADE", pick(["IV", "0"])),
            Slot(FILE, None, "STATUT_R", pick(["R3", "RX"])),
        ],
        "stray_spaces_case": [
            Slot(FILE, None, "SEXE", _messy),
            Slot(FILE, None, "SITE", _messy),
            Slot(FILE, None, "PRESENTATION", _messy),
            Slot(FILE, None, "STATUT_R", _messy),
        ],
    }
