"""Public survival datasets written as real centre deliveries, for end-to-end tests.

The product must survive data it did not write: this package takes lifelines' copies of R's
``lung`` (228 patients, 165 deaths: age, sex, survival time and status, nothing else), ``GBSG2`` (686
women with breast cancer: age, tumour size in mm, grade, recurrence-free time), Rossi's
recidivism data (432 men, weeks to arrest) and ``larynx`` (90 patients, years to death)
and writes them as a centre's nightly export, in that centre's contract
(``docs/centre_formats.md``), with every clinical field the dataset does not have
left empty (``NA``, ``ND`` or blank, as the centres write it):

* :func:`write_montpellier` — ``clms_montpellier.csv``, cp1252, ``;``, CRLF, ``dd/mm/yyyy``;
* :func:`write_lyon` — a REDCap raw records export plus the project's data dictionary
  (the dictionary is the project's, so it is the one the synthetic deliveries carry);
* :func:`write_nice` — ``export_dermato_nice.xlsx``, three sheets, real Excel dates;
* :func:`write_nimes` — ``nimes_dossiers.txt``, tab-separated Mac Roman text, CR line ends.

Time and status become dates: the diagnosis on a day of its own per patient, then a death
(status 1) or a last news (status 0) ``time`` days later. The number of rows of each table is
counted here from the files written (:func:`count_rows`), with no help from the product's
readers, so that a test can hold the product's accounting against it.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

DELIVERY_DATE = dt.date(2026, 11, 23)
FIRST_DIAGNOSIS = dt.date(2012, 1, 2)


@dataclass(frozen=True)
class Case:
    """One patient of a public dataset, in the registry's terms."""

    local_id: str
    sex: str  # "male" / "female"
    age_years: int
    diagnosis_date: dt.date
    time_days: int
    died: bool
    size_mm: float | None = None
    grade: int | None = None  # 1, 2, 3
    pain: bool | None = None

    @property
    def outcome_date(self) -> dt.date:
        return self.diagnosis_date + dt.timedelta(days=self.time_days)

    @property
    def birth_date(self) -> dt.date:
        """A birth date giving ``age_years`` whole years at diagnosis (mid-year birthday, never 29 Feb)."""
        return dt.date(self.diagnosis_date.year - self.age_years, 1, 1) - dt.timedelta(days=180)


def _diagnosis(i: int) -> dt.date:
    return FIRST_DIAGNOSIS + dt.timedelta(days=(i * 7) % 1500)


def lung_cases() -> list[Case]:
    """R's ``lung`` (lifelines ``load_lung``): status 1 = death; sex 1 = male, 2 = female."""
    from lifelines.datasets import load_lung

    lung = load_lung()
    return [Case(f"LUNG{i:04d}", "male" if r.sex == 1 else "female", int(r.age), _diagnosis(i), int(r.time),
                 bool(r.status == 1)) for i, r in enumerate(lung.itertuples(index=False), start=1)]


def lung_frame():
    """(time in days, event) of ``lung``, as lifelines ships it: what the product's numbers are held to."""
    from lifelines.datasets import load_lung

    lung = load_lung()
    return lung["time"].to_numpy(dtype=float), lung["status"].to_numpy(dtype=int)


def gbsg2_cases() -> list[Case]:
    """GBSG2 (lifelines ``load_gbsg2``): cens 1 = event, here a death; tumour size in mm, grade I-III."""
    from lifelines.datasets import load_gbsg2

    grades = {"I": 1, "II": 2, "III": 3}
    data = load_gbsg2()
    return [Case(f"GB{i:05d}", "female", int(r.age), _diagnosis(i), int(r.time), bool(r.cens == 1),
                 float(r.tsize), grades[str(r.tgrade)]) for i, r in enumerate(data.itertuples(index=False), start=1)]


def rossi_cases() -> list[Case]:
    """Rossi's recidivism data (lifelines ``load_rossi``): 432 men, ``week`` of arrest (the event) or 52;
    ``fin`` (financial aid) stands for a recorded sign, pain, left blank in one chart out of ten."""
    from lifelines.datasets import load_rossi

    return [Case(f"R{i:06d}", "male", int(r.age), _diagnosis(i), int(r.week) * 7, bool(r.arrest == 1),
                 pain=None if i % 10 == 0 else bool(r.fin == 1))
            for i, r in enumerate(load_rossi().itertuples(index=False), start=1)]


def larynx_cases() -> list[Case]:
    """Larynx cancer (lifelines ``load_larynx``): 90 patients, time in years (one decimal), death; sex unknown."""
    from lifelines.datasets import load_larynx

    return [Case(f"L{i:03d}", "", int(r.age), _diagnosis(i), round(r.time * 365.25), bool(r.death == 1))
            for i, r in enumerate(load_larynx().itertuples(index=False), start=1)]


def dataset_frame(cases: list[Case]) -> tuple[list[float], list[int]]:
    """(time in days, event) of the cases, as the dataset gives them."""
    return [float(c.time_days) for c in cases], [int(c.died) for c in cases]


# -- Montpellier ------------------------------------------------------------------------------

MONTPELLIER_FILE = "clms_montpellier.csv"
MONTPELLIER_COLUMNS = (
    "IPP;NOM;PRENOM;DDN;SEXE;IMMUNODEP;DATE_DIAG;SITE;TAILLE_CM;PRESENTATION;DOULEUR;CICATRICE;DELAI_MOIS;GRADE;"
    "DIFF;MITOSES;NECROSE;INVASION;ULCERATION;KI67;DATE_CHIR;MARGE_RCP_CM;MARGE_CLIN_CM;MARGE_HISTO_CM;STATUT_R;"
    "RT_ADJ;DATE_RECIDIVE;DATE_META;SITES_META;TTT_RECHUTE;STATUT_VITAL;DATE_DC;CAUSE_DC;DATE_DERNIERES_NOUVELLES"
).split(";")
MISSING = ("NA", "ND", "")  # the three ways Montpellier writes "no value", in turn


def write_montpellier(drop: Path, cases: list[Case], delivery_date: dt.date = DELIVERY_DATE,
                      centre: str = "montpellier") -> Path:
    folder = drop / centre / delivery_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MONTPELLIER_FILE
    with path.open("w", encoding="cp1252", newline="") as fh:
        out = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        out.writerow(MONTPELLIER_COLUMNS)
        for i, c in enumerate(cases):
            row = {col: MISSING[(i + j) % 3] for j, col in enumerate(MONTPELLIER_COLUMNS)}
            row.update(IPP=c.local_id, NOM="PATIENT", PRENOM=f"Cas {c.local_id[-4:]}",
                       DDN=f"{c.birth_date:%d/%m/%Y}", SEXE="H" if c.sex == "male" else "F",
                       DATE_DIAG=f"{c.diagnosis_date:%d/%m/%Y}", STATUT_VITAL="DCD" if c.died else "VIVANT",
                       DATE_DC=f"{c.outcome_date:%d/%m/%Y}" if c.died else "",
                       DATE_DERNIERES_NOUVELLES="" if c.died else f"{c.outcome_date:%d/%m/%Y}")
            if c.size_mm is not None:
                row["TAILLE_CM"] = f"{c.size_mm / 10:g}".replace(".", ",")
            if c.grade is not None:
                row["GRADE"] = "I" * c.grade
            out.writerow([row[col] for col in MONTPELLIER_COLUMNS])
    return path


# -- Lyon (REDCap) ----------------------------------------------------------------------------

LYON_DICTIONARY = "CLMSLYON_DataDictionary.csv"


def write_lyon(drop: Path, cases: list[Case], delivery_date: dt.date = DELIVERY_DATE, centre: str = "lyon") -> Path:
    """Raw records: one ``patient`` row per record, one ``evenement`` instance (death or last news)."""
    from clms_etl.synth.formats import lyon as project  # the REDCap project: its dictionary and export columns

    folder = drop / centre / delivery_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    dictionary = project.dictionary()
    with (folder / LYON_DICTIONARY).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(dictionary.columns)
        out.writerows(dictionary.rows)
    path = folder / f"CLMSLYON_DATA_{delivery_date.isoformat()}.csv"
    columns = project.COLUMNS
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.DictWriter(fh, columns, restval="", lineterminator="\n")
        out.writeheader()
        for record, c in enumerate(cases, start=1):
            out.writerow({"record_id": record, "ipp": c.local_id, "nom": "PATIENT", "prenom": f"Cas {record}",
                          "date_naissance": c.birth_date.isoformat(), "sexe": "1" if c.sex == "male" else "2",
                          "date_diag": c.diagnosis_date.isoformat(),
                          "taille_mm": "" if c.size_mm is None else f"{c.size_mm:g}",
                          "grade_fnclcc": "" if c.grade is None else str(c.grade), "patient_complete": "2"})
            out.writerow({"record_id": record, "redcap_repeat_instrument": "evenement", "redcap_repeat_instance": 1,
                          "evt_date": c.outcome_date.isoformat(), "evt_type": "3" if c.died else "4",
                          "evenement_complete": "2"})
    return path


# -- Nice (Excel workbook) --------------------------------------------------------------------

NICE_FILE = "export_dermato_nice.xlsx"
NICE_SHEETS = {
    "Patients": ["N° dossier", "Nom", "Prénom", "Date de naissance", "Sexe", "Immunodépression", "Date du diagnostic",
                 "Localisation", "Taille (mm)", "Présentation", "Douleur", "Sur cicatrice",
                 "Délai 1ère consultation (mois)", "Grade FNCLCC", "Différenciation", "Mitoses /10 champs", "Nécrose",
                 "Envahissement", "Ulcération histologique", "Ki67 (%)"],
    "Chirurgies": ["N° dossier", "Date", "Type", "Marge proposée RCP (mm)", "Marge clinique (mm)",
                   "Marge histologique (mm)", "Statut", "Radiothérapie adjuvante"],
    "Évènements": ["N° dossier", "Date", "Évènement", "Site métastatique", "Cause du décès", "Traitement"],
}


def write_nice(drop: Path, cases: list[Case], delivery_date: dt.date = DELIVERY_DATE, centre: str = "nice") -> Path:
    """Real Excel dates, French headers; missing as blank or ``NR``; no operation (the sheet keeps its header)."""
    from openpyxl import Workbook

    folder = drop / centre / delivery_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    book.remove(book.active)
    sheets = {name: book.create_sheet(name) for name in NICE_SHEETS}
    for name, ws in sheets.items():
        ws.append(NICE_SHEETS[name])

    def day(value: dt.date):
        return dt.datetime.combine(value, dt.time())
    for i, c in enumerate(cases):
        row = dict.fromkeys(NICE_SHEETS["Patients"], "NR" if i % 2 else None)
        row.update({"N° dossier": c.local_id, "Nom": "PATIENT", "Prénom": f"Cas {i + 1}",
                    "Date de naissance": day(c.birth_date), "Sexe": "M" if c.sex == "male" else "F",
                    "Date du diagnostic": day(c.diagnosis_date),
                    "Douleur": None if c.pain is None else ("Oui" if c.pain else "Non")})
        sheets["Patients"].append([row[k] for k in NICE_SHEETS["Patients"]])
        sheets["Évènements"].append([c.local_id, day(c.outcome_date), "Décès" if c.died else "Dernières nouvelles",
                                     None, None, None])
    for ws in sheets.values():
        for cells in ws.iter_rows(min_row=2):
            for cell in cells:
                if isinstance(cell.value, dt.datetime):
                    cell.number_format = "dd/mm/yyyy"
    path = folder / NICE_FILE
    book.save(path)
    return path


# -- Nîmes (transcribed charts, Mac Roman text) --------------------------------------------------

NIMES_FILE = "nimes_dossiers.txt"
NIMES_COLUMNS = ["Dossier", "Patient", "Né(e) le", "Sexe", "Diagnostic", "Siège", "Taille", "Aspect", "Douleur",
                 "Cicatrice", "Grade", "Différenciation", "Mitoses", "Nécrose", "Infiltration", "Ulcération", "Ki67",
                 "Chirurgie", "Marges", "Exérèse", "Évolution", "Dernières nouvelles"]


def write_nimes(drop: Path, cases: list[Case], delivery_date: dt.date = DELIVERY_DATE, centre: str = "nimes") -> Path:
    """Tab-separated, Mac Roman, CR line ends; a death is an Évolution note (``DCD 12/03/2018``)."""
    folder = drop / centre / delivery_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(NIMES_COLUMNS)]
    for i, c in enumerate(cases, start=1):
        row = dict.fromkeys(NIMES_COLUMNS, "")
        row.update({"Dossier": c.local_id, "Patient": f"PATIENT Cas{i}", "Né(e) le": f"{c.birth_date:%d/%m/%Y}",
                    "Sexe": {"male": "Homme", "female": "Femme"}.get(c.sex, ""),
                    "Diagnostic": f"{c.diagnosis_date:%d/%m/%Y}",
                    "Évolution": f"DCD {c.outcome_date:%d/%m/%Y}" if c.died else "",
                    "Dernières nouvelles": "" if c.died else f"{c.outcome_date:%d/%m/%Y}"})
        lines.append("\t".join(row[k] for k in NIMES_COLUMNS))
    path = folder / NIMES_FILE
    path.write_bytes(("\r".join(lines) + "\r").encode("mac_roman"))
    return path


# -- counting, from the files alone -----------------------------------------------------------


def count_rows(delivery: Path) -> dict[str, int]:
    """Rows per canonical table a delivery holds, counted from its files (no product code).

    Montpellier: one patient and one tumour per CRLF line after the header, one event per filled
    death or last-news date (nothing else is filled here). Lyon: one patient and one tumour per
    record row, one event per ``evenement`` instance.
    """
    names = {p.name for p in delivery.iterdir()}
    if NICE_FILE in names:
        from openpyxl import load_workbook

        book = load_workbook(delivery / NICE_FILE, read_only=True)
        rows = {name: [r for r in book[name].iter_rows(min_row=2, values_only=True) if any(v is not None for v in r)]
                for name in NICE_SHEETS}
        book.close()
        return {"patient": len(rows["Patients"]), "tumour": len(rows["Patients"]), "surgery": len(rows["Chirurgies"]),
                "event": len(rows["Évènements"])}
    if NIMES_FILE in names:
        lines = (delivery / NIMES_FILE).read_bytes().decode("mac_roman").split("\r")
        assert lines[-1] == "", "every line ends with CR"
        header, records = lines[0].split("\t"), [line.split("\t") for line in lines[1:-1]]
        notes, news = header.index("Évolution"), header.index("Dernières nouvelles")
        events = sum(1 for r in records for i in (notes, news) if r[i].strip())  # one dated note or news each
        return {"patient": len(records), "tumour": len(records), "surgery": 0, "event": events}
    if MONTPELLIER_FILE in names:
        raw = (delivery / MONTPELLIER_FILE).read_bytes()
        lines = raw.split(b"\r\n")
        assert lines[-1] == b"", "the export ends every line with CRLF"
        header, records = lines[0].split(b";"), [line.split(b";") for line in lines[1:-1]]
        dated = [header.index(b"DATE_DC"), header.index(b"DATE_DERNIERES_NOUVELLES")]
        events = sum(1 for r in records for i in dated if r[i] not in (b"", b"NA", b"ND"))
        return {"patient": len(records), "tumour": len(records), "surgery": 0, "event": events}
    data = next(delivery.glob("CLMSLYON_DATA_*.csv"))
    with data.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    instrument = rows[0].index("redcap_repeat_instrument")
    kinds = [r[instrument] for r in rows[1:]]
    return {"patient": kinds.count(""), "tumour": kinds.count(""), "surgery": kinds.count("chirurgie"),
            "event": kinds.count("evenement")}
