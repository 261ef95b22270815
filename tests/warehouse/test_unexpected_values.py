"""The first unexpected values of a column expectation are fetched only where there are some
(clms_etl.warehouse.expectations, "Unexpected values fetched where there are some")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from clms_etl.warehouse import Warehouse, expectations
from clms_etl.warehouse.expectations import load_suites, run_expectations
from tests.warehouse.helpers import load_twin
from tests.warehouse.test_expectations import _break

AGE = "age_at_diagnosis_years"
# the twin's patients are 24 to 95 at diagnosis: "under 60" fails, "under 60 for 10 %" passes with
# unexpected values (mostly), "under 130" passes with none
PROBES = [
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": AGE, "min_value": 0, "max_value": 60, "description": "Probe: under 60."}},
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": AGE, "min_value": 0, "max_value": 60, "mostly": 0.1,
                "description": "Probe: under 60 for at least 10 %."}},
    {"type": "expect_column_values_to_be_between",
     "kwargs": {"column": AGE, "min_value": 0, "max_value": 130, "description": "Probe: under 130."}},
]
LIMIT = re.compile(r"\bLIMIT\s+(?:%\((\w+)\)s|\$(\d+)|\?|(\d+))", re.IGNORECASE)


def _limit(statement: str, parameters) -> int | None:
    """The row limit of a statement fetching unexpected values, bound or literal."""
    found = LIMIT.search(statement)
    if found is None:
        return None
    name, position, literal = found.groups()
    if literal is not None:
        return int(literal)
    if name is not None:
        return int(parameters[name])
    values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    return int(values[int(position) - 1] if position else values[-1])


@pytest.fixture
def fetched_values():
    """Every statement fetching unexpected values while the test runs, with its parameters."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "AS unexpected_values" in statement:
            seen.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def test_values_are_fetched_only_for_the_expectations_that_counted_some(warehouse_url, tmp_path, fetched_values):
    """One scan for the expectation with none ("under 130"): its values query asks for no row. The two
    that counted some ("under 60", failed or passed under mostly) get their first five, as before."""
    with Warehouse(warehouse_url) as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice",))
        report = run_expectations(wh, suites={"patient": {"name": "probe.patient", "expectations": PROBES}},
                                  data_docs_dir=False)
    outcomes = {o.description: (o.success, o.observed) for o in report.outcomes}
    assert outcomes["Probe: under 60."][0] is False and outcomes["Probe: under 60 for at least 10 %."][0] is True
    assert outcomes["Probe: under 130."] == (True, 0)
    asked = {}  # upper bound of the probe -> the row limits its values queries asked for
    for statement, parameters in fetched_values:
        bound = 130 if "130" in repr(parameters) or "130" in statement else 60
        asked.setdefault(bound, []).append(_limit(statement, parameters))
    assert all(limit == 0 for limit in asked[130]), asked
    assert 5 in asked[60], asked


def _stored(site: Path) -> dict[str, dict]:
    """The validation results a run stored, by suite, without what differs between two runs of the
    same suites (ids, times)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in {"id", "validation_time", "run_id",
                                                                        "validation_id", "checkpoint_id", "batch_markers"}}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    out = {}
    for path in (site / expectations.STORE_SUBDIR / "validations").rglob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        out[document["suite_name"]] = plain(document)
    return out


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_stored_results_are_those_of_one_summary_run(backend, request, tmp_path, monkeypatch):
    """The suites of a damaged warehouse (SQL checks and column expectations failing, passing, passing
    under mostly), run as the night runs them and in one SUMMARY checkpoint: the same stored results,
    from which GE draws the same pages."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}" if backend == "duckdb" else request.getfixturevalue("pg_url")
    tables = ["patient", "event", "tumour", "surgery", "delivery"]
    suites = {table: doc for table, doc in load_suites().items() if table in tables}
    suites["patient"] = {**suites["patient"], "expectations": [*suites["patient"]["expectations"], *PROBES]}
    with Warehouse(url) as wh:
        wh.create()
        load_twin(wh, tmp_path, sources=("nice", "lyon"))
        _break(wh)
        night = run_expectations(wh, suites=suites, data_docs_dir=tmp_path / "night", run_name="probe")
        with monkeypatch.context() as one_pass:
            one_pass.setattr(expectations, "COUNTED_ONLY", expectations.SUMMARY)
            summary = run_expectations(wh, suites=suites, data_docs_dir=tmp_path / "summary", run_name="probe")
    assert not night.success
    assert [(o.table, o.description, o.success, o.observed) for o in night.outcomes] == \
        [(o.table, o.description, o.success, o.observed) for o in summary.outcomes]
    stored = _stored(tmp_path / "night")
    assert set(stored) == {doc["name"] for doc in suites.values()}
    assert stored == _stored(tmp_path / "summary")
