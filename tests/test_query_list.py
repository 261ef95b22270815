"""The centre data manager's query list (REDCap's data-quality module as the model): one line per
problem with its French label, category and what to do; a stable number and a status across
deliveries; the centre's answers read back from the workbook it returns."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import openpyxl
import polars as pl

from clms_etl.centres import load_registry
from clms_etl.deliveries import latest_delivery
from clms_etl.centre_import import read_and_validate
from clms_etl.query_list import (
    ANSWERED, OPEN, RESOLVED, query_ids, read_answers, track, write_query_workbook,
)
from clms_etl.data_queries import QUERY_SCHEMA
from clms_etl.readers.engine import reader
from tests.warehouse.helpers import TEST_KEY

montpellier = reader("montpellier")  # the engine on clms_etl/data/formats/montpellier.toml
nice = reader("nice")  # the engine on clms_etl/data/formats/nice.toml

DAY1, DAY2, DAY3 = dt.date(2026, 11, 23), dt.date(2026, 11, 30), dt.date(2026, 12, 7)


def _copy(twin_drop: Path, tmp_path: Path, centre: str) -> tuple[Path, Path]:
    drop = tmp_path / "drop"
    shutil.copytree(twin_drop, drop)
    (folder,) = (drop / centre).iterdir()
    return drop, folder


def _import(drop: Path, centre: str):
    imported = read_and_validate(load_registry(drop)[centre], latest_delivery(drop, centre), TEST_KEY)
    assert imported.failure is None, imported.failure
    return imported


def _lines(path: Path) -> list[dict]:
    rows = list(openpyxl.load_workbook(path)["Requêtes"].iter_rows(values_only=True))
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def test_a_bad_montpellier_date_is_one_line_with_its_quarantined_children_summarised(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "montpellier")
    path = folder / montpellier.FILE
    lines = path.read_bytes().decode("cp1252").split("\r\n")
    header = lines[0].split(";")
    fields = lines[3].split(";")
    fields[header.index("DATE_DIAG")] = "31/02/2015"  # no such day: the patient, and so his chart, quarantined
    lines[3] = ";".join(fields)
    path.write_bytes("\r\n".join(lines).encode("cp1252"))
    imported = _import(drop, "montpellier")
    assert "parent_quarantined" in imported.queries["rule"].to_list()
    book = write_query_workbook(imported.queries, tmp_path / "q.xlsx", "montpellier")
    mine = [line for line in _lines(book) if line["Ligne"] == 4]
    assert len(mine) == len({(m["Champ"], m["Problème"]) for m in mine})  # no line twice
    assert all(m["Feuille"] is not None or m["Champ"] is not None for m in mine)  # no empty sheet-and-field line
    cause = [m for m in mine if m["Champ"] == "DATE_DIAG"]
    assert [m["Problème"] for m in cause] == ["Date illisible"]
    assert "liée(s) non chargée(s)" in cause[0]["Conséquences"]


def test_a_duplicated_nice_row_is_one_line_saying_it_is_an_exact_copy(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "nice")
    path = folder / nice.FILE
    book = openpyxl.load_workbook(path)
    patients = book["Patients"]
    patients.append([c.value for c in patients[2]])
    copy_row = patients.max_row
    book.save(path)
    imported = _import(drop, "nice")
    assert {"duplicate_row", "duplicate_patient"} <= set(imported.queries["rule"])
    lines = [m for m in _lines(write_query_workbook(imported.queries, tmp_path / "q.xlsx", "nice"))
             if m["Feuille"] == "Patients" and m["Ligne"] == copy_row]
    assert [m["Problème"] for m in lines] == ["Patient en double"]
    assert "identique" in lines[0]["Conséquences"]


def _queries(*rows: tuple) -> pl.DataFrame:
    """QUERY_SCHEMA rows from (centre, delivery_date, row, patient_id, field, value, rule, severity)."""
    return pl.DataFrame([
        {"centre": c, "delivery_date": d, "file": "f.csv", "sheet": None, "row": r, "table_name": "surgery",
         "row_id": f"surgery:f.csv:{r}", "patient_id": p, "field": f, "value": v, "rule": rule, "severity": sev,
         "message": f"{rule} {v}"}
        for c, d, r, p, f, v, rule, sev in rows], schema=QUERY_SCHEMA)


def test_a_query_keeps_its_number_when_its_line_moves_in_the_next_delivery():
    first = _queries(("lyon", DAY1, 4, "P1", "MARGE", "12", "margin_out_of_range", "error"))
    moved = _queries(("lyon", DAY2, 9, "P1", "MARGE", "12", "margin_out_of_range", "error"))
    other = _queries(("lyon", DAY2, 9, "P2", "MARGE", "12", "margin_out_of_range", "error"))
    assert query_ids(first).to_list() == query_ids(moved).to_list() != query_ids(other).to_list()


def test_queries_are_open_then_answered_then_resolved_by_the_delivery_that_fixes_them():
    margin = ("lyon", DAY1, 4, "P1", "MARGE", "12", "margin_out_of_range", "error")
    date = ("lyon", DAY1, 5, "P2", "DATE", "31/02", "unparseable_date", "error")
    day1 = track(None, _queries(margin, date), "lyon", DAY1)
    assert set(day1["status"]) == {OPEN} and set(day1["opened_on"]) == {DAY1}
    margin_id = day1.filter(pl.col("rule") == "margin_out_of_range")["query_id"][0]

    answers = pl.DataFrame({"query_id": [margin_id], "answer": ["12 mm, pas cm : corrigé dans le dossier"]})
    day2 = track(day1, _queries(("lyon", DAY2, *margin[2:])), "lyon", DAY2, answers)
    by_rule = {r["rule"]: r for r in day2.iter_rows(named=True)}
    assert (by_rule["margin_out_of_range"]["status"], by_rule["margin_out_of_range"]["answered_on"]) == (ANSWERED, DAY2)
    assert (by_rule["unparseable_date"]["status"], by_rule["unparseable_date"]["resolved_on"]) == (RESOLVED, DAY2)

    day3 = track(day2, _queries(("lyon", DAY3, *date[2:])), "lyon", DAY3)
    by_rule = {r["rule"]: r for r in day3.iter_rows(named=True)}
    assert (by_rule["margin_out_of_range"]["status"], by_rule["margin_out_of_range"]["resolved_on"]) == (RESOLVED, DAY3)
    assert (by_rule["unparseable_date"]["status"], by_rule["unparseable_date"]["opened_on"]) == (OPEN, DAY3)  # reopened



def test_the_workbook_lists_what_the_new_delivery_resolved(tmp_path):
    margin = ("lyon", DAY1, 4, "P1", "MARGE", "12", "margin_out_of_range", "error")
    date = ("lyon", DAY1, 5, "P2", "DATE", "31/02", "unparseable_date", "error")
    day1 = track(None, _queries(margin, date), "lyon", DAY1)
    now = _queries(("lyon", DAY2, *margin[2:]))
    lines = _lines(write_query_workbook(now, tmp_path / "q.xlsx", "lyon", track(day1, now, "lyon", DAY2)))
    assert [(m["Problème"], m["Statut"]) for m in lines] == [
        ("Marge invraisemblable", "ouverte"), ("Date illisible", "résolue depuis la dernière livraison")]


def test_the_list_after_the_load_is_the_workbook_with_its_statuses_written_again_only_when_they_change_it(
        tmp_path, monkeypatch):
    """An import run writes the list before its load (the list of a delivery that never loads),
    then, once loaded, the list with each line's status: that final file is byte for byte the
    workbook written with the statuses, as when it was always written twice; the second write
    happens only when the statuses change it (a first delivery's lines are all open)."""
    from types import SimpleNamespace

    import clms_etl.query_list as query_list
    from clms_etl.centre_import import write_loaded_query_list, write_query_list

    writes = []
    monkeypatch.setattr(query_list, "write_query_workbook",
                        lambda *a, real=write_query_workbook: writes.append(a[1]) or real(*a))
    margin = ("lyon", DAY1, 4, "P1", "MARGE", "12", "margin_out_of_range", "error")
    date = ("lyon", DAY1, 5, "P2", "DATE", "31/02", "unparseable_date", "error")
    day1 = _queries(margin, date)
    day2 = _queries(("lyon", DAY2, *margin[2:]))  # the date fixed, the margin answered
    answers = pl.DataFrame({"query_id": [query_ids(day1)[0]], "answer": ["12 mm, vérifié"]})
    status1 = track(None, day1, "lyon", DAY1)
    for day, queries, status, rewritten in [(DAY1, day1, status1, False),
                                            (DAY2, day2, track(status1, day2, "lyon", DAY2, answers), True)]:
        imported = SimpleNamespace(centre="lyon", delivery=SimpleNamespace(date=day), queries=queries)
        writes.clear()
        before_load = write_query_list(tmp_path / "outputs", imported)
        final = write_loaded_query_list(tmp_path / "outputs", imported, status)
        assert final == before_load
        assert len(writes) == 1 + rewritten
        expected = write_query_workbook(queries, tmp_path / f"twice_{day}.xlsx", "lyon", status)
        assert final.read_bytes() == expected.read_bytes()
    assert [m["Statut"] for m in _lines(final)] == ["répondue", "résolue depuis la dernière livraison"]


def test_the_answers_typed_in_a_returned_workbook_are_read_back(tmp_path):
    queries = _queries(("lyon", DAY1, 4, "P1", "MARGE", "12", "margin_out_of_range", "error"))
    folder = tmp_path / "lyon" / DAY2.isoformat()
    folder.mkdir(parents=True)
    returned = write_query_workbook(queries, folder / "requetes_lyon_2026-11-23.xlsx", "lyon")
    book = openpyxl.load_workbook(returned)
    sheet = book["Requêtes"]
    header = [c.value for c in sheet[1]]
    sheet.cell(2, header.index("Réponse du centre") + 1, "Valeur vérifiée : 12 mm")
    book.save(returned)
    answers = read_answers(folder)
    assert answers.rows() == [(query_ids(queries)[0], "Valeur vérifiée : 12 mm")]


def test_a_returned_workbook_dropped_with_the_next_delivery_answers_its_queries_in_the_warehouse(twin_drop, tmp_path):
    from clms_etl.centre_import import write_query_list
    from clms_etl.warehouse import Warehouse

    drop, folder = _copy(twin_drop, tmp_path, "nice")
    book = openpyxl.load_workbook(folder / nice.FILE)
    patients = book["Patients"]
    head = {c.value: c.column for c in patients[1]}
    patients.cell(2, head["Taille (mm)"], 900)  # 90 cm: an error query on row 2
    name = patients.cell(2, head["Nom"]).value
    book.save(folder / nice.FILE)
    first = _import(drop, "nice")
    with Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}") as wh:
        wh.create()
        wh.load_delivery("nice", first.delivery.date, [folder / nice.FILE], first.validated, "r1",
                         expectations=False, key=TEST_KEY)
        listed = write_query_list(tmp_path / "outputs", first, wh.query_status("nice"))
        size = next(m for m in _lines(listed) if m["Champ"] == "Taille (mm)")
        assert size["Statut"] == "ouverte"

        # the centre answers in the list and drops it with its next delivery (cell not fixed yet)
        returned = openpyxl.load_workbook(listed)
        sheet = returned["Requêtes"]
        header = [c.value for c in sheet[1]]
        at = next(r for r in range(2, sheet.max_row + 1)
                  if sheet.cell(r, header.index("N° de requête") + 1).value == size["N° de requête"])
        sheet.cell(at, header.index("Réponse du centre") + 1, f"Taille vérifiée chez {name} : 90 mm")
        later = folder.parent / DAY2.isoformat()
        shutil.copytree(folder, later)
        returned.save(later / listed.name)
        second = _import(drop, "nice")
        assert second.delivery.date == DAY2
        wh.load_delivery("nice", DAY2, sorted(p for p in later.iterdir()), second.validated, "r2",
                         expectations=False, key=TEST_KEY)
        status = wh.query_status("nice").filter(pl.col("query_id") == size["N° de requête"]).row(0, named=True)
    assert (status["status"], status["answered_on"]) == ("answered", DAY2)
    assert status["answer"].startswith("Taille vérifiée chez") and name not in status["answer"]  # screened


def test_valeur_recue_is_the_nice_margin_as_typed_in_millimetres_not_the_canonical_centimetres(twin_drop, tmp_path):
    drop, folder = _copy(twin_drop, tmp_path, "nice")
    book = openpyxl.load_workbook(folder / nice.FILE)
    surgeries = book["Chirurgies"]
    head = {c.value: c.column for c in surgeries[1]}
    surgeries.cell(2, head["Marge clinique (mm)"], 200)
    book.save(folder / nice.FILE)
    queries = _import(drop, "nice").queries
    margin = queries.filter(pl.col("rule") == "margin_out_of_range", pl.col("sheet") == "Chirurgies",
                            pl.col("row") == 2)
    assert margin.select("field", "value").rows() == [("Marge clinique (mm)", "200")]


def test_valeur_recue_is_the_lyon_date_as_written(twin_drop, tmp_path):
    import csv
    import io

    drop, folder = _copy(twin_drop, tmp_path, "lyon")
    path = next(p for p in folder.iterdir() if "_DATA_" in p.name)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    header = rows[0]
    i = next(k for k, r in enumerate(rows[1:], start=1)
             if r[header.index("redcap_repeat_instrument")] == "chirurgie" and r[header.index("chir_date")])
    rows[i][header.index("chir_date")] = "1907-07-31"  # before any diagnosis
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    queries = _import(drop, "lyon").queries
    early = queries.filter(pl.col("rule") == "surgery_before_diagnosis", pl.col("row") == i + 1)
    assert early["value"].to_list() == ["1907-07-31"]
