"""The report and the exports read PostgreSQL the way they read DuckDB: same numbers, same files."""

from __future__ import annotations

import pytest

from clms_etl.report.build import build_report
from clms_etl.report.exports import analysis_datasets
from clms_etl.warehouse import Warehouse
from tests.report.conftest import load_imports
from tests.warehouse.helpers import TEST_KEY

pytestmark = pytest.mark.postgres


def test_report_and_exports_on_postgresql_equal_those_on_duckdb(pg_url, report_imports, report_warehouse,
                                                                 built_report, tmp_path, monkeypatch):
    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    with Warehouse(pg_url) as wh:
        load_imports(wh, report_imports)
        outputs = build_report(wh, [], tmp_path / "report", run_id="pg-run")
        datasets = {d.name: d.frame for d in analysis_datasets(wh)}
        backend = outputs.provenance.backend
    assert backend.startswith("postgresql (") and "postgres@" not in backend and "postgres:" not in backend
    pg = {t.key: t.frame for s in outputs.sections for t in s.tables}
    duck = {t.key: t.frame for s in built_report.sections for t in s.tables}
    for key in ("quality_centres", "quality_rules"):
        assert pg[key].equals(duck[key]), key
    deliveries = ["Source", "Delivery date", "Files", "SHA-256 (prefix)", "Rows accepted"]
    assert pg["provenance_deliveries"].select(deliveries).equals(duck["provenance_deliveries"].select(deliveries))
    assert outputs.summary == built_report.summary
    for dataset in analysis_datasets(report_warehouse):
        key = [c for c in ("patient_id", "endpoint") if c in dataset.frame.columns]
        ours = datasets[dataset.name]
        assert ours.schema == dataset.frame.schema, dataset.name
        if key:
            assert ours.sort(key).equals(dataset.frame.sort(key)), dataset.name
