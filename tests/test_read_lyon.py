"""Lyon reader: REDCap raw records + data dictionary -> canonical frames and data queries."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clms_etl.centres import load_registry
from clms_etl.keys import pseudonym
from clms_etl.readers.base import ImportFailure, ReadContext
from clms_etl.rules import ERROR, WARNING
from clms_etl.synth.formats import lyon as fmt
from clms_etl.synth.twin import build_twin

DELIVERY = dt.date(2026, 11, 23)
KEY = b"test-key-lyon-0123456789abcdef!!"
DATA = fmt.data_file_name(DELIVERY)
DICT = fmt.DICTIONARY_FILE


# --- helpers -----------------------------------------------------------------------------------


def deliver(folder: Path, seed: int = 0):
    truth = build_twin(seed).for_centre("lyon")
    w = fmt.writer(folder, DELIVERY)
    w.append(fmt.render(truth, np.random.default_rng(seed)))
    w.close()
    return truth


def read(folder: Path):
    return load_registry()["lyon"].reader.read(ReadContext("lyon", folder, DELIVERY, KEY))


def load(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def save(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    with open(path, "w", encoding=encoding, newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)


def edit(folder: Path, change) -> None:
    """Apply ``change(header, rows)`` to the records file."""
    header, *body = load(folder / DATA)
    change(header, body)
    save(folder / DATA, [header, *body])


def base_rows(header, rows):
    i = header.index("redcap_repeat_instrument")
    return [r for r in rows if r[i] == ""]


def queries(result, rule=None, severity=None) -> pl.DataFrame:
    q = result.queries_frame()
    if rule:
        q = q.filter(pl.col("rule") == rule)
    if severity:
        q = q.filter(pl.col("severity") == severity)
    return q


def errors(result) -> pl.DataFrame:
    return queries(result, severity=ERROR)


def pid(local_id: str) -> str:
    return pseudonym(KEY, "lyon", local_id)


def age_at(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


@pytest.fixture
def twin(tmp_path):
    folder = tmp_path / "lyon" / DELIVERY.isoformat()
    truth = deliver(folder)
    return folder, truth


# --- the clean twin ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 7])  # 1 and 7: a metastasis in two organs; 2 and 7: no news
def test_clean_twin_recovers_every_truth_row_without_error_queries(tmp_path, seed):
    truth = deliver(tmp_path, seed)
    result = read(tmp_path)
    assert errors(result).height == 0, errors(result).to_dicts()
    f = result.frames
    for table in ("patient", "tumour", "surgery", "event"):
        assert f[table].height == getattr(truth, table).height, table
        assert f[table]["row_id"].is_unique().all()
    assert result.source_rows[DATA] == truth.patient.height + truth.surgery.height + len(
        {(k, d) for k, d, kind in truth.event.select("patient_key", "event_date", "event_kind").iter_rows()
         if kind == "metastasis"}
    ) + truth.event.filter(pl.col("event_kind") != "metastasis").height

    patients = {r["patient_id"]: r for r in f["patient"].iter_rows(named=True)}
    for p in truth.patient.iter_rows(named=True):
        got = patients[pid(p["local_id"])]
        assert got["centre"] == "lyon"
        assert got["sex"] == p["sex"]
        assert got["immunosuppression"] == p["immunosuppression"]
        assert got["diagnosis_date"] == p["diagnosis_date"] and got["diagnosis_date_precision"] == "day"
        assert got["age_at_diagnosis_years"] == age_at(p["birth_date"], p["diagnosis_date"])
        assert got["vital_status"] == p["vital_status"]
        assert got["record_complete"] == p["record_complete"]
        assert got["source_file"] == DATA and got["source_sheet"] is None

    tumours = {r["patient_id"]: r for r in f["tumour"].iter_rows(named=True)}
    local = dict(truth.patient.select("patient_key", "local_id").iter_rows())
    for t in truth.tumour.iter_rows(named=True):
        got = tumours[pid(local[t["patient_key"]])]
        for field in ("site", "presentation", "pain", "on_scar", "consultation_delay_months", "fnclcc_grade",
                      "differentiation_score", "mitoses_per_10hpf", "necrosis_score", "invasion",
                      "histological_ulceration", "ki67_percent"):
            assert got[field] == t[field], field
        assert got["size_cm"] == pytest.approx(t["size_cm"]) if t["size_cm"] is not None else got["size_cm"] is None
        count = t["mitoses_per_10hpf"]
        assert got["mitoses_is_upper_bound"] == (None if count is None else False)
        # the writer fills the class for about half the counted tumours
        assert got["mitosis_class"] in (None, None if count is None else
                                        "0-9" if count < 10 else "10-19" if count < 20 else ">=20")

    surgeries = {(r["patient_id"], r["surgery_no"]): r for r in f["surgery"].iter_rows(named=True)}
    for s in truth.surgery.iter_rows(named=True):
        got = surgeries[(pid(local[s["patient_key"]]), s["surgery_no"])]
        assert got["surgery_date"] == s["surgery_date"] and got["surgery_date_precision"] == "day"
        for field in ("surgery_kind", "resection_status", "adjuvant_radiotherapy"):
            assert got[field] == s[field], field
        for field in ("proposed_margin_cm", "clinical_margin_cm", "histological_margin_cm"):
            assert got[field] == (None if s[field] is None else pytest.approx(s[field])), field

    # events: same numbering, except that the sites of one metastasis come in the file's box order
    events = {(r["patient_id"], r["event_no"]): r for r in f["event"].iter_rows(named=True)}
    sites = {}
    for r in f["event"].iter_rows(named=True):
        sites.setdefault((r["patient_id"], r["event_date"], r["event_kind"]), []).append(r["metastasis_site"])
    for e in truth.event.iter_rows(named=True):
        p = pid(local[e["patient_key"]])
        got = events[(p, e["event_no"])]
        assert (got["event_kind"], got["event_date"], got["event_date_precision"]) == (
            e["event_kind"], e["event_date"], "day")
        assert got["death_cause"] == e["death_cause"] and got["treatment"] == e["treatment"]
        same_day = truth.event.filter(
            (pl.col("patient_key") == e["patient_key"]) & (pl.col("event_date") == e["event_date"])
            & (pl.col("event_kind") == e["event_kind"]))["metastasis_site"].to_list()
        assert sorted(map(str, sites[(p, e["event_date"], e["event_kind"])])) == sorted(map(str, same_day))


def test_no_identifier_reaches_frames_or_queries(tmp_path):
    truth = deliver(tmp_path, 1)
    # make every query path run: a bad birth date, a bad code, a duplicate, an orphan
    def damage(header, rows):
        base = base_rows(header, rows)
        base[0][header.index("date_naissance")] = "1950-02-31"
        base[1][header.index("date_naissance")] = "1950"
        base[2][header.index("sexe")] = "7"
        rows.append(list(base[3]))
        rows.append(list(base[4]))
        rows[-1][header.index("ki67")] = "99"
    edit(tmp_path, damage)
    result = read(tmp_path)
    secrets = set()
    for p in truth.patient.iter_rows(named=True):
        secrets |= {p["local_id"], p["last_name"], p["first_name"], p["birth_date"].isoformat(),
                    p["birth_date"].strftime("%d/%m/%Y")}
    text = []
    for frame in result.frames.values():
        for column in frame.columns:
            text += [str(v) for v in frame[column].to_list()]
    for q in result.queries:
        text += [str(q.value), q.message, str(q.field)]
    blob = "\n".join(text)
    leaked = [s for s in secrets if s in blob]
    assert not leaked
    assert queries(result, "unparseable_date").height == 1
    assert queries(result, "partial_date_imputed").height == 1


# --- decoding through the dictionary -----------------------------------------------------------


def _swap_codes(folder: Path, field: str, a: str, b: str) -> None:
    """Renumber a choice: swap codes a and b in the dictionary and in the records."""
    rows = load(folder / DICT)
    col = rows[0].index("Choices, Calculations, OR Slider Labels")
    for r in rows[1:]:
        if r[0] == field:
            parts = [p.split(",", 1) for p in r[col].split(" | ")]
            swap = {a: b, b: a}
            r[col] = " | ".join(f"{swap.get(c.strip(), c.strip())},{label}" for c, label in parts)
    save(folder / DICT, rows)

    def change(header, rows):
        if f"{field}___{a}" in header:  # checkbox: the code is in the column name
            i, j = header.index(f"{field}___{a}"), header.index(f"{field}___{b}")
            header[i], header[j] = header[j], header[i]
            return
        i = header.index(field)
        for r in rows:
            r[i] = {a: b, b: a}.get(r[i], r[i])
    edit(folder, change)


def test_renumbered_dictionary_decodes_identically(tmp_path):
    plain, renumbered = tmp_path / "plain", tmp_path / "renumbered"
    deliver(plain, 1)
    deliver(renumbered, 1)
    for field, a, b in [("sexe", "1", "2"), ("presentation", "1", "2"), ("evt_type", "2", "4"),
                        ("deces_cause", "1", "9"), ("necrose", "0", "2"), ("meta_site", "1", "3"),
                        ("statut_r", "0", "1")]:
        _swap_codes(renumbered, field, a, b)
    before, after = read(plain), read(renumbered)
    assert errors(after).height == 0
    for table in before.frames:
        assert before.frames[table].equals(after.frames[table]), table


def test_code_absent_from_dictionary_is_an_error_query_and_the_row_stays(twin):
    folder, truth = twin

    def change(header, rows):
        base_rows(header, rows)[2][header.index("sexe")] = "7"
    edit(folder, change)
    result = read(folder)
    bad = queries(result, "unknown_code")
    assert bad.height == 1
    q = bad.row(0, named=True)
    assert (q["field"], q["value"], q["severity"], q["table_name"]) == ("sexe", "7", ERROR, "patient")
    patient = result.frames["patient"]
    assert patient.height == truth.patient.height
    assert patient.filter(pl.col("row_id") == q["row_id"])["sex"].to_list() == [None]


def test_unmappable_dictionary_label_stops_the_import_naming_field_and_label(twin):
    folder, _ = twin
    rows = load(folder / DICT)
    col = rows[0].index("Choices, Calculations, OR Slider Labels")
    for r in rows[1:]:
        if r[0] == "localisation":
            r[col] = r[col].replace("Tronc", "Abdomen")
    save(folder / DICT, rows)
    with pytest.raises(ImportFailure) as failure:
        read(folder)
    assert "localisation" in str(failure.value) and "Abdomen" in str(failure.value)
    assert failure.value.file == DICT


def test_yes_no_field_declared_as_dropdown_decodes_through_its_labels(twin):
    folder, truth = twin
    plain = read(folder).frames["tumour"]["pain"]
    rows = load(folder / DICT)
    for r in rows[1:]:
        if r[0] == "douleur":
            r[3], r[5] = "dropdown", "1, Oui | 0, Non"
    save(folder / DICT, rows)
    assert read(folder).frames["tumour"]["pain"].equals(plain)


def test_label_written_instead_of_code_is_decoded_with_a_warning(twin):
    folder, _ = twin

    def change(header, rows):
        base_rows(header, rows)[0][header.index("sexe")] = "Femme"
    edit(folder, change)
    result = read(folder)
    assert errors(result).height == 0
    assert queries(result, "label_instead_of_code", WARNING).height == 1
    assert result.frames["patient"]["sex"][0] == "female"


def test_stray_spaces_around_a_code_decode_with_a_warning(twin):
    folder, _ = twin

    def change(header, rows):
        base_rows(header, rows)[0][header.index("localisation")] = " 2 "
    edit(folder, change)
    result = read(folder)
    assert errors(result).height == 0
    assert queries(result, "value_normalised", WARNING).height == 1
    assert result.frames["tumour"]["site"][0] == "trunk"


def test_mitosis_class_decodes_to_the_canonical_class(twin):
    folder, _ = twin

    def change(header, rows):
        for r, code in zip(base_rows(header, rows), ["1", "2", "3"]):
            r[header.index("mitoses_classe")] = code
    edit(folder, change)
    assert read(folder).frames["tumour"]["mitosis_class"][:3].to_list() == ["0-9", "10-19", ">=20"]


def test_mitoses_written_as_an_upper_bound_are_kept_as_the_bound_and_flagged(twin):
    folder, _ = twin

    def change(header, rows):
        base_rows(header, rows)[0][header.index("mitoses_10hpf")] = "< 5"
    edit(folder, change)
    result = read(folder)
    t = result.frames["tumour"].row(0, named=True)
    assert (t["mitoses_per_10hpf"], t["mitoses_is_upper_bound"]) == (5, True)
    assert queries(result, "mitoses_upper_bound", WARNING).height == 1


def test_dates_bad_partial_and_non_iso(twin):
    folder, _ = twin

    def change(header, rows):
        base = base_rows(header, rows)
        i = header.index("date_diag")
        base[0][i], base[1][i], base[2][i] = "2014-02-31", "2014", "12/03/2014"
    edit(folder, change)
    result = read(folder)
    p = result.frames["patient"]
    assert p["diagnosis_date"][0] is None
    assert (p["diagnosis_date"][1], p["diagnosis_date_precision"][1]) == (dt.date(2014, 7, 1), "year")
    assert (p["diagnosis_date"][2], p["diagnosis_date_precision"][2]) == (dt.date(2014, 3, 12), "day")
    assert queries(result, "unparseable_date", ERROR).height == 1
    assert queries(result, "partial_date_imputed", WARNING).height == 1
    assert queries(result, "date_not_iso", WARNING).height == 1


# --- layout: repeating instruments, checkboxes, structure --------------------------------------


def _event_row(header, record, instance, date, kind, boxes=(), cause="", treatment=""):
    row = [""] * len(header)
    row[0] = record
    row[header.index("redcap_repeat_instrument")] = "evenement"
    row[header.index("redcap_repeat_instance")] = str(instance)
    row[header.index("evt_date")] = date
    row[header.index("evt_type")] = kind
    for h in header:
        if h.startswith("meta_site___"):
            row[header.index(h)] = "1" if h.split("___")[1] in boxes else "0"
    row[header.index("deces_cause")] = cause
    row[header.index("evt_traitement")] = treatment
    row[header.index("evenement_complete")] = "2"
    return row


def test_each_ticked_box_is_one_metastasis_row_on_that_date(twin):
    folder, _ = twin
    record = {}

    def change(header, rows):
        record["id"] = base_rows(header, rows)[0][0]
        rows.append(_event_row(header, record["id"], 99, "1999-01-05", "2", boxes=("1", "3", "7"), treatment="x"))
    edit(folder, change)
    result = read(folder)
    assert errors(result).height == 0
    ev = result.frames["event"].filter(pl.col("event_date") == dt.date(1999, 1, 5))
    assert ev["metastasis_site"].to_list() == ["bone", "lung", "colon"]
    assert ev["event_kind"].unique().to_list() == ["metastasis"]
    assert ev["source_row"].n_unique() == 1 and ev["row_id"].is_unique().all()
    assert ev["treatment"].to_list() == ["x"] * 3
    # numbered with the patient's other events, in date order: this one comes first
    assert ev["event_no"].to_list() == [1, 2, 3]


def test_ticked_site_on_a_non_metastasis_event_is_an_error(twin):
    folder, _ = twin

    def change(header, rows):
        rows.append(_event_row(header, base_rows(header, rows)[0][0], 98, "1999-01-05", "1", boxes=("2",)))
    edit(folder, change)
    result = read(folder)
    assert queries(result, "metastasis_site_without_metastasis", ERROR).height == 1
    ev = result.frames["event"].filter(pl.col("event_date") == dt.date(1999, 1, 5))
    assert ev["metastasis_site"].to_list() == [None] and ev["event_kind"].to_list() == ["local_recurrence"]


def test_last_news_of_a_dead_patient_gives_no_row_but_a_warning(twin):
    folder, truth = twin
    dead_key = truth.patient.filter(pl.col("vital_status") == "dead")["local_id"][0]

    def change(header, rows):
        record = next(r[0] for r in base_rows(header, rows) if r[header.index("ipp")] == dead_key)
        rows.append(_event_row(header, record, 97, "1999-01-05", "4"))
    edit(folder, change)
    result = read(folder)
    assert queries(result, "last_news_of_dead_patient", WARNING).height == 1
    assert result.frames["event"].height == truth.event.height
    mine = result.frames["patient"].filter(pl.col("patient_id") == pid(dead_key))
    assert mine["vital_status"].to_list() == ["dead"]


def test_repeating_forms_get_the_row_checks_of_every_centre(twin):
    """The REDCap forms are sheets of the engine: an undated event, a death cause on another kind of
    event and an undated surgery are the same queries, on the same cells, as in any centre."""
    folder, _ = twin
    where = {}

    def change(header, rows):
        record = base_rows(header, rows)[0][0]
        rows.append(_event_row(header, record, 96, "", "1"))
        rows.append(_event_row(header, record, 95, "1999-01-05", "1", cause="1"))
        surgery = next(r for r in rows if r[header.index("redcap_repeat_instrument")] == "chirurgie")
        surgery[header.index("chir_date")] = ""
        where.update(event=len(rows), cause=len(rows) + 1, surgery=rows.index(surgery) + 2)
    edit(folder, change)
    result = read(folder)
    asked = queries(result).select("row", "field", "rule").rows()
    assert (where["event"], "evt_date", "event_date_missing") in asked
    assert (where["cause"], "deces_cause", "death_cause_without_death") in asked
    assert (where["surgery"], "chir_date", "surgery_date_missing") in asked
    ev = result.frames["event"].filter(pl.col("event_date") == dt.date(1999, 1, 5))
    assert ev["death_cause"].to_list() == [None]


def test_repeat_row_without_base_row_is_an_orphan_error_and_still_read(twin):
    folder, truth = twin

    def change(header, rows):
        rows.append(_event_row(header, "9999", 1, "2010-05-05", "3", cause="1"))
    edit(folder, change)
    result = read(folder)
    orphan = queries(result, "orphan_row", ERROR)
    assert orphan.height == 1 and orphan["table_name"][0] == "event"
    ev = result.frames["event"]
    assert ev.height == truth.event.height + 1
    assert ev.filter(pl.col("row_id") == orphan["row_id"][0])["patient_id"].to_list() == [None]


def test_duplicate_patient_row_flags_the_copy_and_the_first_when_they_differ(twin):
    folder, truth = twin
    rows_before = len(load(folder / DATA))

    def change(header, rows):
        base = base_rows(header, rows)
        rows.append(list(base[0]))  # identical copy
        rows.append(list(base[1]))
        rows[-1][header.index("ki67")] = "77"  # differing copy
    edit(folder, change)
    result = read(folder)
    dup = queries(result, "duplicate_patient", ERROR)
    flagged = sorted(dup["row"].to_list())
    header, *rows = load(folder / DATA)
    first_rows = [i + 2 for i, r in enumerate(rows) if r[0] in (rows[-2][0], rows[-1][0]) and r[1] == ""]
    second = next(i + 2 for i, r in enumerate(rows) if r[0] == rows[-1][0] and r[1] == "")
    assert flagged == sorted([rows_before + 1, rows_before + 2, second])
    assert len(first_rows) == 4
    assert result.frames["patient"].height == truth.patient.height + 2  # never dropped
    ipps = set(truth.patient["local_id"].to_list())
    assert not ipps & set(dup["value"].drop_nulls().to_list())  # the IPP is masked


def test_incomplete_record_is_loaded_with_its_flag_and_a_warning(twin):
    folder, _ = twin

    def change(header, rows):
        for r in base_rows(header, rows):
            r[header.index("patient_complete")] = "2"
        base_rows(header, rows)[0][header.index("patient_complete")] = "0"
    edit(folder, change)
    result = read(folder)
    assert result.frames["patient"]["record_complete"].to_list()[:2] == [False, True]
    assert queries(result, "record_incomplete", WARNING).height == 1


def test_first_column_is_the_record_id_whatever_its_name(twin):
    folder, _ = twin
    before = read(folder).frames

    def change(header, rows):
        header[0] = "study_id"
    edit(folder, change)
    rows = load(folder / DICT)
    rows[1][0] = "study_id"
    save(folder / DICT, rows)
    result = read(folder)
    assert errors(result).height == 0 and queries(result, "unknown_column").height == 0
    for table in before:
        assert before[table].equals(result.frames[table])


def test_missing_required_column_stops_the_import_naming_file_and_column(twin):
    folder, _ = twin

    def change(header, rows):
        i = header.index("date_diag")
        for r in [header, *rows]:
            del r[i]
    edit(folder, change)
    with pytest.raises(ImportFailure) as failure:
        read(folder)
    assert DATA in str(failure.value) and "date_diag" in str(failure.value)


def test_unknown_extra_column_is_a_warning_and_ignored(twin):
    folder, _ = twin
    before = read(folder).frames

    def change(header, rows):
        header.append("commentaire_libre")
        for r in rows:
            r.append("bla")
    edit(folder, change)
    result = read(folder)
    unknown = queries(result, "unknown_column", WARNING)
    assert unknown["field"].to_list() == ["commentaire_libre"]
    for table in before:
        assert before[table].equals(result.frames[table])


def test_checkbox_column_for_a_code_absent_from_the_dictionary_is_reported(twin):
    folder, _ = twin

    def change(header, rows):
        header.append("meta_site___8")
        for r in rows:
            r.append("")
        rows.append(_event_row(header, base_rows(header, rows)[0][0], 96, "1999-01-05", "2", boxes=("8",)))
    edit(folder, change)
    result = read(folder)
    assert queries(result, "checkbox_code_not_in_dictionary", WARNING).height == 1
    assert queries(result, "unknown_code", ERROR)["field"].to_list() == ["meta_site___8"]


# --- hostile files -----------------------------------------------------------------------------


def _fails(folder: Path, *words: str) -> str:
    with pytest.raises(ImportFailure) as failure:
        read(folder)
    message = str(failure.value)
    for w in words:
        assert w in message, message
    assert "\n" not in message
    return message


def test_empty_records_file_fails(twin):
    folder, _ = twin
    (folder / DATA).write_bytes(b"")
    _fails(folder, DATA, "vide")


def test_truncated_records_file_fails(twin):
    folder, _ = twin
    data = (folder / DATA).read_bytes()
    (folder / DATA).write_bytes(data[: len(data) * 2 // 3])
    _fails(folder, DATA, "tronqué")


def test_binary_garbage_under_the_expected_name_fails(twin):
    folder, _ = twin
    (folder / DATA).write_bytes(np.random.default_rng(0).bytes(20_000))
    _fails(folder, DATA)
    (folder / DICT).write_bytes(np.random.default_rng(1).bytes(5_000))
    _fails(folder, DICT)


def test_header_only_records_file_fails(twin):
    folder, _ = twin
    save(folder / DATA, load(folder / DATA)[:1])
    _fails(folder, DATA, "en-tête seul")


def test_duplicated_header_fails(twin):
    folder, _ = twin

    def change(header, rows):
        header[header.index("ki67")] = "sexe"
    edit(folder, change)
    _fails(folder, DATA, "sexe")


def test_fifty_megabyte_single_line_fails_quickly(twin):
    folder, _ = twin
    (folder / DATA).write_bytes(b"record_id," + b"x," * (25 * 1024 * 1024))
    _fails(folder, DATA)


def test_fifty_megabyte_data_line_yields_queries_not_a_crash(twin):
    folder, _ = twin
    with open(folder / DATA, "ab") as handle:
        handle.write(b"y" * (50 * 1024 * 1024) + b"\n")
    result = read(folder)
    assert queries(result, "missing_patient_id", ERROR).height >= 1
    assert all(len(q.value or "") < 1000 and len(q.message) < 1000 for q in result.queries)


def test_records_file_in_windows_1252_is_read_with_a_wrong_encoding_warning(twin):
    folder, _ = twin
    before = read(folder).frames

    def change(header, rows):
        rows.append(_event_row(header, base_rows(header, rows)[0][0], 95, "1999-01-05", "1",
                               treatment="exérèse élargie"))
    edit(folder, change)
    expected = read(folder).frames["event"]
    text = (folder / DATA).read_text(encoding="utf-8")
    (folder / DATA).write_bytes(text.encode("cp1252"))
    result = read(folder)
    assert queries(result, "wrong_encoding", WARNING).height == 1
    assert errors(result).height == 0
    assert result.frames["event"].equals(expected)
    assert "exérèse élargie" in result.frames["event"]["treatment"].to_list()
    assert result.frames["patient"].equals(before["patient"])


def test_dictionary_in_windows_1252_still_decodes_accented_labels(twin):
    folder, _ = twin
    before = read(folder).frames
    # a cp1252 dictionary cannot hold "≥": the centre would write ">="
    text = (folder / DICT).read_text(encoding="utf-8").replace("≥", ">=")
    (folder / DICT).write_bytes(text.encode("cp1252"))
    result = read(folder)
    assert queries(result, "wrong_encoding", WARNING).height == 1
    assert result.frames["tumour"].equals(before["tumour"])


def test_missing_files_fail(tmp_path):
    deliver(tmp_path)
    (tmp_path / DICT).unlink()
    _fails(tmp_path, DICT)
    deliver(tmp_path)
    (tmp_path / DATA).unlink()
    _fails(tmp_path, "CLMSLYON_DATA_")


def test_utf8_byte_order_mark_is_accepted(twin):
    folder, _ = twin
    before = read(folder)
    (folder / DATA).write_bytes(b"\xef\xbb\xbf" + (folder / DATA).read_bytes())
    after = read(folder)
    assert errors(after).height == 0 and queries(after, "unknown_column").height == 0
    assert after.frames["patient"].equals(before.frames["patient"])


# --- any text in any cell ----------------------------------------------------------------------

_FIELDS = ["sexe", "localisation", "taille_mm", "grade_fnclcc", "mitoses_10hpf", "mitoses_classe", "necrose",
           "date_diag", "date_naissance", "immunodep", "ki67", "patient_complete", "redcap_repeat_instance"]
_EVENT_FIELDS = ["evt_date", "evt_type", "meta_site___1", "meta_site___7", "deces_cause", "record_id",
                 "redcap_repeat_instrument"]
_SURGERY_FIELDS = ["chir_date", "chir_type", "marge_rcp_mm", "marge_clin_mm", "marge_histo_mm", "statut_r",
                   "rt_adj", "redcap_repeat_instance"]
_TEXT = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
    st.sampled_from(["", " ", "1", "0", "2", "9", "-1", "1.5", "1,5", "nan", "inf", "1e400", "< 5",
                     "2014-02-30", "2014", "03/2014", "12/03/2014", "NA", "Homme", "≥ 20", '"', ",", "\n"]),
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lyon_pristine")
    deliver(folder)
    return folder


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patient=st.fixed_dictionaries({f: _TEXT for f in _FIELDS}),
       event=st.fixed_dictionaries({f: _TEXT for f in _EVENT_FIELDS}),
       surgery=st.fixed_dictionaries({f: _TEXT for f in _SURGERY_FIELDS}))
def test_any_text_in_coded_number_or_date_cells_yields_queries_never_an_exception(tmp_path_factory, pristine,
                                                                                   patient, event, surgery):
    folder = tmp_path_factory.mktemp("lyon_any")
    for name in (DICT, DATA):
        (folder / name).write_bytes((pristine / name).read_bytes())

    def change(header, rows):
        base = base_rows(header, rows)[0]
        for field, value in patient.items():
            base[header.index(field)] = value
        ev = next(r for r in rows if r[header.index("redcap_repeat_instrument")] == "evenement")
        for field, value in event.items():
            ev[header.index(field)] = value
        op = next(r for r in rows if r[header.index("redcap_repeat_instrument")] == "chirurgie")
        for field, value in surgery.items():
            op[header.index(field)] = value
    edit(folder, change)
    result = read(folder)  # anything but ImportFailure/queries is a bug
    for table, frame in result.frames.items():
        assert frame["row_id"].is_unique().all(), table
    assert result.frames["patient"].height >= 18


# --- the generator's planted defects -----------------------------------------------------------


def test_every_planted_format_defect_is_reported_at_its_row_and_column(tmp_path):
    from clms_etl.synth.generate import write_centre

    truth = build_twin(3).for_centre("lyon")
    _, planted = write_centre(tmp_path, "lyon", "lyon", truth, 3, 1.0, DELIVERY)
    result = read(tmp_path / "lyon" / DELIVERY.isoformat())
    q = result.queries_frame()
    expected_rule = {"unknown_code": "unknown_code", "stray_spaces_case": "value_normalised",
                     "unparseable_date": "unparseable_date", "duplicate_patient_row": "duplicate_patient"}
    checked = 0
    for d in planted:
        if d.kind not in expected_rule:
            continue  # clinical defects and the class/count contradiction are the validation layer's
        hit = q.filter((pl.col("row") == d.row) & (pl.col("field") == d.column)
                       & (pl.col("rule") == expected_rule[d.kind]))
        assert hit.height == 1, (d, q.filter(pl.col("row") == d.row).to_dicts())
        checked += 1
    assert checked >= 4
    # and nothing else is an error
    rows = {d.row for d in planted if d.kind in expected_rule}
    assert set(errors(result)["row"].to_list()) <= rows


def test_optional_class_column_absent_from_the_dictionary_is_ignored_with_a_warning(twin):
    folder, _ = twin
    rows = [r for r in load(folder / DICT) if r[0] != "mitoses_classe"]
    save(folder / DICT, rows)
    result = read(folder)
    assert errors(result).height == 0
    assert queries(result, "field_not_in_dictionary", WARNING)["field"].to_list() == ["mitoses_classe"]
    assert result.frames["tumour"]["mitosis_class"].null_count() == result.frames["tumour"].height


def test_optional_class_column_may_be_absent_altogether(twin):
    folder, truth = twin

    def change(header, rows):
        i = header.index("mitoses_classe")
        for r in [header, *rows]:
            del r[i]
    edit(folder, change)
    result = read(folder)
    assert errors(result).height == 0 and result.frames["tumour"].height == truth.tumour.height


def test_dictionary_defining_a_variable_twice_stops_the_import(twin):
    folder, _ = twin
    rows = load(folder / DICT)
    save(folder / DICT, rows + [rows[6]])
    _fails(folder, DICT, rows[6][0])


def test_rows_in_any_order_attach_to_their_record(tmp_path):
    """REDCap writes a record's repeat rows after its base row; a shuffled export reads the same."""
    plain, shuffled = tmp_path / "plain", tmp_path / "shuffled"
    deliver(plain, 1)
    deliver(shuffled, 1)

    def change(header, rows):
        order = np.random.default_rng(5).permutation(len(rows))
        rows[:] = [rows[i] for i in order]
    edit(shuffled, change)
    before, after = read(plain), read(shuffled)
    assert errors(after).height == 0
    keys = {"patient": ["patient_id"], "tumour": ["patient_id"], "surgery": ["patient_id", "surgery_no"],
            "event": ["patient_id", "event_no"]}
    for table, key in keys.items():
        a = before.frames[table].drop("row_id", "source_row").sort(key)
        b = after.frames[table].drop("row_id", "source_row").sort(key)
        assert a.equals(b), table


def test_record_id_that_is_the_hospital_number_is_masked_in_queries(twin):
    folder, truth = twin

    def change(header, rows):
        ipp = header.index("ipp")
        for r in rows:  # the project is keyed on the IPP: record id = hospital number
            if r[ipp]:
                record = r[0]
                owner = r[ipp]
                for other in rows:
                    if other[0] == record:
                        other[0] = owner
        rows.append(list(base_rows(header, rows)[0]))  # a duplicate to make a query quote the record id
    edit(folder, change)
    rows = load(folder / DICT)
    rows[1][rows[0].index("Identifier?")] = "y"
    save(folder / DICT, rows)
    result = read(folder)
    dup = queries(result, "duplicate_patient")
    assert dup.height == 1 and dup["value"][0] == "<identifiant masqué>"
    ipps = set(truth.patient["local_id"].to_list())
    assert not any(ipp in (q.value or "") + q.message for q in result.queries for ipp in ipps)
