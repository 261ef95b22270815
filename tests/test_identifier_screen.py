"""Identifiers cannot travel: the three habits that put identifiers where masking did not look.

For each centre's format a real synthetic delivery is written, then edited on disk the way a
chart gets typed: a separator inside a name (the row shifts), a name and a birth date typed in
a free-text field, and a defect in an identifier column. After read + validate, no identifier
of that delivery may be found in any canonical value, any query value or message, nor in the
Excel query list, and every row read is still accepted or quarantined.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import unicodedata
from pathlib import Path

import openpyxl
import polars as pl

from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.identifiers import Identifiers
from clms_etl.centre_import import read_and_validate, write_query_list
from clms_etl.data_queries import IDENTIFIER_MASK
from tests.conftest import TWIN_DATE

KEY = b"test-pseudonym-key-identifiers!!"
PARTICLES = {"des", "les", "van", "von", "der", "den", "del", "della", "dos", "das", "ben", "ibn", "mac", "saint",
             "sainte", "epouse", "nee", "veuve", "dit", "dite"}


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


class Oracle:
    """The delivery's identifiers as the test reads them from the files, and a check of any text."""

    def __init__(self):
        self.words: set[str] = set()
        self.numbers: set[str] = set()
        self.dates: set[dt.date] = set()

    def name(self, value) -> None:
        if value:
            self.words |= {w for w in re.findall(r"[^\W_]+", _fold(value)) if len(w) >= 3 and w not in PARTICLES}

    def number(self, value) -> None:
        if value and len(str(value).strip()) >= 5:
            self.numbers.add(_fold(str(value).strip()))

    def birth(self, value) -> None:
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date):
            self.dates.add(value)
        elif value:
            for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
                try:
                    self.dates.add(dt.datetime.strptime(value.strip(), fmt).date())
                except ValueError:
                    pass

    def leaks(self, text) -> list[str]:
        if text is None:
            return []
        folded = _fold(text)
        tokens = set(re.findall(r"[^\W_]+", folded))
        found = sorted(tokens & (self.words | self.numbers))
        for d in self.dates:
            for spelling in (f"{d:%d/%m/%Y}", f"{d.day}/{d.month}/{d.year}", f"{d:%Y-%m-%d}", f"{d:%d.%m.%Y}",
                             f"{d:%d-%m-%Y}"):
                if re.search(rf"(?<!\d){re.escape(spelling)}(?!\d)", folded):
                    found.append(spelling)
        return found


def _copy_drop(twin_drop: Path, tmp_path: Path, centre: str) -> tuple[Path, Path]:
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop, drop)
    return drop, drop / centre / TWIN_DATE.isoformat()


def _import(drop: Path, centre: str, outputs: Path):
    imported = read_and_validate(load_registry(drop)[centre], latest_delivery(drop, centre), KEY)
    assert imported.failure is None, imported.failure
    path = write_query_list(outputs, imported)
    return imported, path


def _assert_nothing_leaks(imported, workbook: Path, oracle: Oracle) -> None:
    validated = imported.validated
    leaks = []
    for part in (validated.accepted, validated.quarantined):
        for table, frame in part.items():
            for column, dtype in frame.schema.items():
                if dtype == pl.String:
                    for value in frame.get_column(column).drop_nulls().unique().to_list():
                        leaks += [(table, column, value, hit) for hit in oracle.leaks(value)]
    for column in ("value", "message"):
        for value in validated.queries.get_column(column).drop_nulls().unique().to_list():
            leaks += [("queries", column, value, hit) for hit in oracle.leaks(value)]
    book = openpyxl.load_workbook(workbook, read_only=True)
    for sheet in book.worksheets:
        for row in sheet.iter_rows(values_only=True):
            for cell in row:
                if isinstance(cell, str):
                    leaks += [("excel", sheet.title, cell, hit) for hit in oracle.leaks(cell)]
    assert not leaks, leaks[:10]
    assert validated.balanced
    counts = validated.accounting
    assert (counts["rows_read"] == counts["rows_accepted"] + counts["rows_quarantined"]).all()


def _query(imported, **where) -> pl.DataFrame:
    queries = imported.validated.queries
    for column, value in where.items():
        queries = queries.filter(pl.col(column) == value)
    return queries


def _assert_quarantined_whole(imported, file: str, row: int) -> None:
    """The shifted line: an error query naming file and row with the value masked, each of its
    canonical rows quarantined, every value of them masked or emptied."""
    shift = _query(imported, rule="wrong_field_count", file=file, row=row)
    assert shift.height >= 1 and set(shift["value"]) == {IDENTIFIER_MASK}
    assert set(shift["severity"]) == {"error"}
    line = (pl.col("source_file") == file) & (pl.col("source_row") == row)
    assert sum(f.filter(line).height for f in imported.validated.accepted.values()) == 0
    quarantined = {t: f.filter(line) for t, f in imported.validated.quarantined.items()}
    assert quarantined["patient"].height == 1
    for table, frame in quarantined.items():
        for column in ("sex", "diagnosis_date", "age_at_diagnosis_years", "site", "treatment", "surgery_date"):
            if column in frame.columns:
                assert frame[column].drop_nulls().cast(pl.String).is_in([IDENTIFIER_MASK]).all(), (table, column)


# --- Montpellier: cp1252 ';' CSV ---------------------------------------------------------------

def test_montpellier_shifted_name_free_text_and_identifier_defect_leave_no_identifier(twin_drop, tmp_path):
    drop, folder = _copy_drop(twin_drop, tmp_path, "montpellier")
    path = folder / "clms_montpellier.csv"
    lines = path.read_bytes().decode("cp1252").split("\r\n")
    header = lines[0].split(";")
    col = {name: header.index(name) for name in header}
    rows = [line.split(";") for line in lines[1:-1]]
    oracle = Oracle()
    for r in rows:
        oracle.name(r[col["NOM"]]), oracle.name(r[col["PRENOM"]]), oracle.number(r[col["IPP"]])
        oracle.birth(r[col["DDN"]])
    # 1. a ';' typed inside the name of line 2: every later cell shifts (the birth date into SEXE)
    shifted = rows[0]
    shifted[col["NOM"]] = shifted[col["NOM"]][:3] + ";" + shifted[col["NOM"]][3:]
    # 2. name and birth date typed in the relapse treatment of a patient who relapsed
    relapsed = next(i for i, r in enumerate(rows) if i > 1 and r[col["DATE_RECIDIVE"]] not in ("", "ND", "NA"))
    r = rows[relapsed]
    r[col["TTT_RECHUTE"]] = f"reprise chez {r[col['NOM']].title()} {r[col['PRENOM']]} née le {r[col['DDN']]}"
    # 3. an impossible birth date in the identifier column itself
    rows[1][col["DDN"]] = rows[1][col["DDN"]].replace("/", "/1", 1)
    oracle.birth(rows[1][col["DDN"]])
    path.write_bytes("\r\n".join([lines[0], *(";".join(r) for r in rows), ""]).encode("cp1252"))

    imported, workbook = _import(drop, "montpellier", tmp_path / "out")

    _assert_nothing_leaks(imported, workbook, oracle)
    _assert_quarantined_whole(imported, "clms_montpellier.csv", 2)
    masked = _query(imported, rule="identifier_in_text", row=relapsed + 2)
    assert masked["file"].unique().to_list() == ["clms_montpellier.csv"]
    assert "TTT_RECHUTE" in masked["field"].to_list()
    treatments = imported.validated.accepted["event"].filter(pl.col("source_row") == relapsed + 2)["treatment"]
    assert any(t and t.startswith("reprise chez ") and IDENTIFIER_MASK in t for t in treatments.to_list())


# --- Nîmes: Mac-Roman tab text, CR line ends ---------------------------------------------------

def test_nimes_tab_in_patient_name_and_names_in_evolution_leave_no_identifier(twin_drop, tmp_path):
    drop, folder = _copy_drop(twin_drop, tmp_path, "nimes")
    path = folder / "nimes_dossiers.txt"
    lines = path.read_bytes().decode("mac_roman").split("\r")
    header = lines[0].split("\t")
    col = {name: header.index(name) for name in header}
    rows = [line.split("\t") for line in lines[1:] if line]
    oracle = Oracle()
    for r in rows:
        oracle.name(r[col["Patient"]]), oracle.number(r[col["Dossier"]]), oracle.birth(r[col["Né(e) le"]])
    rows[0][col["Patient"]] = rows[0][col["Patient"]].replace(" ", "\t", 1)  # a tab typed in the name
    r = rows[2]
    r[col["Évolution"]] = (r[col["Évolution"]] + "; " if r[col["Évolution"]] else "") + \
        f"vue par {r[col['Patient']].split()[0].title()} le {r[col['Né(e) le']]}"
    rows[3][col["Né(e) le"]] = "31/02/" + rows[3][col["Né(e) le"]][-4:]
    path.write_bytes("\r".join([lines[0], *("\t".join(r) for r in rows), ""]).encode("mac_roman"))

    imported, workbook = _import(drop, "nimes", tmp_path / "out")

    _assert_nothing_leaks(imported, workbook, oracle)
    _assert_quarantined_whole(imported, "nimes_dossiers.txt", 2)
    masked = _query(imported, rule="identifier_in_text", row=4)
    assert masked["file"].unique().to_list() == ["nimes_dossiers.txt"]
    assert "Évolution" in masked["field"].to_list()


# --- Lyon: REDCap CSV ------------------------------------------------------------------------

def test_lyon_unquoted_comma_in_name_and_name_in_treatment_leave_no_identifier(twin_drop, tmp_path):
    drop, folder = _copy_drop(twin_drop, tmp_path, "lyon")
    path = next(folder.glob("CLMSLYON_DATA_*.csv"))
    lines = path.read_text("utf-8").splitlines()
    header = lines[0].split(",")
    col = {name: header.index(name) for name in header}
    rows = [line.split(",") for line in lines[1:]]
    oracle = Oracle()
    base = [i for i, r in enumerate(rows) if r[col["redcap_repeat_instrument"]] == ""]
    for i in base:
        r = rows[i]
        oracle.name(r[col["nom"]]), oracle.name(r[col["prenom"]]), oracle.number(r[col["ipp"]])
        oracle.birth(r[col["date_naissance"]])
    shifted = base[0]
    rows[shifted][col["nom"]] = rows[shifted][col["nom"]][:3] + "," + rows[shifted][col["nom"]][3:]
    event = next(i for i, r in enumerate(rows) if r[col["redcap_repeat_instrument"]] == "evenement"
                 and i > base[2])
    owner = max(i for i in base if i < event)
    rows[event][col["evt_traitement"]] = (f"chimiothérapie; vu par {rows[owner][col['prenom']]} "
                                          f"{rows[owner][col['nom']].upper()} {rows[owner][col['date_naissance']]}")
    quoted = base[3]  # a comma inside quotes is fine: no shift
    rows[quoted][col["nom"]] = '"' + rows[quoted][col["nom"]][:2] + "," + rows[quoted][col["nom"]][2:] + '"'
    defect = base[1]
    rows[defect][col["date_naissance"]] = rows[defect][col["date_naissance"]].replace("-", "-13-", 1)[:-3]
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n", "utf-8")

    imported, workbook = _import(drop, "lyon", tmp_path / "out")

    _assert_nothing_leaks(imported, workbook, oracle)
    _assert_quarantined_whole(imported, path.name, shifted + 2)
    assert _query(imported, rule="wrong_field_count", row=quoted + 2).is_empty()
    masked = _query(imported, rule="identifier_in_text", row=event + 2)
    assert masked["file"].unique().to_list() == [path.name]
    assert "evt_traitement" in masked["field"].to_list()


# --- Nice: xlsx ------------------------------------------------------------------------------

def test_nice_name_in_wrong_column_and_in_treatment_leave_no_identifier(twin_drop, tmp_path):
    drop, folder = _copy_drop(twin_drop, tmp_path, "nice")
    path = next(folder.glob("*.xlsx"))
    book = openpyxl.load_workbook(path)
    patients, events = book["Patients"], book["Évènements"]
    head = {c.value: c.column for c in patients[1]}
    oracle = Oracle()
    people = {}
    for r in patients.iter_rows(min_row=2):
        values = {h: r[j - 1].value for h, j in head.items()}
        oracle.name(values["Nom"]), oracle.name(values["Prénom"]), oracle.number(values["N° dossier"])
        oracle.birth(values["Date de naissance"])
        people[str(values["N° dossier"])] = values
    # a shifted cell: the birth date typed (as text) in Sexe, the name in Localisation
    first = {h: patients.cell(2, j) for h, j in head.items()}
    first["Sexe"].value = f"{first['Date de naissance'].value:%d/%m/%Y}"
    first["Localisation"].value = first["Nom"].value
    # the birth date typed again in the diagnosis date of the same patient
    patients.cell(4, head["Date du diagnostic"]).value = patients.cell(4, head["Date de naissance"]).value
    # the identifier column itself: a birth date typed as odd text
    born = patients.cell(3, head["Date de naissance"])
    born.value = f"né le {born.value:%d}/{born.value:%m} en 19{born.value:%y}"
    ehead = {c.value: c.column for c in events[1]}
    row = next(r for r in range(2, events.max_row + 1) if events.cell(r, ehead["Traitement"]).value)
    who = people[str(events.cell(row, ehead["N° dossier"]).value)]
    events.cell(row, ehead["Traitement"]).value = (
        f"reprise (Mme {who['Nom']} {who['Prénom']}, née le {who['Date de naissance']:%d/%m/%Y})")
    book.save(path)

    imported, workbook = _import(drop, "nice", tmp_path / "out")

    _assert_nothing_leaks(imported, workbook, oracle)
    masked = _query(imported, rule="identifier_in_text")
    where = set(masked.select("sheet", "row", "field").iter_rows())
    assert ("Évènements", row, "Traitement") in where
    assert ("Patients", 2, "Localisation") in where or ("Patients", 2, "Sexe") in where
    assert ("Patients", 4, "Date du diagnostic") in where
    fourth = pl.concat([imported.validated.accepted["patient"].drop("has_warning"),
                        imported.validated.quarantined["patient"].drop("quarantine_reasons")]).filter(
        pl.col("source_row") == 4)
    assert fourth["diagnosis_date"].to_list() == [None]


# --- the matching itself ---------------------------------------------------------------------

def test_names_match_as_whole_words_and_birth_dates_in_french_spellings():
    ids = Identifiers()
    ids.add("name", ["ROY", "Élodie", "LY", "DE LA TOUR"])
    ids.add("hospital_number", ["0012345"])
    ids.add("birth_date", ["05/10/1933"])
    screen = ids.screen()
    assert screen.mask_text("Royal Canin") == "Royal Canin"
    assert screen.mask_text("vu par Mme ELODIE roy") == f"vu par Mme {IDENTIFIER_MASK} {IDENTIFIER_MASK}"
    for spelling in ("05/10/1933", "5/10/1933", "1933-10-05", "05-10-1933", "05.10.1933", "5 oct. 1933",
                     "5 octobre 1933", "05/10/33", "05101933"):
        assert screen.mask_text(f"né le {spelling}.") == f"né le {IDENTIFIER_MASK}.", spelling
    assert screen.mask_text("dossier 12345") == f"dossier {IDENTIFIER_MASK}"
    assert screen.mask_text("ly") == IDENTIFIER_MASK  # a very short name: as a whole value only
    assert screen.mask_text("exérèse ly") == "exérèse ly"
    assert screen.mask_text("06/10/1933") == "06/10/1933"


def test_hospital_number_words_split_only_when_not_one_word_are_every_token():
    """A hospital number of one word is its own token: the numbers searched are those of
    splitting every number (leading zeros, separators, letters, other scripts' digits, blanks)."""
    from clms_etl.identifiers import MIN_NUMBER_TOKEN, _WORD, _fold_series

    raw = ["000123456", "12-345678", "AB 12345", "", "  0012345 ", "١٢٣٤٥٦", "IPP_9876543", "12345/67890", "x"]
    ids = Identifiers()
    ids.add("hospital_number", pl.Series(raw))
    numbers = _fold_series(pl.Series(raw)).str.strip_chars().str.replace_all(r"\s+", " ")
    numbers = pl.concat([numbers, numbers.str.strip_chars_start("0")])
    every = pl.concat([numbers, numbers.to_frame("v").select(pl.col("v").str.extract_all(_WORD)).to_series().explode()])
    expected = {w for w in every.drop_nulls().to_list() if len(w) >= MIN_NUMBER_TOKEN and re.search(r"\d", w)}
    assert set(ids.screen().word_series.to_list()) == expected
    assert {"123456", "345678", "12345", "9876543", "67890", "١٢٣٤٥٦"} <= expected


def test_dates_found_in_french_punctuation_are_those_the_exact_masking_finds():
    """The vectorised search (« », no-break spaces made ASCII for the regex engine) finds every
    text the exact, per-text masking changes, and the masks are the same."""
    ids = Identifiers()
    ids.add("name", ["ROY"])
    ids.add("birth_date", ["05/10/1933", "1er mars 1950"])
    texts = [f"{a}{date}{b}" for date in ("05/10/1933", "5\u00a0oct.\u00a01933", "1933-10-05", "05\u202f/\u202f10/33",
                                          "1er\u00a0mars 1950", "01/03/50", "15/10/1933")
             for a, b in (("Date « ", " »"), ("«", "»"), ("né le\u00a0", "."), ("é", ""), ("", "é"), ("«\u00a0", "\u00a0»"),
                          ("x", ""), ("", "1"), ("\u202f", "#"))]
    screen = ids.screen()
    expected = {t: screen.mask_text(t) for t in texts if screen.mask_text(t) != t}
    assert screen.masked(pl.Series(texts)) == expected
    assert len(expected) > 20


def test_identifiers_registered_twice_mask_as_once():
    """The look-up sets keep repeated values (a name in two columns, a number with and without
    its zeros, a birth date as text and as date): the same masks as each registered once."""
    texts = pl.Series(["vu par Roy le 05/10/1933", "dossier 0012345", "12345", "ROY", "5 oct. 1933", "rien",
                       "Élodie Roy née le 1933-10-05", "elodie"])

    def screen(times: int):
        ids = Identifiers()
        for _ in range(times):
            ids.add("name", ["ROY", "Élodie", "roy "])
            ids.add("hospital_number", ["0012345", "12345"])
            ids.add("birth_date", ["05/10/1933", "5/10/1933"])
            ids.add("birth_date", [dt.date(1933, 10, 5)])
        return ids.screen()

    once, twice = screen(1), screen(2)
    assert twice.masked(texts) == once.masked(texts)
    assert len(once.masked(texts)) == 7
    assert [twice.mask_text(t) for t in texts] == [once.mask_text(t) for t in texts]


def test_birth_dates_in_date_columns_looked_up_once_per_table_equal_the_join_per_column():
    """A date column holding the patient's own birth date is emptied with a warning: found by one
    look-up of each row's birth date per table when every patient has one (the usual delivery), the
    same as the join of (patient, date) per column, which stays for a patient with two."""
    from types import SimpleNamespace

    from clms_etl.identifiers import _screen_dates

    d = dt.date
    frame = pl.DataFrame({
        "patient_id": ["P1", "P2", None, "P3", "P1", "P4"],
        "surgery_date": [d(1950, 1, 2), d(2010, 1, 1), d(1950, 1, 2), None, d(2011, 5, 5), d(1961, 3, 3)],
        "surgery_date_precision": ["day"] * 6,
        "source_file": ["f.csv"] * 6, "source_sheet": [None] * 6, "source_row": [2, 3, 4, 5, 6, 7],
        "row_id": [f"surgery:{i}" for i in range(6)],
    }, schema_overrides={"source_sheet": pl.String, "source_row": pl.Int64})
    result = SimpleNamespace(centre="c", delivery_date=d(2026, 12, 1))
    for extra in ([], [("P4", d(1961, 3, 3))]):  # P4 with a second birth date: the join per column
        ids = Identifiers()
        ids.add_births(["P1", "P2", "P3", None, *(p for p, _ in extra)],
                       [d(1950, 1, 2), d(1940, 6, 6), d(1961, 3, 3), d(1970, 1, 1), *(b for _, b in extra)])
        ids.add_births(["P4"], [d(1999, 9, 9)])
        screen = ids.screen()
        assert screen.birth_of_each == (not extra)
        got = _screen_dates("surgery", frame, screen, {}, result)
        screen.birth_of_each = False  # (the cached verdict overridden: the reference path)
        expected = _screen_dates("surgery", frame, screen, {}, result)
        for a, b in zip(got, expected):
            assert a.equals(b)
        masked = got[0]["surgery_date"].is_null().to_list()
        assert masked == [True, False, False, True, False, bool(extra)] and got[1].height == 1 + bool(extra)
