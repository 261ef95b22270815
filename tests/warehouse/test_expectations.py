"""Great Expectations on the warehouse: suites pass on good data and fail on bad data, on both backends."""

from __future__ import annotations

import json
import re

import pytest

from clms_etl.warehouse import Warehouse, schema
from clms_etl.warehouse.expectations import load_suites, run_expectations, suites_dir
from tests.warehouse.helpers import DAY1, delivery_files, load_twin, twin


def test_one_suite_per_table_with_resolvable_placeholders():
    suites = load_suites()
    assert set(suites) == set(schema.metadata.tables)
    for table, doc in suites.items():
        text = json.dumps(doc)
        assert "$columns" not in text and "$vocabulary" not in text, table
        types = {e["type"] for e in doc["expectations"]}
        assert "expect_table_columns_to_match_set" in types, table


def test_custom_sql_follows_the_rules_that_make_it_portable():
    """GE aliases {batch} itself unless the query has a JOIN; regex/LIKE expectations are not portable."""
    for path in sorted(suites_dir().glob("*.json")):
        for e in json.loads(path.read_text())["expectations"]:
            assert "regex" not in e["type"] and "like_pattern" not in e["type"], (path.name, e["type"])
            query = e["kwargs"].get("unexpected_rows_query")
            if query is None:
                continue
            assert "{batch}" in query, (path.name, query)
            aliased = re.search(r"\{batch\}\s+(?!WHERE\b|GROUP\b|ORDER\b|LEFT\b|JOIN\b|ON\b)[a-z]\b", query)
            if aliased:
                assert re.search(r"\bJOIN\b", query), (path.name, query)
            assert e["kwargs"].get("description"), (path.name, query)


def test_suites_pass_on_good_data_and_write_data_docs_next_to_the_duckdb_file(tmp_path):
    path = tmp_path / "wh" / "warehouse.duckdb"
    with Warehouse(f"duckdb:///{path}") as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice", "montpellier", "lyon", "nimes"))
        lab = twin()["molecular"]
        report = wh.load_delivery("molecular", DAY1, delivery_files(tmp_path, "molecular", DAY1), lab, "ge")
        result = report.expectations
        assert result is not None
        assert result.errors == [], [str(o) for o in result.errors]
        assert result.success, result.summary()
        assert result.warnings == [], result.summary()
        assert {o.table for o in result.outcomes} == set(schema.metadata.tables)
        assert result.data_docs_index == path.parent / "data_docs" / "index.html"
        assert result.data_docs_index.exists()
        pages = list((path.parent / "data_docs").rglob("*.html"))
        assert len(pages) > len(schema.metadata.tables)


def _break(wh: Warehouse) -> None:
    """Damage the warehouse behind the loader's back, in ways the database itself accepts."""
    statements = [
        "UPDATE delivery_count SET rows_accepted = rows_accepted + 1 WHERE table_name = 'surgery'",
        "UPDATE delivery SET is_current = TRUE WHERE centre = 'nice'",
        "UPDATE event SET death_cause = 'clms' WHERE event_kind = 'last_news'",
        "UPDATE tumour SET grade_check = 'inconsistent' WHERE fnclcc_grade = fnclcc_grade_computed",
        "UPDATE molecular_sample SET patient_id = 'P00000000000000000000' WHERE case_no = 1",
    ]
    with wh.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


EXPECTED_FAILURES = {
    ("surgery", "Rows of surgery per current delivery equal the rows accepted recorded in delivery_count."),
    ("delivery", "At most one current delivery per source."),
    ("event", "A cause of death only on death rows."),
    ("tumour", "grade_check agrees with the recorded and recomputed grades."),
}


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_suites_fail_on_bad_data(backend, request, tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}" if backend == "duckdb" else request.getfixturevalue("pg_url")
    with Warehouse(url) as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice", "lyon", "molecular"))
        # a second, older-dated delivery row of Nice, so that "two current deliveries" is visible
        older = tmp_path / "older"
        wh.load_delivery("nice", DAY1, delivery_files(older, "nice", DAY1, "correction"), twin()["nice"], "ge",
                         expectations=False)
        tables = ["surgery", "delivery", "event", "tumour", "molecular_sample", "patient"]
        good = run_expectations(wh, tables=tables, data_docs_dir=False)
        assert good.success and good.errors == [], good.summary()
        _break(wh)
        bad = run_expectations(wh, tables=tables, data_docs_dir=False)
    assert not bad.success
    assert bad.errors == [], [str(o) for o in bad.errors]
    failed = {(o.table, o.description) for o in bad.critical_failures}
    assert EXPECTED_FAILURES <= failed, bad.summary()
    warned = {(o.table, o.description) for o in bad.warnings}
    assert ("molecular_sample", "Referential integrity: every molecular_sample.patient_id is a patient in the warehouse.") in warned
    # everything else still passes: the failures point at the damage only (a replaced delivery made
    # current again has, of course, no rows: the count checks of its tables fail too)
    unexpected = {(t, d) for t, d in failed - EXPECTED_FAILURES if not d.startswith(f"Rows of {t} per current delivery")}
    assert unexpected == set(), unexpected


@pytest.mark.postgres
def test_a_key_the_database_no_longer_enforces_is_still_checked_unique(pg_url, tmp_path):
    """The key checks are GROUP BY ... HAVING queries (GE's compound-uniqueness SQL took 15 s of the
    1,000,000-patient night on PostgreSQL): with the primary keys dropped, a row delivered twice fails them."""
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice",))
        with wh.engine.begin() as conn:
            for table in ("patient", "event"):
                key = conn.exec_driver_sql(f"SELECT conname FROM pg_constraint WHERE conrelid = '{table}'::regclass "
                                           "AND contype = 'p'").scalar_one()
                conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{key}" CASCADE')
                assert conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM {table} LIMIT 1").rowcount == 1
        bad = run_expectations(wh, tables=["patient", "event"], data_docs_dir=False)
    assert bad.errors == [], [str(o) for o in bad.errors]
    failed = {(o.table, o.description) for o in bad.critical_failures}
    assert {("patient", "Unique: no two rows share patient_id."),
            ("patient", "Unique: no two rows share (centre, patient_id)."),
            ("event", "Unique: no two rows share (patient_id, event_no).")} <= failed, bad.summary()


@pytest.mark.postgres
def test_suites_pass_on_postgresql_with_data_docs(pg_url, tmp_path):
    with Warehouse(pg_url, data_docs_dir=tmp_path / "data_docs") as wh:
        wh.create()
        load_twin(wh, tmp_path)
        result = run_expectations(wh)
    assert result.errors == [], [str(o) for o in result.errors]
    assert result.success and result.warnings == [], result.summary()
    assert result.data_docs_index == tmp_path / "data_docs" / "index.html" and result.data_docs_index.exists()


def test_data_docs_work_with_a_relative_duckdb_url(tmp_path, monkeypatch):
    """The default warehouse URL is relative (duckdb:///data/warehouse.duckdb)."""
    monkeypatch.chdir(tmp_path)
    with Warehouse("duckdb:///data/warehouse.duckdb") as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice",))
        report = run_expectations(wh, tables=["patient"])
    assert report.data_docs_index == (tmp_path / "data" / "data_docs" / "index.html")
    assert report.data_docs_index.exists()
