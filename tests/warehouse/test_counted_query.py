"""The suites' SQL checks run their query once (clms_etl.warehouse.counted_query)."""

from __future__ import annotations

import pytest

from clms_etl.warehouse import Warehouse
from clms_etl.warehouse.expectations import run_expectations
from tests.warehouse.helpers import load_twin


@pytest.mark.postgres
def test_each_sql_check_evaluates_its_query_once_with_the_same_verdicts(pg_url, tmp_path):
    """A query that advances a sequence for every row it reads: one evaluation over the 79 patients
    advances it by 79 (GE's own ``unexpected_rows_expectation`` evaluates it twice, rows then count: 158).
    A query returning three rows fails with 3 observed, as before."""
    counting = {"type": "unexpected_rows_expectation", "kwargs": {
        "description": "Counts its evaluations.",
        "unexpected_rows_query": "SELECT patient_id FROM {batch} WHERE nextval('probe_evaluations') < 0"}}
    three = {"type": "unexpected_rows_expectation", "kwargs": {
        "description": "Three rows.", "unexpected_rows_query": "SELECT patient_id FROM {batch} ORDER BY patient_id LIMIT 3"}}
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        with wh.engine.begin() as conn:
            conn.exec_driver_sql("CREATE SEQUENCE probe_evaluations")
        report = run_expectations(wh, suites={"patient": {"name": "probe.patient", "expectations": [counting, three]}},
                                  data_docs_dir=False)
        evaluated = wh.read_sql("SELECT last_value AS n FROM probe_evaluations")["n"][0]
    assert evaluated == 79
    assert {o.description: (o.success, o.observed) for o in report.outcomes} == {
        "Counts its evaluations.": (True, 0), "Three rows.": (False, 3)}
