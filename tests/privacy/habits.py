"""The three habits that carry identifiers out of a chart, planted in each centre's own format.

1. a separator typed inside a name (Montpellier ``;`` in NOM, Lyon an unquoted ``,`` in nom,
   Nîmes a tab in Patient; Nice has no separator, so the birth date is typed in the next cell);
2. a name and a birth date typed in a free-text field (treatment, relapse treatment, Évolution);
3. a defect in an identifier column (a birth date that does not parse).

The files are edited on disk byte by byte, the way a data manager's export would carry them;
:func:`plant` returns the extra identifiers it typed (names that are not in the twin's truth).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl

EXTRA_NAME = "BERTINELLI"  # the second half of a compound name: an identifier the twin does not know


def _delivery(drop: Path, centre: str) -> Path:
    [folder] = sorted((drop / centre).iterdir())
    return folder


def _note(first: str, last: str, birth: str) -> str:
    return f"courrier adressé à {first} {last}, né(e) le {birth}"


def plant_montpellier(drop: Path) -> None:
    path = _delivery(drop, "montpellier") / "clms_montpellier.csv"
    lines = path.read_bytes().decode("cp1252").split("\r\n")
    header = lines[0].split(";")
    col = {name: i for i, name in enumerate(header)}
    rows = [line.split(";") for line in lines[1:4]]
    r1, r2, r3 = rows
    r1[col["NOM"]] = f"{r1[col['NOM']]};{EXTRA_NAME}"  # habit 1: the row shifts, DDN lands in SEXE
    r2[col["TTT_RECHUTE"]] = _note(r2[col["PRENOM"]], r2[col["NOM"]], r2[col["DDN"]])  # habit 2
    r3[col["DDN"]] = f"{r3[col['DDN']]} ?"  # habit 3
    lines[1:4] = [";".join(r) for r in rows]
    path.write_bytes("\r\n".join(lines).encode("cp1252"))


def plant_lyon(drop: Path) -> None:
    [path] = [p for p in _delivery(drop, "lyon").iterdir() if "_DATA_" in p.name]
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    header = rows[0]
    col = {name: i for i, name in enumerate(header)}
    patients = [i for i, r in enumerate(rows[1:], 1) if not r[col["redcap_repeat_instrument"]]]
    events = [i for i, r in enumerate(rows[1:], 1) if r[col["redcap_repeat_instrument"]] == "evenement"]
    p1, p2, p3 = (rows[i] for i in patients[:3])
    shifted = patients[0]
    p1[col["nom"]] = f"{p1[col['nom']]}, {EXTRA_NAME}"  # habit 1, written unquoted below
    rows[events[0]][col["evt_traitement"]] = _note(p2[col["prenom"]], p2[col["nom"]], p2[col["date_naissance"]])
    p3[col["date_naissance"]] = f"{p3[col['date_naissance']]}?"  # habit 3
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    for i, row in enumerate(rows):
        if i == shifted:
            out.write(",".join(row) + "\n")  # the comma inside nom is not quoted: the row shifts
        else:
            writer.writerow(row)
    path.write_text(out.getvalue(), encoding="utf-8", newline="")


def plant_nimes(drop: Path) -> None:
    path = _delivery(drop, "nimes") / "nimes_dossiers.txt"
    lines = path.read_bytes().decode("mac_roman").split("\r")
    header = lines[0].split("\t")
    col = {name: i for i, name in enumerate(header)}
    rows = [line.split("\t") for line in lines[1:4]]
    r1, r2, r3 = rows
    last, _, first = r1[col["Patient"]].partition(" ")
    r1[col["Patient"]] = f"{last}\t{first}"  # habit 1: a tab between name and first name
    last2, _, first2 = r2[col["Patient"]].partition(" ")
    r2[col["Évolution"]] = f"{r2[col['Évolution']]}; {_note(first2, last2, r2[col['Né(e) le']])}".lstrip("; ")
    r3[col["Né(e) le"]] = f"né le {r3[col['Né(e) le']]}"  # habit 3
    lines[1:4] = ["\t".join(r) for r in rows]
    path.write_bytes("\r".join(lines).encode("mac_roman"))


def plant_nice(drop: Path) -> None:
    path = _delivery(drop, "nice") / "export_dermato_nice.xlsx"
    book = openpyxl.load_workbook(path)
    patients, events = book["Patients"], book["Évènements"]
    col = {c.value: c.column for c in patients[1]}
    ecol = {c.value: c.column for c in events[1]}

    def birth(row: int) -> str:
        return patients.cell(row, col["Date de naissance"]).value.strftime("%d/%m/%Y")

    # habit 1: no separator in a workbook; the birth date is typed one cell to the right
    patients.cell(2, col["Sexe"]).value = birth(2)
    note = _note(patients.cell(3, col["Prénom"]).value, patients.cell(3, col["Nom"]).value, birth(3))
    events.cell(2, ecol["Traitement"]).value = note  # habit 2
    patients.cell(4, col["Date de naissance"]).value = f"{birth(4)} env."  # habit 3
    book.save(path)


PLANTERS = {"nice": plant_nice, "montpellier": plant_montpellier, "lyon": plant_lyon, "nimes": plant_nimes}


def plant(drop: Path) -> set[str]:
    """Plant the three habits in every centre of ``drop`` that has a planter; the extra names typed."""
    for centre, planter in PLANTERS.items():
        if (drop / centre).is_dir():
            planter(drop)
    return {EXTRA_NAME}
