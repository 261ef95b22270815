"""The Nice reader against the synthetic twin and against hostile workbooks."""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clms_etl.readers import engine
from clms_etl.data_queries import IDENTIFIER_MASK
from clms_etl.keys import pseudonym
from clms_etl.readers.base import ImportFailure, ReadContext
from clms_etl.readers.cells import is_missing
from clms_etl.synth.formats.declared import declared_format
from clms_etl.synth.generate import centre_rng, write_centre
from clms_etl.synth.identities import age_at
from clms_etl.synth.twin import build_twin

nice = engine.reader("nice")  # the engine on clms_etl/data/formats/nice.toml
fmt = declared_format("nice")  # its synthetic writer, derived from the same declaration

CENTRE = "nice"
KEY = b"test-pseudonym-key-nice-0123456!"
DELIVERY = dt.date(2026, 11, 23)
FILE = nice.FILE
PATIENTS, SURGERIES, EVENTS = (part.file.sheet for part in nice.declaration.sheets)


@pytest.fixture(scope="module")
def truth():
    return build_twin(0).for_centre(CENTRE)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, truth):
    """(folder, result) of the clean twin delivery, written by the project's writer."""
    out = tmp_path_factory.mktemp("nice")
    write_centre(out, CENTRE, CENTRE, truth, 0, 0.0, DELIVERY)
    folder = out / CENTRE / DELIVERY.isoformat()
    return folder, read(folder)


@pytest.fixture(scope="module")
def sheets(truth) -> dict[str, list[list]]:
    """The twin's cells, sheet -> [header, *rows], to edit and save with openpyxl."""
    tables = fmt.render(truth, centre_rng(0, CENTRE))
    return {t.sheet: [list(t.columns)] + [list(r) for r in t.rows] for t in tables}


def read(folder: Path):
    return nice.read(ReadContext(CENTRE, folder, DELIVERY, KEY))


def pid(local_id: str) -> str:
    return pseudonym(KEY, CENTRE, local_id)


def save(folder: Path, sheets: dict[str, list[list]], edits: dict | None = None) -> Path:
    """Save a workbook with openpyxl (shared strings, unlike the project's writer)."""
    sheets = copy.deepcopy(sheets)
    for (sheet, row, column), value in (edits or {}).items():
        sheets[sheet][row - 1][sheets[sheet][0].index(column)] = value
    folder.mkdir(parents=True, exist_ok=True)
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        ws = book.create_sheet(title)
        for r in rows:
            ws.append([dt.datetime.combine(v, dt.time()) if type(v) is dt.date else v for v in r])
        for r in ws.iter_rows(min_row=2):
            for cell in r:
                if isinstance(cell.value, dt.datetime):
                    cell.number_format = "dd/mm/yyyy"
    book.save(folder / FILE)
    return folder


def queries(result) -> pl.DataFrame:
    return result.queries_frame()


def errors(result) -> pl.DataFrame:
    return queries(result).filter(pl.col("severity") == "error")


# --- the clean twin -----------------------------------------------------------------------------

def test_clean_twin_gives_no_error_query(clean):
    _, result = clean
    assert errors(result).is_empty(), errors(result)


def test_rows_read_per_table_equal_truth_counts(clean, truth):
    _, result = clean
    for name in ("patient", "tumour", "surgery", "event"):
        assert result.frames[name].height == getattr(truth, name).height, name
    assert result.source_rows == {
        f"{FILE}[{PATIENTS}]": truth.patient.height, f"{FILE}[{SURGERIES}]": truth.surgery.height,
        f"{FILE}[{EVENTS}]": truth.event.height,
    }


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) < 1e-9
    return a == b


def _compare(got: pl.DataFrame, expected: list[dict], keys: tuple[str, ...]) -> None:
    rows = {tuple(r[k] for k in keys): r for r in got.iter_rows(named=True)}
    assert len(rows) == got.height == len(expected)
    for want in expected:
        have = rows[tuple(want[k] for k in keys)]
        for column, value in want.items():
            if value is None:
                assert have[column] is None, (column, want, have)
            else:
                assert _close(have[column], value), (column, want, have)


def _ids(truth) -> dict[str, str]:
    return {r["patient_key"]: pid(r["local_id"]) for r in truth.patient.iter_rows(named=True)}


def test_every_patient_is_recovered_with_vital_status_from_events(clean, truth):
    _, result = clean
    expected = [
        {"patient_id": pid(p["local_id"]), "centre": CENTRE, "sex": p["sex"],
         "age_at_diagnosis_years": age_at(p["birth_date"], p["diagnosis_date"]),
         "immunosuppression": p["immunosuppression"], "diagnosis_date": p["diagnosis_date"],
         "diagnosis_date_precision": "day", "vital_status": p["vital_status"], "record_complete": True,
         "source_sheet": PATIENTS}
        for p in truth.patient.iter_rows(named=True)
    ]
    _compare(result.frames["patient"], expected, ("patient_id",))


def test_every_tumour_is_recovered_with_sizes_in_cm(clean, truth):
    _, result = clean
    ids = _ids(truth)
    expected = []
    for t in truth.tumour.iter_rows(named=True):
        row = {k: v for k, v in t.items() if k not in ("patient_key", "site_detail")}
        row["patient_id"] = ids[t["patient_key"]]
        row["mitoses_is_upper_bound"] = None if t["mitoses_per_10hpf"] is None else False
        expected.append(row)
    _compare(result.frames["tumour"], expected, ("patient_id",))


def test_every_surgery_is_recovered_numbered_by_date_with_margins_in_cm(clean, truth):
    _, result = clean
    ids = _ids(truth)
    expected = [{**{k: v for k, v in s.items() if k != "patient_key"}, "patient_id": ids[s["patient_key"]],
                 "surgery_date_precision": "day", "source_sheet": SURGERIES}
                for s in truth.surgery.iter_rows(named=True)]
    _compare(result.frames["surgery"], expected, ("patient_id", "surgery_no"))


def test_every_event_is_recovered_in_order(clean, truth):
    _, result = clean
    ids = _ids(truth)
    expected = [{**{k: v for k, v in e.items() if k != "patient_key"}, "patient_id": ids[e["patient_key"]],
                 "event_date_precision": "day"} for e in truth.event.iter_rows(named=True)]
    _compare(result.frames["event"], expected, ("patient_id", "event_no"))


def test_frames_follow_the_canonical_model_with_unique_row_ids(clean):
    from clms_etl import model

    _, result = clean
    ids = []
    for name, frame in result.frames.items():
        assert frame.schema == pl.Schema(model.TABLES[name]), name
        ids += frame["row_id"].to_list()
    assert len(ids) == len(set(ids))


def test_no_identifier_reaches_frames_or_queries(tmp_path, sheets, truth):
    local_id = sheets[PATIENTS][1][0]
    result = read(save(tmp_path, sheets, {
        (PATIENTS, 2, "Date de naissance"): "1950",
        (PATIENTS, 3, "Date de naissance"): "le 3 du mois",
        (PATIENTS, 4, "Date de naissance"): 20000,
        (PATIENTS, 5, "Sexe"): "??",
        (SURGERIES, 2, "N° dossier"): "99999999",
    }))
    sheets_dup = copy.deepcopy(sheets)
    sheets_dup[PATIENTS].append(list(sheets_dup[PATIENTS][1]))
    duplicate = read(save(tmp_path / "dup", sheets_dup))
    assert not queries(result).is_empty() and not queries(duplicate).is_empty()
    assert local_id
    for res in (result, duplicate):
        text = "\n".join(
            [frame.select(pl.all().cast(pl.String)).write_csv() for frame in res.frames.values()]
            + [queries(res).select(pl.all().cast(pl.String)).write_csv()]
        )
        for p in truth.patient.iter_rows(named=True):
            for secret in (p["local_id"], p["last_name"], p["last_name"].upper(), p["first_name"]):
                assert not re.search(rf"(?<!\w){re.escape(secret)}(?!\w)", text, re.IGNORECASE), secret
            for shown in (p["birth_date"].isoformat(), p["birth_date"].strftime("%d/%m/%Y")):
                assert shown not in text
        assert "99999999" not in text and "1950" not in text and "le 3 du mois" not in text
        assert "20000" not in text and "1954" not in text  # serial 20000 = 04/10/1954


# --- the reader itself --------------------------------------------------------------------------

def test_fast_workbook_reader_agrees_with_openpyxl(clean, tmp_path, sheets):
    import fastexcel

    for path in (clean[0] / FILE, save(tmp_path, sheets, {(PATIENTS, 2, "Ki67 (%)"): "=1+1"}) / FILE):
        book = fastexcel.read_excel(path)
        mine = {title: engine._grid(book, path, title).rows() for title in book.sheet_names}
        for title in book.sheet_names:
            theirs = engine._openpyxl_grid(path, title).rows()
            width = max(map(len, theirs + mine[title]))
            pad = [tuple(r) + (None,) * (width - len(r)) for r in mine[title]]
            assert pad == [r + (None,) * (width - len(r)) for r in theirs], title


def test_openpyxl_written_workbook_reads_like_the_project_writer(clean, tmp_path, sheets):
    result = read(save(tmp_path, sheets))
    assert errors(result).is_empty()
    for name in result.frames:
        assert result.frames[name].equals(clean[1].frames[name]), name


def test_sheets_and_columns_are_matched_by_normalised_name_not_position(clean, tmp_path, sheets):
    renamed = {"PATIENTS": sheets[PATIENTS], "chirurgie": sheets[SURGERIES], "Evenements": sheets[EVENTS]}
    order = list(reversed(range(len(sheets[PATIENTS][0]))))
    renamed["PATIENTS"] = [[r[j] for j in order] for r in sheets[PATIENTS]]
    renamed["PATIENTS"][0] = [h.upper() for h in renamed["PATIENTS"][0]]
    result = read(save(tmp_path, renamed))
    assert errors(result).is_empty()
    for name in ("patient", "tumour", "surgery", "event"):
        got = result.frames[name].drop("row_id", "source_sheet")
        assert got.equals(clean[1].frames[name].drop("row_id", "source_sheet")), name


RULES = {"unknown_code": "unknown_code", "stray_spaces_case": "value_normalised",
         "unparseable_date": "unparseable_date", "duplicate_patient_row": "duplicate_patient"}


def test_every_planted_format_defect_is_reported_at_its_cell(tmp_path, truth):
    _, planted = write_centre(tmp_path, CENTRE, CENTRE, truth, 5, 0.6, DELIVERY)
    result = read(tmp_path / CENTRE / DELIVERY.isoformat())
    q = queries(result)
    checked = 0
    for d in planted:
        if d.kind not in RULES:
            continue
        hit = q.filter((pl.col("sheet") == d.sheet) & (pl.col("row") == d.row) & (pl.col("field") == d.column)
                       & (pl.col("rule") == RULES[d.kind]))
        assert not hit.is_empty(), d
        checked += 1
    assert checked


def test_dates_typed_as_text_or_as_numbers_are_read_with_a_warning(tmp_path, sheets):
    result = read(save(tmp_path, sheets, {
        (PATIENTS, 2, "Date du diagnostic"): "12/03/2014",
        (PATIENTS, 3, "Date du diagnostic"): "mars 2014",
        (PATIENTS, 4, "Date du diagnostic"): 41710,  # serial of 12/03/2014, date format lost
        (PATIENTS, 5, "Date du diagnostic"): "31/02/2014",
        (SURGERIES, 2, "Date"): "2014",
    }))
    patient = result.frames["patient"].sort("source_row")
    assert patient.select("diagnosis_date", "diagnosis_date_precision").rows()[:4] == [
        (dt.date(2014, 3, 12), "day"), (dt.date(2014, 3, 15), "month"), (dt.date(2014, 3, 12), "day"), (None, None)]
    surgery = result.frames["surgery"].filter(pl.col("source_row") == 2)
    assert surgery.select("surgery_date", "surgery_date_precision").row(0) == (dt.date(2014, 7, 1), "year")
    got = {(r["sheet"], r["row"], r["rule"], r["severity"]) for r in queries(result).iter_rows(named=True)
           if r["rule"] != "first_surgery_not_primary"}
    assert got == {
        (PATIENTS, 2, "date_typed_as_text", "warning"), (PATIENTS, 3, "partial_date_imputed", "warning"),
        (PATIENTS, 4, "date_as_number", "warning"), (PATIENTS, 5, "unparseable_date", "error"),
        (SURGERIES, 2, "partial_date_imputed", "warning"),
    }


def test_codes_and_numbers_typed_oddly_are_decoded_or_queried(tmp_path, sheets):
    result = read(save(tmp_path, sheets, {
        (PATIENTS, 2, "Taille (mm)"): "15,5", (PATIENTS, 2, "Grade FNCLCC"): "2", (PATIENTS, 2, "Sexe"): " f",
        (PATIENTS, 2, "Mitoses /10 champs"): "< 5", (PATIENTS, 2, "Nécrose"): "< 50 %",
        (PATIENTS, 2, "Localisation"): "Viscéral", (PATIENTS, 2, "Ki67 (%)"): "NR",
        (PATIENTS, 2, "Différenciation"): 2.5,
    }))
    patient = result.frames["patient"].filter(pl.col("source_row") == 2).row(0, named=True)
    tumour = result.frames["tumour"].filter(pl.col("source_row") == 2).row(0, named=True)
    assert patient["sex"] == "female"
    assert (tumour["size_cm"], tumour["fnclcc_grade"], tumour["necrosis_score"]) == (1.55, 2, 1)
    assert (tumour["mitoses_per_10hpf"], tumour["mitoses_is_upper_bound"]) == (5, True)
    assert tumour["site"] is None and tumour["ki67_percent"] is None and tumour["differentiation_score"] is None
    got = {(r["field"], r["rule"]) for r in queries(result).filter(pl.col("row") == 2).iter_rows(named=True)}
    assert got == {("Sexe", "value_normalised"), ("Mitoses /10 champs", "mitoses_upper_bound"),
                   ("Localisation", "unknown_code"), ("Différenciation", "unknown_code")}


def test_question_marks_are_reported_since_missing_is_blank_or_nr(tmp_path, sheets):
    result = read(save(tmp_path, sheets, {(PATIENTS, 3, "Sexe"): "?", (PATIENTS, 3, "Ki67 (%)"): "-",
                                          (PATIENTS, 3, "Date du diagnostic"): "inconnu", (EVENTS, 2, "Traitement"): "?"}))
    got = {(r["field"], r["rule"]) for r in errors(result).iter_rows(named=True)}
    assert got == {("Sexe", "unknown_code"), ("Ki67 (%)", "unparseable_number"),
                   ("Date du diagnostic", "unparseable_date")}
    assert result.frames["event"].filter(pl.col("source_row") == 2)["treatment"].to_list() == [None]


def test_duplicate_patient_rows_are_errors_and_kept(tmp_path, sheets):
    edited = copy.deepcopy(sheets)
    rows = edited[PATIENTS]
    rows.append(list(rows[1]))  # identical copy of row 2
    changed = list(rows[2])
    changed[rows[0].index("Sexe")] = "F" if changed[rows[0].index("Sexe")] == "M" else "M"
    rows.append(changed)  # different copy of row 3
    result = read(save(tmp_path, edited))
    dup = queries(result).filter(pl.col("rule") == "duplicate_patient")
    n = len(rows)
    assert sorted(dup["row"].to_list()) == [3, n - 1, n]
    assert (dup["severity"] == "error").all() and (dup["value"] == IDENTIFIER_MASK).all()
    assert result.frames["patient"].height == n - 1


def test_orphan_and_anonymous_rows_are_errors_and_kept(tmp_path, sheets):
    result = read(save(tmp_path, sheets, {
        (SURGERIES, 2, "N° dossier"): "00000001", (EVENTS, 3, "N° dossier"): "NR", (PATIENTS, 4, "N° dossier"): None,
    }))
    got = {(r["sheet"], r["row"], r["rule"]) for r in errors(result).iter_rows(named=True)}
    gone = sheets[PATIENTS][3][0]  # the operations and events of the patient who lost his number
    orphans = {(name, i + 1, "orphan_row") for name in (SURGERIES, EVENTS)
               for i, r in enumerate(sheets[name]) if r[0] == gone and (name, i + 1) != (EVENTS, 3)}
    assert orphans
    assert got == {(SURGERIES, 2, "orphan_row"), (EVENTS, 3, "missing_patient_id"),
                   (PATIENTS, 4, "missing_patient_id")} | orphans
    assert result.frames["surgery"].height == len(sheets[SURGERIES]) - 1
    assert result.frames["event"].filter(pl.col("source_row") == 3)["patient_id"].to_list() == [None]


def test_last_news_of_a_dead_patient_is_a_warning_as_in_every_centre(tmp_path, sheets):
    events = sheets[EVENTS]
    kind = events[0].index("Évènement")
    death = next(i for i, r in enumerate(events) if r[kind] == "Décès")
    edited = copy.deepcopy(sheets)
    edited[EVENTS].append([events[death][0], events[death][1], "Dernières nouvelles", None, None, None])
    result = read(save(tmp_path, edited))
    assert errors(result).is_empty()
    assert queries(result).select("sheet", "row", "rule", "severity").rows() == [
        (EVENTS, len(events) + 1, "last_news_of_dead_patient", "warning")]


def test_inconsistent_event_rows_are_reported(tmp_path, sheets):
    edited = copy.deepcopy(sheets)
    kind = edited[EVENTS][0].index("Évènement")
    lr = next(i for i, r in enumerate(edited[EVENTS]) if r[kind] == "Récidive locale") + 1
    edited[PATIENTS][0].append(None)
    edited[PATIENTS][2].append("valeur sans en-tête")
    result = read(save(tmp_path, edited, {
        (EVENTS, lr, "Site métastatique"): "os", (EVENTS, lr, "Cause du décès"): "cLMS",
        (EVENTS, 3 if lr != 3 else 4, "Évènement"): None, (EVENTS, 5 if lr != 5 else 6, "Date"): "NR",
    }))
    got = {(r["sheet"], r["field"], r["rule"], r["severity"]) for r in queries(result).iter_rows(named=True)}
    assert got == {
        (PATIENTS, "colonne 21", "value_without_header", "warning"),
        (EVENTS, "Évènement", "required_value_missing", "error"), (EVENTS, "Date", "event_date_missing", "error"),
        (EVENTS, "Site métastatique", "metastasis_site_without_metastasis", "error"),
        (EVENTS, "Cause du décès", "death_cause_without_death", "error"),
    }
    row = result.frames["event"].filter(pl.col("source_row") == lr).row(0, named=True)
    assert (row["event_kind"], row["metastasis_site"], row["death_cause"]) == ("local_recurrence", None, None)
    assert result.frames["event"].height == len(sheets[EVENTS]) - 1


def test_empty_events_sheet_is_a_warning_and_no_vital_status(tmp_path, sheets):
    edited = copy.deepcopy(sheets)
    edited[EVENTS] = edited[EVENTS][:1]
    result = read(save(tmp_path, edited))
    assert queries(result).select("sheet", "rule", "severity").rows() == [(EVENTS, "empty_sheet", "warning")]
    assert result.frames["event"].is_empty()
    assert result.frames["patient"]["vital_status"].is_null().all()


# --- hostile files ------------------------------------------------------------------------------

def _fails(folder: Path, *words: str) -> ImportFailure:
    with pytest.raises(ImportFailure) as info:
        read(folder)
    message = str(info.value)
    assert FILE in message
    for word in words:
        assert word in message, message
    assert len(message) < 500
    return info.value


def test_missing_file_is_an_import_failure(tmp_path):
    _fails(tmp_path, "absent")


def test_empty_file_is_an_import_failure(tmp_path):
    (tmp_path / FILE).write_bytes(b"")
    _fails(tmp_path, "xlsx")


def test_truncated_workbook_is_an_import_failure(tmp_path, clean):
    data = (clean[0] / FILE).read_bytes()
    (tmp_path / FILE).write_bytes(data[: len(data) // 2])
    _fails(tmp_path)


def test_binary_garbage_under_the_name_is_an_import_failure(tmp_path):
    import random

    (tmp_path / FILE).write_bytes(random.Random(2).randbytes(100_000))
    _fails(tmp_path, "xlsx")


def test_csv_saved_under_the_xlsx_name_is_an_import_failure(tmp_path):
    (tmp_path / FILE).write_bytes("N° dossier;Nom\r\n123;DUPONT\r\n".encode("cp1252"))
    _fails(tmp_path, "xlsx")


def test_50mb_single_line_is_an_import_failure(tmp_path):
    (tmp_path / FILE).write_bytes(b"A" * 50_000_000)
    _fails(tmp_path, "xlsx")


def test_corrupt_sheet_xml_is_an_import_failure(tmp_path, clean):
    import zipfile

    source = zipfile.ZipFile(clean[0] / FILE)
    with zipfile.ZipFile(tmp_path / FILE, "w") as out:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("sheet1.xml"):
                data = data[: len(data) // 2]
            out.writestr(item, data)
    _fails(tmp_path)


def test_header_only_patients_sheet_is_an_import_failure(tmp_path, sheets):
    edited = copy.deepcopy(sheets)
    edited[PATIENTS] = edited[PATIENTS][:1]
    _fails(save(tmp_path, edited), "aucun patient")


def test_missing_sheet_is_an_import_failure_naming_the_sheet(tmp_path, sheets):
    edited = {k: v for k, v in sheets.items() if k != SURGERIES}
    failure = _fails(save(tmp_path, edited), "Chirurgies")
    assert failure.column == "Chirurgies"


def test_duplicated_header_is_an_import_failure_naming_the_column(tmp_path, sheets):
    edited = copy.deepcopy(sheets)
    edited[SURGERIES][0][edited[SURGERIES][0].index("Statut")] = "Type"
    failure = _fails(save(tmp_path, edited), "Type", "Chirurgies")
    assert failure.column == "Type"


def test_missing_required_column_is_an_import_failure_naming_file_and_column(tmp_path, sheets):
    edited = copy.deepcopy(sheets)
    j = edited[PATIENTS][0].index("Taille (mm)")
    edited[PATIENTS] = [r[:j] + r[j + 1:] for r in edited[PATIENTS]]
    failure = _fails(save(tmp_path, edited), "Taille (mm)")
    assert (failure.file, failure.column) == (FILE, "Taille (mm)")


def test_unknown_extra_column_is_a_warning_and_ignored(tmp_path, sheets, clean):
    edited = copy.deepcopy(sheets)
    edited[EVENTS] = [r + (["Commentaire"] if i == 0 else ["rien"]) for i, r in enumerate(edited[EVENTS])]
    result = read(save(tmp_path, edited))
    assert queries(result).select("sheet", "field", "rule", "severity").rows() == [
        (EVENTS, "Commentaire", "unknown_column", "warning")]
    assert result.frames["event"].equals(clean[1].frames["event"])


def test_huge_cell_is_a_query_not_a_crash(tmp_path, sheets):
    result = read(save(tmp_path, sheets, {(PATIENTS, 2, "Sexe"): "X" * 32_000,
                                          (EVENTS, 2, "Traitement"): "y" * 32_000}))
    q = queries(result)
    assert q.filter(pl.col("sheet") == PATIENTS)["rule"].to_list() == ["unknown_code"]
    assert q.filter(pl.col("sheet") == EVENTS)["rule"].to_list() == ["value_truncated"]
    assert q["message"].str.len_chars().max() <= 501


# --- property: arbitrary content in a cell ------------------------------------------------------

LOCATED = {  # (sheet, column) -> (canonical table, canonical field)
    (PATIENTS, "Sexe"): ("patient", "sex"), (PATIENTS, "Immunodépression"): ("patient", "immunosuppression"),
    (PATIENTS, "Date du diagnostic"): ("patient", "diagnosis_date"), (PATIENTS, "Localisation"): ("tumour", "site"),
    (PATIENTS, "Taille (mm)"): ("tumour", "size_cm"), (PATIENTS, "Grade FNCLCC"): ("tumour", "fnclcc_grade"),
    (PATIENTS, "Mitoses /10 champs"): ("tumour", "mitoses_per_10hpf"), (PATIENTS, "Nécrose"): ("tumour", "necrosis_score"),
    (PATIENTS, "Ki67 (%)"): ("tumour", "ki67_percent"), (SURGERIES, "Date"): ("surgery", "surgery_date"),
    (SURGERIES, "Type"): ("surgery", "surgery_kind"), (SURGERIES, "Marge clinique (mm)"): ("surgery", "clinical_margin_cm"),
    (SURGERIES, "Statut"): ("surgery", "resection_status"), (EVENTS, "Date"): ("event", "event_date"),
    (EVENTS, "Évènement"): ("event", "event_kind"), (EVENTS, "Cause du décès"): ("event", "death_cause"),
}
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=25).filter(lambda t: not t.startswith("="))
VALUE = st.one_of(
    TEXT,
    st.sampled_from(["NR", " nr ", "1,5", "-0", "1e400", "nan", "inf", "< 5", "II", "31/02/2014", "3/2014",
                     "1899", "Oui", "R0 ", "#N/A", "≥50%", "Tête et cou"]),
    st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.dates(dt.date(1800, 1, 1), dt.date(2200, 1, 1)), st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(sorted(LOCATED)), row=st.integers(2, 20), value=VALUE)
def test_arbitrary_content_in_a_cell_only_ever_yields_queries(tmp_path_factory, sheets, where, row, value):
    sheet, column = where
    folder = save(tmp_path_factory.mktemp("prop"), sheets, {(sheet, row, column): value})
    result = read(folder)  # nothing but a ReadResult may come out
    for name, rows in ((PATIENTS, "patient"), (SURGERIES, "surgery"), (EVENTS, "event")):
        assert result.frames[rows].height == len(sheets[name]) - 1
    table, field = LOCATED[where]
    got = result.frames[table].filter((pl.col("source_row") == row) & (pl.col("source_sheet") == sheet))[field]
    flagged = not queries(result).filter((pl.col("sheet") == sheet) & (pl.col("row") == row)
                                         & (pl.col("field") == column)).is_empty()
    blank = isinstance(value, str) and is_missing(value.strip())
    assert flagged or blank or got[0] is not None, (where, value, got)


# --- the calamine fast path against the exact reader ---------------------------------------------

def _exact(monkeypatch, folder: Path):
    with monkeypatch.context() as m:
        m.setattr(engine, "_grid", lambda book, path, sheet: engine._openpyxl_grid(path, sheet))
        return read(folder)


def test_fast_path_reads_an_ordinary_workbook_without_the_exact_reader(clean, monkeypatch):
    def refuse(path):
        raise AssertionError("exact reader used")

    monkeypatch.setattr(engine, "_openpyxl_grid", refuse)
    result = read(clean[0])
    for name in result.frames:
        assert result.frames[name].equals(clean[1].frames[name]), name


@pytest.mark.parametrize("edits", [
    {},
    {(PATIENTS, 2, "Date du diagnostic"): "12/03/2014", (PATIENTS, 4, "Date du diagnostic"): 41710},
    {(PATIENTS, 2, "Taille (mm)"): "15,5", (PATIENTS, 3, "Taille (mm)"): 0.00001, (PATIENTS, 4, "Ki67 (%)"): -0.0,
     (PATIENTS, 5, "Mitoses /10 champs"): 3_000_000_000, (PATIENTS, 6, "Mitoses /10 champs"): "< 5"},
    {(PATIENTS, 2, "Sexe"): True, (PATIENTS, 3, "Localisation"): dt.date(2014, 3, 12), (EVENTS, 2, "Traitement"): 12.5},
    {(PATIENTS, 2, "N° dossier"): 12345678901234567, (SURGERIES, 2, "N° dossier"): "true"},
    {(PATIENTS, 2, "Grade FNCLCC"): 2, (PATIENTS, 3, "Grade FNCLCC"): "2", (PATIENTS, 4, "Différenciation"): 2.5,
     (PATIENTS, 5, "Nécrose"): " Absente ", (EVENTS, 3, "Site métastatique"): "2014-03-12 00:00:00"},
    {(PATIENTS, 2, "Sexe"): "#N/A", (PATIENTS, 3, "Sexe"): "a_x000D_b", (PATIENTS, 4, "Sexe"): "   "},
])
def test_fast_path_and_exact_reader_agree(tmp_path, sheets, monkeypatch, edits):
    folder = save(tmp_path, sheets, edits)
    fast, exact = read(folder), _exact(monkeypatch, folder)
    for name in exact.frames:
        assert fast.frames[name].equals(exact.frames[name]), name
    assert fast.queries_frame().equals(exact.queries_frame())
    assert fast.source_rows == exact.source_rows


def test_fast_path_and_exact_reader_agree_on_duplicates_and_blank_rows(tmp_path, sheets, monkeypatch):
    edited = copy.deepcopy(sheets)
    rows = edited[PATIENTS]
    rows.append(list(rows[1]))
    copied = list(rows[2])
    copied[rows[0].index("Taille (mm)")] = str(copied[rows[0].index("Taille (mm)")])  # "12" vs 12
    rows.append(copied)
    rows.insert(5, [None] * len(rows[0]))
    rows.insert(6, ["  "] + [None] * (len(rows[0]) - 1))
    edited[EVENTS][0].append(None)
    edited[EVENTS][3].append("valeur sans en-tête")
    folder = save(tmp_path, edited)
    fast, exact = read(folder), _exact(monkeypatch, folder)
    for name in exact.frames:
        assert fast.frames[name].equals(exact.frames[name]), name
    assert fast.queries_frame().equals(exact.queries_frame())
    assert fast.source_rows == exact.source_rows
