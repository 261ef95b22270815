"""Canonical validation: each rule fires with its severity on a bad row and nowhere else, the
split into accepted / quarantined rows adds up, and the query workbook reads back in Excel."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from clms_etl.query_list import write_query_workbook
from clms_etl.data_queries import DataQuery
from clms_etl.readers.base import ReadResult
from clms_etl.rules import ERROR, WARNING
from clms_etl.validate import validate
from clms_etl import model, rules
from validations.canonical import RULES, SCHEMAS, check_rule

D = dt.date
DELIVERY = D(2026, 11, 23)
SHEETS = {"patient": "Patients", "tumour": "Patients", "surgery": "Chirurgies", "event": "Évènements"}


def frame(table: str, rows: list[dict]) -> pl.DataFrame:
    """Canonical frame of ``table`` from row dicts (missing keys -> null)."""
    schema = model.TABLES[table]
    return pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)


def _row(table: str, row_id: str, source_row: int, **values) -> dict:
    return {"row_id": row_id, "source_file": "export_dermato_nice.xlsx", "source_sheet": SHEETS[table],
            "source_row": source_row, **values}


def clean_rows() -> dict[str, list[dict]]:
    """Two coherent patients: P1 alive with a relapse and a metastasis, P2 dead of cLMS."""
    return {
        "patient": [
            _row("patient", "pat1", 2, patient_id="P1", centre="nice", sex="female", age_at_diagnosis_years=62,
                 immunosuppression=False, diagnosis_date=D(2015, 3, 2), diagnosis_date_precision="day",
                 vital_status="alive", record_complete=True),
            _row("patient", "pat2", 3, patient_id="P2", centre="nice", sex="male", age_at_diagnosis_years=71,
                 immunosuppression=False, diagnosis_date=D(2016, 5, 10), diagnosis_date_precision="day",
                 vital_status="dead", record_complete=True),
        ],
        "tumour": [
            _row("tumour", "tum1", 2, patient_id="P1", site="trunk", size_cm=1.5, presentation="nodular",
                 pain=False, on_scar=False, consultation_delay_months=6.0, fnclcc_grade=1,
                 differentiation_score=1, mitoses_per_10hpf=4, mitoses_is_upper_bound=False, mitosis_class="0-9",
                 necrosis_score=0, invasion="dermal", histological_ulceration=False, ki67_percent=10.0),
            _row("tumour", "tum2", 3, patient_id="P2", site="lower_limb", size_cm=2.5, presentation="ulcerated",
                 consultation_delay_months=12.0, fnclcc_grade=3, differentiation_score=3, mitoses_per_10hpf=25,
                 necrosis_score=1, invasion="dermo_hypodermal", ki67_percent=40.0),
        ],
        "surgery": [
            _row("surgery", "sur1", 2, patient_id="P1", surgery_no=1, surgery_date=D(2015, 3, 20),
                 surgery_date_precision="day", surgery_kind="primary_excision", proposed_margin_cm=1.0,
                 clinical_margin_cm=1.0, histological_margin_cm=0.5, resection_status="R1",
                 adjuvant_radiotherapy=False),
            _row("surgery", "sur2", 3, patient_id="P1", surgery_no=2, surgery_date=D(2015, 4, 20),
                 surgery_date_precision="day", surgery_kind="re_excision", resection_status="R0"),
            _row("surgery", "sur3", 4, patient_id="P2", surgery_no=1, surgery_date=D(2016, 5, 20),
                 surgery_date_precision="day", surgery_kind="primary_excision", clinical_margin_cm=2.0,
                 histological_margin_cm=1.2, resection_status="R0"),
        ],
        "event": [
            _row("event", "evt1", 2, patient_id="P1", event_no=1, event_kind="local_recurrence",
                 event_date=D(2017, 6, 1), event_date_precision="day", treatment="reprise chirurgicale"),
            _row("event", "evt2", 3, patient_id="P1", event_no=2, event_kind="metastasis",
                 event_date=D(2018, 1, 10), event_date_precision="day", metastasis_site="lung"),
            _row("event", "evt3", 4, patient_id="P1", event_no=3, event_kind="last_news",
                 event_date=D(2020, 1, 15), event_date_precision="day"),
            _row("event", "evt4", 5, patient_id="P2", event_no=1, event_kind="local_recurrence",
                 event_date=D(2017, 9, 1), event_date_precision="day"),
            _row("event", "evt5", 6, patient_id="P2", event_no=2, event_kind="death",
                 event_date=D(2019, 5, 5), event_date_precision="day", death_cause="clms"),
        ],
    }


def read_result(rows: dict[str, list[dict]], queries: list[DataQuery] | None = None) -> ReadResult:
    frames = {table: frame(table, table_rows) for table, table_rows in rows.items()}
    return ReadResult("nice", DELIVERY, frames, list(queries or []), [])


def changed(changes: dict[str, dict[str, object]] | None = None, extra: dict[str, list[dict]] | None = None):
    """Clean rows with some fields of some rows (by row_id) changed, and extra rows appended."""
    rows = clean_rows()
    for table, table_rows in rows.items():
        for r in table_rows:
            r.update((changes or {}).get(r["row_id"], {}))
        table_rows.extend((extra or {}).get(table, []))
    return rows


def copy_of(table: str, row_id: str, new_id: str, source_row: int, **values) -> dict:
    original = next(r for r in clean_rows()[table] if r["row_id"] == row_id)
    return {**copy.deepcopy(original), "row_id": new_id, "source_row": source_row, **values}


def hits(validated, rule: str) -> pl.DataFrame:
    return validated.queries.filter(pl.col("rule") == rule)


# --- the clean delivery -------------------------------------------------------------------------

def test_clean_delivery_raises_no_query_and_accepts_every_row():
    validated = validate(read_result(clean_rows()))
    assert validated.queries.is_empty(), validated.queries
    for table, rows in clean_rows().items():
        assert validated.accepted[table].height == len(rows)
        assert validated.quarantined[table].is_empty()
        assert not validated.accepted[table]["has_warning"].any()
    assert validated.balanced


# --- one case per rule ----------------------------------------------------------------------------

@dataclass
class Case:
    rule: str
    rows: list[str]  # row_ids where the rule must fire, and only there
    changes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


CASES = {
    "missing_patient_pseudonym_is_an_error": Case(
        "required_value_missing", ["tum1"], {"tum1": {"patient_id": None}}),
    "event_without_kind_is_an_error": Case(
        "required_value_missing", ["evt1"], {"evt1": {"event_kind": None}}),
    "sex_outside_vocabulary_is_an_error": Case(
        "code_not_in_vocabulary", ["pat1"], {"pat1": {"sex": "F"}}),
    "metastatic_site_outside_vocabulary_is_an_error": Case(
        "code_not_in_vocabulary", ["evt2"], {"evt2": {"metastasis_site": "poumon"}}),
    "date_precision_outside_vocabulary_is_an_error": Case(
        "code_not_in_vocabulary", ["sur1"], {"sur1": {"surgery_date_precision": "week"}}),
    "differentiation_score_4_is_an_error": Case(
        "score_not_in_set", ["tum1"], {"tum1": {"differentiation_score": 4}}),
    "necrosis_score_3_is_an_error": Case(
        "score_not_in_set", ["tum2"], {"tum2": {"necrosis_score": 3}}),
    "second_copy_of_an_operation_is_an_error_the_first_is_kept": Case(
        "duplicate_row", ["sur9"], extra={"surgery": [copy_of("surgery", "sur2", "sur9", 9, surgery_no=3)]}),
    "event_after_the_delivery_is_an_error": Case(
        "date_in_future", ["evt3"], {"evt3": {"event_date": D(2027, 3, 1)}}),
    "partial_date_just_after_the_delivery_is_a_warning": Case(
        "date_in_future_imprecise", ["evt3"], {"evt3": {"event_date": D(2026, 12, 15), "event_date_precision": "month"}}),
    "diagnosis_after_the_delivery_is_an_error": Case(
        "date_in_future", ["pat2"], {"pat2": {"diagnosis_date": D(2027, 1, 5)}}),
    "row_of_an_unknown_patient_is_an_error": Case(
        "orphan_row", ["evt9"], extra={"event": [copy_of("event", "evt3", "evt9", 9, patient_id="P9")]}),
    "rows_of_a_quarantined_patient_are_quarantined_too": Case(
        "parent_quarantined", ["tum1", "sur1", "sur2", "evt1", "evt2", "evt3"], {"pat1": {"age_at_diagnosis_years": -2}}),
    "patient_without_diagnosis_date_is_an_error": Case(
        "diagnosis_date_missing", ["pat1"], {"pat1": {"diagnosis_date": None, "diagnosis_date_precision": None}}),
    "negative_age_is_an_error": Case(
        "birth_after_diagnosis", ["pat1"], {"pat1": {"age_at_diagnosis_years": -1}}),
    "age_above_120_is_an_error": Case(
        "age_out_of_range", ["pat2"], {"pat2": {"age_at_diagnosis_years": 131}}),
    "child_is_a_warning": Case(
        "age_under_18", ["pat1"], {"pat1": {"age_at_diagnosis_years": 15}}),
    "two_different_rows_for_one_pseudonym_are_errors": Case(
        "patient_rows_conflict", ["pat1", "pat9"], extra={"patient": [copy_of("patient", "pat1", "pat9", 9, sex="male")]}),
    "dead_patient_without_death_event_is_a_warning": Case(
        "vital_status_inconsistent", ["pat1"], {"pat1": {"vital_status": "dead"}}),
    "tumour_of_35_cm_is_an_error": Case(
        "size_out_of_range", ["tum1"], {"tum1": {"size_cm": 35.0}}),
    "tumour_of_0_cm_is_an_error": Case(
        "size_out_of_range", ["tum2"], {"tum2": {"size_cm": 0.0}}),
    "consultation_delay_of_700_months_is_an_error": Case(
        "delay_out_of_range", ["tum1"], {"tum1": {"consultation_delay_months": 700.0}}),
    "ki67_above_100_is_an_error": Case(
        "ki67_out_of_range", ["tum1"], {"tum1": {"ki67_percent": 120.0}}),
    "negative_mitotic_count_is_an_error": Case(
        "mitoses_negative", ["tum2"], {"tum2": {"mitoses_per_10hpf": -3}}),
    "mitotic_count_of_250_is_an_error": Case(
        "mitoses_implausible", ["tum2"], {"tum2": {"mitoses_per_10hpf": 250}}),
    "mitosis_class_contradicting_the_count_is_a_warning": Case(
        "mitoses_class_mismatch", ["tum1"], {"tum1": {"mitoses_per_10hpf": 15}}),
    "grade_contradicting_its_components_is_a_warning": Case(
        "grade_inconsistent", ["tum1"], {"tum1": {"fnclcc_grade": 3}}),
    "negative_clinical_margin_is_an_error": Case(
        "margin_negative", ["sur1"], {"sur1": {"clinical_margin_cm": -0.5, "histological_margin_cm": None}}),
    "proposed_margin_of_12_cm_is_an_error": Case(
        "margin_out_of_range", ["sur3"], {"sur3": {"proposed_margin_cm": 12.0}}),
    "histological_margin_wider_than_clinical_is_an_error": Case(
        "histological_exceeds_clinical", ["sur3"], {"sur3": {"histological_margin_cm": 3.0}}),
    "undated_operation_is_a_warning": Case(
        "surgery_date_missing", ["sur2"], {"sur2": {"surgery_date": None, "surgery_date_precision": None}}),
    "operation_a_year_before_diagnosis_is_an_error": Case(
        "surgery_before_diagnosis", ["sur1"], {"sur1": {"surgery_date": D(2014, 1, 10)}}),
    "month_dated_operation_two_weeks_before_diagnosis_is_a_warning": Case(
        "surgery_before_diagnosis_imprecise", ["sur1"],
        {"sur1": {"surgery_date": D(2015, 2, 15), "surgery_date_precision": "month"}}),
    "operation_after_last_news_is_an_error": Case(
        "surgery_after_last_news", ["sur2"], {"sur2": {"surgery_date": D(2021, 1, 1)}}),
    "operation_just_after_month_dated_last_news_is_a_warning": Case(
        "surgery_after_last_news_imprecise", ["sur2"],
        {"sur2": {"surgery_date": D(2020, 2, 1)}, "evt3": {"event_date_precision": "month"}}),
    "operation_after_death_is_an_error": Case(
        "surgery_after_death", ["sur3"], {"sur3": {"surgery_date": D(2019, 9, 1)}}),
    "operation_just_after_year_dated_death_is_a_warning": Case(
        "surgery_after_death_imprecise", ["sur3"],
        {"sur3": {"surgery_date": D(2019, 6, 1)}, "evt5": {"event_date_precision": "year"}}),
    "undated_event_is_an_error": Case(
        "event_date_missing", ["evt1"], {"evt1": {"event_date": None, "event_date_precision": None}}),
    "death_before_diagnosis_is_an_error": Case(
        "event_before_diagnosis", ["evt5"], {"evt5": {"event_date": D(2015, 11, 2)}}),
    "month_dated_relapse_two_weeks_before_diagnosis_is_a_warning": Case(
        "event_before_diagnosis_imprecise", ["evt1"],
        {"evt1": {"event_date": D(2015, 2, 15), "event_date_precision": "month"}}),
    "relapse_after_last_news_is_an_error": Case(
        "event_after_last_news", ["evt1"], {"evt1": {"event_date": D(2020, 9, 1)}}),
    "month_dated_relapse_just_after_last_news_is_a_warning": Case(
        "event_after_last_news_imprecise", ["evt1"],
        {"evt1": {"event_date": D(2020, 2, 1), "event_date_precision": "month"}}),
    "relapse_after_death_is_an_error": Case(
        "event_after_death", ["evt4"], {"evt4": {"event_date": D(2019, 8, 1)}}),
    "month_dated_relapse_just_after_death_is_a_warning": Case(
        "event_after_death_imprecise", ["evt4"],
        {"evt4": {"event_date": D(2019, 5, 15), "event_date_precision": "month"}}),
    "two_different_deaths_are_errors": Case(
        "multiple_deaths", ["evt5", "evt9"],
        extra={"event": [copy_of("event", "evt5", "evt9", 9, event_date=D(2019, 5, 1), event_no=3)]}),
    "metastasis_without_site_is_an_error": Case(
        "metastasis_without_site", ["evt2"], {"evt2": {"metastasis_site": None}}),
    "metastatic_site_on_a_relapse_is_an_error": Case(
        "metastasis_site_without_metastasis", ["evt1"], {"evt1": {"metastasis_site": "skin"}}),
    "death_cause_on_last_news_is_an_error": Case(
        "death_cause_without_death", ["evt3"], {"evt3": {"death_cause": "clms"}}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule_fires_with_its_severity_on_the_bad_row_only(case: Case):
    validated = validate(read_result(changed(case.changes, case.extra)))
    found = hits(validated, case.rule)
    assert sorted(found["row_id"].to_list()) == sorted(case.rows), validated.queries
    severity = rules.severity(case.rule)
    assert set(found["severity"]) == {severity}
    assert found["message"].str.len_chars().min() > 20 and not found["message"].str.contains(r"\{").any()
    for table in set(found["table_name"]):
        mine = set(found.filter(pl.col("table_name") == table)["row_id"])
        quarantined = validated.quarantined[table].filter(pl.col("row_id").is_in(list(mine)))
        accepted = validated.accepted[table].filter(pl.col("row_id").is_in(list(mine)))
        if severity == ERROR:
            assert quarantined.height == len(mine)
            assert all(case.rule in reasons for reasons in quarantined["quarantine_reasons"])
        else:
            assert accepted.height == len(mine) and accepted["has_warning"].all()
    assert validated.balanced


def test_every_rule_has_a_case_and_every_check_names_a_registered_rule():
    assert {c.rule for c in CASES.values()} == set(RULES)
    for table, schema in SCHEMAS.items():
        checks = [*schema.checks, *(c for column in schema.columns.values() for c in column.checks)]
        for check in checks:
            rule, _ = check_rule(check.error)
            assert rule in RULES, check.error
            assert table in RULES[rule].table, (table, rule)
    assert {rules.severity(r) for r in RULES} == {ERROR, WARNING}


def test_every_rule_is_documented_in_the_readme():
    readme = (Path(__file__).parents[1] / "validations" / "README.md").read_text(encoding="utf-8")
    assert [rule for rule in RULES if f"| `{rule}` |" not in readme] == []


# --- messages and fields ------------------------------------------------------------------------

def test_query_points_at_the_cell_with_a_french_message():
    validated = validate(read_result(changed({"sur3": {"clinical_margin_cm": 2.0, "histological_margin_cm": 3.0}})))
    query = hits(validated, "histological_exceeds_clinical").row(0, named=True)
    assert query["centre"] == "nice" and query["delivery_date"] == DELIVERY
    assert (query["file"], query["sheet"], query["row"]) == ("export_dermato_nice.xlsx", "Chirurgies", 4)
    assert (query["table_name"], query["row_id"], query["patient_id"]) == ("surgery", "sur3", "P2")
    assert query["field"] == "Marge histologique (cm)" and query["value"] == "3,0 cm"  # the unit: Nice writes mm
    assert query["message"] == "Marge histologique (3,0 cm) supérieure à la marge clinique (2,0 cm)."


def test_query_names_the_file_column_when_the_reader_recorded_it():
    result = read_result(changed({"sur3": {"histological_margin_cm": 3.0}}))
    validated = validate(result, source_columns={"surgery": {"histological_margin_cm": "Marge histologique (mm)"}})
    assert hits(validated, "histological_exceeds_clinical")["field"].to_list() == ["Marge histologique (mm)"]


def test_partial_dates_are_shown_at_their_precision():
    validated = validate(read_result(changed({"evt1": {"event_date": D(2020, 2, 15), "event_date_precision": "month"}})))
    query = hits(validated, "event_after_last_news_imprecise").row(0, named=True)
    assert query["value"] == "02/2020"
    assert "« Récidive locale » (02/2020)" in query["message"] and "(15/01/2020)" in query["message"]


# --- imputed dates ------------------------------------------------------------------------------

def test_violation_beyond_the_partial_dates_uncertainty_stays_an_error():
    # 46 days after the last news: more than a month-precision date can be off.
    validated = validate(read_result(changed({"evt1": {"event_date": D(2020, 3, 1), "event_date_precision": "month"}})))
    assert hits(validated, "event_after_last_news")["row_id"].to_list() == ["evt1"]
    assert hits(validated, "event_after_last_news_imprecise").is_empty()


def test_year_precision_tolerates_up_to_a_year():
    validated = validate(read_result(changed({"evt1": {"event_date": D(2014, 7, 1), "event_date_precision": "year"}})))
    assert hits(validated, "event_before_diagnosis_imprecise")["severity"].to_list() == [WARNING]
    assert "evt1" in validated.accepted["event"]["row_id"].to_list()


def test_exact_dates_get_no_tolerance():
    validated = validate(read_result(changed({"evt1": {"event_date": D(2015, 3, 1)}})))  # diagnosis - 1 day
    assert hits(validated, "event_before_diagnosis")["severity"].to_list() == [ERROR]


def test_death_dated_before_diagnosis_is_not_a_reference_for_the_other_events():
    validated = validate(read_result(changed({"evt5": {"event_date": D(2015, 11, 2)}})))
    assert hits(validated, "event_before_diagnosis")["row_id"].to_list() == ["evt5"]
    assert validated.queries.height == 1, validated.queries


def test_death_on_the_last_news_date_is_not_after_last_news():
    extra = {"event": [_row("event", "evt9", 9, patient_id="P2", event_no=3, event_kind="last_news",
                            event_date=D(2019, 5, 5), event_date_precision="day")]}
    validated = validate(read_result(changed(extra=extra)))
    assert validated.queries.is_empty(), validated.queries


# --- FNCLCC grade -------------------------------------------------------------------------------

def _grades(**tumour) -> dict:
    rows = changed({"tum1": tumour})
    validated = validate(read_result(rows))
    row = pl.concat([validated.accepted["tumour"].drop("has_warning"),
                     validated.quarantined["tumour"].drop("quarantine_reasons")]).filter(pl.col("row_id") == "tum1")
    return {**row.row(0, named=True), "queries": hits(validated, "grade_inconsistent").height}


def test_grade_matching_its_components_is_consistent():
    got = _grades()
    assert (got["fnclcc_grade_computed"], got["grade_check"], got["queries"]) == (1, "consistent", 0)


def test_grade_contradicting_its_components_keeps_the_recorded_grade_and_is_flagged():
    got = _grades(fnclcc_grade=2)
    assert (got["fnclcc_grade"], got["fnclcc_grade_computed"], got["grade_check"], got["queries"]) == (2, 1, "inconsistent", 1)


def test_grade_without_all_components_is_unverifiable_without_query():
    got = _grades(necrosis_score=None)
    assert (got["fnclcc_grade_computed"], got["grade_check"], got["queries"]) == (None, "unverifiable", 0)


def test_unknown_mitotic_count_and_class_make_the_grade_unverifiable():
    got = _grades(mitoses_per_10hpf=None, mitosis_class=None)
    assert (got["fnclcc_grade_computed"], got["grade_check"], got["queries"]) == (None, "unverifiable", 0)


def test_no_grade_leaves_the_check_empty_but_still_computes_the_grade():
    got = _grades(fnclcc_grade=None, differentiation_score=2, mitoses_per_10hpf=12, mitosis_class=None, necrosis_score=1)
    assert (got["fnclcc_grade_computed"], got["grade_check"]) == (2, None)  # 2 + 2 + 1 = 5


def test_missing_count_is_graded_from_the_recorded_class():
    got = _grades(mitoses_per_10hpf=None, mitosis_class=">=20", fnclcc_grade=2)  # 1 + 3 + 0 = 4
    assert (got["fnclcc_grade_computed"], got["grade_check"]) == (2, "consistent")


def test_upper_bound_below_10_scores_1_and_matches_class_0_9():
    rows = changed({"tum1": {"mitoses_per_10hpf": 5, "mitoses_is_upper_bound": True, "mitosis_class": "0-9"}})
    validated = validate(read_result(rows))
    assert validated.queries.is_empty(), validated.queries
    assert validated.accepted["tumour"].filter(pl.col("row_id") == "tum1")["grade_check"].to_list() == ["consistent"]


def test_upper_bound_spanning_two_scores_is_unverifiable():
    got = _grades(mitoses_per_10hpf=15, mitoses_is_upper_bound=True, mitosis_class=None)
    assert (got["fnclcc_grade_computed"], got["grade_check"]) == (None, "unverifiable")


# --- split, cascade, duplicates, accounting -----------------------------------------------------

def test_quarantined_patient_cascades_and_every_count_adds_up():
    validated = validate(read_result(changed({"pat1": {"diagnosis_date": None}})))
    counts = {r["table"]: r for r in validated.accounting.iter_rows(named=True)}
    expected = {"patient": (2, 1, 1), "tumour": (2, 1, 1), "surgery": (3, 1, 2), "event": (5, 2, 3)}
    for table, (read, accepted, quarantined) in expected.items():
        row = counts[table]
        assert (row["rows_read"], row["rows_accepted"], row["rows_quarantined"]) == (read, accepted, quarantined)
    for table in ("tumour", "surgery", "event"):
        cascaded = hits(validated, "parent_quarantined").filter(pl.col("table_name") == table)
        assert cascaded.height == validated.quarantined[table].height
        assert set(validated.quarantined[table]["patient_id"]) == {"P1"}
        assert "Patients, ligne 2" in cascaded["message"][0] and "diagnosis_date_missing" in cascaded["message"][0]
    assert validated.balanced
    validated.assert_balanced()


def test_child_error_does_not_quarantine_its_patient():
    validated = validate(read_result(changed({"sur1": {"clinical_margin_cm": 9.0, "histological_margin_cm": None}})))
    assert validated.quarantined["surgery"]["row_id"].to_list() == ["sur1"]
    assert validated.quarantined["patient"].is_empty() and hits(validated, "parent_quarantined").is_empty()


def test_exact_copy_of_a_patient_row_keeps_the_first_and_its_children():
    rows = changed(extra={"patient": [copy_of("patient", "pat1", "pat9", 9)]})
    validated = validate(read_result(rows))
    assert hits(validated, "duplicate_row")["row_id"].to_list() == ["pat9"]
    assert "ligne 2" in hits(validated, "duplicate_row")["message"][0]
    assert validated.quarantined["patient"]["row_id"].to_list() == ["pat9"]
    assert hits(validated, "parent_quarantined").is_empty() and hits(validated, "patient_rows_conflict").is_empty()
    assert validated.accepted["tumour"].height == 2


def test_reader_error_quarantines_the_row_and_reader_warning_flags_it():
    def query(row_id, severity, rule):
        return DataQuery("nice", DELIVERY, "export_dermato_nice.xlsx", "Chirurgies", 2, "surgery", row_id, "P1",
                         "Statut", "R?", rule, severity, "…")
    validated = validate(read_result(clean_rows(), [query("sur1", ERROR, "unknown_code"),
                                                    query("sur2", WARNING, "value_normalised")]))
    assert validated.quarantined["surgery"].row(0, named=True)["quarantine_reasons"] == ["unknown_code"]
    assert validated.accepted["surgery"].filter(pl.col("row_id") == "sur2")["has_warning"].to_list() == [True]
    assert set(validated.queries["rule"]) == {"unknown_code", "value_normalised"}


def test_reader_queries_on_one_row_give_its_distinct_error_rules_sorted_and_its_warning():
    def query(row_id, severity, rule):
        return DataQuery("nice", DELIVERY, "export_dermato_nice.xlsx", "Chirurgies", 2, "surgery", row_id, "P1",
                         "Statut", "R?", rule, severity, "…")
    validated = validate(read_result(clean_rows(), [
        query("sur1", ERROR, "unknown_code"), query("sur1", WARNING, "value_normalised"),
        query("sur1", ERROR, "unparseable_date"), query("sur1", ERROR, "unknown_code"),
        DataQuery("nice", DELIVERY, "export_dermato_nice.xlsx", None, 1, None, None, None, "X", "X",
                  "unknown_column", WARNING, "…"),  # whole-file query: concerns no row
    ]))
    quarantined = validated.quarantined["surgery"]
    assert quarantined["row_id"].to_list() == ["sur1"]
    assert quarantined.row(0, named=True)["quarantine_reasons"] == ["unknown_code", "unparseable_date"]
    assert not validated.accepted["surgery"]["has_warning"].any()
    assert not validated.accepted["patient"]["has_warning"].any()
    assert validated.queries.height == 4 and validated.balanced  # the repeated unknown_code is one query


def test_queries_appended_as_frames_keep_their_place_among_single_queries():
    from clms_etl.data_queries import QueryLog, queries_frame
    from clms_etl.readers.base import ReadContext

    R = ("unknown_code", "value_normalised", "unparseable_date", "unparseable_number", "empty_row")

    def build():
        ctx = ReadContext("nice", Path("."), DELIVERY, b"key")
        ctx.extend_queries(pl.DataFrame({"file": ["a"], "rule": [R[0]], "message": ["m"]}))
        ctx.query(file="b", row=3, rule=R[1], message="m", value=7)
        ctx.extend_queries(pl.DataFrame({"file": ["c", "d"], "rule": [R[2], R[3]], "message": ["m", "m"],
                                         "value": ["x" * 300, None]}))
        ctx.extend_queries(pl.DataFrame(schema={"file": pl.String, "rule": pl.String, "message": pl.String}))
        ctx.query(file="e", rule=R[4], message="m")
        return ctx

    ctx = build()
    assert isinstance(ctx.queries, QueryLog)
    as_frame = ReadResult("nice", DELIVERY, {}, ctx.queries, []).queries_frame()  # frames never listed
    listed = build().queries
    assert [q.rule for q in listed] == list(R) and len(listed) == 5
    assert listed[2].value == "x" * 200 + "…" and listed[1].value == "7"
    assert [q.severity for q in listed] == [ERROR, WARNING, ERROR, ERROR, WARNING]  # the registry's
    assert as_frame.equals(queries_frame(list(listed))) and as_frame.schema == queries_frame([]).schema
    del listed[1:]
    listed.extend(build().queries[4:])
    assert [q.rule for q in listed] == [R[0], R[4]]


def test_reader_frame_breaking_the_model_is_a_bug_not_a_query():
    rows = clean_rows()
    bad = frame("surgery", rows["surgery"]).with_columns(pl.col("clinical_margin_cm").cast(pl.String))
    result = read_result(rows)
    result.frames["surgery"] = bad
    with pytest.raises(ValueError, match="clinical_margin_cm"):
        validate(result)
    result.frames["surgery"] = frame("surgery", [*rows["surgery"], rows["surgery"][0]])
    with pytest.raises(ValueError, match="row_id"):
        validate(result)


def test_empty_delivery_validates_to_empty_tables():
    validated = validate(read_result({t: [] for t in clean_rows()}))
    assert validated.queries.is_empty()
    assert validated.accounting["rows_read"].sum() == 0 and validated.balanced


# --- workbook -----------------------------------------------------------------------------------

def _delivery_with_queries():
    rows = changed({"pat1": {"age_at_diagnosis_years": 15}, "sur3": {"histological_margin_cm": 3.0},
                    "tum2": {"fnclcc_grade": 1}})
    return validate(read_result(rows))


def test_workbook_opens_in_excel_with_french_headers_and_errors_first(tmp_path):
    validated = _delivery_with_queries()
    path = write_query_workbook(validated.queries, tmp_path / "requetes_nice.xlsx", "nice")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Requêtes", "Synthèse"]
    sheet = book["Requêtes"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("N° de requête", "Statut", "Fichier", "Feuille", "Ligne", "Patient (pseudonyme)", "Champ",
                       "Valeur reçue", "Problème", "Catégorie", "Gravité", "Message", "Que faire", "Conséquences",
                       "Réponse du centre")
    assert len(rows) - 1 == validated.queries.height == 3
    severities = [r[10] for r in rows[1:]]
    assert severities == ["erreur", "avertissement", "avertissement"]
    first = rows[1]
    assert first[2:6] == ("export_dermato_nice.xlsx", "Chirurgies", 4, "P2")
    # the rule's French label, category and what to do: no English snake_case id in the list
    assert first[8:11] == ("Marge histologique > clinique", "plausibilité", "erreur")
    assert first[12] == rules.rule("histological_exceeds_clinical").action and first[14] is None
    assert not any("_" in (r[8] or "") for r in rows[1:])
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:O4"
    assert sheet["L2"].alignment.wrap_text
    summary = {r[0]: (r[2], r[3]) for r in book["Synthèse"].iter_rows(min_row=2, values_only=True)}
    assert summary["Marge histologique > clinique"] == ("erreur", 1)
    assert summary["Patient mineur"] == ("avertissement", 1)
    assert summary["Total"][1] == 3


def test_workbook_bytes_are_reproducible(tmp_path):
    validated = _delivery_with_queries()
    first = write_query_workbook(validated.queries, tmp_path / "a.xlsx", "nice").read_bytes()
    second = write_query_workbook(validated.queries, tmp_path / "b.xlsx", "nice").read_bytes()
    assert first == second


def test_workbook_keeps_only_its_centre_and_writes_formula_like_values_as_text(tmp_path):
    queries = _delivery_with_queries().queries
    other = queries.head(1).with_columns(pl.lit("lyon").alias("centre"), pl.lit("=1+1").alias("value"))
    path = write_query_workbook(pl.concat([queries, other]), tmp_path / "lyon.xlsx", "lyon")
    sheet = openpyxl.load_workbook(path)["Requêtes"]
    assert sheet.max_row == 2
    assert sheet["H2"].value == "=1+1" and sheet["H2"].data_type == "s"


# --- the pandera shortcut -------------------------------------------------------------------------

def _contexts(rows: dict[str, list[dict]]) -> dict[str, pl.DataFrame]:
    from clms_etl.validate import _conformed
    from validations.canonical import add_context

    frames = {table: _conformed(table, f) for table, f in read_result(rows).frames.items()}
    return add_context(frames, DELIVERY)


def test_context_of_a_patient_with_two_rows_an_unknown_patient_and_a_null_id():
    """The per-patient context (a patient's first row; known, dead) whether patients have one row
    each (the usual delivery: no group_by) or not, and for rows of no known patient."""
    extra = {"patient": [copy_of("patient", "pat1", "pat1b", 4, diagnosis_date=D(2014, 1, 1)),
                         copy_of("patient", "pat2", "pat3", 5, patient_id=None)],
             "tumour": [copy_of("tumour", "tum1", "tum3", 4, patient_id="P9"),
                        copy_of("tumour", "tum1", "tum4", 5, patient_id=None)],
             "surgery": [copy_of("surgery", "sur1", "sur4", 5, patient_id=None)]}
    for rows, first_p1 in ((clean_rows(), D(2015, 3, 2)), (changed(extra=extra), D(2015, 3, 2))):
        got = _contexts(rows)
        assert got["tumour"]["ctx_patient_known"].to_list() == [True, True, False, False][:got["tumour"].height]
        assert got["patient"]["ctx_has_death"].to_list() == [False, True, False, False][:got["patient"].height]
        surgery = got["surgery"]
        assert surgery["ctx_diagnosis_date"].to_list()[:2] == [first_p1, first_p1]
        assert surgery["ctx_patient_known"].to_list() == [True, True, True, False][:surgery.height]
        assert surgery["ctx_death_date"].to_list()[2] == D(2019, 5, 5)
        # a patient's distinct rows: the window over the patient's rows, spared when each has one row
        rows_of = pl.when(pl.col("patient_id").is_not_null()).then(
            pl.col("ctx_is_duplicate").not_().sum().over("patient_id")).cast(pl.Int32)
        assert got["patient"]["ctx_patient_rows"].to_list() == got["patient"].select(rows_of).to_series().to_list()


def _pandera_cases(table: str, frame: pl.DataFrame):
    from pandera.errors import SchemaErrors

    try:
        SCHEMAS[table].validate(frame, lazy=True)
    except SchemaErrors as exc:
        return exc.failure_cases
    return None


def test_clean_tables_skip_pandera_and_pandera_agrees():
    from clms_etl.validate import _passes

    for table, frame in _contexts(clean_rows()).items():
        assert _passes(SCHEMAS[table], frame), table  # the shortcut is taken on a clean delivery
        assert _pandera_cases(table, frame) is None, table


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_failure_cases_are_pandera_s_own(case: Case):
    from clms_etl.validate import _passes, schema_failure_cases

    for table, frame in _contexts(changed(case.changes, case.extra)).items():
        expected = _pandera_cases(table, frame)
        got = schema_failure_cases(SCHEMAS[table], frame)
        assert (got is None) == (expected is None), table
        assert _passes(SCHEMAS[table], frame) == (expected is None), table
        if expected is not None:
            assert got.equals(expected), table


def test_structural_failure_still_goes_through_pandera():
    from clms_etl.validate import _passes

    frame = _contexts(clean_rows())["surgery"].with_columns(pl.col("ctx_death_count").cast(pl.Int64))
    assert not _passes(SCHEMAS["surgery"], frame)
    assert _pandera_cases("surgery", frame) is not None


def test_structural_failure_rows_are_pandera_s_own():
    """A frame the shortcut cannot judge (a column of another dtype): its failure rows are
    pandera's, structural ones (no row) included."""
    from clms_etl.validate import FAILURE_ROWS, failure_rows

    frame = _contexts(clean_rows())["surgery"].with_columns(pl.col("ctx_death_count").cast(pl.Int64))
    expected = _pandera_cases("surgery", frame).select(FAILURE_ROWS)
    assert failure_rows(SCHEMAS["surgery"], frame).equals(expected)
    assert expected["index"].null_count() > 0


def test_checks_that_do_more_than_one_select_are_judged_as_pandera_judges_them():
    """The shortcut runs the checks that select one expression in one query; any other check
    (two selects, a frame-wide check, an element-wise one) keeps pandera's own evaluation."""
    import pandera.polars as pa

    from clms_etl.validate import _check_verdicts, schema_failure_cases

    frame = pl.DataFrame({"a": [1, 2, None, 4], "b": [1, 5, 3, None]})
    checks = {
        "one_select": pa.Check(lambda d: d.lazyframe.select(pl.col("a") <= pl.col("b")), error="one_select"),
        "two_selects": pa.Check(lambda d: d.lazyframe.with_columns(c=pl.col("b") * 2).select(pl.col("c") > pl.col("a")),
                                error="two_selects"),
        "many_columns": pa.Check(lambda d: d.lazyframe.select(pl.col("a", "b") < 5), error="many_columns"),
        "element_wise": pa.Check(lambda v: v != 3, element_wise=True, error="element_wise"),
        "builtin": pa.Check.le(3),
    }
    schema = pa.DataFrameSchema({"a": pa.Column(pl.Int64, nullable=True, checks=[checks["element_wise"], checks["builtin"]]),
                                 "b": pa.Column(pl.Int64, nullable=True)},
                                checks=[checks["one_select"], checks["two_selects"], checks["many_columns"]])
    from pandera.errors import SchemaErrors

    with pytest.raises(SchemaErrors) as pandera_s:
        schema.validate(frame, lazy=True)
    failing = set(pandera_s.value.failure_cases["check"].to_list())
    verdicts = _check_verdicts(schema, frame)
    assert verdicts == {(None, 0): "one_select" not in failing, (None, 1): "two_selects" not in failing,
                        (None, 2): "many_columns" not in failing, ("a", 0): "element_wise" not in failing,
                        ("a", 1): "less_than_or_equal_to(3)" not in failing}
    assert not all(verdicts.values())
    assert schema_failure_cases(schema, frame).equals(pandera_s.value.failure_cases)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_failure_rows_read_from_the_verdicts_are_pandera_s_own(case: Case):
    """The failing rows taken from the shortcut's own verdicts are pandera's failure cases (the
    columns the queries are built from), in pandera's order."""
    from clms_etl.validate import FAILURE_ROWS, failure_rows

    for table, frame in _contexts(changed(case.changes, case.extra)).items():
        expected = _pandera_cases(table, frame)
        got = failure_rows(SCHEMAS[table], frame)
        assert (got is None) == (expected is None), table
        if expected is not None:
            assert got.equals(expected.select(FAILURE_ROWS)), table


def test_failure_rows_of_awkward_checks_are_pandera_s_own():
    """Nulls kept or ignored, several columns' and the frame's checks failing on the same rows, a
    check pandera runs its own way, an aggregate verdict, a limit on the failure cases: each
    reported as pandera reports it."""
    import pandera.polars as pa
    from pandera.errors import SchemaErrors

    from clms_etl.validate import FAILURE_ROWS, failure_rows

    frame = pl.DataFrame({"a": [1, 2, None, 4, 7], "b": [1, 5, 3, None, 0]})
    select = {
        "frame_rows": pa.Check(lambda d: d.lazyframe.select(pl.col("a") <= pl.col("b")), error="frame_rows"),
        "frame_nulls_fail": pa.Check(lambda d: d.lazyframe.select(pl.col("a") <= pl.col("b")), ignore_na=False,
                                     error="frame_nulls_fail"),
        "b_rows": pa.Check(lambda d: d.lazyframe.select(pl.col("b") < 4), error="b_rows"),
        "a_builtin": pa.Check.le(3),
        "a_named": pa.Check(lambda d: d.lazyframe.select(pl.col("a") != 2), name="a_named"),
    }
    other = {
        "two_selects": pa.Check(lambda d: d.lazyframe.with_columns(c=pl.col("b") * 2).select(pl.col("c") > pl.col("a")),
                                error="two_selects"),
        "aggregate": pa.Check(lambda d: d.lazyframe.select(pl.col("a").sum() < 3), error="aggregate"),
        "limited": pa.Check(lambda d: d.lazyframe.select(pl.col("b") < 1), n_failure_cases=1, error="limited"),
    }

    def schema(frame_checks, a_checks, b_checks):
        return pa.DataFrameSchema({"b": pa.Column(pl.Int64, nullable=True, checks=b_checks),
                                   "a": pa.Column(pl.Int64, nullable=True, checks=a_checks)},
                                  checks=frame_checks, name="awkward")

    schemas = [
        schema([select["frame_rows"], select["frame_nulls_fail"]], [select["a_builtin"], select["a_named"]],
               [select["b_rows"]]),
        schema([select["frame_nulls_fail"]], [select["a_builtin"]], []),
        *(schema([select["frame_rows"], check], [select["a_builtin"]], [select["b_rows"]]) for check in other.values()),
    ]
    for s in schemas:
        with pytest.raises(SchemaErrors) as pandera_s:
            s.validate(frame, lazy=True)
        expected = pandera_s.value.failure_cases.select(FAILURE_ROWS)
        assert failure_rows(s, frame).equals(expected), expected


def test_duplicates_found_among_a_patient_s_rows_are_those_found_comparing_every_row():
    """Only the rows of patients with several rows are compared whole: the same duplicate flags
    and first rows as comparing every row (nulls, copies across patients, no copy at all)."""
    from validations.canonical import _content_columns, _duplicates_whole, _with_duplicates

    contexts = _contexts(changed(extra={
        "surgery": [copy_of("surgery", "sur1", "sur9", 40), copy_of("surgery", "sur1", "sur10", 41, patient_id="P2"),
                    copy_of("surgery", "sur1", "sur11", 42, patient_id=None),
                    copy_of("surgery", "sur1", "sur12", 43, patient_id=None),
                    copy_of("surgery", "sur1", "sur13", 44, surgery_date=None)],
    }))
    frames = {t: f.drop("ctx_is_duplicate", "ctx_duplicate_of_row") for t, f in contexts.items()}
    frames["event"] = pl.concat([frames["event"], frames["event"].with_columns(
        pl.col("row_id") + "b", pl.col("source_row") + 1000)])  # every event copied
    frames["tumour_nulls"] = frames["tumour"].with_columns(patient_id=pl.lit(None, dtype=pl.String))
    for table, frame in frames.items():
        table = table.removesuffix("_nulls")
        expected = _duplicates_whole(frame, _content_columns(table))
        assert _with_duplicates(table, frame).equals(expected), table
    assert frames["surgery"].pipe(lambda f: _with_duplicates("surgery", f))["ctx_is_duplicate"].sum() == 2


def test_mitosis_class_bounds_are_those_of_the_class_table():
    """The class bounds written as when/then give what replace_strict on the tables gives: a
    bound, null for the open class, for a value that is no class and for a missing one."""
    from validations.canonical import _CLASS_HIGH, _CLASS_LOW, _class_bound

    classes = pl.DataFrame({"mitosis_class": ["0-9", "10-19", ">=20", None, "", " 0-9", "0-9 ", ">= 20", "autre"]})
    for bounds in (_CLASS_LOW, _CLASS_HIGH):
        expected = classes.select(pl.col("mitosis_class").replace_strict(bounds, default=None, return_dtype=pl.Int32))
        assert classes.select(_class_bound(bounds)).to_series().equals(expected.to_series(), check_names=False)


def test_cascaded_row_with_its_own_errors_lists_every_reason_once_in_order():
    """A row of a quarantined patient that has errors of its own: its reasons are its own and the
    cascade's, each once, sorted; another patient's row keeps its own only."""
    validated = validate(read_result(changed({
        "pat1": {"diagnosis_date": None},
        "sur1": {"clinical_margin_cm": 9.0, "histological_margin_cm": None, "surgery_kind": "autre"},
        "sur3": {"surgery_kind": "autre"},
    })))
    reasons = {r["row_id"]: r["quarantine_reasons"] for r in validated.quarantined["surgery"].iter_rows(named=True)}
    assert reasons == {"sur1": ["code_not_in_vocabulary", "margin_out_of_range", "parent_quarantined"],
                       "sur2": ["parent_quarantined"], "sur3": ["code_not_in_vocabulary"]}
    assert validated.quarantined["patient"]["row_id"].to_list() == ["pat1"]
    validated.assert_balanced()
